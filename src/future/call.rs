//! [`CallOllama`]: one call to Ollama, with a deadline for its headers and
//! the think-less retry.

use super::respond::{self, Template};
use super::Carry;
use crate::body::RequestBody;
use crate::body::MAX_ERROR_BODY;
use crate::error::{error_chain, ApiError, BoxError, Failure};
use crate::ollama::request::GenerationRequest;
use crate::ollama::{ErrorKind, UpstreamError};
use crate::shared::NoThink;
use crate::timer::{Sleep, Timing};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Limited};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tower_service::Service;

/// Tries a request that asks the model to think again without `think` when
/// Ollama refuses it (a 400: the model cannot think), and remembers the
/// model when the second try succeeds. Shaped like tower's
/// `retry::Policy`: it looks at an answer and may hand back a new request.
pub(crate) struct ThinkRetry<S> {
    service: S,
    /// What the first request took from the client's.
    template: Template,
    request: GenerationRequest,
    /// Where the layer remembers the models that cannot think.
    no_think: Arc<NoThink>,
}

impl<S> ThinkRetry<S> {
    pub(crate) fn new(
        service: S,
        template: Template,
        request: GenerationRequest,
        no_think: Arc<NoThink>,
    ) -> Self {
        ThinkRetry {
            service,
            template,
            request,
            no_think,
        }
    }

    /// Whether `status` may call for a retry without `think`.
    fn retries(status: StatusCode) -> bool {
        status == StatusCode::BAD_REQUEST
    }

    /// The request again, without `think`.
    fn request<B>(&mut self) -> Result<Request<RequestBody<B>>, ApiError> {
        *self.request.settings_mut().think = None;
        let body = self.request.to_bytes().map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not encode the request for Ollama: {e}"),
            )
        })?;
        respond::upstream_request(&self.template, self.request.endpoint(), body)
    }

    /// Ollama said the model cannot think: remember it for a while.
    fn learn(&self) {
        let model = self.request.model();
        tracing::warn!(model = ?model, "model cannot think: not sending think to it for a while");
        self.no_think.learn(model);
    }
}

pin_project! {
    /// Calls Ollama. Resolves to its response, or to the error a client
    /// should see: 502 when Ollama cannot be reached, 504 when its headers
    /// do not come within the idle timeout (a non-streaming native call
    /// sends nothing until it is done).
    pub(crate) struct CallOllama<S, B, ResBody>
    where
        S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
        ResBody: Body,
        ResBody::Error: Into<BoxError>,
    {
        #[pin]
        attempt: Attempt<S, B, ResBody>,
        deadline: Option<Sleep>,
        timing: Timing,
    }
}

pin_project! {
    #[project = AttemptProj]
    enum Attempt<S, B, ResBody>
    where
        S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
        ResBody: Body,
        ResBody::Error: Into<BoxError>,
    {
        First { #[pin] fut: S::Future, retry: Option<ThinkRetry<S>> },
        // A 400 to a request with `think`: is it the one about thinking?
        Refused { #[pin] read: Carry<Collect<Limited<ResBody>>, ThinkRetry<S>> },
        // Waiting for the service to take the retry.
        Readying { retry: ThinkRetry<S> },
        Retried { #[pin] fut: S::Future },
    }
}

impl<S, B, ResBody> CallOllama<S, B, ResBody>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    pub(crate) fn new(fut: S::Future, retry: Option<ThinkRetry<S>>, timing: &Timing) -> Self {
        CallOllama {
            attempt: Attempt::First { fut, retry },
            deadline: timing.idle_deadline(),
            timing: timing.clone(),
        }
    }
}

impl<S, B, ResBody> Future for CallOllama<S, B, ResBody>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let res = match this.attempt.as_mut().project() {
                AttemptProj::First { fut, retry } => {
                    let res = ready!(headers(fut, this.deadline, this.timing, cx))?;
                    match retry.take() {
                        Some(retry) if ThinkRetry::<S>::retries(res.status()) => {
                            let body = Limited::new(res.into_body(), MAX_ERROR_BODY).collect();
                            let read = Carry::new(body, retry);
                            this.attempt.set(Attempt::Refused { read });
                            continue;
                        }
                        _ => res,
                    }
                }
                AttemptProj::Refused { read } => {
                    let (read, retry) = ready!(read.poll(cx));
                    let body = read.map(|c| c.to_bytes()).unwrap_or_default();
                    let said = UpstreamError::read(StatusCode::BAD_REQUEST, &body);
                    if said.kind != ErrorKind::NoThinking {
                        // Another 400 (an unknown level, say): the client's,
                        // in its dialect.
                        let message = said.message;
                        return Poll::Ready(Err(ApiError::new(StatusCode::BAD_REQUEST, message)));
                    }
                    retry.learn();
                    this.attempt.set(Attempt::Readying { retry });
                    continue;
                }
                AttemptProj::Readying { retry } => {
                    if let Err(e) = ready!(retry.service.poll_ready(cx)) {
                        return Poll::Ready(Err(unreachable(e.into())));
                    }
                    let req = retry.request()?;
                    let fut = retry.service.call(req);
                    *this.deadline = this.timing.idle_deadline();
                    this.attempt.set(Attempt::Retried { fut });
                    continue;
                }
                AttemptProj::Retried { fut } => {
                    ready!(headers(fut, this.deadline, this.timing, cx))?
                }
            };
            return Poll::Ready(Ok(res));
        }
    }
}

/// Polls a call for Ollama's response headers, until the deadline.
fn headers<F, R, E>(
    fut: Pin<&mut F>,
    deadline: &mut Option<Sleep>,
    timing: &Timing,
    cx: &mut Context<'_>,
) -> Poll<Result<R, ApiError>>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    match fut.poll(cx) {
        Poll::Ready(res) => Poll::Ready(res.map_err(|e| unreachable(e.into()))),
        Poll::Pending => timed_out(deadline, timing, cx).map(Err),
    }
}

/// `Ready` with the 504 once the wait for Ollama's headers is over.
pub(super) fn timed_out(
    deadline: &mut Option<Sleep>,
    timing: &Timing,
    cx: &mut Context<'_>,
) -> Poll<ApiError> {
    let Some(deadline) = deadline.as_mut() else {
        return Poll::Pending;
    };
    ready!(deadline.as_mut().poll(cx));
    // Dropping the call cancels the upstream request.
    let secs = timing.idle_timeout.map_or(0, |d| d.as_secs());
    tracing::warn!(
        after_secs = secs,
        "Ollama sent no answer in time; giving up (upstream idle timeout)"
    );
    let failure = Failure::UpstreamTimeout;
    crate::telemetry::upstream_error(failure.code());
    let message = format!("no answer from Ollama for {secs} s (upstream idle timeout)");
    Poll::Ready(ApiError::new(failure.status(), message).with_code(failure.code()))
}

/// Ollama could not be reached.
fn unreachable(e: BoxError) -> ApiError {
    let chain = error_chain(&*e);
    tracing::warn!(error = %chain, "Ollama is unreachable");
    let failure = Failure::UpstreamLost;
    crate::telemetry::upstream_error(failure.code());
    ApiError::new(failure.status(), format!("could not reach Ollama: {chain}"))
        .with_code(failure.code())
}
