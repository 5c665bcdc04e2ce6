"""`flashplan serve` driven by the official `openai` client against the built-in tiny
model on the CPU engine: chat (non-streaming, streaming, tools and tool results,
thinking), completions, models, usage, logprobs, token ids, seeds, stop strings; the
server's greedy output is byte-identical to `flashplan run`; a client that hangs up
mid-stream frees its slot; the queue depth is visible while requests wait."""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_harness as H  # noqa: E402

import openai  # noqa: E402

shared = H.Shared(["--parallel", "2"])


def client(server=None, **kw):
    server = server or shared.get()
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", timeout=120, max_retries=0, **kw)


def model_id():
    return client().models.list().data[0].id


def raw(resp):
    """The response as the JSON the server sent (fields the SDK does not model included)."""
    return resp.model_dump()


# ---- models, health, metrics ------------------------------------------------------

def test_models_and_health():
    s = shared.get()
    models = client().models.list().data
    assert len(models) == 1 and models[0].object == "model" and models[0].id
    got = client().models.retrieve(models[0].id)
    assert got.id == models[0].id
    status, _, body = H.request(s, "GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"


# ---- chat ------------------------------------------------------------------------------

def test_chat_non_streaming():
    resp = client().chat.completions.create(
        model=model_id(),
        messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}],
        max_tokens=12, temperature=0)
    c = resp.choices[0]
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-")
    assert c.message.role == "assistant" and isinstance(c.message.content, str)
    assert c.finish_reason in ("stop", "length")
    u = resp.usage
    assert u.prompt_tokens > 0 and 1 <= u.completion_tokens <= 12
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    if c.finish_reason == "length":
        assert u.completion_tokens == 12


def test_system_message_changes_the_prompt():
    msgs = [{"role": "user", "content": "hi"}]
    a = client().chat.completions.create(model=model_id(), messages=msgs, max_tokens=1, temperature=0)
    b = client().chat.completions.create(
        model=model_id(), messages=[{"role": "system", "content": "Be brief and kind."}] + msgs, max_tokens=1,
        temperature=0)
    assert b.usage.prompt_tokens > a.usage.prompt_tokens


def test_chat_streaming_matches_non_streaming():
    args = dict(model=model_id(), messages=[{"role": "user", "content": "Count to five."}], max_tokens=24,
                temperature=0, extra_body={"return_token_ids": True})
    full = client().chat.completions.create(**args)
    stream = client().chat.completions.create(stream=True, stream_options={"include_usage": True}, **args)
    text, ids, finish, usage, roles, n_chunks = "", [], None, None, [], 0
    for chunk in stream:
        n_chunks += 1
        d = raw(chunk)
        assert d["object"] == "chat.completion.chunk"
        if d.get("usage"):
            usage = d["usage"]
            assert d["choices"] == []
            continue
        ch = d["choices"][0]
        if ch["delta"].get("role"):
            roles.append(ch["delta"]["role"])
        text += ch["delta"].get("content") or ""
        ids += ch.get("token_ids") or []
        if ch["finish_reason"]:
            finish = ch["finish_reason"]
    assert roles == ["assistant"]
    assert n_chunks >= 3
    f = raw(full)
    assert text == f["choices"][0]["message"]["content"], (text, f["choices"][0]["message"]["content"])
    assert ids == f["choices"][0]["token_ids"]
    assert finish == f["choices"][0]["finish_reason"]
    assert usage == f["usage"], (usage, f["usage"])


def test_seed_reproduces_sampling():
    args = dict(model=model_id(), messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=16,
                temperature=1.0, top_p=0.9, extra_body={"top_k": 40, "min_p": 0.01, "return_token_ids": True})
    a = raw(client().chat.completions.create(seed=1234, **args))["choices"][0]["token_ids"]
    b = raw(client().chat.completions.create(seed=1234, **args))["choices"][0]["token_ids"]
    assert a == b
    others = {tuple(raw(client().chat.completions.create(seed=s, **args))["choices"][0]["token_ids"])
              for s in (1, 2, 3, 4)}
    assert len(others) > 1, "different seeds never changed the sampled tokens"


