// tests/tokenizer/test_tokenizer_api.c — data/tokenizer.h without the Python oracle: a tiny
// hand-made BPE whose ids can be worked out by hand, refusals that name the unsupported
// component, bad input (invalid UTF-8, unknown ids), special-token lookups on the real files
// when the build's tokenizer cache exists, and that threads sharing one tokenizer agree.
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/tokenizer.h"
#include "test.h"

static char tmpdir[256];

static char *write_json(const char *name, const char *json) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(json, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    return path;
}

// a, b, c, ab, abc, ▁ and the byte tokens for "\n"; merges in both spellings.
static const char *TINY =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
    "\"added_tokens\":[{\"id\":7,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true},{\"id\":8,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,"
    "\"rstrip\":false,\"normalized\":false,\"special\":true}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
    "\"pre_tokenizer\":null,"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],"
    "\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[7],\"tokens\":[\"<s>\"]},"
    "\"</s>\":{\"id\":\"</s>\",\"ids\":[8],\"tokens\":[\"</s>\"]}}},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},"
    "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \","
    "\"start\":1,\"stop\":0}]},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
    "\"end_of_word_suffix\":null,\"fuse_unk\":true,\"byte_fallback\":true,\"ignore_merges\":false,"
    "\"vocab\":{\"<unk>\":0,\"a\":1,\"b\":2,\"c\":3,\"ab\":4,\"abc\":5,\"\\u2581\":6,\"<s>\":7,\"</s>\":8,"
    "\"<0x0A>\":9,\"\\u2581ab\":10},"
    "\"merges\":[\"a b\",[\"ab\",\"c\"],\"\\u2581 ab\"]}}";

static int encode(const tokenizer *t, const char *s, int special, int32_t **ids, int32_t **offs) {
    char err[256];
    int n = tokenizer_encode(t, s, strlen(s), special, ids, offs, err, sizeof err);
    if (n < 0) fprintf(stderr, "encode(\"%s\"): %s\n", s, err);
    return n;
}

