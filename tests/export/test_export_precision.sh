#!/usr/bin/env bash
# quarry export measures what the package keeps of the fine-tuning (issue 23), on a tiny bf16 base:
#  1. a short LoRA run at a low learning rate: the bf16 package loses a measurable share of the
#     run's improvement over the base, fp16 keeps it; --dtype auto (the default on a bf16 base)
#     writes fp16; the recorded losses are the ones `quarry eval` gives for the run, the base and
#     the written packages (fp16 and an explicit bf16 export, which warns and names the fix);
#  2. a longer run at a higher learning rate: both dtypes keep it;
#  3. a weight fp16 cannot hold: auto falls back to bf16 and says why, with the counts;
#  4. a full fine-tune is measured the same way; --format peft states 100% by construction;
#  5. preflight shows the retained fraction; bad flags and a missing --check-data are refused; a
#     run whose check data is gone exports bf16 with a warning.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}; PY=${QUARRY_PYTHON:?}
W=$(mktemp -d /tmp/quarry-exportprec.XXXXXX); trap 'rm -rf "$W"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=PASSIVE
D=$SRC/examples/data
fail=0
bad() { echo "FAIL: $*"; fail=1; }
# j FILE EXPR: a value of a JSON file (python expression over d).
j() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
# close A B TOL: |A − B| ≤ TOL·max(1, |B|).
close() { "$PY" -c "import sys; a,b,t=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b)<=t*max(1,abs(b)) else 1)" "$@"; }
evalloss() { "$Q" eval --model "$1" --data "$W/check.jsonl" --max-seq-len 128 --json 2>/dev/null |
             "$PY" -c "import json,sys; print(json.load(sys.stdin)['loss'])"; }

head -4 "$D/company_qa_validation.jsonl" > "$W/check.jsonl"
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/base" \
     --seed 7 --dtype bf16 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
train() {   # train OUT LR STEPS METHOD [BASE]
  "$Q" train --model "${5:-$W/base}" --data "$D/company_qa_train.jsonl" --validation "$W/check.jsonl" --out "$1" \
       --method "$4" $([ "$4" = lora ] && echo --lora-r 8 --lora-alpha 16) --max-steps "$3" --batch-size 2 --max-seq-len 128 --lr "$2" \
       --device cpu --quiet >/dev/null 2>&1 || bad "train $1"
}

# 1. A low learning rate: bf16 loses, fp16 keeps.
train "$W/low" 3e-5 2 lora
"$Q" export "$W/low" --out "$W/p16" --skip-leakcheck >"$W/out" 2>"$W/err" || { bad "export low"; cat "$W/err"; }
R="$W/p16/quarry-export.json"
[ "$(j "$R" "d['dtype']")" = float16 ] || bad "auto did not write float16: $(j "$R" "d['dtype']")"
[ "$(j "$W/p16/config.json" "d['torch_dtype']")" = float16 ] || bad "config.json torch_dtype is not float16"
[ "$(j "$R" "d['retention']['dtype_chosen_by']")" = auto ] || bad "the dtype was not chosen by auto"
[ "$(j "$R" "d['retention']['check_data']['kind']")" = validation ] || bad "the run's validation file was not used"
r16=$(j "$R" "d['retention']['dtypes']['float16']['retained']")
rbf=$(j "$R" "d['retention']['dtypes']['bfloat16']['retained']")
"$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.9 and float(sys.argv[2]) < 0.8 else 1)" "$r16" "$rbf" ||
  bad "low lr: fp16 retains $r16, bf16 $rbf (want ≥ 0.9 and < 0.8)"
grep -q "float16   loss .* retains .*<- chosen (--dtype auto)" "$W/out" || bad "no table line for the chosen fp16"
grep -q "fp16 range: 0 of 900352 weights overflow" "$W/out" || bad "no fp16 range counts"
# The losses are the run's, the base's and the written package's, as quarry eval gives them.
close "$(j "$R" "d['retention']['loss_run']")" "$(evalloss "$W/low")" 1e-6 || bad "loss_run differs from quarry eval of the run"
close "$(j "$R" "d['retention']['loss_base']")" "$(evalloss "$W/base")" 1e-6 || bad "loss_base differs from quarry eval of the base"
close "$(j "$R" "d['retention']['dtypes']['float16']['loss']")" "$(evalloss "$W/p16")" 1e-6 ||
  bad "the fp16 loss differs from quarry eval of the written fp16 package"
# An explicit bf16 export: measured alone, the warning names the fix; its loss is the one above.
"$Q" export "$W/low" --out "$W/pbf" --dtype bf16 --skip-leakcheck >"$W/out" 2>"$W/err" || bad "export --dtype bf16"
grep -q "warning: the bfloat16 package retains .* (under 90%)" "$W/err" || { bad "no retention warning"; cat "$W/err"; }
grep -q -- "--dtype auto" "$W/err" || bad "the warning does not name --dtype auto"
close "$(j "$W/pbf/quarry-export.json" "d['retention']['retained']")" "$rbf" 1e-9 || bad "bf16 retained differs between exports"
close "$(evalloss "$W/pbf")" "$(j "$R" "d['retention']['dtypes']['bfloat16']['loss']")" 1e-6 ||
  bad "the bf16 loss differs from quarry eval of the written bf16 package"
