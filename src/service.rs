//! [`OllamaTranslate`]: the middleware service.

use crate::body::{RequestBody, TranslateBody};
use crate::config::Config;
use crate::dialect;
use crate::error::ApiError;
use crate::error::BoxError;
use crate::future::{ResponseFuture, Translate};
use crate::layer::OllamaTranslateLayer;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Translates client API requests into Ollama's native API and the answers
/// back; passes every other request through untouched.
///
/// Built by [`OllamaTranslateLayer`]. The inner service receives
/// [`RequestBody`]s: the client's own body for requests passed through, the
/// rewritten JSON for translated ones.
///
/// With an API key configured
/// ([`require_api_key`](OllamaTranslateLayer::require_api_key)), the key
/// stops here: a request passed through reaches the inner service without
/// its `x-api-key`, and without its `Authorization` when that carried the
/// key (an `Authorization` of another kind is kept). Translated requests
/// never carry the client's credentials. `Debug` output shows neither the
/// API key nor the thinking key.
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Full};
/// use ollama_translate::{OllamaTranslate, RequestBody};
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ollama_translate::BoxError> {
/// let ollama = service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
///     let err = Response::builder().status(404).body(Full::new(Bytes::from(
///         r#"{"error":"model 'nosuch' not found"}"#,
///     )));
///     Ok::<_, http::Error>(err?)
/// });
/// let req = Request::post("/v1/chat/completions").body(Full::new(Bytes::from(
///     r#"{"model":"nosuch","messages":[{"role":"user","content":"hi"}]}"#,
/// )))?;
/// let res = OllamaTranslate::new(ollama).oneshot(req).await?;
/// assert_eq!(res.status(), 404);
/// let body = res.into_body().collect().await?.to_bytes();
/// let err: serde_json::Value = serde_json::from_slice(&body)?;
/// assert_eq!(err["error"]["type"], "not_found_error"); // OpenAI's shape
/// # Ok(())
/// # }
/// ```
///
/// See the [crate docs](crate) for more details.
#[derive(Clone, Debug)]
pub struct OllamaTranslate<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
}

impl<S> OllamaTranslate<S> {
    /// Wraps `inner` with the default configuration.
    pub fn new(inner: S) -> Self {
        OllamaTranslate {
            inner,
            config: Arc::new(Config::default()),
        }
    }

    /// A layer that builds this service; configure it there.
    pub fn layer() -> OllamaTranslateLayer {
        OllamaTranslateLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OllamaTranslate<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqBody: Body + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<TranslateBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Whose request this is, before the credential is taken off (for
        // the translated ones: kept responses belong to their owner).
        if dialect::route(req.method(), req.uri().path()).is_some() {
            let owner = crate::store::Owner::of(req.headers());
            req.extensions_mut().insert(owner);
        }
        if let Some(key) = &self.config.api_key {
            let found = credentials(req.headers(), key);
            if !found.any() {
                let path = req.uri().path();
                tracing::debug!(path, "rejected: missing or wrong API key");
                let err = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing or invalid API key: send Authorization: Bearer <key> or x-api-key: <key>",
                );
                let dialect = dialect::route(req.method(), path)
                    .unwrap_or_else(|| dialect::error_dialect(path));
                return ResponseFuture::reject(dialect, &err);
            }
            // The key is the layer's, not the inner service's: do not hand
            // it on. An `Authorization` that carried something else (and
            // the key came in `x-api-key`) is left for the inner service.
            let headers = req.headers_mut();
            if found.bearer {
                headers.remove(http::header::AUTHORIZATION);
            }
            headers.remove(X_API_KEY);
        }
        let path = req.uri().path();
        let Some(d) = dialect::route(req.method(), path) else {
            let not_found = dialect::not_found(req.method(), path);
            let errors = dialect::error_dialect(path);
            return ResponseFuture::passthrough(
                self.inner.call(req.map(RequestBody::original)),
                not_found,
                &self.config.timing,
                errors,
            );
        };
        // The clone is not necessarily ready: keep the ready one for the
        // future, which calls it once the body is collected.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        match Translate::new(req, d, ready, self.config.clone()) {
            Ok(fut) => ResponseFuture::translate(fut),
            Err(err) => ResponseFuture::reject(d, &err),
        }
    }
}

/// The header besides `Authorization` that may carry the API key.
const X_API_KEY: &str = "x-api-key";

/// Which of a request's credential headers carry the API key.
struct Credentials {
    /// `Authorization: Bearer <key>`.
    bearer: bool,
    /// `x-api-key: <key>`.
    x_api_key: bool,
}

impl Credentials {
    fn any(&self) -> bool {
        self.bearer || self.x_api_key
    }
}

/// Where the request carries `key`; each header compared in constant time.
fn credentials(headers: &HeaderMap, key: &str) -> Credentials {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let x_api_key = headers.get(X_API_KEY).and_then(|v| v.to_str().ok());
    let matches = |given: Option<&str>| {
        given.is_some_and(|g| constant_time_eq(g.trim().as_bytes(), key.as_bytes()))
    };
    Credentials {
        bearer: matches(bearer),
        x_api_key: matches(x_api_key),
    }
}

/// Whether `a` and `b` are equal, in a time that depends neither on where
/// they differ nor on their lengths: both are hashed to 32 bytes, and the
/// digests are compared with `subtle`'s constant-time equality.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let (a, b) = (crate::signing::sha256(a), crate::signing::sha256(b));
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorized(h: &HeaderMap, key: &str) -> bool {
        credentials(h, key).any()
    }

    #[test]
    fn accepts_bearer_or_x_api_key() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "k1"));
        h.insert("authorization", "Bearer k1".parse().unwrap());
        assert!(authorized(&h, "k1"));
        assert!(!authorized(&h, "k2"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "k1".parse().unwrap());
        assert!(authorized(&h, "k1"));
        assert!(!authorized(&h, "k10"));
    }

    #[test]
    fn credentials_name_the_header_that_carried_the_key() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic abc".parse().unwrap());
        h.insert("x-api-key", " k1 ".parse().unwrap());
        let c = credentials(&h, "k1");
        assert!(!c.bearer && c.x_api_key);
        h.insert("authorization", "bearer k1".parse().unwrap());
        h.insert("x-api-key", "other".parse().unwrap());
        let c = credentials(&h, "k1");
        assert!(c.bearer && !c.x_api_key);
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"sk-abc", b"sk-abc"));
        assert!(!constant_time_eq(b"sk-abc", b"sk-abd"));
        assert!(!constant_time_eq(b"sk-abc", b"sk-ab"));
        assert!(!constant_time_eq(b"", b"sk"));
    }
}
