//! Criterion benchmarks of [`Pool`]'s routing decision, per request, over
//! in-memory stand-in hosts (no sockets):
//!
//! * `pool/route/<case>` — one request through `pool.clone().oneshot(req)`,
//!   and its response body drained. The pool reads the body to find the
//!   model and the conversation (model, first system and first user
//!   message), filters the hosts that list the model, prefers the
//!   conversation's host, then loaded ones, then the least busy, and counts
//!   the stream in flight until its body ends.
//! * `pool/route/claude_code_routed_4_hosts` — the `claude_code` request
//!   as the layer sends it: with the [`Routing`] extension (the model and
//!   the conversation's key), so the pool does not parse the body.
//! * `pool/direct/<case>` — the very same request sent straight to one
//!   stand-in host, its body drained: the baseline. The difference between
//!   the two is the pool's cost per request.
//!
//! Cases:
//!
//! * `claude_code` — a Claude Code-sized native `/api/chat` body (~80 KB: a
//!   ~21 KB system prompt, 10 tools with JSON schemas and 50 messages with
//!   tool calls and results), built once; each iteration clones the
//!   `Bytes` and wraps it as `RequestBody::rewritten`. With 4 hosts (the
//!   model on 2 of them, loaded on one) and with 16 hosts (the model on 4,
//!   loaded on 2); every host lists 20 models.
//! * `small` — a ~200-byte `/api/chat` body, 4 hosts.
//! * `tags` — `GET /api/tags`: through the pool it is the union of 4 hosts'
//!   lists (20 models each, realistic entries, half of them also on the
//!   next host: 50 distinct), rendered from what the pool learnt; direct,
//!   it is one host's pre-rendered list of 20.
//!
//! The stand-in hosts answer at once from memory (`/api/chat`: one done
//! line naming the host; a sanity check before measuring makes sure the
//! pool picked a host that has the model loaded). Before measuring, [`Pool::maintain`] runs until every host is
//! healthy and has listed its models, then it is stopped, so nothing runs in
//! the background. Sessions are on (the default), and every iteration
//! repeats the same conversation's turn: it is pinned to its host after the
//! first, as a conversation's later turns are. No metrics recorder is
//! installed (the pool's counters cost nothing then).
//!
//! `cargo bench --bench pool` (add `-- claude_code` to filter). About a
//! minute.
// Benchmarks may unwrap: a failure here is a broken benchmark, not a result.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use ollama_translate::{Pool, RequestBody, Routing, Sleep};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::hint::black_box;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceExt};

type HostRequest = Request<RequestBody<Full<Bytes>>>;

/// The model every chat request names.
const MODEL: &str = "qwen3:8b";

/// Models per host.
const MODELS_PER_HOST: usize = 20;

/// An `/api/tags` entry as Ollama writes it.
fn tag(name: &str, i: usize) -> Value {
    json!({
        "name": name,
        "model": name,
        "modified_at": "2026-08-01T12:00:00.000000000Z",
        "size": 5_000_000_000_u64 + i as u64 * 1_000_003,
        "digest": format!("{:064x}", i * 7_919 + 1),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "qwen3",
            "families": ["qwen3"],
            "parameter_size": "8.2B",
            "quantization_level": "Q4_K_M"
        }
    })
}

/// Host `h`'s models: [`MODEL`] when `has_model`, and filler models, some
/// of them shared with the neighbouring host (the union dedupes them).
fn host_models(h: usize, has_model: bool) -> Vec<String> {
    let mut names = Vec::new();
    if has_model {
        names.push(MODEL.to_string());
    }
    let mut k = 0;
    while names.len() < MODELS_PER_HOST {
        // Half of them also on host h + 1.
        let owner = if k % 2 == 0 { h } else { h + 1 };
        names.push(format!("model-{owner}-{}:latest", k / 2));
        k += 1;
    }
    names
}

/// A stand-in Ollama host answering from memory.
#[derive(Clone)]
struct Host {
    tags: Bytes,
    ps: Bytes,
    /// The answer to a generation: one done line naming this host.
    done: Bytes,
}

