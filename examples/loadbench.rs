//! End-to-end load benchmark: a fast fake Ollama, the real proxy binary and a
//! load generator, measured side by side in one run (loopback only).
//!
//! ```text
//! cargo build --release --example proxy --example loadbench
//! target/release/examples/loadbench
//! ```
//!
//! Three processes: this one (the load generator), a fake Ollama (this same
//! binary re-run with `--fake`) and the proxy (`proxy` next to this binary,
//! started with `LISTEN_ADDR=127.0.0.1:0`). The proxy's CPU time and resident
//! memory are its own, read from `/proc/<pid>/stat` and `/proc/<pid>/status`;
//! its write system calls (`/proc/<pid>/io`), read system calls (`perf
//! stat` on the `read`, `readv` and `recvfrom` tracepoints, since socket
//! reads do not show in `/proc/<pid>/io`; `—` where `perf` is missing or not
//! permitted) and context switches (every thread's
//! `/proc/<pid>/task/*/status`) are reported per streamed token.
//!
//! Every scenario runs twice, back to back: straight to the fake ("direct")
//! and through the proxy. The fake answers every `/api/chat` with 256 token
//! lines (~125 bytes each) and a done line, as fast as the socket takes
//! them (`fast`), or flushing each line on its own (`paced`, model name
//! `paced`: one line per TCP write, as a real model streams), or one line
//! every 5 s (`slow`, model name `slow`, to hold streams open for the memory
//! figures), or one line every 20 ms (`rate50`, model name `rate50`: 50
//! tokens/s, each line in its own write, `LOADBENCH_PACED_TOKENS` lines).
//! The model `short` answers with 16 token lines (the `non-stream 16
//! tokens` rows: what a request costs apart from its tokens).
//!
//! Last, `paced streams`: many streams at a model's real pace, to show that
//! the proxy keeps up and adds no latency. A fake and a proxy of its own
//! start for it, the proxy pinned to CPU 0 (`taskset -c 0`), the fake to
//! CPU 1 (`taskset -c 1`), and this process moves to CPU 1 for the
//! scenario (`taskset -a -p`; `libc` is no dependency); the first line of
//! its table says which pinning applied. `LOADBENCH_PACED_STREAMS` `rate50`
//! streams open over 1 s, straight to the fake (`/api/chat`) and then
//! through the proxy (`/v1/chat/completions`, `stream: true`). Columns:
//! - streams completed: streams that ended with `"done":true` / `[DONE]`;
//! - % of pace: tokens received per second over all streams while every
//!   stream is open (the last one's first token to the first one's last),
//!   divided by streams × 50 (the sum of each stream's own rate when that
//!   window is under 0.5 s);
//! - TTFB p50/p99: from the connect to the first content token;
//! - gap p50/p99/max: time between consecutive content tokens of a stream
//!   at the client (tokens read together count 0); the pace is 20 ms, so
//!   what matters is how far above 20 ms the p99 is;
//! - proxy CPU µs/token, writes/token, reads/token, switches/token: the
//!   proxy's CPU time, write and read system calls and context switches
//!   during the run per received token (in brackets on the direct row: the
//!   idle proxy);
//! - proxy RSS before / peak: before the streams open, and the highest of
//!   samples every 50 ms while they run; KiB per stream = (peak − before) /
//!   streams.
//!
//! Below the table, each side's CPU use of the fake, the load generator and
//! the proxy (busy % of the run's wall time: near 100 % on CPU 1 means the
//! fake and the generator, not the proxy, set the pace).
//!
//! Open files: every child starts with its soft limit raised to its hard
//! limit, and so does this process (it re-runs itself once under `sh -c
//! 'ulimit -n …'`); `paced streams` opens fewer streams, saying so, when a
//! hard limit is too low (2 sockets per stream in the proxy, 1 in the fake
//! and here).
//!
//! Environment: `LOADBENCH_SECS` (seconds per scenario, default 3),
//! `LOADBENCH_SLOW` (stream counts for the memory figures, default
//! `1000,10000`; empty to skip), `LOADBENCH_ONLY` (run only the scenarios
//! whose name contains it, e.g. `stream c=32` or `paced streams`),
//! `LOADBENCH_PACED_STREAMS` (streams of `paced streams`, default 2000;
//! empty or 0 to skip), `LOADBENCH_PACED_TOKENS` (token lines of a `rate50`
//! answer, default 250: ~5 s per stream). The whole run takes about three
//! minutes on 2 vCPUs, `paced streams` about 15 s of it.
// A benchmark harness: a failed unwrap is a broken run, not a result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKENS: usize = 256;
/// Token lines of a `short` answer (the non-streamed 16-token rows).
const SHORT_TOKENS: usize = 16;

/// The pace of the `rate50` model: one line every 20 ms (50 tokens/s).
const RATE_GAP: Duration = Duration::from_millis(20);

/// Token lines of a `rate50` answer (`LOADBENCH_PACED_TOKENS`, default 250:
/// a stream of ~5 s at 50 tokens/s). The fake reads it from the environment
/// it inherits.
fn paced_tokens() -> usize {
    std::env::var("LOADBENCH_PACED_TOKENS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(250)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--fake") {
        fake::run();
        return;
    }
    raise_own_fd_limit();
    orchestrate();
}

/// The load generator holds one socket per stream: like `spawn` does for
/// the children, raise the soft open-file limit to the hard one, by running
/// this binary again once under `sh -c 'ulimit -n …'` (std has no
/// `setrlimit`, and `libc` is no dependency).
fn raise_own_fd_limit() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("LOADBENCH_FDS_RAISED").is_some() {
        return;
    }
    let (soft, hard) = fd_limits(std::process::id());
    if soft >= hard {
        return;
    }
    let err = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .env("LOADBENCH_FDS_RAISED", "1")
        .exec();
    eprintln!("loadbench: cannot raise the open-file limit ({err}); keeping {soft}");
}

// ---------------------------------------------------------------- fake Ollama

mod fake {
    use super::*;

    /// Pre-rendered answers, shared by every response (no per-line work).
    pub(super) struct Script {
        pub(super) lines: Vec<Bytes>,
        pub(super) whole: Bytes,
    }

