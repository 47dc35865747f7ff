//! The standalone proxy: OpenAI and Anthropic APIs on `LISTEN_ADDR`,
//! Ollama's native API behind it.
//!
//! ```text
//! cargo run --release --example proxy
//! ```
//!
//! Settings come from the environment (or flags); see `--help`. Built with
//! `--features otlp`, it exports its spans over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

mod keys;
#[cfg(feature = "otlp")]
mod otlp;
mod search;
mod settings;
mod spec;

use bytes::Bytes;
use clap::Parser as _;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use ollama_translate::client::{bad_gateway, OllamaClient, OllamaError};
use ollama_translate::health::{Health, HealthBody, Readiness};
use ollama_translate::{BoxError, Pool, RequestBody, TokioTimer, TranslateBody};
use settings::{secs, shown, Built, Settings};
use std::process::exit;
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt as _};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// Where spans go over OTLP/HTTP (`{endpoint}/v1/traces`), with `--features otlp`.
const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

fn main() {
    settings::tidy_env();
    let args = settings::Args::try_parse().unwrap_or_else(|e| {
        if !e.use_stderr() {
            e.exit() // --help, --version
        }
        let e = e.render().to_string();
        fail(
            2,
            format!(
                "configuration error: {}",
                e.trim_start_matches("error: ").trim_end()
            ),
        )
    });
    if args.hash_key {
        let mut input = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut input);
        match ollama_translate::keys_file::hash_key(&input) {
            Some(digest) => return println!("{digest}"),
            None => fail(2, "--hash-key reads a key on standard input; it got none"),
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| fail(1, e));
    if args.healthcheck {
        match rt.block_on(healthcheck(&args.settings.listen_addr)) {
            Ok(()) => exit(0),
            Err(e) => fail(1, format!("unhealthy: {e}")),
        }
    }
    let built = args
        .settings
        .build()
        .unwrap_or_else(|e| fail(2, format!("configuration error: {e}")));
    if args.check {
        let (s, b) = (&args.settings, &built);
        return println!("{s:#?}\naccess: {:?}\nlayer: {:?}", b.access, b.layer);
    }
    rt.block_on(async {
        let exporting = logging(&args.settings);
        let served = run(args.settings, built).await;
        #[cfg(feature = "otlp")]
        if let Some(provider) = exporting {
            otlp::shutdown(provider).await;
        }
        #[cfg(not(feature = "otlp"))]
        let _ = exporting;
        served.unwrap_or_else(|e| fail(1, e));
    });
}

fn fail(status: i32, message: impl std::fmt::Display) -> ! {
    eprintln!("ollama-translate: {message}");
    exit(status)
}

#[cfg(feature = "otlp")]
type Otlp = Option<opentelemetry_sdk::trace::SdkTracerProvider>;
#[cfg(not(feature = "otlp"))]
type Otlp = Option<std::convert::Infallible>;

/// The log (`RUST_LOG`, on standard error) and the OTLP export.
fn logging(s: &Settings) -> Otlp {
    let filter = tracing_subscriber::EnvFilter::try_new(&s.rust_log).unwrap_or_else(|e| {
        fail(
            2,
            format!("configuration error: RUST_LOG {:?}: {e}", s.rust_log),
        )
    });
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let endpoint = s.otel_exporter_otlp_endpoint.as_deref();
    #[cfg(feature = "otlp")]
    let (export, provider) = match otlp::layer(endpoint) {
        Ok(Some((layer, provider))) => (Some(layer), Some(provider)),
        Ok(None) => (None, None),
        Err(e) => fail(2, format!("configuration error: {e}")),
    };
    #[cfg(not(feature = "otlp"))]
    let (export, provider) = (None::<tracing_subscriber::layer::Identity>, None);
    tracing_subscriber::registry().with(log).with(export).init();
    #[cfg(not(feature = "otlp"))]
    if endpoint.is_some() {
        tracing::warn!(
            "{OTLP_ENDPOINT} is set, but this binary was built without `--features otlp`: \
             no spans are exported"
        );
    }
    provider
}

