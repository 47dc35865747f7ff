//! `examples/axum.rs` driven (the built example, a child process): an axum
//! app with its own routes gains the client APIs with the layer around its
//! fallback service, in front of the fake Ollama. (The composition users try
//! first, `Router::layer`, does not compile: a `compile_fail` example in the
//! docs of `OllamaTranslateLayer` shows it.)

mod common;

use common::child::ProxyChild;
use common::fake_ollama::FakeOllama;
use common::proxy::send;
use serde_json::{json, Value};

fn events(body: &str) -> Vec<String> {
    body.split_terminator("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("event: ")))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn an_axum_app_gains_the_client_apis_and_keeps_its_routes() {
    let fake = FakeOllama::start().await;
    let app = ProxyChild::example("axum", &fake.base_url(), &[]).await;
    let url = app.url.clone();

    // The app's own routes.
    let a = send("GET", &format!("{url}/hello"), &[], None).await;
    assert_eq!(
        (a.status.as_u16(), a.body.as_str()),
        (200, "hello from the app")
    );
    let a = send(
        "POST",
        &format!("{url}/api/v2/echo"),
        &[],
        Some(&json!({"x": 1})),
    )
    .await;
    assert_eq!(a.json(), json!({"echo": {"x": 1}}));
    assert!(
        fake.requests().is_empty(),
        "the app's routes never reach Ollama"
    );

    // A streamed chat completion.
    let body = json!({"model": "llama3.2", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let a = send(
        "POST",
        &format!("{url}/v1/chat/completions"),
        &[],
        Some(&body),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "text/event-stream");
    let text: String = a
        .sse()
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .filter_map(|(_, d)| {
            let v: Value = serde_json::from_str(d).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "Hello! You said: hi");
    assert!(a.body.ends_with("data: [DONE]\n\n"));

    // A streamed Anthropic message.
    let body = json!({"model": "llama3.2", "max_tokens": 50, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let a = send("POST", &format!("{url}/v1/messages"), &[], Some(&body)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let names = events(&a.body);
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(
        names.iter().any(|n| n == "content_block_delta"),
        "{names:?}"
    );

    // Ollama's native API passes through untouched.
    let a = send("GET", &format!("{url}/api/tags"), &[], None).await;
    assert_eq!(a.status, 200);
    assert!(a.json()["models"].is_array());
    assert_eq!(fake.requests_to("/api/chat").len(), 2);
    drop(app);
}
