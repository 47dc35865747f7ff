//! Anthropic Messages: `POST /v1/messages` and `POST /v1/messages/count_tokens`.
//!
//! Requests become native `/api/chat` requests; Ollama's NDJSON becomes
//! Anthropic's server-sent events (`message_start`, content blocks,
//! `message_delta`, `message_stop`), or one `message` object when the client
//! did not ask to stream. Built for what Claude Code sends.
//!
//! Choices this dialect makes where the two APIs differ:
//!
//! * **Thinking out.** Forwarded as `thinking` blocks when the request
//!   enables thinking (`enabled`, `adaptive`) under the default
//!   [`ReasoningMode`](crate::ReasoningMode), or always with `Forward`. Each block
//!   ends with a `signature_delta` carrying an HMAC of its text under the
//!   layer's thinking key. **Thinking in.** A `thinking` block sent back is
//!   given to Ollama as the assistant turn's `thinking` only when its
//!   signature verifies; otherwise, and for `redacted_thinking`, it is dropped.
//! * **`thinking` config.** `enabled` maps `budget_tokens` to a level
//!   (< 4096 ⇒ `low`, < 16384 ⇒ `medium`, else `high`); `disabled` ⇒
//!   `think: false`; `adaptive` with `output_config.effort` ⇒ that level, but
//!   only for the layer's think-models (Claude Code sends `adaptive` on every
//!   request, and `think` on a model that cannot think is a 400 from Ollama);
//!   otherwise `think` is left unset and Ollama's default applies (thinking
//!   models think). Only `enabled` is an explicit request, sent as asked.
//! * **`tool_choice`.** `none` drops the tools; `auto`, `any` and `tool` keep
//!   them all: Ollama cannot force a call. It must be an object with a string
//!   `type` (a bare string such as `"auto"` is a 400, as from Anthropic).
//! * **Tool search** (Claude Code's `ToolSearch`, beta
//!   `advanced-tool-use-2025-11-20`). A tool with `defer_loading: true` is
//!   offered to the model only once a `tool_reference` in some `tool_result`
//!   names it (Claude Code 2.1.332 also sends a `DeferredToolPlaceholder`
//!   that must never be offered). The `tool_reference` itself reaches the
//!   model as one line of text, `Tool "NAME" is now available: <the first
//!   line of its description>`, or a line saying the request has no such
//!   tool. Anthropic's server tool-search tools (`tool_search_tool_regex_…`,
//!   `tool_search_tool_bm25_…`) cannot run here: they are dropped and every
//!   deferred tool is offered at once.
//! * **`tool_result` with `is_error`.** The text reaches the model prefixed
//!   with `Error: ` so the failure stays visible.
//! * **`system` and user text blocks** are joined with a blank line. Plain
//!   text `document` blocks become text; other document sources and image
//!   URLs are a 400. Blocks Ollama has no place for (`redacted_thinking`,
//!   a `server_tool_use` without its result, unknown types) are dropped with
//!   a debug log;
//!   unknown fields (`metadata`, `cache_control`, `context_management`,
//!   `output_config`, `service_tier`, …) are ignored.
//! * **Web search.** A `web_search_*` server tool is offered to the model
//!   as the `web_search` function the layer runs (see [`crate::search`] and
//!   [`crate::agent`]): each call streams a `server_tool_use` block
//!   (`srvtoolu_…`) and a `web_search_tool_result` block whose hits carry
//!   `encrypted_content`, our sealed copy of what the model read; the
//!   model's follow-up streams on in the same message.
//!   `usage.server_tool_use.web_search_requests` counts the searches that
//!   ran. Sent back, the pair becomes the call and its tool message (the
//!   turn is split there), with the hits' text only when the seal is ours.
//!   `max_uses`, `allowed_domains`/`blocked_domains` (not both: a 400) and
//!   `user_location` are honoured; a custom tool named `web_search` beside
//!   it is a 400. `web_fetch_*` is dropped.
//! * **Stop reasons.** Any tool call ⇒ `tool_use`; `length` ⇒ `max_tokens`;
//!   else `end_turn`. Ollama does not say which stop sequence matched, so
//!   `stop_sequence` is never reported.
//! * **Usage.** `message_start` reports `input_tokens: 0` (Ollama counts the
//!   prompt only at the end); `message_delta` carries the real
//!   `input_tokens` and `output_tokens`.
//! * **Keep-alive.** A `ping` event whenever the body's keep-alive falls due
//!   (nothing sent to the client for the layer's keep-alive period, also
//!   while Ollama streams thinking that is dropped).
//! * **`count_tokens`** runs the same native request with `num_predict: 1`
//!   and `stream: false` and reports Ollama's `prompt_eval_count` (Ollama's
//!   runner treats `num_predict: 0` as unlimited).
//! * **Model names.** Aliases first; a `claude*` name without one goes to
//!   the layer's default model when set. Responses name the client's model.

use super::native::{
    self, ChatRequest, GenerationRequest, Message, ToolCall as NativeToolCall, ToolFunction,
};
use super::params::{
    self, expect_integer, expect_number, expect_object, function_tool, json_object, list_error,
    model_name, type_name, Wording,
};
use super::{ChatCall, Transcode, Upstream};
use crate::config::Config;
use crate::error::{ApiError, BoxError, Failure, StreamError};
use crate::json::{write_str, write_u64};
use crate::ollama::request::Endpoint;
use crate::ollama::{Done, Encoder, Event, ServerCall, ServerResult};
use crate::search::{self, SearchErrorCode, SearchHit, SearchTool};
use crate::signing::{self, Key};
use crate::util::random_id;
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::StatusCode;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

/// What thinking signatures of this dialect are bound to.
const THINKING_PURPOSE: &str = "anthropic-thinking";

/// `POST /v1/messages`.
pub(crate) struct Messages;

/// `POST /v1/messages/count_tokens`.
pub(crate) struct CountTokens;

dialect!(Messages, "messages", prepare_messages, error_body);

