"""Every bad request gets the OpenAI error shape {"error": {"message", "type", "param",
"code"}} with the right status, over raw HTTP -- and the server keeps serving after
each one (checked after every case, and with a real generation at the end)."""
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_harness as H  # noqa: E402

BODY_LIMIT = 64 * 1024  # --max-body-bytes for this script's server
shared = H.Shared(["--max-body-bytes", str(BODY_LIMIT), "--quiet"])

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER = [{"role": "user", "content": "hi"}]


def context_length(s):
    return json.loads(H.request(s, "GET", "/v1/models")[2])["data"][0]["max_model_len"]


def expect_error(status, body_bytes, want_status, param="any", code="any"):
    assert status == want_status, f"status {status}, expected {want_status}: {body_bytes[:300]!r}"
    body = json.loads(body_bytes)
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    if param != "any":
        assert err["param"] == param, err
    if code != "any":
        assert err["code"] == code, err
    return err


def still_serving(s):
    status, _, body = H.request(s, "GET", "/health", timeout=10)
    assert status == 200, "server stopped answering /health"


def check(path, body, want_status, param="any", code="any", headers=None, server=None):
    s = server or shared.get()
    status, _, data = H.request(s, "POST", path, body, headers=headers)
    err = expect_error(status, data, want_status, param, code)
    still_serving(s)
    return err


# ---- malformed bodies ----------------------------------------------------------------

def test_malformed_json():
    check(CHAT, b'{"messages": [', 400, code="invalid_json")
    check(CHAT, b"", 400, code="invalid_json")
    check(CHAT, b"null", 400, code="invalid_json")
    check(CHAT, b"[1, 2]", 400, code="invalid_json")
    check(COMPLETIONS, b'{"prompt": "a",}', 400, code="invalid_json")
    check(CHAT, b'{"messages": "\xff\xfe"}', 400)  # invalid UTF-8 in a string
    check(CHAT, b"[" * 5000 + b"]" * 5000, 400, code="invalid_json")  # absurd nesting


def test_wrong_types():
    check(CHAT, {"messages": "hi"}, 400, param="messages", code="invalid_type")
    check(CHAT, {"messages": USER, "max_tokens": "5"}, 400, param="max_tokens", code="invalid_type")
    check(CHAT, {"messages": USER, "max_tokens": 2.5}, 400, param="max_tokens", code="invalid_type")
    check(CHAT, {"messages": USER, "temperature": "hot"}, 400, param="temperature", code="invalid_type")
    check(CHAT, {"messages": USER, "stream": "yes"}, 400, param="stream", code="invalid_type")
    check(CHAT, {"messages": USER, "stop": 5}, 400, param="stop", code="invalid_type")
    check(CHAT, {"messages": USER, "seed": "x"}, 400, param="seed", code="invalid_type")
    check(CHAT, {"messages": USER, "model": 7}, 400, param="model", code="invalid_type")
    check(CHAT, {"messages": [{"role": "user", "content": 5}]}, 400, param="messages[0].content")
    check(CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, param="messages[0].role")
    check(CHAT, {"messages": ["hi"]}, 400, param="messages[0]")
    check(CHAT, {"messages": USER, "tools": {"type": "function"}}, 400, param="tools")
    check(CHAT, {"messages": USER, "tools": [{"type": "function"}]}, 400, param="tools[0].function")
    check(COMPLETIONS, {"prompt": 17}, 400, param="prompt")
    check(COMPLETIONS, {"prompt": ["a", "b"]}, 400, param="prompt")


def test_out_of_range_values():
    check(CHAT, {"messages": USER, "temperature": 3}, 400, param="temperature")
    check(CHAT, {"messages": USER, "top_p": 0}, 400, param="top_p")
    check(CHAT, {"messages": USER, "top_k": -5}, 400, param="top_k")
    check(CHAT, {"messages": USER, "min_p": 1.5}, 400, param="min_p")
    check(CHAT, {"messages": USER, "logprobs": True, "top_logprobs": 21}, 400, param="top_logprobs")
    check(CHAT, {"messages": USER, "top_logprobs": 2}, 400, param="top_logprobs")
    check(CHAT, {"messages": USER, "n": 2}, 400, param="n")
    check(CHAT, {"messages": USER, "presence_penalty": 1}, 400, param="presence_penalty")
    check(CHAT, {"messages": USER, "reasoning_effort": "extreme"}, 400, param="reasoning_effort")
    check(CHAT, {"messages": USER, "stop": ["x"] * 17}, 400, param="stop")
    check(COMPLETIONS, {"prompt": [1, 2, 10 ** 9]}, 400, param="prompt")
    check(COMPLETIONS, {"prompt": "a", "logprobs": 50}, 400, param="logprobs")


def test_unknown_model():
    check(CHAT, {"model": "gpt-4o", "messages": USER}, 404, param="model", code="model_not_found")
    check(COMPLETIONS, {"model": "nope", "prompt": "a"}, 404, param="model", code="model_not_found")
    s = shared.get()
    status, _, data = H.request(s, "GET", "/v1/models/nope")
    expect_error(status, data, 404, code="model_not_found")


