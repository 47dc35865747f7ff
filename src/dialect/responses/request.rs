//! The request: what a Responses request asks for, the conversation it
//! continues (`previous_response_id`, kept items), and the echo of it the
//! answer carries.

use super::*;

/// What keeping an answered response needs.
pub(crate) struct Keep {
    pub(super) store: Arc<ResponseStore>,
    pub(super) owner: Owner,
    /// Every input item of the conversation so far, rendered and
    /// comma-separated: the kept chain, then this request's input.
    pub(super) input: Vec<u8>,
    pub(super) timer: Option<Arc<dyn Timer>>,
    /// The conversation's first response: its key on a pool.
    pub(super) root: String,
    /// The largest answer a non-streaming client is given.
    pub(super) collect_limit: usize,
}

/// A parsed client request.
pub(crate) struct Parsed {
    pub(crate) native: ChatRequest,
    /// The model name the client asked for (responses report it).
    pub(crate) client_model: String,
    /// Request fields every `response` object echoes, rendered as
    /// `,"key":value` pairs.
    pub(crate) echo: Vec<u8>,
    /// `include` asked for `reasoning.encrypted_content`.
    pub(crate) include_encrypted: bool,
    /// `reasoning.summary` asked for a summary of the reasoning.
    pub(crate) summary_requested: bool,
    /// Flat tool name offered to the model → (namespace, member name).
    pub(crate) namespaced: HashMap<String, (String, String)>,
    /// The request offers the `web_search` tool, which the layer runs.
    pub(crate) search: Option<SearchTool>,
    /// `include` asked for `web_search_call.action.sources`.
    pub(crate) include_sources: bool,
    /// `tools` has a `tool_search` the client runs: the model's calls of
    /// [`TOOL_SEARCH`] are `tool_search_call` items.
    pub(crate) tool_search: bool,
    /// Flat names of the custom (freeform) tools offered: their calls are
    /// `custom_tool_call` items.
    pub(crate) custom: HashSet<String>,
    /// Keeps the answered response for `previous_response_id`.
    pub(crate) keep: Option<Keep>,
    /// The response's id.
    pub(crate) id: String,
    /// A kept conversation's key: the id of its first response.
    pub(crate) conversation: Option<String>,
}

/// Parses a Responses request body into a native request.
#[cfg(test)]
pub(crate) fn parse_request(config: &Config, body: &[u8]) -> Result<Parsed, ApiError> {
    parse_request_for(config, &Shared::default(), body, None)
}

/// `parse_request` for a client (`owner`), whose kept responses (in
/// `shared`) a `previous_response_id` may continue.
pub(crate) fn parse_request_for(
    config: &Config,
    shared: &Shared,
    body: &[u8],
    owner: Option<Owner>,
) -> Result<Parsed, ApiError> {
    let root = json_object(body)?;
    let client_model = model_name(&root, Wording::Named)?;
    let model = config.resolve_model(&client_model).to_string();

    refuse_stateful(&root)?;
    let state = State::read(config, &shared.responses, &root, owner)?;
    let input = state.chain.as_ref().or(root.get("input"));

    let stream = stream(&root, Wording::Named)?;

    let mut native = ChatRequest::new(model, stream);
    let (options, keep_alive) = Sampling::RESPONSES.read(&root)?;
    native.options = options;
    native.keep_alive = keep_alive;
    native.think = think(&root, ThinkFields::Responses)?;
    native.format =
        FormatField::RESPONSES.read(get(&root, "text").and_then(|t| t.get("format")))?;

    let entries = tool_entries(get(&root, "tools"), input)?;
    let Tools {
        native: mut tools,
        mut namespaced,
        mut custom,
        client_search: tool_search,
    } = parse_tools(&entries)?;
    let tool_choice_none =
        matches!(get(&root, "tool_choice"), Some(Value::String(s)) if s == "none");
    let mut search = None;
    if !tool_choice_none {
        search = web_search_tool(config, &root, &entries, &mut tools)?;
    }
    if !tools.is_empty() && !tool_choice_none {
        native.tools = Some(tools);
    }

    let include_encrypted = parse_include(&root)?;
    let summary_requested = get(&root, "reasoning")
        .and_then(|r| r.get("summary"))
        .is_some_and(|s| !s.is_null() && s != "none");

    let instructions = expect_str(&root, "instructions", Wording::Named)?;
    let (messages, loaded) = parse_input(&config.thinking_key, instructions, input)?;
    let keep = state.keep(config, &shared.responses, owner, input);
    native.messages = messages;
    if !tool_choice_none {
        loaded.offer(&mut native.tools, &mut namespaced, &mut custom);
    }

    Ok(Parsed {
        echo: render_echo(&root, state.store),
        native,
        client_model,
        include_encrypted,
        summary_requested,
        namespaced,
        search,
        include_sources: includes(&root, "web_search_call.action.sources"),
        tool_search,
        custom,
        // A pool keeps a kept conversation on one host by its first response.
        conversation: keep.is_some().then_some(state.conversation),
        keep,
        id: state.id,
    })
}

