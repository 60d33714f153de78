#!/usr/bin/env bash
# quarry preflight on gpt-oss (GptOssForCausalLM): generation_config.json must carry the updated
# EOS ids CMI needs, [200002, 199999, 200012]; the published first list, a single id, a missing
# key or file fail with the fix in the message; the updated list passes (in any order); other
# architectures get no such check.
set -u
. "$(dirname "$0")/preflight_common.sh"
GPT='c["architectures"] = ["GptOssForCausalLM"]; c["model_type"] = "gpt_oss"'

# check NAME STATUS NEEDLE CONFIG-EDIT GENERATION-EDIT: preflight --json's "generation" check has
# STATUS and a reason containing NEEDLE ("none": no such check); a FAIL exits 1.
check() {
  local name=$1 st_want=$2 needle=$3 edit=$4 gedit=$5 d=$T/$1
  cp -r "$T/good" "$d"
  "$PY" -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); $edit; json.dump(c, open(p, 'w'))" "$d/config.json"
  if [ "$gedit" = rm ]; then rm -f "$d/generation_config.json"
  else "$PY" -c "import json,sys; p=sys.argv[1]; g=json.load(open(p)); $gedit; json.dump(g, open(p, 'w'))" \
         "$d/generation_config.json"; fi
  local out rc got
  out=$("$Q" preflight "$d" --json 2>&1); rc=$?
  got=$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); c=[x for x in d["checks"] if x["name"]=="generation"]
print(" | ".join(x["status"] + " " + x["reason"] for x in c) or "none")' "$out" 2>&1)
  if [ "${got%% *}" != "$st_want" ] || ! grep -qF -- "$needle" <<<"$got" || { [ "$st_want" = fail ] && [ "$rc" != 1 ]; }; then
    echo "FAIL $name: exit $rc, generation check: $got (want $st_want naming '$needle')"; fail=1
  fi
}
HINT='set "eos_token_id": [200002, 199999, 200012] in generation_config.json'
check updated   pass 'eos_token_id [200002,199999,200012]' "$GPT" 'g["eos_token_id"] = [200002, 199999, 200012]'
check reordered pass 'eos_token_id [199999,200012,200002]' "$GPT" 'g["eos_token_id"] = [199999, 200012, 200002]'
check outdated  fail "eos_token_id is [200002,199999]; CMI needs gpt-oss's updated EOS ids" "$GPT" 'g["eos_token_id"] = [200002, 199999]'
check outdated-hint fail "$HINT" "$GPT" 'g["eos_token_id"] = 200002'
check no-key    fail 'eos_token_id is absent' "$GPT" 'g.pop("eos_token_id", None)'
check no-file   fail 'generation_config.json is missing; CMI needs it for gpt-oss' "$GPT" rm
check llama     none none 'pass' 'g["eos_token_id"] = 2'
[ $fail -eq 0 ] && echo "test_preflight_gptoss: all cases passed"
exit $fail
