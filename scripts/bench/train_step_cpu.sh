#!/usr/bin/env bash
# Benchmark: one training step (forward + backward + grad-norm clipping + AdamW) of quarry's CPU
# backend beside PyTorch CPU on the same checkpoint, config, batch and thread count, in one run.
# quarry is timed inside the program (dev/bench_train_step.c, linked against libquarry.a), PyTorch
# by scripts/bench/train_step_torch.py (transformers, sdpa attention, PEFT for LoRA), each on the
# weights `quarry init --dtype fp32` writes. Runs alternate quarry / torch so that machine load
# hits both alike. Prints, per config × method × threads, the median wall ms/step and the median
# process CPU ms/step (all threads; less sensitive to other load on a shared machine) after the
# warm-up, and the ratios quarry / torch (goal ≤ 1.0).
#
# Usage: scripts/bench/train_step_cpu.sh [BUILD_DIR]
# Environment (defaults in brackets):
#   QUARRY_TORCH_PYTHON  python with torch, transformers, peft [/work/wt/llama/.venv-ref/bin/python]
#   BENCH_CONFIGS   "name=config.json ..." [tiny=examples/tiny-model/config.json
#                                          small=examples/configs/bench-small.json]
#   BENCH_METHODS   [full lora]     BENCH_THREADS [1 2]     BENCH_BATCH [4]     BENCH_SEQ [512]
#   BENCH_STEPS     timed steps per run [5]     BENCH_WARMUP  untimed steps first [1]
#   BENCH_LORA      "r alpha dropout" [16 32 0.05]
#   BENCH_WAIT_POLICY  OMP_WAIT_POLICY for both sides [unset: OpenMP's default, threads spin at
#                   barriers]. On a machine shared with other work, "passive" keeps a thread from
#                   spinning while the one it waits for is descheduled, which otherwise inflates
#                   multi-threaded figures (quarry's more, as it has more barriers per step).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
PY=${QUARRY_TORCH_PYTHON:-/work/wt/llama/.venv-ref/bin/python}
CONFIGS=${BENCH_CONFIGS:-"tiny=examples/tiny-model/config.json small=examples/configs/bench-small.json"}
METHODS=${BENCH_METHODS:-"full lora"}
THREADS=${BENCH_THREADS:-"1 2"}
BATCH=${BENCH_BATCH:-4}
SEQ=${BENCH_SEQ:-512}
STEPS=${BENCH_STEPS:-5}
WARMUP=${BENCH_WARMUP:-1}
read -r LORA_R LORA_ALPHA LORA_DROPOUT <<<"${BENCH_LORA:-16 32 0.05}"
if [ -n "${BENCH_WAIT_POLICY:-}" ]; then export OMP_WAIT_POLICY=$BENCH_WAIT_POLICY; fi

[ -x "$PY" ] || { echo "error: no python at $PY; set QUARRY_TORCH_PYTHON to a python with torch, transformers and peft" >&2; exit 2; }
if ! "$PY" -c "import torch, transformers, peft" 2>/dev/null; then
  echo "error: $PY cannot import torch, transformers and peft; set QUARRY_TORCH_PYTHON to a python that can" \
       "(pip install -r scripts/requirements-reference.txt)" >&2
  exit 2
fi

cmake -S . -B "$BUILD" -DQUARRY_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target quarry >/dev/null
OUT=$BUILD/bench-train-step
mkdir -p "$OUT"
# The driver links the library like the quarry executable does (same flags as a Release build).
cc -O3 -march=x86-64-v2 -DNDEBUG -std=c11 -Wall -Wextra -Wshadow -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
   -fopenmp -I. -I"$BUILD/generated" dev/bench_train_step.c -o "$OUT/bench_train_step" "$BUILD/libquarry.a" \
   $(pkg-config --libs libcjson oniguruma libutf8proc libcurl) -lcrypto -lm

field() { sed -n "s/.*RESULT.* $1=\([^ ]*\).*/\1/p" "$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "torch: $("$PY" -c 'import torch, transformers, peft; print(torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)')"
echo "batch $BATCH x seq $SEQ, fp32, AdamW + clip 1.0; LoRA r=$LORA_R alpha=$LORA_ALPHA dropout=$LORA_DROPOUT all-linear;" \
     "medians of $STEPS steps after $WARMUP warm-up; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-default}"
ROWS=()
for spec in $CONFIGS; do
  name=${spec%%=*}
  config=${spec#*=}
  dir=$OUT/model-$name
  if [ ! -s "$dir/model.safetensors" ] || [ "$config" -nt "$dir/config.json" ]; then
    rm -rf "$dir"
    "$BUILD/quarry" init --config "$config" --out "$dir" --dtype fp32 --seed 0 >/dev/null 2>&1 || { echo "error: quarry init $config failed" >&2; exit 1; }
  fi
  for method in $METHODS; do
    for n in $THREADS; do
      common=("$dir" "$method" --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" --warmup "$WARMUP" --threads "$n"
              --lora-r "$LORA_R" --lora-alpha "$LORA_ALPHA" --lora-dropout "$LORA_DROPOUT")
      ql=$OUT/$name-$method-t$n.quarry.log
      tl=$OUT/$name-$method-t$n.torch.log
      OMP_NUM_THREADS=$n "$OUT/bench_train_step" "${common[@]}" >"$ql" 2>&1 ||
        { echo "error: quarry failed ($name $method $n threads):" >&2; tail -5 "$ql" >&2; exit 1; }
      OMP_NUM_THREADS=$n MKL_NUM_THREADS=$n "$PY" scripts/bench/train_step_torch.py "${common[@]}" >"$tl" 2>&1 ||
        { echo "error: torch failed ($name $method $n threads):" >&2; tail -5 "$tl" >&2; exit 1; }
      qw=$(field wall_ms "$ql"); tw=$(field wall_ms "$tl"); qc=$(field cpu_ms "$ql"); tc=$(field cpu_ms "$tl")
      row="| $name | $method | $n | $qw | $tw | $(ratio "$qw" "$tw") | $qc | $tc | $(ratio "$qc" "$tc") |"
      echo "$row"
      ROWS+=("$row")
    done
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| config | method | threads | quarry ms/step | torch ms/step | ratio | quarry CPU ms/step | torch CPU ms/step | CPU ratio |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "(per-step logs with the forward / backward / optimizer split: $OUT/*.log)"
