// tests/fuzz_safetensors/fuzz_safetensors.c — libFuzzer over the safetensors header parser: the
// first 8 input bytes give the data-section length, the rest is the header text. Whatever the
// bytes, st_parse_header returns 0 or -1 with a message; never a crash, leak or overflow.
#include "model/safetensors.h"
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    uint64_t data_len = 0;
    for (int i = 7; i >= 0; i--) data_len = (data_len << 8) | data[i];
    data_len &= (1ull << 40) - 1;
    char err[512];
    err[0] = 0;
    int rc = st_parse_header((const char *)data + 8, size - 8, (size_t)data_len, "fuzz", err, sizeof err);
    if (rc != 0 && rc != -1) __builtin_trap();
    if (rc == -1 && !err[0]) __builtin_trap();   // every refusal says why
    return 0;
}
