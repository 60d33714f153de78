#!/usr/bin/env python3
"""HF `tokenizers` encoding speed, one thread, no batching: one Tokenizer.encode per document.
usage: tokenizer_hf.py TOKENIZER.json CORPUS.jsonl   (run with RAYON_NUM_THREADS=1)"""
import json
import sys
import time

from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
with open(sys.argv[2], encoding="utf-8") as f:
    docs = [json.loads(l) for l in f]
nbytes = sum(len(d.encode("utf-8")) for d in docs)
t0 = time.perf_counter()
ntok = 0
for d in docs:
    ntok += len(tok.encode(d, add_special_tokens=False).ids)
dt = time.perf_counter() - t0
print(f"hf 1 thread: {nbytes / 1e6:.1f} MB in {dt:.2f} s = {nbytes / 1e6 / dt:.2f} MB/s, {ntok} tokens")
