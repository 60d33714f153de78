// trainer/zero.c — see zero.h.
#include "zero.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void zero_model_options(model_options *o, const dist *d, int zero) {
    int world = dist_world(d);
    o->shard_world = d && zero >= 1 && world > 1 ? world : 0;
    o->shard_rank = o->shard_world ? dist_rank(d) : 0;
    o->shard_grads = o->shard_world && zero == 2;
}

static const model_segment *segment(const zero_comm *z, int s) { return model_segment_at(z->m, s); }
static int layers(const zero_comm *z) { return model_segment_count(z->m) - 1; }

// ZeRO-2: the reduced shard of segment s is final in its staging: add it to the rank's sum.
static void accumulate(zero_comm *z, int s) {
    const model_segment *sg = segment(z, s);
    z->be->add_f32(z->be, sg->grad_own, sg->grad + sg->own_off, sg->own_len);
}

// Index of the pending slot of segment s: layers alternate between slots 0 and 1.
static int slot_of(const zero_comm *z, int s) { return s == layers(z) ? 2 : s % 2; }

static int settle(zero_comm *z, int slot) {
    if (z->pending_seg[slot] < 0) return 0;
    if (dist_wait(z->d, z->pending_ticket[slot])) return -1;
    accumulate(z, z->pending_seg[slot]);
    z->pending_seg[slot] = -1;
    return 0;
}

// The model is about to reuse segment s's staging: the reduction of whatever used it last must
// be done and added.
static int hook_before(void *ctx, int s) {
    zero_comm *z = ctx;
    return z->staged ? settle(z, slot_of(z, s)) : 0;
}

static int hook_after(void *ctx, int s) {
    zero_comm *z = ctx;
    if (!z->active) return 0;
    const model_segment *sg = segment(z, s);
    int t = z->zero == 0 ? dist_all_reduce_start(z->d, sg->grad, sg->n) : dist_reduce_scatter_start(z->d, sg->grad, sg->n);
    if (t < 0) return -1;
    if (z->staged) {
        z->pending_seg[slot_of(z, s)] = s;
        z->pending_ticket[slot_of(z, s)] = t;
    }
    return 0;
}

int zero_init(zero_comm *z, model *m, backend *be, dist *d, int zero, char *err, size_t errlen) {
    memset(z, 0, sizeof *z);
    z->m = m;
    z->be = be;
    z->d = d;
    z->zero = zero;
    z->sharded = d && zero >= 1 && dist_world(d) > 1;
    z->staged = z->sharded && zero == 2;
    for (int i = 0; i < 3; i++) z->pending_seg[i] = -1;
    int n = model_trained_count(m);
    z->host_off = malloc(sizeof(size_t) * (size_t)(n ? n : 1));
    z->norm_host = malloc(sizeof(float) * (size_t)(n ? n : 1));
    z->norm_dev = be->alloc(be, sizeof(float) * (size_t)(n ? n : 1));
    if (!z->host_off || !z->norm_host || !z->norm_dev) {
        snprintf(err, errlen, "out of memory for the data-parallel state");
        zero_free(z);
        return -1;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        z->host_off[i] = off;
        off += model_trained_at(m, i)->n;
    }
    if (d) {
        model_grad_hooks h = {hook_before, hook_after, z};
        model_set_grad_hooks(m, &h);
    }
    return 0;
}

void zero_free(zero_comm *z) {
    if (z->d) dist_finish(z->d);   // after a failure too: nothing may still read the model's buffers
    if (z->m) model_set_grad_hooks(z->m, NULL);
    if (z->norm_dev) z->be->free(z->be, z->norm_dev);
    free(z->host_off);
    free(z->norm_host);
    memset(z, 0, sizeof *z);
}

int zero_drain(zero_comm *z) {
    if (!z->d) return 0;
    for (int slot = 0; slot < 3; slot++)
        if (settle(z, slot)) return -1;
    return dist_finish(z->d);
}

int zero_reduce_idle(zero_comm *z) {
    if (!z->d) return 0;
    int L = layers(z);
    z->active = 1;
    // The order of the backward's hooks: the layers from the last, then the rest.
    for (int k = 0; k <= L; k++) {
        int s = k < L ? L - 1 - k : L;
        const model_segment *sg = segment(z, s);
        if (!sg->n) continue;
        if (hook_before(z, s)) return -1;
        if (z->staged) z->be->memset_zero(z->be, sg->grad, sg->n * 4);
        if (hook_after(z, s)) return -1;
    }
    return zero_drain(z);
}

