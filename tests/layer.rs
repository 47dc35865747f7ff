//! The layer in-process, over a scripted inner service: re-chunking,
//! pass-through, error mapping, limits and cancellation.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use ollama_translate::TokioTimer;
use ollama_translate::{BoxError, ModelDefaults, OllamaTranslateLayer, RequestBody};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower::{service_fn, Layer, ServiceExt};

/// A body that yields scripted frames, then an optional error, and records
/// when it is dropped.
struct Script {
    frames: VecDeque<Bytes>,
    fail: Option<&'static str>,
    /// Stay pending forever once the frames run out (a stalled upstream).
    stall: bool,
    dropped: Arc<AtomicBool>,
}

impl Script {
    fn new(frames: Vec<Bytes>) -> Self {
        Script {
            frames: frames.into(),
            fail: None,
            stall: false,
            dropped: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl Body for Script {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(f))));
        }
        if let Some(e) = self.fail.take() {
            return Poll::Ready(Some(Err(e.into())));
        }
        if self.stall {
            return Poll::Pending;
        }
        Poll::Ready(None)
    }
}

const STREAM: &str = concat!(
    r#"{"model":"qwen3","created_at":"2026-08-21T10:00:00.101Z","message":{"role":"assistant","content":"","thinking":"The user wants 17×23."},"done":false}"#,
    "\n",
    r#"{"model":"qwen3","created_at":"2026-08-21T10:00:00.102Z","message":{"role":"assistant","content":"17 × 23 = "},"done":false}"#,
    "\n",
    r#"{"model":"qwen3","created_at":"2026-08-21T10:00:00.103Z","message":{"role":"assistant","content":"391 ✓ \"quoted\"\n"},"done":false}"#,
    "\n",
    r#"{"model":"qwen3","created_at":"2026-08-21T10:00:00.104Z","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_k3x9q2ab","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":false}"#,
    "\n",
    r#"{"model":"qwen3","created_at":"2026-08-21T10:00:00.105Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":5,"prompt_eval_count":18,"eval_count":64}"#,
    "\n",
);

fn chat_request(body: Value) -> Request<Full<Bytes>> {
    Request::post("http://localhost:11434/v1/chat/completions")
        .header("host", "proxy.example.com")
        .header("authorization", "Bearer secret")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn streaming_body() -> Value {
    json!({"model": "qwen3", "stream": true, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "17*23?"}]})
}

/// Serves `frames` as Ollama's answer; records the request it got.
async fn translate_with(
    layer: OllamaTranslateLayer,
    req: Request<Full<Bytes>>,
    status: StatusCode,
    body: Script,
) -> (Response<Bytes>, Option<(Request<()>, Bytes)>) {
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let body = Arc::new(Mutex::new(Some(body)));
    let inner = service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
        let seen = seen2.clone();
        let body = body.clone();
        async move {
            let (parts, b) = req.into_parts();
            let bytes = b.collect().await.unwrap().to_bytes();
            *seen.lock().unwrap() = Some((Request::from_parts(parts, ()), bytes));
            let mut res = Response::new(body.lock().unwrap().take().unwrap());
            *res.status_mut() = status;
            Ok::<_, BoxError>(res)
        }
    });
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_else(|e| Bytes::from(format!("BODY ERROR: {e}")));
    let seen = seen.lock().unwrap().take();
    (Response::from_parts(parts, bytes), seen)
}

fn sse_payloads(body: &[u8]) -> Vec<String> {
    std::str::from_utf8(body)
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap().to_string())
        .collect()
}

/// The translated stream with ids and timestamps blanked, for comparison.
fn normalized(body: &[u8]) -> Vec<Value> {
    sse_payloads(body)
        .into_iter()
        .map(|p| {
            let mut v: Value = serde_json::from_str(&p).unwrap_or(Value::String(p));
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
                o.remove("created");
            }
            v
        })
        .collect()
}

#[tokio::test]
async fn rewrites_the_request_for_ollama() {
    let (res, seen) = translate_with(
        OllamaTranslateLayer::new(),
        chat_request(streaming_body()),
        StatusCode::OK,
        Script::new(vec![Bytes::from(STREAM)]),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let (req, body) = seen.unwrap();
    assert_eq!(req.method(), "POST");
    assert_eq!(req.uri(), "http://localhost:11434/api/chat");
    assert!(
        req.headers().get("host").is_none(),
        "the client's Host stays behind"
    );
    assert!(
        req.headers().get("authorization").is_none(),
        "credentials stay behind"
    );
    assert_eq!(req.headers()["content-type"], "application/json");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["model"], "qwen3");
    assert_eq!(v["stream"], true);
}