    const WORDS: [&str; 16] = [
        " The",
        " quick",
        " brown",
        " fox",
        " jumps",
        " over",
        " the",
        " lazy",
        " dog",
        ",",
        " and",
        " then",
        " says",
        " \\\"hi\\\"",
        ".\\n",
        "\\n```rust",
    ];

    impl Script {
        /// `tokens` token lines and the done line.
        pub(super) fn new(tokens: usize) -> Script {
            let mut lines = Vec::with_capacity(tokens + 1);
            let mut text = String::new();
            for i in 0..tokens {
                let w = WORDS[i % WORDS.len()];
                text.push_str(w);
                lines.push(Bytes::from(format!(
                    "{{\"model\":\"qwen3:8b\",\"created_at\":\"2026-08-21T10:00:00.{:09}Z\",\"message\":{{\"role\":\"assistant\",\"content\":\"{w}\"}},\"done\":false}}\n",
                    i * 1_000_003 % 1_000_000_000
                )));
            }
            let done = |content: &str| {
                format!(
                    "{{\"model\":\"qwen3:8b\",\"created_at\":\"2026-08-21T10:00:01.5Z\",\"message\":{{\"role\":\"assistant\",\"content\":\"{content}\"}},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":1510029631,\"load_duration\":20128371,\"prompt_eval_count\":26,\"prompt_eval_duration\":41264000,\"eval_count\":{tokens},\"eval_duration\":1447000000}}\n"
                )
            };
            lines.push(Bytes::from(done("")));
            Script {
                lines,
                whole: Bytes::from(done(&text)),
            }
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Pace {
        Fast,
        Paced,
        Slow,
        /// One line every `RATE_GAP` from the start of the answer.
        Rate,
    }

    /// The NDJSON answer, one frame per line.
    struct Lines {
        script: Arc<Script>,
        next: usize,
        pace: Pace,
        yielded: bool,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        /// When the answer started (`Rate`: line k is due at start + k × gap,
        /// so a late line does not delay the ones after it).
        start: tokio::time::Instant,
    }

    impl Body for Lines {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            let this = &mut *self;
            if this.next >= this.script.lines.len() {
                return Poll::Ready(None);
            }
            if this.next > 0 {
                match this.pace {
                    Pace::Fast => {}
                    Pace::Paced => {
                        // Pending once: hyper flushes what it has, so each
                        // line leaves in its own write.
                        if !this.yielded {
                            this.yielded = true;
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        this.yielded = false;
                    }
                    Pace::Slow => {
                        let s = this.sleep.get_or_insert_with(|| {
                            Box::pin(tokio::time::sleep(Duration::from_secs(5)))
                        });
                        if s.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        this.sleep = None;
                    }
                    Pace::Rate => {
                        let due = this.start + RATE_GAP * this.next as u32;
                        let s = this
                            .sleep
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                        if s.deadline() != due {
                            s.as_mut().reset(due);
                        }
                        if s.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                }
            }
            let line = this.script.lines[this.next].clone();
            this.next += 1;
            Poll::Ready(Some(Ok(Frame::data(line))))
        }
    }

    type FakeBody = http_body_util::Either<Lines, Full<Bytes>>;

    /// `scripts`: the usual answer, the `rate50` one and the `short` one.
    async fn handle(
        req: Request<Incoming>,
        scripts: [Arc<Script>; 3],
    ) -> Result<Response<FakeBody>, Infallible> {
        let [script, rate_script, short_script] = scripts;
        let path = req.uri().path().to_string();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        if path != "/api/chat" {
            let mut res = Response::new(FakeBody::Right(Full::new(Bytes::from_static(
                b"404 page not found",
            ))));
            *res.status_mut() = StatusCode::NOT_FOUND;
            return Ok(res);
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let stream = v.get("stream").and_then(serde_json::Value::as_bool) != Some(false);
        let pace = match v.get("model").and_then(serde_json::Value::as_str) {
            Some("slow") => Pace::Slow,
            Some("paced") => Pace::Paced,
            Some("rate50") => Pace::Rate,
            _ => Pace::Fast,
        };
        let short = v.get("model").and_then(serde_json::Value::as_str) == Some("short");
        let script = if pace == Pace::Rate {
            rate_script
        } else if short {
            short_script
        } else {
            script
        };
        let res = if stream {
            let mut res = Response::new(FakeBody::Left(Lines {
                script,
                next: 0,
                pace,
                yielded: false,
                sleep: None,
                start: tokio::time::Instant::now(),
            }));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/x-ndjson"),
            );
            res
        } else {
            let mut res = Response::new(FakeBody::Right(Full::new(script.whole.clone())));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json; charset=utf-8"),
            );
            res
        };
        Ok(res)
    }

    pub(super) fn run() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.set_reuseaddr(true).unwrap();
            sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let listener = sock.listen(4096).unwrap();
            println!(
                "fake-ollama listening on {}",
                listener.local_addr().unwrap()
            );
            let script = Arc::new(Script::new(TOKENS));
            let rate_script = Arc::new(Script::new(paced_tokens()));
            let short_script = Arc::new(Script::new(SHORT_TOKENS));
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(a) => a,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let scripts = [script.clone(), rate_script.clone(), short_script.clone()];
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, scripts.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }
}

// ---------------------------------------------------------------- processes

/// A child process that is killed (by its own pid) when dropped.
struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first (the proxy shuts down gracefully; a profiler
        // wrapping it gets to write its report), SIGKILL after 5 s.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
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

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts `cmd` with its open-file limit raised to the hard limit, and
/// waits for the line naming its address (`… on [http://]ADDR…`).
// The child is waited for on every path: on failure here, otherwise by
// `Proc`'s Drop.
#[allow(clippy::zombie_processes)]
fn spawn(program: &std::path::Path, args: &[&str], env: &[(&str, String)], marker: &str) -> Proc {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$0\" \"$@\"")
        .arg(program)
        .args(args)
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} exited before printing its address", program.display());
        }
        if let Some(rest) = line.split(marker).nth(1) {
            let rest = rest.trim_start_matches("http://");
            let addr = rest
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/');
            let addr: SocketAddr = addr.parse().unwrap();
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut sink = String::new();
                while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                    sink.clear();
                }
            });
            return Proc { child, addr };
        }
    }
}

