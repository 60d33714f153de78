// trainer/train.c — see train.h.
#include "train.h"
#include "gpu_energy.h"
#include "metrics.h"
#include "schedule.h"
#include "zero.h"
#include "../data/progress.h"
#include "../data/fileio.h"
#include "../model/lora_peft.h"
#include "../kernels/rng.h"
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_requested = 0;

// Fault injection for the tests of resume and NaN handling, from QUARRY_TEST_FAULT:
// "kill-after-step:N" (SIGKILL once step N is computed, before its checkpoint),
// "kill-in-checkpoint:N" (SIGKILL with step N's checkpoint half written),
// "nan-at-steps:A-B" (the loss of steps A..B reads as NaN). Unset in normal use.
// Data parallel: "kill-rank-after-step:R:N" (only rank R is killed), "fail-rank-at-step:R:N"
// (rank R fails with an error, telling the others), "vanish-rank-at-step:R:N" (rank R leaves
// without a word, as a dead process: the others must time out).
typedef struct { int kill_after_step, kill_in_checkpoint, nan_from, nan_to, kill_rank, fail_rank, fail_step, vanish; } test_faults;

static test_faults read_faults(void) {
    test_faults f = {-1, -1, -1, -1, -1, -1, -1, 0};
    const char *v = getenv("QUARRY_TEST_FAULT");
    if (!v) return f;
    if (sscanf(v, "kill-rank-after-step:%d:%d", &f.kill_rank, &f.kill_after_step) == 2) return f;
    if (sscanf(v, "fail-rank-at-step:%d:%d", &f.fail_rank, &f.fail_step) == 2) return f;
    if (sscanf(v, "vanish-rank-at-step:%d:%d", &f.fail_rank, &f.fail_step) == 2) { f.vanish = 1; return f; }
    if (sscanf(v, "kill-after-step:%d", &f.kill_after_step) == 1) return f;
    if (sscanf(v, "kill-in-checkpoint:%d", &f.kill_in_checkpoint) == 1) return f;
    if (sscanf(v, "nan-at-steps:%d-%d", &f.nan_from, &f.nan_to) == 2) return f;
    return f;
}

// The PCI bus id of this rank's GPU ("" on the CPU). QUARRY_TEST_PCI_BUS_ID ("BUS[,BUS...]", one
// per rank) stands in for it in the tests, which meter CPU runs against a fake NVML.
static void rank_bus_id(const backend *be, int rank, char *out, size_t outlen) {
    const char *v = getenv("QUARRY_TEST_PCI_BUS_ID");
    snprintf(out, outlen, "%s", be->pci_bus_id);
    for (int r = 0; v && r <= rank; r++) {
        size_t n = strcspn(v, ",");
        if (r == rank) snprintf(out, outlen, "%.*s", (int)n, v);
        v = v[n] ? v + n + 1 : NULL;
    }
}

static void on_signal(int sig) { (void)sig; stop_requested = 1; }

void train_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

// Host buffers of one micro-batch.
typedef struct {
    int32_t *ids, *targets, *pos, *doc_start;
} host_batch;

static int host_batch_alloc(host_batch *h, int rows, int T) {
    size_t n = (size_t)rows * T;
    h->ids = malloc(sizeof(int32_t) * 4 * n);
    if (!h->ids) return -1;
    h->targets = h->ids + n;
    h->pos = h->targets + n;
    h->doc_start = h->pos + n;
    return 0;
}

