#!/usr/bin/env bash
# Sparse MoE models through the CLI: `quarry train` (LoRA and full, recompute full) on tiny
# Qwen3-MoE and Mixtral built by `quarry init`, the aux_loss column of the training metrics, the
# adapter's targets (all-linear: attention, every expert's projections, dense MLPs; not the
# router), the plan's trained-parameter count with the expert adapters, `quarry generate` on the
# result; the LoRA target presets and their refusals.
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
  if [ $fam = mixtral ]; then mods="'k_proj','o_proj','q_proj','v_proj','w1','w2','w3'"; else
    mods="'down_proj','gate_proj','k_proj','o_proj','q_proj','up_proj','v_proj'"; fi
  check "$fam adapter on the attention and the experts" "$PY -c \"import json;c=json.load(open('$W/$fam-lora/final/adapter_config.json'));assert sorted(c['target_modules'])==[$mods], c['target_modules']\""
  check "$fam adapter holds every expert's adapters" "$PY -c \"import json,struct;f=open('$W/$fam-lora/final/adapter_model.safetensors','rb');n=struct.unpack('<Q',f.read(8))[0];h=json.loads(f.read(n));assert any('experts.1.' in k for k in h), list(h)[:5]\""
  check "$fam plan prints the trained parameters" "grep -q 'memory plan on .*LoRA.*trained' $W/$fam-lora.log"
  check "$fam plan prints the expert adapters" "grep -q 'expert adapters' $W/$fam-lora.log"
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
# --router-aux-loss-coef (base: the last family's, Mixtral): Mixtral's config leaves the aux loss
# out of the objective (output_router_logits false); with the flag it is in: the first step's
# cross-entropy is the same, its gradient is not.
"$Q" train "${base[@]}" --method full --router-aux-loss-coef 1.0 \
  --out "$W/mixtral-aux" >"$W/mixtral-aux.log" 2>&1; rc=$?
check "--router-aux-loss-coef run exits 0 ($(tail -2 "$W/mixtral-aux.log"))" "[ $rc -eq 0 ]"
check "the aux loss moves the gradient, not the cross-entropy" "$PY - $W/mixtral-full $W/mixtral-aux <<'PYEOF'
import csv, json, sys
a, b = (list(csv.DictReader(open(d + '/step_wise_training_metrics.csv')))[0] for d in sys.argv[1:3])
assert a['training_loss'] == b['training_loss'], (a, b)
assert abs(float(a['grad_norm']) - float(b['grad_norm'])) > 1e-4, (a['grad_norm'], b['grad_norm'])
assert json.load(open(sys.argv[2] + '/run.json'))['settings']['router_aux_loss_coef'] == 1.0
PYEOF"
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/dense" \
  --seed 5 --dtype fp32 >/dev/null 2>&1
"$Q" train --model "$W/dense" --data "$QA" --max-seq-len 128 --device cpu --max-steps 1 --router-aux-loss-coef 0.1 \
  --out "$W/dense-aux" >"$W/dense-aux.log" 2>&1; rc=$?
check "--router-aux-loss-coef on a dense model refused ($(tail -1 "$W/dense-aux.log"))" \
  "[ $rc -eq 1 ] && grep -q 'applies to mixture-of-experts models' $W/dense-aux.log"
"$Q" train --model "$W/mixtral" --data "$QA" --max-seq-len 128 --device cpu --max-steps 1 --lora-targets gate,up \
  --out "$W/bad" >"$W/bad.log" 2>&1; rc=$?
check "dense-MLP LoRA targets on an all-MoE model refused ($(tail -1 "$W/bad.log"))" \
  "[ $rc -eq 1 ] && grep -q 'adapts no layer of MixtralForCausalLM' $W/bad.log"
for t in router experts q,experts; do
  "$Q" train --model "$W/dense" --data "$QA" --max-seq-len 128 --device cpu --max-steps 1 --lora-targets $t \
    --out "$W/bad-$t" >"$W/bad-$t.log" 2>&1; rc=$?
  check "--lora-targets $t on a dense model refused ($(tail -2 "$W/bad-$t.log" | head -1))" \
    "[ $rc -eq 1 ] && grep -q 'error: .*--lora-targets $t names the MoE .* has no mixture-of-experts layer' $W/bad-$t.log && grep -q 'hint:' $W/bad-$t.log && [ ! -e $W/bad-$t/final ]"
