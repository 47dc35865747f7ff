"""OpenAI Responses through the proxy, driven by the official SDK (and, for
the Codex shape, by raw httpx)."""

import json

import httpx
import openai
import pytest
from openai import OpenAI

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def client(p):
    return OpenAI(base_url=p.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def dump(items):
    return [i.model_dump(exclude_none=True) for i in items]


def test_create_text(proxy):
    r = client(proxy).responses.create(
        model="llama3.2", instructions="Be nice.", input="hi there", max_output_tokens=100
    )
    assert r.object == "response"
    assert r.status == "completed"
    assert r.model == "llama3.2"
    assert r.output_text == "Hello! You said: hi there"
    assert r.output[0].type == "message"
    assert r.output[0].id.startswith("msg_")
    assert r.instructions == "Be nice."
    assert r.max_output_tokens == 100
    assert r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.usage.input_tokens_details.cached_tokens == 0


def test_stream_helper_text(proxy):
    with client(proxy).responses.stream(
        model="llama3.2",
        input=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "stream me"}]}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Hello! You said: stream me"
    assert final.output_text == "Hello! You said: stream me"
    assert final.status == "completed"


def test_function_call_round_trip(proxy):
    c = client(proxy)
    with c.responses.stream(
        model="qwen3", input="What's the weather in Tokyo?", tools=[WEATHER_TOOL], tool_choice="auto"
    ) as stream:
        final = stream.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Tokyo"}
    assert call.id.startswith("fc_")

    r = c.responses.create(
        model="qwen3",
        tools=[WEATHER_TOOL],
        input=[
            {"role": "user", "content": "What's the weather in Tokyo?"},
            *dump(final.output),
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 25C"},
        ],
    )
    assert r.output_text == "Tool said: Sunny, 25C"


APPLY_PATCH_TOOL = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files with a patch.",
    "format": {
        "type": "grammar",
        "syntax": "lark",
        "definition": 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n',
    },
}
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch"