int train_evaluate_dist(model *m, const example_set *set, int micro_batch, uint64_t seed, dist *d, double *loss,
                        long long *tokens, char *err, size_t errlen) {
    packed_epoch e;
    if (dataset_pack_epoch(set, seed, 0, 0, &e, err, errlen)) return -1;
    host_batch h;
    if (host_batch_alloc(&h, micro_batch, e.seq_len)) { packed_epoch_free(&e); snprintf(err, errlen, "out of memory"); return -1; }
    double sum = 0;
    long long n = 0;
    int rc = 0, W = dist_world(d), rank = dist_rank(d);
    for (int r = 0, k = 0; r < e.nrows; r += micro_batch, k++) {
        if (k % W != rank) continue;
        int rows = e.nrows - r < micro_batch ? e.nrows - r : micro_batch;
        dataset_fill_batch(&e, r, rows, h.ids, h.targets, h.pos, h.doc_start);
        model_batch b = {rows, e.seq_len, h.ids, h.targets, h.pos, h.doc_start, 0};
        model_loss l = {0};
        if (model_forward(m, &b, 0.0f, &l)) {
            snprintf(err, errlen, "evaluation: %s", model_error(m));
            rc = -1;
            break;
        }
        sum += l.sum;
        n += l.tokens;
    }
    free(h.ids);
    packed_epoch_free(&e);
    if (rc == 0 && d) {
        double v[2] = {sum, (double)n};
        if (dist_all_reduce_host(d, v, 2)) { snprintf(err, errlen, "evaluation: %s", dist_error(d)); return -1; }
        sum = v[0];
        n = (long long)v[1];
    }
    *loss = n ? sum / (double)n : NAN;
    if (tokens) *tokens = n;
    return rc;
}

// Rows of each epoch are fixed by (seed, epoch): count the steps of the whole run up front so
// the schedule knows its length.
static int count_steps(const train_settings *s, const example_set *train, int *steps_per_epoch, char *err, size_t errlen) {
    int total = 0;
    for (int ep = 0; ep < s->epochs; ep++) {
        packed_epoch e;
        if (dataset_pack_epoch(train, s->seed, ep, 1, &e, err, errlen)) return -1;
        steps_per_epoch[ep] = (e.nrows + s->batch_size - 1) / s->batch_size;
        total += steps_per_epoch[ep];
        packed_epoch_free(&e);
    }
    if (s->max_steps > 0 && s->max_steps < total) total = s->max_steps;
    return total;
}

// Drops metric rows past the checkpoint a resumed run starts from (a killed run may have logged
// steps it never saved), keeping the header.
static void truncate_csv(const char *run_dir, const char *name, int last_step) {
    char path[4200], err[256];
    snprintf(path, sizeof path, "%s/%s", run_dir, name);
    char *text;
    size_t len;
    if (fileio_read_all(path, &text, &len, err, sizeof err)) return;
    size_t keep = 0;
    int first = 1;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t l = nl ? (size_t)(nl - line + 1) : strlen(line);
        if (!first && atoi(line) > last_step) break;
        first = 0;
        keep += l;
        line += l;
    }
    fileio_write_atomic(path, text, keep, err, sizeof err);
    free(text);
}

int train_rank_micro_batch(const train_settings *s, int world) {
    int per_rank = (s->batch_size + world - 1) / world;
    return s->micro_batch < per_rank ? s->micro_batch : per_rank;
}

// Rank 0 checks the checkpoint, reads it a field at a time and spreads it over the ranks.
// 1 resumed, 0 nothing to resume, -1 (the caller aborts the group).
static int resume(const char *ckpt, zero_comm *z, dist *d, train_state *st, char *err, size_t errlen) {
    int32_t status = 0;
    int lead = dist_rank(d) == 0;
    if (lead && ckpt) status = checkpoint_open(ckpt, z->m, st, err, errlen) ? -1 : 1;
    if (dist_broadcast_host(d, &status, sizeof status, 0)) { snprintf(err, errlen, "%s", dist_error(d)); return -1; }
    if (status < 0 && !lead) snprintf(err, errlen, "rank 0 could not load the checkpoint to resume from");
    if (status <= 0) return status;
    float *host = lead ? malloc(sizeof(float) * (checkpoint_field_elements(z->m) + 1)) : NULL;
    int rc = lead && !host ? -1 : 0;
    if (rc) snprintf(err, errlen, "out of host memory reading %s", ckpt);
    for (int f = CHECKPOINT_MASTER; f <= CHECKPOINT_V && !rc; f++) {
        if (lead && checkpoint_read_field(ckpt, z->m, (checkpoint_field)f, host, err, errlen)) rc = -1;
        else rc = zero_spread_field(z, (checkpoint_field)f, host, err, errlen);
    }
    free(host);
    if (!rc && dist_broadcast_host(d, st, sizeof *st, 0)) { snprintf(err, errlen, "%s", dist_error(d)); rc = -1; }
    return rc ? -1 : 1;
}

