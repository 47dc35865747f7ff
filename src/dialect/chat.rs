//! OpenAI Chat Completions: `POST /v1/chat/completions`.
//!
//! Requests become native `/api/chat` requests; Ollama's NDJSON becomes
//! `chat.completion.chunk` server-sent events (or one `chat.completion`
//! object when the client did not ask to stream).

use super::native::{ChatRequest, Message, ToolCall as NativeToolCall, ToolFunction};
use super::openai::reply::{finish_reason, usage, write_usage, Head};
use super::openai::request::{include_usage, think, FormatField, Sampling, ThinkFields};
use super::params::{
    as_tool, json_object, list_error, model_name, optional_array, parse_arguments, parse_content,
    stream, UnknownParts, Wording,
};
use super::{openai, ChatCall, Upstream};
use crate::config::Config;
use crate::error::ApiError;
use crate::json::{write_str, write_u64};
use crate::ollama::{Encoder, Event, ToolCall};
use crate::shared::Shared;
use crate::util::random_id;
use bytes::BytesMut;
use http::request::Parts;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The Chat Completions dialect.
pub(crate) struct ChatCompletions;

dialect!(
    ChatCompletions,
    "chat.completions",
    prepare_chat_completions,
    openai::error_body,
    shared
);

/// [`Dialect::prepare`](super::Dialect::prepare) for [`ChatCompletions`].
fn prepare_chat_completions(
    config: &Config,
    shared: &Shared,
    _parts: &Parts,
    body: &[u8],
) -> Result<Upstream, ApiError> {
    let parsed = parse_request(config, body)?;
    let call = ChatCall::new(config, shared, parsed.native, "chat.completions")?;
    let head = Head::new("chatcmpl-", &parsed.client_model);
    let up = if call.stream {
        call.upstream(StreamEncoder::new(head, parsed.include_usage))
    } else {
        call.upstream(Collector::new(head))
    };
    Ok(up.requested_as(&parsed.client_model))
}

/// A parsed client request.
pub(crate) struct Parsed {
    pub(crate) native: ChatRequest,
    /// The model name the client asked for (responses report it).
    pub(crate) client_model: String,
    pub(crate) include_usage: bool,
}

/// Parses a Chat Completions request body into a native request.
pub(crate) fn parse_request(config: &Config, body: &[u8]) -> Result<Parsed, ApiError> {
    let root = json_object(body)?;
    let client_model = model_name(&root, Wording::Named)?;
    let model = config.resolve_model(&client_model).to_string();

    let stream = stream(&root, Wording::Named)?;
    let include_usage = include_usage(&root, stream, Wording::Named)?;

    refuse_unsupported(&root)?;

    let mut native = ChatRequest::new(model, stream);
    native.messages = parse_messages(root.get("messages"))?;

    let (options, keep_alive) = Sampling::CHAT.read(&root)?;
    native.options = options;
    native.keep_alive = keep_alive;

    native.format = FormatField::CHAT.read(root.get("response_format"))?;
    native.think = think(&root, ThinkFields::Chat)?;

    let tool_choice_none = matches!(root.get("tool_choice"), Some(Value::String(s)) if s == "none");
    let mut tools = parse_tools(root.get("tools"), "tools")?;
    let functions = parse_legacy_functions(root.get("functions"))?;
    if tools.is_empty() {
        tools = functions;
    }
    if !tools.is_empty() && !tool_choice_none {
        native.tools = Some(tools);
    }

    Ok(Parsed {
        native,
        client_model,
        include_usage,
    })
}

/// Parameters Ollama cannot honour: refuse them rather than ignore them.
fn refuse_unsupported(root: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(n) = root.get("n").filter(|v| !v.is_null()) {
        if n.as_u64() != Some(1) {
            return Err(ApiError::invalid(
                "n",
                "n must be 1: Ollama generates one choice per request",
            ));
        }
    }
    if let Some(Value::Object(bias)) = root.get("logit_bias") {
        if !bias.is_empty() {
            return Err(ApiError::invalid(
                "logit_bias",
                "logit_bias is not supported by Ollama",
            ));
        }
    }
    if root.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::invalid(
            "logprobs",
            "logprobs is not supported by this proxy",
        ));
    }
    if root.get("audio").is_some_and(|v| !v.is_null())
        || root
            .get("modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|x| x != "text"))
    {
        return Err(ApiError::invalid(
            "modalities",
            "only text output is supported",
        ));
    }
    Ok(())
}

