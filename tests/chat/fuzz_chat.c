// tests/chat/fuzz_chat.c — libFuzzer: any bytes as template text and as record contents; every
// family renders or refuses cleanly, and the spans always tile the text.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/chat.h"

static const char *families[] = {"raw", "llama2", "llama3", "llama3.1", "llama3.2", "mistral-v1", "mistral-v1-spm",
                                 "mistral-v3", "mistral-v3-spm", "mistral-nemo", "mistral-hf", "mistral-hf-lastuser",
                                 "mistral-legacy", "chatml", "qwen2.5", "qwen3", "phi3", "phi3.5"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    // byte 0: family (or detect from the rest), byte 1: flags; the rest split at 0xff into
    // system and turns.
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 2, size - 2);
    buf[size - 2] = 0;
    size_t n = size - 2;
    char err[256];
    chat_template *t = data[0] >= 200 ? chat_template_from_text(buf, NULL, NULL, NULL, err, sizeof err)
                                      : chat_template_from_text(NULL, families[data[0] % 17], NULL, NULL, err, sizeof err);
    if (t) {
        record_turn turns[16];
        record r = {0};
        r.format = (record_format)(data[1] % 5);
        r.turns = turns;
        char *p = buf, *end = buf + n;
        int first = 1;
        while (p <= end && r.nturns < 16) {
            char *q = memchr(p, 0xff, (size_t)(end - p));
            size_t len = q ? (size_t)(q - p) : (size_t)(end - p);
            if (first && (data[1] & 8)) {
                r.system = p;
                r.system_len = len;
            } else {
                turns[r.nturns].role = (record_role)((r.nturns + ((data[1] >> 4) & 1)) % 2);
                turns[r.nturns].text = p;
                turns[r.nturns].len = len;
                r.nturns++;
            }
            first = 0;
            if (!q)
                break;
            p = q + 1;
        }
        r.text = buf;
        r.text_len = n;
        chat_options o = {(data[1] & 32) ? "01 Jan 2025" : NULL, 1700000000, (data[1] & 64) != 0};
        chat_rendered c;
        if (chat_render(t, &r, &o, &c, err, sizeof err) == 0) {
            size_t at = 0;
            for (int i = 0; i < c.nspans; i++) {
                if (c.spans[i].start != at || c.spans[i].end <= c.spans[i].start)
                    abort();
                at = c.spans[i].end;
            }
            if (at != c.len || c.text[c.len] != 0)
                abort();
            chat_rendered_free(&c);
        }
        chat_template_free(t);
    }
    free(buf);
    return 0;
}
