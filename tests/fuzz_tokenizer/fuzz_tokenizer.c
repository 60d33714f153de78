// tests/fuzz_tokenizer/fuzz_tokenizer.c — libFuzzer over tokenizer_encode / tokenizer_decode
// with two small tokenizer.json files made at start-up: a byte-level BPE (Split regex, added
// tokens with lstrip/rstrip/single_word, NFC) and a SentencePiece-style one (Metaspace, byte
// fallback, unk). Any input must give ids or a clean error, offsets inside the text and
// ordered, ids that decode; without a normalizer the byte-level one must round-trip exactly.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/tokenizer.h"

static tokenizer *tk_bytes, *tk_bytes_nfc, *tk_spm;

static void put_cp(char **p, unsigned cp) {
    unsigned char *o = (unsigned char *)*p;
    if (cp < 0x80) *o++ = (unsigned char)cp;
    else if (cp < 0x800) {
        *o++ = (unsigned char)(0xC0 | (cp >> 6));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (unsigned char)(0xE0 | (cp >> 12));
        *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    *p = (char *)o;
}

// GPT-2's byte → character table.
static unsigned byte_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (unsigned)b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
    return 256u + (unsigned)n;
}

static tokenizer *load_json(const char *json, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/quarry-fuzz-%d-%s.json", (int)getpid(), name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(json, f) < 0 || fclose(f) != 0) abort();
    char err[512];
    tokenizer *t = tokenizer_load(path, err, sizeof err);
    unlink(path);
    if (!t) {
        fprintf(stderr, "fuzz setup: %s\n", err);
        abort();
    }
    return t;
}

static void setup(void) {
    static char json[65536];
    char *p = json;
    for (int pass = 0; pass < 2; pass++) {
        p = json;
        p += sprintf(p, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":["
                        "{\"id\":300,\"content\":\"<|end|>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":true,\"normalized\":false,\"special\":true},"
                        "{\"id\":301,\"content\":\"word\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,\"normalized\":true,\"special\":false},"
                        "{\"id\":302,\"content\":\"<|end|>x\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}],"
                        "\"normalizer\":%s,"
                        "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
                        "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
                        "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]},"
                        "\"post_processor\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
                        "\"decoder\":{\"type\":\"ByteLevel\"},"
                        "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"fuse_unk\":false,\"byte_fallback\":false,"
                        "\"ignore_merges\":true,\"vocab\":{",
                     pass ? "{\"type\":\"NFC\"}" : "null");
        for (int b = 0; b < 256; b++) {
            *p++ = '"';
            unsigned cp = byte_cp(b);
            if (cp == '"' || cp == '\\') *p++ = '\\';
            put_cp(&p, cp);
            p += sprintf(p, "\":%d,", b);
        }
        p += sprintf(p, "\"he\":256,\"Ġt\":257,\"Ġthe\":258,\"ll\":259,\"hell\":260,\"ĠĠ\":261,\"<|end|>\":300},"
                        "\"merges\":[\"h e\",[\"Ġ\",\"t\"],\"Ġt he\",\"l l\",\"he ll\",\"Ġ Ġ\"]}}");
        if (pass) tk_bytes_nfc = load_json(json, "bytes-nfc");
        else tk_bytes = load_json(json, "bytes");
    }
    p = json;
    p += sprintf(p, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":["
                    "{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
                    "{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}],"
                    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" {2,}\"},\"content\":\" \"}]},"
                    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
                    "{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"first\",\"split\":true}]},"
                    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
                    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
                    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"▁\"},\"content\":\" \"},"
                    "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
                    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,"
                    "\"ignore_merges\":false,\"vocab\":{\"<unk>\":0,\"<s>\":1,\"▁\":2,\"a\":3,\"b\":4,\"▁a\":5,\"ab\":6,");
    for (int b = 0; b < 200; b++) p += sprintf(p, "\"<0x%02X>\":%d,", b, 10 + b);
    p += sprintf(p, "\"c\":300},\"merges\":[\"▁ a\",\"a b\"]}}");
    tk_spm = load_json(json, "spm");
}

static int contains(const char *s, size_t n, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (!memcmp(s + i, needle, m)) return 1;
    return 0;
}

static void check_encode(const tokenizer *t, const char *s, size_t n, int special, int roundtrip) {
    int32_t *ids, *offs;
    char err[256];
    int k = tokenizer_encode(t, s, n, special, &ids, &offs, err, sizeof err);
    if (k < 0) return;   // invalid UTF-8: refused cleanly
    for (int i = 0; i < k; i++) {
        if (offs[2 * i] < 0 || offs[2 * i] > offs[2 * i + 1] || (size_t)offs[2 * i + 1] > n) {
            fprintf(stderr, "bad offsets [%d,%d) for a %zu-byte text\n", offs[2 * i], offs[2 * i + 1], n);
            abort();
        }
    }
    size_t dl;
    char *d = tokenizer_decode(t, ids, k, 0, &dl);
    if (!d) abort();   // ids from encode always decode
    // "<|end|>" strips the whitespace around it (lstrip/rstrip, as HF does), so texts holding it
    // need not come back byte for byte; every other text must.
    if (roundtrip && !special && !contains(s, n, "<|end|>") && (dl != n || memcmp(d, s, n) != 0)) {
        fprintf(stderr, "byte-level round trip differs (%zu vs %zu bytes)\n", dl, n);
        abort();
    }
    free(d);
    free(ids);
    free(offs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tk_bytes) setup();
    if (size == 0) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] & 3) {
    case 0:
        check_encode(tk_bytes, s, n, data[0] & 4, 1);
        break;
    case 1:
        check_encode(tk_bytes_nfc, s, n, data[0] & 4, 0);
        break;
    case 2:
        check_encode(tk_spm, s, n, data[0] & 4, 0);
        break;
    default: {
        // Arbitrary ids: some out of range must give NULL, never a crash.
        int m = (int)(n / 2);
        int32_t *ids = malloc(((size_t)m + 1) * sizeof *ids);
        if (!ids) return 0;
        for (int i = 0; i < m; i++) ids[i] = (int32_t)(((uint16_t)data[1 + 2 * i] << 8 | data[2 + 2 * i]) % 320) - 5;
        const tokenizer *t = (data[0] & 4) ? tk_spm : tk_bytes;
        char *d = tokenizer_decode(t, ids, m, (data[0] >> 3) & 1, NULL);
        free(d);
        free(ids);
    }
    }
    return 0;
}
