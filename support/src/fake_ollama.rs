//! A scriptable fake Ollama HTTP server for end-to-end tests.
//!
//! It speaks Ollama's native wire protocol as described in `ollama-wire.md` (§0–§3): NDJSON
//! streaming by default, thinking on by default for thinking models, whole tool calls (on the
//! `done:true` line for gpt-oss), bare `{"error":...}` lines mid-stream, gin's plain-text 404/405,
//! the 403-with-empty-body `Host` check, HTTP 500 for mistyped options, and so on.
//!
//! Behaviour is scripted by keywords in the text of the **last `user` message** (or the `prompt`
//! for `/api/generate`), checked in this order (case-insensitive):
//!
//! | keyword | behaviour |
//! |---|---|
//! | `[error]` | content `Partial`, ` answer`, then `{"error":"model runner has unexpectedly stopped, …"}`, EOF, no done line (non-streaming: HTTP 500) |
//! | `[drop]` | content `Partial`, ` answer`, then half of the next line, then the connection is aborted (non-streaming: half a JSON body, then abort) |
//! | `[slow]` | 2000 content tokens `tok{i} `, one line every 20 ms |
//! | `[paced]` | the default echo (below), one line every 20 ms (each its own frame) |
//! | `[stall]` | one content line `Waiting`, then silence for an hour |
//! | `[garbage]` | one content line `Hello`, then the line `this is not json`, then a done line (non-streaming: the body `this is not json`) |
//! | `[length]` | the default echo, with `done_reason:"length"` |
//! | `[json]` (or a `format` field) | the single content token `{"ok":true}` |
//! | `[search:QUERY]`, `[searches:N:QUERY]` or `web search for the query: Q` (and a `web_search` function in `tools`) | a `web_search` call `{"query":…}` (see [`scripted_search`]); several `[search:…]` ⇒ one call each, in one chunk; with `[call:NAME:{json}]` too, also that call, last in the same chunk; `[preamble]` adds `Let me search.` first |
//! | `[load:NAME:{json}]` in an earlier user message, and a tool `ToolSearch` or `tool_search` | a client's tool search, one step per turn (see [`scripted_load`]): a call of the search tool `{"query":"select:NAME"}`; once it has answered, a call of `NAME` with those arguments if the search's result names `NAME` and `NAME` is among `tools` (else the text `The search result does not name NAME` or `NAME is not offered`); once that has answered, `Tool said: <the last tool message's content>` |
//! | last message has role `tool` | `Tool said: <that message's content>` |
//! | `[call:NAME:{json}]` (and non-empty `tools`) | one call of tool `NAME` with those arguments |
//! | `weather` (and non-empty `tools`) | a `get_weather` call `{"city":"Tokyo"}`; with `two cities` also `{"city":"Paris"}` in the same chunk. `[preamble]` adds a text chunk `Let me check.` first |
//! | anything else | `Hello! You said: <user text>`, one word per line |
//!
//! Two model names fail before anything is generated, as Ollama does under pressure: `busy` ⇒
//! HTTP 503 [`SERVER_BUSY`] (the scheduler's queue is full), `broken` ⇒ HTTP 500 [`RUNNER_FAILED`]
//! (the runner could not load the model).
//!
//! Thinking models emit three `message.thinking` lines (`Let me think`, ` about this`, `.`) first.
//! `options.num_predict = N > 0` caps the number of thinking + content (+ tool-call) lines at N and
//! turns `done_reason` into `length` when it cuts.
//!
//! The request header `x-fake-chunking` picks how the NDJSON bytes are framed: absent ⇒ awkward
//! frame sizes cycling through [`AWKWARD_FRAME_SIZES`], `lines` ⇒ one frame per line, `whole` ⇒
//! one frame, `bytes` ⇒ one byte per frame. `[slow]`, `[paced]` and `[stall]` always send whole lines.
//!
//! Counters ([`FakeOllama::in_flight`], [`FakeOllama::cancelled`], [`FakeOllama::completed`],
//! [`FakeOllama::generations`]) cover every generation on `/api/chat` and `/api/generate`,
//! streaming or not.
//!
//! ## Several hosts: models, loaded models, faults
//!
//! Each instance has its own state, so a test can start several in one runtime as a fleet.
//! [`FakeOllama::start_with`] / [`FakeOllama::serve_with`] take a [`FakeConfig`]
//! ([`FakeOllama::start`] / [`FakeOllama::serve`] use the default):
//!
//! | field | meaning |
//! |---|---|
//! | `models: None` | the whole catalogue (the default) |
//! | `models: Some(names)` | only these catalogue models (aliases and an implicit `:latest` allowed): `/api/tags` lists only them, and `/api/show`, `/api/chat`, `/api/generate`, `/api/embed` answer any other model exactly as an unknown one (404 `model '…' not found`) |
//! | `loaded` | models loaded at start |
//!
//! `POST /api/experimental/web_search` answers as a signed-in Ollama does, scripted by the query
//! (see [`web_search`]).
//!
//! `GET /api/ps` lists the loaded models in Ollama's shape (`name`, `model`, `size`, `digest`,
//! `details`, `expires_at` = [`EXPIRES_AT`], `size_vram` = `size`, `context_length`), most
//! recently used first. As in Ollama, a model is loaded by its first use: an accepted generation
//! on `/api/chat` or `/api/generate`, a successful `/api/embed`, or a load request (no messages
//! / empty prompt); the latter with `keep_alive: 0` unloads it. [`FakeOllama::loaded`] and
//! [`FakeOllama::set_loaded`] read and replace the set.
//!
//! Faults, settable through `&self` at any time:
//!
//! | setter | behaviour |
//! |---|---|
//! | [`FakeOllama::set_busy`] | every `POST` to `/api/chat`, `/api/generate`, `/api/embed`, `/api/show` answers HTTP 503 `{"error":SERVER_BUSY}` right after being recorded (before the `Host` check and validation) |
//! | [`FakeOllama::set_header_delay`] | generations (and embeddings) wait that long before the response head (a slow host); the wait counts as in flight |
//! | [`FakeOllama::set_die_mid_stream`] | streamed generations send their thinking lines, two content lines (their own, padded with `Partial`, ` answer`), half a line, then the connection is aborted as with `[drop]` (non-streaming requests are unaffected) |
//! | [`FakeOllama::set_prompt_cost`] | a prompt cache (below) |
//! | [`FakeOllama::set_fail`] | every `POST` to `/api/chat`, `/api/generate`, `/api/embed` answers that HTTP status with Ollama's error JSON `{"error":RUNNER_FAILED}` right after being recorded (a runner that died while loading); listings and `/api/show` still answer |
//! | [`FakeOllama::set_garbage`] | every `POST` to `/api/chat`, `/api/generate`, `/api/embed` answers `text/html` [`GARBAGE_PAGE`] right after being recorded: HTTP 200 (another server on Ollama's port), or with `set_fail`'s status (a proxy's error page) |
//! | [`FakeOllama::set_silent_after_headers`] | generations send their response head (200, NDJSON when streaming, JSON otherwise), then nothing for [`STALL_DURATION`]; counted in flight, and cancelled when the client goes away |
//!
//! Prompt cache: per model, each instance keeps the prompt text of its last generation (one
//! slot, like a runner with `OLLAMA_NUM_PARALLEL=1`). The prompt text is, for `/api/chat`, each
//! message's `role` then `content`, concatenated in order; for `/api/generate`, `system` then
//! `prompt`. A generation first sleeps `per_kib × uncached / 1024`, where `uncached` is the
//! prompt's length in bytes minus its longest common prefix with the slot, then the slot holds
//! this prompt. The sleep comes after the response head and before the first line when
//! streaming, before the answer otherwise. The default cost is zero (no sleep).
//!
//! [`FakeOllama::stop`] closes the port and cuts every connection; [`FakeOllama::restart`] serves
//! again on the same address with the same state. Dropping the handle stops the server too.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::BuildHasher;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// Version reported by `GET /api/version`.
pub const VERSION: &str = "0.33.0";
/// `created_at` of every generated line.
pub const CREATED_AT: &str = "2026-08-21T10:00:00.101Z";
/// `modified_at` of every model in `/api/tags` and `/api/show`.
pub const MODIFIED_AT: &str = "2026-08-01T12:00:00.000000000Z";
/// The mid-stream error sent by the `[error]` scenario.
pub const RUNNER_STOPPED: &str = "model runner has unexpectedly stopped, this may be due to resource limitations or an internal error, check ollama server logs for details";
/// The 503 for the model `busy` (Ollama's `ErrMaxQueue`).
pub const SERVER_BUSY: &str = "server busy, please try again.  maximum pending requests exceeded";
/// The 500 for the model `broken` (a runner that failed to load).
pub const RUNNER_FAILED: &str = "llama runner process has terminated: exit status 2";
/// Frame sizes (in bytes) cycled through by the default "awkward" chunking.
pub const AWKWARD_FRAME_SIZES: [usize; 8] = [1, 7, 3, 64, 2, 13, 200, 5];
/// Request header selecting the framing of streamed bodies (`lines`, `whole`, `bytes`).
pub const CHUNKING_HEADER: &str = "x-fake-chunking";
/// Delay between lines in the `[slow]` scenario.
pub const SLOW_LINE_DELAY: Duration = Duration::from_millis(20);
/// Number of content tokens in the `[slow]` scenario.
pub const SLOW_TOKENS: usize = 2000;
/// How long `[stall]` stays silent.
pub const STALL_DURATION: Duration = Duration::from_secs(3600);
/// The thinking lines emitted when thinking is on.
pub const THINKING_TOKENS: [&str; 3] = ["Let me think", " about this", "."];
/// `expires_at` of every model in `/api/ps`.
pub const EXPIRES_AT: &str = "2026-08-21T10:05:00.101Z";
/// What [`FakeOllama::set_garbage`] answers: a page that is not Ollama's.
pub const GARBAGE_PAGE: &str = "<html><body><h1>It works!</h1></body></html>";

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// One request received by the fake, recorded before any processing (including rejected ones).
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query, e.g. `/api/chat`.
    pub path: String,
    pub headers: http::HeaderMap,
    /// The body parsed as JSON; `Null` if empty or not JSON.
    pub body: serde_json::Value,
}

