//! Throughput of the translating body: Ollama NDJSON in, Chat Completions
//! SSE out, through the public layer over an in-memory "Ollama".
//!
//! `cargo bench --bench translate`
// Benchmarks may unwrap: a failure here is a broken benchmark, not a result.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use ollama_translate::{BoxError, OllamaTranslateLayer, RequestBody};
use std::collections::VecDeque;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{service_fn, Layer, Service, ServiceExt};

/// Yields pre-cut frames.
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// `n` realistic token lines (~150 bytes each) and a done line.
fn stream(n: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "{{\"model\":\"qwen3:8b\",\"created_at\":\"2026-08-21T10:00:00.{i:09}Z\",\"message\":{{\"role\":\"assistant\",\"content\":\" token{i}\"}},\"done\":false}}\n"
        ));
    }
    s.push_str("{\"model\":\"qwen3:8b\",\"created_at\":\"2026-08-21T10:00:01Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":1,\"prompt_eval_count\":26,\"eval_count\":500}\n");
    s.into_bytes()
}

fn cut(data: &[u8], how: &str) -> VecDeque<Bytes> {
    match how {
        "one_line_per_frame" => data
            .split_inclusive(|b| *b == b'\n')
            .map(Bytes::copy_from_slice)
            .collect(),
        "many_lines_per_frame" => data.chunks(16 * 1024).map(Bytes::copy_from_slice).collect(),
        _ => data.chunks(7).map(Bytes::copy_from_slice).collect(),
    }
}

fn body(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let lines = 500;
    let data = stream(lines);
    let request = Bytes::from_static(
        br#"{"model":"qwen3:8b","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
    );
    let mut group = c.benchmark_group("chat_stream");
    for unit in ["lines", "bytes"] {
        group.throughput(if unit == "lines" {
            Throughput::Elements(lines as u64 + 1)
        } else {
            Throughput::Bytes(data.len() as u64)
        });
        for how in [
            "one_line_per_frame",
            "many_lines_per_frame",
            "7_byte_frames",
        ] {
            group.bench_with_input(BenchmarkId::new(unit, how), &how, |b, how| {
                b.to_async(&rt).iter_batched(
                    || {
                        let frames = cut(&data, how);
                        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(frames)));
                        let inner = service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
                            let f = slot.lock().unwrap().take().unwrap();
                            async move { Ok::<_, BoxError>(Response::new(Frames(f))) }
                        });
                        let svc = OllamaTranslateLayer::new().layer(inner);
                        let req = Request::post("/v1/chat/completions")
                            .body(Full::new(request.clone()))
                            .unwrap();
                        (svc, req)
                    },
                    |(mut svc, req)| async move {
                        let res = svc.ready().await.unwrap().call(req).await.unwrap();
                        black_box(res.into_body().collect().await.unwrap().to_bytes())
                    },
                    BatchSize::SmallInput,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, body);
criterion_main!(benches);
