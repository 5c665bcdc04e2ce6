#!/usr/bin/env bash
# The CUDA executor's GPU suite in one command (issue 6): op-family parity tests and the
# CUDA engine vs the CPU engine (test_gpu), compute-sanitizer memcheck over the engine's
# forward pass and over every op parity test, `flashplan logits --check-against cpu` in
# plain and official numerics, and `flashplan run` on both backends (same tokens).
#
#   bench/gpu_executor_suite.sh [BIN_DIR] [OUT_DIR]
#
# BIN_DIR holds test_gpu and flashplan (and any shared libraries they need); default
# build-gpu. Writes OUT_DIR/{env.txt, test_gpu.log, engine_memcheck.log, ops_memcheck.log,
# check.log, run_cpu.json, run_cuda.json} and prints a summary last.
set -uo pipefail
bin=${1:-build-gpu}
out=${2:-${OUT:-gpu-executor-out}}
mkdir -p "$out"
export LD_LIBRARY_PATH="$bin:${LD_LIBRARY_PATH:-}"
tg="$bin/test_gpu"; [ -x "$tg" ] || tg="$bin/tests/test_gpu"
fp="$bin/flashplan"
model=tests/data/hf/seed1/tiny.gguf
ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('tests/data/hf/seed1/oracle.json'))['prompts'][1]['ids'])))")

{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } > "$out/env.txt" 2>&1
timeout 240 "$tg" --test-case="gpu ops*,cuda engine*" > "$out/test_gpu.log" 2>&1; rc_test=$?
timeout 180 sh tests/gpu/sanitizer_test.sh "$tg" > "$out/engine_memcheck.log" 2>&1; rc_emem=$?
timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 "$tg" --test-case="gpu ops*" > "$out/ops_memcheck.log" 2>&1; rc_omem=$?
{
  "$fp" logits "$model" --backend cuda --check-against cpu --tokens "$ids" -o /tmp/fp_logits_plain.f32; echo "rc $?"
  "$fp" logits "$model" --backend cuda --numerics official --check-against cpu --tokens "$ids" -o /tmp/fp_logits_off.f32; echo "rc $?"
} > "$out/check.log" 2>&1
"$fp" run --backend cuda -p "Hello world" -n 24 --ignore-eos --json > "$out/run_cuda.json" 2>"$out/run_cuda.err"; rc_rc=$?
"$fp" run -p "Hello world" -n 24 --ignore-eos --json > "$out/run_cpu.json" 2>"$out/run_cpu.err"; rc_rp=$?
same=$(python3 -c "
import json,sys
try:
  a=json.load(open('$out/run_cpu.json'));b=json.load(open('$out/run_cuda.json'))
  print('identical' if a['tokens']==b['tokens'] else 'DIFFERENT', len(a['tokens']))
except Exception as e: print('unreadable', e)")

echo "== summary ($(cat "$out/env.txt" | tr '\n' ' '))"
grep -E "^\[doctest\] (test cases|assertions)" "$out/test_gpu.log" | sed 's/^/test_gpu: /'
echo "test_gpu rc $rc_test"
echo "engine memcheck rc $rc_emem: $(grep 'ERROR SUMMARY' "$out/engine_memcheck.log")"
echo "ops memcheck rc $rc_omem: $(grep 'ERROR SUMMARY' "$out/ops_memcheck.log")"
grep -E "first node|every node|^rc" "$out/check.log"
echo "run: cpu rc $rc_rp, cuda rc $rc_rc, tokens $same"