#[tokio::test]
async fn the_same_stream_whatever_the_framing() {
    let whole = translate_with(
        OllamaTranslateLayer::new(),
        chat_request(streaming_body()),
        StatusCode::OK,
        Script::new(vec![Bytes::from(STREAM)]),
    )
    .await
    .0;
    let expected = normalized(whole.body());
    assert_eq!(expected.last().unwrap(), "[DONE]");
    // Every split point, including inside multi-byte UTF-8 characters.
    let bytes = STREAM.as_bytes();
    for cut in 1..bytes.len() {
        let frames = vec![
            Bytes::copy_from_slice(&bytes[..cut]),
            Bytes::copy_from_slice(&bytes[cut..]),
        ];
        let res = translate_with(
            OllamaTranslateLayer::new(),
            chat_request(streaming_body()),
            StatusCode::OK,
            Script::new(frames),
        )
        .await
        .0;
        assert_eq!(normalized(res.body()), expected, "split at byte {cut}");
    }
    // One byte per frame.
    let frames = bytes
        .iter()
        .map(|b| Bytes::copy_from_slice(&[*b]))
        .collect();
    let res = translate_with(
        OllamaTranslateLayer::new(),
        chat_request(streaming_body()),
        StatusCode::OK,
        Script::new(frames),
    )
    .await
    .0;
    assert_eq!(normalized(res.body()), expected);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_framing_gives_the_same_events(cuts in proptest::collection::vec(1usize..40, 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = STREAM.as_bytes();
        let mut frames = Vec::new();
        let mut at = 0;
        for c in cuts {
            if at >= bytes.len() { break; }
            let end = (at + c).min(bytes.len());
            frames.push(Bytes::copy_from_slice(&bytes[at..end]));
            at = end;
        }
        if at < bytes.len() { frames.push(Bytes::copy_from_slice(&bytes[at..])); }
        let (whole, split) = rt.block_on(async {
            let whole = translate_with(OllamaTranslateLayer::new(), chat_request(streaming_body()), StatusCode::OK, Script::new(vec![Bytes::from(STREAM)])).await.0;
            let split = translate_with(OllamaTranslateLayer::new(), chat_request(streaming_body()), StatusCode::OK, Script::new(frames)).await.0;
            (whole, split)
        });
        prop_assert_eq!(normalized(whole.body()), normalized(split.body()));
    }
}

#[tokio::test]
async fn many_lines_in_one_frame_and_crlf() {
    let crlf = STREAM.replace('\n', "\r\n");
    let res = translate_with(
        OllamaTranslateLayer::new(),
        chat_request(streaming_body()),
        StatusCode::OK,
        Script::new(vec![Bytes::from(crlf)]),
    )
    .await
    .0;
    let events = normalized(res.body());
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "17 × 23 = 391 ✓ \"quoted\"\n");
}

#[tokio::test]
async fn non_streaming_requests_get_one_completion() {
    let ollama = json!({"model":"qwen3","created_at":"x","message":{"role":"assistant","content":"Hello there"},
        "done":true,"done_reason":"stop","prompt_eval_count":7,"eval_count":2});
    let (res, seen) = translate_with(
        OllamaTranslateLayer::new(),
        chat_request(json!({"model": "qwen3", "messages": [{"role": "user", "content": "hi"}]})),
        StatusCode::OK,
        Script::new(vec![Bytes::from(ollama.to_string())]),
    )
    .await;
    assert_eq!(res.headers()["content-type"], "application/json");
    let v: Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(v["usage"]["prompt_tokens"], 7);
    let sent: Value = serde_json::from_slice(&seen.unwrap().1).unwrap();
    assert_eq!(
        sent["stream"], true,
        "Ollama streams; the answer is collected for the client"
    );
    assert_eq!(
        res.headers()["content-length"],
        res.body().len().to_string()
    );
}

