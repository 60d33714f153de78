// tests/model/test_moe_padding.c — the sparse MoE kind leaves padding out of the router
// load-balancing loss, as transformers' attention_mask does: padding rows (one-token documents
// with target −1, as data/dataset.c pads) attend only to themselves, so the real rows compute the
// same whether padding follows or not, and the aux loss of a padded batch must equal that of the
// same real rows alone. Its gradient (dprob over real rows) must not change the backward either.
#include "test.h"
#include "model/llama.h"

enum { T = 32 };

static model *open_fixture(const char *dir, backend *be, int B, int T_) {
    char err[512];
    model *m = model_open(dir, be, err, sizeof err);
    if (!m) { fprintf(stderr, "FAIL model_open: %s\n", err); return NULL; }
    model_options o = {.batch_size = B, .seq_len = T_, .train = MODEL_TRAIN_FULL};
    model_memory p;
    if (model_plan(m, &o, &p, err, sizeof err) || model_allocate(m, err, sizeof err)) {
        fprintf(stderr, "FAIL plan: %s\n", err);
        model_free(m);
        return NULL;
    }
    return m;
}

// One row of T: documents of 10 and 14 real tokens (n_real = 24), then padding rows to T.
static void fill(int32_t *ids, int32_t *tg, int32_t *pos, int32_t *doc, int n_real) {
    int lens[2] = {10, 14}, s = 0;
    for (int d = 0; d < 2; d++) {
        for (int i = 0; i < lens[d]; i++) {
            ids[s + i] = 3 + (s + i) * 7 % 120;
            tg[s + i] = i + 1 < lens[d] && i >= 2 ? 3 + (s + i + 1) * 7 % 120 : -1;
            pos[s + i] = i;
            doc[s + i] = s;
        }
        s += lens[d];
    }
    for (int t = n_real; t < T; t++) {
        ids[t] = 0;
        tg[t] = -1;
        pos[t] = 0;
        doc[t] = t;
    }
}

int main(void) {
    const char *src = test_env("QUARRY_SOURCE_DIR", ".");
    char dir[900];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/qwen3_moe", src);
    int32_t a[4][T], b[4][2 * T];
    fill(a[0], a[1], a[2], a[3], 24);   // 24 real rows + 8 padding
    // The same real rows as a 24-token batch, and the padded row followed by a row all padding.
    fill(b[0], b[1], b[2], b[3], 24);
    fill(b[0] + T, b[1] + T, b[2] + T, b[3] + T, 0);
    double aux[3] = {0};
    model_loss l[3];
    backend *be = backend_cpu(0);
    CHECK(be != NULL, "the CPU backend");
    if (!be) return 1;
    for (int k = 0; k < 3; k++) {
        int B = k == 2 ? 2 : 1, TT = k == 0 ? 24 : T;
        model *m = open_fixture(dir, be, B, TT);
        if (!m) { be->destroy(be); return 1; }
        int32_t (*x)[2 * T] = b;
        model_batch mb = {.B = B, .T = TT, .ids = k == 2 ? x[0] : a[0], .targets = k == 2 ? x[1] : a[1],
                          .pos = k == 2 ? x[2] : a[2], .doc_start = k == 2 ? x[3] : a[3]};
        CHECK(model_forward(m, &mb, 0.05f, &l[k]) == 0 && model_backward(m) == 0, "forward %d: %s", k, model_error(m));
        aux[k] = l[k].aux;
        model_free(m);
    }
    be->destroy(be);
    printf("aux: real rows alone %.9f, with an 8-row padding tail %.9f, and a padding row %.9f\n", aux[0], aux[1],
           aux[2]);
    CHECK(aux[0] > 0 && fabs(aux[1] - aux[0]) <= 1e-6 * aux[0], "padding tail changed the aux loss: %.9g vs %.9g",
          aux[1], aux[0]);
    CHECK(fabs(aux[2] - aux[0]) <= 1e-6 * aux[0], "a padding row changed the aux loss: %.9g vs %.9g", aux[2], aux[0]);
    CHECK(l[0].tokens == l[1].tokens && fabs(l[0].sum - l[1].sum) <= 1e-5 * l[0].sum, "the real rows' loss changed");
    return test_finish("test_moe_padding");
}
