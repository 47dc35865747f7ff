//! Client dialects.
//!
//! A dialect is a module that knows one client API: it turns the client's
//! request into a request for Ollama's native API ([`Dialect::prepare`]),
//! and gives back a [`Transcode`] that turns Ollama's response body into the
//! client's. Chat-like dialects build their transcoder from the shared
//! [`Decoder`] plus an [`Encoder`]
//! of their own. Adding a dialect means adding a module and its lines in
//! [`SERVED`]; the service, the future and the body do not change.
//!
//! Arrows point one way: dialects use `ollama` (the wire), `native` (the
//! rules for native requests), `params` (field readers) and `openai` (what
//! the OpenAI dialects share); no dialect imports another, and the core
//! (layer, service, future, body) knows dialects only through [`SERVED`]
//! and [`error_dialect`].

/// Implements [`Dialect`] for a unit struct from its name, the function
/// that prepares the native call, and the function that renders errors.
/// With `shared` after them, the prepare function also takes the layer's
/// run-time state (`fn(&Config, &Shared, &Parts, &[u8])`).
macro_rules! dialect {
    ($ty:ident, $name:literal, $prepare:path, $errors:path) => {
        dialect!(@impl $ty, $name, $errors, |config, _shared, parts, body| $prepare(
            config, parts, body
        ));
    };
    ($ty:ident, $name:literal, $prepare:path, $errors:path, shared) => {
        dialect!(@impl $ty, $name, $errors, |config, shared, parts, body| $prepare(
            config, shared, parts, body
        ));
    };
    (@impl $ty:ident, $name:literal, $errors:path, |$config:ident, $shared:ident, $parts:ident, $body:ident| $call:expr) => {
        impl $crate::dialect::Dialect for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn prepare(
                &self,
                $config: &$crate::config::Config,
                $shared: &$crate::shared::Shared,
                $parts: &http::request::Parts,
                $body: &[u8],
            ) -> Result<$crate::dialect::Upstream, $crate::error::ApiError> {
                $call
            }
            fn error_body(&self, error: &$crate::error::ApiError) -> bytes::Bytes {
                $errors(error)
            }
        }
    };
}

pub(crate) mod chat;
pub(crate) mod completions;
pub(crate) mod embeddings;
pub(crate) mod messages;
pub(crate) mod models;
pub(crate) mod native;
pub(crate) mod openai;
pub(crate) mod params;
pub(crate) mod responses;

use crate::config::{Config, ReasoningMode};
use crate::error::{ApiError, BoxError, Failure, StreamError};
use crate::ollama::request::ChatRequest;
use crate::ollama::request::{Endpoint, GenerationRequest};
use crate::ollama::{Decoder, Encoder, RoundEnd, Rounds, ServerCall, ServerResult, UpstreamError};
use crate::search::{self, SearchTool};
use crate::shared::Shared;
pub(crate) use crate::transcode::Transcode;
use crate::transcode::Usage;
use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};

/// A [`Decoder`] is the transcoder of every generating dialect.
impl<E: Encoder> Transcode for Decoder<E> {
    fn line(&mut self, line: &[u8], out: &mut BytesMut) {
        Decoder::line(self, line, out);
    }
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BoxError> {
        Decoder::finish(self, out)
    }
    fn abort(&mut self, failure: Failure, message: &str, out: &mut BytesMut) {
        Decoder::abort(self, failure, message, out);
    }
    fn idle(&mut self, out: &mut BytesMut) {
        Decoder::idle(self, out);
    }
    fn failure(&self) -> Option<ApiError> {
        Decoder::failure(self)
    }
    fn usage(&self) -> Option<Usage<'_>> {
        Decoder::usage(self).map(|(input, output, finish_reason)| Usage {
            input: Some(input),
            output: Some(output),
            finish_reason,
        })
    }
    fn take_round(&mut self) -> Option<RoundEnd> {
        Decoder::take_round(self)
    }
    fn server_call(&mut self, call: &ServerCall<'_>, out: &mut BytesMut) {
        Decoder::server_call(self, call, out);
    }
    fn server_result(&mut self, result: &ServerResult<'_>, out: &mut BytesMut) {
        Decoder::server_result(self, result, out);
    }
    fn end_turn(&mut self, out: &mut BytesMut) {
        Decoder::end_turn(self, out);
    }
    fn next_round(&mut self) {
        Decoder::next_round(self);
    }
}

/// Renders a whole upstream JSON document in a client's shape.
pub(crate) trait Render: Send + Sync {
    /// `body` is the complete upstream body (`{}` when it was empty). An
    /// error means Ollama's answer cannot be rendered (not JSON, missing
    /// fields): the client gets it, with its status, instead of a document.
    fn render(&mut self, body: &[u8], out: &mut BytesMut) -> Result<(), ApiError>;
    /// What Ollama said the request used, once rendered.
    fn usage(&self) -> Option<Usage<'_>> {
        None
    }
}

