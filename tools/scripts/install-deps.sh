#!/usr/bin/env bash
# Installs everything flashplan needs on Debian 12, idempotently: the C++ build
# dependencies from Debian, and (with --test) the pinned Python test oracles in
# a virtual environment at .venv-test. CUDA is optional and never installed here:
# where /usr/local/cuda exists the CUDA targets are built as well.
set -euo pipefail

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    *) echo "install-deps: unknown argument '$arg' (expected --test)" >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "$0")/../.." && pwd)"

debs=(build-essential cmake ninja-build pkg-config git ca-certificates
      flatbuffers-compiler libflatbuffers-dev libyaml-cpp-dev doctest-dev
      libcli11-dev nlohmann-json3-dev libcpp-httplib-dev libpcre2-dev libssl-dev
      python3 python3-venv python3-pip)
if [ "$want_test" = 1 ]; then
  debs+=(clang libclang-rt-14-dev curl)
fi

missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$want_test" = 1 ]; then
  venv="$root/.venv-test"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  stamp="$venv/.requirements.sha256"
  want="$(sha256sum "$root/tests/requirements.txt" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/tests/requirements.txt"
    echo "$want" > "$stamp"
  fi
fi
