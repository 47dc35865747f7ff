"""The web-search server tools (issue 19), driven by the official SDKs.

A request offering Anthropic's `web_search_*` server tool (or the Responses
`web_search` tool) gets a model that may call a `web_search` function; the
proxy runs the search through the Ollama host's `POST
/api/experimental/web_search` and streams the call and its results in the
client's own shape, then the model's follow-up.

The fake Ollama scripts both sides: `[search:QUERY]` in the user's text makes
the model call `web_search` (`[searches:N:QUERY]`: one search per round, N
rounds, `QUERY 1` … `QUERY N`); once the search result is the last message it
answers `Tool said: <the tool message>`. Its search answers three hits
(`https://site1.example/<slug>`, `https://blocked.example/<slug>`,
`https://docs.rs/<slug>`, each with the text `<Title> says: <query> is well
documented.`), no hits for a query with `nothing`, HTTP 500 for
`unavailable`, 429 for `ratelimited`, a plain 404 for `unsupported`, and
answers after 3 s for `slow`.

Each test gets its own proxy in front of a `Recorder` (conftest), which keeps
what reached the fake Ollama.
"""

import json
import time

import httpx
import pytest
from anthropic import Anthropic
from anthropic.types import (
    ServerToolUseBlock,
    TextBlock,
    WebSearchResultBlock,
    WebSearchToolResultBlock,
    WebSearchToolResultErrorObject,
)
from openai import OpenAI

from conftest import metric, start_proxy

SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
QUERY = "rust tower crate"
SLUG = "rust-tower-crate"
URLS = [
    f"https://site1.example/{SLUG}",
    f"https://blocked.example/{SLUG}",
    f"https://docs.rs/{SLUG}",
]
# What the fake's search says for QUERY, as the model reads it.
HIT_TEXT = f"Site one says: {QUERY} is well documented."
SEARCHES = "ollama_translate_web_searches_total"


@pytest.fixture
def rproxy(recorder):
    """A proxy of its own (fresh metrics) in front of the recorder."""
    p = start_proxy(recorder.url)
    yield p
    p.stop()


def anthropic_client(p):
    return Anthropic(base_url=p.url, api_key="unused", max_retries=0, timeout=30)


