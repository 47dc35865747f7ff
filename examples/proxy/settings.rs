//! The proxy's settings: command-line flags, each also read from the
//! environment variable of the same name (`--max-connections` or
//! `MAX_CONNECTIONS`). Blank variables count as unset.

use clap::Parser;
use http::Uri;
use ollama_translate::access::{Access, Key, KeyDigest, Keys};
use ollama_translate::client::base_display;
use ollama_translate::{OllamaTranslateLayer, TokioTimer};
use std::path::PathBuf;
use std::time::Duration;

/// ollama-translate: a proxy that serves the OpenAI (Chat Completions,
/// Responses, legacy completions, embeddings, models) and Anthropic
/// (Messages) APIs from Ollama's native API, translating requests and
/// streams.
#[derive(Parser, Debug)]
#[command(
    name = "ollama-translate",
    override_usage = "ollama-translate [OPTIONS]",
    version,
    max_term_width = 100
)]
#[command(help_template = "{about}\n\nusage: {usage}\n\n{all-args}{after-help}")]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Ask the proxy running on LISTEN_ADDR for /livez; exit 0 if healthy.
    #[arg(long)]
    pub healthcheck: bool,
    /// Read a key on standard input, print its SHA-256 digest for KEYS_FILE.
    #[arg(long)]
    pub hash_key: bool,
    /// Read the settings, print them (keys hidden) and exit: 0 when valid.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub settings: Settings,
}

const AFTER_HELP: &str = "\
Health endpoints (no API key needed): /livez (and /healthz) 200 while the process serves;
/readyz 200 when Ollama answered the last probe, 503 otherwise and from the start of a
shutdown. GET /metrics: Prometheus metrics (needs an admin key when keys are configured).

Keys file (KEYS_FILE), one key per line, # comments:
  NAME:SHA256-OF-THE-KEY[:admin][:MAX_IN_FLIGHT]
Every key may use generation and read-only paths; model management, blobs and Ollama's
account and cloud endpoints need an admin key. Reloaded on SIGHUP and when the file changes.

An invalid setting stops the proxy (exit status 2) with a message naming it.";

/// A secret setting: its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

pub fn secret(s: &str) -> Result<Secret, String> {
    Ok(Secret(s.to_string()))
}

/// `HOST:PORT`; the bind itself says more.
fn host_port(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.into()),
        _ => Err("must be HOST:PORT, e.g. 127.0.0.1:4000".into()),
    }
}

/// `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`.
fn flag(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "off" => Ok(false),
        "1" | "true" | "yes" | "on" => Ok(true),
        _ => Err("must be 1 or 0 (true/false, yes/no)".into()),
    }
}

