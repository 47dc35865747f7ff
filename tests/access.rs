//! Who may do what, through the real proxy: named keys from a keys file,
//! scopes (admin paths), reloading without a restart, limits per key, the
//! key's name on the metrics and the span.

mod common;

use common::child::{check, proxy_binary, ProxyChild};
use common::fake_ollama::FakeOllama;
use common::proxy::{sample, send, Answer, Proxy};
use ollama_translate::keys_file;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const OPS: &str = "sk-ops-Hq2v9LmX";
const ALICE: &str = "sk-alice-Tn5c8RwZ";
const BOB: &str = "sk-bob-Jd3k7PfY";

fn digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A keys file in the temporary folder, removed when dropped.
struct KeysFile(PathBuf);

impl KeysFile {
    fn new(text: &str) -> KeysFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ot-keys-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, text).unwrap();
        KeysFile(path)
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for KeysFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// ops (admin), alice (at most `alice_limit` in flight; 0: none).
fn two_keys(alice_limit: usize) -> String {
    let limit = if alice_limit > 0 {
        format!(":{alice_limit}")
    } else {
        String::new()
    };
    format!(
        "# the team's keys\nops:{}:admin\n\nalice:{}{limit}\n",
        digest(OPS),
        digest(ALICE)
    )
}

fn bearer(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

async fn call(
    p: &Proxy,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let auth = key.map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    send(method, &format!("{}{path}", p.url), &headers, body).await
}

/// Each key's name, whether it is admin, and its limit, in file order.
fn summary(keys: &ollama_translate::access::Keys) -> Vec<(&str, bool, Option<usize>)> {
    keys.iter()
        .map(|k| (k.name(), k.is_admin(), k.in_flight_limit()))
        .collect()
}

fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn messages_body() -> Value {
    json!({"model": "llama3.2", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]})
}

/// Ollama's own error shape: `{"error": "<message>"}`.
fn native_error(a: &Answer) -> String {
    let v = a.json();
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not Ollama's shape: {v}"))
        .to_string()
}

