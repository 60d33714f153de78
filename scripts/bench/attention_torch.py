"""torch.nn.functional.scaled_dot_product_attention on the same shapes as quarry's attention table
(dev/cuda/attention_cudnn_check: causal, 32 query heads, 8 KV heads = GQA 4, 16K tokens per call,
bf16, hd 64/128, T 2048/8192), through its flash and cuDNN backends, for scripts/gpu_check.sh.
FLOPs counted as quarry counts them: forward 2·B·H·T²·hd (the causal half of 4·B·H·T²·hd),
backward 2.5 × that; the median of --repeats timed calls (CUDA events) after 3 warm-ups.
GQA goes in as enable_gqa=True (k, v with 8 heads); a backend that refuses it gets k and v
repeated to 32 heads (said in the row's note: the repeat's copy is outside the timed call).
Prints markdown rows `| torch-flash | hd | T | B×H/KVH | fwd ms | fwd TFLOP/s | bwd ms | bwd TFLOP/s |`,
or one `SKIP: ...` line (exit 0) when python3 has no torch or no CUDA device.
  python3 scripts/bench/attention_torch.py [--repeats 10] [--tiny]
--tiny: T 64/128, 4 heads / 1 KV head, 2 rows, on the CPU when there is no GPU, the math backend
only (a rehearsal of this script, not a benchmark).
"""
import argparse
import statistics
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as e:
        print(f"SKIP: torch sdpa rows: python3 ({sys.executable}) has no torch ({e})")
        return 0
    cuda = torch.cuda.is_available()
    if not cuda and not a.tiny:
        print(f"SKIP: torch sdpa rows: torch {torch.__version__} sees no CUDA device")
        return 0
    dev = torch.device("cuda" if cuda else "cpu")
    if a.tiny:
        shapes = [(hd, T, 2, 4, 1) for hd in (64, 128) for T in (64, 128)]
        backends = [("torch-math", SDPBackend.MATH)]
    else:
        shapes = [(hd, T, 16384 // T, 32, 8) for hd in (64, 128) for T in (2048, 8192)]
        backends = [("torch-flash", SDPBackend.FLASH_ATTENTION), ("torch-cudnn", SDPBackend.CUDNN_ATTENTION)]
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"attention_torch: torch {torch.__version__}, {name}, cuDNN "
          f"{torch.backends.cudnn.version() if cuda else '-'}")

    def timed(fn):
        for _ in range(3):
            fn()
        if not cuda:
            import time
            t = []
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                fn()
                t.append((time.perf_counter() - t0) * 1e3)
            return statistics.median(t)
        ms = []
        for _ in range(a.repeats):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            torch.cuda.synchronize()
            ms.append(s.elapsed_time(e))
        return statistics.median(ms)

    for label, backend in backends:
        for hd, T, B, H, KVH in shapes:
            g = torch.Generator(device=dev).manual_seed(hd + T)
            q = torch.randn(B, H, T, hd, device=dev, dtype=torch.bfloat16, generator=g, requires_grad=True)
            k = torch.randn(B, KVH, T, hd, device=dev, dtype=torch.bfloat16, generator=g, requires_grad=True)
            v = torch.randn(B, KVH, T, hd, device=dev, dtype=torch.bfloat16, generator=g, requires_grad=True)
            dout = torch.randn(B, H, T, hd, device=dev, dtype=torch.bfloat16, generator=g)
            note = ""
            kw = {"is_causal": True, "enable_gqa": True}
            try:
                with sdpa_kernel([backend]):
                    out = F.scaled_dot_product_attention(q, k, v, **kw)
            except RuntimeError:
                # This backend takes no GQA: k and v repeated to H heads, outside the timed call.
                k = k.detach().repeat_interleave(H // KVH, dim=1).requires_grad_()
                v = v.detach().repeat_interleave(H // KVH, dim=1).requires_grad_()
                kw = {"is_causal": True}
                note = " (k, v repeated: no enable_gqa)"
                try:
                    with sdpa_kernel([backend]):
                        out = F.scaled_dot_product_attention(q, k, v, **kw)
                except RuntimeError as e:
                    msg = str(e).splitlines()[0][:120]
                    print(f"| {label} | {hd} | {T} | {B}×{H}/{KVH} | - | not run: {msg} | - | - |")
                    continue

            def fwd():
                with torch.no_grad(), sdpa_kernel([backend]):
                    F.scaled_dot_product_attention(q, k, v, **kw)

            def bwd():
                torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)

            with sdpa_kernel([backend]):
                out = F.scaled_dot_product_attention(q, k, v, **kw)
            f_ms, b_ms = timed(fwd), timed(bwd)
            flops = 2.0 * B * H * T * T * hd
            print(f"| {label}{note} | {hd} | {T} | {B}×{H}/{KVH} | {f_ms:.3f} | {flops / (f_ms * 1e9):.0f} | "
                  f"{b_ms:.3f} | {2.5 * flops / (b_ms * 1e9):.0f} |")
            del q, k, v, out, dout
    return 0


if __name__ == "__main__":
    sys.exit(main())