/// [`Dialect::prepare`](super::Dialect::prepare) for [`Messages`].
fn prepare_messages(config: &Config, _parts: &Parts, body: &[u8]) -> Result<Upstream, ApiError> {
    let parsed = parse_request(config, body, false)?;
    let call = ChatCall::searching(config, parsed.native, "messages", parsed.search)?
        .asked_for_thinking(parsed.asked_for_thinking);
    let head = Head::new(&parsed.client_model, config.thinking_key);
    let up = if call.stream {
        call.upstream(StreamEncoder::new(head))
    } else {
        call.upstream(Collector::new(head))
    };
    Ok(up.requested_as(&parsed.client_model))
}

dialect!(
    CountTokens,
    "messages.count_tokens",
    prepare_count_tokens,
    error_body
);

/// [`Dialect::prepare`](super::Dialect::prepare) for [`CountTokens`].
fn prepare_count_tokens(
    config: &Config,
    _parts: &Parts,
    body: &[u8],
) -> Result<Upstream, ApiError> {
    let mut parsed = parse_request(config, body, true)?;
    parsed.native.stream = false;
    // One token: Ollama evaluates the whole prompt first, and its runner
    // treats 0 as "no limit".
    parsed
        .native
        .options
        .insert("num_predict".into(), Value::from(1));
    let mut native = GenerationRequest::Chat(parsed.native);
    native::apply_rules(config, &mut native);
    let body = native.to_bytes().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the request for Ollama: {e}"),
        )
    })?;
    tracing::debug!(model = ?native.model(), bytes = body.len(), "messages.count_tokens → /api/chat");
    Ok(Upstream::document(
        Endpoint::Chat,
        body,
        Box::new(TokenCounter::default()),
    ))
}

/// `{"type":"error","error":{"type","message"}}`.
pub(crate) fn error_body(err: &ApiError) -> Bytes {
    let mut out = BytesMut::with_capacity(err.message.len() + 80);
    write_error_object(err, &mut out);
    out.freeze()
}

/// Anthropic's `error.type` for a status.
pub(crate) fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// Writes the error object; a 400's message names the offending field.
fn write_error_object(err: &ApiError, out: &mut BytesMut) {
    out.extend_from_slice(b"{\"type\":\"error\",\"error\":{\"type\":");
    write_str(out, error_type(err.status));
    out.extend_from_slice(b",\"message\":");
    match &err.param {
        Some(p) if !err.message.starts_with(p.as_str()) => {
            write_str(out, &format!("{p}: {}", err.message));
        }
        _ => write_str(out, &err.message),
    }
    out.extend_from_slice(b"}}");
}

/// A parsed client request.
pub(crate) struct Parsed {
    pub(crate) native: ChatRequest,
    /// The model name the client asked for (responses report it).
    pub(crate) client_model: String,
    /// The request enables thinking (`enabled`, or Claude Code's `adaptive`).
    pub(crate) asked_for_thinking: bool,
    /// The request offers the web-search server tool, which the layer runs.
    pub(crate) search: Option<SearchTool>,
}

/// The Ollama model for a client's model name: an alias, else the default
/// model for Claude names, else the name itself.
pub(crate) fn resolve_model(config: &Config, requested: &str) -> String {
    let resolved = config.resolve_model(requested);
    if resolved == requested {
        if let Some(default) = &config.default_model {
            if requested.trim().to_ascii_lowercase().starts_with("claude") {
                return default.clone();
            }
        }
    }
    resolved.to_string()
}

/// Parses a Messages (or count_tokens) request body into a native request.
pub(crate) fn parse_request(
    config: &Config,
    body: &[u8],
    counting: bool,
) -> Result<Parsed, ApiError> {
    let mut root = json_object(body)?;
    let client_model = model_name(&root, Wording::Bare)?;
    let model = resolve_model(config, &client_model);
    let stream = !counting && params::stream(&root, Wording::Bare)?;

    let mut native = ChatRequest::new(model, stream);
    native.options = sampling_options(&mut root, counting)?;

    if let Some(system) = parse_system(root.remove("system"))? {
        native.messages.push(Message::new("system", system));
    }
    let tools = root.remove("tools");
    let loaded = load_tool_references(root.get_mut("messages"), tools.as_ref())?;
    parse_messages(config, root.remove("messages"), &mut native.messages)?;

    native.think = parse_thinking(config, &root, &native.model)?;

    let mut search = None;
    let tools = parse_tools(config, tools, &mut search, &loaded)?;
    let tool_choice_none = tool_choice_none(&root)?;
    if tool_choice_none {
        search = None;
    } else if !tools.is_empty() {
        native.tools = Some(tools);
    }

    let asked_for_thinking = matches!(
        root.get("thinking")
            .and_then(|t| t.get("type"))
            .and_then(Value::as_str),
        Some("enabled" | "adaptive")
    );
    Ok(Parsed {
        native,
        client_model,
        asked_for_thinking,
        search,
    })
}

/// `max_tokens` (required, except when counting tokens), `temperature`,
/// `top_p`, `top_k` and `stop_sequences` as Ollama's `options`.
fn sampling_options(
    root: &mut Map<String, Value>,
    counting: bool,
) -> Result<Map<String, Value>, ApiError> {
    let mut options = Map::new();
    if !counting {
        match expect_integer(root, "max_tokens", Wording::Named)? {
            Some(n) if n >= 1 => {
                options.insert("num_predict".into(), Value::from(n));
            }
            Some(_) => return Err(ApiError::invalid("max_tokens", "must be at least 1")),
            None => return Err(Wording::Bare.required("max_tokens")),
        }
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = expect_number(root, key, Wording::Bare)? {
            options.insert(key.into(), v);
        }
    }
    if let Some(k) = expect_integer(root, "top_k", Wording::Named)? {
        options.insert("top_k".into(), Value::from(k));
    }
    match root.remove("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            if !a.is_empty() {
                options.insert("stop".into(), Value::Array(a));
            }
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "stop_sequences",
                "must be an array of strings",
            ))
        }
    }
    Ok(options)
}

/// Whether `tool_choice` is `none`. Ollama cannot force a call: only `none`
/// changes anything. Its shape is checked as Anthropic does: an object
/// (null is absent) with a string `type`.
fn tool_choice_none(root: &Map<String, Value>) -> Result<bool, ApiError> {
    let Some(choice) = expect_object(root, "tool_choice", Wording::Bare)? else {
        return Ok(false);
    };
    match choice.get("type") {
        Some(Value::String(kind)) => Ok(kind == "none"),
        None | Some(Value::Null) => Err(Wording::Bare.required("tool_choice.type")),
        Some(v) => Err(Wording::Bare.wrong_type("tool_choice.type", "a string", v)),
    }
}

