#!/bin/sh
# compute-sanitizer memcheck over the tiny model's full forward pass on the CUDA backend:
# the GPU suite's "sanitizer workload" case (chunked prefill, then decode through the
# captured graph and eagerly). Any memcheck error fails the test. Exits 77 ("not run")
# without compute-sanitizer or a GPU. Usage: sanitizer_test.sh TEST_GPU_BINARY
bin="$1"
command -v compute-sanitizer >/dev/null 2>&1 || { echo "not run: compute-sanitizer not on PATH"; exit 77; }
nvidia-smi -L >/dev/null 2>&1 || { echo "not run: no GPU"; exit 77; }
exec compute-sanitizer --tool memcheck --error-exitcode 3 --print-limit 20 \
  "$bin" --test-case="cuda engine: chunked prefill then decode (sanitizer workload)"
