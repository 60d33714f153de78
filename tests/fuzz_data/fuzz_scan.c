// libFuzzer harness: arbitrary bytes through the sensitive-data scanner. Properties: no crash or
// overread; hits lie inside the text, in order, without overlap; masks never hold the value.
#include "data/scan.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *text;
    size_t len, last_end;
} state;

static void on_hit(void *user, const scan_hit *h) {
    state *s = user;
    if (h->offset < s->last_end || h->len == 0 || h->offset + h->len > s->len || (int)h->kind >= SCAN_NKINDS) abort();
    s->last_end = h->offset + h->len;
    char m[64];
    scan_mask(s->text + h->offset, h->len, m, sizeof m);
    if (h->len >= 8 && strstr(m, "***") == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *copy = malloc(size ? size : 1);   // exact size so ASan sees any overread
    if (!copy) return 0;
    memcpy(copy, data, size);
    state s = {copy, size, 0};
    scan_text(copy, size, on_hit, &s);
    scan_luhn(copy, size);
    scan_iban_ok(copy, size);
    free(copy);
    return 0;
}
