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


def codex(proxy, tmp_path, prompt, *flags, config="", stderr=None):
    home = tmp_path / "home"
    codex_home = home / ".codex"
    work = tmp_path / "work"
    codex_home.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(
        'model = "qwen3"\n'
        'model_provider = "ollama-translate"\n'
        f"{config}\n\n"
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
    if stderr is not None:
        stderr.append(r.stderr)
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


def test_codex_web_search_runs_through_the_proxy(recorder, tmp_path):
    """`web_search = "live"`: Codex 0.169 offers `{"type":"web_search",
    "external_web_access":true}`; the fake model calls web_search, the proxy
    runs the search on the Ollama host, streams the web_search_call item and
    its events (Codex shows `web search: <query>`), and the model's answer
    reads the results."""
    from conftest import Recorder, metric, start_proxy

    p = start_proxy(recorder.url)
    front = Recorder(p.url)  # what Codex sends
    log = []
    try:
        out, _ = codex(
            front, tmp_path, "what is tower? [search:rust tower crate]", config='web_search = "live"', stderr=log
        )
        searches = metric(p, "ollama_translate_web_searches_total", backend="ollama", outcome="ok")
    finally:
        front.stop()
        p.stop()
    (sent,) = front.bodies("/v1/responses")
    assert {"type": "web_search", "external_web_access": True} in sent["tools"]
    assert "web search: rust tower crate" in log[0], log[0]
    assert "Tool said: Web search results for \"rust tower crate\"" in out
    assert "Site one says: rust tower crate is well documented." in out
    assert "https://site1.example/rust-tower-crate" in out
    assert searches == 1
    assert [b["query"] for b in recorder.bodies("/api/experimental/web_search")] == ["rust tower crate"]
    chats = recorder.bodies("/api/chat")
    assert len(chats) == 2, "the question, and the follow-up after the search"
    assert any(t.get("function", {}).get("name") == "web_search" for t in chats[0]["tools"])
    assert chats[1]["messages"][-1]["role"] == "tool"
    assert chats[1]["messages"][-1]["tool_name"] == "web_search"
