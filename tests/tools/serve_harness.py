"""Shared by the serve_*_test.py scripts: start `flashplan serve` on a free loopback
port, wait for /health, and always stop it (SIGTERM, then SIGKILL) -- also when a
test fails or hangs. Every network call has a timeout, and each script arms a
watchdog (SIGALRM) so nothing can hang CI.

Tests are plain functions named test_*; run_tests() runs them in order, prints one
line per test, and exits 1 if any failed (77 = not run, when the binary is missing).
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BIN = os.environ.get("FLASHPLAN_BIN", "")
STARTUP_TIMEOUT_S = 300  # the built-in model is generated on first use


class Server:
    """`with Server(extra_args) as s:` -> s.host, s.port, s.base_url, s.log_text()."""

    def __init__(self, args=(), startup_timeout=STARTUP_TIMEOUT_S):
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.proc = None
        self.host = "127.0.0.1"
        self.port = None
        self.log = None

    def __enter__(self):
        self.log = tempfile.NamedTemporaryFile(prefix="flashplan-serve-", suffix=".log", delete=False)
        cmd = [BIN, "serve", *self.args, "--host", self.host, "--port", "0"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _wait_ready(self):
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flashplan serve exited with {self.proc.returncode}:\n{self.log_text()}")
            m = re.search(r"listening on http://[^:]+:(\d+)", self.log_text())
            if m:
                self.port = int(m.group(1))
                try:
                    status, _, _ = request(self, "GET", "/health", timeout=5)
                    if status == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"flashplan serve not ready after {self.startup_timeout} s:\n{self.log_text()}")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            print("serve_harness: server ignored SIGTERM for 20 s; killing it", file=sys.stderr)
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}"

    def log_text(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


def request(server, method, path, body=None, headers=None, timeout=60):
    """One HTTP request -> (status, headers dict (lower-case), body bytes). `body` may be
    bytes, str, or a JSON-able object."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def post_json(server, path, body, headers=None, timeout=120):
    status, hdrs, data = request(server, "POST", path, body, headers, timeout)
    return status, json.loads(data) if data else None


def sse_events(data):
    """The `data:` payloads of an SSE body, in order ([DONE] kept as the string)."""
    events = []
    for block in data.decode().split("\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith("data: "), f"not an SSE data line: {block[:200]!r}"
        payload = block[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def metrics(server):
    """GET /metrics -> {name{labels}: value}."""
    status, _, data = request(server, "GET", "/metrics", timeout=10)
    assert status == 200, status
    out = {}
    for line in data.decode().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def run_flashplan(*args, timeout=300):
    return subprocess.run([BIN, *args], capture_output=True, timeout=timeout, check=True)


class WatchdogExpired(BaseException):
    """Not an Exception: no test catches it; it unwinds through every cleanup path."""


def watchdog(seconds):
    """Fails the script (through the normal cleanup paths) if it runs too long."""
    def on_alarm(signum, frame):
        raise WatchdogExpired(f"test script exceeded its {seconds} s watchdog")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)


def run_tests(namespace, watchdog_s=900):
    if not BIN or not os.path.exists(BIN):
        print("FLASHPLAN_BIN is not set or missing: not run")
        sys.exit(77)
    watchdog(watchdog_s)
    tests = [(name, fn) for name, fn in namespace.items() if name.startswith("test_") and callable(fn)]
    failed = []
    for name, fn in tests:
        t0 = time.monotonic()
        try:
            fn()
            print(f"ok    {name} ({time.monotonic() - t0:.1f} s)", flush=True)
        except Exception:
            print(f"FAIL  {name} ({time.monotonic() - t0:.1f} s)", flush=True)
            traceback.print_exc()
            failed.append(name)
    print(f"{len(tests) - len(failed)}/{len(tests)} passed")
    sys.exit(1 if failed else 0)


class Shared:
    """One server for all tests of a script, started on first use and stopped at exit."""

    def __init__(self, args=()):
        self.args = args
        self.server = None
        self.lock = threading.Lock()

    def get(self):
        with self.lock:
            if self.server is None or not self.server.alive():
                self.server = Server(self.args).__enter__()
            return self.server

    def close(self):
        if self.server is not None:
            self.server.stop()
