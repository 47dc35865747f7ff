//! [`OllamaClient`]: the service that is one Ollama (feature `client`).
//!
//! An HTTP/1.1 client of its own with every request pointed at Ollama's
//! base URL: an absolute URI under the base's path, Ollama's own `Host`
//! (Ollama refuses foreign hosts), no hop-by-hop headers and none of the
//! client's credentials (an API key of its own when one is set, as
//! ollama.com wants). Connecting gives up after [`CONNECT_TIMEOUT`], and a
//! failed call is an [`OllamaError`] that names the address.
//!
//! The response body, [`OllamaBody`], reads Ollama's connection itself when
//! it is polled: no task per connection and no channel between the socket
//! and the body, every chunk already read handed over without a wake, and
//! a read buffer that starts at 2 KiB. A held stream costs a fraction of
//! what a general-purpose client's connection does (see
//! `docs/performance.md`). Connections are kept for the next request for
//! [`IDLE_TIMEOUT`]; a request whose kept connection turns out closed is
//! sent once more on a new one when its body was whole.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use ollama_translate::client::OllamaClient;
//! use ollama_translate::{OllamaTranslateLayer, RequestBody, TokioTimer};
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ollama_translate::BoxError> {
//! let ollama = OllamaClient::<RequestBody<Full<Bytes>>>::new("http://localhost:11434".parse()?)?;
//! let svc = ServiceBuilder::new()
//!     .layer(OllamaTranslateLayer::new().timer(TokioTimer))
//!     .service(ollama);
//! # let _ = svc;
//! # Ok(())
//! # }
//! ```

mod body;
mod conn;

pub use body::OllamaBody;
pub use conn::{Failure, IDLE_TIMEOUT};

use crate::error::error_chain;
use bytes::Bytes;
use conn::{Idle, Target};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Full;
#[cfg(feature = "tls")]
use hyper_util::client::legacy::connect::HttpConnector;
#[cfg(feature = "tls")]
use hyper_util::client::legacy::Client;
#[cfg(feature = "tls")]
use hyper_util::rt::TokioExecutor;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// How long connecting to Ollama may take. A host that does not answer a
/// connection (down behind a firewall, a full accept queue) is then an
/// error (a 502, or in a [`Pool`](crate::Pool) the next host) instead of a
/// wait as long as the upstream idle timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A hyper-util connector with [`OllamaClient`]'s settings: plain HTTP, TCP
/// keep-alive at 90 s, and [`CONNECT_TIMEOUT`]. Feature `tls` (what
/// [`https_client`] wraps).
///
/// ```
/// let connector = ollama_translate::client::connector();
/// # let _ = connector;
/// ```
#[cfg(feature = "tls")]
pub fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_keepalive(Some(Duration::from_secs(90)));
    c.set_connect_timeout(Some(CONNECT_TIMEOUT));
    c
}

/// A client for `http://` and `https://` services (web search backends,
/// ollama.com): `https://` through rustls with the Mozilla roots of
/// `webpki-roots` (no system certificates needed); HTTP/1.1, the
/// [`connector`]'s timeouts. Feature `tls`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let client = ollama_translate::client::https_client::<http_body_util::Full<bytes::Bytes>>();
/// # let _ = client;
/// # }
/// ```
#[cfg(feature = "tls")]
pub fn https_client<B>() -> Client<hyper_rustls::HttpsConnector<HttpConnector>, B>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
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

/// Removes the hop-by-hop headers: those of RFC 9110 §7.6.1, those the
/// `Connection` header names, and `Transfer-Encoding`.
///
/// ```
/// let mut h = http::HeaderMap::new();
/// h.insert("connection", "x-trace".parse().unwrap());
/// h.insert("x-trace", "1".parse().unwrap());
/// h.insert("content-type", "application/json".parse().unwrap());
/// ollama_translate::client::strip_hop_by_hop(&mut h);
/// assert_eq!(h.len(), 1);
/// ```
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = tokens(h, header::CONNECTION)
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
    h.remove(header::TRANSFER_ENCODING);
}

