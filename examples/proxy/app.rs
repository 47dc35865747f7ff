//! The proxy's composition: hyper server → trace → OllamaTranslateLayer →
//! rebase onto OLLAMA_BASE_URL → hyper-util client. Shared with the
//! end-to-end tests, which run exactly this code on an ephemeral port.
#![allow(dead_code)]

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use ollama_translate::search::{HttpSearch, SearchFormat, WebSearchConfig};
use ollama_translate::{BoxError, OllamaTranslateLayer, Pool, RequestBody, TranslateBody};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;

#[path = "spec.rs"]
pub mod spec;

#[path = "conns.rs"]
pub mod conns;

#[path = "keys.rs"]
pub mod keys;

/// tokio's clock and sleeps, for the layer's keep-alives and timeouts.
pub struct TokioTimer;

impl ollama_translate::Timer for TokioTimer {
    fn sleep_until(&self, deadline: std::time::Instant) -> ollama_translate::Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// Everything the proxy reads from its environment. Its `Debug` hides the
/// keys.
#[derive(Clone)]
pub struct Settings {
    pub listen: String,
    /// The first of `hosts`.
    pub ollama: Uri,
    /// Every host of `OLLAMA_BASE_URL` (comma-separated): one is used as
    /// it is; several form a [`Pool`].
    pub hosts: Vec<Uri>,
    /// How often a pool asks its hosts for their models (`POOL_REFRESH_SECS`).
    pub pool_refresh: Duration,
    /// Conversations a pool remembers (`POOL_SESSIONS`; 0: no stickiness).
    pub pool_sessions: usize,
    /// Requests a host with the model loaded takes before it is no better
    /// than one without (`POOL_WARM_SLOTS`).
    pub pool_warm_slots: usize,
    /// `MAX_BODY_BYTES`, which a pool also applies to native requests it
    /// reads to find their model.
    pub max_body_bytes: Option<usize>,
    /// `REQUEST_MEMORY_BYTES`, which a pool also applies to the native
    /// bodies it reads.
    pub request_memory: Option<usize>,
    /// `UPSTREAM_IDLE_TIMEOUT`, which a pool also gives each host for the
    /// first byte of its answer (0: none).
    pub upstream_idle: Duration,
    /// Sent to Ollama as `Authorization: Bearer …` (an Ollama behind an
    /// authenticating reverse proxy).
    pub ollama_api_key: Option<HeaderValue>,
    pub layer: OllamaTranslateLayer,
    pub shutdown_grace: Duration,
    /// How long a client may take to send its request head (and the first
    /// byte of a connection), and how long a kept-alive HTTP/1 connection
    /// may sit idle; 0 disables.
    pub client_timeout: Duration,
    /// `MAX_CONNECTIONS`: client connections served at once. Past it, a
    /// few more (`conns::RESERVED_CONNECTIONS`) get only the health
    /// endpoints (other requests a 503); past those, new connections are
    /// closed at once.
    pub max_connections: usize,
    /// Who may do what: the layer's [`Access`](ollama_translate::access::Access)
    /// (`KEYS_FILE`, `PROXY_API_KEY`, `OPEN_ADMIN_PATHS`).
    pub access: ollama_translate::access::Access,
    /// `KEYS_FILE`, reloaded while the proxy serves.
    pub keys_file: Option<keys::KeysFile>,
    /// The keys `/metrics` needs (an admin key) when keys are required.
    pub metrics_key: Option<ollama_translate::access::Access>,
    /// How often a background task asks Ollama `GET /api/version` for
    /// `/readyz` (each probe waits no longer than this). `None` when
    /// `READINESS_PROBE_SECS` is unset: the binary then uses
    /// [`DEFAULT_READINESS_PROBE`]; an embedder (or a test) that leaves it
    /// `None` gets no probe, and `/readyz` reports only a shutdown.
    pub readiness_probe: Option<Duration>,
    /// On shutdown, how long the proxy keeps accepting connections, with
    /// `/readyz` answering 503, before it stops accepting.
    pub shutdown_drain: Duration,
    /// Where the layer's web searches run and their bounds (`WEB_SEARCH`
    /// and the `WEB_SEARCH_*` settings); the layer has it too.
    pub web_search: WebSearchConfig,
    /// What the line logged at start says of `web_search` (never the key).
    pub web_search_shown: String,
}

/// `MAX_CONNECTIONS` when unset. Each client connection may take a
/// connection to Ollama too: keep twice this under the process's file
/// limit (`ulimit -n`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// The readiness probe's period when `READINESS_PROBE_SECS` is unset.
pub const DEFAULT_READINESS_PROBE: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The layer's own Debug hides its API and thinking keys.
        let ollama_api_key = match self.ollama_api_key {
            Some(_) => "Some(<redacted>)",
            None => "None",
        };
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("ollama", &self.ollama)
            .field("hosts", &self.hosts)
            .field("ollama_api_key", &format_args!("{ollama_api_key}"))
            .field("layer", &self.layer)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("client_timeout", &self.client_timeout)
            .field("max_connections", &self.max_connections)
            .field("access", &self.access)
            .field(
                "keys_file",
                &self
                    .keys_file
                    .as_ref()
                    .map(|f| f.path.display().to_string()),
            )
            .field("readiness_probe", &self.readiness_probe)
            .field("shutdown_drain", &self.shutdown_drain)
            .field("web_search", &self.web_search_shown)
            .finish()
    }
}

