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
use crate::ollama::{Done, Encoder, Event, Reason, ServerCall, ServerResult};
use crate::search::{self, SearchErrorCode, SearchHit, SearchTool};
use crate::shared::Shared;
use crate::signing::{self, Key};
use crate::util::random_id;
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::StatusCode;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

mod collect;
mod count;
mod request;
mod stream;
mod tools;
mod turns;
use self::collect::*;
use self::count::*;
use self::request::*;
use self::stream::*;
use self::tools::*;
use self::turns::*;

/// What thinking signatures of this dialect are bound to.
const THINKING_PURPOSE: &str = "anthropic-thinking";

/// `POST /v1/messages`.
pub(crate) struct Messages;

/// `POST /v1/messages/count_tokens`.
pub(crate) struct CountTokens;

dialect!(Messages, "messages", prepare_messages, error_body, shared);

/// [`Dialect::prepare`](super::Dialect::prepare) for [`Messages`].
fn prepare_messages(
    config: &Config,
    shared: &Shared,
    _parts: &Parts,
    body: &[u8],
) -> Result<Upstream, ApiError> {
    let parsed = parse_request(config, body, false)?;
    let call = ChatCall::searching(config, shared, parsed.native, "messages", parsed.search)?
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
    error_body,
    shared
);

/// [`Dialect::prepare`](super::Dialect::prepare) for [`CountTokens`].
fn prepare_count_tokens(
    config: &Config,
    shared: &Shared,
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
    native::apply_rules(config, &shared.no_think, &mut native);
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

#[cfg(test)]
mod tests;