/// `tools`: function tools pass through; other kinds are dropped.
pub(crate) fn parse_tools(v: Option<&Value>, param: &str) -> Result<Vec<Value>, ApiError> {
    let tools = optional_array(v, param, Wording::Named)?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        if kind != "function" {
            tracing::debug!(kind, "dropping a tool kind Ollama cannot run");
            continue;
        }
        let Some(Value::Object(function)) = tool.get("function") else {
            return Err(ApiError::invalid(
                format!("{param}[{i}].function"),
                "a function tool needs a function object",
            ));
        };
        if !function.get("name").is_some_and(Value::is_string) {
            return Err(ApiError::invalid(
                format!("{param}[{i}].function.name"),
                "a function tool needs a name",
            ));
        }
        let mut f = function.clone();
        f.remove("strict");
        out.push(as_tool(f));
    }
    Ok(out)
}

/// The legacy `functions` list (an array, or absent): used only when
/// `tools` offers none, but checked either way.
fn parse_legacy_functions(v: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    let funcs = optional_array(v, "functions", Wording::Named)?;
    if funcs.is_empty() {
        return Ok(Vec::new());
    }
    let wrapped: Vec<Value> = funcs.iter().map(|f| as_tool(f.clone())).collect();
    parse_tools(Some(&Value::Array(wrapped)), "functions")
}

fn parse_messages(v: Option<&Value>) -> Result<Vec<Message>, ApiError> {
    let msgs = match v {
        Some(Value::Array(a)) if !a.is_empty() => a,
        v => return Err(list_error(v, "messages", "message", Wording::Named)),
    };
    let mut out = Vec::with_capacity(msgs.len());
    // tool_call_id → function name, from earlier assistant turns.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in msgs.iter().enumerate() {
        out.push(parse_message(i, m, &mut call_names)?);
    }
    Ok(out)
}

/// `messages[i]` as a native message. `call_names` maps tool call ids to
/// function names: assistant turns add to it, tool turns look names up.
fn parse_message(
    i: usize,
    m: &Value,
    call_names: &mut HashMap<String, String>,
) -> Result<Message, ApiError> {
    let p = format!("messages[{i}]");
    let Value::Object(m) = m else {
        return Err(ApiError::invalid(p, "each message must be an object"));
    };
    let role = m.get("role").and_then(Value::as_str).unwrap_or("");
    let mut images = Vec::new();
    let content = parse_content(
        m.get("content"),
        &format!("{p}.content"),
        &mut images,
        UnknownParts::Reject,
    )?;
    let mut msg = match role {
        "system" | "developer" => Message::new("system", content),
        "user" => Message::new("user", content),
        "assistant" => assistant_message(i, m, content, call_names)?,
        "tool" | "function" => tool_message(m, content, call_names),
        "" => {
            return Err(ApiError::invalid(
                format!("{p}.role"),
                "message role is required",
            ))
        }
        other => {
            return Err(ApiError::invalid(
                format!("{p}.role"),
                format!("unsupported message role {other:?}"),
            ))
        }
    };
    msg.images = images;
    Ok(msg)
}

/// An assistant turn `messages[i]`: its text, earlier reasoning, and tool
/// calls (`tool_calls`, or the legacy `function_call`).
fn assistant_message(
    i: usize,
    m: &Map<String, Value>,
    content: String,
    call_names: &mut HashMap<String, String>,
) -> Result<Message, ApiError> {
    let p = format!("messages[{i}]");
    let mut msg = Message::new("assistant", content);
    msg.thinking = assistant_thinking(m);
    let calls = optional_array(
        m.get("tool_calls"),
        &format!("{p}.tool_calls"),
        Wording::Named,
    )?;
    for (j, call) in calls.iter().enumerate() {
        let call = tool_call(i, j, call)?;
        if let Some(id) = &call.id {
            call_names.insert(id.clone(), call.function.name.clone());
        }
        msg.tool_calls.push(call);
    }
    if let Some(Value::Object(fc)) = m.get("function_call") {
        let name = fc.get("name").and_then(Value::as_str).unwrap_or("");
        let arguments =
            parse_arguments(fc.get("arguments"), &format!("{p}.function_call.arguments"))?;
        msg.tool_calls.push(NativeToolCall {
            id: None,
            function: ToolFunction {
                name: name.to_string(),
                arguments,
            },
        });
    }
    Ok(msg)
}

