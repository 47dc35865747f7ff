//! The standalone proxy: OpenAI and Anthropic APIs on `LISTEN_ADDR`,
//! Ollama's native API behind it.
//!
//! ```text
//! cargo run --release --example proxy
//! ```
//!
//! Configuration comes from the environment; see `README.md` or `--help`.
//! Built with `--features otlp`, it exports its spans over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

mod app;
#[cfg(feature = "otlp")]
mod otlp;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// Where spans go over OTLP/HTTP (`{endpoint}/v1/traces`), with `--features otlp`.
const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

const USAGE: &str = "usage: ollama-translate [--help | --version | --healthcheck | --hash-key]";

const HELP: &str = "\
ollama-translate: a proxy that serves the OpenAI (Chat Completions, Responses,
legacy completions, embeddings, models) and Anthropic (Messages) APIs from
Ollama's native API, translating requests and streams.

usage: ollama-translate [--help | --version | --healthcheck | --hash-key]

  --help         print this and exit
  --version      print the version and exit
  --healthcheck  ask the proxy running on LISTEN_ADDR for /livez; exit 0 if healthy
  --hash-key     read a key on standard input, print its SHA-256 digest for KEYS_FILE

Health endpoints (no API key needed): /livez (and /healthz) 200 while the process
serves; /readyz 200 when Ollama answered the last probe, 503 otherwise and from
the start of a shutdown. GET /metrics: Prometheus metrics (needs an admin key
when keys are configured).

Keys file (KEYS_FILE), one key per line, # comments:
  NAME:SHA256-OF-THE-KEY[:admin][:MAX_IN_FLIGHT]
Every key may use generation and read-only paths; model management, blobs and
Ollama's account and cloud endpoints need an admin key. Reloaded on SIGHUP and
when the file changes.

