// data/strbuf.h — a growable NUL-terminated string for building text (JSON bodies, canonical
// requests, SVG). Out of memory is sticky: later appends do nothing and strbuf_take returns NULL.
#pragma once
#include <stddef.h>

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} strbuf;

void strbuf_put(strbuf *b, const char *s, size_t n);
void strbuf_puts(strbuf *b, const char *s);
__attribute__((format(printf, 2, 3))) void strbuf_printf(strbuf *b, const char *fmt, ...);
// The string (the caller frees it; "" when nothing was appended), or NULL after an out-of-memory.
char *strbuf_take(strbuf *b);