impl Settings {
    /// Reads the settings through `get` (the process environment in `main`).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let listen = non_empty("LISTEN_ADDR").unwrap_or_else(|| "127.0.0.1:4000".into());
        let listen = listen.trim().to_string();
        // A host (name or address) and a port; the bind itself says more.
        match listen.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => {
                return Err(format!(
                    "LISTEN_ADDR {listen:?} must be HOST:PORT, e.g. 127.0.0.1:4000"
                ))
            }
        }
        let bases = non_empty("OLLAMA_BASE_URL").unwrap_or_else(|| "http://localhost:11434".into());
        let hosts = parse_hosts(&bases)?;
        let ollama = hosts[0].clone();
        let mut layer = OllamaTranslateLayer::new();
        if let Some(models) = non_empty("THINK_MODELS") {
            layer = layer.think_models(models.split(',').map(str::trim));
        }
        if let Some(s) = non_empty("REASONING") {
            layer = spec::reasoning(layer, &s).map_err(|e| format!("REASONING: {e}"))?;
        }
        if let Some(s) = non_empty("OLLAMA_OPTIONS") {
            layer = spec::options(layer, &s).map_err(|e| format!("OLLAMA_OPTIONS: {e}"))?;
        }
        if let Some(s) = non_empty("MODEL_ALIASES") {
            layer = spec::aliases(layer, &s).map_err(|e| format!("MODEL_ALIASES: {e}"))?;
        }
        if let Some(model) = non_empty("DEFAULT_MODEL") {
            layer = layer.default_model(model.trim());
        }
        if let Some(secret) = non_empty("THINKING_KEY") {
            layer = layer.thinking_key(secret.trim());
        }
        let max_body_bytes = match non_empty("MAX_BODY_BYTES") {
            Some(n) => Some(
                n.trim()
                    .parse::<usize>()
                    .map_err(|e| format!("MAX_BODY_BYTES {n:?}: {e}"))?,
            ),
            None => None,
        };
        if let Some(n) = max_body_bytes {
            layer = layer.max_request_bytes(n);
        }
        let secs = |key: &str, default: u64| -> Result<Duration, String> {
            match non_empty(key) {
                Some(s) => s
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|e| format!("{key} {s:?}: {e}")),
                None => Ok(Duration::from_secs(default)),
            }
        };
        let bytes = |key: &str| -> Result<Option<usize>, String> {
            non_empty(key)
                .map(|n| n.trim().parse().map_err(|e| format!("{key} {n:?}: {e}")))
                .transpose()
        };
        if let Some(n) = bytes("MAX_ANSWER_BYTES")? {
            layer = layer.max_answer_bytes(n);
        }
        let request_memory = bytes("REQUEST_MEMORY_BYTES")?;
        if let Some(n) = request_memory {
            layer = layer.request_memory(n);
        }
        let client_timeout = secs("CLIENT_TIMEOUT_SECS", 30)?;
        let max_connections = bytes("MAX_CONNECTIONS")?.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err("MAX_CONNECTIONS must be at least 1".into());
        }
        let upstream_idle = secs("UPSTREAM_IDLE_TIMEOUT", 300)?;
        layer = layer
            .with_timer(TokioTimer)
            .keepalive(secs("KEEPALIVE_SECS", 10)?)
            .upstream_idle_timeout(upstream_idle)
            .request_body_timeout(client_timeout);
        let (access, keys_file) = access_settings(&non_empty, &secs)?;
        layer = layer.access(access.clone());
        let metrics_key = access.requires_key().then(|| access.clone());
        // With several hosts the layer does not know which one answers; the
        // pool's own metrics name it.
        if let (Some(authority), 1) = (ollama.authority(), hosts.len()) {
            layer = layer.server_address(authority.as_str());
        }
        let pool_refresh = secs("POOL_REFRESH_SECS", 10)?;
        if pool_refresh.is_zero() {
            return Err("POOL_REFRESH_SECS must be at least 1".into());
        }
        let pool_sessions = bytes("POOL_SESSIONS")?.unwrap_or(10_000);
        let pool_warm_slots = bytes("POOL_WARM_SLOTS")?.unwrap_or(1);
        if pool_warm_slots == 0 {
            return Err("POOL_WARM_SLOTS must be at least 1".into());
        }
        let ollama_api_key = match non_empty("OLLAMA_API_KEY") {
            Some(k) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", k.trim()))
                    .map_err(|e| format!("OLLAMA_API_KEY: {e}"))?;
                v.set_sensitive(true); // kept out of HPACK tables and Debug
                Some(v)
            }
            None => None,
        };
        let shutdown_grace = match non_empty("SHUTDOWN_GRACE_SECS") {
            Some(s) => Duration::from_secs(
                s.trim()
                    .parse()
                    .map_err(|e| format!("SHUTDOWN_GRACE_SECS {s:?}: {e}"))?,
            ),
            None => Duration::from_secs(30),
        };
        let readiness_probe = match non_empty("READINESS_PROBE_SECS") {
            Some(_) => match secs("READINESS_PROBE_SECS", 0)? {
                d if d.is_zero() => {
                    return Err("READINESS_PROBE_SECS must be at least 1".into());
                }
                d => Some(d),
            },
            None => None,
        };
        let shutdown_drain = secs("SHUTDOWN_DRAIN_SECS", 0)?;
        let (web_search, web_search_shown) = web_search(&non_empty, &hosts)?;
        layer = layer.web_search(web_search.clone());
        // Kept Responses responses, for previous_response_id.
        layer = layer.response_store(
            bytes("RESPONSES_STORE_ENTRIES")?.unwrap_or(1024),
            bytes("RESPONSES_STORE_BYTES")?.unwrap_or(64 * 1024 * 1024),
            secs("RESPONSES_STORE_TTL_SECS", 1800)?,
        );
        Ok(Settings {
            web_search,
            web_search_shown,
            client_timeout,
            max_connections,
            access,
            keys_file,
            metrics_key,
            readiness_probe,
            shutdown_drain,
            listen,
            ollama,
            hosts,
            pool_refresh,
            pool_sessions,
            pool_warm_slots,
            max_body_bytes,
            request_memory,
            upstream_idle,
            ollama_api_key,
            layer,
            shutdown_grace,
        })
    }
}

