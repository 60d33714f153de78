"""LoRA on the experts (and the router) exported as quarry writes it for Bedrock: a short
`quarry train` on a tiny MoE model with --lora-targets TARGETS, then, under transformers 4.51.3
(the version Custom Model Import names) + PEFT, scripts/check_export_transformers.py: the merged
export (each expert's adapter folded into its published tensors) gives quarry's logits, and PEFT
loading the `--format peft` adapter (per-expert names: ...mlp.experts.E.gate_proj,
...block_sparse_moe.experts.E.w1, the router's ...gate) onto the base gives the merged export's
logits (≤ 1e-5, fp32). transformers 5 fuses the experts, so this layout loads in transformers 4.x.

usage: check_export_peft451.py QUARRY_BIN EXPORT_LOGITS TINY_MODEL_DIR TRAIN_JSONL WORKDIR CONFIG TARGETS
The oracle Python: $QUARRY_REF451_PYTHON, else <source>/.venv-ref451/bin/python (torch,
transformers 4.x, peft); SKIP (77) when neither has them.
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
ref = os.environ.get("QUARRY_REF451_PYTHON") or os.path.join(src, ".venv-ref451", "bin", "python")
probe = "import torch, peft, transformers; assert transformers.__version__.startswith('4.')"
if not os.path.exists(ref) or subprocess.run([ref, "-c", probe], capture_output=True).returncode != 0:
    skip("no Python with torch, peft and transformers 4.x (set QUARRY_REF451_PYTHON or make .venv-ref451)")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
base = os.path.join(work, "base")
run([quarry, "init", "--config", config, "--tokenizer", tiny, "--dtype", "fp32", "--seed", "5", "--out", base])
rd = os.path.join(work, "run")
run([quarry, "train", "--model", base, "--data", train_data, "--max-seq-len", "96", "--max-steps", "3",
     "--batch-size", "4", "--lr", "1e-2", "--device", "cpu", "--lora-targets", targets, "--out", rd])
names = [k for k in header(os.path.join(rd, "final", "adapter_model.safetensors"))[0] if k != "__metadata__"]
fail = 0
if not any(".experts.1." in k for k in names):
    print(f"FAIL: the adapter has no per-expert tensors: {names[:6]}")
    fail = 1
if "router" in targets and not any(k.endswith(".gate.lora_A.weight") for k in names):
    print("FAIL: --lora-targets names the router but the adapter has no router tensors")
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
