// data/jsonl: the line reader (CRLF, BOM, no final newline, lines across buffer refills, lines
// longer than the buffer, oversized lines skipped and counted) and the strict JSON parser
// (values, escapes, UTF-8, and each kind of syntax error at its column).
#include "test.h"
#include "data/jsonl.h"
#include <unistd.h>

static char tmpl[] = "/tmp/quarry_test_jsonl_XXXXXX";

static void write_file(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) { perror(path); exit(1); }
}

static void test_reader(const char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/a.jsonl", dir);
    // BOM, CRLF, an oversized line, an empty line, a last line without newline.
    const char data[] = "\xEF\xBB\xBF{\"a\":1}\r\n0123456789ABCDEF\n\nlast";
    write_file(path, data, sizeof data - 1);
    char err[256];
    jsonl_reader *r = jsonl_open(path, 10, err, sizeof err);
    CHECK(r != NULL, "open: %s", err);
    if (!r) return;
    jsonl_line l;
    CHECK(jsonl_next(r, &l) == 1 && l.line == 1 && !l.oversized && !strcmp(l.text, "{\"a\":1}") && l.len == 7,
          "line 1: '%s' %zu", l.text, l.len);
    CHECK(jsonl_had_bom(r), "BOM noticed");
    CHECK(jsonl_next(r, &l) == 1 && l.line == 2 && l.oversized && l.len == 16, "line 2 oversized, len %zu", l.len);
    CHECK(jsonl_next(r, &l) == 1 && l.line == 3 && !l.oversized && l.len == 0, "line 3 empty");
    CHECK(jsonl_next(r, &l) == 1 && l.line == 4 && !strcmp(l.text, "last"), "line 4 without newline: '%s'", l.text);
    CHECK(jsonl_next(r, &l) == 0, "end");
    CHECK(jsonl_bytes_read(r) == sizeof data - 1, "bytes %llu", jsonl_bytes_read(r));
    jsonl_close(r);

    // 4000 lines of lengths 0..3999 (about 8 MB: several buffer refills), then one 3 MiB line
    // (longer than the read buffer, under the limit), then one over it, then a short one.
    size_t cap = 20u << 20, n = 0;
    char *big = malloc(cap);
    for (int i = 0; i < 4000; i++) {
        for (int k = 0; k < i; k++) big[n++] = (char)('a' + (i + k) % 26);
        big[n++] = '\n';
    }
    size_t long1 = 3u << 20, long2 = 5u << 20;
    memset(big + n, 'x', long1); n += long1; big[n++] = '\n';
    memset(big + n, 'y', long2); n += long2; big[n++] = '\n';
    memcpy(big + n, "end\n", 4); n += 4;
    write_file(path, big, n);
    free(big);
    r = jsonl_open(path, 4u << 20, err, sizeof err);
    CHECK(r != NULL, "open: %s", err);
    if (!r) return;
    int bad = 0;
    for (int i = 0; i < 4000; i++) {
        if (jsonl_next(r, &l) != 1 || l.line != i + 1 || l.len != (size_t)i || l.oversized) { bad++; continue; }
        for (int k = 0; k < i; k++)
            if (l.text[k] != (char)('a' + (i + k) % 26)) { bad++; break; }
    }
    CHECK(bad == 0, "%d of 4000 lines wrong", bad);
    CHECK(jsonl_next(r, &l) == 1 && !l.oversized && l.len == long1 && l.text[0] == 'x' && l.text[long1 - 1] == 'x',
          "3 MiB line whole (len %zu oversized %d)", l.len, l.oversized);
    CHECK(jsonl_next(r, &l) == 1 && l.oversized && l.len == long2 && l.line == 4002, "5 MiB line oversized (len %zu)", l.len);
    CHECK(jsonl_next(r, &l) == 1 && !strcmp(l.text, "end") && l.line == 4003, "line after the oversized one");
    CHECK(jsonl_next(r, &l) == 0, "end");
    jsonl_close(r);
    unlink(path);
    CHECK(jsonl_open(path, 100, err, sizeof err) == NULL && strstr(err, "cannot open"), "missing file: %s", err);
}

static void parse_ok(jsonl_parser *p, const char *text) {
    char err[256];
    int col = 0;
    const jv *v = jsonl_parse(p, text, strlen(text), &col, err, sizeof err);
    CHECK(v != NULL, "'%s' refused at column %d: %s", text, col, err);
}

