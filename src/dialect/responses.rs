//! OpenAI Responses: `POST /v1/responses`.
//!
//! An answered response is kept (unless `store: false`) in the layer's
//! bounded store, for its owner (a digest of the client's credential):
//! `previous_response_id` continues it, `GET`/`DELETE /v1/responses/{id}`
//! read and forget it; `conversation` and `background` are a 400. Requests
//! become native `/api/chat` requests; Ollama's NDJSON becomes Responses server-sent events
//! (`response.created` … `response.completed`), or one `response` object when
//! the client did not ask to stream.
//!
//! Decisions worth knowing:
//!
//! * **Reasoning round trip.** When the client asks for
//!   `include: ["reasoning.encrypted_content"]`, reasoning items carry
//!   `encrypted_content = "v1.<base64 of the thinking text>.<hex HMAC>"`, the
//!   HMAC made with the layer's `thinking_key` for the purpose
//!   `responses-reasoning`. It is signed, not encrypted: the summary already
//!   shows the same text. A reasoning item sent back becomes the `thinking`
//!   of the next assistant message only when that signature verifies; a
//!   foreign or tampered `encrypted_content`, and summary text on its own,
//!   are dropped (debug log), so a client cannot put words in the model's
//!   mouth as its own earlier reasoning.
//! * **Web search.** A `web_search` (`web_search_preview`, …) tool is
//!   offered to the model as the `web_search` function the layer runs (see
//!   [`crate::search`] and [`crate::agent`]). Each call is a `web_search_call`
//!   output item (`ws_…`, `action: {"type":"search","query":…}`, `sources`
//!   when `include` asks for `web_search_call.action.sources`) with the
//!   `response.web_search_call.in_progress`, `.searching` and `.completed`
//!   events; a search that failed is a `failed` item. `max_tool_calls` bounds
//!   the searches, `filters.allowed_domains` their hits, `user_location`
//!   goes to the model. A `web_search_call` input item becomes the call and a
//!   tool message naming its sources (the page text is not in the item).
//! * **Namespaces.** Members of a `namespace` tool group are offered to the
//!   model as `<namespace>__<name>` (Codex's own flat spelling: trailing `_`
//!   of the namespace and leading `_` of the name trimmed). A call of such a
//!   name comes back as a `function_call` item with `name` and `namespace`
//!   split again, and `function_call` items sent back with a `namespace` are
//!   flattened the same way.
//! * **Tool search** (Codex's deferred MCP tools). A `tool_search` tool with
//!   `execution: "client"` is offered as the function `tool_search` with its
//!   own description and parameters; the model's call of it comes back as a
//!   `tool_search_call` item (`execution: "client"`, `arguments` an object;
//!   `output_item.added` and `.done`, no other events). A
//!   `tool_search_call` sent back is that call again; a `tool_search_output`
//!   is its result, one line per tool it loaded (`Tool "NAME" is now
//!   available: <the first line of its description>`), and its tools are
//!   offered to the model from then on (namespaces flattened as above),
//!   which Ollama's own layer does not do (ollama/ollama#18306). Functions
//!   with `defer_loading: true` (or in a namespace with it) wait for such an
//!   output while the client runs the search; a hosted `tool_search`
//!   (`execution` other than `client`) cannot run here and is dropped, and
//!   then, as without any search, deferred functions are offered at once.
//! * **Custom (freeform) tools.** A `custom` tool (Codex's `apply_patch`
//!   with its lark grammar, its code-mode `exec`; at the top level, in a
//!   `namespace`, or loaded by a tool search) is offered as a function of one
//!   string, `input`, described by the tool's own description, then how to
//!   call it and the format its text must have (a grammar's definition is
//!   quoted whole: Ollama cannot hold the model to it). The model's call
//!   comes back as a `custom_tool_call` item (`ctc_…`, `name` and
//!   `namespace` split as above, `input` the text: the `input` argument, else
//!   the one value the model sent, bare text included) with
//!   `response.custom_tool_call_input.delta` (the whole text at once) and
//!   `.done`. A `custom_tool_call` sent back is the call `{"input": …}`
//!   again, and a `custom_tool_call_output` (a string or content parts) its
//!   result, as for functions. Ollama's own layer never emits
//!   `custom_tool_call` (ollama/ollama#17673).
//! * **`additional_tools` input items** (Codex sends its tools that way, and
//!   no top-level `tools`, for the models it drives with
//!   `use_responses_lite`, such as `gpt-5.6-*`; Codex Desktop likewise):
//!   their tools are offered as if they were in `tools`, after those (a
//!   kept conversation's items too, on a continuation).
//! * **Dropped, never a 400:** tool kinds Ollama cannot run (`file_search`,
//!   `local_shell`, `mcp`, a hosted `tool_search`, …; `web_search` too when
//!   the layer's search is off), input items the API documents other than
//!   messages, function, custom and tool-search calls, their outputs,
//!   reasoning and web searches (`item_reference`, `local_shell_call`,
//!   `compaction`, …, listed in [`DROPPED_ITEM_TYPES`]), unknown content
//!   parts, and every request field the dialect does not use. An input item
//!   of a `type` the API does not have is a 400 naming `input[i].type`, as
//!   from OpenAI.

use super::native::{ChatRequest, Message, ToolCall as NativeToolCall, ToolFunction};
use super::openai::reply::total_tokens;
use super::openai::request::{think, FormatField, Sampling, ThinkFields};
use super::params::{
    as_tool, expect_str, function_tool, get, json_object, model_name, optional_array,
    parse_arguments, parse_content, stream, tool_loaded_text, type_name, UnknownParts, Wording,
};
use super::{openai, ChatCall, Upstream};
use crate::config::Config;
use crate::error::ApiError;
use crate::json::{write_str, write_u64};
use crate::ollama::{Done, Encoder, Event, ServerCall, ServerResult};
use crate::search::{self, SearchHit, SearchTool};
use crate::signing::{self, Key};
use crate::store::{Kept, Owner, ResponseStore};
use crate::timer::Timer;
use crate::util::{random_id, unix_now};
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The Responses dialect.
pub(crate) struct Responses;

dialect!(
    Responses,
    "responses",
    prepare_responses,
    openai::error_body
);

