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

/// The client CLIs the end-to-end tests drive (pinned): npm package, the
/// folder under `target/` it goes to, and where its platform package keeps
/// the native binary (relative to `node_modules`).
const CLAUDE_CODE: (&str, &str, &str) = (
    "@anthropic-ai/claude-code@2.1.332",
    "claude-code",
    "@anthropic-ai/claude-code-linux-x64/claude",
);
const CODEX: (&str, &str, &str) = (
    "@openai/codex@0.169.0",
    "codex",
    "@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
);

/// Installs a pinned CLI from npm into `target/<dir>` (its platform package
/// carries a native binary; no install script runs) and returns the binary,
/// or `None` where npm is not available or the machine is not x86-64 Linux.
fn npm_cli((spec, dir, bin): (&str, &str, &str)) -> Option<PathBuf> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return None;
    }
    let dir = target_dir().join(dir);
    let binary = dir.join("node_modules").join(bin);
    let stamp = dir.join("version.stamp");
    if binary.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(spec) {
        return Some(binary);
    }
    if Command::new("npm").arg("--version").output().is_err() {
        eprintln!("npm not found: the {spec} end-to-end tests will be skipped");
        return None;
    }
    std::fs::create_dir_all(&dir).expect("create the CLI folder");
    let (ok, out) = run(Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--prefix",
        ])
        .arg(&dir)
        .arg(spec));
    assert!(ok, "npm install {spec} failed:\n{out}");
    assert!(
        binary.is_file(),
        "no {} after npm install:\n{out}",
        binary.display()
    );
    std::fs::write(&stamp, spec).expect("write stamp");
    Some(binary)
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
    if let Some(claude) = npm_cli(CLAUDE_CODE) {
        pytest.env("OT_CLAUDE_BIN", claude);
    }
    if let Some(codex) = npm_cli(CODEX) {
        pytest.env("OT_CODEX_BIN", codex);
    }
    let (ok, out) = run(&mut pytest);
    println!("{out}");
    assert!(ok, "Python client tests failed:\n{out}");
    assert!(out.contains(" passed"), "pytest ran no test:\n{out}");
}
