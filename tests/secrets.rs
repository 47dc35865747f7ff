//! Secrets stay secret: `Debug` output hides the keys, and the API key the
//! layer checks is not handed on to the inner service.

mod common;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use ollama_translate::{BoxError, OllamaTranslateLayer, RequestBody};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use tower::{service_fn, Layer, ServiceExt};

const API_KEY: &str = "sk-proxy-Zq81xVb";
const THINKING_SECRET: &str = "thinking-secret-Pw93kT";
const OLLAMA_KEY: &str = "ollama-upstream-Hc47mN";

/// The ways a secret could show in `Debug` output: its text, and for the
/// thinking key the derived key's bytes (as a hex string and as the array
/// `Debug` prints).
fn forms_of_secrets() -> Vec<String> {
    let derived: [u8; 32] = Sha256::digest(THINKING_SECRET.as_bytes()).into();
    let hex: String = derived.iter().map(|b| format!("{b:02x}")).collect();
    let upper = hex.to_ascii_uppercase();
    let list = format!("{derived:?}");
    // The first bytes alone, in case of a different layout (`[1, 2, ...`).
    let head = list[..list.len().min(20)].to_string();
    vec![
        API_KEY.into(),
        THINKING_SECRET.into(),
        OLLAMA_KEY.into(),
        hex,
        upper,
        list,
        head,
    ]
}

fn assert_hides_secrets(what: &str, debug: &str) {
    for secret in forms_of_secrets() {
        assert!(
            !debug.contains(&secret),
            "{what} shows {secret:?}:\n{debug}"
        );
    }
}

fn configured_layer() -> OllamaTranslateLayer {
    OllamaTranslateLayer::new()
        .think_models(["glm-5:cloud"])
        .model_alias("gpt-4o", "qwen3:8b")
        .max_request_bytes(1_234_567)
        .thinking_key(THINKING_SECRET)
        .require_api_key(API_KEY)
}

#[derive(Debug)]
struct Inner;

#[test]
fn layer_and_service_debug_hide_the_keys() {
    let layer = configured_layer();
    let service = layer.clone().layer(Inner);
    for (what, debug) in [
        ("layer", format!("{layer:?}")),
        ("layer {:#?}", format!("{layer:#?}")),
        ("service", format!("{service:?}")),
        ("service {:#?}", format!("{service:#?}")),
    ] {
        assert_hides_secrets(what, &debug);
        // Everything else is still there.
        for shown in [
            "think_models",
            "glm-5:cloud",
            "gpt-4o",
            "qwen3:8b",
            "1234567",
            "keepalive",
            "thinking_key",
        ] {
            assert!(debug.contains(shown), "{what} lacks {shown:?}:\n{debug}");
        }
        assert!(debug.contains("<redacted>"), "{what}:\n{debug}");
    }
    assert!(format!("{service:?}").contains("Inner"));
    let compact = format!("{layer:?}");
    assert!(compact.contains("thinking_key: <redacted>"), "{compact}");
    assert!(compact.contains("api_key: Some(<redacted>)"), "{compact}");
    // Without an API key there is nothing to hide.
    let plain = format!("{:?}", OllamaTranslateLayer::new());
    assert!(plain.contains("api_key: None"), "{plain}");
}

#[test]
fn proxy_settings_debug_hides_the_keys() {
    let env = [
        ("PROXY_API_KEY", API_KEY),
        ("THINKING_KEY", THINKING_SECRET),
        ("OLLAMA_API_KEY", OLLAMA_KEY),
        ("OLLAMA_BASE_URL", "http://ollama.internal:11434"),
    ];
    // What `--check` prints: the settings, who may do what, the layer.
    let debug = common::child::check(&env).unwrap();
    assert_hides_secrets("settings", &debug);
    for shown in ["127.0.0.1:4000", "ollama.internal:11434", "shutdown_grace"] {
        assert!(debug.contains(shown), "settings lack {shown:?}:\n{debug}");
    }
    let compact = debug.replace(['\n', ' '], "").replace(",)", ")");
    assert!(
        compact.contains("ollama_api_key:Some(<redacted>)"),
        "{compact}"
    );
    assert!(
        compact.contains("proxy_api_key:Some(<redacted>)"),
        "{compact}"
    );
    assert!(compact.contains("api_key:Some(<redacted>)"), "{compact}");
    let plain = common::child::check(&[]).unwrap();
    assert!(plain.contains("ollama_api_key: None"), "{plain}");
    // In --help, the variables holding secrets show no value.
    let help = std::process::Command::new(common::child::proxy_binary())
        .arg("--help")
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    assert_hides_secrets("--help", &String::from_utf8_lossy(&help.stdout));
}