def test_logprobs():
    resp = client().chat.completions.create(model=model_id(), messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=6, temperature=0, logprobs=True, top_logprobs=3,
                                            extra_body={"return_token_ids": True})
    d = raw(resp)["choices"][0]
    content = d["logprobs"]["content"]
    assert len(content) == len(d["token_ids"]) == resp.usage.completion_tokens
    for entry in content:
        assert entry["logprob"] <= 0
        assert len(entry["top_logprobs"]) == 3
        tops = [t["logprob"] for t in entry["top_logprobs"]]
        assert tops == sorted(tops, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert abs(entry["logprob"] - tops[0]) < 1e-6
        assert bytes(entry["bytes"]).decode("utf-8", "replace") == entry["token"]


def test_stop_string():
    args = dict(model=model_id(), messages=[{"role": "user", "content": "Write anything."}], temperature=0,
                extra_body={"ignore_eos": True})
    full = client().chat.completions.create(max_tokens=40, **args).choices[0].message.content
    # Stop on a piece of the greedy text: the reply ends right before it.
    cut = len(full) // 2
    while cut < len(full) and not full[cut:cut + 2].strip():
        cut += 1
    assert cut + 2 <= len(full), f"40 greedy tokens gave too little text: {full!r}"
    stop = full[cut:cut + 2]
    got = client().chat.completions.create(max_tokens=40, stop=[stop], **args)
    assert got.choices[0].finish_reason == "stop"
    assert got.choices[0].message.content == full[:full.index(stop)]
    # Streaming agrees.
    streamed = "".join(c.choices[0].delta.content or "" for c in
                       client().chat.completions.create(max_tokens=40, stop=stop, stream=True, **args) if c.choices)
    assert streamed == full[:full.index(stop)]


def test_thinking_reasoning_content():
    args = dict(model=model_id(), messages=[{"role": "user", "content": "Think, then answer."}], max_tokens=20,
                temperature=0, extra_body={"chat_template_kwargs": {"thinking": True}, "return_token_ids": True})
    on = raw(client().chat.completions.create(**args))
    off = raw(client().chat.completions.create(model=args["model"], messages=args["messages"], max_tokens=20,
                                               temperature=0, extra_body={"return_token_ids": True}))
    # Thinking changes the generation prompt (<think> vs </think>) and the reply carries
    # reasoning_content; without it there is none.
    assert on["prompt_token_ids"] != off["prompt_token_ids"]
    msg = on["choices"][0]["message"]
    assert "reasoning_content" in msg and isinstance(msg["reasoning_content"], str)
    assert (msg["reasoning_content"] or "") + (msg["content"] or "") != "" or on["usage"]["completion_tokens"] == 1
    assert off["choices"][0]["message"].get("reasoning_content") is None
    # reasoning_effort turns it on too; "none" keeps it off.
    eff = raw(client().chat.completions.create(model=args["model"], messages=args["messages"], max_tokens=1,
                                               temperature=0, reasoning_effort="high",
                                               extra_body={"return_token_ids": True}))
    assert eff["prompt_token_ids"] == on["prompt_token_ids"]
    # Streaming splits the same way.
    r, c = "", ""
    for chunk in client().chat.completions.create(stream=True, **args):
        d = raw(chunk)
        if d["choices"]:
            r += d["choices"][0]["delta"].get("reasoning_content") or ""
            c += d["choices"][0]["delta"].get("content") or ""
    assert r == (msg["reasoning_content"] or "") and c == (msg["content"] or ""), (r, c, msg)


TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]


def detokenize(ids):
    status, body = H.post_json(shared.get(), "/detokenize", {"tokens": ids})
    assert status == 200, body
    return body["prompt"]


