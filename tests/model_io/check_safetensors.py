"""quarry's safetensors reader and writer against the Python `safetensors` library.

Files the library writes (F32/F16/BF16, single and sharded) read back equal through quarry;
files quarry writes are byte-identical to what the library writes for the same tensors; the
float16/bfloat16 roundings equal numpy's (fp16) and an exact nearest-even reference (bf16);
every malformed header is refused with its own message naming the file and the tensor.

Usage: check_safetensors.py TOOL"""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from safetensors import TensorSpec, serialize_file
    from safetensors.numpy import load_file, save_file
except ImportError as e:
    print("SKIP: python oracle missing:", e)
    sys.exit(77)

TOOL = sys.argv[1]
failures = 0
checks = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL", msg)


def tool(*args):
    return subprocess.run([TOOL, *args], capture_output=True, text=True)


def bf16_bits_exact(x32):
    """Nearest bfloat16 of each float32 (ties to even), chosen between the two neighbouring
    bfloat16 values by exact distance (float64 holds the differences exactly); past the largest
    bfloat16 the upper neighbour is infinity, which IEEE rounding treats as 2^128."""
    u = x32.view(np.uint32)
    lo = u & np.uint32(0xFFFF0000)
    hi_ = (lo.astype(np.uint64) + 0x10000).astype(np.uint32)
    with np.errstate(invalid="ignore", over="ignore"):
        x = x32.astype(np.float64)
        xl = lo.view(np.float32).astype(np.float64)
        xh = hi_.view(np.float32).astype(np.float64)
        xh = np.where((hi_ & 0x7FFFFFFF) == 0x7F800000, np.copysign(2.0**128, x), xh)
        dl, dh = np.abs(x - xl), np.abs(xh - x)
    even_lo = ((lo >> 16) & 1) == 0
    r = np.where(dl < dh, lo, np.where(dh < dl, hi_, np.where(even_lo, lo, hi_)))
    r = np.where(np.isinf(x32), u, r)
    return (r >> 16).astype(np.uint16)


