// tests/model/test_stories260K.c — a real pretrained model: karpathy's stories260K (llama2.c,
// converted to a Hugging Face directory by scripts/reference/convert_llama2c.py) decoded
// greedily from BOS must reproduce the text llama2.c's run.c prints (stories260K.md).
// Usage: test_stories260K HF_DIR tok512.bin stories260K.md
#include "test.h"
#include "model/llama.h"

enum { BOS = 1, STEPS = 256 };   // run.c's defaults: 256 positions, stop at BOS

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *s = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        s = malloc((size_t)n + 1);
        if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
        if (s) s[n] = '\0';
    }
    fclose(f);
    if (s && len) *len = (size_t)n;
    return s;
}

// llama2.c's tokenizer file: int32 max_token_length, then per token float32 score, int32 length,
// bytes. Returns the pieces (NUL-terminated) or NULL.
static char **read_vocab(const char *path, int vocab) {
    size_t len = 0, off = 4;
    char *buf = read_file(path, &len);
    if (!buf) return NULL;
    char **v = calloc((size_t)vocab, sizeof *v);
    for (int i = 0; v && i < vocab; i++) {
        int32_t n;
        if (off + 8 > len) break;
        memcpy(&n, buf + off + 4, 4);
        off += 8;
        if (n < 0 || off + (size_t)n > len) break;
        v[i] = malloc((size_t)n + 1);
        memcpy(v[i], buf + off, (size_t)n);
        v[i][n] = '\0';
        off += (size_t)n;
    }
    free(buf);
    for (int i = 0; v && i < vocab; i++)
        if (!v[i]) return NULL;
    return v;
}

// run.c's decode: drop the space after BOS, turn <0xXX> into the byte.
static void append_piece(char *out, size_t cap, char **vocab, int prev, int tok) {
    const char *p = vocab[tok];
    if (prev == BOS && p[0] == ' ') p++;
    unsigned int byte;
    char one[2] = {0, 0};
    if (strlen(p) == 6 && sscanf(p, "<0x%02X>", &byte) == 1) {
        one[0] = (char)byte;
        p = one;
    }
    size_t used = strlen(out);
    snprintf(out + used, cap - used, "%s", p);
}

// A valid (not SentencePiece-exact) tokenization: longest vocabulary piece first, with
// llama2.c's leading space; enough for a training smoke test.
static int encode_longest(char **vocab, int V, const char *text, int32_t *out, int cap) {
    char *buf = malloc(strlen(text) + 2);
    buf[0] = ' ';
    strcpy(buf + 1, text);
    int n = 0;
    for (const char *p = buf; *p && n < cap;) {
        int best = -1;
        size_t blen = 0;
        for (int v = 3; v < V; v++) {
            size_t l = strlen(vocab[v]);
            if (l > blen && strncmp(p, vocab[v], l) == 0) { best = v; blen = l; }
        }
        if (best < 0) { best = 3 + (unsigned char)*p; blen = 1; }   // <0xXX> byte pieces
        out[n++] = best;
        p += blen;
    }
    free(buf);
    return n;
}