/// `system`: a string or a list of text blocks (their `cache_control` is
/// ignored), joined with a blank line.
fn parse_system(v: Option<Value>) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok((!s.is_empty()).then_some(s)),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            for (i, block) in blocks.into_iter().enumerate() {
                let p = format!("system.{i}");
                match block_type(&block) {
                    "text" => join_text(&mut text, &block_text(block, &p)?),
                    other => {
                        return Err(ApiError::invalid(
                            format!("{p}.type"),
                            format!("system blocks must be text blocks, got {other:?}"),
                        ))
                    }
                }
            }
            Ok((!text.is_empty()).then_some(text))
        }
        Some(v) => Err(ApiError::invalid(
            "system",
            format!(
                "must be a string or an array of text blocks, got {}",
                type_name(&v)
            ),
        )),
    }
}

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The `text` of a text block.
fn block_text(block: Value, param: &str) -> Result<String, ApiError> {
    match block {
        Value::Object(mut b) => match b.remove("text") {
            Some(Value::String(t)) => Ok(t),
            _ => Err(ApiError::invalid(
                format!("{param}.text"),
                "a text block needs a text string",
            )),
        },
        _ => Err(ApiError::invalid(param, "each block must be an object")),
    }
}

/// Appends `part` to `text`, a blank line apart.
fn join_text(text: &mut String, part: &str) {
    if part.is_empty() {
        return;
    }
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(part);
}

/// An `image` block's base64 data, for Ollama's `images`.
fn image_block(block: &Value, param: &str) -> Result<String, ApiError> {
    let source = block.get("source");
    let kind = source
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match kind {
        "base64" => match source.and_then(|s| s.get("data")).and_then(Value::as_str) {
            Some(data) => native::image_from_base64(data, &format!("{param}.source.data")),
            None => Err(ApiError::invalid(
                format!("{param}.source.data"),
                "a base64 image source needs data",
            )),
        },
        "url" => Err(ApiError::invalid(
            format!("{param}.source"),
            "image URLs are not supported: send the image as a base64 source; the proxy never fetches URLs",
        )),
        other => Err(ApiError::invalid(
            format!("{param}.source.type"),
            format!("unsupported image source type {other:?}: only base64 images are supported"),
        )),
    }
}

/// A `document` block with a plain-text source becomes text; others are
/// refused (Ollama reads neither PDFs nor URLs).
fn document_text(block: &Value, param: &str) -> Result<String, ApiError> {
    let source = block.get("source");
    match source.and_then(|s| s.get("type")).and_then(Value::as_str) {
        Some("text") => Ok(source
            .and_then(|s| s.get("data"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()),
        Some("content") => {
            let mut text = String::new();
            if let Some(parts) = source.and_then(|s| s.get("content")) {
                match parts {
                    Value::String(s) => text.push_str(s),
                    Value::Array(parts) => {
                        for part in parts {
                            if let Some(t) = part.get("text").and_then(Value::as_str) {
                                join_text(&mut text, t);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ok(text)
        }
        other => Err(ApiError::invalid(
            format!("{param}.source.type"),
            format!(
                "unsupported document source {:?}: only plain-text documents are supported",
                other.unwrap_or("")
            ),
        )),
    }
}

/// A `tool_result`'s content: a string or text/image blocks.
fn tool_result_content(
    content: Option<Value>,
    param: &str,
    images: &mut Vec<String>,
) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            for (i, block) in blocks.into_iter().enumerate() {
                let p = format!("{param}.{i}");
                match block_type(&block) {
                    "text" => join_text(&mut text, &block_text(block, &p)?),
                    "image" => images.push(image_block(&block, &p)?),
                    "document" => join_text(&mut text, &document_text(&block, &p)?),
                    other => {
                        tracing::debug!(
                            kind = other,
                            "dropping a tool_result block Ollama cannot take"
                        )
                    }
                }
            }
            Ok(text)
        }
        Some(v) => Err(ApiError::invalid(
            param,
            format!(
                "must be a string or an array of blocks, got {}",
                type_name(&v)
            ),
        )),
    }
}

/// `messages` into native messages, appended to `out`.
fn parse_messages(
    config: &Config,
    v: Option<Value>,
    out: &mut Vec<Message>,
) -> Result<(), ApiError> {
    let msgs = match v {
        Some(Value::Array(a)) if !a.is_empty() => a,
        v => return Err(list_error(v.as_ref(), "messages", "message", Wording::Bare)),
    };
    out.reserve(msgs.len());
    // tool_use id → tool name, from earlier assistant turns.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in msgs.into_iter().enumerate() {
        let p = format!("messages.{i}");
        let Value::Object(mut m) = m else {
            return Err(ApiError::invalid(p, "each message must be an object"));
        };
        let role = match m.get("role").and_then(Value::as_str) {
            Some("user") => "user",
            Some("assistant") => "assistant",
            Some("system") => "system",
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("{p}.role"),
                    format!("unsupported role {other:?} (expected \"user\" or \"assistant\")"),
                ))
            }
            None => return Err(ApiError::invalid(format!("{p}.role"), "Field required")),
        };
        let blocks = match m.remove("content") {
            Some(Value::String(s)) => {
                out.push(Message::new(role, s));
                continue;
            }
            Some(Value::Array(blocks)) => blocks,
            None | Some(Value::Null) => {
                return Err(ApiError::invalid(format!("{p}.content"), "Field required"))
            }
            Some(v) => {
                return Err(ApiError::invalid(
                    format!("{p}.content"),
                    format!(
                        "must be a string or an array of blocks, got {}",
                        type_name(&v)
                    ),
                ))
            }
        };
        if role == "assistant" {
            assistant_messages(config, blocks, &p, &mut call_names, out)?;
        } else {
            user_messages(role, blocks, &p, &call_names, out)?;
        }
    }
    Ok(())
}

