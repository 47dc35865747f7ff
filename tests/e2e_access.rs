//! Who may use the proxy: PROXY_API_KEY, /healthz, credentials to Ollama.

mod common;

use common::fake_ollama::FakeOllama;
use serde_json::{json, Value};

use common::child::check;
use common::proxy::Proxy;

async fn proxy(vars: &[(&str, &str)]) -> Proxy {
    common::proxy::start("", vars).await
}

async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let a = common::proxy::send(method, url, headers, body.as_ref()).await;
    (
        a.status.as_u16(),
        serde_json::from_str(&a.body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn api_key_guards_every_dialect_and_stays_home() {
    let fake = FakeOllama::start().await;
    let base = fake.base_url();
    let p = proxy(&[
        ("OLLAMA_BASE_URL", &base),
        ("PROXY_API_KEY", "s3cret"),
        ("OLLAMA_API_KEY", "upstream-key"),
    ])
    .await;
    let url = p.url.clone();
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
}

#[tokio::test]
async fn listens_on_loopback_by_default() {
    let settings = check(&[]).unwrap();
    assert!(
        settings.contains("listen_addr: \"127.0.0.1:4000\""),
        "{settings}"
    );
    assert!(
        settings.contains("ollama_base_url: \"http://localhost:11434\""),
        "{settings}"
    );
    assert!(check(&[("OLLAMA_BASE_URL", "ftp://x")]).is_err());
    assert!(check(&[("REASONING", "loud")]).is_err());
}

#[tokio::test]
async fn shutdown_refuses_new_requests_and_lets_streams_finish_within_the_grace() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = FakeOllama::start().await;
    let mut p = common::proxy::start(&fake.base_url(), &[("SHUTDOWN_GRACE_SECS", "1")]).await;
    let body = json!({"model": "llama3.2", "stream": true,
        "messages": [{"role": "user", "content": "[slow] keep going"}]})
    .to_string();
    let mut s = tokio::net::TcpStream::connect(&p.addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("tok1 ") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let started = std::time::Instant::now();
    let addr = p.addr.clone();
    let server = p.shutdown();
    // New connections are refused once the listener is gone.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(refused, "no new connections after shutdown");
    // The in-flight stream keeps flowing during the grace period…
    let before = got.len();
    let n = tokio::time::timeout(std::time::Duration::from_millis(500), s.read(&mut buf))
        .await
        .expect("tokens still arrive")
        .unwrap();
    assert!(n > 0 && before > 0);
    // …and the server ends once the grace period is over.
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("the server stops after its grace period")
        .unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    drop(s);
    assert!(
        fake.wait_idle(std::time::Duration::from_secs(2)).await,
        "the cut stream's generation is cancelled"
    );
}
