// kernels/cpu/attention.c — causal attention with GQA, document masks, sliding windows and
// learned sinks, flash-style: tiles of TQ query rows run an online softmax over tiles of TK
// keys, so no (T × T) matrix exists; the backward recomputes the probabilities from the saved
// logsumexp.
// Layout: q, out (B*Tq, H, hd); k, v (B*Tk, KVH, hd); lse (B, H, Tq); sinks (H).  Query row i
// of a batch sits at key position p = i + Tk − Tq and sees keys j with doc_start[p] ≤ j ≤ p and,
// with a window W > 0, p − j < W.  A sink joins each row's softmax denominator after the keys
// (the order does not matter: the online softmax is exact) and lse includes it, so the
// backward's P = exp(S − lse) are the probabilities the forward used.
// The tile products (S = Q·Kᵀ, O += P·V, ...) run through the packed single-thread gemm of
// linear.c; OpenMP hands whole tiles to threads, so every output element is summed by one
// thread in a fixed order: results do not depend on the thread count.
#include "cpu_ops.h"
#include "cpu_math.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { TQ = 48, TK = 64 };

// The op contract (kernels/backend.h): packed = 0 promises one document per row.  A caller that
// breaks it would get silently wrong results from a backend that trusts it (cuDNN), so the CPU
// backend, where the check costs nothing next to the attention, stops on it.
static void check_packed(const int32_t *doc_start, int packed, int B, int Tk) {
    if (!packed && attention_rows_packed(doc_start, (size_t)B * Tk)) {
        fprintf(stderr, "quarry: attention: called with packed = 0 but doc_start marks several documents in a row "
                "(a caller's bug: pass attention_rows_packed(doc_start))\n");
        exit(1);
    }
}

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

static inline int imin(int a, int b) { return a < b ? a : b; }

// The first key a query at position p may see: its document's start (clipped at 0) and, with a
// window, p − window + 1 (transformers' sliding_window_overlay: kv_idx > q_idx − window).
static inline int first_key(const int32_t *doc, int p, int window) {
    int lo = doc[p] < 0 ? 0 : doc[p];
    return window > 0 && p - window + 1 > lo ? p - window + 1 : lo;
}

// Per-thread scratch: two TK × TK tiles, two TK × hd accumulators, 3·TK small vectors and the
// gemm's packing space.
typedef struct {
    float *s, *dp, *acc_a, *acc_b, *m, *l, *gemm;
    int *ok;
} att_scratch;

static size_t scratch_floats(int hd) {
    size_t g1 = cpu_gemm_serial_scratch(TK, TK, hd), g2 = cpu_gemm_serial_scratch(TK, hd, TK);
    return 2 * (size_t)TK * TK + 2 * (size_t)TK * hd + 3 * (size_t)TK + (g1 > g2 ? g1 : g2);
}

static att_scratch scratch_at(float *base, int hd) {
    att_scratch s;
    s.s = base + (size_t)thread_id() * scratch_floats(hd);
    s.dp = s.s + TK * TK;
    s.acc_a = s.dp + TK * TK;
    s.acc_b = s.acc_a + (size_t)TK * hd;
    s.m = s.acc_b + (size_t)TK * hd;
    s.l = s.m + TK;
    s.ok = (int *)(s.l + TK);
    s.gemm = s.l + 2 * TK;
    return s;
}

