//! The requests Ollama's native `/api/chat` and `/api/generate` take, as
//! typed values. The rules for filling them in (defaults, think-models,
//! images) belong to the dialects; this module only knows Ollama's wire.

use super::routing::Seed;
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

/// One of Ollama's native endpoints: those the layer calls, and those a
/// pool of hosts treats apart ([`Endpoint::of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST /api/chat`, NDJSON when streaming.
    Chat,
    /// `POST /api/generate`, NDJSON when streaming.
    Generate,
    /// `POST /api/embed`.
    Embed,
    /// `POST /api/embeddings`, the older embedding endpoint.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    Embeddings,
    /// `GET /api/tags`: the models a host has.
    Tags,
    /// `GET /api/ps`: the models a host has loaded.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    Ps,
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
            Endpoint::Tags | Endpoint::Ps => http::Method::GET,
            _ => http::Method::POST,
        }
    }

    /// The path, e.g. `/api/chat`.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/api/chat",
            Endpoint::Generate => "/api/generate",
            Endpoint::Embed => "/api/embed",
            Endpoint::Embeddings => "/api/embeddings",
            Endpoint::Tags => "/api/tags",
            Endpoint::Ps => "/api/ps",
            Endpoint::Show => "/api/show",
            Endpoint::WebSearch => "/api/experimental/web_search",
        }
    }

    /// The endpoint a request for `path` with `method` is (a `HEAD` as
    /// its `GET`); `None` for the rest of Ollama's API.
    #[cfg(feature = "pool")]
    pub(crate) fn of(method: &http::Method, path: &str) -> Option<Endpoint> {
        let endpoint = match path {
            "/api/chat" => Endpoint::Chat,
            "/api/generate" => Endpoint::Generate,
            "/api/embed" => Endpoint::Embed,
            "/api/embeddings" => Endpoint::Embeddings,
            "/api/tags" => Endpoint::Tags,
            "/api/ps" => Endpoint::Ps,
            "/api/show" => Endpoint::Show,
            "/api/experimental/web_search" => Endpoint::WebSearch,
            _ => return None,
        };
        let expected = endpoint.method();
        let matches =
            *method == expected || (*method == http::Method::HEAD && expected == http::Method::GET);
        matches.then_some(endpoint)
    }

    /// Whether its request body names a model (`model`, or `/api/show`'s
    /// older `name`), which a host must have.
    #[cfg(feature = "pool")]
    pub(crate) fn names_model(self) -> bool {
        matches!(
            self,
            Endpoint::Chat
                | Endpoint::Generate
                | Endpoint::Embed
                | Endpoint::Embeddings
                | Endpoint::Show
        )
    }

    /// Whether it generates: its request may continue a conversation, and
    /// leaves the model loaded.
    #[cfg(feature = "pool")]
    pub(crate) fn generates(self) -> bool {
        matches!(self, Endpoint::Chat | Endpoint::Generate)
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

    /// What routes it to a host: its model, and what keys its
    /// conversation when no session header does (the first system and
    /// user messages; for `/api/generate`, the prompt's beginning).
    pub(crate) fn routing(&self) -> Seed {
        match self {
            GenerationRequest::Chat(r) => {
                let first = |role: &str| {
                    r.messages
                        .iter()
                        .find(|m| m.role == role)
                        .map(|m| m.content.as_str())
                };
                Seed::chat(&r.model, first("system"), first("user"))
            }
            GenerationRequest::Generate(r) => Seed::prompt(&r.model, &r.prompt),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    #[cfg(feature = "pool")]
    fn endpoints_follow_method_and_path() {
        assert_eq!(
            Endpoint::of(&Method::GET, "/api/tags"),
            Some(Endpoint::Tags)
        );
        assert_eq!(
            Endpoint::of(&Method::HEAD, "/api/tags"),
            Some(Endpoint::Tags)
        );
        assert_eq!(Endpoint::of(&Method::POST, "/api/tags"), None);
        assert_eq!(Endpoint::of(&Method::GET, "/api/ps"), Some(Endpoint::Ps));
        assert_eq!(
            Endpoint::of(&Method::POST, "/api/chat"),
            Some(Endpoint::Chat)
        );
        assert_eq!(Endpoint::of(&Method::GET, "/api/chat"), None);
        assert_eq!(Endpoint::of(&Method::POST, "/api/pull"), None);
        assert_eq!(
            Endpoint::of(&Method::POST, "/api/experimental/web_search"),
            Some(Endpoint::WebSearch)
        );
        for e in [
            Endpoint::Chat,
            Endpoint::Generate,
            Endpoint::Embed,
            Endpoint::Embeddings,
            Endpoint::Tags,
            Endpoint::Ps,
            Endpoint::Show,
            Endpoint::WebSearch,
        ] {
            assert_eq!(Endpoint::of(&e.method(), e.path()), Some(e));
        }
        assert!(Endpoint::Show.names_model() && !Endpoint::Show.generates());
        assert!(Endpoint::Generate.generates());
        assert!(!Endpoint::WebSearch.names_model() && !Endpoint::Tags.names_model());
    }

    #[test]
    fn later_turns_of_a_chat_share_its_routing() {
        let chat = |model: &str, messages: &[(&'static str, &str)]| {
            let mut r = ChatRequest::new(model, true);
            r.messages = messages
                .iter()
                .map(|(role, c)| Message::new(role, *c))
                .collect();
            GenerationRequest::from(r).routing().routing(None)
        };
        let first = chat("Qwen3", &[("system", "Be brief."), ("user", "Hi")]);
        let later = chat(
            "qwen3:latest",
            &[
                ("system", "Be brief."),
                ("user", "Hi"),
                ("assistant", "Hello"),
                ("user", "More"),
            ],
        );
        let other = chat("qwen3", &[("system", "Be brief."), ("user", "Bye")]);
        assert_eq!(first.model, "Qwen3");
        assert!(first.conversation.is_some());
        assert_eq!(first.conversation, later.conversation);
        assert_ne!(first.conversation, other.conversation);
        assert_eq!(
            chat("qwen3", &[("system", "Only a system prompt")]).conversation,
            None
        );
        let generate = GenerationRequest::from(GenerateRequest {
            model: "m".into(),
            prompt: "Once".into(),
            ..GenerateRequest::default()
        });
        assert!(generate.routing().routing(None).conversation.is_some());
    }
}
