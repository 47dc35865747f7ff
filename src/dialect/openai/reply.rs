//! Pieces of the answers the OpenAI dialects write: finish reasons and
//! token usage.

use crate::json::{write_str, write_u64};
use crate::ollama::{Done, Reason};
use crate::util::{random_id, unix_now};
use bytes::BytesMut;
use serde_json::{json, Value};

/// What is constant for one answer: its id, when it was made, and the model
/// name the client asked for.
pub(crate) struct Head {
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
}

impl Head {
    /// A fresh head whose id starts with `prefix` (`chatcmpl-`, `cmpl-`).
    pub(crate) fn new(prefix: &str, model: &str) -> Self {
        Head {
            id: random_id(prefix, 24, true),
            created: unix_now(),
            model: model.to_string(),
        }
    }

    /// `data: {"id":…,"object":<object>,"created":…,"model":…`: how every
    /// streamed chunk of this answer starts.
    pub(crate) fn chunk_start(&self, object: &str) -> BytesMut {
        let mut out = BytesMut::with_capacity(128);
        out.extend_from_slice(b"data: {\"id\":");
        write_str(&mut out, &self.id);
        out.extend_from_slice(b",\"object\":");
        write_str(&mut out, object);
        out.extend_from_slice(b",\"created\":");
        write_u64(&mut out, self.created);
        out.extend_from_slice(b",\"model\":");
        write_str(&mut out, &self.model);
        out
    }
}

/// A choice's `finish_reason`: `length` when the token limit cut the
/// answer, else `tool_calls` when the model called tools, else `stop`.
pub(crate) fn finish_reason(done: &Done<'_>, tool_calls: bool) -> &'static str {
    match done.reason {
        Some(Reason::Length) => "length",
        _ if tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// Prompt and completion tokens together (saturating: the counts come from
/// upstream).
pub(crate) fn total_tokens(done: &Done<'_>) -> u64 {
    done.prompt_tokens.saturating_add(done.completion_tokens)
}

/// `{"prompt_tokens","completion_tokens","total_tokens"}` as a JSON value.
pub(crate) fn usage(done: &Done<'_>) -> Value {
    json!({
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": total_tokens(done),
    })
}

/// The same object as [`usage`], written straight to `out` (fields in
/// OpenAI's order).
pub(crate) fn write_usage(done: &Done<'_>, out: &mut BytesMut) {
    out.extend_from_slice(b"{\"prompt_tokens\":");
    write_u64(out, done.prompt_tokens);
    out.extend_from_slice(b",\"completion_tokens\":");
    write_u64(out, done.completion_tokens);
    out.extend_from_slice(b",\"total_tokens\":");
    write_u64(out, total_tokens(done));
    out.extend_from_slice(b"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(reason: Option<&str>, prompt: u64, completion: u64) -> Done<'_> {
        Done {
            reason: reason.map(Reason::parse),
            prompt_tokens: prompt,
            completion_tokens: completion,
        }
    }

    #[test]
    fn chunks_start_with_the_head() {
        let head = Head::new("cmpl-", "m");
        assert!(head.id.starts_with("cmpl-"));
        let mut start = head.chunk_start("text_completion");
        start.extend_from_slice(b"}");
        let v: Value = serde_json::from_slice(&start[b"data: ".len()..]).unwrap();
        assert_eq!(
            v,
            json!({"id": head.id, "object": "text_completion", "created": head.created, "model": "m"})
        );
    }

    #[test]
    fn length_wins_over_tool_calls() {
        assert_eq!(finish_reason(&done(Some("length"), 0, 0), true), "length");
        assert_eq!(finish_reason(&done(Some("stop"), 0, 0), true), "tool_calls");
        assert_eq!(finish_reason(&done(None, 0, 0), false), "stop");
    }

    #[test]
    fn usage_totals_saturate_and_both_forms_agree() {
        let d = done(None, u64::MAX, 2);
        assert_eq!(total_tokens(&d), u64::MAX);
        let d = done(None, 3, 4);
        let mut out = BytesMut::new();
        write_usage(&d, &mut out);
        let written: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(written, usage(&d));
        assert_eq!(written["total_tokens"], 7);
    }
}
