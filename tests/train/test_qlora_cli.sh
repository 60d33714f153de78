#!/usr/bin/env bash
# QLoRA end to end on the tiny model (CPU): `quarry train --quantize nf4` plans and trains over a
# 4-bit base and records it in run.json; --method full with it is refused, and so is a resume that
# changes it; resume, eval, generate and export load the run's base in NF4 from run.json; export
# merges into the original weights (default) or, with --merge-into dequantized, into the NF4 base
# the adapter was trained against, both passing the CMI preflight. The logits of each export
# against the trained function (the run's QLoRA forward) say which differs, by how much (README).
# A base that exists only in bitsandbytes' 4-bit layout exports dequantised and passes preflight.
# NF4 experts: a MoE QLoRA run exports into its dequantised base (gpt-oss's fused experts refused).
# usage: test_qlora_cli.sh EXPORT_LOGITS
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}; PY=${QUARRY_PYTHON:-python3}
LOGITS=${1:?usage: test_qlora_cli.sh EXPORT_LOGITS}
W=$(mktemp -d /tmp/quarry-qlora.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" \
  --seed 3 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
DATA="$SRC/examples/data/company_qa_train.jsonl"
train() {  # train OUT [extra...]
  local out=$1; shift
  "$Q" train --model "$W/model" --data "$DATA" --out "$out" --batch-size 4 --max-seq-len 96 --lr 2e-2 --lora-r 4 \
    --device cpu --quiet "$@" >/dev/null 2>"$out.log"
}
json() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@" 2>/dev/null; }

# Refusals, before anything is written.
train "$W/full" --quantize nf4 --method full; rc=$?
[ $rc -ne 0 ] && grep -q -- "--method lora" "$W/full.log" && [ ! -e "$W/full/run.json" ] ||
  bad "--method full --quantize nf4: exit $rc, $(head -2 "$W/full.log")"
train "$W/q4" --quantize int4; rc=$?
[ $rc -ne 0 ] && grep -q -- "--quantize must be nf4" "$W/q4.log" || bad "--quantize int4: exit $rc, $(head -2 "$W/q4.log")"
train "$W/nodq" --no-double-quant; rc=$?
[ $rc -ne 0 ] && grep -q -- "--no-double-quant applies to --quantize nf4" "$W/nodq.log" || bad "--no-double-quant alone: exit $rc"

# QLoRA: the plan shows the 4-bit weights; run.json records the setting.
# Killed after step 2 (before its checkpoint), so that the run is resumed below.
(QUARRY_TEST_FAULT=kill-after-step:2 "$Q" train --model "$W/model" --data "$DATA" --out "$W/run" --batch-size 4 \
  --max-seq-len 96 --lr 2e-2 --lora-r 4 --device cpu --quantize nf4 --max-steps 4 --save-every 1 >/dev/null 2>"$W/run.log"; true) 2>/dev/null
[ -d "$W/run/checkpoints" ] || { cat "$W/run.log"; echo "FAIL: QLoRA train"; exit 1; }
grep -q "NF4 .*4-bit codes + 8-bit absmax" "$W/run.log" || bad "the plan has no NF4 line: $(cat "$W/run.log")"
[ "$(json "$W/run/run.json" 'd["settings"]["quantize"]')" = nf4 ] || bad "run.json lacks settings.quantize nf4"
[ "$(json "$W/run/run.json" 'd["settings"]["no_double_quant"]')" = False ] || bad "run.json: no_double_quant"
# The plan's weights: 4-bit linears make them smaller than the same LoRA run's in fp32.
"$Q" train --model "$W/model" --data "$DATA" --out "$W/dense" --batch-size 4 --max-seq-len 96 --lr 2e-2 --lora-r 4 \
  --device cpu --quiet --max-steps 1 >/dev/null 2>"$W/dense.log" || bad "dense LoRA run"
wq=$(json "$W/run/run.json" 'd["memory_plan_bytes"]["weights"]'); wd=$(json "$W/dense/run.json" 'd["memory_plan_bytes"]["weights"]')
n4=$(json "$W/run/run.json" 'd["memory_plan_bytes"]["nf4"]')
[ -n "$wq" ] && [ -n "$wd" ] && [ -n "$n4" ] && [ "${wq%.*}" -lt "${wd%.*}" ] && [ "${n4%.*}" -gt 0 ] ||
  bad "run.json memory_plan_bytes: weights nf4 '$wq' (of which NF4 '$n4'), dense '$wd'"

# Resume takes the setting from run.json; changing it is refused by name.
"$Q" train --resume "$W/run" --no-double-quant >/dev/null 2>"$W/r1.log"; rc=$?
[ $rc -ne 0 ] && grep -q -- "--no-double-quant" "$W/r1.log" || bad "resume changing the quantisation: exit $rc, $(head -2 "$W/r1.log")"
"$Q" train --resume "$W/run" >/dev/null 2>"$W/r2.log" || bad "resume: $(tail -3 "$W/r2.log")"
grep -q "NF4 .*4-bit codes" "$W/r2.log" || bad "the resumed run's plan is not NF4: $(cat "$W/r2.log")"
[ -f "$W/run/final/adapter_model.safetensors" ] || bad "the resumed run did not finish"
[ "$(json "$W/run/run.json" 'd["settings"]["quantize"]')" = nf4 ] || bad "resumed run.json lost settings.quantize"

# eval and generate load the run's base in NF4 (the status line says QLoRA).
"$Q" eval --model "$W/run" --data "$DATA" --max-seq-len 96 --device cpu >"$W/eval.out" 2>"$W/eval.log" ||
  bad "eval: $(tail -3 "$W/eval.log")"
"$Q" generate --model "$W/run" --prompt "Where is the office?" --max-new-tokens 4 --temperature 0 --device cpu \
  >"$W/gen.out" 2>"$W/gen.log" || bad "generate: $(tail -3 "$W/gen.log")"
grep -q "QLoRA" "$W/eval.log" "$W/gen.log" || bad "eval/generate do not say they loaded the QLoRA run"

# Export: into the original weights (default) and into the dequantised NF4 base; both pass preflight.
"$Q" export "$W/run" --out "$W/orig" --dtype fp32 --skip-leakcheck --quiet >"$W/exp1.out" 2>"$W/exp1.log" ||
  bad "export (original): $(tail -3 "$W/exp1.log")"
"$Q" export "$W/run" --out "$W/deq" --dtype fp32 --merge-into dequantized --skip-leakcheck --quiet >"$W/exp2.out" \
  2>"$W/exp2.log" || bad "export --merge-into dequantized: $(tail -3 "$W/exp2.log")"
grep -q "PASS" "$W/exp1.out" && grep -q "PASS" "$W/exp2.out" || bad "preflight did not pass: $(cat "$W/exp1.out" "$W/exp2.out")"
[ "$(json "$W/deq/quarry-export.json" 'd["source"]["merged_into"]')" = "dequantized nf4 base" ] ||
  bad "quarry-export.json does not record merged_into"
"$Q" export "$W/dense" --out "$W/bad" --merge-into dequantized --skip-leakcheck >/dev/null 2>"$W/exp3.log" &&
  bad "--merge-into dequantized of a 16-bit LoRA run accepted"
grep -q "QLoRA run" "$W/exp3.log" || bad "--merge-into dequantized of a LoRA run: $(head -2 "$W/exp3.log")"

# Which export computes the trained function: logits over a sequence, max |difference|.
IDS="1 17 230 44 512 9 77 300 12 640 5 88 123 456 789 3"
for m in run orig deq; do
  "$LOGITS" "$W/$m" "$W/$m.f32" $IDS 2>"$W/$m.logits.log" || bad "logits of $m: $(cat "$W/$m.logits.log")"
done
"$PY" - "$W" <<'EOF' || fail=1
import sys, numpy as np
w = sys.argv[1]
q = np.fromfile(f"{w}/run.f32", np.float32)
o = np.fromfile(f"{w}/orig.f32", np.float32)
d = np.fromfile(f"{w}/deq.f32", np.float32)
eo, ed = float(np.abs(o - q).max()), float(np.abs(d - q).max())
print(f"max |logit difference| to the trained QLoRA forward: merged into original {eo:.3e}, "
      f"into dequantized {ed:.3e} (logits span {float(q.max() - q.min()):.2f})")
# The dequantised merge is the trained function up to the merge's one f32 rounding and GEMM order.
ok = ed < 1e-4 and eo > 10 * ed
if not ok:
    print("FAIL: the dequantised export should track the trained function far closer than the original")
sys.exit(0 if ok else 1)
EOF
# A base that exists only in bitsandbytes' 4-bit layout exports dequantised: the weights
# dequantize_4bit gives (the fixture's dequant/ references), no quantization_config, preflight passes.
FX="$SRC/tests/fixtures/qlora_llama_bnb4"
mkdir -p "$W/b4" && cp "$FX/config.json" "$FX/model.safetensors" "$W/b4/" &&
  cp "$SRC/examples/tiny-model/tokenizer.json" "$SRC/examples/tiny-model/tokenizer_config.json" "$W/b4/"
"$Q" export --model "$W/b4" --out "$W/b4-exp" --dtype fp32 --quiet >"$W/exp4.out" 2>"$W/exp4.log" ||
  bad "export of a 4-bit base: $(cat "$W/exp4.out" "$W/exp4.log" | grep -E 'FAIL|error' | head -3)"
"$PY" - "$W/b4-exp" "$SRC/tests/fixtures/qlora_llama/reference.safetensors" <<'EOF' || fail=1
import json, sys
from safetensors.numpy import load_file
out, ref = load_file(sys.argv[1] + "/model.safetensors"), load_file(sys.argv[2])
cfg = json.load(open(sys.argv[1] + "/config.json"))
deq = {k[len("dequant/"):]: v for k, v in ref.items() if k.startswith("dequant/")}
bad = [k for k, v in deq.items() if k not in out or out[k].shape != v.shape or (out[k] != v).any()]
if bad or len(deq) != 14 or "quantization_config" in cfg:
    print(f"FAIL: 4-bit base export: {len(bad)} of {len(deq)} linears differ from dequantize_4bit; "
          f"quantization_config kept: {'quantization_config' in cfg}")
    sys.exit(1)
EOF

# NF4 experts: a Qwen3-MoE QLoRA run (LoRA on the experts too) exports merged into its dequantised
# base, experts included, as the trained function; gpt-oss's fused experts are refused by name.
"$Q" init --config "$SRC/tests/export/qwen3-moe-tiny.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/moe" \
  --seed 3 --dtype fp32 >/dev/null 2>&1 || bad "init qwen3-moe"
"$Q" train --model "$W/moe" --data "$DATA" --out "$W/moerun" --batch-size 4 --max-seq-len 96 --lr 2e-2 --lora-r 4 \
  --lora-targets all-linear --device cpu --quiet --quantize nf4 --max-steps 2 >/dev/null 2>"$W/moerun.log" ||
  bad "QLoRA on a MoE model: $(tail -3 "$W/moerun.log")"
"$Q" export "$W/moerun" --out "$W/moedeq" --dtype fp32 --merge-into dequantized --skip-leakcheck --quiet \
  >"$W/exp5.out" 2>"$W/exp5.log" || bad "MoE export --merge-into dequantized: $(tail -3 "$W/exp5.log")"
"$Q" export "$W/moerun" --out "$W/moeorig" --dtype fp32 --skip-leakcheck --quiet >/dev/null 2>&1 ||
  bad "MoE export (original)"
for m in moerun moedeq moeorig; do
  "$LOGITS" "$W/$m" "$W/$m.f32" $IDS 2>"$W/$m.logits.log" || bad "logits of $m: $(cat "$W/$m.logits.log")"
done
"$PY" - "$W" <<'EOF' || fail=1
import sys, numpy as np
w = sys.argv[1]
q, d, o = (np.fromfile(f"{w}/{m}.f32", np.float32) for m in ("moerun", "moedeq", "moeorig"))
ed, eo = float(np.abs(d - q).max()), float(np.abs(o - q).max())
print(f"MoE QLoRA (NF4 experts): max |logit difference| to the trained forward: into dequantized {ed:.3e}, "
      f"into original {eo:.3e}")
if not (ed < 1e-4 and eo > 10 * ed):
    print("FAIL: the MoE export into the dequantised base should be the trained function")
    sys.exit(1)
EOF
"$Q" init --config "$SRC/tests/export/gpt-oss-tiny.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/oss" \
  --seed 3 --dtype fp32 >/dev/null 2>&1 || bad "init gpt-oss"
"$Q" train --model "$W/oss" --data "$DATA" --out "$W/ossrun" --batch-size 4 --max-seq-len 96 --lr 2e-2 --lora-r 4 \
  --device cpu --quiet --quantize nf4 --max-steps 1 >/dev/null 2>"$W/ossrun.log" || bad "QLoRA on gpt-oss"
"$Q" export "$W/ossrun" --out "$W/ossdeq" --dtype fp32 --merge-into dequantized --skip-leakcheck --quiet \
  >/dev/null 2>"$W/exp6.log" && bad "gpt-oss --merge-into dequantized accepted"
grep -q "fused experts" "$W/exp6.log" && [ ! -e "$W/ossdeq" ] || bad "gpt-oss --merge-into dequantized: $(head -2 "$W/exp6.log")"

[ $fail -eq 0 ] && echo "test_qlora_cli: all checks passed"
exit $fail
