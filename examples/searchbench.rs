//! What a web-search round costs the proxy beyond the model's and the search
//! backend's own time, at p50 and p99 (loopback only, ephemeral ports).
//!
//! ```text
//! cargo run --release --example searchbench
//! ```
//!
//! Three processes: a fake Ollama (`examples/fake_ollama`, the `support/`
//! crate's) that is also the search backend (`WEB_SEARCH=ollama`: its
//! `/api/experimental/web_search` answers at once), the proxy (the built
//! `examples/proxy`) in front of it, and this one, the client. One client, one request at a time, each timed
//! from sending to the last byte of the answer:
//!
//! * `search through the proxy`: a streamed Anthropic Messages request with
//!   the `web_search_20250305` server tool whose user text makes the model
//!   search once (`[search:…]`). The proxy runs the first round, the
//!   search, and the follow-up round, and streams all of it in one answer.
//! * `search direct`: the same work without the proxy, done by this client
//!   against the fake: the first `/api/chat` round (ending in the
//!   `web_search` call), the search, the follow-up `/api/chat` with the
//!   results as a tool message.
//! * `plain through the proxy` / `plain direct`: one round without a tool
//!   (what any request costs, for comparison).
//!
//! The table gives p50, p90, p99 and the mean of each, and below it what
//! the proxy adds at each percentile (through the proxy minus direct; the
//! distributions are measured back to back, interleaved request by
//! request, so drift in the machine's load falls on both). The target for
//! the search round (issue 23) is ≤ 1 ms at p99.
//!
//! Environment: `SEARCHBENCH_REQUESTS` (per kind, default 2000),
//! `SEARCHBENCH_WARMUP` (default 200).
// A benchmark harness: a failed unwrap is a broken run, not a result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use ollama_translate::client::OllamaClient;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tower::ServiceExt as _;

/// The library's own HTTP/1.1 client, for both sides alike.
type HttpClient = OllamaClient<Full<Bytes>>;

const MODEL: &str = "qwen3";
const QUERY: &str = "tower layers in rust";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A child process: the example `name` next to this binary (built first,
/// by cargo), stopped with SIGTERM when dropped; `url` is the first
/// `http://` address it prints.
struct Proxy {
    url: String,
    child: std::process::Child,
}

impl Proxy {
    fn start(name: &str, env: &[(&str, &str)]) -> Proxy {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap();
        let mut build = std::process::Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "--example", name, "--target-dir"]);
        build.arg(dir.parent().unwrap().parent().unwrap());
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let built = build.current_dir(env!("CARGO_MANIFEST_DIR")).status();
        assert!(built.unwrap().success(), "cargo build --example {name}");
        let mut child = std::process::Command::new(dir.join(name))
            .env_clear()
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let out = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("{name} announces its address: {line:?}"))
            .to_string();
        Proxy { url, child }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs `body` to `url` and reads the whole answer; its bytes.
async fn post(client: &HttpClient, url: &str, body: &Value) -> Bytes {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = client.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{url}");
    res.into_body().collect().await.unwrap().to_bytes()
}

fn user_text() -> String {
    format!("[search:{QUERY}] What is new?")
}

/// The Messages request that makes the proxy run one search.
fn messages_search() -> Value {
    json!({
        "model": MODEL, "max_tokens": 512, "stream": true,
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}],
        "messages": [{"role": "user", "content": user_text()}],
    })
}

fn messages_plain() -> Value {
    json!({
        "model": MODEL, "max_tokens": 512, "stream": true,
        "messages": [{"role": "user", "content": "What is new?"}],
    })
}

