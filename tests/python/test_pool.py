"""Several Ollama hosts behind one proxy, driven by the official SDKs.

Three fake Ollama processes, each with its own models, behind one proxy
binary (`OLLAMA_BASE_URL=a,b,c`). Which host served a request shows in that
host's `GET /api/ps`: the fake loads a model on its first generation, as
Ollama does. The SDKs' own retries are off, so any failover seen here is the
proxy's.
"""

import json
import os
import time
import urllib.request

import pytest
from anthropic import Anthropic
from openai import OpenAI

from conftest import Process, _binary, start_proxy


def start_host(models):
    env = dict(
        os.environ,
        FAKE_OLLAMA_EXIT_ON_STDIN_EOF="1",
        FAKE_OLLAMA_MODELS=",".join(models),
    )
    return Process([_binary("fake_ollama")], env, "FAKE_OLLAMA_LISTENING")


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def loaded(host):
    return {m["name"] for m in get_json(host.url + "/api/ps")["models"]}


def wait_for(cond, seconds=10):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def fleet():
    hosts = [
        start_host(["qwen3"]),
        start_host(["llama3.2"]),
        start_host(["llama3.2", "nomic-embed-text"]),
    ]
    proxy = start_proxy(",".join(h.url for h in hosts), POOL_REFRESH_SECS="1")
    names = lambda: {m["name"] for m in get_json(proxy.url + "/api/tags")["models"]}
    want = {"qwen3:latest", "llama3.2:latest", "nomic-embed-text:latest"}
    assert wait_for(lambda: names() == want), "the proxy learns every host's models"
    yield proxy, hosts
    proxy.stop()
    for h in hosts:
        h.stop()


def test_anthropic_client_reaches_the_host_with_its_model(fleet):
    proxy, (a, b, c) = fleet
    client = Anthropic(base_url=proxy.url, api_key="unused", max_retries=0, timeout=30)
    with client.messages.stream(
        model="qwen3",
        max_tokens=256,
        messages=[{"role": "user", "content": "which host?"}],
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "Hello! You said: which host?"
    assert loaded(a) == {"qwen3:latest"}
    assert loaded(b) == set() and loaded(c) == set()


def test_responses_client_is_failed_over_when_a_host_dies(fleet):
    proxy, (a, b, c) = fleet
    client = OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    stream = client.responses.create(model="llama3.2", input="first", stream=True)
    events = list(stream)
    assert events[-1].type == "response.completed"
    first = b if loaded(b) else c
    other = c if first is b else b
    assert loaded(first) == {"llama3.2:latest"} and loaded(other) == set()

    # The host that has the conversation's model loaded goes away: the next
    # request (a new conversation) still succeeds, on the other host.
    first.stop()
    stream = client.responses.create(model="llama3.2", input="second", stream=True)
    events = list(stream)
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello! You said: second"
    assert loaded(other) == {"llama3.2:latest"}


def test_models_list_every_host_s_models_once(fleet):
    proxy, _ = fleet
    client = OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    ids = sorted(m.id for m in client.models.list())
    assert ids == ["llama3.2:latest", "nomic-embed-text:latest", "qwen3:latest"]
