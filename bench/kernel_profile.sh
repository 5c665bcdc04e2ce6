#!/usr/bin/env bash
# Per-kernel GPU time of a short greedy run, eager (no graphs), under Nsight Compute with
# one metric (gpu__time_duration.sum), grouped by kernel name: where a decode step's time
# goes. ncu serialises and replays each kernel, so absolute times are per kernel, without
# launch gaps.
#
#   bench/kernel_profile.sh MODEL [BIN_DIR] [OUT_DIR] [extra flashplan run flags...]
#
# FP_CMD replaces the profiled command (default: run MODEL --backend cuda --no-graphs
# -p Hi -n 2); NCU_SKIP kernels are launched unprofiled first, then NCU_LAUNCHES profiled.
set -uo pipefail
model=$1
bin=${2:-build}
out=${3:-${OUT:-kernel-profile-out}}
shift 3 || true
mkdir -p "$out"
export LD_LIBRARY_PATH="$bin:${LD_LIBRARY_PATH:-}"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout ${NCU_TIMEOUT:-240} "$ncu" --clock-control none --metrics gpu__time_duration.sum --csv \
  --launch-skip ${NCU_SKIP:-0} --launch-count ${NCU_LAUNCHES:-4000} \
  "$bin/flashplan" ${FP_CMD:-run "$model" --backend cuda --no-graphs -p Hi -n 2 --ignore-eos --json} "$@" \
  > "$out/ncu.csv" 2> "$out/ncu_run.err"
echo "ncu rc $?"
python3 - "$out/ncu.csv" <<'PY'
import csv, sys, collections
rows = []
with open(sys.argv[1]) as f:
    lines = [l for l in f if l.startswith('"')]
for r in csv.DictReader(lines):
    if r.get("Metric Name") != "gpu__time_duration.sum": continue
    v = float(r["Metric Value"].replace(",", ""))
    unit = r.get("Metric Unit", "ns")
    v *= {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1, "us": 1, "msecond": 1e3, "ms": 1e3}.get(unit, 1e-3)
    rows.append((int(r["ID"]), r["Kernel Name"].split("(")[0], v))
print(f"{len(rows)} kernels profiled")
# One whole step: the kernels between the last two embed launches (else after the last).
starts = [i for i, (_, n, _) in enumerate(rows) if "embed" in n]
step = rows[starts[-2]:starts[-1]] if len(starts) >= 2 else (rows[starts[-1]:] if starts else [])
for label, seg in (("one step", step), ("all", rows)):
    agg = collections.defaultdict(lambda: [0, 0.0])
    for _, n, v in seg:
        agg[n][0] += 1; agg[n][1] += v
    tot = sum(a[1] for a in agg.values())
    print(f"== {label}: {len(seg)} kernels, {tot:.1f} us")
    for n, (c, v) in sorted(agg.items(), key=lambda x: -x[1][1])[:25]:
        print(f"{v:10.1f} us {100*v/max(tot,1e-9):5.1f}% {c:6d}x  {n}")
PY
