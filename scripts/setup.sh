#!/usr/bin/env bash
# Installs what quarry needs to build and test, and only what is missing: Debian packages and
# a Python virtual environment (.venv) holding the test oracles. Idempotent.
#   scripts/setup.sh              build + test dependencies
#   scripts/setup.sh --reference  also torch/transformers/peft for regenerating fixtures
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config git libcjson-dev libcurl4-openssl-dev libssl-dev
          libonig-dev libutf8proc-dev libomp-dev clang libclang-rt-14-dev jq python3-venv
          dpkg-dev lintian man-db groff-base bsdextrautils time
          chromium)   # chromium: tests/report renders quarry report headless; time: scripts/bench/data_scale.sh
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then
  echo "setup: CUDA toolkit found at /usr/local/cuda (add /usr/local/cuda/bin to PATH to use nvcc directly)"
fi

req=scripts/requirements-test.txt
[ "${1:-}" = "--reference" ] && req=scripts/requirements-reference.txt
stamp=.venv/.installed-$(sha256sum "$req" scripts/requirements-test.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setup: preparing .venv from $req"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# cudnn-frontend (header-only, for kernels/cuda/attention_cudnn.cu) when a CUDA build is possible;
# cuDNN itself is not needed to build: quarry opens it at run time. After .venv: Debian's python3
# has no pip of its own.
fe_version=1.32.0
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null; then
  if [ ! -f .deps/cudnn-frontend/.version-$fe_version ]; then
    echo "setup: fetching nvidia-cudnn-frontend $fe_version headers into .deps/cudnn-frontend"
    tmp=$(mktemp -d)
    .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      "nvidia-cudnn-frontend==$fe_version" -d "$tmp"
    rm -rf .deps/cudnn-frontend && mkdir -p .deps/cudnn-frontend
    .venv/bin/python - "$tmp" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/nvidia_cudnn_frontend-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("include/"):
            z.extract(n, ".deps/cudnn-frontend")
PY
    rm -rf "$tmp"
    touch .deps/cudnn-frontend/.version-$fe_version
  fi
fi

echo "setup: ready"
