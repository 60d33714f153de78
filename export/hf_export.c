// export/hf_export.c — see hf_export.h.
#include "hf_export.h"
#include "cmi.h"
#include "../data/fileio.h"
#include "nf4_base.h"
#include "../model/bnb4.h"
#include "../model/config.h"
#include "../model/init.h"
#include "../model/lora.h"
#include "../model/names.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const hf_tokenizer_files[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "added_tokens.json",
    "vocab.json",     "merges.txt",            "chat_template.jinja",     "chat_template.json", NULL,
};

int hf_dtype_parse(const char *s, st_dtype *dtype) {
    if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) *dtype = ST_BF16;
    else if (!strcmp(s, "fp16") || !strcmp(s, "float16")) *dtype = ST_F16;
    else if (!strcmp(s, "fp32") || !strcmp(s, "float32")) *dtype = ST_F32;
    else return -1;
    return 0;
}

static const char *st_name(st_dtype d) { return d == ST_F32 ? "F32" : d == ST_F16 ? "F16" : "BF16"; }

int hf_base_dtype(const char *base_dir, st_dtype *dtype, char *err, size_t errlen) {
    char path[4200], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", base_dir);
    if (fileio_read_all(path, &text, &len, err, errlen)) return -1;
    cJSON *c = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *td = c ? cJSON_GetObjectItemCaseSensitive(c, "torch_dtype") : NULL;
    if (!cJSON_IsString(td) && c) td = cJSON_GetObjectItemCaseSensitive(c, "dtype");
    int found = cJSON_IsString(td) && hf_dtype_parse(td->valuestring, dtype) == 0;
    cJSON_Delete(c);
    if (found) return 0;
    st_set *s = st_open(base_dir, err, errlen);
    if (!s) return -1;
    int rc = -1;
    for (int i = 0; i < st_count(s); i++) {
        const st_tensor *t = st_get(s, i);
        if (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) {
            *dtype = t->dtype;
            rc = 0;
            break;
        }
    }
    st_close(s);
    if (rc) snprintf(err, errlen, "%s: no torch_dtype in config.json and no F32/F16/BF16 tensor", base_dir);
    return rc;
}

// A safetensors file written as its tensors are produced: the header (names, dtypes, shapes,
// offsets) is known up front, so nothing but the tensor being written is held in memory.
typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[3];
    size_t nbytes;
} st_entry_plan;

typedef struct {
    int fd;
    char path[4400], tmp[4500];
    size_t expected, written;
} st_stream;

static int append_json_string(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t need = *len + 6 * strlen(s) + 3;
    if (need > *cap) {
        size_t nc = *cap ? *cap : 4096;
        while (nc < need) nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return -1;
        *buf = nb;
        *cap = nc;
    }
    char *p = *buf + *len;
    *p++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *p++ = '\\';
            *p++ = (char)*c;
        } else if (*c < 0x20) {
            p += sprintf(p, "\\u%04x", *c);
        } else {
            *p++ = (char)*c;
        }
    }
    *p++ = '"';
    *p = 0;
    *len = (size_t)(p - *buf);
    return 0;
}

static int append_text(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 4096;
        while (nc < *len + n + 1) nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return -1;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
    return 0;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int stream_begin(st_stream *s, const char *path, const st_entry_plan *e, int n, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    snprintf(s->path, sizeof s->path, "%s", path);
    snprintf(s->tmp, sizeof s->tmp, "%s.tmp", path);
    char *h = NULL;
    size_t len = 0, cap = 0, off = 0;
    int bad = append_text(&h, &len, &cap, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n && !bad; i++) {
        char num[160];
        bad |= append_text(&h, &len, &cap, ",");
        bad |= append_json_string(&h, &len, &cap, e[i].name);
        snprintf(num, sizeof num, ":{\"dtype\":\"%s\",\"shape\":[", st_name(e[i].dtype));
        bad |= append_text(&h, &len, &cap, num);
        for (int d = 0; d < e[i].ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)e[i].shape[d]);
            bad |= append_text(&h, &len, &cap, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + e[i].nbytes);
        bad |= append_text(&h, &len, &cap, num);
        off += e[i].nbytes;
    }
    bad |= append_text(&h, &len, &cap, "}");
    while (!bad && len % 8) bad = append_text(&h, &len, &cap, " ");   // padded to 8 bytes as the library does
    if (bad) {
        free(h);
        snprintf(err, errlen, "%s: out of memory building the header", path);
        return -1;
    }
    s->expected = off;
    s->fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        free(h);
        snprintf(err, errlen, "%s: cannot create: %s", s->tmp, strerror(errno));
        return -1;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    bad = write_all(s->fd, len8, 8) || write_all(s->fd, h, len);
    free(h);
    if (bad) {
        snprintf(err, errlen, "%s: write failed: %s", s->tmp, strerror(errno));
        close(s->fd);
        unlink(s->tmp);
        s->fd = -1;
        return -1;
    }
    return 0;
}

