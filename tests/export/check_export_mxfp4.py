"""gpt-oss from a published-style MXFP4 checkpoint (experts as *_blocks/*_scales, config.json's
quantization_config mxfp4): quarry's logits equal those of the same model stored dense (the pairs
dequantised here in numpy from the format's definition, kernels/mxfp4_format.h), and `quarry
export` of a LoRA run on it writes a dense package: the fused experts dequantised bit for bit,
no quantization_config left for transformers to trip on, and preflight's tensor check passes.

usage: check_export_mxfp4.py QUARRY_BIN EXPORT_LOGITS TINY_MODEL_DIR WORKDIR
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_common import load_dir, make_lora_run, run  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

quarry, tool, tiny, work = sys.argv[1:5]
src = os.environ.get("QUARRY_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
dense0 = os.path.join(work, "init")
run([quarry, "init", "--config", os.path.join(src, "tests", "export", "gpt-oss-tiny.json"), "--tokenizer", tiny,
     "--dtype", "fp32", "--seed", "9", "--out", dense0])
CODE = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], np.float32)


def dequant(blocks, scales):
    """(E, R, G, B) u8 and (E, R, G) u8 → (E, G·B·2, R) f32: low nibble first, · 2^(scale − 127)."""
    lo, hi = CODE[blocks & 15], CODE[blocks >> 4]
    v = np.stack([lo, hi], -1).reshape(*blocks.shape[:3], -1)            # (E, R, G, 2B)
    v = np.ldexp(v, scales.astype(np.int32)[..., None] - 127).astype(np.float32)
    return v.reshape(blocks.shape[0], blocks.shape[1], -1).transpose(0, 2, 1).copy()


rng = np.random.default_rng(5)
sd = load_file(os.path.join(dense0, "model.safetensors"))
packed, dense = {}, {}
for k, v in sd.items():
    if k.endswith(".experts.gate_up_proj") or k.endswith(".experts.down_proj"):
        E, K, R = v.shape                                                  # (E, in, out)
        blocks = rng.integers(0, 256, (E, R, K // 32, 16), dtype=np.uint8)
        scales = rng.integers(118, 124, (E, R, K // 32), dtype=np.uint8)
        packed[k + "_blocks"], packed[k + "_scales"] = blocks, scales
        dense[k] = dequant(blocks, scales)
    else:
        packed[k] = dense[k] = v
bases = {}
for name, tensors, quant in (("base-mxfp4", packed, True), ("base-dense", dense, False)):
    d = os.path.join(work, name)
    shutil.copytree(dense0, d)
    save_file(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(d, "config.json")))
    if quant:
        cfg["quantization_config"] = {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                                 "model.embed_tokens", "lm_head"],
                                      "quant_method": "mxfp4"}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
    bases[name] = d

bad = 0
ids = [int(x) for x in rng.integers(0, 881, 20)]
logits = {}
for name, d in bases.items():
    f = os.path.join(work, name + ".f32")
    p = subprocess.run([tool, d, f] + [str(i) for i in ids], capture_output=True, text=True)
    if p.returncode != 0:
        print(f"FAIL {name}: {tool}: {p.stderr}")
        sys.exit(1)
    logits[name] = np.fromfile(f, dtype=np.float32)
if not np.array_equal(logits["base-mxfp4"], logits["base-dense"]):
    print("FAIL quarry's logits of the MXFP4 checkpoint differ from the dense one's "
          f"(max {np.abs(logits['base-mxfp4'] - logits['base-dense']).max():.3g})")
    bad += 1
else:
    print("PASS the MXFP4 checkpoint gives the dense checkpoint's logits bit for bit")

rd = os.path.join(work, "run-lora")
make_lora_run(rd, bases["base-dense"], 4, 8, False, seed=3)   # the same attention; then based on the MXFP4 one
rj = json.load(open(os.path.join(rd, "run.json")))
rj["base_model"] = os.path.abspath(bases["base-mxfp4"])
json.dump(rj, open(os.path.join(rd, "run.json"), "w"), indent=2)
out = os.path.join(work, "export")
run([quarry, "export", rd, "--out", out, "--dtype", "fp32", "--quiet"])
cfg = json.load(open(os.path.join(out, "config.json")))
if "quantization_config" in cfg:
    print("FAIL the dense export's config.json keeps quantization_config")
    bad += 1
got = load_dir(out)
for k, v in dense.items():
    if ".mlp.experts." in k and not k.endswith("_bias"):
        dt, arr = got[k]
        if dt != "F32" or arr.shape != v.shape or not np.array_equal(arr, v):
            print(f"FAIL {k}: the export is not the dequantised tensor ({dt}, {arr.shape})")
            bad += 1
p = run([quarry, "preflight", out], expect=None)
if "PASS  tensors" not in p.stdout:
    print(f"FAIL preflight's tensor check:\n{p.stdout[-2000:]}")
    bad += 1

# Training on the MXFP4 checkpoint: LoRA on attention and the experts keeps the experts in MXFP4 on
# the device by default (run.json settings.experts_dtype, memory_plan_bytes.mxfp4); on the CPU that
# run equals one whose experts are dequantised at load bit for bit (the same weights, the same
# GEMM), so its adapter, its merged export (into the experts dequantised bit-exactly) and greedy
# generation from the run (which loads the experts as training did) are the same bytes.
train_data = os.path.join(src, "examples", "data", "company_qa_train.jsonl")
outs = {}
for dt in ("default", "bf16"):
    rdt = os.path.join(work, "run-" + dt)
    run([quarry, "train", "--model", bases["base-mxfp4"], "--data", train_data, "--max-seq-len", "96", "--max-steps",
         "3", "--batch-size", "4", "--lr", "1e-2", "--device", "cpu", "--lora-targets", "all-linear", "--quiet",
         "--out", rdt] + ([] if dt == "default" else ["--experts-dtype", "bf16"]))
    rj = json.load(open(os.path.join(rdt, "run.json")))
    want = "mxfp4" if dt == "default" else "bf16"
    got_dt = rj["settings"].get("experts_dtype")
    mem = rj.get("memory_plan_bytes", {})
    if got_dt != want or (want == "mxfp4") != ("mxfp4" in mem):
        print(f"FAIL run-{dt}: settings.experts_dtype {got_dt!r}, want {want!r}; memory_plan_bytes {mem}")
        bad += 1
    ex = os.path.join(work, "export-" + dt)
    run([quarry, "export", rdt, "--out", ex, "--dtype", "fp32", "--quiet"])
    g = run([quarry, "generate", "--model", rdt, "--prompt", "What does the company do?", "--max-new-tokens", "12",
             "--temperature", "0", "--device", "cpu"])
    outs[dt] = (open(os.path.join(rdt, "final", "adapter_model.safetensors"), "rb").read(),
                open(os.path.join(ex, "model.safetensors"), "rb").read(), g.stdout)
for i, what in enumerate(("adapter", "merged export", "generated text")):
    if outs["default"][i] != outs["bf16"][i]:
        print(f"FAIL the {what} of the run with MXFP4 experts differs from the run with experts dequantised at load")
        bad += 1
    else:
        print(f"PASS the {what} of the run with MXFP4 experts equals the dequantised-at-load run's byte for byte")
print("check_export_mxfp4: " + (f"{bad} failure(s)" if bad else "all checks passed"))
sys.exit(1 if bad else 0)