# preflight shows it.
"$Q" preflight "$W/p16" >"$W/out" 2>&1 || bad "preflight p16"
grep -q "retention      the float16 package retains .*bfloat16: " "$W/out" || { bad "preflight shows no retention"; cat "$W/out"; }
"$Q" preflight --json "$W/p16" | "$PY" -c "import json,sys; assert json.load(sys.stdin)['retention']['dtype']=='float16'" ||
  bad "preflight --json has no retention"

# 2. A higher learning rate, longer: both keep it (--check-data and --check-records).
train "$W/high" 5e-3 20 lora
"$Q" export "$W/high" --out "$W/ph" --skip-leakcheck --check-data "$W/check.jsonl" --check-records 3 >"$W/out" 2>"$W/err" ||
  bad "export high"
R="$W/ph/quarry-export.json"
"$PY" -c "import json,sys; r=json.load(open(sys.argv[1]))['retention']; assert r['check_data']=={'kind':'check-data','records':3,'file_records':4,'trained_tokens':r['check_data']['trained_tokens']}, r['check_data']; assert all(v['retained']>=0.9 for v in r['dtypes'].values()), r" "$R" ||
  bad "high lr: not both dtypes ≥ 90%, or the check data is not the 3 of 4 records asked"
grep -q "warning" "$W/err" && bad "a warning where both dtypes keep the run"

# 3. A base weight fp16 cannot hold: auto takes bf16 and says why.
"$PY" - "$W/base" "$W/big" <<'PY' || bad "making the big base"
import json, shutil, struct, sys
src, dst = sys.argv[1:]
shutil.copytree(src, dst)
with open(dst + "/model.safetensors", "r+b") as f:   # one bf16 element patched in place
    n = struct.unpack("<Q", f.read(8))[0]
    t = json.loads(f.read(n))["model.layers.0.mlp.down_proj.weight"]
    assert t["dtype"] == "BF16"
    f.seek(8 + n + t["data_offsets"][0])
    f.write(struct.pack("<H", 0x4789))               # 70144 > 65504, fp16's largest
PY
train "$W/bigrun" 3e-5 2 lora "$W/big"
"$Q" export "$W/bigrun" --out "$W/pbig" --skip-leakcheck >"$W/out" 2>"$W/err" || { bad "export big"; cat "$W/err"; }
[ "$(j "$W/pbig/quarry-export.json" "d['dtype']")" = bfloat16 ] || bad "auto wrote fp16 over an fp16 overflow"
grep -q "dtype       bfloat16 (--dtype auto: 1 weights overflow fp16" "$W/out" || { bad "auto does not say why"; cat "$W/out"; }
[ "$(j "$W/pbig/quarry-export.json" "d['retention']['fp16_range']['overflow']")" = 1 ] || bad "overflow count"

# 4. A full fine-tune: the same measure. PEFT: by construction.
train "$W/full" 1e-4 2 full
"$Q" export "$W/full" --out "$W/pfull" --skip-leakcheck >"$W/out" 2>"$W/err" || { bad "export full"; cat "$W/err"; }
"$PY" -c "import json,sys; r=json.load(open(sys.argv[1]))['retention']; assert r['measured'] and set(r['dtypes'])=={'float16','bfloat16'} and r['loss_run']<r['loss_base'], r" \
  "$W/pfull/quarry-export.json" || bad "full fine-tune not measured"
"$Q" export "$W/low" --out "$W/ppeft" --format peft --skip-leakcheck >"$W/out" 2>"$W/err" || bad "export peft"
grep -q "retention   100% by construction" "$W/out" || bad "peft does not state 100% by construction"
[ "$(j "$W/ppeft/quarry-export.json" "d['retention']['retained']")" = 1 ] || bad "peft retained is not 1"

# 5. Bad input.
"$Q" export "$W/low" --out "$W/x1" --dtype fp8 >/dev/null 2>"$W/err"; [ $? -eq 2 ] || bad "--dtype fp8 not a usage error"
grep -q "auto, bf16, fp16 or fp32" "$W/err" || bad "--dtype message lacks auto"
"$Q" export "$W/low" --out "$W/x2" --check-records -1 >/dev/null 2>&1; [ $? -eq 2 ] || bad "--check-records -1 accepted"
"$Q" export "$W/low" --out "$W/x3" --skip-leakcheck --check-data "$W/nope.jsonl" >/dev/null 2>"$W/err" && bad "missing --check-data accepted"
grep -q "error: --check-data $W/nope.jsonl" "$W/err" || { bad "missing --check-data not named"; cat "$W/err"; }
[ -e "$W/x3" ] && bad "a refused export left $W/x3"
# The run's validation file gone: a warning, auto keeps the base's bf16, the record says so.
mv "$W/check.jsonl" "$W/check.moved"
"$Q" export "$W/low" --out "$W/pgone" --skip-leakcheck >"$W/out" 2>"$W/err" || bad "export without its check data failed"
grep -q "warning: cannot measure what the package keeps" "$W/err" || bad "no warning when the check data is gone"
[ "$(j "$W/pgone/quarry-export.json" "(d['dtype'], d['retention']['measured'])")" = "('bfloat16', False)" ] ||
  bad "without check data: not bf16 with retention.measured false"
[ $fail -eq 0 ] && echo "PASS export precision"
exit $fail
