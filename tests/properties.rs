//! Property tests through the public layer, over a `tower::service_fn`
//! stand-in for Ollama:
//!
//! * every request translator (`/v1/chat/completions`, `/v1/messages`,
//!   `/v1/messages/count_tokens`, `/v1/responses`, `/v1/completions`,
//!   `/v1/embeddings`) on arbitrary JSON and on mutated realistic requests:
//!   never a panic, always a response; an error is a 4xx whose body is JSON in
//!   the dialect's shape; a success is a well-formed answer;
//! * the NDJSON decoder and every encoder on arbitrary bytes (realistic
//!   lines, mangled lines and noise) in arbitrary frame splits, ending cleanly
//!   or with a connection error: never a panic; every SSE event's data is
//!   JSON (or `[DONE]`); the first terminal event (`[DONE]`, `message_stop`,
//!   `response.completed|incomplete|failed`, an in-band error) is the last
//!   event; a stream that ends cleanly ends with one; a non-streaming answer
//!   is one JSON document.
//!
//! The case count defaults to a few hundred per property (the whole file
//! runs in seconds); `PROPTEST_CASES=100000 cargo test --release --test
//! properties` is the long run.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use ollama_translate::{BoxError, OllamaTranslateLayer, ReasoningMode, RequestBody};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower::{service_fn, Layer, ServiceExt};

/// Cases run by each property: `default`, or `PROPTEST_CASES`.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The stand-in for Ollama
// ---------------------------------------------------------------------------

/// A body that yields scripted frames, then ends or fails.
struct Script {
    frames: VecDeque<Bytes>,
    fail: bool,
}

impl Body for Script {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(f))));
        }
        if std::mem::take(&mut self.fail) {
            return Poll::Ready(Some(Err("connection reset by peer".into())));
        }
        Poll::Ready(None)
    }
}

const CHAT_STREAM: &str = concat!(
    r#"{"model":"qwen3","created_at":"t","message":{"role":"assistant","content":"","thinking":"Hmm"},"done":false}"#,
    "\n",
    r#"{"model":"qwen3","created_at":"t","message":{"role":"assistant","content":"Hi \"there\" ✓"},"done":false}"#,
    "\n",
    r#"{"model":"qwen3","created_at":"t","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":false}"#,
    "\n",
    r#"{"model":"qwen3","created_at":"t","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":5,"eval_count":3}"#,
    "\n",
);

const CHAT_WHOLE: &str = r#"{"model":"qwen3","created_at":"t","message":{"role":"assistant","content":"Hi","thinking":"Hmm"},"done":true,"done_reason":"stop","prompt_eval_count":5,"eval_count":3}"#;

const GENERATE_STREAM: &str = concat!(
    r#"{"model":"m","created_at":"t","response":"Hel","done":false}"#,
    "\n",
    r#"{"model":"m","created_at":"t","response":"lo","done":false}"#,
    "\n",
    r#"{"model":"m","created_at":"t","response":"","done":true,"done_reason":"stop","prompt_eval_count":2,"eval_count":2}"#,
    "\n",
);

const GENERATE_WHOLE: &str = r#"{"model":"m","created_at":"t","response":"Hello","done":true,"done_reason":"stop","prompt_eval_count":2,"eval_count":2}"#;

const EMBED: &str = r#"{"model":"m","embeddings":[[0.1,-0.2,0.3],[0.4,0.5,-0.6]],"total_duration":1,"load_duration":1,"prompt_eval_count":4}"#;

/// The fixed answer for a native request: what Ollama would send for it.
fn fixed_answer(path: &str, body: &[u8]) -> Vec<Bytes> {
    let stream = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("stream").and_then(Value::as_bool))
        .unwrap_or(true);
    let text = match (path, stream) {
        ("/api/chat", true) => CHAT_STREAM,
        ("/api/chat", false) => CHAT_WHOLE,
        ("/api/generate", true) => GENERATE_STREAM,
        ("/api/generate", false) => GENERATE_WHOLE,
        ("/api/embed", _) => EMBED,
        _ => r#"{"models":[]}"#,
    };
    // Awkward frames: 7 bytes at a time.
    text.as_bytes()
        .chunks(7)
        .map(Bytes::copy_from_slice)
        .collect()
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
    /// The body ended with an error.
    failed: bool,
}

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
}

