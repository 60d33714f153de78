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
    for (int i = 0; i < c->vocab_size; i++) free(vocab[i]);
    free(vocab);
    free(md);
    free(text);
    model_free(m);
    be->destroy(be);
    return test_finish("test_stories260K");
}
