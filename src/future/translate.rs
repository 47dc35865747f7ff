//! [`Translate`]: a translated request from the client's body to the
//! client's response.

use super::call::{CallOllama, ThinkRetry};
use super::collect::CollectAnswer;
use super::respond::{self, Answer, Template};
use super::Carry;
use crate::access::Caller;
use crate::agent::{Agent, Call, Rounds};
use crate::body::{RequestBody, TranslateBody};
use crate::config::Config;
use crate::dialect::{Delivery, Dialect};
use crate::error::{ApiError, BoxError};
use crate::limits::{self, too_large, Hold, ReadBody};
use crate::shared::Shared;
use crate::telemetry::Meter;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tower_service::Service;

/// What reading the request needs to go on with.
pub(crate) struct Job<S> {
    service: S,
    parts: http::request::Parts,
    dialect: &'static dyn Dialect,
    config: Arc<Config>,
    shared: Arc<Shared>,
}

pin_project! {
    /// Reads the client's body, calls Ollama, and answers in the dialect;
    /// every failure is a response in the dialect's error shape.
    pub(crate) struct Translate<S, ReqBody, ResBody>
    where
        S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
        ReqBody: Body,
        ReqBody::Error: Into<BoxError>,
        ResBody: Body,
        ResBody::Error: Into<BoxError>,
    {
        #[pin]
        step: Step<S, ReqBody, ResBody>,
        dialect: &'static dyn Dialect,
    }
}

pin_project! {
    #[project = StepProj]
    enum Step<S, ReqBody, ResBody>
    where
        S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
        ReqBody: Body,
        ReqBody::Error: Into<BoxError>,
        ResBody: Body,
        ResBody::Error: Into<BoxError>,
    {
        Read { #[pin] read: Carry<ReadBody<ReqBody>, Job<S>> },
        Call { #[pin] call: Carry<CallOllama<S, ReqBody, ResBody>, Answer<ResBody>> },
        Collect {
            #[pin] collect: Carry<CollectAnswer<ResBody>, (http::response::Parts, &'static dyn Dialect)>,
        },
        // Answered by the dialect without Ollama; `None` once taken.
        Local { res: Option<Response<TranslateBody<ResBody>>> },
    }
}

impl<S, ReqBody, ResBody> Translate<S, ReqBody, ResBody>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    /// Starts reading `req` for `dialect`; a declared length over the limit
    /// is refused before a byte is read.
    pub(crate) fn new(
        req: Request<ReqBody>,
        dialect: &'static dyn Dialect,
        service: S,
        config: Arc<Config>,
        shared: Arc<Shared>,
    ) -> Result<Self, ApiError> {
        let limit = config.max_request_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit));
        }
        // gzip and zstd are decoded as they come, the decoded size bounded.
        let encoding = limits::encoding(req.headers())?;
        let (parts, body) = req.into_parts();
        let hold = Hold::new(shared.budget.clone());
        let read =
            ReadBody::new(body, limit, hold, config.timing.body_deadline()).decoding(encoding)?;
        let job = Job {
            service,
            parts,
            dialect,
            config,
            shared,
        };
        let read = Carry::new(read, job);
        Ok(Translate {
            step: Step::Read { read },
            dialect,
        })
    }
}

impl<S, ReqBody, ResBody> Translate<S, ReqBody, ResBody>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    /// The dialect answering.
    pub(crate) fn dialect(&self) -> &'static dyn Dialect {
        self.dialect
    }
}

