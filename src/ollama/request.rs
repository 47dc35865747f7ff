//! The requests Ollama's native `/api/chat` and `/api/generate` take, as
//! typed values. The rules for filling them in (defaults, think-models,
//! images) belong to the dialects; this module only knows Ollama's wire.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

/// A native `/api/chat` request.
#[derive(Serialize, Debug, Default, Clone)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    pub(crate) messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tools: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub(crate) options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) think: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) keep_alive: Option<Value>,
    pub(crate) stream: bool,
}

/// A native chat message.
#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub(crate) struct Message {
    pub(crate) role: &'static str,
    pub(crate) content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thinking: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) images: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_call_id: Option<String>,
}

impl Message {
    pub(crate) fn new(role: &'static str, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            ..Message::default()
        }
    }
}

/// A native tool call: arguments are a JSON object.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    pub(crate) function: ToolFunction,
}

/// The function part of a native tool call.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct ToolFunction {
    pub(crate) name: String,
    pub(crate) arguments: Value,
}

/// A native `/api/generate` request.
#[derive(Serialize, Debug, Default)]
pub(crate) struct GenerateRequest {
    pub(crate) model: String,
    pub(crate) prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) suffix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub(crate) options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) think: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) keep_alive: Option<Value>,
    pub(crate) stream: bool,
}

impl ChatRequest {
    /// A request for `model` with nothing else set.
    pub(crate) fn new(model: impl Into<String>, stream: bool) -> Self {
        ChatRequest {
            model: model.into(),
            stream,
            ..ChatRequest::default()
        }
    }
}

/// One of Ollama's native endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST /api/chat`, NDJSON when streaming.
    Chat,
    /// `POST /api/generate`, NDJSON when streaming.
    Generate,
    /// `POST /api/embed`.
    Embed,
    /// `GET /api/tags`.
    Tags,
    /// `POST /api/show`.
    Show,
    /// `POST /api/experimental/web_search`: `{"query","max_results"}` →
    /// `{"results":[{"title","url","content"}]}`, which Ollama forwards to
    /// ollama.com with its own sign-in.
    WebSearch,
}

impl Endpoint {
    /// The HTTP method Ollama expects.
    pub(crate) fn method(self) -> http::Method {
        match self {
            Endpoint::Tags => http::Method::GET,
            _ => http::Method::POST,
        }
    }

    /// The path, e.g. `/api/chat`.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/api/chat",
            Endpoint::Generate => "/api/generate",
            Endpoint::Embed => "/api/embed",
            Endpoint::Tags => "/api/tags",
            Endpoint::Show => "/api/show",
            Endpoint::WebSearch => "/api/experimental/web_search",
        }
    }
}

/// A generating request of either kind: what the layer's rules and the
/// think retry work on.
#[derive(Debug)]
pub(crate) enum GenerationRequest {
    /// `/api/chat`.
    Chat(ChatRequest),
    /// `/api/generate`.
    Generate(GenerateRequest),
}

impl GenerationRequest {
    /// The endpoint it goes to.
    pub(crate) fn endpoint(&self) -> Endpoint {
        match self {
            GenerationRequest::Chat(_) => Endpoint::Chat,
            GenerationRequest::Generate(_) => Endpoint::Generate,
        }
    }

    /// The Ollama model.
    pub(crate) fn model(&self) -> &str {
        match self {
            GenerationRequest::Chat(r) => &r.model,
            GenerationRequest::Generate(r) => &r.model,
        }
    }

    /// `options`, `keep_alive` and `think`, to fill in.
    pub(crate) fn settings_mut(&mut self) -> Settings<'_> {
        match self {
            GenerationRequest::Chat(r) => Settings {
                options: &mut r.options,
                keep_alive: &mut r.keep_alive,
                think: &mut r.think,
                stream: &mut r.stream,
            },
            GenerationRequest::Generate(r) => Settings {
                options: &mut r.options,
                keep_alive: &mut r.keep_alive,
                think: &mut r.think,
                stream: &mut r.stream,
            },
        }
    }

    /// Whether it asks the model to think.
    pub(crate) fn thinks(&self) -> bool {
        let think = match self {
            GenerationRequest::Chat(r) => &r.think,
            GenerationRequest::Generate(r) => &r.think,
        };
        think.as_ref().is_some_and(think_is_on)
    }

    /// The `num_ctx` option it carries, if any.
    pub(crate) fn num_ctx(&self) -> Option<u64> {
        let options = match self {
            GenerationRequest::Chat(r) => &r.options,
            GenerationRequest::Generate(r) => &r.options,
        };
        options.get("num_ctx").and_then(Value::as_u64)
    }

    /// The JSON body.
    pub(crate) fn to_bytes(&self) -> Result<Bytes, serde_json::Error> {
        let body = match self {
            GenerationRequest::Chat(r) => serde_json::to_vec(r),
            GenerationRequest::Generate(r) => serde_json::to_vec(r),
        };
        body.map(Bytes::from)
    }
}

/// The settings every generating request has, borrowed to be filled in.
pub(crate) struct Settings<'a> {
    pub(crate) options: &'a mut Map<String, Value>,
    pub(crate) keep_alive: &'a mut Option<Value>,
    pub(crate) think: &'a mut Option<Value>,
    pub(crate) stream: &'a mut bool,
}

/// Whether a `think` value asks for thinking (`true` or a level).
pub(crate) fn think_is_on(v: &Value) -> bool {
    !matches!(v, Value::Bool(false) | Value::Null)
}

impl From<ChatRequest> for GenerationRequest {
    fn from(r: ChatRequest) -> Self {
        GenerationRequest::Chat(r)
    }
}

impl From<GenerateRequest> for GenerationRequest {
    fn from(r: GenerateRequest) -> Self {
        GenerationRequest::Generate(r)
    }
}
