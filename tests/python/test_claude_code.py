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


def test_claude_code_web_search_runs_through_the_proxy(recorder, tmp_path):
    """Claude Code's WebSearch tool: the main model calls it; Claude Code
    makes its own sub-request offering the `web_search_20250305` server tool
    (one user message, `Perform a web search for the query: Q`, tool_choice
    forcing web_search); there the fake model calls web_search, the proxy
    runs the search on the Ollama host and streams server_tool_use and
    web_search_tool_result; Claude Code turns the result blocks and the
    summary into the WebSearch tool result, and the main model reads it."""
    from conftest import metric, start_proxy

    p = start_proxy(
        recorder.url,
        DEFAULT_MODEL="qwen3",
        REASONING="forward",
        MODEL_ALIASES="claude-haiku-4-5=llama3.2",
    )
    try:
        call = json.dumps({"query": "rust tower crate"})
        out, _ = claude(p, tmp_path, f"look it up [call:WebSearch:{call}]", "--allowedTools", "WebSearch")
        searches = metric(p, "ollama_translate_web_searches_total", backend="ollama", outcome="ok")
    finally:
        p.stop()
    assert out["is_error"] is False
    assert out["num_turns"] == 2
    result = out["result"]
    # The main model's answer to the WebSearch tool result...
    assert result.startswith("Tool said: Web search results for query: \"rust tower crate\"")
    # ...which has Claude Code's list of the web_search_tool_result hits...
    assert '"url":"https://site1.example/rust-tower-crate"' in result
    assert '"title":"Docs on rust tower crate"' in result
    # ...and the sub-request's answer: the fake model reading the search.
    assert "Site one says: rust tower crate is well documented." in result
    assert sum(m.get("webSearchRequests", 0) for m in out["modelUsage"].values()) == 1

    assert searches == 1
    assert [b["query"] for b in recorder.bodies("/api/experimental/web_search")] == ["rust tower crate"]
    chats = recorder.bodies("/api/chat")
    sub = [c for c in chats if "Perform a web search for the query: rust tower crate" in c["messages"][-1]["content"]]
    assert len(sub) == 1, [c["messages"][-1]["content"][:80] for c in chats]
    assert [t["function"]["name"] for t in sub[0]["tools"]] == ["web_search"]
    follow_up = [c for c in chats if c["messages"][-1]["role"] == "tool" and c["messages"][-1].get("tool_name") == "web_search"]
    assert len(follow_up) == 1
    assert "Site one says: rust tower crate is well documented." in follow_up[0]["messages"][-1]["content"]


def test_claude_code_web_search_error_reaches_the_model(cc_proxy, tmp_path):
    """A search the Ollama host fails (HTTP 500): the sub-request's
    web_search_tool_result_error is what Claude Code reports to the model."""
    call = json.dumps({"query": "unavailable news"})
    out, _ = claude(cc_proxy, tmp_path, f"look it up [call:WebSearch:{call}]", "--allowedTools", "WebSearch")
    assert out["is_error"] is False
    assert out["num_turns"] == 2
    assert "Web search error: unavailable" in out["result"]
    assert 'The web search for "unavailable news" failed (unavailable)' in out["result"]
    assert sum(m.get("webSearchRequests", 0) for m in out["modelUsage"].values()) == 0