/// `KEYS_FILE`, `PROXY_API_KEY` (one admin key named `default`),
/// `KEYS_POLL_SECS` and `OPEN_ADMIN_PATHS`: who may do what.
fn access_settings(
    non_empty: &dyn Fn(&str) -> Option<String>,
    secs: &dyn Fn(&str, u64) -> Result<Duration, String>,
) -> Result<(ollama_translate::access::Access, Option<keys::KeysFile>), String> {
    use ollama_translate::access::{Access, Key, KeyDigest, Keys};
    let default = non_empty("PROXY_API_KEY").map(|k| {
        Key::new(keys::DEFAULT_NAME, KeyDigest::of(&k))
            .map(|k| k.admin(true))
            .map_err(|e| format!("PROXY_API_KEY: {e}"))
    });
    let default = default.transpose()?;
    let poll = secs("KEYS_POLL_SECS", 2)?;
    let open_admin = keys::flag("OPEN_ADMIN_PATHS", non_empty("OPEN_ADMIN_PATHS"))?;
    let (access, file) = match (non_empty("KEYS_FILE"), default) {
        (Some(path), default) => {
            let file = keys::KeysFile::open(path.trim(), default, poll)?;
            (file.access(), Some(file))
        }
        (None, Some(key)) => {
            let mut keys = Keys::new();
            keys.insert(key)
                .map_err(|e| format!("PROXY_API_KEY: {e}"))?;
            (Access::new(keys), None)
        }
        (None, None) => (Access::open().open_admin_paths(open_admin), None),
    };
    if open_admin && access.requires_key() {
        return Err(
            "OPEN_ADMIN_PATHS opens the admin paths when no key is configured; \
             with KEYS_FILE or PROXY_API_KEY they need an admin key (mark one `admin`)"
                .into(),
        );
    }
    Ok((access, file))
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
    if hosts.is_empty() {
        return Err("OLLAMA_BASE_URL names no host".into());
    }
    if hosts.len() > 64 {
        return Err(format!(
            "OLLAMA_BASE_URL names {} hosts; at most {} are served",
            hosts.len(),
            64
        ));
    }
    Ok(hosts)
}

/// Ollama's public web search API (`WEB_SEARCH=ollama-api` without
/// `WEB_SEARCH_URL`).
pub const OLLAMA_API_URL: &str = "https://ollama.com";

/// `WEB_SEARCH` and the `WEB_SEARCH_*` settings: the layer's
/// [`WebSearchConfig`], and what the line logged at start says of it
/// (never the key).
fn web_search(
    non_empty: &dyn Fn(&str) -> Option<String>,
    hosts: &[Uri],
) -> Result<(WebSearchConfig, String), String> {
    // A number of at least `min` (and at most `max`), `default` when unset.
    let number = |key: &str, default: u64, min: u64, max: Option<u64>| -> Result<u64, String> {
        let Some(s) = non_empty(key) else {
            return Ok(default);
        };
        let n: u64 = s.trim().parse().map_err(|e| format!("{key} {s:?}: {e}"))?;
        match max {
            Some(max) if n < min || n > max => Err(format!("{key} {s:?} must be {min} to {max}")),
            None if n < min => Err(format!("{key} must be at least {min}")),
            _ => Ok(n),
        }
    };
    let max_results = ollama_translate::search::MAX_RESULTS as u64;
    let results = number("WEB_SEARCH_RESULTS", 5, 1, Some(max_results))?;
    let result_bytes = number("WEB_SEARCH_RESULT_BYTES", 8192, 256, None)?;
    // An hour at most: a deadline is an instant, and instants overflow.
    let timeout = number("WEB_SEARCH_TIMEOUT_SECS", 15, 1, Some(3600))?;
    let max_uses = number("WEB_SEARCH_MAX_USES", 3, 1, Some(u32::MAX.into()))?;
    let cap = number("WEB_SEARCH_MAX_USES_CAP", 10, 1, Some(u32::MAX.into()))?;
    // An explicit default above the cap would silently be the cap.
    if non_empty("WEB_SEARCH_MAX_USES").is_some() && max_uses > cap {
        return Err(format!(
            "WEB_SEARCH_MAX_USES ({max_uses}) is above WEB_SEARCH_MAX_USES_CAP ({cap})"
        ));
    }
    let max_uses = max_uses.min(cap);
    let url = non_empty("WEB_SEARCH_URL").map(|u| u.trim().to_string());
    let key = non_empty("WEB_SEARCH_API_KEY").map(|k| k.trim().to_string());
    if let Some(k) = &key {
        HeaderValue::from_str(&format!("Bearer {k}"))
            .map_err(|e| format!("WEB_SEARCH_API_KEY: {e}"))?;
    }
    let kind = non_empty("WEB_SEARCH").map(|k| k.trim().to_ascii_lowercase());
    let Some((config, shown)) =
        search_backend(kind.as_deref().unwrap_or("ollama"), url, key, hosts)?
    else {
        return Ok((
            WebSearchConfig::off(),
            "off (WEB_SEARCH=off): clients' web search tools are dropped".into(),
        ));
    };
    let config = config
        .max_results(results as usize)
        .result_bytes(result_bytes as usize)
        .timeout(Duration::from_secs(timeout))
        .default_max_uses(max_uses as u32)
        .max_uses_cap(cap as u32);
    let shown = format!(
        "{shown}; {results} results a search, {result_bytes} bytes of text each, {timeout} s \
         a search, {max_uses} searches a request unless the client says (at most {cap})"
    );
    Ok((config, shown))
}

