"""Anthropic Messages through the proxy, driven by the official `anthropic` SDK."""

import anthropic
import httpx
import pytest
from anthropic import Anthropic

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def client(p, **kw):
    # The base URL has no /v1: the SDK (like Claude Code) appends /v1/messages.
    return Anthropic(base_url=p.url, api_key="unused", max_retries=0, timeout=30, **kw)


def test_create_text(proxy):
    m = client(proxy).messages.create(
        model="llama3.2",
        max_tokens=1024,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hi there"}],
        metadata={"user_id": "someone"},
    )
    assert m.type == "message"
    assert m.role == "assistant"
    assert m.model == "llama3.2"
    assert m.id.startswith("msg_")
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == "Hello! You said: hi there"
    assert m.stop_reason == "end_turn"
    assert m.stop_sequence is None
    assert m.usage.input_tokens > 0
    assert m.usage.output_tokens > 0


def test_stream_text(proxy):
    c = client(proxy)
    with c.messages.stream(
        model="llama3.2",
        max_tokens=1024,
        messages=[{"role": "user", "content": "stream me"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello! You said: stream me"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert final.usage.input_tokens > 0, "message_delta carries the real input count"


def test_raw_event_order(proxy):
    events = client(proxy).messages.create(
        model="llama3.2",
        max_tokens=100,
        stream=True,
        messages=[{"role": "user", "content": "order please"}],
    )
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[1] == "content_block_start"
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_claude_code_style_request(make_proxy):
    """What Claude Code 2.1 sends, through an alias, with the beta client."""
    p = make_proxy(MODEL_ALIASES="claude-sonnet-4-6=llama3.2", DEFAULT_MODEL="qwen3")
    c = client(p)
    with c.beta.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=32000,
        system=[
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Be concise.", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
        tools=[WEATHER_TOOL],
        metadata={"user_id": "user_x"},
        betas=["claude-code-20250219", "interleaved-thinking-2025-05-14"],
        extra_body={
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        },
    ) as stream:
        final = stream.get_final_message()
    assert final.model == "claude-sonnet-4-6"
    assert final.content[-1].text == "Hello! You said: hello"
    # An unknown Claude name goes to DEFAULT_MODEL.
    m = c.messages.create(
        model="claude-haiku-4-5-20251001", max_tokens=100, messages=[{"role": "user", "content": "quick"}]
    )
    assert m.model == "claude-haiku-4-5-20251001"
    assert m.content[-1].text == "Hello! You said: quick"


def test_streamed_tool_use_round_trip(proxy):
    c = client(proxy)
    question = {"role": "user", "content": "what's the weather in Tokyo?"}
    with c.messages.stream(
        model="qwen3",
        max_tokens=1024,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto"},
        messages=[question],
    ) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    calls = [b for b in first.content if b.type == "tool_use"]
    assert len(calls) == 1
    call = calls[0]
    assert call.id.startswith("toolu_")
    assert call.name == "get_weather"
    assert call.input == {"city": "Tokyo"}

    with c.messages.stream(
        model="qwen3",
        max_tokens=1024,
        tools=[WEATHER_TOOL],
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 24 °C"}],
            },
        ],
    ) as stream:
        answer = stream.get_final_message()
    assert answer.stop_reason == "end_turn"
    assert answer.content[-1].text == "Tool said: sunny, 24 °C"


def test_two_tool_calls_on_the_done_line(proxy):
    m = client(proxy).messages.create(
        model="gpt-oss:20b",
        max_tokens=1024,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "weather in two cities"}],
    )
    calls = [b for b in m.content if b.type == "tool_use"]
    assert [b.input for b in calls] == [{"city": "Tokyo"}, {"city": "Paris"}]
    assert len({b.id for b in calls}) == 2
    assert m.stop_reason == "tool_use"


def test_tool_result_error_is_accepted(proxy):
    m = client(proxy).messages.create(
        model="llama3.2",
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True, "content": "timeout"}],
            },
        ],
    )
    assert m.content[-1].text == "Tool said: Error: timeout"


