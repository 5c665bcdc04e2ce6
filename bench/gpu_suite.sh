#!/usr/bin/env bash
# The GPU suite, in one command on a machine with an NVIDIA GPU: the parity tests
# (test_gpu), the same parity tests under compute-sanitizer memcheck, and the kernel
# microbenchmark. Binaries come from a CUDA build directory (default build-cuda).
#
#   bench/gpu_suite.sh [BUILD_DIR] [OUT_DIR]
#
# Writes OUT_DIR/test_gpu.txt, memcheck.txt, bench.txt, matvec.csv and env.txt, and
# prints a short summary last.
set -uo pipefail
build=${1:-build-cuda}
out=${2:-${OUT:-gpu-suite-out}}
mkdir -p "$out"
[ -d "$build/lib" ] && export LD_LIBRARY_PATH="$build/lib:${LD_LIBRARY_PATH:-}"

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  uname -r
  ldd "$build/tests/test_gpu" | grep -E "not found|cuda|cublas" || true
} > "$out/env.txt" 2>&1

# The quant family's kernels, VMM and the loader (this script's suites), then every GPU test.
mine="gpu dequantize*,gpu activation*,gpu matvec*,gpu moe matvec*,gpu gemm*,gpu fill_random*,vmm:*,pinned host*,load_weights*"
"$build/tests/test_gpu" --test-case="$mine" --duration=true > "$out/test_gpu.txt" 2>&1
rc_test=$?
if [ -n "${ALL_TESTS:-}" ]; then
  timeout ${ALL_TIMEOUT:-300} "$build/tests/test_gpu" --duration=true > "$out/test_gpu_all.txt" 2>&1
  rc_all=$?
fi

"$build/flashplan" bench-kernels --csv "$out/matvec.csv" ${BENCH_ARGS:-} > "$out/bench.txt" 2>&1
rc_bench=$?

sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
# memcheck over every kernel's parity test (the loader test is host-heavy: left out).
timeout ${MEMCHECK_TIMEOUT:-400} "$sanitizer" --tool memcheck --leak-check full --error-exitcode 3 \
  "$build/tests/test_gpu" --test-case="$mine" --test-case-exclude="load_weights*,vmm: out of memory*" > "$out/memcheck.txt" 2>&1
rc_mem=$?

echo "== env";       cat "$out/env.txt"
echo "== test_gpu (rc $rc_test)"; grep -E "^\[doctest\] (test cases|assertions|Status)" "$out/test_gpu.txt"; grep -B2 -A8 "ERROR" "$out/test_gpu.txt" | head -60
[ -n "${ALL_TESTS:-}" ] && { echo "== all GPU tests (rc $rc_all)"; grep -E "^\[doctest\] (test cases|assertions|Status)" "$out/test_gpu_all.txt"; grep -E "ERROR|FATAL" "$out/test_gpu_all.txt" | head -20; }
echo "== memcheck (rc $rc_mem)"; grep -E "ERROR SUMMARY|LEAK SUMMARY|^\[doctest\] (test cases|Status)" "$out/memcheck.txt" | head
echo "== bench (rc $rc_bench)"; cat "$out/bench.txt" | tail -30
