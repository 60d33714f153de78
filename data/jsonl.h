// data/jsonl.h — read JSONL files one line at a time in constant memory, and parse one line's
// JSON into a small tree without copying. Each line carries its 1-based number, so every
// diagnostic can point at it.
//
// Reader: a line longer than max_line_bytes is not kept; the reader skips to the next newline
// and returns it flagged `oversized` (the caller reports it and goes on). CRLF line ends are
// accepted (the \r is dropped); a UTF-8 byte order mark at the start of the file is dropped and
// reported through jsonl_had_bom. A final newline does not make an empty last line.
//
// Parser: strict RFC 8259 JSON (no comments, no trailing commas, no NaN), strings checked to be
// valid UTF-8 (lone surrogates refused) and unescaped into the parser's own buffer. Nodes and
// strings live in the parser and are reused by the next parse: memory is bounded by the
// longest line, not by the file. At most JSONL_MAX_VALUES values and 128 levels per line.
#pragma once
#include <stddef.h>

typedef struct jsonl_reader jsonl_reader;

typedef struct {
    const char *text;   // the line without its newline, NUL-terminated, valid until the next call
    size_t len;         // bytes (for an oversized line: its full length; text is then "")
    long line;          // 1-based
    int oversized;      // 1 when len > max_line_bytes (text is not available)
} jsonl_line;

// path "-" reads standard input. NULL with a message in err when the file cannot be opened.
jsonl_reader *jsonl_open(const char *path, size_t max_line_bytes, char *err, size_t errlen);
int jsonl_next(jsonl_reader *r, jsonl_line *out);   // 1 = a line, 0 = end, -1 = read error (jsonl_error)
const char *jsonl_error(const jsonl_reader *r);
int jsonl_had_bom(const jsonl_reader *r);           // 1 once a BOM was dropped from the start
unsigned long long jsonl_bytes_read(const jsonl_reader *r);
void jsonl_close(jsonl_reader *r);

typedef enum { JV_NULL, JV_FALSE, JV_TRUE, JV_NUMBER, JV_STRING, JV_ARRAY, JV_OBJECT } jv_type;

typedef struct jv {
    jv_type type;
    const char *key;        // member name inside an object (unescaped, NUL-terminated), else NULL
    size_t key_len;
    const char *str;        // JV_STRING: unescaped UTF-8, NUL-terminated; JV_NUMBER: its text
    size_t len;
    struct jv *child;       // first element / member (JV_ARRAY, JV_OBJECT)
    struct jv *next;        // next sibling
    int count;              // number of children
    size_t pos;             // byte offset of the value in the line (for messages)
} jv;

typedef struct jsonl_parser jsonl_parser;

jsonl_parser *jsonl_parser_new(void);
void jsonl_parser_free(jsonl_parser *p);
#define JSONL_MAX_VALUES (1 << 20)
// Parses text[0..len). Returns the root, or NULL with a message in err and
// the 1-based column (in characters) where parsing failed in *col. Nesting deeper than 128 is
// refused. The tree is valid until the next parse with p.
const jv *jsonl_parse(jsonl_parser *p, const char *text, size_t len, int *col, char *err, size_t errlen);

const jv *jv_get(const jv *obj, const char *key);   // first member named key, or NULL
int jv_equal(const jv *a, const jv *b);             // structural equality (object members in order)
const char *jv_type_name(jv_type t);                // "a string", "an array", ...
// 1-based column in characters of byte offset pos in text (counts UTF-8 lead bytes).
int jsonl_column(const char *text, size_t pos);
