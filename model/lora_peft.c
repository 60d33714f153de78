// model/lora_peft.c — see lora_peft.h.
#include "lora_peft.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lora_peft_part_of(const model *m, const model_param *p, lora_peft_part *part) {
    const model_config *c = model_get_config(m);
    const lora_config *lc = model_get_lora(m);
    if (!c->experts_fused || !lc) return 0;
    int l, e, used = 0;
    char proj[16], ab;
    if (sscanf(p->name, "base_model.model.model.layers.%d.mlp.experts.%d.%15[a-z_].lora_%c.weight%n", &l, &e, proj,
               &ab, &used) != 4 || p->name[used] != '\0')
        return 0;
    int gate_up = !strcmp(proj, "gate_up_proj");
    if (!gate_up && strcmp(proj, "down_proj")) return 0;
    memset(part, 0, sizeof *part);
    // The first tensor wrapped is the inner one (PEFT nests them): gate_up_proj under base_layer.
    snprintf(part->name, sizeof part->name, "base_model.model.model.layers.%d.mlp.experts.%slora_%c.weight", l,
             gate_up ? "base_layer." : "", ab);
    part->expert = e;
    part->n_experts = c->n_experts;
    part->rank = lc->rank;
    part->is_b = ab == 'B';
    part->in = gate_up ? c->hidden_size : c->moe_intermediate_size;
    part->out = gate_up ? 2 * c->moe_intermediate_size : c->hidden_size;
    part->gate_up = gate_up;
    return 1;
}

size_t lora_peft_fused_numel(const lora_peft_part *part) {
    return (size_t)part->rank * (size_t)part->n_experts * (size_t)(part->is_b ? part->out : part->in);
}

// PEFT's row of quarry's B_e row o: gate_up interleaves gate (o < I → 2o) and up (o ≥ I → 2(o − I) + 1).
static size_t peft_row(const lora_peft_part *part, size_t o) {
    size_t I = (size_t)part->out / 2;
    return !part->gate_up ? o : o < I ? 2 * o : 2 * (o - I) + 1;
}

// Both directions in one walk: to_q copies fused → q, else q → fused.
static void walk(const lora_peft_part *part, float *fused, float *q, int to_q) {
    size_t r = (size_t)part->rank, E = (size_t)part->n_experts, e = (size_t)part->expert;
    if (!part->is_b) {   // A (r·E, in): expert e's rows e·r ..
        size_t in = (size_t)part->in;
        float *f = fused + e * r * in;
        if (to_q) memcpy(q, f, r * in * sizeof *q);
        else memcpy(f, q, r * in * sizeof *q);
        return;
    }
    for (size_t o = 0; o < (size_t)part->out; o++)   // B (out, r·E): expert e's columns ρ·E + e
        for (size_t k = 0; k < r; k++) {
            float *f = &fused[peft_row(part, o) * r * E + k * E + e];
            if (to_q) q[o * r + k] = *f;
            else *f = q[o * r + k];
        }
}

void lora_peft_unpack(const lora_peft_part *part, const float *fused, float *q) {
    walk(part, (float *)fused, q, 1);
}

void lora_peft_pack(const lora_peft_part *part, const float *q, float *fused) { walk(part, fused, (float *)q, 0); }

// The trained tensors' offsets in host (model_trained_at order).
static size_t *trained_offsets(model *m) {
    int n = model_trained_count(m);
    size_t *off = malloc(sizeof *off * (size_t)(n + 1));
    if (!off) return NULL;
    off[0] = 0;
    for (int i = 0; i < n; i++) off[i + 1] = off[i] + model_trained_at(m, i)->n;
    return off;
}

