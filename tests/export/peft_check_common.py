"""What check_export_peft451.py and check_export_peft_gptoss.py share: finding the reference
Python, a short LoRA `quarry train` on a tiny MoE model, and scripts/check_export_transformers.py
on the run (merged export vs quarry, PEFT's adapter on the base vs the merged export and quarry)."""
import os
import shutil
import subprocess

from export_common import header, run, skip


def reference_python(src, env, venv, major, what):
    """$env, else <src>/<venv>/bin/python, when it imports torch, peft and transformers `major`.x;
    else SKIP (77) naming `what` and where to set it."""
    ref = os.environ.get(env) or os.path.join(src, venv, "bin", "python")
    probe = f"import torch, peft, transformers; assert transformers.__version__.startswith('{major}.')"
    if not os.path.exists(ref) or subprocess.run([ref, "-c", probe], capture_output=True).returncode != 0:
        skip(f"no Python with torch, peft and transformers {what} (set {env} or make {venv})")
    return ref


def train_tiny(quarry, config, tiny, train_data, work, targets):
    """A fresh work dir, `quarry init` of config (fp32, seed 5) and 3 LoRA steps on --lora-targets
    targets. Returns the run dir and its adapter's tensor names."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    base = os.path.join(work, "base")
    run([quarry, "init", "--config", config, "--tokenizer", tiny, "--dtype", "fp32", "--seed", "5", "--out", base])
    rd = os.path.join(work, "run")
    run([quarry, "train", "--model", base, "--data", train_data, "--max-seq-len", "96", "--max-steps", "3",
         "--batch-size", "4", "--lr", "1e-2", "--device", "cpu", "--lora-targets", targets, "--out", rd])
    names = [k for k in header(os.path.join(rd, "final", "adapter_model.safetensors"))[0] if k != "__metadata__"]
    return rd, names


def check_with_transformers(ref, src, rd, quarry, tool, work):
    """scripts/check_export_transformers.py on run rd under ref; 1 when it fails or does not check
    the PEFT adapter, else 0."""
    p = subprocess.run([ref, os.path.join(src, "scripts", "check_export_transformers.py"), rd, "--quarry", quarry,
                        "--logits-tool", tool, "--device", "cpu", "--work", os.path.join(work, "exports"),
                        "--run-logits"], capture_output=True, text=True)
    print(p.stdout[-4000:])
    fail = 0
    if p.returncode != 0:
        print(p.stderr[-4000:])
        fail = 1
    if "PASS PEFT adapter on the base vs quarry on the run" not in p.stdout:
        print("FAIL: the PEFT adapter was not checked")
        fail = 1
    return fail
