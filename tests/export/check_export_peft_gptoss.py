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
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peft_check_common import check_with_transformers, reference_python, train_tiny  # noqa: E402

quarry, tool, tiny, train_data, work, config, targets = sys.argv[1:8]
src = os.environ.get("QUARRY_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
ref = reference_python(src, "QUARRY_REF_PYTHON", ".venv-ref", 5, "5")
rd, names = train_tiny(quarry, config, tiny, train_data, work, targets)
cfg = json.load(open(os.path.join(rd, "final", "adapter_config.json")))
fail = 0
want = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"] + (["mlp.router.weight"] if "router" in targets else [])
if cfg.get("target_parameters") != want:
    print(f"FAIL: target_parameters {cfg.get('target_parameters')}, want {want}")
    fail = 1
if not any(k.endswith(".mlp.experts.base_layer.lora_A.weight") for k in names) or any(".experts.1." in k for k in names):
    print(f"FAIL: the adapter is not in PEFT's fused layout: {sorted(names)[:6]}")
    fail = 1
fail |= check_with_transformers(ref, src, rd, quarry, tool, work)
sys.exit(fail)
