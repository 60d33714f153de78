#!/usr/bin/env bash
# --offload-activations auto|on|off: on the CPU, training with the saved activations offloaded
# (the tiny model has 4 layers: 2 travel to host memory and back each step) writes bitwise the
# adapter and losses of the run without; the choice and the pinned bytes are in run.json and the
# log; auto leaves it off where the plan fits; a misspelling is a usage error.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
W=$(mktemp -d /tmp/quarry-offload.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 5 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
QA="$SRC/examples/data/company_qa_train.jsonl"
base=(--model "$W/model" --data "$QA" --max-seq-len 64 --device cpu --max-steps 3 --batch-size 2 --seed 3)

for mode in off on; do
    "$Q" train "${base[@]}" --offload-activations $mode --out "$W/$mode" 2>"$W/$mode.log"
    check "--offload-activations $mode exits 0" "[ $? -eq 0 ]" || { cat "$W/$mode.log"; }
done
for f in "$W"/off/final/*.safetensors; do
    check "$(basename "$f"): bitwise the same with offload" "cmp -s '$f' '$W/on/final/$(basename "$f")'"
done
check "an adapter was written" "ls $W/off/final/*.safetensors >/dev/null 2>&1"
# The metrics that must be equal: step, epoch, loss, perplexity, lr, grad norm (not the speed).
metrics() { cut -d, -f1-6 "$1/step_wise_training_metrics.csv"; }
check "the same step metrics (loss, grad norm)" "[ -s $W/off/step_wise_training_metrics.csv ] && diff <(metrics $W/off) <(metrics $W/on) >/dev/null"
check "on: run.json says offload, with the pinned bytes" "$PY -c \"
import json;r=json.load(open('$W/on/run.json'));lc=r['long_context']
assert lc['offload_activations']=='on' and lc['offload'] is True, lc
assert r['memory_plan_bytes']['host_pinned']>0, r['memory_plan_bytes']\""
check "on: the plan printout names the pinned host memory" "grep -q 'pinned host' $W/on.log"
check "off: run.json says off" "$PY -c \"
import json;lc=json.load(open('$W/off/run.json'))['long_context'];assert lc['offload'] is False and lc['mlp_chunk']==0,lc\""

"$Q" train "${base[@]}" --max-steps 1 --out "$W/auto" 2>"$W/auto.log"
check "auto where the plan fits: no offload, nothing said" "[ $? -eq 0 ] && ! grep -q 'offload-activations auto' $W/auto.log && $PY -c \"
import json;lc=json.load(open('$W/auto/run.json'))['long_context'];assert lc['offload_activations']=='auto' and lc['offload'] is False and lc['why']=='',lc\""

"$Q" train "${base[@]}" --offload-activations yes --out "$W/bad" 2>"$W/bad.log"; rc=$?
check "a misspelt --offload-activations is a usage error" "[ $rc -eq 2 ] && grep -q -- \"--offload-activations must be auto, on or off (got 'yes')\" $W/bad.log"
check "nothing made for it" "[ ! -e $W/bad ]"
exit $fail