done
# gpt-oss's checkpoint fuses its experts: all-linear adapts the attention (target_modules) and the
# experts (target_parameters, PEFT's fused layout: model/lora_peft.h), the router when named; the
# config says lora_dropout 0 (PEFT refuses another with target_parameters); generate reads the
# fused layout back; a killed run resumes to the uninterrupted run's adapter.
"$Q" init --config "$SRC/tests/export/gpt-oss-tiny.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/gptoss" \
  --seed 5 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: gpt-oss init"; exit 1; }
"$Q" train --model "$W/gptoss" --data "$QA" --max-seq-len 128 --device cpu --max-steps 1 --out "$W/gptoss-lora" \
  >"$W/gptoss-lora.log" 2>&1; rc=$?
check "gpt-oss all-linear LoRA run exits 0 ($(tail -2 "$W/gptoss-lora.log"))" "[ $rc -eq 0 ]"
check "gpt-oss all-linear adapts the attention and the fused experts" "$PY -c \"import json;c=json.load(open('$W/gptoss-lora/final/adapter_config.json'));assert sorted(c['target_modules'])==['k_proj','o_proj','q_proj','v_proj'] and c['target_parameters']==['mlp.experts.gate_up_proj','mlp.experts.down_proj'] and c['lora_dropout']==0, c\""
check "gpt-oss adapter in PEFT's fused layout" "$PY -c \"import json,struct;f=open('$W/gptoss-lora/final/adapter_model.safetensors','rb');n=struct.unpack('<Q',f.read(8))[0];h=json.loads(f.read(n));k='base_model.model.model.layers.0.mlp.experts.';assert h[k+'base_layer.lora_A.weight']['shape']==[16*4,64] and h[k+'lora_B.weight']['shape']==[64,16*4] and not any('.experts.1.' in x for x in h), sorted(h)[:6]\""
"$Q" train --model "$W/gptoss" --data "$QA" --max-seq-len 128 --device cpu --max-steps 1 --lora-targets attention,router \
  --out "$W/gptoss-router" >"$W/gptoss-router.log" 2>&1; rc=$?
check "gpt-oss attention,router run exits 0 ($(tail -2 "$W/gptoss-router.log"))" "[ $rc -eq 0 ]"
check "gpt-oss router in target_parameters" "$PY -c \"import json;c=json.load(open('$W/gptoss-router/final/adapter_config.json'));assert c['target_parameters']==['mlp.router.weight'], c\""
"$Q" generate --model "$W/gptoss-lora" --prompt "Who" --max-new-tokens 2 --temperature 0 --device cpu >/dev/null \
  2>"$W/gptoss-gen.log"; rc=$?
check "generate on the gpt-oss expert adapter exits 0 ($(tail -1 "$W/gptoss-gen.log"))" "[ $rc -eq 0 ]"
gres() {  # gres OUT
  "$Q" train --model "$W/gptoss" --data "$QA" --max-seq-len 96 --device cpu --max-steps 3 --batch-size 4 \
    --micro-batch 2 --lora-r 4 --lr 2e-3 --lora-targets all-linear,router --save-every 1 --quiet --out "$1" \
    >/dev/null 2>"$1.log"
}
gres "$W/gref"; rc=$?
check "gpt-oss reference run exits 0 ($(tail -2 "$W/gref.log"))" "[ $rc -eq 0 ]"
QUARRY_TEST_FAULT=kill-after-step:2 gres "$W/gkill"; rc=$?
check "gpt-oss killed run exits 137" "[ $rc -eq 137 ]"
"$Q" train --resume "$W/gkill" >/dev/null 2>"$W/gkill.resume.log"; rc=$?
check "gpt-oss resume exits 0 ($(tail -2 "$W/gkill.resume.log"))" "[ $rc -eq 0 ]"
check "gpt-oss resumed adapter equals the uninterrupted run's" "cmp -s $W/gref/final/adapter_model.safetensors $W/gkill/final/adapter_model.safetensors"
# The router adapter and the experts' ones in a PEFT config, read back by generate.
"$Q" train --model "$W/mixtral" --data "$QA" --max-seq-len 128 --device cpu --max-steps 2 --batch-size 4 \
  --lora-targets attention,router --out "$W/router" >"$W/router.log" 2>&1; rc=$?