void cpu_attention_forward(backend *be, void *out_, float *lse, const void *q_, const void *k_,
                           const void *v_, const int32_t *doc_start, int packed, int B, int Tq, int Tk,
                           int n_heads, int n_kv_heads, int hd, float scale, int window,
                           const float *sinks) {
    (void)be;
    check_packed(doc_start, packed, B, Tk);
    float *out = out_;
    const float *q = q_, *k = k_, *v = v_;
    if (hd <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads || B <= 0 || Tq <= 0) return;
    const int H = n_heads, KVH = n_kv_heads, group = H / KVH, off = Tk - Tq;
    const long qs = (long)H * hd, ks = (long)KVH * hd;
    const int nqb = (Tq + TQ - 1) / TQ, nth = max_threads();
    float *scratch = malloc((size_t)nth * scratch_floats(hd) * sizeof(float));
    if (!scratch) {  // no room for the tiles: poison the output so the step is skipped
        fill_nan(out, (size_t)B * Tq * qs);
        fill_nan(lse, (size_t)B * H * Tq);
        return;
    }
#pragma omp parallel num_threads(nth)
    {
        att_scratch w = scratch_at(scratch, hd);
#pragma omp for collapse(3) schedule(dynamic, 1)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int qb = 0; qb < nqb; qb++) {
                    const int32_t *doc = doc_start + (size_t)b * Tk;
                    const float *kb = k + (long)b * Tk * ks + (long)(h / group) * hd;
                    const float *vb = v + (long)b * Tk * ks + (long)(h / group) * hd;
                    const float *q0 = q + ((long)b * Tq + qb * TQ) * qs + (long)h * hd;
                    int i0 = qb * TQ, nq = imin(TQ, Tq - i0), p0 = i0 + off;
                    int jlo = Tk, jhi = p0 + nq - 1;
                    for (int r = 0; r < nq; r++) {
                        jlo = imin(jlo, first_key(doc, p0 + r, window));
                        w.m[r] = -INFINITY;
                        w.l[r] = 0.0f;
                    }
                    memset(w.acc_a, 0, (size_t)nq * hd * sizeof(float));
                    for (int jb = jlo; jb <= jhi; jb += TK) {
                        int nk = imin(TK, jhi - jb + 1);
                        // S (nq × nk) = scale · Q·Kᵀ, K read transposed in place.
                        cpu_gemm_serial(nq, nk, hd, scale, q0, qs, 1, kb + (long)jb * ks, 1, ks, 0.0f,
                                        w.s, TK, w.gemm);
                        for (int r = 0; r < nq; r++) {
                            int p = p0 + r, lo = first_key(doc, p, window);
                            float *sr = w.s + r * TK, bm = -INFINITY;
                            for (int t = 0; t < nk; t++) {
                                int j = jb + t;
                                sr[t] = j >= lo && j <= p ? sr[t] : -INFINITY;
                                bm = sr[t] > bm ? sr[t] : bm;
                            }
                            if (bm == -INFINITY) {  // nothing visible in this tile
                                memset(sr, 0, (size_t)nk * sizeof(float));
                                continue;
                            }
                            if (bm > w.m[r]) {  // rescale what was summed against the old maximum
                                float corr = expf(w.m[r] - bm), *ar = w.acc_a + (size_t)r * hd;
                                w.l[r] *= corr;
                                for (int d = 0; d < hd; d++) ar[d] *= corr;
                                w.m[r] = bm;
                            }
                            for (int t = 0; t < nk; t++) sr[t] -= w.m[r];
                            cpu_exp_array(sr, sr, nk);  // exp(−inf) = 0 for masked keys
                            for (int t = 0; t < nk; t++) w.l[r] += sr[t];
                        }
                        // acc (nq × hd) += P·V
                        cpu_gemm_serial(nq, hd, nk, 1.0f, w.s, TK, 1, vb + (long)jb * ks, ks, 1, 1.0f,
                                        w.acc_a, hd, w.gemm);
                    }
                    const float sink = sinks ? sinks[h] : -INFINITY;
                    for (int r = 0; r < nq; r++) {
                        float *o = out + ((long)b * Tq + i0 + r) * qs + (long)h * hd;
                        float *lse_r = lse + ((long)b * H + h) * Tq + i0 + r;
                        if (w.l[r] > 0.0f) {
                            // The sink: max over keys and sink, its e^{sink − m} in the
                            // denominator only (eager_attention_forward's combined_logits).
                            float m = w.m[r], l = w.l[r], corr = 1.0f;
                            if (sink > m) {
                                corr = expf(m - sink);
                                l *= corr;
                                m = sink;
                            }
                            l += expf(sink - m);  // 0 without sinks
                            float inv = corr / l;
                            for (int d = 0; d < hd; d++) o[d] = w.acc_a[(size_t)r * hd + d] * inv;
                            *lse_r = m + logf(l);
                        } else {  // no visible key (a malformed doc_start): zero output
                            memset(o, 0, (size_t)hd * sizeof(float));
                            *lse_r = sink;  // all weight on the sink (−inf without)
                        }
                    }
                }
    }
    free(scratch);
}