#[tokio::test]
async fn ollama_errors_keep_their_status_in_openai_shape() {
    for (status, body, kind) in [
        (
            404,
            r#"{"error":"model 'nosuch' not found"}"#,
            "not_found_error",
        ),
        (
            400,
            r#"{"error":"\"gemma3\" does not support thinking"}"#,
            "invalid_request_error",
        ),
        (
            503,
            r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#,
            "api_error",
        ),
        (403, "", "permission_error"),
        (500, "plain text failure", "api_error"),
    ] {
        let (res, _) = translate_with(
            OllamaTranslateLayer::new(),
            chat_request(streaming_body()),
            StatusCode::from_u16(status).unwrap(),
            Script::new(vec![Bytes::from(body)]),
        )
        .await;
        assert_eq!(res.status(), status);
        assert_eq!(res.headers()["content-type"], "application/json");
        let v: Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(v["error"]["type"], kind, "{status}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(!msg.is_empty());
        if status == 404 {
            assert_eq!(msg, "model 'nosuch' not found");
        }
        if status == 500 {
            assert_eq!(msg, "plain text failure");
        }
    }
}

#[tokio::test]
async fn a_dropped_upstream_ends_the_stream_abnormally() {
    let mut script = Script::new(vec![Bytes::from(&STREAM[..300])]);
    script.fail = Some("connection reset");
    let (res, _) = translate_with(
        OllamaTranslateLayer::new(),
        chat_request(streaming_body()),
        StatusCode::OK,
        script,
    )
    .await;
    let text = std::str::from_utf8(res.body()).unwrap();
    assert!(
        text.starts_with("BODY ERROR"),
        "the body must fail, got {text}"
    );

    // Frame by frame: the in-band error comes before the failure.
    let mut script = Script::new(vec![Bytes::from(&STREAM[..300])]);
    script.fail = Some("connection reset");
    let slot = Arc::new(Mutex::new(Some(script)));
    let inner = service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
        let s = slot.lock().unwrap().take().unwrap();
        async move { Ok::<_, BoxError>(Response::new(s)) }
    });
    let mut body = OllamaTranslateLayer::new()
        .layer(inner)
        .oneshot(chat_request(streaming_body()))
        .await
        .unwrap()
        .into_body();
    let mut seen = String::new();
    let mut failed = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => seen.push_str(std::str::from_utf8(&f.into_data().unwrap()).unwrap()),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed);
    assert!(
        seen.contains("connection to Ollama lost: connection reset"),
        "{seen}"
    );
    assert!(!seen.contains("[DONE]"));
}

#[tokio::test]
async fn bad_requests_never_reach_ollama() {
    let (res, seen) = translate_with(
        OllamaTranslateLayer::new(),
        chat_request(json!({"model": "qwen3"})),
        StatusCode::OK,
        Script::new(vec![]),
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(seen.is_none());
    let v: Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(v["error"]["param"], "messages");
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let big =
        json!({"model": "qwen3", "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let (res, seen) = translate_with(
        OllamaTranslateLayer::new().max_request_bytes(1024),
        chat_request(big.clone()),
        StatusCode::OK,
        Script::new(vec![]),
    )
    .await;
    assert_eq!(res.status(), 413);
    assert!(seen.is_none());
    let v: Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(v["error"]["code"], "request_too_large");
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_in_openai_shape() {
    let inner = service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        Err::<Response<Full<Bytes>>, BoxError>("tcp connect error: Connection refused".into())
    });
    let res = OllamaTranslateLayer::new()
        .layer(inner)
        .oneshot(chat_request(streaming_body()))
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Connection refused"));
}

#[tokio::test]
async fn other_paths_pass_through_untouched() {
    let native = Bytes::from(STREAM);
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let native2 = native.clone();
    let inner = service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
        let seen = seen2.clone();
        let native = native2.clone();
        async move {
            let (parts, b) = req.into_parts();
            let body = b.collect().await.unwrap().to_bytes();
            *seen.lock().unwrap() = Some((parts.uri.clone(), parts.headers.clone(), body));
            let mut res = Response::new(Full::new(native));
            res.headers_mut()
                .insert("content-type", "application/x-ndjson".parse().unwrap());
            Ok::<_, BoxError>(res)
        }
    });
    let req = Request::post("/api/chat?x=1")
        .header("authorization", "Bearer keep")
        .body(Full::new(Bytes::from_static(b"{\"model\":\"qwen3\"}")))
        .unwrap();
    let res = OllamaTranslateLayer::new()
        .layer(inner)
        .oneshot(req)
        .await
        .unwrap();
    assert!(!res.body().is_translated());
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, native, "byte for byte");
    let (uri, headers, sent) = seen.lock().unwrap().take().unwrap();
    assert_eq!(uri, "/api/chat?x=1");
    assert_eq!(headers["authorization"], "Bearer keep");
    assert_eq!(&sent[..], b"{\"model\":\"qwen3\"}");
}

