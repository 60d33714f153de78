#!/usr/bin/env python3
"""Checks quarry's exports with PyTorch, transformers and PEFT (the reference stack Bedrock's own
import is built on). Needs torch, transformers, peft, safetensors, numpy
(scripts/requirements-reference.txt); not the test .venv.

usage: check_export_transformers.py RUN_OR_EXPORT [--quarry BIN] [--logits-tool BIN]
                                    [--device cpu|cuda] [--tokens N] [--work DIR]

RUN (a directory with run.json): exports it with `quarry export` (merged fp32, merged bf16 and,
for a LoRA run, the PEFT adapter) into --work, then checks
  1. transformers loads the merged fp32 export; its logits equal quarry's on the same input
     (≤ 1e-5 relative, ‖a−b‖/‖b‖ over all positions);
  2. PEFT loading the adapter export onto the base gives the merged export's logits (≤ 1e-5);
  3. the bf16 export: transformers (fp32 compute) equals quarry on the same bf16 weights (≤ 1e-5),
     and stays within 1e-2 of the fp32 export.
EXPORT (a directory with config.json): check 1 on that package, in its own dtype.
quarry's logits come from the export_logits tool (build/tests/export/export_logits, CPU, fp32).
Exit 0 when every check passes, 1 otherwise.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers

TOL_FP32 = 1e-5
TOL_BF16 = 1e-2


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def hf_logits(model_dir, ids, device, adapter=None):
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"   # renamed in transformers 4.56
    m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager",
                                                          **{key: torch.float32})
    # Logits only: no aux loss (transformers 4.51.3's Qwen3-MoE fails computing it when an
    # mlp_only layer has no router logits).
    if getattr(m.config, "output_router_logits", False):
        m.config.output_router_logits = False
    if adapter:
        import peft
        m = peft.PeftModel.from_pretrained(m, adapter)
    m.to(device).eval()
    with torch.no_grad():
        out = m(torch.tensor([ids], device=device)).logits[0].float().cpu().numpy()
    del m
    return out


def _tensor_names(run_dir):
    import struct
    with open(os.path.join(run_dir, "final", "adapter_model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return list(json.loads(f.read(n)))


def quarry_logits(tool, model_dir, ids, vocab):
    with tempfile.NamedTemporaryFile(suffix=".f32") as f:
        p = subprocess.run([tool, model_dir, f.name] + [str(i) for i in ids], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{tool} failed: {p.stderr}")
        return np.fromfile(f.name, dtype=np.float32).reshape(len(ids), vocab)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path")
    ap.add_argument("--quarry", default=os.environ.get("QUARRY_BIN", "build/quarry"))
    ap.add_argument("--logits-tool", default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--work", default=None)
    ap.add_argument("--run-logits", action="store_true",
                    help="also compare PEFT's logits with quarry's on the run itself (adapter unmerged)")
    a = ap.parse_args()
    print(f"oracle: transformers {transformers.__version__}, torch {torch.__version__}")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tool = a.logits_tool or os.path.join(os.path.dirname(os.path.abspath(a.quarry)), "tests", "export", "export_logits")
    if not os.path.exists(tool):
        print(f"error: {tool} not found (build the export_logits target, or pass --logits-tool)")
        return 1
    failures = []

    def check(ok, msg):
        print(("PASS " if ok else "FAIL ") + msg)
        if not ok:
            failures.append(msg)

    def export(run, out, *extra):
        p = subprocess.run([a.quarry, "export", run, "--out", out, "--quiet"] + list(extra), capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise RuntimeError(f"quarry export {run} {' '.join(extra)} failed:\n{p.stdout}\n{p.stderr}")
        return out

    work = a.work or tempfile.mkdtemp(prefix="quarry-export-check-")
    os.makedirs(work, exist_ok=True)
    if os.path.exists(os.path.join(a.path, "run.json")):
        run = json.load(open(os.path.join(a.path, "run.json")))
        base = run["base_model"]
        lora = run["settings"]["method"] == "lora"
        tag = os.path.basename(os.path.normpath(a.path))
        m32 = export(a.path, os.path.join(work, tag + "-merged-fp32"), "--dtype", "fp32", "--force")
        m16 = export(a.path, os.path.join(work, tag + "-merged-bf16"), "--dtype", "bf16", "--force")
        cfg = json.load(open(os.path.join(m32, "config.json")))
        rng = np.random.default_rng(0)
        ids = [int(x) for x in rng.integers(0, cfg["vocab_size"], a.tokens)]
        hf32 = hf_logits(m32, ids, a.device)
        q32 = quarry_logits(tool, m32, ids, cfg["vocab_size"])
        e = rel(q32, hf32)
        check(e <= TOL_FP32, f"merged fp32: quarry vs transformers logits, relative error {e:.2e} (≤ {TOL_FP32:.0e})")
        # Per-expert adapters ("...experts.3.gate_proj"); gpt-oss's are PEFT's fused target_parameters.
        experts = lora and any(re.search(r"\.experts\.\d+\.", k) for k in _tensor_names(a.path))
        if lora and experts and int(transformers.__version__.split(".")[0]) >= 5:
            # transformers 5 fuses each layer's experts into one parameter: an adapter on the
            # published per-expert modules loads in transformers 4.x (tests/export/check_export_peft451.py).
            print("SKIP PEFT adapter: expert adapters are on the per-expert layout of transformers 4.x")
        elif lora:
            ad = export(a.path, os.path.join(work, tag + "-peft"), "--format", "peft", "--force")
            hfp = hf_logits(base, ids, a.device, adapter=ad)
            e = rel(hf32, hfp)
            check(e <= TOL_FP32, f"PEFT adapter on the base vs merged export (transformers), relative error {e:.2e} "
                                 f"(≤ {TOL_FP32:.0e})")
            if a.run_logits:
                e = rel(quarry_logits(tool, a.path, ids, cfg["vocab_size"]), hfp)
                check(e <= TOL_FP32, f"PEFT adapter on the base vs quarry on the run (adapter unmerged), relative "
                                     f"error {e:.2e} (≤ {TOL_FP32:.0e})")
            hfb = hf_logits(base, ids, a.device)
            print(f"note: the adapter moves the logits by {rel(hfp, hfb):.2e} relative to the base's")
        hf16 = hf_logits(m16, ids, a.device)
        q16 = quarry_logits(tool, m16, ids, cfg["vocab_size"])
        e = rel(q16, hf16)
        check(e <= TOL_FP32, f"merged bf16 weights: quarry vs transformers logits, relative error {e:.2e} "
                             f"(≤ {TOL_FP32:.0e})")
        e = rel(hf16, hf32)
        check(e <= TOL_BF16, f"merged bf16 vs fp32 export logits, relative error {e:.2e} (≤ {TOL_BF16:.0e})")
    else:
        cfg = json.load(open(os.path.join(a.path, "config.json")))
        rng = np.random.default_rng(0)
        ids = [int(x) for x in rng.integers(0, cfg["vocab_size"], a.tokens)]
        hf = hf_logits(a.path, ids, a.device)
        q = quarry_logits(tool, a.path, ids, cfg["vocab_size"])
        e = rel(q, hf)
        check(e <= TOL_FP32, f"{a.path}: quarry vs transformers logits, relative error {e:.2e} (≤ {TOL_FP32:.0e})")
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
