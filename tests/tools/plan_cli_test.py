"""flashplan compile / inspect / diff / kernels from the command line: outputs, exit
statuses (diff: 0 equal, 1 different, 2 trouble), refusals of bad input with one-line
messages, JSON that parses and carries every section, and a header-only GGUF as input.
"""
import json
import os
import subprocess
import sys
import tempfile

BIN = os.environ["FLASHPLAN_BIN"]
failures = []


def run(*args):
    p = subprocess.run([BIN, *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def check(cond, what):
    if not cond:
        failures.append(what)


with tempfile.TemporaryDirectory() as tmp:
    tiny = os.path.join(tmp, "tiny.gguf")
    rc, _, err = run("synth", "--preset", "tiny", "--header-only", "--no-progress", "-o", tiny)
    check(rc == 0, f"synth tiny: {rc} {err}")

    a = os.path.join(tmp, "a.fplan")
    rc, out, err = run("compile", tiny, "--profile", "plans/devices/h100-sxm-80gb.yaml", "-o", a)
    check(rc == 0 and "wrote" in out and "predicted decode step" in out, f"compile: {rc} {out} {err}")

    # Same inputs, same bytes.
    a2 = os.path.join(tmp, "a2.fplan")
    run("compile", tiny, "--profile", "plans/devices/h100-sxm-80gb.yaml", "-o", a2, "-q")
    check(open(a, "rb").read() == open(a2, "rb").read(), "compile is not deterministic")

    rc, out, _ = run("diff", a, a2)
    check(rc == 0 and "equal in meaning" in out, f"diff of equal plans: rc {rc}: {out}")

    b = os.path.join(tmp, "b.fplan")
    rc, _, err = run("compile", tiny, "--profile", "plans/devices/h200-141gb.yaml", "-o", b, "-q",
                     "--numerics", "plain", "--override", "blk.*.attn_q_b=cuda.gemm.dequant_cublas_f16")
    check(rc == 0, f"compile with override: {rc} {err}")
    rc, out, _ = run("diff", a, b)
    check(rc == 1, f"diff of different plans exited {rc}")
    check("name: h100-sxm-80gb -> h200-141gb" in out, "diff misses the device name")
    check("numerics: official -> plain" in out, "diff misses numerics")
    check("attn_q_b: cuda.matvec.q8_0 -> cuda.gemm.dequant_cublas_f16" in out, f"diff misses the kernel change:\n{out}")
    rc, out, _ = run("diff", "--json", a, b)
    d = json.loads(out)
    check(rc == 1 and d["equal"] is False and d["kernels"], "diff --json")

    rc, _, err = run("diff", a, os.path.join(tmp, "missing.fplan"))
    check(rc == 2 and "missing.fplan" in err, f"diff with a missing file exited {rc}: {err}")

    # inspect: text and JSON of a plan
    rc, out, _ = run("inspect", a)
    for s in ("memory (device)", "placement", "phase decode", "phase mtp_draft", "alternatives"):
        check(s in out, f"inspect text lacks {s!r}")
    rc, out, _ = run("inspect", "--json", a)
    j = json.loads(out)
    for key in ("provenance", "model", "device", "weights", "chunks", "buffers", "kv", "phases", "memory", "kernels"):
        check(key in j, f"inspect --json lacks {key}")
    check(j["device"]["name"] == "h100-sxm-80gb", "inspect --json device name")
    check({p["name"] for p in j["phases"]} >= {"decode", "mtp_draft", "mtp_verify"}, "inspect --json phases")
    node = j["phases"][0]["nodes"][3]
    for key in ("op", "kernel", "candidates", "predicted_us", "dims", "launch", "choice"):
        check(key in node, f"node JSON lacks {key}")

    # Hostile plans are refused by inspect with one line, exit 1.
    bad = os.path.join(tmp, "bad.fplan")
    data = bytearray(open(a, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(bad, "wb").write(bytes(data))
    rc, _, err = run("inspect", bad)
    check(rc == 1 and "corrupt plan" in err and err.count("\n") == 1, f"inspect of a damaged plan: {rc} {err}")
    open(bad, "wb").write(bytes(data[: len(data) // 3]))
    rc, _, err = run("diff", a, bad)
    check(rc == 2 and "bad.fplan" in err, f"diff with a truncated plan: {rc} {err}")

    # compile refusals
    rc, _, err = run("compile", tiny, "--profile", "plans/devices/h100-sxm-80gb.yaml", "-o", a, "--numerics", "fast")
    check(rc == 1 and "official or plain" in err, f"bad --numerics: {err}")
    rc, _, err = run("compile", tiny, "--profile", "plans/devices/h100-sxm-80gb.yaml", "-o", a, "--kv-dtype", "f16",
                     "--numerics", "plain")
    check(rc == 1 and "--kv-dtype f16 with --numerics plain" in err, f"F16 KV in plain numerics: {err}")
    rc, _, err = run("compile", tiny, "--profile", "plans/devices/h100-sxm-80gb.yaml", "-o", a, "--kv-dtype", "bf16")
    check(rc == 1 and "expected f32 or f16" in err, f"bad --kv-dtype: {err}")
    for numerics, want in (("official", "F16"), ("plain", "F32")):  # the default follows the numerics
        rc, _, err = run("compile", tiny, "--profile", "plans/devices/h100-sxm-80gb.yaml", "-o", a, "-q",
                         "--numerics", numerics)
        check(rc == 0, f"compile --numerics {numerics}: {err}")
        check(f"KV {want}" in run("inspect", a)[1], f"--numerics {numerics}: KV storage is not {want}")
    rc, _, err = run("compile", tiny, "--profile", "plans/devices/h100-sxm-80gb.yaml", "-o", a, "--override", "x")
    check(rc == 1 and "PATTERN=KERNEL" in err, f"bad --override: {err}")
    prof = os.path.join(tmp, "typo.yaml")
    text = open("plans/devices/h100-sxm-80gb.yaml").read().replace("sm_count:", "sm_cuont:")
    open(prof, "w").write(text)
    rc, _, err = run("compile", tiny, "--profile", prof, "-o", a)
    check(rc == 1 and "gpu.sm_cuont" in err and "unknown key" in err and "typo.yaml" in err, f"typo profile: {err}")

    # A plan for the CPU reference executor.
    c = os.path.join(tmp, "c.fplan")
    rc, _, err = run("compile", tiny, "--profile", "plans/devices/cpu.yaml", "-o", c, "-q")
    check(rc == 0, f"cpu compile: {err}")
    j = json.loads(run("inspect", "--json", c)[1])
    check(all(k["id"].startswith("cpu.") for k in j["kernels"]), "cpu plan lists non-cpu kernels")

    # Two GPUs, the default: attention, shared expert and head replicated (the plans the CUDA
    # executor runs), the split options listed as excluded with the reason, the choice
    # recorded in the plan. --inexact-parallel lets the cost model weigh the splits; diff
    # shows the option.
    e = os.path.join(tmp, "e.fplan")
    rc, _, err = run("compile", tiny, "--profile", "plans/devices/2x-h100-sxm-80gb.yaml", "-o", e, "-q")
    check(rc == 0, f"compile for 2 GPUs: {err}")
    rc, out, _ = run("inspect", e)
    check("attention replicated, shared expert replicated, head replicated" in out, f"default plan split something:\n{out}")
    opts = [l for l in out.splitlines() if "predicted times at context" in l]
    check(len(opts) == 1 and "inexact-parallel" not in opts[0], f"default plan's options: {opts}")
    check("exact parallelism (the default; --inexact-parallel weighs it)" in out, "excluded options not listed")
    j = json.loads(run("inspect", "--json", e)[1])
    check(j["provenance"]["options"].get("exact_parallel") is True, "exact_parallel not in the plan's options")
    check(any(n["op"] == "moe_combine" for n in j["phases"][0]["nodes"]), "no moe_combine node in a 2-GPU plan")
    e2 = os.path.join(tmp, "e2.fplan")
    rc, _, err = run("compile", tiny, "--profile", "plans/devices/2x-h100-sxm-80gb.yaml", "-o", e2, "-q",
                     "--inexact-parallel")
    check(rc == 0, f"compile --inexact-parallel: {err}")
    rc, out, _ = run("inspect", e2)
    opts = [l for l in out.splitlines() if "predicted times at context" in l]
    check(len(opts) == 1 and "inexact-parallel" in opts[0], f"--inexact-parallel not in the options: {opts}")
    rc, out, _ = run("diff", e2, e)
    check(rc == 1 and "exact_parallel: 0 -> 1" in out, f"diff misses exact_parallel: {rc}\n{out}")

    # --no-pdl: recorded in the options, no node launched with programmatic dependent
    # launch; the default H100 plan marks its matvecs, and diff shows both differences.
    rc, out, _ = run("inspect", a)
    check("PDL on" in out and "cuda.matvec.q8_0 [pdl]" in out, f"default plan shows no PDL:\n{out}")
    p = os.path.join(tmp, "p.fplan")
    rc, _, err = run("compile", tiny, "--profile", "plans/devices/h100-sxm-80gb.yaml", "-o", p, "-q", "--no-pdl")
    check(rc == 0, f"compile --no-pdl: {err}")
    j = json.loads(run("inspect", "--json", p)[1])
    check(j["provenance"]["options"].get("pdl") is False, "pdl not false in the --no-pdl plan's options")
    check(not any(n.get("overlap_prev") for ph in j["phases"] for n in ph["nodes"]), "--no-pdl plan overlaps a node")
    j = json.loads(run("inspect", "--json", a)[1])
    check(j["provenance"]["options"].get("pdl") is True, "pdl not true in the default plan's options")
    check(any(n.get("overlap_prev") for ph in j["phases"] for n in ph["nodes"]), "default H100 plan overlaps nothing")
    rc, out, _ = run("diff", a, p)
    check(rc == 1 and "pdl: 1 -> 0" in out and "attn_q_b: pdl -> plain" in out, f"diff misses pdl: {rc}\n{out}")

    rc, out, _ = run("kernels")
    check(rc == 0 and "cuda.matvec.q8_0" in out and "cpu.attention" in out, "kernels listing")
    check("(P)" in out, "kernels listing lacks the (P) mark")
    rc, out, _ = run("kernels", "--json")
    check(rc == 0 and any(k["id"] == "cuda.gemm.int8_tc" for k in json.loads(out)), "kernels --json")

    # kernels --plan lists the (kernel, shape key) pairs a measured.kernels entry names:
    # timings filed under them (here the plan's own predictions) mark every node measured.
    k = os.path.join(tmp, "k.fplan")
    run("compile", tiny, "--profile", "plans/devices/h100-sxm-80gb.yaml", "-o", k, "-q")
    rc, out, err = run("kernels", "--plan", k, "--json")
    pairs = json.loads(out) if rc == 0 else []
    check(rc == 0 and pairs and not any(p["measured"] for p in pairs), f"kernels --plan --json: {rc} {err}")
    check(any(p["kernel"] == "cuda.matvec.q8_0" and p["shape"].startswith("matmul t=1 ") for p in pairs),
          "kernels --plan lists no decode Q8_0 matvec")
    rc, out, _ = run("kernels", "--plan", k)
    check(rc == 0 and "shape key" in out and "(kernel, shape key) pairs" in out, f"kernels --plan text:\n{out}")
    measured = os.path.join(tmp, "measured.yaml")
    entries = "".join(f"    - {{kernel: {p['kernel']}, shape: {json.dumps(p['shape'])}, us: {p['predicted_us']!r}}}\n"
                      for p in pairs)
    with open("plans/devices/h100-sxm-80gb.yaml") as f, open(measured, "w") as g:
        text = f.read()
        text = text[:text.index("\n  # Kernel timings") + 1] if "\n  # Kernel timings" in text else text  # own timings out
        check(text.count("\nmeasured:\n") == 1, "the h100 profile has no single measured section")
        g.write(text.replace("\nmeasured:\n", "\nmeasured:\n  kernels:\n" + entries))
    m = os.path.join(tmp, "m.fplan")
    rc, _, err = run("compile", tiny, "--profile", measured, "-o", m, "-q")
    check(rc == 0, f"compile with measured kernels: {rc} {err}")
    rc, out, err = run("kernels", "--plan", m, "--json")
    bad = [p for p in json.loads(out) if not p["measured"]] if rc == 0 else ["rc"]
    check(not bad, f"pairs not marked measured: {rc} {err} {bad[:3]}")
    # calibrate: a profile CSV of plan k (built here from its inspect JSON) -> measured.kernels.
    j = json.loads(run("inspect", "--json", k)[1])
    weights = [w["name"] for w in j["weights"]]
    pre = max((ph for ph in j["phases"] if ph["kind"] == "prefill"), key=lambda ph: ph["max_tokens"])
    dec = next(ph for ph in j["phases"] if ph["kind"] == "decode")
    csv = os.path.join(tmp, "nodes.csv")
    with open(csv, "w") as f:
        f.write("# flashplan profile, cli test\nphase,node,op,layer,weight,type,rows,cols,experts,us,dense_weight_bytes\n")
        for name, ph in (("decode", dec), ("prefill", pre)):
            for i, n in enumerate(ph["nodes"]):
                w = weights[n["weights"][0]] if n.get("weights") else ""
                f.write(f"{name},{i},{n['op']},{n['layer']},{w},F32,0,0,0,{100 + i % 3},0\n")
    frag = os.path.join(tmp, "frag.yaml")
    rc, out, err = run("calibrate", k, csv, "-o", frag)
    check(rc == 0 and "timings from" in out, f"calibrate: {rc} {out} {err}")
    text = open(frag).read() if rc == 0 else ""
    check(text.startswith("measured:\n") and "kernels:" in text and "cuda.hc_pre" in text, f"calibrate fragment:\n{text}")
    short = os.path.join(tmp, "short.csv")
    with open(csv) as f, open(short, "w") as g:
        g.writelines(f.readlines()[:-1])
    rc, out, err = run("calibrate", k, short)
    check(rc == 1 and len(err.strip().splitlines()) == 1 and "short.csv" in err and "prefill rows" in err,
          f"calibrate of a CSV missing a node: {rc} {err}")
    rc, out, err = run("calibrate", k, tiny)
    check(rc == 1 and len(err.strip().splitlines()) == 1, f"calibrate of a GGUF as CSV: {rc} {err}")
    for path, why in ((os.path.join(tmp, "none.csv"), "none.csv: cannot open profile CSV: No such file"),
                      (tmp, "is a directory; expected a profile CSV")):
        rc, out, err = run("calibrate", k, path)
        check(rc == 1 and len(err.strip().splitlines()) == 1 and why in err, f"calibrate of {path}: {rc} {err}")

    # tune needs a GPU: without one (CI) it says why in one line; with one it writes a fragment.
    # A CPU plan is refused before any GPU is asked for, on every machine.
    cpu_plan = os.path.join(tmp, "cpu.fplan")
    run("compile", tiny, "--profile", "plans/devices/cpu.yaml", "-o", cpu_plan, "-q")
    rc, out, err = run("tune", "--plan", cpu_plan)
    check(rc == 1 and len(err.strip().splitlines()) == 1 and "backend cpu" in err and "cpu.fplan" in err,
          f"tune of a CPU plan: {rc} {err}")
    rc, out, err = run("tune", "--plan", k, "--quick")
    if rc == 0:
        check(out.startswith("measured:\n") and "flashplan tune" in out, f"tune output:\n{out[:500]}")
    else:
        check(rc == 1 and len(err.strip().splitlines()) == 1 and "tune" in err, f"tune without a GPU: {rc} {err}")

    rc, out, err = run("kernels", "--plan", tiny)
    check(rc == 1 and "plan" in err and len(err.strip().splitlines()) == 1, f"kernels --plan on a GGUF: {rc} {err}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("plan CLI: ok")
