#!/usr/bin/env bash
# quarry validate --model: per-record token statistics (min, median, p95, max, total, over
# --max-seq-len, x epochs) equal what Hugging Face `tokenizers` gives for the same texts, on the
# real AWS sample files with the real Phi-3 tokenizer.json; the per-record token limit of
# --base-model is enforced once tokens are known.
set -u
Q=${QUARRY_BIN:?}
PY=${QUARRY_PYTHON:-}
TD=${QUARRY_TESTDATA:-}
[ -n "$TD" ] && [ -d "$TD/bedrock" ] && [ -f "$TD/tokenizers/phi3/tokenizer.json" ] || { echo "SKIP: ../shared/testdata not found"; exit 77; }
[ -x "$PY" ] && "$PY" -c "import tokenizers" 2>/dev/null || { echo "SKIP: .venv with tokenizers not found"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
TOK=$TD/tokenizers/phi3
for f in "$TD"/bedrock/*.jsonl; do
  "$Q" validate "$f" --model "$TOK" --max-seq-len 1000 --epochs 3 --json > "$T/out.json" 2>/dev/null
  r=$?
  [ $r = 0 ] || { echo "FAIL $(basename "$f"): exit $r"; fail=1; continue; }
  "$PY" - "$T/out.json" "$f" "$TOK/tokenizer.json" <<'PY' || fail=1
import json, math, sys
from tokenizers import Tokenizer
doc = json.load(open(sys.argv[1]))["files"][0]
tok = Tokenizer.from_file(sys.argv[3])
def n(t): return len(tok.encode(t, add_special_tokens=False).ids)
counts = []
for line in open(sys.argv[2], encoding="utf-8"):
    d = json.loads(line)
    texts = []
    if "prompt" in d: texts = [d["prompt"], d["completion"]]
    elif "input" in d: texts = [d["input"]]
    else:
        s = d.get("system")
        if s is not None: texts.append(s if isinstance(s, str) else "".join(b["text"] for b in s))
        for m in d["messages"]:
            c = m["content"]
            texts.append(c if isinstance(c, str) else "".join(b["text"] for b in c))
    counts.append(sum(n(t) for t in texts))
counts.sort()
k = len(counts)
want = {"min": counts[0], "median": counts[(k - 1) // 2], "p95": counts[math.ceil(0.95 * k) - 1], "max": counts[-1],
        "total": sum(counts), "over_max_seq_len": sum(c > 1000 for c in counts), "training_tokens": 3 * sum(counts)}
got = {key: doc["tokens"][key] for key in want}
if got != want:
    print(f"FAIL {sys.argv[2]}:\n  quarry {got}\n  hf     {want}")
    sys.exit(1)
print(f"tokens match HF tokenizers: {sys.argv[2].rsplit('/', 1)[1]} ({k} records, {sum(counts)} tokens)")
PY
done
# A record over Llama 3.x's 16,000 tokens per record (20,000 x "▁a").
{ printf '{"prompt": "'; for i in $(seq 20000); do printf 'a '; done; printf '", "completion": "b"}\n'; } > "$T/long.jsonl"
out=$("$Q" validate "$T/long.jsonl" --model "$TOK" --base-model meta.llama3-1-8b-instruct-v1:0 2>&1); r=$?
if [ $r != 1 ] || ! grep -q "long.jsonl:1: error: the record has 2000[0-9] tokens, over the 16000 tokens per record Meta Llama 3.1 8B Instruct allows" <<<"$out"; then
  echo "FAIL token limit: exit $r"; echo "$out" | head -3; fail=1; fi
out=$("$Q" validate "$T/long.jsonl" --model "$TOK" 2>&1); r=$?
[ $r = 0 ] || { echo "FAIL token limit without --base-model: exit $r"; fail=1; }
"$Q" validate "$T/long.jsonl" --model "$T/nowhere" >/dev/null 2>&1; r=$?
[ $r = 2 ] || { echo "FAIL missing tokenizer: exit $r, want 2"; fail=1; }
[ $fail = 0 ] && echo "test_validate_tokens: all checks passed"
exit $fail
