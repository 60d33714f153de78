#!/usr/bin/env bash
# Tokenizer encoding speed: quarry (one thread, then all threads) vs HF `tokenizers` (Python,
# one thread, no batching) on a >= 50 MB mixed corpus, for the Llama 3 and Llama 2 tokenizers.
# usage: scripts/bench/tokenizer.sh [BUILD_DIR] [MB]     (BUILD_DIR default: build)
# Needs ../shared/testdata and .venv; builds bench_tokenizer and the tokenizer.json files.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build}
MB=${2:-50}
PY=${QUARRY_PYTHON:-$ROOT/.venv/bin/python}
TD=${QUARRY_TESTDATA:-$ROOT/../shared/testdata}
[ -x "$PY" ] || { echo "no Python venv at $PY (run scripts/setup.sh)" >&2; exit 1; }
[ -d "$TD/tokenizers" ] || { echo "no test data at $TD" >&2; exit 1; }
cmake --build "$BUILD" -j2 --target bench_tokenizer >/dev/null
CACHE=$BUILD/tokenizer-cache
mkdir -p "$CACHE"
[ -f "$CACHE/llama3.json" ] || "$PY" "$ROOT/scripts/reference/make_tokenizers.py" "$TD" "$CACHE"
CORPUS=$CACHE/bench-corpus-${MB}MB.jsonl
[ -f "$CORPUS" ] || "$PY" "$ROOT/scripts/bench/tokenizer_corpus.py" "$CORPUS" "$MB"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u +%F)"
echo "corpus: $CORPUS ($(du -m "$CORPUS" | cut -f1) MB of JSONL)"
for name in llama3 llama2; do
  echo "== $name"
  "$BUILD/tests/tokenizer/bench_tokenizer" "$CACHE/$name.json" "$CORPUS" --threads
  RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false "$PY" "$ROOT/scripts/bench/tokenizer_hf.py" "$CACHE/$name.json" "$CORPUS" 2>&1 | grep -v PyTorch
done
