#!/usr/bin/env bash
# Sparse MoE models through the CLI: `quarry train` (LoRA and full, recompute full) on tiny
# Qwen3-MoE and Mixtral built by `quarry init`, the aux_loss column of the training metrics, the
# adapter's targets (attention only: PEFT on transformers 5 maps gate/up/down_proj to the fused
# experts), the plan's trained-parameter count, `quarry generate` and `quarry eval` on the result.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
W=$(mktemp -d /tmp/quarry-moe.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
QA="$SRC/examples/data/company_qa_train.jsonl"
for fam in qwen3-moe mixtral; do
  "$Q" init --config "$SRC/tests/export/$fam-tiny.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/$fam" \
    --seed 5 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: $fam init"; exit 1; }
  base=(--model "$W/$fam" --data "$QA" --max-seq-len 128 --device cpu --max-steps 3 --batch-size 4)
  "$Q" train "${base[@]}" --out "$W/$fam-lora" >"$W/$fam-lora.log" 2>&1; rc=$?
  check "$fam LoRA run exits 0 ($(tail -3 "$W/$fam-lora.log"))" "[ $rc -eq 0 ]"
  check "$fam aux_loss column, positive" "$PY - $W/$fam-lora/step_wise_training_metrics.csv <<'PYEOF'
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
assert len(r) == 3 and list(r[0])[-1] == 'aux_loss', list(r[0])
assert all(0 < float(x['aux_loss']) < 100 for x in r), [x['aux_loss'] for x in r]
PYEOF"
  check "$fam adapter on the attention only" "$PY -c \"import json;c=json.load(open('$W/$fam-lora/final/adapter_config.json'));assert sorted(c['target_modules'])==['k_proj','o_proj','q_proj','v_proj'], c['target_modules']\""
  check "$fam plan prints the trained parameters" "grep -q 'memory plan on .*LoRA.*trained' $W/$fam-lora.log"
  "$Q" train "${base[@]}" --method full --recompute full --out "$W/$fam-full" >"$W/$fam-full.log" 2>&1; rc=$?
  check "$fam full run with --recompute full exits 0 ($(tail -3 "$W/$fam-full.log"))" "[ $rc -eq 0 ]"
  check "$fam full run's loss falls" "$PY - $W/$fam-full/step_wise_training_metrics.csv <<'PYEOF'
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
assert float(r[-1]['training_loss']) < float(r[0]['training_loss']), [x['training_loss'] for x in r]
PYEOF"
  "$Q" generate --model "$W/$fam-lora" --prompt "Who founded the company?" --max-new-tokens 4 --temperature 0 \
    --device cpu >"$W/$fam-gen.out" 2>"$W/$fam-gen.log"; rc=$?
  check "$fam generate on the LoRA run exits 0 ($(tail -2 "$W/$fam-gen.log"))" "[ $rc -eq 0 ] && [ -s $W/$fam-gen.out ]"
done
"$Q" train --model "$W/mixtral" --data "$QA" --max-seq-len 128 --device cpu --max-steps 1 --lora-targets gate,up \
  --out "$W/bad" >"$W/bad.log" 2>&1; rc=$?
check "MLP-only LoRA targets on an MoE model refused ($(tail -1 "$W/bad.log"))" \
  "[ $rc -eq 1 ] && grep -q 'adapts the attention of MoE models' $W/bad.log"
[ $fail -eq 0 ] && echo "test_moe_train: all checks passed"
exit $fail
