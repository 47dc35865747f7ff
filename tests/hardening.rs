//! The proxy against careless upstreams and careless clients: every buffer
//! has a bound, every wait a deadline, every failure an honest status, and
//! the proxy keeps serving. Memory is measured on the proxy binary as a
//! child process (`/proc/<pid>/status`); each test bounds its own bytes and
//! seconds.

mod common;

use bytes::Bytes;
use common::child::ProxyChild;
use common::evil::{Answer, Evil, Seen};
use common::fake_ollama::FakeOllama;
use common::proxy::{send, send_bytes, start};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

fn chat(stream: bool) -> Value {
    json!({"model": "llama3.2", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

fn done_line() -> &'static str {
    "{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":100,\"eval_count\":1}\n"
}

/// Plain NDJSON for `/api/chat`: one token, then the end.
fn ndjson(headers: Vec<(&'static str, &'static str)>) -> Answer {
    let body = format!(
        "{{\"message\":{{\"role\":\"assistant\",\"content\":\"ok\"}},\"done\":false}}\n{}",
        done_line()
    );
    Answer::Full {
        status: 200,
        headers,
        body: body.into_bytes(),
    }
}

async fn child(ollama: &str, env: &[(&str, &str)]) -> ProxyChild {
    ProxyChild::start(ollama, env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_never_ends_costs_bounded_memory() {
    let evil = Evil::start(|_| Answer::Endless {
        prefix: b"{\"message\":{\"role\":\"assistant\",\"content\":\"".to_vec(),
        repeat: b"aaaaaaaaaaaaaaaa".to_vec(),
        max_bytes: 256 * MIB,
    })
    .await;
    let p = child(&evil.url, &[("MAX_ANSWER_BYTES", "1048576")]).await;
    let before = p.rss_kib();
    let url = format!("{}/v1/chat/completions", p.url);
    let a = send("POST", &url, &[], Some(&chat(true))).await;
    assert_eq!(a.status, 200);
    assert!(
        a.body.contains("longer than the limit of 1048576 bytes"),
        "{}",
        a.body
    );
    assert!(!a.body.contains("[DONE]"));
    let grown = p.rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "the proxy grew by {grown} KiB");
    // The upstream was dropped, not read to its end.
    assert!(evil.sent.load(std::sync::atomic::Ordering::Relaxed) < 256 * MIB);
    // Non-streaming: the same line is a 502.
    let a = send("POST", &url, &[], Some(&chat(false))).await;
    assert_eq!(a.status, 502, "{}", a.body);
    let message = a.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("than the limit of 1048576 bytes"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_never_ends_is_a_502_for_a_non_streaming_client() {
    let mut line = b"{\"message\":{\"role\":\"assistant\",\"content\":\"".to_vec();
    line.extend(std::iter::repeat_n(b'x', 1000));
    line.extend_from_slice(b"\"},\"done\":false}\n");
    let evil = Evil::start(move |_| Answer::Endless {
        prefix: Vec::new(),
        repeat: line.clone(),
        max_bytes: 256 * MIB,
    })
    .await;
    let p = child(&evil.url, &[("MAX_ANSWER_BYTES", "1048576")]).await;
    let before = p.rss_kib();
    for path in ["/v1/chat/completions", "/v1/responses"] {
        let body = if path == "/v1/responses" {
            json!({"model": "m", "input": "hi"})
        } else {
            chat(false)
        };
        let a = send("POST", &format!("{}{path}", p.url), &[], Some(&body)).await;
        assert_eq!(a.status, 502, "{path}: {}", a.body);
        let message = a.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("larger than the limit"), "{message}");
    }
    let grown = p.rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "the proxy grew by {grown} KiB");
}

#[tokio::test]
async fn request_bodies_are_bounded_in_values_and_in_memory() {
    let fake = FakeOllama::start().await;
    let p = start(
        &fake.base_url(),
        &[
            ("REQUEST_MEMORY_BYTES", "4194304"),
            ("MAX_BODY_BYTES", "33554432"),
        ],
    )
    .await;
    let url = format!("{}/v1/chat/completions", p.url);
    // [0,0,0,…]: 2 MB on the wire, a million values once parsed.
    let mut flood = chat(false);
    flood["ignored"] = Value::Array(vec![Value::from(0); 1_100_000]);
    let a = send("POST", &url, &[], Some(&flood)).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.body.contains("JSON values"), "{}", a.body);
    // More than the memory all requests may hold together: 503, retry.
    let mut big = chat(false);
    big["messages"][0]["content"] = Value::String("a".repeat(5 * MIB));
    let a = send("POST", &url, &[], Some(&big)).await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.headers["retry-after"], "1");
    // Anthropic's shape for its clients.
    let mut big = json!({"model": "llama3.2", "max_tokens": 10, "messages": [{"role": "user", "content": "a".repeat(5 * MIB)}]});
    big["stream"] = json!(false);
    let a = send("POST", &format!("{}/v1/messages", p.url), &[], Some(&big)).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.json()["error"]["type"], "overloaded_error");
    // The budget was given back: the proxy keeps serving.
    let a = send("POST", &url, &[], Some(&chat(false))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        fake.requests_to("/api/chat").len() == 1,
        "only the good one reached Ollama"
    );
}

