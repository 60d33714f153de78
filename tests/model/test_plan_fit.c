// tests/model/test_plan_fit.c — `--micro-batch auto` on a Llama-3.1-8B config without weights
// (model_open_config) and made-up free memory: the choice fits and one more row would not, it
// never shrinks when more memory is given, it is 1 when only 1 fits, it splits the batch into
// even passes, it grows with recomputation, and when even 1 does not fit the error names what
// to change. Plus the device budget's margin.
#include "test.h"
#include "model/plan_fit.h"
#include "config_llama31_8b.h"

static const size_t GiB = (size_t)1 << 30;

static size_t total_at(model *m, model_options o, int b) {
    char err[256];
    model_memory p;
    o.batch_size = b;
    CHECK(model_plan(m, &o, &p, err, sizeof err) == 0, "plan %d: %s", b, err);
    return p.total;
}

static void check_lora(model *m) {
    char err[512], line[256];
    model_options o = {.batch_size = 1, .seq_len = 2048, .train = MODEL_TRAIN_LORA,
                       .checkpoint = MODEL_RECOMPUTE_SELECTIVE};
    plan_fit f;
    // An H100's 80 GiB, less the margin.
    size_t budget = plan_fit_budget(80 * GiB, 80 * GiB, 1, 1);
    CHECK(plan_fit_micro_batch(m, &o, 64, budget, &f, err, sizeof err) == 0, "80 GiB: %s", err);
    plan_fit_describe(&f, line, sizeof line);
    printf("8B LoRA r=16, seq 2048, selective, 80 GiB free, batch 64: %s\n", line);
    CHECK(f.largest >= 4 && f.largest <= 16, "a plausible micro-batch on 80 GiB: %d", f.largest);
    CHECK(total_at(m, o, f.largest) <= budget && total_at(m, o, f.largest + 1) > budget,
          "%d fits and %d does not", f.largest, f.largest + 1);
    CHECK(f.next_bytes == total_at(m, o, f.largest + 1) && f.plan_bytes == total_at(m, o, f.micro_batch),
          "the reported plans are model_plan's");
    CHECK(strstr(line, "would need"), "the line says what one more needs: %s", line);
    // The model stays planned at the choice.
    model_memory p;
    o.batch_size = f.micro_batch;
    CHECK(model_plan(m, &o, &p, err, sizeof err) == 0 && p.total == f.plan_bytes, "planned at the choice");

    // Monotone in the memory given; 1 where nothing bigger fits.
    int prev = 0;
    for (size_t g = 18; g <= 200; g += 2) {
        if (plan_fit_micro_batch(m, &o, 64, g * GiB, &f, err, sizeof err) != 0) {
            CHECK(prev == 0, "%zu GiB: refused after %d fitted in less: %s", g, prev, err);
            continue;
        }
        CHECK(f.largest >= prev, "%zu GiB: %d fits, less than %d in less memory", g, f.largest, prev);
        prev = f.largest;
    }
    CHECK(prev > 16, "200 GiB fits more than 16 (%d)", prev);
    CHECK(plan_fit_micro_batch(m, &o, 64, 1000 * GiB, &f, err, sizeof err) == 0 && f.micro_batch == 64,
          "1000 GiB fits the whole batch of 64 (%d)", f.micro_batch);
    size_t one = total_at(m, o, 1), two = total_at(m, o, 2);
    CHECK(plan_fit_micro_batch(m, &o, 64, (one + two) / 2, &f, err, sizeof err) == 0 && f.micro_batch == 1 &&
              f.largest == 1, "between the plans of 1 and 2: micro-batch %d", f.micro_batch);
    CHECK(plan_fit_micro_batch(m, &o, 64, one, &f, err, sizeof err) == 0 && f.micro_batch == 1, "exactly 1's plan fits");

    // Even passes: 8 rows with room for 5 → 2 passes of 4; the whole batch when it fits.
    size_t five = total_at(m, o, 5), six = total_at(m, o, 6);
    CHECK(plan_fit_micro_batch(m, &o, 8, (five + six) / 2, &f, err, sizeof err) == 0 && f.largest == 5 &&
              f.micro_batch == 4, "8 rows, 5 fit: micro-batch %d (largest %d)", f.micro_batch, f.largest);
    plan_fit_describe(&f, line, sizeof line);
    CHECK(strstr(line, "2 passes of 4"), "the line says why 4: %s", line);
    CHECK(plan_fit_micro_batch(m, &o, 3, 1000 * GiB, &f, err, sizeof err) == 0 && f.micro_batch == 3 && !f.next_bytes,
          "a batch of 3 that fits whole: %d", f.micro_batch);

    // Recomputation buys micro-batch: none < selective < full on the same card.
    int got[3];
    const model_recompute modes[] = {MODEL_RECOMPUTE_NONE, MODEL_RECOMPUTE_SELECTIVE, MODEL_RECOMPUTE_FULL};
    for (int k = 0; k < 3; k++) {
        o.checkpoint = modes[k];
        got[k] = plan_fit_micro_batch(m, &o, 256, budget, &f, err, sizeof err) == 0 ? f.largest : 0;
    }
    printf("80 GiB free: largest micro-batch with recompute none %d, selective %d, full %d\n", got[0], got[1], got[2]);
    CHECK(got[0] < got[1] && got[1] < got[2], "recomputation fits more rows: %d < %d < %d", got[0], got[1], got[2]);

    // Nothing fits: the error names the fixes that would work, measured.
    o.checkpoint = MODEL_RECOMPUTE_SELECTIVE;
    CHECK(plan_fit_micro_batch(m, &o, 8, 20 * GiB, &f, err, sizeof err) == -1, "20 GiB cannot hold 8B LoRA at 2048");
    printf("20 GiB: %s\n", err);
    CHECK(strstr(err, "micro-batch 1") && strstr(err, "--recompute full") && strstr(err, "--max-seq-len") &&
              !strstr(err, "--method lora"), "LoRA: what to change: %s", err);
    int seq = 0;
    const char *at = strstr(err, "--max-seq-len ");
    if (at) seq = atoi(at + 14);
    model_options os = o;
    os.seq_len = seq;
    CHECK(seq > 0 && seq < 2048 && total_at(m, os, 1) <= 20 * GiB, "--max-seq-len %d fits", seq);
    os.seq_len = seq + 64;
    CHECK(total_at(m, os, 1) > 20 * GiB, "--max-seq-len %d is the longest that fits", seq);
    // 15 GiB: no bf16 LoRA plan fits (its weights take 15.04 GiB), QLoRA's 4-bit base does.
    CHECK(plan_fit_micro_batch(m, &o, 8, 15 * GiB, &f, err, sizeof err) == -1 && strstr(err, "try --quantize nf4 (") &&
              !strstr(err, "--recompute full"), "15 GiB: only QLoRA fits: %s", err);
    printf("15 GiB: %s\n", err);
    CHECK(plan_fit_micro_batch(m, &o, 8, 5 * GiB, &f, err, sizeof err) == -1 && strstr(err, "more memory") &&
              !strstr(err, "try"), "5 GiB: nothing fits: %s", err);
    printf("5 GiB: %s\n", err);
    o.checkpoint = MODEL_RECOMPUTE_FULL;
    CHECK(plan_fit_micro_batch(m, &o, 8, 16 * GiB + GiB / 2, &f, err, sizeof err) == -1 && !strstr(err, "--recompute full") &&
              strstr(err, "--max-seq-len"), "already recomputing fully: %s", err);
    o.checkpoint = MODEL_RECOMPUTE_SELECTIVE;
    o.seq_len = 0;
    CHECK(plan_fit_micro_batch(m, &o, 8, 80 * GiB, &f, err, sizeof err) == -1 && strstr(err, "sequence length"),
          "model_plan's refusal passes through: %s", err);
    CHECK(plan_fit_micro_batch(m, &o, 0, 80 * GiB, &f, err, sizeof err) == -1, "an empty batch is refused");
}

