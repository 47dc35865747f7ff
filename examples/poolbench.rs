//! What the pool's sticky conversations save: time to first token of
//! Claude Code-like conversations through the proxy over three fake Ollama
//! hosts with a prompt cache, with stickiness on and off, in one run
//! (loopback only, ephemeral ports).
//!
//! ```text
//! cargo run --release --example poolbench
//! ```
//!
//! Three fake Ollamas (the `support/` crate's, `qwen3` loaded on each) in
//! this process and the proxy (the built `examples/proxy`, a child process)
//! in front of them, twice over the same three hosts
//! (`OLLAMA_BASE_URL=a,b,c`, `POOL_REFRESH_SECS=1`): once with
//! `POOL_SESSIONS` left at its default (sticky), once with `POOL_SESSIONS=0`
//! (every turn goes to the least busy host, ties taken in turns). Each
//! proxy is used only once its `GET /api/tags` lists the model.
//!
//! The fakes model Ollama's prompt cache (`set_prompt_cost`): each host
//! keeps one slot per model, the prompt of its last generation, and a
//! generation first sleeps `cost × uncached / 1 KiB`, where `uncached` is
//! the prompt's bytes beyond its longest common prefix with that slot. The
//! default cost, 2 ms per KiB, makes re-reading a 60 KB prompt ~120 ms.
//!
//! The conversations go as Claude Code's do: every turn re-sends the whole
//! history as a streaming `/v1/chat/completions` request: a system prompt
//! shared by all conversations (~20 KB), then user turns of a few KB each
//! (like tool results) and the assistant's earlier replies (what it
//! streamed; replies are capped at 24 tokens, thinking off). A round sends
//! the next turn of every conversation at once (in parallel, in a shuffled
//! order, 2 ms apart), and waits for all of them; so turns of different
//! conversations interleave on the hosts, as they would with several
//! Claude Code sessions sharing a pool. A batch is a set of conversations
//! from first turn to last; batches follow one another (new conversations
//! each time, the same arrival orders in both modes). The first turn of
//! each conversation is cold either way and is not counted.
//!
//! TTFB is from sending the request to the first SSE `data:` line that
//! carries content (`choices[0].delta.content`, non-empty), measured by the
//! client. The table gives mean, p50 and p90 per mode over the counted turns,
//! and sticky / non-sticky in the same run; "warm" counts the turns whose
//! host's slot still held that conversation's previous prompt, "moved" the
//! turns served by another host than the turn before (both read from the
//! fakes' request logs). Below it, for each mode and batch, the host (a, b,
//! c) of every turn: one word per conversation, one letter per turn.
//!
//! Honest numbers need as many conversations as hosts (the default): a
//! host has one slot per model, so with more conversations than hosts some
//! share a host and evict each other's prompt even when sticky, and the
//! sticky figures get worse for a reason that has nothing to do with the
//! pool. A cold turn still reuses the shared system prompt when the slot
//! holds another conversation's prompt (as Ollama's cache would), so a miss
//! costs the history beyond it, not the whole prompt.
//!
//! Environment:
//!
//! * `POOLBENCH_CONVERSATIONS` — conversations at once (default 3, one per
//!   host);
//! * `POOLBENCH_TURNS` — turns per conversation (default 10);
//! * `POOLBENCH_BATCHES` — batches of conversations per mode (default 5);
//! * `POOLBENCH_COST_US_PER_KIB` — the fakes' prompt cost, microseconds per
//!   uncached KiB (default 2000);
//! * `POOLBENCH_SYSTEM_KB`, `POOLBENCH_TURN_KB` — the shared system prompt's
//!   and each user turn's size in KB (defaults 20 and 4);
//! * `POOLBENCH_SHUFFLE` — `0` sends each round's turns in the same order
//!   every round (see below; default `1`).
//!
//! Why shuffle: without stickiness, the `k`-th turn to arrive in a round
//! finds `k - 1` hosts busy and takes the next idle one in a rotation that
//! moves one step per request. With as many conversations as hosts, every
//! round moves it a whole turn, back where it started; so when every round
//! sends the turns in the same order, conversation `i` lands on the same
//! host every round: accidentally sticky (`POOLBENCH_SHUFFLE=0` shows it:
//! both modes then measure the same). Real sessions are not in lockstep.
//!
//! The whole run takes about 5 s with the defaults.
// A benchmark harness: a failed unwrap is a broken run, not a result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ollama_translate_support::fake_ollama::{FakeConfig, FakeOllama};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const MODEL: &str = "qwen3";
const HOSTS: usize = 3;
const HOST_NAMES: [&str; HOSTS] = ["a", "b", "c"];
/// Tokens per reply (`max_tokens`).
const REPLY_TOKENS: u64 = 24;

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?}: {e}")),
        _ => default,
    }
}