fn layer() -> OllamaTranslateLayer {
    OllamaTranslateLayer::new().reasoning(ReasoningMode::Forward)
}

/// Sends `body` to `path` through the layer; the inner service answers with
/// `script(native path, native body)`.
fn call(
    path: &str,
    body: Bytes,
    script: impl Fn(&str, &[u8]) -> (StatusCode, Vec<Bytes>, bool) + Send + Sync + 'static,
) -> Answer {
    let script = Arc::new(script);
    let seen = Arc::new(Mutex::new(None::<String>));
    let seen2 = seen.clone();
    let inner = service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
        let script = script.clone();
        let seen = seen2.clone();
        async move {
            let path = req.uri().path().to_string();
            let bytes = req.into_body().collect().await?.to_bytes();
            *seen.lock().unwrap() = Some(path.clone());
            let (status, frames, fail) = script(&path, &bytes);
            let mut res = Response::new(Script {
                frames: frames.into(),
                fail,
            });
            *res.status_mut() = status;
            Ok::<_, BoxError>(res)
        }
    });
    let req = Request::post(format!("http://localhost:11434{path}"))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    RT.with(|rt| {
        rt.block_on(async {
            let res = layer().layer(inner).oneshot(req).await.expect("a response");
            let (parts, mut b) = res.into_parts();
            let mut bytes = Vec::new();
            let mut failed = false;
            while let Some(frame) = b.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            bytes.extend_from_slice(d);
                        }
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            Answer {
                status: parts.status,
                content_type: parts
                    .headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default(),
                body: bytes,
                failed,
            }
        })
    })
}

// ---------------------------------------------------------------------------
// Checking answers
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Chat,
    Messages,
    CountTokens,
    Responses,
    Completions,
    Embeddings,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Chat => "/v1/chat/completions",
            Kind::Messages => "/v1/messages",
            Kind::CountTokens => "/v1/messages/count_tokens",
            Kind::Responses => "/v1/responses",
            Kind::Completions => "/v1/completions",
            Kind::Embeddings => "/v1/embeddings",
        }
    }

    fn anthropic(self) -> bool {
        matches!(self, Kind::Messages | Kind::CountTokens)
    }

    /// A realistic request, streaming or not.
    fn realistic(self, stream: bool) -> Value {
        match self {
            Kind::Chat => json!({
                "model": "qwen3", "stream": stream, "stream_options": {"include_usage": true},
                "temperature": 0.2, "max_tokens": 100, "reasoning_effort": "low",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": [{"type": "text", "text": "weather?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                    {"role": "assistant", "content": null, "reasoning_content": "hm",
                     "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
                ],
                "tools": [{"type": "function", "function": {"name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
                "tool_choice": "auto", "response_format": {"type": "json_object"}, "stop": ["\n\n"]
            }),
            Kind::Messages | Kind::CountTokens => json!({
                "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": stream,
                "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
                "thinking": {"type": "enabled", "budget_tokens": 2048},
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "weather?"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
                    {"role": "assistant", "content": [
                        {"type": "thinking", "thinking": "hm", "signature": "sig"},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Tokyo"}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "sunny"}], "is_error": false}]}
                ],
                "tools": [{"name": "get_weather", "description": "d",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
                "tool_choice": {"type": "auto"}, "stop_sequences": ["END"], "temperature": 0.5
            }),
            Kind::Responses => json!({
                "model": "qwen3", "stream": stream, "instructions": "be brief",
                "reasoning": {"effort": "low", "summary": "auto"},
                "include": ["reasoning.encrypted_content"], "max_output_tokens": 100,
                "input": [
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
                    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
                    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
                ],
                "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
                    {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]},
                    {"type": "web_search"}],
                "tool_choice": "auto", "store": false
            }),
            Kind::Completions => json!({
                "model": "qwen2.5-coder", "prompt": "def f(", "suffix": "\n", "stream": stream,
                "max_tokens": 20, "temperature": 0, "stop": ["\n\n"], "echo": false
            }),
            Kind::Embeddings => json!({
                "model": "nomic-embed-text", "input": ["a", "b"], "encoding_format": if stream { "base64" } else { "float" },
                "dimensions": 3
            }),
        }
    }
}

/// The events of an SSE body as `(event name, data)`; every data is JSON or `[DONE]`.
fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    let mut events = Vec::new();
    for block in body.split_terminator("\n\n") {
        if block.starts_with(':') {
            continue;
        }
        let mut name = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_string());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = Some(d.to_string());
            } else {
                panic!("not an SSE line {line:?} in {body:?}");
            }
        }
        let data = data.unwrap_or_else(|| panic!("an event without data: {block:?}"));
        if data != "[DONE]" {
            if let Err(e) = serde_json::from_str::<Value>(&data) {
                panic!("event data is not JSON ({e}): {data:?}");
            }
        }
        events.push((name, data));
    }
    events
}