check "attention,router run exits 0 ($(tail -2 "$W/router.log"))" "[ $rc -eq 0 ]"
check "router adapter in target_modules" "$PY -c \"import json;c=json.load(open('$W/router/final/adapter_config.json'));assert sorted(c['target_modules'])==['gate','k_proj','o_proj','q_proj','v_proj'], c['target_modules']\""
"$Q" generate --model "$W/router" --prompt "Who founded the company?" --max-new-tokens 2 --temperature 0 \
  --device cpu >"$W/router-gen.out" 2>"$W/router-gen.log"; rc=$?
check "generate on the router-adapter run exits 0 ($(tail -2 "$W/router-gen.log"))" "[ $rc -eq 0 ]"
# Experts only on Qwen3-MoE (a dense mlp_only layer): PEFT's suffix match on gate_proj would
# also take the dense MLP, so target_modules is a regex of the adapted paths; generate reads it.
"$Q" train --model "$W/qwen3-moe" --data "$QA" --max-seq-len 96 --device cpu --max-steps 1 --batch-size 4 \
  --lora-targets experts --out "$W/q3x" >"$W/q3x.log" 2>&1; rc=$?
check "qwen3-moe experts-only run exits 0 ($(tail -2 "$W/q3x.log"))" "[ $rc -eq 0 ]"
check "experts-only target_modules is the experts' regex" "$PY -c \"import json,re;t=json.load(open('$W/q3x/final/adapter_config.json'))['target_modules'];assert isinstance(t,str) and re.fullmatch(t,'model.layers.0.mlp.experts.3.up_proj') and not re.fullmatch(t,'model.layers.1.mlp.up_proj'), t\""
"$Q" generate --model "$W/q3x" --prompt "Who" --max-new-tokens 2 --temperature 0 --device cpu >/dev/null 2>"$W/q3x-gen.log"; rc=$?
check "generate on the experts-only run exits 0 ($(tail -1 "$W/q3x-gen.log"))" "[ $rc -eq 0 ]"
# Expert adapters in checkpoints: a run killed after step 2 and resumed with --resume alone ends
# with the uninterrupted run's adapter (every expert's A and B) and losses, bit for bit (dropout on).
mres() {  # mres OUT
  "$Q" train --model "$W/mixtral" --data "$QA" --max-seq-len 96 --device cpu --max-steps 4 --batch-size 4 \
    --micro-batch 2 --lora-r 4 --lora-dropout 0.1 --lr 2e-3 --lora-targets experts,router --save-every 1 \
    --quiet --out "$1" >/dev/null 2>"$1.log"
}
mres "$W/mref"; rc=$?
check "experts,router reference run exits 0 ($(tail -2 "$W/mref.log"))" "[ $rc -eq 0 ]"
check "checkpoint holds the expert adapters" "$PY -c \"import json,struct;f=open('$W/mref/checkpoints/step-4/trained.safetensors','rb');n=struct.unpack('<Q',f.read(8))[0];h=json.loads(f.read(n));assert any('experts.3.w2.lora_B' in k for k in h) and any('block_sparse_moe.gate.lora_A' in k for k in h), sorted(h)[:4]\""
QUARRY_TEST_FAULT=kill-after-step:2 mres "$W/mkill"; rc=$?
check "killed run exits 137" "[ $rc -eq 137 ]"
"$Q" train --resume "$W/mkill" >/dev/null 2>"$W/mkill.resume.log"; rc=$?
check "resume exits 0 ($(tail -2 "$W/mkill.resume.log"))" "[ $rc -eq 0 ]"
check "resumed adapter equals the uninterrupted run's" "cmp -s $W/mref/final/adapter_model.safetensors $W/mkill/final/adapter_model.safetensors"
check "resumed losses equal" "diff <(cut -d, -f1-6 $W/mref/step_wise_training_metrics.csv) <(cut -d, -f1-6 $W/mkill/step_wise_training_metrics.csv) >/dev/null"
[ $fail -eq 0 ] && echo "test_moe_train: all checks passed"
exit $fail
