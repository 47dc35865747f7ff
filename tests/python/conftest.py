"""Fixtures: the real proxy binary in front of the fake Ollama binary.

Both are built by `cargo build --examples` (see .ci/run) and started here on
ports the OS picks; every process started is stopped at the end.
"""

import os
import pathlib
import subprocess
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
PROFILE = os.environ.get("OT_PROFILE", "debug")


def _binary(name: str) -> str:
    path = TARGET / PROFILE / "examples" / name
    if not path.exists():
        pytest.exit(f"{path} is missing: run `cargo build --examples` first", returncode=2)
    return str(path)


class Process:
    """A child process whose first stdout line announcing a URL we wait for."""

    def __init__(self, args, env, marker):
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr_lines = []
        self.url = None
        deadline_lines = 200
        while deadline_lines > 0:
            line = self.proc.stdout.readline()
            if not line:
                break
            deadline_lines -= 1
            if marker in line:
                self.url = line.split("http://", 1)[1].split()[0].rstrip("/")
                self.url = "http://" + self.url
                break
        if self.url is None:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"{args[0]} did not start: {err}")
        # Drain output so the child never blocks on a full pipe.
        threading.Thread(target=self._drain, args=(self.proc.stdout, None), daemon=True).start()
        threading.Thread(
            target=self._drain, args=(self.proc.stderr, self.stderr_lines), daemon=True
        ).start()

    @staticmethod
    def _drain(stream, sink):
        for line in stream:
            if sink is not None:
                sink.append(line)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_fake_ollama():
    env = dict(os.environ, FAKE_OLLAMA_EXIT_ON_STDIN_EOF="1")
    return Process([_binary("fake_ollama")], env, "FAKE_OLLAMA_LISTENING")


def start_proxy(ollama_url, **extra_env):
    env = dict(os.environ)
    for key in ("THINK_MODELS", "REASONING", "OLLAMA_OPTIONS", "MODEL_ALIASES", "PROXY_API_KEY"):
        env.pop(key, None)
    env.update(
        {
            "OLLAMA_BASE_URL": ollama_url,
            "LISTEN_ADDR": "127.0.0.1:0",
            "RUST_LOG": env.get("RUST_LOG", "info"),
        }
    )
    env.update({k: str(v) for k, v in extra_env.items()})
    return Process([_binary("proxy")], env, "listening on http://")


@pytest.fixture(scope="session")
def fake_ollama():
    p = start_fake_ollama()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def proxy(fake_ollama):
    """The proxy with default settings."""
    p = start_proxy(fake_ollama.url)
    yield p
    p.stop()


@pytest.fixture(scope="session")
def proxy_forward(fake_ollama):
    """The proxy forwarding reasoning, with glm-5:cloud as a think-model."""
    p = start_proxy(fake_ollama.url, REASONING="forward", THINK_MODELS="glm-5:cloud")
    yield p
    p.stop()


@pytest.fixture
def make_proxy(fake_ollama):
    """Starts proxies with custom environment; stops them after the test."""
    started = []

    def make(**env):
        p = start_proxy(fake_ollama.url, **env)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()
