// tests/tokenizer/test_tokenizer_hf.c — quarry's tokenizer against Hugging Face `tokenizers`:
// ids (with and without special tokens), byte offsets and decode on a generated corpus of
// 20,000 strings for every tokenizer.json built by scripts/reference/make_tokenizers.py, and
// ids on llama.cpp's test vectors (made by HF). The Python side runs once per build dir and
// its output is cached in build/tokenizer-cache/.
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "data/tokenizer.h"
#include "test.h"

#define MAX_SHOWN 4

// Sanitizer builds run ~20x slower: there every 8th corpus string is checked (all in Release).
#if defined(__SANITIZE_ADDRESS__)
#define CORPUS_STRIDE 8
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORPUS_STRIDE 8
#endif
#endif
#ifndef CORPUS_STRIDE
#define CORPUS_STRIDE 1
#endif

static const char *NAMES[] = {"llama3", "llama2", "mistral1", "mistral3", "gpt2", "qwen2", "qwen3", "gptoss", "mixtral", "phi3",
                              "gpt2-flags", "gpt2-split", "mistral1-split"};

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static double mtime(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (double)st.st_mtime : -1;
}

static int run(const char *cmd) {
    printf("  running: %s\n", cmd);
    fflush(stdout);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "FAIL: command failed (%d): %s\n", rc, cmd);
    return rc;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = 0;
        if (len) *len = (size_t)n;
    }
    return b;
}

// Splits a buffer into lines in place.
static char **lines_of(char *buf, int *n) {
    int cap = 1024, k = 0;
    char **v = malloc((size_t)cap * sizeof *v);
    char *p = buf;
    while (v && *p) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        if (k == cap) {
            cap *= 2;
            char **nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) {
                free(v);
                return NULL;
            }
            v = nv;
        }
        v[k++] = p;
        if (!nl) break;
        p = nl + 1;
    }
    *n = k;
    return v;
}

static void show_text(const char *s, size_t len) {
    fputc('"', stderr);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stderr);
        else if (c == '\r') fputs("\\r", stderr);
        else if (c == '\t') fputs("\\t", stderr);
        else if (c == '"') fputs("\\\"", stderr);
        else if (c < 0x20) fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
    }
    fputc('"', stderr);
}

static void show_ids(const char *label, const int32_t *ids, int n) {
    fprintf(stderr, "  %-7s[", label);
    for (int i = 0; i < n && i < 48; i++) fprintf(stderr, i ? ", %d" : "%d", ids[i]);
    fprintf(stderr, "%s]\n", n > 48 ? ", ..." : "");
}

static int json_ints(const cJSON *a, int32_t **out) {
    int n = cJSON_GetArraySize(a), k = 0;
    *out = malloc((size_t)(n + 1) * sizeof **out);
    const cJSON *it;
    if (!*out) return -1;
    cJSON_ArrayForEach(it, a)(*out)[k++] = (int32_t)it->valuedouble;
    return n;
}

