//! [`ResponseFuture`] and the small futures it is made of.
//!
//! A translated request goes through three steps, each a future of its own
//! with one job: [`translate::Translate`] reads the request body and asks
//! the dialect for the native call; [`call::CallOllama`] calls Ollama with a
//! deadline for its headers and the think-less retry ([`call::ThinkRetry`]);
//! [`collect::CollectAnswer`] reads a non-streaming client's answer whole
//! before its status is chosen. [`respond`] builds the responses.

mod call;
mod collect;
mod respond;
mod translate;

use crate::access::{Caller, InFlight};
use crate::body::{Limits, RequestBody, TranslateBody, MAX_ERROR_BODY};
use crate::config::Config;
use crate::dialect::{Dialect, ErrorBody};
use crate::error::{ApiError, BoxError};
use crate::timer::{Sleep, Timing};
use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tower_service::Service;

pub(crate) use translate::Translate;

pin_project! {
    /// Response future of [`OllamaTranslate`](crate::OllamaTranslate).
    ///
    /// See the [crate docs](crate) for more details.
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
        ReqBody: Body,
        ReqBody::Error: Into<BoxError>,
        ResBody: Body,
        ResBody::Error: Into<BoxError>,
    {
        #[pin]
        kind: Kind<S, ReqBody, ResBody>,
        // The key that let the request in (for the metrics) and its place
        // among the key's requests in flight (held by the response body).
        caller: Option<Caller>,
        permit: Option<InFlight>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, ResBody>
    where
        S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
        ReqBody: Body,
        ReqBody::Error: Into<BoxError>,
        ResBody: Body,
        ResBody::Error: Into<BoxError>,
    {
        // Not translated. Under a client API's prefix, Ollama's plain-text
        // 404/405 is reported in that API's shape, naming what is served.
        Passthrough {
            #[pin] fut: S::Future,
            not_found: Option<(&'static dyn Dialect, String)>,
            // Ollama's headers must come within the idle timeout here too;
            // past it, a 504 in the shape `errors` gives.
            deadline: Option<Sleep>,
            timing: Timing,
            errors: &'static dyn Dialect,
            // Set when the client's body fell behind its pace: whatever
            // Ollama (or the pool) made of the cut body, the answer is a 408.
            late: Option<Arc<AtomicBool>>,
            // The body's chunks that come together leave together.
            coalesce: bool,
        },
        Translate { #[pin] fut: Translate<S, ReqBody, ResBody> },
        // Answered without calling Ollama (a 401, a 413 from the declared
        // length); `None` once taken. Counted under `dialect` then.
        Ready { res: Option<Response<TranslateBody<ResBody>>>, dialect: &'static str },
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    pub(crate) fn passthrough(
        fut: S::Future,
        not_found: Option<(&'static dyn Dialect, String)>,
        config: &Config,
        errors: &'static dyn Dialect,
        late: Option<Arc<AtomicBool>>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Passthrough {
                fut,
                not_found,
                deadline: config.timing.idle_deadline(),
                timing: config.timing.clone(),
                errors,
                late,
                coalesce: config.coalesce_passthrough,
            },
            caller: None,
            permit: None,
        }
    }

    pub(crate) fn reject(dialect: &'static dyn Dialect, error: &ApiError) -> Self {
        ResponseFuture {
            kind: Kind::Ready {
                res: Some(respond::error(dialect, error)),
                dialect: dialect.name(),
            },
            caller: None,
            permit: None,
        }
    }

    pub(crate) fn translate(fut: Translate<S, ReqBody, ResBody>) -> Self {
        ResponseFuture {
            kind: Kind::Translate { fut },
            caller: None,
            permit: None,
        }
    }

    /// The request's key (its name labels the metrics) and its place among
    /// the key's requests in flight, which the response body holds.
    pub(crate) fn admitted(mut self, caller: Option<Caller>, permit: Option<InFlight>) -> Self {
        self.caller = caller;
        self.permit = permit;
        self
    }
}

impl<S, ReqBody, ResBody> std::fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Passthrough { .. } => "Passthrough",
            Kind::Translate { .. } => "Translate",
            Kind::Ready { .. } => "Ready",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
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
    type Output = Result<Response<TranslateBody<ResBody>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let key = this.caller.as_ref().map(Caller::name);
        let res = match this.kind.project() {
            KindProj::Translate { fut } => {
                let dialect = fut.as_ref().get_ref().dialect().name();
                let res = ready!(fut.poll(cx));
                crate::telemetry::answered(dialect, res.status(), key);
                Poll::Ready(Ok(res))
            }
            KindProj::Passthrough {
                fut,
                not_found,
                deadline,
                timing,
                errors,
                late,
                coalesce,
            } => {
                let polled = fut.poll(cx);
                // After the poll: a pool reads the body inside it.
                let late = late.as_ref().is_some_and(|l| l.load(Ordering::Acquire));
                let res = match polled {
                    // The inner service's own 408 (a pool reading the body
                    // with its deadline) says it already.
                    Poll::Ready(Ok(res)) if late && res.status() != StatusCode::REQUEST_TIMEOUT => {
                        drop(res);
                        let after = timing.body_timeout.unwrap_or_default();
                        return Poll::Ready(Ok(respond::error(*errors, &stalled(after))));
                    }
                    Poll::Ready(Err(_)) if late => {
                        let after = timing.body_timeout.unwrap_or_default();
                        return Poll::Ready(Ok(respond::error(*errors, &stalled(after))));
                    }
                    // The inner service's own error stays its error.
                    Poll::Ready(res) => res.map_err(Into::into)?,
                    Poll::Pending => {
                        let late = ready!(call::timed_out(deadline, timing, cx));
                        return Poll::Ready(Ok(respond::error(*errors, &late)));
                    }
                };
                Poll::Ready(Ok(match not_found.take() {
                    Some(nf) if is_plain_not_found(&res) => plain_not_found(res, nf, timing),
                    _ => res.map(|body| TranslateBody::passthrough(body, *coalesce)),
                }))
            }
            KindProj::Ready { res, dialect } => match res.take() {
                Some(res) => {
                    crate::telemetry::answered(dialect, res.status(), key);
                    Poll::Ready(Ok(res))
                }
                // Polled after completion: the contract allows anything
                // but a panic.
                None => Poll::Pending,
            },
        };
        // The key's request is in flight until its response body ends.
        res.map_ok(|res| res.map(|body| body.holding(this.permit.take())))
    }
}

/// A body passed through that fell behind its pace.
fn stalled(after: std::time::Duration) -> ApiError {
    let message = format!(
        "the request body did not arrive within {} s (it stalled: less than {} KiB came in that time)",
        after.as_secs(),
        crate::timer::PACE_BYTES / 1024
    );
    ApiError::new(StatusCode::REQUEST_TIMEOUT, message).with_code("request_timeout")
}

/// A 404/405 that is not JSON: gin's `404 page not found`.
fn is_plain_not_found<B>(res: &Response<B>) -> bool {
    let json = res
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    matches!(res.status().as_u16(), 404 | 405) && !json
}

fn plain_not_found<B>(
    res: Response<B>,
    (dialect, message): (&'static dyn Dialect, String),
    timing: &Timing,
) -> Response<TranslateBody<B>> {
    let (mut parts, body) = res.into_parts();
    parts.status = StatusCode::NOT_FOUND;
    let transcoder = ErrorBody::new(dialect, parts.status).with_message(message);
    parts.headers = respond::error_headers();
    let body = TranslateBody::translate(
        body,
        Box::new(transcoder),
        timing.deadlines(),
        Limits::line(MAX_ERROR_BODY),
        None,
    );
    Response::from_parts(parts, body)
}

pin_project! {
    /// Runs `fut`, then hands its output back with `ctx`: how a step gives
    /// what it owned to the next one without a state for "moved out".
    pub(crate) struct Carry<F, T> {
        #[pin]
        fut: F,
        ctx: Option<T>,
    }
}

impl<F, T> Carry<F, T> {
    pub(crate) fn new(fut: F, ctx: T) -> Self {
        Carry {
            fut,
            ctx: Some(ctx),
        }
    }
}

impl<F: Future, T> Future for Carry<F, T> {
    type Output = (F::Output, T);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.fut.poll(cx));
        match this.ctx.take() {
            Some(ctx) => Poll::Ready((out, ctx)),
            // Polled after completion.
            None => Poll::Pending,
        }
    }
}