/// An assistant turn: text, tool calls, and verified thinking. A web search
/// the layer ran in it (`server_tool_use`, then `web_search_tool_result`)
/// becomes the call and its tool message, as the model saw them: the turn
/// is split there.
fn assistant_messages(
    config: &Config,
    blocks: Vec<Value>,
    p: &str,
    call_names: &mut HashMap<String, String>,
    out: &mut Vec<Message>,
) -> Result<(), ApiError> {
    let mut turn = AssistantTurn {
        key: &config.thinking_key,
        msg: Message::new("assistant", String::new()),
        searches: HashMap::new(),
        out,
    };
    for (j, block) in blocks.into_iter().enumerate() {
        let bp = format!("{p}.content.{j}");
        match block_type(&block) {
            "server_tool_use" => turn.server_tool_use(&block, &bp),
            "web_search_tool_result" => turn.search_result(&block, &bp),
            "text" => turn.msg.content.push_str(&block_text(block, &bp)?),
            "tool_use" => {
                let call = tool_use_call(block, &bp)?;
                if let Some(id) = &call.id {
                    call_names.insert(id.clone(), call.function.name.clone());
                }
                turn.msg.tool_calls.push(call);
            }
            "thinking" => turn.thinking(&block, &bp),
            "redacted_thinking" => {
                tracing::debug!(param = %bp, "dropping a redacted_thinking block");
            }
            other => {
                tracing::debug!(param = %bp, kind = other, "dropping an assistant block Ollama cannot take");
            }
        }
    }
    let AssistantTurn { msg, out, .. } = turn;
    let empty = msg.content.is_empty() && msg.tool_calls.is_empty() && msg.thinking.is_none();
    // A turn that ended with a search result has nothing after it.
    if !(empty && out.last().is_some_and(|m| m.role == "tool")) {
        out.push(msg);
    }
    Ok(())
}

/// An assistant turn being read: its message so far, and the web searches
/// whose results are still to come.
struct AssistantTurn<'a> {
    key: &'a Key,
    msg: Message,
    /// `server_tool_use` id → query.
    searches: HashMap<String, String>,
    out: &'a mut Vec<Message>,
}

impl AssistantTurn<'_> {
    /// A web search the layer ran: the model's call only with its result.
    fn server_tool_use(&mut self, block: &Value, bp: &str) {
        if block.get("name").and_then(Value::as_str) != Some(search::FUNCTION) {
            tracing::debug!(param = %bp, "dropping a server_tool_use that is not a web search");
            return;
        }
        let id = block.get("id").and_then(Value::as_str).unwrap_or_default();
        let query = block
            .get("input")
            .and_then(|i| i.get("query"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.searches.insert(id.to_string(), query.to_string());
    }

    /// Its result: the call ends the message so far, the tool message
    /// follows it, and the turn goes on in a new message.
    fn search_result(&mut self, block: &Value, bp: &str) {
        let id = block
            .get("tool_use_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(query) = self.searches.remove(id) else {
            tracing::debug!(param = %bp, "dropping a web_search_tool_result without its server_tool_use");
            return;
        };
        let text = search_result_text(self.key, &query, block.get("content"));
        // The model saw the call under the id without its prefix.
        let id = id.strip_prefix("srvtoolu_").unwrap_or(id);
        self.msg.tool_calls.push(NativeToolCall {
            id: Some(id.to_string()),
            function: ToolFunction {
                name: search::FUNCTION.to_string(),
                arguments: json!({ "query": query }),
            },
        });
        let msg = std::mem::replace(&mut self.msg, Message::new("assistant", String::new()));
        self.out.push(msg);
        let mut tool = Message::new("tool", text);
        tool.tool_name = Some(search::FUNCTION.to_string());
        tool.tool_call_id = Some(id.to_string());
        self.out.push(tool);
    }

    /// Thinking, only when its signature is ours.
    fn thinking(&mut self, block: &Value, bp: &str) {
        let text = block.get("thinking").and_then(Value::as_str).unwrap_or("");
        let signature = block.get("signature").and_then(Value::as_str).unwrap_or("");
        if text.is_empty() {
            return;
        }
        if signing::verify(self.key, THINKING_PURPOSE, text, signature) {
            match &mut self.msg.thinking {
                Some(t) => t.push_str(text),
                None => self.msg.thinking = Some(text.to_string()),
            }
        } else {
            tracing::debug!(param = %bp, "dropping a thinking block whose signature is not ours");
        }
    }
}

/// A `tool_use` block as a native call (its name, id and object input
/// required).
fn tool_use_call(block: Value, bp: &str) -> Result<NativeToolCall, ApiError> {
    let Value::Object(mut b) = block else {
        return Err(ApiError::invalid(bp, "a tool_use block must be an object"));
    };
    let name = match b.remove("name") {
        Some(Value::String(n)) if !n.is_empty() => n,
        _ => return Err(ApiError::invalid(format!("{bp}.name"), "Field required")),
    };
    let id = match b.remove("id") {
        Some(Value::String(id)) if !id.is_empty() => id,
        _ => return Err(ApiError::invalid(format!("{bp}.id"), "Field required")),
    };
    let arguments = match b.remove("input") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(v) => {
            return Err(ApiError::invalid(
                format!("{bp}.input"),
                format!("must be an object, got {}", type_name(&v)),
            ))
        }
    };
    Ok(NativeToolCall {
        id: Some(id),
        function: ToolFunction { name, arguments },
    })
}

/// What the model read for a web search sent back in the history: the hits
/// whose `encrypted_content` we sealed, as they were; others only by title
/// and address (their text is not ours to trust); or the search's error.
fn search_result_text(key: &Key, query: &str, content: Option<&Value>) -> String {
    match content {
        Some(Value::Array(items)) => {
            let hits: Vec<SearchHit> = items
                .iter()
                .filter_map(|item| {
                    let sealed = item.get("encrypted_content").and_then(Value::as_str);
                    if let Some(hit) = sealed.and_then(|s| search::open_hit(key, s)) {
                        return Some(hit);
                    }
                    let url = item.get("url").and_then(Value::as_str)?;
                    let title = item
                        .get("title")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    Some(SearchHit::new(url, title, ""))
                })
                .collect();
            search::model_text(query, Ok(&hits))
        }
        Some(error) => {
            let code = match error.get("error_code").and_then(Value::as_str) {
                Some("max_uses_exceeded") => SearchErrorCode::MaxUsesExceeded,
                Some("too_many_requests") => SearchErrorCode::TooManyRequests,
                Some("invalid_input") => SearchErrorCode::InvalidInput,
                Some("query_too_long") => SearchErrorCode::QueryTooLong,
                _ => SearchErrorCode::Unavailable,
            };
            search::model_text(query, Err(code))
        }
        None => search::model_text(query, Ok(&[])),
    }
}

