//! A profiling harness for the streaming hot path: runs `STREAMS` whole
//! requests through the public layer over an in-memory Ollama answering 256
//! realistic token lines and a done line, single-threaded, no sockets.
//!
//! ```text
//! cargo build --release --example profile_body
//! # instructions per token line, free of start-up costs: two runs, subtract
//! for n in 20 220; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \
//!     target/release/examples/profile_body chat lines $n 2>&1 | grep 'refs'
//! done
//! # (Ir(220) − Ir(20)) / (200 × 257) = instructions per line
//! ```
//!
//! Arguments: dialect (`chat`, `messages`, `responses`, `native` for the
//! pass-through), framing (`lines` one line per frame, `bulk` 16 KiB frames,
//! `odd` 7-byte frames), number of streams.
// A profiling harness: a failed unwrap is a broken run, not a result.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use ollama_translate::{BoxError, OllamaTranslateLayer, RequestBody};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower::{service_fn, Layer, Service, ServiceExt};

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

const WORDS: [&str; 16] = [
    " The",
    " function",
    " returns",
    " `Result<T, E>`",
    ",",
    " so",
    " the",
    " caller",
    " can",
    " handle",
    " errors",
    ".\\n\\n",
    "```rust\\n",
    " let x = \\\"héllo\\\";",
    " ✓",
    " done",
];

fn stream(n: usize) -> Bytes {
    let mut s = String::new();
    for i in 0..n {
        let w = WORDS[i % WORDS.len()];
        s.push_str(&format!(
            "{{\"model\":\"qwen3:8b\",\"created_at\":\"2026-08-21T10:00:00.{:09}Z\",\"message\":{{\"role\":\"assistant\",\"content\":\"{w}\"}},\"done\":false}}\n",
            (i * 7_919_003) % 1_000_000_000
        ));
    }
    s.push_str("{\"model\":\"qwen3:8b\",\"created_at\":\"2026-08-21T10:00:01.5Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":1510029631,\"load_duration\":20128371,\"prompt_eval_count\":26,\"prompt_eval_duration\":41264000,\"eval_count\":256,\"eval_duration\":1447000000}\n");
    Bytes::from(s)
}

fn cut(data: &Bytes, how: &str) -> VecDeque<Bytes> {
    let step = match how {
        "bulk" => 16 * 1024,
        "odd" => 7,
        _ => 0,
    };
    let mut frames = VecDeque::new();
    if step == 0 {
        let mut start = 0;
        for (i, b) in data.iter().enumerate() {
            if *b == b'\n' {
                frames.push_back(data.slice(start..=i));
                start = i + 1;
            }
        }
    } else {
        for start in (0..data.len()).step_by(step) {
            frames.push_back(data.slice(start..(start + step).min(data.len())));
        }
    }
    frames
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dialect = args.get(1).map_or("chat", String::as_str);
    let how = args.get(2).map_or("lines", String::as_str);
    let streams: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let (path, request): (&'static str, &'static str) = match dialect {
        "messages" => (
            "/v1/messages",
            r#"{"model":"qwen3:8b","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        "responses" => (
            "/v1/responses",
            r#"{"model":"qwen3:8b","stream":true,"input":"hi"}"#,
        ),
        "native" => (
            "/api/chat",
            r#"{"model":"qwen3:8b","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        _ => (
            "/v1/chat/completions",
            r#"{"model":"qwen3:8b","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
        ),
    };
    let data = stream(256);
    let frames = cut(&data, how);
    let layer = OllamaTranslateLayer::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut out_bytes = 0usize;
    rt.block_on(async {
        for _ in 0..streams {
            let slot = Arc::new(Mutex::new(Some(frames.clone())));
            let inner = service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
                let f = slot.lock().unwrap().take().unwrap_or_default();
                std::future::ready(Ok::<_, BoxError>(Response::new(Frames(f))))
            });
            let mut svc = layer.layer(inner);
            let req = Request::post(path)
                .body(Full::new(Bytes::from_static(request.as_bytes())))
                .unwrap();
            let res = svc.ready().await.unwrap().call(req).await.unwrap();
            let mut body = res.into_body();
            while let Some(f) = body.frame().await {
                if let Ok(d) = f.unwrap().into_data() {
                    out_bytes += d.len();
                }
            }
        }
    });
    println!("{dialect} {how}: {streams} streams, {out_bytes} bytes out");
}