// Every rank calls it: the shards are gathered, rank 0 writes, and all learn whether it worked.
static int save_checkpoint(const train_settings *s, const char *run_dir, zero_comm *z, dist *d, const train_state *st,
                           const test_faults *faults, char *err, size_t errlen) {
    int32_t status = 0;
    if (dist_rank(d) == 0) {
        if (st->step == faults->kill_in_checkpoint) checkpoint_test_kill_midway = 1;
        status = checkpoint_save(run_dir, z->m, zero_gather_field, z, st, s->keep_checkpoints, err, errlen) ? -1 : 0;
    } else {
        for (int f = CHECKPOINT_MASTER; f <= CHECKPOINT_V && !status; f++)
            status = zero_gather_field(z, (checkpoint_field)f, NULL, err, errlen);
    }
    if (dist_world(d) > 1) {
        if (dist_broadcast_host(d, &status, sizeof status, 0)) { snprintf(err, errlen, "%s", dist_error(d)); return -1; }
        if (status && dist_rank(d) != 0) snprintf(err, errlen, "rank 0 could not write the checkpoint");
    }
    return status;
}

// RUN/final/model.safetensors (full) or adapter_model.safetensors (LoRA): the gathered masters.
static int write_final(const train_settings *s, const char *run_dir, zero_comm *z, dist *d, char *err, size_t errlen) {
    int lead = dist_rank(d) == 0;
    float *host = lead ? malloc(sizeof(float) * (checkpoint_field_elements(z->m) + 1)) : NULL;
    if (lead && !host) { snprintf(err, errlen, "out of host memory for the final weights"); return -1; }
    char dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s/final", run_dir);
    snprintf(path, sizeof path, "%s/%s", dir, s->full ? "model.safetensors" : "adapter_model.safetensors");
    int rc = zero_gather_field(z, CHECKPOINT_MASTER, host, err, errlen);
    // An adapter as PEFT stores it: gpt-oss's expert adapters packed into its fused tensors (model/lora_peft.h).
    if (!rc && lead)
        rc = fileio_mkdir_p(dir, err, errlen) || (s->full ? checkpoint_write_tensors(path, z->m, host, err, errlen)
                                                          : lora_peft_write(path, z->m, host, err, errlen))
                 ? -1 : 0;
    free(host);
    return rc;
}