/// The backend `WEB_SEARCH` (`kind`) names, with `WEB_SEARCH_URL` and
/// `WEB_SEARCH_API_KEY`, and what the start line says of it; `None` for
/// `off`.
fn search_backend(
    kind: &str,
    url: Option<String>,
    key: Option<String>,
    hosts: &[Uri],
) -> Result<Option<(WebSearchConfig, String)>, String> {
    let backend = match kind {
        "ollama" => {
            for (var, value) in [("WEB_SEARCH_URL", &url), ("WEB_SEARCH_API_KEY", &key)] {
                if value.is_some() {
                    return Err(format!(
                        "{var} is set, but WEB_SEARCH is ollama (the default: searches go \
                         through OLLAMA_BASE_URL); set WEB_SEARCH=searxng or ollama-api"
                    ));
                }
            }
            let shown: Vec<String> = hosts.iter().map(base_display).collect();
            let config = WebSearchConfig::new();
            (
                config,
                format!(
                    "through Ollama at {} (POST /api/experimental/web_search)",
                    shown.join(", ")
                ),
            )
        }
        "searxng" => {
            let url = url.ok_or(
                "WEB_SEARCH=searxng needs WEB_SEARCH_URL, the SearXNG instance's address \
                 (e.g. http://searxng:8080)",
            )?;
            let base = search_url(&url)?;
            let mut search = HttpSearch::<_, Full<Bytes>>::new(
                search_client(),
                base.clone(),
                SearchFormat::Searxng,
            );
            let mut shown = format!("SearXNG at {}", base_display(&base));
            if let Some(k) = key {
                search = search.api_key(k);
                shown.push_str(" (with WEB_SEARCH_API_KEY)");
            }
            (WebSearchConfig::with_backend(search), shown)
        }
        "ollama-api" => {
            let key = key.ok_or(
                "WEB_SEARCH=ollama-api needs WEB_SEARCH_API_KEY, an API key from ollama.com",
            )?;
            let base = search_url(url.as_deref().unwrap_or(OLLAMA_API_URL))?;
            let search = HttpSearch::<_, Full<Bytes>>::new(
                search_client(),
                base.clone(),
                SearchFormat::OllamaApi,
            )
            .api_key(key);
            (
                WebSearchConfig::with_backend(search),
                format!(
                    "Ollama's web search API at {} (with WEB_SEARCH_API_KEY)",
                    base_display(&base)
                ),
            )
        }
        "off" => return Ok(None),
        other => {
            return Err(format!(
                "WEB_SEARCH {other:?} must be ollama, searxng, ollama-api or off"
            ))
        }
    };
    Ok(Some(backend))
}

/// `WEB_SEARCH_URL`: an `http://` or `https://` URL with a host, maybe a
/// path prefix; no credentials (`WEB_SEARCH_API_KEY` carries a key), no query.
fn search_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("WEB_SEARCH_URL {url:?}: {e}"))?;
    let Some(authority) = uri.authority() else {
        return Err(format!(
            "WEB_SEARCH_URL {url:?} must be an http:// or https:// URL with a host"
        ));
    };
    if authority.as_str().contains('@') {
        // Not echoed: it holds a password.
        return Err(
            "WEB_SEARCH_URL must not hold credentials (user:password@); use WEB_SEARCH_API_KEY"
                .into(),
        );
    }
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "WEB_SEARCH_URL {url:?} must be an http:// or https:// URL with a host"
        ));
    }
    if uri.query().is_some() {
        return Err(format!("WEB_SEARCH_URL {url:?} must not have a query"));
    }
    Ok(uri)
}

/// The client search backends are reached with: `http://`, and `https://`
/// through rustls with the Mozilla roots of `webpki-roots` (no system
/// certificates needed); HTTP/1.1, the connect timeout Ollama has.
pub type SearchClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A [`SearchClient`].
pub fn search_client() -> SearchClient {
    let mut http = connector();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut http::HeaderMap) {
    // Headers named by `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
    h.remove(header::TRANSFER_ENCODING);
}

/// Points a request at Ollama: absolute URI, Ollama's own `Host` (Ollama
/// refuses non-local hosts), no hop-by-hop headers, no client credentials.
fn rebase<B>(base: &Uri, api_key: Option<&HeaderValue>, mut req: Request<B>) -> Request<B> {
    let base_path = base.path().trim_end_matches('/');
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut parts = base.clone().into_parts();
    if let Ok(p) = format!("{base_path}{pq}").parse() {
        parts.path_and_query = Some(p);
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    // Ollama speaks HTTP/1.1 (the client may have spoken HTTP/2 to us).
    *req.version_mut() = http::Version::HTTP_11;
    let h = req.headers_mut();
    strip_hop_by_hop(h);
    h.remove(header::AUTHORIZATION);
    h.remove("x-api-key");
    if let Some(key) = api_key {
        h.insert(header::AUTHORIZATION, key.clone());
    }
    if let Some(authority) = base.authority() {
        if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
            h.insert(header::HOST, v);
        }
    }
    req
}

pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A failed call to Ollama, naming where the proxy looked and the setting
/// that says so; the client's error is its `source()`. The layer (and
/// [`finish_response`]) join the chain into the 502's message.
#[derive(Debug)]
pub struct OllamaError {
    base: std::sync::Arc<str>,
    source: hyper_util::client::legacy::Error,
}

impl OllamaError {
    fn new(base: std::sync::Arc<str>, source: hyper_util::client::legacy::Error) -> OllamaError {
        OllamaError { base, source }
    }
}

impl std::fmt::Display for OllamaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.source.is_connect() {
            write!(f, "connecting to {} (OLLAMA_BASE_URL) failed", self.base)
        } else {
            write!(f, "the request to {} (OLLAMA_BASE_URL) failed", self.base)
        }
    }
}

impl std::error::Error for OllamaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `OLLAMA_BASE_URL` as people write it: no trailing `/` on a bare host.
fn base_display(base: &Uri) -> String {
    base.to_string().trim_end_matches('/').to_string()
}

/// An error and its sources, joined by `: ` (a source that repeats what
/// is already said is left out).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let part = s.to_string();
        if !msg.contains(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        src = s.source();
    }
    msg
}

fn json_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut res = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

fn bad_gateway(e: &OllamaError) -> Response<ProxyBody> {
    let msg = error_chain(e);
    tracing::warn!(error = %msg, "Ollama is unreachable");
    let body = serde_json::json!({"error": format!("could not reach Ollama: {msg}")}).to_string();
    json_response(StatusCode::BAD_GATEWAY, body)
}

/// Normalizes what goes back to the client: a boxed body, no hop-by-hop
/// headers, and a 502 when Ollama cannot be reached for a passed-through
/// request (translated ones already answer in their client's dialect).
fn finish_response<B>(
    r: Result<Response<TranslateBody<B>>, OllamaError>,
) -> Result<Response<ProxyBody>, BoxError>
where
    TranslateBody<B>: http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static,
{
    Ok(match r {
        Ok(mut res) => {
            strip_hop_by_hop(res.headers_mut());
            res.map(|b| b.boxed_unsync())
        }
        Err(e) => bad_gateway(&e),
    })
}

/// What `/readyz` answers: whether Ollama answered the last probe, and
/// whether a shutdown has begun. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Readiness(std::sync::Arc<ReadinessState>);

pub struct ReadinessState {
    ollama_ok: AtomicBool,
    draining: AtomicBool,
    /// Why the last probe failed.
    reason: std::sync::Mutex<String>,
}

impl Readiness {
    /// Without a probe there is nothing to wait for: ready until shutdown.
    fn new(probing: bool) -> Readiness {
        Readiness(std::sync::Arc::new(ReadinessState {
            ollama_ok: AtomicBool::new(!probing),
            draining: AtomicBool::new(false),
            reason: std::sync::Mutex::new("Ollama has not been probed yet".into()),
        }))
    }

    fn set(&self, probe: &Result<(), ProbeFailure>) {
        match probe {
            Ok(()) => self.0.ollama_ok.store(true, Ordering::SeqCst),
            Err(why) => {
                *self.0.reason.lock().unwrap_or_else(|p| p.into_inner()) = why.message().into();
                self.0.ollama_ok.store(false, Ordering::SeqCst);
            }
        }
    }

    fn drain(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready, else why not.
    pub fn state(&self) -> Result<(), String> {
        if self.0.draining.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        if self.0.ollama_ok.load(Ordering::SeqCst) {
            return Ok(());
        }
        Err(self
            .0
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    fn response(&self) -> Response<ProxyBody> {
        match self.state() {
            Ok(()) => json_response(StatusCode::OK, r#"{"status":"ready"}"#.into()),
            Err(reason) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "not ready", "reason": reason}).to_string(),
            ),
        }
    }
}

/// Why a probe failed; the message names the address.
enum ProbeFailure {
    /// No HTTP answer at all.
    Unreachable(String),
    /// An answer, but not a success, or not in time.
    NotReady(String),
}

impl ProbeFailure {
    fn message(&self) -> &str {
        match self {
            ProbeFailure::Unreachable(m) | ProbeFailure::NotReady(m) => m,
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            ProbeFailure::Unreachable(_) => {
                "Start it with `ollama serve`, or point OLLAMA_BASE_URL at it."
            }
            ProbeFailure::NotReady(_) => {
                "Check OLLAMA_BASE_URL (and OLLAMA_API_KEY if Ollama sits behind an authenticating proxy)."
            }
        }
    }
}

/// Asks Ollama `GET /api/version` once, within `timeout`.
async fn probe_once(
    client: &Client<HttpConnector, Empty<Bytes>>,
    base: &Uri,
    api_key: Option<&HeaderValue>,
    timeout: Duration,
) -> Result<(), ProbeFailure> {
    let shown = base_display(base);
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = Uri::from_static("/api/version");
    let req = rebase(base, api_key, req);
    let ask = async {
        let res = client.request(req).await.map_err(|e| {
            ProbeFailure::Unreachable(format!(
                "Ollama is not reachable at {shown}: {}",
                error_chain(&e)
            ))
        })?;
        let status = res.status();
        // Read the (small) answer, so the connection can be used again.
        let _ = Limited::new(res.into_body(), 64 * 1024).collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(ProbeFailure::NotReady(format!(
                "Ollama at {shown} answered {status} to GET /api/version"
            )))
        }
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(r) => r,
        Err(_) => Err(ProbeFailure::NotReady(format!(
            "Ollama at {shown} did not answer GET /api/version within {} s",
            timeout.as_secs()
        ))),
    }
}

