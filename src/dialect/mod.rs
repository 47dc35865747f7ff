//! Client dialects.
//!
//! A dialect is a module that knows one client API: it turns the client's
//! request into a request for Ollama's native API ([`Dialect::prepare`]),
//! and gives back a [`Transcode`] that turns Ollama's response body into the
//! client's. Chat-like dialects build their transcoder from the shared
//! [`Decoder`](crate::ollama::Decoder) plus an [`Encoder`](crate::ollama::Encoder)
//! of their own. Adding a dialect means adding a module and one line in
//! [`route`]; the service, the future and the body do not change.

pub(crate) mod chat;
pub(crate) mod completions;
pub(crate) mod embeddings;
pub(crate) mod messages;
pub(crate) mod models;
pub(crate) mod openai;
pub(crate) mod params;
pub(crate) mod responses;

use crate::config::Config;
use crate::error::{ApiError, BoxError};
use crate::ollama::{Decoder, Encoder};
use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};

/// Turns an upstream response body into the client's, piece by piece.
pub(crate) trait Transcode: Send {
    /// One complete line of the upstream body, without its `\n` (or, when
    /// [`Transcode::whole_body`] is true, the whole body at its end).
    fn line(&mut self, line: &[u8], out: &mut BytesMut);
    /// The upstream body ended. An error means the stream ended in a way
    /// that must not look like a clean finish to the client.
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BoxError>;
    /// The upstream body failed (connection dropped, timeout); write an
    /// in-band error if the dialect has one.
    fn abort(&mut self, error: &str, out: &mut BytesMut);
    /// Nothing has arrived from upstream for a while; a dialect may write a
    /// keep-alive (an SSE comment, an Anthropic `ping`). Default: nothing.
    fn idle(&mut self, _out: &mut BytesMut) {}
    /// Whether to get the whole body at once instead of line by line.
    fn whole_body(&self) -> bool {
        false
    }
    /// Why the stream failed, if it did: an answer buffered whole for a
    /// non-streaming client is then replaced by this error (its status and
    /// message in the client's dialect).
    fn failure(&self) -> Option<ApiError> {
        None
    }
}

/// Renders a whole upstream JSON document in a client's shape.
pub(crate) trait Render: Send {
    /// `body` is the complete upstream body (`{}` when it was empty).
    fn render(&mut self, body: &[u8], out: &mut BytesMut);
}

/// A [`Transcode`] for answers that are one JSON document: renders it once
/// the body is complete, nothing if the body failed.
pub(crate) struct WholeBody<R>(pub(crate) Option<R>);

impl<R: Render> WholeBody<R> {
    pub(crate) fn boxed(render: R) -> Box<dyn Transcode>
    where
        R: 'static,
    {
        Box::new(WholeBody(Some(render)))
    }
}

impl<R: Render> Transcode for WholeBody<R> {
    fn line(&mut self, line: &[u8], out: &mut BytesMut) {
        if let Some(mut r) = self.0.take() {
            r.render(line, out);
        }
    }
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BoxError> {
        self.line(b"{}", out);
        Ok(())
    }
    fn abort(&mut self, _error: &str, _out: &mut BytesMut) {
        self.0 = None;
    }
    fn whole_body(&self) -> bool {
        true
    }
}

/// What to send to Ollama for a translated request.
pub(crate) struct Upstream {
    pub(crate) method: Method,
    /// Path and query of the native endpoint, e.g. `/api/chat`.
    pub(crate) path: &'static str,
    /// The JSON body (empty for `GET`).
    pub(crate) body: Bytes,
    /// Translates a successful response.
    pub(crate) transcoder: Box<dyn Transcode>,
    /// `Content-Type` of the translated response.
    pub(crate) content_type: &'static str,
}

/// A native `/api/chat` request, finished with the layer's rules, and what a
/// chat-like dialect needs to answer it: the shared glue of their `prepare`.
pub(crate) struct ChatCall {
    /// The Ollama model (after aliases).
    pub(crate) model: String,
    /// Whether the client asked for a stream.
    pub(crate) stream: bool,
    forward_thinking: bool,
    num_ctx: Option<u64>,
    body: Bytes,
}

impl ChatCall {
    pub(crate) fn new(
        config: &Config,
        native: crate::native::ChatRequest,
        dialect: &'static str,
    ) -> Result<Self, ApiError> {
        let model = native.model.clone();
        let stream = native.stream;
        let finished = native.finish(config)?;
        tracing::debug!(model = %model, stream, bytes = finished.body.len(), dialect, "→ /api/chat");
        Ok(ChatCall {
            forward_thinking: config.reasoning_for(&model) == crate::config::ReasoningMode::Forward,
            model,
            stream,
            num_ctx: finished.num_ctx,
            body: finished.body,
        })
    }

