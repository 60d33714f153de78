// cli/cmd_tokenize.c — `quarry tokenize --model DIR|--tokenizer FILE [--add-special] [--decode]`:
// JSON strings one per line on stdin → JSON arrays of ids one per line (--decode: the reverse).
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "data/tokenizer.h"

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hex4(const char *s, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval((unsigned char)s[i]);
        if (h < 0) return -1;
        *v = *v * 16 + (unsigned)h;
    }
    return 0;
}

static size_t put_utf8(unsigned cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Parses one JSON string (the whole line, surrounding whitespace allowed) into out (len bytes,
// may hold NULs). Returns 0, or -1 with a reason.
static int parse_json_string(const char *s, size_t n, char *out, size_t *len, const char **why) {
    size_t i = 0, o = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
    if (i >= n || s[i] != '"') { *why = "expected a JSON string (\"...\")"; return -1; }
    i++;
    for (;;) {
        if (i >= n) { *why = "unterminated string"; return -1; }
        unsigned char c = (unsigned char)s[i];
        if (c == '"') { i++; break; }
        if (c < 0x20) { *why = "control character inside the string (escape it)"; return -1; }
        if (c != '\\') { out[o++] = (char)c; i++; continue; }
        if (i + 1 >= n) { *why = "unterminated escape"; return -1; }
        char e = s[i + 1];
        i += 2;
        switch (e) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (i + 4 > n || hex4(s + i, &cp)) { *why = "bad \\u escape"; return -1; }
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (i + 6 > n || s[i] != '\\' || s[i + 1] != 'u' || hex4(s + i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    *why = "lone surrogate in \\u escape (not valid Unicode text)";
                    return -1;
                }
                i += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                *why = "lone surrogate in \\u escape (not valid Unicode text)";
                return -1;
            }
            o += put_utf8(cp, out + o);
            break;
        }
        default: *why = "unknown escape"; return -1;
        }
    }
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
    if (i != n) { *why = "text after the closing quote"; return -1; }
    *len = o;
    return 0;
}

static void write_json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20 || c == 0x7F) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

static int decode_line(const tokenizer *t, const char *line, long lineno, int skip) {
    cJSON *a = cJSON_Parse(line);
    int rc = 1;
    if (!cJSON_IsArray(a)) {
        fprintf(stderr, "stdin:%ld: error: expected a JSON array of token ids, e.g. [1, 15043]\n", lineno);
        cJSON_Delete(a);
        return 1;
    }
    int n = cJSON_GetArraySize(a), k = 0;
    int32_t *ids = malloc((size_t)(n + 1) * sizeof *ids);
    const cJSON *it;
    if (!ids) {
        fprintf(stderr, "quarry tokenize: error: out of memory\n");
        cJSON_Delete(a);
        return 1;
    }
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int32_t)it->valuedouble || it->valuedouble < 0) {
            fprintf(stderr, "stdin:%ld: error: element %d is not a non-negative integer token id\n", lineno, k);
            goto out;
        }
        ids[k++] = (int32_t)it->valuedouble;
    }
    size_t len;
    char *s = tokenizer_decode(t, ids, n, skip, &len);
    if (!s) {
        fprintf(stderr, "stdin:%ld: error: an id is outside the vocabulary (size %d)\n", lineno,
                tokenizer_vocab_size(t));
        goto out;
    }
    write_json_string(stdout, s, len);
    fputc('\n', stdout);
    free(s);
    rc = 0;
out:
    free(ids);
    cJSON_Delete(a);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
    int add_special = 0, decode = 0, skip_special = 0, with_offsets = 0;
    const arg_spec specs[] = {
        {"model", ARG_STRING, &model, "DIR", "model directory holding tokenizer.json"},
        {"tokenizer", ARG_STRING, &file, "FILE", "a tokenizer.json file"},
        {"add-special", ARG_FLAG, &add_special, NULL, "apply the post-processor (BOS/EOS) when encoding"},
        {"decode", ARG_FLAG, &decode, NULL, "read JSON arrays of ids, write JSON strings"},
        {"skip-special", ARG_FLAG, &skip_special, NULL, "with --decode: leave special tokens out"},
        {"offsets", ARG_FLAG, &with_offsets, NULL, "write {\"ids\": [...], \"offsets\": [[start,end],...]} (bytes)"},
    };
    const arg_parser p = {"tokenize", "quarry tokenize --model DIR|--tokenizer FILE [--add-special] [--decode]",
                          "Reads one JSON string per line on stdin and writes the token ids of each as a JSON\n"
                          "array on its own line, exactly as Hugging Face `tokenizers` encodes them. With\n"
                          "--decode, reads JSON arrays of ids and writes the decoded JSON strings.",
                          specs, 6, 0, 0};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    if (!model == !file) {
        fprintf(stderr, "quarry tokenize: error: give exactly one of --model DIR or --tokenizer FILE\n");
        return 2;
    }
    char err[512];
    tokenizer *t = tokenizer_load(model ? model : file, err, sizeof err);
    if (!t) {
        fprintf(stderr, "quarry tokenize: error: %s\n", err);
        return 1;
    }
    char *line = NULL, *text = NULL;
    size_t cap = 0, tcap = 0;
    ssize_t n;
    long lineno = 0;
    int status = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
        if (decode) {
            if (decode_line(t, line, lineno, skip_special)) { status = 1; break; }
            continue;
        }
        if ((size_t)n + 1 > tcap) {
            char *nt = realloc(text, (size_t)n + 1);
            if (!nt) { fprintf(stderr, "quarry tokenize: error: out of memory\n"); status = 1; break; }
            text = nt;
            tcap = (size_t)n + 1;
        }
        size_t len;
        const char *why;
        if (parse_json_string(line, (size_t)n, text, &len, &why)) {
            fprintf(stderr, "stdin:%ld: error: %s\nhint: each line must be one JSON string, e.g. \"Hello world\"\n",
                    lineno, why);
            status = 1;
            break;
        }
        int32_t *ids, *offs = NULL;
        int k = tokenizer_encode(t, text, len, add_special, &ids, with_offsets ? &offs : NULL, err, sizeof err);
        if (k < 0) {
            fprintf(stderr, "stdin:%ld: error: %s\n", lineno, err);
            status = 1;
            break;
        }
        fputs(with_offsets ? "{\"ids\": [" : "[", stdout);
        for (int i = 0; i < k; i++) printf(i ? ", %d" : "%d", ids[i]);
        if (with_offsets) {
            fputs("], \"offsets\": [", stdout);
            for (int i = 0; i < k; i++) printf(i ? ", [%d, %d]" : "[%d, %d]", offs[2 * i], offs[2 * i + 1]);
            fputs("]}", stdout);
        } else {
            fputc(']', stdout);
        }
        fputc('\n', stdout);
        free(ids);
        free(offs);
    }
    free(line);
    free(text);
    tokenizer_free(t);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "quarry tokenize: error: cannot write to stdout\n");
        return 1;
    }
    return status;
}