static int stream_write(st_stream *s, const void *p, size_t n, char *err, size_t errlen) {
    if (s->written + n > s->expected || write_all(s->fd, p, n)) {
        snprintf(err, errlen, "%s: write failed: %s", s->tmp,
                 s->written + n > s->expected ? "more data than planned" : strerror(errno));
        return -1;
    }
    s->written += n;
    return 0;
}

static void stream_abort(st_stream *s) {
    if (s->fd >= 0) {
        close(s->fd);
        unlink(s->tmp);
    }
    s->fd = -1;
}

static int stream_finish(st_stream *s, char *err, size_t errlen) {
    if (s->written != s->expected) {
        snprintf(err, errlen, "%s: %zu of %zu data bytes written", s->tmp, s->written, s->expected);
        stream_abort(s);
        return -1;
    }
    if (fsync(s->fd) != 0) {
        snprintf(err, errlen, "%s: fsync failed: %s", s->tmp, strerror(errno));
        stream_abort(s);
        return -1;
    }
    int rc = close(s->fd);
    s->fd = -1;
    if (rc != 0 || rename(s->tmp, s->path) != 0) {
        snprintf(err, errlen, "%s: cannot finish: %s", s->path, strerror(errno));
        unlink(s->tmp);
        return -1;
    }
    return 0;
}

static size_t numel(const model_tensor_info *t) {
    return (size_t)t->shape[0] * (t->ndim > 1 ? (size_t)t->shape[1] : 1) * (t->ndim > 2 ? (size_t)t->shape[2] : 1);
}

