"""Who may do what, driven by the official `openai` and `anthropic` SDKs: named
keys from KEYS_FILE, the admin paths, a key revoked (and one added) while the
proxy runs, and the 429 of a key at its limit of requests in flight."""

import hashlib
import signal
import threading
import time

import anthropic
import httpx
import openai
import pytest
from anthropic import Anthropic
from openai import OpenAI

OPS = "sk-ops-py-Qm4xT7"
ALICE = "sk-alice-py-Wn8cJ2"
BOB = "sk-bob-py-Kr2vZ9"


def digest(key):
    return hashlib.sha256(key.encode()).hexdigest()


def oai(p, key, retries=0):
    return OpenAI(base_url=p.url + "/v1", api_key=key, max_retries=retries, timeout=30)


def ant(p, key, retries=0):
    return Anthropic(base_url=p.url, api_key=key, max_retries=retries, timeout=30)


def chat(p, key, text="hi", retries=0):
    r = oai(p, key, retries).chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": text}]
    )
    return r.choices[0].message.content


def message(p, key):
    r = ant(p, key).messages.create(
        model="llama3.2", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    return r.content[0].text


def until(check, seconds=10.0):
    """Whether `check()` holds within `seconds`, asked every 50 ms."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def keys_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# the team\nops:{digest(OPS)}:admin\nalice:{digest(ALICE)}:1\n")
    return path


@pytest.fixture
def keyed(make_proxy, keys_file):
    return make_proxy(KEYS_FILE=str(keys_file), KEYS_POLL_SECS=1)


def test_a_key_that_is_not_admin_chats_but_cannot_delete_a_model(keyed, fake_ollama):
    assert chat(keyed, ALICE) == "Hello! You said: hi"
    assert message(keyed, ALICE) == "Hello! You said: hi"

    with pytest.raises(openai.PermissionDeniedError) as e:
        oai(keyed, ALICE).delete(keyed.url + "/api/delete", cast_to=httpx.Response, body={"model": "llama3.2"})
    assert e.value.status_code == 403
    # Ollama's own shape under /api: {"error": "<message>"}.
    assert e.value.response.json()["error"].startswith('the key "alice" may not use DELETE /api/delete')
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        ant(keyed, ALICE).post(
            keyed.url + "/api/pull", cast_to=httpx.Response, body={"model": "llama3.2"}
        )
    assert "need an admin key" in e.value.response.json()["error"]
    with pytest.raises(openai.PermissionDeniedError):
        oai(keyed, ALICE).post(
            keyed.url + "/api/experimental/web_search", cast_to=httpx.Response, body={"query": "x"}
        )

    # The admin key gets through: the fake Ollama has no /api/delete (404).
    with pytest.raises(openai.NotFoundError):
        oai(keyed, OPS).delete(keyed.url + "/api/delete", cast_to=httpx.Response, body={"model": "llama3.2"})

    # No key, or one the proxy does not know: a 401 the SDKs name.
    with pytest.raises(openai.AuthenticationError) as e:
        chat(keyed, "sk-nobody")
    assert e.value.body["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError) as e:
        message(keyed, digest(ALICE))
    assert e.value.body["error"]["type"] == "authentication_error"


def test_admin_paths_are_closed_without_keys_unless_opened(make_proxy):
    closed = make_proxy()
    assert until(lambda: any("OPEN_ADMIN_PATHS=1 opens them" in line for line in closed.stderr_lines))
    assert chat(closed, "unused") == "Hello! You said: hi"
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai(closed, "unused").delete(closed.url + "/api/delete", cast_to=httpx.Response, body={"model": "x"})
    assert "none is configured" in e.value.response.json()["error"]

    opened = make_proxy(OPEN_ADMIN_PATHS=1)
    with pytest.raises(openai.NotFoundError):
        oai(opened, "unused").delete(opened.url + "/api/delete", cast_to=httpx.Response, body={"model": "x"})
    assert until(lambda: any("OPEN_ADMIN_PATHS is set" in line for line in opened.stderr_lines))


def test_a_revoked_key_stops_and_an_added_one_starts_without_a_restart(keyed, keys_file):
    assert chat(keyed, ALICE) == "Hello! You said: hi"
    with pytest.raises(anthropic.AuthenticationError):
        message(keyed, BOB)

    keys_file.write_text(f"ops:{digest(OPS)}:admin\nbob:{digest(BOB)}\n")

    def alice_refused():
        try:
            chat(keyed, ALICE)
            return False
        except openai.AuthenticationError:
            return True

    assert until(alice_refused), "alice's key still works 10 s after it was removed"
    assert message(keyed, BOB) == "Hello! You said: hi"
    assert chat(keyed, OPS) == "Hello! You said: hi"
    assert keyed.alive(), "the same process"


def test_sighup_reloads_the_keys_file(make_proxy, keys_file):
    p = make_proxy(KEYS_FILE=str(keys_file), KEYS_POLL_SECS=0)
    # Logged once SIGHUP is listened to.
    assert until(lambda: any("access: 2 keys from KEYS_FILE" in line for line in p.stderr_lines), 5)
    assert chat(p, ALICE) == "Hello! You said: hi"
    keys_file.write_text(f"ops:{digest(OPS)}:admin\nbob:{digest(BOB)}\n")
    time.sleep(0.3)
    assert chat(p, ALICE) == "Hello! You said: hi", "no polling: nothing changes before SIGHUP"
    p.proc.send_signal(signal.SIGHUP)
    assert until(lambda: any("revoked: [alice]" in line for line in p.stderr_lines), 5)
    with pytest.raises(openai.AuthenticationError):
        chat(p, ALICE)
    assert message(p, BOB) == "Hello! You said: hi"
    assert p.alive()


def test_a_key_at_its_limit_gets_a_429_with_retry_after(keyed):
    # alice may have one request in flight: a stream that stays open.
    held = oai(keyed, ALICE).chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "[stall]"}], stream=True
    )
    chunks = iter(held)
    assert next(chunks).choices[0].delta.role == "assistant"

    with pytest.raises(openai.RateLimitError) as e:
        chat(keyed, ALICE)
    assert e.value.response.headers["retry-after"] == "1"
    assert e.value.body["type"] == "rate_limit_error"
    assert "has 1 requests in flight" in e.value.body["message"]
    with pytest.raises(anthropic.RateLimitError) as e:
        message(keyed, ALICE)
    assert e.value.response.headers["retry-after"] == "1"
    assert e.value.body["error"]["type"] == "rate_limit_error"
    # Another key is not held back.
    assert chat(keyed, OPS) == "Hello! You said: hi"

    # The SDK's own retry waits Retry-After; the stream ends meanwhile, and
    # the retried request gets alice's place.
    threading.Timer(0.3, held.close).start()
    started = time.monotonic()
    assert chat(keyed, ALICE, retries=2) == "Hello! You said: hi"
    assert time.monotonic() - started >= 0.5, "the first try was refused, the retry waited"