/// What a request says of conversation state.
pub(super) struct State {
    /// Keep the answer (`store`, true unless said otherwise).
    pub(super) store: bool,
    /// The new response's id.
    pub(super) id: String,
    /// A continuation: the kept conversation's items, then the new input
    /// (the instructions and options are this request's, as in OpenAI's
    /// API).
    pub(super) chain: Option<Value>,
    /// The id of the conversation's first response.
    pub(super) conversation: String,
}

impl State {
    pub(super) fn read(
        config: &Config,
        store: &ResponseStore,
        root: &Map<String, Value>,
        owner: Option<Owner>,
    ) -> Result<Self, ApiError> {
        let previous = previous_items(config, store, root, owner)?;
        let store = match get(root, "store") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(Wording::Named.wrong_type("store", "a boolean", v)),
        };
        let id = random_id("resp_", 32, false);
        let (chain, conversation) = match previous {
            Some((mut items, first)) => {
                items.extend(input_items(root.get("input")));
                (Some(Value::Array(items)), first)
            }
            None => (None, id.clone()),
        };
        Ok(State {
            store,
            id,
            chain,
            conversation,
        })
    }

    /// What keeping the answer needs, unless it is not to be kept.
    pub(super) fn keep(
        &self,
        config: &Config,
        store: &Arc<ResponseStore>,
        owner: Option<Owner>,
        input: Option<&Value>,
    ) -> Option<Keep> {
        (self.store && store.enabled()).then(|| Keep {
            store: store.clone(),
            owner: owner.unwrap_or_else(|| Owner::of(&http::HeaderMap::new())),
            input: match &self.chain {
                Some(Value::Array(items)) => render_items(items),
                _ => render_items(&input_items(input)),
            },
            timer: config.timing.timer.clone(),
            root: self.conversation.clone(),
            collect_limit: config.max_answer_bytes,
        })
    }
}

/// The input items of `previous_response_id`'s conversation (for its
/// `owner`) and the id of its first response, or a 404 when none is kept;
/// `None` without one.
pub(super) fn previous_items(
    config: &Config,
    store: &ResponseStore,
    root: &Map<String, Value>,
    owner: Option<Owner>,
) -> Result<Option<(Vec<Value>, String)>, ApiError> {
    let Some(id) = get(root, "previous_response_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return match get(root, "previous_response_id") {
            None | Some(Value::String(_)) => Ok(None),
            Some(v) => Err(Wording::Named.wrong_type("previous_response_id", "a string", v)),
        };
    };
    if !store.enabled() {
        return Err(ApiError::invalid(
            "previous_response_id",
            "previous_response_id needs the proxy to keep responses, and it keeps none (its response store has no room); send the whole conversation in `input`",
        ));
    }
    let owner = owner.unwrap_or_else(|| Owner::of(&http::HeaderMap::new()));
    let not_found = || {
        let mut e = ApiError::new(
            http::StatusCode::NOT_FOUND,
            format!("Previous response with id '{id}' not found."),
        )
        .with_code("previous_response_not_found");
        e.param = Some("previous_response_id".into());
        e
    };
    let kept = store.get(id, owner, config.now()).ok_or_else(not_found)?;
    let mut items: Vec<Value> = serde_json::from_slice(&kept.items).map_err(|_| not_found())?;
    for item in &mut items {
        seal_kept_reasoning(&config.thinking_key, item);
    }
    Ok(Some((items, kept.root.clone())))
}

