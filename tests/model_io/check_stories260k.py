"""stories260K converted to a Hugging Face Llama directory (scripts/reference/convert_stories260k.py):
quarry reads it with the expected config and every tensor the config implies; the converted
weights in HF's layout (rotate-half RoPE) compute the same logits as llama2.c's own layout
(interleaved RoPE) in a numpy forward; that forward's greedy continuation from BOS, decoded by
HF tokenizers with the converted tokenizer.json, is the text in stories260K.md; and tokenizer.json
encodes strings as llama2.c's encode does (re-implemented here from run.c) and as SentencePiece
does with the rebuilt tokenizer.model.

Leaves the converted directory in $QUARRY_BUILD_DIR/stories260K-hf for other tests.
Usage: check_stories260k.py TOOL SOURCE_DIR"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

testdata = os.environ.get("QUARRY_TESTDATA", "")
src_model = os.path.join(testdata, "models", "stories260K")
if not testdata or not os.path.exists(os.path.join(src_model, "stories260K.bin")):
    print("SKIP: ../shared/testdata not found (models/stories260K)")
    sys.exit(77)
try:
    import numpy as np
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
except ImportError as e:
    print("SKIP: python oracle missing:", e)
    sys.exit(77)

TOOL, SRC = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(SRC, "scripts", "reference"))
import convert_stories260k as conv  # noqa: E402

failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL", msg)


build = os.environ.get("QUARRY_BUILD_DIR") or tempfile.gettempdir()
final = os.path.join(build, "stories260K-hf")
tmp = tempfile.mkdtemp(prefix="stories260K-hf.", dir=build)
r = subprocess.run([sys.executable, os.path.join(SRC, "scripts", "reference", "convert_stories260k.py"), tmp, src_model],
                   capture_output=True, text=True)
if r.returncode:
    print("FAIL converter:", r.stderr)
    sys.exit(1)
shutil.rmtree(final, ignore_errors=True)
os.rename(tmp, final)
out = final

# quarry reads it: config and every expected tensor.
r = subprocess.run([TOOL, "verify", out], capture_output=True, text=True)
check(r.returncode == 0 and r.stdout.strip() == "ok", f"quarry verify: {r.stdout}")
q = json.loads(subprocess.run([TOOL, "config", out], capture_output=True, text=True).stdout)
want = {"architecture": "LlamaForCausalLM", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 172,
        "num_hidden_layers": 5, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 8,
        "max_position_embeddings": 512, "tie_word_embeddings": 1, "rope_theta": 10000, "rope_scaling": 0,
        "bos_token_id": 1, "eos_token_id": 2, "num_params": 260032}
for k, v in want.items():
    check(q.get(k) == v, f"quarry config {k} = {q.get(k)}, expected {v}")

cfg, raw = conv.read_model(os.path.join(src_model, "stories260K.bin"))
W = load_file(os.path.join(out, "model.safetensors"))
H, KV, C = cfg["n_heads"], cfg["n_kv"], cfg["dim"]
hs = C // H
inv = (1.0 / (10000.0 ** (np.arange(0, hs, 2, dtype=np.float32) / hs))).astype(np.float32)


def rmsnorm(x, w):
    return (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(1e-5))) * w


def rope_halves(x, pos):  # x [T, heads, hs]; transformers' rotate_half
    ang = pos[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], -1)[:, None, :]
    sin = np.concatenate([np.sin(ang), np.sin(ang)], -1)[:, None, :]
    rot = np.concatenate([-x[..., hs // 2:], x[..., :hs // 2]], -1)
    return x * cos + rot * sin


def rope_interleaved(x, pos):  # llama2.c: pairs (2j, 2j+1)
    ang = pos[:, None] * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y = np.empty_like(x)
    y[..., 0::2] = x0 * c - x1 * s
    y[..., 1::2] = x0 * s + x1 * c
    return y


def forward(tokens, layer, rope, final_norm, embed):
    T = len(tokens)
    pos = np.arange(T, dtype=np.float32)
    x = embed[tokens].astype(np.float32)
    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
    for l in range(cfg["n_layers"]):
        g = layer(l)
        h = rmsnorm(x, g["in"])
        qh = rope((h @ g["q"].T).reshape(T, H, hs), pos)
        kh = rope((h @ g["k"].T).reshape(T, KV, hs), pos)
        vh = (h @ g["v"].T).reshape(T, KV, hs)
        kh, vh = np.repeat(kh, H // KV, axis=1), np.repeat(vh, H // KV, axis=1)
        att = np.einsum("thd,shd->hts", qh, kh) / np.float32(np.sqrt(hs)) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, vh).reshape(T, H * hs)
        x = x + o @ g["o"].T
        h = rmsnorm(x, g["post"])
        gate = h @ g["gate"].T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ g["up"].T)) @ g["down"].T
    return rmsnorm(x, final_norm) @ embed.T


def hf_layer(l):
    p = f"model.layers.{l}."
    return {"in": W[p + "input_layernorm.weight"], "q": W[p + "self_attn.q_proj.weight"],
            "k": W[p + "self_attn.k_proj.weight"], "v": W[p + "self_attn.v_proj.weight"],
            "o": W[p + "self_attn.o_proj.weight"], "post": W[p + "post_attention_layernorm.weight"],
            "gate": W[p + "mlp.gate_proj.weight"], "up": W[p + "mlp.up_proj.weight"], "down": W[p + "mlp.down_proj.weight"]}


def l2c_layer(l):
    return {"in": raw["rms_att"][l], "q": raw["wq"][l], "k": raw["wk"][l], "v": raw["wv"][l], "o": raw["wo"][l],
            "post": raw["rms_ffn"][l], "gate": raw["w1"][l], "up": raw["w3"][l], "down": raw["w2"][l]}


probe = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 13, 67, 99, 300]
a = forward(probe, hf_layer, rope_halves, W["model.norm.weight"], W["model.embed_tokens.weight"])
b = forward(probe, l2c_layer, rope_interleaved, raw["rms_final"], raw["embed"])
rel = float(np.linalg.norm(a - b) / np.linalg.norm(b))
check(rel < 1e-5, f"HF-layout logits differ from llama2.c-layout logits: relative error {rel:.3g}")

def step(token, pos, cache):
    """One position of the same HF-layout forward, with a KV cache (per layer: lists of [KV, hs])."""
    p = np.array([pos], dtype=np.float32)
    x = W["model.embed_tokens.weight"][token][None, :].astype(np.float32)
    for l in range(cfg["n_layers"]):
        g = hf_layer(l)
        h = rmsnorm(x, g["in"])
        qh = rope_halves((h @ g["q"].T).reshape(1, H, hs), p)[0]
        cache[l][0].append(rope_halves((h @ g["k"].T).reshape(1, KV, hs), p)[0])
        cache[l][1].append((h @ g["v"].T).reshape(KV, hs))
        K = np.repeat(np.stack(cache[l][0]), H // KV, axis=1)   # [T, H, hs]
        V = np.repeat(np.stack(cache[l][1]), H // KV, axis=1)
        att = np.einsum("hd,thd->ht", qh, K) / np.float32(np.sqrt(hs))
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        x = x + np.einsum("ht,thd->hd", att, V).reshape(1, H * hs) @ g["o"].T
        h = rmsnorm(x, g["post"])
        gate = h @ g["gate"].T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ g["up"].T)) @ g["down"].T
    return (rmsnorm(x, W["model.norm.weight"]) @ W["model.embed_tokens.weight"].T)[0]


# The cached step agrees with the full forward.
cache = [([], []) for _ in range(cfg["n_layers"])]
stepped = np.stack([step(t, i, cache) for i, t in enumerate(probe)])
check(float(np.linalg.norm(stepped - a) / np.linalg.norm(a)) < 1e-5, "cached forward differs from the full forward")

# Greedy from BOS as llama2.c's run.c (-t 0, 256 steps: 256 forwards, each printing the token it
# picks, stopping at BOS), decoded by HF tokenizers.
tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
ids = [1]
cache = [([], []) for _ in range(cfg["n_layers"])]
while len(ids) < 257:
    nxt = int(np.argmax(step(ids[-1], len(ids) - 1, cache)))
    if nxt == 1:
        break
    ids.append(nxt)
text = tok.decode(ids[1:], skip_special_tokens=True)
md = open(os.path.join(src_model, "stories260K.md"), encoding="utf-8").read()
expected = re.search(r"-t 0\.0\n(.*?)```", md, re.S).group(1)
if text.strip() != expected.strip():
    k = next((i for i, (x, y) in enumerate(zip(text, expected)) if x != y), min(len(text), len(expected)))
    check(False, f"greedy text differs at character {k}:\n  got:  {text[max(0, k - 60):k + 60]!r}\n"
                 f"  want: {expected[max(0, k - 60):k + 60]!r}")


# tokenizer.json vs llama2.c's encode (run.c), re-implemented over tok512.bin.
def llama2c_encode(text, pieces):
    vocab = [p for p, _ in pieces]
    scores = [s for _, s in pieces]
    lookup = {}
    for i, p in enumerate(vocab):
        lookup.setdefault(p, i)
    toks = [1]
    if text:
        toks.append(lookup[" "])
    for ch in text:
        if ch in lookup:
            toks.append(lookup[ch])
        else:
            toks += [b + 3 for b in ch.encode("utf-8")]
    while True:
        best, bi, bid = -1e10, -1, -1
        for i in range(len(toks) - 1):
            j = lookup.get(vocab[toks[i]] + vocab[toks[i + 1]])
            if j is not None and scores[j] > best:
                best, bi, bid = scores[j], i, j
        if bi < 0:
            return toks
        toks[bi:bi + 2] = [bid]


pieces = conv.read_tokenizer(os.path.join(src_model, "tok512.bin"), 512)
strings = [expected.split("\n")[0], "Once upon a time", "Hello world", "", " leading space", "two  spaces",
           "tabs\tand\nnewlines\n", "digits 12345 and 3.14", "unicode: café, naïve, 日本語 🙂", "Lily's mom said, \"Lily!\"",
           "aaaaaaa bbbbbbbb", "   "]
try:
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "tokenizer.model"))
except Exception as e:  # the rebuilt model needs protobuf; the sentencepiece check is optional
    print("note: sentencepiece comparison skipped:", e)
    sp = None
# (HF matches the text "<s>" as the special token, as the published Llama tokenizer.json does;
# llama2.c spells it out. That difference is HF's convention and not checked here.)
for s in strings:
    want_ids = llama2c_encode(s, pieces)
    got_ids = tok.encode(s).ids
    check(got_ids == want_ids, f"tokenizer.json encodes {s!r} as {got_ids}, llama2.c as {want_ids}")
    if sp is not None:
        sp_ids = [1] + sp.encode(s)
        check(sp_ids == want_ids, f"sentencepiece encodes {s!r} as {sp_ids}, llama2.c as {want_ids}")
    if s:
        check(tok.decode(got_ids, skip_special_tokens=True) == s, f"decode(encode({s!r})) = {tok.decode(got_ids, skip_special_tokens=True)!r}")

print(f"check_stories260k: greedy {len(ids) - 1} tokens, logits rel {rel:.2g}, {len(strings)} strings; "
      f"{failures} failure(s)")
sys.exit(1 if failures else 0)