def test_thinking_signature_round_trip(proxy_forward):
    c = client(proxy_forward)
    question = {"role": "user", "content": "hi"}
    with c.messages.stream(model="qwen3", max_tokens=1024, messages=[question]) as stream:
        first = stream.get_final_message()
    assert [b.type for b in first.content] == ["thinking", "text"]
    thinking = first.content[0]
    assert thinking.thinking == "Let me think about this."
    assert len(thinking.signature) == 64

    def again(blocks):
        return c.messages.create(
            model="qwen3",
            max_tokens=1024,
            messages=[question, {"role": "assistant", "content": blocks}, {"role": "user", "content": "more"}],
        )

    # Sent back as received: accepted (the Rust socket test checks that it
    # reaches Ollama as `thinking`).
    assert again(first.content).content[-1].text == "Hello! You said: more"
    # Tampered signature: dropped, not an error.
    tampered = {"type": "thinking", "thinking": thinking.thinking, "signature": "0" * 64}
    assert again([tampered, {"type": "text", "text": first.content[1].text}]).content[-1].text == (
        "Hello! You said: more"
    )
    redacted = {"type": "redacted_thinking", "data": "opaque"}
    assert again([redacted, {"type": "text", "text": "x"}]).stop_reason == "end_turn"


def test_thinking_disabled_and_budget(proxy_forward):
    c = client(proxy_forward)
    m = c.messages.create(
        model="qwen3",
        max_tokens=1024,
        thinking={"type": "disabled"},
        messages=[{"role": "user", "content": "no thinking"}],
    )
    assert [b.type for b in m.content] == ["text"]
    m = c.messages.create(
        model="qwen3",
        max_tokens=20000,
        thinking={"type": "enabled", "budget_tokens": 10000},
        messages=[{"role": "user", "content": "think"}],
    )
    assert m.content[0].type == "thinking"
    assert m.content[0].signature


def test_count_tokens(proxy):
    c = client(proxy)

    def count(text):
        return c.messages.count_tokens(
            model="llama3.2",
            system="You are helpful.",
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": text}],
        ).input_tokens

    small = count("hello")
    big = count("hello " * 400)
    assert small > 0
    assert big > small


def test_count_tokens_beta(proxy):
    r = client(proxy).beta.messages.count_tokens(
        model="llama3.2",
        messages=[{"role": "user", "content": "hello"}],
        betas=["claude-code-20250219"],
    )
    assert r.input_tokens > 0


def test_max_tokens_stop_reason(proxy):
    m = client(proxy).messages.create(
        model="llama3.2", max_tokens=3, messages=[{"role": "user", "content": "a b c d e f g h"}]
    )
    assert m.stop_reason == "max_tokens"


def test_unknown_model_is_not_found(proxy):
    with pytest.raises(anthropic.NotFoundError) as e:
        client(proxy).messages.create(
            model="nosuch", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert e.value.status_code == 404
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        with client(proxy).messages.stream(
            model="nosuch", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            stream.get_final_message()


def test_image_url_is_a_bad_request(proxy):
    with pytest.raises(anthropic.BadRequestError) as e:
        client(proxy).messages.create(
            model="llama3.2",
            max_tokens=10,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                    ],
                }
            ],
        )
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert e.value.body["error"]["message"].startswith("messages.0.content.1.source")


def test_base64_image_is_accepted(proxy):
    m = client(proxy).messages.create(
        model="llama3.2",
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "text", "text": "describe"},
                ],
            }
        ],
    )
    assert m.content[-1].text == "Hello! You said: describe"


def test_mid_stream_error_raises(proxy):
    got = []
    with pytest.raises(anthropic.APIStatusError) as e:
        with client(proxy).messages.stream(
            model="llama3.2", max_tokens=100, messages=[{"role": "user", "content": "[error] please"}]
        ) as stream:
            for text in stream.text_stream:
                got.append(text)
    assert "unexpectedly stopped" in str(e.value)
    assert "".join(got) == "Partial answer", "partial text arrived first"


def test_dropped_connection_is_not_a_clean_finish(proxy):
    with pytest.raises((anthropic.APIError, httpx.HTTPError)):
        with client(proxy).messages.stream(
            model="llama3.2", max_tokens=100, messages=[{"role": "user", "content": "[drop] now"}]
        ) as stream:
            stream.get_final_message()
