//! Who may use the proxy: PROXY_API_KEY, /healthz, credentials to Ollama.

#[path = "../examples/proxy/app.rs"]
mod app;
mod common;

use bytes::Bytes;
use common::fake_ollama::FakeOllama;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::collections::HashMap;
use tokio::net::TcpListener;

async fn proxy(vars: &[(&str, &str)]) -> (String, tokio::task::JoinHandle<()>) {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let settings = app::Settings::from_env(|k| vars.get(k).cloned()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        app::serve(listener, settings, std::future::pending())
            .await
            .unwrap();
    });
    (url, task)
}

async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn api_key_guards_every_dialect_and_stays_home() {
    let fake = FakeOllama::start().await;
    let base = fake.base_url();
    let (url, task) = proxy(&[
        ("OLLAMA_BASE_URL", &base),
        ("PROXY_API_KEY", "s3cret"),
        ("OLLAMA_API_KEY", "upstream-key"),
    ])
    .await;
    let chat = json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]});
    let msgs = json!({"model": "llama3.2", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});

    let (s, v) = send(
        "POST",
        &format!("{url}/v1/chat/completions"),
        &[],
        Some(chat.clone()),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["type"], "authentication_error");
    let (s, v) = send(
        "POST",
        &format!("{url}/v1/messages"),
        &[("x-api-key", "wrong")],
        Some(msgs.clone()),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    let (s, v) = send("GET", &format!("{url}/api/tags"), &[], None).await;
    assert_eq!(s, 401);
    assert!(
        v["error"].is_string(),
        "native paths answer in Ollama's shape"
    );
    assert!(fake.requests().is_empty(), "nothing reached Ollama");

    let (s, v) = send("GET", &format!("{url}/healthz"), &[], None).await;
    assert_eq!((s, v), (200, json!({"status": "ok"})));

    let (s, _) = send(
        "POST",
        &format!("{url}/v1/chat/completions"),
        &[("authorization", "Bearer s3cret")],
        Some(chat),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(
        "POST",
        &format!("{url}/v1/messages"),
        &[("x-api-key", "s3cret")],
        Some(msgs),
    )
    .await;
    assert_eq!(s, 200);
    for r in fake.requests() {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer upstream-key"),
            "the client's key never reaches Ollama; OLLAMA_API_KEY does"
        );
        assert!(r.header("x-api-key").is_none());
    }
    task.abort();
}

#[tokio::test]
async fn listens_on_loopback_by_default() {
    let settings = app::Settings::from_env(|_| None).unwrap();
    assert_eq!(settings.listen, "127.0.0.1:4000");
    assert_eq!(settings.ollama.to_string(), "http://localhost:11434/");
    assert!(
        app::Settings::from_env(|k| (k == "OLLAMA_BASE_URL").then(|| "ftp://x".into())).is_err()
    );
    assert!(app::Settings::from_env(|k| (k == "REASONING").then(|| "loud".into())).is_err());
}
