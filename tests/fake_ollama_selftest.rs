//! Tests of the fake Ollama server itself, with a raw hyper client.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::fake_ollama::{
    FakeConfig, FakeOllama, AWKWARD_FRAME_SIZES, CREATED_AT, EXPIRES_AT, GARBAGE_PAGE,
    RUNNER_FAILED, RUNNER_STOPPED, SERVER_BUSY, STALL_DURATION,
};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// A response whose body has not been read yet, plus the task driving its connection.
struct Pending {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Incoming,
    conn: JoinHandle<()>,
}

impl Pending {
    /// Reads every frame; returns the frames and the error that ended the body, if any.
    async fn frames(mut self) -> (Vec<Bytes>, Option<hyper::Error>) {
        let mut frames = Vec::new();
        while let Some(frame) = self.body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        frames.push(data);
                    }
                }
                Err(e) => return (frames, Some(e)),
            }
        }
        (frames, None)
    }

    async fn text(self) -> String {
        let (frames, err) = self.frames().await;
        assert!(err.is_none(), "body error: {err:?}");
        String::from_utf8(frames.concat()).unwrap()
    }

    async fn json(self) -> Value {
        serde_json::from_str(&self.text().await).unwrap()
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .map_or("", |v| v.to_str().unwrap())
    }

    /// Drops the body and closes the connection, like a client that goes away.
    fn hang_up(self) {
        drop(self.body);
        self.conn.abort();
    }
}

/// Sends one request on a fresh HTTP/1.1 connection. `Host` defaults to the fake's address.
async fn send(
    fake: &FakeOllama,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Pending {
    let stream = TcpStream::connect(fake.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", fake.addr.to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Pending {
        status: parts.status,
        headers: parts.headers,
        body,
        conn,
    }
}

async fn post(fake: &FakeOllama, path: &str, body: Value) -> Pending {
    send(fake, "POST", path, &[], &body.to_string()).await
}

/// Splits an NDJSON body into parsed lines, asserting every line is valid JSON.
fn ndjson(text: &str) -> Vec<Value> {
    assert!(
        text.ends_with('\n'),
        "NDJSON must end with a newline: {text:?}"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

fn concat(lines: &[Value], pointer: &str) -> String {
    lines
        .iter()
        .filter_map(|l| l.pointer(pointer).and_then(Value::as_str))
        .collect()
}

fn user(text: &str) -> Value {
    json!([{ "role": "user", "content": text }])
}

fn weather_tool() -> Value {
    json!([{"type":"function","function":{"name":"get_weather","description":"Weather",
        "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}])
}

fn is_call_id(id: &str) -> bool {
    id.len() == 13
        && id.starts_with("call_")
        && id[5..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[tokio::test]
async fn default_stream_is_awkwardly_split_valid_ndjson_with_thinking() {
    let fake = FakeOllama::start().await;
    let resp = post(
        &fake,
        "/api/chat",
        json!({"model":"qwen3","messages":user("hi there")}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.content_type(), "application/x-ndjson");
    let (frames, err) = resp.frames().await;
    assert!(err.is_none());
    let text = String::from_utf8(frames.concat()).unwrap();

    // Frames follow the awkward size cycle, so most of them cut lines in the middle.
    let sizes: Vec<usize> = frames.iter().map(Bytes::len).collect();
    assert_eq!(sizes[..4], AWKWARD_FRAME_SIZES[..4], "sizes {sizes:?}");
    assert!(frames.iter().any(|f| !f.ends_with(b"\n")));

    // Exact field order on the wire.
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            r#"{{"model":"qwen3","created_at":"{CREATED_AT}","message":{{"role":"assistant","content":"","thinking":"Let me think"}},"done":false}}"#
        )
    );

    let lines = ndjson(&text);
    assert_eq!(
        concat(&lines, "/message/thinking"),
        "Let me think about this."
    );
    assert_eq!(
        concat(&lines, "/message/content"),
        "Hello! You said: hi there"
    );
    // One word per content line.
    let words: Vec<&str> = lines[3..lines.len() - 1]
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(words, ["Hello!", " You", " said:", " hi", " there"]);
    let done = lines.last().unwrap();
    assert_eq!(done["done"], true);
    assert_eq!(done["done_reason"], "stop");
    assert_eq!(done["eval_count"], 8);
    assert_eq!(done["prompt_eval_count"], 2);
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));
    assert!(done.get("done_reason").is_some() && lines[0].get("done_reason").is_none());

    let recorded = fake.last_request().unwrap();
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.path, "/api/chat");
    assert_eq!(recorded.body["model"], "qwen3");
    assert_eq!(fake.completed(), 1);
    assert_eq!(fake.cancelled(), 0);
    assert_eq!(fake.in_flight(), 0);
}

#[tokio::test]
async fn chunking_header_lines_whole_and_bytes() {
    let fake = FakeOllama::start().await;
    let body = json!({"model":"llama3.2","messages":user("a b")}).to_string();

    let resp = send(
        &fake,
        "POST",
        "/api/chat",
        &[("x-fake-chunking", "lines")],
        &body,
    )
    .await;
    let (frames, _) = resp.frames().await;
    assert!(frames
        .iter()
        .all(|f| f.ends_with(b"\n") && f.iter().filter(|b| **b == b'\n').count() == 1));
    let by_lines = frames.concat();
    // llama3.2 does not think: "Hello!", " You", " said:", " a", " b" + done.
    assert_eq!(frames.len(), 6);

    let resp = send(
        &fake,
        "POST",
        "/api/chat",
        &[("x-fake-chunking", "whole")],
        &body,
    )
    .await;
    let (frames, _) = resp.frames().await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0], by_lines);

    let resp = send(
        &fake,
        "POST",
        "/api/chat",
        &[("x-fake-chunking", "bytes")],
        &body,
    )
    .await;
    let (frames, _) = resp.frames().await;
    assert!(frames.iter().all(|f| f.len() == 1));
    assert_eq!(frames.concat(), by_lines);
}

#[tokio::test]
async fn stream_false_aggregates() {
    let fake = FakeOllama::start().await;
    let resp = post(
        &fake,
        "/api/chat",
        json!({"model":"qwen3:8b","stream":false,"messages":user("yo")}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.content_type(), "application/json; charset=utf-8");
    let text = resp.text().await;
    assert!(!text.ends_with('\n'));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["model"], "qwen3:8b");
    assert_eq!(v["message"]["content"], "Hello! You said: yo");
    assert_eq!(v["message"]["thinking"], "Let me think about this.");
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "stop");

    // think:false on qwen3 switches thinking off.
    let v = post(
        &fake,
        "/api/chat",
        json!({"model":"QWEN3:latest","stream":false,"think":false,"messages":user("yo")}),
    )
    .await
    .json()
    .await;
    assert!(v["message"].get("thinking").is_none());
}

#[tokio::test]
async fn tool_calls_rendered_and_on_done_line() {
    let fake = FakeOllama::start().await;
    let lines = ndjson(
        &post(
            &fake,
            "/api/chat",
            json!({"model":"llama3.2","tools":weather_tool(),
                   "messages":user("weather in two cities please [preamble]")}),
        )
        .await
        .text()
        .await,
    );
    assert_eq!(lines[0]["message"]["content"], "Let me check.");
    let calls = lines[1]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(lines[1]["message"]["content"], "");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["function"]["index"], 0);
    assert_eq!(calls[1]["function"]["index"], 1);
    assert_eq!(calls[0]["function"]["arguments"], json!({"city":"Tokyo"}));
    assert_eq!(calls[1]["function"]["arguments"], json!({"city":"Paris"}));
    assert!(is_call_id(calls[0]["id"].as_str().unwrap()));
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    assert_eq!(lines[2]["done"], true);
    assert_eq!(lines[2]["done_reason"], "stop");
    assert!(lines[2]["message"].get("tool_calls").is_none());

    // gpt-oss: always thinks (even with think:false), the call comes on the done line.
    let lines = ndjson(
        &post(
            &fake,
            "/api/chat",
            json!({"model":"gpt-oss:20b","think":false,"tools":weather_tool(),
                   "messages":user("what's the weather?")}),
        )
        .await
        .text()
        .await,
    );
    assert_eq!(lines.len(), 4);
    assert_eq!(
        concat(&lines, "/message/thinking"),
        "Let me think about this."
    );
    let done = &lines[3];
    assert_eq!(done["done"], true);
    let call = &done["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["index"], 0);

    // Non-streaming carries the calls too.
    let v = post(
        &fake,
        "/api/chat",
        json!({"model":"glm-5:cloud","stream":false,"tools":weather_tool(),
               "messages":user("weather?")}),
    )
    .await
    .json()
    .await;
    assert_eq!(
        v["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    // glm-5 does not think unless asked.
    assert!(v["message"].get("thinking").is_none());

    // A follow-up after the tool result answers from it.
    let v = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","stream":false,"tools":weather_tool(),"messages":[
            {"role":"user","content":"weather?"},
            {"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Tokyo"}}}]},
            {"role":"tool","content":"sunny","tool_name":"get_weather"}]}),
    )
    .await
    .json()
    .await;
    assert_eq!(v["message"]["content"], "Tool said: sunny");
}

