#!/usr/bin/env bash
# `quarry eval` against the validation losses `quarry train` logged (check_eval.py).
set -u
PY=${QUARRY_PYTHON:?}
[ -x "$PY" ] || { echo "SKIP: .venv not found ($PY)"; exit 77; }
OMP_NUM_THREADS=1 exec "$PY" "${QUARRY_SOURCE_DIR:?}/tests/eval/check_eval.py" "${QUARRY_BIN:?}" "$QUARRY_SOURCE_DIR" \
    "${QUARRY_BUILD_DIR:?}/eval_cli"
