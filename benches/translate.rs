//! Criterion benchmarks through the public layer, over in-memory inner
//! services (no sockets):
//!
//! * `body/<dialect>` — `TranslateBody` throughput: 2 000 realistic Ollama
//!   token lines (~125–150 bytes) delivered one line per frame, 16 KiB frames
//!   (many lines per frame), and 7-byte frames (lines split at odd
//!   boundaries); reported per token line (`Throughput::Elements`) and per
//!   upstream byte (`Throughput::Bytes`). The body constructors are private,
//!   so each iteration is one whole request through the layer with a tiny
//!   client request; `body/<dialect>/baseline` is that same request with an
//!   empty stream (only the done line), i.e. the per-request cost, to
//!   subtract: per line = (stream − baseline) / 2 000. At 2 000 lines the
//!   baseline is ~1–2 % of a run.
//! * `request/<dialect>` — translating a Claude Code-sized request (a
//!   ~11 KB system prompt, 20 tools with JSON schemas, ~75 KB of them, and
//!   50 messages with tool calls and results) in each dialect's shape; the
//!   inner service answers with an empty stream at once, so this is parse +
//!   translate + render of the native request.
//! * `passthrough` — a native `/api/chat` stream through the layer vs. the
//!   same inner service without it.
//! * `web_search` — a Messages request whose model searches once (a
//!   zero-latency backend) then answers, against the same two model streams
//!   as two plain requests: what a search round adds beyond the backend's
//!   and the model's own time.
//!
//! `cargo bench --bench translate` (add `-- body/chat` to filter).
// Benchmarks may unwrap: a failure here is a broken benchmark, not a result.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use ollama_translate::{BoxError, OllamaTranslateLayer, RequestBody};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower::{service_fn, Layer, Service, ServiceExt};

/// Yields pre-cut frames.
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

const LINES: usize = 2000;

/// Tokens as a model writes them: words, punctuation, newlines and quotes
/// (escaped in JSON), some non-ASCII.
const WORDS: [&str; 16] = [
    " The",
    " function",
    " returns",
    " `Result<T, E>`",
    ",",
    " so",
    " the",
    " caller",
    " can",
    " handle",
    " errors",
    ".\\n\\n",
    "```rust\\n",
    " let x = \\\"héllo\\\";",
    " ✓",
    " done",
];

/// `n` realistic token lines (~125–150 bytes each) and a done line.
fn stream(n: usize) -> Bytes {
    let mut s = String::new();
    for i in 0..n {
        let w = WORDS[i % WORDS.len()];
        s.push_str(&format!(
            "{{\"model\":\"qwen3:8b\",\"created_at\":\"2026-08-21T10:00:00.{:09}Z\",\"message\":{{\"role\":\"assistant\",\"content\":\"{w}\"}},\"done\":false}}\n",
            (i * 7_919_003) % 1_000_000_000
        ));
    }
    s.push_str("{\"model\":\"qwen3:8b\",\"created_at\":\"2026-08-21T10:00:01.5Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":1510029631,\"load_duration\":20128371,\"prompt_eval_count\":26,\"prompt_eval_duration\":41264000,\"eval_count\":2000,\"eval_duration\":1447000000}\n");
    Bytes::from(s)
}

/// Frames as cheap slices of `data` (cloning them is a reference count).
fn cut(data: &Bytes, how: &str) -> VecDeque<Bytes> {
    let mut frames = VecDeque::new();
    match how {
        "one_line_per_frame" => {
            let mut start = 0;
            for (i, b) in data.iter().enumerate() {
                if *b == b'\n' {
                    frames.push_back(data.slice(start..=i));
                    start = i + 1;
                }
            }
        }
        "many_lines_per_frame" => {
            for start in (0..data.len()).step_by(16 * 1024) {
                frames.push_back(data.slice(start..(start + 16 * 1024).min(data.len())));
            }
        }
        _ => {
            for start in (0..data.len()).step_by(7) {
                frames.push_back(data.slice(start..(start + 7).min(data.len())));
            }
        }
    }
    frames
}