#[tokio::test]
async fn errors_have_ollama_statuses_and_bodies() {
    let fake = FakeOllama::start().await;
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (json!({"model":"nosuch","messages":user("x")}), StatusCode::NOT_FOUND, "model 'nosuch' not found"),
        (json!({"messages":user("x")}), StatusCode::BAD_REQUEST, "model is required"),
        (json!({"model":"llama3.2","think":true,"messages":user("x")}), StatusCode::BAD_REQUEST, "\"llama3.2\" does not support thinking"),
        (json!({"model":"nomic-embed-text","messages":user("x")}), StatusCode::BAD_REQUEST, "\"nomic-embed-text\" does not support chat"),
        (json!({"model":"qwen3","think":"x","messages":user("x")}), StatusCode::BAD_REQUEST,
            "invalid think value: \"x\" (must be \"high\", \"medium\", \"low\", \"max\", true, or false)"),
        (json!({"model":"qwen3","messages":[{"role":"user","content":"x","images":["data:image/png;base64,AAAA"]}]}),
            StatusCode::BAD_REQUEST, "illegal base64 data at input byte 4"),
        (json!({"model":"qwen3","options":{"temperature":"hot"},"messages":user("x")}),
            StatusCode::INTERNAL_SERVER_ERROR, "option \"temperature\" must be of type float32"),
        (json!({"model":"hf.co/acme/tiny:Q4","tools":weather_tool(),"messages":user("x")}),
            StatusCode::BAD_REQUEST, "hf.co/acme/tiny:Q4 does not support tools"),
        (json!({"model":"busy","messages":user("x")}), StatusCode::SERVICE_UNAVAILABLE,
            common::fake_ollama::SERVER_BUSY),
        (json!({"model":"broken","stream":false,"messages":user("x")}), StatusCode::INTERNAL_SERVER_ERROR,
            common::fake_ollama::RUNNER_FAILED),
    ];
    for (body, status, message) in cases {
        let resp = post(&fake, "/api/chat", body.clone()).await;
        assert_eq!(resp.status, status, "{body}");
        assert_eq!(resp.content_type(), "application/json; charset=utf-8");
        assert_eq!(resp.json().await, json!({ "error": message }), "{body}");
    }

    // A string `arguments` is a Go decode error.
    let v = post(
        &fake,
        "/api/chat",
        json!({"model":"qwen3","messages":[{"role":"assistant","content":"","tool_calls":[
            {"function":{"name":"f","arguments":"{\"a\":1}"}}]}]}),
    )
    .await;
    assert_eq!(v.status, StatusCode::BAD_REQUEST);
    let msg = v.json().await["error"].as_str().unwrap().to_string();
    assert!(
        msg.starts_with("json: cannot unmarshal string into Go struct field"),
        "{msg}"
    );

    // Invalid JSON.
    let resp = send(&fake, "POST", "/api/chat", &[], "{nope").await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert!(resp.json().await["error"].is_string());

    // Non-local Host ⇒ 403 with an empty body (and the request is still recorded).
    let before = fake.requests().len();
    let resp = send(
        &fake,
        "GET",
        "/api/tags",
        &[("host", "api.example.com")],
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.text().await, "");
    assert_eq!(fake.requests().len(), before + 1);
    for host in ["localhost:11434", "127.0.0.1", "[::1]:11434"] {
        let resp = send(&fake, "GET", "/api/version", &[("host", host)], "").await;
        assert_eq!(resp.status, StatusCode::OK, "{host}");
    }

    // gin-style plain-text 404 / 405.
    let resp = send(&fake, "POST", "/v1/messages/count_tokens", &[], "{}").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(resp.content_type().starts_with("text/plain"));
    assert_eq!(resp.text().await, "404 page not found");
    let resp = send(&fake, "GET", "/api/chat", &[], "").await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.text().await, "405 method not allowed");
}