/// Listens, and serves until Ctrl-C or SIGTERM.
async fn run(s: Settings, b: Built) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind(&s.listen_addr)
        .await
        .unwrap_or_else(|e| {
            fail(
                1,
                format!("cannot listen on {} (LISTEN_ADDR): {e}", s.listen_addr),
            )
        });
    let addr = listener.local_addr()?;
    let ollama = shown(&b.hosts);
    println!("ollama-translate listening on http://{addr} (Ollama at {ollama})");
    tracing::info!(%addr, %ollama, "listening");
    tracing::info!("web search: {}", b.web_search);
    keys::start(&b.access, b.keys_file.as_ref());
    let every = Some(secs(s.readiness_probe_secs)).filter(|d| !d.is_zero());
    let readiness = Readiness::new(every.is_some());
    let host = |base: &http::Uri| -> Result<OllamaClient<RequestBody<Incoming>>, BoxError> {
        configured(OllamaClient::new(base.clone())?, &s)
    };
    if let [one] = b.hosts.as_slice() {
        let probe = configured(OllamaClient::<Empty<Bytes>>::new(one.clone())?, &s)?;
        if let Some(every) = every {
            tokio::spawn(readiness.clone().probe_ollama(probe, every));
        }
        let inner = host(one)?;
        return serve(listener, &s, b, readiness, inner).await;
    }
    let mut pool = Pool::builder(TokioTimer)
        .refresh_every(secs(s.pool_refresh_secs))
        .sessions(s.pool_sessions, Duration::from_secs(600))
        .warm_slots(s.pool_warm_slots as usize)
        .body_timeout(secs(s.client_timeout_secs))
        .first_byte_timeout(secs(s.upstream_idle_timeout));
    if let Some(n) = s.max_body_bytes {
        pool = pool.max_body_bytes(n);
    }
    if let Some(n) = s.request_memory_bytes {
        pool = pool.read_memory(n);
    }
    let hosts: Result<Vec<_>, BoxError> = b
        .hosts
        .iter()
        .map(|u| Ok((ollama_translate::client::base_display(u), host(u)?)))
        .collect();
    let pool = pool.build(hosts?)?;
    tokio::spawn(pool.maintain::<Incoming, _>());
    if let Some(every) = every {
        tokio::spawn(readiness.clone().probe_pool(pool.clone(), every));
    }
    serve(listener, &s, b, readiness, pool).await
}

/// An Ollama client as the settings say: errors name `OLLAMA_BASE_URL`, `OLLAMA_API_KEY` sent.
fn configured<B>(c: OllamaClient<B>, s: &Settings) -> Result<OllamaClient<B>, BoxError> {
    let c = c.setting("OLLAMA_BASE_URL");
    match &s.ollama_api_key {
        Some(k) => c
            .api_key(&k.0)
            .map_err(|e| format!("OLLAMA_API_KEY: {e}").into()),
        None => Ok(c),
    }
}

/// Serves `inner` (one Ollama or a pool) behind the layer, the trace and the health paths.
async fn serve<S, B>(
    listener: tokio::net::TcpListener,
    s: &Settings,
    b: Built,
    readiness: Readiness,
    inner: S,
) -> Result<(), BoxError>
where
    S: tower::Service<Request<RequestBody<Incoming>>, Response = Response<B>, Error = OllamaError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let svc = ServiceBuilder::new()
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .map_result(finish_response)
        .layer(b.layer)
        .service(inner);
    let metrics = ollama_translate::health::prometheus();
    let svc = Health::new(svc, readiness.clone()).metrics(metrics, Some(b.access));
    ollama_translate::server::serve(listener, svc)
        .max_connections(s.max_connections as usize)
        .client_timeout(secs(s.client_timeout_secs))
        .drain(secs(s.shutdown_drain_secs))
        .grace(secs(s.shutdown_grace_secs))
        .on_shutdown(move || readiness.drain())
        .run(ollama_translate::server::shutdown_signal())
        .await?;
    Ok(())
}

/// A boxed body, and a 502 when Ollama cannot be reached for a passed-through
/// request (translated ones already answer in their client's dialect).
fn finish_response<B>(
    r: Result<Response<TranslateBody<B>>, BoxError>,
) -> Result<Response<HealthBody>, BoxError>
where
    TranslateBody<B>: http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static,
{
    Ok(match r {
        Ok(res) => res.map(|b| b.boxed_unsync()),
        Err(e) => {
            tracing::warn!(error = %ollama_translate::error_chain(&*e), "Ollama is unreachable");
            bad_gateway(&*e).map(|b| b.map_err(|e| match e {}).boxed_unsync())
        }
    })
}

/// `--healthcheck`: asks the proxy listening on `listen` for `/livez` (a
/// wildcard address is asked on loopback); `Ok` on a 200 within 3 s.
async fn healthcheck(listen: &str) -> Result<(), String> {
    let mut addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| format!("LISTEN_ADDR {listen:?}: {e}"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let base = format!("http://{addr}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let client = OllamaClient::<Empty<Bytes>>::new(base).map_err(|e| e.to_string())?;
    let livez = Request::get("/livez")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(3), client.oneshot(livez)).await {
        Ok(Ok(res)) if res.status() == StatusCode::OK => Ok(()),
        Ok(Ok(res)) => Err(format!("{addr} answered {}", res.status())),
        Ok(Err(e)) => Err(format!("{addr}: {}", ollama_translate::error_chain(&e))),
        Err(_) => Err(format!("{addr}: no answer within 3 s")),
    }
}
