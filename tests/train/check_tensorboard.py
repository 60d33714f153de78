"""Reads a run directory's TensorBoard event files with TensorBoard's own reader and checks that
they hold the CSVs' values, value by value (float32 of the CSV's text), at the CSVs' steps.

usage: check_tensorboard.py RUN FILES [--truncate]
  FILES: how many events.out.tfevents.* files RUN must hold (one per training session).
  --truncate: also cut a copy of the newest file inside its last record (a crash mid-write) and
  check that the reader still returns every event before it.
"""
import csv, glob, math, os, shutil, sys, tempfile

import numpy as np
from tensorboard.backend.event_processing import event_accumulator, event_file_loader

run, want_files = sys.argv[1], int(sys.argv[2])
fails = []

files = sorted(glob.glob(os.path.join(run, "events.out.tfevents.*")))
if len(files) != want_files:
    fails.append(f"{len(files)} event files, want {want_files}: {files}")
for f in files:
    first = next(iter(event_file_loader.RawEventFileLoader(f).Load()), None)
    from tensorboard.compat.proto import event_pb2
    ev = event_pb2.Event.FromString(first) if first else None
    if not ev or ev.file_version != "brain.Event:2":
        fails.append(f"{f}: first event has no file_version brain.Event:2: {ev}")

acc = event_accumulator.EventAccumulator(run, size_guidance={event_accumulator.SCALARS: 0})
acc.Reload()
tags = set(acc.Tags()["scalars"])

def rows(name):
    with open(os.path.join(run, name)) as fh:
        return list(csv.DictReader(fh))

train, val = rows("step_wise_training_metrics.csv"), rows("validation_metrics.csv")
columns = {"train/loss": "training_loss", "train/learning_rate": "learning_rate", "train/grad_norm": "grad_norm",
           "train/tokens_per_second": "tokens_per_second", "train/mfu": "mfu"}
if train and "aux_loss" in train[0]:
    columns["train/aux_loss"] = "aux_loss"
want = set(columns) | ({"validation/loss"} if val else set())
if tags != want:
    fails.append(f"scalar tags {sorted(tags)}, want {sorted(want)}")

def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b

def compare(tag, csv_rows, column):
    if tag not in tags:
        return
    got = [(e.step, e.value) for e in acc.Scalars(tag)]
    exp = [(int(r["step_number"]), float(np.float32(float(r[column])))) for r in csv_rows]
    if [s for s, _ in got] != [s for s, _ in exp]:
        fails.append(f"{tag}: steps {[s for s, _ in got]}, CSV {[s for s, _ in exp]}")
        return
    for (step, g), (_, e) in zip(got, exp):
        if not same(g, e):
            fails.append(f"{tag} step {step}: TensorBoard {g!r}, CSV {column} {e!r}")

for tag, column in columns.items():
    compare(tag, train, column)
compare("validation/loss", val, "validation_loss")

if "--truncate" in sys.argv and files:
    newest = files[-1]
    events = list(event_file_loader.RawEventFileLoader(newest).Load())
    size = os.path.getsize(newest)
    with tempfile.TemporaryDirectory() as d:
        cut = os.path.join(d, os.path.basename(newest))
        shutil.copy(newest, cut)
        os.truncate(cut, size - 7)   # inside the last record's data
        got = list(event_file_loader.RawEventFileLoader(cut).Load())
        if got != events[:-1]:
            fails.append(f"a file cut inside its last record reads {len(got)} events, want the {len(events) - 1} before it")

for f in fails:
    print("FAIL tensorboard", run + ":", f)
print(f"checked {run}: {len(files)} event file(s), {len(train)} training and {len(val)} validation rows")
sys.exit(1 if fails else 0)
