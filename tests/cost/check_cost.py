#!/usr/bin/env python3
"""`quarry cost`: arithmetic on a fixed run.json, estimates, CMI's 5-minute windows, unknown prices
shown as unknown (null in JSON) and named by their flag, flags overriding the table, exit codes.

usage: check_cost.py QUARRY WORK_DIR
"""
import json
import math
import os
import subprocess
import sys

FAILS = []


def fail(msg):
    FAILS.append(msg)
    print("FAIL", msg)


def cost(q, *args):
    return subprocess.run([q, "cost"] + list(args), capture_output=True)


def cost_json(q, *args):
    r = cost(q, *args, "--json")
    if r.returncode != 0:
        fail(f"cost {' '.join(args)}: exit {r.returncode}: {r.stderr.decode()}")
        return None
    try:
        return json.loads(r.stdout)
    except ValueError as e:
        fail(f"cost {' '.join(args)}: JSON does not parse: {e}")
        return None


def near(name, got, want):
    if got is None or not math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12):
        fail(f"{name}: {got}, want {want}")


def main():
    q, work = sys.argv[1:3]
    os.makedirs(work, exist_ok=True)
    run = os.path.join(work, "run")
    os.makedirs(os.path.join(run, "final"), exist_ok=True)
    json.dump({"settings": {"epochs": 2},
               "result": {"steps": 100, "tokens_trained": 2000000, "train_seconds": 3600, "wall_seconds": 4000,
                          "tokens_per_second": 555.5, "gpus": 1, "gpu_hours": 1.0}},
              open(os.path.join(run, "run.json"), "w"))
    prices = ["--gpu-hour-price", "2.5", "--power-price", "0.2", "--gpu-watts", "700",
              "--base-model", "meta.llama3-1-8b-instruct-v1:0", "--price-per-1k-tokens", "0.002",
              "--storage-month-price", "1.5", "--pt-hour-price", "10", "--cmus", "2", "--cmu-minute-price", "0.05",
              "--cmu-storage-month-price", "1.25", "--hours-per-day", "2.5", "--days", "30"]
    j = cost_json(q, "--run", run, *prices)
    if j:
        near("gpu_hours", j["on_prem"]["gpu_hours"], 1.0)
        near("energy_kwh", j["on_prem"]["energy_kwh"], 0.7)
        near("on-prem training", j["on_prem"]["training_usd"], 2.5 + 0.7 * 0.2)
        near("managed training", j["managed"]["training_usd"], 2000000 / 1000 * 0.002)
        near("CMI billed minutes", j["serving"]["custom_model_import"]["billed_minutes"], 150 * 30)
        near("CMI month", j["serving"]["custom_model_import"]["usd_per_month"], 2 * 0.05 * 150 * 30)
        near("CMI storage", j["serving"]["custom_model_import"]["storage_usd_per_month"], 2 * 1.25)
        near("PT month", j["serving"]["provisioned_throughput"]["usd_per_month"], 10 * 24 * 30)
        near("first month on-prem", j["first_month"]["on_prem_usd"], 2.64 + 2 * 1.25 + 450)
        near("first month managed", j["first_month"]["managed_usd"], 4.0 + 1.5 + 7200)
        if j["managed"].get("price_date") is None or j["managed"].get("price_source") is None:
            fail("a table row without its source and date")
    # --gpus overrides the run's count: GPU-hours from the training time.
    j = cost_json(q, "--run", run, "--gpus", "4", "--gpu-hour-price", "3")
    if j:
        near("--gpus 4 GPU-hours", j["on_prem"]["gpu_hours"], 4.0)
        near("--gpus 4 cost", j["on_prem"]["training_usd"], 12.0)
    # Measured energy wins over --gpu-watts.
    r2 = os.path.join(work, "run-energy")
    os.makedirs(r2, exist_ok=True)
    json.dump({"result": {"tokens_trained": 1000, "train_seconds": 7200, "wall_seconds": 7300, "gpus": 2,
                          "gpu_hours": 4.0, "energy_joules": 3.6e6 * 5}}, open(os.path.join(r2, "run.json"), "w"))
    j = cost_json(q, "--run", r2, "--power-price", "0.3", "--gpu-watts", "100", "--gpu-hour-price", "1")
    if j:
        near("measured energy", j["on_prem"]["energy_kwh"], 5.0)
        near("measured energy cost", j["on_prem"]["training_usd"], 4.0 + 1.5)
        if j["on_prem"]["energy_from"] != "measured":
            fail(f"energy_from {j['on_prem']['energy_from']}")
    # Estimates: tokens × epochs ÷ tokens/s; with a run, at the run's throughput.
    j = cost_json(q, "--tokens", "1e6", "--epochs", "3", "--tokens-per-second", "1000", "--gpus", "8",
                  "--gpu-hour-price", "2", "--price-per-1k-tokens", "0.004")
    if j:
        near("estimate seconds", j["on_prem"]["train_seconds"], 3000)
        near("estimate GPU-hours", j["on_prem"]["gpu_hours"], 8 * 3000 / 3600)
        near("estimate on-prem", j["on_prem"]["training_usd"], 2 * 8 * 3000 / 3600)
        near("estimate managed", j["managed"]["training_usd"], 3e6 / 1000 * 0.004)
    j = cost_json(q, "--run", run, "--tokens", "1111000", "--gpu-hour-price", "1")
    if j:
        near("estimate at the run's tokens/s", j["on_prem"]["train_seconds"], 2 * 1111000 / 555.5)
    # 5-minute windows: 6 minutes a day bills 10.
    j = cost_json(q, "--run", run, "--hours-per-day", "0.1", "--days", "10", "--cmus", "1", "--cmu-minute-price", "1")
    if j:
        near("CMI windows", j["serving"]["custom_model_import"]["billed_minutes"], 100)
    # Unknown prices: null in JSON, "unknown" in the table with the flag to give.
    j = cost_json(q, "--run", run)
    if j:
        for path in (("on_prem", "training_usd"), ("managed", "training_usd"),
                     ("serving", "provisioned_throughput", "usd_per_month"), ("first_month", "managed_usd")):
            v = j
            for k in path:
                v = v[k]
            if v is not None:
                fail(f"{'.'.join(path)} = {v} without a price; want null")
    r = cost(q, "--run", run, "--base-model", "meta.llama3-1-8b-instruct-v1:0")
    out = r.stdout.decode()
    if r.returncode != 0 or "unknown" not in out or "--price-per-1k-tokens" not in out or "--cmu-minute-price" not in out:
        fail(f"table without prices: exit {r.returncode}\n{out}")
    r = cost(q, "--run", run, "--base-model", "meta.llama3-1-8b-instruct-v1:0", "--price-per-1k-tokens", "0.002")
    if r.returncode != 0 or "$4.00" not in r.stdout.decode():
        fail(f"--price-per-1k-tokens did not override the table: {r.stdout.decode()}")
    # Exit codes.
    for args in ([], ["--tokens", "-1"], ["--run", run, "--hours-per-day", "25"], ["--run", run, "--gpu-hour-price", "-2"],
                 ["--run", run, "--bogus"], ["--tokens", "10", "--tokens-per-second", "0"]):
        r = cost(q, *args)
        if r.returncode != 2:
            fail(f"cost {args}: exit {r.returncode}, want 2")
    bad = os.path.join(work, "unfinished")
    os.makedirs(bad, exist_ok=True)
    json.dump({"settings": {}}, open(os.path.join(bad, "run.json"), "w"))
    r = cost(q, "--run", bad)
    if r.returncode != 1 or "result" not in r.stderr.decode():
        fail(f"unfinished run: exit {r.returncode}: {r.stderr.decode()}")
    # A run with "result" but interrupted, or without final/, is priced for what it ran, and says so.
    for name, res, final in (("interrupted", {"interrupted": True}, True), ("no-final", {}, False)):
        part = os.path.join(work, name)
        os.makedirs(os.path.join(part, "final") if final else part, exist_ok=True)
        json.dump({"result": dict({"steps": 10, "tokens_trained": 5000, "train_seconds": 60, "wall_seconds": 70,
                                   "gpus": 1, "gpu_hours": 60 / 3600}, **res)},
                  open(os.path.join(part, "run.json"), "w"))
        r = cost(q, "--run", part)
        err = r.stderr.decode()
        if r.returncode != 0 or "has not finished" not in err or "after 10 steps" not in err or "5000 tokens" not in err:
            fail(f"{name} run: exit {r.returncode}, no warning naming it unfinished: {err}")
        j = cost_json(q, "--run", part)
        if j and j.get("run_finished") is not False:
            fail(f"{name} run: run_finished {j.get('run_finished')}, want false")
    j = cost_json(q, "--run", run)
    if j and j.get("run_finished") is not True:
        fail(f"finished run: run_finished {j.get('run_finished')}, want true")
    r = cost(q, "--run", os.path.join(work, "absent"))
    if r.returncode != 1:
        fail(f"absent run: exit {r.returncode}")
    print(f"cost: {len(FAILS)} failure(s)")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