/// A user turn: tool results first (as `tool` messages), then one message
/// with the text, documents and images.
fn user_messages(
    role: &'static str,
    blocks: Vec<Value>,
    p: &str,
    call_names: &HashMap<String, String>,
    out: &mut Vec<Message>,
) -> Result<(), ApiError> {
    let mut msg = Message::new(role, String::new());
    for (j, block) in blocks.into_iter().enumerate() {
        let bp = format!("{p}.content.{j}");
        match block_type(&block) {
            "text" => join_text(&mut msg.content, &block_text(block, &bp)?),
            "image" => msg.images.push(image_block(&block, &bp)?),
            "document" => join_text(&mut msg.content, &document_text(&block, &bp)?),
            "tool_result" => {
                let Value::Object(mut b) = block else {
                    continue;
                };
                let id = match b.remove("tool_use_id") {
                    Some(Value::String(id)) if !id.is_empty() => id,
                    _ => {
                        return Err(ApiError::invalid(
                            format!("{bp}.tool_use_id"),
                            "Field required",
                        ))
                    }
                };
                let mut tool = Message::new("tool", String::new());
                let text = tool_result_content(
                    b.remove("content"),
                    &format!("{bp}.content"),
                    &mut tool.images,
                )?;
                tool.content = if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                    if text.is_empty() {
                        "Error".to_string()
                    } else {
                        format!("Error: {text}")
                    }
                } else {
                    text
                };
                tool.tool_name = call_names.get(&id).cloned();
                tool.tool_call_id = Some(id);
                out.push(tool);
            }
            other => {
                tracing::debug!(param = %bp, kind = other, "dropping a user block Ollama cannot take");
            }
        }
    }
    if !msg.content.is_empty() || !msg.images.is_empty() {
        out.push(msg);
    }
    Ok(())
}

/// The think level for an `enabled` budget.
fn think_from_budget(budget: i64) -> Value {
    Value::from(match budget {
        b if b < 4096 => "low",
        b if b < 16384 => "medium",
        _ => "high",
    })
}

/// `thinking` (and `output_config.effort`) to Ollama's `think`.
fn parse_thinking(
    config: &Config,
    root: &Map<String, Value>,
    model: &str,
) -> Result<Option<Value>, ApiError> {
    let Some(thinking) = expect_object(root, "thinking", Wording::Bare)? else {
        return Ok(None);
    };
    match thinking.get("type").and_then(Value::as_str) {
        Some("enabled") => Ok(Some(
            match expect_integer(thinking, "budget_tokens", Wording::Named) {
                Ok(Some(b)) => think_from_budget(b),
                Ok(None) => Value::Bool(true),
                Err(_) => {
                    return Err(ApiError::invalid(
                        "thinking.budget_tokens",
                        "must be an integer",
                    ))
                }
            },
        )),
        Some("disabled") => Ok(Some(Value::Bool(false))),
        Some("adaptive") => {
            let effort = root
                .get("output_config")
                .and_then(|c| c.get("effort"))
                .and_then(Value::as_str);
            let Some(effort) = effort else {
                return Ok(None);
            };
            if !config.is_think_model(model) {
                // Cannot tell whether the model thinks: let Ollama decide.
                return Ok(None);
            }
            match native::think_from_effort(effort) {
                Some(Value::Bool(false)) | None => {
                    tracing::debug!(effort, "ignoring an effort that is not a think level");
                    Ok(None)
                }
                Some(level) => Ok(Some(level)),
            }
        }
        _ => Err(ApiError::invalid(
            "thinking.type",
            "must be one of \"enabled\", \"disabled\", \"adaptive\"",
        )),
    }
}

/// `tools`: custom tools become function tools; the web-search server tool
/// (`web_search_…`) becomes the `web_search` function the layer runs
/// (`search` says what it asks), unless the layer's search is off; other
/// Anthropic-defined tools (`web_fetch_…`, `bash_…`, …) are dropped. A tool
/// with `defer_loading: true` is kept aside unless `loaded` names it (a
/// `tool_reference` in the conversation loaded it) or the request carries
/// one of Anthropic's server tool-search tools (`tool_search_tool_regex_…`,
/// `tool_search_tool_bm25_…`): the proxy cannot run those, so without them
/// nothing could ever load a deferred tool.
fn parse_tools(
    config: &Config,
    v: Option<Value>,
    search: &mut Option<SearchTool>,
    loaded: &HashSet<String>,
) -> Result<Vec<Value>, ApiError> {
    let tools = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(Wording::Bare.wrong_type("tools", "an array", &v)),
    };
    // Each function tool, and whether it waits to be loaded.
    let mut parsed = Vec::with_capacity(tools.len());
    let mut server_search = false;
    for (i, tool) in tools.into_iter().enumerate() {
        let Value::Object(mut tool) = tool else {
            return Err(ApiError::invalid(
                format!("tools.{i}"),
                "each tool must be an object",
            ));
        };
        match tool.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(kind) => {
                server_search |= kind.starts_with("tool_search_tool");
                if let Some(function) = server_tool(config, kind, &tool, i, search)? {
                    parsed.push((false, function));
                }
                continue;
            }
        }
        let name = match tool.remove("name") {
            Some(Value::String(n)) if !n.is_empty() => n,
            _ => return Err(Wording::Bare.required(&format!("tools.{i}.name"))),
        };
        if name == search::FUNCTION && config.web_search.is_enabled() {
            return Err(ApiError::invalid(
                format!("tools.{i}.name"),
                "a tool named \"web_search\" clashes with the web search this proxy runs: rename it",
            ));
        }
        let waits = tool.get("defer_loading").and_then(Value::as_bool) == Some(true)
            && !loaded.contains(&name);
        parsed.push((
            waits,
            function_tool(
                name,
                tool.remove("description"),
                tool.remove("input_schema"),
                |v| Wording::Bare.wrong_type(&format!("tools.{i}.input_schema"), "an object", v),
            )?,
        ));
    }
    let waiting = parsed.iter().filter(|(waits, _)| *waits).count();
    if waiting > 0 {
        tracing::debug!(
            waiting,
            server_search,
            "deferred tools not loaded by a tool_reference"
        );
    }
    Ok(parsed
        .into_iter()
        .filter(|(waits, _)| !waits || server_search)
        .map(|(_, tool)| tool)
        .collect())
}