#[tokio::test]
async fn midstream_error_drop_and_garbage() {
    let fake = FakeOllama::start().await;

    let text = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("go [error]")}),
    )
    .await
    .text()
    .await;
    let lines = ndjson(&text);
    assert_eq!(concat(&lines, "/message/content"), "Partial answer");
    assert_eq!(lines.last().unwrap(), &json!({ "error": RUNNER_STOPPED }));
    assert!(lines.iter().all(|l| l.get("done") != Some(&json!(true))));

    let resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","stream":false,"messages":user("go [error]")}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(resp.json().await["error"], RUNNER_STOPPED);

    // [drop]: complete lines, half a line, then the connection breaks.
    let (frames, err) = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("go [drop]")}),
    )
    .await
    .frames()
    .await;
    assert!(err.is_some(), "the body must end with an error");
    let text = String::from_utf8(frames.concat()).unwrap();
    let (complete, partial) = text.rsplit_once('\n').unwrap();
    assert_eq!(
        concat(&ndjson(&format!("{complete}\n")), "/message/content"),
        "Partial answer"
    );
    assert!(!partial.is_empty() && serde_json::from_str::<Value>(partial).is_err());

    let (_, err) = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","stream":false,"messages":user("go [drop]")}),
    )
    .await
    .frames()
    .await;
    assert!(err.is_some());

    let text = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("[garbage]")}),
    )
    .await
    .text()
    .await;
    let raw: Vec<&str> = text.lines().collect();
    assert_eq!(raw.len(), 3);
    assert_eq!(raw[1], "this is not json");
    assert_eq!(serde_json::from_str::<Value>(raw[2]).unwrap()["done"], true);
}

#[tokio::test]
async fn length_num_predict_num_ctx_and_json() {
    let fake = FakeOllama::start().await;
    let lines = ndjson(
        &post(
            &fake,
            "/api/chat",
            json!({"model":"qwen3","options":{"num_predict":4,"num_ctx":3},
                   "messages":user("a fairly long message to exceed the tiny context")}),
        )
        .await
        .text()
        .await,
    );
    assert_eq!(lines.len(), 5);
    let done = lines.last().unwrap();
    assert_eq!(done["done_reason"], "length");
    assert_eq!(done["eval_count"], 4);
    assert_eq!(done["prompt_eval_count"], 3);
    assert_eq!(concat(&lines, "/message/content"), "Hello!");

    let v = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","stream":false,"messages":user("[length]")}),
    )
    .await
    .json()
    .await;
    assert_eq!(v["done_reason"], "length");

    let v = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","stream":false,"format":{"type":"object"},"messages":user("x")}),
    )
    .await
    .json()
    .await;
    assert_eq!(v["message"]["content"], r#"{"ok":true}"#);
}

#[tokio::test]
async fn slow_stream_cancellation_is_counted() {
    let fake = FakeOllama::start().await;
    let mut resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("[slow]")}),
    )
    .await;
    // Read a few lines, then go away.
    let mut got = Vec::new();
    while got.iter().filter(|b| **b == b'\n').count() < 3 {
        let frame = resp.body.frame().await.unwrap().unwrap();
        got.extend_from_slice(&frame.into_data().unwrap());
    }
    assert!(String::from_utf8(got).unwrap().contains("tok0 "));
    assert_eq!(fake.in_flight(), 1);
    resp.hang_up();
    assert!(fake.wait_idle(Duration::from_secs(2)).await);
    assert_eq!(fake.cancelled(), 1);
    assert_eq!(fake.completed(), 0);
}

#[tokio::test]
async fn stall_cancellation_is_noticed_quickly() {
    let fake = FakeOllama::start().await;
    let mut resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("[stall]")}),
    )
    .await;
    let frame = resp.body.frame().await.unwrap().unwrap();
    let line: Value = serde_json::from_slice(frame.data_ref().unwrap()).unwrap();
    assert_eq!(line["message"]["content"], "Waiting");
    // Nothing else comes.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), resp.body.frame())
            .await
            .is_err()
    );
    let started = std::time::Instant::now();
    resp.hang_up();
    assert!(fake.wait_idle(Duration::from_secs(2)).await);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(fake.cancelled(), 1);

    // Non-streaming stall: the response never comes; hanging up is counted as well.
    let fake = FakeOllama::start().await;
    let stream = TcpStream::connect(fake.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::post("/api/chat")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(
            json!({"model":"llama3.2","stream":false,"messages":user("[stall]")}).to_string(),
        )))
        .unwrap();
    let pending = tokio::spawn(async move { sender.send_request(req).await });
    assert!(
        fake.wait_until(Duration::from_secs(2), |f| f.in_flight() == 1)
            .await
    );
    pending.abort();
    conn.abort();
    assert!(fake.wait_idle(Duration::from_secs(2)).await);
    assert_eq!(fake.cancelled(), 1);
}