def openai_client(p):
    return OpenAI(base_url=p.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def ask(text):
    return {"role": "user", "content": text}


def searched_queries(recorder):
    return [b["query"] for b in recorder.bodies("/api/experimental/web_search")]


def tool_messages(chat_body):
    return [m for m in chat_body["messages"] if m["role"] == "tool"]


def offers_search(chat_body):
    return any(t.get("function", {}).get("name") == "web_search" for t in chat_body.get("tools") or [])


def check_search_message(m, recorder):
    """One search for QUERY, its three hits, and the follow-up that read them."""
    assert [b.type for b in m.content] == ["server_tool_use", "web_search_tool_result", "text"]
    use, result, text = m.content
    assert isinstance(use, ServerToolUseBlock)
    assert use.id.startswith("srvtoolu_")
    assert use.name == "web_search"
    assert use.input == {"query": QUERY}
    assert isinstance(result, WebSearchToolResultBlock)
    assert result.tool_use_id == use.id
    assert isinstance(result.content, list)
    assert all(isinstance(hit, WebSearchResultBlock) for hit in result.content)
    assert [hit.url for hit in result.content] == URLS
    assert result.content[0].title == f"Site one on {QUERY}"
    assert all(hit.type == "web_search_result" and hit.encrypted_content for hit in result.content)
    assert isinstance(text, TextBlock)
    assert text.text.startswith("Tool said: ")
    assert HIT_TEXT in text.text
    assert URLS[0] in text.text
    assert m.stop_reason == "end_turn"
    assert m.usage.server_tool_use is not None
    assert m.usage.server_tool_use.web_search_requests == 1
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0

    # What reached Ollama: the question offering the function, one search,
    # then the follow-up with the call and its results as a tool message.
    assert searched_queries(recorder) == [QUERY]
    first, follow_up = recorder.bodies("/api/chat")
    assert offers_search(first)
    assert first["messages"][-1]["role"] == "user"
    assert [c["function"] for c in follow_up["messages"][-2]["tool_calls"]] == [
        {"name": "web_search", "arguments": {"query": QUERY}}
    ]
    (tool,) = tool_messages(follow_up)
    assert tool["tool_name"] == "web_search"
    assert HIT_TEXT in tool["content"]
    assert text.text == "Tool said: " + tool["content"]
    return tool["content"]


# ---------------------------------------------------------------------------
# Anthropic Messages
# ---------------------------------------------------------------------------


def test_messages_stream_runs_the_search(rproxy, recorder):
    with anthropic_client(rproxy).messages.stream(
        model="qwen3",
        max_tokens=1024,
        tools=[SEARCH_TOOL],
        messages=[ask(f"what is tower? [search:{QUERY}]")],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    check_search_message(final, recorder)
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["server_tool_use", "web_search_tool_result", "text"]
    # The SDK assembled the server_tool_use input from its input_json_delta.
    partial = "".join(e.partial_json for e in events if e.type == "input_json")
    assert json.loads(partial) == {"query": QUERY}
    assert metric(rproxy, SEARCHES, backend="ollama", outcome="ok") == 1


def test_messages_create_runs_the_search(rproxy, recorder):
    m = anthropic_client(rproxy).messages.create(
        model="llama3.2",
        max_tokens=1024,
        tools=[SEARCH_TOOL],
        messages=[ask(f"what is tower? [search:{QUERY}]")],
    )
    check_search_message(m, recorder)


@pytest.mark.parametrize(
    "word, code",
    [("unavailable", "unavailable"), ("ratelimited", "too_many_requests"), ("unsupported", "unavailable")],
)
def test_messages_failed_search_is_an_error_result(rproxy, recorder, word, code):
    query = f"{word} news"
    m = anthropic_client(rproxy).messages.create(
        model="llama3.2",
        max_tokens=1024,
        tools=[SEARCH_TOOL],
        messages=[ask(f"[search:{query}]")],
    )
    assert [b.type for b in m.content] == ["server_tool_use", "web_search_tool_result", "text"]
    result = m.content[1]
    assert result.tool_use_id == m.content[0].id
    assert isinstance(result.content, WebSearchToolResultErrorObject)
    assert result.content.type == "web_search_tool_result_error"
    assert result.content.error_code == code
    # The model was told, and answered.
    assert m.content[2].text.startswith("Tool said: ")
    assert f"failed ({code})" in m.content[2].text
    # A failed search is not counted as one.
    assert m.usage.server_tool_use is None or m.usage.server_tool_use.web_search_requests == 0
    assert searched_queries(recorder) == [query]
    assert metric(rproxy, SEARCHES, backend="ollama", outcome=code) == 1
    assert metric(rproxy, SEARCHES, backend="ollama", outcome="ok") == 0


def test_messages_stream_error_result(rproxy):
    with anthropic_client(rproxy).messages.stream(
        model="qwen3",
        max_tokens=1024,
        tools=[SEARCH_TOOL],
        messages=[ask("[search:unavailable news]")],
    ) as stream:
        final = stream.get_final_message()
    result = final.content[1]
    assert isinstance(result, WebSearchToolResultBlock)
    assert isinstance(result.content, WebSearchToolResultErrorObject)
    assert result.content.error_code == "unavailable"
    assert final.content[-1].text.startswith("Tool said: ")


def test_messages_search_with_no_hits(rproxy):
    m = anthropic_client(rproxy).messages.create(
        model="llama3.2",
        max_tokens=1024,
        tools=[SEARCH_TOOL],
        messages=[ask("[search:nothing at all]")],
    )
    assert m.content[1].type == "web_search_tool_result"
    assert m.content[1].content == []
    assert "found nothing" in m.content[-1].text
    assert m.usage.server_tool_use.web_search_requests == 1


def test_messages_max_uses_bounds_the_rounds(rproxy, recorder):
    """The model would search three times; max_uses 2 lets it search twice,
    and then it must answer (the function is no longer offered)."""
    m = anthropic_client(rproxy).messages.create(
        model="llama3.2",
        max_tokens=1024,
        tools=[dict(SEARCH_TOOL, max_uses=2)],
        messages=[ask("[searches:3:tower]")],
    )
    kinds = [b.type for b in m.content]
    assert kinds == ["server_tool_use", "web_search_tool_result"] * 2 + ["text"]
    assert [b.input["query"] for b in m.content if b.type == "server_tool_use"] == ["tower 1", "tower 2"]
    assert m.usage.server_tool_use.web_search_requests == 2
    assert searched_queries(recorder) == ["tower 1", "tower 2"]
    chats = recorder.bodies("/api/chat")
    assert len(chats) == 3
    assert [offers_search(c) for c in chats] == [True, True, False]
    assert len(tool_messages(chats[-1])) == 2
    assert m.content[-1].text.startswith("Tool said: ")


def test_messages_blocked_domains_are_filtered(rproxy):
    m = anthropic_client(rproxy).messages.create(
        model="llama3.2",
        max_tokens=1024,
        tools=[dict(SEARCH_TOOL, blocked_domains=["blocked.example"])],
        messages=[ask(f"[search:{QUERY}]")],
    )
    assert [hit.url for hit in m.content[1].content] == [URLS[0], URLS[2]]
    assert "blocked.example" not in m.content[-1].text


def test_messages_history_round_trip(rproxy, recorder):
    """The SDK's final message sent back as the assistant turn: accepted, and
    the model reads the search as it did the first time."""
    c = anthropic_client(rproxy)
    question = ask(f"what is tower? [search:{QUERY}]")
    with c.messages.stream(model="qwen3", max_tokens=1024, tools=[SEARCH_TOOL], messages=[question]) as stream:
        first = stream.get_final_message()
    seen = check_search_message(first, recorder)

    again = c.messages.with_raw_response.create(
        model="qwen3",
        max_tokens=1024,
        tools=[SEARCH_TOOL],
        messages=[question, {"role": "assistant", "content": first.content}, ask("thanks")],
    )
    assert again.http_response.status_code == 200
    second = again.parse()
    assert second.content[-1].text == "Hello! You said: thanks"
    assert second.usage.server_tool_use is None, "no new search"
    assert searched_queries(recorder) == [QUERY]

    native = recorder.bodies("/api/chat")[-1]
    roles = [m["role"] for m in native["messages"]]
    assert roles[-4:] == ["assistant", "tool", "assistant", "user"]
    call, tool, answer = native["messages"][-4:-1]
    assert call["tool_calls"][0]["function"] == {"name": "web_search", "arguments": {"query": QUERY}}
    assert tool["tool_name"] == "web_search"
    assert tool["content"] == seen, "the sealed hits gave the model the same text"
    assert answer["content"] == first.content[2].text


def test_messages_stream_pings_while_searching(make_proxy):
    """A slow search (3 s) with KEEPALIVE_SECS=1: the client hears pings
    between the call and its result."""
    p = make_proxy(KEEPALIVE_SECS=1)
    body = {
        "model": "llama3.2",
        "max_tokens": 1024,
        "stream": True,
        "tools": [SEARCH_TOOL],
        "messages": [ask("[search:slow news]")],
    }
    events = []  # (seconds since the request, event name, data)
    start = time.monotonic()
    with httpx.stream("POST", p.url + "/v1/messages", json=body, timeout=30) as r:
        assert r.status_code == 200
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((time.monotonic() - start, name, json.loads(line[len("data: "):])))

    def block_start(kind):
        return next(
            i
            for i, (_, n, d) in enumerate(events)
            if n == "content_block_start" and d["content_block"]["type"] == kind
        )

    call, result = block_start("server_tool_use"), block_start("web_search_tool_result")
    assert call < result
    between = events[call:result]
    pings = [t for t, n, _ in between if n == "ping"]
    assert len(pings) >= 2, [n for _, n, _ in events]
    assert all(d == {"type": "ping"} for _, n, d in between if n == "ping")
    assert events[result][0] - events[call][0] >= 2.5, "the search took its 3 s"
    assert pings[0] - events[call][0] < 2.0, "the first ping came within a keep-alive or so"
    assert events[-1][1] == "message_stop"
    assert events[result][2]["content_block"]["content"][0]["url"] == "https://site1.example/slow-news"


def test_messages_search_past_its_deadline_is_unavailable(make_proxy):
    """WEB_SEARCH_TIMEOUT_SECS=1 and a 3 s search: the model goes on without it."""
    p = make_proxy(WEB_SEARCH_TIMEOUT_SECS=1)
    start = time.monotonic()
    m = anthropic_client(p).messages.create(
        model="llama3.2", max_tokens=1024, tools=[SEARCH_TOOL], messages=[ask("[search:slow news]")]
    )
    assert time.monotonic() - start < 2.5
    assert m.content[1].content.error_code == "unavailable"
    assert "failed (unavailable)" in m.content[-1].text


def test_messages_search_off_drops_the_tool(recorder):
    p = start_proxy(recorder.url, WEB_SEARCH="off")
    try:
        m = anthropic_client(p).messages.create(
            model="llama3.2", max_tokens=1024, tools=[SEARCH_TOOL], messages=[ask(f"[search:{QUERY}]")]
        )
    finally:
        p.stop()
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == f"Hello! You said: [search:{QUERY}]"
    assert m.usage.server_tool_use is None
    assert searched_queries(recorder) == []
    assert not offers_search(recorder.bodies("/api/chat")[0])


def test_responses_stream_keeps_alive_while_searching(make_proxy):
    """The Responses stream's keep-alive comments during a 3 s search."""
    p = make_proxy(KEEPALIVE_SECS=1)
    body = {"model": "llama3.2", "stream": True, "input": "[search:slow news]", "tools": [{"type": "web_search"}]}
    lines = []  # (seconds since the request, line)
    start = time.monotonic()
    with httpx.stream("POST", p.url + "/v1/responses", json=body, timeout=30) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line:
                lines.append((time.monotonic() - start, line))
    names = [line for _, line in lines if not line.startswith("data: ")]
    searching = names.index("event: response.web_search_call.searching")
    completed = names.index("event: response.web_search_call.completed")
    assert names[searching + 1 : completed].count(": keep-alive") >= 2, names
    assert names[-1] == "event: response.completed"


# ---------------------------------------------------------------------------
# OpenAI Responses
# ---------------------------------------------------------------------------


def check_search_response(r, recorder, sources):
    assert r.status == "completed"
    assert [o.type for o in r.output] == ["web_search_call", "message"]
    call = r.output[0]
    assert call.status == "completed"
    assert call.action.type == "search"
    assert call.action.query == QUERY
    if sources:
        assert call.action.sources is not None
        assert [(s.type, s.url) for s in call.action.sources] == [("url", u) for u in URLS]
    else:
        assert not call.action.sources
    assert r.output_text.startswith("Tool said: ")
    assert HIT_TEXT in r.output_text
    assert searched_queries(recorder) == [QUERY]
    first, follow_up = recorder.bodies("/api/chat")
    assert offers_search(first)
    (tool,) = tool_messages(follow_up)
    assert r.output_text == "Tool said: " + tool["content"]
    return call


@pytest.mark.parametrize("include", [False, True])
def test_responses_stream_runs_the_search(rproxy, recorder, include):
    extra = {"include": ["web_search_call.action.sources"]} if include else {}
    with openai_client(rproxy).responses.stream(
        model="qwen3", input=f"what is tower? [search:{QUERY}]", tools=[{"type": "web_search"}], **extra
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    call = check_search_response(final, recorder, sources=include)
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    search_events = [e for e in events if e.type.startswith("response.web_search_call.")]
    assert [e.type for e in search_events] == [
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
    ]
    assert {e.item_id for e in search_events} == {call.id}
    assert {e.output_index for e in search_events} == {0}
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.type == "web_search_call" and added.item.id == call.id
    done = next(e for e in events if e.type == "response.output_item.done")
    assert done.item.type == "web_search_call"
    assert done.item.action.query == QUERY
    assert kinds.index("response.web_search_call.completed") < kinds.index("response.output_text.delta")
    assert kinds[-1] == "response.completed"


def test_responses_create_runs_the_search(rproxy, recorder):
    r = openai_client(rproxy).responses.create(
        model="llama3.2",
        input=f"what is tower? [search:{QUERY}]",
        tools=[{"type": "web_search"}],
        include=["web_search_call.action.sources"],
    )
    check_search_response(r, recorder, sources=True)


def test_responses_failed_search(rproxy, recorder):
    r = openai_client(rproxy).responses.create(
        model="llama3.2", input="[search:unavailable news]", tools=[{"type": "web_search"}]
    )
    call = r.output[0]
    assert call.type == "web_search_call"
    assert call.status == "failed"
    assert call.action.query == "unavailable news"
    assert "failed (unavailable)" in r.output_text
    assert searched_queries(recorder) == ["unavailable news"]


def test_responses_history_round_trip(rproxy, recorder):
    """The output items sent back as input: the web_search_call becomes the
    model's call and a tool message naming what the item still says (its
    sources' addresses; the page text is not kept)."""
    c = openai_client(rproxy)
    question = {"role": "user", "content": f"what is tower? [search:{QUERY}]"}
    first = c.responses.create(
        model="qwen3", input=[question], tools=[{"type": "web_search"}], include=["web_search_call.action.sources"]
    )
    check_search_response(first, recorder, sources=True)
    history = [o.model_dump(exclude_none=True) for o in first.output]
    second = c.responses.with_raw_response.create(
        model="qwen3",
        tools=[{"type": "web_search"}],
        input=[question, *history, {"role": "user", "content": "thanks"}],
    )
    assert second.http_response.status_code == 200
    assert second.parse().output_text == "Hello! You said: thanks"
    assert searched_queries(recorder) == [QUERY], "no new search"
    native = recorder.bodies("/api/chat")[-1]
    assert [m["role"] for m in native["messages"]][-4:] == ["assistant", "tool", "assistant", "user"]
    call, tool, answer, thanks = native["messages"][-4:]
    assert call["tool_calls"][0]["function"] == {"name": "web_search", "arguments": {"query": QUERY}}
    assert tool["tool_name"] == "web_search"
    assert all(url in tool["content"] for url in URLS)
    assert answer["content"] == first.output_text
    assert thanks["content"] == "thanks"

    # Without sources the item still stands for the search, as a note.
    bare = [dict(history[0], action={"type": "search", "query": QUERY}), history[1]]
    c.responses.create(model="qwen3", input=[question, *bare, {"role": "user", "content": "more"}])
    tool = tool_messages(recorder.bodies("/api/chat")[-1])[0]
    assert tool["tool_name"] == "web_search"
    assert QUERY in tool["content"] and "site1.example" not in tool["content"]