int lora_peft_write(const char *path, model *m, const float *host, char *err, size_t errlen) {
    int n = model_trained_count(m), rc = -1;
    size_t *off = trained_offsets(m);
    char *done = calloc((size_t)n + 1, 1);
    float **fused = calloc((size_t)n + 1, sizeof *fused);
    st_writer *w = st_writer_begin();
    if (!off || !done || !fused || !w) {
        snprintf(err, errlen, "out of memory writing %s", path);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        model_param *p = model_trained_at(m, i);
        lora_peft_part part, other;
        if (!lora_peft_part_of(m, p, &part)) {
            if (st_writer_add(w, p->name, ST_F32, p->ndim, p->shape, host + off[i], sizeof(float) * p->n)) goto add;
            continue;
        }
        if (done[i]) continue;
        // The first expert of a fused tensor: gather every expert of it.
        size_t numel = lora_peft_fused_numel(&part);
        if (!(fused[i] = calloc(numel, sizeof(float)))) {
            snprintf(err, errlen, "out of memory writing %s", path);
            goto out;
        }
        int experts = 0;
        for (int k = i; k < n; k++)
            if (lora_peft_part_of(m, model_trained_at(m, k), &other) && !strcmp(other.name, part.name)) {
                lora_peft_pack(&other, host + off[k], fused[i]);
                done[k] = 1;
                experts++;
            }
        if (experts != part.n_experts) {
            snprintf(err, errlen, "%s: %d of %d experts' adapters for %s", path, experts, part.n_experts, part.name);
            goto out;
        }
        int64_t shape[2] = {part.is_b ? part.out : (int64_t)part.rank * part.n_experts,
                            part.is_b ? (int64_t)part.rank * part.n_experts : part.in};
        if (st_writer_add(w, part.name, ST_F32, 2, shape, fused[i], sizeof(float) * numel)) goto add;
    }
    rc = st_writer_finish(w, path, NULL, NULL, 0, err, errlen);
    goto out;
add:
    snprintf(err, errlen, "%s: cannot add a tensor", path);
out:
    if (w) st_writer_free(w);
    for (int i = 0; fused && i < n; i++) free(fused[i]);
    free(fused);
    free(done);
    free(off);
    return rc;
}

int lora_peft_read_experts(model *m, const st_set *st, const char *path, char *err, size_t errlen) {
    int consumed = 0;
    for (int i = 0; i < st_count(st); i++) consumed += lora_peft_is_fused_name(st_get(st, i)->name);
    // The experts of a layer's pair alternate A, B: one f32 copy of each fused tensor at a time.
    float *fused[2] = {NULL, NULL}, *q = NULL;
    char loaded[2][256] = {"", ""};
    int rc = -1;
    for (int i = 0; i < model_param_count(m); i++) {
        model_param *p = model_param_at(m, i);
        lora_peft_part part;
        if (!lora_peft_part_of(m, p, &part)) continue;
        const st_tensor *t = st_find(st, part.name);
        size_t numel = lora_peft_fused_numel(&part);
        int64_t rows = part.is_b ? part.out : (int64_t)part.rank * part.n_experts;
        if (!t || t->ndim != 2 || t->shape[0] != rows || (size_t)t->shape[0] * (size_t)t->shape[1] != numel) {
            snprintf(err, errlen, "%s: %s %s; gpt-oss's expert adapters (r %d, %d experts) need it with shape [%lld, %lld]",
                     path, part.name, t ? "has another shape" : "is missing", part.rank, part.n_experts, (long long)rows,
                     (long long)(numel / (size_t)rows));
            goto out;
        }
        int b = part.is_b;
        if (strcmp(loaded[b], part.name)) {
            float *nf = realloc(fused[b], numel * sizeof(float));
            if (!nf) {
                snprintf(err, errlen, "out of memory reading %s", part.name);
                goto out;
            }
            fused[b] = nf;
            if (st_read_f32(t, fused[b])) {
                snprintf(err, errlen, "%s: tensor %s has dtype %s, which quarry cannot read", path, t->name, t->dtype_name);
                goto out;
            }
            snprintf(loaded[b], sizeof loaded[b], "%s", part.name);
        }
        float *nq = realloc(q, p->n * sizeof *q);
        if (!nq) {
            snprintf(err, errlen, "out of memory reading %s", part.name);
            goto out;
        }
        q = nq;
        lora_peft_unpack(&part, fused[b], q);
        if (model_param_write(m, p, q) != 0) {
            snprintf(err, errlen, "%s: %s", p->name, model_error(m));
            goto out;
        }
    }
    rc = consumed;
out:
    free(fused[0]);
    free(fused[1]);
    free(q);
    return rc;
}