struct Config {
    conversations: usize,
    turns: usize,
    batches: usize,
    cost: Duration,
    system_kb: usize,
    turn_kb: usize,
    shuffle: bool,
}

impl Config {
    fn from_env() -> Config {
        let config = Config {
            conversations: env_num("POOLBENCH_CONVERSATIONS", HOSTS as u64) as usize,
            turns: env_num("POOLBENCH_TURNS", 10) as usize,
            batches: env_num("POOLBENCH_BATCHES", 5) as usize,
            cost: Duration::from_micros(env_num("POOLBENCH_COST_US_PER_KIB", 2000)),
            system_kb: env_num("POOLBENCH_SYSTEM_KB", 20) as usize,
            turn_kb: env_num("POOLBENCH_TURN_KB", 4) as usize,
            shuffle: env_num("POOLBENCH_SHUFFLE", 1) != 0,
        };
        assert!(config.conversations >= 1, "POOLBENCH_CONVERSATIONS >= 1");
        assert!(config.turns >= 2, "POOLBENCH_TURNS >= 2");
        assert!(config.batches >= 1, "POOLBENCH_BATCHES >= 1");
        config
    }
}

// ---------------------------------------------------------------- text

/// Deterministic pseudo-random numbers (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

const WORDS: [&str; 24] = [
    "the",
    "function",
    "returns",
    "Result",
    "so",
    "caller",
    "handles",
    "errors",
    "src/lib.rs",
    "line",
    "42",
    "let",
    "x",
    "compute",
    "input",
    "test",
    "expects",
    "value",
    "module",
    "trait",
    "impl",
    "config",
    "parse",
    "stream",
];

/// About `bytes` of text that looks like a file listing, seeded by `seed`.
fn text(seed: u64, bytes: usize) -> String {
    let mut rng = Rng(seed);
    let mut s = String::with_capacity(bytes + 16);
    let mut line = 1;
    while s.len() < bytes {
        s.push_str(&format!("{line:6}\t"));
        for _ in 0..10 {
            s.push_str(WORDS[rng.below(WORDS.len())]);
            s.push(' ');
        }
        s.push('\n');
        line += 1;
    }
    s
}

fn system_prompt(kb: usize) -> String {
    let mut s = String::from(
        "You are an interactive CLI tool that helps users with software engineering tasks. \
         Use the instructions below and the tools available to you to assist the user.\n\n",
    );
    s.push_str(&text(7, kb * 1000));
    s
}

// ---------------------------------------------------------------- servers

/// A running proxy: the `examples/proxy` binary next to this one (built
/// first, by cargo), a child process.
struct Proxy {
    url: String,
    child: tokio::process::Child,
}

