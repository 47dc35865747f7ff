//! The input items of a Responses request as native messages, and the
//! sealed reasoning (`encrypted_content`) they may carry back.

use super::*;

/// Input item types the Responses API documents that Ollama has no place
/// for: dropped with a debug log, never a 400 (clients such as Codex send
/// back whatever the last answer held). Any type not here and not handled is
/// a 400, as from OpenAI: a new kind of item belongs in this list.
pub(super) const DROPPED_ITEM_TYPES: &[&str] = &[
    "item_reference",
    "file_search_call",
    "computer_call",
    "computer_call_output",
    "image_generation_call",
    "code_interpreter_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "compaction",
    "compaction_summary",
    "ghost_snapshot",
];

/// Turns `instructions` + `input` into native messages.
pub(super) struct InputBuilder<'k> {
    pub(super) key: &'k Key,
    pub(super) messages: Vec<Message>,
    /// call_id → native function name, from earlier `function_call` items.
    pub(super) call_names: HashMap<String, String>,
    /// Verified thinking waiting for the next assistant message.
    pub(super) pending_thinking: Option<String>,
    /// The first item dropped (its index and type), to explain an input
    /// left with nothing to answer.
    pub(super) first_dropped: Option<(usize, String)>,
    /// Tools `tool_search_output` items loaded.
    pub(super) loaded: Loaded,
}

pub(super) fn parse_input(
    key: &Key,
    instructions: Option<&str>,
    input: Option<&Value>,
) -> Result<(Vec<Message>, Loaded), ApiError> {
    let mut b = InputBuilder {
        key,
        messages: Vec::new(),
        call_names: HashMap::new(),
        pending_thinking: None,
        first_dropped: None,
        loaded: Loaded::default(),
    };
    if let Some(s) = instructions.filter(|s| !s.is_empty()) {
        b.messages.push(Message::new("system", s));
    }
    match input {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => b.messages.push(Message::new("user", s.as_str())),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                b.item(i, item)?;
            }
        }
        Some(v) => {
            return Err(ApiError::invalid(
                "input",
                format!(
                    "input must be a string or an array of items, got {}",
                    type_name(v)
                ),
            ))
        }
    }
    if b.pending_thinking.is_some() {
        tracing::debug!("dropping reasoning that no assistant output follows");
    }
    if !b.messages.iter().any(|m| m.role != "system") {
        let message = match &b.first_dropped {
            Some((i, kind)) => format!(
                "input has nothing Ollama can answer: this proxy drops input[{i}] (type {kind}); send at least one message item"
            ),
            None => "input is required: send a string or at least one message item".into(),
        };
        return Err(ApiError::invalid("input", message));
    }
    Ok((b.messages, b.loaded))
}

