"""Where PyTorch is installed: transformers loads quarry's exports and gives quarry's logits, and
PEFT loading the adapter export onto the base gives the merged export's logits
(scripts/check_export_transformers.py does the work, under the reference Python).

usage: check_export_torch.py QUARRY_BIN EXPORT_LOGITS TINY_MODEL_DIR TRAIN_JSONL WORKDIR [CONFIG]
CONFIG: the base's config.json instead of TINY_MODEL_DIR's (another architecture on the same
tokenizer, e.g. tests/export/qwen3-tiny.json).
The reference Python: $QUARRY_REF_PYTHON, else <source>/.venv-ref/bin/python (torch, transformers,
peft: scripts/requirements-reference.txt); SKIP when neither has torch.
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_common import make_lora_run, make_full_run, run, skip  # noqa: E402

quarry, tool, tiny, train_data, work = sys.argv[1:6]
config = sys.argv[6] if len(sys.argv) > 6 else os.path.join(tiny, "config.json")
src = os.environ.get("QUARRY_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
ref = os.environ.get("QUARRY_REF_PYTHON") or os.path.join(src, ".venv-ref", "bin", "python")
if not os.path.exists(ref) or subprocess.run([ref, "-c", "import torch, transformers, peft"],
                                             capture_output=True).returncode != 0:
    skip("no Python with torch, transformers and peft (set QUARRY_REF_PYTHON or make .venv-ref)")
if not os.path.isdir(tiny):
    skip(f"{tiny} not found")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
base = os.path.join(work, "base")
run([quarry, "init", "--config", config, "--tokenizer", tiny, "--dtype", "fp32",
     "--seed", "5", "--out", base])
runs = []
# Another architecture (CONFIG) checks what differs there; rsLoRA's scale is the same code path.
for name, r, alpha, rs in (("lora", 4, 8, False), ("rslora", 8, 16, True))[:1 if len(sys.argv) > 6 else 2]:
    rd = os.path.join(work, "run-" + name)
    make_lora_run(rd, base, r, alpha, rs, seed=11 + r)
    runs.append(rd)
full = os.path.join(work, "run-full")
make_full_run(full, base, seed=3)
runs.append(full)
real = os.path.join(work, "run-real")
p = run([quarry, "train", "--model", base, "--data", train_data, "--max-seq-len", "96", "--epochs", "1",
         "--device", "cpu", "--out", real], expect=None)
if p.returncode == 0:
    runs.append(real)
elif p.returncode == 3:
    print("NOTE: quarry train is not available in this build; only synthetic runs are checked")
else:
    print(f"FAIL: quarry train exited {p.returncode}:\n{p.stderr[-2000:]}")
    sys.exit(1)
if "GptOssForCausalLM" in open(config).read():
    # A real full fine-tune too: the trainer keeps gpt-oss's experts expert-major, export fuses them.
    real_full = os.path.join(work, "run-real-full")
    run([quarry, "train", "--model", base, "--data", train_data, "--method", "full", "--max-seq-len", "64",
         "--max-steps", "3", "--device", "cpu", "--out", real_full])
    runs.append(real_full)
script = os.path.join(src, "scripts", "check_export_transformers.py")
bad = 0
for rd in runs + [base]:
    print(f"== {rd}")
    p = subprocess.run([ref, script, rd, "--quarry", quarry, "--logits-tool", tool, "--device", "cpu",
                        "--work", os.path.join(work, "exports")], capture_output=True, text=True)
    print(p.stdout[-4000:])
    if p.returncode != 0:
        print(p.stderr[-4000:])
        bad += 1
sys.exit(1 if bad else 0)
