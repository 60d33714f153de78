// model/sample.c — see sample.h.
#include "sample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    float score;     // logit / T
    int id;
} scored;

struct sampler {
    sample_params p;
    rng_state rng;
    int vocab;
    scored *order;   // (vocab) finite scores with their ids, sorted descending (ties: lower id first)
    double *prob;    // (vocab) probabilities of the kept tokens, by id
};

sampler *sampler_new(const sample_params *p, int vocab) {
    if (vocab < 1) return NULL;
    sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->rng = (rng_state){p->seed, 0};
    s->vocab = vocab;
    s->order = malloc((size_t)vocab * sizeof *s->order);
    s->prob = malloc((size_t)vocab * sizeof *s->prob);
    if (!s->order || !s->prob) {
        sampler_free(s);
        return NULL;
    }
    return s;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->order);
    free(s->prob);
    free(s);
}

int sample_params_check(const sample_params *p, char *err, unsigned long errlen) {
    if (!isfinite(p->temperature) || p->temperature < 0) {
        snprintf(err, errlen, "--temperature must be ≥ 0 (0 = greedy), got %g", p->temperature);
        return -1;
    }
    if (p->top_k < 0) {
        snprintf(err, errlen, "--top-k must be ≥ 0 (0 = off), got %d", p->top_k);
        return -1;
    }
    if (!(p->top_p > 0 && p->top_p <= 1)) {
        snprintf(err, errlen, "--top-p must be in (0, 1] (1 = off), got %g", p->top_p);
        return -1;
    }
    return 0;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i]))) best = i;
    return best;
}

static int by_score_desc(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int sampler_next(sampler *s, const float *logits) {
    int V = s->vocab;
    if (s->p.temperature <= 0) return argmax(logits, V);
    float t = (float)s->p.temperature;   // torch divides the f32 logits by T
    int kept = 0;
    for (int i = 0; i < V; i++)
        if (isfinite(logits[i])) s->order[kept++] = (scored){logits[i] / t, i};
    if (kept == 0) return argmax(logits, V);
    // Only the finite scores are sorted; −inf ones are never kept.
    qsort(s->order, (size_t)kept, sizeof *s->order, by_score_desc);
    if (s->p.top_k > 0 && s->p.top_k < kept) {
        float thr = s->order[s->p.top_k - 1].score;
        int k = s->p.top_k;
        while (k < kept && s->order[k].score >= thr) k++;
        kept = k;
    }
    // Softmax over the kept tokens, in double.
    double mx = s->order[0].score, z = 0;
    for (int r = 0; r < kept; r++) z += exp((double)s->order[r].score - mx);
    if (s->p.top_p < 1.0) {
        // Ascending cumulative probability of token at rank r (descending order) = the mass of
        // ranks r..kept−1; remove while that is ≤ 1 − top_p, from the least probable up.
        double tail = 0, limit = 1.0 - s->p.top_p;
        int k = kept;
        while (k > 1) {
            double pr = exp((double)s->order[k - 1].score - mx) / z;
            if (tail + pr > limit) break;
            tail += pr;
            k--;
        }
        kept = k;
        z = 0;
        for (int r = 0; r < kept; r++) z += exp((double)s->order[r].score - mx);
    }
    for (int i = 0; i < V; i++) s->prob[i] = 0;
    for (int r = 0; r < kept; r++) s->prob[s->order[r].id] = exp((double)s->order[r].score - mx) / z;
    double u = (double)(rng_next_u64(&s->rng) >> 11) * (1.0 / 9007199254740992.0);
    double c = 0;
    int last = s->order[0].id;
    for (int i = 0; i < V; i++) {
        if (s->prob[i] <= 0) continue;
        c += s->prob[i];
        last = i;
        if (c > u) return i;
    }
    return last;   // rounding left u just above the total
}