/// Reads until the peer closes; the time it took.
async fn closed_within(mut s: TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (t.elapsed(), got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "still open after {limit:?}: {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

#[tokio::test]
async fn slow_or_silent_clients_are_cut_off() {
    let fake = FakeOllama::start().await;
    let p = start(&fake.base_url(), &[("CLIENT_TIMEOUT_SECS", "1")]).await;
    let limit = Duration::from_secs(5);
    // Connects and says nothing.
    let s = TcpStream::connect(&p.addr).await.unwrap();
    let (took, _) = closed_within(s, limit).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");
    // Half a request head.
    let mut s = TcpStream::connect(&p.addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    closed_within(s, limit).await;
    // A head that promises a body it never sends: a 408 in the dialect.
    let mut s = TcpStream::connect(&p.addr).await.unwrap();
    s.write_all(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\"")
        .await
        .unwrap();
    let (_, got) = closed_within(s, limit).await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"type\":\"error\""), "{got}");
    // A kept-alive connection that goes quiet after its request.
    let mut s = TcpStream::connect(&p.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (_, got) = closed_within(s, limit).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    // And it still serves.
    let a = send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&chat(false)),
    )
    .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn http2_clients_get_answers_too() {
    let fake = FakeOllama::start().await;
    let p = start(&fake.base_url(), &[]).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("{}/v1/chat/completions", p.url))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat(false).to_string())))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello! You said: hi");
    // Passed through: Ollama's own API over HTTP/2 as well.
    let req = http::Request::get(format!("{}/api/tags", p.url))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn garbage_where_json_belongs_is_a_502_not_a_200() {
    let evil = Evil::start(|seen: &Seen| Answer::Full {
        status: 200,
        headers: vec![("content-type", "text/html")],
        body: if seen.path == "/api/show" {
            b"{}".to_vec()
        } else {
            b"<html>maintenance</html>".to_vec()
        },
    })
    .await;
    let p = start(&evil.url, &[]).await;
    for (method, path, body) in [
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/qwen3", None),
        (
            "POST",
            "/v1/embeddings",
            Some(json!({"model": "e", "input": "hi"})),
        ),
        (
            "POST",
            "/v1/messages/count_tokens",
            Some(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})),
        ),
    ] {
        let a = send(method, &format!("{}{path}", p.url), &[], body.as_ref()).await;
        assert_eq!(a.status, 502, "{path}: {}", a.body);
        let v = a.json();
        assert!(v["error"]["message"].is_string(), "{path}: {v}");
    }
}

