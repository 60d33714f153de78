#!/bin/sh
# Runs a Python test with the project's .venv; skipped (77) when the .venv or moto is absent.
PY=${QUARRY_PYTHON:-}
if [ -z "$PY" ] || [ ! -x "$PY" ]; then echo "SKIP: no .venv python ($PY)"; exit 77; fi
exec "$PY" "$@"