#[tokio::test]
async fn other_endpoints() {
    let fake = FakeOllama::start().await;

    let resp = send(&fake, "GET", "/", &[], "").await;
    assert_eq!(resp.content_type(), "text/plain; charset=utf-8");
    assert_eq!(resp.text().await, "Ollama is running");
    let resp = send(&fake, "HEAD", "/", &[], "").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.text().await, "");
    let v = send(&fake, "GET", "/api/version", &[], "")
        .await
        .json()
        .await;
    assert_eq!(v, json!({"version":"0.33.0"}));

    let v = send(&fake, "GET", "/api/tags", &[], "").await.json().await;
    let names: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"qwen3:latest") && names.contains(&"hf.co/acme/tiny:Q4"));

    let v = post(&fake, "/api/show", json!({"model":"qwen3"}))
        .await
        .json()
        .await;
    assert_eq!(v["model_info"]["qwen3.context_length"], 40960);
    assert_eq!(
        v["capabilities"],
        json!(["completion", "tools", "thinking"])
    );
    let resp = post(&fake, "/api/show", json!({"model":"x"})).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = post(&fake, "/api/show", json!({})).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);

    // Embeddings: deterministic, normalised, sized by `dimensions`.
    let v = post(
        &fake,
        "/api/embed",
        json!({"model":"nomic-embed-text","input":["hello","world!"],"dimensions":4}),
    )
    .await
    .json()
    .await;
    let vectors = v["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    let first: Vec<f64> = vectors[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(first.len(), 4);
    assert!((first.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-5);
    assert_eq!(v["prompt_eval_count"], 3);
    let again = post(
        &fake,
        "/api/embed",
        json!({"model":"nomic-embed-text","input":"hello","dimensions":4}),
    )
    .await
    .json()
    .await;
    assert_eq!(again["embeddings"][0], vectors[0]);
    let resp = post(
        &fake,
        "/api/embed",
        json!({"model":"nomic-embed-text","input":[]}),
    )
    .await;
    assert_eq!(resp.json().await["error"], "invalid input");
    let resp = post(
        &fake,
        "/api/embed",
        json!({"model":"nomic-embed-text","input":[1]}),
    )
    .await;
    assert_eq!(resp.json().await["error"], "invalid input type");
    let resp = post(&fake, "/api/embed", json!({"model":"qwen3","input":"x"})).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);

    // /api/generate.
    let lines = ndjson(
        &post(
            &fake,
            "/api/generate",
            json!({"model":"llama3.2","prompt":"Why is the sky blue?"}),
        )
        .await
        .text()
        .await,
    );
    assert_eq!(
        concat(&lines, "/response"),
        "Completion of: Why is the sky blue?"
    );
    assert_eq!(lines.last().unwrap()["context"], json!([1, 2, 3]));
    let v = post(
        &fake,
        "/api/generate",
        json!({"model":"llama3.2","prompt":"def f(","suffix":"return 1","stream":false}),
    )
    .await
    .json()
    .await;
    assert_eq!(v["response"], "<FILL>");
}

