// tests/export/test_generation_eos.c — the generation_config.json export writes for gpt-oss
// (cmi_generation_eos_fix, export/cmi.h): eos_token_id becomes CMI's [200002, 199999, 200012]
// whether the base's file had one id, the outdated list or none; every other key is kept; other
// architectures' files are left as they are.
#include "export/cmi.h"
#include "test.h"
#include <cjson/cJSON.h>

static char *fixed(const char *json, const char *arch) {
    cJSON *g = cJSON_Parse(json);
    CHECK(g && cmi_generation_eos_fix(g, arch) == 0, "fix of %s", json);
    char *s = g ? cJSON_PrintUnformatted(g) : NULL;
    cJSON_Delete(g);
    return s;
}

int main(void) {
    const char *want = "{\"bos_token_id\":199998,\"do_sample\":true,\"eos_token_id\":[200002,199999,200012],"
                       "\"pad_token_id\":199999}";
    const char *bases[] = {
        "{\"bos_token_id\":199998,\"do_sample\":true,\"eos_token_id\":200002,\"pad_token_id\":199999}",
        "{\"bos_token_id\":199998,\"do_sample\":true,\"eos_token_id\":[200002,199999],\"pad_token_id\":199999}",
        "{\"bos_token_id\":199998,\"do_sample\":true,\"eos_token_id\":[200002,199999,200012],\"pad_token_id\":199999}",
    };
    for (int i = 0; i < 3; i++) {
        char *s = fixed(bases[i], "GptOssForCausalLM");
        CHECK(s && !strcmp(s, want), "gpt-oss base %d: %s", i, s ? s : "(null)");
        free(s);
    }
    char *s = fixed("{\"bos_token_id\":199998,\"pad_token_id\":199999}", "GptOssForCausalLM");
    CHECK(s && strstr(s, "\"eos_token_id\":[200002,199999,200012]") && strstr(s, "\"pad_token_id\":199999"),
          "no eos_token_id: added: %s", s ? s : "(null)");
    free(s);
    s = fixed("{\"eos_token_id\":128009}", "LlamaForCausalLM");
    CHECK(s && !strcmp(s, "{\"eos_token_id\":128009}"), "llama untouched: %s", s ? s : "(null)");
    free(s);
    return test_finish("test_generation_eos");
}
