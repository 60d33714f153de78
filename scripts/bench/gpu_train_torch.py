"""The transformers(+PEFT) side of the GPU training benchmark in scripts/gpu_check.sh: the same
checkpoint (`quarry init` output), the same shapes, bf16, on the GPU. One step is forward +
backward over B rows x T tokens (every next token trained) + clip_grad_norm_(1.0) + AdamW.
  LoRA: bf16 base weights (frozen), PEFT adapters (r, alpha, all-linear) in fp32, autocast bf16.
  full: fp32 master weights + autocast bf16 (what HF Trainer does with bf16=True), fused AdamW.
  LoRA with --quantize nf4 (QLoRA): the base loaded through bitsandbytes as transformers'
  BitsAndBytesConfig(load_in_4bit, nf4, double quant, bf16 compute) leaves it (embeddings, norms,
  lm_head in bf16); no prepare_model_for_kbit_training (its fp32 upcast of every weight that is
  not 4-bit would not be the same memory as quarry's bf16 embeddings and norms).
Prints `RESULT tok_s=... ms_step=... peak_gib=... loss0=...` (median step time after warm-up).
Usage: python gpu_train_torch.py MODEL_DIR lora|full [--batch B] [--seq T] [--steps S]
       [--grad-checkpoint] [--attn sdpa|flash_attention_2] [--quantize nf4]
"""
import argparse
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("method", choices=["lora", "full"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--grad-checkpoint", action="store_true")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--quantize", choices=["nf4"], default=None)
    a = ap.parse_args()
    import torch
    import transformers

    dev = torch.device("cuda")
    dtype = torch.bfloat16 if a.method == "lora" else torch.float32
    if a.quantize:
        if a.method != "lora":
            sys.exit("--quantize nf4 is QLoRA: method lora")
        bnb = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                              bnb_4bit_use_double_quant=True,
                                              bnb_4bit_compute_dtype=torch.bfloat16)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            a.model_dir, dtype=dtype, attn_implementation=a.attn, quantization_config=bnb,
            device_map={"": 0})
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=dtype,
                                                                  attn_implementation=a.attn).to(dev)
    if a.grad_checkpoint:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if a.method == "lora":
        import peft
        if a.grad_checkpoint:
            model.enable_input_require_grads()
        cfg = peft.LoraConfig(r=a.lora_r, lora_alpha=2 * a.lora_r, lora_dropout=0.0,
                              target_modules="all-linear", task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, cfg)
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
    vocab = model.config.vocab_size
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, min(vocab, 800), (a.batch, a.seq), generator=g).to(dev)
    times, loss0 = [], None
    torch.cuda.reset_peak_memory_stats()
    for step in range(a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if loss0 is None:
            loss0 = out.loss.item()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1000
    tok_s = a.batch * a.seq / (ms / 1000)
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"RESULT tok_s={tok_s:.0f} ms_step={ms:.1f} peak_gib={peak:.2f} loss0={loss0:.4f} "
          f"method={a.method}{'+' + a.quantize if a.quantize else ''} batch={a.batch} seq={a.seq} "
          f"grad_checkpoint={int(a.grad_checkpoint)} attn={a.attn}")


if __name__ == "__main__":
    sys.exit(main())