/// A reasoning item the proxy kept is the model's own (the store holds only
/// what the proxy wrote): its summary is sealed like reasoning a client
/// asked for with `include`, so the continuation gives it back to the model.
pub(super) fn seal_kept_reasoning(key: &Key, item: &mut Value) {
    if item.get("type").and_then(Value::as_str) != Some("reasoning")
        || item.get("encrypted_content").is_some_and(|e| !e.is_null())
    {
        return;
    }
    let text: String = item
        .get("summary")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    if !text.is_empty() {
        item["encrypted_content"] = Value::from(seal_reasoning(key, &text));
    }
}

/// `input` as items: a string is one user message.
pub(super) fn input_items(input: Option<&Value>) -> Vec<Value> {
    match input {
        Some(Value::String(s)) => vec![json!({
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": s}],
        })],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// Items rendered as JSON, comma-separated.
pub(super) fn render_items(items: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        if !out.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(item.to_string().as_bytes());
    }
    out
}

/// Whether `include` lists `what` (its shape is checked by [`parse_include`]).
pub(super) fn includes(root: &Map<String, Value>, what: &str) -> bool {
    get(root, "include")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(what)))
}

/// The `web_search` (`web_search_preview`, `web_search_2025_08_26`) tool:
/// the function the layer runs is offered (added to `tools`), with
/// `filters.allowed_domains`, `user_location` and the request's
/// `max_tool_calls` as its bounds. `None` without such a tool (in `tools`
/// or an `additional_tools` item, see [`tool_entries`]), or when the layer's
/// search is off.
pub(super) fn web_search_tool(
    config: &Config,
    root: &Map<String, Value>,
    entries: &[(String, &Value)],
    tools: &mut Vec<Value>,
) -> Result<Option<SearchTool>, ApiError> {
    let Some((param, tool)) = entries.iter().find(|(_, t)| {
        t.get("type")
            .and_then(Value::as_str)
            .is_some_and(|k| k.starts_with("web_search"))
    }) else {
        return Ok(None);
    };
    if !config.web_search.is_enabled() {
        tracing::debug!("dropping the web_search tool: web search is off");
        return Ok(None);
    }
    if tools.iter().any(|t| {
        t.get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            == Some(search::FUNCTION)
    }) {
        return Err(ApiError::invalid(
            param.clone(),
            "a function named \"web_search\" clashes with the web_search tool this proxy runs: rename it",
        ));
    }
    let allowed_domains = match tool.get("filters").and_then(|f| f.get("allowed_domains")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|d| {
                d.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::invalid(
                        format!("{param}.filters.allowed_domains"),
                        "must be an array of strings",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::invalid(
                format!("{param}.filters.allowed_domains"),
                "must be an array of strings",
            ))
        }
    };
    let max_uses = get(root, "max_tool_calls")
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let location = tool.get("user_location").map(|l| {
        ["city", "region", "country"]
            .iter()
            .filter_map(|k| l.get(*k).and_then(Value::as_str))
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    });
    tools.push(search::function(
        location.as_deref().filter(|l| !l.is_empty()),
    ));
    Ok(Some(SearchTool {
        max_uses,
        allowed_domains,
        blocked_domains: Vec::new(),
    }))
}

