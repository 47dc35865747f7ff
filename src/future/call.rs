//! [`CallOllama`]: one call to Ollama, with a deadline for its headers and
//! the think-less retry.

use super::respond::{self, Template};
use crate::body::RequestBody;
use crate::config::Config;
use crate::error::{error_chain, ApiError, BoxError, Failure};
use crate::ollama::request::GenerationRequest;
use crate::timer::{Sleep, Timing};
use http::{Request, Response, StatusCode};
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
    config: Arc<Config>,
}

impl<S> ThinkRetry<S> {
    pub(crate) fn new(
        service: S,
        template: Template,
        request: GenerationRequest,
        config: Arc<Config>,
    ) -> Self {
        ThinkRetry {
            service,
            template,
            request,
            config,
        }
    }

    /// Whether `status` calls for a retry without `think`.
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

    /// What to remember once the retry is answered.
    fn learn(&self) -> Learn {
        Learn {
            model: self.request.model().to_string(),
            config: self.config.clone(),
        }
    }
}

/// The model a retry without `think` was for.
struct Learn {
    model: String,
    config: Arc<Config>,
}

impl Learn {
    /// The retry got `status`: a success shows the model cannot think.
    fn answered(&self, status: StatusCode) {
        if status.is_success() {
            tracing::warn!(model = %self.model, "model cannot think: not sending think to it from now on");
            self.config.learn_cannot_think(&self.model);
        }
    }
}

pin_project! {
    /// Calls Ollama. Resolves to its response, or to the error a client
    /// should see: 502 when Ollama cannot be reached, 504 when its headers
    /// do not come within the idle timeout (a non-streaming native call
    /// sends nothing until it is done).
    pub(crate) struct CallOllama<S, B>
    where
        S: Service<Request<RequestBody<B>>>,
    {
        #[pin]
        attempt: Attempt<S, B>,
        deadline: Option<Sleep>,
        timing: Timing,
    }
}

pin_project! {
    #[project = AttemptProj]
    enum Attempt<S, B>
    where
        S: Service<Request<RequestBody<B>>>,
    {
        First { #[pin] fut: S::Future, retry: Option<ThinkRetry<S>> },
        // Waiting for the service to take the retry.
        Readying { retry: ThinkRetry<S> },
        Retried { #[pin] fut: S::Future, learn: Learn },
    }
}

impl<S, B> CallOllama<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    pub(crate) fn new(fut: S::Future, retry: Option<ThinkRetry<S>>, timing: &Timing) -> Self {
        CallOllama {
            attempt: Attempt::First { fut, retry },
            deadline: timing.idle_deadline(),
            timing: timing.clone(),
        }
    }
}

impl<S, B, ResBody> Future for CallOllama<S, B>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let res = match this.attempt.as_mut().project() {
                AttemptProj::First { fut, retry } => {
                    let res = ready!(headers(fut, this.deadline, this.timing, cx))?;
                    if ThinkRetry::<S>::retries(res.status()) {
                        if let Some(retry) = retry.take() {
                            tracing::debug!(
                                "Ollama refused a request with think; retrying without it"
                            );
                            this.attempt.set(Attempt::Readying { retry });
                            continue;
                        }
                    }
                    res
                }
                AttemptProj::Readying { retry } => {
                    if let Err(e) = ready!(retry.service.poll_ready(cx)) {
                        return Poll::Ready(Err(unreachable(e.into())));
                    }
                    let req = retry.request()?;
                    let fut = retry.service.call(req);
                    let learn = retry.learn();
                    *this.deadline = this.timing.idle_deadline();
                    this.attempt.set(Attempt::Retried { fut, learn });
                    continue;
                }
                AttemptProj::Retried { fut, learn } => {
                    let res = ready!(headers(fut, this.deadline, this.timing, cx))?;
                    learn.answered(res.status());
                    res
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
    let message = format!("no answer from Ollama for {secs} s (upstream idle timeout)");
    Poll::Ready(ApiError::new(failure.status(), message).with_code(failure.code()))
}

/// Ollama could not be reached.
fn unreachable(e: BoxError) -> ApiError {
    let chain = error_chain(&*e);
    tracing::warn!(error = %chain, "Ollama is unreachable");
    let failure = Failure::UpstreamLost;
    ApiError::new(failure.status(), format!("could not reach Ollama: {chain}"))
        .with_code(failure.code())
}
