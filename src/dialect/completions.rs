//! Legacy OpenAI completions: `POST /v1/completions` → `/api/generate`.
//! Still used by editor plugins, fill-in-the-middle included (`suffix`).

use super::native::GenerateRequest;
use super::openai::reply::{finish_reason, usage, Head};
use super::openai::request::{include_usage, think, Sampling, ThinkFields};
use super::params::{expect_str, json_object, model_name, stream, Wording};
use super::{openai, ChatCall, Upstream};
use crate::config::Config;
use crate::error::ApiError;
use crate::json::write_str;
use crate::ollama::{Encoder, Event};
use crate::shared::Shared;
use bytes::BytesMut;
use http::request::Parts;
use serde_json::{json, Map, Value};

/// The legacy completions dialect.
pub(crate) struct Completions;

fn prompt_of(root: &Map<String, Value>) -> Result<String, ApiError> {
    match root.get("prompt") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            Ok(a[0].as_str().unwrap_or_default().to_string())
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Err(ApiError::invalid(
            "prompt",
            "only one prompt per request is supported",
        )),
        Some(Value::Array(_)) => Err(ApiError::invalid(
            "prompt",
            "prompt must be a string; token arrays are not supported by Ollama",
        )),
        None | Some(Value::Null) => Err(ApiError::invalid("prompt", "prompt is required")),
        Some(_) => Err(ApiError::invalid("prompt", "prompt must be a string")),
    }
}

dialect!(
    Completions,
    "completions",
    prepare_completions,
    openai::error_body,
    shared
);

/// [`Dialect::prepare`](super::Dialect::prepare) for [`Completions`].
fn prepare_completions(
    config: &Config,
    shared: &Shared,
    _parts: &Parts,
    body: &[u8],
) -> Result<Upstream, ApiError> {
    let root = json_object(body)?;
    let client_model = model_name(&root, Wording::Named)?;
    let prompt = prompt_of(&root)?;
    if root.get("echo").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::invalid("echo", "echo is not supported by Ollama"));
    }
    for key in ["n", "best_of"] {
        if let Some(n) = root.get(key).filter(|v| !v.is_null()) {
            if n.as_u64() != Some(1) {
                return Err(ApiError::invalid(
                    key,
                    format!("{key} must be 1: Ollama generates one completion per request"),
                ));
            }
        }
    }
    if root.get("logprobs").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid(
            "logprobs",
            "logprobs is not supported by this proxy",
        ));
    }
    let stream = stream(&root, Wording::Terse)?;
    let include_usage = include_usage(&root, stream, Wording::Terse)?;
    let (options, keep_alive) = Sampling::CHAT.read(&root)?;
    let model = config.resolve_model(&client_model).to_string();
    let suffix = expect_str(&root, "suffix", Wording::Terse)?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let think = think(&root, ThinkFields::ThinkOnly)?;
    let req = GenerateRequest {
        model: model.clone(),
        prompt,
        suffix,
        format: None,
        options,
        think,
        keep_alive,
        stream,
    };
    // Legacy completions have no place for thinking.
    let call = ChatCall::new(config, shared, req, "completions")?.drop_thinking();
    let head = Head::new("cmpl-", &client_model);
    let up = if call.stream {
        call.upstream(StreamEncoder::new(&head, include_usage))
    } else {
        call.upstream(Collector {
            head,
            text: String::new(),
        })
    };
    Ok(up.requested_as(&client_model))
}

/// Streams `text_completion` chunks.
struct StreamEncoder {
    prefix: Vec<u8>,
    include_usage: bool,
}

impl StreamEncoder {
    fn new(head: &Head, include_usage: bool) -> Self {
        let mut p = head.chunk_start("text_completion");
        p.extend_from_slice(b",\"choices\":");
        StreamEncoder {
            prefix: p.to_vec(),
            include_usage,
        }
    }

    fn choice(&self, text: &str, finish: Option<&str>, out: &mut BytesMut) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(b"[{\"text\":");
        write_str(out, text);
        out.extend_from_slice(b",\"index\":0,\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => write_str(out, f),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]}\n\n");
    }
}

impl Encoder for StreamEncoder {
    fn idle(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(b": keep-alive\n\n");
    }

