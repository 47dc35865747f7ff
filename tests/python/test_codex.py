"""The real Codex CLI (npm @openai/codex, pinned in tests/python_clients.rs)
on the Responses dialect, configured as a custom provider with
`wire_api = "responses"`, exactly as the README tells users to.

The fake Ollama answers `[call:NAME:{arguments}]` with that tool call, so
Codex really runs `exec_command` and sends the output back.

Codex picks its tools by the model's name (its bundled model catalog): a
GPT-5 family name such as `gpt-5.5` gets the freeform `apply_patch` custom
tool, and `gpt-5.6-*` (`use_responses_lite`) gets its tools in an
`additional_tools` input item, with the code-mode `exec` custom tool in the
`functions` namespace. `MODEL_ALIASES` maps those names to a fake model.
"""

import json
import os
import subprocess

import pytest

CODEX = os.environ.get("OT_CODEX_BIN")

pytestmark = pytest.mark.skipif(not CODEX, reason="Codex CLI not installed (needs npm)")


def codex(proxy, tmp_path, prompt, *flags, config="", stderr=None, model="qwen3"):
    home = tmp_path / "home"
    codex_home = home / ".codex"
    work = tmp_path / "work"
    codex_home.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(
        f'model = "{model}"\n'
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


def through_recorders(fake_ollama, run):
    """Runs `run(front)` against a proxy mapping Codex's GPT model names to the
    fake `qwen3`, with recorders on both sides; returns what Codex sent the
    proxy and what the proxy sent Ollama (`/v1/responses` and `/api/chat`
    bodies) after `run`'s result."""
    from conftest import Recorder, start_proxy

    back = Recorder(fake_ollama.url)
    p = start_proxy(back.url, MODEL_ALIASES="gpt-5.5=qwen3,gpt-5.6-sol=qwen3")
    front = Recorder(p.url)
    try:
        result = run(front)
    finally:
        front.stop()
        p.stop()
        back.stop()
    return result, front.bodies("/v1/responses"), back.bodies("/api/chat")


PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch"


def test_codex_edits_a_file_with_the_freeform_apply_patch(fake_ollama, tmp_path):
    """Codex offers `gpt-5.5` its freeform `apply_patch` (a lark grammar);
    the model's call comes back as a `custom_tool_call`, Codex applies the
    patch in its working directory and sends `custom_tool_call` and
    `custom_tool_call_output` back."""
    call = "[call:apply_patch:" + json.dumps({"input": PATCH}) + "]"
    (out, work), sent, chats = through_recorders(
        fake_ollama,
        lambda front: codex(
            front, tmp_path, f"add hello.txt {call}", "--dangerously-bypass-approvals-and-sandbox", model="gpt-5.5"
        ),
    )
    assert (work / "hello.txt").read_text() == "hi\n"
    assert "Success. Updated the following files:" in out and "A hello.txt" in out
    assert len(sent) == 2 and len(chats) == 2
    (tool,) = [t for t in sent[0]["tools"] if t.get("name") == "apply_patch"]
    assert tool["type"] == "custom"
    assert tool["format"]["type"] == "grammar" and tool["format"]["syntax"] == "lark"
    (fn,) = [t["function"] for t in chats[0]["tools"] if t["function"]["name"] == "apply_patch"]
    assert list(fn["parameters"]["properties"]) == ["input"]
    assert "*** Begin Patch" in fn["description"]
    back = {i["type"]: i for i in sent[1]["input"] if i.get("type", "").startswith("custom_tool_call")}
    assert back["custom_tool_call"]["name"] == "apply_patch"
    assert back["custom_tool_call"]["input"] == PATCH
    assert back["custom_tool_call_output"]["call_id"] == back["custom_tool_call"]["call_id"]
    assert chats[1]["messages"][-1]["role"] == "tool"
    assert chats[1]["messages"][-1]["tool_name"] == "apply_patch"


def test_codex_code_mode_exec_comes_in_additional_tools(fake_ollama, tmp_path):
    """For `gpt-5.6-sol` Codex sends no `tools` but an `additional_tools`
    item whose `functions` namespace holds the custom tool `exec`
    (JavaScript); the model calls `functions__exec`, Codex runs the script
    and sends the result back as content parts."""
    call = "[call:functions__exec:" + json.dumps({"input": 'text("exec-ok " + (6 * 7))'}) + "]"
    (out, _), sent, chats = through_recorders(
        fake_ollama,
        lambda front: codex(
            front, tmp_path, f"run {call}", "--dangerously-bypass-approvals-and-sandbox", model="gpt-5.6-sol"
        ),
    )
    assert "Tool said: Script completed" in out and "exec-ok 42" in out
    assert len(sent) == 2 and len(chats) == 2
    assert "tools" not in sent[0]
    extra = sent[0]["input"][0]
    assert extra["type"] == "additional_tools"
    (functions,) = [t for t in extra["tools"] if t.get("name") == "functions"]
    assert {"type": "custom", "name": "exec"}.items() <= functions["tools"][0].items()
    offered = [t["function"]["name"] for t in chats[0]["tools"]]
    assert "functions__exec" in offered and "functions__wait" in offered
    (back,) = [i for i in sent[1]["input"] if i.get("type") == "custom_tool_call"]
    assert (back["namespace"], back["name"]) == ("functions", "exec")
    assert chats[1]["messages"][-1]["tool_name"] == "functions__exec"
    assert "exec-ok 42" in chats[1]["messages"][-1]["content"]