/// Tool search, read before the messages: each `tool_reference` block in a
/// `tool_result`'s content (the only place Anthropic takes one) becomes a
/// text block naming the tool it loaded and quoting its description
/// ([`params::tool_loaded_text`]), or saying the request carries no such tool
/// ([`params::tool_missing_text`]), never an error. Returns the names of the
/// request's custom tools the references load.
fn load_tool_references(
    messages: Option<&mut Value>,
    tools: Option<&Value>,
) -> Result<HashSet<String>, ApiError> {
    let mut loaded = HashSet::new();
    let Some(Value::Array(messages)) = messages else {
        return Ok(loaded);
    };
    // name → description of every custom tool.
    let catalog: HashMap<&str, Option<&str>> = tools
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| matches!(t.get("type").and_then(Value::as_str), None | Some("custom")))
        .filter_map(|t| {
            let name = t.get("name").and_then(Value::as_str)?;
            Some((name, t.get("description").and_then(Value::as_str)))
        })
        .collect();
    for (i, m) in messages.iter_mut().enumerate() {
        let Some(Value::Array(blocks)) = m.get_mut("content") else {
            continue;
        };
        for (j, block) in blocks.iter_mut().enumerate() {
            if block_type(block) != "tool_result" {
                continue;
            }
            let Some(Value::Array(parts)) = block.get_mut("content") else {
                continue;
            };
            for (k, part) in parts.iter_mut().enumerate() {
                if block_type(part) != "tool_reference" {
                    continue;
                }
                let name = match part.get("tool_name") {
                    Some(Value::String(n)) if !n.is_empty() => n.as_str(),
                    _ => {
                        return Err(ApiError::invalid(
                            format!("messages.{i}.content.{j}.content.{k}.tool_name"),
                            "Field required",
                        ))
                    }
                };
                let text = match catalog.get(name) {
                    Some(description) => {
                        loaded.insert(name.to_string());
                        params::tool_loaded_text(name, *description)
                    }
                    None => {
                        tracing::debug!(
                            tool = name,
                            "a tool_reference names no tool of the request"
                        );
                        params::tool_missing_text(name)
                    }
                };
                *part = json!({"type": "text", "text": text});
            }
        }
    }
    Ok(loaded)
}

/// An Anthropic-defined tool at `tools.{i}`: the web-search function for a
/// `web_search_*` tool (recorded in `search`), or `None` for one the layer
/// drops.
fn server_tool(
    config: &Config,
    kind: &str,
    tool: &Map<String, Value>,
    i: usize,
    search: &mut Option<SearchTool>,
) -> Result<Option<Value>, ApiError> {
    if !kind.starts_with("web_search_") {
        if kind.starts_with("web_fetch_") {
            tracing::info!(kind, "dropping the web_fetch server tool: the proxy never fetches a URL a client or a model names");
        } else {
            tracing::debug!(kind, "dropping an Anthropic-defined tool Ollama cannot run");
        }
        return Ok(None);
    }
    if !config.web_search.is_enabled() {
        tracing::debug!(kind, "dropping the web search tool: web search is off");
        return Ok(None);
    }
    let p = |field: &str| format!("tools.{i}.{field}");
    let max_uses = match tool.get("max_uses") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            _ => {
                return Err(ApiError::invalid(
                    p("max_uses"),
                    "must be a positive integer",
                ))
            }
        },
    };
    let domains = |field: &str| -> Result<Vec<String>, ApiError> {
        match tool.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|d| {
                    d.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::invalid(p(field), "must be an array of strings"))
                })
                .collect(),
            Some(_) => Err(ApiError::invalid(p(field), "must be an array of strings")),
        }
    };
    let allowed_domains = domains("allowed_domains")?;
    let blocked_domains = domains("blocked_domains")?;
    if !allowed_domains.is_empty() && !blocked_domains.is_empty() {
        return Err(ApiError::invalid(
            p("allowed_domains"),
            "allowed_domains and blocked_domains cannot both be set",
        ));
    }
    let location = tool.get("user_location").and_then(location_text);
    *search = Some(SearchTool {
        max_uses,
        allowed_domains,
        blocked_domains,
    });
    Ok(Some(search::function(location.as_deref())))
}

/// `user_location` (`city`, `region`, `country`, `timezone`) as text.
fn location_text(v: &Value) -> Option<String> {
    let parts: Vec<&str> = ["city", "region", "country"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())
        .collect();
    let mut text = parts.join(", ");
    if let Some(tz) = v.get("timezone").and_then(Value::as_str) {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&format!("(time zone {tz})"));
    }
    (!text.is_empty()).then_some(text)
}

/// What is constant for one response.
struct Head {
    id: String,
    model: String,
    key: Key,
}

impl Head {
    fn new(model: &str, key: Key) -> Self {
        Head {
            id: random_id("msg_", 24, true),
            model: model.to_string(),
            key,
        }
    }
}

fn tool_use_id() -> String {
    random_id("toolu_", 24, true)
}

