// data/bedrock.c — see bedrock.h.
#include "bedrock.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utf8proc.h>

struct bedrock_checker {
    bedrock_options o;
    jsonl_parser *p;
    bedrock_stats st;
    long line;
    int rec_errors;     // errors in the record being checked
    int rec_media;      // valid media blocks in it
    int oom;
    // Media blocks seen in the file (base models that take them): their modality and bucket.
    unsigned media_kind;
    long media_line;
    char bucket[64];
    long bucket_line;
};

struct bedrock_stream {
    bedrock_checker *c;
    jsonl_reader *r;
    int bom_reported;
    char err[256];
};

static void diag(bedrock_checker *c, int col, bedrock_severity sev, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void diag(bedrock_checker *c, int col, bedrock_severity sev, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (sev == BEDROCK_ERROR) {
        c->st.errors++;
        c->rec_errors++;
    } else
        c->st.warnings++;
    if (c->o.diag) c->o.diag(c->o.user, c->line, col, sev, msg);
}

record_format bedrock_format_from_name(const char *name) {
    if (!name) return FORMAT_UNKNOWN;
    if (!strcmp(name, "prompt-completion") || !strcmp(name, "pc")) return FORMAT_PROMPT_COMPLETION;
    if (!strcmp(name, "messages")) return FORMAT_MESSAGES;
    if (!strcmp(name, "converse") || !strcmp(name, "bedrock-conversation-2024")) return FORMAT_CONVERSE;
    if (!strcmp(name, "continued-pretraining") || !strcmp(name, "cpt")) return FORMAT_CPT;
    return FORMAT_UNKNOWN;
}

bedrock_checker *bedrock_checker_new(const bedrock_options *opts) {
    bedrock_checker *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->o = *opts;
    if (!c->o.max_record_bytes) c->o.max_record_bytes = 16u << 20;
    c->p = jsonl_parser_new();
    if (!c->p) { free(c); return NULL; }
    return c;
}

void bedrock_checker_free(bedrock_checker *c) {
    if (!c) return;
    jsonl_parser_free(c->p);
    free(c);
}

const bedrock_stats *bedrock_checker_stats(const bedrock_checker *c) { return &c->st; }

// Short printable form of a key for messages (keys can hold anything).
static void show_key(const char *k, size_t n, char *out, size_t outlen) {
    size_t w = 0;
    for (size_t i = 0; i < n && w + 5 < outlen; i++) {
        unsigned char ch = (unsigned char)k[i];
        if (i >= 40) { memcpy(out + w, "...", 3); w += 3; break; }
        out[w++] = (ch >= 0x20 && ch != 0x7F) ? (char)ch : '?';
    }
    out[w] = '\0';
}

// Only whitespace (ASCII or Unicode White_Space-like: Zs, line/paragraph separators)?
static int is_blank(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x80) {
            if (ch == ' ' || (ch >= '\t' && ch <= '\r')) { i++; continue; }
            return 0;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) return 0;
        utf8proc_category_t cat = utf8proc_category(cp);
        if (cat != UTF8PROC_CATEGORY_ZS && cat != UTF8PROC_CATEGORY_ZL && cat != UTF8PROC_CATEGORY_ZP && cp != 0x85 &&
            cp != 0xFEFF && cp != 0x200B)
            return 0;
        i += (size_t)k;
    }
    return 1;
}

typedef struct {
    const jv *m;
    int idx;
} keyed;

static int keyed_cmp(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    size_t n = x->m->key_len < y->m->key_len ? x->m->key_len : y->m->key_len;
    int r = memcmp(x->m->key, y->m->key, n);
    if (r) return r;
    if (x->m->key_len != y->m->key_len) return x->m->key_len < y->m->key_len ? -1 : 1;
    return x->idx - y->idx;
}

// prev[i] = the first earlier member with member i's name, or NULL. Small objects (the usual
// 1-3 keys) by pairs; large ones by sorting, so a hostile line costs O(n log n).
static int find_duplicates(const jv *obj, const jv **prev) {
    int n = obj->count, i = 0;
    if (n <= 32) {
        for (const jv *m = obj->child; m; m = m->next, i++) {
            prev[i] = NULL;
            for (const jv *q = obj->child; q != m; q = q->next)
                if (q->key_len == m->key_len && !memcmp(q->key, m->key, m->key_len)) { prev[i] = q; break; }
        }
        return 1;
    }
    keyed *k = malloc((size_t)n * sizeof *k);
    if (!k) return 0;
    for (const jv *m = obj->child; m; m = m->next, i++) k[i] = (keyed){m, i};
    qsort(k, (size_t)n, sizeof *k, keyed_cmp);
    for (int a = 0; a < n;) {
        int b = a + 1;
        prev[k[a].idx] = NULL;
        while (b < n && k[b].m->key_len == k[a].m->key_len && !memcmp(k[b].m->key, k[a].m->key, k[a].m->key_len)) {
            prev[k[b].idx] = k[a].m;
            b++;
        }
        a = b;
    }
    free(k);
    return 1;
}