#[tokio::test]
async fn scripted_calls_name_any_tool() {
    let fake = FakeOllama::start().await;
    let tools =
        json!([{"type":"function","function":{"name":"Bash","parameters":{"type":"object"}}}]);
    let lines = ndjson(
        &post(
            &fake,
            "/api/chat",
            json!({"model":"qwen3","think":false,"tools":tools,
                   "messages":user(r#"please run [call:Bash:{"command":"ls -la","description":"list"}] now"#)}),
        )
        .await
        .text()
        .await,
    );
    let calls = lines[0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function"]["name"], "Bash");
    assert_eq!(
        calls[0]["function"]["arguments"],
        json!({"command":"ls -la","description":"list"})
    );
    assert!(is_call_id(calls[0]["id"].as_str().unwrap()));
    assert_eq!(lines.last().unwrap()["done"], true);
    // Without tools the text is just echoed.
    let lines = ndjson(
        &post(
            &fake,
            "/api/chat",
            json!({"model":"llama3.2","messages":user(r#"[call:Bash:{"command":"ls"}]"#)}),
        )
        .await
        .text()
        .await,
    );
    assert!(concat(&lines, "/message/content").starts_with("Hello! You said:"));
}

fn search_tools() -> Value {
    json!([{"type":"function","function":{"name":"web_search","parameters":{"type":"object"}}},
           {"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}])
}

/// The calls (name, arguments, index) of a streamed answer, and the lines.
async fn calls_of(fake: &FakeOllama, body: Value) -> (Vec<(String, Value, u64)>, Vec<Value>) {
    let lines = ndjson(&post(fake, "/api/chat", body).await.text().await);
    let calls = lines
        .iter()
        .filter_map(|l| l["message"]["tool_calls"].as_array())
        .flatten()
        .map(|c| {
            assert!(is_call_id(c["id"].as_str().unwrap()));
            (
                c["function"]["name"].as_str().unwrap().to_string(),
                c["function"]["arguments"].clone(),
                c["function"]["index"].as_u64().unwrap(),
            )
        })
        .collect();
    (calls, lines)
}

#[tokio::test]
async fn scripted_searches_call_web_search() {
    let fake = FakeOllama::start().await;
    let chat = |model: &str, messages: Value| json!({"model": model, "think": false, "tools": search_tools(), "messages": messages});
    let web = |q: &str| ("web_search".to_string(), json!({ "query": q }));

    // One search, after a preamble.
    let (calls, lines) = calls_of(
        &fake,
        chat("llama3.2", user("[preamble] [search:rust tower]")),
    )
    .await;
    assert_eq!(lines[0]["message"]["content"], "Let me search.");
    let (name, args, _) = &calls[0];
    assert_eq!((name.clone(), args.clone()), web("rust tower"));
    assert_eq!(calls.len(), 1);

    // Several searches, and a client call: all in one chunk, in that order.
    let text = r#"[search:one] [search:two] [call:get_weather:{"city":"Oslo"}]"#;
    let (calls, lines) = calls_of(&fake, chat("llama3.2", user(text))).await;
    let with_calls: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"].get("tool_calls").is_some())
        .collect();
    assert_eq!(with_calls.len(), 1, "one chunk");
    let want = [
        ("web_search".to_string(), json!({"query": "one"}), 0),
        ("web_search".to_string(), json!({"query": "two"}), 1),
        ("get_weather".to_string(), json!({"city": "Oslo"}), 2),
    ];
    assert_eq!(calls, want);

    // Harmony: on the done line, every index 0.
    let (calls, lines) = calls_of(&fake, chat("gpt-oss:20b", user(text))).await;
    let done = lines.last().unwrap();
    assert_eq!(done["done"], true);
    assert_eq!(done["message"]["tool_calls"].as_array().unwrap().len(), 3);
    assert!(calls.iter().all(|(_, _, i)| *i == 0), "{calls:?}");

    // After its results, the model answers from them.
    let after = json!([
        {"role": "user", "content": "[search:rust tower]"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "web_search", "arguments": {"query": "rust tower"}}}]},
        {"role": "tool", "content": "results", "tool_name": "web_search"},
    ]);
    let (calls, lines) = calls_of(&fake, chat("llama3.2", after)).await;
    assert!(calls.is_empty());
    assert_eq!(concat(&lines, "/message/content"), "Tool said: results");

    // `[searches:N:Q]`: one a round until N results are in.
    for done in 0..3 {
        let mut messages = vec![json!({"role": "user", "content": "[searches:2:axum]"})];
        for _ in 0..done {
            messages.push(json!({"role": "tool", "content": "r", "tool_name": "web_search"}));
        }
        let (calls, lines) = calls_of(&fake, chat("llama3.2", json!(messages))).await;
        if done < 2 {
            let (name, args, _) = &calls[0];
            let q = format!("axum {}", done + 1);
            assert_eq!((name.clone(), args.clone()), web(&q));
        } else {
            assert!(calls.is_empty());
            assert_eq!(concat(&lines, "/message/content"), "Tool said: r");
        }
    }

    // Claude Code's WebSearch sub-request.
    let (calls, _) = calls_of(
        &fake,
        chat(
            "llama3.2",
            user("Perform a web search for the query: tokio 2\nThanks"),
        ),
    )
    .await;
    let (name, args, _) = &calls[0];
    assert_eq!((name.clone(), args.clone()), web("tokio 2"));

    // No web_search function offered: no search.
    let (calls, lines) = calls_of(
        &fake,
        json!({"model": "llama3.2", "tools": weather_tool(), "messages": user("[search:x]")}),
    )
    .await;
    assert!(calls.is_empty());
    assert_eq!(
        concat(&lines, "/message/content"),
        "Hello! You said: [search:x]"
    );
}

#[tokio::test]
async fn web_search_endpoint_is_scripted_by_the_query() {
    let fake = FakeOllama::start().await;
    let path = "/api/experimental/web_search";
    let res = post(
        &fake,
        path,
        json!({"query": "Rust Tower", "max_results": 5}),
    )
    .await;
    assert_eq!(res.status, 200);
    let v = res.json().await;
    let urls: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            "https://site1.example/rust-tower",
            "https://blocked.example/rust-tower",
            "https://docs.rs/rust-tower"
        ]
    );
    assert_eq!(v["results"][2]["title"], "Docs on Rust Tower");
    assert_eq!(
        v["results"][2]["content"],
        "Docs says: Rust Tower is well documented."
    );
    let v = post(&fake, path, json!({"query": "q", "max_results": 2}))
        .await
        .json()
        .await;
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    let v = post(&fake, path, json!({"query": "nothing here"}))
        .await
        .json()
        .await;
    assert_eq!(v, json!({"results": []}));

    for (query, status) in [("unavailable", 500), ("ratelimited", 429)] {
        let res = post(&fake, path, json!({ "query": query })).await;
        assert_eq!(res.status, status, "{query}");
        assert!(res.json().await["error"].is_string(), "{query}");
    }
    let res = post(&fake, path, json!({"query": "unsupported"})).await;
    assert_eq!(res.status, 404);
    assert_eq!(res.content_type(), "text/plain");
    assert_eq!(res.text().await, "404 page not found");

    // A host that cannot search.
    fake.set_no_search(true);
    let res = post(&fake, path, json!({"query": "q"})).await;
    assert_eq!(res.status, 404);
    fake.set_no_search(false);
    assert_eq!(post(&fake, path, json!({"query": "q"})).await.status, 200);
    assert_eq!(fake.requests_to(path).len(), 8);
    assert_eq!(
        fake.requests_to(path)[0].body,
        json!({"query": "Rust Tower", "max_results": 5})
    );
}

#[tokio::test]
async fn scripted_loads_search_then_call_the_tool_found() {
    let fake = FakeOllama::start().await;
    let tool = |name: &str| json!({"type":"function","function":{"name":name,"parameters":{"type":"object"}}});
    let ask = json!({"role":"user","content":r#"list them [load:CronList:{"all":true}]"#});
    let chat = |tools: Value, messages: Value| {
        let fake = &fake;
        async move {
            let body = json!({"model":"qwen3","think":false,"stream":false,"tools":tools,"messages":messages});
            post(fake, "/api/chat", body).await.json().await["message"].clone()
        }
    };
    let call_of = |m: &Value| {
        let f = &m["tool_calls"][0]["function"];
        (
            f["name"].as_str().unwrap().to_string(),
            f["arguments"].clone(),
        )
    };

    // 1. The search tool first.
    let m = chat(json!([tool("Bash"), tool("ToolSearch")]), json!([ask])).await;
    assert_eq!(
        call_of(&m),
        ("ToolSearch".into(), json!({"query":"select:CronList"}))
    );

    // 2. After the search answered (and a later plain user message): the tool found…
    let searched = json!({"role":"assistant","content":"","tool_calls":[
        {"function":{"name":"ToolSearch","arguments":{"query":"select:CronList"}}}]});
    let found = json!({"role":"tool","content":"Tool \"CronList\" is now available."});
    let loaded = json!({"role":"user","content":"Tool loaded."});
    let m = chat(
        json!([tool("ToolSearch"), tool("CronList")]),
        json!([ask, searched, found, loaded]),
    )
    .await;
    assert_eq!(call_of(&m), ("CronList".into(), json!({"all":true})));
    // …unless it is still not offered, or the search result does not name it.
    let m = chat(
        json!([tool("tool_search")]),
        json!([ask, {"role":"assistant","content":"",
        "tool_calls":[{"function":{"name":"tool_search","arguments":{}}}]}, found]),
    )
    .await;
    assert_eq!(m["content"], "CronList is not offered");
    let m = chat(
        json!([tool("ToolSearch"), tool("CronList")]),
        json!([ask, searched, {"role":"tool","content":""}, loaded]),
    )
    .await;
    assert_eq!(m["content"], "The search result does not name CronList");

    // 3. After the tool answered: its result.
    let called = json!({"role":"assistant","content":"","tool_calls":[
        {"function":{"name":"CronList","arguments":{"all":true}}}]});
    let m = chat(
        json!([tool("ToolSearch"), tool("CronList")]),
        json!([ask, searched, found, loaded, called, {"role":"tool","content":"No jobs"}]),
    )
    .await;
    assert_eq!(m["content"], "Tool said: No jobs");

    // Without a search tool the keyword is just text.
    let m = chat(json!([tool("Bash")]), json!([ask])).await;
    assert!(m["content"]
        .as_str()
        .unwrap()
        .starts_with("Hello! You said:"));
}

// ---------------------------------------------------------------------------------------------
// Several hosts: per-instance models, loaded models, faults, stop/restart
// ---------------------------------------------------------------------------------------------

fn config(models: Option<&[&str]>, loaded: &[&str]) -> FakeConfig {
    FakeConfig {
        models: models.map(|ms| ms.iter().map(|m| m.to_string()).collect()),
        loaded: loaded.iter().map(|m| m.to_string()).collect(),
    }
}

async fn tag_names(fake: &FakeOllama) -> Vec<String> {
    let v = send(fake, "GET", "/api/tags", &[], "").await.json().await;
    v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

async fn ps(fake: &FakeOllama) -> Value {
    send(fake, "GET", "/api/ps", &[], "").await.json().await
}

fn ps_names(v: &Value) -> Vec<String> {
    v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn subset_instance_has_only_its_models() {
    // Two hosts in one runtime, each with its own catalogue.
    let small = FakeOllama::start_with(config(Some(&["llama3.2", "qwen3:8b"]), &[])).await;
    let full = FakeOllama::start().await;

    assert_eq!(tag_names(&small).await, ["qwen3:latest", "llama3.2:latest"]);
    assert!(tag_names(&full).await.contains(&"gpt-oss:20b".to_string()));

    // Another catalogue model is unknown here, exactly as an unknown model.
    let not_found = json!({"error":"model 'gpt-oss:20b' not found"});
    for (path, body) in [
        ("/api/show", json!({"model":"gpt-oss:20b"})),
        (
            "/api/chat",
            json!({"model":"gpt-oss:20b","messages":user("hi")}),
        ),
        (
            "/api/generate",
            json!({"model":"gpt-oss:20b","prompt":"hi"}),
        ),
        ("/api/embed", json!({"model":"gpt-oss:20b","input":"hi"})),
    ] {
        let resp = post(&small, path, body).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(resp.json().await, not_found, "{path}");
    }
    let resp = post(
        &small,
        "/api/embed",
        json!({"model":"nomic-embed-text","input":"hi"}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);

    // Its own models answer, under any spelling.
    let resp = post(&small, "/api/show", json!({"model":"qwen3"})).await;
    assert_eq!(resp.status, StatusCode::OK);
    let resp = post(
        &small,
        "/api/chat",
        json!({"model":"qwen3:8b","think":false,"stream":false,"messages":user("hi")}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.json().await["message"]["content"],
        "Hello! You said: hi"
    );
    let resp = post(&full, "/api/show", json!({"model":"gpt-oss:20b"})).await;
    assert_eq!(resp.status, StatusCode::OK);

    // Only the accepted generation counts; requests are counted per model, aliases included.
    assert_eq!(small.generations(), 1);
    assert_eq!(full.generations(), 0);
    assert_eq!(small.requests_for_model("qwen3"), 1);
    assert_eq!(small.requests_for_model("QWEN3:latest"), 1);
    assert_eq!(small.requests_for_model("gpt-oss:20b"), 2);
    assert_eq!(small.requests_for_model("llama3.2"), 0);
}

#[tokio::test]
async fn ps_lists_loaded_models_and_first_use_loads() {
    let fake = FakeOllama::start_with(config(None, &["qwen3:8b"])).await;
    assert_eq!(fake.loaded(), ["qwen3:latest"]);

    let v = ps(&fake).await;
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    let m = models[0].as_object().unwrap();
    let keys: Vec<&str> = m.keys().map(String::as_str).collect();
    let mut want = [
        "name",
        "model",
        "size",
        "digest",
        "details",
        "expires_at",
        "size_vram",
        "context_length",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(m["name"], "qwen3:latest");
    assert_eq!(m["model"], "qwen3:latest");
    assert_eq!(m["size"], 5_225_388_164u64);
    assert_eq!(m["size_vram"], m["size"]);
    assert_eq!(m["expires_at"], EXPIRES_AT);
    assert_eq!(m["context_length"], 40960);
    assert_eq!(m["details"]["family"], "qwen3");
    let tags = send(&fake, "GET", "/api/tags", &[], "").await.json().await;
    let tag = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "qwen3:latest")
        .unwrap()
        .clone();
    assert_eq!(m["digest"], tag["digest"]);
    assert_eq!(m["details"], tag["details"]);

    // A rejected request loads nothing; a generation loads its model (most recent first).
    let resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","think":true,"messages":user("hi")}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(ps_names(&ps(&fake).await), ["qwen3:latest"]);
    let text = post(
        &fake,
        "/api/generate",
        json!({"model":"llama3.2","prompt":"hi"}),
    )
    .await
    .text()
    .await;
    assert!(text.contains("\"done\":true"));
    assert_eq!(
        ps_names(&ps(&fake).await),
        ["llama3.2:latest", "qwen3:latest"]
    );
    assert_eq!(fake.loaded(), ["llama3.2:latest", "qwen3:latest"]);

    // Embeddings load too; a load request with keep_alive 0 unloads.
    let resp = post(
        &fake,
        "/api/embed",
        json!({"model":"nomic-embed-text","input":"x"}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(fake.loaded()[0], "nomic-embed-text:latest");
    let v = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":[],"keep_alive":0}),
    )
    .await
    .json()
    .await;
    assert_eq!(v["done_reason"], "unload");
    assert_eq!(fake.loaded(), ["nomic-embed-text:latest", "qwen3:latest"]);
    // A load request is not a generation.
    assert_eq!(fake.generations(), 1);

    fake.set_loaded(&["gpt-oss:20b", "llama3.2"]);
    assert_eq!(
        ps_names(&ps(&fake).await),
        ["gpt-oss:20b", "llama3.2:latest"]
    );
    fake.set_loaded(&[]);
    assert_eq!(ps(&fake).await, json!({"models":[]}));
}

#[tokio::test]
async fn busy_host_answers_503_then_recovers() {
    let fake = FakeOllama::start().await;
    fake.set_busy(true);
    let want = format!("{{\"error\":{}}}", Value::from(SERVER_BUSY));
    for (path, body) in [
        (
            "/api/chat",
            json!({"model":"llama3.2","messages":user("hi")}),
        ),
        ("/api/generate", json!({"model":"llama3.2","prompt":"hi"})),
        (
            "/api/embed",
            json!({"model":"nomic-embed-text","input":"hi"}),
        ),
        ("/api/show", json!({"model":"llama3.2"})),
        // Even an invalid request: busy comes first.
        ("/api/chat", json!({"model":"nope","messages":user("hi")})),
    ] {
        let resp = post(&fake, path, body).await;
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(resp.text().await, want, "{path}");
    }
    // Recorded all the same, but nothing generated or loaded.
    assert_eq!(fake.requests().len(), 5);
    assert_eq!(fake.generations(), 0);
    assert!(fake.loaded().is_empty());
    // Listing endpoints still answer.
    assert_eq!(
        send(&fake, "GET", "/api/tags", &[], "").await.status,
        StatusCode::OK
    );

    fake.set_busy(false);
    let resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","stream":false,"messages":user("hi")}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(fake.generations(), 1);
}

#[tokio::test]
async fn header_delay_holds_back_the_response_head() {
    let fake = FakeOllama::start().await;
    fake.set_header_delay(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("hi")}),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.text().await.contains("\"done\":true"));

    fake.set_header_delay(Duration::ZERO);
    let started = std::time::Instant::now();
    let _ = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("hi")}),
    )
    .await
    .text()
    .await;
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn die_mid_stream_cuts_streams_after_two_lines() {
    let fake = FakeOllama::start().await;
    fake.set_die_mid_stream(true);
    let (frames, err) = send(
        &fake,
        "POST",
        "/api/chat",
        &[("x-fake-chunking", "lines")],
        &json!({"model":"llama3.2","messages":user("one two three four")}).to_string(),
    )
    .await
    .frames()
    .await;
    assert!(err.is_some(), "the body must end with an error");
    let text = String::from_utf8(frames.concat()).unwrap();
    let (complete, partial) = text.rsplit_once('\n').unwrap();
    let lines = ndjson(&format!("{complete}\n"));
    assert_eq!(lines.len(), 2);
    assert_eq!(concat(&lines, "/message/content"), "Hello! You");
    assert!(lines.iter().all(|l| l["done"] == false));
    assert!(!partial.is_empty() && serde_json::from_str::<Value>(partial).is_err());

    // Thinking lines come first; a plan with fewer content lines is padded.
    let (frames, err) = post(
        &fake,
        "/api/generate",
        json!({"model":"qwen3","prompt":"[json]"}),
    )
    .await
    .frames()
    .await;
    assert!(err.is_some());
    let text = String::from_utf8(frames.concat()).unwrap();
    let (complete, _) = text.rsplit_once('\n').unwrap();
    let lines = ndjson(&format!("{complete}\n"));
    assert_eq!(lines.len(), 5);
    assert_eq!(concat(&lines, "/thinking"), "Let me think about this.");
    assert_eq!(concat(&lines, "/response"), r#"{"ok":true} answer"#);

    // Non-streaming requests are unaffected; clearing the fault restores streams.
    let resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","stream":false,"messages":user("hi")}),
    )
    .await;
    assert_eq!(resp.json().await["done"], true);
    fake.set_die_mid_stream(false);
    let lines = ndjson(
        &post(
            &fake,
            "/api/chat",
            json!({"model":"llama3.2","messages":user("one two three four")}),
        )
        .await
        .text()
        .await,
    );
    assert_eq!(lines.last().unwrap()["done"], true);
}

/// The requests `set_fail` and `set_garbage` answer, and one they do not.
fn model_runs() -> [(&'static str, Value); 3] {
    [
        (
            "/api/chat",
            json!({"model":"llama3.2","messages":user("hi")}),
        ),
        ("/api/generate", json!({"model":"llama3.2","prompt":"hi"})),
        (
            "/api/embed",
            json!({"model":"nomic-embed-text","input":"hi"}),
        ),
    ]
}

#[tokio::test]
async fn fail_answers_the_status_with_ollama_s_error_until_cleared() {
    let fake = FakeOllama::start().await;
    fake.set_fail(Some(500));
    let want = format!("{{\"error\":{}}}", Value::from(RUNNER_FAILED));
    for (path, body) in model_runs() {
        let resp = post(&fake, path, body).await;
        assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert!(
            resp.content_type().starts_with("application/json"),
            "{path}"
        );
        assert_eq!(resp.text().await, want, "{path}");
    }
    assert_eq!(fake.requests().len(), 3, "recorded all the same");
    assert_eq!(fake.generations(), 0);
    // Another status; listings and /api/show still answer.
    fake.set_fail(Some(502));
    let resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("hi")}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
    for (method, path, body) in [
        ("GET", "/api/tags", String::new()),
        ("GET", "/api/ps", String::new()),
        ("POST", "/api/show", json!({"model":"llama3.2"}).to_string()),
    ] {
        let resp = send(&fake, method, path, &[], &body).await;
        assert_eq!(resp.status, StatusCode::OK, "{path}");
    }
    fake.set_fail(None);
    let resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("hi")}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.text().await.contains("\"done\":true"));
    assert_eq!(fake.generations(), 1);
}

#[tokio::test]
async fn garbage_answers_a_page_that_is_not_ollama_s_until_cleared() {
    let fake = FakeOllama::start().await;
    fake.set_garbage(true);
    for (path, body) in model_runs() {
        let resp = post(&fake, path, body).await;
        assert_eq!(resp.status, StatusCode::OK, "{path}");
        assert_eq!(resp.content_type(), "text/html; charset=utf-8", "{path}");
        assert_eq!(resp.text().await, GARBAGE_PAGE, "{path}");
    }
    assert_eq!(fake.generations(), 0);
    let tags = send(&fake, "GET", "/api/tags", &[], "").await;
    assert_eq!(tags.status, StatusCode::OK);
    assert!(tags.json().await["models"].is_array());
    // With `set_fail`, the page comes with its status.
    fake.set_fail(Some(502));
    let resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("hi")}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
    assert_eq!(resp.content_type(), "text/html; charset=utf-8");
    assert_eq!(resp.text().await, GARBAGE_PAGE);
    fake.set_fail(None);
    fake.set_garbage(false);
    let resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("hi")}),
    )
    .await;
    assert_eq!(resp.content_type(), "application/x-ndjson");
    assert!(resp.text().await.contains("\"done\":true"));
}

#[tokio::test]
async fn silent_after_headers_sends_a_head_then_nothing() {
    assert!(STALL_DURATION >= Duration::from_secs(60));
    let fake = FakeOllama::start().await;
    fake.set_silent_after_headers(true);
    for (stream, content_type) in [(true, "application/x-ndjson"), (false, "application/json")] {
        let started = std::time::Instant::now();
        let mut resp = post(
            &fake,
            "/api/chat",
            json!({"model":"llama3.2","stream":stream,"messages":user("hi")}),
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the head comes at once"
        );
        assert_eq!(resp.status, StatusCode::OK);
        assert!(resp.content_type().starts_with(content_type), "{stream}");
        let next = tokio::time::timeout(Duration::from_millis(300), resp.body.frame()).await;
        assert!(next.is_err(), "no byte follows");
        assert_eq!(fake.in_flight(), 1);
        // The client goes away: the generation is cancelled.
        resp.hang_up();
        assert!(fake.wait_idle(Duration::from_secs(5)).await);
    }
    assert_eq!(fake.cancelled(), 2);
    fake.set_silent_after_headers(false);
    let resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("hi")}),
    )
    .await;
    assert!(resp.text().await.contains("\"done\":true"));
    assert_eq!(fake.completed(), 1);
}

