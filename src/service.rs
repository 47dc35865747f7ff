//! [`OllamaTranslate`]: the middleware service.

use crate::access::{Admission, Caller, X_API_KEY};
use crate::body::{RequestBody, TranslateBody};
use crate::config::Config;
use crate::dialect;
use crate::error::BoxError;
use crate::future::{ResponseFuture, Translate};
use crate::layer::OllamaTranslateLayer;
use crate::shared::Shared;
use crate::store::Owner;
use http::{Request, Response};
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
/// With keys configured
/// ([`require_api_key`](OllamaTranslateLayer::require_api_key),
/// [`access`](OllamaTranslateLayer::access)), the key stops here: a
/// request passed through reaches the inner service without its
/// `x-api-key`, and without its `Authorization` when that carried the key
/// (an `Authorization` of another kind is kept), and with the key's
/// [`Caller`] in its extensions. Translated
/// requests never carry the client's credentials. `Debug` output shows
/// neither the API keys nor the thinking key.
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
    /// What the layer's services keep at run time, next to the configuration.
    pub(crate) shared: Arc<Shared>,
}

impl<S> OllamaTranslate<S> {
    /// Wraps `inner` with the default configuration.
    pub fn new(inner: S) -> Self {
        OllamaTranslate {
            inner,
            config: Arc::new(Config::default()),
            shared: Arc::default(),
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
    /// Always a [`BoxError`], whatever the inner service's error: the inner
    /// error boxed (a request passed through that the inner service
    /// failed). One reason: axum's `Router::layer` needs an error that
    /// converts into `Infallible`, so wrapping an app's routes in the layer
    /// (which would translate into the app's own routes, never Ollama) does
    /// not compile.
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let translated = dialect::route(req.method(), req.uri().path()).is_some();
        let admission = match &self.config.access {
            Some(access) if translated || access.guards_passthrough() => {
                match access.admit(req.method(), req.uri().path(), req.headers()) {
                    Ok(a) => a,
                    Err(refused) => {
                        let path = req.uri().path();
                        let status = refused.error.status.as_u16();
                        let key = refused.caller.as_ref().map(Caller::name);
                        tracing::debug!(path, status, key, "refused");
                        let dialect = dialect::route(req.method(), path)
                            .unwrap_or_else(|| dialect::error_dialect(path));
                        return ResponseFuture::reject(dialect, &refused.error)
                            .admitted(refused.caller, None);
                    }
                }
            }
            _ => Admission::default(),
        };
        // Whose request this is, before the credential is taken off (for
        // the translated ones: kept responses belong to their owner).
        if translated {
            // With keys, the owner is also tied to the key that let the
            // request in (a credential beside it still tells owners apart).
            let owner = Owner::of(req.headers());
            let owner = match admission.owner {
                Some(key) => owner.within(key.bytes()),
                None => owner,
            };
            req.extensions_mut().insert(owner);
        }
        if let Some(caller) = &admission.caller {
            req.extensions_mut().insert(caller.clone());
        }
        // The key is the layer's, not the inner service's: do not hand
        // it on. An `Authorization` that carried something else (and
        // the key came in `x-api-key`) is left for the inner service.
        if let Some(carried) = admission.carried {
            let headers = req.headers_mut();
            if carried.bearer {
                headers.remove(http::header::AUTHORIZATION);
            }
            headers.remove(X_API_KEY);
        }
        let (caller, permit) = (admission.caller, admission.permit);
        let path = req.uri().path();
        let Some(d) = dialect::route(req.method(), path) else {
            let not_found = dialect::not_found(req.method(), path);
            let errors = dialect::error_dialect(path);
            let (parts, body) = req.into_parts();
            let (body, late) = RequestBody::passed_through(body, &self.config.timing);
            return ResponseFuture::passthrough(
                self.inner.call(Request::from_parts(parts, body)),
                not_found,
                &self.config,
                errors,
                late,
            )
            .admitted(caller, permit);
        };
        // The clone is not necessarily ready: keep the ready one for the
        // future, which calls it once the body is collected.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        match Translate::new(req, d, ready, self.config.clone(), self.shared.clone()) {
            Ok(fut) => ResponseFuture::translate(fut),
            Err(err) => ResponseFuture::reject(d, &err),
        }
        .admitted(caller, permit)
    }
}