// With P = exp(scale·Q·Kᵀ − lse), dP = dO·Vᵀ, D_i = Σ dO_i·O_i and dS = P ∘ (dP − D):
//   dQ = scale · dS·K,  dK = scale · dSᵀ·Q,  dV = Pᵀ·dO.
// Two passes, each recomputing P, so that every output row is summed by one thread in a fixed
// order (deterministic) while keeping parallelism over tiles: dQ over query tiles, then dK and
// dV over key tiles (the query heads of a KV group in order).
// Sinks: the sink takes probability p_sink = exp(sink − lse) and no value, so O = Σ_j P_j V_j
// still holds and dS = P ∘ (dP − D) is unchanged; ∂loss/∂sink = p_sink · (0 − D), summed over
// the head's rows (b, i) in order by one thread.
void cpu_attention_backward(backend *be, void *dq_, void *dk_, void *dv_, const void *dout_,
                            const void *out_, const float *lse, const void *q_, const void *k_,
                            const void *v_, const int32_t *doc_start, int packed, int B, int Tq, int Tk,
                            int n_heads, int n_kv_heads, int hd, float scale, int window,
                            const float *sinks, float *dsinks) {
    (void)be;
    check_packed(doc_start, packed, B, Tk);
    float *dq = dq_, *dk = dk_, *dv = dv_;
    const float *dout = dout_, *out = out_, *q = q_, *k = k_, *v = v_;
    if (hd <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads || B <= 0) return;
    const int H = n_heads, KVH = n_kv_heads, group = H / KVH, off = Tk - Tq;
    const long qs = (long)H * hd, ks = (long)KVH * hd;
    const int nqb = (Tq + TQ - 1) / TQ, nkb = (Tk + TQ - 1) / TQ, nth = max_threads();
    float *D = malloc((size_t)B * H * Tq * sizeof(float) + 1);
    float *scratch = malloc((size_t)nth * scratch_floats(hd) * sizeof(float));
    if (!D || !scratch) {
        free(D);
        free(scratch);
        fill_nan(dq, (size_t)B * Tq * qs);
        fill_nan(dk, (size_t)B * Tk * ks);
        fill_nan(dv, (size_t)B * Tk * ks);
        return;
    }
#pragma omp parallel num_threads(nth)
    {
        att_scratch w = scratch_at(scratch, hd);
#pragma omp for collapse(3) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < Tq; i++) {
                    long row = ((long)b * Tq + i) * qs + (long)h * hd;
                    float sum = 0;
                    for (int d = 0; d < hd; d++) sum += dout[row + d] * out[row + d];
                    D[((long)b * H + h) * Tq + i] = sum;
                }
        if (sinks && dsinks) {
#pragma omp for schedule(static)
            for (int h = 0; h < H; h++) {
                double acc = 0;
                for (int b = 0; b < B; b++)
                    for (int i = 0; i < Tq; i++) {
                        long at = ((long)b * H + h) * Tq + i;
                        acc -= (double)expf(sinks[h] - lse[at]) * D[at];
                    }
                dsinks[h] += (float)acc;
            }
        }

        // Pass 1: dQ over query tiles, keys in tiles of TK.
#pragma omp for collapse(3) schedule(dynamic, 1)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int qb = 0; qb < nqb; qb++) {
                    const int32_t *doc = doc_start + (size_t)b * Tk;
                    const float *kb = k + (long)b * Tk * ks + (long)(h / group) * hd;
                    const float *vb = v + (long)b * Tk * ks + (long)(h / group) * hd;
                    long row0 = ((long)b * Tq + qb * TQ) * qs + (long)h * hd;
                    const float *Lb = lse + ((long)b * H + h) * Tq + qb * TQ;
                    const float *Db = D + ((long)b * H + h) * Tq + qb * TQ;
                    int i0 = qb * TQ, nq = imin(TQ, Tq - i0), p0 = i0 + off;
                    int jlo = Tk, jhi = p0 + nq - 1;
                    for (int r = 0; r < nq; r++) jlo = imin(jlo, first_key(doc, p0 + r, window));
                    memset(w.acc_a, 0, (size_t)nq * hd * sizeof(float));
                    for (int jb = jlo; jb <= jhi; jb += TK) {
                        int nk = imin(TK, jhi - jb + 1);
                        cpu_gemm_serial(nq, nk, hd, scale, q + row0, qs, 1, kb + (long)jb * ks, 1, ks, 0.0f,
                                        w.s, TK, w.gemm);
                        cpu_gemm_serial(nq, nk, hd, 1.0f, dout + row0, qs, 1, vb + (long)jb * ks, 1, ks, 0.0f,
                                        w.dp, TK, w.gemm);
                        for (int r = 0; r < nq; r++) {
                            int p = p0 + r, lo = first_key(doc, p, window);
                            float *sr = w.s + r * TK, *dpr = w.dp + r * TK;
                            for (int t = 0; t < nk; t++) sr[t] -= Lb[r];
                            cpu_exp_array(sr, sr, nk);
                            for (int t = 0; t < nk; t++) {
                                int j = jb + t;
                                sr[t] = j >= lo && j <= p ? sr[t] * (dpr[t] - Db[r]) : 0.0f;
                            }
                        }
                        // dQ (nq × hd) += dS·K
                        cpu_gemm_serial(nq, hd, nk, 1.0f, w.s, TK, 1, kb + (long)jb * ks, ks, 1, 1.0f,
                                        w.acc_a, hd, w.gemm);
                    }
                    for (int r = 0; r < nq; r++) {
                        float *o = dq + row0 + (long)r * qs;
                        for (int d = 0; d < hd; d++) o[d] = scale * w.acc_a[(size_t)r * hd + d];
                    }
                }

        // Pass 2: dK and dV for a tile of TQ keys, over the group's query heads and the query
        // rows that can see it, TK rows at a time.