impl Recorded {
    /// A header value as a string, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What one instance serves and what it has loaded at start (see the module docs).
#[derive(Default, Clone, Debug)]
pub struct FakeConfig {
    /// `None`: the whole catalogue. `Some(names)`: only these catalogue models (names as a
    /// client would write them: `qwen3`, `qwen3:8b` and `qwen3:latest` are the same model);
    /// every other model is unknown to this instance. An unknown name panics.
    pub models: Option<Vec<String>>,
    /// Models loaded at start (listed by `/api/ps`); each must exist on the instance.
    pub loaded: Vec<String>,
}

/// State shared between the handle and the server tasks.
#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    in_flight: AtomicUsize,
    cancelled: AtomicUsize,
    completed: AtomicUsize,
    /// Generations accepted (`/api/chat`, `/api/generate` requests that got past validation).
    generations: AtomicUsize,
    /// Canonical names of the models this instance has; `None` = the whole catalogue.
    available: Mutex<Option<Vec<&'static str>>>,
    /// Canonical names of the loaded models, most recently used first (as `/api/ps` sorts by
    /// expiry).
    loaded: Mutex<Vec<&'static str>>,
    busy: AtomicBool,
    /// `/api/experimental/web_search` answers gin's 404, as an Ollama without it does.
    no_search: AtomicBool,
    die_mid_stream: AtomicBool,
    /// The status generations and embeddings fail with (0: none).
    fail: AtomicU16,
    /// Generations and embeddings answer [`GARBAGE_PAGE`].
    garbage: AtomicBool,
    /// Generations send their head, then nothing.
    silent_after_headers: AtomicBool,
    header_delay: Mutex<Duration>,
    /// Sleep per KiB of uncached prompt; zero = no prompt cache model.
    prompt_cost: Mutex<Duration>,
    /// Per model (canonical name): the prompt text of its last generation.
    prompt_slots: Mutex<HashMap<&'static str, String>>,
}

/// The canonical names of these catalogue models; an unknown one panics.
fn catalogue_names<S: AsRef<str>>(names: &[S]) -> Vec<&'static str> {
    let mut specs: Vec<&'static str> = Vec::new();
    for name in names {
        let name = name.as_ref();
        let m = find_model(name)
            .unwrap_or_else(|| panic!("fake_ollama: unknown model {name:?} in FakeConfig"));
        if !specs.contains(&m.name) {
            specs.push(m.name);
        }
    }
    specs
}

impl Shared {
    fn new(config: &FakeConfig) -> Shared {
        let available = config.models.as_ref().map(|names| catalogue_names(names));
        let shared = Shared {
            available: Mutex::new(available),
            ..Shared::default()
        };
        let loaded: Vec<&str> = config.loaded.iter().map(String::as_str).collect();
        shared.set_loaded(&loaded);
        shared
    }

    fn has(&self, m: &ModelSpec) -> bool {
        match &*self.available.lock().unwrap() {
            Some(names) => names.contains(&m.name),
            None => true,
        }
    }