def test_tool_call_round_trip():
    """A full tool round trip as an agent sends it: tools offered, the assistant's tool
    call in the history, the tool's result, and the next assistant turn. The random tiny
    model cannot be steered into emitting a call itself, so the check is that every part
    reaches the model through the DS4 template: the rendered prompt (prompt_token_ids)
    holds the tool schema, the DSML call and the <tool_result>."""
    c = client()
    first = c.chat.completions.create(model=model_id(), messages=[{"role": "user", "content": "Weather in Paris?"}],
                                      tools=TOOLS, max_tokens=8, temperature=0,
                                      extra_body={"return_token_ids": True})
    plain = c.chat.completions.create(model=model_id(), messages=[{"role": "user", "content": "Weather in Paris?"}],
                                      max_tokens=1, temperature=0)
    assert first.usage.prompt_tokens > plain.usage.prompt_tokens, "the tools were not rendered into the prompt"
    assert first.choices[0].finish_reason in ("stop", "length", "tool_calls")
    prompt1 = detokenize(raw(first)["prompt_token_ids"])
    assert "get_weather" in prompt1 and "Current weather for a city" in prompt1

    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
    ]
    second = c.chat.completions.create(model=model_id(), messages=history, tools=TOOLS, max_tokens=8, temperature=0,
                                       extra_body={"return_token_ids": True})
    assert second.choices[0].message.role == "assistant"
    prompt2 = detokenize(raw(second)["prompt_token_ids"])
    assert "<tool_result>18 C and sunny</tool_result>" in prompt2, prompt2[-400:]
    assert 'invoke name="get_weather"' in prompt2 and "Paris" in prompt2, prompt2[-400:]
    # Streaming the same turn gives the same reply.
    streamed = "".join(ch.choices[0].delta.content or "" for ch in
                       c.chat.completions.create(model=model_id(), messages=history, tools=TOOLS, max_tokens=8,
                                                 temperature=0, stream=True) if ch.choices)
    assert streamed == (second.choices[0].message.content or "")
    # tool_choice "none" keeps the tools out of the prompt.
    none = c.chat.completions.create(model=model_id(), messages=[{"role": "user", "content": "Weather in Paris?"}],
                                     tools=TOOLS, tool_choice="none", max_tokens=1, temperature=0)
    assert none.usage.prompt_tokens == plain.usage.prompt_tokens


# ---- completions --------------------------------------------------------------------

def test_completions():
    c = client()
    resp = c.completions.create(model=model_id(), prompt="The capital of France is", max_tokens=8, temperature=0,
                                logprobs=2, echo=True)
    ch = resp.choices[0]
    assert resp.object == "text_completion"
    assert ch.text.startswith("The capital of France is")
    assert len(ch.logprobs.tokens) == resp.usage.completion_tokens
    assert all(len(t) <= 2 for t in ch.logprobs.top_logprobs)
    streamed = "".join(x.choices[0].text for x in
                       c.completions.create(model=model_id(), prompt="The capital of France is", max_tokens=8,
                                            temperature=0, stream=True) if x.choices)
    assert "The capital of France is" + streamed == ch.text