/// (utime + stime, stime) of a whole process (all its threads), in seconds.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `rest` starts at field 3.
    let user: u64 = f[11].parse().unwrap();
    let sys: u64 = f[12].parse().unwrap();
    let hz = clock_ticks();
    ((user + sys) as f64 / hz, sys as f64 / hz)
}

/// Write system calls (`syscw` of `/proc/<pid>/io`: `write`/`writev`; a
/// socket's `recv` does not count in `syscr`: see [`Reads`]) and
/// context switches (voluntary + involuntary, summed over every thread in
/// `/proc/<pid>/task`) of a process so far.
#[derive(Clone, Copy, Default)]
struct Calls {
    writes: u64,
    switches: u64,
}

fn calls(pid: u32) -> Calls {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut switches = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            switches += field(&status, "voluntary_ctxt_switches:")
                + field(&status, "nonvoluntary_ctxt_switches:");
        }
    }
    Calls {
        writes: field(&io, "syscw:"),
        switches,
    }
}

/// Counts a process's read system calls while it runs: `perf stat` on the
/// `read`, `readv` and `recvfrom` tracepoints (socket reads do not show in
/// `/proc/<pid>/io`). `None` where `perf` cannot (not installed, not
/// permitted): the column then says `—`.
struct Reads(Option<Child>);

impl Reads {
    fn start(pid: u32) -> Reads {
        let child = Command::new("perf")
            .args(["stat", "-x,", "-e"])
            .arg("syscalls:sys_enter_read,syscalls:sys_enter_readv,syscalls:sys_enter_recvfrom")
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok();
        // perf attaches to the threads as it starts.
        std::thread::sleep(Duration::from_millis(100));
        Reads(child)
    }

    /// Stops counting (SIGINT makes perf print its counts); the total.
    fn stop(self) -> Option<u64> {
        let child = self.0?;
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().ok()?;
        let text = String::from_utf8_lossy(&out.stderr);
        let counts: Vec<u64> = text
            .lines()
            .filter(|l| l.contains("syscalls:sys_enter_"))
            .filter_map(|l| l.split(',').next()?.parse().ok())
            .collect();
        (counts.len() == 3).then(|| counts.iter().sum())
    }
}

fn clock_ticks() -> f64 {
    // USER_HZ; 100 on every Linux this runs on (getconf CLK_TCK).
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The soft `Max open files` of a process.
fn fd_limit(pid: u32) -> u64 {
    fd_limits(pid).0
}

/// The soft and hard `Max open files` of a process (`unlimited`: `u64::MAX`).
fn fd_limits(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("Max open files")) else {
        return (1024, 1024);
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    let limit = |i: usize, or: u64| match f.get(i) {
        Some(&"unlimited") => u64::MAX,
        Some(v) => v.parse().unwrap_or(or),
        None => or,
    };
    let soft = limit(3, 1024);
    (soft, limit(4, soft))
}

// ---------------------------------------------------------------- load

#[derive(Clone, Copy)]
struct Sample {
    ttfb: Duration,
    total: Duration,
}

struct Scenario {
    name: &'static str,
    via: &'static str,
    path: &'static str,
    body: &'static str,
    /// Must appear in the last bytes of every answer.
    tail: &'static str,
    conc: usize,
    stream: bool,
    /// Token lines in each answer.
    tokens: usize,
}

struct Outcome {
    samples: Vec<Sample>,
    elapsed: Duration,
    proxy_cpu: f64,
    /// The kernel's share of `proxy_cpu` (socket reads and writes).
    proxy_sys: f64,
    /// The proxy's system calls and context switches during the run.
    proxy_calls: Calls,
    /// The proxy's read system calls during the run, where `perf` counts them.
    proxy_reads: Option<u64>,
    bytes: u64,
}

async fn worker(
    addr: SocketAddr,
    path: &'static str,
    body: Bytes,
    tail: &'static str,
    deadline: Instant,
) -> (Vec<Sample>, u64) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut samples = Vec::new();
    let mut bytes = 0u64;
    let mut last = Vec::with_capacity(32 * 1024);
    while Instant::now() < deadline {
        sender.ready().await.unwrap();
        let req = Request::post(path)
            .header(header::HOST, "127.0.0.1")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .unwrap();
        let t0 = Instant::now();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let mut b = res.into_body();
        let mut ttfb = None;
        last.clear();
        while let Some(frame) = b.frame().await {
            if let Ok(d) = frame.unwrap().into_data() {
                if ttfb.is_none() {
                    ttfb = Some(t0.elapsed());
                }
                bytes += d.len() as u64;
                last.extend_from_slice(&d);
                if last.len() > 16 * 1024 {
                    last.drain(..last.len() - 8 * 1024);
                }
            }
        }
        let total = t0.elapsed();
        assert!(
            String::from_utf8_lossy(&last).contains(tail),
            "{path}: the answer does not end as expected ({tail}): {}",
            String::from_utf8_lossy(&last)
        );
        samples.push(Sample {
            ttfb: ttfb.unwrap_or(total),
            total,
        });
    }
    (samples, bytes)
}

async fn run_scenario(s: &Scenario, addr: SocketAddr, proxy_pid: u32, secs: f64) -> Outcome {
    let body = Bytes::from_static(s.body.as_bytes());
    let reads = (s.via != "direct").then(|| Reads::start(proxy_pid));
    let cpu0 = cpu_seconds(proxy_pid);
    let calls0 = calls(proxy_pid);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(secs);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..s.conc {
        set.spawn(worker(addr, s.path, body.clone(), s.tail, deadline));
    }
    let mut samples = Vec::new();
    let mut bytes = 0;
    while let Some(r) = set.join_next().await {
        let (v, b) = r.unwrap();
        samples.extend(v);
        bytes += b;
    }
    let elapsed = t0.elapsed();
    let cpu1 = cpu_seconds(proxy_pid);
    let calls1 = calls(proxy_pid);
    Outcome {
        samples,
        elapsed,
        proxy_cpu: cpu1.0 - cpu0.0,
        proxy_sys: cpu1.1 - cpu0.1,
        proxy_calls: Calls {
            writes: calls1.writes - calls0.writes,
            switches: calls1.switches - calls0.switches,
        },
        proxy_reads: reads.and_then(Reads::stop),
        bytes,
    }
}

