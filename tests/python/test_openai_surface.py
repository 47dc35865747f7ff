"""Models, embeddings, legacy completions and unknown paths, via the official SDK."""

import math

import httpx
import openai
import pytest
from openai import OpenAI


def client(p):
    return OpenAI(base_url=p.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def test_models_list_and_retrieve(proxy):
    c = client(proxy)
    ids = [m.id for m in c.models.list()]
    assert "qwen3:latest" in ids and "gpt-oss:20b" in ids and "hf.co/acme/tiny:Q4" in ids
    m = c.models.retrieve("qwen3:latest")
    assert m.id == "qwen3:latest" and m.object == "model" and m.owned_by == "library"
    assert m.created > 1_700_000_000
    # Ids with ':' and '/'.
    m = c.models.retrieve("hf.co/acme/tiny:Q4")
    assert m.id == "hf.co/acme/tiny:Q4" and m.owned_by == "acme"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("nosuch:1b")


def test_aliases_are_listed_and_reported(make_proxy):
    p = make_proxy(MODEL_ALIASES="gpt-4o=qwen3")
    c = client(p)
    assert "gpt-4o" in [m.id for m in c.models.list()]
    assert c.models.retrieve("gpt-4o").id == "gpt-4o"
    r = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert r.model == "gpt-4o"
    e = c.embeddings  # aliases apply to every dialect
    assert e is not None


def test_embeddings_float_and_base64(proxy):
    c = client(proxy)
    floats = c.embeddings.create(model="nomic-embed-text", input=["hello", "world"], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1]
    v = floats.data[0].embedding
    assert len(v) == 8
    assert math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-6)
    assert floats.usage.prompt_tokens > 0
    # The SDK asks for base64 by default and decodes it itself.
    b64 = c.embeddings.create(model="nomic-embed-text", input=["hello", "world"])
    for a, b in zip(b64.data[0].embedding, floats.data[0].embedding):
        assert math.isclose(a, b, rel_tol=1e-6)
    dims = c.embeddings.create(model="nomic-embed-text", input="hello", dimensions=4, encoding_format="float")
    assert len(dims.data[0].embedding) == 4
    with pytest.raises(openai.BadRequestError) as e:
        c.embeddings.create(model="nomic-embed-text", input=[[1, 2, 3]])
    assert e.value.body["param"] == "input"


def test_legacy_completions(proxy):
    c = client(proxy)
    r = c.completions.create(model="llama3.2", prompt="Once upon", max_tokens=50)
    assert r.object == "text_completion"
    assert r.choices[0].text == "Completion of: Once upon"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    chunks = list(
        c.completions.create(
            model="llama3.2", prompt="def f(", suffix="return x", stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == "<FILL>"
    assert chunks[-1].usage.completion_tokens > 0
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model="llama3.2", prompt="x", echo=True)
    assert e.value.body["param"] == "echo"


def test_unknown_v1_paths_get_openai_404(proxy):
    r = httpx.post(proxy.url + "/v1/images/generations", json={"prompt": "cat"}, timeout=30)
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found_error"
    assert "POST /v1/images/generations" in r.json()["error"]["message"]
    # Native paths keep Ollama's own answers.
    assert httpx.get(proxy.url + "/api/version", timeout=30).json() == {"version": "0.33.0"}
