//! `--features otlp`: the proxy binary, with `OTEL_EXPORTER_OTLP_ENDPOINT`
//! pointing at a fake collector, exports the `gen_ai` span of a chat
//! completion over OTLP/HTTP, and flushes it when stopped by SIGTERM.
//!
//! Needs the proxy built with the feature next to this test:
//! `cargo build --features otlp --example proxy` (a plain
//! `cargo test --features otlp` builds it too).
#![cfg(feature = "otlp")]

mod common;

use bytes::Bytes;
use common::child::ProxyChild;
use common::fake_ollama::FakeOllama;
use common::proxy::send;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// One request the collector received.
struct Export {
    method: String,
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// A fake OTLP/HTTP collector on `127.0.0.1:0`: records every request and
/// answers 200 with an empty (valid) protobuf `ExportTraceServiceResponse`.
async fn collector() -> (String, Arc<Mutex<Vec<Export>>>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Export>>> = Arc::default();
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let seen = seen2.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let method = req.method().to_string();
                        let path = req.uri().path().to_string();
                        let content_type = req
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let body = req.into_body().collect().await?.to_bytes().to_vec();
                        seen.lock().unwrap().push(Export {
                            method,
                            path,
                            content_type,
                            body,
                        });
                        Ok::<_, hyper::Error>(
                            Response::builder()
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (url, seen, task)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn the_gen_ai_span_reaches_the_collector_by_the_graceful_shutdown() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (collector_url, seen, collector_task) = collector().await;
        let fake = FakeOllama::start().await;
        // A schedule delay far beyond the test: only the flush at exit
        // (after SIGTERM) can deliver the span.
        let mut p = ProxyChild::start(
            &fake.base_url(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", collector_url.as_str()),
                ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
                // The export does not depend on the log filter.
                ("RUST_LOG", "warn"),
            ],
        )
        .await;

        let a = send(
            "POST",
            &format!("{}/v1/chat/completions", p.url),
            &[],
            Some(&json!({"model": "llama3.2",
                         "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(
            a.json()["usage"]["completion_tokens"].as_u64().is_some(),
            "{}",
            a.body
        );

        let status = p.terminate(Duration::from_secs(15)).await;
        let log = p.log.lock().unwrap().join("\n");
        assert!(
            !log.contains("without `--features otlp`"),
            "the proxy next to the test was built without the feature \
             (cargo build --features otlp --example proxy): {log}"
        );
        assert!(status.success(), "exit after SIGTERM: {status}: {log}");

        let seen = seen.lock().unwrap();
        let traces: Vec<&Export> = seen.iter().filter(|e| e.path == "/v1/traces").collect();
        assert!(
            !traces.is_empty(),
            "nothing reached /v1/traces; paths: {:?}; log: {log}",
            seen.iter().map(|e| &e.path).collect::<Vec<_>>()
        );
        for e in &traces {
            assert_eq!(e.method, "POST");
            assert_eq!(e.content_type, "application/x-protobuf");
        }
        let span = traces
            .iter()
            .find(|e| contains(&e.body, "chat llama3.2"))
            .unwrap_or_else(|| {
                panic!(
                    "no export names the span `chat llama3.2`: {:?}",
                    traces
                        .iter()
                        .map(|e| String::from_utf8_lossy(&e.body))
                        .collect::<Vec<_>>()
                )
            });
        let body = String::from_utf8_lossy(&span.body);
        for text in [
            "gen_ai.operation.name",
            "gen_ai.provider.name",
            "gen_ai.request.model",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.response.finish_reasons",
            "server.address",
            // The resource's service.name.
            "ollama-translate",
        ] {
            assert!(contains(&span.body, text), "{text} in {body:?}");
        }
        // Token counts are int attributes (AnyValue.int_value, field 3),
        // not strings: key, then value (field 2) of 2 bytes: tag 0x18, varint.
        let output = a.json()["usage"]["completion_tokens"].as_u64().unwrap();
        assert!(output < 128, "a one-byte varint: {output}");
        let mut int_attr = b"gen_ai.usage.output_tokens".to_vec();
        int_attr.extend([0x12, 0x02, 0x18, output as u8]);
        assert!(
            span.body.windows(int_attr.len()).any(|w| w == int_attr),
            "output_tokens = {output} as an int in {body:?}"
        );
        // The special fields became the name and the kind, not attributes.
        assert!(!contains(&span.body, "otel.name"), "{body:?}");
        assert!(!contains(&span.body, "otel.kind"), "{body:?}");
        drop(seen);
        collector_task.abort();
    })
    .await
    .expect("the test ends within 30 s");
}