// Unknown keys and duplicate keys of one object. where: "the record", "messages[1]", ...
static void check_keys(bedrock_checker *c, const jv *obj, const char *const *allowed, const char *where) {
    const jv *small[32], **prev = obj->count <= 32 ? small : malloc((size_t)obj->count * sizeof *prev);
    if (!prev || !find_duplicates(obj, prev)) {
        if (prev != small) free(prev);
        c->oom = 1;
        return;
    }
    int idx = 0;
    for (const jv *m = obj->child; m; m = m->next, idx++) {
        char k[64];
        show_key(m->key, m->key_len, k, sizeof k);
        if (prev[idx]) {
            if (jv_equal(prev[idx], m))
                diag(c, 0, BEDROCK_WARNING, "duplicate key \"%s\" in %s (same value); remove the copy", k, where);
            else
                diag(c, 0, BEDROCK_ERROR,
                     "duplicate key \"%s\" in %s with a different value; JSON readers disagree on which one wins: keep one",
                     k, where);
            continue;
        }
        int ok = 0;
        for (int a = 0; allowed[a]; a++)
            if (strlen(allowed[a]) == m->key_len && !memcmp(allowed[a], m->key, m->key_len)) ok = 1;
        if (ok) continue;
        const base_model_limits *l = c->o.limits;
        if (c->o.allow_extra_keys)
            diag(c, 0, BEDROCK_WARNING, "unknown key \"%s\" in %s (ignored: --allow-extra-keys)", k, where);
        else if (l && !l->strict_keys)
            // AWS's Llama schema says "additionalProperties": true; its Nova script's pydantic
            // models ignore extra fields: the key is dropped, not refused.
            diag(c, 0, BEDROCK_WARNING, "unknown key \"%s\" in %s; %s's format does not use it and %s accepts it: ignored",
                 k, where, l->name, l->rules);
        else if (l)
            diag(c, 0, BEDROCK_ERROR,
                 "unknown key \"%s\" in %s; %s's format has no such key, per %s: remove it, or pass --allow-extra-keys",
                 k, where, l->name, l->rules);
        else
            diag(c, 0, BEDROCK_ERROR,
                 "unknown key \"%s\" in %s; no Bedrock format has it (remove it, pass --allow-extra-keys, or give "
                 "--base-model ID for that model's rule)", k, where);
    }
    if (prev != small) free(prev);
}

static int contains(const char *s, size_t n, const char *w, size_t wl) {
    for (const char *p = s, *end = s + n; (size_t)(end - p) >= wl; p++) {
        p = memchr(p, w[0], (size_t)(end - p) - wl + 1);
        if (!p) return 0;
        if (!memcmp(p, w, wl)) return 1;
    }
    return 0;
}

static void check_reserved(bedrock_checker *c, const char *s, size_t n, const char *where) {
    if (!c->o.limits || !c->o.limits->reserved_words) return;
    for (int w = 0; limits_reserved_words[w]; w++) {
        const char *word = limits_reserved_words[w];
        if (contains(s, n, word, strlen(word)))
            diag(c, 0, BEDROCK_ERROR, "%s contains \"%s\", a reserved word for %s fine-tuning; rephrase it", where, word,
                 c->o.limits->name);
    }
}

// Claude's prompt format starts a turn with "\n\nHuman:" / "\n\nAssistant:"; AWS's Claude 3 Haiku
// validator refuses text holding "\nHuman:" or "\nAssistant:" anywhere (system or either role).
static void check_markers(bedrock_checker *c, const char *s, size_t n, const char *where) {
    if (!c->o.limits || !c->o.limits->turn_markers) return;
    static const char *const markers[] = {"\nHuman:", "\nAssistant:"};
    for (int w = 0; w < 2; w++)
        if (contains(s, n, markers[w], strlen(markers[w])))
            diag(c, 0, BEDROCK_ERROR,
                 "%s contains \"\\n%s\" (a line break, then \"%s\"), Claude's turn marker, refused for %s "
                 "per %s: rephrase it or drop the line break",
                 where, markers[w] + 1, markers[w] + 1, c->o.limits->name, c->o.limits->rules);
}