/// The Ollama client sends `OLLAMA_API_KEY` as a sensitive header.
#[test]
fn the_ollama_key_is_a_sensitive_header() {
    use ollama_translate::client::OllamaClient;
    let c = OllamaClient::<Full<Bytes>>::new("http://ollama:11434".parse().unwrap())
        .unwrap()
        .api_key(OLLAMA_KEY)
        .unwrap();
    let req = c.rebase(Request::new(()));
    let header = &req.headers()["authorization"];
    assert!(header.is_sensitive());
    assert_eq!(header, &format!("Bearer {OLLAMA_KEY}")[..]);
    assert_hides_secrets("client", &format!("{c:?}"));
}

type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// The layer (with [`API_KEY`] required) over an inner service that records
/// each request's path and headers and answers with one final chat line.
async fn through_layer(req: Request<Full<Bytes>>) -> (u16, Vec<(String, HeaderMap)>) {
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let inner = service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
        let seen = seen2.clone();
        async move {
            seen.lock()
                .unwrap()
                .push((req.uri().path().to_string(), req.headers().clone()));
            let line = json!({
                "model": "qwen3",
                "created_at": "2026-08-21T10:00:00.1Z",
                "message": {"role": "assistant", "content": "hi"},
                "done": true,
                "done_reason": "stop",
            });
            let mut res = Response::new(Full::new(Bytes::from(format!("{line}\n"))));
            res.headers_mut()
                .insert("content-type", "application/x-ndjson".parse().unwrap());
            Ok::<_, BoxError>(res)
        }
    });
    let res = configured_layer().layer(inner).oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    (status, seen)
}

#[tokio::test]
async fn passed_through_requests_lose_the_bearer_key() {
    let req = Request::get("/api/tags")
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("x-request-id", "r-1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, seen) = through_layer(req).await;
    assert_eq!(status, 200);
    let [(path, headers)] = &seen[..] else {
        panic!("one call expected: {seen:?}")
    };
    assert_eq!(path, "/api/tags");
    assert!(headers.get("authorization").is_none(), "{headers:?}");
    assert!(headers.get("x-api-key").is_none(), "{headers:?}");
    assert_eq!(headers["x-request-id"], "r-1", "other headers stay");
}

#[tokio::test]
async fn passed_through_requests_lose_x_api_key_but_keep_another_authorization() {
    let req = Request::post("/api/show")
        .header("x-api-key", API_KEY)
        .header("authorization", "Basic dXBzdHJlYW06cGFzcw==")
        .body(Full::new(Bytes::from_static(b"{\"model\":\"qwen3\"}")))
        .unwrap();
    let (status, seen) = through_layer(req).await;
    assert_eq!(status, 200);
    let [(_, headers)] = &seen[..] else {
        panic!("one call expected: {seen:?}")
    };
    assert!(headers.get("x-api-key").is_none(), "{headers:?}");
    assert_eq!(
        headers["authorization"], "Basic dXBzdHJlYW06cGFzcw==",
        "an Authorization that did not carry the key is not the layer's"
    );
}

#[tokio::test]
async fn translated_requests_carry_no_client_credentials() {
    for (name, value) in [
        ("authorization", format!("Bearer {API_KEY}")),
        ("x-api-key", API_KEY.to_string()),
    ] {
        let body = json!({"model": "qwen3", "messages": [{"role": "user", "content": "hi"}]});
        let req = Request::post("/v1/chat/completions")
            .header(name, &value)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let (status, seen) = through_layer(req).await;
        assert_eq!(status, 200, "{name}");
        let [(path, headers)] = &seen[..] else {
            panic!("one call expected: {seen:?}")
        };
        assert_eq!(path, "/api/chat");
        assert!(headers.get("authorization").is_none(), "{headers:?}");
        assert!(headers.get("x-api-key").is_none(), "{headers:?}");
    }
}

#[tokio::test]
async fn a_wrong_key_never_reaches_the_inner_service() {
    let req = Request::get("/api/tags")
        .header("authorization", "Bearer sk-wrong")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, seen) = through_layer(req).await;
    assert_eq!(status, 401);
    assert!(seen.is_empty());
}