// A few AdamW steps on text the model has not produced greedily: the loss must fall, for
// LoRA and for full fine-tuning.
static void check_finetune(const char *dir, backend *be, char **vocab, const char *text, int lora) {
    char err[512];
    enum { TT = 128 };
    int32_t ids[TT + 1], tg[TT], pos[TT], doc[TT];
    model *m = model_open(dir, be, err, sizeof err);
    const model_config *c = m ? model_get_config(m) : NULL;
    int n = c ? encode_longest(vocab, c->vocab_size, text, ids + 1, TT) : 0;
    ids[0] = BOS;
    for (int i = 0; i < TT; i++) {
        tg[i] = i < n ? ids[i + 1] : -1;
        pos[i] = i;
        doc[i] = 0;
    }
    lora_config lc = lora_config_default();
    lc.dropout = 0.0f;
    model_options opt = {.batch_size = 1, .seq_len = TT, .train = lora ? MODEL_TRAIN_LORA : MODEL_TRAIN_FULL};
    if (!m || n < 32 || (lora && model_enable_lora(m, &lc, err, sizeof err) != 0) ||
        model_plan(m, &opt, NULL, err, sizeof err) != 0 || model_allocate(m, err, sizeof err) != 0) {
        CHECK(0, "fine-tune setup (%d tokens): %s", n, err);
        model_free(m);
        return;
    }
    model_batch b = {.B = 1, .T = TT, .ids = ids, .targets = tg, .pos = pos, .doc_start = doc};
    double first = 0, last = 0;
    for (int step = 1; step <= 6; step++) {
        model_loss l;
        model_zero_grads(m);
        if (model_forward(m, &b, 1.0f / (float)n, &l) != 0 || model_backward(m) != 0) {
            CHECK(0, "step %d: %s", step, model_error(m));
            break;
        }
        last = l.sum / (double)l.tokens;
        if (step == 1) first = last;
        for (int i = 0; i < model_trained_count(m); i++) {
            model_param *p = model_trained_at(m, i);
            be->adamw_update(be, p->master, p->act == (void *)p->master ? NULL : p->act, p->grad, p->m, p->v,
                             p->n, lora ? 1e-2f : 2e-3f, 0.9f, 0.999f, 1e-8f,
                             p->weight_decay ? 0.01f : 0.0f, step, 1.0f);
        }
    }
    printf("stories260K %s fine-tune on %d tokens: loss %.4f -> %.4f\n", lora ? "LoRA" : "full", n, first, last);
    CHECK(last < first - 0.05, "%s: loss did not fall: %.4f -> %.4f", lora ? "LoRA" : "full", first, last);
    model_free(m);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s HF_DIR tok512.bin stories260K.md\n", argv[0]);
        return 2;
    }
    char err[512];
    backend *be = backend_cpu(0);
    model *m = model_open(argv[1], be, err, sizeof err);
    if (!m) { fprintf(stderr, "FAIL %s\n", err); return 1; }
    model_options opt = {.batch_size = 1, .seq_len = STEPS, .train = MODEL_TRAIN_NONE};
    if (model_plan(m, &opt, NULL, err, sizeof err) != 0 || model_allocate(m, err, sizeof err) != 0) {
        fprintf(stderr, "FAIL %s\n", err);
        return 1;
    }
    const model_config *c = model_get_config(m);
    char **vocab = read_vocab(argv[2], c->vocab_size);
    if (!vocab) { fprintf(stderr, "FAIL cannot read %s as a %d-token llama2.c vocabulary\n", argv[2], c->vocab_size); return 1; }

    // The expected text: the code block after the temperature-0 command line.
    char *md = read_file(argv[3], NULL);
    char *start = md ? strstr(md, "-t 0.0\n") : NULL;
    char *end = start ? strstr(start, "```") : NULL;
    if (!end) { fprintf(stderr, "FAIL %s: no greedy sample after \"-t 0.0\"\n", argv[3]); return 1; }
    start += strlen("-t 0.0\n");
    while (end > start && (end[-1] == '\n' || end[-1] == ' ')) end--;
    *end = '\0';

    int32_t prompt[1] = {BOS}, out[STEPS + 1];
    int n = model_generate_greedy(m, prompt, 1, STEPS, BOS, out);
    CHECK(n > 0, "generation: %s", model_error(m));
    char *text = calloc(1, 65536);
    int prev = BOS;
    for (int i = 0; i < n && out[i] != BOS; i++) {
        append_piece(text, 65536, vocab, prev, out[i]);
        prev = out[i];
    }
    size_t tl = strlen(text);
    while (tl && (text[tl - 1] == '\n' || text[tl - 1] == ' ')) text[--tl] = '\0';
    if (strcmp(text, start) != 0) {
        size_t k = 0;
        while (text[k] && text[k] == start[k]) k++;
        fprintf(stderr, "FAIL greedy text differs from llama2.c's at character %zu\n  quarry:   \"%.80s\"\n"
                "  llama2.c: \"%.80s\"\n", k, text + k, start + k);
        test_failures++;
    } else {
        printf("stories260K: %d greedy tokens reproduce llama2.c's text (%zu characters)\n", n, tl);
    }
    // The temperature-1 sample of the same page: text, but not the model's own greedy choice.
    char *md2 = read_file(argv[3], NULL);
    char *t1 = md2 ? strstr(md2, "-s 133742\n") : NULL;
    char *t1end = t1 ? strstr(t1, "```") : NULL;
    CHECK(t1end != NULL, "%s: no sampled text after \"-s 133742\"", argv[3]);
    if (t1end) {
        *t1end = '\0';
        t1 += strlen("-s 133742\n");
        check_finetune(argv[1], be, vocab, t1, 1);
        check_finetune(argv[1], be, vocab, t1, 0);
    }
    free(md2);
    for (int i = 0; i < c->vocab_size; i++) free(vocab[i]);
    free(vocab);
    free(md);
    free(text);
    model_free(m);
    be->destroy(be);
    return test_finish("test_stories260K");
}
