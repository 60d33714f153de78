#!/usr/bin/env bash
# GPU energy in run.json and `quarry cost`, without a GPU: CPU runs metered through a fake
# libnvidia-ml.so.1 (tests/trainer/fake_nvml.c, found by the dynamic loader as the driver's is)
# that QUARRY_TEST_PCI_BUS_ID points at. One rank, two ranks (summed), and a GPU NVML does not
# know (the --gpu-watts fallback, said once).
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}; B=${QUARRY_BUILD_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
[ -f "$B/fake-nvml/libnvidia-ml.so.1" ] || { echo "FAIL: $B/fake-nvml/libnvidia-ml.so.1 not built"; exit 1; }
W=$(mktemp -d /tmp/quarry-energy.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 3 \
  --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
train() {  # train OUT BUS [extra...]
  local out=$1 bus=$2; shift 2
  LD_LIBRARY_PATH="$B/fake-nvml" QUARRY_TEST_PCI_BUS_ID=$bus "$Q" train --model "$W/model" \
    --data "$SRC/examples/data/company_qa_train.jsonl" --out "$out" --batch-size 4 --max-seq-len 64 --max-steps 2 \
    --device cpu --quiet "$@" >/dev/null 2>"$out.log" || { echo "FAIL: train $out"; cat "$out.log"; fail=1; }
}
check() {  # check RUN JOULES|none ENERGY_FROM [cost flags...]: run.json's result and quarry cost --json
  local run=$1 joules=$2 from=$3; shift 3
  "$Q" cost --run "$run" --power-price 0.25 --json "$@" >"$run.cost.json" 2>"$run.cost.log" ||
    { echo "FAIL: cost $run"; cat "$run.cost.log"; fail=1; return; }
  "$PY" - "$run" "$joules" "$from" <<'PYEOF' || fail=1
import json, sys
run, joules, energy_from = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(run + "/run.json"))["result"]
c = json.load(open(run + ".cost.json"))["on_prem"]
bad = []
if joules == "none":
    if "energy_joules" in r or "energy_source" in r:
        bad.append(f"run.json result has energy it did not measure: {r.get('energy_joules')} {r.get('energy_source')}")
else:
    if r.get("energy_joules") != float(joules) or r.get("energy_source") != "nvml":
        bad.append(f"run.json energy_joules {r.get('energy_joules')} ({r.get('energy_source')}), want {joules} (nvml)")
    if c["energy_kwh"] != float(joules) / 3.6e6 or abs(c["energy_usd"] - 0.25 * float(joules) / 3.6e6) > 1e-15:
        bad.append(f"cost energy_kwh {c['energy_kwh']} usd {c['energy_usd']}, want {float(joules) / 3.6e6} kWh at 0.25/kWh")
if c["energy_from"] != energy_from:
    bad.append(f"cost energy_from {c['energy_from']!r}, want {energy_from!r}")
for b in bad:
    print("FAIL energy", run + ":", b)
sys.exit(1 if bad else 0)
PYEOF
}

# GPU 1 of the fake: 2 reads (start, end) 2 × 2500.5 J apart.
train "$W/one" 0000:01:00.0
check "$W/one" 5001 measured
grep -q "GPU energy not measured" "$W/one.log" && { echo "FAIL: a measured run says it was not"; fail=1; }

# Two ranks on GPUs 1 and 2: 5001 + 7501.5 J.
train "$W/two" 0000:01:00.0,0000:02:00.0 --ranks 2
check "$W/two" 12502.5 measured

# A GPU NVML does not know: no energy recorded, a note once, and cost uses --gpu-watts.
train "$W/unknown" 0000:42:00.0
check "$W/unknown" none --gpu-watts --gpu-watts 300
n=$(grep -c "GPU energy not measured (GPU 0000:42:00.0: Not Found); \`quarry cost\` will use --gpu-watts" "$W/unknown.log")
[ "$n" = 1 ] || { echo "FAIL: the fallback note appears $n times, want once"; cat "$W/unknown.log"; fail=1; }

# A resumed run: the counter saw only the last session, so run.json records no energy (and says so).
f=$fail; QUARRY_TEST_FAULT=kill-after-step:2 train "$W/resumed" 0000:01:00.0 --save-every 1 >/dev/null; fail=$f   # killed: exit 137
LD_LIBRARY_PATH="$B/fake-nvml" QUARRY_TEST_PCI_BUS_ID=0000:01:00.0 "$Q" train --resume "$W/resumed" >/dev/null \
  2>"$W/resumed.resume.log" || { echo "FAIL: resume"; cat "$W/resumed.resume.log"; fail=1; }
check "$W/resumed" none --gpu-watts --gpu-watts 300
grep -q "run.json records no energy for a resumed run" "$W/resumed.resume.log" || { echo "FAIL: no note on the resumed run"; fail=1; }

[ $fail -eq 0 ] && echo "test_train_energy: all checks passed"
exit $fail
