// data/bedrock: the record each format becomes (what data/chat and data/dataset consume):
// roles, texts (escapes decoded, converse blocks joined in order), system, CPT text, line
// numbers; and the stream API skipping invalid lines with one diagnostic each.
#include "test.h"
#include "data/bedrock.h"
#include <unistd.h>

typedef struct {
    int n;
    long lines[16];
    char msgs[16][200];
} diags;

static void on_diag(void *user, long line, int col, bedrock_severity sev, const char *msg) {
    (void)col;
    diags *d = user;
    if (sev == BEDROCK_ERROR && d->n < 16) {
        d->lines[d->n] = line;
        snprintf(d->msgs[d->n], sizeof d->msgs[0], "%s", msg);
        d->n++;
    }
}

static int check(bedrock_checker *c, const char *text, long line, record *r) {
    return bedrock_check(c, text, strlen(text), line, r);
}

#define TEXT_IS(s, want) ((s) && strlen(want) == strlen(s) && !strcmp((s), (want)))

int main(void) {
    diags d = {0};
    bedrock_options o = {FORMAT_UNKNOWN, 0, NULL, 0, on_diag, &d};
    record r;

    bedrock_checker *c = bedrock_checker_new(&o);
    CHECK(check(c, "{\"completion\": \"4\\n\", \"prompt\": \"2+2\\u003f\"}", 7, &r) == 1, "pc valid");
    CHECK(r.format == FORMAT_PROMPT_COMPLETION && r.line == 7 && r.nturns == 2 && !r.system && !r.text, "pc shape");
    CHECK(r.turns[0].role == ROLE_USER && TEXT_IS(r.turns[0].text, "2+2?") && r.turns[0].len == 4, "prompt '%s'", r.turns[0].text);
    CHECK(r.turns[1].role == ROLE_ASSISTANT && TEXT_IS(r.turns[1].text, "4\n"), "completion");
    record_free(&r);
    CHECK(check(c, "{\"input\": \"doc\"}", 8, &r) == 0, "cpt after pc: mixed formats refused");
    CHECK(d.n == 1 && d.lines[0] == 8 && strstr(d.msgs[0], "since line 7"), "mixed-format diagnostic: %s", d.msgs[0]);
    bedrock_checker_free(c);

    c = bedrock_checker_new(&o);
    CHECK(check(c, "{\"system\": \"sys\", \"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", "
                   "\"content\": \"b\"}, {\"role\": \"user\", \"content\": \"c\"}, {\"role\": \"assistant\", \"content\": \"d\"}]}",
                1, &r) == 1, "messages valid");
    CHECK(r.format == FORMAT_MESSAGES && TEXT_IS(r.system, "sys") && r.system_len == 3 && r.nturns == 4, "messages shape");
    const char *want[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4 && i < r.nturns; i++)
        CHECK(r.turns[i].role == (i % 2 ? ROLE_ASSISTANT : ROLE_USER) && TEXT_IS(r.turns[i].text, want[i]), "turn %d", i);
    record_free(&r);
    CHECK(r.turns == NULL && r.system == NULL && r.nturns == 0, "record_free clears");
    bedrock_checker_free(c);

    c = bedrock_checker_new(&o);
    CHECK(check(c, "{\"schemaVersion\": \"bedrock-conversation-2024\", \"system\": [{\"text\": \"S1 \"}, {\"text\": \"S2\"}], "
                   "\"messages\": [{\"role\": \"user\", \"content\": [{\"text\": \"caf\\u00e9\"}]}, {\"role\": \"assistant\", "
                   "\"content\": [{\"text\": \"Hel\"}, {\"text\": \"lo\"}]}]}",
                3, &r) == 1, "converse valid");
    CHECK(r.format == FORMAT_CONVERSE && TEXT_IS(r.system, "S1 S2") && r.nturns == 2, "converse shape");
    CHECK(r.nturns == 2 && TEXT_IS(r.turns[0].text, "caf\xC3\xA9") && r.turns[0].len == 5, "converse user text");
    CHECK(r.nturns == 2 && TEXT_IS(r.turns[1].text, "Hello"), "blocks joined in order without separator: '%s'", r.turns[1].text);
    record_free(&r);
    bedrock_checker_free(c);

    c = bedrock_checker_new(&o);
    CHECK(check(c, "{\"input\": \"doc \\\"x\\\"\"}", 2, &r) == 1, "cpt valid");
    CHECK(r.format == FORMAT_CPT && TEXT_IS(r.text, "doc \"x\"") && r.text_len == 7 && r.nturns == 0, "cpt text");
    record_free(&r);
    CHECK(check(c, "{\"input\": \"doc\"}", 3, NULL) == 1, "checking without a record");
    const bedrock_stats *st = bedrock_checker_stats(c);
    CHECK(st->valid == 2 && st->invalid == 0 && st->format == FORMAT_CPT && st->format_line == 2, "stats");
    bedrock_checker_free(c);

    // Stream: invalid lines reported once each and skipped; valid records come out in order.
    char path[] = "/tmp/quarry_test_bedrock_XXXXXX";
    int fd = mkstemp(path);
    const char data[] = "{\"input\": \"one\"}\n{\"input\": \"\"}\nnot json\n\n{\"input\": \"two\"}\n";
    CHECK(fd >= 0 && write(fd, data, sizeof data - 1) == (ssize_t)(sizeof data - 1) && close(fd) == 0, "temp file");
    memset(&d, 0, sizeof d);
    char err[256];
    bedrock_stream *s = bedrock_open(path, &o, err, sizeof err);
    CHECK(s != NULL, "open: %s", err);
    if (s) {
        CHECK(bedrock_next(s, &r) == 1 && r.line == 1 && TEXT_IS(r.text, "one"), "record 1");
        record_free(&r);
        CHECK(bedrock_next(s, &r) == 1 && r.line == 5 && TEXT_IS(r.text, "two"), "record at line 5");
        record_free(&r);
        CHECK(bedrock_next(s, &r) == 0, "end");
        CHECK(d.n == 3 && d.lines[0] == 2 && d.lines[1] == 3 && d.lines[2] == 4, "diagnostics at lines 2, 3, 4 (%d)", d.n);
        st = bedrock_stream_stats(s);
        CHECK(st->lines == 5 && st->valid == 2 && st->invalid == 3 && st->bytes == sizeof data - 1, "stream stats");
        bedrock_close(s);
    }
    unlink(path);
    CHECK(bedrock_format_from_name("pc") == FORMAT_PROMPT_COMPLETION && bedrock_format_from_name("converse") == FORMAT_CONVERSE &&
          bedrock_format_from_name("cpt") == FORMAT_CPT && bedrock_format_from_name("xml") == FORMAT_UNKNOWN, "format names");
    CHECK(!strcmp(record_format_name(FORMAT_MESSAGES), "messages"), "record_format_name");
    return test_finish("test_bedrock");
}