    /// The model if this instance has it (catalogue lookup, restricted to `available`).
    fn find(&self, requested: &str) -> Option<&'static ModelSpec> {
        find_model(requested).filter(|m| self.has(m))
    }

    /// The models of this instance, in catalogue order.
    fn models(&self) -> Vec<&'static ModelSpec> {
        MODELS.iter().filter(|m| self.has(m)).collect()
    }

    fn set_loaded(&self, names: &[&str]) {
        let mut loaded: Vec<&'static str> = Vec::new();
        for name in names {
            let m = self.find(name).unwrap_or_else(|| {
                panic!("fake_ollama: cannot load {name:?}: not a model of this instance")
            });
            if !loaded.contains(&m.name) {
                loaded.push(m.name);
            }
        }
        *self.loaded.lock().unwrap() = loaded;
    }

    /// Marks `m` loaded and most recently used.
    fn touch(&self, m: &'static ModelSpec) {
        let mut loaded = self.loaded.lock().unwrap();
        loaded.retain(|n| *n != m.name);
        loaded.insert(0, m.name);
    }

    fn unload(&self, m: &'static ModelSpec) {
        self.loaded.lock().unwrap().retain(|n| *n != m.name);
    }

    /// The prompt-cache delay for `prompt` on `m`'s slot, which then holds `prompt`.
    fn prompt_delay(&self, m: &'static ModelSpec, prompt: &str) -> Duration {
        let mut slots = self.prompt_slots.lock().unwrap();
        let cached = slots.get(m.name).map_or(0, |previous| {
            previous
                .bytes()
                .zip(prompt.bytes())
                .take_while(|(a, b)| a == b)
                .count()
        });
        slots.insert(m.name, prompt.to_string());
        let uncached = (prompt.len() - cached) as u128;
        let per_kib = self.prompt_cost.lock().unwrap().as_nanos();
        let nanos = per_kib * uncached / 1024;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A running fake Ollama server. Dropping it stops the server.
pub struct FakeOllama {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop; `None` once stopped.
    server: Option<JoinHandle<()>>,
}

impl FakeOllama {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start() -> FakeOllama {
        Self::start_with(FakeConfig::default()).await
    }

    /// Like [`FakeOllama::start`], with a model subset and models loaded at start.
    pub async fn start_with(config: FakeConfig) -> FakeOllama {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake_ollama: bind 127.0.0.1:0");
        Self::serve_with(listener, config).await
    }

    /// Serves on an already bound listener.
    pub async fn serve(listener: TcpListener) -> FakeOllama {
        Self::serve_with(listener, FakeConfig::default()).await
    }

    /// Like [`FakeOllama::serve`], with a model subset and models loaded at start.
    pub async fn serve_with(listener: TcpListener, config: FakeConfig) -> FakeOllama {
        let addr = listener
            .local_addr()
            .expect("fake_ollama: listener has no local address");
        let shared = Arc::new(Shared::new(&config));
        let server = tokio::spawn(accept_loop(listener, shared.clone()));
        FakeOllama {
            addr,
            shared,
            server: Some(server),
        }
    }

    /// Stops serving: the port refuses new connections and every open connection (and so every
    /// stream in flight) is cut. State (requests, counters, loaded models, faults) is kept.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            // The accept loop's future (listener and connection set) is dropped once this
            // resolves.
            let _ = server.await;
        }
    }

    /// Stops (if running) and serves again on the same address, with the same state: a host
    /// that comes back. Models stay loaded; call `set_loaded(&[])` for a cold restart.
    pub async fn restart(&mut self) {
        self.stop().await;
        // tokio (mio) sets SO_REUSEADDR on Unix, so connections of the previous listener left in
        // TIME_WAIT do not block the bind.
        let listener = TcpListener::bind(self.addr)
            .await
            .unwrap_or_else(|e| panic!("fake_ollama: rebind {}: {e}", self.addr));
        self.server = Some(tokio::spawn(accept_loop(listener, self.shared.clone())));
    }

    /// Canonical names of the loaded models, most recently used first (as `/api/ps` lists them).
    pub fn loaded(&self) -> Vec<String> {
        let loaded = self.shared.loaded.lock().unwrap();
        loaded.iter().map(|n| n.to_string()).collect()
    }

    /// Replaces the models this instance has (as `FakeConfig::models`), as `ollama rm` or
    /// `ollama pull` would; loaded models it no longer has are unloaded.
    pub fn set_models(&self, names: Option<&[&str]>) {
        *self.shared.available.lock().unwrap() = names.map(catalogue_names);
        let keep: Vec<&str> = self
            .shared
            .loaded
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|n| find_model(n).is_some_and(|m| self.shared.has(m)))
            .collect();
        self.shared.set_loaded(&keep);
    }

    /// Replaces the set of loaded models (in this order). Panics on a model the instance lacks.
    pub fn set_loaded(&self, names: &[&str]) {
        self.shared.set_loaded(names);
    }

    /// While set, `POST` to `/api/chat`, `/api/generate`, `/api/embed` and `/api/show` answers
    /// HTTP 503 [`SERVER_BUSY`] right after the request is recorded.
    pub fn set_busy(&self, busy: bool) {
        self.shared.busy.store(busy, Ordering::SeqCst);
    }

    /// Whether `/api/experimental/web_search` is missing (gin's plain 404), as on an Ollama
    /// too old for it.
    pub fn set_no_search(&self, missing: bool) {
        self.shared.no_search.store(missing, Ordering::SeqCst);
    }

    /// Generations (and embeddings) wait `delay` before sending the response head.
    pub fn set_header_delay(&self, delay: Duration) {
        *self.shared.header_delay.lock().unwrap() = delay;
    }

    /// While set, streamed generations send two content lines, then the connection is aborted.
    pub fn set_die_mid_stream(&self, die: bool) {
        self.shared.die_mid_stream.store(die, Ordering::SeqCst);
    }

    /// While `Some(status)`, `POST` to `/api/chat`, `/api/generate` and `/api/embed` answers
    /// that HTTP status with `{"error":RUNNER_FAILED}` right after the request is recorded.
    pub fn set_fail(&self, status: Option<u16>) {
        self.shared
            .fail
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// While set, `POST` to `/api/chat`, `/api/generate` and `/api/embed` answers `text/html`
    /// [`GARBAGE_PAGE`] right after the request is recorded: HTTP 200, or the status given to
    /// [`FakeOllama::set_fail`].
    pub fn set_garbage(&self, garbage: bool) {
        self.shared.garbage.store(garbage, Ordering::SeqCst);
    }

    /// While set, generations send their response head, then nothing for [`STALL_DURATION`].
    pub fn set_silent_after_headers(&self, silent: bool) {
        self.shared
            .silent_after_headers
            .store(silent, Ordering::SeqCst);
    }

    /// Prompt processing cost per KiB of prompt not shared with the model's cached prompt.
    pub fn set_prompt_cost(&self, per_kib: Duration) {
        *self.shared.prompt_cost.lock().unwrap() = per_kib;
    }

    /// Generation requests (`/api/chat`, `/api/generate`) accepted, i.e. not rejected before
    /// generating (load-only requests with no messages or prompt are not generations).
    pub fn generations(&self) -> usize {
        self.shared.generations.load(Ordering::SeqCst)
    }

    /// Recorded requests to `/api/chat` or `/api/generate` whose `model` names the same model as
    /// `model` (aliases and the implicit `:latest` included).
    pub fn requests_for_model(&self, model: &str) -> usize {
        let want = model_key(model);
        self.requests()
            .iter()
            .filter(|r| {
                matches!(
                    r.path.split('?').next(),
                    Some("/api/chat" | "/api/generate")
                )
            })
            .filter_map(|r| r.body.get("model").and_then(Value::as_str))
            .filter(|m| model_key(m) == want)
            .count()
    }

    /// `http://127.0.0.1:PORT` (an unspecified bind address is reported as loopback).
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Requests whose path (without query) equals `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.split('?').next() == Some(path))
            .collect()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<Recorded> {
        self.shared.requests.lock().unwrap().last().cloned()
    }

    /// Forgets the recorded requests (counters are kept).
    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// Generations currently running (streamed bodies being sent, or non-streaming responses
    /// being "generated").
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Generations whose client went away before the fake finished sending.
    pub fn cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Generations the fake finished sending.
    pub fn completed(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Waits until `cond(self)` holds, polling every 5 ms; returns whether it did within `timeout`.
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&FakeOllama) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until no generation is in flight; returns whether that happened within `timeout`.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |f| f.in_flight() == 0).await
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task; that
        // drops the response bodies, so the streaming tasks notice and stop too.
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server plumbing
// ---------------------------------------------------------------------------------------------

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, shared.clone()));
                }
                // E.g. EMFILE: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(req, shared).await) }
    });
    // HTTP/1.1 and h2c (prior knowledge). Errors (client gone, simulated drop) are expected.
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Item type of a streamed body: a data frame, or an error that makes hyper abort the connection.
type FrameResult = Result<Frame<Bytes>, io::Error>;

/// Response body: either fixed bytes, or frames pushed through a channel by a streaming task.
pub enum FakeBody {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<FrameResult>),
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FrameResult>> {
        match self.get_mut() {
            FakeBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            FakeBody::Channel(rx) => rx.poll_recv(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, FakeBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            FakeBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            FakeBody::Full(None) => SizeHint::with_exact(0),
            FakeBody::Channel(_) => SizeHint::default(),
        }
    }
}

type Resp = Response<FakeBody>;

const JSON_CT: &str = "application/json; charset=utf-8";
const TEXT_CT: &str = "text/plain; charset=utf-8";
const NDJSON_CT: &str = "application/x-ndjson";

fn respond(status: StatusCode, content_type: Option<&'static str>, body: impl Into<Bytes>) -> Resp {
    let body: Bytes = body.into();
    let mut resp = Response::new(FakeBody::Full((!body.is_empty()).then_some(body)));
    *resp.status_mut() = status;
    if let Some(ct) = content_type {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    resp
}

fn json_response(status: StatusCode, body: String) -> Resp {
    respond(status, Some(JSON_CT), body)
}

fn streaming_response(content_type: &'static str, rx: mpsc::Receiver<FrameResult>) -> Resp {
    let mut resp = Response::new(FakeBody::Channel(rx));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// An Ollama API error: a status plus the `{"error":...}` message.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn into_response(self) -> Resp {
        json_response(self.status, Obj::new().str("error", &self.message).finish())
    }
}

/// Routes a request. Everything is recorded first, then the Host check, then routing.
async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return ApiError::bad_request(format!("failed to read body: {e}")).into_response()
        }
    };
    let path = parts.uri.path();
    shared.requests.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path_and_query().map_or_else(
            || parts.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        ),
        headers: parts.headers.clone(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });

    let busy_path = matches!(
        path,
        "/api/chat" | "/api/generate" | "/api/embed" | "/api/show"
    );
    if busy_path && parts.method == Method::POST && shared.busy.load(Ordering::SeqCst) {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, SERVER_BUSY).into_response();
    }
    let runs_model = matches!(path, "/api/chat" | "/api/generate" | "/api/embed");
    if runs_model && parts.method == Method::POST {
        let fail = StatusCode::from_u16(shared.fail.load(Ordering::SeqCst)).ok();
        match (fail, shared.garbage.load(Ordering::SeqCst)) {
            (fail, true) => {
                let status = fail.unwrap_or(StatusCode::OK);
                return respond(status, Some("text/html; charset=utf-8"), GARBAGE_PAGE);
            }
            (Some(status), false) => return ApiError::new(status, RUNNER_FAILED).into_response(),
            (None, false) => {}
        }
    }

    if !host_allowed(&parts) {
        return respond(StatusCode::FORBIDDEN, None, Bytes::new());
    }

    let chunking = Chunking::from_headers(&parts.headers);
    let method = &parts.method;
    let read = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    match path {
        "/" if read => respond(StatusCode::OK, Some(TEXT_CT), "Ollama is running"),
        "/api/version" if read => {
            json_response(StatusCode::OK, Obj::new().str("version", VERSION).finish())
        }
        "/api/tags" if read => json_response(StatusCode::OK, tags_body(&shared)),
        "/api/ps" if read => json_response(StatusCode::OK, ps_body(&shared)),
        "/api/show" if post => show(&body, &shared).unwrap_or_else(ApiError::into_response),
        "/api/embed" if post => match embed(&body, &shared) {
            Ok((resp, model)) => {
                shared.touch(model);
                let delay = *shared.header_delay.lock().unwrap();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                resp
            }
            Err(e) => e.into_response(),
        },
        "/api/experimental/web_search" if post && !shared.no_search.load(Ordering::SeqCst) => {
            web_search(&body).await
        }
        "/api/chat" if post => match prepare_chat(&body, &shared) {
            Ok(prepared) => deliver(prepared, chunking, shared).await,
            Err(e) => e.into_response(),
        },
        "/api/generate" if post => match prepare_generate(&body, &shared) {
            Ok(prepared) => deliver(prepared, chunking, shared).await,
            Err(e) => e.into_response(),
        },
        "/" | "/api/version" | "/api/tags" | "/api/ps" | "/api/show" | "/api/embed"
        | "/api/chat" | "/api/generate" => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            Some("text/plain"),
            "405 method not allowed",
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            Some("text/plain"),
            "404 page not found",
        ),
    }
}

/// Ollama's `allowedHostsMiddleware` (it is active when Ollama listens on loopback): the host
/// part of `Host` must be empty, `localhost`/`*.localhost`/`*.local`/`*.internal`, or a loopback,
/// unspecified or private IP.
fn host_allowed(parts: &http::request::Parts) -> bool {
    let raw = match parts.headers.get(header::HOST) {
        Some(v) => match v.to_str() {
            Ok(s) => s.to_string(),
            Err(_) => return false,
        },
        // HTTP/2 carries the authority in the URI instead.
        None => parts
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default(),
    };
    let host = strip_port(&raw).to_ascii_lowercase();
    if host.is_empty() || host == "localhost" {
        return true;
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return match ip {
            std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_unspecified(),
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00
            }
        };
    }
    [".localhost", ".local", ".internal"]
        .iter()
        .any(|suffix| host.ends_with(suffix))
}

/// `host:port` → `host`, `[::1]:port` → `::1`, `[::1]` → `::1`, `::1` → `::1`.
fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => authority,
    }
}

// ---------------------------------------------------------------------------------------------
// Model catalogue
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Thinking {
    /// No `thinking` capability: `think:true`/level ⇒ 400.
    Unsupported,
    /// On unless `think:false` (qwen3).
    DefaultOn,
    /// Off unless `think` is true or a level (glm-5:cloud).
    DefaultOff,
    /// Always on, `think:false` ignored (gpt-oss / harmony).
    Always,
}

struct ModelSpec {
    /// Canonical name as listed by `/api/tags`.
    name: &'static str,
    aliases: &'static [&'static str],
    family: &'static str,
    parameter_size: &'static str,
    quantization: &'static str,
    size: u64,
    capabilities: &'static [&'static str],
    architecture: &'static str,
    context_length: u64,
    thinking: Thinking,
    /// Tool calls only on the `done:true` line, all with `function.index` 0 (harmony).
    calls_on_done: bool,
    /// `(remote_model, remote_host)` for `:cloud` models.
    remote: Option<(&'static str, &'static str)>,
}

impl ModelSpec {
    fn has(&self, capability: &str) -> bool {
        self.capabilities.contains(&capability)
    }
}

const MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "qwen3:latest",
        aliases: &["qwen3:8b"],
        family: "qwen3",
        parameter_size: "8.2B",
        quantization: "Q4_K_M",
        size: 5_225_388_164,
        capabilities: &["completion", "tools", "thinking"],
        architecture: "qwen3",
        context_length: 40960,
        thinking: Thinking::DefaultOn,
        calls_on_done: false,
        remote: None,
    },
    ModelSpec {
        name: "llama3.2:latest",
        aliases: &[],
        family: "llama",
        parameter_size: "3.2B",
        quantization: "Q4_K_M",
        size: 2_019_393_189,
        capabilities: &["completion", "tools"],
        architecture: "llama",
        context_length: 131072,
        thinking: Thinking::Unsupported,
        calls_on_done: false,
        remote: None,
    },
    ModelSpec {
        name: "gpt-oss:20b",
        aliases: &[],
        family: "gptoss",
        parameter_size: "20.9B",
        quantization: "MXFP4",
        size: 13_780_173_839,
        capabilities: &["completion", "tools", "thinking"],
        architecture: "gptoss",
        context_length: 131072,
        thinking: Thinking::Always,
        calls_on_done: true,
        remote: None,
    },
    ModelSpec {
        name: "glm-5:cloud",
        aliases: &[],
        family: "glm5",
        parameter_size: "744B",
        quantization: "FP8",
        size: 384,
        capabilities: &["completion", "tools", "thinking"],
        architecture: "glm5",
        context_length: 202752,
        thinking: Thinking::DefaultOff,
        calls_on_done: false,
        remote: Some(("glm-5", "https://ollama.com:443")),
    },
    ModelSpec {
        name: "nomic-embed-text:latest",
        aliases: &[],
        family: "nomic-bert",
        parameter_size: "137M",
        quantization: "F16",
        size: 274_302_450,
        capabilities: &["embedding"],
        architecture: "nomic-bert",
        context_length: 2048,
        thinking: Thinking::Unsupported,
        calls_on_done: false,
        remote: None,
    },
    ModelSpec {
        name: "hf.co/acme/tiny:Q4",
        aliases: &[],
        family: "llama",
        parameter_size: "135M",
        quantization: "Q4_0",
        size: 91_729_184,
        capabilities: &["completion"],
        architecture: "llama",
        context_length: 8192,
        thinking: Thinking::Unsupported,
        calls_on_done: false,
        remote: None,
    },
];

/// Lower-cases and adds `:latest` when the last path segment has no tag.
fn normalise_model_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let last_segment = lower.rsplit('/').next().unwrap_or(&lower);
    if last_segment.contains(':') {
        lower
    } else {
        format!("{lower}:latest")
    }
}

fn find_model(requested: &str) -> Option<&'static ModelSpec> {
    let want = normalise_model_name(requested);
    MODELS.iter().find(|m| {
        normalise_model_name(m.name) == want
            || m.aliases.iter().any(|a| normalise_model_name(a) == want)
    })
}

/// What two model names must share to name the same model: the canonical name for catalogue
/// models (aliases included), else the normalised name.
fn model_key(name: &str) -> String {
    find_model(name).map_or_else(
        || normalise_model_name(name),
        |m| normalise_model_name(m.name),
    )
}

/// A stable fake sha256 digest derived from the model name (FNV-1a, four rounds).
fn digest(name: &str) -> String {
    (0u64..4)
        .map(|round| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ round;
            for b in name.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            format!("{h:016x}")
        })
        .collect()
}

fn details_json(m: &ModelSpec) -> String {
    Obj::new()
        .str("parent_model", "")
        .str("format", "gguf")
        .str("family", m.family)
        .val("families", &json!([m.family]))
        .str("parameter_size", m.parameter_size)
        .str("quantization_level", m.quantization)
        .finish()
}

fn tags_body(shared: &Shared) -> String {
    let models: Vec<String> = shared
        .models()
        .into_iter()
        .map(|m| {
            let mut o = Obj::new()
                .str("name", m.name)
                .str("model", m.name)
                .str("modified_at", MODIFIED_AT)
                .num("size", m.size)
                .str("digest", &digest(m.name))
                .raw("details", &details_json(m))
                .val("capabilities", &json!(m.capabilities));
            if let Some((remote_model, remote_host)) = m.remote {
                o = o
                    .str("remote_model", remote_model)
                    .str("remote_host", remote_host);
            }
            o.finish()
        })
        .collect();
    format!(r#"{{"models":[{}]}}"#, models.join(","))
}

/// `GET /api/ps`: the loaded models, most recently used first.
fn ps_body(shared: &Shared) -> String {
    let loaded = shared.loaded.lock().unwrap().clone();
    let models: Vec<String> = loaded
        .iter()
        .filter_map(|name| find_model(name))
        .map(|m| {
            Obj::new()
                .str("name", m.name)
                .str("model", m.name)
                .num("size", m.size)
                .str("digest", &digest(m.name))
                .raw("details", &details_json(m))
                .str("expires_at", EXPIRES_AT)
                .num("size_vram", m.size)
                .num("context_length", m.context_length)
                .finish()
        })
        .collect();
    format!(r#"{{"models":[{}]}}"#, models.join(","))
}

/// `POST /api/show`.
fn show(body: &[u8], shared: &Shared) -> Result<Resp, ApiError> {
    let req = decode_object(body, "ShowRequest")?;
    check_type(&req, "model", "ShowRequest", "string", Value::is_string)?;
    // `name` is the deprecated spelling of `model`.
    let name = str_field(&req, "model")
        .filter(|s| !s.is_empty())
        .or_else(|| str_field(&req, "name"))
        .unwrap_or("");
    if name.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let m = shared.find(name).ok_or_else(|| not_found(name))?;
    let mut info = Map::new();
    info.insert("general.architecture".into(), json!(m.architecture));
    info.insert(
        format!("{}.context_length", m.architecture),
        json!(m.context_length),
    );
    let out = Obj::new()
        .str("license", "")
        .str("modelfile", "")
        .str("parameters", "")
        .str("template", "")
        .raw("details", &details_json(m))
        .val("model_info", &Value::Object(info))
        .val("capabilities", &json!(m.capabilities))
        .str("modified_at", MODIFIED_AT)
        .finish();
    Ok(json_response(StatusCode::OK, out))
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("model '{name}' not found"))
}

// ---------------------------------------------------------------------------------------------
// Request decoding and validation (mimicking Go's encoding/json messages)
// ---------------------------------------------------------------------------------------------

/// JSON kind names as used by Go's `UnmarshalTypeError`.
fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(v: &Value, field: &str, go_type: &str) -> ApiError {
    ApiError::bad_request(format!(
        "json: cannot unmarshal {} into Go struct field {field} of type {go_type}",
        go_kind(v)
    ))
}

/// Decodes the body as a JSON object (Go decodes `null` into a zero struct).
fn decode_object(body: &[u8], go_type: &str) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("missing request body"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(other) => Err(ApiError::bad_request(format!(
            "json: cannot unmarshal {} into Go value of type api.{go_type}",
            go_kind(&other)
        ))),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

/// Checks `obj[key]` (if present and not null) with `ok`, else a Go-style type error.
fn check_type(
    obj: &Map<String, Value>,
    key: &str,
    go_struct: &str,
    go_type: &str,
    ok: fn(&Value) -> bool,
) -> Result<(), ApiError> {
    match obj.get(key) {
        Some(v) if !v.is_null() && !ok(v) => {
            Err(type_error(v, &format!("{go_struct}.{key}"), go_type))
        }
        _ => Ok(()),
    }
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

/// Go's `base64.StdEncoding` error offset for an invalid string, if it is invalid.
fn base64_error(s: &str) -> Option<usize> {
    let mut significant = 0usize;
    let mut padding = 0usize;
    for (i, c) in s.bytes().enumerate() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => {
                if padding > 0 {
                    return Some(i);
                }
                significant += 1;
            }
            b'=' => {
                padding += 1;
                if padding > 2 || significant % 4 < 2 {
                    return Some(i);
                }
            }
            b'\r' | b'\n' => {}
            _ => return Some(i),
        }
    }
    ((significant + padding) % 4 != 0).then_some(s.len())
}

fn check_images(images: Option<&Value>, field: &str) -> Result<(), ApiError> {
    match images {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::Null => {}
                    Value::String(s) => {
                        if let Some(at) = base64_error(s) {
                            return Err(ApiError::bad_request(format!(
                                "illegal base64 data at input byte {at}"
                            )));
                        }
                    }
                    other => return Err(type_error(other, field, "api.ImageData")),
                }
            }
            Ok(())
        }
        Some(other) => Err(type_error(other, field, "[]api.ImageData")),
    }
}

/// The `think` field.
#[derive(Clone, Debug, PartialEq)]
enum Think {
    Absent,
    Bool(bool),
    Level(String),
}

fn parse_think(v: Option<&Value>) -> Result<Think, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Think::Absent),
        Some(Value::Bool(b)) => Ok(Think::Bool(*b)),
        Some(Value::String(s)) if ["high", "medium", "low", "max"].contains(&s.as_str()) => {
            Ok(Think::Level(s.clone()))
        }
        Some(Value::String(s)) => Err(ApiError::bad_request(format!(
            "invalid think value: {} (must be \"high\", \"medium\", \"low\", \"max\", true, or false)",
            Value::String(s.clone())
        ))),
        Some(_) => Err(ApiError::bad_request("think must be a boolean or string")),
    }
}

/// Whether the model thinks for this `think` value, or the 400 for a non-thinking model.
fn thinking_enabled(m: &ModelSpec, requested: &str, think: &Think) -> Result<bool, ApiError> {
    let asked_on = matches!(think, Think::Bool(true) | Think::Level(_));
    match m.thinking {
        Thinking::Unsupported if asked_on => Err(ApiError::bad_request(format!(
            "\"{requested}\" does not support thinking"
        ))),
        Thinking::Unsupported => Ok(false),
        Thinking::DefaultOn => Ok(*think != Think::Bool(false)),
        Thinking::DefaultOff => Ok(asked_on),
        Thinking::Always => Ok(true),
    }
}

const FLOAT_OPTIONS: &[&str] = &[
    "temperature",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
];
const INT_OPTIONS: &[&str] = &[
    "num_predict",
    "top_k",
    "seed",
    "repeat_last_n",
    "num_keep",
    "num_ctx",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
    "draft_num_predict",
];

/// `api.Options.FromMap`: unknown keys are ignored, a wrong type for a known key is a 500.
fn check_options(options: &Map<String, Value>) -> Result<(), ApiError> {
    let internal = |message: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message);
    for (key, value) in options {
        let key = key.as_str();
        if value.is_null() {
            continue;
        }
        if FLOAT_OPTIONS.contains(&key) && !value.is_number() {
            return Err(internal(format!("option {key:?} must be of type float32")));
        }
        if INT_OPTIONS.contains(&key) && !value.is_number() {
            return Err(internal(format!("option {key:?} must be of type integer")));
        }
        if key == "use_mmap" && !value.is_boolean() {
            return Err(internal(format!("option {key:?} must be of type boolean")));
        }
        if key == "stop" {
            let Some(items) = value.as_array() else {
                return Err(internal(format!("option {key:?} must be of type array")));
            };
            if !items.iter().all(Value::is_string) {
                return Err(internal(format!(
                    "option {key:?} must be of an array of strings"
                )));
            }
        }
    }
    Ok(())
}

/// An integer option (Go truncates JSON floats).
fn int_option(options: &Map<String, Value>, key: &str) -> Option<i64> {
    let v = options.get(key)?;
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

/// `format`: `"json"` or a schema object switches on the JSON scenario; anything else is a 500.
fn parse_format(v: Option<&Value>) -> Result<bool, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(s)) if s.is_empty() => Ok(false),
        Some(Value::String(s)) if s == "json" => Ok(true),
        Some(Value::Object(_)) => Ok(true),
        Some(other) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("invalid format: {other}; expected \"json\" or a valid JSON Schema object"),
        )),
    }
}

fn check_top_logprobs(req: &Map<String, Value>) -> Result<(), ApiError> {
    match int_option(req, "top_logprobs") {
        Some(n) if !(0..=20).contains(&n) => Err(ApiError::bad_request(
            "top_logprobs must be between 0 and 20",
        )),
        _ => Ok(()),
    }
}

/// Go-style type checks of the `/api/chat` request body.
fn validate_chat_fields(req: &Map<String, Value>) -> Result<(), ApiError> {
    const S: &str = "ChatRequest";
    check_type(req, "model", S, "string", Value::is_string)?;
    check_type(req, "stream", S, "bool", Value::is_boolean)?;
    check_type(req, "tools", S, "api.Tools", Value::is_array)?;
    check_type(
        req,
        "options",
        S,
        "map[string]interface {}",
        Value::is_object,
    )?;
    check_type(req, "top_logprobs", S, "int", Value::is_number)?;
    check_type(req, "messages", S, "[]api.Message", Value::is_array)?;
    let messages = req.get("messages").and_then(Value::as_array);
    for message in messages.into_iter().flatten() {
        let Some(m) = message.as_object() else {
            if message.is_null() {
                continue;
            }
            return Err(type_error(message, "ChatRequest.messages", "api.Message"));
        };
        for key in ["role", "content", "thinking", "tool_name", "tool_call_id"] {
            check_type(m, key, "Message.messages", "string", Value::is_string)?;
        }
        check_images(m.get("images"), "Message.messages.images")?;
        check_type(
            m,
            "tool_calls",
            "Message.messages",
            "[]api.ToolCall",
            Value::is_array,
        )?;
        let calls = m.get("tool_calls").and_then(Value::as_array);
        for call in calls.into_iter().flatten() {
            let Some(call) = call.as_object() else {
                if call.is_null() {
                    continue;
                }
                return Err(type_error(
                    call,
                    "Message.messages.tool_calls",
                    "api.ToolCall",
                ));
            };
            check_type(
                call,
                "function",
                "ToolCall.messages.tool_calls",
                "api.ToolCallFunction",
                Value::is_object,
            )?;
            if let Some(function) = call.get("function").and_then(Value::as_object) {
                const F: &str = "ToolCallFunction.messages.tool_calls.function";
                check_type(function, "name", F, "string", Value::is_string)?;
                check_type(function, "index", F, "int", Value::is_number)?;
                check_type(
                    function,
                    "arguments",
                    F,
                    "api.ToolCallFunctionArguments",
                    Value::is_object,
                )?;
            }
        }
    }
    Ok(())
}

/// Go-style type checks of the `/api/generate` request body.
fn validate_generate_fields(req: &Map<String, Value>) -> Result<(), ApiError> {
    const S: &str = "GenerateRequest";
    for key in ["model", "prompt", "suffix", "system", "template"] {
        check_type(req, key, S, "string", Value::is_string)?;
    }
    check_type(req, "stream", S, "bool", Value::is_boolean)?;
    check_type(req, "raw", S, "bool", Value::is_boolean)?;
    check_type(
        req,
        "options",
        S,
        "map[string]interface {}",
        Value::is_object,
    )?;
    check_type(req, "top_logprobs", S, "int", Value::is_number)?;
    check_images(req.get("images"), "GenerateRequest.images")
}

/// Request-level settings shared by `/api/chat` and `/api/generate` after validation.
struct Common {
    requested: String,
    model: &'static ModelSpec,
    stream: bool,
    thinking: bool,
    json_format: bool,
    options: Map<String, Value>,
}

/// Validation common to chat and generate, in Ollama's order: model required, top_logprobs,
/// model exists, capabilities (completion, tools), options, think, format.
fn validate_common(
    req: &Map<String, Value>,
    capability_error: &str,
    needs_tools: bool,
    shared: &Shared,
) -> Result<Common, ApiError> {
    let requested = str_field(req, "model").unwrap_or("").to_string();
    if requested.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    check_top_logprobs(req)?;
    match normalise_model_name(&requested).as_str() {
        "busy:latest" => return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, SERVER_BUSY)),
        "broken:latest" => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                RUNNER_FAILED,
            ))
        }
        _ => {}
    }
    let model = shared
        .find(&requested)
        .ok_or_else(|| not_found(&requested))?;
    if !model.has("completion") {
        return Err(ApiError::bad_request(format!(
            "\"{requested}\" does not support {capability_error}"
        )));
    }
    if needs_tools && !model.has("tools") {
        return Err(ApiError::bad_request(format!(
            "{} does not support tools",
            model.name
        )));
    }
    let options = req
        .get("options")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    check_options(&options)?;
    let think = parse_think(req.get("think"))?;
    let thinking = thinking_enabled(model, &requested, &think)?;
    let json_format = parse_format(req.get("format"))?;
    Ok(Common {
        requested,
        model,
        stream: req.get("stream").and_then(Value::as_bool).unwrap_or(true),
        thinking,
        json_format,
        options,
    })
}

// ---------------------------------------------------------------------------------------------
// Generation plans
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    Chat,
    Generate,
}

/// One tool call as Ollama emits it.
#[derive(Clone, Debug)]
struct ToolCall {
    id: String,
    index: usize,
    name: String,
    arguments: Value,
}

impl ToolCall {
    fn to_json(&self) -> String {
        let function = Obj::new()
            .num("index", self.index as u64)
            .str("name", &self.name)
            .val("arguments", &self.arguments)
            .finish();
        Obj::new()
            .str("id", &self.id)
            .raw("function", &function)
            .finish()
    }
}

fn calls_json(calls: &[ToolCall]) -> String {
    let items: Vec<String> = calls.iter().map(ToolCall::to_json).collect();
    format!("[{}]", items.join(","))
}

/// `call_` + 8 random `[a-z0-9]`.
fn random_call_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    let suffix: String = (0..8)
        .map(|_| {
            let c = ALPHABET[(x % 36) as usize] as char;
            x /= 36;
            c
        })
        .collect();
    format!("call_{suffix}")
}

/// One generated, non-final line.
#[derive(Clone, Debug)]
enum Event {
    Think(String),
    Content(String),
    Calls(Vec<ToolCall>),
}

/// How a generation ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ending {
    /// A `done:true` line.
    Done,
    /// A bare `{"error":...}` line, then EOF.
    Error,
    /// Half a line, then the connection is aborted.
    Drop,
    /// `this is not json`, then a done line.
    Garbage,
    /// An hour of silence, then a done line.
    Stall,
}

/// Everything needed to answer one chat/generate request.
struct Plan {
    api: Api,
    /// The model name as requested (echoed in every line).
    model: String,
    /// The catalogue entry of that model.
    spec: &'static ModelSpec,
    /// The text the prompt cache compares: every message's role and content (chat), or the
    /// system prompt and the prompt (generate).
    prompt_text: String,
    stream: bool,
    events: Vec<Event>,
    /// Tool calls carried by the done line (gpt-oss).
    done_calls: Vec<ToolCall>,
    ending: Ending,
    /// One line every [`SLOW_LINE_DELAY`].
    slow: bool,
    done_reason: &'static str,
    prompt_eval_count: u64,
    /// The request had `tools` (non-streaming responses only include calls then).
    had_tools: bool,
}

/// Splits text into word tokens, each keeping its leading spaces, so that concatenating the
/// tokens reproduces the text exactly.
fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c == ' ' && current.chars().any(|c| c != ' ') {
            tokens.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

fn content_events(text: &str) -> Vec<Event> {
    tokenize(text).into_iter().map(Event::Content).collect()
}

/// The scenario shared by chat and generate, chosen from the trigger text. Returns `None` when
/// none of the bracketed keywords (nor `format`) applies.
fn keyword_scenario(
    lower: &str,
    json_format: bool,
    default_text: &str,
) -> Option<(Vec<Event>, Ending, bool, &'static str)> {
    let contents = |tokens: &[&str]| -> Vec<Event> {
        tokens
            .iter()
            .map(|t| Event::Content(t.to_string()))
            .collect()
    };
    let scenario = if lower.contains("[error]") {
        (
            contents(&["Partial", " answer"]),
            Ending::Error,
            false,
            "stop",
        )
    } else if lower.contains("[drop]") {
        (
            contents(&["Partial", " answer"]),
            Ending::Drop,
            false,
            "stop",
        )
    } else if lower.contains("[slow]") {
        let tokens = (0..SLOW_TOKENS)
            .map(|i| Event::Content(format!("tok{i} ")))
            .collect();
        (tokens, Ending::Done, true, "stop")
    } else if lower.contains("[paced]") {
        (content_events(default_text), Ending::Done, true, "stop")
    } else if lower.contains("[stall]") {
        (contents(&["Waiting"]), Ending::Stall, false, "stop")
    } else if lower.contains("[garbage]") {
        (contents(&["Hello"]), Ending::Garbage, false, "stop")
    } else if lower.contains("[length]") {
        (content_events(default_text), Ending::Done, false, "length")
    } else if lower.contains("[json]") || json_format {
        (contents(&[r#"{"ok":true}"#]), Ending::Done, false, "stop")
    } else {
        return None;
    };
    Some(scenario)
}

fn thinking_events() -> Vec<Event> {
    THINKING_TOKENS
        .iter()
        .map(|t| Event::Think(t.to_string()))
        .collect()
}

/// Deterministic prompt token count: chars / 4, at least 1, capped at `num_ctx` (truncation).
fn prompt_tokens(chars: usize, options: &Map<String, Value>) -> u64 {
    let count = (chars as u64 / 4).max(1);
    match int_option(options, "num_ctx") {
        Some(num_ctx) if num_ctx > 0 && count > num_ctx as u64 => num_ctx as u64,
        _ => count,
    }
}

impl Plan {
    /// Applies `options.num_predict`: at most N thinking/content/tool-call lines, `length` if cut.
    fn apply_num_predict(&mut self, num_predict: Option<i64>) {
        let Some(n) = num_predict.filter(|n| *n > 0) else {
            return;
        };
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let total = self.events.len() + usize::from(!self.done_calls.is_empty());
        if total > n {
            self.events.truncate(n);
            self.done_calls.clear();
            self.done_reason = "length";
            self.ending = Ending::Done;
        }
    }

    /// The host dies mid-stream: thinking lines, then two content lines (the plan's own, else
    /// the `[drop]` ones), then half a line and an abort.
    fn die_mid_stream(&mut self) {
        let mut kept = Vec::new();
        let mut contents = 0;
        for event in self.events.drain(..) {
            match event {
                Event::Think(_) => kept.push(event),
                Event::Content(_) if contents < 2 => {
                    kept.push(event);
                    contents += 1;
                }
                Event::Content(_) | Event::Calls(_) => {}
            }
        }
        for token in ["Partial", " answer"].iter().skip(contents) {
            kept.push(Event::Content(token.to_string()));
        }
        self.events = kept;
        self.done_calls.clear();
        self.ending = Ending::Drop;
    }

    /// Generated tokens: one per thinking/content/tool-call line.
    fn eval_count(&self) -> u64 {
        (self.events.len() + usize::from(!self.done_calls.is_empty())) as u64
    }

    /// One line (without newline) in the endpoint's shape.
    fn render(&self, content: &str, thinking: &str, calls: &[ToolCall], done: bool) -> String {
        let mut o = Obj::new()
            .str("model", &self.model)
            .str("created_at", CREATED_AT);
        match self.api {
            Api::Chat => {
                let mut message = Obj::new().str("role", "assistant").str("content", content);
                if !thinking.is_empty() {
                    message = message.str("thinking", thinking);
                }
                if !calls.is_empty() {
                    message = message.raw("tool_calls", &calls_json(calls));
                }
                o = o.raw("message", &message.finish());
            }
            Api::Generate => {
                o = o.str("response", content);
                if !thinking.is_empty() {
                    o = o.str("thinking", thinking);
                }
                if !calls.is_empty() {
                    o = o.raw("tool_calls", &calls_json(calls));
                }
            }
        }
        o = o.bool("done", done);
        if done {
            o = o.str("done_reason", self.done_reason);
            if self.api == Api::Generate {
                o = o.raw("context", "[1,2,3]");
            }
            o = self.metrics(o);
        }
        o.finish()
    }

    /// Appends the metrics of a done line (zero values omitted, as Ollama's `omitempty`).
    fn metrics(&self, o: Obj) -> Obj {
        let eval = self.eval_count();
        let load = 1_000_000;
        let prompt_duration = self.prompt_eval_count * 100_000;
        let eval_duration = eval * 10_000_000;
        let total = load + prompt_duration + eval_duration + 1_000_000;
        let mut o = o
            .num("total_duration", total)
            .num("load_duration", load)
            .num("prompt_eval_count", self.prompt_eval_count)
            .num("prompt_eval_duration", prompt_duration);
        if eval > 0 {
            o = o
                .num("eval_count", eval)
                .num("eval_duration", eval_duration);
        }
        o
    }

    fn event_line(&self, event: &Event) -> String {
        match event {
            Event::Think(t) => self.render("", t, &[], false),
            Event::Content(c) => self.render(c, "", &[], false),
            Event::Calls(calls) => self.render("", "", calls, false),
        }
    }

    fn done_line(&self) -> String {
        self.render("", "", &self.done_calls, true)
    }

    /// The non-streaming object: contents and thinking concatenated, all calls (if tools were
    /// sent), done_reason and metrics.
    fn aggregate(&self) -> String {
        let mut content = String::new();
        let mut thinking = String::new();
        let mut calls = Vec::new();
        for event in &self.events {
            match event {
                Event::Think(t) => thinking.push_str(t),
                Event::Content(c) => content.push_str(c),
                Event::Calls(c) => calls.extend(c.iter().cloned()),
            }
        }
        calls.extend(self.done_calls.iter().cloned());
        if !self.had_tools {
            calls.clear();
        }
        self.render(&content, &thinking, &calls, true)
    }

    /// The streamed body as lines, pauses and an optional abort.
    fn stream_steps(&self) -> Vec<Step> {
        let line = |s: String| Step::Bytes(Bytes::from(s + "\n"));
        let mut steps = Vec::new();
        for (i, event) in self.events.iter().enumerate() {
            if self.slow && i > 0 {
                steps.push(Step::Sleep(SLOW_LINE_DELAY));
            }
            steps.push(line(self.event_line(event)));
        }
        if self.slow {
            steps.push(Step::Sleep(SLOW_LINE_DELAY));
        }
        match self.ending {
            Ending::Done => steps.push(line(self.done_line())),
            Ending::Error => steps.push(line(Obj::new().str("error", RUNNER_STOPPED).finish())),
            Ending::Drop => {
                let next = self.event_line(&Event::Content(" lost".into())) + "\n";
                let half = next.as_bytes()[..next.len() / 2].to_vec();
                steps.push(Step::Bytes(Bytes::from(half)));
                steps.push(Step::Abort);
            }
            Ending::Garbage => {
                steps.push(line("this is not json".into()));
                steps.push(line(self.done_line()));
            }
            Ending::Stall => {
                steps.push(Step::Sleep(STALL_DURATION));
                steps.push(line(self.done_line()));
            }
        }
        steps
    }
}

/// Parses and plans `POST /api/chat`.
fn prepare_chat(body: &[u8], shared: &Shared) -> Result<Prepared, ApiError> {
    let req = decode_object(body, "ChatRequest")?;
    validate_chat_fields(&req)?;
    let tools: &[Value] = req
        .get("tools")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let common = validate_common(&req, "chat", !tools.is_empty(), shared)?;
    let messages: Vec<&Map<String, Value>> = req
        .get("messages")
        .and_then(Value::as_array)
        .map(|ms| ms.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();

    if messages.is_empty() {
        // Ollama just loads (or, with keep_alive 0, unloads) the model.
        let reason = if keep_alive_zero(&req) {
            "unload"
        } else {
            "load"
        };
        let out = Obj::new()
            .str("model", &common.requested)
            .str("created_at", CREATED_AT)
            .raw("message", r#"{"role":"assistant","content":""}"#)
            .bool("done", true)
            .str("done_reason", reason)
            .finish();
        return Ok(Prepared::Load {
            resp: json_response(StatusCode::OK, out),
            model: common.model,
            unload: reason == "unload",
        });
    }

    let role = |m: &Map<String, Value>| str_field(m, "role").unwrap_or("").to_ascii_lowercase();
    let content = |m: &Map<String, Value>| str_field(m, "content").unwrap_or("").to_string();
    let user_text = messages
        .iter()
        .rev()
        .find(|m| role(m) == "user")
        .map(|m| content(m))
        .unwrap_or_default();
    let lower = user_text.to_lowercase();
    let last = messages[messages.len() - 1];
    let default_text = format!("Hello! You said: {user_text}");

    let mut events = if common.thinking {
        thinking_events()
    } else {
        Vec::new()
    };
    let mut done_calls = Vec::new();
    let (ending, slow, done_reason) = if let Some((evs, ending, slow, reason)) =
        keyword_scenario(&lower, common.json_format, &default_text)
    {
        events.extend(evs);
        (ending, slow, reason)
    } else if let Some(queries) = scripted_search(&user_text, &messages, tools) {
        // `[search:…]`: the model calls the web_search function the proxy runs (once per
        // query, all in one chunk), and with `[call:…]` that tool too, in the same chunk.
        let client_call = scripted_call(&user_text).filter(|(name, _)| name != "web_search");
        let calls: Vec<ToolCall> = queries
            .into_iter()
            .map(|query| ("web_search".to_string(), json!({ "query": query })))
            .chain(client_call)
            .enumerate()
            .map(|(i, (name, arguments))| ToolCall {
                id: random_call_id(),
                index: if common.model.calls_on_done { 0 } else { i },
                name,
                arguments,
            })
            .collect();
        if lower.contains("[preamble]") {
            events.push(Event::Content("Let me search.".into()));
        }
        if common.model.calls_on_done {
            done_calls = calls;
        } else {
            events.push(Event::Calls(calls));
        }
        (Ending::Done, false, "stop")
    } else if let Some(step) = scripted_load(&messages, tools) {
        match step {
            Scripted::Say(text) => events.extend(content_events(&text)),
            Scripted::Call(name, arguments) => {
                let call = ToolCall {
                    id: random_call_id(),
                    index: 0,
                    name,
                    arguments,
                };
                if common.model.calls_on_done {
                    done_calls = vec![call];
                } else {
                    events.push(Event::Calls(vec![call]));
                }
            }
        }
        (Ending::Done, false, "stop")
    } else if role(last) == "tool" {
        events.extend(content_events(&format!("Tool said: {}", content(last))));
        (Ending::Done, false, "stop")
    } else if let Some((name, arguments)) = scripted_call(&user_text).filter(|_| !tools.is_empty())
    {
        let call = ToolCall {
            id: random_call_id(),
            index: 0,
            name,
            arguments,
        };
        if common.model.calls_on_done {
            done_calls = vec![call];
        } else {
            events.push(Event::Calls(vec![call]));
        }
        (Ending::Done, false, "stop")
    } else if !tools.is_empty() && lower.contains("weather") {
        let name = weather_tool_name(tools);
        let cities: &[&str] = if lower.contains("two cities") {
            &["Tokyo", "Paris"]
        } else {
            &["Tokyo"]
        };
        let calls: Vec<ToolCall> = cities
            .iter()
            .enumerate()
            .map(|(i, city)| ToolCall {
                id: random_call_id(),
                index: if common.model.calls_on_done { 0 } else { i },
                name: name.clone(),
                arguments: json!({ "city": city }),
            })
            .collect();
        if lower.contains("[preamble]") {
            events.push(Event::Content("Let me check.".into()));
        }
        if common.model.calls_on_done {
            done_calls = calls;
        } else {
            events.push(Event::Calls(calls));
        }
        (Ending::Done, false, "stop")
    } else {
        events.extend(content_events(&default_text));
        (Ending::Done, false, "stop")
    };

    let chars: usize = messages.iter().map(|m| content(m).chars().count()).sum();
    let prompt_text: String = messages
        .iter()
        .flat_map(|m| [str_field(m, "role"), str_field(m, "content")])
        .flatten()
        .collect();
    let mut plan = Plan {
        api: Api::Chat,
        model: common.requested.clone(),
        spec: common.model,
        prompt_text,
        stream: common.stream,
        events,
        done_calls,
        ending,
        slow,
        done_reason,
        prompt_eval_count: prompt_tokens(chars, &common.options),
        had_tools: !tools.is_empty(),
    };
    plan.apply_num_predict(int_option(&common.options, "num_predict"));
    Ok(Prepared::Plan(plan))
}

/// Parses and plans `POST /api/generate`.
fn prepare_generate(body: &[u8], shared: &Shared) -> Result<Prepared, ApiError> {
    let req = decode_object(body, "GenerateRequest")?;
    validate_generate_fields(&req)?;
    let common = validate_common(&req, "generate", false, shared)?;
    let prompt = str_field(&req, "prompt").unwrap_or("");
    if prompt.is_empty() {
        let reason = if keep_alive_zero(&req) {
            "unload"
        } else {
            "load"
        };
        let out = Obj::new()
            .str("model", &common.requested)
            .str("created_at", CREATED_AT)
            .str("response", "")
            .bool("done", true)
            .str("done_reason", reason)
            .finish();
        return Ok(Prepared::Load {
            resp: json_response(StatusCode::OK, out),
            model: common.model,
            unload: reason == "unload",
        });
    }
    let suffix = str_field(&req, "suffix").filter(|s| !s.is_empty());
    let system = str_field(&req, "system").unwrap_or("");
    let default_text = if suffix.is_some() {
        "<FILL>".to_string()
    } else {
        format!("Completion of: {prompt}")
    };
    let mut events = if common.thinking {
        thinking_events()
    } else {
        Vec::new()
    };
    let lower = prompt.to_lowercase();
    let (ending, slow, done_reason) =
        match keyword_scenario(&lower, common.json_format, &default_text) {
            Some((evs, ending, slow, reason)) => {
                events.extend(evs);
                (ending, slow, reason)
            }
            None if suffix.is_some() => {
                events.push(Event::Content(default_text));
                (Ending::Done, false, "stop")
            }
            None => {
                events.extend(content_events(&default_text));
                (Ending::Done, false, "stop")
            }
        };
    let chars =
        prompt.chars().count() + system.chars().count() + suffix.map_or(0, |s| s.chars().count());
    let mut plan = Plan {
        api: Api::Generate,
        model: common.requested.clone(),
        spec: common.model,
        prompt_text: format!("{system}{prompt}"),
        stream: common.stream,
        events,
        done_calls: Vec::new(),
        ending,
        slow,
        done_reason,
        prompt_eval_count: prompt_tokens(chars, &common.options),
        had_tools: false,
    };
    plan.apply_num_predict(int_option(&common.options, "num_predict"));
    Ok(Prepared::Plan(plan))
}

fn keep_alive_zero(req: &Map<String, Value>) -> bool {
    match req.get("keep_alive") {
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => matches!(s.as_str(), "0" | "0s" | "0m" | "0h"),
        _ => false,
    }
}

/// The queries the model searches for, when the request offers a `web_search` function and
/// the user's text asks for it: `[search:QUERY]` (one search; each further `[search:…]` is
/// another call in the same chunk), `[searches:N:QUERY]` (a search per round until N
/// `web_search` tool messages are in the conversation, the k-th for `QUERY k`), or Claude
/// Code's WebSearch sub-request, `Perform a web search for the query: Q`.
fn scripted_search(
    text: &str,
    messages: &[&Map<String, Value>],
    tools: &[Value],
) -> Option<Vec<String>> {
    let offered = tools.iter().any(|t| {
        t.get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            == Some("web_search")
    });
    if !offered {
        return None;
    }
    let done = messages
        .iter()
        .filter(|m| {
            str_field(m, "role") == Some("tool") && str_field(m, "tool_name") == Some("web_search")
        })
        .count();
    let last_is_tool = messages
        .last()
        .is_some_and(|m| str_field(m, "role") == Some("tool"));
    if let Some(start) = text.find("[searches:") {
        let rest = &text[start + "[searches:".len()..];
        let (n, rest) = rest.split_once(':')?;
        let query = rest.split(']').next()?;
        let n: usize = n.parse().ok()?;
        return (done < n).then(|| vec![format!("{query} {}", done + 1)]);
    }
    if last_is_tool {
        return None;
    }
    let queries: Vec<String> = text
        .split("[search:")
        .skip(1)
        .map(|rest| rest.split(']').next().unwrap_or_default().to_string())
        .collect();
    if !queries.is_empty() {
        return Some(queries);
    }
    let marker = "web search for the query: ";
    let start = text.find(marker)? + marker.len();
    Some(vec![text[start..].lines().next()?.trim().to_string()])
}

/// `POST /api/experimental/web_search` (`{"query","max_results"}` →
/// `{"results":[{"title","url","content"}]}`), scripted by the query: `nothing` ⇒ no results,
/// `unavailable` ⇒ HTTP 500, `ratelimited` ⇒ HTTP 429, `unsupported` ⇒ gin's plain 404, `slow`
/// ⇒ the answer after 3 s; otherwise three hits (`https://site{i}.example/…`,
/// `https://blocked.example/…`, `https://docs.rs/…`), cut to `max_results`.
async fn web_search(body: &[u8]) -> Resp {
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let query = req
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let max = req.get("max_results").and_then(Value::as_u64).unwrap_or(5) as usize;
    let lower = query.to_lowercase();
    if lower.contains("unavailable") {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "web search failed")
            .into_response();
    }
    if lower.contains("ratelimited") {
        return ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many requests").into_response();
    }
    if lower.contains("unsupported") {
        return respond(
            StatusCode::NOT_FOUND,
            Some("text/plain"),
            "404 page not found",
        );
    }
    if lower.contains("slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let slug: String = query
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let results: Vec<Value> = if lower.contains("nothing") {
        Vec::new()
    } else {
        [
            (format!("https://site1.example/{slug}"), "Site one"),
            (format!("https://blocked.example/{slug}"), "Blocked site"),
            (format!("https://docs.rs/{slug}"), "Docs"),
        ]
        .into_iter()
        .take(max)
        .map(|(url, title)| {
            json!({"title": format!("{title} on {query}"), "url": url, "content": format!("{title} says: {query} is well documented.")})
        })
        .collect()
    };
    json_response(StatusCode::OK, json!({ "results": results }).to_string())
}

/// `[call:NAME:{json arguments}]` anywhere in the user's text: a call of that
/// tool with those arguments (for driving real clients such as Claude Code).
fn scripted_call(text: &str) -> Option<(String, Value)> {
    let start = text.find("[call:")? + "[call:".len();
    let rest = &text[start..];
    let (name, args) = rest.split_once(':')?;
    let mut stream = serde_json::Deserializer::from_str(args).into_iter::<Value>();
    match stream.next()? {
        Ok(v @ Value::Object(_)) => Some((name.to_string(), v)),
        _ => None,
    }
}

/// The next step of a `[load:NAME:{json}]` script.
enum Scripted {
    Call(String, Value),
    Say(String),
}

/// `[load:NAME:{json arguments}]` in the latest user message that has one, with a search tool
/// (`ToolSearch`, Claude Code's, or `tool_search`, Codex's) among `tools`: the step that follows
/// the assistant's last call since that message. No call yet ⇒ call the search tool with
/// `{"query":"select:NAME"}`; the search was the last call ⇒ call `NAME` if the search's result
/// (the last tool message) names it, as a model must read it there, and it is offered now, else
/// say `The search result does not name NAME` or `NAME is not offered`; `NAME` (or anything
/// else) was ⇒ say `Tool said: <the last tool message's content>`. Later user messages without the keyword (Claude Code adds some
/// after tool results) do not end the script.
fn scripted_load(messages: &[&Map<String, Value>], tools: &[Value]) -> Option<Scripted> {
    let is = |m: &Map<String, Value>, r: &str| str_field(m, "role").is_some_and(|x| x == r);
    let start = messages.iter().rposition(|m| {
        is(m, "user") && str_field(m, "content").is_some_and(|c| c.contains("[load:"))
    })?;
    let text = str_field(messages[start], "content")?;
    let (name, arguments) = scripted_call(&text.replacen("[load:", "[call:", 1))?;
    let offered: Vec<&str> = tools
        .iter()
        .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
        .collect();
    let search = *offered
        .iter()
        .find(|n| **n == "ToolSearch" || **n == "tool_search")?;
    let later = &messages[start + 1..];
    let last_call = later
        .iter()
        .rev()
        .filter(|m| is(m, "assistant"))
        .find_map(|m| {
            m.get("tool_calls")?
                .as_array()?
                .last()?
                .pointer("/function/name")?
                .as_str()
        });
    let result = later
        .iter()
        .rev()
        .find(|m| is(m, "tool"))
        .and_then(|m| str_field(m, "content"))
        .unwrap_or("");
    Some(match last_call {
        None => Scripted::Call(
            search.to_string(),
            json!({ "query": format!("select:{name}") }),
        ),
        Some(n) if n == search && !result.contains(name.as_str()) => {
            Scripted::Say(format!("The search result does not name {name}"))
        }
        Some(n) if n == search && !offered.contains(&name.as_str()) => {
            Scripted::Say(format!("{name} is not offered"))
        }
        Some(n) if n == search => Scripted::Call(name, arguments),
        Some(_) => Scripted::Say(format!("Tool said: {result}")),
    })
}

/// The first tool whose name contains `weather`, else the first tool's name.
fn weather_tool_name(tools: &[Value]) -> String {
    let names: Vec<&str> = tools
        .iter()
        .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
        .collect();
    names
        .iter()
        .find(|n| n.contains("weather"))
        .or_else(|| names.first())
        .unwrap_or(&"get_weather")
        .to_string()
}

/// What to do with a validated chat/generate request.
enum Prepared {
    /// No generation, just loading (`done_reason:"load"`) or unloading (`"unload"`) the model.
    Load {
        resp: Resp,
        model: &'static ModelSpec,
        unload: bool,
    },
    Plan(Plan),
}

// ---------------------------------------------------------------------------------------------
// Delivery: framing, pacing, counting
// ---------------------------------------------------------------------------------------------

/// How streamed bytes are cut into frames.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Chunking {
    /// Sizes cycle through [`AWKWARD_FRAME_SIZES`] regardless of line boundaries (default).
    Awkward,
    /// One frame per line.
    Lines,
    /// Everything between pauses in one frame.
    Whole,
    /// One byte per frame.
    Bytes,
}