type OllamaRequest = Request<RequestBody<Full<Bytes>>>;
type OllamaAnswer = std::future::Ready<Result<Response<Frames>, BoxError>>;

/// An in-memory "Ollama" answering the next request with `frames`.
fn ollama(
    frames: VecDeque<Bytes>,
) -> impl Service<OllamaRequest, Response = Response<Frames>, Error = BoxError, Future = OllamaAnswer>
       + Clone {
    let slot = Arc::new(Mutex::new(Some(frames)));
    service_fn(move |_req: OllamaRequest| {
        let f = slot.lock().unwrap().take().unwrap_or_default();
        std::future::ready(Ok::<_, BoxError>(Response::new(Frames(f))))
    })
}

/// One request through the layer; returns the client's body.
async fn through_layer(
    layer: &OllamaTranslateLayer,
    path: &'static str,
    request: Bytes,
    frames: VecDeque<Bytes>,
) -> Bytes {
    let mut svc = layer.layer(ollama(frames));
    let req = Request::post(path).body(Full::new(request)).unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    res.into_body().collect().await.unwrap().to_bytes()
}

const DIALECTS: [(&str, &str, &str); 3] = [
    (
        "chat",
        "/v1/chat/completions",
        r#"{"model":"qwen3:8b","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
    ),
    (
        "messages",
        "/v1/messages",
        r#"{"model":"qwen3:8b","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    ),
    (
        "responses",
        "/v1/responses",
        r#"{"model":"qwen3:8b","stream":true,"input":"hi"}"#,
    ),
];

fn body(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let layer = OllamaTranslateLayer::new();
    let data = stream(LINES);
    let empty = stream(0);
    // Sanity: every dialect ends its stream properly.
    for (name, path, req) in DIALECTS {
        let out = rt.block_on(through_layer(
            &layer,
            path,
            Bytes::from_static(req.as_bytes()),
            cut(&data, "7_byte_frames"),
        ));
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("[DONE]")
                || text.contains("message_stop")
                || text.contains("response.completed"),
            "{name}: {}",
            &text[text.len().saturating_sub(300)..]
        );
    }
    for (name, path, req) in DIALECTS {
        let request = Bytes::from_static(req.as_bytes());
        let mut group = c.benchmark_group(format!("body/{name}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("baseline", |b| {
            b.to_async(&rt).iter_batched(
                || cut(&empty, "one_line_per_frame"),
                |frames| {
                    let layer = &layer;
                    let request = request.clone();
                    async move { black_box(through_layer(layer, path, request, frames).await) }
                },
                BatchSize::SmallInput,
            );
        });
        for unit in ["lines", "bytes"] {
            group.throughput(if unit == "lines" {
                Throughput::Elements(LINES as u64 + 1)
            } else {
                Throughput::Bytes(data.len() as u64)
            });
            for how in [
                "one_line_per_frame",
                "many_lines_per_frame",
                "7_byte_frames",
            ] {
                let frames = cut(&data, how);
                group.bench_with_input(BenchmarkId::new(unit, how), &how, |b, _| {
                    b.to_async(&rt).iter_batched(
                        || frames.clone(),
                        |frames| {
                            let layer = &layer;
                            let request = request.clone();
                            async move {
                                black_box(through_layer(layer, path, request, frames).await)
                            }
                        },
                        BatchSize::SmallInput,
                    );
                });
            }
        }
        group.finish();
    }
}

// ------------------------------------------------------------ big requests

/// A tool schema of roughly 3.8 KB (20 of them: ~75 KB, like Claude Code's).
fn schema(i: usize) -> (String, String, Value) {
    let name = format!("Tool{i:02}");
    let description = format!(
        "{} Use this tool when the task needs it; prefer it over shell commands. Notes:\n{}",
        "Performs an operation on the user's workspace and returns its output.",
        "- Always pass absolute paths.\n- Results longer than 30000 characters are truncated.\n"
            .repeat(18)
    );
    let mut props = serde_json::Map::new();
    for p in 0..8 {
        props.insert(
            format!("param_{p}"),
            json!({
                "type": if p % 3 == 0 { "string" } else if p % 3 == 1 { "integer" } else { "boolean" },
                "description": format!("Parameter {p} of tool {i}: {}", "what it means, its units and its default. ".repeat(4)),
            }),
        );
    }
    let parameters = json!({
        "type": "object",
        "properties": props,
        "required": ["param_0", "param_1"],
        "additionalProperties": false,
        "$schema": "http://json-schema.org/draft-07/schema#",
    });
    (name, description, parameters)
}