/// Whether an event ends a stream: a terminator or an in-band error.
fn terminal(name: &Option<String>, data: &str) -> bool {
    if data == "[DONE]" {
        return true;
    }
    match name.as_deref() {
        Some(
            "message_stop"
            | "error"
            | "response.completed"
            | "response.incomplete"
            | "response.failed",
        ) => true,
        Some(_) => false,
        // Chat Completions / completions: an error object instead of a chunk.
        None => serde_json::from_str::<Value>(data)
            .map(|v| v.get("error").is_some())
            .unwrap_or(false),
    }
}

/// Whether an event is an in-band error.
fn is_error_event(name: &Option<String>, data: &str) -> bool {
    match name.as_deref() {
        Some(n) => n == "error" || n == "response.failed",
        None => {
            data != "[DONE]"
                && serde_json::from_str::<Value>(data).is_ok_and(|v| v.get("error").is_some())
        }
    }
}

/// Checks an error document: OpenAI's or Anthropic's shape.
fn check_error_doc(kind: Kind, body: &[u8]) {
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "error body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    });
    if kind.anthropic() {
        assert_eq!(v["type"], "error", "{v}");
    }
    assert!(v["error"]["type"].is_string(), "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
}

/// The checks every answer must pass. `complete` says the upstream stream
/// was whole and valid, so a clean end must carry a terminator.
fn check_answer(kind: Kind, a: &Answer, upstream_complete: bool) {
    if a.status != StatusCode::OK {
        // 4xx for requests; 5xx only for a broken upstream answer that a
        // non-streaming client gets whole.
        assert!(
            a.status.is_client_error()
                || (a.status.is_server_error() && a.content_type.starts_with("application/json")),
            "{kind:?}: {} with {:?}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
        assert!(!a.failed);
        check_error_doc(kind, &a.body);
        return;
    }
    let body = std::str::from_utf8(&a.body).expect("UTF-8 answer");
    if a.content_type == "text/event-stream" {
        let events = sse_events(body);
        if let Some(first) = events.iter().position(|(n, d)| terminal(n, d)) {
            assert_eq!(
                first,
                events.len() - 1,
                "nothing follows a terminal event: {body}"
            );
        }
        if !a.failed {
            let last = events.last().expect("a stream that ends has events");
            assert!(
                terminal(&last.0, &last.1),
                "clean end without terminator: {body}"
            );
        }
        if upstream_complete {
            assert!(!a.failed);
            let last = events.last().unwrap();
            assert!(
                !is_error_event(&last.0, &last.1),
                "a valid upstream stream gives no error: {body}"
            );
        }
    } else {
        assert!(
            a.content_type.starts_with("application/json"),
            "{}",
            a.content_type
        );
        if !a.failed {
            serde_json::from_str::<Value>(body)
                .unwrap_or_else(|e| panic!("{kind:?}: not one JSON document ({e}): {body:?}"));
        }
    }
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "stream",
    "tools",
    "tool_choice",
    "input",
    "instructions",
    "max_tokens",
    "max_output_tokens",
    "system",
    "type",
    "text",
    "source",
    "data",
    "media_type",
    "url",
    "image_url",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "parameters",
    "input_schema",
    "tool_call_id",
    "tool_use_id",
    "id",
    "call_id",
    "output",
    "thinking",
    "signature",
    "reasoning",
    "reasoning_content",
    "reasoning_effort",
    "effort",
    "budget_tokens",
    "options",
    "stop",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "n",
    "response_format",
    "json_schema",
    "schema",
    "prompt",
    "suffix",
    "encoding_format",
    "dimensions",
    "stream_options",
    "include_usage",
    "include",
    "encrypted_content",
    "summary",
    "previous_response_id",
    "is_error",
    "cache_control",
    "think",
    "keep_alive",
    "num_ctx",
    "logprobs",
    "logit_bias",
    "tools",
    "namespace",
    "metadata",
    "user",
    "echo",
    "best_of",
];

const STRINGS: &[&str] = &[
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "text",
    "image",
    "image_url",
    "input_text",
    "input_image",
    "output_text",
    "function",
    "function_call",
    "function_call_output",
    "message",
    "reasoning",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "document",
    "base64",
    "url",
    "none",
    "auto",
    "any",
    "required",
    "high",
    "low",
    "medium",
    "enabled",
    "disabled",
    "adaptive",
    "json_object",
    "json_schema",
    "float",
    "qwen3",
    "llama3.2",
    "claude-sonnet-4-5",
    "data:image/png;base64,AAAA",
    "data:image/png;base64,!!",
    "https://example.com/x.png",
    "{\"a\":1}",
    "{",
    "",
    " ",
    "\u{0}",
    "✓ \"quoted\" \\ \n",
    "call_1",
    "toolu_1",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(STRINGS).prop_map(str::to_string),
        1 => "\\PC{0,16}",
        1 => any::<String>(),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![4 => select(KEYS).prop_map(str::to_string), 1 => "\\PC{0,8}"]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()].prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        arb_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A top-level request: arbitrary, or an object with a model and arbitrary fields.
fn arb_request() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => arb_json(),
        3 => (select(&["qwen3", "llama3.2", "claude-3", ""][..]), prop::collection::vec((arb_key(), arb_json()), 0..8))
            .prop_map(|(model, kv)| {
                let mut m: Map<String, Value> = kv.into_iter().collect();
                m.insert("model".into(), Value::from(model));
                Value::Object(m)
            }),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the node at this index with a value.
    Replace(Index, Value),
    /// Delete the node at this index (from its parent).
    Delete(Index),
    /// Insert a key into the object (or push into the array) at this index.
    Insert(Index, String, Value),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), arb_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), arb_key(), arb_json()).prop_map(|(i, k, v)| Mutation::Insert(i, k, v)),
    ]
}