def test_missing_fields():
    check(CHAT, {}, 400, param="messages", code="missing_required_parameter")
    check(CHAT, {"messages": []}, 400, param="messages")
    check(CHAT, {"messages": [{"content": "x"}]}, 400, param="messages[0].role")
    check(CHAT, {"messages": [{"role": "user"}]}, 400, param="messages[0].content")
    check(COMPLETIONS, {"max_tokens": 3}, 400, param="prompt", code="missing_required_parameter")


def test_max_tokens_bounds():
    s = shared.get()
    ctx = context_length(s)
    for bad in (0, -1, -(2 ** 40)):
        check(CHAT, {"messages": USER, "max_tokens": bad}, 400, param="max_tokens")
        check(COMPLETIONS, {"prompt": "a", "max_tokens": bad}, 400, param="max_tokens")
    check(CHAT, {"messages": USER, "max_completion_tokens": 0}, 400, param="max_completion_tokens")
    check(CHAT, {"messages": USER, "max_tokens": ctx}, 400, param="max_tokens", code="context_length_exceeded")
    check(COMPLETIONS, {"prompt": "a", "max_tokens": 2 ** 40}, 400, param="max_tokens", code="context_length_exceeded")


def test_prompt_longer_than_context():
    s = shared.get()
    ctx = context_length(s)
    # Token ids: exactly the context (no room to generate), and far beyond it.
    check(COMPLETIONS, {"prompt": [5] * ctx, "max_tokens": 1}, 400, param="prompt", code="context_length_exceeded")
    # Text: varied words, so BPE cannot fold it into few tokens; still under the body limit.
    words = " ".join(f"w{i % 997}x{i % 13}" for i in range(ctx))
    assert len(words) < BODY_LIMIT
    check(COMPLETIONS, {"prompt": words}, 400, param="prompt", code="context_length_exceeded")
    check(CHAT, {"messages": [{"role": "user", "content": words}]}, 400, param="messages",
          code="context_length_exceeded")


def raw_exchange(s, head, body_parts):
    """Sends a request head and body parts on a fresh socket; returns (status, body)."""
    sock = socket.create_connection((s.host, s.port), timeout=30)
    try:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed early: fine
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                headers = data[:head_end].decode().lower()
                if "content-length:" in headers:
                    n = int(headers.split("content-length:")[1].split("\r\n")[0])
                    if len(data) >= head_end + 4 + n:
                        break
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_body_over_limit():
    s = shared.get()
    big = json.dumps({"messages": [{"role": "user", "content": "x" * (BODY_LIMIT * 2)}]}).encode()
    status, _, data = H.request(s, "POST", CHAT, big, headers={"Content-Type": "application/json"})
    expect_error(status, data, 413, code="request_too_large")
    still_serving(s)
    # Chunked transfer encoding declares no length: the limit must hold while reading.
    chunks = [b"%x\r\n%s\r\n" % (len(big[i:i + 8192]), big[i:i + 8192]) for i in range(0, len(big), 8192)]
    status, body = raw_exchange(s, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                                chunks + [b"0\r\n\r\n"])
    expect_error(status, body, 413, code="request_too_large")
    still_serving(s)
    # A body just under the limit is read and judged on its content.
    ok = json.dumps({"messages": USER, "max_tokens": 1, "pad": "y" * (BODY_LIMIT - 200)}).encode()
    assert len(ok) < BODY_LIMIT
    status, _, data = H.request(s, "POST", CHAT, ok, headers={"Content-Type": "application/json"})
    assert status == 200, data[:300]


def test_unknown_route_and_method():
    s = shared.get()
    status, _, data = H.request(s, "GET", "/v1/nothing")
    expect_error(status, data, 404)
    status, _, data = H.request(s, "GET", CHAT)
    expect_error(status, data, 405, code="method_not_allowed")
    # A body where none belongs is refused, not read.
    status, _, data = H.request(s, "GET", "/v1/models", b'{"x": 1}', headers={"Content-Type": "application/json"})
    expect_error(status, data, 400, code="invalid_body")
    still_serving(s)


def test_api_key():
    with H.Server(["--api-key", "sekret", "--quiet"]) as s:
        body = {"messages": USER, "max_tokens": 1}
        check(CHAT, body, 401, code="invalid_api_key", server=s)
        check(CHAT, body, 401, code="invalid_api_key", headers={"Authorization": "Bearer wrong"}, server=s)
        check(CHAT, body, 401, code="invalid_api_key", headers={"Authorization": "sekret"}, server=s)
        status, _, data = H.request(s, "GET", "/v1/models")
        expect_error(status, data, 401, code="invalid_api_key")
        status, _, data = H.request(s, "POST", CHAT, body, headers={"Authorization": "Bearer sekret"})
        assert status == 200, data
        # Health, metrics and the OpenAPI document stay open (load balancers, scrapers).
        for path in ("/health", "/metrics", "/openapi.json"):
            assert H.request(s, "GET", path)[0] == 200, path


def test_still_generates_after_all_that():
    s = shared.get()
    status, body = H.post_json(s, CHAT, {"messages": USER, "max_tokens": 4, "temperature": 0})
    assert status == 200, body
    assert body["usage"]["completion_tokens"] >= 1
    m = H.metrics(s)
    assert m.get('flashplan_requests_total{endpoint="chat_completions",status="400"}', 0) > 10


if __name__ == "__main__":
    try:
        H.run_tests(dict(globals()), watchdog_s=600)
    finally:
        shared.close()
