#!/usr/bin/env python3
"""Compares two quarry runs (standard library only): the training losses and grad norms of
step_wise_training_metrics.csv and the validation losses (|a-b| <= tol*|b| each), and the
trained weights of final/*.safetensors: ||a-b|| <= tol*||b|| over all of them together, and
per tensor within 10*tol. (Per tensor is looser because AdamW turns a gradient element that is
zero up to rounding into an update of ±lr either way: a LoRA B that started at zero can differ
by a few 1e-6 after a few steps when only the order of fp32 sums changed.)
usage: compare.py RUN REF [TOL]   exit 0 = equal within TOL, 1 = differ (printed)."""
import array, csv, json, math, os, struct, sys

def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (path, name, t["dtype"])
        a, b = t["data_offsets"]
        v = array.array("f")
        v.frombytes(data[a:b])
        out[name] = v
    return out

def column(path, col):
    with open(path) as f:
        return [float(r[col]) for r in csv.DictReader(f)]

def main():
    run, ref = sys.argv[1], sys.argv[2]
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-6
    bad = []
    for csvname, cols in (("step_wise_training_metrics.csv", ("training_loss", "grad_norm")),
                          ("validation_metrics.csv", ("validation_loss",))):
        pa, pb = os.path.join(run, csvname), os.path.join(ref, csvname)
        if not os.path.exists(pb):
            continue
        for c in cols:
            a, b = column(pa, c), column(pb, c)
            if len(a) != len(b):
                bad.append(f"{csvname}: {len(a)} rows, reference {len(b)}")
                continue
            for i, (x, y) in enumerate(zip(a, b)):
                # The CSV holds 6 decimals: allow half a unit of the last one as well.
                if abs(x - y) > tol * abs(y) + 5e-7:
                    bad.append(f"{csvname} row {i + 1} {c}: {x} vs {y}")
    final = [f for f in os.listdir(os.path.join(ref, "final")) if f.endswith(".safetensors")]
    if not final:
        bad.append("reference has no final/*.safetensors")
    for name in final:
        ta, tb = tensors(os.path.join(run, "final", name)), tensors(os.path.join(ref, "final", name))
        if set(ta) != set(tb):
            bad.append(f"{name}: tensor names differ")
            continue
        worst, dsum, nsum = 0.0, 0.0, 0.0
        for k in tb:
            d = sum((x - y) ** 2 for x, y in zip(ta[k], tb[k]))
            nb = sum(y * y for y in tb[k])
            dsum += d
            nsum += nb
            rel = math.sqrt(d / nb) if nb > 0 else math.sqrt(d)
            worst = max(worst, rel)
            if rel > 10 * tol:
                bad.append(f"{name} {k}: relative difference {rel:.3g} (bound {10 * tol:g} per tensor)")
        total = math.sqrt(dsum / nsum) if nsum > 0 else math.sqrt(dsum)
        if total > tol:
            bad.append(f"{name}: relative difference of all weights {total:.3g} (bound {tol:g})")
        print(f"{run}: relative difference of all weights {total:.3g}, worst tensor {worst:.3g}")
    for b in bad[:10]:
        print("DIFF", b)
    return 1 if bad else 0

sys.exit(main())