static void expect_ids(const tokenizer *t, const char *s, int special, const int32_t *want, int nwant) {
    int32_t *ids, *offs;
    int n = encode(t, s, special, &ids, &offs);
    int ok = n == nwant && (n == 0 || memcmp(ids, want, (size_t)n * sizeof *ids) == 0);
    CHECK(ok, "encode(\"%s\", special=%d): got %d ids, want %d", s, special, n, nwant);
    if (!ok && n > 0) {
        fprintf(stderr, "  got:");
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    if (n >= 0) {
        free(ids);
        free(offs);
    }
}

static void expect_refused(const char *name, const char *json, const char *needle) {
    char err[512] = "";
    tokenizer *t = tokenizer_load(write_json(name, json), err, sizeof err);
    CHECK(t == NULL, "%s: loaded although it should be refused", name);
    CHECK(strstr(err, needle) != NULL, "%s: error \"%s\" does not name \"%s\"", name, err, needle);
    tokenizer_free(t);
}

// TINY with one piece of it replaced (first occurrence of from → to).
static char *tiny_with(const char *from, const char *to) {
    static char buf[8192];
    const char *p = strstr(TINY, from);
    if (!p) {
        fprintf(stderr, "test bug: \"%s\" not in TINY\n", from);
        exit(1);
    }
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - TINY), TINY, to, p + strlen(from));
    return buf;
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/quarry-tokapi-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    char err[512];
    tokenizer *t = tokenizer_load(write_json("tiny.json", TINY), err, sizeof err);
    CHECK(t != NULL, "tiny tokenizer: %s", err);
    if (!t) return test_finish("test_tokenizer_api");

    // "abc" → "▁abc": ▁+ab merges first (rank 2 after a+b), then ab+c would need "ab" alone.
    // Ranks: a b (0), ab c (1), ▁ ab (2). Symbols ▁ a b c: a+b → ▁ ab c; ab+c (1) beats ▁+ab (2).
    expect_ids(t, "abc", 0, (int32_t[]){6, 5}, 2);
    expect_ids(t, "abc", 1, (int32_t[]){7, 6, 5, 8}, 4);
    expect_ids(t, "ab", 0, (int32_t[]){10}, 1);
    // Unknown characters fuse into one <unk>; "\n" has a byte token, which HF's BPE adds
    // before flushing the pending <unk>.
    expect_ids(t, "xyz\n", 0, (int32_t[]){6, 9, 0}, 3);
    expect_ids(t, "xyz\na", 0, (int32_t[]){6, 9, 0, 1}, 4);
    // Special tokens are split out before the normalizer (no ▁ prepended to "<s>").
    expect_ids(t, "<s>ab", 0, (int32_t[]){7, 10}, 2);
    expect_ids(t, "", 0, NULL, 0);
    expect_ids(t, "", 1, (int32_t[]){7, 8}, 2);

    int32_t *ids, *offs;
    int n = encode(t, "ab c", 0, &ids, &offs);
    CHECK(n == 3, "\"ab c\" has 3 tokens, got %d", n);
    if (n == 3) {
        // ▁ab ← prepended ▁ takes the first char's range; ▁ (from the space) and c.
        int32_t want[] = {0, 2, 2, 3, 3, 4};
        CHECK(memcmp(offs, want, sizeof want) == 0, "offsets of \"ab c\": [%d,%d] [%d,%d] [%d,%d]", offs[0], offs[1],
              offs[2], offs[3], offs[4], offs[5]);
        size_t len;
        char *s = tokenizer_decode(t, ids, n, 0, &len);
        CHECK(s && !strcmp(s, "ab c") && len == 4, "decode: \"%s\"", s ? s : "(null)");
        free(s);
        free(ids);
        free(offs);
    }
    n = encode(t, "ab", 1, &ids, &offs);
    if (n == 3) {
        CHECK(offs[0] == 0 && offs[1] == 0 && offs[4] == 0 && offs[5] == 0, "BOS/EOS offsets are [0,0)");
        char *s = tokenizer_decode(t, ids, n, 1, NULL);
        CHECK(s && !strcmp(s, "ab"), "decode skipping specials: \"%s\"", s ? s : "(null)");
        free(s);
        s = tokenizer_decode(t, ids, n, 0, NULL);
        CHECK(s && !strcmp(s, "<s> ab</s>"), "decode with specials: \"%s\"", s ? s : "(null)");
        free(s);
        free(ids);
        free(offs);
    }

    // Bad input.
    char e2[256] = "";
    n = tokenizer_encode(t, "a\xff" "b", 3, 0, &ids, NULL, e2, sizeof e2);
    CHECK(n == -1 && strstr(e2, "UTF-8") && strstr(e2, "byte 1"), "invalid UTF-8 refused with its byte: %d \"%s\"", n, e2);
    n = tokenizer_encode(t, "\xe2\x96", 2, 0, &ids, NULL, e2, sizeof e2);
    CHECK(n == -1, "truncated UTF-8 refused");
    int32_t bad[] = {1, 999};
    CHECK(tokenizer_decode(t, bad, 2, 0, NULL) == NULL, "decode of an unknown id is NULL");
    int32_t neg[] = {-1};
    CHECK(tokenizer_decode(t, neg, 1, 0, NULL) == NULL, "decode of a negative id is NULL");

    // Lookups.
    CHECK(tokenizer_vocab_size(t) == 11, "vocab size %d", tokenizer_vocab_size(t));
    CHECK(tokenizer_token_to_id(t, "abc") == 5 && tokenizer_token_to_id(t, "zz") == -1, "token_to_id");
    CHECK(tokenizer_id_to_token(t, 4) && !strcmp(tokenizer_id_to_token(t, 4), "ab"), "id_to_token");
    CHECK(tokenizer_id_to_token(t, 11) == NULL && tokenizer_id_to_token(t, -1) == NULL, "id_to_token out of range");
    CHECK(tokenizer_bos_id(t) == 7 && tokenizer_eos_id(t) == 8 && tokenizer_adds_bos(t) == 1, "bos %d eos %d adds %d",
          tokenizer_bos_id(t), tokenizer_eos_id(t), tokenizer_adds_bos(t));

    // Threads share one tokenizer (per-thread word caches) and agree with one thread.
    const char *texts[] = {"abc ab c", "a b c abc", "xyz abcabc", "<s>abc</s>", "ab\nab"};
    int32_t *ref[5];
    int nref[5];
    for (int i = 0; i < 5; i++) nref[i] = encode(t, texts[i], 0, &ref[i], &offs), free(offs);
    int disagree = 0;
