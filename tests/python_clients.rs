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
    let (ok, out) = run(Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/python",
        ])
        .current_dir(root())
        .env("CARGO_TARGET_DIR", target_dir()));
    println!("{out}");
    assert!(ok, "Python client tests failed:\n{out}");
    assert!(out.contains(" passed"), "pytest ran no test:\n{out}");
}
