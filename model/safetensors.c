// model/safetensors.c — see safetensors.h. The checks follow the safetensors library's own
// validation (huggingface/safetensors, tensor.rs): header length within the file and at most
// 100 MB, a JSON object, known dtypes, shape × dtype size == byte range, and byte ranges that
// tile the data section exactly (sorted by offset: no gap, no overlap, nothing left over).
#include "safetensors.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000ull   // the safetensors library refuses larger headers
#define ST_MAX_DIMS 8

typedef struct {
    const char *name;
    int index;
} span_ref;

typedef struct {
    char *path;
    const unsigned char *map;   // whole file
    size_t size;
    size_t data_start;          // 8 + header length
    cJSON *metadata;            // "__metadata__" object, or NULL
} st_file;

struct st_set {
    st_file *files;
    int nfiles;
    st_tensor *tensors;
    int ntensors;
    span_ref *by_name;          // tensors sorted by name, for st_find
    cJSON *index_metadata;      // index.json "metadata", or NULL
};

const char *st_dtype_torch_name(st_dtype dtype) {
    switch (dtype) {
    case ST_F32: return "float32";
    case ST_F16: return "float16";
    case ST_BF16: return "bfloat16";
    default: return NULL;
    }
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

// dtype name → size in bits (F4 is 4 bits, F6 6 bits); 0 when unknown.
static const struct { const char *name; int bits; st_dtype dtype; } dtype_table[] = {
    {"F32", 32, ST_F32},       {"F16", 16, ST_F16},     {"BF16", 16, ST_BF16},   {"F64", 64, ST_OTHER},
    {"I64", 64, ST_OTHER},     {"U64", 64, ST_OTHER},   {"C64", 64, ST_OTHER},   {"I32", 32, ST_OTHER},
    {"U32", 32, ST_OTHER},     {"I16", 16, ST_OTHER},   {"U16", 16, ST_OTHER},   {"I8", 8, ST_OTHER},
    {"U8", 8, ST_OTHER},       {"BOOL", 8, ST_OTHER},   {"F8_E5M2", 8, ST_OTHER}, {"F8_E4M3", 8, ST_OTHER},
    {"F8_E8M0", 8, ST_OTHER},  {"F8_E4M3FNUZ", 8, ST_OTHER}, {"F8_E5M2FNUZ", 8, ST_OTHER},
    {"F6_E2M3", 6, ST_OTHER},  {"F6_E3M2", 6, ST_OTHER}, {"F4", 4, ST_OTHER},
};

static int dtype_lookup(const char *name, st_dtype *dt) {
    for (size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; i++)
        if (!strcmp(dtype_table[i].name, name)) {
            *dt = dtype_table[i].dtype;
            return dtype_table[i].bits;
        }
    return 0;
}

static const char *dtype_name(st_dtype d) {
    return d == ST_F32 ? "F32" : d == ST_F16 ? "F16" : d == ST_BF16 ? "BF16" : "?";
}

static int dtype_size(st_dtype d) { return d == ST_F32 ? 4 : (d == ST_F16 || d == ST_BF16) ? 2 : 0; }

// A JSON number that is an exact non-negative integer below 2^53.
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

typedef struct {
    const char *name;
    uint64_t begin, end;
} span;

static int span_by_offset(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int span_by_name(const void *a, const void *b) {
    return strcmp(((const span *)a)->name, ((const span *)b)->name);
}

// Parses and checks a header; on success returns the cJSON tree (caller frees) and, when
// out/nout are given, a malloc'd tensor array whose names point into the tree.
static cJSON *parse_header(const char *json, size_t json_len, size_t data_len, const char *file,
                           st_tensor **out, int *nout, cJSON **metadata, char *err, size_t errlen) {
    if (json_len < 2 || json[0] != '{') {
        set_err(err, errlen, "%s: malformed safetensors header: it must be a JSON object starting with '{'", file);
        return NULL;
    }
    // Control bytes are invalid JSON anywhere (cJSON would skip them as whitespace).
    for (size_t i = 0; i < json_len; i++) {
        unsigned char ch = (unsigned char)json[i];
        if (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') {
            set_err(err, errlen, "%s: malformed safetensors header: %s byte 0x%02x at header offset %zu", file,
                    ch ? "control" : "NUL", ch, i);
            return NULL;
        }
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, json_len, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= json && at <= json + json_len ? (long)(at - json) : -1;
        set_err(err, errlen, "%s: malformed safetensors header: invalid JSON near header byte %ld", file, off);
        return NULL;
    }
    // After the object only the padding spaces the writers add (the library accepts any whitespace).
    for (const char *p = end; p && p < json + json_len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            set_err(err, errlen, "%s: malformed safetensors header: trailing bytes after the JSON object at header byte %ld",
                    file, (long)(p - json));
            cJSON_Delete(root);
            return NULL;
        }
    if (!cJSON_IsObject(root)) {
        set_err(err, errlen, "%s: malformed safetensors header: not a JSON object", file);
        cJSON_Delete(root);
        return NULL;
    }

    int n = 0;
    for (cJSON *e = root->child; e; e = e->next) n++;
    span *spans = calloc((size_t)n + 1, sizeof *spans);
    st_tensor *ts = out ? calloc((size_t)n + 1, sizeof *ts) : NULL;
    if (!spans || (out && !ts)) {
        set_err(err, errlen, "%s: out of memory reading the header", file);
        goto fail;
    }
    int nt = 0, nmeta = 0;
    if (metadata) *metadata = NULL;
    for (cJSON *e = root->child; e; e = e->next) {
        const char *name = e->string ? e->string : "";
        if (!strcmp(name, "__metadata__")) {
            if (++nmeta > 1) {
                set_err(err, errlen, "%s: malformed safetensors header: \"__metadata__\" appears twice", file);
                goto fail;
            }
            if (!cJSON_IsObject(e) && !cJSON_IsNull(e)) {
                set_err(err, errlen, "%s: malformed safetensors header: \"__metadata__\" must be an object of strings", file);
                goto fail;
            }
            for (cJSON *m = cJSON_IsObject(e) ? e->child : NULL; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    set_err(err, errlen, "%s: malformed safetensors header: __metadata__[\"%s\"] must be a string", file,
                            m->string ? m->string : "");
                    goto fail;
                }
            if (metadata && cJSON_IsObject(e)) *metadata = e;
            continue;
        }
        if (!cJSON_IsObject(e)) {
            set_err(err, errlen, "%s: tensor \"%s\": header entry must be an object with dtype, shape, data_offsets",
                    file, name);
            goto fail;
        }
        const cJSON *jd = NULL, *js = NULL, *jo = NULL;
        for (cJSON *f = e->child; f; f = f->next) {
            const char *k = f->string ? f->string : "";
            const cJSON **slot = !strcmp(k, "dtype") ? &jd : !strcmp(k, "shape") ? &js : !strcmp(k, "data_offsets") ? &jo : NULL;
            if (!slot) {
                set_err(err, errlen, "%s: tensor \"%s\": unknown header field \"%s\" (expected dtype, shape, data_offsets)",
                        file, name, k);
                goto fail;
            }
            if (*slot) {
                set_err(err, errlen, "%s: tensor \"%s\": header field \"%s\" appears twice", file, name, k);
                goto fail;
            }
            *slot = f;
        }
        if (!jd || !js || !jo) {
            set_err(err, errlen, "%s: tensor \"%s\": header entry lacks \"%s\"", file, name,
                    !jd ? "dtype" : !js ? "shape" : "data_offsets");
            goto fail;
        }
        st_dtype dt = ST_OTHER;
        int bits = cJSON_IsString(jd) ? dtype_lookup(jd->valuestring, &dt) : 0;
        if (!bits) {
            set_err(err, errlen, "%s: tensor \"%s\": unknown dtype %s%s%s (known: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, F8_*, ...)",
                    file, name, cJSON_IsString(jd) ? "\"" : "", cJSON_IsString(jd) ? jd->valuestring : "(not a string)",
                    cJSON_IsString(jd) ? "\"" : "");
            goto fail;
        }
        if (!cJSON_IsArray(js)) {
            set_err(err, errlen, "%s: tensor \"%s\": shape must be a list of integers", file, name);
            goto fail;
        }
        int ndim = cJSON_GetArraySize(js);
        if (ndim > ST_MAX_DIMS) {
            set_err(err, errlen, "%s: tensor \"%s\": %d dimensions; at most %d are supported", file, name, ndim, ST_MAX_DIMS);
            goto fail;
        }
        int64_t shape[ST_MAX_DIMS] = {0};
        uint64_t numel = 1;
        int di = 0, overflow = 0;
        for (cJSON *s = js->child; s; s = s->next, di++) {
            uint64_t v;
            if (!json_u64(s, &v)) {
                set_err(err, errlen, "%s: tensor \"%s\": shape[%d] is not a non-negative integer", file, name, di);
                goto fail;
            }
            shape[di] = (int64_t)v;
            if (v && numel > UINT64_MAX / 8 / v) overflow = 1;
            else numel *= v;
        }
        if (overflow) {
            set_err(err, errlen, "%s: tensor \"%s\": shape overflows (too many elements)", file, name);
            goto fail;
        }
        if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2) {
            set_err(err, errlen, "%s: tensor \"%s\": data_offsets must be [begin, end]", file, name);
            goto fail;
        }
        uint64_t b, en;
        if (!json_u64(cJSON_GetArrayItem(jo, 0), &b) || !json_u64(cJSON_GetArrayItem(jo, 1), &en)) {
            set_err(err, errlen, "%s: tensor \"%s\": data_offsets must be non-negative integers", file, name);
            goto fail;
        }
        if (en < b) {
            set_err(err, errlen, "%s: tensor \"%s\": data_offsets [%llu, %llu] end before they begin", file, name,
                    (unsigned long long)b, (unsigned long long)en);
            goto fail;
        }
        if (en > data_len) {
            set_err(err, errlen, "%s: tensor \"%s\": data_offsets [%llu, %llu] reach past the data section (%zu bytes); the file is truncated or the header wrong",
                    file, name, (unsigned long long)b, (unsigned long long)en, data_len);
            goto fail;
        }
        uint64_t nbits = numel * (uint64_t)bits;
        if (nbits % 8) {
            set_err(err, errlen, "%s: tensor \"%s\": %llu elements of %s do not fill whole bytes", file, name,
                    (unsigned long long)numel, jd->valuestring);
            goto fail;
        }
        if (nbits / 8 != en - b) {
            set_err(err, errlen, "%s: tensor \"%s\": shape × dtype is %llu bytes but data_offsets [%llu, %llu] span %llu",
                    file, name, (unsigned long long)(nbits / 8), (unsigned long long)b, (unsigned long long)en,
                    (unsigned long long)(en - b));
            goto fail;
        }
        spans[nt].name = name;
        spans[nt].begin = b;
        spans[nt].end = en;
        if (ts) {
            st_tensor *t = &ts[nt];
            t->name = (char *)name;
            t->dtype = dt;
            snprintf(t->dtype_name, sizeof t->dtype_name, "%s", jd->valuestring);
            t->ndim = ndim;
            memcpy(t->shape, shape, sizeof shape);
            t->data = (const void *)(uintptr_t)b;   // offset for now; st_open rebases it
            t->nbytes = (size_t)(en - b);
        }
        nt++;
    }

    // Duplicate names (JSON allows repeated keys; the library refuses them).
    span *sorted = malloc(((size_t)nt + 1) * sizeof *sorted);
    if (!sorted) {
        set_err(err, errlen, "%s: out of memory reading the header", file);
        goto fail;
    }
    memcpy(sorted, spans, (size_t)nt * sizeof *spans);
    qsort(sorted, (size_t)nt, sizeof *sorted, span_by_name);
    for (int i = 1; i < nt; i++)
        if (!strcmp(sorted[i].name, sorted[i - 1].name)) {
            set_err(err, errlen, "%s: tensor \"%s\" appears twice in the header", file, sorted[i].name);
            free(sorted);
            goto fail;
        }
    // Byte ranges tile [0, data_len): no overlap, no gap, nothing after the last tensor.
    memcpy(sorted, spans, (size_t)nt * sizeof *spans);
    qsort(sorted, (size_t)nt, sizeof *sorted, span_by_offset);
    uint64_t pos = 0;
    for (int i = 0; i < nt; i++) {
        if (sorted[i].begin < pos) {
            set_err(err, errlen, "%s: tensor \"%s\": data_offsets [%llu, %llu] overlap tensor \"%s\"", file,
                    sorted[i].name, (unsigned long long)sorted[i].begin, (unsigned long long)sorted[i].end,
                    sorted[i - 1].name);
            free(sorted);
            goto fail;
        }
        if (sorted[i].begin > pos) {
            set_err(err, errlen, "%s: tensor \"%s\": data_offsets [%llu, %llu] leave a gap of %llu bytes before it",
                    file, sorted[i].name, (unsigned long long)sorted[i].begin, (unsigned long long)sorted[i].end,
                    (unsigned long long)(sorted[i].begin - pos));
            free(sorted);
            goto fail;
        }
        pos = sorted[i].end;
    }
    free(sorted);
    if (pos != data_len) {
        set_err(err, errlen, "%s: the tensors cover %llu bytes of a %zu-byte data section; the header does not describe the file",
                file, (unsigned long long)pos, data_len);
        goto fail;
    }
    free(spans);
    if (out) {
        *out = ts;
        *nout = nt;
    }
    return root;
fail:
    free(spans);
    free(ts);
    cJSON_Delete(root);
    return NULL;
}

int st_parse_header(const char *json, size_t json_len, size_t data_len, const char *file_name, char *err,
                    size_t errlen) {
    cJSON *root = parse_header(json, json_len, data_len, file_name ? file_name : "(header)", NULL, NULL, NULL, err, errlen);
    if (!root) return -1;
    cJSON_Delete(root);
    return 0;
}

void st_close(st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->ntensors; i++) free(s->tensors[i].name);
    for (int i = 0; i < s->nfiles; i++) {
        if (s->files[i].map) munmap((void *)s->files[i].map, s->files[i].size);
        cJSON_Delete(s->files[i].metadata);
        free(s->files[i].path);
    }
    cJSON_Delete(s->index_metadata);
    free(s->files);
    free(s->tensors);
    free(s->by_name);
    free(s);
}