// A required non-empty string member. Returns it or NULL (after reporting).
static const jv *need_text(bedrock_checker *c, const jv *obj, const char *key, const char *where) {
    const jv *v = jv_get(obj, key);
    if (!v) { diag(c, 0, BEDROCK_ERROR, "%s has no \"%s\"", where, key); return NULL; }
    if (v->type != JV_STRING) {
        diag(c, 0, BEDROCK_ERROR, "\"%s\" in %s is %s; it must be a string", key, where, jv_type_name(v->type));
        return NULL;
    }
    if (is_blank(v->str, v->len)) {
        diag(c, 0, BEDROCK_ERROR, "\"%s\" in %s is empty or only whitespace; give it text or drop the record", key, where);
        return NULL;
    }
    return v;
}

// A growable text the turns of a record are joined into before copying out.
typedef struct {
    char *s;
    size_t n, cap;
} buf;

static char *dup_text(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static record_format detect(const jv *root) {
    const jv *msgs = jv_get(root, "messages");
    if (msgs) {
        if (jv_get(root, "schemaVersion")) return FORMAT_CONVERSE;
        const jv *sys = jv_get(root, "system");
        if (sys && sys->type == JV_ARRAY) return FORMAT_CONVERSE;
        if (msgs->type == JV_ARRAY && msgs->child && msgs->child->type == JV_OBJECT) {
            const jv *content = jv_get(msgs->child, "content");
            if (content && content->type == JV_ARRAY) return FORMAT_CONVERSE;
        }
        return FORMAT_MESSAGES;
    }
    if (jv_get(root, "prompt") || jv_get(root, "completion")) return FORMAT_PROMPT_COMPLETION;
    if (jv_get(root, "input")) return FORMAT_CPT;
    return FORMAT_UNKNOWN;
}

// One image or video block a base model takes (limits->media): the Nova media rules of AWS's
// Nova validator (nova_ft_dataset_validator.py @85fba9d9: format list, "s3://" uri of
// [\w\-/.] characters) and of the Nova user guide (fine-tune-prepare-data-understanding.html:
// one modality per dataset, media in the dataset's bucket). Returns 1 when it is valid.
static int check_media(bedrock_checker *c, const jv *b, unsigned kind, const char *bw) {
    static const char *const image_formats[] = {"png", "jpeg", "gif", "webp", NULL};
    static const char *const video_formats[] = {"mov", "mkv", "mp4", "webm", NULL};
    static const char *const media_keys[] = {"format", "source", NULL}, *const source_keys[] = {"s3Location", NULL},
                             *const loc_keys[] = {"uri", "bucketOwner", NULL};
    const char *key = kind == LIMITS_MEDIA_IMAGE ? "image" : "video";
    const char *const *formats = kind == LIMITS_MEDIA_IMAGE ? image_formats : video_formats;
    const jv *m = jv_get(b, key);
    int before = c->rec_errors;
    if (m->type != JV_OBJECT) {
        diag(c, 0, BEDROCK_ERROR, "%s.%s is %s; it must be {\"format\", \"source\": {\"s3Location\": {\"uri\"}}}", bw, key,
             jv_type_name(m->type));
        return 0;
    }
    char w[128];
    snprintf(w, sizeof w, "%s.%s", bw, key);
    check_keys(c, m, media_keys, w);
    const jv *f = jv_get(m, "format");
    if (!f || f->type != JV_STRING) {
        diag(c, 0, BEDROCK_ERROR, "%s.format is missing or not a string; give one of %s, %s, %s, %s", w, formats[0], formats[1],
             formats[2], formats[3]);
    } else {
        int ok = 0;   // the script compares format.lower()
        for (int i = 0; formats[i]; i++)
            if (strlen(formats[i]) == f->len && !strncasecmp(formats[i], f->str, f->len)) ok = 1;
        if (!ok) {
            char k[64];
            show_key(f->str, f->len, k, sizeof k);
            diag(c, 0, BEDROCK_ERROR, "%s.format is \"%s\"; %s takes %s, %s, %s or %s (%s)", w, k, c->o.limits->name, formats[0],
                 formats[1], formats[2], formats[3], c->o.limits->rules);
        }
    }
    const jv *src = jv_get(m, "source"), *loc = src && src->type == JV_OBJECT ? jv_get(src, "s3Location") : NULL;
    const jv *uri = loc && loc->type == JV_OBJECT ? jv_get(loc, "uri") : NULL;
    if (src && src->type == JV_OBJECT) check_keys(c, src, source_keys, w);
    if (loc && loc->type == JV_OBJECT) check_keys(c, loc, loc_keys, w);
    if (!uri || uri->type != JV_STRING) {
        diag(c, 0, BEDROCK_ERROR, "%s has no source.s3Location.uri string; media are read from S3: give \"s3://BUCKET/KEY\"", w);
        return 0;
    }
    if (uri->len <= 5 || strncmp(uri->str, "s3://", 5)) {
        diag(c, 0, BEDROCK_ERROR,
             "%s.source.s3Location.uri does not start with \"s3://\"; upload the file to S3 and give its s3:// URI", w);
        return 0;
    }
    // The script's is_valid_path: ^[\w\-/\.]+$ after "s3://" (\w: letters, digits, '_';
    // non-ASCII bytes are let through as letters).
    for (size_t i = 5; i < uri->len; i++) {
        unsigned char ch = (unsigned char)uri->str[i];
        if (!(ch >= 0x80 || (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') || (ch && strchr("_-/.", ch)))) {
            diag(c, 0, BEDROCK_ERROR, "%s.source.s3Location.uri has the character '%c'; only letters, digits, '_', '-', '/' and "
                 "'.' are allowed (%s): rename the object", w, ch >= 0x20 && ch < 0x7F ? ch : '?', c->o.limits->rules);
            return 0;
        }
    }
    // All media of the file in one bucket: the guide wants them in the dataset's own bucket.
    const char *bk = uri->str + 5, *slash = memchr(bk, '/', uri->len - 5);
    size_t bl = slash ? (size_t)(slash - bk) : uri->len - 5;
    if (!c->bucket[0] && bl < sizeof c->bucket) {
        memcpy(c->bucket, bk, bl);
        c->bucket[bl] = '\0';
        c->bucket_line = c->line;
    } else if (c->bucket[0] && (strlen(c->bucket) != bl || memcmp(c->bucket, bk, bl)))
        diag(c, 0, BEDROCK_ERROR, "%s is in bucket \"%.*s\", but line %ld's media are in \"%s\"; %s reads media only from the "
             "bucket the dataset is in (%s): move them there", w, (int)(bl < 63 ? bl : 63), bk, c->bucket_line, c->bucket,
             c->o.limits->name, c->o.limits->source);
    return c->rec_errors == before;
}

// Joins the {"text"} blocks of a converse content or system array into *out (malloc'ed).
// where: "messages[1].content" or "system".
// role: the turn's role (-1 when invalid), -2 for the system prompt. Image and video blocks are checked and left out of the
// text where the base model takes them (user turns only); elsewhere they are refused.
static int join_blocks(bedrock_checker *c, const jv *arr, const char *where, int role, char **out, size_t *outlen) {
    if (arr->type != JV_ARRAY) {
        diag(c, 0, BEDROCK_ERROR, "%s is %s; in this format it must be an array of {\"text\": ...} blocks", where,
             jv_type_name(arr->type));
        return 0;
    }
    if (arr->count == 0) { diag(c, 0, BEDROCK_ERROR, "%s is an empty array; give it a {\"text\": ...} block", where); return 0; }
    static const char *const block_keys[] = {"text", NULL};
    size_t total = 0;
    int ok = 1, i = 0, images = 0, videos = 0, nmedia = 0;
    char bw[96];
    for (const jv *b = arr->child; b; b = b->next, i++) {
        snprintf(bw, sizeof bw, "%s[%d]", where, i);
        if (b->type != JV_OBJECT) {
            diag(c, 0, BEDROCK_ERROR, "%s is %s; it must be a {\"text\": ...} block", bw, jv_type_name(b->type));
            ok = 0;
            continue;
        }
        static const struct { const char *key, *what; unsigned bit; } media[] = {
            {"image", "an image block", LIMITS_MEDIA_IMAGE}, {"video", "a video block", LIMITS_MEDIA_VIDEO},
            {"document", "a document block", 0}, {"toolUse", "a toolUse block", 0},
            {"toolResult", "a toolResult block", 0}, {"reasoningContent", "a reasoningContent block", 0}};
        int is_media = 0;
        const base_model_limits *l = c->o.limits;
        for (size_t m = 0; m < sizeof media / sizeof media[0] && !is_media; m++) {
            if (!jv_get(b, media[m].key)) continue;
            is_media = 1;
            if (!l)
                diag(c, 0, BEDROCK_ERROR, "%s is %s; quarry trains text-only models: remove it or use a text block", bw,
                     media[m].what);
            else if (!(l->media & media[m].bit))
                diag(c, 0, BEDROCK_ERROR, "%s is %s, which %s's jobs do not take (%s): remove it or use a text block", bw,
                     media[m].what, l->name, l->media ? l->rules : l->source);
            else if (role != ROLE_USER) {
                const char *in = role == -2 ? "the system prompt"
                                 : role == ROLE_ASSISTANT ? "an assistant turn" : "a turn without a valid role";
                diag(c, 0, BEDROCK_ERROR, "%s is %s in %s; media go in user turns only (%s)", bw, media[m].what, in, l->rules);
            }
            else if (check_media(c, b, media[m].bit, bw)) {
                if (media[m].bit == LIMITS_MEDIA_IMAGE) images++;
                else videos++;
                is_media = 2;   // valid: counted, not text
            }
        }
        if (is_media == 2) {
            nmedia++;
            c->rec_media++;
            continue;
        }
        if (is_media) { ok = 0; continue; }
        int before = c->rec_errors;
        check_keys(c, b, block_keys, bw);
        if (c->rec_errors != before) ok = 0;
        const jv *t = jv_get(b, "text");
        if (!t) { diag(c, 0, BEDROCK_ERROR, "%s has no \"text\"", bw); ok = 0; continue; }
        if (t->type != JV_STRING) {
            diag(c, 0, BEDROCK_ERROR, "%s.text is %s; it must be a string", bw, jv_type_name(t->type));
            ok = 0;
            continue;
        }
        total += t->len;
    }
    // Per turn, as AWS's Nova validator counts them (MAX_NUM_IMAGES 10, one video, not both).
    if (videos > 1) {
        diag(c, 0, BEDROCK_ERROR, "%s has %d videos; a turn takes one video (%s)", where, videos, c->o.limits->rules);
        ok = 0;
    }
    if (videos && images) {
        diag(c, 0, BEDROCK_ERROR, "%s mixes images and a video; a turn takes one kind (%s)", where, c->o.limits->rules);
        ok = 0;
    }
    if (images > 10) {
        diag(c, 0, BEDROCK_ERROR, "%s has %d images; a turn takes at most 10 (%s)", where, images, c->o.limits->rules);
        ok = 0;
    }
    if (ok && (images || videos)) {   // the dataset's one modality (Nova user guide)
        unsigned kind = images ? LIMITS_MEDIA_IMAGE : LIMITS_MEDIA_VIDEO;
        if (c->media_kind && c->media_kind != kind) {
            diag(c, 0, BEDROCK_ERROR, "%s has %s, but line %ld has %s; a dataset holds images or videos, not both (%s)", where,
                 images ? "images" : "a video", c->media_line, c->media_kind == LIMITS_MEDIA_IMAGE ? "images" : "a video",
                 c->o.limits->source);
            ok = 0;
        } else if (!c->media_kind) {
            c->media_kind = kind;
            c->media_line = c->line;
        }
    }
    if (!ok) return 0;
    // Blank as a whole: every text block only whitespace (a turn of media alone is not blank).
    int blank = !nmedia;
    for (const jv *b = arr->child; b && blank; b = b->next) {
        const jv *t = jv_get(b, "text");
        if (t && !is_blank(t->str, t->len)) blank = 0;
    }
    if (blank) { diag(c, 0, BEDROCK_ERROR, "%s is empty or only whitespace; give it text or drop the record", where); return 0; }
    if (!out) return 1;
    char *d = malloc(total + 1);
    if (!d) { c->oom = 1; return 0; }
    size_t w = 0;
    for (const jv *b = arr->child; b; b = b->next) {
        const jv *t = jv_get(b, "text");
        if (!t) continue;   // a media block
        memcpy(d + w, t->str, t->len);
        w += t->len;
    }
    d[w] = '\0';
    *out = d;
    *outlen = w;
    return 1;
}

static int check_messages(bedrock_checker *c, const jv *root, record_format f, record *out) {
    static const char *const keys_msg[] = {"system", "messages", NULL};
    static const char *const keys_conv[] = {"schemaVersion", "system", "messages", NULL};
    static const char *const turn_keys[] = {"role", "content", NULL};
    check_keys(c, root, f == FORMAT_CONVERSE ? keys_conv : keys_msg, "the record");
    if (f == FORMAT_CONVERSE) {
        const jv *sv = jv_get(root, "schemaVersion");
        // Nova's documentation: schemaVersion may be any string value; AWS's Llama schema takes
        // only its const (limits->schema_version).
        const char *want = c->o.limits ? c->o.limits->schema_version : NULL;
        if (sv && sv->type != JV_STRING)
            diag(c, 0, BEDROCK_ERROR, "\"schemaVersion\" is %s; it must be a string such as \"bedrock-conversation-2024\"",
                 jv_type_name(sv->type));
        else if (sv && want && (sv->len != strlen(want) || memcmp(sv->str, want, sv->len))) {
            char k[64];
            show_key(sv->str, sv->len, k, sizeof k);
            diag(c, 0, BEDROCK_ERROR, "\"schemaVersion\" is \"%s\"; %s takes only \"%s\", per %s: set it so, or drop the key",
                 k, c->o.limits->name, want, c->o.limits->rules);
        }
        const jv *sys = jv_get(root, "system");
        int max = c->o.limits ? c->o.limits->max_system_blocks : 0;
        if (max && sys && sys->type == JV_ARRAY && sys->count > max)
            diag(c, 0, BEDROCK_ERROR, "\"system\" has %d blocks; %s takes at most %d, per %s: join them into one {\"text\"} block",
                 sys->count, c->o.limits->name, max, c->o.limits->rules);
    }
    const jv *sys = jv_get(root, "system");
    char *sys_text = NULL;
    size_t sys_len = 0;
    if (sys) {
        if (f == FORMAT_MESSAGES) {
            if (sys->type != JV_STRING)
                diag(c, 0, BEDROCK_ERROR, "\"system\" is %s; in this format it must be a string", jv_type_name(sys->type));
            else if (is_blank(sys->str, sys->len))
                diag(c, 0, BEDROCK_ERROR, "\"system\" is empty or only whitespace; remove it or give it text");
            else {
                check_reserved(c, sys->str, sys->len, "\"system\"");
                check_markers(c, sys->str, sys->len, "\"system\"");
                if (out && !(sys_text = dup_text(sys->str, sys->len))) c->oom = 1;
                sys_len = sys->len;
            }
        } else if (join_blocks(c, sys, "system", -2, &sys_text, &sys_len)) {
            check_reserved(c, sys_text, sys_len, "\"system\"");
            if (!out) { free(sys_text); sys_text = NULL; }
        }
    }
    const jv *msgs = jv_get(root, "messages");
    if (!msgs) { diag(c, 0, BEDROCK_ERROR, "the record has no \"messages\""); free(sys_text); return 0; }
    if (msgs->type != JV_ARRAY) {
        diag(c, 0, BEDROCK_ERROR, "\"messages\" is %s; it must be an array of turns", jv_type_name(msgs->type));
        free(sys_text);
        return 0;
    }
    if (msgs->count < 2)
        diag(c, 0, BEDROCK_ERROR, "\"messages\" has %d turn%s; a record needs at least a user turn and an assistant turn",
             msgs->count, msgs->count == 1 ? "" : "s");
    record_turn *turns = out && msgs->count ? calloc((size_t)msgs->count, sizeof *turns) : NULL;
    if (out && msgs->count && !turns) c->oom = 1;
    int i = 0, prev_role = -1;
    char where[64];
    for (const jv *m = msgs->child; m; m = m->next, i++) {
        snprintf(where, sizeof where, "messages[%d]", i);
        if (m->type != JV_OBJECT) {
            diag(c, 0, BEDROCK_ERROR, "%s is %s; a turn is {\"role\": ..., \"content\": ...}", where, jv_type_name(m->type));
            prev_role = -1;
            continue;
        }
        check_keys(c, m, turn_keys, where);
        const jv *role = jv_get(m, "role");
        int r = -1;
        if (!role) diag(c, 0, BEDROCK_ERROR, "%s has no \"role\"", where);
        else if (role->type != JV_STRING)
            diag(c, 0, BEDROCK_ERROR, "%s.role is %s; it must be \"user\" or \"assistant\"", where, jv_type_name(role->type));
        else if (!strcmp(role->str, "user") && role->len == 4) r = ROLE_USER;
        else if (!strcmp(role->str, "assistant") && role->len == 9) r = ROLE_ASSISTANT;
        else {
            char k[64];
            show_key(role->str, role->len, k, sizeof k);
            diag(c, 0, BEDROCK_ERROR, "%s.role is \"%s\"; only \"user\" and \"assistant\" are allowed%s", where, k,
                 !strcmp(role->str, "system") ? " (put the system prompt in \"system\")" : "");
        }
        if (r >= 0) {
            if (i == 0 && r != ROLE_USER)
                diag(c, 0, BEDROCK_ERROR, "%s.role is \"assistant\"; the first turn must be \"user\"", where);
            else if (prev_role == r)
                diag(c, 0, BEDROCK_ERROR, "%s.role is \"%s\" after \"%s\"; roles must alternate user/assistant (merge the two turns)",
                     where, r == ROLE_USER ? "user" : "assistant", r == ROLE_USER ? "user" : "assistant");
            if (!m->next && r != ROLE_ASSISTANT && msgs->count >= 2)
                diag(c, 0, BEDROCK_ERROR, "the last turn, %s, is \"user\"; a record must end with the assistant's reply", where);
        }
        prev_role = r;
        const jv *content = jv_get(m, "content");
        char cw[80];
        snprintf(cw, sizeof cw, "%s.content", where);
        char *text = NULL;
        size_t tlen = 0;
        if (!content) { diag(c, 0, BEDROCK_ERROR, "%s has no \"content\"", where); continue; }
        if (f == FORMAT_MESSAGES) {
            if (content->type != JV_STRING) {
                diag(c, 0, BEDROCK_ERROR, "%s is %s; in this format it must be a string%s", cw, jv_type_name(content->type),
                     content->type == JV_ARRAY ? " (content blocks belong to the converse format)" : "");
                continue;
            }
            if (is_blank(content->str, content->len)) {
                diag(c, 0, BEDROCK_ERROR, "%s is empty or only whitespace; every turn needs text", cw);
                continue;
            }
            if (r == ROLE_USER) check_reserved(c, content->str, content->len, cw);
            check_markers(c, content->str, content->len, cw);
            if (turns && !(text = dup_text(content->str, content->len))) c->oom = 1;
            tlen = content->len;
        } else {
            if (!join_blocks(c, content, cw, r, &text, &tlen)) continue;
            if (r == ROLE_USER) check_reserved(c, text, tlen, cw);
            if (!turns) { free(text); text = NULL; }
        }
        if (turns) {
            turns[i].role = r == ROLE_ASSISTANT ? ROLE_ASSISTANT : ROLE_USER;
            turns[i].text = text;
            turns[i].len = tlen;
        }
    }
    if (out) {
        out->system = sys_text;
        out->system_len = sys_len;
        out->turns = turns;
        out->nturns = msgs->count;
    }
    return 1;
}

// Checks a parsed record against the rules of format f; fills out when given.
static void check_record(bedrock_checker *c, const jv *root, record_format f, record *out) {
    static const char *const keys_pc[] = {"prompt", "completion", NULL};
    static const char *const keys_cpt[] = {"input", NULL};
    switch (f) {
    case FORMAT_PROMPT_COMPLETION: {
        check_keys(c, root, keys_pc, "the record");
        const jv *p = need_text(c, root, "prompt", "the record");
        const jv *q = need_text(c, root, "completion", "the record");
        if (p && c->o.limits) check_reserved(c, p->str, p->len, "\"prompt\"");
        if (out && p && q) {
            out->turns = calloc(2, sizeof *out->turns);
            if (!out->turns) { c->oom = 1; return; }
            out->nturns = 2;
            out->turns[0] = (record_turn){ROLE_USER, dup_text(p->str, p->len), p->len};
            out->turns[1] = (record_turn){ROLE_ASSISTANT, dup_text(q->str, q->len), q->len};
            if (!out->turns[0].text || !out->turns[1].text) c->oom = 1;
        }
        return;
    }
    case FORMAT_CPT: {
        check_keys(c, root, keys_cpt, "the record");
        const jv *t = need_text(c, root, "input", "the record");
        if (out && t && !(out->text = dup_text(t->str, t->len))) c->oom = 1;
        if (out && t) out->text_len = t->len;
        return;
    }
    case FORMAT_MESSAGES:
    case FORMAT_CONVERSE: check_messages(c, root, f, out); return;
    case FORMAT_UNKNOWN: return;
    }
}

static void list_keys(const jv *root, char *out, size_t outlen) {
    size_t w = 0;
    out[0] = '\0';
    int n = 0;
    for (const jv *m = root->child; m && w + 70 < outlen; m = m->next, n++) {
        char k[64];
        show_key(m->key, m->key_len, k, sizeof k);
        w += (size_t)snprintf(out + w, outlen - w, "%s\"%s\"", n ? ", " : "", k);
    }
    if (!n) snprintf(out, outlen, "none");
}

int bedrock_check(bedrock_checker *c, const char *text, size_t len, long line, record *out) {
    c->line = line;
    c->rec_errors = 0;
    c->rec_media = 0;
    c->oom = 0;
    if (out) memset(out, 0, sizeof *out);
    if (is_blank(text, len)) {
        diag(c, 0, BEDROCK_ERROR, "%s line; a JSONL file holds one record per line (delete it)", len ? "whitespace-only" : "empty");
        c->st.invalid++;
        return 0;
    }
    char err[256];
    int col = 0;
    const jv *root = jsonl_parse(c->p, text, len, &col, err, sizeof err);
    if (!root) {
        diag(c, col, BEDROCK_ERROR, "invalid JSON: %s", err);
        c->st.invalid++;
        return 0;
    }
    if (root->type != JV_OBJECT) {
        diag(c, 0, BEDROCK_ERROR, "the record is %s; each line must be a JSON object", jv_type_name(root->type));
        c->st.invalid++;
        return 0;
    }
    record_format f = detect(root);
    if (c->o.force != FORMAT_UNKNOWN) {
        if (f != c->o.force && f != FORMAT_UNKNOWN)
            diag(c, 0, BEDROCK_ERROR, "the record looks like %s, not %s (--format)", record_format_name(f),
                 record_format_name(c->o.force));
        f = c->o.force;
    } else if (f == FORMAT_UNKNOWN) {
        char keys[256];
        list_keys(root, keys, sizeof keys);
        diag(c, 0, BEDROCK_ERROR,
             "no Bedrock format: expected \"prompt\"+\"completion\", \"messages\" or \"input\" (the record's keys: %s)", keys);
        c->st.invalid++;
        return 0;
    } else if (c->st.format != FORMAT_UNKNOWN && f != c->st.format) {
        diag(c, 0, BEDROCK_ERROR,
             "this record is %s, but the file's records are %s (since line %ld); a file holds one format (or use --format)",
             record_format_name(f), record_format_name(c->st.format), c->st.format_line);
    }
    if (out) {
        out->format = f;
        out->line = line;
    }
    check_record(c, root, f, out);
    if (c->oom) {
        if (out) record_free(out);
        return -1;
    }
    if (c->rec_errors) {
        if (out) record_free(out);
        c->st.invalid++;
        return 0;
    }
    if (c->st.format == FORMAT_UNKNOWN) {
        c->st.format = f;
        c->st.format_line = line;
    }
    c->st.valid++;
    if (c->rec_media) c->st.media_records++;
    return 1;
}

bedrock_stream *bedrock_open(const char *path, const bedrock_options *opts, char *err, size_t errlen) {
    bedrock_stream *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return NULL; }
    s->c = bedrock_checker_new(opts);
    if (!s->c) { snprintf(err, errlen, "out of memory"); free(s); return NULL; }
    s->r = jsonl_open(path, s->c->o.max_record_bytes, err, errlen);
    if (!s->r) { bedrock_checker_free(s->c); free(s); return NULL; }
    return s;
}

int bedrock_next(bedrock_stream *s, record *out) {
    bedrock_checker *c = s->c;
    for (;;) {
        jsonl_line l;
        int rc = jsonl_next(s->r, &l);
        if (rc < 0) { snprintf(s->err, sizeof s->err, "%s", jsonl_error(s->r)); return -1; }
        c->st.bytes = jsonl_bytes_read(s->r);
        if (rc == 0) return 0;
        c->st.lines++;
        if (!s->bom_reported && jsonl_had_bom(s->r)) {
            s->bom_reported = 1;
            c->line = l.line;
            // Python's json.loads refuses "\ufeff{...}", so AWS's validators fail the first line.
            diag(c, 0, BEDROCK_WARNING,
                 "the file starts with a UTF-8 byte order mark; quarry ignores it, but AWS's own dataset validators "
                 "reject the file (invalid JSON on line 1): save it as UTF-8 without BOM, e.g. "
                 "sed -i '1s/^\\xEF\\xBB\\xBF//' FILE");
        }
        if (l.oversized) {
            c->line = l.line;
            diag(c, 0, BEDROCK_ERROR, "the record is %zu bytes, over the %zu-byte limit; split it, or raise --max-record-bytes",
                 l.len, c->o.max_record_bytes);
            c->st.invalid++;
            continue;
        }
        rc = bedrock_check(c, l.text, l.len, l.line, out);
        if (rc < 0) { snprintf(s->err, sizeof s->err, "out of memory"); return -1; }
        if (rc == 1) return 1;
    }
}

const char *bedrock_error(const bedrock_stream *s) { return s->err; }
const bedrock_stats *bedrock_stream_stats(const bedrock_stream *s) { return &s->c->st; }

void bedrock_close(bedrock_stream *s) {
    if (!s) return;
    jsonl_close(s->r);
    bedrock_checker_free(s->c);
    free(s);
}
