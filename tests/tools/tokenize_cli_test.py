"""`flashplan tokenize` end to end: text mode and --decode against the llama.cpp oracle
lines of tests/data/tokenizer (every string through --file, a few through the text
argument and --decode), --no-special, and the error exits.

Exit 77 ("not run") when FLASHPLAN_BIN is not set.
"""
import json
import os
import subprocess
import sys
import tempfile

BIN = os.environ.get("FLASHPLAN_BIN")
DATA = os.environ.get("FLASHPLAN_TEST_DATA", "tests/data")
if not BIN:
    print("not run: FLASHPLAN_BIN is not set")
    sys.exit(77)


def run(*args, stdin=None):
    return subprocess.run([BIN, "tokenize", *args], input=stdin, capture_output=True)


def main():
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)
            print("FAIL:", what)

    base = os.path.join(DATA, "tokenizer", "ggml-vocab-deepseek-llm.gguf")
    with open(base + ".inp", "rb") as f:
        inputs = f.read().decode("utf-8").split("\n__ggml_vocab_test__\n")[:-1]
    with open(base + ".out", encoding="utf-8") as f:
        expected = [[int(x) for x in line.split()] for line in f.read().split("\n")[:-1]]
    assert len(inputs) == len(expected) > 40

    # Batch mode: every oracle string.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "in.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for s in inputs:
                f.write(json.dumps(s) + "\n")
        res = run(base, "--file", path, "--no-special")
        check(res.returncode == 0, f"--file exit {res.returncode}: {res.stderr!r}")
        got = [[int(x) for x in line.split()] for line in res.stdout.decode().split("\n")[:-1]]
        check(got == expected, "--file output differs from the oracle")

    # Text mode and --decode on a few strings (one process each; the batch above covers
    # all). No leading dash: CLI11 would read that as an option.
    picked = [i for i, s in enumerate(inputs) if s and not s.startswith("-")][::6]
    assert len(picked) >= 6
    for s, ids in ((inputs[i], expected[i]) for i in picked):
        res = run(base, s)
        check(res.returncode == 0 and res.stdout.decode() == " ".join(map(str, ids)) + "\n", f"text mode {s!r}")
        if ids:
            res = run(base, "--decode", ",".join(map(str, ids)))
            check(res.returncode == 0 and res.stdout.decode("utf-8") == s + "\n", f"--decode {ids}")

    # Control-token text: one id by default, BPE'd with --no-special.
    bos = "<｜begin▁of▁sentence｜>"
    res = run(base, bos)
    check(res.stdout == b"100000\n", f"special: {res.stdout!r}")
    res = run(base, "--no-special", bos)
    check(res.returncode == 0 and len(res.stdout.split()) > 1, f"--no-special: {res.stdout!r}")

    # No MODEL: the built-in tiny model's tokenizer; text round-trips through --decode.
    res = run("hello world")
    check(res.returncode == 0 and len(res.stdout.split()) > 0, f"built-in model: {res.returncode} {res.stderr!r}")
    if res.returncode == 0:
        ids = ",".join(res.stdout.decode().split())
        back = run("--decode", ids)
        check(back.stdout == b"hello world\n", f"built-in round trip: {back.stdout!r}")

    # Errors: non-zero exit and a one-line message naming the problem.
    for args, needle in [((base,), b"exactly one of"),
                         ((base, "--decode", "1,x"), b"'x' is not a token id"),
                         ((base, "--decode", "999999"), b"token id 999999: out of range"),
                         ((os.path.join(DATA, "tokenizer", "missing.gguf"), "a"), b"missing.gguf")]:
        res = run(*args)
        check(res.returncode != 0 and needle in res.stderr, f"error case {args}: {res.returncode} {res.stderr!r}")
    res = run(base, "--file", "-", stdin=b'"ok"\n[1]\n')
    check(res.returncode != 0 and b"-:2: a JSON array, expected a JSON string" in res.stderr, f"bad --file: {res.stderr!r}")

    if failures:
        print(f"FAILED: {len(failures)}")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