impl Host {
    fn new(h: usize, models: &[String], loaded: bool) -> Host {
        let tags: Vec<Value> = models.iter().enumerate().map(|(i, m)| tag(m, i)).collect();
        let running = if loaded {
            vec![
                json!({"name": MODEL, "model": MODEL, "size": 6_000_000_000_u64, "digest": format!("{:064x}", 1), "expires_at": "2026-08-21T10:05:00.101Z", "size_vram": 6_000_000_000_u64}),
            ]
        } else {
            vec![]
        };
        Host {
            tags: Bytes::from(json!({ "models": tags }).to_string()),
            ps: Bytes::from(json!({ "models": running }).to_string()),
            done: Bytes::from(format!(
                "{{\"model\":\"qwen3:8b\",\"created_at\":\"2026-08-21T10:00:01.5Z\",\"message\":{{\"role\":\"assistant\",\"content\":\"Done by host {h:02}.\"}},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":1510029631,\"load_duration\":20128371,\"prompt_eval_count\":26,\"prompt_eval_duration\":41264000,\"eval_count\":2,\"eval_duration\":1447000}}\n"
            )),
        }
    }
}

impl Service<HostRequest> for Host {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HostRequest) -> Self::Future {
        let body = match req.uri().path() {
            "/api/tags" => self.tags.clone(),
            "/api/ps" => self.ps.clone(),
            _ => self.done.clone(),
        };
        std::future::ready(Ok(Response::new(Full::new(body))))
    }
}

/// `n` hosts; [`MODEL`] on every `every`-th one (starting with host 1),
/// loaded on every other of those.
fn hosts(n: usize, every: usize) -> Vec<(String, Host)> {
    (0..n)
        .map(|h| {
            let has = h % every == 1;
            let loaded = has && (h / every) % 2 == 0;
            let name = format!("http://10.0.0.{}:11434", h + 1);
            (name, Host::new(h, &host_models(h, has), loaded))
        })
        .collect()
}

/// A pool over `hosts`, its view of them filled in by one round of
/// [`Pool::maintain`], which is then stopped.
fn pool(rt: &tokio::runtime::Runtime, hosts: Vec<(String, Host)>) -> Pool<Host> {
    let timer = |d: Duration| -> Sleep { Box::pin(tokio::time::sleep(d)) };
    let pool = Pool::builder(timer).build(hosts).unwrap();
    rt.block_on(async {
        let maintain = tokio::spawn(pool.maintain::<Full<Bytes>, _>());
        while pool
            .hosts()
            .iter()
            .any(|h| !h.healthy || h.models.is_none())
        {
            tokio::task::yield_now().await;
        }
        maintain.abort();
        let _ = maintain.await;
    });
    pool
}

// ------------------------------------------------------------ request bodies

fn system_prompt() -> String {
    "You are an interactive CLI tool that helps users with software engineering tasks. Use the instructions below and the tools available to you to assist the user.\n\nIMPORTANT: Assist with defensive security tasks only. Refuse to create, modify, or improve code that may be used maliciously.\n\n# Tone and style\nYou should be concise, direct, and to the point. When you run a non-trivial bash command, you should explain what the command does and why you are running it.\n".repeat(50)
}

/// A native tool of roughly 3.8 KB.
fn tool(i: usize) -> Value {
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
    json!({
        "type": "function",
        "function": {
            "name": format!("Tool{i:02}"),
            "description": format!(
                "Performs an operation on the user's workspace and returns its output. Notes:\n{}",
                "- Always pass absolute paths.\n- Results longer than 30000 characters are truncated.\n".repeat(18)
            ),
            "parameters": {
                "type": "object",
                "properties": props,
                "required": ["param_0", "param_1"],
                "additionalProperties": false
            }
        }
    })
}

fn tool_output(i: usize) -> String {
    format!(
        "src/lib.rs:{i}: fn handler(req: Request) -> Response {{\n    let body = \"ok\";\n}}\n{}",
        "     42\tlet x = compute(&input)?; // \"quoted\" and\ttabbed\n".repeat(8)
    )
}

/// A native `/api/chat` request of a Claude Code session, 50 messages in.
fn claude_code_body() -> Bytes {
    let mut messages = vec![
        json!({"role": "system", "content": system_prompt()}),
        json!({"role": "user", "content": "Fix the failing test in src/lib.rs and explain the change."}),
    ];
    for i in 0..48 {
        if i % 2 == 0 {
            let args =
                json!({"param_0": format!("/work/src/file{i}.rs"), "param_1": i, "param_2": true});
            messages.push(json!({
                "role": "assistant",
                "content": format!("Let me look at file {i} to see what the test expects."),
                "tool_calls": [{"function": {"name": format!("Tool{:02}", i % 10), "arguments": args}}],
            }));
        } else {
            messages.push(json!({"role": "tool", "tool_name": format!("Tool{:02}", (i - 1) % 10), "content": tool_output(i)}));
        }
    }
    let body = json!({
        "model": MODEL,
        "stream": true,
        "messages": messages,
        "tools": (0..10).map(tool).collect::<Vec<_>>(),
        "think": true,
        "options": {"num_ctx": 65536, "temperature": 0.2, "num_predict": 32000},
    });
    Bytes::from(body.to_string())
}

