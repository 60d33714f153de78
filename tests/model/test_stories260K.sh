#!/bin/bash
# Converts ../shared/testdata/models/stories260K (llama2.c) to a Hugging Face directory under the
# build dir once, then checks quarry's greedy decoding against llama2.c's (test_stories260K.c).
set -u
bin=$1
src=$QUARRY_TESTDATA/models/stories260K
if [ ! -f "$src/stories260K.bin" ]; then echo "SKIP: $src not found"; exit 77; fi
if [ ! -x "$QUARRY_PYTHON" ]; then echo "SKIP: $QUARRY_PYTHON (the .venv) not found"; exit 77; fi
out=$QUARRY_BUILD_DIR/cache/stories260K-hf
if [ ! -f "$out/model.safetensors" ] || [ "$src/stories260K.bin" -nt "$out/model.safetensors" ]; then
    "$QUARRY_PYTHON" "$QUARRY_SOURCE_DIR/scripts/reference/convert_llama2c.py" "$src/stories260K.bin" "$out" || exit 1
fi
exec "$bin" "$out" "$src/tok512.bin" "$src/stories260K.md"
