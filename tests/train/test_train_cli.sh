#!/usr/bin/env bash
# quarry train as a user meets it: the run directory's files and columns, loss falling,
# hyperparameters files, refusals with clear messages, NaN steps skipped and three in a row
# stopping the run with the last good checkpoint intact.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
W=$(mktemp -d /tmp/quarry-train.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 5 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
DOCS="$SRC/examples/data/company_docs.jsonl"
QA="$SRC/examples/data/company_qa_train.jsonl"
VAL="$SRC/examples/data/company_qa_validation.jsonl"
base=(--model "$W/model" --max-seq-len 128 --device cpu --quiet)

# A LoRA run with Bedrock's hyperparameters file and a validation file.
printf '{"epochCount": "3", "batchSize": "4", "learningRate": "0.003", "learningRateWarmupSteps": "2"}' > "$W/hp.json"
"$Q" train "${base[@]}" --data "$QA" --validation "$VAL" --hyperparameters "$W/hp.json" --out "$W/lora" 2>"$W/lora.log"
check "LoRA run exits 0" "[ $? -eq 0 ]"
check "run files" "[ -f $W/lora/run.json ] && [ -f $W/lora/loss.svg ] && [ -f $W/lora/final/adapter_model.safetensors ] && [ -f $W/lora/final/adapter_config.json ]"
check "Bedrock's columns" "head -1 $W/lora/step_wise_training_metrics.csv | grep -q '^step_number,epoch_number,training_loss,perplexity,learning_rate,grad_norm,tokens_per_second'"
check "validation columns" "head -1 $W/lora/validation_metrics.csv | grep -q '^step_number,epoch_number,validation_loss,perplexity$'"
check "hyperparameters applied (3 epochs, warmup: lr 0 at the first step, 0.003 after 2)" "$PY - $W/lora/step_wise_training_metrics.csv <<'PYEOF'
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
assert r[-1]['epoch_number'] == '3' and r[0]['epoch_number'] == '1', r[-1]
assert float(r[0]['learning_rate']) == 0 and abs(float(r[1]['learning_rate']) - 0.0015) < 1e-9, r[:2]
assert max(float(x['learning_rate']) for x in r) <= 0.003 + 1e-12
PYEOF"
check "run.json parses, names settings, hashes and results" "$PY - $W/lora/run.json <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
s = r['settings']
assert s['epochs'] == 3 and s['batch_size'] == 4 and abs(s['learning_rate'] - 0.003) < 1e-12 and s['warmup_steps'] == 2, s
assert s['method'] == 'lora' and len(r['inputs']['data_sha256']) == 64 and len(r['inputs']['tokenizer_sha256']) == 64
assert r['result']['steps'] == sum(1 for _ in open(sys.argv[1].replace('run.json', 'step_wise_training_metrics.csv'))) - 1
assert r['result']['final_validation_loss'] < r['result']['initial_validation_loss'], r['result']
PYEOF"
check "adapter_config is PEFT's" "$PY -c \"import json;c=json.load(open('$W/lora/final/adapter_config.json'));assert c['peft_type']=='LORA' and c['r']==16 and sorted(c['target_modules'])==sorted(['q_proj','k_proj','v_proj','o_proj','gate_proj','up_proj','down_proj'])\""
check "svg is an svg with both curves" "grep -q '<svg' $W/lora/loss.svg && [ \$(grep -c '<polyline' $W/lora/loss.svg) -eq 2 ]"

# Full fine-tuning on the documents: the training loss falls.
"$Q" train "${base[@]}" --data "$DOCS" --full --epochs 3 --batch-size 8 --lr 2e-3 --out "$W/full" 2>"$W/full.log"
check "full run exits 0" "[ $? -eq 0 ]"
check "training loss falls" "$PY -c \"import csv;r=list(csv.DictReader(open('$W/full/step_wise_training_metrics.csv')));a=float(r[0]['training_loss']);b=float(r[-1]['training_loss']);assert b<a-1.0,(a,b)\""

# Refusals.
"$Q" train "${base[@]}" --data "$QA" --out "$W/lora" 2>"$W/err"; rc=$?
check "a non-empty --out is refused (exit 1)" "[ $rc -eq 1 ] && grep -q 'not empty' $W/err"
printf '{"epochCount": "many"}' > "$W/bad.json"
"$Q" train "${base[@]}" --data "$QA" --out "$W/x1" --hyperparameters "$W/bad.json" 2>"$W/err"; rc=$?
check "a bad hyperparameter is refused (exit 2) naming the key" "[ $rc -eq 2 ] && grep -q epochCount $W/err"
printf '{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n' > "$W/bad.jsonl"
"$Q" train "${base[@]}" --data "$W/bad.jsonl" --out "$W/x2" 2>"$W/err"; rc=$?
check "invalid data is refused (exit 1) with its line" "[ $rc -eq 1 ] && grep -q 'bad.jsonl:2' $W/err"
"$Q" train "${base[@]}" --data "$QA" --out "$W/x3" --method lorax 2>"$W/err"; rc=$?
check "a bad --method is a usage error" "[ $rc -eq 2 ]"
"$Q" train "${base[@]}" --data "$QA" --out "$W/x4" --lora-targets q,zz 2>"$W/err"; rc=$?
check "an unknown LoRA target is refused" "[ $rc -ne 0 ] && grep -qi 'zz' $W/err"
"$Q" train "${base[@]}" --data "$QA" --out /proc/quarry-cannot 2>"$W/err"; rc=$?
check "an unwritable --out is a clear error" "[ $rc -eq 1 ] && grep -q '/proc/quarry-cannot' $W/err"

# NaN/inf: two bad steps are skipped and the run goes on; three in a row stop it, keeping the
# last good checkpoint.
QUARRY_TEST_FAULT=nan-at-steps:3-4 "$Q" train "${base[@]}" --data "$QA" --epochs 1 --batch-size 4 --out "$W/nan2" 2>"$W/nan2.log"
check "two NaN steps: run completes" "[ $? -eq 0 ] && grep -q 'step skipped (2 in a row)' $W/nan2.log"
QUARRY_TEST_FAULT=nan-at-steps:3-5 "$Q" train "${base[@]}" --data "$QA" --epochs 3 --batch-size 4 --save-every 2 --out "$W/nan3" 2>"$W/nan3.log"; rc=$?
check "three NaN steps: exit 1 with a message" "[ $rc -eq 1 ] && grep -q 'three steps in a row' $W/nan3.log"
check "three NaN steps: step-2 checkpoint intact, no final" "[ -f $W/nan3/checkpoints/step-2/trainer_state.json ] && [ ! -d $W/nan3/final ]"

# The token cache: a second run over the same data and tokenizer skips tokenization and trains
# the same; a damaged cache file is a warning and a miss; QUARRY_TOKEN_CACHE=off turns it off.
export QUARRY_CACHE_DIR=$W/token-cache
tc=(--data "$QA" --epochs 1 --batch-size 4 --max-seq-len 96 --device cpu)
"$Q" train --model "$W/model" "${tc[@]}" --out "$W/tc1" 2>"$W/tc1.log"
"$Q" train --model "$W/model" "${tc[@]}" --out "$W/tc2" 2>"$W/tc2.log"
check "second run reads the token cache" "! grep -q 'token cache' $W/tc1.log && grep -q 'from the token cache' $W/tc2.log"
check "cached examples train the same" "diff <(cut -d, -f1-6 $W/tc1/step_wise_training_metrics.csv) <(cut -d, -f1-6 $W/tc2/step_wise_training_metrics.csv) >/dev/null"
for f in "$W"/token-cache/*.bin; do head -c 100 "$f" > "$f.x" && mv "$f.x" "$f"; done
"$Q" train --model "$W/model" "${tc[@]}" --out "$W/tc3" 2>"$W/tc3.log"
check "a damaged cache file is a warning and a miss" "[ -f $W/tc3/final/adapter_model.safetensors ] && grep -q 'damaged' $W/tc3.log"
QUARRY_TOKEN_CACHE=off "$Q" train --model "$W/model" "${tc[@]}" --out "$W/tc4" 2>"$W/tc4.log"
check "QUARRY_TOKEN_CACHE=off reads no cache" "! grep -q 'token cache' $W/tc4.log"

# Activation recomputation: the three modes train the same (the losses and gradient norms of
# the metrics file, printed to 6 digits, agree exactly), each recorded in run.json; the plan
# printout names the mode; --grad-checkpoint is --recompute full. --micro-batch auto picks one
# and says why; it records the choice.
rc_args=(--model "$W/model" --data "$QA" --epochs 1 --batch-size 4 --max-seq-len 96 --device cpu --lora-dropout 0.1 --max-steps 3)
for mode in none selective full; do
    "$Q" train "${rc_args[@]}" --recompute $mode --out "$W/rc_$mode" 2>"$W/rc_$mode.log"
    check "--recompute $mode runs" "[ -f $W/rc_$mode/final/adapter_model.safetensors ] && grep -q 'recompute $mode' $W/rc_$mode.log"
    check "--recompute $mode in run.json" "$PY -c \"import json;s=json.load(open('$W/rc_$mode/run.json'))['settings'];assert s['recompute']=='$mode',s\""
done
for mode in selective full; do
    check "--recompute $mode trains as none" "diff <(cut -d, -f1-6 $W/rc_none/step_wise_training_metrics.csv) <(cut -d, -f1-6 $W/rc_$mode/step_wise_training_metrics.csv) >/dev/null"
done
"$Q" train "${rc_args[@]}" --out "$W/rc_default" 2>/dev/null
check "selective is the default" "$PY -c \"import json;assert json.load(open('$W/rc_default/run.json'))['settings']['recompute']=='selective'\""
"$Q" train "${rc_args[@]}" --grad-checkpoint --out "$W/rc_gc" 2>/dev/null
check "--grad-checkpoint is --recompute full" "$PY -c \"import json;assert json.load(open('$W/rc_gc/run.json'))['settings']['recompute']=='full'\""
"$Q" train "${rc_args[@]}" --recompute sometimes --out "$W/rc_bad" 2>"$W/err"; rc=$?
check "a bad --recompute is a usage error naming the modes" "[ $rc -eq 2 ] && grep -q 'none, selective or full' $W/err"
"$Q" train "${rc_args[@]}" --micro-batch auto --out "$W/mb_auto" 2>"$W/mb_auto.log"
check "--micro-batch auto says what it picked and why" "grep -q 'micro-batch auto: micro-batch 4: plan .* GiB usable' $W/mb_auto.log"
check "--micro-batch auto records its choice" "$PY -c \"import json;r=json.load(open('$W/mb_auto/run.json'));s=r['settings'];assert s['micro_batch_auto'] and s['micro_batch']==4 and s['grad_accum']==1 and r['data_parallel']['micro_batch_per_rank']==4,s\""
"$Q" train "${rc_args[@]}" --micro-batch auto --grad-accum 2 --out "$W/mb_bad" 2>"$W/err"; rc=$?
check "--micro-batch auto with --grad-accum is refused" "[ $rc -eq 2 ] && grep -q 'drop --grad-accum' $W/err"
"$Q" train "${rc_args[@]}" --micro-batch lots --out "$W/mb_bad" 2>"$W/err"; rc=$?
check "a bad --micro-batch is a usage error" "[ $rc -eq 2 ] && grep -q 'whole number or auto' $W/err"

[ $fail -eq 0 ] && echo "test_train_cli: all checks passed"
exit $fail
