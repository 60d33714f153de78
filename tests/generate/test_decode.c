// tests/generate/test_decode.c — model_decode (the KV cache generation uses) gives the logits a
// full forward over the same prefix gives: token by token, a chunk after a cached prefix (a chat's
// next turn), a changed prefix, the same prefix twice, and after an unrelated forward.
#include "test.h"
#include "model/llama.h"

enum { T = 24 };

static void expect(model *m, const int32_t *ids, int n, float *got, float *want, int V, const char *what) {
    int rc = model_decode(m, ids, n, got);
    CHECK(rc == 0, "%s: %s", what, model_error(m));
    // A fresh full forward (drops the cache), then decode again to restore it for the next step.
    CHECK(model_logits_last(m, ids, n, want) == 0, "%s: %s", what, model_error(m));
    double e = rel_error(got, want, (size_t)V);
    CHECK(e < 1e-5, "%s (n %d): relative error %.3g against a full forward", what, n, e);
}

int main(void) {
    const char *src = test_env("QUARRY_SOURCE_DIR", ".");
    char dir[4096], err[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/llama3_gqa", src);
    backend *be = backend_cpu(1);
    model_options opt = {.batch_size = 1, .seq_len = T, .train = MODEL_TRAIN_NONE};
    model *m = model_load(dir, be, &opt, NULL, NULL, err, sizeof err);
    if (!m) {
        fprintf(stderr, "FAIL %s\n", err);
        return 1;
    }
    int V = model_get_config(m)->vocab_size;
    float *got = malloc((size_t)V * sizeof *got), *want = malloc((size_t)V * sizeof *want);
    int32_t ids[T];
    for (int i = 0; i < T; i++) ids[i] = (i * 37 + 11) % V;
    // Interleaving full forwards drops the cache each time; so first a pure decode run, compared
    // afterwards, then the mixed cases.
    float *steps = malloc((size_t)T * (size_t)V * sizeof *steps);
    for (int n = 3; n <= T; n++) CHECK(model_decode(m, ids, n, steps + (size_t)(n - 1) * V) == 0, "%s", model_error(m));
    for (int n = 3; n <= T; n++) {
        CHECK(model_logits_last(m, ids, n, want) == 0, "%s", model_error(m));
        double e = rel_error(steps + (size_t)(n - 1) * V, want, (size_t)V);
        CHECK(e < 1e-5, "token-by-token decode at n %d: relative error %.3g", n, e);
    }
    // Chunk after a cached prefix: decode 8, then 8 → 20 in one pass.
    CHECK(model_decode(m, ids, 8, got) == 0, "%s", model_error(m));
    CHECK(model_decode(m, ids, 20, got) == 0, "%s", model_error(m));
    CHECK(model_logits_last(m, ids, 20, want) == 0, "%s", model_error(m));
    CHECK(rel_error(got, want, (size_t)V) < 1e-5, "chunk 8→20: %.3g", rel_error(got, want, (size_t)V));
    // Changed prefix: decode 12, then a sequence differing at 6.
    int32_t alt[T];
    memcpy(alt, ids, sizeof alt);
    alt[6] = (alt[6] + 1) % V;
    CHECK(model_decode(m, ids, 12, got) == 0, "%s", model_error(m));
    CHECK(model_decode(m, alt, 14, got) == 0, "%s", model_error(m));
    CHECK(model_logits_last(m, alt, 14, want) == 0, "%s", model_error(m));
    CHECK(rel_error(got, want, (size_t)V) < 1e-5, "changed prefix: %.3g", rel_error(got, want, (size_t)V));
    // The same prefix twice, and a decode after an unrelated forward.
    CHECK(model_decode(m, ids, 10, got) == 0 && model_decode(m, ids, 10, got) == 0, "%s", model_error(m));
    CHECK(model_logits_last(m, ids, 10, want) == 0, "%s", model_error(m));
    CHECK(rel_error(got, want, (size_t)V) < 1e-5, "same prefix twice: %.3g", rel_error(got, want, (size_t)V));
    expect(m, ids, 16, got, want, V, "after a full forward");
    // Too long for the plan: refused.
    int32_t many[T + 1] = {0};
    CHECK(model_decode(m, many, T + 1, got) != 0, "a prefix beyond seq_len was accepted");
    free(steps);
    free(got);
    free(want);
    model_free(m);
    be->destroy(be);
    return test_finish("test_decode");
}
