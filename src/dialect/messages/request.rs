//! The request: a Messages request's fields (model, sampling, system,
//! thinking) and the content blocks they are made of.

use super::*;

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
pub(super) fn sampling_options(
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
pub(super) fn tool_choice_none(root: &Map<String, Value>) -> Result<bool, ApiError> {
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
pub(super) fn parse_system(v: Option<Value>) -> Result<Option<String>, ApiError> {
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

pub(super) fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The `text` of a text block.
pub(super) fn block_text(block: Value, param: &str) -> Result<String, ApiError> {
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
pub(super) fn join_text(text: &mut String, part: &str) {
    if part.is_empty() {
        return;
    }
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(part);
}

/// An `image` block's base64 data, for Ollama's `images`.
pub(super) fn image_block(block: &Value, param: &str) -> Result<String, ApiError> {
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
pub(super) fn document_text(block: &Value, param: &str) -> Result<String, ApiError> {
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
pub(super) fn tool_result_content(
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

/// The think level for an `enabled` budget.
pub(super) fn think_from_budget(budget: i64) -> Value {
    Value::from(match budget {
        b if b < 4096 => "low",
        b if b < 16384 => "medium",
        _ => "high",
    })
}

/// `thinking` (and `output_config.effort`) to Ollama's `think`.
pub(super) fn parse_thinking(
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