def test_greedy_matches_flashplan_run():
    """Greedy output through the server is byte-identical to `flashplan run`: the same
    token ids (run --json), and the same bytes (run's raw stdout; the server sends
    UTF-8, so both are compared after the same standard U+FFFD replacement). Both run
    to exactly n tokens (--ignore-eos / ignore_eos), so an end-of-sentence token met on
    the way is compared as text too."""
    for prompt, n in (("Once upon a time", 40), ("def fib(n):", 24), ("Über café — 東京 🚀", 24)):
        ref = json.loads(H.run_flashplan("run", "-p", prompt, "-n", str(n), "--temp", "0", "--ignore-eos",
                                         "--json").stdout)
        raw_out = H.run_flashplan("run", "-p", prompt, "-n", str(n), "--temp", "0", "--ignore-eos").stdout
        assert raw_out.endswith(b"\n")
        ref_text = raw_out[:-1].decode("utf-8", "replace")
        body = {"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True, "return_token_ids": True}
        resp = raw(client().completions.create(model=model_id(), prompt=prompt, max_tokens=n, temperature=0,
                                               extra_body={"ignore_eos": True, "return_token_ids": True}))
        ch = resp["choices"][0]
        assert len(ref["tokens"]) == n
        assert ch["token_ids"] == ref["tokens"], (prompt, ch["token_ids"], ref["tokens"])
        assert ch["text"] == ref_text, (prompt, ch["text"], ref_text)
        # Streaming gives the same bytes.
        status, _, data = H.request(shared.get(), "POST", "/v1/completions", dict(body, stream=True))
        assert status == 200
        events = H.sse_events(data)
        assert "".join(e["choices"][0]["text"] for e in events[:-1] if e["choices"]) == ref_text
        # The prompt was tokenized as run tokenizes it (BOS in front), and /tokenize agrees.
        assert resp["usage"]["prompt_tokens"] == ref["prompt_tokens"]
        assert resp["prompt_token_ids"] == json.loads(H.request(shared.get(), "POST", "/tokenize",
                                                                {"prompt": prompt})[2])["tokens"]


def test_tokenize_matches_usage():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    s = shared.get()
    status, tok = H.post_json(s, "/tokenize", {"messages": msgs})
    assert status == 200, tok
    resp = raw(client().chat.completions.create(model=model_id(), messages=msgs, max_tokens=1, temperature=0,
                                                extra_body={"return_token_ids": True}))
    assert tok["tokens"] == resp["prompt_token_ids"] and tok["count"] == resp["usage"]["prompt_tokens"]
    status, text = H.post_json(s, "/detokenize", {"tokens": tok["tokens"]})
    assert status == 200 and "What is 2+2?" in text["prompt"] and "Be brief." in text["prompt"]


# ---- concurrency: disconnects and the queue ----------------------------------------

def open_stream(server, body):
    """Starts a streaming request on a raw socket; returns the socket after the first
    data chunk arrived."""
    sock = socket.create_connection((server.host, server.port), timeout=30)
    payload = json.dumps(body).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    got = b""
    while b"data: " not in got:
        chunk = sock.recv(65536)
        assert chunk, "server closed the stream early"
        got += chunk
    return sock


def wait_for(pred, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_disconnect_frees_slot_and_queue_is_visible():
    with H.Server(["--parallel", "1"]) as s:
        ctx = json.loads(H.request(s, "GET", "/v1/models")[2])["data"][0]["max_model_len"]
        long_gen = min(ctx - 16, 4000)
        before = H.metrics(s)
        sock = open_stream(s, {"prompt": "Hello", "max_tokens": long_gen, "temperature": 0, "stream": True,
                              "ignore_eos": True})
        # A second request waits behind it: queue depth 1 is visible.
        result = {}

        def second():
            result["status"], result["body"] = H.post_json(s, "/v1/completions",
                                                           {"prompt": "Hi", "max_tokens": 2, "temperature": 0})
        t = threading.Thread(target=second)
        t.start()
        wait_for(lambda: H.metrics(s)["flashplan_queue_depth"] == 1, what="queue depth 1")
        health = json.loads(H.request(s, "GET", "/health")[2])
        assert health["queue_depth"] == 1 and health["running"] == 1
        # The client hangs up: its slot is freed at the next token, the queued request runs.
        sock.close()
        t.join(timeout=60)
        assert not t.is_alive() and result["status"] == 200, result
        m = H.metrics(s)
        assert m.get('flashplan_generations_total{finish_reason="cancelled"}', 0) == \
            before.get('flashplan_generations_total{finish_reason="cancelled"}', 0) + 1
        generated = m["flashplan_generation_tokens_total"] - before["flashplan_generation_tokens_total"]
        assert generated < long_gen, f"the abandoned stream ran to the end ({generated} tokens)"
        # The gauges drop once the server has finished its bookkeeping after the last
        # response went out, which can trail the client's read by a moment.
        wait_for(lambda: (lambda g: g["flashplan_queue_depth"] == 0 and g["flashplan_requests_running"] == 0)(
            H.metrics(s)), what="queue depth 0 and nothing running")


def test_metrics_count_requests_and_tokens():
    s = shared.get()
    before = H.metrics(s)
    resp = client().completions.create(model=model_id(), prompt="abc", max_tokens=5, temperature=0)
    after = H.metrics(s)
    key = 'flashplan_requests_total{endpoint="completions",status="200"}'
    assert after[key] == before.get(key, 0) + 1
    assert after["flashplan_prompt_tokens_total"] - before["flashplan_prompt_tokens_total"] == resp.usage.prompt_tokens
    assert after["flashplan_generation_tokens_total"] - before["flashplan_generation_tokens_total"] == \
        resp.usage.completion_tokens
    assert after["flashplan_time_to_first_token_seconds_count"] == before["flashplan_time_to_first_token_seconds_count"] + 1
    for name in ("flashplan_queue_depth", "flashplan_decode_tokens_per_second", "flashplan_requests_running"):
        assert name in after


if __name__ == "__main__":
    try:
        H.run_tests(dict(globals()), watchdog_s=900)
    finally:
        shared.close()