impl Chunking {
    fn from_headers(headers: &HeaderMap) -> Chunking {
        match headers
            .get(CHUNKING_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("lines") => Chunking::Lines,
            Some("whole") => Chunking::Whole,
            Some("bytes") => Chunking::Bytes,
            _ => Chunking::Awkward,
        }
    }
}

/// A piece of a planned body.
enum Step {
    /// A line (or a partial line).
    Bytes(Bytes),
    /// Silence (the client going away is noticed meanwhile).
    Sleep(Duration),
    /// Abort the connection (an `Err` frame).
    Abort,
}

/// What the sending task does, after framing.
enum Out {
    Frame(Bytes),
    /// Let the frame go out before the next one.
    Yield,
    Sleep(Duration),
    Abort,
}

/// Frames the steps: the bytes between two pauses are cut according to `mode`.
fn frame_steps(steps: Vec<Step>, mode: Chunking) -> Vec<Out> {
    let mut outs = Vec::new();
    let mut segment: Vec<Bytes> = Vec::new();
    let mut cycle = 0usize;
    let mut flush = |segment: &mut Vec<Bytes>, outs: &mut Vec<Out>| {
        let frames: Vec<Bytes> = match mode {
            Chunking::Lines => std::mem::take(segment),
            Chunking::Whole | Chunking::Awkward | Chunking::Bytes => {
                let all: Vec<u8> = segment.drain(..).flat_map(|b| b.to_vec()).collect();
                let all = Bytes::from(all);
                match mode {
                    Chunking::Whole => vec![all],
                    Chunking::Bytes => (0..all.len()).map(|i| all.slice(i..i + 1)).collect(),
                    _ => {
                        let mut frames = Vec::new();
                        let mut at = 0;
                        while at < all.len() {
                            let size = AWKWARD_FRAME_SIZES[cycle % AWKWARD_FRAME_SIZES.len()];
                            cycle += 1;
                            let end = (at + size).min(all.len());
                            frames.push(all.slice(at..end));
                            at = end;
                        }
                        frames
                    }
                }
            }
        };
        for frame in frames.into_iter().filter(|f| !f.is_empty()) {
            if !outs.is_empty() {
                outs.push(Out::Yield);
            }
            outs.push(Out::Frame(frame));
        }
    };
    for step in steps {
        match step {
            Step::Bytes(b) => segment.push(b),
            Step::Sleep(d) => {
                flush(&mut segment, &mut outs);
                outs.push(Out::Sleep(d));
            }
            Step::Abort => {
                flush(&mut segment, &mut outs);
                // Give hyper time to write what precedes the abort.
                outs.push(Out::Sleep(Duration::from_millis(50)));
                outs.push(Out::Abort);
            }
        }
    }
    flush(&mut segment, &mut outs);
    outs
}

