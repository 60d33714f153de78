// dev/bench_train_step.c — times quarry's training step on the CPU backend, the same step
// scripts/bench/train_step_torch.py times in PyTorch: forward + backward over one batch of B
// rows × T tokens (one document per row, every next token trained), global gradient norm with
// clipping at 1.0, AdamW over every trained tensor. Prints one line per step (wall and process
// CPU milliseconds, and the split forward / backward / optimizer) and a summary line with the
// medians of the steps after the warm-up:
//   RESULT wall_ms=… cpu_ms=… fwd_ms=… bwd_ms=… opt_ms=… loss0=… threads=…
// Usage: bench_train_step MODEL_DIR full|lora [--batch B] [--seq T] [--steps S] [--warmup W]
//                         [--threads N] [--lora-r R] [--lora-alpha A] [--lora-dropout P]
// Built and run by scripts/bench/train_step_cpu.sh (linked against libquarry.a).
#include "kernels/backend.h"
#include "kernels/rng.h"
#include "model/llama.h"
#include "model/lora.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_ms(clockid_t id) {
    struct timespec ts;
    if (clock_gettime(id, &ts)) return 0;
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int usage(void) {
    fprintf(stderr, "usage: bench_train_step MODEL_DIR full|lora [--batch B] [--seq T] [--steps S] [--warmup W] "
                    "[--threads N] [--lora-r R] [--lora-alpha A] [--lora-dropout P]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 3) return usage();
    const char *dir = argv[1];
    int lora = !strcmp(argv[2], "lora");
    if (!lora && strcmp(argv[2], "full")) return usage();
    int B = 4, T = 512, steps = 5, warmup = 1, threads = 1;
    lora_config lc = lora_config_default();
    lc.rank = 16;
    lc.alpha = 32;
    lc.dropout = 0.05f;
    for (int i = 3; i < argc; i++) {
        if (i + 1 >= argc) return usage();
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--batch")) B = atoi(v);
        else if (!strcmp(k, "--seq")) T = atoi(v);
        else if (!strcmp(k, "--steps")) steps = atoi(v);
        else if (!strcmp(k, "--warmup")) warmup = atoi(v);
        else if (!strcmp(k, "--threads")) threads = atoi(v);
        else if (!strcmp(k, "--lora-r")) lc.rank = atoi(v);
        else if (!strcmp(k, "--lora-alpha")) lc.alpha = (float)atof(v);
        else if (!strcmp(k, "--lora-dropout")) lc.dropout = (float)atof(v);
        else return usage();
    }
    if (B < 1 || T < 2 || steps < 1 || warmup < 0 || threads < 1) return usage();

    char err[1024];
    backend *be = backend_cpu(threads);
    if (!be) { fprintf(stderr, "bench_train_step: cannot create the CPU backend\n"); return 1; }
    model_options opt = {.batch_size = B, .seq_len = T, .train = lora ? MODEL_TRAIN_LORA : MODEL_TRAIN_FULL};
    model *m = model_load(dir, be, &opt, lora ? &lc : NULL, NULL, err, sizeof err);
    if (!m) { fprintf(stderr, "bench_train_step: %s\n", err); be->destroy(be); return 1; }
    int V = model_get_config(m)->vocab_size;

    // One document per row; targets are the next tokens, the last row position untrained — the
    // batch PyTorch gets as input_ids = labels (the model shifts them).
    size_t n = (size_t)B * T;
    int32_t *ids = malloc(n * sizeof *ids), *tg = malloc(n * sizeof *tg), *pos = malloc(n * sizeof *pos),
            *ds = malloc(n * sizeof *ds);
    float *norm_dev = be->alloc(be, sizeof(float));
    double *wall = malloc(steps * sizeof *wall), *cpu = malloc(steps * sizeof *cpu), *fw = malloc(steps * sizeof *fw),
           *bw = malloc(steps * sizeof *bw), *op = malloc(steps * sizeof *op);
    if (!ids || !tg || !pos || !ds || !norm_dev || !wall || !cpu || !fw || !bw || !op) {
        fprintf(stderr, "bench_train_step: out of memory\n");
        return 1;
    }
    uint64_t s = 1234;
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(rng_mix64(s++) % (uint64_t)V);
    long trained = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            tg[i] = t + 1 < T ? ids[i + 1] : -1;
            trained += t + 1 < T;
            pos[i] = t;
            ds[i] = 0;
        }
    float grad_scale = 1.0f / (float)trained;
    double loss0 = NAN;
    int total = warmup + steps;
    for (int step = 0; step < total; step++) {
        double w0 = clock_ms(CLOCK_MONOTONIC), c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
        model_zero_grads(m);
        model_batch b = {B, T, ids, tg, pos, ds, rng_mix64(99 + (uint64_t)step)};
        model_loss l = {0};
        if (model_forward(m, &b, grad_scale, &l)) { fprintf(stderr, "bench_train_step: %s\n", model_error(m)); return 1; }
        be->synchronize(be);
        double w1 = clock_ms(CLOCK_MONOTONIC);
        if (model_backward(m)) { fprintf(stderr, "bench_train_step: %s\n", model_error(m)); return 1; }
        be->synchronize(be);
        double w2 = clock_ms(CLOCK_MONOTONIC);
        be->memset_zero(be, norm_dev, sizeof(float));
        int nt = model_trained_count(m);
        for (int i = 0; i < nt; i++) be->sum_squares(be, norm_dev, model_trained_at(m, i)->grad, model_trained_at(m, i)->n);
        float sq = 0;
        be->copy_to_host(be, &sq, norm_dev, sizeof sq);
        double gnorm = sqrt((double)sq);
        float clip = gnorm > 1.0 ? (float)(1.0 / (gnorm + 1e-6)) : 1.0f;
        for (int i = 0; i < nt; i++) {
            model_param *p = model_trained_at(m, i);
            be->adamw_update(be, p->master, p->act, p->grad, p->m, p->v, p->n, 1e-4f, 0.9f, 0.999f, 1e-8f,
                             p->weight_decay ? 0.01f : 0.0f, step + 1, clip);
        }
        be->synchronize(be);
        double w3 = clock_ms(CLOCK_MONOTONIC), c3 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
        double loss = l.tokens ? l.sum / (double)l.tokens : NAN;
        if (step == 0) loss0 = loss;
        printf("step %d%s wall_ms=%.1f cpu_ms=%.1f fwd_ms=%.1f bwd_ms=%.1f opt_ms=%.1f loss=%.5f gnorm=%.4f\n", step + 1,
               step < warmup ? " (warm-up)" : "", w3 - w0, c3 - c0, w1 - w0, w2 - w1, w3 - w2, loss, gnorm);
        fflush(stdout);
        if (step >= warmup) {
            int k = step - warmup;
            wall[k] = w3 - w0;
            cpu[k] = c3 - c0;
            fw[k] = w1 - w0;
            bw[k] = w2 - w1;
            op[k] = w3 - w2;
        }
    }
    printf("RESULT wall_ms=%.1f cpu_ms=%.1f fwd_ms=%.1f bwd_ms=%.1f opt_ms=%.1f loss0=%.5f threads=%d trained=%d\n",
           median(wall, steps), median(cpu, steps), median(fw, steps), median(bw, steps), median(op, steps), loss0,
           threads, model_trained_count(m));
    free(ids); free(tg); free(pos); free(ds);
    free(wall); free(cpu); free(fw); free(bw); free(op);
    be->free(be, norm_dev);
    model_free(m);
    be->destroy(be);
    return 0;
}
