//! Metrics checked by value: the proxy (in-process, its recorder shared by
//! every proxy of this test binary, so each test uses its own model names
//! and compares before and after) in front of the fake Ollama, scraped at
//! `/metrics` in Prometheus' text format.

mod common;

use common::fake_ollama::FakeOllama;
use common::proxy::{sample, send, start, Proxy};
use serde_json::{json, Value};

async fn scrape(p: &Proxy, headers: &[(&str, &str)]) -> String {
    let a = send("GET", &format!("{}/metrics", p.url), headers, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

#[tokio::test]
async fn token_usage_and_durations_are_recorded_by_value() {
    let fake = FakeOllama::start().await;
    let p = start(
        &fake.base_url(),
        &[("MODEL_ALIASES", "metered-chat=llama3.2")],
    )
    .await;
    let model = "gen_ai_request_model=\"metered-chat\"";
    let before = scrape(&p, &[]).await;

    let body = json!({"model": "metered-chat", "messages": [{"role": "user", "content": "count these words"}]});
    let a = send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&body),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let usage: Value = a.json()["usage"].clone();
    let (input, output) = (
        usage["prompt_tokens"].as_f64().unwrap(),
        usage["completion_tokens"].as_f64().unwrap(),
    );
    assert!(output > 0.0);

    let after = scrape(&p, &[]).await;
    let grew =
        |name: &str, labels: &[&str]| sample(&after, name, labels) - sample(&before, name, labels);
    let out = ["gen_ai_token_type=\"output\"", model];
    let inp = ["gen_ai_token_type=\"input\"", model];
    assert_eq!(
        grew("gen_ai_client_token_usage_sum", &out),
        output,
        "{after}"
    );
    assert_eq!(grew("gen_ai_client_token_usage_sum", &inp), input);
    assert_eq!(grew("gen_ai_client_token_usage_count", &out), 1.0);
    // A histogram with the conventions' buckets, not a summary.
    assert!(
        after.contains("gen_ai_client_token_usage_bucket{"),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "gen_ai_client_token_usage_bucket",
            &["le=\"16384\"", model]
        ) >= 1.0
    );
    let labels = [
        model,
        "gen_ai_operation_name=\"chat\"",
        "gen_ai_provider_name=\"ollama\"",
        "server_address=\"127.0.0.1:",
    ];
    assert_eq!(
        grew("gen_ai_client_operation_duration_seconds_count", &labels),
        1.0,
        "{after}"
    );
    // Not a stream: no chunk timings.
    assert_eq!(
        grew(
            "gen_ai_client_operation_time_to_first_chunk_seconds_count",
            &[model]
        ),
        0.0
    );
    // Other tests of this binary answer chat requests too, concurrently.
    assert!(
        grew(
            "ollama_translate_requests_total",
            &["dialect=\"chat.completions\"", "status=\"200\""]
        ) >= 1.0
    );

    // A stream: one time-to-first-chunk sample, and per-chunk time.
    let before = after;
    // Paced (a line every 20 ms), so that the tokens leave in several
    // chunks and there is a time per chunk to record.
    let body = json!({"model": "metered-chat", "stream": true, "messages": [{"role": "user", "content": "one two three four [paced]"}]});
    let a = send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&body),
    )
    .await;
    assert_eq!(a.status, 200);
    // The proxy (another process) records a stream's timings as its body
    // ends, one metric after another, which may be just after the client
    // has read that end: wait (2 s at most) until every one has moved and
    // the stream is no longer in flight.
    let recorded = [
        "gen_ai_client_operation_time_to_first_chunk_seconds_count",
        "gen_ai_client_operation_time_per_output_chunk_seconds_count",
        "gen_ai_client_operation_duration_seconds_count",
    ];
    let mut after = scrape(&p, &[]).await;
    for _ in 0..40 {
        let moved = recorded
            .iter()
            .all(|m| sample(&after, m, &[model]) > sample(&before, m, &[model]));
        if moved && sample(&after, "ollama_translate_streams_in_flight", &[]) == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after = scrape(&p, &[]).await;
    }
    let grew =
        |name: &str, labels: &[&str]| sample(&after, name, labels) - sample(&before, name, labels);
    assert_eq!(
        grew(
            "gen_ai_client_operation_time_to_first_chunk_seconds_count",
            &[model]
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        grew(
            "gen_ai_client_operation_time_per_output_chunk_seconds_count",
            &[model]
        ),
        1.0
    );
    assert_eq!(
        grew("gen_ai_client_operation_duration_seconds_count", &[model]),
        1.0
    );
    assert_eq!(
        sample(&after, "ollama_translate_streams_in_flight", &[]),
        0.0
    );
}

