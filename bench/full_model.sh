#!/usr/bin/env bash
# The full-size DS4 Flash q2 model on one GPU, in one command: writes the synthetic
# 80.76 GiB GGUF (`flashplan synth --preset full`, random valid weights, the real shapes
# and dtype mix) to /dev/shm, loads it from the page cache (load GiB/s), generates greedily
# (decode tok/s) and sweeps context frontiers (`flashplan bench`: prefill and decode tok/s).
# Also probes the GPU (`flashplan probe`: copy bandwidth, GEMM rates).
#
#   bench/full_model.sh [BIN_DIR] [OUT_DIR]
#
# BIN_DIR holds flashplan (and any shared libraries it needs); default build. Environment:
# MODEL (default /dev/shm/ds4-full.gguf; reused when present), CTX_MAX (4096), GEN (64),
# CHUNK (256), PROBE (1: run flashplan probe). PROFILE=plans/devices/<gpu>.yaml runs from a
# plan instead: a header-only synth, `flashplan compile` for that profile (its placement,
# host offload included, and its kernel choices; prefill chunk = the plan's largest bucket)
# and `--weights random:1` (no file read); PLAN_CTX sets the plan's max context. Writes OUT_DIR/{env.txt, probe.yaml, run.json, run.err, bench.csv,
# bench.err} and prints a summary last.
set -uo pipefail
bin=${1:-build}
out=${2:-${OUT:-full-model-out}}
mkdir -p "$out"
export LD_LIBRARY_PATH="$bin:${LD_LIBRARY_PATH:-}"
fp="$bin/flashplan"
model=${MODEL:-/dev/shm/ds4-full.gguf}
ctx_max=${CTX_MAX:-4096}
gen=${GEN:-64}
chunk=${CHUNK:-256}

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader
  nproc
  "$fp" --version
} > "$out/env.txt" 2>&1


engine=(--backend cuda -c "$ctx_max" --chunk "$chunk")
bench_engine=(--backend cuda -c "$((ctx_max + gen))" --chunk "$chunk")
if [ -n "${PROFILE:-}" ]; then
  model=${MODEL:-/dev/shm/ds4-full-header.gguf}
  "$fp" synth --preset full --header-only --seed 1 -o "$model" > "$out/synth.err" 2>&1
  # PLAN_CTX: the plan's max context (default: the planner's, as in the golden plans).
  "$fp" compile "$model" --profile "$PROFILE" ${COMPILE_ARGS:-} ${PLAN_CTX:+--max-context "$PLAN_CTX"} -o "$out/full.fplan" \
    > "$out/compile.txt" 2>&1
  echo "compile rc $?: $(grep -iE 'host|offload' "$out/compile.txt" | head -3)"
  engine=(--plan "$out/full.fplan" --weights random:1)
  bench_engine=("${engine[@]}")
fi
if [ ! -f "$model" ]; then
  t0=$SECONDS
  timeout 200 "$fp" synth --preset full --seed 1 --no-progress -o "$model" > "$out/synth.err" 2>&1
  echo "synth rc $? in $((SECONDS - t0)) s"
fi
ls -l "$model"

timeout 180 "$fp" run "$model" "${engine[@]}" -p "The quick brown fox jumps over the lazy dog" \
  -n "$gen" --ignore-eos --json > "$out/run.json" 2> "$out/run.err"
echo "run rc $?"
timeout 200 "$fp" bench "$model" "${bench_engine[@]}" --ctx-start 512 --ctx-max "$ctx_max" \
  --step-mul 2 -n "$gen" -o "$out/bench.csv" > "$out/bench.err" 2>&1
echo "bench rc $?"
if [ "${PROBE:-1}" = 1 ]; then
  timeout 60 "$fp" probe --quick --devices plans/devices -o "$out/probe.yaml" > "$out/probe.err" 2>&1
  echo "probe rc $?"
fi

echo "== summary ($(tr '\n' ' ' < "$out/env.txt"))"
tail -c 600 "$out/run.err"
python3 -c "
import json
j=json.load(open('$out/run.json'))
print({k:v for k,v in j.items() if k not in ('tokens','text')})" 2>&1
cat "$out/bench.csv" 2>/dev/null
tail -5 "$out/bench.err"
grep -E "bandwidth|tflops|tops" "$out/probe.yaml" | head -12