/// [`Dialect::prepare`](super::Dialect::prepare) for [`Responses`].
fn prepare_responses(config: &Config, parts: &Parts, body: &[u8]) -> Result<Upstream, ApiError> {
    let owner = parts.extensions.get::<Owner>().copied();
    let parsed = parse_request_for(config, body, owner)?;
    let asked = parsed.include_encrypted || parsed.summary_requested;
    let call = ChatCall::searching(config, parsed.native, "responses", parsed.search)?
        .asked_for_thinking(asked);
    let signer = parsed.include_encrypted.then_some(config.thinking_key);
    let mut encoder = ResponseEncoder::new(
        &parsed.client_model,
        &parsed.echo,
        call.stream,
        signer,
        parsed.namespaced,
    )
    .with_tool_search(parsed.tool_search)
    .with_custom(parsed.custom);
    encoder.sources = parsed.include_sources;
    encoder.keep = parsed.keep;
    encoder.set_id(parsed.id);
    let mut up = call.upstream(encoder).requested_as(&parsed.client_model);
    up.conversation = parsed.conversation;
    Ok(up)
}

/// `GET /v1/responses/{id}`: a kept response.
pub(crate) struct RetrieveResponse;

dialect!(
    RetrieveResponse,
    "responses.retrieve",
    prepare_retrieve,
    openai::error_body
);

/// `DELETE /v1/responses/{id}`: forgets a kept response.
pub(crate) struct DeleteResponse;

dialect!(
    DeleteResponse,
    "responses.delete",
    prepare_delete,
    openai::error_body
);

/// The id in `/v1/responses/{id}`, and who asks.
fn kept_id(parts: &Parts) -> (&str, Owner) {
    let id = parts
        .uri
        .path()
        .trim_end_matches('/')
        .rsplit_once("/v1/responses/")
        .map_or("", |(_, id)| id);
    let owner = parts
        .extensions
        .get::<Owner>()
        .copied()
        .unwrap_or_else(|| Owner::of(&http::HeaderMap::new()));
    (id, owner)
}

fn response_not_found(id: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::NOT_FOUND,
        format!("No response with id '{id}' is kept (it may have expired, been deleted, been sent with store: false, or belong to another key)."),
    )
    .with_code("response_not_found")
}

/// [`Dialect::prepare`](super::Dialect::prepare) for [`RetrieveResponse`].
fn prepare_retrieve(config: &Config, parts: &Parts, _body: &[u8]) -> Result<Upstream, ApiError> {
    let streamed = parts.uri.query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.eq_ignore_ascii_case("stream=true"))
    });
    if streamed {
        return Err(ApiError::invalid(
            "stream",
            "a kept response is returned whole: retrieve it without stream=true",
        ));
    }
    let (id, owner) = kept_id(parts);
    let kept = config
        .response_store
        .get(id, owner, config.now())
        .ok_or_else(|| response_not_found(id))?;
    Ok(Upstream::local(kept.response.clone()))
}

/// [`Dialect::prepare`](super::Dialect::prepare) for [`DeleteResponse`].
fn prepare_delete(config: &Config, parts: &Parts, _body: &[u8]) -> Result<Upstream, ApiError> {
    let (id, owner) = kept_id(parts);
    if !config.response_store.remove(id, owner, config.now()) {
        return Err(response_not_found(id));
    }
    let body = json!({"id": id, "object": "response", "deleted": true}).to_string();
    Ok(Upstream::local(body.into()))
}

/// The purpose string reasoning signatures are bound to.
const REASONING_PURPOSE: &str = "responses-reasoning";

/// What keeping an answered response needs.
pub(crate) struct Keep {
    store: Arc<ResponseStore>,
    owner: Owner,
    /// Every input item of the conversation so far, rendered and
    /// comma-separated: the kept chain, then this request's input.
    input: Vec<u8>,
    timer: Option<Arc<dyn Timer>>,
    /// The conversation's first response: its key on a pool.
    root: String,
    /// The largest answer a non-streaming client is given.
    collect_limit: usize,
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
    parse_request_for(config, body, None)
}

