// cli/generator.c — see generator.h.
#include "generator.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/fileio.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void add_stop(generator *g, int id) {
    if (id < 0 || id >= g->vocab) return;
    for (int i = 0; i < g->nstop; i++)
        if (g->stop[i] == id) return;
    if (g->nstop < GENERATOR_MAX_STOP) g->stop[g->nstop++] = id;
}

static int is_stop(const generator *g, int id) {
    for (int i = 0; i < g->nstop; i++)
        if (g->stop[i] == id) return 1;
    return 0;
}

cJSON *generator_read_json(const char *dir, const char *name) {
    char path[4200], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!fileio_exists(path)) return NULL;
    char *text = NULL;
    size_t len = 0;
    if (fileio_read_all(path, &text, &len, err, sizeof err) != 0) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    return j;
}

// eos_token_id as an int or a list of ints.
static void add_stops_from(generator *g, const cJSON *j) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "eos_token_id");
    if (cJSON_IsNumber(e)) add_stop(g, e->valueint);
    const cJSON *it;
    if (cJSON_IsArray(e)) cJSON_ArrayForEach(it, e) if (cJSON_IsNumber(it)) add_stop(g, it->valueint);
}

int generator_open(generator *g, const model_ref *ref, backend *be, const tokenizer *tok, const chat_template *tmpl,
                   const sample_params *sp, int ctx_wanted, char *err, size_t errlen) {
    memset(g, 0, sizeof *g);
    g->tok = tok;
    g->sp = *sp;
    // Open once for the config (context bound), then load with the plan.
    model *probe = model_open(ref->base_dir, be, err, errlen);
    if (!probe) return -1;
    const model_config *mc = model_get_config(probe);
    int max_pos = mc->max_position_embeddings > 0 ? mc->max_position_embeddings : 1 << 30;
    g->vocab = mc->vocab_size;
    g->tok_vocab = tokenizer_vocab_size(tok) < g->vocab ? tokenizer_vocab_size(tok) : g->vocab;
    model_free(probe);
    g->ctx = ctx_wanted > max_pos ? max_pos : ctx_wanted;
    if (g->ctx < 1) g->ctx = 1;
    model_options mo = {.batch_size = 1, .seq_len = g->ctx, .train = MODEL_TRAIN_NONE};
    double t0 = now_s();
    g->m = model_ref_load(ref, be, &mo, err, errlen);
    if (!g->m) return -1;
    g->load_seconds = now_s() - t0;
    cJSON *cfg = generator_read_json(ref->base_dir, "config.json");
    cJSON *gen_cfg = generator_read_json(ref->base_dir, "generation_config.json");
    if (tmpl && tmpl->eos[0]) add_stop(g, tokenizer_token_to_id(tok, tmpl->eos));
    add_stop(g, tokenizer_eos_id(tok));
    add_stops_from(g, cfg);
    add_stops_from(g, gen_cfg);
    cJSON_Delete(cfg);
    cJSON_Delete(gen_cfg);
    g->smp = sampler_new(sp, g->vocab);
    g->logits = malloc((size_t)g->vocab * sizeof *g->logits);
    if (!g->smp || !g->logits) {
        generator_free(g);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

void generator_free(generator *g) {
    free(g->logits);
    sampler_free(g->smp);
    model_free(g->m);
    memset(g, 0, sizeof *g);
}

int generator_encode_prompt(const chat_template *tmpl, const tokenizer *tok, const record *r, const char *raw,
                            int32_t **ids, char *err, size_t errlen) {
    if (!tmpl) return tokenizer_encode(tok, raw, strlen(raw), 1, ids, NULL, err, errlen);
    chat_rendered c;
    chat_options o = {0};
    if (chat_render_prompt(tmpl, r, &o, &c, err, errlen) != 0) return -1;
    int32_t *t = NULL;
    int n = tokenizer_encode(tok, c.text, c.len, 0, &t, NULL, err, errlen);
    int bos = tokenizer_bos_id(tok);
    int add_bos = n >= 0 && !c.has_bos && tokenizer_adds_bos(tok) && bos >= 0;
    chat_rendered_free(&c);
    if (n < 0) return -1;
    int32_t *o2 = malloc((size_t)(n + add_bos + 1) * sizeof *o2);
    if (!o2) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (add_bos) o2[0] = bos;
    if (n) memcpy(o2 + add_bos, t, (size_t)n * sizeof *t);
    free(t);
    *ids = o2;
    return n + add_bos;
}

// Bytes of s[0..n) that form whole characters: a trailing incomplete UTF-8 sequence, or the
// U+FFFD a byte-fallback decoder shows for one, is held back until the next token completes it.
static size_t complete_prefix(const char *s, size_t n) {
    size_t k = n;
    if (k >= 3 && (unsigned char)s[k - 3] == 0xEF && (unsigned char)s[k - 2] == 0xBF && (unsigned char)s[k - 1] == 0xBD)
        return k - 3;
    size_t i = k;
    while (i > 0 && k - i < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
    if (i == 0) return k;
    unsigned char c = (unsigned char)s[i - 1];
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return k - (i - 1) < need ? i - 1 : k;
}

int generator_run(generator *g, int32_t *ids, int n, int max_new, FILE *out, answer *a, char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    sampler_free(g->smp);
    g->smp = sampler_new(&g->sp, g->vocab);
    if (!g->smp) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t printed = 0;
    double t0 = now_s();
    int first = n;
    // The token sampled at the last position still counts; it just cannot be fed back.
    while (a->ntok < max_new && n <= g->ctx) {
        if (model_decode(g->m, ids, n, g->logits) != 0) {
            snprintf(err, errlen, "%s", model_error(g->m));
            free(a->text);
            a->text = NULL;
            return -1;
        }
        // Rows past the tokenizer's vocabulary (padding of the embedding) cannot be written out.
        for (int i = g->tok_vocab; i < g->vocab; i++) g->logits[i] = -INFINITY;
        int next = sampler_next(g->smp, g->logits);
        if (is_stop(g, next)) {
            a->stopped = 1;
            break;
        }
        ids[n++] = next;
        a->ntok++;
        size_t len = 0;
        char *text = tokenizer_decode(g->tok, ids + first, n - first, 1, &len);
        if (!text) {
            snprintf(err, errlen, "the tokenizer cannot decode token %d", next);
            free(a->text);
            a->text = NULL;
            return -1;
        }
        size_t ok = complete_prefix(text, len);
        if (out && ok > printed) {
            fwrite(text + printed, 1, ok - printed, out);
            fflush(out);
            printed = ok;
        }
        free(a->text);
        a->text = text;
    }
    if (!a->text) a->text = calloc(1, 1);
    if (!a->text) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t len = strlen(a->text);
    if (out && len > printed) fwrite(a->text + printed, 1, len - printed, out);
    if (out) fflush(out);
    a->seconds = now_s() - t0;
    return 0;
}
