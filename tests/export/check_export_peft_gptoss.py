"""LoRA on gpt-oss's fused experts (and router) exported for PEFT's target_parameters: a short
`quarry train` on tiny gpt-oss with --lora-targets TARGETS, then, under transformers 5.24 + PEFT
0.21.2, scripts/check_export_transformers.py: the merged export (the fused delta folded into
mlp.experts.gate_up_proj / down_proj, gate and up interleaved) gives quarry's logits, and PEFT
loading the `--format peft` adapter (lora_A (r·E, in), lora_B (out, r·E) per fused tensor,
target_parameters in adapter_config.json) onto the base gives the merged export's logits and
quarry's on the run, adapter unmerged (≤ 1e-5, fp32).

usage: check_export_peft_gptoss.py QUARRY_BIN EXPORT_LOGITS TINY_MODEL_DIR TRAIN_JSONL WORKDIR CONFIG TARGETS
The reference Python: $QUARRY_REF_PYTHON, else <source>/.venv-ref/bin/python (torch, transformers 5,
peft: scripts/requirements-reference.txt); SKIP (77) when neither has them.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_common import header, run, skip  # noqa: E402

quarry, tool, tiny, train_data, work, config, targets = sys.argv[1:8]
src = os.environ.get("QUARRY_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
ref = os.environ.get("QUARRY_REF_PYTHON") or os.path.join(src, ".venv-ref", "bin", "python")
probe = "import torch, peft, transformers; assert transformers.__version__.startswith('5.')"
if not os.path.exists(ref) or subprocess.run([ref, "-c", probe], capture_output=True).returncode != 0:
    skip("no Python with torch, peft and transformers 5 (set QUARRY_REF_PYTHON or make .venv-ref)")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
base = os.path.join(work, "base")
run([quarry, "init", "--config", config, "--tokenizer", tiny, "--dtype", "fp32", "--seed", "5", "--out", base])
rd = os.path.join(work, "run")
run([quarry, "train", "--model", base, "--data", train_data, "--max-seq-len", "96", "--max-steps", "3",
     "--batch-size", "4", "--lr", "1e-2", "--device", "cpu", "--lora-targets", targets, "--out", rd])
names = [k for k in header(os.path.join(rd, "final", "adapter_model.safetensors"))[0] if k != "__metadata__"]
cfg = json.load(open(os.path.join(rd, "final", "adapter_config.json")))
fail = 0
want = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"] + (["mlp.router.weight"] if "router" in targets else [])
if cfg.get("target_parameters") != want:
    print(f"FAIL: target_parameters {cfg.get('target_parameters')}, want {want}")
    fail = 1
if not any(k.endswith(".mlp.experts.base_layer.lora_A.weight") for k in names) or any(".experts.1." in k for k in names):
    print(f"FAIL: the adapter is not in PEFT's fused layout: {sorted(names)[:6]}")
    fail = 1
p = subprocess.run([ref, os.path.join(src, "scripts", "check_export_transformers.py"), rd, "--quarry", quarry,
                    "--logits-tool", tool, "--device", "cpu", "--work", os.path.join(work, "exports"), "--run-logits"],
                   capture_output=True, text=True)
print(p.stdout[-4000:])
if p.returncode != 0:
    print(p.stderr[-4000:])
    fail = 1
if "PASS PEFT adapter on the base vs quarry on the run" not in p.stdout:
    print("FAIL: the PEFT adapter was not checked")
    fail = 1
sys.exit(fail)
