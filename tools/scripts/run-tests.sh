#!/usr/bin/env bash
# Builds and runs every test: the sanitizer build (ASan + UBSan, CPU only) and the
# GGUF reader fuzzer first, then the main build (with CUDA compiled where nvcc exists)
# whose CTest summary is the last thing printed. Exit status: non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
jobs="$(nproc)"
fuzz_seconds="${FLASHPLAN_FUZZ_SECONDS:-60}"
status=0

step() { echo; echo "==== $*"; }

step "sanitizer build (ASan + UBSan, CPU)"
# -O1 keeps the sanitizer build quick to compile; only the doctest suites run here (the
# Python suites drive the same code through the binary and run in the main build).
if cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1" \
      -DFLASHPLAN_SANITIZE=ON -DFLASHPLAN_CUDA=OFF >/dev/null && cmake --build build-asan -j "$jobs"; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" -R '^(planner|ops|runtime|tools)$' || status=1
else
  status=1
fi

step "GGUF reader fuzzer (${fuzz_seconds}s)"
if cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLASHPLAN_FUZZ=ON -DFLASHPLAN_CUDA=OFF >/dev/null \
   && cmake --build build-fuzz -j "$jobs" --target fuzz_gguf; then
  mkdir -p build-fuzz/corpus
  build-fuzz/tests/fuzz/fuzz_gguf -max_total_time="$fuzz_seconds" -print_final_stats=1 \
    build-fuzz/corpus tests/fuzz/corpus 2>&1 | tail -n 25 || status=1
else
  status=1
fi

step "main build (CUDA compiled where nvcc exists)"
if cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j "$jobs"; then
  ctest --test-dir build --output-on-failure -j "$jobs" || status=1
else
  status=1
fi
exit "$status"