impl InputBuilder<'_> {
    pub(super) fn item(&mut self, i: usize, item: &Value) -> Result<(), ApiError> {
        let p = format!("input[{i}]");
        let Value::Object(item) = item else {
            return Err(ApiError::invalid(p, "each input item must be an object"));
        };
        let kind = match item.get("type").and_then(Value::as_str) {
            Some(k) => k,
            None if item.contains_key("role") => "message",
            None => {
                return Err(ApiError::invalid(
                    format!("{p}.type"),
                    "an input item needs a type (or a role, for a message)",
                ))
            }
        };
        match kind {
            "message" => self.message(&p, item),
            "function_call" => self.function_call(&p, item),
            "function_call_output" => self.function_call_output(&p, item),
            "tool_search_call" => self.tool_search_call(&p, item),
            "tool_search_output" => self.tool_search_output(&p, item),
            "custom_tool_call" => self.custom_tool_call(&p, item),
            // Its output is read as a function's (a string or content parts).
            "custom_tool_call_output" => self.function_call_output(&p, item),
            // Its tools were read with the request's (`tool_entries`).
            "additional_tools" => Ok(()),
            "reasoning" => {
                self.reasoning(item);
                Ok(())
            }
            "web_search_call" => {
                self.web_search_call(item);
                Ok(())
            }
            other if DROPPED_ITEM_TYPES.contains(&other) => {
                tracing::debug!(
                    kind = other,
                    index = i,
                    "dropping an input item Ollama cannot use"
                );
                if self.first_dropped.is_none() {
                    self.first_dropped = Some((i, other.to_string()));
                }
                Ok(())
            }
            other => Err(ApiError::invalid(
                format!("{p}.type"),
                format!(
                    "{p}.type is {other:?}, which is not an input item type of the Responses API"
                ),
            )),
        }
    }

    pub(super) fn message(&mut self, p: &str, item: &Map<String, Value>) -> Result<(), ApiError> {
        let role = match item.get("role").and_then(Value::as_str) {
            Some("user") => "user",
            Some("assistant") => "assistant",
            Some("system" | "developer") => "system",
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("{p}.role"),
                    format!("unsupported message role {other:?} (expected user, assistant, system or developer)"),
                ))
            }
            None => return Err(ApiError::invalid(format!("{p}.role"), "a message item needs a role")),
        };
        let mut images = Vec::new();
        let content = parse_content(
            item.get("content"),
            &format!("{p}.content"),
            &mut images,
            UnknownParts::Drop,
        )?;
        let mut msg = Message::new(role, content);
        msg.images = images;
        match role {
            "assistant" => msg.thinking = self.pending_thinking.take(),
            "user" if self.pending_thinking.take().is_some() => {
                tracing::debug!("dropping reasoning that no assistant output follows");
            }
            _ => {}
        }
        self.messages.push(msg);
        Ok(())
    }

    pub(super) fn function_call(
        &mut self,
        p: &str,
        item: &Map<String, Value>,
    ) -> Result<(), ApiError> {
        let name = call_name(item, p, "function_call")?;
        let arguments = parse_arguments(item.get("arguments"), &format!("{p}.arguments"))?;
        let call_id = call_id_of(item);
        self.push_call(call_id, name, arguments);
        Ok(())
    }

    /// A `custom_tool_call`: the model's call of a custom tool, whose
    /// function takes its `input` text as the one argument
    /// [`CUSTOM_INPUT`] (see [`custom_function`]).
    pub(super) fn custom_tool_call(
        &mut self,
        p: &str,
        item: &Map<String, Value>,
    ) -> Result<(), ApiError> {
        let name = call_name(item, p, "custom_tool_call")?;
        let input = match item.get("input") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            Some(v) => {
                return Err(Wording::Named.wrong_type(&format!("{p}.input"), "a string", v));
            }
        };
        let call_id = call_id_of(item);
        self.push_call(call_id, name, json!({ CUSTOM_INPUT: input }));
        Ok(())
    }

    /// A `tool_search_call`: the model's call of [`TOOL_SEARCH`], its
    /// `arguments` an object (or a string encoding one).
    pub(super) fn tool_search_call(
        &mut self,
        p: &str,
        item: &Map<String, Value>,
    ) -> Result<(), ApiError> {
        let arguments = parse_arguments(item.get("arguments"), &format!("{p}.arguments"))?;
        let call_id = call_id_of(item);
        self.push_call(call_id, TOOL_SEARCH.to_string(), arguments);
        Ok(())
    }

    /// A `tool_search_output`: the tools it loaded become callable (see
    /// [`Loaded`]) and the model reads one line per tool
    /// ([`tool_loaded_text`]) as the search's result.
    pub(super) fn tool_search_output(
        &mut self,
        p: &str,
        item: &Map<String, Value>,
    ) -> Result<(), ApiError> {
        let tools: &[Value] = match item.get("tools") {
            None | Some(Value::Null) => &[],
            Some(Value::Array(a)) => a,
            Some(v) => return Err(Wording::Named.wrong_type(&format!("{p}.tools"), "an array", v)),
        };
        let first = self.loaded.functions.len();
        for (j, tool) in tools.iter().enumerate() {
            functions(tool, &format!("{p}.tools[{j}]"), &mut self.loaded.functions)?;
        }
        let lines: Vec<String> = self
            .loaded
            .functions
            .iter()
            .skip(first)
            .map(|f| tool_loaded_text(&f.flat, f.description.as_deref()))
            .collect();
        let content = if lines.is_empty() {
            "The tool search found no tools.".to_string()
        } else {
            lines.join("\n")
        };
        let call_id = item.get("call_id").and_then(Value::as_str);
        let mut msg = Message::new("tool", content);
        msg.tool_name = Some(TOOL_SEARCH.to_string());
        msg.tool_call_id = call_id.map(str::to_string);
        self.messages.push(msg);
        Ok(())
    }

    /// A call of the assistant's, named as offered to the model.
    pub(super) fn push_call(&mut self, call_id: Option<String>, name: String, arguments: Value) {
        if let Some(id) = &call_id {
            self.call_names.insert(id.clone(), name.clone());
        }
        // Consecutive calls, and the assistant text just before them, are
        // one assistant turn.
        if !matches!(self.messages.last(), Some(m) if m.role == "assistant") {
            self.messages.push(Message::new("assistant", ""));
        }
        let thinking = self.pending_thinking.take();
        if let Some(last) = self.messages.last_mut() {
            if let Some(t) = thinking {
                match &mut last.thinking {
                    Some(existing) => {
                        existing.push('\n');
                        existing.push_str(&t);
                    }
                    None => last.thinking = Some(t),
                }
            }
            last.tool_calls.push(NativeToolCall {
                id: call_id,
                function: ToolFunction { name, arguments },
            });
        }
    }

    /// A web search the layer ran in an earlier turn: the call, and a tool
    /// message with what the item still says (its sources' addresses, when
    /// it lists them; the page text is not kept).
    pub(super) fn web_search_call(&mut self, item: &Map<String, Value>) {
        let action = item.get("action");
        let query = action
            .and_then(|a| a.get("query"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if query.is_empty() {
            tracing::debug!("dropping a web_search_call item without a query");
            return;
        }
        let id = item.get("id").and_then(Value::as_str).map(str::to_string);
        if !matches!(self.messages.last(), Some(m) if m.role == "assistant") {
            self.messages.push(Message::new("assistant", ""));
        }
        if let Some(last) = self.messages.last_mut() {
            last.tool_calls.push(NativeToolCall {
                id: id.clone(),
                function: ToolFunction {
                    name: search::FUNCTION.to_string(),
                    arguments: json!({ "query": query }),
                },
            });
        }
        let sources: Vec<SearchHit> = action
            .and_then(|a| a.get("sources"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("url").and_then(Value::as_str))
            .map(|url| SearchHit::new(url, "", ""))
            .collect();
        let text = if item.get("status").and_then(Value::as_str) == Some("failed") {
            search::model_text(query, Err(search::SearchErrorCode::Unavailable))
        } else if sources.is_empty() {
            format!(
                "The web search for {query:?} ran in an earlier turn; its results are not kept."
            )
        } else {
            search::model_text(query, Ok(&sources))
        };
        let mut msg = Message::new("tool", text);
        msg.tool_name = Some(search::FUNCTION.to_string());
        msg.tool_call_id = id;
        self.messages.push(msg);
    }

    pub(super) fn function_call_output(
        &mut self,
        p: &str,
        item: &Map<String, Value>,
    ) -> Result<(), ApiError> {
        let call_id = item.get("call_id").and_then(Value::as_str);
        let mut images = Vec::new();
        let content = match item.get("output") {
            Some(Value::String(s)) => s.clone(),
            v @ (None | Some(Value::Null | Value::Array(_))) => {
                parse_content(v, &format!("{p}.output"), &mut images, UnknownParts::Drop)?
            }
            Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                return Err(Wording::Named.wrong_type(
                    &format!("{p}.output"),
                    "a string or an array of content parts",
                    v,
                ));
            }
            // An object is not what the API takes either, but its JSON is
            // still the tool's answer: kept as text.
            Some(v) => v.to_string(),
        };
        let mut msg = Message::new("tool", content);
        msg.images = images;
        msg.tool_name = call_id.and_then(|id| self.call_names.get(id).cloned());
        if msg.tool_name.is_none() {
            tracing::debug!(
                call_id,
                "function_call_output answers no earlier function_call"
            );
        }
        msg.tool_call_id = call_id.map(str::to_string);
        self.messages.push(msg);
        Ok(())
    }

    pub(super) fn reasoning(&mut self, item: &Map<String, Value>) {
        let Some(sealed) = item.get("encrypted_content").and_then(Value::as_str) else {
            tracing::debug!(
                "dropping a reasoning item without encrypted_content (summaries are not trusted)"
            );
            return;
        };
        match open_reasoning(self.key, sealed) {
            Some(text) => match &mut self.pending_thinking {
                Some(existing) => {
                    existing.push('\n');
                    existing.push_str(&text);
                }
                None => self.pending_thinking = Some(text),
            },
            None => {
                tracing::debug!("dropping a reasoning item whose encrypted_content is not ours")
            }
        }
    }
}

/// `encrypted_content` for our own thinking text.
pub(crate) fn seal_reasoning(key: &Key, text: &str) -> String {
    signing::seal(key, REASONING_PURPOSE, text)
}

/// The thinking text inside an `encrypted_content`, if we made it.
pub(crate) fn open_reasoning(key: &Key, sealed: &str) -> Option<String> {
    signing::open(key, REASONING_PURPOSE, sealed)
}

/// A call item's `call_id` (or, from older clients, its `id`).
fn call_id_of(item: &Map<String, Value>) -> Option<String> {
    item.get("call_id")
        .or_else(|| item.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}
