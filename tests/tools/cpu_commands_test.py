"""`flashplan run`, `logits` and `chat` end to end on the CPU executor.

run: the built-in tiny model (no MODEL), --json fields, greedy and seeded sampling
reproducible, identical tokens with MTP drafting on and off and for 1 or 2 threads.
logits: the transformers oracle's tiny model (tests/data/hf/seed1) through the CLI,
within the oracle's tolerance; --chunk gives the same bytes; official numerics differ.
chat: piped stdin (not a terminal), /think, /nothink, /reset, /exit.
profile: bad flags are refused with the value and what was expected before any GPU is needed
(a build without CUDA says so instead).
Exit 77 ("not run") when FLASHPLAN_BIN is not set.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ.get("FLASHPLAN_BIN")
DATA = os.environ.get("FLASHPLAN_TEST_DATA")
if not BIN or not DATA:
    print("not run: FLASHPLAN_BIN / FLASHPLAN_TEST_DATA not set")
    sys.exit(77)

failures = []
CACHE = tempfile.mkdtemp(prefix="flashplan-cpu-cmd-")
ENV = dict(os.environ, XDG_CACHE_HOME=CACHE)


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(*args, stdin=None):
    return subprocess.run([BIN, *args], capture_output=True, encoding="utf-8", errors="replace", timeout=600,
                          input=stdin, env=ENV)


def run_json(*args):
    res = run("run", *args, "--json")
    check(res.returncode == 0, f"run {args}: exit {res.returncode}: {res.stderr}")
    if res.returncode != 0:
        return {"tokens": []}
    return json.loads(res.stdout)


def test_run():
    j = run_json("-p", "Hello world", "-n", "24")
    for key in ("tokens", "text", "prefill_tps", "decode_tps", "prompt_tokens", "mtp"):
        check(key in j, f"run --json: missing {key}")
    check(len(j["tokens"]) == 24 or j.get("stopped_at_eos"), f"run: {len(j['tokens'])} tokens")
    check(isinstance(j["text"], str), "run: text is a string")
    check(j["decode_tps"] > 0 and j["prefill_tps"] > 0, "run: positive tok/s")
    again = run_json("-p", "Hello world", "-n", "24", "-t", "1")
    check(again["tokens"] == j["tokens"], "run: 1 thread gives the same greedy tokens")
    for k in ("1", "3"):
        m = run_json("-p", "Hello world", "-n", "24", "--mtp-draft", k)
        check(m["tokens"] == j["tokens"], f"run --mtp-draft {k}: tokens differ from MTP off")
        check(m["mtp"]["drafted"] > 0, f"run --mtp-draft {k}: nothing drafted")
    s1 = run_json("-p", "Hello", "-n", "24", "--temp", "0.8", "--top-p", "0.9", "--seed", "5")
    s2 = run_json("-p", "Hello", "-n", "24", "--temp", "0.8", "--top-p", "0.9", "--seed", "5", "--mtp-draft", "2")
    s3 = run_json("-p", "Hello", "-n", "24", "--temp", "0.8", "--top-p", "0.9", "--seed", "6")
    check(s1["tokens"] == s2["tokens"], "run: same seed, MTP on/off: different tokens")
    check(s1["tokens"] != s3["tokens"], "run: another seed gives the same 24 tokens")
    text = run("run", "-p", "Hello", "-n", "8")
    check(text.returncode == 0 and "tok/s" in text.stderr, f"run (text): summary missing: {text.stderr}")
    bad = run("run", "-n", "4")
    check(bad.returncode != 0, "run without -p must fail")


def test_logits():
    d = os.path.join(DATA, "hf", "seed1")
    with open(os.path.join(d, "oracle.json")) as f:
        index = json.load(f)
    tol = index["tolerance"]["logits_max_abs"]
    with tempfile.TemporaryDirectory() as tmp:
        for p in index["prompts"][:2]:
            ids = ",".join(str(i) for i in p["ids"])
            ref = np.fromfile(os.path.join(d, p["logits"]["file"]), dtype=np.float32).reshape(p["logits"]["shape"])
            outs = {}
            for name, extra in (("one", []), ("chunk3", ["--chunk", "3"]), ("official", ["--numerics", "official"])):
                out = os.path.join(tmp, f"{p['name']}.{name}.f32")
                res = run("logits", os.path.join(d, "tiny.gguf"), "--tokens", ids, "-o", out, *extra)
                check(res.returncode == 0, f"logits {p['name']} {extra}: exit {res.returncode}: {res.stderr}")
                outs[name] = np.fromfile(out, dtype=np.float32) if res.returncode == 0 else np.zeros(0)
            got = outs["one"].reshape(ref.shape) if outs["one"].size == ref.size else None
            check(got is not None, f"logits {p['name']}: {outs['one'].size} floats, expected {ref.size}")
            if got is not None:
                err = float(np.max(np.abs(got - ref)))
                print(f"logits {p['name']}: max |err| {err:.3g}")
                check(err <= tol, f"logits {p['name']}: max err {err} > {tol}")
                check((got.argmax(-1) == np.array(p["argmax"])).all(), f"logits {p['name']}: argmax differs")
            check(outs["one"].tobytes() == outs["chunk3"].tobytes(), f"logits {p['name']}: --chunk 3 changes bytes")
            check(outs["one"].tobytes() != outs["official"].tobytes(), f"logits {p['name']}: official == plain")
        res = run("logits", os.path.join(d, "tiny.gguf"), "--tokens", "0,abc", "-o", os.path.join(tmp, "x"))
        lines = [l for l in res.stderr.splitlines() if l.strip()]
        check(res.returncode != 0 and len(lines) == 1, f"logits bad ids: {res.returncode} {res.stderr!r}")
        res = run("logits", os.path.join(d, "tiny.gguf"), "--tokens", "0,99999", "-o", os.path.join(tmp, "x"))
        check(res.returncode != 0 and "vocabulary" in res.stderr, f"logits id out of range: {res.stderr!r}")


def test_chat():
    res = run("chat", "-n", "6", stdin="hello there\n/think\nwhy?\n/nothink\n/reset\nbye\n/exit\nnot read\n")
    check(res.returncode == 0, f"chat: exit {res.returncode}: {res.stderr}")
    out = res.stdout
    check("[thinking on]" in out and "[thinking off]" in out, f"chat: mode lines missing: {out!r}")
    check("[conversation reset]" in out, "chat: reset line missing")
    # Three replies, each ending with a newline, plus three command lines.
    check(out.count("\n") >= 6, f"chat: expected replies, got {out!r}")
    res = run("chat", "-n", "4", "--temp", "0.7", "--seed", "1", stdin="a\nb\n")
    check(res.returncode == 0, f"chat at end of input: exit {res.returncode}: {res.stderr}")


def test_profile_refusals():
    cases = [
        ((), "pass --backend cuda"),
        (("--backend", "cuda", "--ctx-tokens", "0"), "--ctx-tokens 0"),
        (("--backend", "cuda", "--ctx-tokens", "4000", "-c", "4096", "--chunk", "256"), "the context holds 4096"),
    ]
    for args, want in cases:
        res = run("profile", *args)
        err = res.stderr
        check(res.returncode == 1, f"profile {args}: exit {res.returncode}, expected 1: {err}")
        check("Traceback" not in err and "terminate" not in err, f"profile {args}: crashed: {err}")
        if "built without CUDA" in err:
            continue
        check(want in err, f"profile {args}: expected {want!r} in {err!r}")


test_run()
test_logits()
test_chat()
test_profile_refusals()
if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("ok")
