//! The proxy of `examples/proxy` (the built binary, a child process with
//! the test's settings as its environment) on an ephemeral loopback port,
//! and an HTTP client that keeps what a broken
//! stream delivered before it broke.

use super::child::ProxyChild;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// A running proxy (the built `examples/proxy`, a child process); killed
/// when dropped.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    child: Option<ProxyChild>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Sends SIGTERM (what `docker stop` does); returns a task that ends
    /// when the process has exited: once in-flight requests finish or the
    /// grace period runs out.
    pub fn shutdown(&mut self) -> &mut tokio::task::JoinHandle<()> {
        if let Some(child) = self.child.take() {
            child.signal("TERM");
            self.task = tokio::spawn(async move {
                let status = child.wait().await;
                assert!(status.success(), "the proxy exits cleanly: {status}");
            });
        }
        &mut self.task
    }

    /// Every line the proxy logged so far.
    pub fn log(&self) -> Vec<String> {
        self.child
            .as_ref()
            .map(|c| c.log.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

/// Starts the proxy in front of `ollama` with `env` as its environment
/// (nothing else of the test's). Unless `env` says otherwise, no readiness
/// probe asks Ollama (`READINESS_PROBE_SECS=0`).
pub async fn start(ollama: &str, env: &[(&str, &str)]) -> Proxy {
    let mut vars = vec![("READINESS_PROBE_SECS", "0")];
    vars.extend_from_slice(env);
    let child = ProxyChild::start(ollama, &vars).await;
    let addr = child.url.trim_start_matches("http://").to_string();
    Proxy {
        url: child.url.clone(),
        addr,
        child: Some(child),
        task: tokio::spawn(async {}),
    }
}

/// What came back for one request.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub content_type: String,
    pub body: String,
    /// The body ended with an error (a cut connection), and why.
    pub failed: Option<String>,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// `(event name, data)` of every SSE event, keep-alive comments skipped.
    pub fn sse(&self) -> Vec<(Option<String>, String)> {
        let mut events = Vec::new();
        for block in self.body.split_terminator("\n\n") {
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
                    panic!("not an SSE line {line:?} in {:?}", self.body);
                }
            }
            let data = data.unwrap_or_else(|| panic!("event without data: {block:?}"));
            events.push((name, data));
        }
        events
    }
}

/// The value of `name`'s samples in a Prometheus scrape whose labels
/// include every `k="v"` given (summed).
pub fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends a request and reads the whole answer (each step within 30 s).
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Answer {
    let bytes = body.map(|b| Bytes::from(b.to_string()));
    send_bytes(method, url, headers, bytes).await
}

/// [`send`] with a body of raw bytes (sent as JSON: a compressed body, say).
pub async fn send_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> Answer {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder().method(method).uri(url);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.unwrap_or_default())).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("an answer within 30 s")
        .expect("an HTTP answer");
    let status = res.status();
    let headers = res.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let mut body = res.into_body();
    let mut bytes = Vec::new();
    let mut failed = None;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
            .await
            .expect("the body moves within 30 s");
        match frame {
            None => break,
            Some(Ok(f)) => bytes.extend_from_slice(f.data_ref().map_or(&[][..], |d| &d[..])),
            Some(Err(e)) => {
                failed = Some(e.to_string());
                break;
            }
        }
    }
    Answer {
        status,
        headers,
        content_type,
        body: String::from_utf8(bytes).expect("UTF-8 body"),
        failed,
    }
}

/// The body of the last `/api/chat` request the fake Ollama saw.
pub fn last_chat(fake: &super::fake_ollama::FakeOllama) -> Value {
    fake.requests_to("/api/chat")
        .last()
        .expect("a request reached Ollama")
        .body
        .clone()
}
