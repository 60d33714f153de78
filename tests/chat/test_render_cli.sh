#!/usr/bin/env bash
# `quarry render` on AWS's sample Bedrock data vs transformers' jinja2 rendering (check_render.py).
set -u
Q=${QUARRY_BIN:?}
TD=${QUARRY_TESTDATA:?}
PY=${QUARRY_PYTHON:?}
[ -d "$TD/bedrock" ] && [ -d "$TD/chat_templates" ] || { echo "SKIP: ../shared/testdata not found ($TD)"; exit 77; }
[ -x "$PY" ] || { echo "SKIP: .venv not found ($PY)"; exit 77; }
W=${QUARRY_BUILD_DIR:?}/render_cli
mkdir -p "$W" || exit 1
exec "$PY" "${QUARRY_SOURCE_DIR:?}/tests/chat/check_render.py" "$Q" "$TD" "$QUARRY_SOURCE_DIR" "$W"