/// The comma-separated tokens of every `name` field, trimmed (fields that
/// are not text are skipped).
fn tokens(h: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    h.get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// A base URL as people write it: no trailing `/` on a bare host.
///
/// ```
/// let base: http::Uri = "http://localhost:11434".parse().unwrap();
/// assert_eq!(ollama_translate::client::base_display(&base), "http://localhost:11434");
/// ```
pub fn base_display(base: &Uri) -> String {
    base.to_string().trim_end_matches('/').to_string()
}

/// The service that is one Ollama: an HTTP/1.1 client, each request
/// rebased onto Ollama's base URL. Cheap to clone (clones share the
/// client's connections).
///
/// See the [module docs](crate::client) for more details.
pub struct OllamaClient<B> {
    target: Arc<Target>,
    base: Uri,
    api_key: Option<HeaderValue>,
    /// How errors name the address: the base, and what configured it.
    shown: Arc<str>,
    /// What configured it ([`OllamaClient::setting`]).
    pub(crate) setting: Option<Arc<str>>,
    _body: PhantomData<fn(B)>,
}

impl<B> Clone for OllamaClient<B> {
    fn clone(&self) -> Self {
        OllamaClient {
            target: self.target.clone(),
            base: self.base.clone(),
            api_key: self.api_key.clone(),
            shown: self.shown.clone(),
            setting: self.setting.clone(),
            _body: PhantomData,
        }
    }
}

impl<B> fmt::Debug for OllamaClient<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OllamaClient")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A base URL that cannot be Ollama's: not `http://`, or without a host.
#[derive(Debug)]
pub struct BaseUrlError(String);

impl fmt::Display for BaseUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} must be an http:// URL with a host", self.0)
    }
}

impl std::error::Error for BaseUrlError {}

impl<B> OllamaClient<B> {
    /// A client (HTTP/1.1, connections of its own, [`CONNECT_TIMEOUT`]) for
    /// the Ollama at `base` (`http://host:port`, maybe with a path prefix;
    /// port 80 when none is given).
    pub fn new(base: Uri) -> Result<Self, BaseUrlError> {
        let Some(authority) = base
            .authority()
            .filter(|_| base.scheme_str() == Some("http"))
        else {
            return Err(BaseUrlError(base.to_string()));
        };
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let shown = base_display(&base).into();
        Ok(OllamaClient {
            target: Arc::new(Target {
                addr,
                idle: Arc::new(Idle::default()),
            }),
            base,
            api_key: None,
            shown,
            setting: None,
            _body: PhantomData,
        })
    }
}

impl<B> OllamaClient<B> {
    /// Sends `Authorization: Bearer <key>` to Ollama (ollama.com, or an
    /// Ollama behind an authenticating reverse proxy); default: none. The
    /// value is marked sensitive. An invalid header value is refused.
    pub fn api_key(mut self, key: &str) -> Result<Self, http::header::InvalidHeaderValue> {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", key.trim()))?;
        v.set_sensitive(true);
        self.api_key = Some(v);
        Ok(self)
    }

    /// Names what configured the address in errors, e.g. `OLLAMA_BASE_URL`:
    /// "connecting to http://… (OLLAMA_BASE_URL) failed".
    pub fn setting(mut self, name: &str) -> Self {
        self.shown = format!("{} ({name})", base_display(&self.base)).into();
        self.setting = Some(name.into());
        self
    }

    /// The base URL.
    pub fn base(&self) -> &Uri {
        &self.base
    }

    /// Points `req` at Ollama: an absolute URI under the base's path,
    /// HTTP/1.1, Ollama's own `Host`, no hop-by-hop headers, no client
    /// credentials (`Authorization`, `x-api-key`), the API key if set.
    pub fn rebase<T>(&self, mut req: Request<T>) -> Request<T> {
        let base_path = self.base.path().trim_end_matches('/');
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut parts = self.base.clone().into_parts();
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
        if let Some(key) = &self.api_key {
            h.insert(header::AUTHORIZATION, key.clone());
        }
        if let Some(v) = self
            .base
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            h.insert(header::HOST, v);
        }
        req
    }
}

impl<B> tower_service::Service<Request<B>> for OllamaClient<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<crate::BoxError>,
{
    type Response = Response<OllamaBody>;
    type Error = OllamaError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OllamaError>> {
        // Connections are made or taken per call; errors come with it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        let req = self.rebase(req);
        let target = self.target.clone();
        ResponseFuture {
            inner: Box::pin(async move { conn::send(&target, req).await }),
            shown: self.shown.clone(),
        }
    }
}

/// The future of [`OllamaClient`]'s call: Ollama's response head, the
/// hop-by-hop headers removed.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Response<OllamaBody>, Failure>> + Send>>,
    shown: Arc<str>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("ollama", &self.shown)
            .finish()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<OllamaBody>, OllamaError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.inner.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(mut res)) => {
                strip_hop_by_hop(res.headers_mut());
                Poll::Ready(Ok(res))
            }
            Poll::Ready(Err(source)) => Poll::Ready(Err(OllamaError {
                shown: self.shown.clone(),
                source,
            })),
        }
    }
}