/// OpenAI's: `{"error": {"type", "message", …}}`.
fn openai_error(a: &Answer) -> (String, String) {
    let v = a.json();
    assert!(v["error"].is_object() && v.get("type").is_none(), "{v}");
    (
        v["error"]["type"].as_str().unwrap().to_string(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

/// Anthropic's: `{"type": "error", "error": {"type", "message"}}`.
fn anthropic_error(a: &Answer) -> (String, String) {
    let v = a.json();
    assert_eq!(v["type"], "error", "{v}");
    (
        v["error"]["type"].as_str().unwrap().to_string(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

async fn keyed(fake: &FakeOllama, file: &KeysFile, extra: &[(&str, &str)]) -> Proxy {
    let mut env = vec![("KEYS_FILE", file.path()), ("KEYS_POLL_SECS", "1")];
    env.extend_from_slice(extra);
    common::proxy::start(&fake.base_url(), &env).await
}

/// Asks until `done` holds, for up to 10 s.
async fn eventually<F, Fut>(mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[test]
fn the_keys_file_format() {
    let keys = keys_file::parse(&format!(
        "# comment\n\n  ops : {} : admin \r\nalice:{}:4\nci:{}:2:admin\n",
        digest(OPS),
        digest(ALICE).to_ascii_uppercase(),
        digest(BOB)
    ))
    .unwrap();
    assert_eq!(
        summary(&keys),
        [
            ("ops", true, None),
            ("alice", false, Some(4)),
            ("ci", true, Some(2))
        ]
    );
    let d = digest(OPS);
    for (text, says) in [
        ("ops".to_string(), "line 1: expected NAME:SHA256"),
        (
            format!("ops:{OPS}"),
            "line 1: a key digest is 64 hex digits",
        ),
        (format!("\nbad name:{d}"), "line 2: key name"),
        (
            format!("ops:{d}\nops:{}", digest(BOB)),
            "line 2: two keys are named",
        ),
        (
            format!("ops:{d}\nbob:{d}"),
            "line 2: keys \"ops\" and \"bob\" have the same digest",
        ),
        (format!("ops:{d}:0"), "line 1: at least 1 request in flight"),
        (
            format!("ops:{d}:admin:admin"),
            "line 1: unexpected field \"admin\"",
        ),
        (format!("ops:{d}:3:4"), "line 1: unexpected field \"4\""),
        (format!("ops:{d}:root"), "line 1: unexpected field \"root\""),
    ] {
        let err = keys_file::parse(&text).unwrap_err().to_string();
        assert!(err.starts_with(says), "{text:?}: {err}");
        assert!(
            !err.contains(OPS),
            "a key pasted by mistake is not echoed: {err}"
        );
    }
}

#[test]
fn settings_for_access() {
    let file = KeysFile::new(&two_keys(0));
    let settings = |vars: &[(&str, &str)]| {
        // `--check` says who may do what on its `access:` line.
        check(vars).map(|s| {
            let line = s.lines().find(|l| l.starts_with("access: "));
            line.unwrap_or_default().to_string()
        })
    };
    let s = settings(&[("KEYS_FILE", file.path())]).unwrap();
    assert!(
        s.contains("requires_key: true") && s.contains(r#"keys: ["alice", "ops"]"#),
        "{s}"
    );
    let s = settings(&[("KEYS_FILE", file.path()), ("PROXY_API_KEY", "s3cret")]).unwrap();
    assert!(s.contains(r#"["alice", "default", "ops"]"#), "{s}");
    let s = settings(&[("PROXY_API_KEY", "s3cret")]).unwrap();
    assert!(s.contains(r#"["default"]"#), "{s}");
    let s = settings(&[]).unwrap();
    assert!(
        s.contains("requires_key: false") && s.contains("admin_paths_open: false"),
        "{s}"
    );
    let s = settings(&[("OPEN_ADMIN_PATHS", "1")]).unwrap();
    assert!(s.contains("admin_paths_open: true"), "{s}");
    for (vars, says) in [
        (
            vec![("KEYS_FILE", file.path()), ("OPEN_ADMIN_PATHS", "1")],
            "OPEN_ADMIN_PATHS opens the admin paths when no key is configured",
        ),
        (
            vec![("PROXY_API_KEY", "k"), ("OPEN_ADMIN_PATHS", "true")],
            "OPEN_ADMIN_PATHS opens",
        ),
        (vec![("OPEN_ADMIN_PATHS", "maybe")], "must be 1 or 0"),
        (
            vec![("KEYS_FILE", "/nonexistent/keys")],
            "KEYS_FILE /nonexistent/keys: ",
        ),
        (vec![("KEYS_POLL_SECS", "soon")], "KEYS_POLL_SECS"),
    ] {
        let err = settings(&vars).unwrap_err();
        assert!(err.contains(says), "{vars:?}: {err}");
    }
    let clash = KeysFile::new(&format!("default:{}", digest("other")));
    let err = settings(&[("KEYS_FILE", clash.path()), ("PROXY_API_KEY", "k")]).unwrap_err();
    assert!(
        err.contains("the name \"default\" is PROXY_API_KEY's"),
        "{err}"
    );
    let twice = KeysFile::new(&format!("ops:{}:admin", digest("k")));
    let err = settings(&[("KEYS_FILE", twice.path()), ("PROXY_API_KEY", "k")]).unwrap_err();
    assert!(err.contains("PROXY_API_KEY is also in the file"), "{err}");
    // What `--check` prints names the keys, never a key or a digest.
    let debug = check(&[
        ("KEYS_FILE", file.path()),
        ("PROXY_API_KEY", "sk-other-Xy4"),
    ])
    .unwrap();
    assert!(debug.contains("alice"), "{debug}");
    for secret in [
        ALICE,
        "sk-other-Xy4",
        &digest(ALICE)[..16],
        &digest("sk-other-Xy4")[..16],
    ] {
        assert!(!debug.contains(secret), "{debug}");
    }
}

#[tokio::test]
async fn hash_key_gives_the_digest_the_proxy_checks() {
    assert_eq!(
        keys_file::hash_key(&format!("{ALICE}\n"))
            .unwrap()
            .to_string(),
        digest(ALICE)
    );
    assert!(keys_file::hash_key("\n").is_none());
    // The binary's `--hash-key` reads standard input.
    let bin = proxy_binary();
    use std::io::Write;
    let mut child = std::process::Command::new(bin)
        .arg("--hash-key")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("  {ALICE}  \n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", digest(ALICE))
    );
}

#[tokio::test]
async fn no_key_or_an_unknown_key_is_a_401_in_the_paths_shape() {
    let fake = FakeOllama::start().await;
    let file = KeysFile::new(&two_keys(0));
    let p = keyed(&fake, &file, &[]).await;
    for key in [None, Some("sk-unknown"), Some(&digest(ALICE)[..])] {
        let a = call(
            &p,
            "POST",
            "/v1/chat/completions",
            key,
            Some(&chat_body("llama3.2")),
        )
        .await;
        assert_eq!(a.status, 401);
        assert_eq!(openai_error(&a).0, "authentication_error");
        let a = call(&p, "POST", "/v1/messages", key, Some(&messages_body())).await;
        assert_eq!(a.status, 401);
        assert_eq!(anthropic_error(&a).0, "authentication_error");
        let a = call(&p, "GET", "/api/tags", key, None).await;
        assert_eq!(a.status, 401);
        assert!(native_error(&a).contains("API key"));
    }
    assert!(fake.requests().is_empty(), "nothing reached Ollama");
    // Both headers carry a key.
    let a = send(
        "GET",
        &format!("{}/api/tags", p.url),
        &[("x-api-key", ALICE)],
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn a_key_that_is_not_admin_gets_a_403_on_every_admin_path_in_its_shape() {
    let fake = FakeOllama::start().await;
    let file = KeysFile::new(&two_keys(0));
    let p = keyed(&fake, &file, &[]).await;
    let admin_paths = [
        ("DELETE", "/api/delete"),
        ("POST", "/api/pull"),
        ("POST", "/api/push"),
        ("POST", "/api/create"),
        ("POST", "/api/copy"),
        ("POST", "/api/blobs/sha256:0123abcd"),
        ("HEAD", "/api/blobs/sha256:0123abcd"),
        ("POST", "/api/me"),
        ("POST", "/api/signout"),
        ("GET", "/api/status"),
        ("POST", "/api/experimental/web_search"),
        ("POST", "/api/experimental/web_fetch"),
        ("GET", "/debug/pprof/"),
        ("POST", "/api/%64elete"),
    ];
    let body = json!({"model": "llama3.2"});
    for (method, path) in admin_paths {
        let a = call(&p, method, path, Some(ALICE), Some(&body)).await;
        assert_eq!(a.status, 403, "{method} {path}: {}", a.body);
        if method != "HEAD" {
            let message = native_error(&a);
            assert!(
                message.contains("\"alice\"") && message.contains("need an admin key"),
                "{message}"
            );
        }
    }
    // Under /v1, a path Ollama would read as another: the client's shape.
    let a = call(
        &p,
        "POST",
        "/v1/%2e%2e/api/delete",
        Some(ALICE),
        Some(&body),
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(openai_error(&a).0, "permission_error");
    let a = call(
        &p,
        "POST",
        "/v1/messages/%2e%2e/x",
        Some(ALICE),
        Some(&body),
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(anthropic_error(&a).0, "permission_error");
    assert!(
        fake.requests().is_empty(),
        "no refused request reached Ollama"
    );

    // alice may generate and read.
    let a = call(
        &p,
        "POST",
        "/v1/chat/completions",
        Some(ALICE),
        Some(&chat_body("llama3.2")),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call(
        &p,
        "POST",
        "/v1/messages",
        Some(ALICE),
        Some(&messages_body()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    for (method, path, body) in [
        ("GET", "/api/tags", None),
        ("GET", "/api/ps", None),
        ("GET", "/api/version", None),
        ("POST", "/api/show", Some(json!({"model": "llama3.2"}))),
        (
            "POST",
            "/api/chat",
            Some(
                json!({"model": "llama3.2", "stream": false, "messages": [{"role": "user", "content": "hi"}]}),
            ),
        ),
    ] {
        let a = call(&p, method, path, Some(ALICE), body.as_ref()).await;
        assert_eq!(a.status, 200, "{method} {path}: {}", a.body);
    }
    // ops, an admin key, reaches them (the fake answers its 404), and its
    // key stays behind.
    let before = fake.requests().len();
    let a = call(&p, "DELETE", "/api/delete", Some(OPS), Some(&body)).await;
    assert_eq!(a.status, 404, "the fake has no /api/delete: {}", a.body);
    let a = send(
        "POST",
        &format!("{}/api/pull", p.url),
        &[("x-api-key", OPS)],
        Some(&body),
    )
    .await;
    assert_eq!(a.status, 404);
    let reached = fake.requests();
    assert_eq!(reached.len(), before + 2);
    for r in &reached[before..] {
        assert!(
            r.path == "/api/delete" || r.path == "/api/pull",
            "{}",
            r.path
        );
        assert!(r.header("authorization").is_none() && r.header("x-api-key").is_none());
    }
}

#[tokio::test]
async fn admin_paths_are_closed_to_everyone_without_keys_unless_opened() {
    let fake = FakeOllama::start().await;
    let p = common::proxy::start(&fake.base_url(), &[]).await;
    let body = json!({"model": "llama3.2"});
    for (method, path) in [
        ("DELETE", "/api/delete"),
        ("POST", "/api/experimental/web_search"),
    ] {
        let a = call(&p, method, path, None, Some(&body)).await;
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(
            native_error(&a).contains("none is configured"),
            "{}",
            a.body
        );
        // A key sent to a proxy without keys changes nothing.
        let a = call(&p, method, path, Some(OPS), Some(&body)).await;
        assert_eq!(a.status, 403);
    }
    assert!(fake.requests().is_empty());
    let a = call(
        &p,
        "POST",
        "/v1/chat/completions",
        None,
        Some(&chat_body("llama3.2")),
    )
    .await;
    assert_eq!(a.status, 200, "generation needs no key");

    let open = common::proxy::start(&fake.base_url(), &[("OPEN_ADMIN_PATHS", "1")]).await;
    let a = call(&open, "DELETE", "/api/delete", None, Some(&body)).await;
    assert_eq!(a.status, 404, "reaches the fake: {}", a.body);
    assert_eq!(fake.requests_to("/api/delete").len(), 1);
}

#[tokio::test]
async fn a_revoked_key_stops_and_an_added_key_starts_without_a_restart() {
    let fake = FakeOllama::start().await;
    let file = KeysFile::new(&two_keys(0));
    let p = keyed(&fake, &file, &[]).await;
    let chat = chat_body("llama3.2");
    for key in [OPS, ALICE] {
        let a = call(&p, "POST", "/v1/chat/completions", Some(key), Some(&chat)).await;
        assert_eq!(a.status, 200);
    }
    let a = call(&p, "POST", "/v1/chat/completions", Some(BOB), Some(&chat)).await;
    assert_eq!(a.status, 401);

    // alice is revoked, bob added: the file changes, nothing restarts.
    file.write(&format!("ops:{}:admin\nbob:{}\n", digest(OPS), digest(BOB)));
    let revoked = eventually(|| async {
        call(&p, "POST", "/v1/chat/completions", Some(ALICE), Some(&chat))
            .await
            .status
            == 401
    })
    .await;
    assert!(
        revoked,
        "alice still gets in 10 s after her key was removed"
    );
    let a = call(&p, "POST", "/v1/chat/completions", Some(BOB), Some(&chat)).await;
    assert_eq!(a.status, 200, "bob gets in: {}", a.body);
    let a = call(&p, "POST", "/v1/chat/completions", Some(OPS), Some(&chat)).await;
    assert_eq!(a.status, 200);

    // A broken file changes nothing; the keys in force stay.
    file.write("bob:not-a-digest\n");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let a = call(&p, "POST", "/v1/chat/completions", Some(BOB), Some(&chat)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call(&p, "POST", "/v1/chat/completions", Some(ALICE), Some(&chat)).await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn sighup_reloads_the_keys_file() {
    let fake = FakeOllama::start().await;
    let file = KeysFile::new(&two_keys(0));
    let env = [
        ("KEYS_FILE", file.path()),
        ("KEYS_POLL_SECS", "0"),
        ("RUST_LOG", "info"),
    ];
    let child = ProxyChild::start(&fake.base_url(), &env).await;
    assert!(
        child
            .wait_for_log("access: 2 keys from KEYS_FILE", Duration::from_secs(5))
            .await
    );
    let url = |path: &str| format!("{}{path}", child.url);
    let post = |key: &'static str| {
        let url = url("/v1/chat/completions");
        async move {
            let auth = format!("Bearer {key}");
            send(
                "POST",
                &url,
                &[("authorization", &auth)],
                Some(&chat_body("llama3.2")),
            )
            .await
            .status
        }
    };
    assert_eq!(post(ALICE).await, 200);
    file.write(&format!("ops:{}:admin\nbob:{}\n", digest(OPS), digest(BOB)));
    // Without polling, the change waits for the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        post(ALICE).await,
        200,
        "KEYS_POLL_SECS=0: no reload before SIGHUP"
    );
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &child.pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert!(
        child
            .wait_for_log(
                "reloaded on SIGHUP: 2 keys; added: [bob]; revoked: [alice]",
                Duration::from_secs(5)
            )
            .await,
        "{:?}",
        child.log.lock().unwrap()
    );
    assert_eq!(post(ALICE).await, 401);
    assert_eq!(post(BOB).await, 200);
    // The proxy is still the same process.
    assert!(std::path::Path::new(&format!("/proc/{}", child.pid)).exists());
}

/// Starts a chat stream that stays open (the fake's `[stall]`) for `key`,
/// and returns once its first bytes came; the stream ends when the
/// returned connection is dropped.
async fn held_stream(p: &Proxy, key: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({"model": "llama3.2", "stream": true,
        "messages": [{"role": "user", "content": "[stall]"}]})
    .to_string();
    let mut s = tokio::net::TcpStream::connect(&p.addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("Waiting") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the stream starts")
            .unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    s
}

#[tokio::test]
async fn a_key_at_its_limit_gets_a_429_with_retry_after_in_each_dialect() {
    let fake = FakeOllama::start().await;
    let file = KeysFile::new(&two_keys(1));
    let p = keyed(&fake, &file, &[]).await;
    let stream = held_stream(&p, ALICE).await;

    let retry_after = |a: &Answer| {
        a.headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let a = call(
        &p,
        "POST",
        "/v1/chat/completions",
        Some(ALICE),
        Some(&chat_body("llama3.2")),
    )
    .await;
    assert_eq!(a.status, 429);
    assert_eq!(retry_after(&a).as_deref(), Some("1"));
    let (kind, message) = openai_error(&a);
    assert_eq!(kind, "rate_limit_error");
    assert!(
        message.contains("\"alice\" has 1 requests in flight"),
        "{message}"
    );
    let a = call(
        &p,
        "POST",
        "/v1/responses",
        Some(ALICE),
        Some(&json!({"model": "llama3.2", "input": "hi"})),
    )
    .await;
    assert_eq!(
        (a.status.as_u16(), retry_after(&a).as_deref()),
        (429, Some("1"))
    );
    assert_eq!(openai_error(&a).0, "rate_limit_error");
    let a = call(
        &p,
        "POST",
        "/v1/messages",
        Some(ALICE),
        Some(&messages_body()),
    )
    .await;
    assert_eq!(
        (a.status.as_u16(), retry_after(&a).as_deref()),
        (429, Some("1"))
    );
    assert_eq!(anthropic_error(&a).0, "rate_limit_error");
    let a = call(&p, "GET", "/api/tags", Some(ALICE), None).await;
    assert_eq!(
        (a.status.as_u16(), retry_after(&a).as_deref()),
        (429, Some("1"))
    );
    assert!(native_error(&a).contains("limit"));
    // Another key is not held back.
    let a = call(
        &p,
        "POST",
        "/v1/chat/completions",
        Some(OPS),
        Some(&chat_body("llama3.2")),
    )
    .await;
    assert_eq!(a.status, 200);

    // The stream ends (the client goes away): alice's place is free.
    drop(stream);
    let freed = eventually(|| async {
        call(&p, "GET", "/api/tags", Some(ALICE), None).await.status == 200
    })
    .await;
    assert!(freed, "alice's place was not freed when her stream ended");
    // A finished answer frees it too: two in a row succeed.
    for _ in 0..2 {
        let a = call(
            &p,
            "POST",
            "/v1/chat/completions",
            Some(ALICE),
            Some(&chat_body("llama3.2")),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
}

/// A span with a model: its `gen_ai.request.model`, its
/// `ollama_translate.key`, and every field value it had, joined.
type SpanSeen = (String, Option<String>, String);

/// Every span with a model, from a subscriber installed once for this
/// test binary.
fn spans() -> &'static Mutex<Vec<SpanSeen>> {
    use tracing_subscriber::layer::SubscriberExt;
    static SEEN: OnceLock<Arc<Mutex<Vec<SpanSeen>>>> = OnceLock::new();
    struct Record(Arc<Mutex<Vec<SpanSeen>>>);
    #[derive(Default)]
    struct Fields {
        model: Option<String>,
        key: Option<String>,
        all: String,
    }
    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            let v = format!("{value:?}");
            self.record_str(field, v.trim_matches('"'));
        }
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            match field.name() {
                "gen_ai.request.model" => self.model = Some(value.to_string()),
                "ollama_translate.key" => self.key = Some(value.to_string()),
                _ => {}
            }
            self.all.push_str(value);
            self.all.push(' ');
        }
    }
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Record {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _id: &tracing::span::Id,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut f = Fields::default();
            attrs.record(&mut f);
            if let Some(model) = f.model {
                self.0.lock().unwrap().push((model, f.key, f.all));
            }
        }
    }
    SEEN.get_or_init(|| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Record(seen.clone()));
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        seen
    })
}

#[tokio::test]
async fn the_key_name_labels_metrics_and_span_never_the_key() {
    let spans = spans();
    let fake = FakeOllama::start().await;
    let file = KeysFile::new(&two_keys(0));
    let p = keyed(
        &fake,
        &file,
        &[
            ("PROXY_API_KEY", "sk-default-Vb7q"),
            ("MODEL_ALIASES", "access-metered=llama3.2"),
        ],
    )
    .await;
    let model = "access-metered";
    let a = call(
        &p,
        "POST",
        "/v1/chat/completions",
        Some(ALICE),
        Some(&chat_body(model)),
    )
    .await;
    assert_eq!(a.status, 200);
    let a = call(&p, "DELETE", "/api/delete", Some(ALICE), None).await;
    assert_eq!(a.status, 403);

    // /metrics needs an admin key.
    for key in [None, Some(ALICE), Some("sk-unknown")] {
        let a = call(&p, "GET", "/metrics", key, None).await;
        assert_eq!(a.status, 401, "{key:?}");
    }
    let scrape = call(&p, "GET", "/metrics", Some(OPS), None).await;
    assert_eq!(scrape.status, 200);
    let default = call(&p, "GET", "/metrics", Some("sk-default-Vb7q"), None).await;
    assert_eq!(default.status, 200, "PROXY_API_KEY is an admin key");
    let text = scrape.body;
    let m = format!("gen_ai_request_model=\"{model}\"");
    let tokens = sample(
        &text,
        "gen_ai_client_token_usage_count",
        &[&m, "key=\"alice\"", "gen_ai_token_type=\"output\""],
    );
    assert_eq!(tokens, 1.0, "{text}");
    let duration = sample(
        &text,
        "gen_ai_client_operation_duration_seconds_count",
        &[&m, "key=\"alice\""],
    );
    assert_eq!(duration, 1.0, "{text}");
    let requests = sample(
        &text,
        "ollama_translate_requests_total",
        &[
            "dialect=\"chat.completions\"",
            "status=\"200\"",
            "key=\"alice\"",
        ],
    );
    assert!(requests >= 1.0, "{text}");
    let refused = sample(
        &text,
        "ollama_translate_requests_total",
        &["dialect=\"native\"", "status=\"403\"", "key=\"alice\""],
    );
    assert!(refused >= 1.0, "{text}");
    for secret in [ALICE, OPS, &digest(ALICE)[..16], "sk-default-Vb7q"] {
        assert!(!text.contains(secret), "the scrape shows {secret}");
    }

    // The span: the proxy's layer in-process (the proxy itself is another
    // process), with the same keys, over the library's Ollama client.
    use tower::ServiceExt;
    let keys = keys_file::parse(&two_keys(0)).unwrap();
    let ollama =
        ollama_translate::client::OllamaClient::new(fake.base_url().parse().unwrap()).unwrap();
    let layer = ollama_translate::OllamaTranslateLayer::new()
        .access(ollama_translate::access::Access::new(keys))
        .model_alias(model, "llama3.2");
    let svc = tower::ServiceBuilder::new().layer(layer).service(ollama);
    let req = http::Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {ALICE}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            chat_body(model).to_string(),
        )))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let _ = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap();
    let seen = spans.lock().unwrap().clone();
    let mine: Vec<_> = seen.iter().filter(|(m, _, _)| m == model).collect();
    assert_eq!(mine.len(), 1, "{seen:?}");
    assert_eq!(mine[0].1.as_deref(), Some("alice"));
    for (_, _, all) in &seen {
        assert!(
            !all.contains(ALICE) && !all.contains(&digest(ALICE)[..16]),
            "{all}"
        );
    }
}

#[tokio::test]
async fn the_layers_own_web_search_needs_no_admin_key() {
    let fake = FakeOllama::start().await;
    let file = KeysFile::new(&two_keys(0));
    let p = keyed(&fake, &file, &[]).await;
    let body = json!({
        "model": "llama3.2",
        "max_tokens": 1024,
        "stream": true,
        "messages": [{"role": "user", "content": "[search:rust tower crate]"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
    });
    let a = send(
        "POST",
        &format!("{}/v1/messages", p.url),
        &[("x-api-key", ALICE), ("anthropic-version", "2023-06-01")],
        Some(&body),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("web_search_tool_result"), "{}", a.body);
    let searches = fake.requests_to("/api/experimental/web_search");
    assert_eq!(searches.len(), 1, "the layer searched for alice");
    assert!(
        searches[0].header("x-api-key").is_none() && searches[0].header("authorization").is_none()
    );
    // Calling it directly is an admin's business.
    let a = call(
        &p,
        "POST",
        "/api/experimental/web_search",
        Some(ALICE),
        Some(&json!({"query": "x"})),
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(fake.requests_to("/api/experimental/web_search").len(), 1);
}

#[tokio::test]
async fn kept_responses_belong_to_the_key_that_made_them() {
    let fake = FakeOllama::start().await;
    let file = KeysFile::new(&format!("{}bob:{}\n", two_keys(0), digest(BOB)));
    let p = keyed(&fake, &file, &[]).await;
    let a = call(
        &p,
        "POST",
        "/v1/responses",
        Some(ALICE),
        Some(&json!({"model": "llama3.2", "input": "hi"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/responses/{id}");
    let a = call(&p, "GET", &path, Some(ALICE), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["id"], id.as_str());
    // The same key in the other header is the same owner.
    let a = send(
        "GET",
        &format!("{}{path}", p.url),
        &[("x-api-key", ALICE)],
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    let a = call(&p, "GET", &path, Some(BOB), None).await;
    assert_eq!(a.status, 404, "bob does not read alice's response");
    let cont = json!({"model": "llama3.2", "input": "more", "previous_response_id": id});
    let a = call(&p, "POST", "/v1/responses", Some(BOB), Some(&cont)).await;
    assert_eq!(a.status, 404, "{}", a.body);
    let a = call(&p, "POST", "/v1/responses", Some(ALICE), Some(&cont)).await;
    assert_eq!(a.status, 200, "{}", a.body);

    // A credential for Ollama beside the key (kept for the inner service)
    // tells owners of one key apart, and never joins two keys' owners.
    let with =
        |key: &'static str, user: &'static str| [("x-api-key", key), ("authorization", user)];
    let url = format!("{}/v1/responses", p.url);
    let body = json!({"model": "llama3.2", "input": "hi"});
    let a = send("POST", &url, &with(ALICE, "Basic dTE="), Some(&body)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let path = format!("{url}/{}", a.json()["id"].as_str().unwrap());
    for (headers, status) in [
        (with(ALICE, "Basic dTE="), 200),
        (with(ALICE, "Basic dTI="), 404),
        (with(BOB, "Basic dTE="), 404),
    ] {
        assert_eq!(
            send("GET", &path, &headers, None).await.status,
            status,
            "{headers:?}"
        );
    }
}

#[test]
fn the_readme_s_keys_file_is_a_valid_one() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/access.md")).unwrap();
    let access = &readme[readme.find("# Access").unwrap()..];
    let block = access
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let keys = keys_file::parse(block).unwrap();
    assert_eq!(
        summary(&keys),
        [
            ("ops", true, None),
            ("alice", false, Some(4)),
            ("ci", true, Some(2))
        ]
    );
    for k in keys.iter() {
        let key = format!("sk-{}-example", k.name());
        assert_eq!(k.digest().to_string(), digest(&key), "{key}");
        assert_eq!(keys_file::hash_key(&key).unwrap().to_string(), digest(&key));
    }
}