/// Sends a request and reads the whole body; returns the time taken.
async fn timed(fake: &FakeOllama, path: &str, body: Value) -> Duration {
    let started = std::time::Instant::now();
    let resp = post(fake, path, body).await;
    assert_eq!(resp.status, StatusCode::OK);
    let text = resp.text().await;
    assert!(text.contains("\"done\":true"), "{text}");
    started.elapsed()
}

#[tokio::test]
async fn prompt_cost_rewards_a_shared_prefix() {
    let fake = FakeOllama::start().await;
    fake.set_prompt_cost(Duration::from_millis(200));

    // 4 KiB uncached: 800 ms; the same prompt plus a few bytes: about 1 ms.
    let prompt = "a".repeat(4096);
    let first = timed(
        &fake,
        "/api/generate",
        json!({"model":"llama3.2","stream":false,"prompt":prompt}),
    )
    .await;
    let second = timed(
        &fake,
        "/api/generate",
        json!({"model":"llama3.2","stream":false,"prompt":format!("{prompt} more")}),
    )
    .await;
    assert!(first >= Duration::from_millis(700), "first took {first:?}");
    assert!(
        second < first / 2,
        "second took {second:?}, first {first:?}"
    );

    // Chat, streamed: the slot holds the generate prompt, so 1 KiB + "user" is uncached
    // (~200 ms); a follow-up turn extends that prompt and is cheap again.
    let question = "x".repeat(1024);
    let mut messages = vec![json!({"role":"user","content":question})];
    let cold = timed(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":messages}),
    )
    .await;
    assert!(
        cold >= Duration::from_millis(180),
        "cold chat took {cold:?}"
    );
    messages.push(json!({"role":"assistant","content":"Hello!"}));
    messages.push(json!({"role":"user","content":"and then?"}));
    let warm = timed(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":messages}),
    )
    .await;
    assert!(warm < cold / 2, "warm chat took {warm:?}, cold {cold:?}");

    // Slots are per model and per instance: qwen3 here, and the same prompt on another
    // instance, are cold.
    let other = FakeOllama::start().await;
    other.set_prompt_cost(Duration::from_millis(200));
    let elsewhere = timed(
        &other,
        "/api/generate",
        json!({"model":"llama3.2","stream":false,"prompt":"b".repeat(1024)}),
    )
    .await;
    assert!(elsewhere >= Duration::from_millis(180), "{elsewhere:?}");
}

