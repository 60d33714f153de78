"""quarry export + preflight, checked from outside with numpy and the safetensors library.

usage: check_export.py QUARRY_BIN TINY_MODEL_DIR TRAIN_JSONL WORKDIR

Bases: the tiny example model made by `quarry init` in fp32 and bf16. Runs: a real LoRA run of
`quarry train` (when the trainer is built), synthetic LoRA runs (random non-zero A and B, plain and
rsLoRA) and a synthetic full fine-tune. Properties:
  - every file loads with the safetensors library, metadata {"format": "pt"};
  - merged fp32 = W + scale·B·A (numpy, float64) within 1e-6 relative, element by element;
  - merged bf16/fp16 = the round-to-nearest-even of the fp32 result, bit for bit;
  - tensors without an adapter are the base's, bit for bit; lm_head.weight absent (tied);
  - shards: the index maps every tensor exactly once to the file holding it; total_size adds up;
  - config.json = the base's bytes but for torch_dtype; tokenizer and generation files identical;
  - quarry-export.json lists every file with its sha256;
  - PEFT export: adapter_config.json keys and adapter tensors as the run's;
  - full fine-tune export = the final weights rounded;
  - a non-empty --out is refused without --force and replaced with it;
  - preflight passes on the exports and fails, naming the reason, on broken packages.
"""
import hashlib
import json
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_common import (bf16_rne, load, load_dir, make_full_run, make_lora_run, merged_reference, run,  # noqa: E402
                           skip, to_f32)

quarry, tiny, train_data, work = sys.argv[1:5]
if not os.path.isdir(tiny):
    skip(f"{tiny} not found")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL " + msg)
    return cond


def J(d, *p):
    return os.path.join(d, *p)


# Bases.
bases = {}
for dt in ("fp32", "bf16"):
    bases[dt] = J(work, "base-" + dt)
    run([quarry, "init", "--config", J(tiny, "config.json"), "--tokenizer", tiny, "--dtype", dt, "--seed", "3",
         "--out", bases[dt]])
    # generation_config.json of the example (quarry init derives its own): exported byte for byte.
    shutil.copy(J(tiny, "generation_config.json"), J(bases[dt], "generation_config.json"))


def export(src, out, *extra, expect=0, model=None):
    cmd = [quarry, "export"] + ([src] if src else []) + (["--model", model] if model else []) + ["--out", out,
                                                                                                   "--quiet"]
    return run(cmd + list(extra), expect=expect)


def check_package_files(base_dir, out, dtype_name):
    """config, tokenizer files, generation config, quarry-export.json."""
    bcfg = open(J(base_dir, "config.json")).read()
    ecfg = open(J(out, "config.json")).read()
    b, e = json.loads(bcfg), json.loads(ecfg)
    check(e.get("torch_dtype") == dtype_name, f"{out}: config torch_dtype {e.get('torch_dtype')}, want {dtype_name}")
    b.pop("torch_dtype", None)
    e.pop("torch_dtype", None)
    check(b == e, f"{out}: config.json differs from the base beyond torch_dtype")
    old = '"torch_dtype": ' + json.dumps(json.loads(bcfg)["torch_dtype"])
    check(ecfg == bcfg.replace(old, '"torch_dtype": "%s"' % dtype_name),
          f"{out}: config.json bytes differ from the base's beyond the torch_dtype value")
    for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        if os.path.exists(J(base_dir, fn)):
            check(os.path.exists(J(out, fn)) and open(J(out, fn), "rb").read() == open(J(base_dir, fn), "rb").read(),
                  f"{out}: {fn} is not the base's, byte for byte")
    rec = json.load(open(J(out, "quarry-export.json")))
    listed = set(rec["files"])
    present = {f for f in os.listdir(out) if f != "quarry-export.json"}
    check(listed == present, f"{out}: quarry-export.json lists {sorted(listed)}, directory has {sorted(present)}")
    for fn in present & listed:
        h = hashlib.sha256(open(J(out, fn), "rb").read()).hexdigest()
        check(rec["files"][fn]["sha256"] == h, f"{out}: sha256 of {fn} in quarry-export.json is wrong")
        check(rec["files"][fn]["bytes"] == os.path.getsize(J(out, fn)), f"{out}: size of {fn} is wrong")
    return rec


