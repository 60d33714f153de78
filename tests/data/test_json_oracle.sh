#!/usr/bin/env bash
# quarry's JSON parser agrees with Python's json module (made RFC-strict) on mutated lines.
PY=${QUARRY_PYTHON:-}
[ -x "$PY" ] || PY=$(command -v python3 || true)
[ -n "$PY" ] || { echo "SKIP: no Python for the json oracle"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$PY" "$(dirname "$0")/json_oracle.py" "${QUARRY_BIN:?}" "$T"