/// `count` per streamed token of `requests` answers, for proxied rows.
fn per_token(is_proxy: bool, count: u64, tokens: usize) -> String {
    if !is_proxy {
        return "—".to_string();
    }
    format!("{:.2}", count as f64 / tokens.max(1) as f64)
}

fn pct(v: &mut [Duration], p: usize) -> Duration {
    v.sort_unstable();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------- slow streams

async fn open_slow(addr: SocketAddr, request: Arc<Vec<u8>>) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(&request).await?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the first event"));
        }
        seen.extend_from_slice(&buf[..n]);
        if !seen.starts_with(b"HTTP/1.1 200") && seen.len() >= 12 {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&seen).into_owned(),
            ));
        }
        if seen.windows(6).any(|w| w == b"data: ") {
            return Ok(s);
        }
    }
}

struct SlowResult {
    wanted: usize,
    opened: usize,
    base_kib: u64,
    held_kib: u64,
    open_secs: f64,
    proxy_fds: usize,
}

async fn slow_streams(proxy: &Proc, n: usize) -> SlowResult {
    let pid = proxy.pid();
    let body = r#"{"model":"slow","stream":true,"messages":[{"role":"user","content":"Tell me a long story."}]}"#;
    let request = Arc::new(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    );
    let base_fds = open_fds(pid);
    let base_kib = rss_kib(pid);
    let t0 = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(128));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let gate = gate.clone();
        let request = request.clone();
        let addr = proxy.addr;
        set.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            tokio::time::timeout(Duration::from_secs(30), open_slow(addr, request)).await
        });
    }
    let mut held = Vec::with_capacity(n);
    let mut first_error = None;
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {
                first_error.get_or_insert_with(|| "timed out".into());
            }
        }
    }
    let open_secs = t0.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        eprintln!(
            "loadbench: {} of {n} slow streams failed to open; first error: {e}",
            n - held.len()
        );
    }
    // Let allocations settle, then read the proxy's resident memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held_kib = rss_kib(pid);
    let proxy_fds = open_fds(pid);
    let opened = held.len();
    drop(held);
    // Wait for the proxy to notice and release both sockets of each stream.
    let until = Instant::now() + Duration::from_secs(20);
    while open_fds(pid) > base_fds + 8 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    SlowResult {
        wanted: n,
        opened,
        base_kib,
        held_kib,
        open_secs,
        proxy_fds,
    }
}

// ---------------------------------------------------------------- paced streams

/// How long the paced streams take to open, one after the other.
const PACED_RAMP: Duration = Duration::from_secs(1);

/// One `rate50` stream as the client saw it.
struct PacedStream {
    /// From the start of the connect to the first token.
    ttfb: Option<Duration>,
    /// When each token arrived, in µs since the start of the run.
    arrivals: Vec<u32>,
    /// The answer ended as it should (`"done":true` or `data: [DONE]`).
    completed: bool,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether `line` (without its newline) carries a token: a native
/// `"done":false` line, or an OpenAI chunk whose delta has content (not the
/// role-only first chunk nor the finish chunk).
fn is_token(line: &[u8], sse: bool) -> bool {
    if sse {
        line.starts_with(b"data: ") && contains(line, b"\"delta\":{\"content\":\"")
    } else {
        line.ends_with(b"\"done\":false}")
    }
}

/// Opens one stream at `at`, reads it to the end and notes when each token
/// arrived (every token of one read arrives at the same time).
async fn paced_stream(
    addr: SocketAddr,
    path: &'static str,
    body: Bytes,
    sse: bool,
    t0: Instant,
    at: Instant,
) -> Result<PacedStream, String> {
    let tail: &[u8] = if sse {
        b"data: [DONE]"
    } else {
        b"\"done\":true"
    };
    tokio::time::sleep_until(at.into()).await;
    let start = Instant::now();
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = Request::post(path)
        .header(header::HOST, "127.0.0.1")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .unwrap();
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if res.status() != StatusCode::OK {
        return Err(format!("status {}", res.status()));
    }
    let mut b = res.into_body();
    let mut out = PacedStream {
        ttfb: None,
        arrivals: Vec::with_capacity(paced_tokens()),
        completed: false,
    };
    let mut partial = Vec::new();
    while let Some(frame) = b.frame().await {
        let Ok(d) = frame.map_err(|e| format!("body: {e}"))?.into_data() else {
            continue;
        };
        let now = Instant::now();
        let at_us = (now - t0).as_micros() as u32;
        for piece in d.split_inclusive(|&c| c == b'\n') {
            let line: &[u8] = if partial.is_empty() {
                piece
            } else {
                partial.extend_from_slice(piece);
                &partial
            };
            let Some(line) = line.strip_suffix(b"\n") else {
                if partial.is_empty() {
                    partial.extend_from_slice(piece);
                }
                continue;
            };
            if is_token(line, sse) {
                out.ttfb.get_or_insert(now - start);
                out.arrivals.push(at_us);
            } else if contains(line, tail) {
                out.completed = true;
            }
            partial.clear();
        }
    }
    Ok(out)
}

struct PacedRun {
    streams: Vec<PacedStream>,
    failed: usize,
    first_error: Option<String>,
    elapsed: Duration,
    proxy_cpu: f64,
    /// The kernel's share of `proxy_cpu`.
    proxy_sys: f64,
    proxy_calls: Calls,
    /// Read system calls, where `perf` counts them.
    proxy_reads: Option<u64>,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    /// CPU seconds of the fake and of this process (the load generator).
    fake_cpu: f64,
    generator_cpu: f64,
}

/// Opens `n` `rate50` streams to `addr`, spread over `PACED_RAMP`, and
/// waits for all of them; samples the proxy's resident memory meanwhile.
async fn run_paced(
    addr: SocketAddr,
    path: &'static str,
    body: Bytes,
    sse: bool,
    n: usize,
    proxy_pid: u32,
    fake_pid: u32,
) -> PacedRun {
    let me = std::process::id();
    let rss_before_kib = rss_kib(proxy_pid);
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(proxy_pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak.max(rss_kib(proxy_pid))
        })
    };
    // The proxy is idle during the direct run: counting it says 0.
    let reads = sse.then(|| Reads::start(proxy_pid));
    let cpu0 = cpu_seconds(proxy_pid);
    let calls0 = calls(proxy_pid);
    let (fake0, gen0) = (cpu_seconds(fake_pid).0, cpu_seconds(me).0);
    let t0 = Instant::now();
    let limit = PACED_RAMP + RATE_GAP * paced_tokens() as u32 + Duration::from_secs(30);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let at = t0 + PACED_RAMP.mul_f64(i as f64 / n as f64);
        let stream = paced_stream(addr, path, body.clone(), sse, t0, at);
        set.spawn(async move {
            tokio::time::timeout(limit, stream)
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
        });
    }
    let mut streams = Vec::with_capacity(n);
    let mut failed = 0;
    let mut first_error = None;
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(s) => streams.push(s),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let elapsed = t0.elapsed();
    let cpu1 = cpu_seconds(proxy_pid);
    let calls1 = calls(proxy_pid);
    let (fake1, gen1) = (cpu_seconds(fake_pid).0, cpu_seconds(me).0);
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let rss_peak_kib = sampler.join().unwrap();
    PacedRun {
        streams,
        failed,
        first_error,
        elapsed,
        proxy_cpu: cpu1.0 - cpu0.0,
        proxy_sys: cpu1.1 - cpu0.1,
        proxy_calls: Calls {
            writes: calls1.writes - calls0.writes,
            switches: calls1.switches - calls0.switches,
        },
        proxy_reads: reads.and_then(Reads::stop),
        rss_before_kib,
        rss_peak_kib,
        fake_cpu: fake1 - fake0,
        generator_cpu: gen1 - gen0,
    }
}

