#!/usr/bin/env bash
# The main job on a small embedded default, on the CPU: runs on a fresh machine after
# `git clone` (it calls setup; no network beyond package installs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
Q=build/quarry
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "quarry --version"
$Q --version
step "quarry info"
$Q info
step "quarry --help"
$Q --help
