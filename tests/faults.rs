//! The fault matrix, end to end over real sockets: the proxy (the code of
//! `examples/proxy`) on an ephemeral loopback port in front of the fake
//! Ollama, every fault in every chat dialect, streaming and not.
//!
//! For each cell the test asserts what the client sees ([`MATRIX`]), that it
//! never looks like a clean finish (no `[DONE]`, `message_stop`,
//! `response.completed`), that the proxy keeps serving (a healthy request in
//! the same dialect completes afterwards) and that nothing leaks (the fake has
//! no generation in flight). `docs/fault-matrix.md` is this table in prose.

mod common;

use bytes::Bytes;
use common::fake_ollama::{FakeOllama, RUNNER_FAILED, RUNNER_STOPPED, SERVER_BUSY};
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Idle timeout given to the proxy: a stalled upstream fails after 1–2 s.
const IDLE_TIMEOUT_SECS: &str = "1";
/// Body limit given to the proxy; [`Fault::Oversize`] sends twice as much.
const MAX_BODY: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Chat,
    Messages,
    Responses,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Nothing listens on Ollama's port.
    Refused,
    /// Ollama answers 400 before streaming (a model that cannot chat).
    Status400,
    /// Ollama answers 404 (unknown model).
    Status404,
    /// Ollama answers 500 (the runner failed to load).
    Status500,
    /// Ollama answers 503 (queue full).
    Status503,
    /// A `{"error":…}` line after two tokens (non-streaming: Ollama's 500).
    ErrorLine,
    /// The connection drops in the middle of a line.
    DropMidLine,
    /// One line, then silence past the idle timeout (non-streaming: no headers).
    Stall,
    /// A line that is not JSON.
    Garbage,
    /// The client goes away while the model generates.
    ClientDisconnect,
    /// The request body is over `MAX_BODY_BYTES`.
    Oversize,
}

