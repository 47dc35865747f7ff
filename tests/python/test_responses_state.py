"""Conversation state of the Responses API through the official `openai` SDK:
`previous_response_id`, `responses.retrieve` and `responses.delete`, one key
never continuing another's conversation, expiry, `store=False`."""

import json
import time

import openai
import pytest
from openai import OpenAI

from conftest import start_proxy

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


def client(p, key="k1"):
    return OpenAI(base_url=p.url + "/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture
def rproxy(recorder):
    """A proxy in front of the recorder: what reaches Ollama can be read."""
    p = start_proxy(recorder.url)
    yield p
    p.stop()


def seen(recorder):
    """(role, content) of every message of the last `/api/chat` request."""
    return [(m["role"], m["content"]) for m in recorder.bodies("/api/chat")[-1]["messages"]]


def assert_previous_not_found(e, rid):
    assert e.value.status_code == 404
    assert e.value.code == "previous_response_not_found"
    assert e.value.param == "previous_response_id"
    assert rid in e.value.message


def test_three_turns(rproxy, recorder):
    c = client(rproxy)
    r1 = c.responses.create(model="llama3.2", instructions="Be brief.", input="first")
    assert r1.output_text == "Hello! You said: first"
    assert r1.store is True
    assert r1.previous_response_id is None
    r2 = c.responses.create(model="llama3.2", previous_response_id=r1.id, input="second")
    assert r2.previous_response_id == r1.id
    assert r2.output_text == "Hello! You said: second"
    assert seen(recorder) == [
        ("user", "first"),
        ("assistant", "Hello! You said: first"),
        ("user", "second"),
    ], "the instructions of the first turn are not kept"
    r3 = c.responses.create(
        model="llama3.2",
        previous_response_id=r2.id,
        instructions="Be kind.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "third"}]}],
    )
    assert r3.previous_response_id == r2.id
    assert r3.instructions == "Be kind."
    assert r3.output_text == "Hello! You said: third"
    assert seen(recorder) == [
        ("system", "Be kind."),
        ("user", "first"),
        ("assistant", "Hello! You said: first"),
        ("user", "second"),
        ("assistant", "Hello! You said: second"),
        ("user", "third"),
    ]
    assert len({r1.id, r2.id, r3.id}) == 3


def test_a_kept_function_call_and_its_output(rproxy, recorder):
    c = client(rproxy)
    ask = 'Weather? [call:get_weather:{"city":"Oslo"}]'
    r1 = c.responses.create(model="llama3.2", input=ask, tools=[WEATHER_TOOL])
    (call,) = [o for o in r1.output if o.type == "function_call"]
    assert json.loads(call.arguments) == {"city": "Oslo"}
    # Only the call's output goes back: the call itself is kept.
    r2 = c.responses.create(
        model="llama3.2",
        previous_response_id=r1.id,
        tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Rainy"}],
    )
    assert r2.output_text == "Tool said: Rainy"
    native = recorder.bodies("/api/chat")[-1]["messages"]
    assert native == [
        {"role": "user", "content": ask},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": call.call_id, "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "content": "Rainy", "tool_name": "get_weather", "tool_call_id": call.call_id},
    ]
    r3 = c.responses.create(model="llama3.2", previous_response_id=r2.id, input="thanks")
    assert r3.output_text == "Hello! You said: thanks"
    assert seen(recorder)[-2:] == [("assistant", "Tool said: Rainy"), ("user", "thanks")]


def test_stream_then_continue(rproxy, recorder):
    c = client(rproxy)
    with c.responses.stream(model="llama3.2", input="streamed first") as stream:
        events = list(stream)
        first = stream.get_final_response()
    assert events[0].type == "response.created"
    assert events[0].response.id == first.id
    assert first.status == "completed"
    second = c.responses.create(model="llama3.2", previous_response_id=first.id, input="plain second")
    assert second.output_text == "Hello! You said: plain second"
    with c.responses.stream(model="llama3.2", previous_response_id=second.id, input="streamed third") as stream:
        events = list(stream)
        third = stream.get_final_response()
    assert third.previous_response_id == second.id
    assert third.output_text == "Hello! You said: streamed third"
    assert [t for _, t in seen(recorder)] == [
        "streamed first",
        "Hello! You said: streamed first",
        "plain second",
        "Hello! You said: plain second",
        "streamed third",
    ]
    # What was streamed is what is kept.
    assert events[-1].type == "response.completed"
    # (The stream helper's items carry `parsed: None`: compare without Nones.)
    kept = c.responses.retrieve(third.id).model_dump(exclude_none=True)
    assert kept == events[-1].response.model_dump(exclude_none=True)
    assert kept["id"] == third.id and kept["status"] == "completed"


