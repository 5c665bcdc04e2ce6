#!/usr/bin/env bash
# The whole GPU check in one device call, most important first, each step skipped when its
# time cap could pass DEADLINE (seconds since start; default 560, under a 10-minute call):
#   tg    test_gpu, every case (parity of every kernel, engines, plans, multi-device on one GPU)
#   san   compute-sanitizer memcheck over the tiny model's forward pass (tests/gpu/sanitizer_test.sh)
#   plan  the full-size synthetic model's header and this GPU's plan (its shipped profile,
#         chosen by the name nvidia-smi reports)
#   prof  flashplan profile of that plan with random weights: per-node decode and prefill time,
#         eagerly and inside the step's graph (--in-graph), and calibrate's timings from each
#   full  bench/full_model.sh from that plan: load, run and the context sweep (decode/prefill tok/s)
#   mv    flashplan bench-kernels (BENCH_ARGS, default --quick): the decode matvecs against the copy ceiling (CSV)
#   memq  memcheck (leak check on) over the quant family's and the loader's parity tests
#   tune  flashplan tune --quick of that plan: every candidate of its matmul choices timed (a
#         measured.kernels fragment for the profile)
#
#   bench/gpu_suite.sh BIN_DIR OUT_DIR        (STEPS="tg san plan prof full mv memq tune" by default)
#
# BIN_DIR holds flashplan and test_gpu (or is a CUDA build directory: tests/test_gpu), and
# any shared libraries they need. libnccl.so.2 is
# looked for under /opt, /usr/local and /usr/lib (test_gpu's NCCL cases need it). Writes
# everything under OUT_DIR and re-packs OUT_DIR.tgz after each step, so a call cut short
# still returns what it measured.
set -uo pipefail
bin=$(cd "${1:?BIN_DIR}" && pwd)
out=${2:?OUT_DIR}
mkdir -p "$out"
test_gpu=$bin/test_gpu
[ -x "$test_gpu" ] || test_gpu=$bin/tests/test_gpu
nccl=$(find /opt /usr/local /usr/lib -name 'libnccl.so.2' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$bin${nccl:+:$(dirname "$nccl")}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$gpu" in
  *H100*) profile=plans/devices/h100-sxm-80gb.yaml ;;
  *H200*) profile=plans/devices/h200-141gb.yaml ;;
  *) profile=${PROFILE:?no shipped profile for "$gpu": set PROFILE} ;;
esac
header=/dev/shm/ds4-full-header.gguf
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  date -u +%Y-%m-%dT%H:%M:%SZ
  "$bin/flashplan" --version
  echo "profile: $profile; nccl: ${nccl:-not found}"
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

pack() { tar czf "$out.tgz" -C "$(dirname "$out")" "$(basename "$out")"; }
# step CAP CMD...: runs CMD under `timeout CAP` unless it could end past DEADLINE.
step() {
  local cap=$1; shift
  if [ $((SECONDS + cap)) -gt "${DEADLINE:-560}" ]; then echo "skipped (time): $*" | cut -c1-150; return; fi
  local t=$SECONDS; timeout "$cap" "$@"; echo "rc $? in $((SECONDS - t)) s: $*" | cut -c1-150
}

quant="gpu dequantize*,gpu activation*,gpu matvec*,gpu moe matvec*,gpu gemm*,gpu fill_random*,vmm:*,pinned host*"
for s in ${STEPS:-tg san plan prof full mv memq tune}; do
  case $s in
    tg) step 120 bash -c "'$test_gpu' --duration=true > '$out/test_gpu.txt' 2>&1"
        grep -E '^\[doctest\] (test cases|assertions|Status)' "$out/test_gpu.txt"
        grep -B2 -A6 'ERROR' "$out/test_gpu.txt" | head -40
        grep -i 'not run' "$out/test_gpu.txt" | head -5 ;;
    san) step 120 bash -c "sh tests/gpu/sanitizer_test.sh '$test_gpu' > '$out/sanitizer.txt' 2>&1"
         tail -3 "$out/sanitizer.txt" ;;
    plan) step 40 bash -c "'$bin/flashplan' synth --preset full --header-only --seed 1 -o $header > '$out/synth.txt' 2>&1 &&
                           '$bin/flashplan' compile $header --profile $profile -o '$out/full.fplan' > '$out/compile.txt' 2>&1"
          head -2 "$out/compile.txt" | cut -c1-300 ;;
    prof) step 90 bash -c "'$bin/flashplan' profile $header --plan '$out/full.fplan' --weights random:1 --ctx-tokens 512 \
                             -o '$out/profile.csv' > '$out/profile.txt' 2>&1"
          head -45 "$out/profile.txt"
          # The same nodes timed inside the step's graph (flashplan profile --in-graph), and the
          # profile timings `flashplan calibrate` takes from each run.
          step 90 bash -c "'$bin/flashplan' profile $header --plan '$out/full.fplan' --weights random:1 --ctx-tokens 512 \
                             --in-graph -o '$out/profile-graph.csv' > '$out/profile-graph.txt' 2>&1"
          head -30 "$out/profile-graph.txt"
          "$bin/flashplan" calibrate "$out/full.fplan" "$out/profile.csv" -o "$out/calibrate.yaml"
          "$bin/flashplan" calibrate "$out/full.fplan" "$out/profile-graph.csv" -o "$out/calibrate-graph.yaml" ;;
    full) step 200 bash -c "PROFILE=$profile CTX_MAX=${CTX_MAX:-4096} GEN=64 PROBE=0 bench/full_model.sh '$bin' '$out/full' \
                             > '$out/full.txt' 2>&1"
          tail -12 "$out/full.txt" | cut -c1-300 ;;
    mv) step 60 bash -c "'$bin/flashplan' bench-kernels ${BENCH_ARGS:---quick} --csv '$out/matvec.csv' > '$out/matvec.txt' 2>&1"
        head -1 "$out/matvec.txt" ;;
    # API errors are not reported: the vmm tests provoke an out-of-memory cuMemCreate on
    # purpose (a refusal test); memory errors and leaks still fail the step.
    memq) step 150 bash -c "compute-sanitizer --tool memcheck --leak-check full --report-api-errors no --error-exitcode 3 '$test_gpu' \
                             --test-case='$quant' > '$out/memcheck_quant.txt' 2>&1"
          tail -2 "$out/memcheck_quant.txt" ;;
    tune) step 240 bash -c "'$bin/flashplan' tune --plan '$out/full.fplan' --quick -o '$out/tune.yaml' 2> '$out/tune.err'"
          tail -3 "$out/tune.err"; grep -c "kernel:" "$out/tune.yaml" ;;
    *) echo "unknown step $s (tg san plan prof full mv memq tune)"; exit 2 ;;
  esac
  pack
done