    /// The upstream call, answered through `encoder`.
    pub(crate) fn upstream<E: Encoder + 'static>(self, encoder: E) -> Upstream {
        let transcoder =
            Decoder::new(encoder, self.forward_thinking).watch_context(&self.model, self.num_ctx);
        Upstream {
            method: Method::POST,
            path: "/api/chat",
            body: self.body,
            transcoder: Box::new(transcoder),
            content_type: if self.stream { SSE } else { JSON },
        }
    }
}

/// One client API.
pub(crate) trait Dialect: Sync {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Builds the native request, or an error for the client.
    fn prepare(
        &self,
        config: &Config,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<Upstream, ApiError>;
    /// Renders an error in this dialect's shape.
    fn error_body(&self, error: &ApiError) -> Bytes;
}

/// The dialect serving `method path`, or `None` to pass the request through.
pub(crate) fn route(method: &Method, path: &str) -> Option<&'static dyn Dialect> {
    let path = path.strip_suffix('/').unwrap_or(path);
    match (method, path) {
        (&Method::POST, "/v1/chat/completions") => Some(&chat::ChatCompletions),
        (&Method::POST, "/v1/messages") => Some(&messages::Messages),
        (&Method::POST, "/v1/messages/count_tokens") => Some(&messages::CountTokens),
        (&Method::POST, "/v1/responses") => Some(&responses::Responses),
        (&Method::POST, "/v1/completions") => Some(&completions::Completions),
        (&Method::POST, "/v1/embeddings") => Some(&embeddings::Embeddings),
        (&Method::GET, "/v1/models") => Some(&models::ListModels),
        (&Method::GET, p) if p.starts_with("/v1/models/") => Some(&models::RetrieveModel),
        _ => None,
    }
}

/// The dialect whose error shape fits `path` when no dialect serves it:
/// OpenAI's for `/v1/*`, Anthropic's for `/v1/messages*`, Ollama's own
/// `{"error":"…"}` elsewhere.
pub(crate) fn error_dialect(path: &str) -> &'static dyn Dialect {
    if path.starts_with("/v1/messages") {
        &messages::Messages
    } else if path.starts_with("/v1/") || path == "/v1" {
        &chat::ChatCompletions
    } else {
        &NativeErrors
    }
}

/// Renders errors as Ollama does, for native paths.
pub(crate) struct NativeErrors;

impl Dialect for NativeErrors {
    fn name(&self) -> &'static str {
        "native"
    }
    fn prepare(
        &self,
        _config: &Config,
        _parts: &http::request::Parts,
        _body: &[u8],
    ) -> Result<Upstream, ApiError> {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not a translated endpoint",
        ))
    }
    fn error_body(&self, error: &ApiError) -> Bytes {
        Bytes::from(serde_json::json!({"error": error.message}).to_string())
    }
}

/// Content type of a server-sent event stream.
pub(crate) const SSE: &str = "text/event-stream";
/// Content type of a JSON document.
pub(crate) const JSON: &str = "application/json";

/// Reads Ollama's error body (`{"error":"…"}`, plain text, or nothing) and
/// renders it in the client's dialect with the same status.
pub(crate) struct UpstreamError {
    dialect: &'static dyn Dialect,
    status: StatusCode,
    /// Replaces Ollama's message (e.g. gin's plain `404 page not found`).
    message: Option<String>,
    done: bool,
}

impl UpstreamError {
    pub(crate) fn new(dialect: &'static dyn Dialect, status: StatusCode) -> Self {
        UpstreamError {
            dialect,
            status,
            message: None,
            done: false,
        }
    }

    /// Reports `message` instead of what Ollama said.
    pub(crate) fn with_message(mut self, message: String) -> Self {
        self.message = Some(message);
        self
    }

    fn render(&mut self, body: &[u8], out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.done = true;
        let message = match self.message.take() {
            Some(m) => m,
            None => upstream_error_message(self.status, body),
        };
        let err = ApiError::new(self.status, message);
        out.extend_from_slice(&self.dialect.error_body(&err));
    }
}

/// The message in an Ollama error body.
pub(crate) fn upstream_error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct OllamaError {
        error: serde_json::Value,
    }
    let text = match serde_json::from_slice::<OllamaError>(body) {
        Ok(OllamaError {
            error: serde_json::Value::String(s),
        }) => s,
        Ok(OllamaError { error }) => error.to_string(),
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    if !text.is_empty() {
        return text;
    }
    match status {
        StatusCode::FORBIDDEN => "Ollama refused the request (403 with an empty body); it rejects Host headers that are not local".into(),
        s => format!(
            "Ollama answered {} {}",
            s.as_u16(),
            s.canonical_reason().unwrap_or("")
        ),
    }
}

impl Transcode for UpstreamError {
    fn line(&mut self, line: &[u8], out: &mut BytesMut) {
        self.render(line, out);
    }
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BoxError> {
        self.render(b"", out);
        Ok(())
    }
    fn abort(&mut self, _error: &str, out: &mut BytesMut) {
        self.render(b"", out);
    }
    fn whole_body(&self) -> bool {
        true
    }
}
