//! Health and the binary's interface: `/livez`, `/healthz`, `/readyz` (the
//! readiness probe, and a shutdown), the startup warning when Ollama is
//! down, the 502 that names where Ollama was looked for, `--help`,
//! `--version`, and invalid settings.

mod common;

use common::child::check;
use common::child::{proxy_binary, ProxyChild};
use common::fake_ollama::FakeOllama;
use common::proxy::send;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpListener;

/// `(status, JSON body)` of a GET.
async fn get(url: &str) -> (u16, Value) {
    let a = send("GET", url, &[], None).await;
    (
        a.status.as_u16(),
        serde_json::from_str(&a.body).unwrap_or(Value::Null),
    )
}

/// Asks `/readyz` every 50 ms until it answers `status`; the last answer
/// within `timeout`.
async fn readyz_until(url: &str, status: u16, timeout: Duration) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let got = get(&format!("{url}/readyz")).await;
        if got.0 == status || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An address nobody listens on (bound, then released).
async fn closed_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

async fn child(ollama: &str, env: &[(&str, &str)]) -> ProxyChild {
    ProxyChild::start(ollama, env).await
}

/// Runs the proxy binary with `args` and `env` to its end (within 10 s).
async fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let bin = proxy_binary();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env_clear()
        .args(args)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("OLLAMA_BASE_URL", "http://127.0.0.1:9")
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(10), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} {env:?}: the proxy ends within 10 s"))
        .unwrap();
    out
}

/// The variables of docs/configuration.md's table.
fn readme_settings() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let start = readme.find("# Configuration").unwrap();
    let vars: Vec<String> = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| variable |"))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    assert!(vars.len() > 10, "{vars:?}");
    vars
}

#[tokio::test]
async fn livez_and_healthz_need_no_key_and_never_ask_ollama() {
    let fake = FakeOllama::start().await;
    let p = common::proxy::start(&fake.base_url(), &[("PROXY_API_KEY", "s3cret")]).await;
    for path in ["/livez", "/healthz"] {
        assert_eq!(
            get(&format!("{}{path}", p.url)).await,
            (200, json!({"status": "ok"})),
            "{path}"
        );
    }
    // Without a probe (`common::proxy::start`: READINESS_PROBE_SECS=0)
    // there is nothing to wait for.
    assert_eq!(
        get(&format!("{}/readyz", p.url)).await,
        (200, json!({"status": "ready"}))
    );
    assert!(fake.requests().is_empty(), "nothing reached Ollama");
}

#[tokio::test]
async fn readiness_follows_ollama_down_and_up_again() {
    let fake = FakeOllama::start().await;
    let addr = fake.addr;
    let base = fake.base_url();
    let p = child(
        &base,
        &[
            ("READINESS_PROBE_SECS", "1"),
            ("OLLAMA_API_KEY", "upstream-key"),
            ("PROXY_API_KEY", "s3cret"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let (s, v) = readyz_until(&p.url, 200, Duration::from_secs(10)).await;
    assert_eq!((s, v), (200, json!({"status": "ready"})));
    // The probe asks /api/version with Ollama's own Host and OLLAMA_API_KEY.
    let probe = fake.requests_to("/api/version");
    let probe = probe.first().expect("a probe reached Ollama");
    assert_eq!(probe.method, "GET");
    assert_eq!(probe.header("host"), Some(&addr.to_string()[..]));
    assert_eq!(probe.header("authorization"), Some("Bearer upstream-key"));

    // Ollama goes away: 503 within a few probe intervals, naming it.
    drop(fake);
    let (s, v) = readyz_until(&p.url, 503, Duration::from_secs(10)).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["status"], "not ready");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("Ollama is not reachable at {base}: ")),
        "{reason}"
    );
    assert!(
        p.wait_for_log(
            &format!("Ollama is not reachable at {base}: "),
            Duration::from_secs(5)
        )
        .await
    );

    // Back on the same port: 200 again, and one line says so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("rebinding {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("rebinding {addr}: {e}"),
        }
    };
    let fake = FakeOllama::serve(listener).await;
    let (s, v) = readyz_until(&p.url, 200, Duration::from_secs(10)).await;
    assert_eq!((s, v), (200, json!({"status": "ready"})));
    assert!(
        p.wait_for_log(
            &format!("Ollama is reachable at {base}"),
            Duration::from_secs(5)
        )
        .await
    );
    let log = p.log.lock().unwrap().clone();
    let warnings = log.iter().filter(|l| l.contains("not reachable")).count();
    assert_eq!(warnings, 1, "one warning per outage: {log:#?}");
    drop(p);
    drop(fake);
}