/// Tokens per second over all `n` streams, as a share of `n` × 50: counted
/// while every stream is open (from the last stream's first token to the
/// first stream's last token), or, when that window is shorter than 0.5 s,
/// as the sum of each stream's own rate (first to last token).
fn share_of_pace(streams: &[PacedStream], n: usize) -> f64 {
    let pace = n as f64 / RATE_GAP.as_secs_f64();
    let with = || streams.iter().filter(|s| s.arrivals.len() >= 2);
    let from = with().map(|s| s.arrivals[0]).max().unwrap_or(0);
    let to = with()
        .map(|s| *s.arrivals.last().unwrap())
        .min()
        .unwrap_or(0);
    if to > from && to - from >= 500_000 {
        let tokens: usize = with()
            .map(|s| {
                s.arrivals.partition_point(|&t| t <= to) - s.arrivals.partition_point(|&t| t < from)
            })
            .sum();
        return tokens as f64 / ((to - from) as f64 / 1e6) / pace;
    }
    let rates: f64 = with()
        .map(|s| {
            let span = (s.arrivals.last().unwrap() - s.arrivals[0]).max(1);
            (s.arrivals.len() - 1) as f64 / (span as f64 / 1e6)
        })
        .sum();
    rates / pace
}

/// Runs `taskset` with `args`; whether it worked.
fn taskset(args: &[&str]) -> bool {
    Command::new("taskset")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The CPU list this process may run on (`taskset -c -p`), e.g. `0,1`.
fn own_cpus() -> Option<String> {
    let out = Command::new("taskset")
        .args(["-c", "-p", &std::process::id().to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.rsplit(": ").next()?.trim().to_string()).filter(|l| !l.is_empty())
}

/// The proxy at `fake`, listening on an ephemeral port; pinned to CPU 0
/// when `pin`.
fn spawn_proxy(fake: &Proc, pin: bool) -> Proc {
    let proxy_bin = std::env::current_exe().unwrap().with_file_name("proxy");
    let proxy_env = [
        ("LISTEN_ADDR", "127.0.0.1:0".to_string()),
        ("OLLAMA_BASE_URL", format!("http://{}", fake.addr)),
        ("RUST_LOG", "warn".into()),
        // Past the proxy's default 512 connections the streams of `paced
        // streams` and the slow ones would be refused; the open-file limit
        // bounds them instead.
        ("MAX_CONNECTIONS", "20000".into()),
    ];
    if pin {
        let proxy_str = proxy_bin.to_str().unwrap();
        spawn(
            std::path::Path::new("taskset"),
            &["-c", "0", proxy_str],
            &proxy_env,
            " on ",
        )
    } else {
        spawn(&proxy_bin, &[], &proxy_env, " on ")
    }
}

/// The fake of `paced streams` (`tokens` lines per `rate50` answer),
/// pinned to CPU 1 when `pin`.
fn spawn_paced_fake(pin: bool, tokens: usize) -> Proc {
    let me = std::env::current_exe().unwrap();
    let fake_env = [("LOADBENCH_PACED_TOKENS", tokens.to_string())];
    if pin {
        spawn(
            std::path::Path::new("taskset"),
            &["-c", "1", me.to_str().unwrap(), "--fake"],
            &fake_env,
            " on ",
        )
    } else {
        spawn(&me, &["--fake"], &fake_env, " on ")
    }
}

/// What the first line of the `paced streams` table says about pinning.
fn pinning_note(pin: bool, gen_pinned: bool) -> &'static str {
    match (pin, gen_pinned) {
        (true, true) => "proxy on CPU 0 (taskset -c 0); fake Ollama and load generator on CPU 1 (taskset -c 1; the generator via taskset -a -p for this scenario only)",
        (true, false) => "proxy on CPU 0 (taskset -c 0), fake Ollama on CPU 1 (taskset -c 1); the load generator is NOT pinned (taskset -p failed)",
        (false, _) => "none: taskset is missing or CPUs 0 and 1 are not both available; the proxy, the fake and the load generator share all CPUs",
    }
}

/// How many of the `wanted` paced streams the open-file limits allow (2
/// sockets per stream in the proxy, 1 in the fake and in this process);
/// says so when fewer.
fn paced_reach(proxy: &Proc, fake: &Proc, wanted: usize) -> usize {
    let proxy_limit = fd_limit(proxy.pid());
    let fake_limit = fd_limit(fake.pid());
    let own_limit = fd_limit(std::process::id());
    let reachable = ((proxy_limit.saturating_sub(64) / 2)
        .min(fake_limit.saturating_sub(64))
        .min(own_limit.saturating_sub(64))) as usize;
    let n = wanted.min(reachable);
    if n < wanted {
        eprintln!(
            "loadbench: {wanted} paced streams need {} sockets in the proxy, {wanted} in the fake and {wanted} here, but the open-file limits are {proxy_limit}, {fake_limit} and {own_limit}; opening {n}",
            2 * wanted
        );
    }
    n
}

/// `n` paced streams straight to `fake`, then through `proxy` (warmed up
/// with `warm` first).
async fn paced_runs(fake: &Proc, proxy: &Proc, n: usize, warm: &Scenario) -> (PacedRun, PacedRun) {
    let body = Bytes::from(format!(
        r#"{{"model":"rate50","stream":true,"messages":{USER}}}"#
    ));
    // Warm the proxy up (connections, allocator) before its "before".
    let _ = run_scenario(warm, proxy.addr, proxy.pid(), 0.5).await;
    let d = run_paced(
        fake.addr,
        "/api/chat",
        body.clone(),
        false,
        n,
        proxy.pid(),
        fake.pid(),
    )
    .await;
    eprintln!("loadbench: paced streams direct done");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let p = run_paced(
        proxy.addr,
        "/v1/chat/completions",
        body,
        true,
        n,
        proxy.pid(),
        fake.pid(),
    )
    .await;
    eprintln!("loadbench: paced streams proxy done");
    (d, p)
}

/// `n` streams paced at 50 tokens/s, straight to a fake and through a
/// proxy of their own (pinned to CPU 0 when `taskset` can, the fake and the
/// load generator to CPU 1); returns the table.
fn paced_scenario(rt: &tokio::runtime::Runtime, wanted: usize, warm: &Scenario) -> String {
    let tokens = paced_tokens();
    // Two CPUs (0 and 1) to pin to, and the tool to do it.
    let pin = taskset(&["-c", "0", "true"]) && taskset(&["-c", "1", "true"]);
    let fake = spawn_paced_fake(pin, tokens);
    let proxy = spawn_proxy(&fake, pin);
    // The load generator follows the fake to CPU 1 for this scenario only
    // (`taskset -p` on this process: `libc` is no dependency here).
    let own = own_cpus();
    let me_pid = std::process::id().to_string();
    let gen_pinned = pin && own.is_some() && taskset(&["-a", "-c", "-p", "1", &me_pid]);
    let pinning = pinning_note(pin, gen_pinned);

    let n = paced_reach(&proxy, &fake, wanted);
    eprintln!("loadbench: paced streams: {n} × {tokens} tokens at 50/s; pinning: {pinning}");
    let (d, p) = rt.block_on(paced_runs(&fake, &proxy, n, warm));
    if gen_pinned {
        taskset(&["-a", "-c", "-p", own.as_deref().unwrap(), &me_pid]);
    }
    drop(proxy);
    drop(fake);
    paced_table(n, tokens, pinning, &d, &p)
}

/// The `paced streams` table, direct row then proxied row, and each
/// side's CPU use below it.
fn paced_table(n: usize, tokens: usize, pinning: &str, d: &PacedRun, p: &PacedRun) -> String {
    let mut table = format!(
        "paced streams: {n} streams × {tokens} tokens at 50 tokens/s (a line every {} ms), opened over {:.0} s; pinning: {pinning}\n\n",
        RATE_GAP.as_millis(),
        PACED_RAMP.as_secs_f64()
    );
    table.push_str("| via | streams completed | % of pace | TTFB p50 ms | TTFB p99 ms | gap p50 ms | gap p99 ms | gap max ms | proxy CPU µs/token | proxy writes/token | proxy reads/token | proxy switches/token | proxy RSS before MiB | proxy RSS peak MiB | KiB per stream |\n");
    table.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut notes = String::new();
    for (via, o) in [("direct", d), ("proxy chat", p)] {
        table.push_str(&paced_row(via, o, n));
        notes.push_str(&paced_note(via, o));
    }
    table.push('\n');
    table.push_str(&notes);
    table
}

/// Token lines received over all streams of `o`.
fn tokens_seen(o: &PacedRun) -> usize {
    o.streams.iter().map(|s| s.arrivals.len()).sum()
}

/// One row of the `paced streams` table.
fn paced_row(via: &str, o: &PacedRun, n: usize) -> String {
    let is_proxy = via != "direct";
    let completed = o.streams.iter().filter(|s| s.completed).count();
    let tokens_seen = tokens_seen(o);
    let mut ttfb: Vec<Duration> = o.streams.iter().filter_map(|s| s.ttfb).collect();
    let mut gaps: Vec<Duration> = o
        .streams
        .iter()
        .flat_map(|s| s.arrivals.windows(2).map(|w| w[1] - w[0]))
        .map(|us| Duration::from_micros(us.into()))
        .collect();
    let gap_max = gaps.iter().max().copied().unwrap_or_default();
    let per_tok = |v: f64| v / tokens_seen.max(1) as f64;
    let dash = || "—".to_string();
    format!(
        "| {via} | {completed} / {n} | {:.1} % | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        100.0 * share_of_pace(&o.streams, n),
        ms(pct(&mut ttfb, 50)),
        ms(pct(&mut ttfb, 99)),
        ms(pct(&mut gaps, 50)),
        ms(pct(&mut gaps, 99)),
        ms(gap_max),
        if is_proxy {
            format!("{:.2}", per_tok(o.proxy_cpu * 1e6))
        } else {
            format!("({:.2})", per_tok(o.proxy_cpu * 1e6))
        },
        if is_proxy { format!("{:.2}", per_tok(o.proxy_calls.writes as f64)) } else { dash() },
        match (is_proxy, o.proxy_reads) {
            (true, Some(r)) => format!("{:.2}", per_tok(r as f64)),
            _ => dash(),
        },
        if is_proxy { format!("{:.2}", per_tok(o.proxy_calls.switches as f64)) } else { dash() },
        if is_proxy { format!("{:.1}", o.rss_before_kib as f64 / 1024.0) } else { dash() },
        if is_proxy { format!("{:.1}", o.rss_peak_kib as f64 / 1024.0) } else { dash() },
        if is_proxy {
            format!("{:.1}", o.rss_peak_kib.saturating_sub(o.rss_before_kib) as f64 / n.max(1) as f64)
        } else {
            dash()
        },
    )
}

/// The line under the `paced streams` table for one side: tokens, time and
/// CPU use.
fn paced_note(via: &str, o: &PacedRun) -> String {
    let secs = o.elapsed.as_secs_f64();
    format!(
        "{via}: {} tokens in {secs:.1} s; CPU busy: fake {:.0} %, load generator {:.0} %, proxy {:.0} % (kernel {:.0} % of it){}\n",
        tokens_seen(o),
        100.0 * o.fake_cpu / secs,
        100.0 * o.generator_cpu / secs,
        100.0 * o.proxy_cpu / secs,
        100.0 * o.proxy_sys / o.proxy_cpu.max(1e-9),
        match &o.first_error {
            Some(e) => format!("; {} streams failed, first: {e}", o.failed),
            None => String::new(),
        }
    )
}

// ---------------------------------------------------------------- orchestration

const USER: &str = r#"[{"role":"user","content":"Write a short story about a fox."}]"#;

/// What an Ollama `/api/chat` answer ends with.
const NATIVE_TAIL: &str = "\"done\":true";

/// One (direct, proxied) pair of the load table: scenario name, then the
/// proxied side's via, path, body (sent by both sides), tail (what its
/// answer ends with), then concurrency, stream, token lines per answer.
/// The direct side always goes to `/api/chat` and ends with `NATIVE_TAIL`.
type PairRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    usize,
    bool,
    usize,
);