fn stop_reason(done: &Done<'_>, tool_calls: bool) -> &'static str {
    match done.reason {
        _ if tool_calls => "tool_use",
        Some("length") => "max_tokens",
        _ => "end_turn",
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Block {
    Thinking,
    Text,
}

const BLOCK_START: &[u8] =
    b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":";
const BLOCK_DELTA: &[u8] =
    b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":";
const BLOCK_STOP: &[u8] =
    b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":";
const PING: &[u8] = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";
const MESSAGE_STOP: &[u8] = b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
const END: &[u8] = b"}\n\n";

/// Streams Anthropic server-sent events.
struct StreamEncoder {
    /// The whole `message_start` event.
    message_start: Vec<u8>,
    key: Key,
    started: bool,
    /// The open text or thinking block, if any.
    open: Option<Block>,
    /// Index of the open block, or of the next one.
    index: u64,
    /// The open thinking block's text, to sign at its end.
    thinking: String,
    tool_calls: bool,
    /// Web searches run for this answer.
    searches: u64,
}

impl StreamEncoder {
    fn new(head: Head) -> Self {
        let mut m = BytesMut::with_capacity(256);
        m.extend_from_slice(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":",
        );
        write_str(&mut m, &head.id);
        m.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        write_str(&mut m, &head.model);
        m.extend_from_slice(
            b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":0}}}\n\n",
        );
        StreamEncoder {
            message_start: m.to_vec(),
            key: head.key,
            started: false,
            open: None,
            index: 0,
            thinking: String::new(),
            tool_calls: false,
            searches: 0,
        }
    }

    fn start(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.started = true;
            out.extend_from_slice(&self.message_start);
        }
    }

    /// Closes the open block (signing a thinking block first).
    fn close(&mut self, out: &mut BytesMut) {
        let Some(block) = self.open.take() else {
            return;
        };
        if block == Block::Thinking {
            let signature = signing::sign(&self.key, THINKING_PURPOSE, &self.thinking);
            self.thinking.clear();
            out.extend_from_slice(BLOCK_DELTA);
            write_u64(out, self.index);
            out.extend_from_slice(b",\"delta\":{\"type\":\"signature_delta\",\"signature\":");
            write_str(out, &signature);
            out.extend_from_slice(b"}");
            out.extend_from_slice(END);
        }
        self.stop_block(out);
    }

    /// `content_block_stop` for the block at `index`, and the next index.
    fn stop_block(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(BLOCK_STOP);
        write_u64(out, self.index);
        out.extend_from_slice(END);
        self.index += 1;
    }

    /// Makes `block` the open block, starting it if needed.
    fn open(&mut self, block: Block, out: &mut BytesMut) {
        if self.open == Some(block) {
            return;
        }
        self.close(out);
        self.open = Some(block);
        out.extend_from_slice(BLOCK_START);
        write_u64(out, self.index);
        out.extend_from_slice(match block {
            Block::Thinking => {
                b",\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}"
                    as &[u8]
            }
            Block::Text => b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}",
        });
        out.extend_from_slice(END);
    }

    fn delta(&mut self, block: Block, text: &str, out: &mut BytesMut) {
        self.open(block, out);
        out.extend_from_slice(BLOCK_DELTA);
        write_u64(out, self.index);
        out.extend_from_slice(match block {
            Block::Thinking => b",\"delta\":{\"type\":\"thinking_delta\",\"thinking\":" as &[u8],
            Block::Text => b",\"delta\":{\"type\":\"text_delta\",\"text\":",
        });
        write_str(out, text);
        out.extend_from_slice(b"}");
        out.extend_from_slice(END);
    }

    fn ping(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(PING);
    }
}

impl Encoder for StreamEncoder {
    fn event(&mut self, event: Event<'_>, out: &mut BytesMut) {
        if let Event::Error(message) = event {
            // In-band error; no message_stop follows.
            let err = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message);
            out.extend_from_slice(b"event: error\ndata: ");
            write_error_object(&err, out);
            out.extend_from_slice(b"\n\n");
            return;
        }
        self.start(out);
        match event {
            // Silent thinking is kept alive by the body's keep-alive.
            Event::Heartbeat | Event::Error(_) => {}
            Event::Thinking(t) => {
                self.thinking.push_str(t);
                self.delta(Block::Thinking, t, out);
            }
            Event::Text(t) => self.delta(Block::Text, t, out),
            Event::ToolCall(call) => {
                self.close(out);
                self.tool_calls = true;
                out.extend_from_slice(BLOCK_START);
                write_u64(out, self.index);
                out.extend_from_slice(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
                write_str(out, &tool_use_id());
                out.extend_from_slice(b",\"name\":");
                write_str(out, call.name);
                out.extend_from_slice(b",\"input\":{}}");
                out.extend_from_slice(END);
                out.extend_from_slice(BLOCK_DELTA);
                write_u64(out, self.index);
                out.extend_from_slice(
                    b",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":",
                );
                write_str(out, call.arguments);
                out.extend_from_slice(b"}");
                out.extend_from_slice(END);
                self.stop_block(out);
            }
            Event::Done(done) => {
                self.close(out);
                out.extend_from_slice(
                    b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"",
                );
                out.extend_from_slice(stop_reason(&done, self.tool_calls).as_bytes());
                out.extend_from_slice(b"\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":");
                write_u64(out, done.prompt_tokens);
                out.extend_from_slice(b",\"output_tokens\":");
                write_u64(out, done.completion_tokens);
                if self.searches > 0 {
                    out.extend_from_slice(b",\"server_tool_use\":{\"web_search_requests\":");
                    write_u64(out, self.searches);
                    out.extend_from_slice(b",\"web_fetch_requests\":0}");
                }
                out.extend_from_slice(b"}}\n\n");
                out.extend_from_slice(MESSAGE_STOP);
            }
        }
    }

    fn idle(&mut self, out: &mut BytesMut) {
        self.start(out);
        self.ping(out);
    }

    fn server_call(&mut self, call: &ServerCall<'_>, out: &mut BytesMut) {
        self.start(out);
        self.close(out);
        out.extend_from_slice(BLOCK_START);
        write_u64(out, self.index);
        out.extend_from_slice(b",\"content_block\":{\"type\":\"server_tool_use\",\"id\":");
        write_str(out, &server_tool_id(call.id));
        out.extend_from_slice(b",\"name\":\"web_search\",\"input\":{}}");
        out.extend_from_slice(END);
        out.extend_from_slice(BLOCK_DELTA);
        write_u64(out, self.index);
        out.extend_from_slice(b",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":");
        write_str(out, &json!({"query": call.query}).to_string());
        out.extend_from_slice(b"}");
        out.extend_from_slice(END);
        self.stop_block(out);
    }

    fn server_result(&mut self, result: &ServerResult<'_>, out: &mut BytesMut) {
        self.start(out);
        if result.outcome.is_ok() {
            self.searches += 1;
        }
        let block = search_result_block(&self.key, result);
        out.extend_from_slice(BLOCK_START);
        write_u64(out, self.index);
        out.extend_from_slice(b",\"content_block\":");
        out.extend_from_slice(block.to_string().as_bytes());
        out.extend_from_slice(END);
        self.stop_block(out);
    }
}

/// The `srvtoolu_…` id of a server tool call.
fn server_tool_id(id: &str) -> String {
    format!("srvtoolu_{id}")
}

/// The `server_tool_use` block of a web search.
fn server_tool_use_block(call: &ServerCall<'_>) -> Value {
    json!({
        "type": "server_tool_use",
        "id": server_tool_id(call.id),
        "name": search::FUNCTION,
        "input": {"query": call.query},
    })
}

/// The `web_search_tool_result` block of a search: its hits (each with its
/// sealed `encrypted_content`) or its error.
fn search_result_block(key: &Key, result: &ServerResult<'_>) -> Value {
    let content = match result.outcome {
        Ok(hits) => Value::Array(
            hits.iter()
                .map(|hit| {
                    let mut item = json!({
                        "type": "web_search_result",
                        "url": hit.url,
                        "title": hit.title,
                        "encrypted_content": search::seal_hit(key, hit),
                    });
                    if let Some(age) = &hit.page_age {
                        item["page_age"] = Value::from(age.as_str());
                    }
                    item
                })
                .collect(),
        ),
        Err(code) => json!({"type": "web_search_tool_result_error", "error_code": code.as_str()}),
    };
    json!({
        "type": "web_search_tool_result",
        "tool_use_id": server_tool_id(result.id),
        "content": content,
    })
}

/// Builds one `message` object.
struct Collector {
    head: Head,
    content: Vec<Value>,
    open: Option<Block>,
    text: String,
    tool_calls: bool,
    /// Web searches run for this answer.
    searches: u64,
}

impl Collector {
    fn new(head: Head) -> Self {
        Collector {
            head,
            content: Vec::new(),
            open: None,
            text: String::new(),
            tool_calls: false,
            searches: 0,
        }
    }

    fn close(&mut self) {
        let Some(block) = self.open.take() else {
            return;
        };
        let text = std::mem::take(&mut self.text);
        self.content.push(match block {
            Block::Thinking => {
                let signature = signing::sign(&self.head.key, THINKING_PURPOSE, &text);
                json!({"type": "thinking", "thinking": text, "signature": signature})
            }
            Block::Text => json!({"type": "text", "text": text}),
        });
    }

    fn append(&mut self, block: Block, text: &str) {
        if self.open != Some(block) {
            self.close();
            self.open = Some(block);
        }
        self.text.push_str(text);
    }
}

impl Encoder for Collector {
    fn event(&mut self, event: Event<'_>, out: &mut BytesMut) {
        match event {
            Event::Heartbeat => {}
            Event::Thinking(t) => self.append(Block::Thinking, t),
            Event::Text(t) => self.append(Block::Text, t),
            Event::ToolCall(call) => {
                self.close();
                self.tool_calls = true;
                let input: Value =
                    serde_json::from_str(call.arguments).unwrap_or_else(|_| json!({}));
                self.content.push(json!({
                    "type": "tool_use",
                    "id": tool_use_id(),
                    "name": call.name,
                    "input": input,
                }));
            }
            Event::Done(done) => {
                self.close();
                let mut body = json!({
                    "id": self.head.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.head.model,
                    "content": std::mem::take(&mut self.content),
                    "stop_reason": stop_reason(&done, self.tool_calls),
                    "stop_sequence": null,
                    "usage": {
                        "input_tokens": done.prompt_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": done.completion_tokens,
                    },
                });
                if self.searches > 0 {
                    body["usage"]["server_tool_use"] =
                        json!({"web_search_requests": self.searches, "web_fetch_requests": 0});
                }
                out.extend_from_slice(body.to_string().as_bytes());
            }
            Event::Error(message) => {
                let err = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message);
                write_error_object(&err, out);
            }
        }
    }

    fn server_call(&mut self, call: &ServerCall<'_>, _out: &mut BytesMut) {
        self.close();
        self.content.push(server_tool_use_block(call));
    }

    fn server_result(&mut self, result: &ServerResult<'_>, _out: &mut BytesMut) {
        if result.outcome.is_ok() {
            self.searches += 1;
        }
        self.content
            .push(search_result_block(&self.head.key, result));
    }
}

/// Reads `prompt_eval_count` from Ollama's whole answer.
#[derive(Default)]
struct TokenCounter {
    done: bool,
    failed: Option<ApiError>,
}

impl TokenCounter {
    fn fail(&mut self, failure: Failure, message: String, out: &mut BytesMut) {
        tracing::warn!(error = %message, "could not count tokens");
        let err = ApiError::new(failure.status(), message);
        write_error_object(&err, out);
        self.failed = Some(err);
    }
}

impl Transcode for TokenCounter {
    fn line(&mut self, body: &[u8], out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.done = true;
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            prompt_eval_count: Option<u64>,
            #[serde(default)]
            error: Option<Value>,
        }
        match serde_json::from_slice::<Answer>(body) {
            Ok(Answer {
                prompt_eval_count: Some(n),
                error: None,
            }) => {
                out.extend_from_slice(b"{\"input_tokens\":");
                write_u64(out, n);
                out.extend_from_slice(b"}");
            }
            Ok(Answer { error: Some(e), .. }) => {
                let message = match e {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                self.fail(Failure::OllamaError, message, out);
            }
            Ok(_) => self.fail(
                Failure::UpstreamGarbage,
                "Ollama's answer has no prompt_eval_count to count tokens with".into(),
                out,
            ),
            Err(e) => self.fail(
                Failure::UpstreamGarbage,
                format!("Ollama sent an answer that is not JSON: {e}"),
                out,
            ),
        }
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BoxError> {
        if !self.done {
            self.line(b"", out);
        }
        match &self.failed {
            Some(e) => Err(Box::new(StreamError(e.message.clone()))),
            None => Ok(()),
        }
    }

    fn abort(&mut self, failure: Failure, error: &str, out: &mut BytesMut) {
        if !self.done {
            self.done = true;
            self.fail(failure, format!("connection to Ollama lost: {error}"), out);
        }
    }

    fn failure(&self) -> Option<ApiError> {
        self.failed.clone()
    }

    fn whole_body(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