def test_retrieve_and_delete(proxy):
    c = client(proxy)
    r = c.responses.create(model="llama3.2", input="keep me", metadata={"k": "v"}, max_output_tokens=64)
    got = c.responses.retrieve(r.id)
    assert got.model_dump() == r.model_dump()
    assert got.output_text == "Hello! You said: keep me"
    assert c.responses.delete(r.id) is None
    with pytest.raises(openai.NotFoundError) as e:
        c.responses.retrieve(r.id)
    assert r.id in e.value.message
    with pytest.raises(openai.NotFoundError):
        c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError) as e:
        c.responses.create(model="llama3.2", previous_response_id=r.id, input="again")
    assert_previous_not_found(e, r.id)


def test_a_kept_response_is_retrieved_whole_not_streamed(proxy):
    c = client(proxy)
    r = c.responses.create(model="llama3.2", input="keep me whole")
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.retrieve(r.id, stream=True)
    assert e.value.body["param"] == "stream"
    assert c.responses.retrieve(r.id).id == r.id


def test_another_key_cannot_continue_read_or_delete(proxy):
    mine, theirs = client(proxy, "k1"), client(proxy, "k2")
    r = mine.responses.create(model="llama3.2", input="my secret")
    with pytest.raises(openai.NotFoundError) as e:
        theirs.responses.create(model="llama3.2", previous_response_id=r.id, input="what was it?")
    assert_previous_not_found(e, r.id)
    with pytest.raises(openai.NotFoundError) as e:
        with theirs.responses.stream(model="llama3.2", previous_response_id=r.id, input="what was it?") as s:
            list(s)
    assert_previous_not_found(e, r.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(r.id)
    # Still there for its own key, which continues it.
    assert mine.responses.retrieve(r.id).id == r.id
    again = mine.responses.create(model="llama3.2", previous_response_id=r.id, input="go on")
    assert again.previous_response_id == r.id


def test_a_response_expires(make_proxy):
    c = client(make_proxy(RESPONSES_STORE_TTL_SECS=1))
    r = c.responses.create(model="llama3.2", input="short-lived")
    assert c.responses.retrieve(r.id).id == r.id
    time.sleep(1.3)
    with pytest.raises(openai.NotFoundError) as e:
        c.responses.create(model="llama3.2", previous_response_id=r.id, input="still there?")
    assert_previous_not_found(e, r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)


def test_store_false_is_not_kept(proxy):
    c = client(proxy)
    r = c.responses.create(model="llama3.2", input="forget me", store=False)
    assert r.store is False
    assert r.output_text == "Hello! You said: forget me"
    with pytest.raises(openai.NotFoundError) as e:
        c.responses.create(model="llama3.2", previous_response_id=r.id, input="remember?")
    assert_previous_not_found(e, r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
    # Streamed too.
    with c.responses.stream(model="llama3.2", input="forget me too", store=False) as stream:
        final = stream.get_final_response()
    assert final.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(final.id)


def test_a_failed_stream_is_not_kept(proxy):
    c = client(proxy)
    events = list(c.responses.create(model="llama3.2", input="boom [error]", stream=True))
    assert events[-1].type == "response.failed"
    rid = events[-1].response.id
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(rid)
    with pytest.raises(openai.NotFoundError) as e:
        c.responses.create(model="llama3.2", previous_response_id=rid, input="again")
    assert_previous_not_found(e, rid)


def test_a_store_of_no_entries_refuses_previous_response_id(make_proxy):
    c = client(make_proxy(RESPONSES_STORE_ENTRIES=0))
    r = c.responses.create(model="llama3.2", input="hi")
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="llama3.2", previous_response_id=r.id, input="again")
    assert e.value.param == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