static void check_full(model *m) {
    char err[512];
    model_options o = {.batch_size = 1, .seq_len = 2048, .train = MODEL_TRAIN_FULL,
                       .checkpoint = MODEL_RECOMPUTE_SELECTIVE};
    plan_fit f;
    // Full fine-tuning of 8B needs ~135 GiB of trained state: not on one 80 GiB card.
    CHECK(plan_fit_micro_batch(m, &o, 8, plan_fit_budget(80 * GiB, 80 * GiB, 1, 1), &f, err, sizeof err) == -1,
          "full 8B on 80 GiB is refused");
    printf("full 8B, 80 GiB: %s\n", err);
    CHECK(strstr(err, "try --method lora;") == NULL && strstr(err, "--method lora") && !strstr(err, "--recompute full") &&
              !strstr(err, "--max-seq-len"), "only LoRA would fit: %s", err);
    CHECK(plan_fit_micro_batch(m, &o, 8, 300 * GiB, &f, err, sizeof err) == 0 && f.micro_batch >= 1, "300 GiB: %s", err);
}

static void check_budget(void) {
    size_t b = plan_fit_budget(80 * GiB, 80 * GiB, 1, 1);
    CHECK(b == 80 * GiB - 4 * GiB - ((size_t)256 << 20), "GPU margin 5%% + 256 MiB: %zu", b);
    CHECK(plan_fit_budget(100u << 20, 80 * GiB, 1, 1) == 0, "less free than the margin: nothing");
    CHECK(plan_fit_budget(1 * GiB, 64 * GiB, 0, 1) == 64 * GiB, "CPU: the host's total, as model_allocate");
    CHECK(plan_fit_budget(1 * GiB, 64 * GiB, 0, 4) == 16 * GiB, "CPU: shared by 4 ranks of one process");
}

int main(void) {
    check_budget();
    model *m = open_llama31_8b();
    if (m) {
        char err[256];
        lora_config lc = lora_config_default();
        lc.rank = 16;
        check_full(m);
        CHECK(model_enable_lora(m, &lc, err, sizeof err) == 0, "enable: %s", err);
        check_lora(m);
        model_free(m);
    }
    return test_finish("test_plan_fit");
}
