//! [`ResponseFuture`]: collects a request, calls Ollama, wraps the answer.

use crate::body::{RequestBody, TranslateBody};
use crate::config::Config;
use crate::dialect::{Dialect, Transcode, UpstreamError, JSON, SSE};
use crate::error::{error_chain, ApiError, BoxError};
use crate::timer::Sleep;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tower_service::Service;

pin_project! {
    /// Response future of [`OllamaTranslate`](crate::OllamaTranslate).
    ///
    /// See the [crate docs](crate) for more details.
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
        ReqBody: Body,
        ReqBody::Error: Into<BoxError>,
    {
        #[pin]
        state: State<S, ReqBody, ResBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, ResBody>
    where
        S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
        ReqBody: Body,
        ReqBody::Error: Into<BoxError>,
    {
        Passthrough {
            #[pin] fut: S::Future,
            // For unknown `/v1/*` paths: Ollama's plain-text 404/405 becomes
            // an OpenAI error naming the request.
            openai_not_found: Option<String>,
        },
        Collect {
            #[pin] collect: Collect<Limited<ReqBody>>,
            pending: Option<Pending<S>>,
        },
        Call {
            #[pin] fut: S::Future,
            ctx: Option<CallCtx>,
            // Sent again without `think` if Ollama answers 400.
            retry: Option<Retry<S>>,
            // Set on the retry: the model to remember as unable to think.
            learn: Option<(Arc<Config>, String)>,
            // The upstream idle timeout also bounds the wait for Ollama's
            // headers (a non-streaming answer sends no byte until it is done).
            deadline: Option<Sleep>,
        },
        Retrying { retry: Option<Retry<S>>, ctx: Option<CallCtx> },
        // A non-streaming client's answer, read whole before its status is
        // chosen: Ollama streams it, so silence is bounded per token and a
        // failure half-way still gets a proper error status.
        Buffer {
            #[pin] body: TranslateBody<ResBody>,
            parts: Option<http::response::Parts>,
            collected: BytesMut,
            dialect: &'static dyn Dialect,
        },
        Reject { error: Option<(&'static dyn Dialect, ApiError)> },
    }
}

struct Pending<S> {
    service: S,
    parts: http::request::Parts,
    dialect: &'static dyn Dialect,
    config: Arc<Config>,
}

/// A second attempt without `think`: Ollama answers 400 to `think` on a
/// model that cannot think, and the client should not pay for that.
struct Retry<S> {
    service: S,
    template: Request<()>,
    body: Bytes,
    model: String,
    config: Arc<Config>,
}

impl<S> Retry<S> {
    fn request<B>(&self) -> Request<RequestBody<B>> {
        let t = &self.template;
        let mut req = Request::new(RequestBody::rewritten(self.body.clone()));
        *req.method_mut() = t.method().clone();
        *req.uri_mut() = t.uri().clone();
        *req.version_mut() = t.version();
        *req.headers_mut() = t.headers().clone();
        *req.extensions_mut() = t.extensions().clone();
        req.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        req
    }
}

struct CallCtx {
    dialect: &'static dyn Dialect,
    timer: Option<crate::timer::Timer>,
    transcoder: Box<dyn Transcode>,
    content_type: &'static str,
    /// A non-streaming client: Ollama is asked to stream, the answer is
    /// collected before it is sent.
    buffer: bool,
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
{
    pub(crate) fn passthrough(fut: S::Future, openai_not_found: Option<String>) -> Self {
        ResponseFuture {
            state: State::Passthrough {
                fut,
                openai_not_found,
            },
        }
    }

    pub(crate) fn reject(dialect: &'static dyn Dialect, error: ApiError) -> Self {
        ResponseFuture {
            state: State::Reject {
                error: Some((dialect, error)),
            },
        }
    }

    pub(crate) fn translate(
        req: Request<ReqBody>,
        dialect: &'static dyn Dialect,
        service: S,
        config: Arc<Config>,
    ) -> Self {
        let limit = config.max_request_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return ResponseFuture {
                state: State::Reject {
                    error: Some((dialect, too_large(limit))),
                },
            };
        }
        let (parts, body) = req.into_parts();
        ResponseFuture {
            state: State::Collect {
                collect: Limited::new(body, limit).collect(),
                pending: Some(Pending {
                    service,
                    parts,
                    dialect,
                    config,
                }),
            },
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the limit of {limit} bytes"),
    )
    .with_code("request_too_large")
}

fn error_response<B>(dialect: &'static dyn Dialect, err: &ApiError) -> Response<TranslateBody<B>> {
    tracing::debug!(dialect = dialect.name(), status = err.status.as_u16(), message = %err.message, "answering with an error");
    let mut res = Response::new(TranslateBody::full(dialect.error_body(err)));
    *res.status_mut() = err.status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    res
}

/// The request for Ollama: same scheme and authority, the native path, a
/// fresh set of headers (the client's credentials and `Host` stay behind).
fn upstream_request<B>(
    parts: http::request::Parts,
    up: &crate::dialect::Upstream,
    body: Bytes,
) -> Result<Request<RequestBody<B>>, ApiError> {
    let mut uri = parts.uri.into_parts();
    uri.path_and_query = Some(PathAndQuery::from_static(up.path));
    let uri = Uri::from_parts(uri).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not build the upstream URI: {e}"),
        )
    })?;
    let mut req = Request::new(RequestBody::rewritten(body.clone()));
    *req.method_mut() = up.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = parts.version;
    *req.extensions_mut() = parts.extensions;
    let h = req.headers_mut();
    if !body.is_empty() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    if let Some(ua) = parts.headers.get(header::USER_AGENT) {
        h.insert(header::USER_AGENT, ua.clone());
    }
    Ok(req)
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<TranslateBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Passthrough {
                    fut,
                    openai_not_found,
                } => {
                    let res = ready!(fut.poll(cx))?;
                    let missing = matches!(res.status().as_u16(), 404 | 405);
                    let json = res
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.contains("json"));
                    if let (true, false, Some(what)) = (missing, json, openai_not_found.take()) {
                        let (mut parts, body) = res.into_parts();
                        parts.headers.remove(header::CONTENT_LENGTH);
                        parts
                            .headers
                            .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
                        let transcoder = UpstreamError::new(
                            &crate::dialect::chat::ChatCompletions,
                            StatusCode::NOT_FOUND,
                        )
                        .with_message(format!("Invalid URL ({what}): this proxy serves /v1/chat/completions, /v1/responses, /v1/messages, /v1/completions, /v1/embeddings and /v1/models"));
                        parts.status = StatusCode::NOT_FOUND;
                        let body = TranslateBody::translate(body, Box::new(transcoder), None);
                        return Poll::Ready(Ok(Response::from_parts(parts, body)));
                    }
                    return Poll::Ready(Ok(res.map(TranslateBody::passthrough)));
                }
                StateProj::Reject { error } => {
                    let (dialect, err) = match error.take() {
                        Some(e) => e,
                        None => (
                            &crate::dialect::chat::ChatCompletions as &dyn Dialect,
                            ApiError::new(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "future polled after completion",
                            ),
                        ),
                    };
                    return Poll::Ready(Ok(error_response(dialect, &err)));
                }
                StateProj::Collect { collect, pending } => {
                    let collected = ready!(collect.poll(cx));
                    let Some(mut p) = pending.take() else {
                        this.state.set(State::Reject { error: None });
                        continue;
                    };
                    let bytes = match collected {
                        Ok(c) => c.to_bytes(),
                        Err(e) => {
                            let err = if e.downcast_ref::<LengthLimitError>().is_some() {
                                too_large(p.config.max_request_bytes)
                            } else {
                                ApiError::new(
                                    StatusCode::BAD_REQUEST,
                                    format!(
                                        "could not read the request body: {}",
                                        error_chain(&*e)
                                    ),
                                )
                            };
                            return Poll::Ready(Ok(error_response(p.dialect, &err)));
                        }
                    };
                    let mut up = match p.dialect.prepare(&p.config, &p.parts, &bytes) {
                        Ok(up) => up,
                        Err(err) => return Poll::Ready(Ok(error_response(p.dialect, &err))),
                    };
                    let buffer = stream_instead(&mut up);
                    let body = up.body.clone();
                    let req = match upstream_request(p.parts, &up, body) {
                        Ok(r) => r,
                        Err(err) => return Poll::Ready(Ok(error_response(p.dialect, &err))),
                    };
                    let retry = crate::native::without_think(&up.body).map(|(model, body)| {
                        let mut template = Request::new(());
                        *template.method_mut() = req.method().clone();
                        *template.uri_mut() = req.uri().clone();
                        *template.version_mut() = req.version();
                        *template.headers_mut() = req.headers().clone();
                        *template.extensions_mut() = req.extensions().clone();
                        Retry {
                            service: p.service.clone(),
                            template,
                            body,
                            model,
                            config: p.config.clone(),
                        }
                    });
                    let fut = p.service.call(req);
                    let deadline = header_deadline(p.config.timer.as_ref());
                    this.state.set(State::Call {
                        fut,
                        deadline,
                        ctx: Some(CallCtx {
                            dialect: p.dialect,
                            timer: p.config.timer.clone(),
                            transcoder: up.transcoder,
                            content_type: up.content_type,
                            buffer,
                        }),
                        retry,
                        learn: None,
                    });
                }
                StateProj::Retrying { retry, ctx } => {
                    let (Some(r), Some(c)) = (retry.as_mut(), ctx.as_ref()) else {
                        this.state.set(State::Reject { error: None });
                        continue;
                    };
                    if let Err(e) = ready!(r.service.poll_ready(cx)) {
                        let e: BoxError = e.into();
                        let err = ApiError::new(
                            StatusCode::BAD_GATEWAY,
                            format!("could not reach Ollama: {}", error_chain(&*e)),
                        );
                        return Poll::Ready(Ok(error_response(c.dialect, &err)));
                    }
                    let (Some(mut r), Some(c)) = (retry.take(), ctx.take()) else {
                        continue;
                    };
                    let fut = r.service.call(r.request());
                    let deadline = header_deadline(c.timer.as_ref());
                    this.state.set(State::Call {
                        fut,
                        deadline,
                        ctx: Some(c),
                        retry: None,
                        learn: Some((r.config, r.model)),
                    });
                }
                StateProj::Buffer {
                    mut body,
                    parts,
                    collected,
                    dialect,
                } => {
                    let failed = loop {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => {
                                if let Ok(data) = frame.into_data() {
                                    collected.extend_from_slice(&data);
                                }
                            }
                            Some(Err(e)) => break Some(e),
                            None => break None,
                        }
                    };
                    let failure = body.as_ref().get_ref().failure().or_else(|| {
                        failed.map(|e| ApiError::new(StatusCode::BAD_GATEWAY, error_chain(&*e)))
                    });
                    let dialect: &'static dyn Dialect = *dialect;
                    if let Some(err) = failure {
                        tracing::warn!(status = err.status.as_u16(), error = %err.message, "Ollama failed while answering");
                        return Poll::Ready(Ok(error_response(dialect, &err)));
                    }
                    let Some(mut parts) = parts.take() else {
                        this.state.set(State::Reject { error: None });
                        continue;
                    };
                    let whole = collected.split().freeze();
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(whole.len()));
                    return Poll::Ready(Ok(Response::from_parts(
                        parts,
                        TranslateBody::full(whole),
                    )));
                }
                StateProj::Call {
                    fut,
                    ctx,
                    retry,
                    learn,
                    deadline,
                } => {
                    let res = match fut.poll(cx) {
                        Poll::Ready(res) => res,
                        Poll::Pending => {
                            let timed_out = deadline
                                .as_mut()
                                .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                            if !timed_out {
                                return Poll::Pending;
                            }
                            let Some(ctx) = ctx.take() else {
                                this.state.set(State::Reject { error: None });
                                continue;
                            };
                            let secs = ctx
                                .timer
                                .as_ref()
                                .and_then(|t| t.idle_timeout)
                                .map_or(0, |d| d.as_secs());
                            tracing::warn!(
                                after_secs = secs,
                                "Ollama sent no answer in time; giving up (upstream idle timeout)"
                            );
                            let err = ApiError::new(
                                StatusCode::GATEWAY_TIMEOUT,
                                format!(
                                    "no answer from Ollama for {secs} s (upstream idle timeout)"
                                ),
                            )
                            .with_code("upstream_timeout");
                            // Dropping the call cancels the upstream request.
                            this.state.set(State::Reject { error: None });
                            return Poll::Ready(Ok(error_response(ctx.dialect, &err)));
                        }
                    };
                    let Some(ctx) = ctx.take() else {
                        this.state.set(State::Reject { error: None });
                        continue;
                    };
                    if let Ok(r) = &res {
                        if r.status() == StatusCode::BAD_REQUEST && retry.is_some() {
                            tracing::debug!(
                                "Ollama refused a request with think; retrying without it"
                            );
                            let retry = retry.take();
                            this.state.set(State::Retrying {
                                retry,
                                ctx: Some(ctx),
                            });
                            continue;
                        }
                        if r.status().is_success() {
                            if let Some((config, model)) = learn.take() {
                                tracing::warn!(model = %model, "model cannot think: not sending think to it from now on");
                                config.learn_cannot_think(&model);
                            }
                        }
                    }
                    if ctx.buffer && res.as_ref().is_ok_and(|r| r.status().is_success()) {
                        if let Ok(r) = res {
                            let dialect = ctx.dialect;
                            let (parts, body) = translate_response(r, ctx).into_parts();
                            this.state.set(State::Buffer {
                                body,
                                parts: Some(parts),
                                collected: BytesMut::new(),
                                dialect,
                            });
                        }
                        continue;
                    }
                    return Poll::Ready(Ok(match res {
                        Ok(res) => translate_response(res, ctx),
                        Err(e) => {
                            let e: BoxError = e.into();
                            tracing::warn!(error = %error_chain(&*e), "Ollama is unreachable");
                            let err = ApiError::new(
                                StatusCode::BAD_GATEWAY,
                                format!("could not reach Ollama: {}", error_chain(&*e)),
                            )
                            .with_code("upstream_unreachable");
                            error_response(ctx.dialect, &err)
                        }
                    }));
                }
            }
        }
    }
}