#pragma omp parallel for reduction(+ : disagree)
    for (int k = 0; k < 4000; k++) {
        int i = k % 5;
        int32_t *v;
        char e3[128];
        int m = tokenizer_encode(t, texts[i], strlen(texts[i]), 0, &v, NULL, e3, sizeof e3);
        if (m != nref[i] || (m > 0 && memcmp(v, ref[i], (size_t)m * sizeof *v))) disagree++;
        if (m >= 0) free(v);
    }
    CHECK(disagree == 0, "%d of 4000 threaded encodes differ from the single-thread result", disagree);
    for (int i = 0; i < 5; i++) free(ref[i]);
    tokenizer_free(t);

    // Refusals name what is not implemented.
    expect_refused("nfkc.json", tiny_with("{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"}", "{\"type\":\"NFKC\"}"), "NFKC");
    expect_refused("ws.json", tiny_with("\"pre_tokenizer\":null", "\"pre_tokenizer\":{\"type\":\"Whitespace\"}"),
                   "Whitespace");
    expect_refused("wp.json", tiny_with("\"type\":\"BPE\"", "\"type\":\"WordPiece\""), "WordPiece");
    expect_refused("rob.json", tiny_with("\"type\":\"TemplateProcessing\"", "\"type\":\"RobertaProcessing\""),
                   "RobertaProcessing");
    expect_refused("dec.json", tiny_with("{\"type\":\"Fuse\"}", "{\"type\":\"CTC\"}"), "CTC");
    expect_refused("csp.json", tiny_with("\"continuing_subword_prefix\":null", "\"continuing_subword_prefix\":\"##\""),
                   "continuing_subword_prefix");
    expect_refused("eow.json", tiny_with("\"end_of_word_suffix\":null", "\"end_of_word_suffix\":\"</w>\""),
                   "end_of_word_suffix");
    expect_refused("trunc.json", tiny_with("\"truncation\":null", "\"truncation\":{\"max_length\":512}"), "truncation");
    expect_refused("drop.json", tiny_with("\"dropout\":null", "\"dropout\":0.1"), "dropout");
    expect_refused("merge.json", tiny_with("\"a b\"", "\"a q\""), "not in the vocab");
    expect_refused("unk.json", tiny_with("\"unk_token\":\"<unk>\"", "\"unk_token\":\"<nope>\""), "<nope>");
    expect_refused("regex.json",
                   tiny_with("\"pre_tokenizer\":null",
                             "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}"),
                   "regex");
    expect_refused("notjson.json", "{\"model\": [", "not valid JSON");
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nowhere/tokenizer.json", tmpdir);
    err[0] = 0;
    CHECK(tokenizer_load(missing, err, sizeof err) == NULL && strstr(err, missing), "missing file: \"%s\"", err);

    // A directory is read as DIR/tokenizer.json.
    write_json("tokenizer.json", TINY);
    t = tokenizer_load(tmpdir, err, sizeof err);
    CHECK(t != NULL, "load from a directory: %s", err);
    tokenizer_free(t);

    // The real files, when the HF comparison test has built them in this build dir.
    char p[1024];
    const char *bld = test_env("QUARRY_BUILD_DIR", "build");
    char fallback[700], cache[700];
    snprintf(fallback, sizeof fallback, "%s/tokenizer-cache", bld);
    snprintf(cache, sizeof cache, "%s", test_env("QUARRY_TOKENIZER_CACHE", fallback));
    snprintf(p, sizeof p, "%s/llama3.json", cache);
    if (access(p, R_OK) == 0) {
        t = tokenizer_load(p, err, sizeof err);
        CHECK(t != NULL, "%s", err);
        if (t) {
            CHECK(tokenizer_bos_id(t) == 128000 && tokenizer_eos_id(t) == 128001 && tokenizer_adds_bos(t),
                  "llama3 bos %d eos %d", tokenizer_bos_id(t), tokenizer_eos_id(t));
            CHECK(tokenizer_token_to_id(t, "<|eot_id|>") == 128009, "llama3 <|eot_id|>");
            CHECK(tokenizer_vocab_size(t) == 128256, "llama3 vocab %d", tokenizer_vocab_size(t));
            tokenizer_free(t);
        }
        snprintf(p, sizeof p, "%s/llama2.json", cache);
        t = tokenizer_load(p, err, sizeof err);
        CHECK(t != NULL, "%s", err);
        if (t) {
            CHECK(tokenizer_bos_id(t) == 1 && tokenizer_eos_id(t) == 2 && tokenizer_adds_bos(t), "llama2 bos/eos");
            CHECK(tokenizer_vocab_size(t) == 32000, "llama2 vocab %d", tokenizer_vocab_size(t));
            tokenizer_free(t);
        }
        snprintf(p, sizeof p, "%s/gpt2.json", cache);
        t = tokenizer_load(p, err, sizeof err);
        if (t) {
            CHECK(tokenizer_adds_bos(t) == 0 && tokenizer_eos_id(t) == 50256, "gpt2: no BOS added, eos <|endoftext|>");
            tokenizer_free(t);
        }
    } else {
        printf("note: %s absent (run test_tokenizer_hf first); real-file lookups not checked\n", p);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    return test_finish("test_tokenizer_api");
}