/// Every setting (flag and environment variable; default in brackets).
#[derive(clap::Args, Debug, Clone)]
pub struct Settings {
    /// Where Ollama is; several hosts separated by commas form a pool.
    #[arg(long, env, default_value = "http://localhost:11434")]
    pub ollama_base_url: String,
    /// With several hosts, how often each is asked for its models and loaded models.
    #[arg(long, env, default_value = "10", value_parser = clap::value_parser!(u64).range(1..))]
    pub pool_refresh_secs: u64,
    /// Conversations kept on their host; 0 off.
    #[arg(long, env, default_value = "10000")]
    pub pool_sessions: usize,
    /// Requests a host with the model loaded takes before an idle host without it is as good (OLLAMA_NUM_PARALLEL).
    #[arg(long, env, default_value = "1", value_parser = clap::value_parser!(u64).range(1..))]
    pub pool_warm_slots: u64,
    /// Sent to Ollama as Authorization: Bearer <key>.
    #[arg(long, env, hide_env_values = true, value_parser = secret)]
    pub ollama_api_key: Option<Secret>,
    /// Where the proxy listens.
    #[arg(long, env, default_value = "127.0.0.1:4000", value_parser = host_port)]
    pub listen_addr: String,
    /// An admin key clients may send (Authorization: Bearer or x-api-key), named default; also with KEYS_FILE.
    #[arg(long, env, hide_env_values = true, value_parser = secret)]
    pub proxy_api_key: Option<Secret>,
    /// Named keys (digests), admin flags and limits per key.
    #[arg(long, env)]
    pub keys_file: Option<PathBuf>,
    /// How often KEYS_FILE is checked for changes; 0: SIGHUP only.
    #[arg(long, env, default_value = "2")]
    pub keys_poll_secs: u64,
    /// 1: without keys, model management, blobs and Ollama's account and cloud endpoints are open to everyone.
    #[arg(long, env, default_value = "0", value_parser = flag, action = clap::ArgAction::Set)]
    pub open_admin_paths: bool,
    /// Comma list of models that get think: true by default.
    #[arg(long, env)]
    pub think_models: Option<String>,
    /// auto | drop | forward, per model with [model]mode [auto].
    #[arg(long, env)]
    pub reasoning: Option<String>,
    /// Default options, e.g. num_ctx=32768;[qwen3:8b]num_ctx=65536.
    #[arg(long, env)]
    pub ollama_options: Option<String>,
    /// Client names to Ollama models, e.g. gpt-4o=qwen3:8b.
    #[arg(long, env)]
    pub model_aliases: Option<String>,
    /// Ollama model for claude-* names without an alias.
    #[arg(long, env)]
    pub default_model: Option<String>,
    /// Secret that signs thinking handed to clients [random per start].
    #[arg(long, env, hide_env_values = true, value_parser = secret)]
    pub thinking_key: Option<Secret>,
    /// Silence towards a streaming client before a keep-alive; 0 off.
    #[arg(long, env, default_value = "10")]
    pub keepalive_secs: u64,
    /// Seconds without a byte from Ollama before giving up; 0 off.
    #[arg(long, env, default_value = "300")]
    pub upstream_idle_timeout: u64,
    /// Largest translated request body [33554432].
    #[arg(long, env)]
    pub max_body_bytes: Option<usize>,
    /// Longest stream line / largest answer read whole [33554432].
    #[arg(long, env)]
    pub max_answer_bytes: Option<usize>,
    /// Memory translated requests may hold together [268435456].
    #[arg(long, env)]
    pub request_memory_bytes: Option<usize>,
    /// First byte, request head, body, idle connection; 0 off.
    #[arg(long, env, default_value = "30")]
    pub client_timeout_secs: u64,
    /// Client connections at once; 16 more get /livez only. Each may take a connection to Ollama too: keep twice this under `ulimit -n`.
    #[arg(long, env, default_value = "512", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// How often /readyz asks Ollama GET /api/version; 0: no probe (ready until a shutdown).
    #[arg(long, env, default_value = "5")]
    pub readiness_probe_secs: u64,
    /// On SIGTERM, keep accepting with /readyz at 503 this long.
    #[arg(long, env, default_value = "0")]
    pub shutdown_drain_secs: u64,
    /// Then let in-flight streams finish this long.
    #[arg(long, env, default_value = "30")]
    pub shutdown_grace_secs: u64,
    #[command(flatten)]
    pub search: crate::search::SearchSettings,
    /// Responses responses kept for previous_response_id; 0 none.
    #[arg(long, env, default_value = "1024")]
    pub responses_store_entries: usize,
    /// Memory those kept responses may take.
    #[arg(long, env, default_value = "67108864")]
    pub responses_store_bytes: usize,
    /// How long a response is kept.
    #[arg(long, env, default_value = "1800")]
    pub responses_store_ttl_secs: u64,
    /// Log filter.
    #[arg(long, env, default_value = "info")]
    pub rust_log: String,
    /// Export spans over OTLP/HTTP to <endpoint>/v1/traces, e.g. http://127.0.0.1:4318; needs a build with --features otlp.
    #[arg(long, env)]
    pub otel_exporter_otlp_endpoint: Option<String>,
}

/// What the settings make: the hosts, the layer, who may do what.
pub struct Built {
    pub hosts: Vec<Uri>,
    pub layer: OllamaTranslateLayer,
    pub access: Access,
    pub keys_file: Option<crate::keys::KeysFile>,
    pub web_search: String,
}

/// `PROXY_API_KEY`'s key name (an admin key, no limit).
pub const DEFAULT_KEY: &str = "default";