    fn event(&mut self, event: Event<'_>, out: &mut BytesMut) {
        match event {
            Event::Heartbeat | Event::Thinking(_) | Event::ToolCall(_) => {}
            Event::Text(t) => self.choice(t, None, out),
            Event::Done(done) => {
                self.choice("", Some(finish_reason(&done, false)), out);
                if self.include_usage {
                    out.extend_from_slice(&self.prefix);
                    out.extend_from_slice(b"[],\"usage\":");
                    out.extend_from_slice(usage(&done).to_string().as_bytes());
                    out.extend_from_slice(b"}\n\n");
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Event::Error(message) => openai::write_upstream_error_event(message, out),
        }
    }
}

/// Builds one `text_completion` object.
struct Collector {
    head: Head,
    text: String,
}

impl Encoder for Collector {
    fn event(&mut self, event: Event<'_>, out: &mut BytesMut) {
        match event {
            Event::Text(t) => self.text.push_str(t),
            Event::Done(done) => {
                let v = json!({
                    "id": self.head.id,
                    "object": "text_completion",
                    "created": self.head.created,
                    "model": self.head.model,
                    "choices": [{
                        "text": std::mem::take(&mut self.text),
                        "index": 0,
                        "logprobs": null,
                        "finish_reason": finish_reason(&done, false),
                    }],
                    "usage": usage(&done),
                });
                out.extend_from_slice(v.to_string().as_bytes());
            }
            Event::Error(message) => openai::write_upstream_error(message, out),
            Event::Heartbeat | Event::Thinking(_) | Event::ToolCall(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::params::{assert_refused, prepare_json};

    #[test]
    fn maps_fill_in_the_middle() {
        let up = prepare_json(
            &Completions,
            json!({"model": "qwen3", "prompt": "def f(", "suffix": "\n    return x",
            "max_tokens": 16, "temperature": 0.2, "stop": ["\n\n"], "seed": 1}),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(v["prompt"], "def f(");
        assert_eq!(v["suffix"], "\n    return x");
        assert_eq!(
            v["options"],
            json!({"num_predict": 16, "temperature": 0.2, "stop": ["\n\n"], "seed": 1})
        );
        assert_eq!(v["stream"], true, "Ollama streams; the answer is collected");
        assert_eq!(up.delivery, crate::dialect::Delivery::Collect);
        assert_eq!(up.endpoint.path(), "/api/generate");
    }

    #[test]
    fn refuses_what_ollama_cannot_do() {
        assert_refused(
            &Completions,
            [
                (json!({"model": "m", "prompt": "a", "echo": true}), "echo"),
                (json!({"model": "m", "prompt": "a", "n": 3}), "n"),
                (
                    json!({"model": "m", "prompt": "a", "best_of": 2}),
                    "best_of",
                ),
                (json!({"model": "m", "prompt": [1, 2]}), "prompt"),
                (json!({"model": "m", "prompt": ["a", "b"]}), "prompt"),
                (json!({"model": "m"}), "prompt"),
                (
                    json!({"model": "m", "prompt": "a", "logprobs": 2}),
                    "logprobs",
                ),
                (
                    json!({"model": "m", "prompt": "a", "stream_options": "x"}),
                    "stream_options",
                ),
                (
                    json!({"model": "m", "prompt": "a", "stream": true,
                    "stream_options": {"include_usage": 1}}),
                    "stream_options.include_usage",
                ),
            ],
        );
    }

    #[test]
    fn streams_text_completion_chunks() {
        let mut up = prepare_json(
            &Completions,
            json!({"model": "m", "prompt": "a", "stream": true,
            "stream_options": {"include_usage": true}}),
        )
        .unwrap();
        let mut out = BytesMut::new();
        up.transcoder
            .line(br#"{"model":"m","response":"Hel","done":false}"#, &mut out);
        up.transcoder
            .line(br#"{"model":"m","response":"lo","done":false}"#, &mut out);
        up.transcoder.line(br#"{"model":"m","response":"","done":true,"done_reason":"length","prompt_eval_count":2,"eval_count":2}"#, &mut out);
        up.transcoder.finish(&mut out).unwrap();
        let text = String::from_utf8(out.to_vec()).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.last(), Some(&"data: [DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(chunks[0]["object"], "text_completion");
        assert_eq!(chunks[0]["choices"][0]["text"], "Hel");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(chunks[3]["usage"]["total_tokens"], 4);
        assert_eq!(chunks[3]["choices"], json!([]));
    }

    #[test]
    fn usage_totals_saturate() {
        let huge = br#"{"model":"m","response":"x","done":true,"done_reason":"stop","prompt_eval_count":18446744073709551615,"eval_count":5}"#;
        let head = Head::new("cmpl-", "m");
        let mut d = crate::ollama::Decoder::new(StreamEncoder::new(&head, true), false);
        let mut out = BytesMut::new();
        d.line(huge, &mut out);
        assert!(d.finish(&mut out).is_ok());
        let text = String::from_utf8(out.to_vec()).unwrap();
        let usage = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .find_map(|c| c.get("usage").cloned())
            .unwrap();
        assert_eq!(
            usage,
            json!({"prompt_tokens": u64::MAX, "completion_tokens": 5, "total_tokens": u64::MAX})
        );

        let collector = Collector {
            head,
            text: String::new(),
        };
        let mut d = crate::ollama::Decoder::new(collector, false);
        let mut out = BytesMut::new();
        d.line(huge, &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["usage"]["total_tokens"], u64::MAX);
    }
}