// Maps one file and appends its tensors to the set.
static int open_file(st_set *s, const char *path, char *err, size_t errlen) {
    st_file *nf = realloc(s->files, ((size_t)s->nfiles + 1) * sizeof *nf);
    if (!nf) {
        set_err(err, errlen, "%s: out of memory", path);
        return -1;
    }
    s->files = nf;
    st_file *f = &s->files[s->nfiles];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) {
        set_err(err, errlen, "%s: out of memory", path);
        return -1;
    }
    s->nfiles++;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_err(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_size < 8) {
        set_err(err, errlen, "%s: %lld bytes; too short for a safetensors file (8-byte header length first)", path,
                (long long)st.st_size);
        close(fd);
        return -1;
    }
    f->size = (size_t)st.st_size;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int merr = errno;
    close(fd);
    if (m == MAP_FAILED) {
        set_err(err, errlen, "%s: cannot mmap: %s", path, strerror(merr));
        return -1;
    }
    f->map = m;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->map[i];   // little-endian u64
    if (hlen > ST_MAX_HEADER) {
        set_err(err, errlen, "%s: header length %llu is over the 100 MB the format allows; not a safetensors file?", path,
                (unsigned long long)hlen);
        return -1;
    }
    if (hlen > f->size - 8) {
        set_err(err, errlen, "%s: header length %llu reaches past the end of the %zu-byte file (truncated?)", path,
                (unsigned long long)hlen, f->size);
        return -1;
    }
    f->data_start = 8 + (size_t)hlen;
    st_tensor *ts = NULL;
    int nt = 0;
    cJSON *meta = NULL;
    cJSON *root = parse_header((const char *)f->map + 8, (size_t)hlen, f->size - f->data_start, path, &ts, &nt, &meta,
                               err, errlen);
    if (!root) return -1;
    if (meta) {
        f->metadata = cJSON_Duplicate(meta, 1);
        if (!f->metadata) {
            set_err(err, errlen, "%s: out of memory", path);
            free(ts);
            cJSON_Delete(root);
            return -1;
        }
    }
    st_tensor *nts = realloc(s->tensors, ((size_t)s->ntensors + (size_t)nt + 1) * sizeof *nts);
    if (!nts) {
        set_err(err, errlen, "%s: out of memory", path);
        free(ts);
        cJSON_Delete(root);
        return -1;
    }
    s->tensors = nts;
    for (int i = 0; i < nt; i++) {
        st_tensor t = ts[i];
        t.data = f->map + f->data_start + (size_t)(uintptr_t)ts[i].data;
        t.file_index = s->nfiles - 1;
        t.name = strdup(ts[i].name);
        if (!t.name) {
            set_err(err, errlen, "%s: out of memory", path);
            free(ts);
            cJSON_Delete(root);
            return -1;
        }
        s->tensors[s->ntensors++] = t;
    }
    free(ts);
    cJSON_Delete(root);
    return 0;
}

