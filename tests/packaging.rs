//! What can be checked of the container files by reading them: the paths
//! and the binary they name exist, the settings they set are ones the proxy
//! reads, the port they expose is the one it listens on, and the health
//! check they run works against the real binary. `tests/dockerfile.rs`
//! replays the Dockerfile's build and runs its result as the image would.

mod common;

use common::child::ProxyChild;
use common::fake_ollama::FakeOllama;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The proxy's `--help`.
fn help() -> String {
    let out = std::process::Command::new(common::child::proxy_binary())
        .arg("--help")
        .env_clear()
        .output()
        .expect("proxy --help");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Every `NAME` the proxy reads from its environment: each `[env: NAME…]`
/// of its `--help`.
fn settings_the_proxy_reads() -> Vec<String> {
    let names: Vec<String> = help()
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_string)
        .collect();
    for name in ["OLLAMA_BASE_URL", "LISTEN_ADDR", "KEYS_FILE", "RUST_LOG"] {
        assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
    }
    names
}

/// `KEY=value` pairs of the Dockerfile's `ENV` instruction.
fn dockerfile_env(dockerfile: &str) -> Vec<(String, String)> {
    let joined = dockerfile.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_dockerfile_names_what_exists() {
    let dockerfile = read("Dockerfile");
    // Every COPY from the build context exists.
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(src);
            assert!(p.exists(), "{line}: {src} does not exist");
        }
    }
    // It builds the proxy example CI builds (tests/dockerfile.rs runs it).
    let build = "cargo build --release --locked --example proxy";
    assert!(dockerfile.contains(build));
    assert!(
        read(".ci/run").contains(build),
        "CI builds what the image does"
    );
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/proxy/main.rs")
        .exists());
    // Settings it sets are read by the proxy; it listens where it exposes.
    let known = settings_the_proxy_reads();
    let env = dockerfile_env(&dockerfile);
    assert!(!env.is_empty());
    for (k, _) in &env {
        assert!(known.contains(k), "ENV {k} is not a setting of the proxy");
    }
    let listen = &env
        .iter()
        .find(|(k, _)| k == "LISTEN_ADDR")
        .expect("LISTEN_ADDR")
        .1;
    assert!(listen.starts_with("0.0.0.0:"), "{listen}");
    let port = listen.rsplit(':').next().unwrap();
    assert!(dockerfile.contains(&format!("EXPOSE {port}")));
    // A non-root user, a health check the binary understands, SIGTERM.
    assert!(dockerfile.contains("USER 10001"));
    assert!(dockerfile.contains("\"--healthcheck\""));
    assert!(help().contains("--healthcheck"));
    assert!(dockerfile.contains("STOPSIGNAL SIGTERM"));
    // The feature it offers as a build argument exists.
    assert!(dockerfile.contains("FEATURES=otlp"));
    let manifest = read("Cargo.toml");
    assert!(
        manifest
            .lines()
            .any(|l| l.trim_start().starts_with("otlp = [")),
        "an `otlp` feature"
    );
    // The build context leaves the build directory out.
    assert!(read(".dockerignore").lines().any(|l| l.trim() == "target"));
}

#[test]
fn the_compose_file_wires_ollama_to_the_proxy() {
    let compose = read("compose.yaml");
    let known = settings_the_proxy_reads();
    // `KEY: value` lines under `environment:` that are not comments.
    let mut in_env = false;
    let mut set = Vec::new();
    for line in compose.lines() {
        let t = line.trim();
        if t == "environment:" {
            in_env = true;
            continue;
        }
        if in_env {
            if t.starts_with('#') {
                // A commented setting must still be a real one.
                if let Some((k, _)) = t.trim_start_matches("# ").split_once(':') {
                    if k.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                        assert!(known.contains(&k.to_string()), "# {k} is not a setting");
                    }
                }
                continue;
            }
            match t.split_once(": ") {
                Some((k, v)) if k.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                    set.push((k.to_string(), v.to_string()))
                }
                _ => in_env = false,
            }
        }
    }
    for (k, _) in &set {
        assert!(known.contains(k), "{k} is not a setting of the proxy");
    }
    let base = &set
        .iter()
        .find(|(k, _)| k == "OLLAMA_BASE_URL")
        .expect("OLLAMA_BASE_URL")
        .1;
    assert_eq!(base, "http://ollama:11434", "the ollama service, by name");
    assert!(compose.contains("\n  ollama:\n"), "an ollama service");
    assert!(
        compose.contains("ollama:/root/.ollama"),
        "a named volume for the models"
    );
    assert!(
        compose.contains("\"127.0.0.1:4000:4000\""),
        "published on loopback only"
    );
}