/// The two scenarios of a `PairRow`: direct, proxied.
fn pair(&(name, via, path, body, tail, conc, stream, tokens): &PairRow) -> (Scenario, Scenario) {
    let side = |via, path, tail| Scenario {
        name,
        via,
        path,
        body,
        tail,
        conc,
        stream,
        tokens,
    };
    (
        side("direct", "/api/chat", NATIVE_TAIL),
        side(via, path, tail),
    )
}

/// A request body that lives as long as the run (scenarios hold `&'static str`).
fn leak(body: String) -> &'static str {
    Box::leak(body.into_boxed_str())
}

/// A chat request for `model` with the `USER` messages.
fn chat_body(model: &str, stream: bool) -> &'static str {
    leak(format!(
        r#"{{"model":"{model}","stream":{stream},"messages":{USER}}}"#
    ))
}

/// The load table's scenarios, in table order.
fn scenario_pairs() -> Vec<(Scenario, Scenario)> {
    let stream = chat_body("qwen3:8b", true);
    let paced = chat_body("paced", true);
    let once = chat_body("qwen3:8b", false);
    let short = chat_body("short", false);
    let messages = leak(format!(
        r#"{{"model":"qwen3:8b","max_tokens":1024,"stream":true,"messages":{USER}}}"#
    ));
    let responses =
        r#"{"model":"qwen3:8b","stream":true,"input":"Write a short story about a fox."}"#;
    let chat = "/v1/chat/completions";
    #[rustfmt::skip]
    let rows: [PairRow; 9] = [
        ("stream c=1", "proxy chat", chat, stream, "[DONE]", 1, true, TOKENS),
        ("stream c=32", "proxy chat", chat, stream, "[DONE]", 32, true, TOKENS),
        ("stream c=32", "proxy messages", "/v1/messages", messages, "message_stop", 32, true, TOKENS),
        ("stream c=32", "proxy responses", "/v1/responses", responses, "response.completed", 32, true, TOKENS),
        ("stream c=32", "proxy pass-through", "/api/chat", stream, NATIVE_TAIL, 32, true, TOKENS),
        ("paced c=32", "proxy chat", chat, paced, "[DONE]", 32, true, TOKENS),
        ("non-stream c=1", "proxy chat", chat, once, "total_tokens", 1, false, TOKENS),
        ("non-stream c=32", "proxy chat", chat, once, "total_tokens", 32, false, TOKENS),
        ("non-stream 16 tokens c=32", "proxy chat", chat, short, "total_tokens", 32, false, SHORT_TOKENS),
    ];
    rows.iter().map(pair).collect()
}