def header_of(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


rng = np.random.default_rng(1234)
with tempfile.TemporaryDirectory() as tmp:
    P = lambda *a: os.path.join(tmp, *a)  # noqa: E731

    # 1. F32/F16/BF16 written by the library read back equal through st_read_f32.
    tensors = {
        "model.embed_tokens.weight": rng.standard_normal((7, 5)).astype(np.float32),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "half.w": (rng.standard_normal((3, 4, 5)) * 100).astype(np.float16),
        "z.last": rng.standard_normal((11,)).astype(np.float32),
    }
    bf = (rng.standard_normal((6, 3)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    specs = {k: TensorSpec(dtype=v.dtype.name, shape=list(v.shape), data_ptr=v.ctypes.data, data_len=v.nbytes)
             for k, v in tensors.items()}
    specs["bf.w"] = TensorSpec(dtype="bfloat16", shape=[6, 3], data_ptr=bf.ctypes.data, data_len=bf.nbytes)
    serialize_file(specs, P("mixed.safetensors"), metadata={"format": "pt"})
    r = tool("tof32", P("mixed.safetensors"), P("mixed32.safetensors"))
    checks += 1
    if r.returncode:
        fail(f"tof32 mixed: {r.stdout}{r.stderr}")
    else:
        got = load_file(P("mixed32.safetensors"))
        want = {k: v.astype(np.float32) for k, v in tensors.items()}
        want["bf.w"] = (bf.astype(np.uint32) << 16).view(np.float32)
        if sorted(got) != sorted(want):
            fail(f"tensor names {sorted(got)} != {sorted(want)}")
        for k, v in want.items():
            if k in got and (got[k].shape != v.shape or not np.array_equal(got[k], v)):
                fail(f"{k}: quarry read {got[k].ravel()[:4]} shape {got[k].shape}, library wrote {v.ravel()[:4]} shape {v.shape}")
    r = tool("meta", P("mixed.safetensors"), "format")
    checks += 1
    if r.stdout.strip() != "pt":
        fail(f"metadata format: {r.stdout!r}")

    # 2. The writer is byte-identical to the library for the same tensors and metadata.
    r = tool("rewrite", P("mixed.safetensors"), P("rewritten.safetensors"))
    checks += 1
    a, b = open(P("mixed.safetensors"), "rb").read(), open(P("rewritten.safetensors"), "rb").read()
    if r.returncode or a != b:
        fail(f"quarry's file differs from the library's ({len(b)} vs {len(a)} bytes): {b[:200]!r} vs {a[:200]!r} {r.stderr}")
    save_file({"a.b": np.arange(3, dtype=np.float32)}, P("one.safetensors"), metadata={"format": "pt"})
    r = tool("rewrite", P("one.safetensors"), P("one_q.safetensors"))
    checks += 1
    if r.returncode or open(P("one.safetensors"), "rb").read() != open(P("one_q.safetensors"), "rb").read():
        fail("single-tensor file differs from save_file's")
    checks += 1
    with open(P("one_q.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = f.read(n)
    if n % 8 or not h.rstrip(b" ").endswith(b"}") or h[len(h.rstrip(b" ")):].strip(b" "):
        fail(f"header of {n} bytes is not padded to 8 with spaces: {h!r}")

    # 3. Sharded, as transformers writes it: model-0000i-of-0000n.safetensors + index.json.
    os.mkdir(P("sharded"))
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in range(5)] + ["lm_head.weight"]
    arrays = {n: rng.standard_normal((4, 3)).astype(np.float16) for n in names}
    shards = [names[:2], names[2:5], names[5:]]
    wm = {}
    for i, sh in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: arrays[n] for n in sh}, P("sharded", fn), metadata={"format": "pt"})
        wm.update({n: fn for n in sh})
    index = {"metadata": {"total_size": sum(a.nbytes for a in arrays.values())}, "weight_map": wm}
    with open(P("sharded", "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    for target in (P("sharded"), P("sharded", "model.safetensors.index.json")):
        r = tool("tof32", target, P("sh32.safetensors"))
        checks += 1
        if r.returncode:
            fail(f"sharded {target}: {r.stdout}{r.stderr}")
        else:
            got = load_file(P("sh32.safetensors"))
            for n in names:
                if n not in got or not np.array_equal(got[n], arrays[n].astype(np.float32)):
                    fail(f"sharded tensor {n} differs")

    def bad_index(mutate, want):
        global checks
        checks += 1
        idx = json.loads(json.dumps(index))
        mutate(idx)
        with open(P("sharded", "model.safetensors.index.json"), "w") as f:
            json.dump(idx, f)
        r = tool("check", P("sharded"))
        if r.returncode != 1 or want not in r.stdout or "model.safetensors.index.json" not in r.stdout:
            fail(f"index case expecting {want!r}: rc {r.returncode}: {r.stdout.strip()}")

    bad_index(lambda i: i["weight_map"].pop(names[3]), f'tensor "{names[3]}" is in model-00002-of-00003.safetensors but not in the index')
    bad_index(lambda i: i["weight_map"].update({names[0]: "model-00002-of-00003.safetensors"}),
              f'tensor "{names[0]}" is in model-00001-of-00003.safetensors but weight_map says model-00002-of-00003.safetensors')
    bad_index(lambda i: i["weight_map"].update({"ghost.weight": "model-00001-of-00003.safetensors"}),
              'names tensor "ghost.weight" in model-00001-of-00003.safetensors, which does not hold it')
    bad_index(lambda i: i["weight_map"].update({"x": "../etc/passwd"}), "must name a file in the same directory")
    bad_index(lambda i: i.pop("weight_map"), '"weight_map" is missing')
    checks += 1
    with open(P("sharded", "model.safetensors.index.json"), "w") as f:
        json.dump(dict(index, weight_map=dict(wm, extra="model-00009-of-00009.safetensors")), f)
    r = tool("check", P("sharded"))
    if r.returncode != 1 or "model-00009-of-00009.safetensors: cannot open" not in r.stdout:
        fail(f"missing shard: {r.stdout.strip()}")

    # 4. Roundings: fp16 as numpy; bf16 nearest-even by exact distance; fp16 → f32 for all 65536.
    edge = np.array([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 65536.0, 1e-8, 2.0**-24, 2.0**-25,
                     2.0**-25 * 1.0000001, 3 * 2.0**-26, 2.0**-14, 2.0**-14 * 0.99999, 1.00048828125, 1.0009765625,
                     1.00146484375, np.inf, -np.inf, np.nan, 3.4028235e38, -3.4028235e38, 3.3961775e38, 3.3895314e38,
                     1.00390625, 1.01171875, 1.0078125, 1e-40, -1e-45],
                    dtype=np.float32)
    bits = rng.integers(0, 2**32, size=200000, dtype=np.uint64).astype(np.uint32)
    near = (rng.integers(0, 2**16, size=20000, dtype=np.uint64).astype(np.uint32) << 16) | 0x8000  # exact bf16 ties
    near16 = (rng.integers(0x3300, 0x4780, size=20000, dtype=np.uint64).astype(np.uint32) << 16) | \
        rng.integers(0, 2**16, size=20000, dtype=np.uint64).astype(np.uint32)  # dense around the fp16 range
    x = np.concatenate([edge, bits.view(np.float32), near.view(np.float32), near16.view(np.float32)])
    save_file({"x": x}, P("x32.safetensors"))
    for dt in ("f16", "bf16"):
        checks += 1
        r = tool("convert", P("x32.safetensors"), P(f"x_{dt}.safetensors"), dt)
        if r.returncode:
            fail(f"convert {dt}: {r.stdout}{r.stderr}")
            continue
        hdr = header_of(P(f"x_{dt}.safetensors"))
        if hdr["x"]["dtype"] != ("F16" if dt == "f16" else "BF16"):
            fail(f"convert {dt} wrote dtype {hdr['x']['dtype']}")
        raw = open(P(f"x_{dt}.safetensors"), "rb").read()
        got = np.frombuffer(raw[8 + struct.unpack("<Q", raw[:8])[0]:], dtype=np.uint16)
        with np.errstate(over="ignore"):
            want = x.astype(np.float16).view(np.uint16) if dt == "f16" else bf16_bits_exact(x)
        gnan = np.isnan((got.astype(np.uint32) << 16).view(np.float32)) if dt == "bf16" else np.isnan(got.view(np.float16))
        wnan = np.isnan(x)
        ok = (got == want) | (gnan & wnan)
        if not np.all(ok) or not np.array_equal(gnan, wnan):
            i = np.nonzero(~ok | (gnan != wnan))[0][:5]
            fail(f"{dt} rounding differs at {len(np.nonzero(~ok)[0])} values, e.g. " +
                 ", ".join(f"{x[j]!r} ({x.view(np.uint32)[j]:#010x}): quarry {got[j]:#06x} want {want[j]:#06x}" for j in i))
    checks += 1
    allh = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    save_file({"h": allh}, P("h16.safetensors"))
    r = tool("tof32", P("h16.safetensors"), P("h32.safetensors"))
    got = load_file(P("h32.safetensors"))["h"] if not r.returncode else None
    want = allh.astype(np.float32)
    if got is None or not np.array_equal(got.view(np.uint32)[~np.isnan(want)], want.view(np.uint32)[~np.isnan(want)]) \
            or not np.array_equal(np.isnan(got), np.isnan(want)):
        fail("f16 → f32 differs from numpy over the 65536 halves")

    # 5. Malformed files: each refused with its own message (naming the file and the tensor).
    def raw_file(header, data=b"", length=None, hdr_bytes=None):
        hb = hdr_bytes if hdr_bytes is not None else json.dumps(header, separators=(",", ":")).encode()
        n = len(hb) if length is None else length
        return struct.pack("<Q", n) + hb + data

    T = lambda dt, shape, a, b: {"dtype": dt, "shape": shape, "data_offsets": [a, b]}  # noqa: E731
    cases = [
        ("short", b"\x01\x00\x00", "too short for a safetensors file"),
        ("hugelen", struct.pack("<Q", 2**40) + b"{}", "over the 100 MB"),
        ("pastend", raw_file({}, length=100), "reaches past the end"),
        ("notjson", raw_file(None, hdr_bytes=b'{"a":'), "invalid JSON"),
        ("notobject", raw_file(None, hdr_bytes=b'[1, 2, 3]'), "must be a JSON object"),
        ("trailing", raw_file(None, hdr_bytes=b'{} x'), "trailing bytes"),
        ("nul", raw_file(None, hdr_bytes=b'{}\x00  '), "NUL byte"),
        ("control", raw_file(None, hdr_bytes=b'{\x01}'), "control byte 0x01 at header offset 1"),
        ("dtype", raw_file({"w": T("F7", [1], 0, 4)}, b"\0" * 4), 'tensor "w": unknown dtype "F7"'),
        ("dtype_type", raw_file({"w": T(5, [1], 0, 4)}, b"\0" * 4), 'tensor "w": unknown dtype'),
        ("shape_bytes", raw_file({"w": T("F32", [2, 3], 0, 20)}, b"\0" * 20), 'tensor "w": shape × dtype is 24 bytes'),
        ("shape_neg", raw_file({"w": T("F32", [-1], 0, 4)}, b"\0" * 4), 'tensor "w": shape[0] is not a non-negative'),
        ("shape_float", raw_file({"w": T("F32", [1.5], 0, 4)}, b"\0" * 4), 'tensor "w": shape[0]'),
        ("shape_type", raw_file({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, b"\0" * 8), 'tensor "w": shape must be a list'),
        ("offsets_len", raw_file({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, b"\0" * 4), 'tensor "w": data_offsets must be [begin, end]'),
        ("offsets_rev", raw_file({"w": T("F32", [0], 8, 4)}, b"\0" * 8), 'tensor "w": data_offsets [8, 4] end before'),
        ("offsets_past", raw_file({"w": T("F32", [4], 0, 16)}, b"\0" * 8), 'tensor "w": data_offsets [0, 16] reach past the data section (8 bytes)'),
        ("overlap", raw_file({"a": T("F32", [2], 0, 8), "b": T("F32", [2], 4, 12)}, b"\0" * 12), 'tensor "b": data_offsets [4, 12] overlap tensor "a"'),
        ("gap", raw_file({"a": T("F32", [1], 0, 4), "b": T("F32", [1], 8, 12)}, b"\0" * 12), 'tensor "b": data_offsets [8, 12] leave a gap of 4 bytes'),
        ("leftover", raw_file({"a": T("F32", [1], 0, 4)}, b"\0" * 12), "the tensors cover 4 bytes of a 12-byte data section"),
        ("dup", raw_file(None, b"\0" * 8, hdr_bytes=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'), 'tensor "a" appears twice'),
        ("missing", raw_file({"w": {"dtype": "F32", "shape": [1]}}, b"\0" * 4), 'tensor "w": header entry lacks "data_offsets"'),
        ("extra", raw_file({"w": dict(T("F32", [1], 0, 4), offsets=1)}, b"\0" * 4), 'tensor "w": unknown header field "offsets"'),
        ("entry_type", raw_file({"w": [1, 2]}), 'tensor "w": header entry must be an object'),
        ("meta_type", raw_file({"__metadata__": {"format": 1}}), '__metadata__["format"] must be a string'),
        ("huge_shape", raw_file({"w": T("F32", [2**40, 2**40], 0, 4)}, b"\0" * 4), 'tensor "w": shape overflows'),
        ("f4_odd", raw_file({"w": T("F4", [3], 0, 2)}, b"\0" * 2), "do not fill whole bytes"),
        ("dims", raw_file({"w": T("F32", [1] * 9, 0, 4)}, b"\0" * 4), "9 dimensions"),
    ]
    for name, blob, want in cases:
        checks += 1
        path = P(f"bad_{name}.safetensors")
        with open(path, "wb") as f:
            f.write(blob)
        r = tool("check", path)
        if r.returncode != 1 or want not in r.stdout or path not in r.stdout:
            fail(f"malformed case {name}: expected rc 1 and {want!r}; got rc {r.returncode}: {r.stdout.strip()} {r.stderr.strip()}")
    # Accepted edge cases: empty header "{}", metadata only, F4 pairs, padding with newlines.
    for name, blob, n in (("empty", raw_file({}), 0), ("meta_only", raw_file({"__metadata__": {"format": "pt"}}), 0),
                          ("f4", raw_file({"w": T("F4", [4], 0, 2)}, b"\0" * 2), 1),
                          ("pad", raw_file(None, b"\0" * 4, hdr_bytes=b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}\n  '), 1)):
        checks += 1
        path = P(f"ok_{name}.safetensors")
        with open(path, "wb") as f:
            f.write(blob)
        r = tool("check", path)
        if r.returncode or r.stdout.strip() != f"ok {n}":
            fail(f"valid case {name} refused: {r.stdout.strip()}")
    checks += 1
    r = tool("check", P("nonexistent.safetensors"))
    if r.returncode != 1 or "nonexistent.safetensors" not in r.stdout:
        fail(f"missing file: {r.stdout}")
    os.mkdir(P("emptydir"))
    checks += 1
    r = tool("check", P("emptydir"))
    if r.returncode != 1 or "neither model.safetensors nor model.safetensors.index.json" not in r.stdout:
        fail(f"empty dir: {r.stdout}")

print(f"check_safetensors: {checks} checks, {failures} failed")
sys.exit(1 if failures else 0)
