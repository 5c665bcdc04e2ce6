"""`flashplan bench` and `flashplan proof` end to end on the built-in tiny model (CPU).

bench: the CSV has the provenance comments and exactly ds4-bench's columns, one row per
frontier with sane values; the SVG parses as XML with both panels' lines; --json agrees
with the CSV; restoring a frontier by rollback gives the same greedy tokens as
re-prefilling it, and as a fresh single-frontier sweep; bad flags exit non-zero with
one line.
proof: threads 1 vs 2, chunk sizes and MTP drafting are identical (exit 0); sampling
seeds and other weights diverge (exit 1) with the report's fields filled in; bad flags
exit 2 with one line on stderr.

Exit 77 ("not run") when FLASHPLAN_BIN is not set.
"""
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

BIN = os.environ.get("FLASHPLAN_BIN")
if not BIN:
    print("not run: FLASHPLAN_BIN is not set")
    sys.exit(77)

COLUMNS = ["ctx_tokens", "prefill_tokens", "prefill_tps", "gen_tokens", "gen_tps", "gen_tps_ss",
           "first_token_sec", "kvcache_bytes"]
SWEEP = ["--ctx-start", "24", "--ctx-max", "72", "--step-incr", "24", "--gen-tokens", "6", "--chunk", "16"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


class Result:
    def __init__(self, p):
        self.returncode = p.returncode
        self.stdout = p.stdout.decode("utf-8", errors="replace")
        self.stderr = p.stderr.decode("utf-8", errors="replace")


def run(*args):
    return Result(subprocess.run([BIN, *args], capture_output=True, timeout=600))


def one_line_error(res, what):
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    check(len(lines) == 1, f"{what}: expected one stderr line, got {res.stderr!r}")


def bench_json(*extra):
    res = run("bench", *SWEEP, "--json", *extra)
    check(res.returncode == 0, f"bench --json {extra}: exit {res.returncode}: {res.stderr}")
    return json.loads(res.stdout) if res.returncode == 0 else {"rows": [], "meta": {}}


def test_bench_csv_svg():
    with tempfile.TemporaryDirectory() as tmp:
        out, svg = os.path.join(tmp, "r.csv"), os.path.join(tmp, "p.svg")
        res = run("bench", *SWEEP, "-o", out, "--svg", svg, "--threads", "2")
        check(res.returncode == 0, f"bench exit {res.returncode}: {res.stderr}")
        if res.returncode != 0:
            return
        text = open(out).read()
        comments = [l for l in text.splitlines() if l.startswith("#")]
        body = "\n".join(l for l in text.splitlines() if not l.startswith("#"))
        meta = dict(l[2:].split(": ", 1) for l in comments)
        for key in ("model", "backend", "device", "date", "commit"):
            check(meta.get(key), f"CSV comment '# {key}:' missing or empty: {comments}")
        check(meta.get("backend") == "cpu", f"backend {meta.get('backend')}")
        check(text.splitlines()[len(comments)] == ",".join(COLUMNS), "header is not exactly ds4-bench's columns")
        rows = list(csv.DictReader(io.StringIO(body)))
        check([int(r["ctx_tokens"]) for r in rows] == [24, 48, 72], f"frontiers {[r['ctx_tokens'] for r in rows]}")
        check(all(int(r["prefill_tokens"]) == 24 for r in rows), "prefill_tokens is not the interval (incremental)")
        check(all(int(r["gen_tokens"]) == 6 for r in rows), "gen_tokens")
        for r in rows:
            for k in ("prefill_tps", "gen_tps", "gen_tps_ss", "first_token_sec"):
                check(float(r[k]) > 0, f"ctx {r['ctx_tokens']}: {k} = {r[k]}")
            # decode time >= the first step's time: gen_tokens / gen_tps >= first_token_sec
            check(6 / float(r["gen_tps"]) >= float(r["first_token_sec"]) * 0.99, f"ctx {r['ctx_tokens']}: times")
        kv = [int(r["kvcache_bytes"]) for r in rows]
        check(kv[0] > 0 and kv == sorted(kv) and kv[-1] > kv[0], f"kvcache_bytes should grow with context: {kv}")

        root = ET.parse(svg).getroot()
        check(root.tag == "{http://www.w3.org/2000/svg}svg", f"SVG root {root.tag}")
        lines = root.findall(".//{http://www.w3.org/2000/svg}polyline")
        check(len(lines) == 3, f"expected 3 series (prefill, gen, gen steady), got {len(lines)}")
        for pl in lines:
            pts = pl.get("points").split()
            check(len(pts) == 3, f"series with {len(pts)} points, expected 3")
        texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
        for label in ("prefill tok/s", "generation tok/s", "context (tokens)"):
            check(label in texts, f"SVG lacks label {label!r}")


def test_bench_restore_paths():
    # The same sweep restored by rollback and by re-prefill must decode the same tokens,
    # and a fresh sweep straight to the last frontier must too (incremental prefill is exact).
    a = bench_json("--restore", "truncate")
    b = bench_json("--restore", "replay")
    gen_a = [r["generated"] for r in a["rows"]]
    gen_b = [r["generated"] for r in b["rows"]]
    check(len(gen_a) == 3 and all(len(g) == 7 for g in gen_a), f"generated ids per row: {gen_a}")
    check(gen_a == gen_b, "rollback and re-prefill restore decode different tokens")
    check([r["restored"] for r in a["rows"]] == ["truncate", "truncate", ""], f"restored {a['rows']}")
    check([r["restored"] for r in b["rows"]] == ["replay", "replay", ""], "replay rows")
    fresh = run("bench", "--ctx-start", "72", "--ctx-max", "72", "--gen-tokens", "6", "--chunk", "16", "--json")
    check(fresh.returncode == 0, f"fresh bench: {fresh.stderr}")
    if fresh.returncode == 0 and gen_a:
        check(json.loads(fresh.stdout)["rows"][0]["generated"] == gen_a[-1],
              "the last frontier decodes differently after incremental prefill than fresh")
    # MTP drafting decodes the same greedy tokens (it re-prefills to restore).
    m = bench_json("--mtp-draft", "2")
    check([r["generated"] for r in m["rows"]] == gen_a, "MTP drafting changed the greedy tokens")
    check(all(r["drafted"] > 0 for r in m["rows"]), "MTP drafted nothing")
    # Default (stdout) CSV output agrees on the row count.
    res = run("bench", *SWEEP)
    body = [l for l in res.stdout.splitlines() if l and not l.startswith("#")]
    check(res.returncode == 0 and len(body) == 4 and body[0] == ",".join(COLUMNS), f"stdout CSV: {res.stdout!r}")


def test_bench_errors():
    for args, what in ((["--ctx-start", "64", "--ctx-max", "32"], "ctx-start > ctx-max"),
                       (["--ctx-max", "100000"], "beyond the model's context"),
                       (["--step-incr", "0", "--ctx-max", "64", "--ctx-start", "32"], "zero step"),
                       (["--ctx-max", "64", "--ctx-start", "32", "-c", "40"], "-c too small"),
                       (["--ctx-max", "64", "--ctx-start", "32", "--mtp-draft", "2", "--restore", "truncate"],
                        "truncate with MTP")):
        res = run("bench", *args, "--gen-tokens", "4")
        check(res.returncode != 0 and res.stdout == "", f"{what}: exit {res.returncode}, stdout {res.stdout!r}")
        one_line_error(res, what)
    # An unreadable --prompt-file: the path, its role and why, before any run.
    for path, why in (("/nonexistent/prompt.txt", "cannot open --prompt-file: No such file"),
                      ("/tmp", "/tmp: is a directory; expected a --prompt-file")):
        res = run("bench", "--ctx-max", "64", "--ctx-start", "32", "--gen-tokens", "4", "--prompt-file", path)
        check(res.returncode != 0 and why in res.stderr, f"--prompt-file {path}: {res.returncode} {res.stderr!r}")
        one_line_error(res, f"--prompt-file {path}")


def proof(*args):
    return run("proof", "-p", "Hello world", "-p", "The quick brown fox", "--ids", "0 17 42 99", "-n", "12", *args)


def test_proof():
    res = proof("--a", "--threads 1", "--b", "--threads 2")
    check(res.returncode == 0, f"threads 1 vs 2: exit {res.returncode}: {res.stdout}{res.stderr}")
    check("IDENTICAL: 3 prompts, 36 generated tokens" in res.stdout, f"identical summary: {res.stdout!r}")

    res = proof("--a", "--chunk 1", "--b", "--chunk 256 --mtp-draft 2", "--json")
    check(res.returncode == 0, f"chunk 1 vs chunk 256 + MTP: exit {res.returncode}: {res.stdout}{res.stderr}")
    if res.returncode == 0:
        j = json.loads(res.stdout)
        check(j["identical"] and j["divergence"] is None and len(j["prompts"]) == 3, "identical JSON")
        check(all(p["a_tokens"] == p["b_tokens"] and len(p["a_tokens"]) == 12 for p in j["prompts"]), "tokens")

    res = proof("--a", "--temp 1 --seed 1", "--b", "--temp 1 --seed 2", "--json")
    check(res.returncode == 1, f"different seeds: exit {res.returncode}: {res.stderr}")
    if res.returncode == 1:
        j = json.loads(res.stdout)
        d = j["divergence"]
        check(not j["identical"] and d is not None, "divergence reported")
        p = j["prompts"][d["prompt"]]
        k = d["position"]
        check(p["a_tokens"][:k] == p["b_tokens"][:k] and p["a_tokens"][k] != p["b_tokens"][k],
              f"position {k} is not the first difference")
        check(d["a"]["id"] == p["a_tokens"][k] and d["b"]["id"] == p["b_tokens"][k], "divergent ids")
        check(d["sequence_position"] == p["prompt_tokens"] + k, "sequence position")
        for side in ("a", "b"):
            top = d[side]["top2"]
            check(len(top) == 2 and top[0]["logit"] >= top[1]["logit"], f"top-2 of {side}: {top}")
            check(isinstance(d[side]["text"], str), "token text")

    # Another model (the tiny preset with other weights) as side B's positional MODEL.
    with tempfile.TemporaryDirectory() as tmp:
        other = os.path.join(tmp, "seed2.gguf")
        syn = run("synth", "--preset", "tiny", "--seed", "2", "-o", other, "--no-progress")
        check(syn.returncode == 0, f"synth: {syn.stderr}")
        res = proof("--a", "", "--b", other)
        check(res.returncode == 1 and "DIVERGES at generated token" in res.stdout and "top-2:" in res.stdout
              and "identical before it:" in res.stdout, f"other weights: exit {res.returncode}: {res.stdout}")

    for args, what in ((["--a", "--threads abc", "--b", "--threads 1"], "non-numeric threads"),
                       (["--a", "--bogus", "--b", "--threads 1"], "unknown side flag"),
                       (["--a", "--numerics exact", "--b", ""], "bad numerics"),
                       (["--a", "-n 4", "--b", ""], "-n inside a side"),
                       (["--a", "", "--b", "", "--ids", "1 x"], "bad ids"),
                       (["--a", "", "--b", "", "--prompts", "/nonexistent/prompts.txt"], "missing prompts file")):
        res = proof(*args)
        check(res.returncode == 2, f"{what}: exit {res.returncode}, expected 2: {res.stderr}")
        one_line_error(res, what)
    for args, what in ((["--a", "", "--b", ""], "no prompts"),
                       (["-p", "x", "--a", "", "--b", "", "--bogus"], "unknown flag"),
                       (["-p", "x", "--a", ""], "missing --b"),
                       (["-p", "x", "--a", "", "--b", "", "-n", "many"], "non-numeric -n"),
                       (["-p", "x", "--a", "", "--b", "", "-n", "0"], "zero -n")):
        res = run("proof", *args)
        check(res.returncode == 2, f"{what}: exit {res.returncode}, expected 2: {res.stderr}")
        one_line_error(res, what)


def main():
    test_bench_csv_svg()
    test_bench_restore_paths()
    test_bench_errors()
    test_proof()
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("ok")


main()