fn small_body() -> Bytes {
    let body = json!({
        "model": MODEL,
        "stream": true,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France? Answer in one word."}
        ],
        "options": {"temperature": 0.2},
    });
    Bytes::from(body.to_string())
}

// ------------------------------------------------------------ the benches

/// One request through `svc`, its response body drained.
async fn send<S, B>(svc: S, method: &str, path: &str, body: Bytes) -> Bytes
where
    S: Service<HostRequest, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    send_routed(svc, method, path, body, None).await
}

/// [`send`], with the layer's [`Routing`] extension when there is one.
async fn send_routed<S, B>(
    svc: S,
    method: &str,
    path: &str,
    body: Bytes,
    routing: Option<Routing>,
) -> Bytes
where
    S: Service<HostRequest, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .body(RequestBody::rewritten(body))
        .unwrap();
    if let Some(routing) = routing {
        req.extensions_mut().insert(routing);
    }
    let res = svc.oneshot(req).await.unwrap();
    res.into_body().collect().await.unwrap().to_bytes()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let claude = claude_code_body();
    let small = small_body();
    assert!(
        (70_000..95_000).contains(&claude.len()),
        "claude_code body: {} bytes",
        claude.len()
    );
    assert!(
        (150..260).contains(&small.len()),
        "small body: {} bytes",
        small.len()
    );

    let four = pool(&rt, hosts(4, 2));
    let sixteen = pool(&rt, hosts(16, 4));
    // Straight to a host that has the model.
    let (_, direct) = hosts(4, 2).swap_remove(1);

    // Sanity: the pool routes to a host with the model loaded (4 hosts:
    // host 1; 16 hosts: 1 or 9), and unions the lists.
    let answer = |pool: &Pool<Host>| {
        let out = rt.block_on(send(pool.clone(), "POST", "/api/chat", claude.clone()));
        let out: Value = serde_json::from_slice(&out).unwrap();
        out["message"]["content"].as_str().unwrap().to_string()
    };
    assert_eq!(answer(&four), "Done by host 01.");
    let routed = rt.block_on(send_routed(
        four.clone(),
        "POST",
        "/api/chat",
        claude.clone(),
        Some(Routing::new(MODEL, Some(0x5eed))),
    ));
    let routed: Value = serde_json::from_slice(&routed).unwrap();
    assert_eq!(routed["message"]["content"], "Done by host 01.");
    let by = answer(&sixteen);
    assert!(by == "Done by host 01." || by == "Done by host 09.", "{by}");
    let tags = rt.block_on(send(four.clone(), "GET", "/api/tags", Bytes::new()));
    let tags: Value = serde_json::from_slice(&tags).unwrap();
    let n = tags["models"].as_array().unwrap().len();
    assert!(n > 2 * MODELS_PER_HOST, "union of {n} models");
    eprintln!(
        "claude_code body {} bytes, small body {} bytes, /api/tags union of 4 hosts: {n} models",
        claude.len(),
        small.len()
    );

    let cases: [(&str, &str, &str, &Bytes); 3] = [
        ("claude_code", "POST", "/api/chat", &claude),
        ("small", "POST", "/api/chat", &small),
        ("tags", "GET", "/api/tags", &Bytes::new()),
    ];
    for (name, method, path, body) in cases {
        c.bench_function(&format!("pool/direct/{name}"), |b| {
            b.to_async(&rt).iter(|| {
                let body = body.clone();
                let direct = direct.clone();
                async move { black_box(send(direct, method, path, body).await) }
            });
        });
        c.bench_function(&format!("pool/route/{name}_4_hosts"), |b| {
            b.to_async(&rt).iter(|| {
                let body = body.clone();
                let pool = four.clone();
                async move { black_box(send(pool, method, path, body).await) }
            });
        });
        if name == "claude_code" {
            // As the layer sends it: the model and the conversation known.
            let routing = Routing::new(MODEL, Some(0x5eed));
            c.bench_function(&format!("pool/route/{name}_routed_4_hosts"), |b| {
                b.to_async(&rt).iter(|| {
                    let body = body.clone();
                    let pool = four.clone();
                    let routing = Some(routing.clone());
                    async move { black_box(send_routed(pool, method, path, body, routing).await) }
                });
            });
            c.bench_function(&format!("pool/route/{name}_16_hosts"), |b| {
                b.to_async(&rt).iter(|| {
                    let body = body.clone();
                    let pool = sixteen.clone();
                    async move { black_box(send(pool, method, path, body).await) }
                });
            });
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(60);
    targets = bench
}
criterion_main!(benches);
