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
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<TranslateBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let path = req.uri().path();
        if let Some(key) = &self.config.api_key {
            if !authorized(req.headers(), key) {
                tracing::debug!(path, "rejected: missing or wrong API key");
                let err = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing or invalid API key: send Authorization: Bearer <key> or x-api-key: <key>",
                );
                let dialect = dialect::route(req.method(), path)
                    .unwrap_or_else(|| dialect::error_dialect(path));
                return ResponseFuture::reject(dialect, &err);
            }
        }
        let Some(d) = dialect::route(req.method(), path) else {
            let not_found = dialect::not_found(req.method(), path);
            return ResponseFuture::passthrough(
                self.inner.call(req.map(RequestBody::original)),
                not_found,
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

/// Whether the request carries `key`, compared in constant time.
fn authorized(headers: &HeaderMap, key: &str) -> bool {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let mut ok = false;
    for given in [bearer, x_api_key].into_iter().flatten() {
        ok |= constant_time_eq(given.trim().as_bytes(), key.as_bytes());
    }
    ok
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
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"sk-abc", b"sk-abc"));
        assert!(!constant_time_eq(b"sk-abc", b"sk-abd"));
        assert!(!constant_time_eq(b"sk-abc", b"sk-ab"));
        assert!(!constant_time_eq(b"", b"sk"));
    }
}
