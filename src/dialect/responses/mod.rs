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
use crate::ollama::{Done, Encoder, Event, Reason, ServerCall, ServerResult};
use crate::search::{self, SearchHit, SearchTool};
use crate::shared::Shared;
use crate::signing::{self, Key};
use crate::store::{Kept, Owner, ResponseStore};
use crate::timer::Timer;
use crate::util::{random_id, unix_now};
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

mod input;
mod request;
mod stream;
mod tools;
mod write;
use self::input::*;
use self::request::*;
use self::stream::*;
use self::tools::*;
use self::write::*;

/// The Responses dialect.
pub(crate) struct Responses;

dialect!(
    Responses,
    "responses",
    prepare_responses,
    openai::error_body,
    shared
);

/// [`Dialect::prepare`](super::Dialect::prepare) for [`Responses`].
fn prepare_responses(
    config: &Config,
    shared: &Shared,
    parts: &Parts,
    body: &[u8],
) -> Result<Upstream, ApiError> {
    let owner = parts.extensions.get::<Owner>().copied();
    let parsed = parse_request_for(config, shared, body, owner)?;
    let asked = parsed.include_encrypted || parsed.summary_requested;
    let call = ChatCall::searching(config, shared, parsed.native, "responses", parsed.search)?
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
    openai::error_body,
    shared
);

/// `DELETE /v1/responses/{id}`: forgets a kept response.
pub(crate) struct DeleteResponse;

dialect!(
    DeleteResponse,
    "responses.delete",
    prepare_delete,
    openai::error_body,
    shared
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
fn prepare_retrieve(
    config: &Config,
    shared: &Shared,
    parts: &Parts,
    _body: &[u8],
) -> Result<Upstream, ApiError> {
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
    let kept = shared
        .responses
        .get(id, owner, config.now())
        .ok_or_else(|| response_not_found(id))?;
    Ok(Upstream::local(kept.response.clone()))
}

/// [`Dialect::prepare`](super::Dialect::prepare) for [`DeleteResponse`].
fn prepare_delete(
    config: &Config,
    shared: &Shared,
    parts: &Parts,
    _body: &[u8],
) -> Result<Upstream, ApiError> {
    let (id, owner) = kept_id(parts);
    if !shared.responses.remove(id, owner, config.now()) {
        return Err(response_not_found(id));
    }
    let body = json!({"id": id, "object": "response", "deleted": true}).to_string();
    Ok(Upstream::local(body.into()))
}

/// The purpose string reasoning signatures are bound to.
const REASONING_PURPOSE: &str = "responses-reasoning";

#[cfg(test)]
mod tests;
