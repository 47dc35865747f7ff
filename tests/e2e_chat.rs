//! The proxy (the same code as `examples/proxy`) on an ephemeral loopback
//! port in front of the fake Ollama, over real sockets.

mod common;

use bytes::Bytes;
use common::fake_ollama::FakeOllama;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::proxy::Proxy;

async fn proxy(ollama: &str, env: &[(&str, &str)]) -> Proxy {
    common::proxy::start(ollama, env).await
}

async fn post(url: &str, body: Value) -> (StatusCode, http::HeaderMap, Bytes) {
    let a = common::proxy::send("POST", url, &[], Some(&body)).await;
    (a.status, a.headers, Bytes::from(a.body))
}

fn sse(body: &[u8]) -> Vec<String> {
    std::str::from_utf8(body)
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.is_empty() && !e.starts_with(':'))
        .map(|e| e.strip_prefix("data: ").unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn streams_through_awkward_upstream_framing() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake.base_url(), &[]).await;
    let (status, headers, body) = post(
        &format!("{}/v1/chat/completions", p.url),
        json!({"model": "qwen3", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "split me at odd bytes ✓"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let events = sse(&body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello! You said: split me at odd bytes ✓");
    let sent = fake.last_request().unwrap();
    assert_eq!(sent.path, "/api/chat");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.header("host"), Some(fake.addr.to_string().as_str()));
}

#[tokio::test]
async fn client_disconnect_cancels_the_generation() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake.base_url(), &[]).await;
    let body = json!({"model": "llama3.2", "stream": true,
        "messages": [{"role": "user", "content": "[slow] go"}]})
    .to_string();
    let addr = p.url.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("tok2 ") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(fake.in_flight() == 1);
    drop(s);
    let cancelled = fake
        .wait_until(Duration::from_secs(1), |f| {
            f.cancelled() == 1 && f.in_flight() == 0
        })
        .await;
    assert!(
        cancelled,
        "Ollama must see the cancellation within a second"
    );
}