/// Counts one generation: `in_flight` while alive; `completed` or `cancelled` at the end.
/// Dropped without [`FlightGuard::complete`] (client gone, task aborted) ⇒ cancelled.
struct FlightGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl FlightGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        FlightGuard {
            shared,
            finished: false,
        }
    }

    fn complete(mut self) {
        self.shared.completed.fetch_add(1, Ordering::SeqCst);
        self.finished = true;
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        // Counters first, so that `in_flight() == 0` implies they are final.
        if !self.finished {
            self.shared.cancelled.fetch_add(1, Ordering::SeqCst);
        }
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sends the frames; stops (uncompleted ⇒ cancelled) as soon as the body is dropped.
async fn pump(tx: mpsc::Sender<FrameResult>, outs: Vec<Out>, guard: FlightGuard) {
    for out in outs {
        match out {
            Out::Frame(bytes) => {
                if tx.send(Ok(Frame::data(bytes))).await.is_err() {
                    return; // guard dropped ⇒ cancelled
                }
            }
            Out::Yield => tokio::task::yield_now().await,
            Out::Sleep(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = tx.closed() => return,
                }
            }
            Out::Abort => {
                let err = io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "fake_ollama: simulated dropped connection",
                );
                if tx.send(Err(err)).await.is_err() {
                    return;
                }
            }
        }
    }
    guard.complete();
}

