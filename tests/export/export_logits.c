// tests/export/export_logits.c — quarry's logits for a token sequence, for comparing a package
// with transformers (scripts/check_export_transformers.py, tests/export/check_export_torch.py).
// usage: export_logits MODEL_DIR|RUN OUT.f32 ID [ID ...]
// (RUN: a `quarry train` run, its LoRA adapter applied unmerged, as generate and eval do.)
// Writes (n_ids × vocab) float32 logits (row i: the prediction after ids[0..i]) to OUT.f32, computed
// with the CPU backend in fp32 over the ids as one document. A RUN is loaded as eval and generate
// load it (cli/model_ref: its adapter over the base, a QLoRA run's base in NF4): the trained function.
#include "../../cli/model_ref.h"
#include "../../kernels/backend.h"
#include "../../cli/model_ref.h"
#include "../../model/llama.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_DIR OUT.f32 ID [ID ...]\n", argv[0]);
        return 2;
    }
    int n = argc - 3;
    char err[4096];
    backend *be = backend_cpu(0);
    if (!be) {
        fprintf(stderr, "export_logits: no CPU backend\n");
        return 1;
    }
    model_ref ref;
    model_options opt = {.batch_size = 1, .seq_len = n, .train = MODEL_TRAIN_NONE, .checkpoint = 0};
    model *m = model_ref_resolve(argv[1], &ref, err, sizeof err) ? NULL
                                                                   : model_ref_load(&ref, be, &opt, err, sizeof err);
    if (!m) {
        fprintf(stderr, "export_logits: %s\n", err);
        return 1;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n * 3);
    int V = model_get_config(m)->vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)n * (size_t)V);
    if (!ids || !logits) {
        fprintf(stderr, "export_logits: out of memory\n");
        return 1;
    }
    int32_t *pos = ids + n, *doc = ids + 2 * n;
    for (int i = 0; i < n; i++) {
        ids[i] = (int32_t)strtol(argv[3 + i], NULL, 10);
        pos[i] = i;
        doc[i] = 0;
    }
    model_batch b = {.B = 1, .T = n, .ids = ids, .targets = NULL, .pos = pos, .doc_start = doc, .dropout_seed = 0};
    int rc = model_forward(m, &b, 0.0f, NULL);
    for (int i = 0; !rc && i < n; i++) rc = model_logits_row(m, i, logits + (size_t)i * (size_t)V);
    if (rc) {
        fprintf(stderr, "export_logits: forward failed: %s\n", model_error(m));
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    if (!f || fwrite(logits, sizeof(float), (size_t)n * (size_t)V, f) != (size_t)n * (size_t)V || fclose(f) != 0) {
        fprintf(stderr, "export_logits: cannot write %s\n", argv[2]);
        return 1;
    }
    free(logits);
    free(ids);
    model_free(m);
    be->destroy(be);
    return 0;
}