int train_run_dist(const train_settings *s, backend *be, model *m, const example_set *train, const example_set *val,
                   const char *run_dir, const char *resume_checkpoint, double peak_flops, dist *d, int zero,
                   train_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    res->first_val_loss = res->last_val_loss = NAN;
    res->energy_joules = -1;
    const int W = dist_world(d), rank = dist_rank(d), lead = rank == 0;
    if (!d) zero = 0;
    int *steps_per_epoch = calloc(s->epochs, sizeof(int));
    if (!steps_per_epoch) { snprintf(err, errlen, "out of memory"); return -1; }
    int total_steps = count_steps(s, train, steps_per_epoch, err, errlen);
    if (total_steps < 0) { free(steps_per_epoch); return -1; }
    if (total_steps == 0) {
        snprintf(err, errlen, "the training data packs into no batch; check --max-seq-len and the data");
        free(steps_per_epoch);
        return -1;
    }

    zero_comm z;
    if (zero_init(&z, m, be, d, zero, err, errlen)) {
        dist_abort(d, err);
        free(steps_per_epoch);
        return -1;
    }
    train_state st = {0};
    st.best_val_loss = INFINITY;
    int resumed = resume(lead ? resume_checkpoint : NULL, &z, d, &st, err, errlen);
    if (resumed < 0) {
        dist_abort(d, err);
        zero_free(&z);
        free(steps_per_epoch);
        return -1;
    }
    if (resumed && lead) fprintf(stderr, "quarry train: resuming from %s (step %d of %d)\n", resume_checkpoint, st.step, total_steps);
    metrics mt;
    if (resumed && lead) {
        truncate_csv(run_dir, "step_wise_training_metrics.csv", st.step);
        truncate_csv(run_dir, "validation_metrics.csv", st.step);
    }
    const model_config *mcfg = model_get_config(m);
    int moe = mcfg->n_experts > 0;
    if (lead && metrics_open(&mt, run_dir, resumed ? st.step : -1, moe, err, errlen)) {
        dist_abort(d, err);
        zero_free(&z);
        free(steps_per_epoch);
        return -1;
    }

    const int T = s->max_seq_len, MB = train_rank_micro_batch(s, W);
    host_batch h;
    if (host_batch_alloc(&h, s->batch_size, T)) {
        snprintf(err, errlen, "out of memory for batch buffers");
        dist_abort(d, err);
        zero_free(&z);
        free(steps_per_epoch);
        if (lead) metrics_close(&mt);
        return -1;
    }
    // Tokens per second count the whole global batch: MFU against every rank's peak.
    const double peak_all = peak_flops * W;
    const model_config *cfg = model_get_config(m);
    // 6·N per token for full training; LoRA skips dW of the frozen base: about 4·N.
    double flops_per_token = (double)model_config_num_params(cfg) * (s->full ? 6.0 : 4.0) +
                             12.0 * cfg->num_layers * cfg->num_heads * cfg->head_dim * (double)T / 2;

    char bus[64], energy_why[320] = "";
    rank_bus_id(be, rank, bus, sizeof bus);
    gpu_energy meter;
    int metering = bus[0] && !gpu_energy_start(&meter, NULL, bus, energy_why, sizeof energy_why);

    test_faults faults = read_faults();
    int rc = 0, epoch = st.epoch, row = st.next_row, stopping = 0;
    packed_epoch e = {0};
    int have_epoch = 0;
    progress pg;
    progress_start(&pg, "train", "step", total_steps, s->quiet || !lead);
    progress_update(&pg, st.step, NULL);
    int eval_every = s->eval_every > 0 ? s->eval_every : steps_per_epoch[0];
    int save_every = s->save_every > 0 ? s->save_every : steps_per_epoch[0];
    if (val && !resumed) {
        double vl;
        if (train_evaluate_dist(m, val, MB, s->seed, d, &vl, NULL, err, errlen)) { rc = -1; goto done; }
        res->first_val_loss = vl;
        val_point vp = {0, 0, vl};
        if (lead) {
            metrics_log_val(&mt, &vp);
            fprintf(stderr, "quarry train: validation loss before training %.4f (perplexity %.2f)\n", vl, exp(vl));
        }
    }

    while (st.step < total_steps && !stopping && !(W == 1 && stop_requested)) {
        if (!have_epoch || row >= e.nrows) {
            if (have_epoch) { packed_epoch_free(&e); epoch++; row = 0; }
            if (epoch >= s->epochs) break;
            if (dataset_pack_epoch(train, s->seed, epoch, 1, &e, err, errlen)) { rc = -1; goto done; }
            have_epoch = 1;
        }
        double t0 = now_seconds();
        int rows = e.nrows - row < s->batch_size ? e.nrows - row : s->batch_size;
        // Every rank fills the whole global batch: its trained tokens normalise every
        // micro-batch's gradient on every rank.
        long trained = dataset_fill_batch(&e, row, rows, h.ids, h.targets, h.pos, h.doc_start);
        long long real_tokens = 0;
        for (int i = 0; i < rows; i++) real_tokens += dataset_row_used(&e, row + i);
        float grad_scale = trained > 0 ? 1.0f / (float)trained : 0.0f;
        // This rank's rows: a contiguous share; its micro-batches are numbered after those of
        // the ranks before it (the dropout streams of one rank's run with the same partition).
        int first = 0, mine = 0, mb0 = 0;
        for (int q = 0; q <= rank; q++) {
            int cnt = rows / W + (q < rows % W);
            if (q < rank) { first += cnt; mb0 += (cnt + MB - 1) / MB; }
            else mine = cnt;
        }
        double loss_sum = 0, aux_sum = 0;   // aux_sum: Σ aux·tokens (as the objective weighs it)
        long long loss_tokens = 0;
        model_zero_grads(m);
        int nmb = (mine + MB - 1) / MB;
        for (int mb = 0; mb < nmb; mb++) {
            int r = mine - mb * MB < MB ? mine - mb * MB : MB;
            size_t off = (size_t)(first + mb * MB) * T;
            model_batch b = {r, T, h.ids + off, h.targets + off, h.pos + off, h.doc_start + off,
                             rng_mix64(s->seed ^ rng_mix64(((uint64_t)st.step << 20) + (uint64_t)(mb0 + mb)))};
            model_loss l = {0};
            // ZeRO-2 reduces every micro-batch's gradient; ZeRO-0/1 the sum, after the last.
            z.active = z.staged || mb == nmb - 1;
            if (model_forward(m, &b, grad_scale, &l) || model_backward(m) || zero_drain(&z)) {
                const char *why = d && dist_error(d)[0] ? dist_error(d) : model_error(m);
                snprintf(err, errlen, "step %d: %s", st.step + 1, why);
                rc = -1;
                goto done;
            }
            loss_sum += l.sum;
            loss_tokens += l.tokens;
            aux_sum += l.aux * (double)l.tokens;
        }
        // The busiest rank has ceil(rows / W) rows; the reductions of its micro-batches (ZeRO-2),
        // or the one after its last (ZeRO-0/1), need every rank.
        int busiest = (rows / W + (rows % W > 0) + MB - 1) / MB;
        int idle = !d ? 0 : z.staged ? busiest - nmb : nmb == 0;
        for (int i = 0; i < idle; i++) {
            if (zero_reduce_idle(&z)) {
                snprintf(err, errlen, "step %d: %s", st.step + 1, dist_error(d));
                rc = -1;
                goto done;
            }
        }
        if (rank == faults.fail_rank && st.step + 1 == faults.fail_step) {
            snprintf(err, errlen, "step %d: test fault on rank %d", st.step + 1, rank);
            rc = -1;
            if (faults.vanish) rc = -2;
            goto done;
        }
        // Loss sums and the stop request, agreed by all ranks.
        double gnorm, v[4] = {loss_sum, (double)loss_tokens, stop_requested ? 1.0 : 0.0, aux_sum};
        if (dist_all_reduce_host(d, v, 4) || zero_grad_norm(&z, &gnorm)) {
            snprintf(err, errlen, "step %d: %s", st.step + 1, d ? dist_error(d) : "gradient norm");
            rc = -1;
            goto done;
        }
        loss_sum = v[0];
        loss_tokens = (long long)v[1];
        aux_sum = v[3];
        if (d) stopping = v[2] > 0;
        double loss = loss_tokens ? loss_sum / (double)loss_tokens : NAN;
        if (st.step + 1 >= faults.nan_from && st.step + 1 <= faults.nan_to) loss = NAN;
        double lr = schedule_lr(s->schedule, s->lr, st.step, s->warmup_steps, total_steps, s->min_lr_ratio);
        if (!isfinite(loss) || !isfinite(gnorm)) {
            st.nan_streak++;
            st.nan_skipped++;
            if (lead)
                fprintf(stderr, "\nquarry train: step %d: %s is not finite; step skipped (%d in a row)\n", st.step + 1,
                        !isfinite(loss) ? "loss" : "gradient norm", st.nan_streak);
            if (st.nan_streak >= 3) {
                res->nan_stopped = 1;
                snprintf(err, errlen, "three steps in a row had NaN/inf loss or gradients; stopped. The last good "
                         "checkpoint is intact in %s/checkpoints; try a lower --lr or --max-grad-norm", run_dir);
                rc = -1;
                goto done;
            }
        } else {
            st.nan_streak = 0;
            // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1.
            float clip = 1.0f;
            if (s->max_grad_norm > 0 && gnorm > s->max_grad_norm) clip = (float)(s->max_grad_norm / (gnorm + 1e-6));
            st.adam_step++;
            int n = model_trained_count(m);
            size_t es = dtype_size(be->act_dtype);
            for (int i = 0; i < n; i++) {
                model_param *p = model_trained_at(m, i);
                if (!p->own_len) continue;
                // With f32 activations the master is the act copy.
                void *act = be->act_dtype == DTYPE_F32 ? NULL : (char *)p->act + p->own_begin * es;
                be->adamw_update(be, p->master, act, p->grad_own, p->m, p->v, p->own_len, (float)lr, (float)s->beta1,
                                 (float)s->beta2, (float)s->eps, p->weight_decay ? (float)s->weight_decay : 0.0f,
                                 st.adam_step, clip);
            }
            if (zero_gather_params(&z)) {
                snprintf(err, errlen, "step %d: %s", st.step + 1, dist_error(d));
                rc = -1;
                goto done;
            }
        }
        be->synchronize(be);
        double dt = now_seconds() - t0;
        st.step++;
        row += rows;
        st.epoch = epoch;
        st.next_row = row;
        st.tokens_seen += real_tokens;
        st.train_seconds += dt;
        res->last_train_loss = loss;
        double tps = dt > 0 ? real_tokens / dt : 0;
        train_point tp = {st.step, epoch + 1, loss, lr, gnorm, tps,
                          peak_all > 0 ? tps * flops_per_token / peak_all : 0,
                          loss_tokens ? aux_sum / (double)loss_tokens : 0};
        if (lead) metrics_log_train(&mt, &tp);
        char extra[160];
        if (peak_flops > 0) snprintf(extra, sizeof extra, "loss %.4f lr %.2e tok/s %.0f MFU %.1f%%", loss, lr, tps, 100 * tp.mfu);
        else snprintf(extra, sizeof extra, "loss %.4f lr %.2e tok/s %.0f", loss, lr, tps);
        progress_update(&pg, st.step, extra);

        if (st.step == faults.kill_after_step && (faults.kill_rank < 0 || faults.kill_rank == rank)) raise(SIGKILL);
        if (W == 1) stopping = stop_requested;
        int epoch_end = row >= e.nrows;
        if (epoch_end) { st.epoch = epoch + 1; st.next_row = 0; }
        int last = st.step >= total_steps;
        if (val && (st.step % eval_every == 0 || epoch_end || last)) {
            double vl;
            if (train_evaluate_dist(m, val, MB, s->seed, d, &vl, NULL, err, errlen)) { rc = -1; goto done; }
            res->last_val_loss = vl;
            val_point vp = {st.step, epoch + 1, vl};
            if (lead) metrics_log_val(&mt, &vp);
            if (vl < st.best_val_loss - 1e-6) { st.best_val_loss = vl; st.evals_without_improvement = 0; }
            else st.evals_without_improvement++;
            char serr[256];
            if (lead && metrics_write_svg(&mt, serr, sizeof serr)) fprintf(stderr, "quarry train: warning: %s\n", serr);
            if (s->early_stopping_patience > 0 && st.evals_without_improvement >= s->early_stopping_patience) {
                if (lead)
                    fprintf(stderr, "\nquarry train: validation loss has not improved for %d evaluations; stopping early\n",
                            st.evals_without_improvement);
                res->stopped_early = 1;
            }
        }
        if (st.step % save_every == 0 || epoch_end || last || stopping || res->stopped_early) {
            if (save_checkpoint(s, run_dir, &z, d, &st, &faults, err, errlen)) { rc = -1; goto done; }
        }
        if (res->stopped_early) break;
    }
    if (gpu_energy_total(&meter, metering, energy_why, sizeof energy_why, d, &res->energy_joules, &res->energy_gpu)) {
        snprintf(err, errlen, "summing the GPUs' energy: %s", dist_error(d));
        rc = -1;
        goto done;
    }
    metering = 0;
    if (lead && res->energy_gpu && res->energy_joules < 0)
        fprintf(stderr, "quarry train: note: GPU energy not measured (%s); `quarry cost` will use --gpu-watts\n", energy_why);
    if (stopping || (W == 1 && stop_requested)) {
        res->interrupted = 1;
        if (save_checkpoint(s, run_dir, &z, d, &st, &faults, err, errlen)) rc = -1;
    } else if (write_final(s, run_dir, &z, d, err, errlen)) {
        rc = -1;
    }
done:
    if (metering) gpu_energy_close(&meter);
    if (rc == -1) dist_abort(d, err);   // the other ranks stop waiting for this one
    if (rc == -2) rc = -1;              // test fault: a rank that vanished without a word
    progress_finish(&pg);
    if (lead) {
        char serr[256];
        if (metrics_write_svg(&mt, serr, sizeof serr)) fprintf(stderr, "quarry train: warning: %s\n", serr);
    }
    res->steps_done = st.step;
    res->tokens_seen = st.tokens_seen;
    res->train_seconds = st.train_seconds;
    res->tokens_per_second = st.train_seconds > 0 ? st.tokens_seen / st.train_seconds : 0;
    res->mfu = peak_all > 0 ? res->tokens_per_second * flops_per_token / peak_all : 0;
    if (have_epoch) packed_epoch_free(&e);
    free(h.ids);
    zero_free(&z);
    free(steps_per_epoch);
    if (lead) metrics_close(&mt);
    return rc;
}
