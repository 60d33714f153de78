// examples_stream at 1, 2 and 7 threads gives what one thread reading record by record gives:
// the same examples (ids, masks, lines, keep_head) in file order, the same FILE:LINE messages
// in the same order with the same 20-message limit, the same failure. A generated file of
// 5,000 messages records (5 chunks of 1,024) has invalid lines and warnings sprinkled in;
// a template refusal in the middle stops every thread count at the same record, as does a sink
// that gives up, with no message of a later line printed (an invalid line follows each, in the
// same chunk). The oracle is data/bedrock + examples_encode called in a plain loop.
#include "data/bedrock.h"
#include "trainer/examples.h"
#include "test.h"
#include <fcntl.h>
#include <unistd.h>

typedef struct {
    example *ex;
    int n, cap;
    long stop_at;        // the sink fails at this line (0: never)
} collected;

static int collect(void *ctx, const example *e) {
    collected *c = ctx;
    if (c->stop_at && e->line == c->stop_at) return -1;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->ex = realloc(c->ex, sizeof *c->ex * (size_t)c->cap);
    }
    example k = *e;
    k.ids = malloc(sizeof *k.ids * (size_t)(e->len + 1));
    k.mask = malloc((size_t)e->len + 1);
    memcpy(k.ids, e->ids, sizeof *k.ids * (size_t)e->len);
    memcpy(k.mask, e->mask, (size_t)e->len);
    c->ex[c->n++] = k;
    return 0;
}

static void collected_free(collected *c) {
    for (int i = 0; i < c->n; i++) { free(c->ex[i].ids); free(c->ex[i].mask); }
    free(c->ex);
    memset(c, 0, sizeof *c);
}

typedef struct {
    const char *path;
    long cut;            // diagnostics of this line and later are not printed (0: all)
    long errors, warnings;
    char *text;          // what examples_load would print, as it prints it
    size_t len, cap;
} oracle_diag;

static void oracle_put(oracle_diag *o, const char *s) {
    size_t n = strlen(s);
    if (o->len + n + 1 > o->cap) {
        o->cap = 2 * (o->len + n + 1);
        o->text = realloc(o->text, o->cap);
    }
    memcpy(o->text + o->len, s, n + 1);
    o->len += n;
}

static void oracle_diag_fn(void *user, long line, int col, bedrock_severity sev, const char *msg) {
    oracle_diag *o = user;
    if (o->cut && line >= o->cut) return;
    if (sev == BEDROCK_ERROR && ++o->errors > 20) return;
    if (sev == BEDROCK_WARNING && ++o->warnings > 20) return;
    char buf[1024];
    const char *kind = sev == BEDROCK_ERROR ? "error" : "warning";
    if (col > 0) snprintf(buf, sizeof buf, "%s:%ld:%d: %s: %s\n", o->path, line, col, kind, msg);
    else snprintf(buf, sizeof buf, "%s:%ld: %s: %s\n", o->path, line, kind, msg);
    oracle_put(o, buf);
}

// The plain loop: every valid record encoded in order until the first refusal.
static void oracle_run(const examples_source *src, collected *out, oracle_diag *o, long *refused_line) {
    bedrock_options opts;
    memset(&opts, 0, sizeof opts);
    opts.allow_extra_keys = src->allow_extra_keys;
    opts.diag = oracle_diag_fn;
    opts.user = o;
    char err[512];
    bedrock_stream *s = bedrock_open(src->path, &opts, err, sizeof err);
    if (!s) { fprintf(stderr, "%s\n", err); exit(1); }
    record r;
    *refused_line = 0;
    while (bedrock_next(s, &r) == 1) {
        example e;
        int rc = examples_encode(src, &r, &e, err, sizeof err);
        long line = r.line;
        record_free(&r);
        if (rc) { *refused_line = line; break; }
        collect(out, &e);
        free(e.ids);
        free(e.mask);
    }
    bedrock_close(s);
}