#[tokio::test]
async fn dropping_the_response_drops_the_upstream_body() {
    let mut script = Script::new(vec![Bytes::from(&STREAM[..200])]);
    script.stall = true;
    let dropped = script.dropped.clone();
    let slot = Arc::new(Mutex::new(Some(script)));
    let inner = service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
        let s = slot.lock().unwrap().take().unwrap();
        async move { Ok::<_, BoxError>(Response::new(s)) }
    });
    let mut body = OllamaTranslateLayer::new()
        .layer(inner)
        .oneshot(chat_request(streaming_body()))
        .await
        .unwrap()
        .into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    assert!(!dropped.load(Ordering::SeqCst));
    drop(body);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the client went away: so does the upstream request"
    );
}

#[tokio::test]
async fn think_models_and_default_options_reach_ollama() {
    let layer = OllamaTranslateLayer::new()
        .think_models(["glm-5:cloud"])
        .default_options(ModelDefaults::new().num_ctx(32768).keep_alive("30m"))
        .model_options("glm-5:cloud", ModelDefaults::new().num_ctx(131072));
    let body = json!({"model": "glm-5:cloud", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.1});
    let ollama = json!({"message":{"content":"ok"},"done":true,"done_reason":"stop"});
    let (_, seen) = translate_with(
        layer,
        chat_request(body),
        StatusCode::OK,
        Script::new(vec![Bytes::from(ollama.to_string())]),
    )
    .await;
    let sent: Value = serde_json::from_slice(&seen.unwrap().1).unwrap();
    assert_eq!(sent["think"], true);
    assert_eq!(sent["options"]["num_ctx"], 131072);
    assert_eq!(sent["options"]["temperature"], 0.1);
    assert!(sent["options"].get("top_p").is_none(), "nothing forced");
    assert_eq!(sent["keep_alive"], "30m");
}

#[tokio::test(start_paused = true)]
async fn silence_gets_keepalives_then_an_idle_timeout() {
    let mut script = Script::new(vec![Bytes::from(&STREAM[..STREAM.find('\n').unwrap() + 1])]);
    script.stall = true;
    let dropped = script.dropped.clone();
    let slot = Arc::new(Mutex::new(Some(script)));
    let inner = service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
        let s = slot.lock().unwrap().take().unwrap();
        async move { Ok::<_, BoxError>(Response::new(s)) }
    });
    let layer = OllamaTranslateLayer::new()
        .timer(TokioTimer)
        .keepalive(std::time::Duration::from_secs(5))
        .upstream_idle_timeout(std::time::Duration::from_secs(30));
    let mut body = layer
        .layer(inner)
        .oneshot(chat_request(streaming_body()))
        .await
        .unwrap()
        .into_body();
    let mut text = String::new();
    let mut failed = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => text.push_str(std::str::from_utf8(&f.into_data().unwrap()).unwrap()),
            Err(e) => {
                failed = true;
                assert!(e.to_string().contains("idle timeout"), "{e}");
                break;
            }
        }
    }
    assert!(failed, "a stalled upstream must not look like a finish");
    let keepalives = text.matches(": keep-alive\n\n").count();
    assert!(
        (4..=6).contains(&keepalives),
        "{keepalives} keep-alives in {text}"
    );
    assert!(
        text.contains("upstream idle timeout"),
        "in-band error first: {text}"
    );
    assert!(!text.contains("[DONE]"));
    drop(body);
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn think_on_a_model_that_cannot_think_is_retried_without_it_and_learned() {
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = bodies.clone();
    let inner = service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
        let seen = seen.clone();
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let v: Value = serde_json::from_slice(&body).unwrap();
            let thinks = v.get("think").is_some_and(|t| t != false);
            seen.lock().unwrap().push(v);
            let (status, text) = if thinks {
                (
                    400,
                    r#"{"error":"\"llama3.2\" does not support thinking"}"#.to_string(),
                )
            } else {
                (
                    200,
                    json!({"message":{"content":"fine"},"done":true,"done_reason":"stop"})
                        .to_string(),
                )
            };
            let mut res = Response::new(Full::new(Bytes::from(text)));
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, BoxError>(res)
        }
    });
    let svc = OllamaTranslateLayer::new()
        .think_models(["llama3.2"])
        .layer(inner);
    let ask = |effort: Option<&str>| {
        let mut b = json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]});
        if let Some(e) = effort {
            b["reasoning_effort"] = json!(e);
        }
        chat_request(b)
    };
    let res = svc.clone().oneshot(ask(Some("high"))).await.unwrap();
    assert_eq!(
        res.status(),
        200,
        "the client never sees Ollama's think 400"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "fine");
    {
        let b = bodies.lock().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0]["think"], "high");
        assert!(b[1].get("think").is_none());
    }
    // Learned: no more think for this model, asked for or injected.
    let res = svc.clone().oneshot(ask(None)).await.unwrap();
    assert_eq!(res.status(), 200);
    let b = bodies.lock().unwrap();
    assert_eq!(b.len(), 3, "no wasted round trip once learned");
    assert!(b[2].get("think").is_none());
}

