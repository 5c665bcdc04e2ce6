#!/usr/bin/env bash
# On a GPU machine: the candidates built by build_variants.sh against main, in one call.
#
#   bench/candidates/compare.sh VARIANTS_DIR OUT_DIR
#
# For every VARIANTS_DIR/NAME (main first): test_gpu's matvec and hc cases (parity against
# the CPU references, poisoned outputs) and compute-sanitizer memcheck over them; then,
# alternating the variants twice so that drift on the machine shows, `bench-kernels --quick
# --only IQ2_XXS` (each process measures its own copy ceiling) and `bench-kernels --hc`;
# then ncu's instruction count on the IQ2_XXS streaming case. Everything lands in OUT_DIR
# (re-packed as OUT_DIR.tgz after each step, so a call cut short keeps what it measured).
set -uo pipefail
vd=$(cd "${1:?VARIANTS_DIR}" && pwd)
out=${2:?OUT_DIR}
mkdir -p "$out"
nccl=$(find /opt /usr/local /usr/lib -name 'libnccl.so.2' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$vd${nccl:+:$(dirname "$nccl")}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
names=(main)
for d in "$vd"/*/; do n=$(basename "$d"); [ "$n" = main ] || names+=("$n"); done
pack() { tar czf "$out.tgz" -C "$(dirname "$out")" "$(basename "$out")"; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  date -u +%Y-%m-%dT%H:%M:%SZ
  for n in "${names[@]}"; do echo "$n: $("$vd/$n/flashplan" --version)"; done
} | tee "$out/env.txt"
cases="gpu matvec*,gpu moe matvec*,gpu ops: hc*"
for n in "${names[@]}"; do
  timeout 120 "$vd/$n/test_gpu" --test-case="$cases" > "$out/tg-$n.txt" 2>&1
  echo "test_gpu $n: rc $? $(grep -E '^\[doctest\] test cases' "$out/tg-$n.txt")"
  timeout 150 compute-sanitizer --tool memcheck --error-exitcode 3 "$vd/$n/test_gpu" --test-case="$cases" \
    > "$out/memcheck-$n.txt" 2>&1
  echo "memcheck $n: rc $? $(tail -1 "$out/memcheck-$n.txt")"
  pack
done
for round in 1 2; do
  for n in "${names[@]}"; do
    timeout 60 "$vd/$n/flashplan" bench-kernels --quick --only IQ2_XXS --csv "$out/iq2-$n-$round.csv" \
      > "$out/iq2-$n-$round.txt" 2>&1
    timeout 60 "$vd/$n/flashplan" bench-kernels --hc > "$out/hc-$n-$round.txt" 2>&1
    echo "== $n, round $round"
    grep -E "copy|IQ2" "$out/iq2-$n-$round.txt" | cut -c1-140
  done
  pack
done
if command -v ncu > /dev/null; then
  m=smsp__inst_executed.sum,sm__cycles_elapsed.avg,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum
  for n in "${names[@]}"; do
    timeout 90 ncu --clock-control none --metrics "$m" --kernel-name regex:matvec_q --launch-skip 3 --launch-count 1 \
      "$vd/$n/flashplan" bench-kernels --quick --only "IQ2_XXS streaming" > "$out/ncu-$n.txt" 2>&1
    echo "ncu $n: $(grep -E 'inst_executed' "$out/ncu-$n.txt" | tr -s ' ')"
  done
  pack
fi