def check_index(out):
    idx = J(out, "model.safetensors.index.json")
    if not os.path.exists(idx):
        check(os.path.exists(J(out, "model.safetensors")), f"{out}: neither model.safetensors nor an index")
        return 1
    ix = json.load(open(idx))
    wm = ix["weight_map"]
    files = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    n = len(files)
    check(files == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)], f"{out}: shard names {files}")
    seen, total = {}, 0
    for fn in files:
        hdr = load(J(out, fn))
        for k, (dt, arr) in hdr.items():
            check(k not in seen, f"{out}: {k} in {fn} and {seen.get(k)}")
            seen[k] = fn
            total += arr.nbytes
    check(set(seen) == set(wm), f"{out}: index names differ from the shards' tensors")
    check(all(wm[k] == seen.get(k) for k in wm), f"{out}: index points a tensor to the wrong shard")
    check(ix["metadata"]["total_size"] == total, f"{out}: total_size {ix['metadata']['total_size']} != {total}")
    check(list(wm) == sorted(wm), f"{out}: weight_map not sorted")
    return n


def check_merged(base_dir, run_dir, out32, out16, dt16):
    """out32: fp32 export; out16: bf16 or fp16 export of the same run."""
    ref = merged_reference(base_dir, run_dir)
    base = load_dir(base_dir)
    e32 = load_dir(out32)
    e16 = load_dir(out16)
    check(set(e32) == set(base) == set(e16), f"{out32}: tensor names differ from the base's")
    check("lm_head.weight" not in e32, f"{out32}: lm_head.weight present though embeddings are tied")
    adapter = load(J(run_dir, "final", "adapter_model.safetensors"))
    adapted = {k[len("base_model.model."):-len(".lora_A.weight")] + ".weight" for k in adapter if ".lora_A." in k}
    check(adapted <= set(ref), f"{run_dir}: adapter names outside the base")
    worst = 0.0
    for k, w in ref.items():
        dt, got = e32[k]
        check(dt == "F32", f"{out32}: {k} is {dt}")
        err = np.abs(got.astype(np.float64) - w)
        bad = err > 1e-6 * np.abs(w) + 1e-30
        if bad.any():
            i = np.unravel_index(np.argmax(err - 1e-6 * np.abs(w)), w.shape)
            check(False, f"{out32}: {k}{list(i)} = {got[i]!r}, numpy W + scale·B·A = {w[i]!r}")
        worst = max(worst, float((err / np.maximum(np.abs(w), 1e-30)).max()))
        # The 16-bit export is the RNE rounding of the fp32 result: one rounding, bit for bit.
        dt16_got, got16 = e16[k]
        if dt16 == "bf16":
            want16 = bf16_rne(got)
            check(dt16_got == "BF16" and np.array_equal(got16, want16),
                  f"{out16}: {k}: {int((got16 != want16).sum())} elements are not RNE(fp32 merge)")
            # ... and of the exact result too (where fp32 itself rounded to the same value).
            exact = np.float32(w)
            same = exact == got
            check(np.array_equal(got16[same], bf16_rne(exact)[same]), f"{out16}: {k} not RNE of the exact merge")
        else:
            want16 = got.astype(np.float16)
            check(dt16_got == "F16" and np.array_equal(got16.view(np.uint16), want16.view(np.uint16)),
                  f"{out16}: {k}: fp16 is not the RNE rounding of the fp32 merge")
        if k not in adapted:
            bdt, barr = base[k]
            if bdt == "F32":
                check(np.array_equal(got.view(np.uint32), barr.view(np.uint32)), f"{out32}: {k} changed")
            if bdt == "BF16" and dt16 == "bf16":
                check(np.array_equal(got16, barr), f"{out16}: {k} changed")
    print(f"merge {run_dir}: worst relative error {worst:.2e} over {len(ref)} tensors")


def check_peft(run_dir, out):
    a = json.load(open(J(out, "adapter_config.json")))
    src = json.load(open(J(run_dir, "final", "adapter_config.json")))
    for key in ("r", "lora_alpha", "target_modules", "use_rslora", "peft_type"):
        check(a.get(key) == src.get(key), f"{out}: adapter_config {key} = {a.get(key)!r}, run has {src.get(key)!r}")
    # The package names the base without a local path: here the base directory's own name.
    check(a.get("base_model_name_or_path") == os.path.basename(json.load(open(J(run_dir, "run.json")))["base_model"]),
          f"{out}: base_model_name_or_path {a.get('base_model_name_or_path')}")
    got = load(J(out, "adapter_model.safetensors"))
    want = load(J(run_dir, "final", "adapter_model.safetensors"))
    check(list(got) == list(want) or set(got) == set(want), f"{out}: adapter tensor names differ")
    for k in want:
        check(k in got and np.array_equal(to_f32(*got[k]), to_f32(*want[k])), f"{out}: {k} differs from the run's")
    check(all(k.startswith("base_model.model.model.layers.") and (".lora_A.weight" in k or ".lora_B.weight" in k)
              for k in got), f"{out}: adapter names are not PEFT's")
    check_names = set(os.listdir(out))
    check(check_names == {"adapter_config.json", "adapter_model.safetensors", "quarry-export.json"},
          f"{out}: PEFT package holds {sorted(check_names)}")