static int same(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

typedef struct {
    long strings, ids_bad, sp_bad, off_bad, dec_bad, skip_bad, roundtrip, roundtrip_hf;
} stats;

// One string: compare everything HF produced (row) with quarry.
static void check_one(const tokenizer *t, const char *name, int idx, int total, const char *s, size_t len,
                      const cJSON *row, stats *st) {
    int32_t *hf_ids, *hf_sp, *hf_off, *ids, *offs, *sp;
    int nh = json_ints(cJSON_GetArrayItem(row, 0), &hf_ids);
    int nhs = json_ints(cJSON_GetArrayItem(row, 1), &hf_sp);
    int nho = json_ints(cJSON_GetArrayItem(row, 2), &hf_off);
    const char *hf_dec = cJSON_GetArrayItem(row, 3)->valuestring;
    const char *hf_skip = cJSON_GetArrayItem(row, 4)->valuestring;
    char err[256];
    int n = tokenizer_encode(t, s, len, 0, &ids, &offs, err, sizeof err);
    int ns = tokenizer_encode(t, s, len, 1, &sp, NULL, err, sizeof err);
    st->strings++;
    if (n < 0 || ns < 0) {
        CHECK(0, "%s string %d: encode failed: %s", name, idx, err);
        goto out;
    }
    if (!same(ids, n, hf_ids, nh)) {
        if (st->ids_bad++ < MAX_SHOWN) {
            fprintf(stderr, "FAIL tokenizer %s (string %d of %d): ", name, idx + 1, total);
            show_text(s, len);
            fputc('\n', stderr);
            show_ids("quarry:", ids, n);
            show_ids("hf:", hf_ids, nh);
        }
    } else if (nho != 2 * n || (n && memcmp(offs, hf_off, (size_t)nho * sizeof *offs))) {
        if (st->off_bad++ < MAX_SHOWN) {
            fprintf(stderr, "FAIL offsets %s (string %d of %d): ", name, idx + 1, total);
            show_text(s, len);
            fputc('\n', stderr);
            show_ids("quarry:", offs, 2 * n);
            show_ids("hf:", hf_off, nho);
        }
    }
    if (!same(sp, ns, hf_sp, nhs)) {
        if (st->sp_bad++ < MAX_SHOWN) {
            fprintf(stderr, "FAIL tokenizer %s add_special (string %d of %d): ", name, idx + 1, total);
            show_text(s, len);
            fputc('\n', stderr);
            show_ids("quarry:", sp, ns);
            show_ids("hf:", hf_sp, nhs);
        }
    }
    // Decode HF's own ids, so a decode difference is not hidden behind an encode one.
    size_t dl;
    char *dec = tokenizer_decode(t, hf_ids, nh, 0, &dl);
    if (!dec || strlen(hf_dec) != dl || memcmp(dec, hf_dec, dl)) {
        if (st->dec_bad++ < MAX_SHOWN) {
            fprintf(stderr, "FAIL decode %s (string %d of %d):\n  quarry: ", name, idx + 1, total);
            show_text(dec ? dec : "(null)", dec ? dl : 6);
            fprintf(stderr, "\n  hf:     ");
            show_text(hf_dec, strlen(hf_dec));
            fputc('\n', stderr);
        }
    }
    if (strlen(hf_dec) == len && memcmp(hf_dec, s, len) == 0) {
        st->roundtrip_hf++;
        size_t rl;
        char *rt = tokenizer_decode(t, ids, n, 0, &rl);
        if (rt && rl == len && memcmp(rt, s, len) == 0) st->roundtrip++;
        free(rt);
    }
    free(dec);
    dec = tokenizer_decode(t, hf_sp, nhs, 1, &dl);
    if (!dec || strlen(hf_skip) != dl || memcmp(dec, hf_skip, dl)) {
        if (st->skip_bad++ < MAX_SHOWN) {
            fprintf(stderr, "FAIL decode skip_special %s (string %d of %d):\n  quarry: ", name, idx + 1, total);
            show_text(dec ? dec : "(null)", dec ? dl : 6);
            fprintf(stderr, "\n  hf:     ");
            show_text(hf_skip, strlen(hf_skip));
            fputc('\n', stderr);
        }
    }
    free(dec);
out:
    if (n >= 0) {
        free(ids);
        free(offs);
    }
    if (ns >= 0) free(sp);
    free(hf_ids);
    free(hf_sp);
    free(hf_off);
}

static void report(const char *what, const char *name, const stats *st) {
    printf("%s %s: %ld strings; mismatches: ids %ld, ids+special %ld, offsets %ld, decode %ld, decode(skip) %ld; "
           "round-trip %ld/%ld (of those HF round-trips)\n",
           what, name, st->strings, st->ids_bad, st->sp_bad, st->off_bad, st->dec_bad, st->skip_bad, st->roundtrip,
           st->roundtrip_hf);
    CHECK(st->ids_bad == 0 && st->sp_bad == 0 && st->off_bad == 0 && st->dec_bad == 0 && st->skip_bad == 0,
          "%s %s differs from HF", what, name);
    CHECK(st->roundtrip == st->roundtrip_hf, "%s %s: decode(encode(x)) != x where HF round-trips", what, name);
}

// texts: the strings (already parsed); rows: HF's expectations, one JSON line each.
static void compare(const char *what, const char *name, const tokenizer *t, char **texts, size_t *lens, int ntexts,
                    const char *exp_path) {
    char *buf = slurp(exp_path, NULL);
    CHECK(buf != NULL, "cannot read %s", exp_path);
    int nrows = 0;
    char **rows = buf ? lines_of(buf, &nrows) : NULL;
    CHECK(nrows == ntexts, "%s: %d expectation rows for %d strings", exp_path, nrows, ntexts);
    stats st = {0};
    int stride = ntexts > 1000 ? CORPUS_STRIDE : 1;
    for (int i = 0; rows && i < nrows && i < ntexts; i += stride) {
        cJSON *row = cJSON_Parse(rows[i]);
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != 5) {
            CHECK(0, "%s:%d: not an expectation row", exp_path, i + 1);
            cJSON_Delete(row);
            break;
        }
        check_one(t, name, i, ntexts, texts[i], lens[i], row, &st);
        cJSON_Delete(row);
    }
    report(what, name, &st);
    free(rows);
    free(buf);
}