/// The request is read: the native call, or the error for the client.
fn start_call<S, ReqBody, ResBody>(
    read: Result<(Bytes, Hold), ApiError>,
    mut job: Job<S>,
) -> Result<Step<S, ReqBody, ResBody>, ApiError>
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
    let (bytes, mut hold) = read?;
    limits::reserve_parse(&mut hold, &bytes)?;
    let up = job
        .dialect
        .prepare(&job.config, &job.shared, &job.parts, &bytes)?;
    if let Some(document) = up.local {
        let mut res = Response::new(TranslateBody::full(document));
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::dialect::JSON),
        );
        return Ok(Step::Local { res: Some(res) });
    }
    let meter = match (up.operation(), up.model.as_deref()) {
        (Some(operation), Some(model)) => Some(Meter::start(
            operation,
            model,
            job.config.server_address.as_deref(),
            job.parts.extensions.get::<Caller>().map(Caller::name),
            job.config.names_model(model),
        )),
        _ => None,
    };
    // Parsed: the client's body and its parse are gone.
    drop((hold, bytes));
    let mut template = Template::new(job.parts, &job.config.session_headers);
    template.conversation(up.conversation.as_deref());
    template.route(up.routing);
    let req = respond::upstream_request(&template, up.endpoint, up.body)?;
    let agent = up.search.map(|(native, tool)| {
        let call = caller(job.service.clone(), template.clone());
        let agent = Agent::new(call, native, &job.config, job.shared.no_think.clone(), tool);
        Box::new(agent) as Box<dyn Rounds<ResBody>>
    });
    let retry = up.thinking.map(|r| {
        ThinkRetry::new(
            job.service.clone(),
            template,
            r,
            job.shared.no_think.clone(),
        )
    });
    let fut = job.service.call(req);
    let answer = Answer {
        meter,
        dialect: job.dialect,
        delivery: up.delivery,
        transcoder: up.transcoder,
        timing: job.config.timing.clone(),
        limit: job.config.max_answer_bytes,
        agent,
    };
    let call = CallOllama::new(fut, retry, &job.config.timing);
    Ok(Step::Call {
        call: Carry::new(call, answer),
    })
}

/// Calls `service` with native requests made from `template`: the
/// agent's follow-ups and searches.
fn caller<S, ReqBody, ResBody>(service: S, template: Template) -> Call<ResBody>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqBody: Body + Send + 'static,
    ResBody: Send + 'static,
{
    Box::new(move |endpoint, body| {
        let req = respond::upstream_request::<ReqBody>(&template, endpoint, body);
        let mut service = service.clone();
        Box::pin(async move {
            let req = req.map_err(|e| BoxError::from(e.message))?;
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            service.call(req).await.map_err(Into::into)
        })
    })
}

impl<S, ReqBody, ResBody> Future for Translate<S, ReqBody, ResBody>
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
    type Output = Response<TranslateBody<ResBody>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.step.as_mut().project() {
                StepProj::Read { read } => {
                    let (read, job) = ready!(read.poll(cx));
                    let dialect = job.dialect;
                    match start_call(read, job) {
                        Ok(next) => this.step.set(next),
                        Err(e) => return Poll::Ready(respond::error(dialect, &e)),
                    }
                }
                StepProj::Call { call } => {
                    let (res, mut answer) = ready!(call.poll(cx));
                    let dialect = answer.dialect;
                    let res = match res {
                        Ok(res) => res,
                        Err(e) => {
                            if let Some(meter) = answer.meter.as_mut() {
                                meter.finish(None, Some(e.code.unwrap_or(e.status.as_str())));
                            }
                            return Poll::Ready(respond::error(dialect, &e));
                        }
                    };
                    // Collected answers get their status once they are
                    // whole: a failure half-way is an error, not a 200.
                    let collect = answer.delivery != Delivery::Stream && res.status().is_success();
                    let limit = answer.limit;
                    let res = respond::translated(res, answer);
                    if !collect {
                        return Poll::Ready(res);
                    }
                    let (parts, body) = res.into_parts();
                    let collect = Carry::new(CollectAnswer::new(body, limit), (parts, dialect));
                    this.step.set(Step::Collect { collect });
                }
                StepProj::Local { res } => {
                    return match res.take() {
                        Some(res) => Poll::Ready(res),
                        // Polled after completion.
                        None => Poll::Pending,
                    };
                }
                StepProj::Collect { collect } => {
                    let (answer, (mut parts, dialect)) = ready!(collect.poll(cx));
                    return Poll::Ready(match answer {
                        Ok(whole) => {
                            parts
                                .headers
                                .insert(header::CONTENT_LENGTH, HeaderValue::from(whole.len()));
                            Response::from_parts(parts, TranslateBody::full(whole))
                        }
                        Err(e) => respond::error(dialect, &e),
                    });
                }
            }
        }
    }
}
