#!/usr/bin/env bash
# Regenerates the golden plans in plans/ from the full DS4 Flash tensor table (a
# header-only `flashplan synth --preset full` file): the H100 and H200 plans, their
# `inspect --json` (gzipped) and text, and the diff between them; the plan for two H100s
# of one host (multi-GPU, issue 8) with its text, and its diff against the H200 plan.
# tests/planner/plan_golden_test.py fails until this is re-run after a planner change;
# review `git diff plans/` before committing the new goldens.
#
# Usage: tools/scripts/regen-golden-plans.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${1:-build}/flashplan"
[ -x "$bin" ] || { echo "no flashplan binary at $bin; build first or pass the build dir" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

model="$tmp/ds4-flash-q2.header.gguf"
"$bin" synth --preset full --header-only --no-progress -o "$model" > /dev/null
for dev in h100-sxm-80gb h200-141gb 2x-h100-sxm-80gb; do
  out="plans/ds4-flash-q2.$dev"
  "$bin" compile "$model" --profile "plans/devices/$dev.yaml" -o "$out.fplan" -q
  "$bin" inspect --json "$out.fplan" | gzip -9 -n > "$out.inspect.json.gz"
  "$bin" inspect "$out.fplan" > "$out.inspect.txt"
done
status=0
"$bin" diff plans/ds4-flash-q2.h100-sxm-80gb.fplan plans/ds4-flash-q2.h200-141gb.fplan \
  > plans/ds4-flash-q2.h100-vs-h200.diff.txt || status=$?
[ "$status" -eq 1 ] || { echo "diff of the H100 and H200 plans exited $status, expected 1" >&2; exit 1; }
status=0
"$bin" diff plans/ds4-flash-q2.h200-141gb.fplan plans/ds4-flash-q2.2x-h100-sxm-80gb.fplan \
  > plans/ds4-flash-q2.h200-vs-2x-h100.diff.txt || status=$?
[ "$status" -eq 1 ] || { echo "diff of the H200 and 2x H100 plans exited $status, expected 1" >&2; exit 1; }
ls -l plans/ds4-flash-q2.*