/// JSON pointers to every node of `v` (the root is `""`).
fn pointers(v: &Value, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(c, format!("{here}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn mutate(mut v: Value, mutations: &[Mutation]) -> Value {
    for m in mutations {
        let mut all = Vec::new();
        pointers(&v, String::new(), &mut all);
        match m {
            Mutation::Replace(i, new) => {
                let p = i.get(&all);
                if let Some(node) = v.pointer_mut(p) {
                    *node = new.clone();
                }
            }
            Mutation::Delete(i) => {
                let p = i.get(&all).clone();
                let Some((parent, last)) = p.rsplit_once('/') else {
                    continue;
                };
                let last = last.replace("~1", "/").replace("~0", "~");
                match v.pointer_mut(parent) {
                    Some(Value::Object(o)) => {
                        o.remove(&last);
                    }
                    Some(Value::Array(a)) => {
                        if let Ok(n) = last.parse::<usize>() {
                            if n < a.len() {
                                a.remove(n);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Mutation::Insert(i, k, new) => match v.pointer_mut(i.get(all.as_slice()).as_str()) {
                Some(Value::Object(o)) => {
                    o.insert(k.clone(), new.clone());
                }
                Some(Value::Array(a)) => a.push(new.clone()),
                _ => {}
            },
        }
    }
    v
}

fn arb_kind() -> impl Strategy<Value = Kind> {
    select(
        &[
            Kind::Chat,
            Kind::Messages,
            Kind::CountTokens,
            Kind::Responses,
            Kind::Completions,
            Kind::Embeddings,
        ][..],
    )
}

fn fixed(path: &str, body: &[u8]) -> (StatusCode, Vec<Bytes>, bool) {
    (StatusCode::OK, fixed_answer(path, body), false)
}

// ---------------------------------------------------------------------------
// Request translators
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(400))]

    /// Arbitrary JSON (and arbitrary bytes) to every translator.
    #[test]
    fn translators_survive_arbitrary_json(kind in arb_kind(), req in arb_request(), raw in any::<bool>()) {
        let mut body = req.to_string().into_bytes();
        if raw {
            // Not even JSON (nor UTF-8), sometimes.
            body.truncate(body.len() / 2);
        }
        let a = call(kind.path(), Bytes::from(body), fixed);
        check_answer(kind, &a, true);
    }

    /// Realistic requests with a few random mutations.
    #[test]
    fn translators_survive_mutated_requests(
        kind in arb_kind(),
        stream in any::<bool>(),
        mutations in prop::collection::vec(arb_mutation(), 0..4),
    ) {
        let req = mutate(kind.realistic(stream), &mutations);
        let a = call(kind.path(), Bytes::from(req.to_string()), fixed);
        check_answer(kind, &a, true);
    }
}

/// The unmutated realistic requests succeed: the mutations start from valid ground.
#[test]
fn realistic_requests_are_accepted() {
    for kind in [
        Kind::Chat,
        Kind::Messages,
        Kind::CountTokens,
        Kind::Responses,
        Kind::Completions,
        Kind::Embeddings,
    ] {
        for stream in [false, true] {
            let a = call(
                kind.path(),
                Bytes::from(kind.realistic(stream).to_string()),
                fixed,
            );
            assert_eq!(
                a.status,
                200,
                "{kind:?} stream={stream}: {}",
                String::from_utf8_lossy(&a.body)
            );
            check_answer(kind, &a, true);
        }
    }
}

// ---------------------------------------------------------------------------
// Decoder and encoders
// ---------------------------------------------------------------------------

const LINES: &[&str] = &[
    r#"{"model":"q","created_at":"t","message":{"role":"assistant","content":"","thinking":"Let me think"},"done":false}"#,
    r#"{"model":"q","created_at":"t","message":{"role":"assistant","content":"Hi \"you\" ✓\n"},"done":false}"#,
    r#"{"model":"q","created_at":"t","message":{"role":"assistant","content":""},"done":false}"#,
    r#"{"model":"q","created_at":"t","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":false}"#,
    r#"{"model":"q","created_at":"t","message":{"role":"assistant","content":"","tool_calls":[{"function":{"index":0,"name":"ns__f","arguments":null}},{"function":{"name":"g"}}]},"done":false}"#,
    r#"{"model":"q","created_at":"t","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":5,"eval_count":3}"#,
    r#"{"model":"q","created_at":"t","message":{"role":"assistant","content":""},"done":true,"done_reason":"length","prompt_eval_count":5,"eval_count":3}"#,
    r#"{"model":"q","created_at":"t","message":{"role":"assistant","content":"x"},"done":true}"#,
    r#"{"model":"q","created_at":"t","response":"gen","thinking":"t","done":false}"#,
    r#"{"model":"q","created_at":"t","response":"","done":true,"done_reason":"stop"}"#,
    r#"{"error":"model runner has unexpectedly stopped"}"#,
    r#"{"error":{"nested":true}}"#,
    r#"{"message":{"content":5},"done":"yes"}"#,
    r#"{}"#,
    "null",
    "[]",
    "",
    "\r",
    "this is not json",
];

#[derive(Clone, Debug)]
enum Piece {
    Line(&'static str),
    /// A realistic line cut short.
    Cut(&'static str, Index),
    /// A realistic line with one byte replaced.
    Flip(&'static str, Index, u8),
    Noise(Vec<u8>),
}

fn arb_piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        6 => select(LINES).prop_map(Piece::Line),
        1 => (select(LINES), any::<Index>()).prop_map(|(l, i)| Piece::Cut(l, i)),
        1 => (select(LINES), any::<Index>(), any::<u8>()).prop_map(|(l, i, b)| Piece::Flip(l, i, b)),
        1 => prop::collection::vec(any::<u8>(), 0..24).prop_map(Piece::Noise),
    ]
}

fn render(pieces: &[Piece], newline_at_end: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        match p {
            Piece::Line(l) => out.extend_from_slice(l.as_bytes()),
            Piece::Cut(l, at) => {
                let b = l.as_bytes();
                out.extend_from_slice(&b[..at.index(b.len() + 1)]);
            }
            Piece::Flip(l, at, byte) => {
                let mut b = l.as_bytes().to_vec();
                if !b.is_empty() {
                    let i = at.index(b.len());
                    b[i] = *byte;
                }
                out.extend_from_slice(&b);
            }
            Piece::Noise(n) => out.extend_from_slice(n),
        }
        if i + 1 < pieces.len() || newline_at_end {
            out.push(b'\n');
        }
    }
    out
}

/// Splits `bytes` into frames at the given cut points.
fn split(bytes: &[u8], cuts: &[Index]) -> Vec<Bytes> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2)
        .map(|w| Bytes::copy_from_slice(&bytes[w[0]..w[1]]))
        .collect()
}

fn arb_stream_kind() -> impl Strategy<Value = Kind> {
    select(
        &[
            Kind::Chat,
            Kind::Messages,
            Kind::Responses,
            Kind::Completions,
        ][..],
    )
}

proptest! {
    #![proptest_config(config(600))]

    /// Arbitrary upstream bytes in arbitrary frames, for every chat-like
    /// encoder, streaming and not, ending cleanly or with a broken connection.
    #[test]
    fn decoder_and_encoders_survive_arbitrary_streams(
        kind in arb_stream_kind(),
        stream in any::<bool>(),
        pieces in prop::collection::vec(arb_piece(), 0..10),
        newline_at_end in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
        fail in any::<bool>(),
    ) {
        let frames = split(&render(&pieces, newline_at_end), &cuts);
        let req = kind.realistic(stream);
        let a = call(kind.path(), Bytes::from(req.to_string()), move |_, _| {
            (StatusCode::OK, frames.clone(), fail)
        });
        if stream {
            prop_assert_eq!(a.status, StatusCode::OK);
        } else {
            // A non-streaming answer is read whole first: a broken one gets
            // an error status instead of a 200.
            prop_assert!(
                a.status == StatusCode::OK || a.status.is_server_error(),
                "{}",
                a.status
            );
        }
        check_answer(kind, &a, false);
    }

    /// A valid stream in arbitrary frames always ends with its terminator.
    #[test]
    fn valid_streams_end_with_their_terminator(
        kind in arb_stream_kind(),
        stream in any::<bool>(),
        body in select(&[0usize, 1, 2, 3, 4][..]),
        cuts in prop::collection::vec(any::<Index>(), 0..40),
    ) {
        let lines: &[&str] = match body {
            0 => &[LINES[0], LINES[1], LINES[5]],
            1 => &[LINES[1], LINES[3], LINES[4], LINES[6]],
            2 => &[LINES[2], LINES[16], LINES[7]],
            3 => &[LINES[8], LINES[9]],
            _ => &[LINES[0], LINES[17], LINES[1], LINES[3], LINES[5]],
        };
        let pieces: Vec<Piece> = lines.iter().map(|l| Piece::Line(l)).collect();
        let frames = split(&render(&pieces, true), &cuts);
        let req = kind.realistic(stream);
        let a = call(kind.path(), Bytes::from(req.to_string()), move |_, _| {
            (StatusCode::OK, frames.clone(), false)
        });
        check_answer(kind, &a, true);
    }

    /// Any upstream error status with any body becomes the dialect's error document.
    #[test]
    fn upstream_errors_keep_their_status_in_the_dialect_shape(
        kind in arb_kind(),
        status in select(&[400u16, 401, 403, 404, 405, 413, 429, 500, 502, 503][..]),
        body in prop_oneof![
            arb_json().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..64),
        ],
        cuts in prop::collection::vec(any::<Index>(), 0..4),
    ) {
        let frames = split(&body, &cuts);
        let req = kind.realistic(false);
        let code = StatusCode::from_u16(status).unwrap();
        let a = call(kind.path(), Bytes::from(req.to_string()), move |_, _| {
            (code, frames.clone(), false)
        });
        prop_assert_eq!(a.status, code);
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        if kind.anthropic() {
            prop_assert_eq!(&v["type"], "error");
        }
        prop_assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", v);
    }
}
