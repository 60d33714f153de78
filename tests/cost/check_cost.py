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


# Figures as ../shared/reference/bedrock_prices.md quotes its sources (an outside record, not this
# code's table): AWS pricing page's Custom Model Import tab (capture dated 2025-03-06): 0.0785 USD
# per CMU-minute, 1.95 USD per CMU-month, Llama 3.1 8B -> 2 CMUs, Mixtral 8x7B -> 4; AWS's own
# worked example for the 8B: 0.1570 USD a minute, one 5-minute window 0.785 USD, storage 3.90 USD.
# AWS on-demand per GPU-hour, us-east-1, Aug 2026: H100 6.88, H200 7.912.
LLAMA8 = "meta.llama3-1-8b-instruct-v1:0"


def sourced(name, fig, want):
    if fig is None or fig.get("source") is None or fig.get("date") is None:
        fail(f"{name}: {fig} lacks a source or a date")
        return
    near(name, fig.get("usd", fig.get("count")), want)


def check_table(q, run):
    r = cost(q, "--base-model", LLAMA8, "--tokens", "10000000")
    out = r.stdout.decode()
    for want in ("$0.0785", "$1.95", "2025-03-06", "pricing page", "not published", "--price-per-1k-tokens",
                 "--pt-hour-price", "as AWS lists"):
        if want not in out:
            fail(f"cost --base-model {LLAMA8} --tokens 1e7: no {want!r} in\n{out}")
    if r.returncode != 0:
        fail(f"llama 8b estimate: exit {r.returncode}")
    j = cost_json(q, "--base-model", LLAMA8, "--tokens", "10000000", "--hours-per-day", str(5 / 60), "--days", "1")
    if j:
        cmi = j["serving"]["custom_model_import"]
        sourced("llama 8b CMUs", cmi["cmus_per_copy"], 2)
        if cmi["cmus_per_copy"].get("estimate") is not False:
            fail("llama 8b CMUs: AWS lists them; not an estimate")
        sourced("CMU-minute", cmi["price_per_cmu_minute"], 0.0785)
        sourced("CMU storage", cmi["storage_per_cmu_month"], 1.95)
        near("AWS example: one 5-minute window", cmi["usd_per_month"], 0.785)
        near("AWS example: storage", cmi["storage_usd_per_month"], 3.90)
        fig = j["managed"]["price_per_1k_tokens"]
        if fig["usd"] is not None or fig.get("note") != "not published":
            fail(f"llama 8b training price: {fig}, want not published")
        if j["managed"].get("bedrock_can_fine_tune") is not True:
            fail("llama 8b: Bedrock fine-tunes it")
    # Models Bedrock cannot fine-tune: said so, and CMI still priced (AWS's CMU list or the estimate).
    for base, cmus, estimate in (("mistral.mixtral-8x7b-instruct-v0:1", 4, False), ("Qwen/Qwen3-8B", None, True),
                                 ("Qwen/Qwen3-235B-A22B", None, True), ("openai/gpt-oss-20b", None, True)):
        r = cost(q, "--base-model", base, "--tokens", "10000000")
        out = r.stdout.decode()
        if r.returncode != 0 or "Bedrock cannot fine-tune" not in out or "only road into Bedrock" not in out:
            fail(f"{base}: exit {r.returncode}, does not say Bedrock cannot fine-tune it:\n{out}")
        serving = [ln for ln in out.splitlines() if "serving / month" in ln or "CMI:" in ln]
        if len(serving) != 2 or any("unknown" in ln for ln in serving):
            fail(f"{base}: CMI serving unknown:\n{out}")
        j = cost_json(q, "--base-model", base, "--tokens", "10000000")
        if not j:
            continue
        if j["managed"].get("bedrock_can_fine_tune") is not False:
            fail(f"{base}: bedrock_can_fine_tune {j['managed'].get('bedrock_can_fine_tune')}")
        c = j["serving"]["custom_model_import"]["cmus_per_copy"]
        if c.get("estimate") is not estimate or c.get("count") is None or (estimate and "estimate" not in c["source"]):
            fail(f"{base}: CMUs {c}, want estimate={estimate}")
        if cmus is not None:
            sourced(f"{base} CMUs", c, cmus)
        if j["serving"]["custom_model_import"]["usd_per_month"] is None:
            fail(f"{base}: CMI serving not priced")
    j = cost_json(q, "--base-model", "Qwen/Qwen3-235B-A22B", "--tokens", "1")
    if j and not j["serving"]["custom_model_import"]["cmus_per_copy"]["count"] > 8:
        fail("a 235B model estimated at no more CMUs than a 70B")
    # An unlisted size: the estimate from --params; without a size, "not published" and the flags.
    j = cost_json(q, "--base-model", "qwen-unreleased", "--tokens", "1", "--params", "8.0")
    if j and j["serving"]["custom_model_import"]["cmus_per_copy"].get("count") != 2:
        fail(f"--params 8: {j['serving']['custom_model_import']['cmus_per_copy']}, want the 8B's 2 CMUs")
    r = cost(q, "--base-model", "qwen-unreleased", "--tokens", "1")
    if "--cmus" not in r.stdout.decode() or "--params" not in r.stdout.decode():
        fail(f"unsized model: no --cmus / --params hint:\n{r.stdout.decode()}")
    # Flags override the table, and say so.
    j = cost_json(q, "--base-model", LLAMA8, "--tokens", "1", "--cmus", "3", "--cmu-minute-price", "0.05718")
    if j:
        c = j["serving"]["custom_model_import"]
        if c["cmus_per_copy"]["source"] != "--cmus" or c["price_per_cmu_minute"]["source"] != "--cmu-minute-price":
            fail(f"flags not named as the source: {c}")
        near("--cmus override", c["cmus_per_copy"]["count"], 3)
    # On-prem: capital amortised at a utilisation, beside AWS's on-demand GPU-hour (run: 1 GPU-hour).
    j = cost_json(q, "--run", run, "--gpu-price", "30000", "--amortize-years", "4", "--utilization", "0.5")
    if j:
        hour = 30000 / (4 * 365.25 * 24 * 0.5)
        near("capital per GPU-hour", j["on_prem"]["capital_per_gpu_hour"], hour)
        near("on-prem training from capital", j["on_prem"]["training_usd"], hour * 1.0)
        refs = {r["gpu"]: r for r in j["on_prem"]["cloud_reference"]}
        for gpu, usd in (("H100", 6.88), ("H200", 7.912)):
            if gpu not in refs:
                fail(f"no cloud reference for {gpu}")
                continue
            sourced(f"{gpu} on-demand", refs[gpu]["price_per_gpu_hour"], usd)
            near(f"{gpu} reference for 1 GPU-hour", refs[gpu]["usd"], usd)
    for args in (["--gpu-price", "30000"], ["--gpu-price", "30000", "--amortize-years", "4", "--utilization", "1.5"],
                 ["--gpu-price", "1", "--amortize-years", "4", "--utilization", "0.5", "--gpu-hour-price", "2"]):
        r = cost(q, "--run", run, *args)
        if r.returncode != 2 or "error" not in r.stderr.decode():
            fail(f"cost {args}: exit {r.returncode}, want 2 with an error")


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
        for k in ("cmus_per_copy", "price_per_cmu_minute", "storage_per_cmu_month"):
            if j["serving"]["custom_model_import"][k].get("source") is None:
                fail(f"{k} without its source")
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
    check_table(q, run)
    print(f"cost: {len(FAILS)} failure(s)")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