#[tokio::test]
async fn errors_arrive_in_openai_shape_and_the_proxy_keeps_serving() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake.base_url(), &[]).await;
    let url = format!("{}/v1/chat/completions", p.url);
    let (status, _, body) = post(
        &url,
        json!({"model": "nosuch", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["message"], "model 'nosuch' not found");
    assert_eq!(v["error"]["type"], "not_found_error");

    let (status, _, body) = post(
        &url,
        json!({"model": "llama3.2", "stream": true,
        "messages": [{"role": "user", "content": "[error]"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let events = sse(&body);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unexpectedly stopped"));
    assert!(!events.contains(&"[DONE]".to_string()));

    let (_, _, body) = post(
        &url,
        json!({"model": "llama3.2", "stream": true,
        "messages": [{"role": "user", "content": "[drop]"}]}),
    )
    .await;
    let text = String::from_utf8_lossy(&body);
    assert!(
        !text.contains("[DONE]"),
        "a dropped upstream never looks finished: {text}"
    );

    let (_, _, body) = post(
        &url,
        json!({"model": "llama3.2", "stream": true,
        "messages": [{"role": "user", "content": "[garbage]"}]}),
    )
    .await;
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("invalid stream line") && !text.contains("[DONE]"),
        "{text}"
    );

    let (status, _, body) = post(
        &url,
        json!({"model": "llama3.2", "messages": [{"role": "user", "content": "still here"}]}),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        fake.wait_idle(Duration::from_secs(2)).await,
        "nothing left in flight"
    );
}

#[tokio::test]
async fn unreachable_ollama_is_a_502() {
    // A port nothing listens on: bind, note it, close.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let p = proxy(&dead, &[]).await;
    let (status, _, body) = post(
        &format!("{}/v1/chat/completions", p.url),
        json!({"model": "qwen3", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 502);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("could not reach Ollama"));
}

#[tokio::test]
async fn native_stream_passes_through_byte_for_byte() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake.base_url(), &[]).await;
    let body = json!({"model": "qwen3", "messages": [{"role": "user", "content": "native"}]});
    let (s1, h1, direct) = post(&format!("{}/api/chat", fake.base_url()), body.clone()).await;
    let (s2, h2, proxied) = post(&format!("{}/api/chat", p.url), body).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(h1["content-type"], h2["content-type"]);
    assert_eq!(direct, proxied);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let res = client
        .request(
            Request::get(format!("{}/", p.url))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "Ollama is running"
    );
}

#[tokio::test]
async fn options_spec_and_think_models_reach_ollama() {
    let fake = FakeOllama::start().await;
    let p = proxy(
        &fake.base_url(),
        &[
            ("THINK_MODELS", "glm-5:cloud"),
            (
                "OLLAMA_OPTIONS",
                "num_ctx=32768,keep_alive=30m;[glm-5:cloud]num_ctx=8",
            ),
            ("MODEL_ALIASES", "gpt-4o=glm-5:cloud"),
            ("REASONING", "forward"),
        ],
    )
    .await;
    let (status, _, body) = post(
        &format!("{}/v1/chat/completions", p.url),
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "a prompt longer than eight tokens surely, yes"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        "Let me think about this."
    );
    let sent = fake.last_request().unwrap().body;
    assert_eq!(sent["model"], "glm-5:cloud");
    assert_eq!(sent["think"], true);
    assert_eq!(sent["options"]["num_ctx"], 8);
    assert_eq!(sent["keep_alive"], "30m");
    // The fake reports prompt_eval_count == num_ctx: the context was full.
    assert_eq!(v["usage"]["prompt_tokens"], 8);
}

#[tokio::test]
async fn reasoning_effort_on_a_non_thinking_model_still_answers() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake.base_url(), &[]).await;
    let (status, _, body) = post(
        &format!("{}/v1/chat/completions", p.url),
        json!({"model": "llama3.2", "reasoning_effort": "high", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let reqs = fake.requests_to("/api/chat");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body["think"], "high");
    assert!(reqs[1].body.get("think").is_none());
}

#[tokio::test]
async fn a_non_streaming_answer_may_take_longer_than_the_idle_timeout() {
    // 100 tokens 20 ms apart: 2 s in all, never 1 s of silence.
    let fake = FakeOllama::start().await;
    let p = proxy(&fake.base_url(), &[("UPSTREAM_IDLE_TIMEOUT", "1")]).await;
    let started = std::time::Instant::now();
    let (status, _, body) = post(
        &format!("{}/v1/chat/completions", p.url),
        json!({"model": "llama3.2", "max_tokens": 100,
               "messages": [{"role": "user", "content": "[slow] take your time"}]}),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 100);
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("tok0 tok1 "));
}

#[tokio::test]
async fn wrong_types_are_400s_naming_the_field() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake.base_url(), &[]).await;
    let url = format!("{}/v1/chat/completions", p.url);
    let hi = json!([{"role": "user", "content": "hi"}]);
    for (body, param, message) in [
        (
            json!({"model": "qwen3", "messages": [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": "", "tool_calls": "x"}]}),
            "messages[1].tool_calls",
            "messages[1].tool_calls must be an array, got a string",
        ),
        (
            json!({"model": "qwen3", "messages": hi, "functions": "x"}),
            "functions",
            "functions must be an array, got a string",
        ),
        (
            json!({"model": "qwen3", "messages": hi, "stream": true, "stream_options": "x"}),
            "stream_options",
            "stream_options must be an object, got a string",
        ),
        (
            json!({"model": "qwen3", "messages": hi, "stream": true,
                "stream_options": {"include_usage": "yes"}}),
            "stream_options.include_usage",
            "stream_options.include_usage must be a boolean, got a string",
        ),
    ] {
        let (status, _, answer) = post(&url, body).await;
        assert_eq!(status, 400);
        let v: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(v["error"]["param"], param);
        assert_eq!(v["error"]["message"], message);
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert!(fake.requests().is_empty(), "nothing reached Ollama");
}

/// An "Ollama" that answers every request with `ndjson`, then closes.
async fn canned_ollama(ndjson: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the request: headers, then content-length bytes.
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{ndjson}",
                    ndjson.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    url
}

#[tokio::test]
async fn string_arguments_from_ollama_reach_the_client_decoded_once() {
    let upstream = canned_ollama(concat!(
        r#"{"model":"qwen3","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"}}]},"done":false}"#,
        "\n",
        r#"{"model":"qwen3","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":18446744073709551615,"eval_count":5}"#,
        "\n",
    ))
    .await;
    let p = proxy(&upstream, &[]).await;
    let url = format!("{}/v1/chat/completions", p.url);
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);

    let (status, _, body) = post(
        &url,
        json!({"model": "qwen3", "stream": true, "stream_options": {"include_usage": true},
            "tools": tools, "messages": [{"role": "user", "content": "weather?"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let events = sse(&body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, r#"{"city":"Tokyo"}"#);
    assert_eq!(
        chunks.last().unwrap()["usage"]["total_tokens"],
        u64::MAX,
        "the total saturates"
    );

    let (status, _, body) = post(
        &url,
        json!({"model": "qwen3", "tools": tools,
            "messages": [{"role": "user", "content": "weather?"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Tokyo"}"#
    );
    assert_eq!(v["usage"]["total_tokens"], u64::MAX);
}

#[tokio::test]
async fn chat_completions_drop_thinking_by_default() {
    let fake = common::fake_ollama::FakeOllama::start().await;
    let p = common::proxy::start(&fake.base_url(), &[]).await;
    let body = serde_json::json!({"model": "qwen3", "reasoning_effort": "high",
        "messages": [{"role": "user", "content": "hello"}]});
    let a = common::proxy::send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&body),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let message = &a.json()["choices"][0]["message"];
    assert!(message.get("reasoning_content").is_none(), "{message}");
    // The model did think: Ollama was asked to.
    assert_eq!(common::proxy::last_chat(&fake)["think"], "high");
}
