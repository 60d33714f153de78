#!/usr/bin/env bash
# quarry preflight on mixture-of-experts configs (Qwen3MoeForCausalLM, MixtralForCausalLM, GptOssForCausalLM): the
# architectures CMI lists pass the architecture check, others are refused by name, and the MoE
# keys are checked whatever model/config makes of them: a "moe" FAIL naming the key for a bad one.
set -u
. "$(dirname "$0")/preflight_common.sh"
QWEN='c["architectures"] = ["Qwen3MoeForCausalLM"]; c["model_type"] = "qwen3_moe"; c.update(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=16, decoder_sparse_step=1, mlp_only_layers=[0], norm_topk_prob=True)'
MIX='c["architectures"] = ["MixtralForCausalLM"]; c["model_type"] = "mixtral"; c.update(num_local_experts=4, num_experts_per_tok=2)'

# check NAME CHECK STATUS NEEDLE PYTHON-EDIT-OF-c: the named check of `preflight --json` has
# STATUS and a reason containing NEEDLE; a FAIL exits 1.
check() {
  local name=$1 which=$2 st_want=$3 needle=$4 edit=$5 d=$T/$1
  cp -r "$T/good" "$d"
  "$PY" -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); $edit; json.dump(c, open(p, 'w'))" "$d/config.json"
  local out rc got
  out=$("$Q" preflight "$d" --json 2>&1); rc=$?
  got=$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); c=[x for x in d["checks"] if x["name"]==sys.argv[2]]
print(" | ".join(x["status"] + " " + x["reason"] for x in c) or "none")' "$out" "$which" 2>&1)
  if [ "${got%% *}" != "$st_want" ] || ! grep -qF -- "$needle" <<<"$got" || { [ "$st_want" = fail ] && [ "$rc" != 1 ]; }; then
    echo "FAIL $name: exit $rc, $which check: $got (want $st_want naming '$needle')"; fail=1
  fi
}
check qwen3-moe-arch architecture pass 'Qwen3MoeForCausalLM (Qwen3 MoE' "$QWEN"
check qwen3-moe      moe pass '8 experts, 2 per token, moe_intermediate_size 16; 3 of 4 layers sparse' "$QWEN"
check mixtral-arch   architecture pass 'MixtralForCausalLM (Mixtral) is supported' "$MIX"
check mixtral        moe pass '4 experts, 2 per token, intermediate_size' "$MIX"
check qwen3-arch     architecture pass 'Qwen3ForCausalLM' 'c["architectures"] = ["Qwen3ForCausalLM"]'
check unknown-arch   architecture fail 'DeepseekV3ForCausalLM is not supported by Custom Model Import' \
      'c["architectures"] = ["DeepseekV3ForCausalLM"]'
check topk-too-many  moe fail '"num_experts_per_tok" is 9 but "num_experts" is 8' "$QWEN; c['num_experts_per_tok'] = 9"
check mixtral-topk   moe fail '"num_experts_per_tok" is 5 but "num_local_experts" is 4' "$MIX; c['num_experts_per_tok'] = 5"
check only-range     moe fail '"mlp_only_layers"[1] is 4, not a layer index of this model (num_hidden_layers 4: 0 to 3)' \
      "$QWEN; c['mlp_only_layers'] = [0, 4]"
check only-negative  moe fail '"mlp_only_layers"[0] is -1' "$QWEN; c['mlp_only_layers'] = [-1]"
check only-type      moe fail '"mlp_only_layers" must be a list' "$QWEN; c['mlp_only_layers'] = 1"
check sparse-step    moe fail '"decoder_sparse_step" must be an integer >= 1' "$QWEN; c['decoder_sparse_step'] = 0"
check moe-size       moe fail '"moe_intermediate_size" must be an integer >= 1' "$QWEN; c['moe_intermediate_size'] = '16'"
check zero-experts   moe fail '"num_local_experts" must be an integer >= 1' "$MIX; c['num_local_experts'] = 0"
check norm-topk      moe fail '"norm_topk_prob" must be true or false' "$QWEN; c['norm_topk_prob'] = 'yes'"
check jitter         moe fail '"router_jitter_noise" must be a number >= 0' "$MIX; c['router_jitter_noise'] = -0.1"
check no-experts     moe warn 'no "num_experts"; transformers will use its default 128' "$QWEN; c.pop('num_experts')"
check step-2         moe pass '2 of 4 layers sparse' "$QWEN; c['mlp_only_layers'] = []; c['decoder_sparse_step'] = 2"
# The published configs in examples/configs pass the MoE check with their real figures.
for f in "Qwen3-30B-A3B:128 experts, 8 per token, moe_intermediate_size 768; 48 of 48 layers sparse" \
         "Mixtral-8x7B-v0.1:8 experts, 2 per token, intermediate_size 14336; 32 of 32 layers sparse"; do
  check "published-${f%%:*}" moe pass "${f#*:}" "c.clear(); c.update(json.load(open('$SRC/examples/configs/${f%%:*}.json')))"
done
# gpt-oss: a package of the fused expert layout passes the architecture and tensor checks; without a
# layer's sinks the tensor check fails naming the tensor.
"$Q" init --config "$SRC/tests/export/gpt-oss-tiny.json" --tokenizer "$SRC/examples/tiny-model" --out "$T/goss" \
    --seed 3 --dtype fp32 2>/dev/null || { echo "FAIL: quarry init gpt-oss"; exit 1; }
named() {   # named DIR CHECK STATUS NEEDLE
  local got
  got=$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); c=[x for x in d["checks"] if x["name"]==sys.argv[2]]
print(" | ".join(x["status"] + " " + x["reason"] for x in c) or "none")' "$("$Q" preflight "$1" --json 2>&1)" "$2" 2>&1)
  if [ "${got%% *}" != "$3" ] || ! grep -qF -- "$4" <<<"$got"; then echo "FAIL $1: $2 check: $got (want $3 naming '$4')"; fail=1; fi
}
named "$T/goss" architecture pass 'GptOssForCausalLM (GPT-OSS'
named "$T/goss" tensors pass 'all 37 tensors GptOssForCausalLM implies are present with their shapes'
cp -r "$T/goss" "$T/goss-nosinks"
"$PY" -c "
import sys; from safetensors.numpy import load_file, save_file
p = sys.argv[1]; t = load_file(p); del t['model.layers.1.self_attn.sinks']; save_file(t, p, metadata={'format': 'pt'})
" "$T/goss-nosinks/model.safetensors" || { echo "FAIL: rewriting the gpt-oss package"; fail=1; }
named "$T/goss-nosinks" tensors fail 'tensor "model.layers.1.self_attn.sinks" [4] is missing'

# The text report names the check and the key.
out=$("$Q" preflight "$T/topk-too-many")
grep -q '^FAIL  moe  *config.json "num_experts_per_tok" is 9' <<<"$out" || { echo "FAIL text report:"; echo "$out"; fail=1; }
[ $fail -eq 0 ] && echo "test_preflight_moe: all cases passed"
exit $fail