/// What the client saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// This HTTP status before any stream, with a JSON error in the dialect's
    /// shape whose message contains the given text.
    Error(u16, &'static str),
    /// `200`, an event stream whose last event is the dialect's in-band
    /// error (containing the text); the body then ends normally.
    InBand(&'static str),
    /// The same, then the connection is cut (the body fails).
    InBandThenCut(&'static str),
    /// `200` and a JSON error document in the dialect's shape (Responses: a
    /// response object with `status: "failed"`), containing the text.
    FailedDoc(&'static str),
    /// The same, then the connection is cut (the body fails).
    FailedDocThenCut(&'static str),
    /// The upstream request was cancelled within a second.
    Cancelled,
}

use Dialect::*;
use Fault::*;
use Seen::*;

/// fault × dialect × streaming → what the client sees.
const MATRIX: &[(Fault, Dialect, bool, Seen)] = &[
    (Refused, Chat, true, Error(502, "could not reach Ollama")),
    (Refused, Chat, false, Error(502, "could not reach Ollama")),
    (
        Refused,
        Messages,
        true,
        Error(502, "could not reach Ollama"),
    ),
    (
        Refused,
        Messages,
        false,
        Error(502, "could not reach Ollama"),
    ),
    (
        Refused,
        Responses,
        true,
        Error(502, "could not reach Ollama"),
    ),
    (
        Refused,
        Responses,
        false,
        Error(502, "could not reach Ollama"),
    ),
    (Status400, Chat, true, Error(400, "does not support chat")),
    (Status400, Chat, false, Error(400, "does not support chat")),
    (
        Status400,
        Messages,
        true,
        Error(400, "does not support chat"),
    ),
    (
        Status400,
        Messages,
        false,
        Error(400, "does not support chat"),
    ),
    (
        Status400,
        Responses,
        true,
        Error(400, "does not support chat"),
    ),
    (
        Status400,
        Responses,
        false,
        Error(400, "does not support chat"),
    ),
    (
        Status404,
        Chat,
        true,
        Error(404, "model 'nosuch' not found"),
    ),
    (
        Status404,
        Chat,
        false,
        Error(404, "model 'nosuch' not found"),
    ),
    (
        Status404,
        Messages,
        true,
        Error(404, "model 'nosuch' not found"),
    ),
    (
        Status404,
        Messages,
        false,
        Error(404, "model 'nosuch' not found"),
    ),
    (
        Status404,
        Responses,
        true,
        Error(404, "model 'nosuch' not found"),
    ),
    (
        Status404,
        Responses,
        false,
        Error(404, "model 'nosuch' not found"),
    ),
    (Status500, Chat, true, Error(500, RUNNER_FAILED)),
    (Status500, Chat, false, Error(500, RUNNER_FAILED)),
    (Status500, Messages, true, Error(500, RUNNER_FAILED)),
    (Status500, Messages, false, Error(500, RUNNER_FAILED)),
    (Status500, Responses, true, Error(500, RUNNER_FAILED)),
    (Status500, Responses, false, Error(500, RUNNER_FAILED)),
    (Status503, Chat, true, Error(503, SERVER_BUSY)),
    (Status503, Chat, false, Error(503, SERVER_BUSY)),
    (Status503, Messages, true, Error(503, SERVER_BUSY)),
    (Status503, Messages, false, Error(503, SERVER_BUSY)),
    (Status503, Responses, true, Error(503, SERVER_BUSY)),
    (Status503, Responses, false, Error(503, SERVER_BUSY)),
    (ErrorLine, Chat, true, InBand(RUNNER_STOPPED)),
    (ErrorLine, Chat, false, Error(500, RUNNER_STOPPED)),
    (ErrorLine, Messages, true, InBand(RUNNER_STOPPED)),
    (ErrorLine, Messages, false, Error(500, RUNNER_STOPPED)),
    (ErrorLine, Responses, true, InBand(RUNNER_STOPPED)),
    (ErrorLine, Responses, false, Error(500, RUNNER_STOPPED)),
    (
        DropMidLine,
        Chat,
        true,
        InBandThenCut("connection to Ollama lost"),
    ),
    (
        DropMidLine,
        Chat,
        false,
        Error(502, "connection to Ollama lost"),
    ),
    (
        DropMidLine,
        Messages,
        true,
        InBandThenCut("connection to Ollama lost"),
    ),
    (
        DropMidLine,
        Messages,
        false,
        Error(502, "connection to Ollama lost"),
    ),
    (
        DropMidLine,
        Responses,
        true,
        InBandThenCut("connection to Ollama lost"),
    ),
    (
        DropMidLine,
        Responses,
        false,
        Error(502, "connection to Ollama lost"),
    ),
    (Stall, Chat, true, InBandThenCut("upstream idle timeout")),
    (Stall, Chat, false, Error(504, "upstream idle timeout")),
    (
        Stall,
        Messages,
        true,
        InBandThenCut("upstream idle timeout"),
    ),
    (Stall, Messages, false, Error(504, "upstream idle timeout")),
    (
        Stall,
        Responses,
        true,
        InBandThenCut("upstream idle timeout"),
    ),
    (Stall, Responses, false, Error(504, "upstream idle timeout")),
    (Garbage, Chat, true, InBand("invalid stream line")),
    (Garbage, Chat, false, Error(502, "invalid stream line")),
    (Garbage, Messages, true, InBand("invalid stream line")),
    (Garbage, Messages, false, Error(502, "invalid stream line")),
    (Garbage, Responses, true, InBand("invalid stream line")),
    (Garbage, Responses, false, Error(502, "invalid stream line")),
    (ClientDisconnect, Chat, true, Cancelled),
    (ClientDisconnect, Chat, false, Cancelled),
    (ClientDisconnect, Messages, true, Cancelled),
    (ClientDisconnect, Messages, false, Cancelled),
    (ClientDisconnect, Responses, true, Cancelled),
    (ClientDisconnect, Responses, false, Cancelled),
    (Oversize, Chat, true, Error(413, "larger than the limit")),
    (Oversize, Chat, false, Error(413, "larger than the limit")),
    (
        Oversize,
        Messages,
        true,
        Error(413, "larger than the limit"),
    ),
    (
        Oversize,
        Messages,
        false,
        Error(413, "larger than the limit"),
    ),
    (
        Oversize,
        Responses,
        true,
        Error(413, "larger than the limit"),
    ),
    (
        Oversize,
        Responses,
        false,
        Error(413, "larger than the limit"),
    ),
];

impl Dialect {
    fn path(self) -> &'static str {
        match self {
            Chat => "/v1/chat/completions",
            Messages => "/v1/messages",
            Responses => "/v1/responses",
        }
    }

    fn body(self, model: &str, text: &str, stream: bool) -> Value {
        match self {
            Chat => json!({"model": model, "stream": stream,
                           "messages": [{"role": "user", "content": text}]}),
            Messages => json!({"model": model, "max_tokens": 512, "stream": stream,
                               "messages": [{"role": "user", "content": text}]}),
            Responses => json!({"model": model, "stream": stream, "input": text}),
        }
    }

    /// The event that ends a successful stream.
    fn is_terminator(self, event: &Event) -> bool {
        match self {
            Chat => event.data == "[DONE]",
            Messages => event.name.as_deref() == Some("message_stop"),
            Responses => matches!(
                event.name.as_deref(),
                Some("response.completed" | "response.incomplete")
            ),
        }
    }

    /// The message of the dialect's in-band error event, if `event` is one.
    fn in_band_error(self, event: &Event) -> Option<String> {
        let v: Value = serde_json::from_str(&event.data).ok()?;
        let msg = match self {
            Chat => v["error"]["message"].as_str(),
            Messages => {
                if event.name.as_deref() != Some("error") || v["type"] != "error" {
                    return None;
                }
                v["error"]["message"].as_str()
            }
            Responses => {
                if event.name.as_deref() != Some("response.failed") {
                    return None;
                }
                assert_eq!(v["response"]["status"], "failed");
                v["response"]["error"]["message"].as_str()
            }
        };
        msg.map(str::to_string)
    }

    /// The message of an error document in the dialect's shape.
    fn error_message(self, v: &Value) -> String {
        match self {
            Chat | Responses => {
                assert!(v["error"]["type"].is_string(), "OpenAI error shape: {v}");
            }
            Messages => {
                assert_eq!(v["type"], "error", "Anthropic error shape: {v}");
                assert!(v["error"]["type"].is_string(), "Anthropic error shape: {v}");
            }
        }
        v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.message: {v}"))
            .to_string()
    }

    /// The text of a successful non-streaming answer.
    fn text(self, v: &Value) -> String {
        match self {
            Chat => v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .into(),
            Messages => v["content"][0]["text"].as_str().unwrap().into(),
            Responses => v["output"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["type"] == "message")
                .flat_map(|o| o["content"].as_array().unwrap())
                .filter_map(|c| c["text"].as_str())
                .collect(),
        }
    }
}

impl Fault {
    /// The model and user text that trigger the fault at the fake.
    fn trigger(self) -> (&'static str, String) {
        match self {
            Status400 => ("nomic-embed-text", "hi".into()),
            Status404 => ("nosuch", "hi".into()),
            Status500 => ("broken", "hi".into()),
            Status503 => ("busy", "hi".into()),
            ErrorLine => ("llama3.2", "go [error]".into()),
            DropMidLine => ("llama3.2", "go [drop]".into()),
            Stall => ("llama3.2", "go [stall]".into()),
            Garbage => ("llama3.2", "go [garbage]".into()),
            ClientDisconnect => ("llama3.2", "go [slow]".into()),
            Oversize => ("llama3.2", "x".repeat(2 * MAX_BODY)),
            Refused => ("llama3.2", "hi".into()),
        }
    }
}

use common::proxy::{Answer, Proxy};

async fn proxy(ollama: &str) -> Proxy {
    let max = MAX_BODY.to_string();
    common::proxy::start(
        ollama,
        &[
            ("UPSTREAM_IDLE_TIMEOUT", IDLE_TIMEOUT_SECS),
            ("MAX_BODY_BYTES", max.as_str()),
        ],
    )
    .await
}

#[derive(Debug)]
struct Event {
    name: Option<String>,
    data: String,
}

/// The events of an SSE body; every `data` is JSON (or `[DONE]`), and a
/// named event's data names the same type.
trait Events {
    fn events(&self) -> Vec<Event>;
}

impl Events for Answer {
    fn events(&self) -> Vec<Event> {
        self.sse()
            .into_iter()
            .map(|(name, data)| {
                if data != "[DONE]" {
                    let v: Value = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data:?}"));
                    if let Some(n) = &name {
                        assert_eq!(v["type"], n.as_str(), "event name matches its type");
                    }
                }
                Event { name, data }
            })
            .collect()
    }
}

async fn send(addr: &str, d: Dialect, body: Value) -> Answer {
    let url = format!("http://{addr}{}", d.path());
    common::proxy::send(
        "POST",
        &url,
        &[("anthropic-version", "2023-06-01")],
        Some(&body),
    )
    .await
}

/// What an answer shows, checked against the dialect's rules on the way.
fn classify(d: Dialect, a: &Answer) -> Seen {
    if a.status != StatusCode::OK {
        assert!(a.failed.is_none(), "an error document arrives whole");
        assert_eq!(a.content_type, "application/json");
        let v: Value = serde_json::from_str(&a.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {:?}", a.body));
        let msg = d.error_message(&v);
        if d == Messages {
            // Anthropic SDKs pick their exception class from `error.type`.
            let want = match a.status.as_u16() {
                400 => "invalid_request_error",
                404 => "not_found_error",
                413 => "request_too_large",
                503 => "overloaded_error",
                _ => "api_error",
            };
            assert_eq!(v["error"]["type"], want, "{v}");
        }
        return Error(a.status.as_u16(), leak(msg));
    }
    if a.content_type == "application/json" {
        let v: Value = serde_json::from_str(&a.body)
            .unwrap_or_else(|e| panic!("a JSON answer arrives whole ({e}): {:?}", a.body));
        let msg = if d == Responses {
            assert_eq!(v["object"], "response", "{v}");
            assert_eq!(v["status"], "failed", "never a clean-looking finish: {v}");
            v["error"]["message"].as_str().unwrap().to_string()
        } else {
            d.error_message(&v)
        };
        return match a.failed {
            None => FailedDoc(leak(msg)),
            Some(_) => FailedDocThenCut(leak(msg)),
        };
    }
    assert_eq!(a.content_type, "text/event-stream", "{:?}", a.body);
    let events = a.events();
    assert!(
        !events.iter().any(|e| d.is_terminator(e)),
        "a fault never looks like a clean finish: {:?}",
        a.body
    );
    let last = events.last().expect("at least one event");
    let msg = d
        .in_band_error(last)
        .unwrap_or_else(|| panic!("the last event is an in-band error: {:?}", a.body));
    match a.failed {
        None => InBand(leak(msg)),
        Some(_) => InBandThenCut(leak(msg)),
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// `seen` matches `want` when the kinds and statuses agree and the message
/// contains the expected text.
fn matches(want: Seen, seen: Seen) -> bool {
    match (want, seen) {
        (Error(a, w), Error(b, s)) => a == b && s.contains(w),
        (InBand(w), InBand(s))
        | (InBandThenCut(w), InBandThenCut(s))
        | (FailedDoc(w), FailedDoc(s))
        | (FailedDocThenCut(w), FailedDocThenCut(s)) => s.contains(w),
        (Cancelled, Cancelled) => true,
        _ => false,
    }
}

/// A request that reaches the fake, then a client that goes away.
async fn disconnect(fake: &FakeOllama, addr: &str, d: Dialect, body: Value, stream: bool) -> Seen {
    let before = fake.cancelled();
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\nanthropic-version: 2023-06-01\r\ncontent-length: {}\r\n\r\n{body}",
        d.path(),
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    if stream {
        // Read until tokens flow, then hang up.
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("tok3 ") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended early");
            got.extend_from_slice(&buf[..n]);
        }
    } else {
        // The fake is generating (it answers only when done).
        assert!(
            fake.wait_until(Duration::from_secs(5), |f| f.in_flight() == 1)
                .await
        );
    }
    drop(s);
    let cancelled = fake
        .wait_until(Duration::from_secs(1), |f| {
            f.cancelled() == before + 1 && f.in_flight() == 0
        })
        .await;
    assert!(
        cancelled,
        "Ollama must see the cancellation within a second"
    );
    Cancelled
}

/// A healthy request in the same dialect completes cleanly.
async fn still_serving(addr: &str, d: Dialect, stream: bool) {
    let a = send(addr, d, d.body("llama3.2", "still here", stream)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.failed.is_none());
    if stream {
        let events = a.events();
        assert!(d.is_terminator(events.last().unwrap()), "{}", a.body);
    } else {
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(d.text(&v), "Hello! You said: still here");
    }
}

/// Runs every cell of `fault`'s rows in [`MATRIX`].
async fn run(fault: Fault) {
    let fake = FakeOllama::start().await;
    let upstream = if fault == Refused {
        // Bind a port, note it, close it: connections are refused.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        dead
    } else {
        fake.base_url()
    };
    let p = proxy(&upstream).await;
    let (model, text) = fault.trigger();
    let rows: Vec<_> = MATRIX.iter().filter(|r| r.0 == fault).collect();
    assert_eq!(rows.len(), 6, "every dialect, streaming and not");
    for &&(_, d, stream, want) in &rows {
        let body = d.body(model, &text, stream);
        let seen = if fault == ClientDisconnect {
            disconnect(&fake, &p.addr, d, body, stream).await
        } else {
            classify(d, &send(&p.addr, d, body).await)
        };
        assert!(
            matches(want, seen),
            "{fault:?} × {d:?} (stream: {stream}): want {want:?}, saw {seen:?}"
        );
        assert!(
            fake.wait_idle(Duration::from_secs(2)).await,
            "{fault:?} × {d:?}: nothing left in flight"
        );
        if fault == Refused {
            let a = healthz(&p.addr).await;
            assert_eq!(a, 200);
        } else {
            still_serving(&p.addr, d, stream).await;
        }
        if fault == Oversize {
            let seen = classify(
                d,
                &send_chunked(&p.addr, d, &d.body(model, &text, stream)).await,
            );
            assert!(matches(want, seen), "chunked oversize: {seen:?}");
            assert!(
                fake.requests_to("/api/chat")
                    .iter()
                    .all(|r| r.body.to_string().len() < MAX_BODY),
                "an oversize request never reaches Ollama"
            );
        }
    }
    assert!(fake.wait_idle(Duration::from_secs(2)).await);
    assert_eq!(fake.in_flight(), 0);
}

async fn healthz(addr: &str) -> u16 {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let res = client
        .request(
            Request::get(format!("http://{addr}/healthz"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    res.status().as_u16()
}

/// Sends `body` chunked (no `content-length`), so only the streaming limit
/// can catch it.
async fn send_chunked(addr: &str, d: Dialect, body: &Value) -> Answer {
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST {} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        d.path()
    );
    for chunk in body.as_bytes().chunks(1000) {
        req.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).unwrap()
        ));
    }
    req.push_str("0\r\n\r\n");
    // The proxy may answer and close before reading everything.
    let _ = s.write_all(req.as_bytes()).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await;
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Answer {
        status: StatusCode::from_u16(status).unwrap(),
        headers: http::HeaderMap::new(),
        content_type: headers.get("content-type").cloned().unwrap_or_default(),
        body,
        failed: None,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

#[tokio::test]
async fn upstream_refuses_connections() {
    run(Refused).await;
}

#[tokio::test]
async fn upstream_answers_400() {
    run(Status400).await;
}

#[tokio::test]
async fn upstream_answers_404() {
    run(Status404).await;
}

#[tokio::test]
async fn upstream_answers_500() {
    run(Status500).await;
}

#[tokio::test]
async fn upstream_answers_503() {
    run(Status503).await;
}

#[tokio::test]
async fn error_line_mid_stream() {
    run(ErrorLine).await;
}

#[tokio::test]
async fn connection_drops_mid_line() {
    run(DropMidLine).await;
}

#[tokio::test]
async fn upstream_stalls_past_the_idle_timeout() {
    run(Stall).await;
}

#[tokio::test]
async fn garbage_line() {
    run(Garbage).await;
}

#[tokio::test]
async fn client_disconnects() {
    run(ClientDisconnect).await;
}

#[tokio::test]
async fn oversize_body() {
    run(Oversize).await;
}

/// Every fault in the matrix has all six cells, and the matrix has no others.
#[test]
fn the_matrix_is_complete() {
    let faults = [
        Refused,
        Status400,
        Status404,
        Status500,
        Status503,
        ErrorLine,
        DropMidLine,
        Stall,
        Garbage,
        ClientDisconnect,
        Oversize,
    ];
    assert_eq!(MATRIX.len(), faults.len() * 6);
    for f in faults {
        for d in [Chat, Messages, Responses] {
            for s in [true, false] {
                assert_eq!(
                    MATRIX
                        .iter()
                        .filter(|r| r.0 == f && r.1 == d && r.2 == s)
                        .count(),
                    1,
                    "{f:?} {d:?} {s}"
                );
            }
        }
    }
}