/// Probes Ollama every `every`, records the result in `readiness`, and
/// logs when that changes: a warning when it is not reachable (at start,
/// or later), a line when it is again.
async fn probe_loop(
    readiness: Readiness,
    base: Uri,
    api_key: Option<HeaderValue>,
    every: Duration,
) {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector());
    let shown = base_display(&base);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_ok: Option<bool> = None;
    loop {
        ticks.tick().await;
        let probe = probe_once(&client, &base, api_key.as_ref(), every).await;
        match (&probe, was_ok) {
            (Err(why), None | Some(true)) => {
                tracing::warn!("{}. {}", why.message(), why.hint());
            }
            (Ok(()), Some(false)) => tracing::info!("Ollama is reachable at {shown}"),
            (Ok(()), None) => tracing::debug!("Ollama is reachable at {shown}"),
            _ => {}
        }
        was_ok = Some(probe.is_ok());
        readiness.set(&probe);
    }
}

/// With several hosts: ready while at least one answers the pool's
/// questions; the reason names each host that does not.
async fn pool_probe_loop<S>(readiness: Readiness, pool: Pool<S>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let hosts = pool.hosts();
        let probe = if hosts.iter().any(|h| h.healthy) {
            Ok(())
        } else {
            let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
            Err(ProbeFailure::Unreachable(format!(
                "no Ollama host answers: {}",
                names.join(", ")
            )))
        };
        readiness.set(&probe);
    }
}

/// How long connecting to Ollama may take. A host that does not answer a
/// connection (down behind a firewall, a full accept queue) is then an error
/// — a 502, or with several hosts the next host — instead of a wait as long as
/// the upstream idle timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The connector for Ollama: what `build_http` makes (plain HTTP, TCP
/// keep-alive at the pool's idle timeout), with [`CONNECT_TIMEOUT`].
fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_keepalive(Some(Duration::from_secs(90)));
    c.set_connect_timeout(Some(CONNECT_TIMEOUT));
    c
}

/// Aborts a spawned task when dropped (with `serve`'s future).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish
/// (up to the grace period).
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError> {
    let addr: SocketAddr = listener.local_addr()?;
    let shown: Vec<String> = settings.hosts.iter().map(base_display).collect();
    let shown = shown.join(", ");
    println!("ollama-translate listening on http://{addr} (Ollama at {shown})");
    tracing::info!(%addr, ollama = %shown, "listening");
    tracing::info!("web search: {}", settings.web_search_shown);
    let _keys = keys::start(&settings);

    let readiness = Readiness::new(settings.readiness_probe.is_some());
    let client: Client<_, RequestBody<Incoming>> =
        Client::builder(TokioExecutor::new()).build(connector());
    let ollama_key = settings.ollama_api_key.clone();
    let host = move |base: &Uri| {
        let base = base.clone();
        let key = ollama_key.clone();
        let shown: std::sync::Arc<str> = base_display(&base).into();
        ServiceBuilder::new()
            .map_err(move |e| OllamaError::new(shown.clone(), e))
            .map_request(move |req: Request<RequestBody<Incoming>>| {
                rebase(&base, key.as_ref(), req)
            })
            .service(client.clone())
    };
    let metrics = metrics_handle();
    if let [one] = settings.hosts.as_slice() {
        let _probe = settings.readiness_probe.map(|every| {
            AbortOnDrop(tokio::spawn(probe_loop(
                readiness.clone(),
                one.clone(),
                settings.ollama_api_key.clone(),
                every,
            )))
        });
        let svc = ServiceBuilder::new()
            .layer(TraceLayer::new_for_http())
            .map_result(finish_response)
            .layer(settings.layer.clone())
            .service(host(one));
        let svc = Health {
            inner: svc,
            readiness: readiness.clone(),
            metrics,
            key: settings.metrics_key.clone(),
            in_flight: None,
            limited: None,
        };
        return accept(listener, &settings, shutdown, svc, readiness).await;
    }
    let mut pool = Pool::builder(TokioTimer)
        .refresh_every(settings.pool_refresh)
        .sessions(settings.pool_sessions, Duration::from_secs(600))
        .warm_slots(settings.pool_warm_slots)
        .body_timeout(settings.client_timeout)
        .first_byte_timeout(settings.upstream_idle);
    if let Some(n) = settings.max_body_bytes {
        pool = pool.max_body_bytes(n);
    }
    if let Some(n) = settings.request_memory {
        pool = pool.read_memory(n);
    }
    let pool = pool.build(settings.hosts.iter().map(|b| (base_display(b), host(b))))?;
    let _maintain = AbortOnDrop(tokio::spawn(pool.maintain::<Incoming, _>()));
    let _probe = settings.readiness_probe.map(|every| {
        AbortOnDrop(tokio::spawn(pool_probe_loop(
            readiness.clone(),
            pool.clone(),
            every,
        )))
    });
    let svc = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .map_result(finish_response)
        .layer(settings.layer.clone())
        .service(pool);
    let svc = Health {
        inner: svc,
        readiness: readiness.clone(),
        metrics,
        key: settings.metrics_key.clone(),
        in_flight: None,
        limited: None,
    };
    accept(listener, &settings, shutdown, svc, readiness).await
}

