//! Runs the Python client tests (`tests/python`, the official `openai` and
//! `anthropic` packages) against the real proxy and fake Ollama binaries.
//!
//! The virtualenv is created in `target/py-venv` on first use from the
//! pinned `tests/python/requirements.txt` (the package registry must be
//! reachable then; afterwards everything runs offline). Set
//! `OT_SKIP_PYTHON=1` to skip.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A virtualenv with the pinned packages, reused while the pins are unchanged.
fn venv() -> PathBuf {
    let venv = target_dir().join("py-venv");
    let python = venv.join("bin").join("python");
    let reqs = root().join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&reqs).expect("requirements.txt");
    let stamp = venv.join("requirements.stamp");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let (ok, out) = run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv));
    assert!(ok, "python3 -m venv failed:\n{out}");
    let (ok, out) = run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&reqs));
    assert!(
        ok,
        "pip install -r tests/python/requirements.txt failed:\n{out}"
    );
    std::fs::write(&stamp, wanted).expect("write stamp");
    python
}

/// The Claude Code CLI version the end-to-end test drives (pinned).
const CLAUDE_CODE: &str = "@anthropic-ai/claude-code@2.1.197";

/// Installs the pinned Claude Code CLI into `target/claude-code` (its
/// platform package carries a native binary; no install script needed) and
/// returns the binary, or `None` where npm is not available.
fn claude_code() -> Option<PathBuf> {
    let dir = target_dir().join("claude-code");
    let find = |dir: &Path| -> Option<PathBuf> {
        let scope = dir.join("node_modules").join("@anthropic-ai");
        std::fs::read_dir(scope)
            .ok()?
            .flatten()
            .map(|e| e.path().join("claude"))
            .find(|p| {
                p.is_file()
                    && p.parent()
                        .and_then(|d| d.file_name())
                        .is_some_and(|n| n.to_string_lossy().starts_with("claude-code-linux"))
            })
    };
    let stamp = dir.join("version.stamp");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(CLAUDE_CODE) {
        if let Some(bin) = find(&dir) {
            return Some(bin);
        }
    }
    if Command::new("npm").arg("--version").output().is_err() {
        eprintln!("npm not found: the Claude Code end-to-end test will be skipped");
        return None;
    }
    std::fs::create_dir_all(&dir).expect("create target/claude-code");
    let (ok, out) = run(Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--prefix",
        ])
        .arg(&dir)
        .arg(CLAUDE_CODE));
    assert!(ok, "npm install {CLAUDE_CODE} failed:\n{out}");
    let bin =
        find(&dir).unwrap_or_else(|| panic!("no native claude binary after npm install:\n{out}"));
    std::fs::write(&stamp, CLAUDE_CODE).expect("write stamp");
    Some(bin)
}

fn binaries_exist(dir: &Path) -> bool {
    ["proxy", "fake_ollama"]
        .iter()
        .all(|b| dir.join("examples").join(b).exists())
}

#[test]
fn python_client_suites() {
    if std::env::var_os("OT_SKIP_PYTHON").is_some() {
        eprintln!("OT_SKIP_PYTHON set: skipping the Python client tests");
        return;
    }
    // `cargo test` builds the examples into target/debug/examples; make sure.
    let profile_dir = target_dir().join("debug");
    if !binaries_exist(&profile_dir) {
        let (ok, out) = run(Command::new(env!("CARGO"))
            .args(["build", "--examples"])
            .current_dir(root()));
        assert!(ok, "cargo build --examples failed:\n{out}");
    }
    let python = venv();
    let mut pytest = Command::new(&python);
    pytest
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/python",
        ])
        .current_dir(root())
        .env("CARGO_TARGET_DIR", target_dir());
    if let Some(claude) = claude_code() {
        pytest.env("OT_CLAUDE_BIN", claude);
    }
    let (ok, out) = run(&mut pytest);
    println!("{out}");
    assert!(ok, "Python client tests failed:\n{out}");
    assert!(out.contains(" passed"), "pytest ran no test:\n{out}");
}