static void free_texts(char **texts, size_t *lens, int n) {
    for (int i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(lens);
}

int main(void) {
    const char *td = test_env("QUARRY_TESTDATA", "../shared/testdata");
    const char *py = test_env("QUARRY_PYTHON", ".venv/bin/python");
    const char *src = test_env("QUARRY_SOURCE_DIR", ".");
    const char *bld = test_env("QUARRY_BUILD_DIR", "build");
    char p[2048], q[2048], cmd[16384];
    snprintf(p, sizeof p, "%s/tokenizers/llama3/tokenizer.model", td);
    if (!exists(p)) SKIP("../shared/testdata not found (%s)", td);
    if (!exists(py)) SKIP(".venv not found (%s); run scripts/setup.sh", py);
    char cache[1024], maker[1024], oracle[1024];
    snprintf(cache, sizeof cache, "%s/tokenizer-cache", bld);
    if (getenv("QUARRY_TOKENIZER_CACHE") && *getenv("QUARRY_TOKENIZER_CACHE"))
        snprintf(cache, sizeof cache, "%s", getenv("QUARRY_TOKENIZER_CACHE"));
    snprintf(maker, sizeof maker, "%s/scripts/reference/make_tokenizers.py", src);
    snprintf(oracle, sizeof oracle, "%s/tests/tokenizer/hf_oracle.py", src);
    double scripts_time = mtime(maker) > mtime(oracle) ? mtime(maker) : mtime(oracle);
    snprintf(p, sizeof p, "%s/phi3.json", cache);
    if (!exists(p) || mtime(p) < mtime(maker)) {
        snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s'", py, maker, td, cache);
        if (run(cmd)) return test_finish("test_tokenizer_hf");
    }
    char corpus[1200];
    snprintf(corpus, sizeof corpus, "%s/corpus.jsonl", cache);
    if (!exists(corpus) || mtime(corpus) < scripts_time) {
        snprintf(cmd, sizeof cmd, "'%s' '%s' corpus '%s' 20000", py, oracle, corpus);
        if (run(cmd)) return test_finish("test_tokenizer_hf");
    }
    int nnames = (int)(sizeof NAMES / sizeof NAMES[0]);
    for (int i = 0; i < nnames; i++) {
        snprintf(p, sizeof p, "%s/%s.json", cache, NAMES[i]);
        snprintf(q, sizeof q, "%s/%s.expect.jsonl", cache, NAMES[i]);
        if (!exists(q) || mtime(q) < mtime(corpus) || mtime(q) < mtime(p)) {
            snprintf(cmd, sizeof cmd, "'%s' '%s' expect '%s' '%s' '%s'", py, oracle, p, corpus, q);
            if (run(cmd)) return test_finish("test_tokenizer_hf");
        }
    }
    // The corpus, parsed once.
    char *cbuf = slurp(corpus, NULL);
    CHECK(cbuf != NULL, "cannot read %s", corpus);
    if (!cbuf) return test_finish("test_tokenizer_hf");
    int nlines = 0;
    char **lines = lines_of(cbuf, &nlines);
    char **texts = calloc((size_t)nlines + 1, sizeof *texts);
    size_t *lens = calloc((size_t)nlines + 1, sizeof *lens);
    for (int i = 0; i < nlines; i++) {
        cJSON *s = cJSON_Parse(lines[i]);
        if (!cJSON_IsString(s)) {
            CHECK(0, "%s:%d: not a JSON string", corpus, i + 1);
            cJSON_Delete(s);
            return test_finish("test_tokenizer_hf");
        }
        texts[i] = strdup(s->valuestring);
        lens[i] = strlen(texts[i]);
        cJSON_Delete(s);
    }
    free(lines);
    free(cbuf);
    CHECK(nlines >= 20000, "corpus has %d strings, want >= 20000", nlines);
    if (CORPUS_STRIDE > 1) printf("sanitizer build: checking every %dth corpus string\n", CORPUS_STRIDE);
    for (int i = 0; i < nnames; i++) {
        clock_t c0 = clock();
        snprintf(p, sizeof p, "%s/%s.json", cache, NAMES[i]);
        snprintf(q, sizeof q, "%s/%s.expect.jsonl", cache, NAMES[i]);
        char err[512];
        tokenizer *t = tokenizer_load(p, err, sizeof err);
        CHECK(t != NULL, "%s", err);
        if (t) compare("corpus", NAMES[i], t, texts, lens, nlines, q);
        tokenizer_free(t);
        printf("  (%s: %.1f s)\n", NAMES[i], (double)(clock() - c0) / CLOCKS_PER_SEC);
    }
    free_texts(texts, lens, nlines);

    // llama.cpp's vectors: HF's ids for each string (ground truth), and our expectations for
    // the rest (offsets, decode) from the same tokenizer.json.
    static const char *vec[][2] = {{"llama-bpe", "llama3"}, {"llama-spm", "llama2"}, {"gpt-2", "gpt2"}, {"phi-3", "phi3"}};
    for (int v = 0; v < 4; v++) {
        char inp[1024], out[1024];
        snprintf(inp, sizeof inp, "%s/tokenizers/vectors/%s.inp", td, vec[v][0]);
        snprintf(out, sizeof out, "%s/tokenizers/vectors/%s.out", td, vec[v][0]);
        snprintf(p, sizeof p, "%s/%s.json", cache, vec[v][1]);
        snprintf(q, sizeof q, "%s/vectors-%s.expect.jsonl", cache, vec[v][0]);
        if (!exists(q) || mtime(q) < mtime(p) || mtime(q) < scripts_time) {
            snprintf(cmd, sizeof cmd, "'%s' '%s' vectors '%s' '%s' '%s'", py, oracle, p, inp, q);
            if (run(cmd)) return test_finish("test_tokenizer_hf");
        }
        size_t ilen;
        char *ibuf = slurp(inp, &ilen), *obuf = slurp(out, NULL);
        CHECK(ibuf && obuf, "cannot read %s / %s", inp, out);
        if (!ibuf || !obuf) return test_finish("test_tokenizer_hf");
        int cap = 64, n = 0;
        char **vt = malloc((size_t)cap * sizeof *vt);
        size_t *vl = malloc((size_t)cap * sizeof *vl);
        const char *sep = "\n__ggml_vocab_test__\n";
        char *s = ibuf;
        for (char *e; (e = strstr(s, sep)) != NULL; s = e + strlen(sep)) {
            if (n == cap) {
                cap *= 2;
                vt = realloc(vt, (size_t)cap * sizeof *vt);
                vl = realloc(vl, (size_t)cap * sizeof *vl);
                if (!vt || !vl) return 1;
            }
            vl[n] = (size_t)(e - s);
            vt[n] = malloc(vl[n] + 1);
            memcpy(vt[n], s, vl[n]);
            vt[n][vl[n]] = 0;
            n++;
        }
        // Ground truth first: the .out ids.
        char err[512];
        tokenizer *t = tokenizer_load(p, err, sizeof err);
        CHECK(t != NULL, "%s", err);
        int no = 0;
        char **ol = lines_of(obuf, &no);
        CHECK(no == n, "%s: %d lines of ids for %d strings", out, no, n);
        int bad = 0;
        for (int i = 0; t && i < n && i < no; i++) {
            int32_t want[4096];
            int nw = 0;
            for (char *tok = strtok(ol[i], " "); tok && nw < 4096; tok = strtok(NULL, " ")) want[nw++] = atoi(tok);
            int32_t *ids;
            int k = tokenizer_encode(t, vt[i], vl[i], 0, &ids, NULL, err, sizeof err);
            if (k < 0 || !same(ids, k, want, nw)) {
                if (bad++ < MAX_SHOWN) {
                    fprintf(stderr, "FAIL vectors %s (string %d of %d): ", vec[v][0], i + 1, n);
                    show_text(vt[i], vl[i]);
                    fputc('\n', stderr);
                    if (k >= 0) show_ids("quarry:", ids, k);
                    show_ids("hf:", want, nw);
                }
            }
            if (k >= 0) free(ids);
        }
        printf("vectors %s: %d strings, %d differ from the HF ids in %s\n", vec[v][0], n, bad, out);
        CHECK(bad == 0, "vectors %s differ", vec[v][0]);
        free(ol);
        if (t) compare("vectors", vec[v][0], t, vt, vl, n, q);
        tokenizer_free(t);
        free_texts(vt, vl, n);
        free(ibuf);
        free(obuf);
    }
    return test_finish("test_tokenizer_hf");
}
