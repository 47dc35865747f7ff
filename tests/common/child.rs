//! The built `examples/proxy` binary as a child process, for what only a
//! process shows: its resident memory and its log.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The binary of example `name` next to this test binary, built (once per
/// test process, by cargo, which rebuilds it only when it is older than its
/// sources) with this test's profile and features. Panics when it cannot be
/// built: a test of a binary never passes without it.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let profile = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let bin = profile.join("examples").join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let target = profile.parent().expect("target/");
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--example", name, "--target-dir"])
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        if cfg!(feature = "otlp") {
            cmd.args(["--features", "otlp"]);
        }
        let status = cmd.status().expect("run cargo build --example");
        assert!(status.success(), "cargo build --example {name}: {status}");
        built.push(name.to_string());
    }
    assert!(bin.exists(), "{} was built", bin.display());
    bin
}

/// The `examples/proxy` binary, built (see [`example_binary`]).
pub fn proxy_binary() -> std::path::PathBuf {
    example_binary("proxy")
}

/// Runs `proxy --check` with only `env` as its environment: the settings
/// it prints (keys hidden), or the error it stops with (exit status 2).
pub fn check(env: &[(&str, &str)]) -> Result<String, String> {
    let out = std::process::Command::new(proxy_binary())
        .arg("--check")
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run proxy --check");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match out.status.code() {
        Some(0) => Ok(text(&out.stdout)),
        Some(2) => Err(text(&out.stderr)),
        other => panic!("proxy --check: exit {other:?}: {}", text(&out.stderr)),
    }
}

/// A running proxy process; killed when dropped.
pub struct ProxyChild {
    pub url: String,
    pub pid: u32,
    /// Every line the proxy logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
    child: Child,
}

impl ProxyChild {
    /// Starts the proxy next to this test binary in front of `ollama`.
    pub async fn start(ollama: &str, env: &[(&str, &str)]) -> ProxyChild {
        ProxyChild::example("proxy", ollama, env).await
    }

    /// Starts example `name` in front of `ollama` with `env` (and nothing
    /// else of the test's environment); it announces its URL on its first
    /// line of output.
    pub async fn example(name: &str, ollama: &str, env: &[(&str, &str)]) -> ProxyChild {
        let mut cmd = Command::new(example_binary(name));
        cmd.env_clear()
            .env("OLLAMA_BASE_URL", ollama)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the proxy");
        let pid = child.id().expect("pid");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = out
            .next_line()
            .await
            .unwrap()
            .expect("the proxy announces its address");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("a URL")
            .to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
        let log2 = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err.next_line().await {
                log2.lock().unwrap().push(line);
            }
        });
        ProxyChild {
            url,
            pid,
            log,
            child,
        }
    }

    /// Whether a logged line contains `text`, waiting up to `timeout`.
    pub async fn wait_for_log(&self, text: &str, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(text)) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (`TERM`, `HUP`, …) through `kill`.
    pub fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {}", self.pid);
    }

    /// Waits for the proxy to exit.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().await.expect("wait for the proxy")
    }

    /// Stops the proxy as `docker stop` would (SIGTERM, through `kill`)
    /// and waits up to `timeout` for it to exit; its exit status.
    pub async fn terminate(&mut self, timeout: std::time::Duration) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {}", self.pid);
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the proxy exits within {timeout:?} of SIGTERM"))
            .expect("wait for the proxy")
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}