/// One row of the load table: scenario `s`'s outcome `o`, against the
/// direct side's tokens/s and TTFB p50.
fn load_row(s: &Scenario, o: &Outcome, d_tps: f64, d_ttfb50: Duration) -> String {
    let n = o.samples.len();
    let tokens = n * s.tokens;
    let tps = tokens as f64 / o.elapsed.as_secs_f64();
    let mut ttfb: Vec<Duration> = o.samples.iter().map(|s| s.ttfb).collect();
    let mut lat: Vec<Duration> = o.samples.iter().map(|s| s.total).collect();
    let (t50, t99) = (pct(&mut ttfb, 50), pct(&mut ttfb, 99));
    let is_proxy = s.via != "direct";
    let dash = || "—".to_string();
    let _ = (s.stream, o.bytes);
    format!(
        "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        s.name,
        s.via,
        n,
        tps,
        if is_proxy {
            format!("{:.1} %", 100.0 * tps / d_tps)
        } else {
            dash()
        },
        ms(t50),
        ms(t99),
        if is_proxy {
            format!("{:+.3}", (t50.as_secs_f64() - d_ttfb50.as_secs_f64()) * 1e3)
        } else {
            dash()
        },
        ms(pct(&mut lat, 50)),
        ms(pct(&mut lat, 99)),
        if is_proxy {
            format!("{:.2}", o.proxy_cpu * 1e6 / tokens.max(1) as f64)
        } else {
            format!("({:.2})", o.proxy_cpu * 1e6 / tokens.max(1) as f64)
        },
        if is_proxy {
            format!("{:.0}", o.proxy_cpu * 1e6 / n.max(1) as f64)
        } else {
            dash()
        },
        if is_proxy && o.proxy_cpu > 0.0 {
            format!("{:.0} %", 100.0 * o.proxy_sys / o.proxy_cpu)
        } else {
            dash()
        },
        per_token(is_proxy, o.proxy_calls.writes, tokens),
        match o.proxy_reads {
            Some(reads) => per_token(is_proxy, reads, tokens),
            None => "—".to_string(),
        },
        per_token(is_proxy, o.proxy_calls.switches, tokens),
    )
}