# 1. Synthetic LoRA runs (plain on the fp32 base, rsLoRA on the bf16 base).
runs = []
for name, bdt, r, alpha, rs in (("lora-fp32", "fp32", 4, 8, False), ("rslora-bf16", "bf16", 8, 16, True)):
    rd = J(work, "run-" + name)
    make_lora_run(rd, bases[bdt], r, alpha, rs, seed=len(runs) + 1)
    runs.append((rd, bases[bdt], bdt))

# 2. A real LoRA run of `quarry train`, when the trainer exists.
real = J(work, "run-real")
p = run([quarry, "train", "--model", bases["fp32"], "--data", train_data, "--max-seq-len", "96", "--epochs", "1",
         "--device", "cpu", "--out", real], expect=None)
if p.returncode == 3:
    print("NOTE: quarry train is not available in this build; the real-run export is not checked")
elif check(p.returncode == 0, f"quarry train exited {p.returncode}:\n{p.stderr[-2000:]}"):
    runs.append((real, bases["fp32"], "fp32"))

for rd, bd, bdt in runs:
    o32, o16, ofp16, opeft = rd + "-m32", rd + "-mbf16", rd + "-mfp16", rd + "-peft"
    export(rd, o32, "--dtype", "fp32")
    export(rd, o16, "--dtype", "bf16", "--shard-size", "600KB")
    check_merged(bd, rd, o32, o16, "bf16")
    n = check_index(o16)
    check(n > 1, f"{o16}: --shard-size 600KB gave {n} shard(s)")
    check_index(o32)
    check_package_files(bd, o32, "float32")
    rec = check_package_files(bd, o16, "bfloat16")
    check(rec["source"]["method"] == "lora" and rec["format"] == "merged" and rec["lora"]["r"] > 0,
          f"{o16}: quarry-export.json source/format/lora: {rec.get('source')} {rec.get('format')}")
    if rd == runs[0][0]:
        export(rd, ofp16, "--dtype", "fp16")
        check_merged(bd, rd, o32, ofp16, "fp16")
    # Default dtype: the base's.
    od = rd + "-mdefault"
    export(rd, od)
    want = "float32" if bdt == "fp32" else "bfloat16"
    check(json.load(open(J(od, "config.json")))["torch_dtype"] == want, f"{od}: default dtype is not the base's")
    export(rd, opeft, "--format", "peft")
    check_peft(rd, opeft)
    for o in (o32, o16, od):
        pf = run([quarry, "preflight", o, "--json"], expect=None)
        check(pf.returncode == 0, f"preflight {o} exited {pf.returncode}:\n{pf.stdout}")
        doc = json.loads(pf.stdout)
        check(doc["result"] == "pass" and all(c["status"] == "pass" for c in doc["checks"]),
              f"preflight {o}: {[c for c in doc['checks'] if c['status'] != 'pass']}")

# 3. Full fine-tune (synthetic, and real when the trainer is built): the final weights, rounded once.
full = J(work, "run-full")
make_full_run(full, bases["bf16"], seed=9)
fulls = [full]
realfull = J(work, "run-real-full")
p = run([quarry, "train", "--model", bases["bf16"], "--method", "full", "--data", train_data, "--max-seq-len", "96",
         "--epochs", "1", "--device", "cpu", "--out", realfull], expect=None)
if p.returncode != 3 and check(p.returncode == 0, f"quarry train --method full exited {p.returncode}"):
    fulls.append(realfull)
for fr in fulls:
    export(fr, fr + "-m16", "--dtype", "bf16")
    export(fr, fr + "-m32", "--dtype", "fp32")
    fin = load(J(fr, "final", "model.safetensors"))
    e16, e32 = load_dir(fr + "-m16"), load_dir(fr + "-m32")
    check(set(e16) == set(fin) == set(load_dir(bases["bf16"])), f"{fr}: tensor names differ from the final weights'")
    for k, (dt, arr) in fin.items():
        f32 = to_f32(dt, arr)
        check(np.array_equal(e32[k][1].view(np.uint32), f32.view(np.uint32)), f"{fr} fp32 export: {k} differs")
        check(np.array_equal(e16[k][1], bf16_rne(f32)), f"{fr} bf16 export: {k} is not RNE(final)")
    check_package_files(bases["bf16"], fr + "-m16", "bfloat16")
    check(json.load(open(J(fr + "-m16", "quarry-export.json")))["source"]["method"] == "full", f"{fr}: method")
    export(fr, fr + "-peft", "--format", "peft", expect=1)

