#!/usr/bin/env bash
# `quarry cost` arithmetic, unknown prices and exit codes (check_cost.py).
set -u
PY=${QUARRY_PYTHON:?}
[ -x "$PY" ] || { echo "SKIP: .venv not found ($PY)"; exit 77; }
exec "$PY" "${QUARRY_SOURCE_DIR:?}/tests/cost/check_cost.py" "${QUARRY_BIN:?}" "${QUARRY_BUILD_DIR:?}/cost_cli"