/// gin's plain-text 404 for `path`, through the layer.
async fn plain_404(path: &str, method: http::Method) -> (StatusCode, Value) {
    let inner = service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        let res = Response::builder()
            .status(404)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from("404 page not found")))?;
        Ok::<_, BoxError>(res)
    });
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = OllamaTranslateLayer::new()
        .layer(inner)
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn unknown_paths_under_a_client_api_get_that_api_s_404() {
    // Anthropic's shape below /v1/messages (Claude Code's batches, files…).
    let (status, v) = plain_404("/v1/messages/batches", http::Method::GET).await;
    assert_eq!(status, 404);
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "not_found_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("GET /v1/messages/batches"), "{message}");
    assert!(message.contains("/v1/messages"), "{message}");
    // OpenAI's elsewhere under /v1.
    let (status, v) = plain_404("/v1/assistants", http::Method::POST).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");
    assert!(v.get("type").is_none(), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v1/chat/completions"));
    // GET on a POST-only path is passed through, then reported the same way.
    let (_, v) = plain_404("/v1/messages", http::Method::GET).await;
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");
    assert_eq!(v["type"], "error");
}

/// With keys, a path the layer passes through is checked like any other,
/// unless the application guards its own routes
/// (`Access::guard_passthrough(false)`): then it reaches the inner service
/// as it came, its own credential intact, while translated paths still
/// need a key.
#[tokio::test]
async fn passed_through_paths_can_be_left_to_the_application() {
    use ollama_translate::access::{Access, Key, KeyDigest, Keys};
    let keys = || {
        let mut k = Keys::new();
        k.insert(Key::new("alice", KeyDigest::of("sk-alice")).unwrap())
            .unwrap();
        k
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inner = {
        let seen = seen.clone();
        service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
            let seen = seen.clone();
            async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                let path = req.uri().path().to_string();
                let body: &'static [u8] = if path == "/api/chat" {
                    b"{\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},\"done\":true,\"done_reason\":\"stop\"}\n"
                } else {
                    b"{}"
                };
                seen.lock().unwrap().push((path, auth));
                Ok::<_, BoxError>(Response::new(Full::new(Bytes::from_static(body))))
            }
        })
    };
    let send = |layer: OllamaTranslateLayer, method: &str, path: &str, auth: Option<&str>| {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let body = if method == "POST" {
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string()
        } else {
            String::new()
        };
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        layer.layer(inner.clone()).oneshot(req)
    };
    // Guarded (the default): the app's own token is not one of the keys.
    let guarded = OllamaTranslateLayer::new().access(Access::new(keys()));
    let res = send(guarded, "GET", "/api/tags", Some("Bearer app-token"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(seen.lock().unwrap().is_empty());
    // Left to the application: passed through untouched, credential and all.
    let open = OllamaTranslateLayer::new().access(Access::new(keys()).guard_passthrough(false));
    let res = send(open.clone(), "GET", "/api/tags", Some("Bearer app-token"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = send(open.clone(), "DELETE", "/api/delete", None)
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the app guards its admin paths"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (
                "/api/tags".to_string(),
                Some("Bearer app-token".to_string())
            ),
            ("/api/delete".to_string(), None),
        ]
    );
    // Translated paths still need a key, and the key stops at the layer.
    let res = send(
        open.clone(),
        "POST",
        "/v1/chat/completions",
        Some("Bearer app-token"),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(seen.lock().unwrap().len(), 2);
    let res = send(
        open,
        "POST",
        "/v1/chat/completions",
        Some("Bearer sk-alice"),
    )
    .await
    .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last, ("/api/chat".to_string(), None));
}
