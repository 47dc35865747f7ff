//! Keep-alives and the upstream idle timeout keep exact deadlines, driven
//! with tokio's paused clock: a scripted Ollama sends lines at chosen
//! instants and the test notes when each translated frame comes out.

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use ollama_translate::TokioTimer;
use ollama_translate::{BoxError, OllamaTranslateLayer, RequestBody};
use serde_json::{json, Value};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};

type Chunk = Result<Frame<Bytes>, BoxError>;

/// Runs one request through the layer; Ollama's body is whatever the
/// returned sender sends. Yields `(seconds since start, frame text)` for
/// every frame the client gets, and the body error, if any.
async fn run(
    layer: OllamaTranslateLayer,
    path: &str,
    body: Value,
    script: impl FnOnce(mpsc::Sender<Chunk>) -> tokio::task::JoinHandle<()>,
) -> (Vec<(f64, String)>, Option<String>) {
    let (tx, rx) = mpsc::channel::<Chunk>(16);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let inner = service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
        let rx = rx.lock().unwrap().take().unwrap();
        async move { Ok::<_, BoxError>(Response::new(Channel(rx))) }
    });
    let start = Instant::now();
    let req = Request::post(path)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let feeder = script(tx);
    let mut body = res.into_body();
    let mut frames = Vec::new();
    let mut error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                let at = (Instant::now() - start).as_secs_f64();
                let text = String::from_utf8(f.into_data().unwrap().to_vec()).unwrap();
                frames.push((at, text));
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    feeder.abort();
    (frames, error)
}

/// Ollama's body: whatever the test sends down the channel.
struct Channel(mpsc::Receiver<Chunk>);

impl Body for Channel {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        self.0.poll_recv(cx)
    }
}

fn line(v: Value) -> Chunk {
    Ok(Frame::data(Bytes::from(format!("{v}\n"))))
}

fn token(text: &str) -> Chunk {
    line(json!({"message": {"role": "assistant", "content": text}, "done": false}))
}

fn thinking(text: &str) -> Chunk {
    line(json!({"message": {"role": "assistant", "content": "", "thinking": text}, "done": false}))
}

fn done() -> Chunk {
    line(
        json!({"message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop"}),
    )
}

/// When each frame containing `needle` came out, in seconds.
fn times(frames: &[(f64, String)], needle: &str) -> Vec<f64> {
    frames
        .iter()
        .filter(|(_, f)| f.contains(needle))
        .map(|(t, _)| *t)
        .collect()
}

fn assert_near(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 0.010,
            "got {got:?}, want {want:?} (±10 ms)"
        );
    }
}

fn chat(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test(start_paused = true)]
async fn a_keepalive_comes_after_exactly_its_period_of_silence() {
    let layer = OllamaTranslateLayer::new()
        .keepalive(Duration::from_secs(10))
        .timer(TokioTimer);
    let (frames, error) = run(layer, "/v1/chat/completions", chat(true), |tx| {
        tokio::spawn(async move {
            tx.send(token("a")).await.unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
            tx.send(token("b")).await.unwrap();
            // 25 s of silence, then the end.
            tokio::time::sleep(Duration::from_secs(25)).await;
            tx.send(done()).await.unwrap();
        })
    })
    .await;
    assert_eq!(error, None);
    // Counted from the last token (3 s), not from a tick: 13 s and 23 s.
    assert_near(&times(&frames, ": keep-alive"), &[13.0, 23.0]);
    assert_near(&times(&frames, "[DONE]"), &[28.0]);
}

#[tokio::test(start_paused = true)]
async fn the_idle_timeout_fires_at_its_deadline() {
    // Set before the timer: the order of the builder calls does not matter.
    let layer = OllamaTranslateLayer::new()
        .upstream_idle_timeout(Duration::from_secs(11))
        .keepalive(Duration::from_secs(10))
        .timer(TokioTimer);
    let (frames, error) = run(layer, "/v1/chat/completions", chat(true), |tx| {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            tx.send(token("a")).await.unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        })
    })
    .await;
    // Silence from 2 s: a keep-alive at 12 s, the timeout at 13 s.
    assert_near(&times(&frames, ": keep-alive"), &[12.0]);
    let failed = times(&frames, "upstream idle timeout");
    assert_near(&failed, &[13.0]);
    let error = error.expect("a stalled upstream must not look like a finish");
    assert!(error.contains("idle timeout"), "{error}");
    assert!(!frames.iter().any(|(_, f)| f.contains("[DONE]")));
}

#[tokio::test(start_paused = true)]
async fn dropped_thinking_still_gets_pings_in_the_messages_dialect() {
    let layer = OllamaTranslateLayer::new()
        .timer(TokioTimer)
        .keepalive(Duration::from_secs(10));
    let body = json!({"model": "m", "max_tokens": 100, "stream": true,
                      "messages": [{"role": "user", "content": "think"}]});
    let (frames, error) = run(layer, "/v1/messages", body, |tx| {
        tokio::spawn(async move {
            // Thinking every second for 25 s: Ollama is busy, the client
            // hears nothing (thinking is dropped by default).
            for _ in 0..25 {
                tx.send(thinking("hm")).await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tx.send(token("ok")).await.unwrap();
            tx.send(done()).await.unwrap();
        })
    })
    .await;
    assert_eq!(error, None);
    assert_near(&times(&frames, "message_start"), &[0.0]);
    assert_near(&times(&frames, "event: ping"), &[10.0, 20.0]);
    assert_near(&times(&frames, "message_stop"), &[25.0]);
}

#[tokio::test(start_paused = true)]
async fn a_non_streaming_client_gets_a_504_at_the_idle_deadline() {
    let layer = OllamaTranslateLayer::new()
        .timer(TokioTimer)
        .upstream_idle_timeout(Duration::from_secs(7));
    let (tx, rx) = mpsc::channel::<Chunk>(16);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let inner = service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
        let rx = rx.lock().unwrap().take().unwrap();
        async move { Ok::<_, BoxError>(Response::new(Channel(rx))) }
    });
    let feeder = tokio::spawn(async move {
        for _ in 0..3 {
            tx.send(token("a")).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let start = Instant::now();
    let req = Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from(chat(false).to_string())))
        .unwrap();
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    // Tokens at 0, 5 and 10 s keep it alive; silence from 10 s ends it at 17 s.
    assert_near(&[(Instant::now() - start).as_secs_f64()], &[17.0]);
    assert_eq!(res.status(), 504);
    let v: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("idle timeout"),
        "{v}"
    );
    feeder.abort();
}