// Runs examples_stream with stderr caught in a file; returns its rc, the messages in *text.
static int stream_caught(const examples_source *src, int threads, collected *c, char *err, size_t errlen, char **text) {
    char tmpl[] = "/tmp/test_examples_stream_err_XXXXXX";
    int fd = mkstemp(tmpl);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    int rc = examples_stream(src, threads, collect, c, err, errlen);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    *text = calloc((size_t)n + 1, 1);
    if (pread(fd, *text, (size_t)n, 0) != n) { fprintf(stderr, "cannot read back stderr\n"); exit(1); }
    close(fd);
    unlink(tmpl);
    return rc;
}

static int same_examples(const collected *a, const collected *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++) {
        const example *x = &a->ex[i], *y = &b->ex[i];
        if (x->len != y->len || x->line != y->line || x->keep_head != y->keep_head ||
            memcmp(x->ids, y->ids, sizeof *x->ids * (size_t)x->len) || memcmp(x->mask, y->mask, (size_t)x->len))
            return 0;
    }
    return 1;
}

// 5,000 lines: prompt/completion-shaped messages records of varied length, an invalid line
// every 211 (bad JSON, a missing key, roles out of order), an unknown key (a warning under
// allow_extra_keys) every 229, and with refuse_line a system prompt there (which the
// mistral-legacy template refuses).
static void write_file(const char *path, int lines, long refuse_line) {
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(1); }
    uint64_t x = 12345;
    for (int i = 1; i <= lines; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int words = 3 + (int)((x >> 33) % 60);
        char text[2048];
        size_t n = 0;
        for (int w = 0; w < words; w++)
            n += (size_t)snprintf(text + n, sizeof text - n, "%s%s%d", w ? " " : "",
                                  (const char *[]){"model", "data", "tök", "the", "quarry", "日本"}[(x >> (w % 40)) % 6],
                                  (int)((x >> 20) % 97) + w);
        if (i % 211 == 0) {
            const char *bad[] = {"{\"messages\": [", "{\"messages\": []}",
                                 "{\"messages\": [{\"role\": \"assistant\", \"content\": \"a\"}]}"};
            fprintf(f, "%s\n", bad[(i / 211) % 3]);
        } else if (i == refuse_line) {
            fprintf(f, "{\"system\": \"be brief\", \"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, "
                       "{\"role\": \"assistant\", \"content\": \"ok %d\"}]}\n", text, i);
        } else {
            fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", "
                       "\"content\": \"answer %d %.*s\"}]%s}\n", text, i, (int)(i % 40), "the quarry answers in plain ascii text ...",
                    i % 229 == 0 ? ", \"extra\": 1" : "");
        }
    }
    fclose(f);
}

