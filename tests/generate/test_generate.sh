#!/usr/bin/env bash
# `quarry generate` against llama2.c's stories260K text, transformers' greedy ids, jinja2's
# generation prompts, and merged-weight equivalence of LoRA runs (check_generate.py).
set -u
Q=${QUARRY_BIN:?}
PY=${QUARRY_PYTHON:?}
[ -x "$PY" ] || { echo "SKIP: .venv not found ($PY)"; exit 77; }
W=${QUARRY_BUILD_DIR:?}/generate_cli
mkdir -p "$W" || exit 1
# Tiny models: one thread avoids OpenMP start-up costs dominating on a loaded machine.
OMP_NUM_THREADS=1 exec "$PY" "${QUARRY_SOURCE_DIR:?}/tests/generate/check_generate.py" "$Q" "$QUARRY_SOURCE_DIR" \
    "${QUARRY_TESTDATA:?}" "$W"
