//! The built `examples/proxy` binary as a child process, for what only a
//! process shows: its resident memory and its log.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The built `examples/proxy` binary next to this test binary; `None` when
/// it was not built.
pub fn proxy_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("examples").join("proxy");
    bin.exists().then_some(bin)
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
    /// Starts the proxy next to this test binary in front of `ollama`;
    /// `None` when it was not built.
    pub async fn start(ollama: &str, env: &[(&str, &str)]) -> Option<ProxyChild> {
        let mut cmd = Command::new(proxy_binary()?);
        cmd.env("OLLAMA_BASE_URL", ollama)
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
        Some(ProxyChild {
            url,
            pid,
            log,
            child,
        })
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