// {"metadata": {"total_size": N}, "weight_map": {name: file, ...}} with sorted names, as
// transformers writes it.
// The base's config.json bytes with torch_dtype set; generation_config.json copied or derived.
static int write_configs(const char *base_dir, st_dtype dtype, const char *out_dir, char *err, size_t errlen) {
    char path[4400], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", base_dir);
    if (fileio_read_all(path, &text, &len, err, errlen)) return -1;
    cJSON *cj = cJSON_ParseWithLength(text, len);
    if (cj && cJSON_GetObjectItemCaseSensitive(cj, "quantization_config")) {
        // The package is dense (an MXFP4 base's experts are written dequantised): a
        // quantization_config left in would make transformers expect the packed pairs.
        cJSON_DeleteItemFromObjectCaseSensitive(cj, "quantization_config");
        char *dense = cJSON_Print(cj);
        free(text);
        text = dense;
    }
    char *cfg_text = cj && text ? model_config_text_set_dtype(text, st_dtype_torch_name(dtype)) : NULL;
    free(text);
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(cj, "quantization_config");
    const cJSON *qm = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    if (cfg_text && cJSON_IsString(qm) && !strcmp(qm->valuestring, "bitsandbytes")) {
        // A 4-bit base exported dequantised (model/bnb4): the package's weights are not quantised
        // (and CMI refuses a quantization_config), so it goes; the rest as the base has it.
        cJSON *c2 = cJSON_Parse(cfg_text);
        cJSON_DeleteItemFromObjectCaseSensitive(c2, "quantization_config");
        char *t2 = c2 ? cJSON_Print(c2) : NULL;
        cJSON_Delete(c2);
        free(cfg_text);
        cfg_text = t2;
    }
    if (!cfg_text) {
        snprintf(err, errlen, "%s: not a JSON object (or out of memory)", path);
        cJSON_Delete(cj);
        return -1;
    }
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    int rc = fileio_write_atomic(path, cfg_text, strlen(cfg_text), err, errlen);
    free(cfg_text);
    char from[4400];
    snprintf(from, sizeof from, "%s/generation_config.json", base_dir);
    snprintf(path, sizeof path, "%s/generation_config.json", out_dir);
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(cj, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const char *arch = cJSON_IsString(a0) ? a0->valuestring : "";
    if (!rc && fileio_exists(from) && strcmp(arch, CMI_GPTOSS_ARCH)) {
        rc = fileio_copy_file(from, path, err, errlen);
    } else if (!rc && fileio_exists(from)) {
        // gpt-oss: the base's file with the EOS ids CMI needs (cmi.h).
        char *gtext = NULL;
        size_t glen = 0;
        cJSON *gen = NULL;
        if (fileio_read_all(from, &gtext, &glen, err, errlen)) {
            rc = -1;
        } else if (!(gen = cJSON_ParseWithLength(gtext, glen)) || !cJSON_IsObject(gen)) {
            snprintf(err, errlen, "%s: not a JSON object", from);
            rc = -1;
        } else if (cmi_generation_eos_fix(gen, arch)) {
            snprintf(err, errlen, "%s: out of memory", path);
            rc = -1;
        } else {
            rc = model_write_json(path, gen, err, errlen);
        }
        free(gtext);
        cJSON_Delete(gen);
    } else if (!rc) {
        // As save_pretrained derives it from the model config.
        cJSON *gen = cJSON_CreateObject();
        int ok = gen && cJSON_AddBoolToObject(gen, "_from_model_config", 1);
        const char *keys[] = {"bos_token_id", "eos_token_id", "pad_token_id"};
        for (int i = 0; ok && i < 3; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(cj, keys[i]);
            if (v && !cJSON_IsNull(v)) {
                cJSON *d = cJSON_Duplicate(v, 1);
                ok = d && cJSON_AddItemToObject(gen, keys[i], d);
            }
        }
        if (ok) ok = cmi_generation_eos_fix(gen, arch) == 0;
        if (!ok) {
            snprintf(err, errlen, "%s: out of memory", path);
            rc = -1;
        } else {
            rc = model_write_json(path, gen, err, errlen);
        }
        cJSON_Delete(gen);
    }
    cJSON_Delete(cj);
    return rc;
}

static int copy_tokenizer_files(const char *base_dir, const char *out_dir, char *err, size_t errlen) {
    for (int i = 0; hf_tokenizer_files[i]; i++) {
        char from[4400], to[4400];
        snprintf(from, sizeof from, "%s/%s", base_dir, hf_tokenizer_files[i]);
        if (!fileio_exists(from)) continue;
        snprintf(to, sizeof to, "%s/%s", out_dir, hf_tokenizer_files[i]);
        if (fileio_copy_file(from, to, err, errlen)) return -1;
    }
    return 0;
}

static int is_decoder_linear(tensor_role r) {
    return r == TENSOR_Q || r == TENSOR_K || r == TENSOR_V || r == TENSOR_O || r == TENSOR_GATE || r == TENSOR_UP ||
           r == TENSOR_DOWN;
}

// scratch holding at least need floats.
static float *scratch_of(float **scratch, size_t *scratch_n, size_t need, const char *what, char *err, size_t errlen) {
    if (need > *scratch_n) {
        float *ns = realloc(*scratch, need * sizeof(float));
        if (!ns) {
            snprintf(err, errlen, "out of memory reading the adapter of %s", what);
            return NULL;
        }
        *scratch = ns;
        *scratch_n = need;
    }
    return *scratch;
}

// gpt-oss's fused expert tensor t (E, in, out) in buf plus its adapter in PEFT's fused layout.
static int merge_fused(const hf_export_options *o, const model_tensor_info *t, float *buf, float **scratch,
                       size_t *scratch_n, int *merged, char *err, size_t errlen) {
    const st_tensor *A, *B;
    int64_t E = t->shape[0], in = t->shape[1], out = t->shape[2];
    int f = merge_adapter_find_fused(o->adapter, t->name, E, in, out, &A, &B, err, errlen);
    if (f <= 0) return f;
    size_t rE = (size_t)o->adapter->r * (size_t)E;
    float *a = scratch_of(scratch, scratch_n, rE * (size_t)(in + out), t->name, err, errlen);
    if (!a) return -1;
    float *b = a + rE * (size_t)in;
    if (st_read_f32(A, a) || st_read_f32(B, b)) {
        snprintf(err, errlen, "%s: the adapter of %s has an unreadable dtype", o->adapter->dir, t->name);
        return -1;
    }
    merge_lora_fused_f32(buf, a, b, E, in, out, o->adapter->r, o->adapter->scale);
    (*merged)++;
    return 0;
}

// One output tensor as f32 in buf: the base's (or the fine-tuned) value, plus the adapter.
// bnb4: the base is a bitsandbytes 4-bit checkpoint (1 + double quant: 2), whose linears are
// dequantised; 0 for a float one.
static int produce_tensor(const hf_export_options *o, const model_config *cfg, const st_set *base, const st_set *ft,
                          const model_tensor_info *t, int bnb4,
                          float *buf, float **scratch, size_t *scratch_n, int *merged, char *err, size_t errlen) {
    int four = !ft && bnb4 && is_decoder_linear(t->role);
    if (four) {
        if (nf4_base_dequantize(base, o->base_dir, t->name, t->shape[0], t->shape[1], bnb4 == 2, buf, err, errlen))
            return -1;
    } else if (model_tensor_pack(cfg, ft ? ft : base, t, buf, ft ? o->weights : o->base_dir, err, errlen)) {
        // A run's weights hold gpt-oss's experts expert-major, a published base MXFP4 pairs:
        // model_tensor_pack gives the fused dense tensor either way.
        return -1;
    }
    // QLoRA's NF4 experts are the decoder's per-expert matrices; gpt-oss publishes them fused,
    // interleaved and transposed, which no round trip of the published tensor reproduces.
    if (o->nf4_base && (t->role == TENSOR_EXPERTS_GATE_UP || t->role == TENSOR_EXPERTS_DOWN)) {
        snprintf(err, errlen, "%s: --merge-into dequantized is not implemented for gpt-oss's fused experts; "
                 "export with --merge-into original (the default)", t->name);
        return -1;
    }
    // Already the dequantised NF4 weights when the base is 4-bit: no round trip.
    if (o->nf4_base && !four &&
        (is_decoder_linear(t->role) || t->role == TENSOR_EXPERT_GATE || t->role == TENSOR_EXPERT_UP ||
         t->role == TENSOR_EXPERT_DOWN) &&
        nf4_base_round_trip(buf, numel(t), o->nf4_base == HF_NF4_DOUBLE_QUANT, t->name, err, errlen))
        return -1;
    if (o->adapter && (t->role == TENSOR_EXPERTS_GATE_UP || t->role == TENSOR_EXPERTS_DOWN))
        return merge_fused(o, t, buf, scratch, scratch_n, merged, err, errlen);
    if (!o->adapter || t->ndim != 2) return 0;
    const st_tensor *A, *B;
    int f = merge_adapter_find(o->adapter, t->name, t->shape[0], t->shape[1], &A, &B, err, errlen);
    if (f <= 0) return f;
    size_t r = (size_t)o->adapter->r, need = r * (size_t)(t->shape[0] + t->shape[1]);
    if (need > *scratch_n) {
        float *ns = realloc(*scratch, need * sizeof(float));
        if (!ns) {
            snprintf(err, errlen, "out of memory reading the adapter of %s", t->name);
            return -1;
        }
        *scratch = ns;
        *scratch_n = need;
    }
    float *a = *scratch, *b = *scratch + r * (size_t)t->shape[1];
    if (st_read_f32(A, a) || st_read_f32(B, b)) {
        snprintf(err, errlen, "%s: the adapter of %s has an unreadable dtype", o->adapter->dir, t->name);
        return -1;
    }
    merge_lora_f32(buf, a, b, t->shape[0], t->shape[1], o->adapter->r, o->adapter->scale);
    (*merged)++;
    return 0;
}

// Every adapter pair must land on a 2-D tensor of the package: an adapter of a weight the package
// does not have (lm_head of a tied model, a module of another architecture) is an error, not a
// silent loss.
static int check_adapter_targets(const merge_adapter *a, const model_tensor_info *list, int n, char *err,
                                 size_t errlen) {
    const char prefix[] = "base_model.model.", suffix[] = ".lora_A.weight";
    for (int i = 0; i < st_count(a->weights); i++) {
        const st_tensor *t = st_get(a->weights, i);
        size_t len = strlen(t->name);
        if (len < sizeof suffix - 1 || strcmp(t->name + len - (sizeof suffix - 1), suffix)) continue;
        if (lora_peft_is_fused_name(t->name)) {   // gpt-oss's fused experts: the layer must have them
            int l = -1, found = 0;
            sscanf(t->name, "base_model.model.model.layers.%d.", &l);
            for (int k = 0; k < n && !found; k++) found = list[k].role == TENSOR_EXPERTS_GATE_UP && list[k].layer == l;
            if (!found) {
                snprintf(err, errlen, "%s/adapter_model.safetensors: %s adapts fused experts (gpt-oss's "
                         "mlp.experts.gate_up_proj/down_proj) that layer %d of the base model does not have", a->dir,
                         t->name, l);
                return -1;
            }
            continue;
        }
        char want[512];
        snprintf(want, sizeof want, "%.*s.weight", (int)(len - (sizeof suffix - 1) - (sizeof prefix - 1)),
                 t->name + sizeof prefix - 1);
        int found = 0;
        for (int k = 0; k < n && !found; k++) found = list[k].ndim == 2 && !strcmp(list[k].name, want);
        if (!found) {
            snprintf(err, errlen, "%s/adapter_model.safetensors: %s adapts %s, which the base model does not have",
                     a->dir, t->name, want);
            return -1;
        }
    }
    return 0;
}

// The export's inputs, opened and checked: the base's config (bnb4: 0, or 1 + double quant for a
// bitsandbytes 4-bit base), the base's tensors and, for a full fine-tune, the run's. 0, or -1 with
// a message (nothing left open).
typedef struct {
    model_config cfg;
    int bnb4;
    st_set *base, *ft;
} export_sources;

static void sources_close(export_sources *x) {
    if (x->ft) st_close(x->ft);
    if (x->base) st_close(x->base);
    x->ft = x->base = NULL;
}

static int sources_open(const hf_export_options *o, export_sources *x, char *err, size_t errlen) {
    memset(x, 0, sizeof *x);
    int dq = 0;
    x->bnb4 = bnb4_detect(o->base_dir, &dq, err, errlen);
    if (x->bnb4 < 0 || model_config_load(&x->cfg, o->base_dir, err, errlen)) return -1;
    x->bnb4 = x->bnb4 ? 1 + dq : 0;
    if (!(x->base = st_open(o->base_dir, err, errlen))) return -1;
    if (x->bnb4 ? bnb4_check(&x->cfg, x->base, o->base_dir, x->bnb4 == 2, err, errlen)
                : model_tensor_check(&x->cfg, x->base, o->base_dir, err, errlen))
        goto fail;
    if (o->weights) {
        if (!(x->ft = st_open(o->weights, err, errlen))) goto fail;
        // gpt-oss's run weights keep the experts expert-major (packed back tensor by tensor).
        int unfused = x->cfg.arch == ARCH_GPT_OSS && !st_find(x->ft, "model.layers.0.mlp.experts.gate_up_proj");
        if (!unfused && model_tensor_check(&x->cfg, x->ft, o->weights, err, errlen)) goto fail;
    }
    return 0;
fail:
    sources_close(x);
    return -1;
}

int hf_export_merged(const hf_export_options *o, const char *out_dir, char *err, size_t errlen) {
    if (!st_dtype_torch_name(o->dtype)) {
        snprintf(err, errlen, "export: dtype must be F32, F16 or BF16");
        return -1;
    }
    export_sources x;
    if (sources_open(o, &x, err, errlen)) return -1;
    const model_config cfg = x.cfg;
    const st_set *base = x.base, *ft = x.ft;
    int bnb4 = x.bnb4;
    model_tensor_info *list = NULL;
    int *shard_of = NULL;
    st_entry_plan *plan = NULL;
    float *buf = NULL, *scratch = NULL;
    void *conv = NULL;
    size_t scratch_n = 0;
    int rc = -1, merged = 0;
    st_stream s = {.fd = -1};
    int n = model_tensor_count(&cfg);
    list = malloc(sizeof *list * (size_t)n);
    shard_of = malloc(sizeof(int) * (size_t)n);
    plan = malloc(sizeof *plan * (size_t)n);
    if (!list || !shard_of || !plan) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    model_tensor_list(&cfg, list);
    if (o->adapter && check_adapter_targets(o->adapter, list, n, err, errlen)) goto done;

    // Shards in model order, each up to shard_bytes (as transformers' save_pretrained splits).
    const size_t es = merge_dtype_size(o->dtype);
    int nshards = 0;
    size_t in_shard = 0, total = 0, largest = 0;
    for (int i = 0; i < n; i++) {
        size_t b = numel(&list[i]) * es;
        if (nshards == 0 || (in_shard > 0 && in_shard + b > o->shard_bytes)) {
            nshards++;
            in_shard = 0;
        }
        shard_of[i] = nshards - 1;
        in_shard += b;
        total += b;
        if (numel(&list[i]) > largest) largest = numel(&list[i]);
        plan[i] = (st_entry_plan){list[i].name, o->dtype, list[i].ndim,
                                  {list[i].shape[0], list[i].shape[1], list[i].shape[2]}, b};
    }
    buf = malloc(largest * sizeof(float) + 16);
    conv = o->dtype == ST_F32 ? (void *)buf : malloc(largest * es + 16);
    if (!buf || !conv) {
        snprintf(err, errlen, "out of memory: the largest tensor needs %.1f MB", (double)largest * (4 + es) / 1e6);
        goto done;
    }
    for (int sh = 0, first = 0; sh < nshards; sh++) {
        int last = first;
        while (last < n && shard_of[last] == sh) last++;
        char path[4400];
        if (nshards == 1) snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
        else snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", out_dir, sh + 1, nshards);
        if (!o->quiet)
            fprintf(stderr, "quarry export: writing %s (%d tensors)\n", strrchr(path, '/') + 1, last - first);
        if (stream_begin(&s, path, plan + first, last - first, err, errlen)) goto done;
        for (int i = first; i < last; i++) {
            if (produce_tensor(o, &cfg, base, ft, &list[i], bnb4, buf, &scratch, &scratch_n, &merged, err, errlen)) goto done;
            merge_convert(buf, numel(&list[i]), o->dtype, conv);
            if (stream_write(&s, conv, plan[i].nbytes, err, errlen)) goto done;
        }
        if (stream_finish(&s, err, errlen)) goto done;
        first = last;
    }
    if (o->adapter && merged != o->adapter->pairs) {
        snprintf(err, errlen, "%s: %d of %d adapters were merged", o->adapter->dir, merged, o->adapter->pairs);
        goto done;
    }
    if (nshards > 1 && model_write_index(out_dir, list, shard_of, n, nshards, total, err, errlen)) goto done;
    if (write_configs(o->base_dir, o->dtype, out_dir, err, errlen)) goto done;
    if (copy_tokenizer_files(o->base_dir, out_dir, err, errlen)) goto done;
    rc = 0;
done:
    stream_abort(&s);
    if (conv != (void *)buf) free(conv);
    free(buf);
    free(scratch);
    free(plan);
    free(shard_of);
    free(list);
    sources_close(&x);
    return rc;
}

int hf_export_peft(const merge_adapter *a, const char *base_name, st_dtype dtype, const char *out_dir, char *err,
                   size_t errlen) {
    const size_t es = merge_dtype_size(dtype);
    if (!es) {
        snprintf(err, errlen, "export: dtype must be F32, F16 or BF16");
        return -1;
    }
    int n = st_count(a->weights), rc = -1;
    st_entry_plan *plan = malloc(sizeof *plan * (size_t)(n ? n : 1));
    float *buf = NULL;
    void *conv = NULL;
    st_stream s = {.fd = -1};
    size_t largest = 0;
    if (!plan) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_get(a->weights, i);
        size_t ne = (size_t)t->shape[0] * (size_t)t->shape[1];
        plan[i] = (st_entry_plan){t->name, dtype, 2, {t->shape[0], t->shape[1], 0}, ne * es};
        if (ne > largest) largest = ne;
    }
    buf = malloc(largest * sizeof(float) + 16);
    conv = dtype == ST_F32 ? (void *)buf : malloc(largest * es + 16);
    char path[4400];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", out_dir);
    if (!buf || !conv) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (stream_begin(&s, path, plan, n, err, errlen)) goto done;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_get(a->weights, i);
        if (st_read_f32(t, buf)) {
            snprintf(err, errlen, "%s: tensor %s has an unreadable dtype", a->dir, t->name);
            goto done;
        }
        merge_convert(buf, plan[i].nbytes / es, dtype, conv);
        if (stream_write(&s, conv, plan[i].nbytes, err, errlen)) goto done;
    }
    if (stream_finish(&s, err, errlen)) goto done;
    cJSON *c = cJSON_Duplicate(a->config, 1);
    int ok = c != NULL;
    // Replaced in place, so that the keys keep the order PEFT wrote them in.
    const char *keys[2] = {"base_model_name_or_path", "inference_mode"};
    for (int k = 0; ok && k < 2; k++) {
        cJSON *v = k == 0 ? cJSON_CreateString(base_name) : cJSON_CreateTrue();
        ok = v != NULL;
        if (ok && cJSON_GetObjectItemCaseSensitive(c, keys[k])) ok = cJSON_ReplaceItemInObjectCaseSensitive(c, keys[k], v);
        else if (ok) ok = cJSON_AddItemToObject(c, keys[k], v);
    }
    if (!ok) {
        cJSON_Delete(c);
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    snprintf(path, sizeof path, "%s/adapter_config.json", out_dir);
    rc = model_write_json(path, c, err, errlen);
    cJSON_Delete(c);
done:
    stream_abort(&s);
    if (conv != (void *)buf) free(conv);
    free(buf);
    free(plan);
    return rc;
}

