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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peft_check_common import check_with_transformers, reference_python, train_tiny  # noqa: E402

quarry, tool, tiny, train_data, work, config, targets = sys.argv[1:8]
src = os.environ.get("QUARRY_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
ref = reference_python(src, "QUARRY_REF451_PYTHON", ".venv-ref451", 4, "4.x")
rd, names = train_tiny(quarry, config, tiny, train_data, work, targets)
fail = 0
if not any(".experts.1." in k for k in names):
    print(f"FAIL: the adapter has no per-expert tensors: {names[:6]}")
    fail = 1
if "router" in targets and not any(k.endswith(".gate.lora_A.weight") for k in names):
    print("FAIL: --lora-targets names the router but the adapter has no router tensors")
    fail = 1
fail |= check_with_transformers(ref, src, rd, quarry, tool, work)
sys.exit(fail)
