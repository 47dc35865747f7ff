"""Fixtures: the real proxy binary in front of the fake Ollama binary.

Both are built by `cargo build --examples` (see .ci/run) and started here on
ports the OS picks; every process started is stopped at the end.
"""

import http.client
import http.server
import json
import os
import pathlib
import re
import subprocess
import threading
import urllib.parse
import urllib.request

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
    for key in (
        "THINK_MODELS",
        "REASONING",
        "OLLAMA_OPTIONS",
        "MODEL_ALIASES",
        "PROXY_API_KEY",
        "KEEPALIVE_SECS",
        "KEYS_FILE",
        "KEYS_POLL_SECS",
        "OPEN_ADMIN_PATHS",
    ):
        env.pop(key, None)
    for key in [k for k in env if k.startswith("WEB_SEARCH")]:
        env.pop(key)
    env.update(
        {
            "OLLAMA_BASE_URL": ollama_url,
            "LISTEN_ADDR": "127.0.0.1:0",
            "RUST_LOG": env.get("RUST_LOG", "info"),
        }
    )
    env.update({k: str(v) for k, v in extra_env.items()})
    return Process([_binary("proxy")], env, "listening on http://")


class Recorder:
    """An HTTP forwarder in front of an upstream (the fake Ollama) that keeps
    every request's method, path and JSON body: the fake Ollama process has
    no API to read back what it was sent. Answers are passed on as they come
    (chunk by chunk, so streams stay streams). Runs in a thread of the test
    process until `stop()`."""

    HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}

    def __init__(self, upstream_url):
        up = urllib.parse.urlparse(upstream_url)
        self.records = []
        lock = threading.Lock()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self):
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _forward(self):
                body = self._body()
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                with lock:
                    recorder.records.append({"method": self.command, "path": self.path, "body": parsed})
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=600)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in Recorder.HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                res = conn.getresponse()
                self.send_response(res.status)
                for k, v in res.getheaders():
                    if k.lower() not in Recorder.HOP:
                        self.send_header(k, v)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    while True:
                        chunk = res.read1(65536)
                        if not chunk:
                            break
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True
                finally:
                    conn.close()

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self, path):
        """The JSON bodies of the POSTs to `path`, in order."""
        return [r["body"] for r in list(self.records) if r["method"] == "POST" and r["path"] == path]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def metric(proxy, name, **labels):
    """One sample of the proxy's `GET /metrics` (0 when it is not there yet)."""
    with urllib.request.urlopen(proxy.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return 0.0


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


@pytest.fixture
def recorder(fake_ollama):
    """A `Recorder` in front of the session's fake Ollama; stopped after the test."""
    r = Recorder(fake_ollama.url)
    yield r
    r.stop()