#[test]
fn the_kubernetes_example_uses_the_proxy_s_settings_and_paths() {
    let k8s = read("deploy/kubernetes.yaml");
    let known = settings_the_proxy_reads();
    let lines: Vec<&str> = k8s.lines().map(str::trim).collect();
    // `- name: KEY` then `value: "…"` (or `valueFrom:`).
    let mut env = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(k) = l.strip_prefix("- name: ") else {
            continue;
        };
        if !k.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        assert!(
            known.contains(&k.to_string()),
            "{k} is not a setting of the proxy"
        );
        let value = lines[i + 1]
            .strip_prefix("value: ")
            .map(|v| v.trim_matches('"'));
        env.push((k.to_string(), value.map(str::to_string)));
    }
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .unwrap_or_else(|| panic!("{k} is set"))
            .1
            .clone()
    };
    assert_eq!(get("LISTEN_ADDR").as_deref(), Some("0.0.0.0:4000"));
    assert!(
        k8s.contains("containerPort: 4000"),
        "the port it listens on"
    );
    let hosts = get("OLLAMA_BASE_URL").unwrap();
    assert!(hosts.split(',').count() > 1, "several hosts: {hosts}");
    assert!(
        hosts.split(',').all(|h| h.starts_with("http://")),
        "{hosts}"
    );
    // The signing key is shared by every replica, from a secret.
    assert_eq!(
        get("THINKING_KEY"),
        None,
        "THINKING_KEY comes from a secret"
    );
    assert!(k8s.contains("key: thinking-key"));
    assert!(k8s.contains("path: /readyz") && k8s.contains("path: /livez"));
    let user = read("Dockerfile")
        .lines()
        .find_map(|l| l.strip_prefix("USER ").map(str::to_string))
        .unwrap();
    assert!(
        k8s.contains(&format!("runAsUser: {user}")),
        "the image's user"
    );
    let secs = |k: &str| get(k).unwrap().parse::<u64>().unwrap();
    let grace: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("terminationGracePeriodSeconds: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        grace > secs("SHUTDOWN_DRAIN_SECS") + secs("SHUTDOWN_GRACE_SECS"),
        "the drain and the grace fit in the pod's grace period"
    );
}

#[tokio::test]
async fn the_health_check_asks_the_running_proxy() {
    let fake = FakeOllama::start().await;
    let p = ProxyChild::start(&fake.base_url(), &[]).await;
    let bin = common::child::proxy_binary();
    let addr = p.url.trim_start_matches("http://").to_string();
    let healthy = tokio::process::Command::new(&bin)
        .arg("--healthcheck")
        .env("LISTEN_ADDR", &addr)
        .status()
        .await
        .unwrap();
    assert!(healthy.success());
    // The wildcard address the container listens on is asked on loopback.
    let port = addr.rsplit(':').next().unwrap();
    let healthy = tokio::process::Command::new(&bin)
        .arg("--healthcheck")
        .env("LISTEN_ADDR", format!("0.0.0.0:{port}"))
        .status()
        .await
        .unwrap();
    assert!(healthy.success());
    drop(p);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Nobody listening: unhealthy, quickly.
    let t = std::time::Instant::now();
    let down = tokio::process::Command::new(&bin)
        .arg("--healthcheck")
        .env("LISTEN_ADDR", &addr)
        .output()
        .await
        .unwrap();
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
}
