"""Bounded load test: 64 concurrent clients for 30 s against the built-in tiny model on
the CPU engine. Every request must succeed (0 failed), every request sent must be
answered in full (0 lost: a 200 with a complete body; streams end with a finish_reason
and [DONE]), and none may be mixed up: each greedy reply must equal the reply to the
same prompt computed alone before the load started. Prints p50/p99 latency.

The clients mix chat (plain and streaming) and completions, all greedy with small
max_tokens, so the run measures the server (queueing, streaming, slot reuse), not
decode speed. Runs about 40 s plus server start-up."""
import http.client
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_harness as H  # noqa: E402

CLIENTS = 64
DURATION_S = 30
MAX_TOKENS = 6
PROMPTS = [f"Load test prompt {i}: tell me about the number {i * 7919 % 1000}." for i in range(16)]
MODES = ("chat", "chat_stream", "completion")


def body_for(mode, prompt):
    common = {"max_tokens": MAX_TOKENS, "temperature": 0, "return_token_ids": True}
    if mode == "completion":
        return "/v1/completions", {"prompt": prompt, **common}
    body = {"messages": [{"role": "user", "content": prompt}], **common}
    if mode == "chat_stream":
        body["stream"] = True
    return "/v1/chat/completions", body


def parse_reply(mode, data):
    """-> (prompt_token_ids, token_ids, text); raises if the reply is incomplete."""
    if mode != "chat_stream":
        d = json.loads(data)
        ch = d["choices"][0]
        assert ch["finish_reason"] in ("stop", "length"), ch
        text = ch["message"]["content"] if mode == "chat" else ch["text"]
        return d["prompt_token_ids"], ch["token_ids"], text
    events = H.sse_events(data)
    assert events and events[-1] == "[DONE]", "stream did not end with [DONE]"
    prompt_ids, ids, text, finish = None, [], "", None
    for e in events[:-1]:
        assert "error" not in e, e
        if "prompt_token_ids" in e:
            prompt_ids = e["prompt_token_ids"]
        ch = e["choices"][0]
        ids += ch.get("token_ids") or []
        text += ch["delta"].get("content") or ""
        finish = ch["finish_reason"] or finish
    assert finish in ("stop", "length"), f"stream ended without a finish_reason ({finish})"
    return prompt_ids, ids, text


class Client(threading.Thread):
    def __init__(self, index, server, reference, deadline):
        super().__init__(daemon=True)
        self.index, self.server, self.reference, self.deadline = index, server, reference, deadline
        self.sent = self.answered = 0
        self.failures = []
        self.latencies = []

    def run(self):
        seq = 0
        conn = None
        while time.monotonic() < self.deadline:
            mode = MODES[(self.index + seq) % len(MODES)]
            prompt_i = (self.index * 5 + seq) % len(PROMPTS)
            seq += 1
            path, body = body_for(mode, PROMPTS[prompt_i])
            self.sent += 1
            t0 = time.monotonic()
            try:
                if conn is None:  # keep-alive, as real clients do; reconnect after a failure
                    conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=120)
                conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
                if resp.status != 200:
                    raise AssertionError(f"HTTP {resp.status}: {data[:300]!r}")
                got = parse_reply(mode, data)
                self.answered += 1
                self.latencies.append(time.monotonic() - t0)
                want = self.reference[(mode, prompt_i)]
                if got != want:
                    raise AssertionError(f"reply to prompt {prompt_i} ({mode}) differs from its serial reply:\n"
                                         f"  got  {got}\n  want {want}")
            except Exception as e:  # noqa: BLE001 -- every failure is counted and reported
                self.failures.append(f"client {self.index} request {seq} ({mode}): {e!r}")
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            conn.close()


def test_64_clients_for_30_seconds():
    with H.Server(["--parallel", "4", "--quiet"]) as s:
        # The reference: each prompt and mode alone, before any load.
        reference = {}
        for mode in MODES:
            for i, prompt in enumerate(PROMPTS):
                path, body = body_for(mode, prompt)
                status, _, data = H.request(s, "POST", path, body)
                assert status == 200, data
                reference[(mode, i)] = parse_reply(mode, data)
        # Streaming and non-streaming chat agree, token for token.
        for i in range(len(PROMPTS)):
            assert reference[("chat", i)] == reference[("chat_stream", i)], i

        before = H.metrics(s)
        deadline = time.monotonic() + DURATION_S
        clients = [Client(i, s, reference, deadline) for i in range(CLIENTS)]
        t0 = time.monotonic()
        for c in clients:
            c.start()
        max_queue = 0
        while any(c.is_alive() for c in clients) and time.monotonic() < deadline + 120:
            max_queue = max(max_queue, H.metrics(s)["flashplan_queue_depth"])
            time.sleep(0.5)
        for c in clients:
            c.join(timeout=5)
        elapsed = time.monotonic() - t0
        hung = [c.index for c in clients if c.is_alive()]

        sent = sum(c.sent for c in clients)
        answered = sum(c.answered for c in clients)
        failures = [f for c in clients for f in c.failures]
        latencies = sorted(x for c in clients for x in c.latencies)
        after = H.metrics(s)
        served = after['flashplan_requests_total{endpoint="chat_completions",status="200"}'] + \
            after['flashplan_requests_total{endpoint="completions",status="200"}'] - \
            before['flashplan_requests_total{endpoint="chat_completions",status="200"}'] - \
            before['flashplan_requests_total{endpoint="completions",status="200"}']

        p50 = statistics.median(latencies) if latencies else float("nan")
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan")
        print(f"  load: {CLIENTS} clients, {elapsed:.1f} s, {sent} sent, {answered} answered, "
              f"{len(failures)} failed, {sent - answered - len(failures)} lost, "
              f"{answered / elapsed:.1f} req/s, latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
              f"max queue depth {max_queue:.0f}", flush=True)
        for f in failures[:10]:
            print("  " + f)
        assert not hung, f"clients still running after the deadline: {hung}"
        assert not failures, f"{len(failures)} failed requests"
        assert answered == sent, f"{sent - answered} requests lost"
        assert served == answered, f"server counted {served} answered requests, clients {answered}"
        assert answered >= CLIENTS, "fewer requests than clients were served"
        assert max_queue > 0, "64 clients on 4 slots never queued: queue depth not visible"
        assert H.metrics(s)["flashplan_queue_depth"] == 0


if __name__ == "__main__":
    H.run_tests(dict(globals()), watchdog_s=600)