# 4. --model alone: the checkpoint repackaged.
om = J(work, "model-only")
export(None, om, "--dtype", "bf16", model=bases["fp32"])
e = load_dir(om)
b = load_dir(bases["fp32"])
check(all(np.array_equal(e[k][1], bf16_rne(b[k][1])) for k in b), "--model export: not RNE of the base")

# 4b. RUN with --model: the base named on the command line instead of run.json's.
moved = J(work, "base-moved")
shutil.copytree(runs[0][1], moved)
export(runs[0][0], J(work, "override"), "--dtype", "fp32", model=moved)
check(open(J(work, "override", "model.safetensors"), "rb").read() ==
      open(runs[0][0] + "-m32/model.safetensors", "rb").read(), "RUN --model BASE differs from RUN alone")
check(json.load(open(J(work, "override", "quarry-export.json")))["source"]["base_model"] == os.path.basename(moved),
      "quarry-export.json does not name the --model base")

# 5. --out: a non-empty directory is refused without --force, replaced with it.
target = J(work, "occupied")
os.makedirs(target)
open(J(target, "keep.txt"), "w").write("mine")
p = export(runs[0][0], target, expect=1)
check("not empty" in p.stderr and "--force" in p.stderr, f"refusal message: {p.stderr}")
check(os.listdir(target) == ["keep.txt"], "a refused export touched --out")
export(runs[0][0], target, "--force")
check(not os.path.exists(J(target, "keep.txt")) and os.path.exists(J(target, "quarry-export.json")),
      "--force did not replace --out")
leftovers = [f for f in os.listdir(work) if ".tmp-" in f or ".old-" in f]
check(not leftovers, f"temporary directories left behind: {leftovers}")
empty = J(work, "empty-out")
os.makedirs(empty)
export(runs[0][0], empty)   # an empty --out is fine without --force
p = export(J(work, "no-such-run"), J(work, "x"), expect=1)
check("error" in p.stderr, "a missing run is not reported")
p = export(bases["fp32"], J(work, "x"), expect=1)
check("--model" in p.stderr, f"a checkpoint given as RUN: {p.stderr}")
p = run([quarry, "export", runs[0][0], "--out", J(work, "x"), "--dtype", "int8"], expect=2)
check("bf16" in p.stderr, "--dtype int8 is not refused with the choices")

# 5b. Broken runs are refused with the reason, and leave nothing behind.
def broken_run(name, edit, needle):
    rd = J(work, "badrun-" + name)
    shutil.copytree(runs[0][0], rd)
    edit(rd)
    out = J(work, "badrun-" + name + "-out")
    p = export(rd, out, expect=1)
    check(needle in p.stderr, f"broken run {name}: message {p.stderr.strip()!r} does not name {needle!r}")
    check(not os.path.exists(out), f"broken run {name}: {out} was created")


def edit_adapter(fn):
    def e(rd):
        f = J(rd, "final", "adapter_model.safetensors")
        t = {k: v[1] for k, v in load(f).items()}
        fn(t)
        save_file(t, f, metadata={"format": "pt"})
    return e


def edit_run_json(fname, fn):
    def e(rd):
        c = json.load(open(J(rd, fname)))
        fn(c)
        json.dump(c, open(J(rd, fname), "w"))
    return e


QA = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
QB = QA.replace("lora_A", "lora_B")
broken_run("no-final", lambda rd: shutil.rmtree(J(rd, "final")), "has not finished")
broken_run("missing-B", edit_adapter(lambda t: t.pop(QB)), QA)
broken_run("rank", edit_adapter(lambda t: t.__setitem__(QA, np.zeros((3, 128), np.float32))), QA)
broken_run("shape", edit_adapter(lambda t: t.__setitem__(QB, np.zeros((7, t[QB].shape[1]), np.float32))),
           "self_attn.q_proj")
broken_run("lm-head", edit_adapter(lambda t: t.update({
    "base_model.model.lm_head.lora_A.weight": np.zeros((4, 128), np.float32),
    "base_model.model.lm_head.lora_B.weight": np.zeros((881, 4), np.float32)})), "lm_head")
