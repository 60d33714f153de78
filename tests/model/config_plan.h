// tests/model/config_plan.h — memory plans of published configs without weights (examples/configs),
// shared by test_qlora_plan and test_mxfp4_plan: the config opened with LoRA r16, a plan printed as
// a PLAN (what quarry would allocate, not a measurement).  Header-only: it CHECKs into the test's
// own count (test.h).
#pragma once
#include "test.h"
#include "model/config.h"
#include "model/llama.h"

// Buffers as the arenas take them: rounded up to 64 bytes.
static inline size_t r64(size_t n) { return (n + 63) & ~(size_t)63; }

// examples/configs/<file> with bf16 weights and LoRA r16 (quarry's other defaults) on targets;
// NULL (a failed check) when the config does not load.
static inline model *open_config_lora16(const char *file, model_config *cfg, unsigned targets) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/examples/configs/%s", test_env("QUARRY_SOURCE_DIR", "."), file);
    CHECK(model_config_load(cfg, path, err, sizeof err) == 0, "%s: %s", path, err);
    model *m = model_open_config(cfg, DTYPE_BF16, err, sizeof err);
    CHECK(m != NULL, "%s: %s", file, err);
    lora_config lc = lora_config_default();
    lc.rank = 16;
    lc.targets = targets;
    CHECK(m && model_enable_lora(m, &lc, err, sizeof err) == 0, "LoRA: %s", err);
    return m;
}

// m's plan under o, printed under `label` (model_memory_print); the caller adds its exact bytes.
static inline model_memory plan_printed(model *m, const model_options *o, const char *label) {
    char err[512];
    model_memory p = {0};
    CHECK(model_plan(m, o, &p, err, sizeof err) == 0, "%s: %s", label, err);
    printf("PLAN (model_plan's allocation, not a measurement): %s\n", label);
    model_memory_print(&p, stdout);
    return p;
}