static int ref_by_name(const void *a, const void *b) {
    return strcmp(((const span_ref *)a)->name, ((const span_ref *)b)->name);
}

static char *read_small_file(const char *path, size_t max, char *err, size_t errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= max) {
                set_err(err, errlen, "%s: larger than %zu bytes", path, max);
                free(buf);
                fclose(fp);
                return NULL;
            }
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                set_err(err, errlen, "%s: out of memory", path);
                free(buf);
                fclose(fp);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, fp);
        len += got;
        if (!got) break;
    }
    int rerr = ferror(fp);
    fclose(fp);
    if (rerr) {
        set_err(err, errlen, "%s: read error", path);
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    return buf;
}

// index.json: {"metadata": {...}, "weight_map": {tensor: shard file}}. Opens each shard once
// and checks the map and the shards agree tensor for tensor.
static int open_index(st_set *s, const char *index_path, char *err, size_t errlen) {
    char *text = read_small_file(index_path, 256u << 20, err, errlen);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        set_err(err, errlen, "%s: not a JSON object; expected {\"metadata\": ..., \"weight_map\": {tensor: file}}", index_path);
        cJSON_Delete(root);
        return -1;
    }
    int rc = -1;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", index_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (meta && !cJSON_IsNull(meta)) {
        if (!cJSON_IsObject(meta)) {
            set_err(err, errlen, "%s: \"metadata\" must be an object", index_path);
            goto done;
        }
        s->index_metadata = cJSON_Duplicate(meta, 1);
    }
    if (!cJSON_IsObject(wm) || !wm->child) {
        set_err(err, errlen, "%s: \"weight_map\" is missing or empty", index_path);
        goto done;
    }
    // Distinct shard files, in order of first mention.
    int nmap = 0;
    for (const cJSON *e = wm->child; e; e = e->next) {
        nmap++;
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/') ||
            !strcmp(e->valuestring, "..") || !strcmp(e->valuestring, ".")) {
            set_err(err, errlen, "%s: weight_map[\"%s\"] must name a file in the same directory", index_path,
                    e->string ? e->string : "");
            goto done;
        }
        int seen = 0;
        for (const cJSON *p = wm->child; p != e; p = p->next)
            if (!strcmp(p->valuestring, e->valuestring)) {
                seen = 1;
                break;
            }
        if (seen) continue;
        char path[4352];
        snprintf(path, sizeof path, "%s/%s", dir, e->valuestring);
        if (open_file(s, path, err, errlen)) goto done;
    }
    // Every mapped tensor in its shard; every shard tensor mapped to that shard; no repeats.
    for (const cJSON *e = wm->child; e; e = e->next)
        for (const cJSON *p = wm->child; p != e; p = p->next)
            if (!strcmp(p->string, e->string)) {
                set_err(err, errlen, "%s: tensor \"%s\" appears twice in weight_map", index_path, e->string);
                goto done;
            }
    for (int i = 0; i < s->ntensors; i++) {
        const st_tensor *t = &s->tensors[i];
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(wm, t->name);
        const char *shard = strrchr(s->files[t->file_index].path, '/');
        shard = shard ? shard + 1 : s->files[t->file_index].path;
        if (!e) {
            set_err(err, errlen, "%s: tensor \"%s\" is in %s but not in the index's weight_map", index_path, t->name, shard);
            goto done;
        }
        if (strcmp(e->valuestring, shard)) {
            set_err(err, errlen, "%s: tensor \"%s\" is in %s but weight_map says %s", index_path, t->name, shard,
                    e->valuestring);
            goto done;
        }
    }
    if (s->ntensors != nmap) {
        // Some mapped tensor was absent from its shard: name it.
        for (const cJSON *e = wm->child; e; e = e->next) {
            int found = 0;
            for (int i = 0; i < s->ntensors && !found; i++) found = !strcmp(s->tensors[i].name, e->string);
            if (!found) {
                set_err(err, errlen, "%s: weight_map names tensor \"%s\" in %s, which does not hold it", index_path,
                        e->string, e->valuestring);
                goto done;
            }
        }
        set_err(err, errlen, "%s: weight_map has %d entries but the shards hold %d tensors", index_path, nmap, s->ntensors);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

st_set *st_open(const char *path, char *err, size_t errlen) {
    st_set *s = calloc(1, sizeof *s);
    if (!s) {
        set_err(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        st_close(s);
        return NULL;
    }
    int rc;
    if (S_ISDIR(st.st_mode)) {
        char single[4200], index[4200];
        snprintf(single, sizeof single, "%s/model.safetensors", path);
        snprintf(index, sizeof index, "%s/model.safetensors.index.json", path);
        if (access(single, F_OK) == 0) rc = open_file(s, single, err, errlen);
        else if (access(index, F_OK) == 0) rc = open_index(s, index, err, errlen);
        else {
            set_err(err, errlen, "%s: neither model.safetensors nor model.safetensors.index.json is here", path);
            rc = -1;
        }
    } else if (ends_with(path, ".json")) {
        rc = open_index(s, path, err, errlen);
    } else {
        rc = open_file(s, path, err, errlen);
    }
    if (rc == 0) {
        s->by_name = malloc(((size_t)s->ntensors + 1) * sizeof *s->by_name);
        if (!s->by_name) {
            set_err(err, errlen, "%s: out of memory", path);
            rc = -1;
        }
    }
    if (rc == 0) {
        for (int i = 0; i < s->ntensors; i++) s->by_name[i] = (span_ref){s->tensors[i].name, i};
        qsort(s->by_name, (size_t)s->ntensors, sizeof *s->by_name, ref_by_name);
        // Names must be unique across shards too.
        for (int i = 1; i < s->ntensors; i++) {
            const st_tensor *a = &s->tensors[s->by_name[i - 1].index], *b = &s->tensors[s->by_name[i].index];
            if (!strcmp(a->name, b->name)) {
                set_err(err, errlen, "%s: tensor \"%s\" is in both %s and %s", path, a->name, s->files[a->file_index].path,
                        s->files[b->file_index].path);
                rc = -1;
                break;
            }
        }
    }
    if (rc) {
        st_close(s);
        return NULL;
    }
    return s;
}

int st_count(const st_set *s) { return s->ntensors; }
const st_tensor *st_get(const st_set *s, int i) { return i >= 0 && i < s->ntensors ? &s->tensors[i] : NULL; }

const st_tensor *st_find(const st_set *s, const char *name) {
    int lo = 0, hi = s->ntensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(s->by_name[mid].name, name);
        if (!c) return &s->tensors[s->by_name[mid].index];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

const char *st_metadata(const st_set *s, const char *key) {
    for (int i = 0; i < s->nfiles; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->files[i].metadata, key);
        if (cJSON_IsString(v)) return v->valuestring;
    }
    return NULL;
}

int st_read_f32(const st_tensor *t, float *dst) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    const unsigned char *p = t->data;
    // The data may be unaligned (headers need not be padded), so read through memcpy.
    if (t->dtype == ST_F32) {
        memcpy(dst, p, n * 4);
    } else if (t->dtype == ST_BF16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = bf16_to_f32(h);
        }
    } else if (t->dtype == ST_F16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = f16_to_f32(h);
        }
    } else {
        return -1;
    }
    return 0;
}

