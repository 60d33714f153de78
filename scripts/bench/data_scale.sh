#!/usr/bin/env bash
# The data path at corpus scale: wall time and peak RSS of `quarry train --max-steps 1` (read,
# check, render, tokenize, pack, one step) on the tiny demo model over a generated
# continued-pre-training corpus, first run (empty token cache) and cached run, at 1 and 2
# tokenizing threads, side by side with a baseline binary (e.g. a build of main before the
# parallel tokenizer) as ratios new/baseline. The baseline ignores QUARRY_DATA_THREADS: its rows
# are one thread whatever the column says. The one training step runs on one OpenMP thread
# (OMP_NUM_THREADS=1) in every row, so that only the tokenizing threads vary.
# usage: scripts/bench/data_scale.sh [--size 500M] [--seed 1] [--threads "1 2"] [--baseline PATH]
#                                    [--build DIR] [--seq-len 512]
# The corpus (records {"input": ...} of ~1 KB, fixed by --seed) is kept under BUILD/bench-data-scale.
# "Cold" is an empty token cache; the page cache is dropped too where /proc/sys/vm/drop_caches is
# writable (root), which the report says.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SIZE=500M SEED=1 THREADS="1 2" BASELINE="" BUILD=$ROOT/build SEQ=512
while [ $# -gt 0 ]; do
  case $1 in
    --size) SIZE=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --baseline) BASELINE=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --seq-len) SEQ=$2; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "data_scale.sh: error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
Q=$BUILD/quarry
[ -x "$Q" ] || { echo "data_scale.sh: error: $Q not built (cmake --build $BUILD --target quarry)" >&2; exit 2; }
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || { echo "data_scale.sh: error: --baseline $BASELINE is not an executable" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "data_scale.sh: error: /usr/bin/time missing (scripts/setup.sh installs it)" >&2; exit 2; }
BYTES=$(python3 -c "import sys; s=sys.argv[1].upper(); m={'K':1e3,'M':1e6,'G':1e9}; print(int(float(s[:-1])*m[s[-1]]) if s[-1] in m else int(s))" "$SIZE")
DIR=$BUILD/bench-data-scale
CORPUS=$DIR/cpt-$SIZE-seed$SEED.jsonl
mkdir -p "$DIR"
if [ ! -s "$CORPUS" ]; then
  echo "generating $CORPUS ($BYTES bytes, seed $SEED) ..."
  python3 - "$CORPUS.tmp" "$BYTES" "$SEED" <<'PY'
import json, random, sys
out, total, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
words = ("the of and to in is that for it as with was on be by at this have from or one had not but what all were "
         "when we there can an your which their said if do will each about how up out them then many some so "
         "revenue quarter filing model training data customer order shipping invoice report summary manual "
         "procedure maintenance valve pressure torque inspection warranty clause section appendix figure table "
         "café naïve résumé 東京 数据 модель данные 2024 3.5 v1.2 (see note) e.g. i.e.").split(" ")
# Sentences drawn once, documents drawn from them: a manual-like corpus, generated fast.
sentences = []
for _ in range(20000):
    s = " ".join(rng.choice(words) for _ in range(rng.randrange(6, 28)))
    sentences.append(s[0].upper() + s[1:] + rng.choice([".", ".", ".", "?", ":"]))
n = 0
with open(out, "w", encoding="utf-8") as f:
    while n < total:
        doc = " ".join(rng.choice(sentences) for _ in range(rng.randrange(2, 14)))
        if rng.random() < 0.3:
            doc += "\n\n" + " ".join(rng.choice(sentences) for _ in range(rng.randrange(2, 10)))
        line = json.dumps({"input": doc}, ensure_ascii=rng.random() < 0.3) + "\n"
        f.write(line)
        n += len(line.encode("utf-8"))
PY
  mv "$CORPUS.tmp" "$CORPUS"
fi
MODEL=$DIR/model
[ -f "$MODEL/model.safetensors" ] || "$Q" init --config "$ROOT/examples/tiny-model/config.json" \
  --tokenizer "$ROOT/examples/tiny-model" --out "$MODEL" --seed 3 --dtype fp32 >/dev/null

PAGE=kept
[ -w /proc/sys/vm/drop_caches ] && (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null && PAGE=dropped
drop_page_cache() {
  sync
  [ "$PAGE" = kept ] || echo 3 >/proc/sys/vm/drop_caches
}

# run BIN THREADS CACHE_DIR → "wall_s rss_mb cpu_s" (cpu: user + system, the figure a busy
# machine distorts least)
run() {
  local bin=$1 threads=$2 cache=$3 out=$DIR/run log=$DIR/run.log
  rm -rf "$out"
  if ! QUARRY_DATA_THREADS=$threads OMP_NUM_THREADS=1 QUARRY_CACHE_DIR=$cache \
       /usr/bin/time -v "$bin" train --model "$MODEL" --data "$CORPUS" --out "$out" --max-seq-len "$SEQ" \
       --batch-size 1 --max-steps 1 --device cpu --quiet >"$log" 2>&1; then
    echo "data_scale.sh: error: $bin train failed; its log:" >&2; tail -20 "$log" >&2; exit 1
  fi
  python3 - "$log" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
w = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t).group(1).split(":")
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(w)))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
cpu = sum(float(re.search(rf"{k} time \(seconds\): (\S+)", t).group(1)) for k in ("User", "System"))
print(f"{secs:.2f} {rss:.0f} {cpu:.2f}")
PY
}

# measure BIN THREADS → "cold_wall cold_rss cold_cpu warm_wall warm_rss warm_cpu"
measure() {
  local cache=$DIR/cache
  rm -rf "$cache"
  drop_page_cache
  local cold warm
  cold=$(run "$1" "$2" "$cache")
  warm=$(run "$1" "$2" "$cache")
  rm -rf "$cache"
  echo "$cold $warm"
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1 /proc/loadavg); $(date -u +%F)"
echo "corpus: $CORPUS ($(du -m "$CORPUS" | cut -f1) MB, $(wc -l <"$CORPUS") records, seed $SEED); tiny model, --max-seq-len $SEQ"
base=""
[ -n "$BASELINE" ] && base=$(measure "$BASELINE" 1)
echo "page cache before each first run: $PAGE"
printf "%-7s %-6s %8s %8s %7s | %8s %8s %7s | %6s %6s %6s\n" threads run "wall s" "CPU s" "RSS MB" "base s" "CPU s" "MB" \
  "wall x" "CPU x" "RSS x"
for t in $THREADS; do
  read -r cw cr cc ww wr wc <<<"$(measure "$Q" "$t")"
  read -r bcw bcr bcc bww bwr bwc <<<"${base:-- - - - - -}"
  for row in "first $cw $cc $cr $bcw $bcc $bcr" "cached $ww $wc $wr $bww $bwc $bwr"; do
    read -r name w c r bw bc br <<<"$row"
    python3 - "$t" "$name" "$w" "$c" "$r" "$bw" "$bc" "$br" <<'PY'
import sys
t, name, w, c, r, bw, bc, br = sys.argv[1:]
ratio = lambda a, b: f"{float(a) / float(b):6.2f}" if b != "-" else "     -"
print(f"{t:<7s} {name:<6s} {float(w):8.2f} {float(c):8.2f} {float(r):7.0f} | {bw:>8s} {bc:>8s} {br:>7s} | "
      f"{ratio(w, bw)} {ratio(c, bc)} {ratio(r, br)}")
PY
  done
done