#[tokio::test]
async fn stop_refuses_and_cuts_then_restart_serves_again() {
    let mut fake = FakeOllama::start_with(config(Some(&["llama3.2"]), &["llama3.2"])).await;
    let addr = fake.addr;
    let mut resp = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","messages":user("[slow]")}),
    )
    .await;
    let first = resp.body.frame().await.unwrap().unwrap();
    assert!(!first.into_data().unwrap().is_empty());

    fake.stop().await;
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    // The stream in flight is cut, well before its 40 s of tokens.
    let rest = tokio::time::timeout(Duration::from_secs(2), resp.frames())
        .await
        .expect("the stream must end when the fake stops");
    assert!(rest.1.is_some(), "a cut stream ends with an error");
    assert!(fake.wait_idle(Duration::from_secs(2)).await);
    assert_eq!(fake.cancelled(), 1);

    // Back on the same port, with the same state.
    fake.restart().await;
    assert_eq!(fake.addr, addr);
    assert_eq!(tag_names(&fake).await, ["llama3.2:latest"]);
    assert_eq!(fake.loaded(), ["llama3.2:latest"]);
    let v = post(
        &fake,
        "/api/chat",
        json!({"model":"llama3.2","stream":false,"messages":user("hi")}),
    )
    .await
    .json()
    .await;
    assert_eq!(v["message"]["content"], "Hello! You said: hi");
    assert_eq!(fake.generations(), 2);
    assert_eq!(fake.requests_for_model("llama3.2"), 2);

    // Dropping still stops it.
    drop(fake);
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused);
}