static void check_case(const char *name, const examples_source *src, long stop_at, const char *want_err) {
    collected want = {0};
    // A sink that gives up at stop_at has seen the messages up to that record's own.
    oracle_diag o = {src->path, stop_at ? stop_at + 1 : 0, 0, 0, NULL, 0, 0};
    oracle_put(&o, "");
    long refused = 0;
    oracle_run(src, &want, &o, &refused);
    if (stop_at) {   // the sink gives up at stop_at: the oracle's examples end just before it
        int k = 0;
        while (k < want.n && want.ex[k].line < stop_at) k++;
        for (int i = k; i < want.n; i++) { free(want.ex[i].ids); free(want.ex[i].mask); }
        want.n = k;
    }
    char err1[1024] = "", *text1 = NULL;
    for (int threads = 1; threads <= 7; threads++) {
        if (threads != 1 && threads != 2 && threads != 7) continue;
        collected got = {0};
        got.stop_at = stop_at;
        char err[1024] = "", *text = NULL;
        int rc = stream_caught(src, threads, &got, err, sizeof err, &text);
        CHECK(rc == -1, "%s, %d threads: rc %d (every case here fails)", name, threads, rc);
        CHECK(same_examples(&got, &want), "%s, %d threads: %d examples differ from the one-thread loop's %d", name,
              threads, got.n, want.n);
        if (threads == 1) {
            snprintf(err1, sizeof err1, "%s", err);
            text1 = text;
            // Messages as the plain loop prints them: up to a refusal or a sink stop, nothing after.
            CHECK(strcmp(text, o.text) == 0, "%s: messages\n%s\nwant\n%s", name, text, o.text);
        } else {
            CHECK(strcmp(err, err1) == 0, "%s, %d threads: error '%s', 1 thread '%s'", name, threads, err, err1);
            CHECK(strcmp(text, text1) == 0, "%s, %d threads: messages differ from 1 thread's", name, threads);
            free(text);
        }
        collected_free(&got);
    }
    if (refused) {
        char line[64];
        snprintf(line, sizeof line, ":%ld: error: ", refused);
        CHECK(strstr(err1, line) != NULL, "%s: error '%s' names line %ld", name, err1, refused);
    }
    if (stop_at) {
        char line[64];
        snprintf(line, sizeof line, ":%ld: stopped", stop_at);
        CHECK(strstr(err1, line) != NULL, "%s: error '%s' names line %ld", name, err1, stop_at);
    }
    CHECK(strstr(err1, want_err) != NULL, "%s: error '%s' says '%s'", name, err1, want_err);
    free(text1);
    free(o.text);
    collected_free(&want);
}

int main(void) {
    const char *src_dir = test_env("QUARRY_SOURCE_DIR", ".");
    char model[4096], err[512];
    snprintf(model, sizeof model, "%s/examples/tiny-model", src_dir);
    tokenizer *tok = tokenizer_load(model, err, sizeof err);
    if (!tok) SKIP("%s", err);
    chat_template *llama = chat_template_load(model, NULL, err, sizeof err);
    chat_template *legacy = chat_template_load(model, "mistral-legacy", err, sizeof err);
    CHECK(llama && legacy, "templates: %s", err);
    if (!llama || !legacy) return test_finish("test_examples_stream");
    char path[] = "/tmp/test_examples_stream_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);

    write_file(path, 5000, 0);
    examples_source src = {.path = path, .tok = tok, .tmpl = llama, .chat = {NULL, 0, 0}, .quiet = 1, .allow_extra_keys = 1};
    // 23 invalid records (20 shown) and 21 warnings (20 shown): all valid ones are handed on, then
    // the file fails as a whole.
    check_case("invalid lines", &src, 0, ": 23 invalid records (shown above, first 20); fix them");
    check_case("sink stops at 4001", &src, 4001, ":4001: stopped here");

    write_file(path, 5000, 3164);
    src.tmpl = legacy;
    check_case("template refuses 3164", &src, 0, ":3164: error: ");

    // examples_load: a clean file (200 lines: no invalid one) at QUARRY_DATA_THREADS=3 gives the
    // loop's examples and succeeds.
    src.tmpl = llama;
    write_file(path, 200, 0);
    setenv("QUARRY_DATA_THREADS", "3", 1);
    CHECK(examples_default_threads() == 3, "QUARRY_DATA_THREADS=3 gives %d threads", examples_default_threads());
    collected want = {0}, got = {0};
    oracle_diag o = {path, 0, 0, 0, NULL, 0, 0};
    long refused;
    oracle_run(&src, &want, &o, &refused);
    int rc = examples_load(&src, &got.ex, &got.n, err, sizeof err);
    CHECK(rc == 0 && got.n == 200 && same_examples(&got, &want), "examples_load: rc %d, %d examples: %s", rc, got.n, err);
    collected_free(&got);
    collected_free(&want);
    free(o.text);
    unlink(path);
    chat_template_free(llama);
    chat_template_free(legacy);
    tokenizer_free(tok);
    return test_finish("test_examples_stream");
}
