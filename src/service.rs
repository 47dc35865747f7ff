//! [`OllamaTranslate`]: the middleware service.

use crate::body::{RequestBody, TranslateBody};
use crate::config::Config;
use crate::dialect;
use crate::error::BoxError;
use crate::future::ResponseFuture;
use crate::layer::OllamaTranslateLayer;
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
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match dialect::route(req.method(), req.uri().path()) {
            None => {
                let path = req.uri().path();
                let not_found = (path.starts_with("/v1/") || path == "/v1")
                    .then(|| format!("{} {}", req.method(), path));
                ResponseFuture::passthrough(
                    self.inner.call(req.map(RequestBody::original)),
                    not_found,
                )
            }
            Some(d) => {
                // The clone is not necessarily ready: keep the ready one for
                // the future, which calls it once the body is collected.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::translate(req, d, ready, self.config.clone())
            }
        }
    }
}
