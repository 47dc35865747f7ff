"""The real Codex CLI (npm @openai/codex, pinned in tests/python_clients.rs)
on the Responses dialect, configured as a custom provider with
`wire_api = "responses"`, exactly as the README tells users to.

The fake Ollama answers `[call:NAME:{arguments}]` with that tool call, so
Codex really runs `exec_command` and sends the output back.
"""

import os
import subprocess

import pytest

CODEX = os.environ.get("OT_CODEX_BIN")

pytestmark = pytest.mark.skipif(not CODEX, reason="Codex CLI not installed (needs npm)")


def codex(proxy, tmp_path, prompt, *flags):
    home = tmp_path / "home"
    codex_home = home / ".codex"
    work = tmp_path / "work"
    codex_home.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(
        'model = "qwen3"\n'
        'model_provider = "ollama-translate"\n\n'
        "[model_providers.ollama-translate]\n"
        'name = "ollama-translate"\n'
        f'base_url = "{proxy.url}/v1"\n'
        'wire_api = "responses"\n'
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
    }
    r = subprocess.run(
        [CODEX, "exec", "--skip-git-repo-check", *flags, prompt],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout, work


def test_codex_gets_an_answer(proxy, tmp_path):
    out, _ = codex(proxy, tmp_path, "say hi")
    assert out.strip().endswith("Hello! You said: say hi")


def test_codex_runs_a_command_and_reads_its_output(proxy, tmp_path):
    call = '[call:exec_command:{"cmd":"echo codex-ok > c.txt && cat c.txt"}]'
    out, work = codex(
        proxy, tmp_path, f"run {call}", "--dangerously-bypass-approvals-and-sandbox"
    )
    assert (work / "c.txt").read_text().strip() == "codex-ok"
    assert "Tool said:" in out and "codex-ok" in out