#[tokio::test]
async fn readyz_is_503_from_the_start_of_a_shutdown_while_a_stream_flows() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = FakeOllama::start().await;
    let mut p = common::proxy::start(
        &fake.base_url(),
        &[
            ("READINESS_PROBE_SECS", "1"),
            ("SHUTDOWN_DRAIN_SECS", "1"),
            ("SHUTDOWN_GRACE_SECS", "1"),
        ],
    )
    .await;
    let url = p.url.clone();
    let (s, _) = readyz_until(&url, 200, Duration::from_secs(10)).await;
    assert_eq!(s, 200);

    let body = json!({"model": "llama3.2", "stream": true,
        "messages": [{"role": "user", "content": "[slow] keep going"}]})
    .to_string();
    let mut stream = tokio::net::TcpStream::connect(&p.addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("tok1 ") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the stream starts")
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }

    let started = std::time::Instant::now();
    let addr = p.addr.clone();
    let server = p.shutdown();
    let (s, v) = readyz_until(&url, 503, Duration::from_millis(500)).await;
    assert_eq!(
        (s, v),
        (
            503,
            json!({"status": "not ready", "reason": "shutting down"})
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "within the drain"
    );
    // Alive all the same, and the stream keeps flowing.
    assert_eq!(get(&format!("{url}/livez")).await.0, 200);
    let n = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf))
        .await
        .expect("tokens still arrive")
        .unwrap();
    assert!(n > 0);
    // After the drain no new connections; then the grace, then the end.
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops after drain and grace")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    drop(stream);
    assert!(fake.wait_idle(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn startup_warns_once_when_ollama_is_down_and_keeps_serving() {
    let base = closed_url().await;
    let p = child(&base, &[("READINESS_PROBE_SECS", "1")]).await;
    let warning = format!("Ollama is not reachable at {base}: ");
    assert!(
        p.wait_for_log(&warning, Duration::from_secs(5)).await,
        "{:#?}",
        p.log.lock().unwrap()
    );
    let line = p
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains(&warning))
        .cloned()
        .unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.ends_with(". Start it with `ollama serve`, or point OLLAMA_BASE_URL at it."),
        "{line}"
    );
    assert_eq!(get(&format!("{}/livez", p.url)).await.0, 200);
    let (s, v) = get(&format!("{}/readyz", p.url)).await;
    assert_eq!(s, 503);
    assert!(v["reason"].as_str().unwrap().starts_with(&warning), "{v}");
    // Probes keep failing; the warning is not repeated.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let log = p.log.lock().unwrap().clone();
    assert_eq!(
        log.iter().filter(|l| l.contains("not reachable")).count(),
        1,
        "{log:#?}"
    );
}