/// A [`Transcode`] for answers that are one JSON document: renders it once
/// the body is complete; a body that failed, or that cannot be rendered, is
/// a [`Transcode::failure`] for the client's status.
pub(crate) struct WholeBody<R> {
    render: R,
    rendered: bool,
    failure: Option<ApiError>,
}

impl<R: Render> WholeBody<R> {
    pub(crate) fn new(render: R) -> Self {
        WholeBody {
            render,
            rendered: false,
            failure: None,
        }
    }

    pub(crate) fn boxed(render: R) -> Box<dyn Transcode>
    where
        R: 'static,
    {
        Box::new(WholeBody::new(render))
    }
}

impl<R: Render> Transcode for WholeBody<R> {
    fn line(&mut self, line: &[u8], out: &mut BytesMut) {
        if !std::mem::replace(&mut self.rendered, true) {
            if let Err(e) = self.render.render(line, out) {
                tracing::warn!(status = e.status.as_u16(), error = %e.message, "Ollama's answer cannot be rendered");
                self.failure = Some(e);
            }
        }
    }
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BoxError> {
        self.line(b"{}", out);
        match &self.failure {
            Some(e) => Err(Box::new(StreamError(e.message.clone()))),
            None => Ok(()),
        }
    }
    fn abort(&mut self, failure: Failure, error: &str, _out: &mut BytesMut) {
        if !std::mem::replace(&mut self.rendered, true) {
            let message = format!("connection to Ollama lost: {error}");
            self.failure = Some(ApiError::new(failure.status(), message).with_code(failure.code()));
        }
    }
    fn whole_body(&self) -> bool {
        true
    }
    fn failure(&self) -> Option<ApiError> {
        self.failure.clone()
    }
    fn usage(&self) -> Option<Usage<'_>> {
        self.render.usage()
    }
}

/// How the translated answer reaches the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Server-sent events, translated as Ollama streams.
    Stream,
    /// One JSON document for a client that did not ask to stream: Ollama
    /// is asked to stream anyway (so the idle timeout bounds the silence
    /// between tokens, not the whole generation) and the answer is
    /// collected before its status is chosen.
    Collect,
    /// One JSON document rendered from Ollama's one JSON document.
    Document,
}

impl Delivery {
    /// `Content-Type` of the translated answer.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Delivery::Stream => SSE,
            Delivery::Collect | Delivery::Document => JSON,
        }
    }
}

/// What a dialect wants from Ollama for one request.
pub(crate) struct Upstream {
    /// The native endpoint.
    pub(crate) endpoint: Endpoint,
    /// The JSON body (empty for `GET`).
    pub(crate) body: Bytes,
    /// How the answer reaches the client.
    pub(crate) delivery: Delivery,
    /// Translates a successful response.
    pub(crate) transcoder: Box<dyn Transcode>,
    /// The request as sent, kept when it asks the model to think: Ollama
    /// answers 400 to `think` on a model that cannot think, and the call is
    /// then made again without it.
    pub(crate) thinking: Option<GenerationRequest>,
    /// The model as the client named it, for metrics and traces.
    pub(crate) model: Option<String>,
    /// The request offers a web-search server tool the layer runs: the
    /// native request as sent (for the follow-ups) and what the tool asks.
    pub(crate) search: Option<(ChatRequest, SearchTool)>,
    /// Answered without calling Ollama: this JSON document (a kept
    /// response).
    pub(crate) local: Option<Bytes>,
    /// Names the conversation to a pool (`x-session-id`) when the client's
    /// headers do not: a kept Responses conversation's first response.
    pub(crate) conversation: Option<String>,
    /// The model and the conversation, for a pool (a generation's).
    pub(crate) routing: Option<crate::ollama::routing::Seed>,
}

impl Upstream {
    /// A call answered with one JSON document.
    pub(crate) fn document(
        endpoint: Endpoint,
        body: Bytes,
        transcoder: Box<dyn Transcode>,
    ) -> Self {
        Upstream {
            endpoint,
            body,
            delivery: Delivery::Document,
            transcoder,
            thinking: None,
            model: None,
            search: None,
            local: None,
            conversation: None,
            routing: None,
        }
    }

    /// An answer the dialect has without Ollama: one JSON document.
    pub(crate) fn local(body: Bytes) -> Self {
        Upstream {
            local: Some(body),
            ..Upstream::document(
                Endpoint::Tags,
                Bytes::new(),
                Box::new(ErrorBody::new(&NativeErrors, StatusCode::OK)),
            )
        }
    }

    /// Names the model as the client asked for it (before aliases).
    pub(crate) fn requested_as(mut self, model: &str) -> Self {
        self.model = Some(model.to_string());
        self
    }