/// For a non-streaming client of a chat-like dialect, asks Ollama to stream
/// anyway (the line decoder handles both), so that the idle timeout bounds
/// the silence between tokens rather than the whole generation. Native
/// requests end with their `stream` field, so the switch is a suffix edit.
/// Returns whether the answer must be collected before it is sent.
fn stream_instead(up: &mut crate::dialect::Upstream) -> bool {
    const OFF: &[u8] = b"\"stream\":false}";
    if up.content_type != JSON
        || up.transcoder.whole_body()
        || !matches!(up.path, "/api/chat" | "/api/generate")
        || !up.body.ends_with(OFF)
    {
        return false;
    }
    let mut body = Vec::with_capacity(up.body.len());
    body.extend_from_slice(&up.body[..up.body.len() - OFF.len()]);
    body.extend_from_slice(b"\"stream\":true}");
    up.body = Bytes::from(body);
    true
}

/// A sleep for the wait for Ollama's headers, when an idle timeout is set.
fn header_deadline(timer: Option<&crate::timer::Timer>) -> Option<Sleep> {
    let t = timer?;
    Some((t.sleep)(t.idle_timeout?))
}

fn translate_response<B>(res: Response<B>, ctx: CallCtx) -> Response<TranslateBody<B>> {
    let (mut parts, body) = res.into_parts();
    let h = &mut parts.headers;
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
    ] {
        h.remove(name);
    }
    let body = if parts.status.is_success() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(ctx.content_type),
        );
        if ctx.content_type == SSE {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        }
        TranslateBody::translate(body, ctx.transcoder, ctx.timer.as_ref())
    } else {
        tracing::debug!(
            dialect = ctx.dialect.name(),
            status = parts.status.as_u16(),
            "Ollama answered with an error"
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
        TranslateBody::translate(
            body,
            Box::new(UpstreamError::new(ctx.dialect, parts.status)),
            None,
        )
    };
    Response::from_parts(parts, body)
}
