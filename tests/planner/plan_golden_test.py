"""Golden plans: compiling the full DS4 Flash header (synth --preset full --header-only)
for the shipped H100 and H200 profiles must reproduce plans/ds4-flash-q2.*: the plan
bytes, `inspect --json`, `inspect` text and the H100-vs-H200 diff. A planner change that
alters any of them fails here until tools/scripts/regen-golden-plans.sh is re-run and the
new goldens are reviewed and committed.
"""
import difflib
import gzip
import os
import subprocess
import sys
import tempfile

BIN = os.environ["FLASHPLAN_BIN"]
DEVICES = ["h100-sxm-80gb", "h200-141gb", "2x-h100-sxm-80gb"]
failures = []


def run(*args, ok=(0,)):
    p = subprocess.run([BIN, *args], capture_output=True)
    if p.returncode not in ok:
        sys.exit(f"flashplan {' '.join(args)} exited {p.returncode}: {p.stderr.decode()}")
    return p.stdout


def compare(name, got, want):
    if got == want:
        return
    lines = list(difflib.unified_diff(want.decode(errors="replace").splitlines(),
                                      got.decode(errors="replace").splitlines(),
                                      "golden/" + name, "now/" + name, lineterm="", n=1))
    failures.append(f"{name} differs from the golden:\n" + "\n".join(lines[:40]))


with tempfile.TemporaryDirectory() as tmp:
    model = os.path.join(tmp, "ds4-flash-q2.header.gguf")
    run("synth", "--preset", "full", "--header-only", "--no-progress", "-o", model)
    for dev in DEVICES:
        stem = f"ds4-flash-q2.{dev}"
        plan = os.path.join(tmp, stem + ".fplan")
        run("compile", model, "--profile", f"plans/devices/{dev}.yaml", "-o", plan, "-q")
        with open(plan, "rb") as f:
            got = f.read()
        with open(f"plans/{stem}.fplan", "rb") as f:
            want = f.read()
        if got != want:
            failures.append(f"plans/{stem}.fplan: {len(got)} bytes now, {len(want)} in the golden (bytes differ)")
        # The text forms name the plan by path: inspect the golden path so they compare.
        golden_plan = f"plans/{stem}.fplan"
        with gzip.open(f"plans/{stem}.inspect.json.gz", "rb") as f:
            compare(stem + ".inspect.json", run("inspect", "--json", plan), f.read())
        with open(f"plans/{stem}.inspect.txt", "rb") as f:
            compare(stem + ".inspect.txt", run("inspect", golden_plan), f.read())
    with open("plans/ds4-flash-q2.h100-vs-h200.diff.txt", "rb") as f:
        compare("ds4-flash-q2.h100-vs-h200.diff.txt",
                run("diff", "plans/ds4-flash-q2.h100-sxm-80gb.fplan", "plans/ds4-flash-q2.h200-141gb.fplan", ok=(1,)),
                f.read())
    with open("plans/ds4-flash-q2.h200-vs-2x-h100.diff.txt", "rb") as f:
        compare("ds4-flash-q2.h200-vs-2x-h100.diff.txt",
                run("diff", "plans/ds4-flash-q2.h200-141gb.fplan", "plans/ds4-flash-q2.2x-h100-sxm-80gb.fplan", ok=(1,)),
                f.read())

if failures:
    print("\n\n".join(failures))
    print("\nThe planner's output changed. If the change is intended, regenerate the goldens with\n"
          "  tools/scripts/regen-golden-plans.sh BUILD_DIR\nand review `git diff plans/` before committing.")
    sys.exit(1)
print(f"golden plans reproduced for {', '.join(DEVICES)}")