/// Accepts connections and serves `svc` on them until `shutdown`
/// resolves, then lets in-flight requests finish (up to the grace period);
/// connections with nothing in flight close at once.
async fn accept<S, B>(
    listener: TcpListener,
    settings: &Settings,
    shutdown: impl Future<Output = ()>,
    svc: Health<S>,
    readiness: Readiness,
) -> Result<(), BoxError>
where
    Health<S>: tower::Service<Request<Incoming>, Response = Response<B>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    <Health<S> as tower::Service<Request<Incoming>>>::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use conns::{Capacity, InFlight, Phase};
    let builder = server_builder(settings.client_timeout);
    // Past the cap: one request a connection.
    let mut limited_builder = server_builder(settings.client_timeout);
    limited_builder.http1().keep_alive(false);
    let timeout = Some(settings.client_timeout).filter(|d| !d.is_zero());
    let capacity = Capacity::new(settings.max_connections);
    let (phase, phase_rx) = tokio::sync::watch::channel(Phase::Serving);
    // Every connection task holds a sender: when all are gone, all ended.
    let (alive, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    let mut full = false;
    tokio::pin!(shutdown);
    // Armed when the shutdown starts and there is a drain period.
    let drained = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
    tokio::pin!(drained);
    let mut draining = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(place) = capacity.take() else {
                    tracing::debug!("connection closed: MAX_CONNECTIONS and the reserve are taken");
                    continue;
                };
                if place.limited && !full {
                    tracing::warn!(
                        max = capacity.max(),
                        "MAX_CONNECTIONS reached: new connections get only /livez and /readyz (other requests a 503)"
                    );
                }
                full = place.limited;
                let _ = stream.set_nodelay(true);
                let mut svc = svc.clone();
                let (in_flight, watch) = InFlight::new();
                svc.in_flight = Some(in_flight);
                // A reserved place is held briefly: a health check asks at
                // once and is answered at once.
                let (builder, first_byte, idle) = if place.limited {
                    svc.limited = Some(capacity.max());
                    let brief = Some(conns::RESERVED_FOR);
                    (limited_builder.clone(), brief, brief)
                } else {
                    (builder.clone(), timeout, timeout)
                };
                let (phases, alive) = (phase_rx.clone(), alive.clone());
                tokio::spawn(async move {
                    let _held = (place, alive);
                    serve_connection(stream, builder, svc, watch, phases, first_byte, idle).await;
                });
            }
            () = &mut shutdown, if !draining => {
                readiness.drain();
                if settings.shutdown_drain.is_zero() {
                    break;
                }
                tracing::info!(
                    secs = settings.shutdown_drain.as_secs(),
                    "shutting down: /readyz answers 503; still accepting for the drain period"
                );
                draining = true;
                drained.as_mut().reset(tokio::time::Instant::now() + settings.shutdown_drain);
            }
            () = &mut drained, if draining => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down; waiting for in-flight requests");
    phase.send_replace(Phase::Stopping);
    drop(alive);
    tokio::select! {
        _ = all_ended.recv() => {}
        () = tokio::time::sleep(settings.shutdown_grace) => {
            tracing::warn!("grace period over; dropping remaining connections");
            phase.send_replace(Phase::Stopped);
            let _ = tokio::time::timeout(Duration::from_secs(1), all_ended.recv()).await;
        }
    }
    Ok(())
}

/// Serves one connection: closed when nothing has been sent on it within
/// `first_byte`, when nothing has been in flight on it for `idle` (HTTP/1
/// and HTTP/2 alike), at once when a shutdown starts and nothing is in
/// flight (else once what is in flight is answered), and dropped when the
/// grace period is over.
async fn serve_connection<S, B>(
    stream: tokio::net::TcpStream,
    builder: auto::Builder<TokioExecutor>,
    svc: Health<S>,
    mut in_flight: tokio::sync::watch::Receiver<usize>,
    phases: tokio::sync::watch::Receiver<conns::Phase>,
    first_byte: Option<Duration>,
    idle: Option<Duration>,
) where
    Health<S>: tower::Service<Request<Incoming>, Response = Response<B>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    <Health<S> as tower::Service<Request<Incoming>>>::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use conns::{idle_for, reached, Phase, LINGER};
    let (mut stopping, mut stopped) = (phases.clone(), phases);
    // hyper-util picks the protocol from the first bytes with no timer of
    // its own: a peer that sends nothing is dropped at this deadline; from
    // its first byte on, hyper's header-read timeout bounds each request
    // head.
    if let Some(d) = first_byte {
        let mut probe = [0u8; 1];
        tokio::select! {
            peeked = tokio::time::timeout(d, stream.peek(&mut probe)) => match peeked {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    tracing::debug!("connection closed: nothing sent in time");
                    return;
                }
            },
            () = reached(&mut stopping, Phase::Stopping) => return,
        }
    }
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
    tokio::pin!(conn);
    // Asked to close (HTTP/1: after the response in flight; HTTP/2: a
    // GOAWAY); dropped if it has not within `LINGER` of going idle.
    let mut closing = false;
    loop {
        let wait = if closing { Some(LINGER) } else { idle };
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = idle_for(&mut in_flight, wait) => {
                if closing {
                    return;
                }
                tracing::debug!("closing a connection idle for CLIENT_TIMEOUT_SECS");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = reached(&mut stopping, Phase::Stopping), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = reached(&mut stopped, Phase::Stopped) => return,
        }
    }
}