    /// The GenAI operation this call is, if it is one: `chat`,
    /// `text_completion` or `embeddings` (not a model list, not a count).
    pub(crate) fn operation(&self) -> Option<&'static str> {
        match (self.endpoint, self.delivery) {
            (Endpoint::Chat, Delivery::Stream | Delivery::Collect) => Some("chat"),
            (Endpoint::Generate, _) => Some("text_completion"),
            (Endpoint::Embed, _) => Some("embeddings"),
            _ => None,
        }
    }
}

/// A generating request (`/api/chat`, `/api/generate`), finished with the
/// layer's rules, and what a dialect needs to answer it: the shared glue of
/// their `prepare`.
pub(crate) struct ChatCall {
    /// The Ollama model (after aliases).
    pub(crate) model: String,
    /// Whether the client asked for a stream.
    pub(crate) stream: bool,
    reasoning: ReasoningMode,
    /// Whether the client asked for the model's reasoning.
    asked_for_thinking: bool,
    num_ctx: Option<u64>,
    endpoint: Endpoint,
    body: Bytes,
    thinking: Option<GenerationRequest>,
    search: Option<(ChatRequest, SearchTool)>,
    /// Bytes of a round's text kept for a follow-up.
    round_cap: usize,
    routing: crate::ollama::routing::Seed,
}

impl ChatCall {
    /// Applies the layer's rules to `native` and encodes it. Ollama is
    /// always asked to stream; the client's own wish decides the delivery.
    pub(crate) fn new(
        config: &Config,
        shared: &Shared,
        native: impl Into<GenerationRequest>,
        dialect: &'static str,
    ) -> Result<Self, ApiError> {
        Self::build(config, shared, native.into(), dialect, None)
    }

    /// [`Self::new`] for a chat whose tools include the web-search
    /// function the layer runs (`tool`, when the dialect found one): the
    /// request is kept for the follow-ups.
    pub(crate) fn searching(
        config: &Config,
        shared: &Shared,
        native: ChatRequest,
        dialect: &'static str,
        tool: Option<SearchTool>,
    ) -> Result<Self, ApiError> {
        Self::build(config, shared, native.into(), dialect, tool)
    }

    fn build(
        config: &Config,
        shared: &Shared,
        mut native: GenerationRequest,
        dialect: &'static str,
        tool: Option<SearchTool>,
    ) -> Result<Self, ApiError> {
        native::apply_rules(config, &shared.no_think, &mut native);
        let model = native.model().to_string();
        let stream = std::mem::replace(native.settings_mut().stream, true);
        let body = native.to_bytes().map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not encode the request for Ollama: {e}"),
            )
        })?;
        let endpoint = native.endpoint();
        tracing::debug!(model = ?model, stream, bytes = body.len(), dialect, path = endpoint.path(), "→ Ollama");
        let search = match (&native, tool) {
            (GenerationRequest::Chat(chat), Some(tool)) => Some((chat.clone(), tool)),
            _ => None,
        };
        Ok(ChatCall {
            routing: native.routing(),
            search,
            round_cap: config.max_answer_bytes,
            reasoning: config.reasoning_for(&model),
            asked_for_thinking: false,
            num_ctx: native.num_ctx(),
            thinking: native.thinks().then_some(native),
            model,
            stream,
            endpoint,
            body,
        })
    }

    /// Never forwards thinking, whatever the layer's setting.
    pub(crate) fn drop_thinking(mut self) -> Self {
        self.reasoning = ReasoningMode::Drop;
        self
    }

    /// Notes that the client asked for the model's reasoning, which
    /// [`ReasoningMode::Auto`] then forwards.
    pub(crate) fn asked_for_thinking(mut self, asked: bool) -> Self {
        self.asked_for_thinking = asked;
        self
    }

    /// The upstream call, answered through `encoder`.
    pub(crate) fn upstream<E: Encoder + 'static>(self, encoder: E) -> Upstream {
        let forward = self.reasoning.forwards(self.asked_for_thinking);
        let mut transcoder =
            Decoder::new(encoder, forward).watch_context(&self.model, self.num_ctx);
        if self.search.is_some() {
            transcoder =
                transcoder.server_tools(Rounds::new(vec![search::FUNCTION], self.round_cap));
        }
        Upstream {
            endpoint: self.endpoint,
            body: self.body,
            delivery: if self.stream {
                Delivery::Stream
            } else {
                Delivery::Collect
            },
            transcoder: Box::new(transcoder),
            thinking: self.thinking,
            model: Some(self.model),
            search: self.search,
            local: None,
            conversation: None,
            routing: Some(self.routing),
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
        shared: &Shared,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<Upstream, ApiError>;
    /// Renders an error in this dialect's shape.
    fn error_body(&self, error: &ApiError) -> Bytes;
}