/// The `web_search` function as the proxy offers it to the model.
fn search_function() -> Value {
    json!({"type": "function", "function": {
        "name": "web_search",
        "description": "Search the web.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    }})
}

/// The search round without the proxy: first round, search, follow-up.
async fn search_direct(client: &HttpClient) -> usize {
    let chat = "/api/chat";
    let user = json!({"role": "user", "content": user_text()});
    let first =
        json!({"model": MODEL, "stream": true, "messages": [user], "tools": [search_function()]});
    let round1 = post(client, chat, &first).await;
    assert!(
        contains(&round1, b"web_search"),
        "the model calls web_search"
    );
    let search = json!({"query": QUERY, "max_results": 5});
    let hits = post(client, "/api/experimental/web_search", &search).await;
    let call = json!({"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "web_search", "arguments": {"query": QUERY}}}]});
    let results = json!({"role": "tool", "tool_name": "web_search",
        "content": String::from_utf8_lossy(&hits)});
    let follow = json!({"model": MODEL, "stream": true, "tools": [search_function()],
        "messages": [user, call, results]});
    let round2 = post(client, chat, &follow).await;
    round1.len() + hits.len() + round2.len()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The four kinds, in the order they interleave.
const KINDS: [&str; 4] = [
    "search through the proxy",
    "search direct",
    "plain through the proxy",
    "plain direct",
];

/// One request of kind `k`; its duration.
async fn one([proxy, fake]: [&HttpClient; 2], k: usize) -> Duration {
    let start = Instant::now();
    match k {
        0 => {
            let out = post(proxy, "/v1/messages", &messages_search()).await;
            assert!(
                contains(&out, b"web_search_tool_result"),
                "the proxy searched"
            );
            assert!(contains(&out, b"message_stop"));
        }
        1 => {
            search_direct(fake).await;
        }
        2 => {
            let out = post(proxy, "/v1/messages", &messages_plain()).await;
            assert!(contains(&out, b"message_stop"));
        }
        _ => {
            let body = json!({"model": MODEL, "stream": true,
                "messages": [{"role": "user", "content": "What is new?"}]});
            post(fake, "/api/chat", &body).await;
        }
    }
    start.elapsed()
}

fn pct(v: &[Duration], p: usize) -> Duration {
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / v.len().max(1) as u32
}

fn print_table(times: &mut [Vec<Duration>; 4]) {
    for t in times.iter_mut() {
        t.sort();
    }
    println!("| request | n | p50 ms | p90 ms | p99 ms | mean ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (k, t) in times.iter().enumerate() {
        let row = [pct(t, 50), pct(t, 90), pct(t, 99), mean(t)].map(ms);
        println!("| {} | {} | {} |", KINDS[k], t.len(), row.join(" | "));
    }
    println!();
    println!("| added by the proxy | p50 ms | p90 ms | p99 ms | mean ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, via, direct) in [("search round", 0, 1), ("plain round", 2, 3)] {
        let diff = |f: fn(&[Duration]) -> Duration| {
            let d = f(&times[via]).as_secs_f64() - f(&times[direct]).as_secs_f64();
            format!("{:+.3}", d * 1e3)
        };
        let cols = [
            diff(|t| pct(t, 50)),
            diff(|t| pct(t, 90)),
            diff(|t| pct(t, 99)),
            diff(mean),
        ];
        println!("| {name} | {} |", cols.join(" | "));
    }
}

#[tokio::main]
async fn main() {
    let n = env_num("SEARCHBENCH_REQUESTS", 2000);
    let warmup = env_num("SEARCHBENCH_WARMUP", 200);
    let fake = Proxy::start("fake_ollama", &[]);
    let fake_url = fake.url.clone();
    let proxy = Proxy::start(
        "proxy",
        &[
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("OLLAMA_BASE_URL", &fake_url),
            ("WEB_SEARCH", "ollama"),
        ],
    );
    let to_proxy = HttpClient::new(proxy.url.parse().unwrap()).unwrap();
    let to_fake = HttpClient::new(fake_url.parse().unwrap()).unwrap();
    eprintln!("searchbench: {n} requests of each kind after {warmup} warm-up rounds");
    let mut times: [Vec<Duration>; 4] = Default::default();
    for i in 0..warmup + n {
        for (k, t) in times.iter_mut().enumerate() {
            let d = one([&to_proxy, &to_fake], k).await;
            if i >= warmup {
                t.push(d);
            }
        }
    }
    print_table(&mut times);
}