impl Proxy {
    async fn start(env: &[(&str, String)]) -> Proxy {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap();
        let mut build = std::process::Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "--example", "proxy", "--target-dir"]);
        build.arg(dir.parent().unwrap().parent().unwrap());
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let built = build.current_dir(env!("CARGO_MANIFEST_DIR")).status();
        assert!(built.unwrap().success(), "cargo build --example proxy");
        let mut child = tokio::process::Command::new(dir.join("proxy"))
            .env_clear()
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the proxy");
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
            .await
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("the proxy announces its address")
            .to_string();
        Proxy { url, child }
    }

    /// Waits until `GET /api/tags` through the proxy lists the model.
    async fn wait_ready(&self, client: &HttpClient) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let req = Request::get(format!("{}/api/tags", self.url))
                .body(Full::new(Bytes::new()))
                .unwrap();
            if let Ok(res) = client.request(req).await {
                if res.status() == StatusCode::OK {
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    let tags: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let listed = tags["models"].as_array().is_some_and(|models| {
                        models
                            .iter()
                            .any(|m| m["name"].as_str().is_some_and(|n| n.starts_with(MODEL)))
                    });
                    if listed {
                        // The pool asks all hosts at once; let the other
                        // answers land too.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "the proxy never listed {MODEL}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Shuts down (SIGTERM; in-flight requests are done by now) and waits.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

// ---------------------------------------------------------------- client

/// One streamed turn: time to the first content, and the reply.
struct Turn {
    ttfb: Duration,
    reply: String,
}

/// Sends `messages` as a streaming chat completion; reads the whole answer.
async fn turn(client: &HttpClient, url: &str, messages: &[Value]) -> Turn {
    let body = json!({
        "model": MODEL,
        "stream": true,
        "max_tokens": REPLY_TOKENS,
        "reasoning_effort": "none",
        "messages": messages,
    });
    let req = Request::post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let sent = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("an answer within 30 s")
        .expect("an HTTP answer");
    let status = res.status();
    let mut body = res.into_body();
    let mut pending: Vec<u8> = Vec::new();
    let mut ttfb = None;
    let mut reply = String::new();
    let mut done = false;
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(30), body.frame())
        .await
        .expect("the body moves within 30 s")
    {
        let frame = frame.expect("the stream ends cleanly");
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8(line).expect("UTF-8 SSE");
            let Some(data) = line.trim_end().strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let chunk: Value = serde_json::from_str(data)
                .unwrap_or_else(|e| panic!("{e}: {data} (HTTP {status})"));
            if let Some(content) = chunk["choices"][0]["delta"]["content"].as_str() {
                if !content.is_empty() {
                    ttfb.get_or_insert_with(|| sent.elapsed());
                    reply.push_str(content);
                }
            }
        }
    }
    assert!(
        status == StatusCode::OK && done,
        "HTTP {status}, no [DONE]: {}",
        String::from_utf8_lossy(&pending)
    );
    Turn {
        ttfb: ttfb.expect("some content"),
        reply,
    }
}

// ---------------------------------------------------------------- one mode

/// A conversation's history, and the TTFB of its turns.
struct Conversation {
    messages: Vec<Value>,
    ttfbs: Vec<Duration>,
}

struct ModeResult {
    name: &'static str,
    /// TTFB of the counted turns (2nd on), all conversations.
    ttfbs: Vec<Duration>,
    /// `grid[batch][conversation][turn]`: the host that served it.
    grid: Vec<Vec<Vec<Option<usize>>>>,
    /// Counted turns that found their own previous prompt in the slot.
    warm: usize,
    /// Counted turns served by another host than the turn before.
    moved: usize,
    wall: Duration,
}

/// A user turn: the conversation's tag, the turn number, a few KB of text.
fn user_turn(config: &Config, tag: &str, n: usize) -> String {
    let seed = tag.bytes().fold(n as u64, |h, b| {
        h.wrapping_mul(0x0100_0000_01b3) ^ u64::from(b)
    });
    format!(
        "Conversation {tag}, turn {n}: here is the output you asked for.\n{}",
        text(seed, config.turn_kb * 1000)
    )
}

/// `(conversation tag, turn)` of a recorded `/api/chat` body.
fn which(body: &Value) -> Option<(String, usize)> {
    let messages = body["messages"].as_array()?;
    let users: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str())
        .collect();
    let first = users.first()?;
    let tag = first.strip_prefix("Conversation ")?.split(',').next()?;
    Some((tag.to_string(), users.len()))
}