/// A failed call to Ollama, naming the address (and the setting that
/// names it, see [`OllamaClient::setting`]); the client's error is its
/// `source()`.
#[derive(Debug)]
pub struct OllamaError {
    shown: Arc<str>,
    source: Failure,
}

impl OllamaError {
    /// Whether connecting failed (nothing reached Ollama).
    pub fn is_connect(&self) -> bool {
        matches!(self.source, Failure::Connect(_))
    }

    /// The error and its sources, joined by `: `.
    pub fn chain(&self) -> String {
        error_chain(self)
    }
}

impl OllamaError {
    /// The answer for the client when Ollama could not be reached for a
    /// request passed through: a 502 in Ollama's own error shape,
    /// `{"error": "could not reach Ollama: …"}`, naming the address and why.
    ///
    /// ```no_run
    /// # async fn f(e: ollama_translate::client::OllamaError) {
    /// let res = e.response(); // e.g. in axum's `HandleErrorLayer`
    /// assert_eq!(res.status(), 502);
    /// # }
    /// ```
    pub fn response(&self) -> Response<Full<Bytes>> {
        unreachable_response(&self.chain())
    }
}

/// The answer for a request passed through that failed with `error` (the
/// layer's [`BoxError`](crate::BoxError)): an [`OllamaError`]'s
/// [`response`](OllamaError::response), or the same 502 naming whatever
/// else failed.
///
/// ```
/// use ollama_translate::client::bad_gateway;
/// use ollama_translate::BoxError;
///
/// let e: BoxError = "no route to host".into();
/// let res = bad_gateway(&*e); // e.g. in axum's `HandleErrorLayer`
/// assert_eq!(res.status(), 502);
/// ```
pub fn bad_gateway(
    error: &(dyn std::error::Error + Send + Sync + 'static),
) -> Response<Full<Bytes>> {
    match error.downcast_ref::<OllamaError>() {
        Some(e) => e.response(),
        None => unreachable_response(&error_chain(error)),
    }
}

fn unreachable_response(why: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"error": format!("could not reach Ollama: {why}")});
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = http::StatusCode::BAD_GATEWAY;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

impl fmt::Display for OllamaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_connect() {
            write!(f, "connecting to {} failed", self.shown)
        } else {
            write!(f, "the request to {} failed", self.shown)
        }
    }
}

impl std::error::Error for OllamaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit {
    use super::*;
    use http_body_util::Empty;
    use tower::ServiceExt;

    fn client(base: &str) -> OllamaClient<Empty<Bytes>> {
        OllamaClient::new(base.parse().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn rebases_onto_the_base_and_drops_credentials() {
        let c = client("http://ollama:11434/prefix/").api_key("k").unwrap();
        let req = Request::get("/api/tags?x=1")
            .header("authorization", "Bearer client")
            .header("x-api-key", "client")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("host", "proxy")
            .body(())
            .unwrap();
        let req = c.rebase(req);
        assert_eq!(req.uri(), "http://ollama:11434/prefix/api/tags?x=1");
        assert_eq!(req.headers()["host"], "ollama:11434");
        assert_eq!(req.headers()["authorization"], "Bearer k");
        assert!(req.headers().get("x-api-key").is_none());
        assert!(req.headers().get("x-hop").is_none());
        assert_eq!(req.version(), http::Version::HTTP_11);
    }

    #[test]
    fn refuses_what_is_not_an_http_url() {
        assert!(OllamaClient::<Empty<Bytes>>::new("ftp://x".parse().unwrap()).is_err());
        assert!(OllamaClient::<Empty<Bytes>>::new("/api".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn errors_name_the_address_and_the_setting() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = client(&format!("http://{addr}")).setting("OLLAMA_BASE_URL");
        let err = c.oneshot(Request::new(Empty::new())).await.unwrap_err();
        assert!(err.is_connect());
        assert!(err.to_string().starts_with(&format!(
            "connecting to http://{addr} (OLLAMA_BASE_URL) failed"
        )));
        assert!(err.chain().len() > err.to_string().len());
        let res = err.response();
        assert_eq!(res.status(), 502);
        assert_eq!(res.headers()["content-type"], "application/json");
    }

    #[test]
    fn connects_to_the_base_s_host_and_port() {
        for (base, addr) in [
            ("http://ollama:11434/prefix", "ollama:11434"),
            ("http://ollama", "ollama:80"),
            ("http://[::1]:11434", "[::1]:11434"),
        ] {
            assert_eq!(client(base).target.addr, addr);
        }
    }

    #[test]
    fn its_debug_hides_the_key() {
        let c = client("http://ollama:11434").api_key("secret").unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }
}