def test_custom_tool_round_trip(recorder):
    """A custom (freeform) tool: the model gets a function of one string,
    `input`; its call is a `custom_tool_call` with the text, streamed as
    `response.custom_tool_call_input.delta`/`.done`; the output sent back
    reaches the model, and its answer the client."""
    from conftest import start_proxy

    p = start_proxy(recorder.url)
    try:
        c = client(p)
        prompt = "add hello.txt [call:apply_patch:" + json.dumps({"input": PATCH}) + "]"
        with c.responses.stream(model="llama3.2", input=prompt, tools=[APPLY_PATCH_TOOL]) as stream:
            events = list(stream)
            final = stream.get_final_response()
        kinds = [e.type for e in events]
        assert kinds.index("response.custom_tool_call_input.delta") < kinds.index(
            "response.custom_tool_call_input.done"
        )
        delta = "".join(e.delta for e in events if e.type == "response.custom_tool_call_input.delta")
        (done,) = [e for e in events if e.type == "response.custom_tool_call_input.done"]
        (call,) = [o for o in final.output if o.type == "custom_tool_call"]
        assert delta == done.input == call.input == PATCH
        assert done.item_id == call.id and call.id.startswith("ctc_")
        assert call.name == "apply_patch" and call.call_id

        r = c.responses.create(
            model="llama3.2",
            tools=[APPLY_PATCH_TOOL],
            input=[
                {"role": "user", "content": prompt},
                *dump(final.output),
                {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done: A hello.txt"},
            ],
        )
        assert r.output_text == "Tool said: Done: A hello.txt"
    finally:
        p.stop()
    first, second = recorder.bodies("/api/chat")
    (fn,) = [t["function"] for t in first["tools"]]
    assert fn["name"] == "apply_patch"
    assert fn["parameters"]["properties"]["input"]["type"] == "string"
    assert fn["parameters"]["required"] == ["input"]
    assert fn["description"].startswith("Edit files with a patch.")
    assert '"*** Begin Patch" LF' in fn["description"]
    call_msg, tool_msg = second["messages"][-2:]
    assert call_msg["tool_calls"][0]["function"] == {"name": "apply_patch", "arguments": {"input": PATCH}}
    assert tool_msg == {
        "role": "tool",
        "content": "Done: A hello.txt",
        "tool_name": "apply_patch",
        "tool_call_id": call.call_id,
    }


def test_custom_tool_in_additional_tools_continues_by_previous_response_id(recorder):
    """Tools in an `additional_tools` input item (as Codex sends them) are
    offered like `tools`, a custom one inside a namespace included; the kept
    conversation still offers them when the output comes back with
    `previous_response_id` alone."""
    from conftest import start_proxy

    p = start_proxy(recorder.url)
    try:
        c = client(p)
        extra = {
            "type": "additional_tools",
            "role": "developer",
            "tools": [
                {
                    "type": "namespace",
                    "name": "functions",
                    "description": "",
                    "tools": [{"type": "custom", "name": "exec", "description": "Run JavaScript."}],
                }
            ],
        }
        prompt = "run [call:functions__exec:" + json.dumps({"input": "text(6 * 7)"}) + "]"
        r = c.responses.create(model="llama3.2", input=[extra, {"role": "user", "content": prompt}])
        (call,) = [o for o in r.output if o.type == "custom_tool_call"]
        assert (call.namespace, call.name, call.input) == ("functions", "exec", "text(6 * 7)")

        r = c.responses.create(
            model="llama3.2",
            previous_response_id=r.id,
            input=[
                {
                    "type": "custom_tool_call_output",
                    "call_id": call.call_id,
                    "output": [{"type": "input_text", "text": "42"}],
                }
            ],
        )
        assert r.output_text == "Tool said: 42"
    finally:
        p.stop()
    first, second = recorder.bodies("/api/chat")
    for chat in (first, second):
        assert [t["function"]["name"] for t in chat["tools"]] == ["functions__exec"]
    assert second["messages"][-2]["tool_calls"][0]["function"] == {
        "name": "functions__exec",
        "arguments": {"input": "text(6 * 7)"},
    }
    assert second["messages"][-1]["tool_name"] == "functions__exec"


def test_two_parallel_calls(proxy):
    r = client(proxy).responses.create(
        model="llama3.2", input="weather in two cities", tools=[WEATHER_TOOL], parallel_tool_calls=True
    )
    calls = [o for o in r.output if o.type == "function_call"]
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Tokyo", "Paris"]
    assert calls[0].call_id != calls[1].call_id


def test_reasoning_item_round_trip(proxy_forward):
    c = client(proxy_forward)
    with c.responses.stream(
        model="qwen3",
        input="Why is the sky blue?",
        reasoning={"effort": "medium", "summary": "auto"},
        include=["reasoning.encrypted_content"],
    ) as stream:
        events = list(stream)
        first = stream.get_final_response()
    assert "response.reasoning_summary_text.delta" in [e.type for e in events]
    reasoning = first.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "Let me think about this."
    assert reasoning.encrypted_content.startswith("v1.")
    assert first.output_text == "Hello! You said: Why is the sky blue?"

    second = c.responses.create(
        model="qwen3",
        include=["reasoning.encrypted_content"],
        input=[
            {"role": "user", "content": "Why is the sky blue?"},
            *dump(first.output),
            {"role": "user", "content": "And sunsets?"},
        ],
    )
    assert second.status == "completed"
    assert second.output_text == "Hello! You said: And sunsets?"

    # Without include there is a summary but no encrypted_content.
    plain = c.responses.create(model="qwen3", input="hm")
    assert plain.output[0].type == "reasoning"
    assert plain.output[0].encrypted_content is None


def test_length_cut_is_incomplete(proxy):
    r = client(proxy).responses.create(model="llama3.2", input="go on [length]")
    assert r.status == "incomplete"
    assert r.incomplete_details.reason == "max_output_tokens"

    with client(proxy).responses.stream(model="llama3.2", input="go on [length]") as stream:
        events = list(stream)
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.status == "incomplete"


def test_mid_stream_error_yields_response_failed(proxy):
    with client(proxy).responses.stream(model="llama3.2", input="boom [error]") as stream:
        events = list(stream)
        # The helper only finishes on response.completed.
        with pytest.raises(RuntimeError, match="response.completed"):
            stream.get_final_response()
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error.code == "server_error"
    assert "runner" in failed.response.error.message

    # Raw stream=True iteration sees the same event and no exception.
    kinds = [e.type for e in client(proxy).responses.create(model="llama3.2", input="boom [error]", stream=True)]
    assert kinds[-1] == "response.failed"


def test_unknown_model_is_not_found(proxy):
    with pytest.raises(openai.NotFoundError) as e:
        client(proxy).responses.create(model="nosuch", input="hi")
    assert "nosuch" in str(e.value)


def test_an_unknown_previous_response_id_is_openai_s_404(proxy):
    with pytest.raises(openai.NotFoundError) as e:
        client(proxy).responses.create(model="llama3.2", input="hi", previous_response_id="resp_123")
    assert e.value.body["param"] == "previous_response_id"
    assert e.value.body["code"] == "previous_response_not_found"


def test_codex_shaped_request(proxy):
    body = {
        "model": "llama3.2",
        "instructions": "You are a coding agent.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions/>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather in Tokyo?"}]},
        ],
        "tools": [
            {
                "type": "function",
                "name": "exec_command",
                "description": "Runs a command",
                "strict": False,
                "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
            },
            {
                "type": "namespace",
                "name": "mcp__weather__",
                "description": "Weather server",
                "tools": [
                    {
                        "type": "function",
                        "name": "get_forecast",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    }
                ],
            },
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "019a-session",
        "client_metadata": {"x-codex-installation-id": "abc"},
    }
    headers = {
        "authorization": "Bearer unused",
        "originator": "codex_cli_rs",
        "x-codex-turn-metadata": "{}",
        "accept": "text/event-stream",
    }
    events = []
    with httpx.stream("POST", proxy.url + "/v1/responses", json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
                assert data["type"] == name
                events.append(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.completed"
    call = events[-1]["response"]["output"][0]
    assert call["type"] == "function_call"
    assert call["name"] == "get_forecast"
    assert call["namespace"] == "mcp__weather__"