/// `messages[i].tool_calls[j]` as a native tool call.
fn tool_call(i: usize, j: usize, call: &Value) -> Result<NativeToolCall, ApiError> {
    let p = format!("messages[{i}].tool_calls[{j}].function");
    let f = call.get("function");
    let name = f
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::invalid(
                format!("{p}.name"),
                format!("message {i}: tool call {j} has no function name"),
            )
        })?;
    let arguments = parse_arguments(
        f.and_then(|f| f.get("arguments")),
        &format!("{p}.arguments"),
    )
    .map_err(|mut e| {
        e.message = format!("message {i}: {}", e.message);
        e
    })?;
    Ok(NativeToolCall {
        id: call.get("id").and_then(Value::as_str).map(str::to_string),
        function: ToolFunction {
            name: name.to_string(),
            arguments,
        },
    })
}

/// A tool turn: its name comes from the message or from the assistant
/// call it answers.
fn tool_message(
    m: &Map<String, Value>,
    content: String,
    call_names: &HashMap<String, String>,
) -> Message {
    let mut msg = Message::new("tool", content);
    let id = m.get("tool_call_id").and_then(Value::as_str);
    msg.tool_name = m
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| id.and_then(|id| call_names.get(id).cloned()));
    msg.tool_call_id = id.map(str::to_string);
    msg
}

/// Earlier reasoning on an assistant turn, in any spelling clients use.
fn assistant_thinking(m: &Map<String, Value>) -> Option<String> {
    for key in ["reasoning_content", "reasoning", "thinking"] {
        if let Some(s) = m.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()) {
            return Some(s.to_string());
        }
    }
    // LiteLLM's `thinking_blocks`.
    let blocks = m.get("thinking_blocks")?.as_array()?;
    let text: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b.get("thinking").and_then(Value::as_str))
        .collect();
    (!text.is_empty()).then(|| text.concat())
}

fn tool_call_id(call: &ToolCall<'_>) -> String {
    match call.id {
        Some(id) => id.to_string(),
        None => random_id("call_", 24, true),
    }
}

/// Streams `chat.completion.chunk` events.
struct StreamEncoder {
    /// `data: {"id":…,"choices":[{"index":0,"delta":` — everything before a delta.
    chunk_prefix: Vec<u8>,
    /// `data: {"id":…,"choices":[],"usage":` — the usage chunk's start.
    usage_prefix: Vec<u8>,
    include_usage: bool,
    started: bool,
    next_tool_index: u64,
}

const CHUNK_SUFFIX: &[u8] = b",\"logprobs\":null,\"finish_reason\":null}]}\n\n";

impl StreamEncoder {
    fn new(head: Head, include_usage: bool) -> Self {
        let mut common = head.chunk_start("chat.completion.chunk");
        common.extend_from_slice(b",\"system_fingerprint\":\"fp_ollama\",");
        let mut chunk_prefix = common.to_vec();
        chunk_prefix.extend_from_slice(b"\"choices\":[{\"index\":0,\"delta\":");
        let mut usage_prefix = common.to_vec();
        usage_prefix.extend_from_slice(b"\"choices\":[],\"usage\":");
        StreamEncoder {
            chunk_prefix,
            usage_prefix,
            include_usage,
            started: false,
            next_tool_index: 0,
        }
    }

    fn start(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.started = true;
            out.extend_from_slice(&self.chunk_prefix);
            out.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"\"}");
            out.extend_from_slice(CHUNK_SUFFIX);
        }
    }

    fn delta_str(&self, field: &[u8], text: &str, out: &mut BytesMut) {
        out.extend_from_slice(&self.chunk_prefix);
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(field);
        out.extend_from_slice(b"\":");
        write_str(out, text);
        out.extend_from_slice(b"}");
        out.extend_from_slice(CHUNK_SUFFIX);
    }
}

