// tests/model/test_lora.c — LoRA settings: target lists, scaling, PEFT's initialisation bound.
#include "test.h"
#include <cjson/cJSON.h>
#include "model/lora.h"

// adapter_config.json as PEFT 0.21 writes it (a LoraConfig saved with save_pretrained), and the
// variants quarry must refuse with a message naming the file.
static void check_peft_config(void) {
    const char *good = "{\"peft_type\": \"LORA\", \"r\": 16, \"lora_alpha\": 32, \"lora_dropout\": 0.05, "
        "\"target_modules\": [\"q_proj\", \"v_proj\", \"down_proj\"], \"use_rslora\": true, \"use_dora\": false, "
        "\"fan_in_fan_out\": false, \"rank_pattern\": {}, \"alpha_pattern\": {}, \"modules_to_save\": null, "
        "\"base_model_name_or_path\": \"/models/base\"}";
    char err[512];
    lora_config lc;
    cJSON *j = cJSON_Parse(good);
    CHECK(lora_config_from_peft(j, "a/adapter_config.json", 1, &lc, err, sizeof err) == 0, "good config: %s", err);
    CHECK(lc.rank == 16 && lc.alpha == 32.0f && lc.rslora == 1 && lc.dropout == 0.0f &&
          lc.targets == ((1u << LORA_Q) | (1u << LORA_V) | (1u << LORA_DOWN)), "parsed r %d alpha %g rslora %d targets %x",
          lc.rank, lc.alpha, lc.rslora, lc.targets);
    cJSON_Delete(j);
    static const struct { const char *edit, *value, *want; int need; } bad[] = {
        {"peft_type", "\"IA3\"", "LORA", 1},           {"r", "0", "positive integer", 1},
        {"r", "2.5", "positive integer", 1},            {"lora_alpha", "-1", "positive number", 1},
        {"use_dora", "true", "DoRA", 1},                {"fan_in_fan_out", "true", "fan_in_fan_out", 1},
        {"rank_pattern", "{\"q_proj\": 4}", "rank_pattern", 1}, {"modules_to_save", "[\"lm_head\"]", "modules_to_save", 0},
        {"target_modules", "[\"lm_head\"]", "lm_head", 1}, {"target_modules", "[1]", "strings", 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *c = cJSON_Parse(good), *v = cJSON_Parse(bad[i].value);
        cJSON_ReplaceItemInObjectCaseSensitive(c, bad[i].edit, v);
        err[0] = 0;
        int rc = lora_config_from_peft(c, "a/adapter_config.json", bad[i].need, &lc, err, sizeof err);
        CHECK(rc == -1 && strstr(err, "a/adapter_config.json") && strstr(err, bad[i].want), "%s = %s: rc %d, \"%s\"",
              bad[i].edit, bad[i].value, rc, err);
        cJSON_Delete(c);
    }
    // Merging goes by the tensors present: targets outside the seven linear layers are no error.
    cJSON *c = cJSON_Parse(good);
    cJSON_ReplaceItemInObjectCaseSensitive(c, "target_modules", cJSON_Parse("[\"lm_head\"]"));
    CHECK(lora_config_from_peft(c, "a/adapter_config.json", 0, &lc, err, sizeof err) == 0 && lc.targets == 0,
          "merge-style read of unusual targets: %s", err);
    cJSON_DeleteItemFromObjectCaseSensitive(c, "target_modules");
    CHECK(lora_config_from_peft(c, "a/adapter_config.json", 1, &lc, err, sizeof err) == -1 && strstr(err, "missing"),
          "targets required: %s", err);
    cJSON_Delete(c);
}

int main(void) {
    check_peft_config();
    char err[256], buf[64];
    unsigned mask = 0;
    CHECK(lora_targets_parse("all-linear", &mask, err, sizeof err) == 0 && mask == LORA_ALL_LINEAR,
          "all-linear → %#x", mask);
    CHECK(lora_targets_parse("q,v", &mask, err, sizeof err) == 0 &&
          mask == ((1u << LORA_Q) | (1u << LORA_V)), "q,v → %#x", mask);
    CHECK(lora_targets_parse("q_proj, down_proj ,gate", &mask, err, sizeof err) == 0 &&
          mask == ((1u << LORA_Q) | (1u << LORA_DOWN) | (1u << LORA_GATE)), "HF names → %#x", mask);
    CHECK(strcmp(lora_targets_format(mask, buf, sizeof buf), "q,gate,down") == 0, "format: %s", buf);
    CHECK(strcmp(lora_targets_format(LORA_ALL_LINEAR, buf, sizeof buf), "all-linear") == 0, "%s", buf);
    CHECK(lora_targets_parse("q,lm_head", &mask, err, sizeof err) == -1 && strstr(err, "lm_head"),
          "unknown target named: %s", err);
    CHECK(lora_targets_parse("attention", &mask, err, sizeof err) == 0 &&
              mask == ((1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_V) | (1u << LORA_O)), "attention preset");
    // The MoE presets: experts alone, all-linear = attention + dense MLPs + experts (no router),
    // explicit lists mixing presets and names, written back as parsed.
    CHECK(lora_targets_parse("experts", &mask, err, sizeof err) == 0 && mask == LORA_EXPERTS_BIT,
          "experts preset → %#x (%s)", mask, err);
    CHECK((LORA_ALL_LINEAR & LORA_EXPERTS_BIT) && !(LORA_ALL_LINEAR & LORA_ROUTER_BIT),
          "all-linear has experts, not router");
    CHECK(lora_targets_parse("attention,experts,router", &mask, err, sizeof err) == 0 &&
              mask == (LORA_ATTENTION | LORA_EXPERTS_BIT | LORA_ROUTER_BIT), "attention,experts,router → %#x", mask);
    CHECK(strcmp(lora_targets_format(mask, buf, sizeof buf), "q,k,v,o,experts,router") == 0, "format: %s", buf);
    CHECK(lora_targets_parse("all-linear,router", &mask, err, sizeof err) == 0 &&
              mask == (LORA_ALL_LINEAR | LORA_ROUTER_BIT), "all-linear,router → %#x", mask);
    CHECK(strcmp(lora_targets_format(mask, buf, sizeof buf), "all-linear,router") == 0, "format: %s", buf);
    CHECK(lora_targets_parse("q,expert", &mask, err, sizeof err) == -1 && strstr(err, "\"expert\"") &&
              strstr(err, "router"), "unknown target lists the names: %s", err);
    // PEFT's module names: the router is "gate", Mixtral's experts w1/w2/w3, expert tensors by path.
    CHECK(lora_target_of_module("gate") == LORA_ROUTER_BIT &&
              lora_target_of_module("model.layers.0.block_sparse_moe.gate") == LORA_ROUTER_BIT &&
              lora_target_of_module("w2") == LORA_EXPERTS_BIT &&
              lora_target_of_module("base_model.model.model.layers.3.mlp.experts.7.gate_proj.lora_B.weight") ==
                  LORA_EXPERTS_BIT &&
              lora_target_of_module("base_model.model.model.layers.3.mlp.gate_proj.lora_A.weight") == 1u << LORA_GATE &&
              lora_target_of_module("base_model.model.model.layers.3.mlp.gate.lora_A.weight") == LORA_ROUTER_BIT &&
              lora_target_of_module("lm_head") == 0, "PEFT module names");
    // gpt-oss's target_parameters wrappers (model/lora_peft.h): the fused experts and the router.
    CHECK(lora_target_of_module("base_model.model.model.layers.1.mlp.experts.base_layer.lora_A.weight") ==
                  LORA_EXPERTS_BIT &&
              lora_target_of_module("base_model.model.model.layers.1.mlp.experts.lora_B.weight") == LORA_EXPERTS_BIT &&
              lora_target_of_module("base_model.model.model.layers.1.mlp.router.lora_A.weight") == LORA_ROUTER_BIT &&
              lora_peft_is_fused_name("base_model.model.model.layers.1.mlp.experts.base_layer.lora_A.weight") &&
              lora_peft_is_fused_name("base_model.model.model.layers.1.mlp.experts.lora_B.weight") &&
              !lora_peft_is_fused_name("base_model.model.model.layers.1.mlp.experts.3.down_proj.lora_B.weight") &&
              !lora_peft_is_fused_name("base_model.model.model.layers.1.mlp.router.lora_B.weight"),
          "gpt-oss's PEFT names");
    // PEFT's target_modules: last names when PEFT's suffix match selects exactly the adapted
    // modules; a regex when the experts' gate_proj is adapted and a dense MLP's is not.
    {
        const char *linear[] = {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.gate",
                                "model.layers.0.mlp.experts.0.gate_proj", "model.layers.0.mlp.experts.1.gate_proj",
                                "model.layers.1.self_attn.q_proj", "model.layers.1.mlp.gate_proj", "lm_head"};
        const char *both[] = {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.experts.0.gate_proj",
                              "model.layers.0.mlp.experts.1.gate_proj", "model.layers.1.self_attn.q_proj",
                              "model.layers.1.mlp.gate_proj", "model.layers.0.mlp.gate"};
        cJSON *t = lora_peft_target_modules(both, 6, linear, 7);
        char *txt = t ? cJSON_PrintUnformatted(t) : NULL;
        CHECK(txt && !strcmp(txt, "[\"q_proj\",\"gate_proj\",\"gate\"]"), "suffix list: %s", txt ? txt : "NULL");
        free(txt);
        cJSON_Delete(t);
        t = lora_peft_target_modules(both, 3, linear, 7);   // q of layer 0 and the experts: not layer 1's MLP
        txt = t ? cJSON_PrintUnformatted(t) : NULL;
        CHECK(txt && !strcmp(txt, "\"model\\\\.layers\\\\.\\\\d+\\\\.self_attn\\\\.q_proj|"
                                  "model\\\\.layers\\\\.\\\\d+\\\\.mlp\\\\.experts\\\\.\\\\d+\\\\.gate_proj\""),
              "regex: %s", txt ? txt : "NULL");
        free(txt);
        cJSON_Delete(t);
    }
    CHECK(lora_targets_parse("", &mask, err, sizeof err) == -1, "empty list refused");
    CHECK(lora_targets_parse(",", &mask, err, sizeof err) == -1, "no target refused");

    lora_config c = lora_config_default();
    CHECK(c.rank == 8 && c.alpha == 16.0f && c.targets == LORA_ALL_LINEAR, "defaults");
    CHECK(fabsf(lora_scale(&c) - 2.0f) < 1e-7f, "alpha/r = %g", (double)lora_scale(&c));
    c.rslora = 1;
    CHECK(fabsf(lora_scale(&c) - 16.0f / sqrtf(8.0f)) < 1e-6f, "rsLoRA alpha/sqrt(r) = %g",
          (double)lora_scale(&c));
    CHECK(lora_config_check(&c, err, sizeof err) == 0, "default valid: %s", err);
    c.rank = 0;
    CHECK(lora_config_check(&c, err, sizeof err) == -1, "rank 0 refused");
    c.rank = 8;
    c.dropout = 1.0f;
    CHECK(lora_config_check(&c, err, sizeof err) == -1, "dropout 1 refused");

    // A ~ U(−1/sqrt(in), 1/sqrt(in)): every draw inside the bound, variance bound²/3, and the
    // draw depends on the stream id.
    int r = 16, in = 256;
    float *a = malloc((size_t)r * in * 4), *b = malloc((size_t)r * in * 4);
    lora_init_a(a, r, in, 42, 3);
    lora_init_a(b, r, in, 42, 4);
    double bound = 1.0 / sqrt((double)in), s2 = 0, mean = 0;
    int inside = 1, differ = 0;
    for (int i = 0; i < r * in; i++) {
        inside &= fabs(a[i]) <= bound;
        s2 += (double)a[i] * a[i];
        mean += a[i];
        differ |= a[i] != b[i];
    }
    s2 /= r * in;
    mean /= r * in;
    CHECK(inside, "draws within ±%g", bound);
    CHECK(fabs(s2 / (bound * bound / 3.0) - 1.0) < 0.05, "variance %g, want %g", s2, bound * bound / 3.0);
    CHECK(fabs(mean) < 0.05 * bound, "mean %g", mean);
    CHECK(differ, "streams differ");
    free(a);
    free(b);
    return test_finish("test_lora");
}
