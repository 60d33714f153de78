// tests/model/bitwise.c — see bitwise.h.
#include "bitwise.h"
#include "kernels/rng.h"
#include "lora_random_b.h"
#include <string.h>

void bitwise_batches(int count, int B, int T, int vocab, uint64_t seed, int split, int every, int phase,
                     int32_t *ids, int32_t *targets, int32_t *pos, int32_t *doc) {
    rng_state s = {.seed = seed, .counter = 0};
    int N = B * T;
    for (int k = 0; k < count; k++)
        for (int i = 0; i < N; i++) {
            int t = i % T, start = t < split ? 0 : split;
            size_t at = (size_t)k * N + i;
            ids[at] = (int32_t)(rng_next_u64(&s) % (uint64_t)vocab);
            pos[at] = t - start;
            doc[at] = start;
            targets[at] = (t == split - 1 || t == T - 1 || i % every == phase)
                              ? -1
                              : (int32_t)(rng_next_u64(&s) % (uint64_t)vocab);
        }
}

int64_t bitwise_trained(const int32_t *targets, size_t n) {
    int64_t trained = 0;
    for (size_t i = 0; i < n; i++) trained += targets[i] != -1;
    return trained;
}

model *bitwise_open(const char *dir, backend *be, int lora, float dropout, const model_options *opt,
                    model_memory *plan, char *err, size_t errlen) {
    lora_config lc = lora_config_default();
    lc.rank = 4;
    lc.alpha = 8.0f;
    lc.dropout = dropout;
    lc.targets = LORA_ALL_LINEAR;
    model *m = model_open(dir, be, err, errlen);
    if (!m || (lora && model_enable_lora(m, &lc, err, errlen)) || model_plan(m, opt, plan, err, errlen) ||
        model_allocate(m, err, errlen)) {
        model_free(m);
        return NULL;
    }
    if (lora) lora_randomize_b(m);
    return m;
}

size_t bitwise_grad_numel(model *m) {
    size_t n = 0;
    for (int i = 0; i < model_trained_count(m); i++) n += model_trained_at(m, i)->n;
    return n;
}

void bitwise_read_grads(model *m, backend *be, float *out) {
    for (int i = 0; i < model_trained_count(m); i++) {
        model_param *p = model_trained_at(m, i);
        be->copy_to_host(be, out, p->grad, p->n * 4);
        out += p->n;
    }
}

long bitwise_first_diff(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof *a) != 0) return (long)i;
    return -1;
}

double bitwise_sumsq(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}
