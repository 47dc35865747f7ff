//! The pieces of a Responses answer, written straight into the output
//! buffer: events, item references, output items, usage.

use super::*;

pub(super) fn item_ref(id: &str, index: u64) -> Vec<u8> {
    let mut r = BytesMut::with_capacity(id.len() + 40);
    write_item_ref(&mut r, id, index);
    r.to_vec()
}

/// Turns decoded events into Responses events (or, when not streaming, one
/// `response` object at the end).
pub(super) struct ResponseEncoder {
    pub(super) stream: bool,
    /// `{"id":…,"object":"response","created_at":…,"model":…` plus the echoed
    /// request fields: every response object starts with it.
    pub(super) prefix: Vec<u8>,
    pub(super) seq: u64,
    pub(super) started: bool,
    pub(super) finished: bool,
    pub(super) next_index: u64,
    pub(super) open: Open,
    /// Finished output items, rendered, comma-separated.
    pub(super) output: Vec<u8>,
    /// Signs reasoning when the client asked for `encrypted_content`.
    pub(super) signer: Option<Key>,
    pub(super) namespaced: HashMap<String, (String, String)>,
    pub(super) call_ids: HashSet<String>,
    /// `web_search_call` items list their sources.
    pub(super) sources: bool,
    /// The web search running: its item id and output index.
    pub(super) searching: Option<(String, u64)>,
    /// Calls of [`TOOL_SEARCH`] are `tool_search_call` items.
    pub(super) tool_search: bool,
    /// Flat names of custom tools: their calls are `custom_tool_call` items.
    pub(super) custom: HashSet<String>,
    /// The response's id.
    pub(super) id: String,
    /// Keeps the answered response (`store` not false).
    pub(super) keep: Option<Keep>,
}

/// Writes `event: <ty>\ndata: {"type":"<ty>","sequence_number":N` — the
/// caller adds the other fields and [`end_event`].
pub(super) fn begin_event(seq: &mut u64, out: &mut BytesMut, ty: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":\"");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"\",\"sequence_number\":");
    write_u64(out, *seq);
    *seq += 1;
}

pub(super) fn end_event(out: &mut BytesMut) {
    out.extend_from_slice(b"}\n\n");
}

/// `,"item_id":…,"output_index":N`
pub(super) fn write_item_ref(out: &mut BytesMut, id: &str, index: u64) {
    out.extend_from_slice(b",\"item_id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"output_index\":");
    write_u64(out, index);
}

pub(super) fn write_output_text(out: &mut BytesMut, text: &str) {
    out.extend_from_slice(
        b"{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":",
    );
    write_str(out, text);
    out.extend_from_slice(b"}");
}

pub(super) fn write_summary_text(out: &mut BytesMut, text: &str) {
    out.extend_from_slice(b"{\"type\":\"summary_text\",\"text\":");
    write_str(out, text);
    out.extend_from_slice(b"}");
}

/// A message item; `text` `None` renders the empty item of `output_item.added`.
pub(super) fn write_message_item(out: &mut BytesMut, id: &str, status: &str, text: Option<&str>) {
    write_item_head(out, id, "message", status);
    out.extend_from_slice(b",\"role\":\"assistant\",\"content\":[");
    if let Some(t) = text {
        write_output_text(out, t);
    }
    out.extend_from_slice(b"]}");
}

pub(super) fn write_reasoning_item(
    out: &mut BytesMut,
    id: &str,
    text: Option<&str>,
    sealed: Option<&str>,
) {
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

/// `{"id":…,"type":…,"status":…`: how every output item with a status
/// begins (the caller writes the rest and the closing brace).
fn write_item_head(out: &mut BytesMut, id: &str, kind: &str, status: &str) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"status\":\"");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\"");
}

#[allow(clippy::too_many_arguments)]
pub(super) fn write_function_item(
    out: &mut BytesMut,
    id: &str,
    status: &str,
    call_id: &str,
    name: &str,
    namespace: Option<&str>,
    arguments: &str,
) {
    write_item_head(out, id, "function_call", status);
    out.extend_from_slice(b",\"call_id\":");
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
pub(super) fn write_tool_search_item(
    out: &mut BytesMut,
    id: &str,
    status: &str,
    call_id: &str,
    arguments: &str,
) {
    write_item_head(out, id, "tool_search_call", status);
    out.extend_from_slice(b",\"execution\":\"client\",\"call_id\":");
    write_str(out, call_id);
    out.extend_from_slice(b",\"arguments\":");
    out.extend_from_slice(arguments.as_bytes());
    out.extend_from_slice(b"}");
}

pub(super) fn write_usage(out: &mut BytesMut, done: &Done<'_>) {
    out.extend_from_slice(b"{\"input_tokens\":");
    write_u64(out, done.prompt_tokens);
    out.extend_from_slice(b",\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":");
    write_u64(out, done.completion_tokens);
    out.extend_from_slice(b",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":");
    write_u64(out, total_tokens(done));
    out.extend_from_slice(b"}");
}
