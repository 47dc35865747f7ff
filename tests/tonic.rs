//! `examples/tonic.rs` (the built example, a child process): gRPC and the translated HTTP APIs on one
//! loopback port, in front of the fake Ollama.

mod common;

use bytes::Bytes;
use common::child::ProxyChild;
use common::fake_ollama::FakeOllama;
use http::{header, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// POSTs `body` as JSON over HTTP/1.1; returns the status, headers and body.
async fn post(addr: SocketAddr, path: &str, body: Value) -> (http::response::Parts, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::post(format!("http://{addr}{path}"))
        .version(Version::HTTP_11)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("response head in time")
        .expect("response");
    let (parts, body) = res.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (parts, body)
}

#[tokio::test]
async fn grpc_and_translated_apis_share_one_port() {
    let ollama = FakeOllama::start().await;
    let server = ProxyChild::example("tonic", &ollama.base_url(), &[]).await;
    let addr: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();

    // gRPC over HTTP/2: the health service says the server is SERVING.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("gRPC connect");
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("Health/Check")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    // OpenAI Chat Completions over HTTP/1.1, not streamed.
    let (head, body) = post(
        addr,
        "/v1/chat/completions",
        json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK, "{body:?}");
    assert_eq!(head.version, Version::HTTP_11);
    let chat: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(
        chat["choices"][0]["message"]["content"],
        "Hello! You said: hi"
    );

    // Anthropic Messages over HTTP/1.1, streamed.
    let (head, body) = post(
        addr,
        "/v1/messages",
        json!({
            "model": "llama3.2",
            "max_tokens": 64,
            "stream": true,
            "messages": [{"role": "user", "content": "hi"}],
        }),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK, "{body:?}");
    assert_eq!(head.version, Version::HTTP_11);
    assert!(head.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let sse = std::str::from_utf8(&body).unwrap();
    let events: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .filter(|e| *e != "ping")
        .collect();
    assert_eq!(events.first(), Some(&"message_start"), "{sse}");
    assert_eq!(events.last(), Some(&"message_stop"), "{sse}");
    for e in [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
    ] {
        assert!(events.contains(&e), "no {e} in {sse}");
    }
    let text: String = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["type"] == "content_block_delta")
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "Hello! You said: hi");

    drop(server);
    drop(ollama);
}