/// One served path.
pub(crate) struct Served {
    method: Method,
    path: &'static str,
    /// Also serves the paths below `path/` (a model id).
    below: bool,
    dialect: &'static dyn Dialect,
}

/// Every path the layer translates, and who serves it.
pub(crate) static SERVED: [Served; 10] = [
    Served {
        method: Method::POST,
        path: "/v1/chat/completions",
        below: false,
        dialect: &chat::ChatCompletions,
    },
    Served {
        method: Method::POST,
        path: "/v1/responses",
        below: false,
        dialect: &responses::Responses,
    },
    Served {
        method: Method::GET,
        path: "/v1/responses",
        below: true,
        dialect: &responses::RetrieveResponse,
    },
    Served {
        method: Method::DELETE,
        path: "/v1/responses",
        below: true,
        dialect: &responses::DeleteResponse,
    },
    Served {
        method: Method::POST,
        path: "/v1/messages",
        below: false,
        dialect: &messages::Messages,
    },
    Served {
        method: Method::POST,
        path: "/v1/messages/count_tokens",
        below: false,
        dialect: &messages::CountTokens,
    },
    Served {
        method: Method::POST,
        path: "/v1/completions",
        below: false,
        dialect: &completions::Completions,
    },
    Served {
        method: Method::POST,
        path: "/v1/embeddings",
        below: false,
        dialect: &embeddings::Embeddings,
    },
    Served {
        method: Method::GET,
        path: "/v1/models",
        below: false,
        dialect: &models::ListModels,
    },
    Served {
        method: Method::GET,
        path: "/v1/models",
        below: true,
        dialect: &models::RetrieveModel,
    },
];

/// Whose error shape a path's clients read, most specific first.
static CLIENT_APIS: [(&str, &dyn Dialect); 2] = [
    ("/v1/messages", &messages::Messages),
    ("/v1", &chat::ChatCompletions),
];

/// The client API whose prefix `path` is at or below.
fn client_api(path: &str) -> Option<&'static dyn Dialect> {
    CLIENT_APIS
        .iter()
        .find(|(prefix, _)| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .map(|(_, d)| *d)
}

/// The dialect serving `method path`, or `None` to pass the request through.
pub(crate) fn route(method: &Method, path: &str) -> Option<&'static dyn Dialect> {
    let path = path.strip_suffix('/').unwrap_or(path);
    SERVED.iter().find_map(|s| {
        let matches = if s.below {
            path.strip_prefix(s.path)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|id| !id.is_empty())
        } else {
            path == s.path
        };
        (matches && s.method == method).then_some(s.dialect)
    })
}

/// The dialect whose error shape fits `path` when no dialect serves it:
/// Anthropic's for `/v1/messages…`, OpenAI's for other `/v1/…`, Ollama's
/// own `{"error":"…"}` elsewhere.
pub(crate) fn error_dialect(path: &str) -> &'static dyn Dialect {
    client_api(path).unwrap_or(&NativeErrors)
}

/// For a request passed through under a client API's prefix: the dialect
/// to report Ollama's 404/405 in, and a message naming what is served.
pub(crate) fn not_found(method: &Method, path: &str) -> Option<(&'static dyn Dialect, String)> {
    let dialect = client_api(path)?;
    let mut paths: Vec<&str> = Vec::new();
    for s in &SERVED {
        if !paths.contains(&s.path) {
            paths.push(s.path);
        }
    }
    let served = paths.join(", ");
    Some((
        dialect,
        format!("Invalid URL ({method} {path}): this proxy serves {served}"),
    ))
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
        _shared: &Shared,
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
pub(crate) struct ErrorBody {
    dialect: &'static dyn Dialect,
    status: StatusCode,
    /// Replaces Ollama's message (e.g. gin's plain `404 page not found`).
    message: Option<String>,
    done: bool,
}

impl ErrorBody {
    pub(crate) fn new(dialect: &'static dyn Dialect, status: StatusCode) -> Self {
        ErrorBody {
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
            None => UpstreamError::read(self.status, body).message,
        };
        let err = ApiError::new(self.status, message);
        out.extend_from_slice(&self.dialect.error_body(&err));
    }
}

impl Transcode for ErrorBody {
    fn line(&mut self, line: &[u8], out: &mut BytesMut) {
        self.render(line, out);
    }
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BoxError> {
        self.render(b"", out);
        Ok(())
    }
    fn abort(&mut self, _failure: Failure, error: &str, out: &mut BytesMut) {
        // Too long or cut: the status stands, with a message of our own.
        if self.message.is_none() {
            let answered = UpstreamError::read(self.status, b"").message;
            self.message = Some(format!(
                "{answered}; its error body could not be read: {error}"
            ));
        }
        self.render(b"", out);
    }
    fn abort_completes(&self) -> bool {
        true
    }
    fn whole_body(&self) -> bool {
        true
    }
}