/// `include`, an array of strings: whether it asks for
/// `reasoning.encrypted_content` (other values are ignored).
pub(super) fn parse_include(root: &Map<String, Value>) -> Result<bool, ApiError> {
    let include = match get(root, "include") {
        None => return Ok(false),
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(Wording::Named.wrong_type("include", "an array of strings", v));
        }
    };
    let mut encrypted = false;
    for (i, v) in include.iter().enumerate() {
        match v.as_str() {
            Some(s) => encrypted |= s == "reasoning.encrypted_content",
            None => {
                return Err(Wording::Named.wrong_type(&format!("include[{i}]"), "a string", v));
            }
        }
    }
    Ok(encrypted)
}

/// Conversations and background responses need state the proxy does not
/// keep (it keeps answered responses only): refuse them.
pub(super) fn refuse_stateful(root: &Map<String, Value>) -> Result<(), ApiError> {
    if get(root, "conversation").is_some_and(|v| v.as_str() != Some("")) {
        return Err(ApiError::invalid(
            "conversation",
            "conversation is not supported: this proxy keeps no conversations; send the whole conversation in `input`, or continue a response with previous_response_id",
        ));
    }
    if get(root, "background") == Some(&Value::Bool(true)) {
        return Err(ApiError::invalid(
            "background",
            "background responses are not supported: this proxy cannot run them unattended; send the request without background",
        ));
    }
    Ok(())
}

/// Tools that `tool_search_output` items loaded: offered to the model with
/// the request's own (a name already offered is not offered twice).
#[derive(Default)]
pub(super) struct Loaded {
    pub(super) functions: Vec<Function>,
}

impl Loaded {
    pub(super) fn offer(
        self,
        tools: &mut Option<Vec<Value>>,
        namespaced: &mut HashMap<String, (String, String)>,
        custom: &mut HashSet<String>,
    ) {
        if self.functions.is_empty() {
            return;
        }
        let tools = tools.get_or_insert_with(Vec::new);
        let mut names: HashSet<String> = tools
            .iter()
            .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        for f in self.functions {
            if !names.insert(f.flat.clone()) {
                continue;
            }
            if f.custom {
                custom.insert(f.flat.clone());
            }
            if let Some(member) = f.member {
                namespaced.insert(f.flat, member);
            }
            tools.push(f.native);
        }
    }
}

/// Request fields echoed in every `response` object.
pub(super) fn render_echo(root: &Map<String, Value>, store: bool) -> Vec<u8> {
    let pick = |key: &str, ok: fn(&Value) -> bool, default: Value| -> Value {
        get(root, key).filter(|v| ok(v)).cloned().unwrap_or(default)
    };
    let fields: [(&str, Value); 13] = [
        (
            "instructions",
            pick("instructions", Value::is_string, Value::Null),
        ),
        (
            "max_output_tokens",
            pick("max_output_tokens", Value::is_number, Value::Null),
        ),
        (
            "temperature",
            pick("temperature", Value::is_number, Value::Null),
        ),
        ("top_p", pick("top_p", Value::is_number, Value::Null)),
        ("tools", pick("tools", Value::is_array, json!([]))),
        (
            "tool_choice",
            pick(
                "tool_choice",
                |v| v.is_string() || v.is_object(),
                Value::from("auto"),
            ),
        ),
        (
            "parallel_tool_calls",
            pick("parallel_tool_calls", Value::is_boolean, Value::Bool(true)),
        ),
        (
            "reasoning",
            pick(
                "reasoning",
                Value::is_object,
                json!({"effort": null, "summary": null}),
            ),
        ),
        (
            "text",
            pick(
                "text",
                Value::is_object,
                json!({"format": {"type": "text"}}),
            ),
        ),
        (
            "truncation",
            pick("truncation", Value::is_string, Value::from("disabled")),
        ),
        ("metadata", pick("metadata", Value::is_object, json!({}))),
        (
            "previous_response_id",
            pick("previous_response_id", Value::is_string, Value::Null),
        ),
        ("store", Value::Bool(store)),
    ];
    let mut out = Vec::with_capacity(256);
    for (k, v) in fields {
        out.push(b',');
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(v.to_string().as_bytes());
    }
    out
}
