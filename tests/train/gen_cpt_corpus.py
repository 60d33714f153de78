#!/usr/bin/env python3
# A continued-pre-training corpus of about MB megabytes: {"input": text} records of 200–600
# pseudo-words from a fixed vocabulary, deterministic for a seed.
import json, random, sys
mb, seed, out = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = random.Random(seed)
words = ["the", "pump", "valve", "pressure", "manual", "section", "torque", "inspect", "replace", "filter",
         "seal", "housing", "bolt", "gasket", "operator", "safety", "maintenance", "schedule", "hours", "rated",
         "temperature", "flow", "check", "before", "after", "each", "shift", "record", "level", "oil"]
target, size = int(mb * 1e6), 0
with open(out, "w") as f:
    while size < target:
        n = rng.randint(200, 600)
        line = json.dumps({"input": " ".join(rng.choice(words) + ("." if rng.random() < 0.08 else "") for _ in range(n))}) + "\n"
        f.write(line)
        size += len(line)
