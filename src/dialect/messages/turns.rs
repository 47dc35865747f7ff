//! The conversation: user and assistant turns as native messages
//! (tool uses, tool results, server tool blocks).

use super::*;

/// `messages` into native messages, appended to `out`.
pub(super) fn parse_messages(
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
pub(super) fn assistant_messages(
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
pub(super) struct AssistantTurn<'a> {
    pub(super) key: &'a Key,
    pub(super) msg: Message,
    /// `server_tool_use` id → query.
    pub(super) searches: HashMap<String, String>,
    pub(super) out: &'a mut Vec<Message>,
}

impl AssistantTurn<'_> {
    /// A web search the layer ran: the model's call only with its result.
    pub(super) fn server_tool_use(&mut self, block: &Value, bp: &str) {
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
    pub(super) fn search_result(&mut self, block: &Value, bp: &str) {
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
    pub(super) fn thinking(&mut self, block: &Value, bp: &str) {
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
pub(super) fn tool_use_call(block: Value, bp: &str) -> Result<NativeToolCall, ApiError> {
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
pub(super) fn search_result_text(key: &Key, query: &str, content: Option<&Value>) -> String {
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
pub(super) fn user_messages(
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
