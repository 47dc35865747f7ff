"""OpenAI Chat Completions through the proxy, driven by the official SDK."""

import httpx
import openai
import pytest
from openai import OpenAI

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def client(p, **kw):
    return OpenAI(base_url=p.url + "/v1", api_key="unused", max_retries=0, timeout=30, **kw)


def test_non_streaming_text(proxy):
    r = client(proxy).chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "hi there"}]
    )
    assert r.object == "chat.completion"
    assert r.model == "llama3.2"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "Hello! You said: hi there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_text_with_usage(proxy):
    stream = client(proxy).chat.completions.create(
        model="llama3.2",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1, "one id per response"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello! You said: stream me"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens > 0


def test_stream_helper_accumulates_a_tool_call(proxy):
    with client(proxy).chat.completions.stream(
        model="qwen3",
        messages=[{"role": "user", "content": "What's the weather in Tokyo?"}],
        tools=[WEATHER_TOOL],
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert call.function.parsed_arguments == {"city": "Tokyo"} or call.function.arguments == '{"city":"Tokyo"}'


def test_two_calls_in_one_ollama_chunk_stay_separate(proxy):
    with client(proxy).chat.completions.stream(
        model="qwen3",
        messages=[{"role": "user", "content": "weather in two cities please"}],
        tools=[WEATHER_TOOL],
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [c.function.arguments for c in calls] == ['{"city":"Tokyo"}', '{"city":"Paris"}']
    assert calls[0].id != calls[1].id


def test_tool_call_on_the_done_line(proxy):
    stream = client(proxy).chat.completions.create(
        model="gpt-oss:20b",
        messages=[{"role": "user", "content": "weather in Tokyo?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = list(stream)
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].index == 0 and calls[0].function.name == "get_weather"
    assert calls[1].function.arguments == '{"city":"Tokyo"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_round_trip(proxy):
    c = client(proxy)
    first = c.chat.completions.create(
        model="qwen3",
        messages=[{"role": "user", "content": "weather in Tokyo?"}],
        tools=[WEATHER_TOOL],
    )
    call = first.choices[0].message.tool_calls[0]
    second = c.chat.completions.create(
        model="qwen3",
        messages=[
            {"role": "user", "content": "weather in Tokyo?"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert "sunny, 21C" in second.choices[0].message.content


def test_unknown_model_is_not_found(proxy):
    with pytest.raises(openai.NotFoundError) as e:
        client(proxy).chat.completions.create(
            model="nosuch", messages=[{"role": "user", "content": "hi"}]
        )
    assert "nosuch" in str(e.value)
    assert e.value.body["type"] == "not_found_error"


def test_mid_stream_error_raises(proxy):
    stream = client(proxy).chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "[error] please"}], stream=True
    )
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            got.append(chunk)
    assert "unexpectedly stopped" in str(e.value)
    assert any(c.choices and c.choices[0].delta.content for c in got), "partial text arrived first"


def test_dropped_connection_is_not_a_clean_finish(proxy):
    stream = client(proxy).chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "[drop] now"}], stream=True
    )
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for _ in stream:
            pass


def test_bad_requests_name_the_parameter(proxy):
    c = client(proxy)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(
            model="llama3.2",
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "http://example.com/cat.png"}},
            ]}],
        )
    assert e.value.body["param"] == "messages[0].content[1].image_url"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="llama3.2", n=2, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["param"] == "n"
    # And the proxy keeps serving.
    ok = c.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "still there?"}])
    assert ok.choices[0].message.content.endswith("still there?")


def test_reasoning_forwarded_as_reasoning_content(proxy_forward):
    stream = client(proxy_forward).chat.completions.create(
        model="qwen3", messages=[{"role": "user", "content": "think first"}], stream=True
    )
    reasoning, text = "", ""
    for chunk in stream:
        d = chunk.choices[0].delta
        reasoning += getattr(d, "reasoning_content", None) or ""
        text += d.content or ""
    assert reasoning == "Let me think about this."
    assert text == "Hello! You said: think first"


def test_reasoning_dropped_by_default(proxy):
    r = client(proxy).chat.completions.create(
        model="qwen3", messages=[{"role": "user", "content": "think first"}]
    )
    assert getattr(r.choices[0].message, "reasoning_content", None) is None
    assert r.choices[0].message.content == "Hello! You said: think first"


def test_think_models_get_think_injected(proxy_forward):
    # glm-5:cloud only thinks when asked; THINK_MODELS asks for it.
    r = client(proxy_forward).chat.completions.create(
        model="glm-5:cloud", messages=[{"role": "user", "content": "hello"}]
    )
    assert r.choices[0].message.reasoning_content == "Let me think about this."


def test_reasoning_effort_none_turns_thinking_off(proxy_forward):
    r = client(proxy_forward).chat.completions.create(
        model="qwen3", reasoning_effort="none", messages=[{"role": "user", "content": "quick"}]
    )
    assert getattr(r.choices[0].message, "reasoning_content", None) is None


def test_length_finish_reason(proxy):
    r = client(proxy).chat.completions.create(
        model="llama3.2", max_tokens=2, messages=[{"role": "user", "content": "a long answer please"}]
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 2


def test_native_api_passes_through(proxy):
    r = httpx.post(
        proxy.url + "/api/chat",
        json={"model": "llama3.2", "messages": [{"role": "user", "content": "native"}], "stream": False},
        timeout=30,
    )
    assert r.status_code == 200
    assert r.json()["message"]["content"] == "Hello! You said: native"
    assert httpx.get(proxy.url + "/", timeout=30).text == "Ollama is running"