#[tokio::test]
async fn a_request_that_cannot_reach_ollama_names_the_address_and_the_setting() {
    let base = closed_url().await;
    let p = common::proxy::start(&base, &[]).await;
    let prefix = format!("could not reach Ollama: connecting to {base} (OLLAMA_BASE_URL) failed: ");

    let chat = json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]});
    let a = send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&chat),
    )
    .await;
    assert_eq!(a.status, 502);
    let e = a.json();
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with(&prefix), "{msg}");
    assert!(msg.contains("onnection refused"), "{msg}");

    let msgs = json!({"model": "llama3.2", "max_tokens": 50, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let a = send("POST", &format!("{}/v1/messages", p.url), &[], Some(&msgs)).await;
    assert_eq!(a.status, 502);
    let e = a.json();
    assert_eq!(e["type"], "error", "Anthropic's shape: {e}");
    assert!(e["error"]["type"].is_string(), "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with(&prefix), "{msg}");

    // A passed-through request too.
    let (s, v) = get(&format!("{}/api/tags", p.url)).await;
    assert_eq!(s, 502);
    let msg = v["error"].as_str().unwrap();
    assert!(msg.starts_with(&prefix), "{msg}");
}

#[tokio::test]
async fn help_names_every_setting_and_version_prints_the_version() {
    // docs/configuration.md's table is what the proxy reads: every `[env: NAME…]` of
    // its `--help` (clap's, from the settings' declarations).
    let documented = readme_settings();
    let out = run(&["--help"], &[]).await;
    let help = String::from_utf8(out.stdout).unwrap();
    let mut read: Vec<String> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_string)
        .collect();
    read.sort();
    read.dedup();
    let mut table = documented.clone();
    table.sort();
    assert_eq!(
        table, read,
        "docs/configuration.md's table = the settings read"
    );

    assert!(out.status.success());
    assert!(help.starts_with("ollama-translate: a proxy"), "{help}");
    for var in &documented {
        assert!(help.contains(var.as_str()), "--help names {var}");
    }

    let out = run(&["--version"], &[]).await;
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("ollama-translate {}\n", env!("CARGO_PKG_VERSION"))
    );

    let out = run(&["--frobnicate"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--frobnicate") && err.to_lowercase().contains("usage: "),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn invalid_settings_stop_the_binary_naming_the_variable() {
    for (var, value) in [
        ("READINESS_PROBE_SECS", "abc"),
        ("MAX_ANSWER_BYTES", "lots"),
        ("LISTEN_ADDR", "nowhere"),
    ] {
        let out = run(&[], &[(var, value)]).await;
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(
            err.contains("configuration error") && err.contains(var),
            "{err}"
        );
    }
}

#[test]
fn every_invalid_setting_names_its_variable() {
    for (var, value) in [
        ("OLLAMA_BASE_URL", "ftp://x"),
        ("LISTEN_ADDR", "4000"),
        ("REASONING", "loud"),
        ("OLLAMA_OPTIONS", "num_ctx"),
        ("MODEL_ALIASES", "gpt-4o"),
        ("MAX_BODY_BYTES", "-1"),
        ("MAX_ANSWER_BYTES", "1e6"),
        ("REQUEST_MEMORY_BYTES", "many"),
        ("CLIENT_TIMEOUT_SECS", "30s"),
        ("KEEPALIVE_SECS", "ten"),
        ("UPSTREAM_IDLE_TIMEOUT", "5m"),
        ("OLLAMA_API_KEY", "bad\nkey"),
        ("SHUTDOWN_GRACE_SECS", "soon"),
        ("SHUTDOWN_DRAIN_SECS", "-2"),
        ("READINESS_PROBE_SECS", "abc"),
        ("READINESS_PROBE_SECS", "-1"),
    ] {
        let err = check(&[(var, value)]).expect_err(&format!("{var}={value:?} is refused"));
        assert!(err.contains(var), "{var}: {err}");
    }
    let s = check(&[]).unwrap();
    assert!(s.contains("readiness_probe_secs: 5,"), "{s}");
    assert!(s.contains("shutdown_drain_secs: 0,"), "{s}");
    // 0: no probe; blank counts as unset, values are trimmed.
    let s = check(&[("READINESS_PROBE_SECS", "0"), ("SHUTDOWN_DRAIN_SECS", " ")]).unwrap();
    assert!(s.contains("readiness_probe_secs: 0,"), "{s}");
    let s = check(&[("READINESS_PROBE_SECS", " 2 ")]).unwrap();
    assert!(s.contains("readiness_probe_secs: 2,"), "{s}");
}