/// [`parse_request`] for a client (`owner`), whose kept responses a
/// `previous_response_id` may continue.
pub(crate) fn parse_request_for(
    config: &Config,
    body: &[u8],
    owner: Option<Owner>,
) -> Result<Parsed, ApiError> {
    let root = json_object(body)?;
    let client_model = model_name(&root, Wording::Named)?;
    let model = config.resolve_model(&client_model).to_string();

    refuse_stateful(&root)?;
    let state = State::read(config, &root, owner)?;
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
    let keep = state.keep(config, owner, input);
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
struct State {
    /// Keep the answer (`store`, true unless said otherwise).
    store: bool,
    /// The new response's id.
    id: String,
    /// A continuation: the kept conversation's items, then the new input
    /// (the instructions and options are this request's, as in OpenAI's
    /// API).
    chain: Option<Value>,
    /// The id of the conversation's first response.
    conversation: String,
}

impl State {
    fn read(
        config: &Config,
        root: &Map<String, Value>,
        owner: Option<Owner>,
    ) -> Result<Self, ApiError> {
        let previous = previous_items(config, root, owner)?;
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
    fn keep(&self, config: &Config, owner: Option<Owner>, input: Option<&Value>) -> Option<Keep> {
        (self.store && config.response_store.enabled()).then(|| Keep {
            store: config.response_store.clone(),
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
fn previous_items(
    config: &Config,
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
    let store = &config.response_store;
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
fn seal_kept_reasoning(key: &Key, item: &mut Value) {
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
fn input_items(input: Option<&Value>) -> Vec<Value> {
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
fn render_items(items: &[Value]) -> Vec<u8> {
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
fn includes(root: &Map<String, Value>, what: &str) -> bool {
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
fn web_search_tool(
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
fn parse_include(root: &Map<String, Value>) -> Result<bool, ApiError> {
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
fn refuse_stateful(root: &Map<String, Value>) -> Result<(), ApiError> {
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

/// The name a call item (`kind`) at `p` was offered to the model under: its
/// `name`, flattened with its `namespace` when it has one.
fn call_name(item: &Map<String, Value>, p: &str, kind: &str) -> Result<String, ApiError> {
    let name = item
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(format!("{p}.name"), format!("a {kind} item needs a name"))
        })?;
    Ok(
        match item
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(ns) => flat_name(ns, name),
            None => name.to_string(),
        },
    )
}

/// The name a namespace member is offered to the model under.
pub(crate) fn flat_name(namespace: &str, name: &str) -> String {
    format!(
        "{}__{}",
        namespace.trim_end_matches('_'),
        name.trim_start_matches('_')
    )
}

/// One function tool (Responses' flat shape, or Chat's nested one) as a
/// native tool named `name`.
fn native_function(tool: &Value, name: &str, param: &str) -> Result<Value, ApiError> {
    let src = match tool.get("function") {
        Some(f @ Value::Object(_)) => f,
        _ => tool,
    };
    function_tool(
        name,
        src.get("description").cloned(),
        src.get("parameters").cloned(),
        |v| {
            ApiError::invalid(
                format!("{param}.parameters"),
                format!(
                    "function parameters must be a JSON Schema object, got {}",
                    type_name(v)
                ),
            )
        },
    )
}

fn function_name<'a>(tool: &'a Value, param: &str) -> Result<&'a str, ApiError> {
    tool.get("name")
        .or_else(|| tool.get("function").and_then(|f| f.get("name")))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{param}.name"), "a function tool needs a name"))
}

/// The name the model calls a client-run `tool_search` by (Codex's own name
/// for it).
pub(crate) const TOOL_SEARCH: &str = "tool_search";

/// The description of a client-run `tool_search` that has none.
const TOOL_SEARCH_DESCRIPTION: &str =
    "Searches for tools that are not loaded yet; the tools found can be called afterwards.";

/// One function a `function`, `custom` or `namespace` tool offers.
struct Function {
    /// The native tool, named `flat`.
    native: Value,
    /// The name the model sees (namespace members flattened).
    flat: String,
    /// (namespace, member name), for a namespace member.
    member: Option<(String, String)>,
    description: Option<String>,
    /// `defer_loading: true` on it or on its namespace.
    deferred: bool,
    /// A custom (freeform) tool: offered as a function of one string,
    /// `input` (see [`custom_function`]).
    custom: bool,
}

fn deferred(tool: &Value) -> bool {
    tool.get("defer_loading").and_then(Value::as_bool) == Some(true)
}

/// The functions of one `function`, `custom` or `namespace` tool at
/// `param`, appended to `out`; other kinds add nothing.
fn functions(tool: &Value, param: &str, out: &mut Vec<Function>) -> Result<(), ApiError> {
    match tool
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("function")
    {
        kind @ ("function" | "custom") => {
            let name = function_name(tool, param)?;
            let custom = kind == "custom";
            out.push(Function {
                native: if custom {
                    custom_function(tool, name)
                } else {
                    native_function(tool, name, param)?
                },
                flat: name.to_string(),
                member: None,
                description: description(tool),
                deferred: deferred(tool),
                custom,
            });
        }
        "namespace" => {
            let Some(ns) = tool
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            else {
                return Err(ApiError::invalid(
                    format!("{param}.name"),
                    "a namespace tool needs a name",
                ));
            };
            let members = tool.get("tools").and_then(Value::as_array);
            for (j, member) in members.into_iter().flatten().enumerate() {
                let mparam = format!("{param}.tools[{j}]");
                let kind = member
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("function");
                if kind != "function" && kind != "custom" {
                    tracing::debug!(
                        namespace = ns,
                        kind,
                        "dropping a namespace member Ollama cannot run"
                    );
                    continue;
                }
                let custom = kind == "custom";
                let name = function_name(member, &mparam)?;
                let flat = flat_name(ns, name);
                out.push(Function {
                    native: if custom {
                        custom_function(member, &flat)
                    } else {
                        native_function(member, &flat, &mparam)?
                    },
                    member: Some((ns.to_string(), name.to_string())),
                    flat,
                    description: description(member),
                    deferred: deferred(tool) || deferred(member),
                    custom,
                });
            }
        }
        kind => tracing::debug!(kind, "dropping a tool kind Ollama cannot run"),
    }
    Ok(())
}

fn description(tool: &Value) -> Option<String> {
    tool.get("description")
        .or_else(|| tool.get("function").and_then(|f| f.get("description")))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The one argument a custom tool's function takes.
const CUSTOM_INPUT: &str = "input";

/// A custom (freeform) tool as the native function `name` of one string,
/// `input`. The model reads the tool's own description, then how to call
/// it and the format its text must have (a `grammar` format's definition,
/// quoted whole), so it writes that syntax inside the string.
fn custom_function(tool: &Value, name: &str) -> Value {
    let mut text = description(tool)
        .map(|d| d.trim_end().to_string())
        .unwrap_or_default();
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(
        "This tool takes free-form text, not JSON arguments. Call it with one argument, \
         `input`: a string holding the whole text, exactly as the tool reads it.",
    );
    let format = tool.get("format");
    let definition = format
        .filter(|f| f.get("type").and_then(Value::as_str) == Some("grammar"))
        .and_then(|f| f.get("definition"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if let (Some(format), Some(definition)) = (format, definition) {
        match format.get("syntax").and_then(Value::as_str) {
            Some("regex") => text.push_str("\nThe text must match this regular expression:\n"),
            Some(syntax) => {
                text.push_str("\nThe text must follow this ");
                text.push_str(syntax);
                text.push_str(" grammar:\n");
            }
            None => text.push_str("\nThe text must follow this grammar:\n"),
        }
        text.push_str(definition);
    }
    as_tool(json!({
        "name": name,
        "description": text,
        "parameters": {
            "type": "object",
            "properties": {CUSTOM_INPUT: {"type": "string", "description": "The tool's whole input text."}},
            "required": [CUSTOM_INPUT],
        },
    }))
}

/// The tools a request offers, each with the param that names it: `tools`,
/// then the `tools` of each `additional_tools` item of the conversation's
/// `input` (a continuation's included; Codex sends its tools that way for
/// models it drives with `use_responses_lite`, and no top-level `tools`),
/// offered as if they were top-level.
fn tool_entries<'a>(
    tools: Option<&'a Value>,
    input: Option<&'a Value>,
) -> Result<Vec<(String, &'a Value)>, ApiError> {
    let mut entries: Vec<(String, &Value)> = optional_array(tools, "tools", Wording::Named)?
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("tools[{i}]"), t))
        .collect();
    let items = input.and_then(Value::as_array);
    for (i, item) in items.into_iter().flatten().enumerate() {
        if item.get("type").and_then(Value::as_str) != Some("additional_tools") {
            continue;
        }
        let param = format!("input[{i}].tools");
        let tools = optional_array(item.get("tools"), &param, Wording::Named)?;
        entries.extend(
            tools
                .iter()
                .enumerate()
                .map(|(j, t)| (format!("{param}[{j}]"), t)),
        );
    }
    Ok(entries)
}

/// What [`parse_tools`] makes of the tools offered.
struct Tools {
    /// The native tools.
    native: Vec<Value>,
    /// Flat name → (namespace, member name).
    namespaced: HashMap<String, (String, String)>,
    /// Flat names of custom (freeform) tools.
    custom: HashSet<String>,
    /// A client-run `tool_search` is offered.
    client_search: bool,
}

/// The tools ([`tool_entries`]): function tools, custom tools (as functions
/// of one string, [`custom_function`]) and those inside `namespace` groups
/// are mapped; a `tool_search` the client runs (`execution: "client"`)
/// becomes the function [`TOOL_SEARCH`] with its own description and
/// parameters; every other kind is dropped. Functions with `defer_loading:
/// true` wait for a `tool_search_output` to load them when the client runs
/// the search; without one (a hosted `tool_search` cannot run here, or there
/// is none) nothing could load them, so they are offered at once.
fn parse_tools(entries: &[(String, &Value)]) -> Result<Tools, ApiError> {
    let mut found = Vec::new();
    let mut client_search = false;
    for (param, tool) in entries {
        let (param, tool) = (param.as_str(), *tool);
        if tool.get("type").and_then(Value::as_str) != Some("tool_search") {
            functions(tool, param, &mut found)?;
            continue;
        }
        if tool.get("execution").and_then(Value::as_str) != Some("client") {
            tracing::debug!("dropping a hosted tool_search Ollama cannot run");
            continue;
        }
        if client_search {
            continue;
        }
        client_search = true;
        let parameters = tool
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}));
        let native = function_tool(
            TOOL_SEARCH,
            Some(
                tool.get("description")
                    .cloned()
                    .unwrap_or_else(|| Value::from(TOOL_SEARCH_DESCRIPTION)),
            ),
            Some(parameters),
            |v| {
                Wording::Named.wrong_type(&format!("{param}.parameters"), "a JSON Schema object", v)
            },
        )?;
        found.push(Function {
            native,
            flat: TOOL_SEARCH.to_string(),
            member: None,
            description: None,
            deferred: false,
            custom: false,
        });
    }
    let mut out = Vec::with_capacity(found.len());
    let mut namespaced = HashMap::new();
    let mut custom = HashSet::new();
    let mut waiting = 0;
    for f in found {
        if f.deferred && client_search {
            waiting += 1;
            continue;
        }
        if f.custom {
            custom.insert(f.flat.clone());
        }
        if let Some(member) = f.member {
            namespaced.insert(f.flat, member);
        }
        out.push(f.native);
    }
    if waiting > 0 {
        tracing::debug!(waiting, "deferred tools wait for a tool_search_output");
    }
    Ok(Tools {
        native: out,
        namespaced,
        custom,
        client_search,
    })
}

/// Tools that `tool_search_output` items loaded: offered to the model with
/// the request's own (a name already offered is not offered twice).
#[derive(Default)]
struct Loaded {
    functions: Vec<Function>,
}

impl Loaded {
    fn offer(
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
fn render_echo(root: &Map<String, Value>, store: bool) -> Vec<u8> {
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

/// Input item types the Responses API documents that Ollama has no place
/// for: dropped with a debug log, never a 400 (clients such as Codex send
/// back whatever the last answer held). Any type not here and not handled is
/// a 400, as from OpenAI: a new kind of item belongs in this list.
const DROPPED_ITEM_TYPES: &[&str] = &[
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
struct InputBuilder<'k> {
    key: &'k Key,
    messages: Vec<Message>,
    /// call_id → native function name, from earlier `function_call` items.
    call_names: HashMap<String, String>,
    /// Verified thinking waiting for the next assistant message.
    pending_thinking: Option<String>,
    /// The first item dropped (its index and type), to explain an input
    /// left with nothing to answer.
    first_dropped: Option<(usize, String)>,
    /// Tools `tool_search_output` items loaded.
    loaded: Loaded,
}

fn parse_input(
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
    fn item(&mut self, i: usize, item: &Value) -> Result<(), ApiError> {
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

    fn message(&mut self, p: &str, item: &Map<String, Value>) -> Result<(), ApiError> {
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

    fn function_call(&mut self, p: &str, item: &Map<String, Value>) -> Result<(), ApiError> {
        let name = call_name(item, p, "function_call")?;
        let arguments = parse_arguments(item.get("arguments"), &format!("{p}.arguments"))?;
        let call_id = item
            .get("call_id")
            .or_else(|| item.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        self.push_call(call_id, name, arguments);
        Ok(())
    }

    /// A `custom_tool_call`: the model's call of a custom tool, whose
    /// function takes its `input` text as the one argument
    /// [`CUSTOM_INPUT`] (see [`custom_function`]).
    fn custom_tool_call(&mut self, p: &str, item: &Map<String, Value>) -> Result<(), ApiError> {
        let name = call_name(item, p, "custom_tool_call")?;
        let input = match item.get("input") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            Some(v) => {
                return Err(Wording::Named.wrong_type(&format!("{p}.input"), "a string", v));
            }
        };
        let call_id = item
            .get("call_id")
            .or_else(|| item.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        self.push_call(call_id, name, json!({ CUSTOM_INPUT: input }));
        Ok(())
    }

    /// A `tool_search_call`: the model's call of [`TOOL_SEARCH`], its
    /// `arguments` an object (or a string encoding one).
    fn tool_search_call(&mut self, p: &str, item: &Map<String, Value>) -> Result<(), ApiError> {
        let arguments = parse_arguments(item.get("arguments"), &format!("{p}.arguments"))?;
        let call_id = item
            .get("call_id")
            .or_else(|| item.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        self.push_call(call_id, TOOL_SEARCH.to_string(), arguments);
        Ok(())
    }

    /// A `tool_search_output`: the tools it loaded become callable (see
    /// [`Loaded`]) and the model reads one line per tool
    /// ([`tool_loaded_text`]) as the search's result.
    fn tool_search_output(&mut self, p: &str, item: &Map<String, Value>) -> Result<(), ApiError> {
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
    fn push_call(&mut self, call_id: Option<String>, name: String, arguments: Value) {
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
    fn web_search_call(&mut self, item: &Map<String, Value>) {
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

    fn function_call_output(&mut self, p: &str, item: &Map<String, Value>) -> Result<(), ApiError> {
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

    fn reasoning(&mut self, item: &Map<String, Value>) {
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

/// An output item being streamed. `item_ref` is its
/// `,"item_id":…,"output_index":N`, rendered once for all its deltas.
enum Open {
    None,
    Reasoning {
        id: String,
        index: u64,
        item_ref: Vec<u8>,
        text: String,
    },
    Message {
        id: String,
        index: u64,
        item_ref: Vec<u8>,
        text: String,
    },
}

fn item_ref(id: &str, index: u64) -> Vec<u8> {
    let mut r = BytesMut::with_capacity(id.len() + 40);
    write_item_ref(&mut r, id, index);
    r.to_vec()
}

/// Turns decoded events into Responses events (or, when not streaming, one
/// `response` object at the end).
struct ResponseEncoder {
    stream: bool,
    /// `{"id":…,"object":"response","created_at":…,"model":…` plus the echoed
    /// request fields: every response object starts with it.
    prefix: Vec<u8>,
    seq: u64,
    started: bool,
    finished: bool,
    next_index: u64,
    open: Open,
    /// Finished output items, rendered, comma-separated.
    output: Vec<u8>,
    /// Signs reasoning when the client asked for `encrypted_content`.
    signer: Option<Key>,
    namespaced: HashMap<String, (String, String)>,
    call_ids: HashSet<String>,
    /// `web_search_call` items list their sources.
    sources: bool,
    /// The web search running: its item id and output index.
    searching: Option<(String, u64)>,
    /// Calls of [`TOOL_SEARCH`] are `tool_search_call` items.
    tool_search: bool,
    /// Flat names of custom tools: their calls are `custom_tool_call` items.
    custom: HashSet<String>,
    /// The response's id.
    id: String,
    /// Keeps the answered response (`store` not false).
    keep: Option<Keep>,
}

/// Writes `event: <ty>\ndata: {"type":"<ty>","sequence_number":N` — the
/// caller adds the other fields and [`end_event`].
fn begin_event(seq: &mut u64, out: &mut BytesMut, ty: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":\"");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"\",\"sequence_number\":");
    write_u64(out, *seq);
    *seq += 1;
}

fn end_event(out: &mut BytesMut) {
    out.extend_from_slice(b"}\n\n");
}

/// `,"item_id":…,"output_index":N`
fn write_item_ref(out: &mut BytesMut, id: &str, index: u64) {
    out.extend_from_slice(b",\"item_id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"output_index\":");
    write_u64(out, index);
}

fn write_output_text(out: &mut BytesMut, text: &str) {
    out.extend_from_slice(
        b"{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":",
    );
    write_str(out, text);
    out.extend_from_slice(b"}");
}

fn write_summary_text(out: &mut BytesMut, text: &str) {
    out.extend_from_slice(b"{\"type\":\"summary_text\",\"text\":");
    write_str(out, text);
    out.extend_from_slice(b"}");
}

/// A message item; `text` `None` renders the empty item of `output_item.added`.
fn write_message_item(out: &mut BytesMut, id: &str, status: &str, text: Option<&str>) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"type\":\"message\",\"status\":\"");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\",\"role\":\"assistant\",\"content\":[");
    if let Some(t) = text {
        write_output_text(out, t);
    }
    out.extend_from_slice(b"]}");
}

fn write_reasoning_item(out: &mut BytesMut, id: &str, text: Option<&str>, sealed: Option<&str>) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"type\":\"reasoning\",\"summary\":[");
    if let Some(t) = text {
        write_summary_text(out, t);
    }
    out.extend_from_slice(b"]");
    if let Some(s) = sealed {
        out.extend_from_slice(b",\"encrypted_content\":");
        write_str(out, s);
    }
    out.extend_from_slice(b"}");
}

#[allow(clippy::too_many_arguments)]
fn write_function_item(
    out: &mut BytesMut,
    id: &str,
    status: &str,
    call_id: &str,
    name: &str,
    namespace: Option<&str>,
    arguments: &str,
) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"type\":\"function_call\",\"status\":\"");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\",\"call_id\":");
    write_str(out, call_id);
    out.extend_from_slice(b",\"name\":");
    write_str(out, name);
    if let Some(ns) = namespace {
        out.extend_from_slice(b",\"namespace\":");
        write_str(out, ns);
    }
    out.extend_from_slice(b",\"arguments\":");
    write_str(out, arguments);
    out.extend_from_slice(b"}");
}

/// A `tool_search_call` item; `arguments` is the JSON text of an object.
fn write_tool_search_item(
    out: &mut BytesMut,
    id: &str,
    status: &str,
    call_id: &str,
    arguments: &str,
) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"type\":\"tool_search_call\",\"status\":\"");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\",\"execution\":\"client\",\"call_id\":");
    write_str(out, call_id);
    out.extend_from_slice(b",\"arguments\":");
    out.extend_from_slice(arguments.as_bytes());
    out.extend_from_slice(b"}");
}

fn write_usage(out: &mut BytesMut, done: &Done<'_>) {
    out.extend_from_slice(b"{\"input_tokens\":");
    write_u64(out, done.prompt_tokens);
    out.extend_from_slice(b",\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":");
    write_u64(out, done.completion_tokens);
    out.extend_from_slice(b",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":");
    write_u64(out, total_tokens(done));
    out.extend_from_slice(b"}");
}

/// How a response ended.
enum End<'a, 'd> {
    InProgress,
    Completed(&'a Done<'d>),
    Incomplete(&'a Done<'d>),
    Failed(&'a str),
}

impl ResponseEncoder {
    fn new(
        client_model: &str,
        echo: &[u8],
        stream: bool,
        signer: Option<Key>,
        namespaced: HashMap<String, (String, String)>,
    ) -> Self {
        let id = random_id("resp_", 32, false);
        let mut prefix = BytesMut::with_capacity(128 + echo.len());
        prefix.extend_from_slice(b"{\"id\":");
        write_str(&mut prefix, &id);
        prefix.extend_from_slice(b",\"object\":\"response\",\"created_at\":");
        write_u64(&mut prefix, unix_now());
        prefix.extend_from_slice(b",\"model\":");
        write_str(&mut prefix, client_model);
        prefix.extend_from_slice(echo);
        ResponseEncoder {
            stream,
            prefix: prefix.to_vec(),
            seq: 0,
            started: false,
            finished: false,
            next_index: 0,
            open: Open::None,
            output: Vec::new(),
            signer,
            namespaced,
            call_ids: HashSet::new(),
            sources: false,
            searching: None,
            tool_search: false,
            custom: HashSet::new(),
            id,
            keep: None,
        }
    }

    /// Keeps the answered response: the conversation's items and the
    /// response object. Only a completed or incomplete one comes here.
    /// Answers as response `id` (chosen while parsing, so a kept
    /// conversation can be named before the answer starts).
    fn set_id(&mut self, id: String) {
        let mut old = BytesMut::new();
        old.extend_from_slice(b"{\"id\":");
        write_str(&mut old, &self.id);
        let mut new = BytesMut::new();
        new.extend_from_slice(b"{\"id\":");
        write_str(&mut new, &id);
        if let Some(rest) = self.prefix.strip_prefix(&old[..]) {
            self.prefix = [&new[..], rest].concat();
            self.id = id;
        }
    }

    fn keep(&mut self, response: Bytes) {
        let Some(keep) = self.keep.take() else {
            return;
        };
        if !self.stream && response.len() > keep.collect_limit {
            // The client gets a 502 for a document this large: nothing to
            // continue.
            return;
        }
        let mut items = Vec::with_capacity(keep.input.len() + self.output.len() + 3);
        items.push(b'[');
        items.extend_from_slice(&keep.input);
        if !keep.input.is_empty() && !self.output.is_empty() {
            items.push(b',');
        }
        items.extend_from_slice(&self.output);
        items.push(b']');
        let now = keep
            .timer
            .as_ref()
            .map_or_else(std::time::Instant::now, |t| t.now());
        let kept = Kept {
            items: items.into(),
            response,
            root: keep.root,
        };
        keep.store.put(self.id.clone(), keep.owner, kept, now);
    }

    /// Renders the model's calls of [`TOOL_SEARCH`] as `tool_search_call`
    /// items (when the request offered a client-run `tool_search`).
    fn with_tool_search(mut self, on: bool) -> Self {
        self.tool_search = on;
        self
    }

    /// Renders the model's calls of these (flat) names as
    /// `custom_tool_call` items.
    fn with_custom(mut self, custom: HashSet<String>) -> Self {
        self.custom = custom;
        self
    }

    /// The whole `response` object; `extra` is an unfinished item to list
    /// after the finished ones.
    fn write_response(&self, out: &mut BytesMut, end: &End<'_, '_>, extra: Option<&[u8]>) {
        out.extend_from_slice(&self.prefix);
        let status = match end {
            End::InProgress => "in_progress",
            End::Completed(_) => "completed",
            End::Incomplete(_) => "incomplete",
            End::Failed(_) => "failed",
        };
        out.extend_from_slice(b",\"status\":\"");
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(b"\"");
        if let End::Completed(_) = end {
            out.extend_from_slice(b",\"completed_at\":");
            write_u64(out, unix_now());
        }
        out.extend_from_slice(b",\"error\":");
        match end {
            End::Failed(message) => {
                out.extend_from_slice(b"{\"code\":\"server_error\",\"message\":");
                write_str(out, message);
                out.extend_from_slice(b"}");
            }
            _ => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"incomplete_details\":");
        match end {
            End::Incomplete(_) => out.extend_from_slice(b"{\"reason\":\"max_output_tokens\"}"),
            _ => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"output\":[");
        if !matches!(end, End::InProgress) {
            out.extend_from_slice(&self.output);
            if let Some(item) = extra {
                if !self.output.is_empty() {
                    out.extend_from_slice(b",");
                }
                out.extend_from_slice(item);
            }
        }
        out.extend_from_slice(b"],\"usage\":");
        match end {
            End::Completed(done) | End::Incomplete(done) => write_usage(out, done),
            _ => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}");
    }

    /// `response.<kind>` with the whole response object.
    fn lifecycle(&mut self, out: &mut BytesMut, ty: &str, end: &End<'_, '_>, extra: Option<&[u8]>) {
        begin_event(&mut self.seq, out, ty);
        out.extend_from_slice(b",\"response\":");
        self.write_response(out, end, extra);
        end_event(out);
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.stream && !self.started {
            self.started = true;
            self.lifecycle(out, "response.created", &End::InProgress, None);
            self.lifecycle(out, "response.in_progress", &End::InProgress, None);
        }
    }

    fn push_output(&mut self, item: &[u8]) {
        if !self.output.is_empty() {
            self.output.push(b',');
        }
        self.output.extend_from_slice(item);
    }

    fn output_item_event(&mut self, out: &mut BytesMut, ty: &str, index: u64, item: &[u8]) {
        begin_event(&mut self.seq, out, ty);
        out.extend_from_slice(b",\"output_index\":");
        write_u64(out, index);
        out.extend_from_slice(b",\"item\":");
        out.extend_from_slice(item);
        end_event(out);
    }

    fn take_index(&mut self) -> u64 {
        let i = self.next_index;
        self.next_index += 1;
        i
    }

    fn open_reasoning(&mut self, out: &mut BytesMut) {
        let id = random_id("rs_", 32, false);
        let index = self.take_index();
        if self.stream {
            let mut item = BytesMut::new();
            write_reasoning_item(&mut item, &id, None, None);
            self.output_item_event(out, "response.output_item.added", index, &item);
            begin_event(&mut self.seq, out, "response.reasoning_summary_part.added");
            write_item_ref(out, &id, index);
            out.extend_from_slice(b",\"summary_index\":0,\"part\":");
            write_summary_text(out, "");
            end_event(out);
        }
        self.open = Open::Reasoning {
            item_ref: item_ref(&id, index),
            id,
            index,
            text: String::new(),
        };
    }

    fn open_message(&mut self, out: &mut BytesMut) {
        let id = random_id("msg_", 32, false);
        let index = self.take_index();
        if self.stream {
            let mut item = BytesMut::new();
            write_message_item(&mut item, &id, "in_progress", None);
            self.output_item_event(out, "response.output_item.added", index, &item);
            begin_event(&mut self.seq, out, "response.content_part.added");
            write_item_ref(out, &id, index);
            out.extend_from_slice(b",\"content_index\":0,\"part\":");
            write_output_text(out, "");
            end_event(out);
        }
        self.open = Open::Message {
            item_ref: item_ref(&id, index),
            id,
            index,
            text: String::new(),
        };
    }

    /// Finishes the open item (its `.done` events) and files it in `output`.
    fn close_open(&mut self, out: &mut BytesMut, status: &str) {
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => {}
            Open::Reasoning {
                id, index, text, ..
            } => {
                let sealed = self.signer.as_ref().map(|k| seal_reasoning(k, &text));
                if self.stream {
                    begin_event(&mut self.seq, out, "response.reasoning_summary_text.done");
                    write_item_ref(out, &id, index);
                    out.extend_from_slice(b",\"summary_index\":0,\"text\":");
                    write_str(out, &text);
                    end_event(out);
                    begin_event(&mut self.seq, out, "response.reasoning_summary_part.done");
                    write_item_ref(out, &id, index);
                    out.extend_from_slice(b",\"summary_index\":0,\"part\":");
                    write_summary_text(out, &text);
                    end_event(out);
                }
                let mut item = BytesMut::new();
                write_reasoning_item(&mut item, &id, Some(&text), sealed.as_deref());
                if self.stream {
                    self.output_item_event(out, "response.output_item.done", index, &item);
                }
                self.push_output(&item);
            }
            Open::Message {
                id, index, text, ..
            } => {
                if self.stream {
                    begin_event(&mut self.seq, out, "response.output_text.done");
                    write_item_ref(out, &id, index);
                    out.extend_from_slice(b",\"content_index\":0,\"logprobs\":[],\"text\":");
                    write_str(out, &text);
                    end_event(out);
                    begin_event(&mut self.seq, out, "response.content_part.done");
                    write_item_ref(out, &id, index);
                    out.extend_from_slice(b",\"content_index\":0,\"part\":");
                    write_output_text(out, &text);
                    end_event(out);
                }
                let mut item = BytesMut::new();
                write_message_item(&mut item, &id, status, Some(&text));
                if self.stream {
                    self.output_item_event(out, "response.output_item.done", index, &item);
                }
                self.push_output(&item);
            }
        }
    }

    /// The open item as it stands, marked incomplete, without `.done` events
    /// (for `response.failed`).
    fn abandon_open(&mut self) -> Option<Vec<u8>> {
        let mut item = BytesMut::new();
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return None,
            Open::Reasoning { id, text, .. } => {
                write_reasoning_item(&mut item, &id, Some(&text), None);
            }
            Open::Message { id, text, .. } => {
                write_message_item(&mut item, &id, "incomplete", Some(&text));
            }
        }
        Some(item.to_vec())
    }

    fn thinking(&mut self, t: &str, out: &mut BytesMut) {
        if !matches!(self.open, Open::Reasoning { .. }) {
            self.close_open(out, "completed");
            self.open_reasoning(out);
        }
        if let Open::Reasoning { item_ref, text, .. } = &mut self.open {
            text.push_str(t);
            if self.stream {
                begin_event(&mut self.seq, out, "response.reasoning_summary_text.delta");
                out.extend_from_slice(item_ref);
                out.extend_from_slice(b",\"summary_index\":0,\"delta\":");
                write_str(out, t);
                end_event(out);
            }
        }
    }

    fn text(&mut self, t: &str, out: &mut BytesMut) {
        if !matches!(self.open, Open::Message { .. }) {
            self.close_open(out, "completed");
            self.open_message(out);
        }
        if let Open::Message { item_ref, text, .. } = &mut self.open {
            text.push_str(t);
            if self.stream {
                begin_event(&mut self.seq, out, "response.output_text.delta");
                out.extend_from_slice(item_ref);
                out.extend_from_slice(b",\"content_index\":0,\"delta\":");
                write_str(out, t);
                out.extend_from_slice(b",\"logprobs\":[]");
                end_event(out);
            }
        }
    }

    /// A unique `call_id`: the SDK tells calls apart by it, so Ollama's is
    /// kept unless it repeats.
    fn call_id(&mut self, id: Option<&str>) -> String {
        match id {
            Some(id) if self.call_ids.insert(id.to_string()) => id.to_string(),
            _ => {
                let fresh = random_id("call_", 24, false);
                self.call_ids.insert(fresh.clone());
                fresh
            }
        }
    }

    fn tool_call(&mut self, id: Option<&str>, name: &str, arguments: &str, out: &mut BytesMut) {
        if self.tool_search && name == TOOL_SEARCH {
            return self.tool_search_call(id, arguments, out);
        }
        if self.custom.contains(name) {
            return self.custom_tool_call(id, name, arguments, out);
        }
        self.close_open(out, "completed");
        let index = self.take_index();
        let item_id = random_id("fc_", 32, false);
        let call_id = self.call_id(id);
        let (namespace, name) = match self.namespaced.get(name) {
            Some((ns, member)) => (Some(ns.as_str()), member.as_str()),
            None => (None, name),
        };
        let mut done_item = BytesMut::new();
        write_function_item(
            &mut done_item,
            &item_id,
            "completed",
            &call_id,
            name,
            namespace,
            arguments,
        );
        if self.stream {
            let mut added = BytesMut::new();
            write_function_item(
                &mut added,
                &item_id,
                "in_progress",
                &call_id,
                name,
                namespace,
                "",
            );
            self.output_item_event(out, "response.output_item.added", index, &added);
            begin_event(&mut self.seq, out, "response.function_call_arguments.delta");
            write_item_ref(out, &item_id, index);
            out.extend_from_slice(b",\"delta\":");
            write_str(out, arguments);
            end_event(out);
            begin_event(&mut self.seq, out, "response.function_call_arguments.done");
            write_item_ref(out, &item_id, index);
            out.extend_from_slice(b",\"arguments\":");
            write_str(out, arguments);
            end_event(out);
            self.output_item_event(out, "response.output_item.done", index, &done_item);
        }
        self.push_output(&done_item);
    }

    /// A `web_search_call` event for the running search.
    fn search_event(&mut self, out: &mut BytesMut, ty: &str) {
        if let (true, Some((id, index))) = (self.stream, &self.searching) {
            let (id, index) = (id.clone(), *index);
            begin_event(&mut self.seq, out, ty);
            write_item_ref(out, &id, index);
            end_event(out);
        }
    }

    /// A `tool_search_call` item (`execution: "client"`): its `arguments`
    /// an object, whole in `output_item.added` and `.done` (the model's
    /// arguments arrive in one piece).
    fn tool_search_call(&mut self, id: Option<&str>, arguments: &str, out: &mut BytesMut) {
        self.close_open(out, "completed");
        let index = self.take_index();
        let item_id = random_id("tsc_", 32, false);
        let call_id = self.call_id(id);
        let mut done_item = BytesMut::new();
        write_tool_search_item(&mut done_item, &item_id, "completed", &call_id, arguments);
        if self.stream {
            let mut added = BytesMut::new();
            write_tool_search_item(&mut added, &item_id, "in_progress", &call_id, arguments);
            self.output_item_event(out, "response.output_item.added", index, &added);
            self.output_item_event(out, "response.output_item.done", index, &done_item);
        }
        self.push_output(&done_item);
    }

    /// A `custom_tool_call` item: its `input` is the text the model wrote
    /// ([`custom_input`]), whole in one `response.custom_tool_call_input.delta`
    /// (the model's arguments arrive in one piece), then `.done`.
    fn custom_tool_call(
        &mut self,
        id: Option<&str>,
        name: &str,
        arguments: &str,
        out: &mut BytesMut,
    ) {
        self.close_open(out, "completed");
        let index = self.take_index();
        let item_id = random_id("ctc_", 32, false);
        let call_id = self.call_id(id);
        let input = custom_input(arguments);
        let (namespace, name) = match self.namespaced.get(name) {
            Some((ns, member)) => (Some(ns.as_str()), member.as_str()),
            None => (None, name),
        };
        let item = |status: &str, input: &str| {
            let mut v = json!({"id": item_id, "type": "custom_tool_call", "status": status,
                "call_id": call_id, "name": name, "input": input});
            if let Some(ns) = namespace {
                v["namespace"] = Value::from(ns);
            }
            v.to_string()
        };
        let done_item = item("completed", &input);
        if self.stream {
            let added = item("in_progress", "");
            self.output_item_event(out, "response.output_item.added", index, added.as_bytes());
            begin_event(&mut self.seq, out, "response.custom_tool_call_input.delta");
            write_item_ref(out, &item_id, index);
            out.extend_from_slice(b",\"delta\":");
            write_str(out, &input);
            end_event(out);
            begin_event(&mut self.seq, out, "response.custom_tool_call_input.done");
            write_item_ref(out, &item_id, index);
            out.extend_from_slice(b",\"input\":");
            write_str(out, &input);
            end_event(out);
            self.output_item_event(
                out,
                "response.output_item.done",
                index,
                done_item.as_bytes(),
            );
        }
        self.push_output(done_item.as_bytes());
    }

    fn done(&mut self, done: &Done<'_>, out: &mut BytesMut) {
        let length = done.reason == Some("length");
        self.close_open(out, if length { "incomplete" } else { "completed" });
        let (ty, end) = if length {
            ("response.incomplete", End::Incomplete(done))
        } else {
            ("response.completed", End::Completed(done))
        };
        // Rendered once: what is kept is what the client got.
        let mut document = BytesMut::new();
        self.write_response(&mut document, &end, None);
        if self.stream {
            begin_event(&mut self.seq, out, ty);
            out.extend_from_slice(b",\"response\":");
            out.extend_from_slice(&document);
            end_event(out);
        } else {
            out.extend_from_slice(&document);
        }
        self.keep(document.freeze());
    }

    fn fail(&mut self, message: &str, out: &mut BytesMut) {
        let extra = self.abandon_open();
        let end = End::Failed(message);
        if self.stream {
            self.lifecycle(out, "response.failed", &end, extra.as_deref());
        } else {
            self.write_response(out, &end, extra.as_deref());
        }
    }
}

impl Encoder for ResponseEncoder {
    fn event(&mut self, event: Event<'_>, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.start(out);
        match event {
            // Silent thinking is kept alive by the body's keep-alive.
            Event::Heartbeat => {}
            Event::Thinking(t) => self.thinking(t, out),
            Event::Text(t) => self.text(t, out),
            Event::ToolCall(call) => self.tool_call(call.id, call.name, call.arguments, out),
            Event::Done(done) => {
                self.finished = true;
                self.done(&done, out);
            }
            Event::Error(message) => {
                self.finished = true;
                self.fail(message, out);
            }
        }
    }

    /// An SSE comment: ignored by clients, keeps idle watchdogs calm.
    fn idle(&mut self, out: &mut BytesMut) {
        if self.stream && !self.finished {
            self.start(out);
            out.extend_from_slice(b": keep-alive\n\n");
        }
    }

    fn server_call(&mut self, call: &ServerCall<'_>, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.start(out);
        self.close_open(out, "completed");
        let id = format!("ws_{}", call.id);
        let index = self.take_index();
        if self.stream {
            let item = web_search_item(&id, "in_progress", call.query, None);
            self.output_item_event(out, "response.output_item.added", index, item.as_bytes());
        }
        self.searching = Some((id, index));
        self.search_event(out, "response.web_search_call.in_progress");
        self.search_event(out, "response.web_search_call.searching");
    }

    fn server_result(&mut self, result: &ServerResult<'_>, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        let (status, hits) = match result.outcome {
            Ok(hits) => ("completed", hits),
            Err(_) => ("failed", &[][..]),
        };
        if status == "completed" {
            self.search_event(out, "response.web_search_call.completed");
        }
        let Some((id, index)) = self.searching.take() else {
            return;
        };
        let sources = self.sources.then_some(hits);
        let item = web_search_item(&id, status, result.query, sources);
        if self.stream {
            self.output_item_event(out, "response.output_item.done", index, item.as_bytes());
        }
        self.push_output(item.as_bytes());
    }
}

/// The text of a custom tool call from the model's arguments (the JSON text
/// of an object, see `ollama::tool_arguments`): its `input`, as asked; else
/// the one value it holds (a model that named the argument otherwise, or
/// sent the bare text, which arrives wrapped as `{"value":…}`); nothing for
/// `{}`; else the arguments' JSON as they are, so no word of the model's is
/// lost. A value that is not a string is its JSON text.
fn custom_input(arguments: &str) -> String {
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(arguments) else {
        return arguments.to_string();
    };
    let value = match map.remove(CUSTOM_INPUT) {
        Some(v) => v,
        None if map.len() == 1 => match map.into_iter().next() {
            Some((_, v)) => v,
            None => return String::new(),
        },
        None if map.is_empty() => return String::new(),
        None => return arguments.to_string(),
    };
    match value {
        Value::String(s) => s,
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// A `web_search_call` output item; `sources` when `include` asked for them.
fn web_search_item(id: &str, status: &str, query: &str, sources: Option<&[SearchHit]>) -> String {
    let mut action = json!({"type": "search", "query": query});
    if let Some(hits) = sources {
        action["sources"] = hits
            .iter()
            .map(|h| json!({"type": "url", "url": h.url}))
            .collect();
    }
    json!({"id": id, "type": "web_search_call", "status": status, "action": action}).to_string()
}

#[cfg(test)]
mod tests;
