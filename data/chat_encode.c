// data/chat_encode.c — a rendered record tokenized once, with the per-token loss mask.
// Kept apart from data/chat.c so that rendering links without the tokenizer.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/chat.h"

static void seterr(char *err, size_t errlen, const char *msg) {
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

int chat_encode(const chat_template *t, const tokenizer *tok, const record *r, const chat_options *o,
                int32_t **ids, int8_t **mask, char *err, size_t errlen) {
    *ids = NULL;
    *mask = NULL;
    chat_rendered c;
    if (chat_render(t, r, o, &c, err, errlen) != 0)
        return -1;
    int32_t *tid = NULL, *off = NULL;
    int n = tokenizer_encode(tok, c.text, c.len, 0, &tid, &off, err, errlen);
    if (n < 0) {
        chat_rendered_free(&c);
        return -1;
    }
    int cpt = r->format == FORMAT_CPT;
    int train_all = cpt || (o && o->train_on_prompt);
    int bos_id = tokenizer_bos_id(tok);
    int add_bos = !c.has_bos && tokenizer_adds_bos(tok) && bos_id >= 0;
    // No EOS text known (a base model without tokenizer_config.json): the tokenizer's EOS id.
    int eos_id = tokenizer_eos_id(tok);
    int add_eos = (cpt || t->family == CHAT_RAW) && t->eos[0] == 0 && eos_id >= 0;
    int total = n + add_bos + add_eos;
    int32_t *outi = malloc((size_t)(total > 0 ? total : 1) * sizeof *outi);
    int8_t *outm = malloc((size_t)(total > 0 ? total : 1));
    if (!outi || !outm) {
        free(outi);
        free(outm);
        free(tid);
        free(off);
        chat_rendered_free(&c);
        seterr(err, errlen, "out of memory encoding a record");
        return -1;
    }
    if (add_bos) {
        outi[0] = bos_id;
        outm[0] = (int8_t)train_all;
    }
    if (n > 0) {
        memcpy(outi + add_bos, tid, (size_t)n * sizeof *tid);
        chat_mask_from_offsets(&c, off, n, train_all, outm + add_bos);
    }
    if (add_eos) {
        outi[total - 1] = eos_id;
        outm[total - 1] = 1;
    }
    free(tid);
    free(off);
    chat_rendered_free(&c);
    *ids = outi;
    *mask = outm;
    return total;
}