fn system_prompt() -> String {
    "You are an interactive CLI tool that helps users with software engineering tasks. Use the instructions below and the tools available to you to assist the user.\n\nIMPORTANT: Assist with defensive security tasks only. Refuse to create, modify, or improve code that may be used maliciously.\n\n# Tone and style\nYou should be concise, direct, and to the point. When you run a non-trivial bash command, you should explain what the command does and why you are running it.\n".repeat(24)
}

fn tool_output(i: usize) -> String {
    format!(
        "src/lib.rs:{i}: fn handler(req: Request) -> Response {{\n    let body = \"ok\";\n}}\n{}",
        "     42\tlet x = compute(&input)?; // \"quoted\" and\ttabbed\n".repeat(8)
    )
}

/// (Anthropic Messages, OpenAI Chat Completions, OpenAI Responses) shapes of
/// one Claude Code-sized conversation.
fn big_requests() -> [(&'static str, &'static str, Bytes); 3] {
    let system = system_prompt();
    let tools: Vec<_> = (0..20).map(schema).collect();
    let mut anth_msgs = vec![
        json!({"role": "user", "content": [{"type": "text", "text": "Fix the failing test in src/lib.rs and explain the change."}]}),
    ];
    let mut chat_msgs = vec![
        json!({"role": "system", "content": system}),
        json!({"role": "user", "content": "Fix the failing test in src/lib.rs and explain the change."}),
    ];
    let mut resp_input = vec![
        json!({"role": "user", "content": [{"type": "input_text", "text": "Fix the failing test in src/lib.rs and explain the change."}]}),
    ];
    // 49 more messages: assistant (text + tool call) and user (tool result) turns.
    for i in 0..49 {
        let id = format!("toolu_{i:024}");
        let args =
            json!({"param_0": format!("/work/src/file{i}.rs"), "param_1": i, "param_2": true});
        if i % 2 == 0 {
            let text = format!("Let me look at file {i} to see what the test expects.");
            anth_msgs.push(json!({"role": "assistant", "content": [
                {"type": "text", "text": text},
                {"type": "tool_use", "id": id, "name": format!("Tool{:02}", i % 20), "input": args},
            ]}));
            chat_msgs.push(json!({"role": "assistant", "content": text, "tool_calls": [
                {"id": id, "type": "function", "function": {"name": format!("Tool{:02}", i % 20), "arguments": args.to_string()}},
            ]}));
            resp_input.push(json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}));
            resp_input.push(json!({"type": "function_call", "call_id": id, "name": format!("Tool{:02}", i % 20), "arguments": args.to_string()}));
        } else {
            let prev = format!("toolu_{:024}", i - 1);
            let out = tool_output(i);
            anth_msgs.push(json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": prev, "content": out},
            ]}));
            chat_msgs.push(json!({"role": "tool", "tool_call_id": prev, "content": out}));
            resp_input
                .push(json!({"type": "function_call_output", "call_id": prev, "output": out}));
        }
    }
    let anth = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": true,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "tools": tools.iter().map(|(n, d, p)| json!({"name": n, "description": d, "input_schema": p})).collect::<Vec<_>>(),
        "messages": anth_msgs,
        "thinking": {"type": "adaptive"},
        "metadata": {"user_id": "user_abc"},
    });
    let chat = json!({
        "model": "qwen3:8b",
        "stream": true,
        "tools": tools.iter().map(|(n, d, p)| json!({"type": "function", "function": {"name": n, "description": d, "parameters": p}})).collect::<Vec<_>>(),
        "messages": chat_msgs,
        "max_completion_tokens": 32000,
        "temperature": 0.2,
    });
    let resp = json!({
        "model": "qwen3:8b",
        "stream": true,
        "store": false,
        "instructions": system,
        "tools": tools.iter().map(|(n, d, p)| json!({"type": "function", "name": n, "description": d, "parameters": p, "strict": false})).collect::<Vec<_>>(),
        "input": resp_input,
        "reasoning": {"effort": "medium"},
    });
    [
        ("messages", "/v1/messages", Bytes::from(anth.to_string())),
        (
            "chat",
            "/v1/chat/completions",
            Bytes::from(chat.to_string()),
        ),
        ("responses", "/v1/responses", Bytes::from(resp.to_string())),
    ]
}