/// Runs every pair, direct then proxied, for `secs` each; returns the load
/// table.
async fn load_table(
    pairs: &[(Scenario, Scenario)],
    fake: &Proc,
    proxy: &Proc,
    secs: f64,
) -> String {
    let mut table = String::new();
    table.push_str("| scenario | via | requests | tokens/s | vs direct | TTFB p50 ms | TTFB p99 ms | added TTFB p50 ms | latency p50 ms | latency p99 ms | proxy CPU µs/token | proxy CPU µs/request | kernel share | proxy writes/token | proxy reads/token | proxy switches/token |\n");
    table.push_str(
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    // Warm up: connections, allocator, page cache.
    if let Some((d, p)) = pairs.first() {
        let _ = run_scenario(p, proxy.addr, proxy.pid(), 0.5).await;
        let _ = run_scenario(d, fake.addr, proxy.pid(), 0.5).await;
    }
    for (direct, proxied) in pairs {
        let d = run_scenario(direct, fake.addr, proxy.pid(), secs).await;
        let p = run_scenario(proxied, proxy.addr, proxy.pid(), secs).await;
        let d_tps = (d.samples.len() * direct.tokens) as f64 / d.elapsed.as_secs_f64();
        let mut d_ttfb: Vec<Duration> = d.samples.iter().map(|s| s.ttfb).collect();
        let d_ttfb50 = pct(&mut d_ttfb, 50);
        for (s, o) in [(direct, &d), (proxied, &p)] {
            table.push_str(&load_row(s, o, d_tps, d_ttfb50));
        }
        eprintln!("loadbench: {} done", direct.name);
    }
    table
}

/// Holds each of the `slow` counts of streams open through `proxy` (at most
/// `reachable`, its open-file `limit` allowing); returns the memory table.
async fn slow_table(proxy: &Proc, slow: &[usize], limit: u64, reachable: usize) -> String {
    let mut mem = String::new();
    mem.push_str("| slow streams wanted | held open | proxy open fds | proxy RSS before MiB | proxy RSS held MiB | KiB per stream | time to open s |\n");
    mem.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
    for &n in slow {
        let try_n = n.min(reachable);
        if try_n < n {
            eprintln!(
                "loadbench: {n} streams need {} sockets in the proxy (2 per stream) but its open-file limit is {limit}; holding {try_n}",
                2 * n
            );
        }
        let r = slow_streams(proxy, try_n).await;
        mem.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            r.wanted,
            r.opened,
            r.proxy_fds,
            r.base_kib as f64 / 1024.0,
            r.held_kib as f64 / 1024.0,
            (r.held_kib.saturating_sub(r.base_kib)) as f64 / r.opened.max(1) as f64,
            r.open_secs
        ));
        eprintln!("loadbench: {n} slow streams done");
    }
    mem
}

/// The `LOADBENCH_*` settings.
struct Settings {
    /// Seconds per scenario.
    secs: f64,
    /// Stream counts for the memory figures.
    slow: Vec<usize>,
    /// Streams of `paced streams` (0: skip).
    paced: usize,
    /// Run only the scenarios whose name contains it.
    only: String,
}

impl Settings {
    fn from_env() -> Self {
        let secs = std::env::var("LOADBENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0);
        let slow = std::env::var("LOADBENCH_SLOW")
            .unwrap_or_else(|_| "1000,10000".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        // Unset: 2000; empty or 0: skip.
        let paced = match std::env::var("LOADBENCH_PACED_STREAMS") {
            Err(_) => 2000,
            Ok(v) => v.trim().parse().unwrap_or(0),
        };
        // `LOADBENCH_ONLY=c=32` keeps the scenarios whose name contains it.
        let only = std::env::var("LOADBENCH_ONLY").unwrap_or_default();
        Settings {
            secs,
            slow,
            paced,
            only,
        }
    }
}

fn orchestrate() {
    let Settings {
        secs,
        slow,
        paced,
        only,
    } = Settings::from_env();
    let me = std::env::current_exe().unwrap();
    let proxy_bin = me.with_file_name("proxy");
    assert!(
        proxy_bin.exists(),
        "{} is missing: run `cargo build --release --example proxy --example loadbench` first",
        proxy_bin.display()
    );

    let fake = spawn(&me, &["--fake"], &[], " on ");
    let proxy = spawn_proxy(&fake, false);
    eprintln!(
        "loadbench: fake Ollama on {} (pid {}), proxy on {} (pid {}); {secs} s per scenario",
        fake.addr,
        fake.pid(),
        proxy.addr,
        proxy.pid()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let pairs: Vec<(Scenario, Scenario)> = scenario_pairs()
        .into_iter()
        .filter(|(d, _)| d.name.contains(only.as_str()))
        .collect();
    let table = rt.block_on(load_table(&pairs, &fake, &proxy, secs));
    println!("{table}");
    println!("(direct rows: the proxy's CPU in brackets should be ~0 — it is idle then)\n");

    let limit = fd_limit(proxy.pid());
    let reachable = (limit.saturating_sub(64) / 2) as usize;
    let mem = rt.block_on(slow_table(&proxy, &slow, limit, reachable));
    println!("{mem}");
    println!(
        "proxy open-file limit: {limit} (2 sockets per proxied stream ⇒ at most ~{reachable} streams)"
    );
    drop(proxy);
    drop(fake);

    if paced > 0 && "paced streams".contains(only.as_str()) {
        let warm = Scenario {
            name: "warm-up",
            via: "proxy chat",
            path: "/v1/chat/completions",
            body: chat_body("qwen3:8b", true),
            tail: "[DONE]",
            conc: 8,
            stream: true,
            tokens: TOKENS,
        };
        println!("\n{}", paced_scenario(&rt, paced, &warm));
    }
}
