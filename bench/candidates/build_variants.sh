#!/usr/bin/env bash
# Builds flashplan and test_gpu for main and for each candidate patch, for one device call
# that measures them side by side (bench/candidates/compare.sh).
#
#   bench/candidates/build_variants.sh BUILD_DIR OUT_DIR NAME=PATCH[+PATCH...] ...
#
# BUILD_DIR: a configured CUDA build of this checkout (cmake -G Ninja, FLASHPLAN_CUDA_ARCHS=90a).
# Writes OUT_DIR/main/ and OUT_DIR/NAME/ (flashplan, test_gpu), each built from the clean
# tree with the named patches applied, which are taken back off afterwards. The work tree
# must be clean.
set -euo pipefail
build=$(cd "${1:?BUILD_DIR}" && pwd)
out=$(mkdir -p "${2:?OUT_DIR}" && cd "$2" && pwd)
shift 2
[ $# -gt 0 ] || { echo "build_variants: name at least one variant, NAME=PATCH[+PATCH...]" >&2; exit 1; }
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "build_variants: the work tree has changes; commit or stash them first" >&2
  exit 1
fi
one() {  # NAME [PATCH...]
  local name=$1
  shift
  for p in "$@"; do git apply "$p"; done
  ninja -C "$build" flashplan test_gpu > "$out/$name.build.log" 2>&1 || { echo "build of $name failed: $out/$name.build.log" >&2; git checkout -- .; exit 1; }
  mkdir -p "$out/$name"
  cp "$build/flashplan" "$build/tests/test_gpu" "$out/$name/"
  git checkout -- .
  echo "$name: $("$out/$name/flashplan" --version)"
}
one main
for v in "$@"; do
  IFS=+ read -r -a patches <<< "${v#*=}"
  one "${v%%=*}" "${patches[@]}"
done