#pragma omp for collapse(3) schedule(dynamic, 1)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < KVH; g++)
                for (int kt = 0; kt < nkb; kt++) {
                    const int32_t *doc = doc_start + (size_t)b * Tk;
                    int j0 = kt * TQ, nk = imin(TQ, Tk - j0);
                    long krow0 = ((long)b * Tk + j0) * ks + (long)g * hd;
                    memset(w.acc_a, 0, (size_t)nk * hd * sizeof(float));
                    memset(w.acc_b, 0, (size_t)nk * hd * sizeof(float));
                    // Query rows that can see the tile: from its first key on and, with a
                    // window, before its last key + window.
                    int ifirst = j0 - off > 0 ? j0 - off : 0, iend = Tq;
                    if (window > 0) iend = imin(Tq, j0 + nk - 1 + window - off);
                    for (int h = g * group; h < (g + 1) * group; h++)
                        for (int ib = ifirst; ib < iend; ib += TK) {
                            int nq = imin(TK, iend - ib), any = 0;
                            for (int r = 0; r < nq; r++) {  // rows whose visible keys meet the tile
                                int p = ib + r + off;
                                w.ok[r] = p >= j0 && first_key(doc, p, window) <= j0 + nk - 1;
                                any |= w.ok[r];
                            }
                            if (!any) continue;
                            long row0 = ((long)b * Tq + ib) * qs + (long)h * hd;
                            const float *Lb = lse + ((long)b * H + h) * Tq + ib;
                            const float *Db = D + ((long)b * H + h) * Tq + ib;
                            // S, dP (nq × nk, leading dimension TQ)
                            cpu_gemm_serial(nq, nk, hd, scale, q + row0, qs, 1, k + krow0, 1, ks, 0.0f, w.s,
                                            TQ, w.gemm);
                            cpu_gemm_serial(nq, nk, hd, 1.0f, dout + row0, qs, 1, v + krow0, 1, ks, 0.0f,
                                            w.dp, TQ, w.gemm);
                            for (int r = 0; r < nq; r++) {
                                int p = ib + r + off, lo = first_key(doc, p, window);
                                float *sr = w.s + r * TQ, *dpr = w.dp + r * TQ;
                                for (int t = 0; t < nk; t++) sr[t] -= Lb[r];
                                cpu_exp_array(sr, sr, nk);
                                for (int t = 0; t < nk; t++) {
                                    int j = j0 + t;
                                    if (w.ok[r] && j >= lo && j <= p) {
                                        dpr[t] = sr[t] * (dpr[t] - Db[r]);
                                    } else {
                                        sr[t] = dpr[t] = 0.0f;
                                    }
                                }
                            }
                            // dV (nk × hd) += Pᵀ·dO;  dK (nk × hd) += dSᵀ·Q
                            cpu_gemm_serial(nk, hd, nq, 1.0f, w.s, 1, TQ, dout + row0, qs, 1, 1.0f, w.acc_b,
                                            hd, w.gemm);
                            cpu_gemm_serial(nk, hd, nq, 1.0f, w.dp, 1, TQ, q + row0, qs, 1, 1.0f, w.acc_a,
                                            hd, w.gemm);
                        }
                    for (int t = 0; t < nk; t++)
                        for (int d = 0; d < hd; d++) {
                            dk[krow0 + (long)t * ks + d] = scale * w.acc_a[(size_t)t * hd + d];
                            dv[krow0 + (long)t * ks + d] = w.acc_b[(size_t)t * hd + d];
                        }
                }
    }
    free(D);
    free(scratch);
}