int hf_export_each_tensor(const hf_export_options *o, hf_tensor_fn fn, void *ctx, char *err, size_t errlen) {
    export_sources x;
    if (sources_open(o, &x, err, errlen)) return -1;
    const model_config cfg = x.cfg;
    const st_set *base = x.base, *ft = x.ft;
    int bnb4 = x.bnb4;
    model_tensor_info *list = NULL;
    float *buf = NULL, *scratch = NULL;
    size_t scratch_n = 0, largest = 0;
    int rc = -1, merged = 0;
    int n = model_tensor_count(&cfg);
    list = malloc(sizeof *list * (size_t)n);
    if (!list) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    model_tensor_list(&cfg, list);
    if (o->adapter && check_adapter_targets(o->adapter, list, n, err, errlen)) goto done;
    for (int i = 0; i < n; i++)
        if (numel(&list[i]) > largest) largest = numel(&list[i]);
    if (!(buf = malloc(largest * sizeof(float) + 16))) {
        snprintf(err, errlen, "out of memory: the largest tensor needs %.1f MB", (double)largest * 4 / 1e6);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (produce_tensor(o, &cfg, base, ft, &list[i], bnb4, buf, &scratch, &scratch_n, &merged, err, errlen)) goto done;
        int r = fn(ctx, list[i].name, buf, numel(&list[i]));
        if (r) {
            rc = r;
            goto done;
        }
    }
    rc = 0;
done:
    free(buf);
    free(scratch);
    free(list);
    sources_close(&x);
    return rc;
}
