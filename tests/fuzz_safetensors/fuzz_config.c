// tests/fuzz_safetensors/fuzz_config.c — libFuzzer over model_config_parse: any bytes as a
// config.json give 0 (a config whose derived numbers are sane) or -1 with a message; the rope
// frequencies and parameter count of an accepted config are computable without faults, and
// model_config_text_set_dtype turns it into JSON whose top-level torch_dtype is the one set.
#include "model/config.h"
#include "model/init.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    model_config c;
    char err[512];
    err[0] = 0;
    int rc = model_config_parse(&c, text, "fuzz.json", err, sizeof err);
    if (rc < 0) {
        free(text);
        if (!err[0]) __builtin_trap();
        return 0;
    }
    char *edited = model_config_text_set_dtype(text, "float16");
    free(text);
    cJSON *j = edited ? cJSON_ParseWithOpts(edited, NULL, 1) : NULL;
    const cJSON *td = cJSON_GetObjectItemCaseSensitive(j, "torch_dtype");
    if (!cJSON_IsString(td) || strcmp(td->valuestring, "float16")) __builtin_trap();
    cJSON_Delete(j);
    free(edited);
    if (rc != 0 || c.head_dim <= 0 || c.head_dim % 2 || c.num_heads % c.num_kv_heads) __builtin_trap();
    if (c.head_dim <= 1 << 16) {
        float *f = malloc(sizeof(float) * (size_t)(c.head_dim / 2));
        if (f) {
            model_config_rope_inv_freq(&c, f);
            for (int i = 0; i < c.head_dim / 2; i++)
                if (isnan(f[i])) __builtin_trap();
            free(f);
        }
    }
    (void)model_config_num_params(&c);
    return 0;
}
