// libFuzzer harness: arbitrary bytes as JSONL lines through the Bedrock record checker (JSON
// parser, format detection, every rule, record building) with options taken from the first
// byte. Properties: no crash, no leak, no undefined behaviour; a valid record is well formed.
#include "data/bedrock.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void on_diag(void *user, long line, int col, bedrock_severity sev, const char *msg) {
    (void)line, (void)col, (void)sev;
    *(size_t *)user += strlen(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t sink = 0;
    bedrock_options o = {0};
    o.force = (record_format)(data[0] % 5);
    o.allow_extra_keys = (data[0] >> 3) & 1;
    o.limits = (data[0] >> 4) & 1 ? limits_find("amazon.nova-micro-v1:0") : NULL;
    o.diag = on_diag;
    o.user = &sink;
    bedrock_checker *c = bedrock_checker_new(&o);
    if (!c) return 0;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    long line = 1, checked = 0;
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *copy = malloc(n + 1);   // exact-size copy so ASan sees any overread
        if (!copy) break;
        memcpy(copy, p, n);
        copy[n] = '\0';
        record r;
        int rc = bedrock_check(c, copy, n, line, (line & 1) ? &r : NULL);
        checked++;
        if (rc == 1 && (line & 1)) {
            if (r.format == FORMAT_CPT) {
                if (!r.text || strlen(r.text) > r.text_len) abort();
            } else {
                if (r.nturns < 2 || !r.turns) abort();
                for (int i = 0; i < r.nturns; i++)
                    if (!r.turns[i].text || r.turns[i].role != (i % 2 ? ROLE_ASSISTANT : ROLE_USER)) abort();
            }
            record_free(&r);
        }
        free(copy);
        line++;
        if (!nl) break;
        p = nl + 1;
    }
    const bedrock_stats *st = bedrock_checker_stats(c);
    if (st->valid + st->invalid != checked) abort();   // every line is either a record or an error
    bedrock_checker_free(c);
    return 0;
}