impl Encoder for StreamEncoder {
    fn idle(&mut self, out: &mut BytesMut) {
        // An SSE comment: ignored by clients, keeps idle watchdogs calm.
        out.extend_from_slice(b": keep-alive\n\n");
    }

    fn event(&mut self, event: Event<'_>, out: &mut BytesMut) {
        if let Event::Error(message) = event {
            openai::write_upstream_error_event(message, out);
            return;
        }
        self.start(out);
        match event {
            Event::Heartbeat | Event::Error(_) => {}
            Event::Thinking(t) => self.delta_str(b"reasoning_content", t, out),
            Event::Text(t) => self.delta_str(b"content", t, out),
            Event::ToolCall(call) => {
                let index = self.next_tool_index;
                self.next_tool_index += 1;
                // First chunk: index, id, type, name, empty arguments.
                out.extend_from_slice(&self.chunk_prefix);
                out.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
                write_u64(out, index);
                out.extend_from_slice(b",\"id\":");
                write_str(out, &tool_call_id(&call));
                out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                write_str(out, call.name);
                out.extend_from_slice(b",\"arguments\":\"\"}}]}");
                out.extend_from_slice(CHUNK_SUFFIX);
                // Second chunk: the whole arguments object as a string.
                out.extend_from_slice(&self.chunk_prefix);
                out.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
                write_u64(out, index);
                out.extend_from_slice(b",\"function\":{\"arguments\":");
                write_str(out, call.arguments);
                out.extend_from_slice(b"}}]}");
                out.extend_from_slice(CHUNK_SUFFIX);
            }
            Event::Done(done) => {
                out.extend_from_slice(&self.chunk_prefix);
                out.extend_from_slice(b"{},\"logprobs\":null,\"finish_reason\":\"");
                out.extend_from_slice(finish_reason(&done, self.next_tool_index > 0).as_bytes());
                out.extend_from_slice(b"\"}]}\n\n");
                if self.include_usage {
                    out.extend_from_slice(&self.usage_prefix);
                    write_usage(&done, out);
                    out.extend_from_slice(b"}\n\n");
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
        }
    }
}

/// Builds one `chat.completion` object.
struct Collector {
    head: Head,
    text: String,
    reasoning: String,
    tool_calls: Vec<Value>,
}

impl Collector {
    fn new(head: Head) -> Self {
        Collector {
            head,
            text: String::new(),
            reasoning: String::new(),
            tool_calls: Vec::new(),
        }
    }
}

impl Encoder for Collector {
    fn event(&mut self, event: Event<'_>, out: &mut BytesMut) {
        match event {
            Event::Heartbeat => {}
            Event::Thinking(t) => self.reasoning.push_str(t),
            Event::Text(t) => self.text.push_str(t),
            Event::ToolCall(call) => self.tool_calls.push(json!({
                "id": tool_call_id(&call),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            })),
            Event::Done(done) => {
                let mut message = json!({
                    "role": "assistant",
                    "content": if self.text.is_empty() && !self.tool_calls.is_empty() {
                        Value::Null
                    } else {
                        Value::String(std::mem::take(&mut self.text))
                    },
                });
                if !self.reasoning.is_empty() {
                    message["reasoning_content"] =
                        Value::String(std::mem::take(&mut self.reasoning));
                }
                if !self.tool_calls.is_empty() {
                    message["tool_calls"] = Value::Array(std::mem::take(&mut self.tool_calls));
                }
                let has_calls = message.get("tool_calls").is_some();
                let body = json!({
                    "id": self.head.id,
                    "object": "chat.completion",
                    "created": self.head.created,
                    "model": self.head.model,
                    "system_fingerprint": "fp_ollama",
                    "choices": [{
                        "index": 0,
                        "message": message,
                        "logprobs": null,
                        "finish_reason": finish_reason(&done, has_calls),
                    }],
                    "usage": usage(&done),
                });
                out.extend_from_slice(body.to_string().as_bytes());
            }
            Event::Error(message) => openai::write_upstream_error(message, out),
        }
    }
}

#[cfg(test)]
mod tests;
