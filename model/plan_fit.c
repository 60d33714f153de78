// model/plan_fit.c — see plan_fit.h.
#include "plan_fit.h"
#include <stdio.h>
#include <string.h>

static double gib(size_t b) { return (double)b / 1073741824.0; }

size_t plan_fit_budget(size_t free_bytes, size_t total_bytes, int gpu, int sharing) {
    if (sharing < 1) sharing = 1;
    if (!gpu) return total_bytes / (size_t)sharing;
    size_t margin = free_bytes / 20 + ((size_t)256 << 20);
    return free_bytes > margin ? free_bytes - margin : 0;
}

// The plan's total at micro-batch b; 0 with err set when model_plan refuses the options.
static size_t plan_total(model *m, const model_options *opt, int b, char *err, size_t errlen) {
    model_options o = *opt;
    o.batch_size = b;
    model_memory p;
    if (model_plan(m, &o, &p, err, errlen) != 0) return 0;
    return p.total;
}

// Micro-batch 1 does not fit: says which changes would make it fit, measured on the plans.
static void fit_error(model *m, const model_options *opt, size_t one, size_t budget, char *err, size_t errlen) {
    model_memory p;
    model_options o = *opt;
    o.batch_size = 1;
    model_plan(m, &o, &p, NULL, 0);   // planned by the caller just before: cannot fail
    size_t fixed = p.total - p.activations;
    char fix[4][96];
    int n = 0;
    if (opt->checkpoint != MODEL_RECOMPUTE_FULL) {
        o.checkpoint = MODEL_RECOMPUTE_FULL;
        size_t t = plan_total(m, &o, 1, NULL, 0);
        if (t && t <= budget) snprintf(fix[n++], sizeof fix[0], "--recompute full (%.2f GiB)", gib(t));
        o.checkpoint = opt->checkpoint;
    }
    // The longest sequence that fits, in steps of 64 tokens (a plan is monotone in it too).
    int lo = 0, hi = opt->seq_len / 64;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        o.seq_len = mid * 64;
        size_t t = plan_total(m, &o, 1, NULL, 0);
        if (t && t <= budget) lo = mid;
        else hi = mid - 1;
    }
    if (lo > 0 && lo * 64 < opt->seq_len) snprintf(fix[n++], sizeof fix[0], "--max-seq-len %d or less", lo * 64);
    o.seq_len = opt->seq_len;
    if (opt->train == MODEL_TRAIN_FULL) snprintf(fix[n++], sizeof fix[0], "--method lora");
    if (opt->train == MODEL_TRAIN_LORA && !opt->experts_mxfp4 && opt->quant == MODEL_QUANT_NONE) {
        // gpt-oss: the experts kept in MXFP4 (0 when the model or its checkpoint has none).
        o.experts_mxfp4 = 1;
        size_t t = plan_total(m, &o, 1, NULL, 0);
        if (t && t <= budget) snprintf(fix[n++], sizeof fix[0], "--experts-dtype mxfp4 (%.2f GiB)", gib(t));
        o.experts_mxfp4 = 0;
    }
    if (opt->train == MODEL_TRAIN_LORA && opt->quant == MODEL_QUANT_NONE && !opt->experts_mxfp4) {
        // QLoRA: the frozen linears in 4 bits (0 when the model cannot: MoE).
        o.quant = MODEL_QUANT_NF4;
        size_t t = plan_total(m, &o, 1, NULL, 0);
        if (t && t <= budget) snprintf(fix[n++], sizeof fix[0], "--quantize nf4 (%.2f GiB)", gib(t));
        o.quant = opt->quant;
    }
    char hint[480];
    if (n == 0) {
        snprintf(hint, sizeof hint, "the weights and trained state alone take %.2f GiB: this model needs a device with "
                 "more memory", gib(fixed));
    } else {   // "try A", "try A or B", "try A, B or C", ...
        size_t k = (size_t)snprintf(hint, sizeof hint, "try %s", fix[0]);
        for (int i = 1; i < n && k < sizeof hint; i++)
            k += (size_t)snprintf(hint + k, sizeof hint - k, "%s%s", i == n - 1 ? " or " : ", ", fix[i]);
    }
    snprintf(err, errlen, "even micro-batch 1 does not fit: its memory plan needs %.2f GiB (%.2f GiB of activations at "
             "sequence length %d, recompute %s), more than the %.2f GiB this device offers; %s", gib(one),
             gib(p.activations), opt->seq_len, model_recompute_name(opt->checkpoint), gib(budget), hint);
}

