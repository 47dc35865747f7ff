"""The real Claude Code CLI (npm @anthropic-ai/claude-code, pinned in
tests/python_clients.rs) pointed straight at the proxy, no LiteLLM between.

The fake Ollama answers with a tool call when the prompt contains
`[call:NAME:{arguments}]`, so Claude Code really runs its tool, sends the
result back, and gets the final answer. With `[load:NAME:{arguments}]` it
first calls Claude Code's `ToolSearch` for the deferred tool NAME, then NAME
itself once the search has loaded it.
"""

import json
import os
import subprocess

import pytest

CLAUDE = os.environ.get("OT_CLAUDE_BIN")

pytestmark = pytest.mark.skipif(not CLAUDE, reason="Claude Code CLI not installed (needs npm)")


@pytest.fixture(scope="module")
def cc_proxy(fake_ollama):
    from conftest import start_proxy

    p = start_proxy(
        fake_ollama.url,
        DEFAULT_MODEL="qwen3",
        REASONING="forward",
        MODEL_ALIASES="claude-haiku-4-5=llama3.2",
    )
    yield p
    p.stop()


def claude(proxy, tmp_path, *args, env_extra=None):
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": proxy.url,
        "ANTHROPIC_AUTH_TOKEN": "unused",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        **(env_extra or {}),
    }
    r = subprocess.run(
        [CLAUDE, "-p", *args, "--output-format", "json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout), work


def test_claude_code_gets_an_answer(cc_proxy, tmp_path):
    out, _ = claude(cc_proxy, tmp_path, "say hi")
    assert out["is_error"] is False
    assert out["result"].startswith("Hello! You said:")
    assert out["result"].endswith("say hi")
    assert out["usage"]["input_tokens"] > 1000, "Claude Code's system prompt and tools reached Ollama"


def test_claude_code_runs_a_tool_and_reads_its_result(cc_proxy, tmp_path):
    call = json.dumps({"command": "echo proxied-ok > hello.txt && cat hello.txt", "description": "write a file"})
    out, work = claude(cc_proxy, tmp_path, f"please run [call:Bash:{call}]", "--allowedTools", "Bash")
    assert out["is_error"] is False
    assert out["num_turns"] == 2
    assert (work / "hello.txt").read_text().strip() == "proxied-ok"
    assert out["result"] == "Tool said: proxied-ok"


def test_claude_code_searches_for_a_deferred_tool_then_runs_it(cc_proxy, tmp_path):
    # Tool search (beta advanced-tool-use-2025-11-20): CronList is deferred,
    # sent only once ToolSearch's tool_reference has loaded it. The fake calls
    # it only when the search's result names it (the proxy turns the
    # tool_reference into text; it used to reach the model empty) and it is
    # offered; otherwise it answers "The search result does not name
    # CronList" or "CronList is not offered" on the second turn.
    out, _ = claude(
        cc_proxy,
        tmp_path,
        "list my scheduled jobs [load:CronList:{}]",
        "--allowedTools",
        "CronList",
        env_extra={"ENABLE_TOOL_SEARCH": "true"},
    )
    assert out["is_error"] is False, out
    assert out["num_turns"] == 3, out
    assert out["result"].startswith("Tool said: "), out["result"]
    assert "scheduled" in out["result"], out["result"]