// Σ g² per tensor (one f32 rounding each), summed in double in tensor order: a tensor split
// between ranks adds one rounding, so the norm hardly depends on the world size (clipping
// scales every update by it).
int zero_grad_norm(zero_comm *z, double *norm) {
    backend *be = z->be;
    int n = model_trained_count(z->m);
    be->memset_zero(be, z->norm_dev, sizeof(float) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        model_param *p = model_trained_at(z->m, i);
        if (p->own_len) be->sum_squares(be, z->norm_dev + i, p->grad_own, p->own_len);
    }
    be->copy_to_host(be, z->norm_host, z->norm_dev, sizeof(float) * (size_t)n);
    double v = 0;
    for (int i = 0; i < n; i++) v += z->norm_host[i];
    if (z->sharded && dist_all_reduce_host(z->d, &v, 1)) return -1;
    *norm = sqrt(v);
    return 0;
}

int zero_gather_params(zero_comm *z) {
    if (!z->sharded) return 0;
    for (int s = 0; s < model_segment_count(z->m); s++) {
        const model_segment *sg = segment(z, s);
        if (sg->n && dist_all_gather(z->d, sg->act, sg->n, z->be->act_dtype)) return -1;
    }
    return 0;
}

static float *field_of(model_param *p, checkpoint_field f) {
    return f == CHECKPOINT_M ? p->m : f == CHECKPOINT_V ? p->v : p->master;
}

int zero_gather_field(void *ctx, checkpoint_field f, float *host, char *err, size_t errlen) {
    zero_comm *z = ctx;
    backend *be = z->be;
    int n = model_trained_count(z->m);
    if (!z->sharded) {   // every rank holds every element
        for (int i = 0; i < n && host; i++) {
            model_param *p = model_trained_at(z->m, i);
            be->copy_to_host(be, host + z->host_off[i], field_of(p, f), sizeof(float) * p->n);
        }
        return 0;
    }
    // The owned parts meet in the segment's gradient buffer (spent by now), all-gathered.
    for (int s = 0; s < model_segment_count(z->m); s++) {
        const model_segment *sg = segment(z, s);
        if (!sg->n) continue;
        for (int i = 0; i < n; i++) {
            model_param *p = model_trained_at(z->m, i);
            if (p->segment == s && p->own_len)
                be->copy(be, sg->grad + p->seg_off + p->own_begin, field_of(p, f), sizeof(float) * p->own_len);
        }
        if (dist_all_gather(z->d, sg->grad, sg->n, DTYPE_F32)) {
            snprintf(err, errlen, "gathering a checkpoint: %s", dist_error(z->d));
            return -1;
        }
        for (int i = 0; i < n && host; i++) {
            model_param *p = model_trained_at(z->m, i);
            if (p->segment == s) be->copy_to_host(be, host + z->host_off[i], sg->grad + p->seg_off, sizeof(float) * p->n);
        }
    }
    return 0;
}

int zero_spread_field(zero_comm *z, checkpoint_field f, const float *host, char *err, size_t errlen) {
    backend *be = z->be;
    int n = model_trained_count(z->m);
    for (int s = 0; s < model_segment_count(z->m); s++) {
        const model_segment *sg = segment(z, s);
        if (!sg->n) continue;
        for (int i = 0; i < n && host; i++) {
            model_param *p = model_trained_at(z->m, i);
            if (p->segment == s) be->copy_to_device(be, sg->grad + p->seg_off, host + z->host_off[i], sizeof(float) * p->n);
        }
        if (dist_broadcast(z->d, sg->grad, sizeof(float) * sg->n, 0)) {
            snprintf(err, errlen, "restoring a checkpoint: %s", dist_error(z->d));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            model_param *p = model_trained_at(z->m, i);
            if (p->segment != s) continue;
            const float *src = sg->grad + p->seg_off;
            if (f == CHECKPOINT_MASTER) {
                be->cast_f32_to_act(be, p->act, src, p->n);   // with f32 activations: the master too
                if (be->act_dtype != DTYPE_F32 && p->own_len)
                    be->copy(be, p->master, src + p->own_begin, sizeof(float) * p->own_len);
            } else if (p->own_len) {
                be->copy(be, field_of(p, f), src + p->own_begin, sizeof(float) * p->own_len);
            }
        }
    }
    be->synchronize(be);
    return 0;
}