/// The process's Prometheus recorder, installed once (the tests run several
/// proxies in one process), with the GenAI conventions' bucket boundaries:
/// without them histograms would come out as summaries.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use ollama_translate::telemetry as t;
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new().with_recommended_naming(true);
            for (name, buckets) in [
                (t::TOKEN_USAGE, t::TOKEN_BUCKETS),
                (t::OPERATION_DURATION, t::DURATION_BUCKETS),
                (t::TIME_TO_FIRST_CHUNK, t::DURATION_BUCKETS),
                (t::TIME_PER_OUTPUT_CHUNK, t::DURATION_BUCKETS),
                (t::WEB_SEARCH_DURATION, t::DURATION_BUCKETS),
            ] {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
                    .ok()?;
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "another metrics recorder is installed: /metrics is off");
                    None
                }
            }
        })
        .clone()
}

/// Answers the proxy's own paths itself; everything else goes on.
///
/// * `/livez` (and its older name `/healthz`): 200 while the process serves;
///   no key needed, never asks Ollama.
/// * `/readyz`: 200 when Ollama answered the last probe, 503 with the
///   reason otherwise, and 503 from the moment a shutdown starts; no key.
/// * `GET /metrics`: Prometheus' text format; with keys configured, only to
///   requests that carry an admin key.
#[derive(Clone)]
pub struct Health<S> {
    inner: S,
    readiness: Readiness,
    metrics: Option<PrometheusHandle>,
    key: Option<ollama_translate::access::Access>,
    /// The connection's count of requests in flight.
    in_flight: Option<conns::InFlight>,
    /// `Some(MAX_CONNECTIONS)` on a connection past the cap: only the
    /// health endpoints are answered.
    limited: Option<usize>,
}

impl<S> Health<S> {
    /// With keys, `/metrics` needs an admin key (`PROXY_API_KEY` is one).
    fn authorized(&self, req: &Request<Incoming>) -> bool {
        match &self.key {
            None => true,
            Some(access) => access.caller(req.headers()).is_some_and(|c| c.is_admin()),
        }
    }

    /// The answer to `GET /metrics`.
    fn metrics(&self, req: &Request<Incoming>) -> Response<ProxyBody> {
        if !self.authorized(req) {
            let body = serde_json::json!({"error": "missing or invalid API key"});
            return json_response(StatusCode::UNAUTHORIZED, body.to_string());
        }
        let Some(handle) = &self.metrics else {
            let body =
                serde_json::json!({"error": "metrics are off: another recorder is installed"});
            return json_response(StatusCode::NOT_FOUND, body.to_string());
        };
        let mut res = json_response(StatusCode::OK, handle.render());
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        res
    }
}

impl<S, B> tower::Service<Request<Incoming>> for Health<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let Some(guard) = self.in_flight.as_ref().map(conns::InFlight::begin) else {
            return self.route(req);
        };
        let fut = self.route(req);
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|b| conns::Counted::new(b, guard).boxed_unsync()))
        })
    }
}

impl<S, B> Health<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// The proxy's own paths, or the inner service.
    fn route(
        &mut self,
        req: Request<Incoming>,
    ) -> <Self as tower::Service<Request<Incoming>>>::Future {
        match req.uri().path() {
            "/livez" | "/healthz" => {
                let res = json_response(StatusCode::OK, r#"{"status":"ok"}"#.into());
                return Box::pin(async move { Ok(res) });
            }
            "/readyz" => {
                let res = self.readiness.response();
                return Box::pin(async move { Ok(res) });
            }
            _ if self.limited.is_some() => {
                let max = self.limited.unwrap_or_default();
                let body = serde_json::json!({"error": format!(
                    "the proxy is serving its maximum of {max} connections (MAX_CONNECTIONS); retry shortly"
                )});
                let mut res = json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string());
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return Box::pin(async move { Ok(res) });
            }
            "/metrics" if req.method() == http::Method::GET => {
                let res = self.metrics(&req);
                return Box::pin(async move { Ok(res) });
            }
            _ => {}
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|b| b.map_err(Into::into).boxed_unsync()))
        })
    }
}

/// The server's connection settings: a timer, so that hyper's timeouts
/// work at all; HTTP/1 request heads (and idle keep-alive time) bounded by
/// `client_timeout`; HTTP/2 connections pinged to find dead peers, at most
/// hyper's 200 streams each. hyper has no idle timeout for HTTP/2 (a peer
/// that answers PINGs stays): `serve_connection` closes a connection of
/// either kind that has had nothing in flight for `client_timeout`.
fn server_builder(client_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let timeout = Some(client_timeout).filter(|d| !d.is_zero());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Asks the proxy listening on `listen` for `/livez` (a wildcard address
/// is asked on loopback); `Ok` on a 200 within 3 s.
pub async fn healthcheck(listen: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr: SocketAddr = listen
        .trim()
        .parse()
        .map_err(|e| format!("LISTEN_ADDR {listen:?}: {e}"))?;
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(Duration::from_secs(3), ask).await {
        Ok(Ok(head)) if &head == b"HTTP/1.1 200" => Ok(()),
        Ok(Ok(head)) => Err(format!(
            "{addr} answered {:?}",
            String::from_utf8_lossy(&head)
        )),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no answer within 3 s")),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
