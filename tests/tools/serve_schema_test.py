"""Schemathesis fuzzes `flashplan serve` from its own /openapi.json: valid and invalid
requests (a bounded number per operation, fixed seed), and every response must be
documented and match its schema -- status code, content type, body schema -- with no
5xx; invalid requests must be rejected. The server must still be alive at the end.

The server runs with a small context (--ctx 256) so that the largest max_tokens the
document allows stays quick on the CPU engine."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_harness as H  # noqa: E402

EXAMPLES_PER_OPERATION = 40
SEED = 20240601


def run_schemathesis(server, examples, extra=()):
    cmd = schemathesis_cli() + [
        "run", f"{server.base_url}/openapi.json",
        "--base-url", server.base_url,
        "--checks", "all",
        "--data-generation-method", "all",
        "--hypothesis-max-examples", str(examples),
        "--hypothesis-seed", str(SEED),
        "--hypothesis-deadline", "120000",
        "--hypothesis-database", "none",
        "--hypothesis-suppress-health-check", "all",
        "--request-timeout", "120000",
        "--workers", "1",
        "--schemathesis-io-telemetry", "false",
        "--sanitize-output", "false",
        *extra,
    ]
    env = dict(os.environ, SCHEMATHESIS_TELEMETRY="false", NO_COLOR="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    print(proc.stdout[-6000:])
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
    return proc.returncode


def schemathesis_cli():
    exe = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "schemathesis.cli"]


def test_schemathesis_finds_nothing():
    with H.Server(["--ctx", "256", "--quiet"]) as s:
        rc = run_schemathesis(s, EXAMPLES_PER_OPERATION)
        assert s.alive(), "the server died under fuzzing:\n" + s.log_text()[-3000:]
        status, _, _ = H.request(s, "GET", "/health")
        assert status == 200
        assert rc == 0, f"schemathesis failed (exit {rc})"
        # It did exercise the generating endpoints.
        m = H.metrics(s)
        for ep in ("chat_completions", "completions"):
            ok = m.get(f'flashplan_requests_total{{endpoint="{ep}",status="200"}}', 0)
            assert ok > 0, f"no fuzzed {ep} request succeeded"
        assert all(not (k.startswith("flashplan_requests_total") and 'status="5' in k) for k in m), \
            [k for k in m if 'status="5' in k]


def test_schemathesis_with_an_api_key():
    """With --api-key the document declares bearer auth on the guarded routes; the
    fuzzer sends the key, and also checks that leaving it out is refused (ignored_auth)."""
    with H.Server(["--ctx", "256", "--quiet", "--api-key", "fuzz-key"]) as s:
        rc = run_schemathesis(s, EXAMPLES_PER_OPERATION // 4, ["-H", "Authorization: Bearer fuzz-key"])
        assert s.alive(), "the server died under fuzzing:\n" + s.log_text()[-3000:]
        assert rc == 0, f"schemathesis failed (exit {rc})"
        m = H.metrics(s)
        assert sum(v for k, v in m.items() if k.startswith("flashplan_requests_total") and 'status="200"' in k
                   and ("completions" in k or "tokenize" in k)) > 0, "no fuzzed request got past the key"


if __name__ == "__main__":
    H.run_tests(dict(globals()), watchdog_s=1200)
