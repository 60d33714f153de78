#!/usr/bin/env bash
# quarry preflight reads config.json with the reader `quarry train` uses: a config that cannot
# describe the model FAILs with the reason; one that names a model quarry does not implement is
# only a warning (the tensors go unchecked), and a valid one passes.
set -u
. "$(dirname "$0")/preflight_common.sh"

# case NAME WANT(fail|pass) STATUS-OF-config NEEDLE PYTHON-EDIT-OF-c
case_() {
  local name=$1 rc_want=$2 st_want=$3 needle=$4 edit=$5 d=$T/$1
  cp -r "$T/good" "$d"
  "$PY" -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); $edit; json.dump(c, open(p, 'w'))" "$d/config.json"
  local out rc
  out=$("$Q" preflight "$d" --json 2>&1); rc=$?
  local got
  got=$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); c=[x for x in d["checks"] if x["name"]=="config"][0]; print(c["status"] + " " + c["reason"])' "$out" 2>&1)
  if [ "$rc" != "$rc_want" ] || [ "${got%% *}" != "$st_want" ] || ! grep -qF -- "$needle" <<<"$got"; then
    echo "FAIL $name: exit $rc (want $rc_want), config check: $got (want $st_want naming '$needle')"; fail=1
  fi
}
case_ missing-hidden 1 fail '"hidden_size" is missing' 'c.pop("hidden_size")'
case_ string-size    1 fail '"hidden_size" must be an integer, not a string' 'c["hidden_size"] = str(c["hidden_size"])'
case_ huge           1 fail '"intermediate_size" is 1e+12; too large' 'c["intermediate_size"] = 1e12'
case_ heads-divide   1 fail 'is not a multiple of num_attention_heads' 'c["num_attention_heads"] = 3; c["num_key_value_heads"] = 1; c.pop("head_dim", None)'
case_ kv-divide      1 fail 'must be positive and divide num_attention_heads' 'c["num_key_value_heads"] = 3'
case_ negative       1 fail 'it must be positive' 'c["num_hidden_layers"] = -2'
case_ float-size     1 fail '"vocab_size" must be an integer' 'c["vocab_size"] = 100.5'
case_ good           0 pass 'describes the model' 'pass'
# A valid config of a model quarry does not build: config passes, the tensors check warns.
case_ gelu           0 pass 'config.json parses' 'c["hidden_act"] = "gelu"'
out=$("$Q" preflight "$T/gelu")
grep -q '^WARN  tensors .*hidden_act "gelu" is not supported' <<<"$out" || { echo "FAIL gelu: no tensors warning:"; echo "$out"; fail=1; }
# The text report: one FAIL line with the reason, and the hint.
out=$("$Q" preflight "$T/string-size")
grep -q '^FAIL  config         config.json cannot describe the model: "hidden_size" must be an integer' <<<"$out" ||
  { echo "FAIL text report:"; echo "$out"; fail=1; }
[ $fail -eq 0 ] && echo "test_preflight_config: all cases passed"
exit $fail