#[tokio::test]
async fn a_silent_ollama_times_out_passed_through_requests_too() {
    let evil = Evil::start(|_| Answer::Silence).await;
    let p = start(&evil.url, &[("UPSTREAM_IDLE_TIMEOUT", "1")]).await;
    for (path, openai) in [("/api/chat", false), ("/v1/assistants", true)] {
        let t = Instant::now();
        let a = send("POST", &format!("{}{path}", p.url), &[], Some(&chat(true))).await;
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(a.status, 504, "{path}: {}", a.body);
        let v = a.json();
        if openai {
            assert_eq!(v["error"]["code"], "upstream_timeout", "{v}");
        } else {
            assert!(v["error"].as_str().unwrap().contains("idle timeout"), "{v}");
        }
    }
}

#[tokio::test]
async fn only_ollama_s_thinking_refusal_turns_thinking_off() {
    let evil = Evil::start(|seen: &Seen| {
        let body: Value = serde_json::from_slice(&seen.body).unwrap_or_default();
        let thinks = body.get("think").is_some();
        match (body["model"].as_str().unwrap_or(""), thinks) {
            ("nothink", true) => Answer::Full {
                status: 400,
                headers: vec![("content-type", "application/json")],
                body: br#"{"error":"\"nothink\" does not support thinking"}"#.to_vec(),
            },
            ("badlevel", true) => Answer::Full {
                status: 400,
                headers: vec![("content-type", "application/json")],
                body: br#"{"error":"invalid think value: \"high\""}"#.to_vec(),
            },
            _ => ndjson(vec![]),
        }
    })
    .await;
    let p = start(&evil.url, &[]).await;
    let url = format!("{}/v1/chat/completions", p.url);
    let ask = |model: &str| json!({"model": model, "reasoning_effort": "high", "messages": [{"role": "user", "content": "hi"}]});
    // Any other 400 is the client's: no retry, no learning.
    let a = send("POST", &url, &[], Some(&ask("badlevel"))).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(
        a.json()["error"]["message"],
        "invalid think value: \"high\""
    );
    let a = send("POST", &url, &[], Some(&ask("badlevel"))).await;
    assert_eq!(a.status, 400);
    assert_eq!(evil.seen().len(), 2, "never retried, never learned");
    // The refusal about thinking: retried without think, and remembered.
    let a = send("POST", &url, &[], Some(&ask("nothink"))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = evil.seen();
    assert_eq!(seen.len(), 4);
    let retried: Value = serde_json::from_slice(&seen[3].body).unwrap();
    assert!(retried.get("think").is_none(), "{retried}");
    let a = send("POST", &url, &[], Some(&ask("nothink"))).await;
    assert_eq!(a.status, 200);
    let seen = evil.seen();
    assert_eq!(seen.len(), 5, "learned: one request, without think");
    assert!(serde_json::from_slice::<Value>(&seen[4].body)
        .unwrap()
        .get("think")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_strings_reach_the_log_escaped() {
    let evil = Evil::start(|_| ndjson(vec![])).await;
    // The prompt "fills" a 10-token context: the proxy warns, naming the model.
    let p = child(&evil.url, &[("OLLAMA_OPTIONS", "num_ctx=10")]).await;
    let forged = "m\nFORGED WARN proxy: all good\u{1b}[2J";
    let body = json!({"model": forged, "messages": [{"role": "user", "content": "hi"}]});
    let a = send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&body),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = p.log.lock().unwrap().clone();
        if log.iter().any(|l| l.contains("filled the context window")) {
            assert!(
                !log.iter().any(|l| l.starts_with("FORGED")),
                "a forged line: {log:#?}"
            );
            assert!(!log.iter().any(|l| l.contains('\u{1b}')), "{log:#?}");
            assert!(log.iter().any(|l| l.contains("m\\nFORGED")), "{log:#?}");
            break;
        }
        assert!(Instant::now() < deadline, "no warning logged: {log:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ollama_s_own_headers_stay_behind() {
    let evil = Evil::start(|_| {
        ndjson(vec![
            ("set-cookie", "session=ollama"),
            ("x-leak", "internal"),
            ("content-type", "application/x-ndjson"),
        ])
    })
    .await;
    let p = start(&evil.url, &[]).await;
    for stream in [true, false] {
        let a = send(
            "POST",
            &format!("{}/v1/chat/completions", p.url),
            &[],
            Some(&chat(stream)),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.headers.get("set-cookie").is_none(), "{:?}", a.headers);
        assert!(a.headers.get("x-leak").is_none(), "{:?}", a.headers);
        let want = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        assert_eq!(a.content_type, want);
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn compressed_request_bodies_are_decoded_and_other_encodings_get_a_415() {
    let fake = FakeOllama::start().await;
    let p = start(&fake.base_url(), &[]).await;
    let url = format!("{}/v1/chat/completions", p.url);
    let json = chat(false).to_string();
    let zstd_body = zstd::encode_all(json.as_bytes(), 3).unwrap();
    for (coding, body) in [("gzip", gzip(json.as_bytes())), ("zstd", zstd_body)] {
        let h = [("content-encoding", coding)];
        let a = send_bytes("POST", &url, &h, Some(body.into())).await;
        assert_eq!(a.status, 200, "{coding}: {}", a.body);
        assert!(a.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("Hello!"));
    }
    assert_eq!(fake.requests_to("/api/chat").len(), 2);
    // Ollama gets plain JSON, never the client's coding.
    let last = fake.requests_to("/api/chat").pop().unwrap();
    assert!(last.header("content-encoding").is_none());
    // Bytes that are not what the coding says: a 400 in the client's dialect.
    let anthropic = json!({"model": "llama3.2", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let a = send_bytes(
        "POST",
        &format!("{}/v1/messages", p.url),
        &[("content-encoding", "gzip")],
        Some(anthropic.to_string().into()),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["type"], "error");
    assert!(a.body.contains("cannot be decoded"), "{}", a.body);
    // Codings the proxy does not decode stay a 415.
    let a = send(
        "POST",
        &url,
        &[("content-encoding", "br")],
        Some(&chat(false)),
    )
    .await;
    assert_eq!(a.status, 415, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "unsupported_content_encoding");
    let identity = [("content-encoding", "identity")];
    let a = send("POST", &url, &identity, Some(&chat(false))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(fake.requests_to("/api/chat").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_is_a_413_with_memory_flat() {
    let fake = FakeOllama::start().await;
    let p = child(&fake.base_url(), &[("MAX_BODY_BYTES", "1048576")]).await;
    // 1 GiB of JSON whitespace inside a string: a few hundred KB compressed.
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    {
        use std::io::Write;
        e.write_all(br#"{"model":"llama3.2","input":""#).unwrap();
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..1024 {
            e.write_all(&chunk).unwrap();
        }
        e.write_all(br#""}"#).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 512 * 1024, "{} bytes", bomb.len());
    let before = p.rss_kib();
    for path in ["/v1/responses", "/v1/chat/completions"] {
        let a = send_bytes(
            "POST",
            &format!("{}{path}", p.url),
            &[("content-encoding", "zstd")],
            Some(bomb.clone().into()),
        )
        .await;
        assert_eq!(a.status, 413, "{path}: {}", a.body);
        assert!(
            a.body.contains("decoded request body is larger"),
            "{}",
            a.body
        );
    }
    let grown = p.rss_kib().saturating_sub(before);
    assert!(grown < 32 * 1024, "the proxy grew by {grown} KiB");
    assert!(fake.requests_to("/api/chat").is_empty());
}

#[tokio::test]
async fn an_upstream_sending_only_blank_lines_times_out() {
    // One token, then a blank line every 50 ms for up to 20 s.
    let evil = Evil::start(|_| Answer::Paced {
        prefix: b"{\"message\":{\"role\":\"assistant\",\"content\":\"ok\"},\"done\":false}\n"
            .to_vec(),
        repeat: b"\n".to_vec(),
        every: Duration::from_millis(50),
        for_at_most: Duration::from_secs(20),
    })
    .await;
    let p = start(&evil.url, &[("UPSTREAM_IDLE_TIMEOUT", "1")]).await;
    let url = format!("{}/v1/chat/completions", p.url);
    let t = Instant::now();
    let a = send("POST", &url, &[], Some(&chat(true))).await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(a.status, 200);
    assert!(a.body.contains("idle timeout"), "{}", a.body);
    assert!(!a.body.contains("[DONE]"), "{}", a.body);
    let t = Instant::now();
    let a = send("POST", &url, &[], Some(&chat(false))).await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(a.status, 504, "{}", a.body);
}

/// `{"error":"model '<name>' not found"}` for a `bytes`-long name: how
/// Ollama answers a model it does not have.
fn long_404(bytes: usize) -> Answer {
    let body = json!({"error": format!("model '{}' not found", "m".repeat(bytes))});
    Answer::Full {
        status: 404,
        headers: vec![("content-type", "application/json")],
        body: body.to_string().into_bytes(),
    }
}

#[tokio::test]
async fn long_error_bodies_from_ollama_end_complete_and_bounded() {
    let evil = Evil::start(|_| long_404(200 * 1024)).await;
    let p = start(&evil.url, &[]).await;
    for (path, body) in [
        ("/v1/chat/completions", chat(true)),
        ("/v1/chat/completions", chat(false)),
        (
            "/v1/messages",
            json!({"model": "m", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        ("/v1/embeddings", json!({"model": "m", "input": "hi"})),
    ] {
        let a = send("POST", &format!("{}{path}", p.url), &[], Some(&body)).await;
        assert_eq!(a.failed, None, "{path}: the body ends with its last chunk");
        assert_eq!(a.status, 404, "{path}: {}", a.body);
        assert!(a.body.len() < 4096, "{path}: {} bytes", a.body.len());
        // OpenAI's and Anthropic's shapes both keep it at error.message.
        let message = a.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("Ollama answered 404"), "{path}: {message}");
    }
    // A short one is still Ollama's own message.
    let evil = Evil::start(|_| long_404(10)).await;
    let p = start(&evil.url, &[]).await;
    let a = send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&chat(true)),
    )
    .await;
    assert_eq!(a.failed, None);
    assert_eq!(a.status, 404);
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("mmmmmmmmmm"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_model_names_keep_metrics_small() {
    // Ollama serves `served-*` and has never heard of `missing-*` (its 404
    // echoes the name, as Ollama's does).
    let evil = Evil::start(|seen: &Seen| {
        let body: Value = serde_json::from_slice(&seen.body).unwrap_or_default();
        let model = body["model"].as_str().unwrap_or("").to_string();
        if model.starts_with("missing") {
            let body = json!({"error": format!("model '{model}' not found")});
            return Answer::Full {
                status: 404,
                headers: vec![("content-type", "application/json")],
                body: body.to_string().into_bytes(),
            };
        }
        ndjson(vec![])
    })
    .await;
    let p = child(&evil.url, &[("MODEL_ALIASES", "my-alias=served-0")]).await;
    let before = p.rss_kib();
    let url = format!("{}/v1/chat/completions", p.url);
    let tail = "x".repeat(MIB);
    for i in 0..64 {
        let kind = if i % 2 == 0 { "served" } else { "missing" };
        let mut body = chat(i % 4 < 2);
        body["model"] = Value::String(format!("{kind}-{i}-{tail}"));
        let a = send("POST", &url, &[], Some(&body)).await;
        let want = if kind == "served" { 200 } else { 404 };
        assert_eq!(a.status, want, "{}", &a.body[..a.body.len().min(300)]);
    }
    let mut body = chat(false);
    body["model"] = json!("my-alias");
    assert_eq!(send("POST", &url, &[], Some(&body)).await.status, 200);
    let t = Instant::now();
    let scrape = send("GET", &format!("{}/metrics", p.url), &[], None).await;
    let took = t.elapsed();
    assert_eq!(scrape.status, 200);
    assert!(took < Duration::from_secs(2), "a scrape took {took:?}");
    assert!(
        scrape.body.len() < 2 * MIB,
        "a scrape of {} bytes",
        scrape.body.len()
    );
    // Names Ollama served (and aliases) are labels, cut short; those it
    // refused are not.
    assert!(scrape.body.contains("gen_ai_request_model=\"my-alias\""));
    // 128 bytes: the name's first 125 and `…`.
    let cut = format!("gen_ai_request_model=\"served-2-{}…\"", &tail[..116]);
    assert!(scrape.body.contains(&cut));
    assert!(!scrape.body.contains("missing-"));
    assert!(scrape.body.contains("gen_ai_request_model=\"other\""));
    let longest = scrape.body.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1024, "a line of {longest} bytes");
    let grown = p.rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "the proxy grew by {grown} KiB");
}

/// Sends `path` a head promising 100 000 bytes of body, then either 10
/// bytes and nothing more or a byte every 100 ms; the answer (read until
/// its JSON says why, or the connection closes) and how long it took.
async fn stall_a_body(addr: &str, path: &str, trickle: bool) -> (Duration, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{\"model\":\""
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        if trickle {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if w.write_all(b"a").await.is_err() {
                    break;
                }
            }
        }
        w
    });
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("}") {
        match tokio::time::timeout(Duration::from_secs(15), r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("{path}: no answer within 15 s"),
        }
    }
    writer.abort();
    (t.elapsed(), String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passed_through_bodies_that_stall_or_trickle_are_a_408() {
    let (a, b) = (FakeOllama::start().await, FakeOllama::start().await);
    let env = [
        ("CLIENT_TIMEOUT_SECS", "1"),
        ("UPSTREAM_IDLE_TIMEOUT", "20"),
        // Blobs (a model's gigabytes come this way) are an admin path.
        ("OPEN_ADMIN_PATHS", "1"),
    ];
    let one = start(&a.base_url(), &env).await;
    let hosts = format!("{},{}", a.base_url(), b.base_url());
    let pool = start(&hosts, &env).await;
    for (p, which) in [(&one, "one host"), (&pool, "a pool")] {
        for path in ["/api/chat", "/api/blobs/sha256:00"] {
            for trickle in [false, true] {
                let (took, got) = stall_a_body(&p.addr, path, trickle).await;
                let what = format!("{which}, {path}, trickle {trickle}");
                assert!(got.starts_with("HTTP/1.1 408"), "{what}: {got}");
                assert!(got.contains("did not arrive within 1 s"), "{what}: {got}");
                assert!(took < Duration::from_secs(5), "{what}: {took:?}");
            }
        }
        // A body that keeps coming is passed through whole.
        let a = send(
            "POST",
            &format!("{}/api/chat", p.url),
            &[],
            Some(&json!({"model": "llama3.2", "stream": false, "messages": [{"role": "user", "content": "x".repeat(MIB)}]})),
        )
        .await;
        assert_eq!(
            a.status,
            200,
            "{which}: {}",
            &a.body[..a.body.len().min(300)]
        );
    }
}

/// An HTTP/2 connection to `addr` (prior knowledge, as gRPC clients and
/// `curl --http2-prior-knowledge` speak): its sender, and a task that
/// ends when the connection does (answering the server's PINGs meanwhile).
async fn h2_connect(
    addr: &str,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    (
        sender,
        tokio::spawn(async move {
            let _ = conn.await;
        }),
    )
}

/// Whether the peer closes `s` within `limit`.
async fn closes_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_without_a_request_at_once() {
    let fake = FakeOllama::start().await;
    let env = [("SHUTDOWN_GRACE_SECS", "20"), ("CLIENT_TIMEOUT_SECS", "30")];
    let mut p = start(&fake.base_url(), &env).await;
    // Connected, nothing sent.
    let mut silent = TcpStream::connect(&p.addr).await.unwrap();
    // Half a request head.
    let mut half = TcpStream::connect(&p.addr).await.unwrap();
    half.write_all(b"GET /livez HTTP/1.1\r\n").await.unwrap();
    // Kept alive after its request.
    let mut kept = TcpStream::connect(&p.addr).await.unwrap();
    kept.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    assert!(kept.read(&mut buf).await.unwrap() > 0);
    // HTTP/2: one that asked once, one that never asked.
    let (mut asked, asked_conn) = h2_connect(&p.addr).await;
    let req = http::Request::get(format!("{}/livez", p.url))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(asked.send_request(req).await.unwrap().status(), 200);
    let (_never, never_conn) = h2_connect(&p.addr).await;
    // And a stream in flight, which shutdown lets finish.
    let body = json!({"model": "llama3.2", "stream": true,
        "messages": [{"role": "user", "content": "[slow] keep going"}]})
    .to_string();
    let mut flowing = TcpStream::connect(&p.addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    flowing.write_all(req.as_bytes()).await.unwrap();
    assert!(flowing.read(&mut buf).await.unwrap() > 0);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let t = Instant::now();
    let server = p.shutdown();
    for (s, what) in [
        (&mut silent, "silent"),
        (&mut half, "half a head"),
        (&mut kept, "kept alive"),
    ] {
        assert!(
            closes_within(s, Duration::from_secs(2)).await,
            "{what}: still open"
        );
    }
    for (conn, what) in [
        (asked_conn, "HTTP/2 after a request"),
        (never_conn, "HTTP/2 without one"),
    ] {
        tokio::time::timeout(Duration::from_secs(2), conn)
            .await
            .unwrap_or_else(|_| panic!("{what}: still open"))
            .unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The stream still flows…
    let n = tokio::time::timeout(Duration::from_secs(1), flowing.read(&mut buf))
        .await
        .expect("tokens still arrive")
        .unwrap();
    assert!(n > 0);
    assert!(!server.is_finished());
    // …and once its client is gone, the server ends, long before the grace.
    drop(flowing);
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("the server ends")
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_and_connections_are_capped() {
    let fake = FakeOllama::start().await;
    let p = start(&fake.base_url(), &[("CLIENT_TIMEOUT_SECS", "1")]).await;
    // HTTP/2 connections that answer PINGs but ask nothing more.
    let mut conns = Vec::new();
    for _ in 0..20 {
        let (mut sender, conn) = h2_connect(&p.addr).await;
        let req = http::Request::get(format!("{}/livez", p.url))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
        conns.push((sender, conn));
    }
    let t = Instant::now();
    for (_sender, conn) in conns {
        tokio::time::timeout(Duration::from_secs(4), conn)
            .await
            .expect("an idle HTTP/2 connection is closed")
            .unwrap();
    }
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    // One with a stream in flight is not idle, however long it takes.
    let (mut sender, conn) = h2_connect(&p.addr).await;
    let body = json!({"model": "llama3.2", "stream": true,
        "messages": [{"role": "user", "content": "[slow] keep going"}]});
    let req = http::Request::post(format!("{}/v1/chat/completions", p.url))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let mut res = sender.send_request(req).await.unwrap().into_body();
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let frame = tokio::time::timeout(Duration::from_secs(1), res.frame())
            .await
            .expect("tokens keep coming");
        assert!(frame.unwrap().is_ok());
    }
    assert!(!conn.is_finished());
    drop((res, sender, conn));

    // The cap: past MAX_CONNECTIONS only the health endpoints answer.
    let p = start(
        &fake.base_url(),
        &[("CLIENT_TIMEOUT_SECS", "30"), ("MAX_CONNECTIONS", "4")],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(h2_connect(&p.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a = send("GET", &format!("{}/livez", p.url), &[], None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = send("GET", &format!("{}/readyz", p.url), &[], None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&chat(false)),
    )
    .await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.headers["retry-after"], "1");
    assert!(a.body.contains("maximum of 4 connections"), "{}", a.body);
    // Past the reserve too, a new connection is closed at once. (First let
    // the proxy, another process, see the connections of the requests
    // above close: each took a place of the reserve while it was open.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut silent = Vec::new();
    for _ in 0..16 {
        silent.push(TcpStream::connect(&p.addr).await.unwrap());
    }
    // (The proxy is another process: give it time to accept them all.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut refused = TcpStream::connect(&p.addr).await.unwrap();
    assert!(closes_within(&mut refused, Duration::from_secs(1)).await);
    // A reserved place is held briefly by a client that says nothing.
    for mut s in silent {
        assert!(closes_within(&mut s, Duration::from_secs(4)).await);
    }
    // Places free up as connections go.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&chat(false)),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
}