#[tokio::test]
async fn failures_and_other_operations_are_labelled() {
    let fake = FakeOllama::start().await;
    let p = start(
        &fake.base_url(),
        &[(
            "MODEL_ALIASES",
            "metered-fail=llama3.2,metered-embed=nomic-embed-text,metered-ant=llama3.2",
        )],
    )
    .await;
    let before = scrape(&p, &[]).await;
    // A mid-stream error from Ollama.
    let body = json!({"model": "metered-fail", "stream": true, "messages": [{"role": "user", "content": "[error]"}]});
    send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&body),
    )
    .await;
    // Embeddings and an Anthropic message.
    let body = json!({"model": "metered-embed", "input": "hello"});
    let e = send(
        "POST",
        &format!("{}/v1/embeddings", p.url),
        &[],
        Some(&body),
    )
    .await;
    let body = json!({"model": "metered-ant", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]});
    let m = send("POST", &format!("{}/v1/messages", p.url), &[], Some(&body)).await;
    assert_eq!(m.status, 200, "{}", m.body);
    let after = scrape(&p, &[]).await;
    let grew =
        |name: &str, labels: &[&str]| sample(&after, name, labels) - sample(&before, name, labels);
    assert_eq!(
        grew(
            "gen_ai_client_operation_duration_seconds_count",
            &[
                "gen_ai_request_model=\"metered-fail\"",
                "error_type=\"ollama_error\""
            ]
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        grew(
            "ollama_translate_upstream_errors_total",
            &["error_type=\"ollama_error\""]
        ),
        1.0
    );
    assert_eq!(e.status, 200, "{}", e.body);
    let tokens = e.json()["usage"]["prompt_tokens"].as_f64().unwrap();
    assert!(tokens > 0.0);
    let labels = [
        "gen_ai_request_model=\"metered-embed\"",
        "gen_ai_operation_name=\"embeddings\"",
        "gen_ai_token_type=\"input\"",
    ];
    assert_eq!(grew("gen_ai_client_token_usage_sum", &labels), tokens);
    let output = m.json()["usage"]["output_tokens"].as_f64().unwrap();
    let labels = [
        "gen_ai_request_model=\"metered-ant\"",
        "gen_ai_operation_name=\"chat\"",
        "gen_ai_token_type=\"output\"",
    ];
    assert_eq!(grew("gen_ai_client_token_usage_sum", &labels), output);
    assert_eq!(
        grew(
            "ollama_translate_requests_total",
            &["dialect=\"messages\"", "status=\"200\""]
        ),
        1.0
    );
}

#[tokio::test]
async fn metrics_need_the_key_when_there_is_one() {
    let fake = FakeOllama::start().await;
    let p = start(&fake.base_url(), &[("PROXY_API_KEY", "s3cret")]).await;
    let a = send("GET", &format!("{}/metrics", p.url), &[], None).await;
    assert_eq!(a.status, 401);
    // One answer, so that the scrape has something to say.
    let body = json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]});
    let url = format!("{}/v1/chat/completions", p.url);
    let a = send(
        "POST",
        &url,
        &[("authorization", "Bearer s3cret")],
        Some(&body),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let text = scrape(&p, &[("authorization", "Bearer s3cret")]).await;
    assert!(
        text.contains("# TYPE ollama_translate_requests_total counter"),
        "{text}"
    );
    let served = [
        "dialect=\"chat.completions\"",
        "status=\"200\"",
        "key=\"default\"",
    ];
    assert_eq!(
        sample(&text, "ollama_translate_requests_total", &served),
        1.0,
        "{text}"
    );
    let text = scrape(&p, &[("x-api-key", "s3cret")]).await;
    assert!(text.contains("# TYPE"), "{text}");
}

#[tokio::test]
#[ignore = "prints a scrape for a human to read"]
async fn print_a_scrape() {
    let fake = FakeOllama::start().await;
    let p = start(&fake.base_url(), &[]).await;
    let body = json!({"model": "llama3.2", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&body),
    )
    .await;
    let body = json!({"model": "nomic-embed-text", "input": "hello"});
    let e = send(
        "POST",
        &format!("{}/v1/embeddings", p.url),
        &[],
        Some(&body),
    )
    .await;
    println!("embeddings: {}", e.status);
    println!("{}", scrape(&p, &[]).await);
}