fn request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let layer = OllamaTranslateLayer::new();
    let empty = stream(0);
    let mut group = c.benchmark_group("request");
    for (name, path, req) in big_requests() {
        // Sanity: the request is accepted and answered.
        let out = rt.block_on(through_layer(
            &layer,
            path,
            req.clone(),
            cut(&empty, "one_line_per_frame"),
        ));
        assert!(
            !out.starts_with(b"{\"error\"") && !out.starts_with(b"{\"type\":\"error\""),
            "{name}: {}",
            String::from_utf8_lossy(&out)
        );
        group.throughput(Throughput::Bytes(req.len() as u64));
        group.bench_function(
            BenchmarkId::new(name, format!("{}KB", req.len() / 1000)),
            |b| {
                b.to_async(&rt).iter_batched(
                    || cut(&empty, "one_line_per_frame"),
                    |frames| {
                        let layer = &layer;
                        let req = req.clone();
                        async move { black_box(through_layer(layer, path, req, frames).await) }
                    },
                    BatchSize::SmallInput,
                );
            },
        );
    }
    group.finish();
}

// ------------------------------------------------------------ pass-through

fn passthrough(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let layer = OllamaTranslateLayer::new();
    let data = stream(LINES);
    let request =
        Bytes::from_static(br#"{"model":"qwen3:8b","messages":[{"role":"user","content":"hi"}]}"#);
    let mut group = c.benchmark_group("passthrough");
    group.throughput(Throughput::Elements(LINES as u64 + 1));
    for how in ["one_line_per_frame", "many_lines_per_frame"] {
        let frames = cut(&data, how);
        group.bench_with_input(BenchmarkId::new("without_layer", how), &how, |b, _| {
            b.to_async(&rt).iter_batched(
                || frames.clone(),
                |frames| {
                    let request = request.clone();
                    async move {
                        let mut svc = ollama(frames);
                        let req = Request::post("/api/chat")
                            .body(RequestBody::original(Full::new(request)))
                            .unwrap();
                        let res = svc.ready().await.unwrap().call(req).await.unwrap();
                        black_box(res.into_body().collect().await.unwrap().to_bytes())
                    }
                },
                BatchSize::SmallInput,
            );
        });
        group.bench_with_input(BenchmarkId::new("with_layer", how), &how, |b, _| {
            b.to_async(&rt).iter_batched(
                || frames.clone(),
                |frames| {
                    let layer = &layer;
                    let request = request.clone();
                    async move { black_box(through_layer(layer, "/api/chat", request, frames).await) }
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

// ------------------------------------------------------------ web search

/// An in-memory "Ollama" that answers each request with the next of
/// `answers` (a round that calls `web_search`, then the follow-up).
fn ollama_rounds(
    answers: Vec<Bytes>,
) -> impl Service<OllamaRequest, Response = Response<Frames>, Error = BoxError, Future = OllamaAnswer>
       + Clone {
    let queue = Arc::new(Mutex::new(VecDeque::from(answers)));
    service_fn(move |_req: OllamaRequest| {
        let next = queue.lock().unwrap().pop_front().unwrap_or_default();
        std::future::ready(Ok::<_, BoxError>(Response::new(Frames(cut(
            &next,
            "one_line_per_frame",
        )))))
    })
}

/// The cost of a web-search round beyond the search's and the model's own:
/// a Messages request whose model searches once (a zero-latency backend)
/// and then answers with `TOKENS` tokens, against the same two model
/// streams as two plain requests. Added cost of a round = `one_search` −
/// `two_plain_requests` (+ one request's fixed cost, `plain_request`).
fn web_search(c: &mut Criterion) {
    use ollama_translate::search::{SearchFuture, SearchHit, SearchRequest, WebSearchConfig};
    const TOKENS: usize = 50;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let backend = |req: SearchRequest| -> SearchFuture {
        let hits = (0..5)
            .map(|i| {
                SearchHit::new(
                    format!("https://site{i}.example/{}", req.query.len()),
                    format!("Result {i}"),
                    "Some page text about the query. ".repeat(64),
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(hits)))
    };
    let layer = OllamaTranslateLayer::new().web_search(WebSearchConfig::with_backend(backend));
    let call = Bytes::from_static(b"{\"model\":\"qwen3:8b\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"web_search\",\"arguments\":{\"query\":\"rust tower layer\"}}}]},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":40,\"eval_count\":9}\n");
    let answer = stream(TOKENS);
    let searching = Bytes::from_static(
        br#"{"model":"qwen3:8b","max_tokens":1024,"stream":true,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"what is a tower layer?"}]}"#,
    );
    let plain = Bytes::from_static(DIALECTS[1].2.as_bytes());
    let path = "/v1/messages";
    let run = |layer: &OllamaTranslateLayer, req: Bytes, answers: Vec<Bytes>| {
        let mut svc = layer.layer(ollama_rounds(answers));
        async move {
            let req = Request::post(path).body(Full::new(req)).unwrap();
            let res = svc.ready().await.unwrap().call(req).await.unwrap();
            res.into_body().collect().await.unwrap().to_bytes()
        }
    };
    // Sanity: the search ran, and the follow-up was streamed.
    let out = rt.block_on(run(
        &layer,
        searching.clone(),
        vec![call.clone(), answer.clone()],
    ));
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("web_search_tool_result") && text.contains("\"web_search_requests\":1"),
        "{text}"
    );
    let mut group = c.benchmark_group("web_search");
    group.bench_function("one_search", |b| {
        b.to_async(&rt).iter(|| {
            let answers = vec![call.clone(), answer.clone()];
            let fut = run(&layer, searching.clone(), answers);
            async move { black_box(fut.await) }
        });
    });
    group.bench_function("two_plain_requests", |b| {
        b.to_async(&rt).iter(|| {
            let first = run(&layer, plain.clone(), vec![call.clone()]);
            let second = run(&layer, plain.clone(), vec![answer.clone()]);
            async move { black_box((first.await, second.await)) }
        });
    });
    group.bench_function("plain_request", |b| {
        b.to_async(&rt).iter(|| {
            let fut = run(&layer, plain.clone(), vec![answer.clone()]);
            async move { black_box(fut.await) }
        });
    });
    group.finish();
}

/// The cost of recording metrics: a whole chat stream through the layer
/// before and after a Prometheus recorder is installed (the `metrics` facade
/// does nothing without one). Runs last: a recorder stays installed.
fn recorder(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let layer = OllamaTranslateLayer::new().server_address("127.0.0.1:11434");
    let data = stream(LINES);
    let (_, path, req) = DIALECTS[0];
    let request = Bytes::from_static(req.as_bytes());
    let mut group = c.benchmark_group("recorder/chat");
    group.throughput(Throughput::Elements(LINES as u64 + 1));
    let run = |name: &str, group: &mut criterion::BenchmarkGroup<'_, _>| {
        let frames = cut(&data, "one_line_per_frame");
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || frames.clone(),
                |frames| {
                    let layer = &layer;
                    let request = request.clone();
                    async move { black_box(through_layer(layer, path, request, frames).await) }
                },
                BatchSize::SmallInput,
            );
        });
    };
    run("without_recorder", &mut group);
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_recommended_naming(true)
        .build_recorder();
    metrics::set_global_recorder(recorder).unwrap();
    run("with_prometheus_recorder", &mut group);
    group.finish();
}

criterion_group!(benches, body, request, passthrough, web_search, recorder);
criterion_main!(benches);
