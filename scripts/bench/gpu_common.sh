# scripts/bench/gpu_common.sh — sourced by the GPU training benchmarks (scripts/gpu_train_check.sh,
# scripts/bench/gpu_8b_lora.sh), with $W a scratch folder.

# peak_mem CMD...: runs CMD while sampling the GPU's used memory (nvidia-smi, every 100 ms);
# prints the peak in GiB ("-" without nvidia-smi) and returns CMD's status.
peak_mem() {
    if ! command -v nvidia-smi >/dev/null; then "$@"; local rc=$?; printf -- '-'; return $rc; fi
    local log=$W/mem.$RANDOM
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$log" &
    local p=$!
    "$@"; local rc=$?
    kill $p 2>/dev/null; wait $p 2>/dev/null
    awk 'BEGIN{m=0}{if($1>m)m=$1}END{printf "%.1f", m/1024}' "$log"
    return $rc
}

# bench_data FILE N: N long continued-pre-training records from the demo's documents.
bench_data() {
    python3 - "$1" "$2" <<'PYEOF'
import json, sys
docs = [json.loads(l)["input"] for l in open("examples/data/company_docs.jsonl")]
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"input": " ".join(docs[i % 7:] + docs[:i % 7])}) + "\n")
PYEOF
}

# median_metrics CSV: "tok_s mfu" medians over the steps after the first two; fails without rows.
median_metrics() {
    python3 -c "import csv,statistics as s,sys;r=list(csv.DictReader(open(sys.argv[1])))[2:]
assert r
print('%.0f %.3f'%(s.median(float(x['tokens_per_second']) for x in r),s.median(float(x['mfu']) for x in r)))" "$1" 2>/dev/null
}

gpu_name() { nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo "no GPU"; }
