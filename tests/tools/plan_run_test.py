"""Running from compiled plans on the command line (CPU reference executor):
compile the built-in tiny model for plans/devices/cpu.yaml; `run --plan` gives the
same greedy tokens as no plan (MTP drafting from the plan's depth, and --mtp-draft 0);
`logits --plan` the same bytes; a plan for another model and for a GPU is refused with
both fingerprints / device names; a flag that contradicts the plan is refused naming
both values; --weights random:SEED is refused on the CPU; `serve --plan` answers with the
same greedy ids as `run --plan`. Exit 77 ("not run") when FLASHPLAN_BIN is not set.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

BIN = os.environ.get("FLASHPLAN_BIN")
DATA = os.environ.get("FLASHPLAN_TEST_DATA")
if not BIN or not DATA:
    print("not run: FLASHPLAN_BIN / FLASHPLAN_TEST_DATA not set")
    sys.exit(77)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_harness as H  # noqa: E402

failures = []
CACHE = tempfile.mkdtemp(prefix="flashplan-plan-run-")
ENV = dict(os.environ, XDG_CACHE_HOME=CACHE)
PROMPT = "The quick brown fox"


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, encoding="utf-8", errors="replace", timeout=600, env=ENV)


def run_json(*args):
    p = run(*args, "--json")
    check(p.returncode == 0, f"{' '.join(args)}: rc {p.returncode}: {p.stderr}")
    return json.loads(p.stdout) if p.returncode == 0 else {}


with tempfile.TemporaryDirectory() as tmp:
    ref = run_json("run", "-p", PROMPT, "-n", "24", "--temp", "0", "--ignore-eos")
    models = glob.glob(os.path.join(CACHE, "flashplan", "*.gguf"))
    check(len(models) == 1, f"built-in model in the cache: {models}")
    tiny = models[0]

    plan = os.path.join(tmp, "tiny.cpu.fplan")
    p = run("compile", tiny, "--profile", "plans/devices/cpu.yaml", "--numerics", "plain", "-o", plan, "-q")
    check(p.returncode == 0, f"compile for cpu: {p.stderr}")

    got = run_json("run", "-p", PROMPT, "-n", "24", "--temp", "0", "--ignore-eos", "--plan", plan)
    check(got.get("tokens") == ref.get("tokens"), f"run --plan tokens {got.get('tokens')} != {ref.get('tokens')}")
    check(got.get("plan") == plan, f"run --json plan: {got.get('plan')}")
    check(got.get("mtp", {}).get("draft") == 1, f"MTP depth from the plan: {got.get('mtp')}")
    check(got.get("numerics") == "plain", "numerics from the plan")
    check(got.get("load", {}).get("source") == "mmap", f"load info: {got.get('load')}")
    off = run_json("run", "-p", PROMPT, "-n", "24", "--temp", "0", "--ignore-eos", "--plan", plan, "--mtp-draft", "0")
    check(off.get("tokens") == ref.get("tokens") and off.get("mtp", {}).get("draft") == 0, "--mtp-draft 0 with a plan")
    small = run_json("run", "-p", PROMPT, "-n", "8", "--temp", "0", "--ignore-eos", "--plan", plan, "--chunk", "3")
    check(small.get("tokens") == ref.get("tokens", [])[:8], "--chunk below the largest bucket")

    # logits from the plan: the same bytes as without.
    a, b = os.path.join(tmp, "a.f32"), os.path.join(tmp, "b.f32")
    p1 = run("logits", tiny, "--tokens", "1,17,42,99,5", "-o", a)
    p2 = run("logits", tiny, "--tokens", "1,17,42,99,5", "-o", b, "--plan", plan)
    check(p1.returncode == 0 and p2.returncode == 0, f"logits: {p1.stderr} {p2.stderr}")
    check(p1.returncode == 0 and p2.returncode == 0 and open(a, "rb").read() == open(b, "rb").read(),
          "logits --plan differ from logits")

    # A plan for another model: the transformers oracle's tiny model.
    p = run("run", os.path.join(DATA, "hf", "seed1", "tiny.gguf"), "-p", PROMPT, "-n", "2", "--plan", plan)
    check(p.returncode != 0 and p.stderr.count("fingerprint") == 2, f"plan for another model: {p.stderr}")

    # A plan for a GPU: named with the CPU executor when --backend cpu is asked for.
    gpu_plan = os.path.join(tmp, "tiny.h200.fplan")
    p = run("compile", tiny, "--profile", "plans/devices/h200-141gb.yaml", "--numerics", "plain", "-o", gpu_plan, "-q")
    check(p.returncode == 0, f"compile for h200: {p.stderr}")
    p = run("run", "-p", PROMPT, "-n", "2", "--plan", gpu_plan, "--backend", "cpu")
    check(p.returncode != 0 and "h200-141gb" in p.stderr and "--backend cpu" in p.stderr and "cuda" in p.stderr,
          f"cuda plan on --backend cpu: {p.stderr}")

    # Flags that contradict the plan, both values named.
    for flags, want in ((["--numerics", "official"], ["official", "plain"]),
                        (["-c", "100"], ["100", "max context"]),
                        (["--chunk", "4096"], ["4096", "2048"]),
                        (["--mtp-draft", "3"], ["3", "depth to 1"])):
        p = run("run", "-p", PROMPT, "-n", "2", "--plan", plan, *flags)
        check(p.returncode != 0 and "contradicts the plan" in p.stderr and all(w in p.stderr for w in want),
              f"{flags}: rc {p.returncode}: {p.stderr}")
    # The same values as the plan's are fine.
    ok = run_json("run", "-p", PROMPT, "-n", "4", "--temp", "0", "--ignore-eos", "--plan", plan, "--numerics", "plain")
    check(ok.get("tokens") == ref.get("tokens", [])[:4], "a flag equal to the plan's value")

    p = run("run", "-p", PROMPT, "-n", "2", "--weights", "random:1")
    check(p.returncode != 0 and "--backend cuda" in p.stderr, f"--weights random on the cpu: {p.stderr}")
    p = run("run", "-p", PROMPT, "-n", "2", "--weights", "rand")
    check(p.returncode != 0 and "random:SEED" in p.stderr, f"--weights rand: {p.stderr}")

    # proof with a plan on one side.
    p = run("proof", "--a", "--threads 1", "--b", f"--plan {plan}", "-p", PROMPT, "-n", "12")
    check(p.returncode == 0, f"proof a=no plan b=plan: rc {p.returncode}: {p.stdout} {p.stderr}")

    # serve --plan: greedy ids equal run --plan's.
    H.BIN = BIN
    os.environ["XDG_CACHE_HOME"] = CACHE
    with H.Server(["--plan", plan, "-q"]) as s:
        status, body = H.post_json(s, "/v1/completions", {"prompt": PROMPT, "max_tokens": 24, "temperature": 0,
                                                          "ignore_eos": True, "return_token_ids": True})
        check(status == 200, f"serve --plan: {status} {body}")
        if status == 200:
            check(body["choices"][0]["token_ids"] == got.get("tokens"), "serve --plan ids differ from run --plan")
        check(f"plan {plan}" in s.log_text(), "serve names the plan at start-up")

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("plan run CLI: all checks passed")