broken_run("dora", edit_run_json("final/adapter_config.json", lambda c: c.__setitem__("use_dora", True)), "DoRA")
broken_run("disagree", edit_run_json("run.json", lambda c: c["settings"].__setitem__("lora_r", 64)), "disagree")
broken_run("method", edit_run_json("run.json", lambda c: c["settings"].__setitem__("method", "qlora")), "method")

# 6. Preflight on broken packages.
good = runs[0][0] + "-m32"


def broken(name, edit):
    d = J(work, "broken-" + name)
    shutil.copytree(good, d)
    edit(d)
    p = run([quarry, "preflight", d, "--json"], expect=None)
    return p.returncode, json.loads(p.stdout) if p.stdout.strip().startswith("{") else None, p


def status(doc, check_name):
    for c in doc["checks"]:
        if c["name"] == check_name:
            return c["status"], c["reason"]
    return None, ""


def edit_tensors(fn):
    def e(d):
        t = {k: v[1] for k, v in load(J(d, "model.safetensors")).items()}
        fn(t)
        save_file(t, J(d, "model.safetensors"), metadata={"format": "pt"})
    return e


def edit_json(fname, fn):
    def e(d):
        c = json.load(open(J(d, fname)))
        fn(c)
        json.dump(c, open(J(d, fname), "w"), indent=2)
    return e


MISSING = "model.layers.1.mlp.up_proj.weight"
cases = [
    ("missing-tensor", edit_tensors(lambda t: t.pop(MISSING)), "tensors", "fail", MISSING),
    ("wrong-shape", edit_tensors(lambda t: t.__setitem__(MISSING, np.ascontiguousarray(t[MISSING].T))), "tensors",
     "fail", MISSING),
    ("nan", edit_tensors(lambda t: t[MISSING].__setitem__((3, 5), np.nan)), "finite", "fail", MISSING),
    ("inf", edit_tensors(lambda t: t["model.norm.weight"].__setitem__(0, np.inf)), "finite", "fail", "model.norm"),
    ("int8-tensor", edit_tensors(lambda t: t.__setitem__("model.norm.weight", np.ones(128, np.int8))), "dtype", "fail",
     "I8"),
    ("arch", edit_json("config.json", lambda c: c.__setitem__("architectures", ["GPT2LMHeadModel"])), "architecture",
     "fail", "GPT2LMHeadModel"),
    ("dtype", edit_json("config.json", lambda c: c.__setitem__("torch_dtype", "int8")), "dtype", "fail", "int8"),
    ("context", edit_json("config.json", lambda c: c.__setitem__("max_position_embeddings", 262144)), "context", "fail",
     "262144"),
    ("bad-json", lambda d: open(J(d, "config.json"), "a").write("}"), "config", "fail", "config.json"),
    ("no-tokenizer-config", lambda d: os.remove(J(d, "tokenizer_config.json")), "tokenizer", "fail",
     "tokenizer_config.json"),
    ("no-weights", lambda d: os.remove(J(d, "model.safetensors")), "weights", "fail", "model.safetensors"),
    ("two-templates", lambda d: open(J(d, "chat_template.jinja"), "w").write("{{ messages }}"), "chat_template",
     "warn", "chat_template.jinja"),
    ("no-template", edit_json("tokenizer_config.json", lambda c: c.pop("chat_template")), "chat_template", "warn",
     "Converse"),
]
for name, edit, which, want, needle in cases:
    rc, doc, p = broken(name, edit)
    if not check(doc is not None, f"preflight broken-{name}: no JSON:\n{p.stdout}\n{p.stderr}"):
        continue
    st, reason = status(doc, which)
    check(st == want and needle in reason,
          f"preflight broken-{name}: check {which} is {st} ({reason!r}), want {want} naming {needle!r}")
    check(rc == (1 if want == "fail" else 0), f"preflight broken-{name}: exit {rc}")
    others = [c for c in doc["checks"] if c["name"] != which and c["status"] == "fail"]
    if name not in ("int8-tensor", "no-weights", "bad-json"):
        check(not others, f"preflight broken-{name}: other checks failed too: {others}")
# A PEFT adapter is not a CMI package.
rc, doc, p = (lambda p: (p.returncode, json.loads(p.stdout), p))(
    run([quarry, "preflight", runs[0][0] + "-peft", "--json"], expect=None))
check(rc == 1 and status(doc, "package")[0] == "fail", "preflight on a PEFT adapter does not fail")
# The text report names each check.
p = run([quarry, "preflight", good], expect=0)
check("PASS  architecture" in p.stdout and "preflight" in p.stdout, f"text report:\n{p.stdout}")

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("export: all checks passed")
