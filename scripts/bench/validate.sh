#!/usr/bin/env bash
# Benchmark: `quarry validate` (no tokenizer) against `jq -c . >/dev/null` on the same ~1 GB of
# Bedrock records, one file per format (prompt-completion, messages, converse, continued
# pre-training: 4 × 256 MB, all valid, with multi-turn records, system prompts, escapes,
# non-ASCII text and the odd e-mail address for the scanner). Prints MB/s for each and the ratio.
# Usage: scripts/bench/validate.sh [BUILD_DIR]   (needs python3, hyperfine, jq; one core each)
set -euo pipefail
BUILD=${1:-build}
Q=$BUILD/quarry
DIR=$BUILD/bench-validate
[ -x "$Q" ] || { echo "error: $Q not built (cmake --build $BUILD --target quarry)"; exit 2; }
for t in python3 hyperfine jq; do command -v $t >/dev/null || { echo "error: $t not found"; exit 2; }; done
mkdir -p "$DIR"
FILES=("$DIR/pc.jsonl" "$DIR/messages.jsonl" "$DIR/converse.jsonl" "$DIR/cpt.jsonl")
if [ ! -s "$DIR/cpt.jsonl" ]; then
  echo "generating 4 x 256 MB under $DIR ..."
  python3 - "$DIR" <<'PY'
import json, random, sys
d = sys.argv[1]
rng = random.Random(1234)
words = ("the of and to in is that for it as with was on be by at this have from or one had not but what all were "
         "when we there can an your which their said if do will each about how up out them then she many some so "
         "revenue quarter filing model training data customer order shipping invoice report summary question answer "
         "café naïve résumé 東京 数据 модель данные 😀 ✓ “quoted” tab\there new\nline \"escaped\" back\\slash").split(" ")
def text(n):
    out = " ".join(rng.choice(words) for _ in range(n))
    if rng.random() < 0.01: out += " contact jane.doe%d@example.com" % rng.randrange(1000)
    return out
def turns(k):
    return [("user" if i % 2 == 0 else "assistant", text(rng.randrange(5, 300))) for i in range(2 * k)]
gen = {
  "pc": lambda: {"prompt": text(rng.randrange(10, 600)), "completion": text(rng.randrange(5, 300))},
  "messages": lambda: dict(([("system", text(rng.randrange(5, 40)))] if rng.random() < 0.5 else []) +
      [("messages", [{"role": r, "content": t} for r, t in turns(rng.choice((1, 1, 2, 3)))])]),
  "converse": lambda: dict([("schemaVersion", "bedrock-conversation-2024")] +
      ([("system", [{"text": text(rng.randrange(5, 40))}])] if rng.random() < 0.5 else []) +
      [("messages", [{"role": r, "content": [{"text": t}]} for r, t in turns(rng.choice((1, 1, 2, 3)))])]),
  "cpt": lambda: {"input": text(rng.randrange(50, 1500))},
}
for name, g in gen.items():
    with open(f"{d}/{name}.jsonl", "w", encoding="utf-8") as f:
        n = 0
        while n < 256 << 20:
            line = json.dumps(g(), ensure_ascii=rng.random() < 0.3) + "\n"
            f.write(line)
            n += len(line.encode("utf-8"))
PY
fi
BYTES=$(cat "${FILES[@]}" | wc -c)
MB=$(python3 -c "print($BYTES/1e6)")
echo "input: 4 files, $BYTES bytes"
"$Q" validate "${FILES[@]}" --max-errors 3 | grep -E "valid|records:" || true
hyperfine --warmup 1 --runs ${RUNS:-3} --export-json "$DIR/hyperfine.json" \
  -n quarry "taskset -c 0 $Q validate ${FILES[*]} --max-errors 3" \
  -n jq "taskset -c 0 jq -c . ${FILES[*]} >/dev/null"
python3 - "$DIR/hyperfine.json" "$MB" <<'PY'
import json, sys
res = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
mb = float(sys.argv[2])
q, j = res["quarry"], res["jq"]
# Wall time is what a user waits; CPU time (user + system) is the figure that survives a busy
# machine. Both are printed; on an idle machine they agree.
for name, r in (("quarry validate", q), ("jq -c .", j)):
    cpu = r["user"] + r["system"]
    print(f"{name:16s} {mb / r['mean']:8.1f} MB/s wall ({r['mean']:.2f} s)   {mb / cpu:8.1f} MB/s CPU ({cpu:.2f} s)")
print(f"ratio (wall): quarry is {j['mean'] / q['mean']:.1f}x jq")
print(f"ratio (CPU):  quarry is {(j['user'] + j['system']) / (q['user'] + q['system']):.1f}x jq")
PY