/// One batch of conversations, all turns, through the proxy at `url`;
/// returns each conversation's TTFBs.
async fn run_batch(
    config: &Config,
    client: &HttpClient,
    url: &str,
    system: &str,
    tag: &str,
    rng: &mut Rng,
) -> Vec<Vec<Duration>> {
    let mut conversations: Vec<Conversation> = (0..config.conversations)
        .map(|_| Conversation {
            messages: vec![json!({"role": "system", "content": system})],
            ttfbs: Vec::new(),
        })
        .collect();
    for n in 1..=config.turns {
        let mut order: Vec<usize> = (0..config.conversations).collect();
        if config.shuffle {
            rng.shuffle(&mut order);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (k, &c) in order.iter().enumerate() {
            let conv = &mut conversations[c];
            let user = user_turn(config, &format!("{tag}-{c}"), n);
            conv.messages.push(json!({"role": "user", "content": user}));
            let messages = conv.messages.clone();
            let client = client.clone();
            let url = url.to_string();
            tasks.spawn(async move {
                // Arrive in this order.
                tokio::time::sleep(Duration::from_millis(2 * k as u64)).await;
                (c, turn(&client, &url, &messages).await)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (c, t) = done.expect("a turn task");
            let conv = &mut conversations[c];
            conv.messages
                .push(json!({"role": "assistant", "content": t.reply}));
            conv.ttfbs.push(t.ttfb);
        }
    }
    conversations.into_iter().map(|c| c.ttfbs).collect()
}

async fn run_mode(
    name: &'static str,
    sessions: Option<&str>,
    config: &Config,
    fakes: &[FakeOllama],
    client: &HttpClient,
    system: &str,
) -> ModeResult {
    for fake in fakes {
        fake.clear_requests();
    }
    let bases: Vec<String> = fakes.iter().map(FakeOllama::base_url).collect();
    let mut env = vec![
        ("OLLAMA_BASE_URL", bases.join(",")),
        ("POOL_REFRESH_SECS", "1".to_string()),
        ("LISTEN_ADDR", "127.0.0.1:0".to_string()),
    ];
    if let Some(s) = sessions {
        env.push(("POOL_SESSIONS", s.to_string()));
    }
    let proxy = Proxy::start(&env).await;
    proxy.wait_ready(client).await;

    // The same arrival orders in both modes.
    let mut rng = Rng(0x5eed);
    let mut ttfbs = Vec::new();
    let started = Instant::now();
    for batch in 0..config.batches {
        let tag = format!("{name}-{batch}");
        for conv in run_batch(config, client, &proxy.url, system, &tag, &mut rng).await {
            ttfbs.extend(conv.into_iter().skip(1));
        }
    }
    let wall = started.elapsed();
    proxy.stop().await;

    // Who served what, from the fakes' logs (in arrival order per host).
    let mut grid = vec![vec![vec![None; config.turns]; config.conversations]; config.batches];
    let mut warm = 0;
    for (h, fake) in fakes.iter().enumerate() {
        let mut previous: Option<(String, usize)> = None;
        for r in fake.requests_to("/api/chat") {
            let Some((tag, n)) = which(&r.body) else {
                continue;
            };
            let mut ids = tag
                .strip_prefix(&format!("{name}-"))
                .unwrap_or_default()
                .split('-')
                .map(|x| x.parse::<usize>().ok());
            if let (Some(Some(batch)), Some(Some(c))) = (ids.next(), ids.next()) {
                if let Some(cell) = grid
                    .get_mut(batch)
                    .and_then(|convs| convs.get_mut(c))
                    .and_then(|row| row.get_mut(n - 1))
                {
                    *cell = Some(h);
                }
            }
            if n >= 2 && previous.as_ref() == Some(&(tag.clone(), n - 1)) {
                warm += 1;
            }
            previous = Some((tag, n));
        }
    }
    let moved = grid
        .iter()
        .flatten()
        .map(|row| row.windows(2).filter(|w| w[0] != w[1]).count())
        .sum();
    ModeResult {
        name,
        ttfbs,
        grid,
        warm,
        moved,
        wall,
    }
}

// ---------------------------------------------------------------- report

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Stats {
    n: usize,
    mean: f64,
    p50: f64,
    p90: f64,
}

fn stats(ttfbs: &[Duration]) -> Stats {
    let mut v: Vec<f64> = ttfbs.iter().copied().map(ms).collect();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    Stats {
        n: v.len(),
        mean: v.iter().sum::<f64>() / v.len() as f64,
        p50: at(0.5),
        p90: at(0.9),
    }
}

#[tokio::main]
async fn main() {
    let config = Config::from_env();
    let system = system_prompt(config.system_kb);
    let fakes = start_fakes(&config).await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    print_setup(&config, &system);

    let sticky = run_mode("sticky", None, &config, &fakes, &client, &system).await;
    let spread = run_mode("non-sticky", Some("0"), &config, &fakes, &client, &system).await;
    print_results([&sticky, &spread]);

    drop(client);
    for mut fake in fakes {
        fake.stop().await;
    }
}

/// `HOSTS` fake Ollamas with `MODEL` loaded and the configured prompt cost.
async fn start_fakes(config: &Config) -> Vec<FakeOllama> {
    let mut fakes = Vec::new();
    for _ in 0..HOSTS {
        let fake = FakeOllama::start_with(FakeConfig {
            models: None,
            loaded: vec![MODEL.to_string()],
        })
        .await;
        fake.set_prompt_cost(config.cost);
        fakes.push(fake);
    }
    fakes
}

/// The lines above the table: what runs, and at what cost.
fn print_setup(config: &Config, system: &str) {
    let last_prompt_kb = (system.len()
        + config.turns * (config.turn_kb * 1000 + 200 + REPLY_TOKENS as usize * 8))
        / 1000;
    println!(
        "poolbench: {} batches of {} conversations x {} turns over {HOSTS} fake Ollama hosts (a, b, c), qwen3 loaded on each",
        config.batches, config.conversations, config.turns
    );
    println!(
        "  prompt cost {} us per uncached KiB, one cached prompt per host; system prompt {} KB shared, user turns {} KB, replies {REPLY_TOKENS} tokens; last prompt ~{last_prompt_kb} KB (~{:.0} ms uncached)",
        config.cost.as_micros(),
        system.len() / 1000,
        config.turn_kb,
        ms(config.cost) * last_prompt_kb as f64 * 1000.0 / 1024.0,
    );
    println!(
        "  each round: every conversation's next turn at once ({} order, 2 ms apart), streaming /v1/chat/completions; TTFB = request sent -> first SSE data line with content; turn 1 not counted",
        if config.shuffle { "shuffled" } else { "same" }
    );
    if config.conversations > HOSTS {
        println!(
            "  NOTE: more conversations than hosts: conversations sharing a host evict each other's cached prompt even when sticky"
        );
    }
    println!();
}

/// The table (sticky, then non-sticky, then their ratio) and the hosts
/// of every turn.
fn print_results(results: [&ModeResult; 2]) {
    println!(
        "{:<28} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9} {:>7}",
        "mode", "turns", "warm", "moved", "mean ms", "p50 ms", "p90 ms", "wall s"
    );
    let all: Vec<Stats> = results.iter().map(|r| stats(&r.ttfbs)).collect();
    for (r, s) in results.iter().zip(&all) {
        let label = match r.name {
            "sticky" => "sticky (POOL_SESSIONS unset)",
            _ => "non-sticky (POOL_SESSIONS=0)",
        };
        println!(
            "{label:<28} {:>6} {:>6} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>7.1}",
            s.n,
            r.warm,
            r.moved,
            s.mean,
            s.p50,
            s.p90,
            r.wall.as_secs_f64()
        );
    }
    println!(
        "{:<28} {:>6} {:>6} {:>6} {:>9.2} {:>9.2} {:>9.2}",
        "sticky / non-sticky",
        "",
        "",
        "",
        all[0].mean / all[1].mean,
        all[0].p50 / all[1].p50,
        all[0].p90 / all[1].p90
    );
    println!();
    println!("warm: counted turns whose host still held that conversation's previous prompt; moved: counted turns on another host than the turn before");
    println!("hosts per turn, one word per conversation, one letter per turn:");
    for r in results {
        for (b, batch) in r.grid.iter().enumerate() {
            let convs: Vec<String> = batch
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|h| h.map_or("?", |h| HOST_NAMES[h]))
                        .collect()
                })
                .collect();
            println!("  {:<11} batch {b}: {}", r.name, convs.join(" "));
        }
    }
}
