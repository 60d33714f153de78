// tests/model_io/model_io_tool.c — a small driver the Python checks run against quarry's
// model I/O (the Python libraries are the oracles):
//   model_io_tool config FILE               parsed config, num_params and rope inv_freq bits as JSON
//   model_io_tool check PATH                open a checkpoint; "ok N" or the error (exit 1)
//   model_io_tool tof32 PATH OUT            every tensor through st_read_f32, written as F32
//   model_io_tool convert PATH OUT bf16|f16 every tensor read as f32, rounded, written
//   model_io_tool rewrite PATH OUT          every tensor's bytes as they are, written by st_writer
//   model_io_tool meta PATH KEY             a __metadata__ value
//   model_io_tool verify DIR                config.json + weights: model_tensor_check
#include "model/config.h"
#include "model/names.h"
#include "model/safetensors.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t numel(const st_tensor *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

static int cmd_config(const char *path) {
    model_config c;
    char err[1024];
    if (model_config_load(&c, path, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("{\"architecture\":\"%s\",\"vocab_size\":%d,\"hidden_size\":%d,\"intermediate_size\":%d,"
           "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"head_dim\":%d,"
           "\"max_position_embeddings\":%d,\"rms_norm_eps\":%.9g,\"rope_theta\":%.9g,\"rope_scaling\":%d,"
           "\"rope_factor\":%.9g,\"low_freq_factor\":%.9g,\"high_freq_factor\":%.9g,\"original_max_position\":%d,"
           "\"tie_word_embeddings\":%d,\"attention_bias\":%d,\"sliding_window\":%d,\"bos_token_id\":%d,"
           "\"eos_token_id\":%d,\"torch_dtype\":\"%s\",\"initializer_range\":%.9g,\"num_params\":%zu,"
           "\"num_experts\":%d,\"num_experts_per_tok\":%d,\"moe_intermediate_size\":%d,\"norm_topk_prob\":%d,"
           "\"router_aux_loss_coef\":%.9g,\"output_router_logits\":%d,\"moe_layers\":[",
           c.architecture, c.vocab_size, c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads, c.num_kv_heads,
           c.head_dim, c.max_position_embeddings, c.rms_norm_eps, c.rope_theta, (int)c.rope_scaling, c.rope_factor,
           c.rope_low_freq_factor, c.rope_high_freq_factor, c.rope_original_max_position, c.tie_word_embeddings,
           c.attention_bias, c.sliding_window, c.bos_token_id, c.eos_token_id, c.torch_dtype, c.initializer_range,
           model_config_num_params(&c), c.n_experts, c.top_k, c.moe_intermediate_size, c.norm_topk_prob,
           c.router_aux_loss_coef, c.output_router_logits);
    for (int l = 0, n = 0; l < c.num_layers; l++)
        if (model_config_layer_is_moe(&c, l)) printf("%s%d", n++ ? "," : "", l);
    printf("],\"rope_attention_factor\":%.9g,\"layer_windows\":[", c.rope_attention_factor);
    for (int l = 0; l < c.num_layers; l++) printf("%s%d", l ? "," : "", model_config_layer_window(&c, l));
    printf("],\"inv_freq\":[");
    float *f = malloc(sizeof(float) * (size_t)(c.head_dim / 2));
    if (!f) return 1;
    model_config_rope_inv_freq(&c, f);
    for (int i = 0; i < c.head_dim / 2; i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        printf("%s%" PRIu32, i ? "," : "", u);
    }
    printf("]}\n");
    free(f);
    return 0;
}

static int write_set(const st_set *s, const char *out, int mode, st_dtype target) {
    st_writer *w = st_writer_begin();
    int n = st_count(s), rc = 1;
    void **bufs = calloc((size_t)n + 1, sizeof *bufs);
    char err[1024];
    if (!w || !bufs) goto done;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_get(s, i);
        size_t ne = numel(t);
        if (mode == 0) {   // rewrite as is
            if (st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes)) {
                fprintf(stderr, "st_writer_add %s failed\n", t->name);
                goto done;
            }
            continue;
        }
        float *f = malloc(ne * 4 + 4);
        if (!f || st_read_f32(t, f)) {
            fprintf(stderr, "st_read_f32 %s failed\n", t->name);
            free(f);
            goto done;
        }
        if (mode == 1) {
            bufs[i] = f;
            if (st_writer_add(w, t->name, ST_F32, t->ndim, t->shape, f, ne * 4)) goto done;
        } else {
            uint16_t *h = malloc(ne * 2 + 2);
            if (!h) {
                free(f);
                goto done;
            }
            for (size_t k = 0; k < ne; k++) h[k] = target == ST_BF16 ? f32_to_bf16(f[k]) : f32_to_f16(f[k]);
            free(f);
            bufs[i] = h;
            if (st_writer_add(w, t->name, target, t->ndim, t->shape, h, ne * 2)) goto done;
        }
    }
    if (st_writer_finish(w, out, NULL, NULL, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < n && bufs; i++) free(bufs[i]);
    free(bufs);
    st_writer_free(w);
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "config")) return cmd_config(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "verify")) {
        model_config c;
        char e[1024];
        if (model_config_load(&c, argv[2], e, sizeof e)) {
            printf("%s\n", e);
            return 1;
        }
        st_set *s = st_open(argv[2], e, sizeof e);
        int rc = !s || model_tensor_check(&c, s, argv[2], e, sizeof e);
        printf("%s\n", rc ? e : "ok");
        st_close(s);
        return rc;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: model_io_tool config|check|tof32|convert|rewrite|meta ...\n");
        return 2;
    }
    char err[1024];
    st_set *s = st_open(argv[2], err, sizeof err);
    if (!s) {
        printf("%s\n", err);
        return 1;
    }
    int rc = 0;
    if (!strcmp(argv[1], "check")) printf("ok %d\n", st_count(s));
    else if (!strcmp(argv[1], "tof32") && argc == 4) rc = write_set(s, argv[3], 1, ST_F32);
    else if (!strcmp(argv[1], "rewrite") && argc == 4) rc = write_set(s, argv[3], 0, ST_F32);
    else if (!strcmp(argv[1], "convert") && argc == 5)
        rc = write_set(s, argv[3], 2, !strcmp(argv[4], "bf16") ? ST_BF16 : ST_F16);
    else if (!strcmp(argv[1], "meta") && argc == 4) {
        const char *v = st_metadata(s, argv[3]);
        printf("%s\n", v ? v : "(none)");
    } else {
        fprintf(stderr, "bad arguments\n");
        rc = 2;
    }
    st_close(s);
    return rc;
}