impl Settings {
    /// The layer and the rest the settings make; an error names the setting.
    pub fn build(&self) -> Result<Built, String> {
        let hosts = parse_hosts(&self.ollama_base_url)?;
        let mut layer = OllamaTranslateLayer::new();
        if let Some(models) = &self.think_models {
            layer = layer.think_models(models.split(',').map(str::trim));
        }
        if let Some(s) = &self.reasoning {
            layer = crate::spec::reasoning(layer, s).map_err(|e| format!("REASONING: {e}"))?;
        }
        if let Some(s) = &self.ollama_options {
            layer = crate::spec::options(layer, s).map_err(|e| format!("OLLAMA_OPTIONS: {e}"))?;
        }
        if let Some(s) = &self.model_aliases {
            layer = crate::spec::aliases(layer, s).map_err(|e| format!("MODEL_ALIASES: {e}"))?;
        }
        if let Some(model) = &self.default_model {
            layer = layer.default_model(model);
        }
        if let Some(secret) = &self.thinking_key {
            layer = layer.thinking_key(&secret.0);
        }
        if let Some(n) = self.max_body_bytes {
            layer = layer.max_request_bytes(n);
        }
        if let Some(n) = self.max_answer_bytes {
            layer = layer.max_answer_bytes(n);
        }
        if let Some(n) = self.request_memory_bytes {
            layer = layer.request_memory(n);
        }
        if let Some(k) = &self.ollama_api_key {
            http::HeaderValue::from_str(&format!("Bearer {}", k.0))
                .map_err(|e| format!("OLLAMA_API_KEY: {e}"))?;
        }
        let (access, keys_file) = self.access()?;
        // With several hosts the layer does not know which one answers; the
        // pool's own metrics name it.
        if let (Some(authority), 1) = (hosts[0].authority(), hosts.len()) {
            layer = layer.server_address(authority.as_str());
        }
        let (search, web_search) = self.search.config(&hosts)?;
        let layer = layer
            .timer(TokioTimer)
            .keepalive(secs(self.keepalive_secs))
            .upstream_idle_timeout(secs(self.upstream_idle_timeout))
            .request_body_timeout(secs(self.client_timeout_secs))
            .access(access.clone())
            .web_search(search)
            .response_store(
                self.responses_store_entries,
                self.responses_store_bytes,
                secs(self.responses_store_ttl_secs),
            );
        Ok(Built {
            hosts,
            layer,
            access,
            keys_file,
            web_search,
        })
    }

    /// `KEYS_FILE`, `PROXY_API_KEY` (one admin key named `default`),
    /// `KEYS_POLL_SECS` and `OPEN_ADMIN_PATHS`: who may do what.
    fn access(&self) -> Result<(Access, Option<crate::keys::KeysFile>), String> {
        let default = self.proxy_api_key.as_ref().map(|k| {
            Key::new(DEFAULT_KEY, KeyDigest::of(&k.0))
                .map(|k| k.admin(true))
                .map_err(|e| format!("PROXY_API_KEY: {e}"))
        });
        let default = default.transpose()?;
        let (access, file) = match (&self.keys_file, default) {
            (Some(path), default) => {
                let file = crate::keys::KeysFile::open(path, default, secs(self.keys_poll_secs))?;
                (file.access(), Some(file))
            }
            (None, Some(key)) => {
                let mut keys = Keys::new();
                keys.insert(key)
                    .map_err(|e| format!("PROXY_API_KEY: {e}"))?;
                (Access::new(keys), None)
            }
            (None, None) => (Access::open().open_admin_paths(self.open_admin_paths), None),
        };
        if self.open_admin_paths && access.requires_key() {
            return Err(
                "OPEN_ADMIN_PATHS opens the admin paths when no key is configured; \
                 with KEYS_FILE or PROXY_API_KEY they need an admin key (mark one `admin`)"
                    .into(),
            );
        }
        Ok((access, file))
    }
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `OLLAMA_BASE_URL`: one or more `http://` URLs, separated by commas.
fn parse_hosts(bases: &str) -> Result<Vec<Uri>, String> {
    let mut hosts: Vec<Uri> = Vec::new();
    for base in bases.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let uri: Uri = base
            .trim_end_matches('/')
            .parse()
            .map_err(|e| format!("OLLAMA_BASE_URL {base:?}: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(format!(
                "OLLAMA_BASE_URL {base:?} must be an http:// URL with a host"
            ));
        }
        if hosts.contains(&uri) {
            return Err(format!("OLLAMA_BASE_URL names {base:?} twice"));
        }
        hosts.push(uri);
    }
    let max = 64;
    match hosts.len() {
        0 => Err("OLLAMA_BASE_URL names no host".into()),
        n if n > max => Err(format!(
            "OLLAMA_BASE_URL names {n} hosts; at most {max} are served"
        )),
        _ => Ok(hosts),
    }
}

/// The hosts as the start line shows them.
pub fn shown(hosts: &[Uri]) -> String {
    hosts
        .iter()
        .map(base_display)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Removes blank setting variables (they count as unset) and trims the
/// others: call before parsing, while the process has one thread.
pub fn tidy_env() {
    use clap::CommandFactory;
    for arg in Args::command().get_arguments() {
        let Some(name) = arg.get_env() else { continue };
        let Some(value) = std::env::var_os(name) else {
            continue;
        };
        let Some(text) = value.to_str() else { continue };
        match text.trim() {
            "" => std::env::remove_var(name),
            t if t != text => std::env::set_var(name, t),
            _ => {}
        }
    }
}