static void parse_bad(jsonl_parser *p, const char *text, size_t len, int want_col, const char *want_msg) {
    char err[256] = "";
    int col = 0;
    const jv *v = jsonl_parse(p, text, len, &col, err, sizeof err);
    CHECK(v == NULL, "'%s' accepted", text);
    CHECK(col == want_col && strstr(err, want_msg), "'%s': column %d '%s', want %d '%s'", text, col, err, want_col, want_msg);
}

static void test_parser(void) {
    jsonl_parser *p = jsonl_parser_new();
    const char *good[] = {"{}", "[]", " {\"a\" : [1, -0.5e+3, 0, 1E9, true, false, null, \"x\", {}, []]} ", "\"s\"", "-0",
                          "{\"\":\"\"}", "[[[[[[[[[[1]]]]]]]]]]"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) parse_ok(p, good[i]);

    char err[256];
    int col;
    const char *esc = "{\"k\\u00e9y\": \"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\u0000z\"}";
    const jv *v = jsonl_parse(p, esc, strlen(esc), &col, err, sizeof err);
    CHECK(v && v->type == JV_OBJECT && v->count == 1, "escapes parse: %s", err);
    if (v) {
        const jv *m = v->child;
        const char want[] = "\"\\/\b\f\n\r\t\xC3\xA9\xF0\x9F\x98\x80\0z";
        CHECK(m->key_len == 4 && !memcmp(m->key, "k\xC3\xA9y", 4), "key unescaped");
        CHECK(m->type == JV_STRING && m->len == sizeof want - 1 && !memcmp(m->str, want, m->len), "value unescaped (len %zu)", m->len);
        CHECK(jv_get(v, "k\xC3\xA9y") == m && jv_get(v, "k") == NULL, "jv_get");
    }
    parse_bad(p, "{\"a\":01}", 8, 7, "leading zeros");
    parse_bad(p, "{\"a\":1,}", 8, 8, "trailing comma");
    parse_bad(p, "[1,]", 4, 4, "trailing comma");
    parse_bad(p, "{'a':1}", 7, 2, "member name in double quotes");
    parse_bad(p, "{\"a\":1} x", 9, 9, "after the JSON value");
    parse_bad(p, "{\"a\":\"\x01\"}", 9, 7, "control character U+0001");
    parse_bad(p, "{\"a\":\"\\q\"}", 10, 7, "invalid escape '\\q'");
    parse_bad(p, "{\"a\":NaN}", 9, 6, "unexpected character 'N'");
    parse_bad(p, "{\"a\":-}", 7, 7, "digits after '-'");
    parse_bad(p, "{\"a\":1.}", 8, 8, "digits after '.'");
    parse_bad(p, "{\"a\":1e}", 8, 8, "exponent");
    parse_bad(p, "{\"a\":\"abc", 9, 10, "unterminated string");
    parse_bad(p, "", 0, 1, "value is missing");
    parse_bad(p, "{\"\xC3\xA9\xC3\xA9\" 1}", 9, 7, "expected ':'");
    parse_bad(p, "{\"a\":\"\xC3\x28\"}", 9, 7, "invalid UTF-8");
    parse_bad(p, "{\"a\":\"\xED\xA0\x80\"}", 10, 7, "invalid UTF-8");      // UTF-8-encoded surrogate
    parse_bad(p, "{\"a\":\"\xC0\xAF\"}", 9, 7, "invalid UTF-8");           // overlong
    parse_bad(p, "{\"a\":\"\\udc00\"}", 14, 7, "lone UTF-16 low surrogate");
    parse_bad(p, "{\"a\" \0 :1}", 10, 6, "expected ':'");
    char deep[300];
    for (int i = 0; i < 200; i++) deep[i] = '[';
    deep[200] = '\0';
    parse_bad(p, deep, 200, 129, "nesting deeper than 128");

    // Equality for duplicate-key decisions.
    const char *a = "[{\"x\":[1,\"s\",null]},{\"x\":[1,\"s\",null]},{\"x\":[1,\"s\",false]}]";
    v = jsonl_parse(p, a, strlen(a), &col, err, sizeof err);
    CHECK(v && jv_equal(v->child, v->child->next) && !jv_equal(v->child, v->child->next->next), "jv_equal");
    jsonl_parser_free(p);
}

int main(void) {
    char *dir = mkdtemp(tmpl);
    if (!dir) { perror("mkdtemp"); return 1; }
    test_reader(dir);
    test_parser();
    rmdir(dir);
    return test_finish("test_jsonl");
}