// ---- writing

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} st_entry;

struct st_writer {
    st_entry *e;
    int n, cap;
};

st_writer *st_writer_begin(void) { return calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    free(w);
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, const void *data,
                  size_t nbytes) {
    if (!w || !name || dtype_size(dtype) == 0 || ndim < 0 || ndim > ST_MAX_DIMS) return -1;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] && numel > SIZE_MAX / 8 / (size_t)shape[i]) return -1;
        numel *= (size_t)shape[i];
    }
    if (numel * (size_t)dtype_size(dtype) != nbytes || !strcmp(name, "__metadata__")) return -1;
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name)) return -1;
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 64;
        st_entry *ne = realloc(w->e, (size_t)nc * sizeof *ne);
        if (!ne) return -1;
        w->e = ne;
        w->cap = nc;
    }
    st_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return -1;
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->data = data;
    e->nbytes = nbytes;
    w->n++;
    return 0;
}

// The library's order: larger dtypes first (its Dtype enum, descending: F32 > BF16 > F16),
// then by name; this keeps every tensor aligned to its element size.
static int dtype_rank(st_dtype d) { return d == ST_F32 ? 3 : d == ST_BF16 ? 2 : 1; }
static int entry_order(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

// A JSON string as serde_json writes it: escapes ", \, and control characters (\b \f \n \r \t
// or \u00XX); everything else, UTF-8 included, verbatim.
static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': sb_str(b, "\\\""); break;
        case '\\': sb_str(b, "\\\\"); break;
        case '\b': sb_str(b, "\\b"); break;
        case '\f': sb_str(b, "\\f"); break;
        case '\n': sb_str(b, "\\n"); break;
        case '\r': sb_str(b, "\\r"); break;
        case '\t': sb_str(b, "\\t"); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                sb_str(b, esc);
            } else {
                sb_put(b, (const char *)p, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int st_writer_finish(st_writer *w, const char *path, const char **meta_keys, const char **meta_values, int nmeta,
                     char *err, size_t errlen) {
    if (!w) {
        set_err(err, errlen, "%s: no writer", path);
        return -1;
    }
    qsort(w->e, (size_t)w->n, sizeof *w->e, entry_order);
    sbuf b = {0};
    sb_str(&b, "{\"__metadata__\":{\"format\":\"pt\"");
    for (int i = 0; i < nmeta; i++) {
        if (!strcmp(meta_keys[i], "format")) continue;
        sb_put(&b, ",", 1);
        sb_json_string(&b, meta_keys[i]);
        sb_put(&b, ":", 1);
        sb_json_string(&b, meta_values[i]);
    }
    sb_put(&b, "}", 1);
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_entry *e = &w->e[i];
        char num[64];
        sb_put(&b, ",", 1);
        sb_json_string(&b, e->name);
        sb_str(&b, ":{\"dtype\":\"");
        sb_str(&b, dtype_name(e->dtype));
        sb_str(&b, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)e->shape[d]);
            sb_str(&b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + e->nbytes));
        sb_str(&b, num);
        off += e->nbytes;
    }
    sb_put(&b, "}", 1);
    while (b.len % 8) sb_put(&b, " ", 1);   // the library pads the header to 8 bytes with spaces
    if (b.oom) {
        free(b.p);
        set_err(err, errlen, "%s: out of memory building the header", path);
        return -1;
    }

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        set_err(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        free(b.p);
        return -1;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)b.len >> (8 * i));
    int bad = write_all(fd, len8, 8) || write_all(fd, b.p, b.len);
    for (int i = 0; i < w->n && !bad; i++) bad = write_all(fd, w->e[i].data, w->e[i].nbytes);
    free(b.p);
    if (bad || fsync(fd) != 0) {
        set_err(err, errlen, "%s: write failed: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) != 0) {
        set_err(err, errlen, "%s: close failed: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        set_err(err, errlen, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    // Make the rename durable: fsync the directory.
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

// ---- conversions

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);   // quiet NaN, sign kept
    u += 0x7fffu + ((u >> 16) & 1u);                                                  // round to nearest even
    return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));   // NaN stays NaN
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);   // ≥ 65520 rounds to inf (and inf)
    if (a < 0x38800000u) {
        // Subnormal half (|f| < 2^-14): value = m × 2^-24; round a's significand to that grid.
        if (a < 0x33000000u) return sign;   // < 2^-25 → ±0 (2^-25 itself ties to even below)
        int e = (int)(a >> 23);             // biased exponent, 102..112
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        int shift = 126 - e;                // bits to drop so the unit is 2^-24
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    // Normal: rebias exponent 127 → 15, keep 10 mantissa bits, round to nearest even (a carry
    // into the exponent is correct, up to inf).
    uint32_t r = a - 0x38000000u;   // (127-15) << 23
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        if (!m) return bits_f32(sign);
        // Subnormal: m × 2^-24, exact in float32.
        float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}
