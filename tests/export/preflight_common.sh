# Sourced by the preflight tests: Q, SRC, PY, a scratch dir T removed at exit, fail=0, and T/good:
# the tiny model initialised (fp32), which each test copies and edits.
Q=${QUARRY_BIN:?}
SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}
[ -x "$PY" ] || PY=python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$T/good" \
    --seed 3 --dtype fp32 2>/dev/null || { echo "FAIL: quarry init"; exit 1; }