/// Spawns the sending task and returns the streaming response.
fn spawn_stream(content_type: &'static str, outs: Vec<Out>, guard: FlightGuard) -> Resp {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(pump(tx, outs, guard));
    streaming_response(content_type, rx)
}

async fn deliver(prepared: Prepared, chunking: Chunking, shared: Arc<Shared>) -> Resp {
    let mut plan = match prepared {
        Prepared::Load {
            resp,
            model,
            unload,
        } => {
            if unload {
                shared.unload(model);
            } else {
                shared.touch(model);
            }
            return resp;
        }
        Prepared::Plan(plan) => plan,
    };
    shared.generations.fetch_add(1, Ordering::SeqCst);
    shared.touch(plan.spec);
    let prompt_delay = shared.prompt_delay(plan.spec, &plan.prompt_text);
    let header_delay = *shared.header_delay.lock().unwrap();
    let guard = FlightGuard::new(shared.clone());
    if !header_delay.is_zero() {
        // A slow host: nothing, not even the head, for a while (a client that goes away
        // meanwhile drops this future, and the guard counts a cancellation).
        tokio::time::sleep(header_delay).await;
    }
    if shared.silent_after_headers.load(Ordering::SeqCst) {
        let content_type = if plan.stream { NDJSON_CT } else { JSON_CT };
        return spawn_stream(content_type, vec![Out::Sleep(STALL_DURATION)], guard);
    }
    if plan.stream {
        if shared.die_mid_stream.load(Ordering::SeqCst) {
            plan.die_mid_stream();
        }
        // Paced scenarios always send whole lines, with their pauses.
        let mode = if plan.slow || plan.ending == Ending::Stall {
            Chunking::Lines
        } else {
            chunking
        };
        let mut steps = plan.stream_steps();
        if !prompt_delay.is_zero() {
            steps.insert(0, Step::Sleep(prompt_delay));
        }
        let outs = frame_steps(steps, mode);
        return spawn_stream(NDJSON_CT, outs, guard);
    }
    if !prompt_delay.is_zero() {
        tokio::time::sleep(prompt_delay).await;
    }
    match plan.ending {
        Ending::Error => {
            guard.complete();
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, RUNNER_STOPPED).into_response()
        }
        Ending::Garbage => {
            guard.complete();
            respond(StatusCode::OK, Some(JSON_CT), "this is not json")
        }
        Ending::Drop => {
            let full = plan.aggregate();
            let half = Bytes::from(full.as_bytes()[..full.len() / 2].to_vec());
            let outs = frame_steps(vec![Step::Bytes(half), Step::Abort], Chunking::Whole);
            spawn_stream(JSON_CT, outs, guard)
        }
        Ending::Done | Ending::Stall => {
            // A non-streaming response only comes when generation is over. If the client goes
            // away meanwhile, hyper drops this future and the guard counts a cancellation.
            let delay = if plan.ending == Ending::Stall {
                STALL_DURATION
            } else if plan.slow {
                SLOW_LINE_DELAY * plan.events.len() as u32
            } else {
                Duration::ZERO
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            guard.complete();
            json_response(StatusCode::OK, plan.aggregate())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /api/embed
// ---------------------------------------------------------------------------------------------

/// Deterministic L2-normalised vector for one input.
fn embedding(input: &str, dims: usize) -> Vec<f32> {
    let sum: u64 = input.bytes().map(u64::from).sum();
    let raw: Vec<f64> = (0..dims as u64)
        .map(|j| ((sum.wrapping_mul(j + 1)) % 97 + 1) as f64)
        .collect();
    let norm = raw.iter().map(|v| v * v).sum::<f64>().sqrt();
    raw.iter().map(|v| (v / norm) as f32).collect()
}

/// `POST /api/embed`: the response and the model (which it loads).
fn embed(body: &[u8], shared: &Shared) -> Result<(Resp, &'static ModelSpec), ApiError> {
    let req = decode_object(body, "EmbedRequest")?;
    check_type(&req, "model", "EmbedRequest", "string", Value::is_string)?;
    check_type(&req, "dimensions", "EmbedRequest", "int", Value::is_number)?;
    let requested = str_field(&req, "model").unwrap_or("");
    if requested.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let m = shared.find(requested).ok_or_else(|| not_found(requested))?;
    if !m.has("embedding") {
        return Err(ApiError::bad_request(format!(
            "\"{requested}\" does not support embeddings"
        )));
    }
    let inputs: Vec<&str> = match req.get("input") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(ApiError::bad_request("invalid input"))
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| ApiError::bad_request("invalid input type"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::bad_request("invalid input type")),
    };
    let dims = int_option(&req, "dimensions")
        .filter(|d| *d > 0)
        .map_or(8, |d| d as usize);
    let vectors: Vec<Vec<f32>> = inputs.iter().map(|s| embedding(s, dims)).collect();
    let chars: usize = inputs.iter().map(|s| s.chars().count()).sum();
    let out = Obj::new()
        .str("model", requested)
        .val("embeddings", &json!(vectors))
        .num("total_duration", 1)
        .num("load_duration", 1)
        .num("prompt_eval_count", chars.div_ceil(4) as u64)
        .finish();
    Ok((json_response(StatusCode::OK, out), m))
}

// ---------------------------------------------------------------------------------------------
// Ordered JSON object builder (serde_json's `Value` sorts keys; Ollama's field order matters)
// ---------------------------------------------------------------------------------------------

/// Builds a JSON object with keys in insertion order.
struct Obj(String);

impl Obj {
    fn new() -> Self {
        Obj(String::from("{"))
    }

    /// Adds `"key":<raw JSON>`.
    fn raw(mut self, key: &str, raw_json: &str) -> Self {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&Value::from(key).to_string());
        self.0.push(':');
        self.0.push_str(raw_json);
        self
    }

    fn str(self, key: &str, value: &str) -> Self {
        let encoded = Value::from(value).to_string();
        self.raw(key, &encoded)
    }

    fn num(self, key: &str, value: u64) -> Self {
        self.raw(key, &value.to_string())
    }

    fn bool(self, key: &str, value: bool) -> Self {
        self.raw(key, if value { "true" } else { "false" })
    }

    fn val(self, key: &str, value: &Value) -> Self {
        self.raw(key, &value.to_string())
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}
