// tests/model/lora_random_b.h — LoRA B starts at zero, which would make every A gradient zero:
// tests that compare gradients give every B the same random values instead.
#pragma once
#include "kernels/rng.h"
#include "model/llama.h"
#include <stdlib.h>
#include <string.h>

static inline void lora_randomize_b(model *m) {
    rng_state s = {.seed = 5, .counter = 0};
    for (int i = 0; i < model_trained_count(m); i++) {
        model_param *p = model_trained_at(m, i);
        if (!strstr(p->name, "lora_B")) continue;
        float *x = malloc(p->n * 4);
        if (!x) continue;
        for (size_t k = 0; k < p->n; k++) x[k] = 0.2f * (2.0f * rng_next_uniform(&s) - 1.0f);
        model_param_write(m, p, x);
        free(x);
    }
}