Settings (environment variables, default in brackets):
  OLLAMA_BASE_URL        where Ollama is; several hosts separated by commas
                         form a pool [http://localhost:11434]
  POOL_REFRESH_SECS      with several hosts, how often each is asked for its
                         models and loaded models [10]
  POOL_SESSIONS          conversations kept on their host; 0 off [10000]
  POOL_WARM_SLOTS        requests a host with the model loaded takes before an
                         idle host without it is as good (OLLAMA_NUM_PARALLEL) [1]
  OLLAMA_API_KEY         sent to Ollama as Authorization: Bearer <key> [none]
  LISTEN_ADDR            where the proxy listens [127.0.0.1:4000]
  PROXY_API_KEY          an admin key clients may send (Authorization: Bearer or
                         x-api-key), named default; also with KEYS_FILE [none]
  KEYS_FILE              named keys (digests), admin flags and limits per key [none]
  KEYS_POLL_SECS         how often KEYS_FILE is checked for changes; 0: SIGHUP only [2]
  OPEN_ADMIN_PATHS       1: without keys, model management, blobs and Ollama's
                         account and cloud endpoints are open to everyone [0]
  THINK_MODELS           comma list of models that get think: true by default [none]
  REASONING              auto | drop | forward, per model with [model]mode [auto]
  OLLAMA_OPTIONS         default options, e.g. num_ctx=32768;[qwen3:8b]num_ctx=65536 [none]
  MODEL_ALIASES          client names to Ollama models, e.g. gpt-4o=qwen3:8b [none]
  DEFAULT_MODEL          Ollama model for claude-* names without an alias [none]
  THINKING_KEY           secret that signs thinking handed to clients [random per start]
  KEEPALIVE_SECS         silence towards a streaming client before a keep-alive; 0 off [10]
  UPSTREAM_IDLE_TIMEOUT  seconds without a byte from Ollama before giving up; 0 off [300]
  MAX_BODY_BYTES         largest translated request body [33554432]
  MAX_ANSWER_BYTES       longest stream line / largest answer read whole [33554432]
  REQUEST_MEMORY_BYTES   memory translated requests may hold together [268435456]
  CLIENT_TIMEOUT_SECS    first byte, request head, body, idle connection; 0 off [30]
  MAX_CONNECTIONS        client connections at once; 16 more get /livez only [512]
  READINESS_PROBE_SECS   how often /readyz asks Ollama GET /api/version [5]
  SHUTDOWN_DRAIN_SECS    on SIGTERM, keep accepting with /readyz at 503 this long [0]
  SHUTDOWN_GRACE_SECS    then let in-flight streams finish this long [30]
  WEB_SEARCH             where clients' web search tools search: ollama (through
                         OLLAMA_BASE_URL's /api/experimental/web_search), searxng,
                         ollama-api (ollama.com's web search API), or off [ollama]
  WEB_SEARCH_URL         the SearXNG address (needed for searxng), or the web search
                         API's [https://ollama.com for ollama-api]
  WEB_SEARCH_API_KEY     key sent as Authorization: Bearer <key> (needed for
                         ollama-api) [none]
  WEB_SEARCH_RESULTS     results a search gives the model, 1 to 10 [5]
  WEB_SEARCH_RESULT_BYTES
                         bytes of page text per result that reach the model [8192]
  WEB_SEARCH_TIMEOUT_SECS
                         how long one search may take, 1 to 3600 [15]
  WEB_SEARCH_MAX_USES    searches a request may run when the client sets no
                         max_uses [3]
  WEB_SEARCH_MAX_USES_CAP
                         searches a request may run whatever the client asks [10]
  RESPONSES_STORE_ENTRIES
                         Responses responses kept for previous_response_id; 0 none [1024]
  RESPONSES_STORE_BYTES  memory those kept responses may take [67108864]
  RESPONSES_STORE_TTL_SECS
                         how long a response is kept [1800]
  RUST_LOG               log filter [info]
  OTEL_EXPORTER_OTLP_ENDPOINT
                         export spans over OTLP/HTTP to <endpoint>/v1/traces, e.g.
                         http://127.0.0.1:4318; needs a build with --features otlp [none]

An invalid setting stops the proxy (exit status 2) with a message naming it.
";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {}
        ["--help" | "-h"] => {
            print!("{HELP}");
            return;
        }
        ["--version" | "-V"] => {
            println!("ollama-translate {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        // A key's digest for KEYS_FILE.
        ["--hash-key"] => {
            let mut input = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut input) {
                eprintln!("ollama-translate: --hash-key: {e}");
                std::process::exit(2);
            }
            match app::keys::hash_key(&input) {
                Ok(hex) => println!("{hex}"),
                Err(e) => {
                    eprintln!("ollama-translate: {e}");
                    std::process::exit(2);
                }
            }
            return;
        }
        // For container health checks: asks the running proxy's `/livez`.
        ["--healthcheck"] => {
            let listen = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:4000".into());
            std::process::exit(match app::healthcheck(&listen).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("ollama-translate: unhealthy: {e}");
                    1
                }
            });
        }
        _ => {
            eprintln!(
                "ollama-translate: unexpected argument(s) {args:?}\n{USAGE}\n\
                 Settings come from the environment; see --help."
            );
            std::process::exit(2);
        }
    }

    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match tracing_subscriber::EnvFilter::try_new(&v) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("ollama-translate: configuration error: RUST_LOG {v:?}: {e}");
                std::process::exit(2);
            }
        },
        _ => tracing_subscriber::EnvFilter::new("info"),
    };
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let otlp_endpoint = std::env::var(OTLP_ENDPOINT).ok();
    #[cfg(feature = "otlp")]
    let (export, tracer_provider) = match otlp::layer(otlp_endpoint.as_deref()) {
        Ok(Some((layer, provider))) => (Some(layer), Some(provider)),
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("ollama-translate: configuration error: {e}");
            std::process::exit(2);
        }
    };
    #[cfg(not(feature = "otlp"))]
    let export: Option<tracing_subscriber::layer::Identity> = None;
    tracing_subscriber::registry().with(log).with(export).init();
    #[cfg(not(feature = "otlp"))]
    if otlp_endpoint.is_some_and(|e| !e.trim().is_empty()) {
        tracing::warn!(
            "{OTLP_ENDPOINT} is set, but this binary was built without `--features otlp`: \
             no spans are exported"
        );
    }

    let mut settings = match app::Settings::from_env(|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ollama-translate: configuration error: {e}");
            std::process::exit(2);
        }
    };
    settings
        .readiness_probe
        .get_or_insert(app::DEFAULT_READINESS_PROBE);
    let listener = match tokio::net::TcpListener::bind(&settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "ollama-translate: cannot listen on {} (LISTEN_ADDR): {e}",
                settings.listen
            );
            std::process::exit(1);
        }
    };
    let served = app::serve(listener, settings, app::shutdown_signal()).await;
    #[cfg(feature = "otlp")]
    if let Some(provider) = tracer_provider {
        otlp::shutdown(provider).await;
    }
    if let Err(e) = served {
        eprintln!("ollama-translate: {e}");
        std::process::exit(1);
    }
}