int plan_fit_micro_batch(model *m, const model_options *opt, int max_micro, size_t budget, plan_fit *out,
                         char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->max_micro = max_micro;
    out->budget = budget;
    if (max_micro < 1) {
        snprintf(err, errlen, "the batch to split into micro-batches has %d sequences", max_micro);
        return -1;
    }
    size_t one = plan_total(m, opt, 1, err, errlen);
    if (!one) return -1;
    if (one > budget) {
        fit_error(m, opt, one, budget, err, errlen);
        return -1;
    }
    // Binary search for the largest fit in [1, max_micro]: lo fits, hi + 1 does not.
    int lo = 1, hi = max_micro;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        size_t t = plan_total(m, opt, mid, err, errlen);
        if (!t) return -1;
        if (t <= budget) lo = mid;
        else hi = mid - 1;
    }
    out->largest = lo;
    if (lo < max_micro) {
        out->next_bytes = plan_total(m, opt, lo + 1, err, errlen);
        if (!out->next_bytes) return -1;
    }
    // The same number of passes with even micro-batches: less memory, no ragged last one.
    int passes = (max_micro + lo - 1) / lo;
    out->micro_batch = (max_micro + passes - 1) / passes;
    out->plan_bytes = plan_total(m, opt, out->micro_batch, err, errlen);   // leaves m planned at it
    return out->plan_bytes ? 0 : -1;
}

void plan_fit_describe(const plan_fit *f, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "micro-batch %d: plan %.2f GiB of %.2f GiB usable", f->micro_batch,
                                gib(f->plan_bytes), gib(f->budget));
    if (k >= n) return;
    if (f->micro_batch < f->largest)
        k += (size_t)snprintf(buf + k, n - k, "; up to %d fit, %d passes of %d split the batch of %d evenly",
                              f->largest, (f->max_micro + f->micro_batch - 1) / f->micro_batch, f->micro_batch,
                              f->max_micro);
    if (k >= n) return;
    if (f->next_bytes)
        snprintf(buf + k, n - k, "; %d would need %.2f GiB", f->largest + 1, gib(f->next_bytes));
    else
        snprintf(buf + k, n - k, "; the whole batch of %d in one pass", f->max_micro);
}

static const char *offload_names[] = {"auto", "on", "off"};

int plan_offload_parse(const char *s, plan_offload *out) {
    if (!s) s = "auto";
    for (int i = 0; i < 3; i++)
        if (strcmp(s, offload_names[i]) == 0) {
            *out = (plan_offload)i;
            return 0;
        }
    return -1;
}

const char *plan_offload_name(plan_offload o) { return o >= 0 && o <= 2 ? offload_names[o] : "?"; }

int plan_fit_memory(model *m, model_options *opt, plan_offload mode, size_t budget, char *why, size_t whylen,
                    char *err, size_t errlen) {
    if (why && whylen) why[0] = '\0';
    opt->offload = mode == PLAN_OFFLOAD_ON;
    opt->mlp_chunk = 0;
    size_t asked = plan_total(m, opt, opt->batch_size, err, errlen);
    if (!asked) return -1;
    if (asked <= budget || opt->train == MODEL_TRAIN_NONE) return 0;
    // The steps, each keeping the one before when the model allows it (model_plan refuses
    // chunks with LoRA dropout or MLP biases, offload on MoE models).
    size_t t = asked;
    model_options o = *opt;
    o.mlp_chunk = PLAN_MLP_CHUNK;
    size_t chunked = (size_t)o.batch_size * (size_t)o.seq_len > PLAN_MLP_CHUNK ? plan_total(m, &o, o.batch_size, NULL, 0) : 0;
    if (chunked && chunked < t) {
        *opt = o;
        t = chunked;
        if (why) snprintf(why, whylen, "the MLP in chunks of %d rows (the plan without them needs %.2f GiB, %.2f GiB "
                          "usable)", PLAN_MLP_CHUNK, gib(asked), gib(budget));
        if (t <= budget) return 0;
    }
    if (mode != PLAN_OFFLOAD_AUTO) return 0;
    o = *opt;
    o.offload = 1;
    size_t off = plan_total(m, &o, o.batch_size, NULL, 0);
    if (off && off < t) {
        *opt = o;
        if (why && opt->mlp_chunk)
            snprintf(why, whylen, "activations offloaded to pinned host memory, with the MLP in chunks of %d rows (the "
                     "plan needs %.2f GiB as asked, %.2f GiB with the chunks alone; %.2f GiB usable)", opt->mlp_chunk,
                     gib(asked), gib(t), gib(budget));
        else if (why)
            snprintf(why, whylen, "activations offloaded to pinned host memory (the plan without it needs %.2f GiB, "
                     "%.2f GiB usable)", gib(t), gib(budget));
    }
    return 0;
}
