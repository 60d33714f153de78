// data/chat.c — chat templates rendered per family in C (no jinja interpreter), with loss spans.
// Each renderer follows its official template line by line; tests/chat compares the output with
// jinja2 on thousands of generated conversations.
#include "data/chat.h"
#include "data/fileio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    chat_family family;
} family_names[] = {
    {"raw", CHAT_RAW},
    {"llama2", CHAT_LLAMA2},
    {"llama3", CHAT_LLAMA3},
    {"llama3.1", CHAT_LLAMA31},
    {"llama3.3", CHAT_LLAMA31},
    {"llama3.2", CHAT_LLAMA32},
    {"mistral-v1", CHAT_MISTRAL_V1},
    {"mistral-v1-spm", CHAT_MISTRAL_V1_SPM},
    {"mistral-v3", CHAT_MISTRAL_V3},
    {"mistral-v2-spm", CHAT_MISTRAL_V3_SPM},
    {"mistral-v3-spm", CHAT_MISTRAL_V3_SPM},
    {"mistral-nemo", CHAT_MISTRAL_NEMO},
    {"mistral-hf", CHAT_MISTRAL_HF},
    {"mistral-hf-lastuser", CHAT_MISTRAL_HF},
    {"mistral-legacy", CHAT_MISTRAL_LEGACY},
    {"chatml", CHAT_CHATML},
    {"qwen2", CHAT_CHATML},
    {"qwen2.5", CHAT_CHATML},
    {"phi3", CHAT_PHI3},
    {"phi3.5", CHAT_PHI3},
    {"qwen3", CHAT_QWEN3},
    {"harmony", CHAT_HARMONY},
    {"gpt-oss", CHAT_HARMONY},
};
#define NFAMILY_NAMES ((int)(sizeof family_names / sizeof family_names[0]))

static const char QWEN2_SYSTEM[] = "You are a helpful assistant.";
static const char QWEN25_SYSTEM[] = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

const char *chat_family_names(void) {
    return "raw, llama2, llama3, llama3.1, llama3.2, llama3.3, mistral-v1, mistral-v1-spm, mistral-v2-spm, "
           "mistral-v3, mistral-v3-spm, mistral-nemo, mistral-hf, mistral-hf-lastuser, mistral-legacy, chatml, "
           "qwen2, qwen2.5, qwen3, phi3, phi3.5, harmony, gpt-oss";
}

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *xstrdup(const char *s) {
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

void chat_template_free(chat_template *t) {
    if (!t)
        return;
    free(t->name);
    free(t->bos);
    free(t->eos);
    free(t->default_system);
    free(t->source);
    free(t->note);
    free(t);
}

static void family_default_tokens(chat_family f, const char **bos, const char **eos) {
    switch (f) {
    case CHAT_LLAMA3:
    case CHAT_LLAMA31:
    case CHAT_LLAMA32:
        *bos = "<|begin_of_text|>";
        *eos = "<|eot_id|>";
        break;
    case CHAT_CHATML:
    case CHAT_QWEN3:
        *bos = "";
        *eos = "<|im_end|>";
        break;
    case CHAT_PHI3:
        *bos = "<s>";
        *eos = "<|endoftext|>";
        break;
    case CHAT_HARMONY:   // gpt-oss's tokenizer_config.json; the template writes neither
        *bos = "<|startoftext|>";
        *eos = "<|return|>";
        break;
    case CHAT_RAW:
        *bos = "";
        *eos = "";
        break;
    default:
        *bos = "<s>";
        *eos = "</s>";
        break;
    }
}

// Jinja string literal body (between quotes) → its value: \n, \t, \\, \', \" unescaped.
static char *unescape_literal(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            char c = s[++i];
            d[j++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
        } else {
            d[j++] = s[i];
        }
    }
    d[j] = 0;
    return d;
}

// ChatML's default system prompt: a literal '<|im_start|>system\n' + TEXT + '<|im_end|>' in one
// string (Qwen2: "You are a helpful assistant.", Qwen2.5: "You are Qwen, ...").
static char *chatml_default_system(const char *jinja) {
    static const char *marks[] = {"'<|im_start|>system\\n", "\"<|im_start|>system\\n"};
    for (int m = 0; m < 2; m++) {
        const char *p = jinja;
        while ((p = strstr(p, marks[m])) != NULL) {
            char quote = p[0];
            const char *body = p + strlen(marks[m]);
            const char *q = body;
            while (*q && *q != quote) {
                if (*q == '\\' && q[1])
                    q++;
                q++;
            }
            const char *end = strstr(body, "<|im_end|>");
            if (*q == quote && end && end < q && end > body)
                return unescape_literal(body, (size_t)(end - body));
            p = body;
        }
    }
    return NULL;
}

static int family_from_name(const char *name, chat_family *f) {
    for (int i = 0; i < NFAMILY_NAMES; i++)
        if (strcmp(family_names[i].name, name) == 0) {
            *f = family_names[i].family;
            return 1;
        }
    return 0;
}

// Fingerprints: substrings that only one family's official template has (all of need, none of
// avoid). First match wins, so a more specific variant comes before its family. A template that
// matches none is refused rather than rendered by a near miss.
typedef struct {
    const char *name;
    chat_family family;
    const char *need[4];
    const char *avoid[3];
} fingerprint;

static const fingerprint fingerprints[] = {
    {"llama3.2", CHAT_LLAMA32,
     {"<|start_header_id|>", "Cutting Knowledge Date: December 2023", "strftime_now(\"%d %b %Y\")", "<|eot_id|>"},
     {NULL}},
    {"llama3.1", CHAT_LLAMA31,
     {"<|start_header_id|>", "Cutting Knowledge Date: December 2023", "date_string = \"26 Jul 2024\"", "<|eot_id|>"},
     {"strftime_now"}},
    {"llama3", CHAT_LLAMA3,
     {"<|start_header_id|>", "message['content'] | trim + '<|eot_id|>'", "set content = bos_token + content"},
     {"Cutting Knowledge"}},
    {"llama2", CHAT_LLAMA2,
     {"'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n'", "bos_token + '[INST] ' + content.strip() + ' [/INST]'",
      "' '  + content.strip() + ' ' + eos_token"},
     {NULL}},
    {"mistral-v3-spm", CHAT_MISTRAL_V3_SPM, {"ns_sys", "max_idx_user", "{{- '[INST] ' }}", "ns.add_space"}, {NULL}},
    {"mistral-v3", CHAT_MISTRAL_V3, {"ns_sys", "max_idx_user", "{{- '[INST]' }}"}, {"ns.add_space"}},
    {"mistral-v1-spm", CHAT_MISTRAL_V1_SPM, {"ns_sys", "{{- ' [INST] ' }}", "loop.index0 == 0 and system_message != ''"},
     {"max_idx_user"}},
    {"mistral-v1", CHAT_MISTRAL_V1, {"ns_sys", "{{- '[INST] ' }}", "loop.index0 == 0 and system_message != ''"},
     {"max_idx_user", "' [INST] '"}},
    {"mistral-nemo", CHAT_MISTRAL_NEMO,
     {"\"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\"",
      "{{- message[\"content\"] + eos_token}}", "loop.last and system_message is defined"},
     {NULL}},
    {"mistral-hf-lastuser", CHAT_MISTRAL_HF,
     {"\"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\"",
      "\" \" + message[\"content\"]|trim + eos_token", "(message == user_messages[-1]) and system_message is defined"},
     {NULL}},
    {"mistral-hf", CHAT_MISTRAL_HF,
     {"\"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\"",
      "\" \" + message[\"content\"]|trim + eos_token", "loop.last and system_message is defined"},
     {NULL}},
    {"mistral-legacy", CHAT_MISTRAL_LEGACY,
     {"'[INST] ' + message['content'] + ' [/INST]'", "{{ message['content'] + eos_token}}",
      "Only user and assistant roles are supported!", "{{ bos_token }}"},
     {"system_message"}},
    // Qwen3's hybrid template; the Thinking-2507 one (generation prompt "<think>\n" always) differs.
    {"qwen3", CHAT_QWEN3,
     {"<|im_start|>", "'\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n'",
      "ns.last_query_index", "enable_thinking is defined and enable_thinking is false"},
     {"bos_token"}},
    // gpt-oss (openai/gpt-oss-20b, -120b): the harmony format.
    {"harmony", CHAT_HARMONY,
     {"<|start|>system<|message|>", "<|start|>assistant<|channel|>final<|message|>",
      "strftime_now(\"%Y-%m-%d\")", "<|return|>"},
     {NULL}},
    {"chatml", CHAT_CHATML, {"<|im_start|>", "+ '<|im_end|>' + '\\n'"}, {"<think>", "reasoning_content", "bos_token"}},
    {"phi3.5", CHAT_PHI3,
     {"<|assistant|>", "<|end|>", "{{ eos_token }}", "message['role'] == 'system' and message['content']"},
     {"bos_token"}},
    {"phi3", CHAT_PHI3, {"<|assistant|>", "<|end|>", "{{ eos_token }}", "message['role'] == 'system' %}"},
     {"bos_token"}},
};

static int family_detect(const char *j, chat_family *f, const char **name) {
    for (size_t i = 0; i < sizeof fingerprints / sizeof fingerprints[0]; i++) {
        const fingerprint *fp = &fingerprints[i];
        int ok = 1;
        for (int k = 0; k < 4 && fp->need[k] && ok; k++)
            ok = strstr(j, fp->need[k]) != NULL;
        for (int k = 0; k < 3 && fp->avoid[k] && ok; k++)
            ok = strstr(j, fp->avoid[k]) == NULL;
        if (ok) {
            *f = fp->family;
            *name = fp->name;
            return 1;
        }
    }
    return 0;
}

chat_template *chat_template_from_text(const char *jinja, const char *force_name, const char *bos,
                                       const char *eos, char *err, size_t errlen) {
    chat_family f;
    const char *name = force_name;
    if (force_name) {
        if (!family_from_name(force_name, &f)) {
            seterr(err, errlen, "unknown --template %s; known: %s", force_name, chat_family_names());
            return NULL;
        }
    } else if (!jinja) {
        f = CHAT_RAW;
        name = "raw";
    } else if (!family_detect(jinja, &f, &name)) {
        char head[64];
        size_t k = 0;
        for (const char *p = jinja; *p && k + 1 < sizeof head; p++)
            head[k++] = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
        head[k] = 0;
        seterr(err, errlen,
               "the chat template (\"%s...\") is not one quarry knows; pick its family with --template NAME "
               "(one of: %s)",
               head, chat_family_names());
        return NULL;
    }
    const char *dbos, *deos;
    family_default_tokens(f, &dbos, &deos);
    chat_template *t = calloc(1, sizeof *t);
    if (!t) {
        seterr(err, errlen, "out of memory");
        return NULL;
    }
    t->family = f;
    t->name = xstrdup(name);
    t->bos = xstrdup(bos ? bos : dbos);
    t->eos = xstrdup(eos ? eos : deos);
    t->system_if_nonempty = strcmp(name, "phi3.5") == 0;
    t->system_in_last_user = strcmp(name, "mistral-hf-lastuser") == 0;
    if (f == CHAT_CHATML) {
        if (strcmp(name, "qwen2") == 0)
            t->default_system = xstrdup(QWEN2_SYSTEM);
        else if (strcmp(name, "qwen2.5") == 0)
            t->default_system = xstrdup(QWEN25_SYSTEM);
        else if (!force_name && jinja)
            t->default_system = chatml_default_system(jinja);
    }
    if (!t->name || !t->bos || !t->eos) {
        chat_template_free(t);
        seterr(err, errlen, "out of memory");
        return NULL;
    }
    return t;
}

// The file's text; *missing (no message) when it does not exist: the template may come from
// another of the model's files.
static char *read_whole(const char *path, int *missing, char *err, size_t errlen) {
    *missing = !fileio_exists(path);
    char *text = NULL;
    if (!*missing && fileio_read_all(path, &text, NULL, err, errlen)) return NULL;
    return text;
}

// tokenizer_config.json's bos_token/eos_token: a string, an AddedToken {"content": ...}, or null.
static const char *token_text(const cJSON *v) {
    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c))
            return c->valuestring;
    }
    return NULL;
}

// chat_template as a string or a list of {name, template} ("default" wins, as in transformers).
static char *template_value(const cJSON *v, const char *path, char *err, size_t errlen, int *bad) {
    *bad = 0;
    if (!v || cJSON_IsNull(v))
        return NULL;
    if (cJSON_IsString(v))
        return xstrdup(v->valuestring);
    if (cJSON_IsArray(v)) {
        const cJSON *it, *first = NULL;
        cJSON_ArrayForEach(it, v) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
            const cJSON *tp = cJSON_GetObjectItemCaseSensitive(it, "template");
            if (!cJSON_IsString(tp))
                continue;
            if (!first)
                first = tp;
            if (cJSON_IsString(n) && strcmp(n->valuestring, "default") == 0)
                return xstrdup(tp->valuestring);
        }
        if (first)
            return xstrdup(first->valuestring);
    }
    *bad = 1;
    seterr(err, errlen, "%s: chat_template is neither a string nor a list of {\"name\", \"template\"}", path);
    return NULL;
}

chat_template *chat_template_load(const char *model_dir, const char *force_name, char *err, size_t errlen) {
    char path[4096], cfg_path[4096];
    int missing, bad;
    char *bos = NULL, *eos = NULL;
    char *sources[3] = {NULL, NULL, NULL};   // .jinja, .json, tokenizer_config.json
    const char *names[3] = {"chat_template.jinja", "chat_template.json", "tokenizer_config.json"};
    chat_template *t = NULL;

    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", model_dir);
    char *cfg_text = read_whole(cfg_path, &missing, err, errlen);
    if (!cfg_text && !missing)
        return NULL;
    if (cfg_text) {
        cJSON *cfg = cJSON_Parse(cfg_text);
        free(cfg_text);
        if (!cfg) {
            seterr(err, errlen, "%s: not valid JSON", cfg_path);
            return NULL;
        }
        const char *b = token_text(cJSON_GetObjectItemCaseSensitive(cfg, "bos_token"));
        const char *e = token_text(cJSON_GetObjectItemCaseSensitive(cfg, "eos_token"));
        const cJSON *null_bos = cJSON_GetObjectItemCaseSensitive(cfg, "bos_token");
        bos = b ? xstrdup(b) : (cJSON_IsNull(null_bos) ? xstrdup("") : NULL);
        eos = e ? xstrdup(e) : NULL;
        sources[2] = template_value(cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), cfg_path, err, errlen, &bad);
        cJSON_Delete(cfg);
        if (bad)
            goto done;
    }
    snprintf(path, sizeof path, "%s/chat_template.jinja", model_dir);
    sources[0] = read_whole(path, &missing, err, errlen);
    if (!sources[0] && !missing)
        goto done;
    snprintf(path, sizeof path, "%s/chat_template.json", model_dir);
    char *js = read_whole(path, &missing, err, errlen);
    if (!js && !missing)
        goto done;
    if (js) {
        cJSON *j = cJSON_Parse(js);
        free(js);
        if (!j) {
            seterr(err, errlen, "%s: not valid JSON", path);
            goto done;
        }
        sources[1] = template_value(cJSON_GetObjectItemCaseSensitive(j, "chat_template"), path, err, errlen, &bad);
        cJSON_Delete(j);
        if (bad)
            goto done;
    }
    int use = -1, nsrc = 0;
    for (int i = 0; i < 3; i++)
        if (sources[i]) {
            nsrc++;
            if (use < 0)
                use = i;
        }
    t = chat_template_from_text(use >= 0 ? sources[use] : NULL, force_name, bos, eos, err, errlen);
    if (!t && use >= 0) {
        char inner[768];
        snprintf(inner, sizeof inner, "%s", err);
        seterr(err, errlen, "%s/%s: %s", model_dir, names[use], inner);
    }
    if (t) {
        snprintf(path, sizeof path, "%s/%s", model_dir, use >= 0 ? names[use] : "(no chat template)");
        t->source = xstrdup(force_name ? "--template" : path);
        if (nsrc > 1) {
            char note[512];
            int k = snprintf(note, sizeof note, "%s has %d chat templates; using %s (as transformers does), ignoring",
                             model_dir, nsrc, names[use]);
            for (int i = use + 1; i < 3 && k > 0 && (size_t)k < sizeof note; i++)
                if (sources[i])
                    k += snprintf(note + k, sizeof note - (size_t)k, " %s", names[i]);
            t->note = xstrdup(note);
        }
    }
done:
    for (int i = 0; i < 3; i++)
        free(sources[i]);
    free(bos);
    free(eos);
    return t;
}

// Output text with trained/masked runs; sticky out-of-memory flag checked once at the end.
typedef struct {
    char *buf;
    size_t len, cap;
    chat_span *spans;
    int nspans, capspans;
    int oom;
} builder;

static void put(builder *b, const char *s, size_t n, int trained) {
    if (b->oom || n == 0)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = 1;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    if (b->nspans > 0 && b->spans[b->nspans - 1].trained == trained) {
        b->spans[b->nspans - 1].end = b->len + n;
    } else {
        if (b->nspans == b->capspans) {
            int cap = b->capspans ? b->capspans * 2 : 16;
            chat_span *ns = realloc(b->spans, (size_t)cap * sizeof *ns);
            if (!ns) {
                b->oom = 1;
                return;
            }
            b->spans = ns;
            b->capspans = cap;
        }
        b->spans[b->nspans++] = (chat_span){b->len, b->len + n, trained};
    }
    b->len += n;
    b->buf[b->len] = 0;
}

static void puts_(builder *b, const char *s, int trained) { put(b, s, strlen(s), trained); }

// Python's str.isspace() per code point (what jinja's trim and str.strip() remove).
static int py_isspace(unsigned cp) {
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

// Decodes the code point at s (n bytes left); returns its length, or 1 with *cp = 0xFFFFFFFF when
// the bytes are not valid UTF-8 (never whitespace).
static size_t utf8_at(const unsigned char *s, size_t n, unsigned *cp) {
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || len > n) {
        *cp = 0xFFFFFFFFu;
        return 1;
    }
    unsigned v = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *cp = 0xFFFFFFFFu;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

// [*a, *b) ← s[0, n) without leading and trailing Python whitespace.
static void py_strip(const char *s, size_t n, size_t *a, size_t *b) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned cp;
        size_t l = utf8_at(u + i, n - i, &cp);
        if (!py_isspace(cp))
            break;
        i += l;
    }
    size_t j = n;
    while (j > i) {
        size_t k = j - 1;
        while (k > i && (u[k] & 0xc0) == 0x80 && j - k < 4)
            k--;
        unsigned cp;
        size_t l = utf8_at(u + k, j - k, &cp);
        if (l != j - k || !py_isspace(cp))
            break;
        j = k;
    }
    *a = i;
    *b = j;
}

static void put_stripped(builder *b, const char *s, size_t n, int trained) {
    size_t a, e;
    py_strip(s, n, &a, &e);
    put(b, s + a, e - a, trained);
}

// A message list for the templates: the system (if any) is kept apart.
typedef struct {
    record_role role;
    const char *text;
    size_t len;
} msg;

static int raise_(char *err, size_t errlen, const char *text) {
    seterr(err, errlen, "the chat template raises: %s", text);
    return -1;
}

static void render_llama2(builder *b, const chat_template *t, const record *r) {
    for (int i = 0; i < r->nturns; i++) {
        const record_turn *m = &r->turns[i];
        if (m->role == ROLE_USER) {
            puts_(b, t->bos, 0);
            puts_(b, "[INST] ", 0);
            if (i == 0 && r->system) {
                // content = '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + user, then .strip() as one string
                builder tmp = {0};
                puts_(&tmp, "<<SYS>>\n", 0);
                put(&tmp, r->system, r->system_len, 0);
                puts_(&tmp, "\n<</SYS>>\n\n", 0);
                put(&tmp, m->text, m->len, 0);
                if (tmp.oom)
                    b->oom = 1;
                else
                    put_stripped(b, tmp.buf, tmp.len, 0);
                free(tmp.buf);
                free(tmp.spans);
            } else {
                put_stripped(b, m->text, m->len, 0);
            }
            puts_(b, " [/INST]", 0);
        } else {
            puts_(b, " ", 1);   // generated by the model: the prompt ends at "[/INST]"
            put_stripped(b, m->text, m->len, 1);
            puts_(b, " ", 1);
            puts_(b, t->eos, 1);
        }
    }
}

static void llama3_turn(builder *b, const char *role, const char *text, size_t len, int trained) {
    puts_(b, "<|start_header_id|>", 0);
    puts_(b, role, 0);
    puts_(b, "<|end_header_id|>\n\n", 0);
    put_stripped(b, text, len, trained);
    puts_(b, "<|eot_id|>", trained);
}

static void render_llama3(builder *b, const chat_template *t, const record *r, const chat_options *o, int gen) {
    puts_(b, t->bos, 0);
    if (t->family == CHAT_LLAMA3) {
        if (r->system)
            llama3_turn(b, "system", r->system, r->system_len, 0);
    } else {
        char date[64];
        if (o && o->date) {
            snprintf(date, sizeof date, "%s", o->date);
        } else if (t->family == CHAT_LLAMA32) {
            time_t now = o && o->now ? o->now : time(NULL);
            struct tm tm;
            if (!localtime_r(&now, &tm) || strftime(date, sizeof date, "%d %b %Y", &tm) == 0)
                snprintf(date, sizeof date, "26 Jul 2024");
        } else {
            snprintf(date, sizeof date, "26 Jul 2024");
        }
        puts_(b, "<|start_header_id|>system<|end_header_id|>\n\n", 0);
        puts_(b, "Cutting Knowledge Date: December 2023\n", 0);
        puts_(b, "Today Date: ", 0);
        puts_(b, date, 0);
        puts_(b, "\n\n", 0);
        if (r->system)
            put_stripped(b, r->system, r->system_len, 0);
        puts_(b, "<|eot_id|>", 0);
    }
    for (int i = 0; i < r->nturns; i++) {
        const record_turn *m = &r->turns[i];
        int a = m->role == ROLE_ASSISTANT;
        llama3_turn(b, a ? "assistant" : "user", m->text, m->len, a);
    }
    if (gen)
        puts_(b, "<|start_header_id|>assistant<|end_header_id|>\n\n", 0);
}

// mistral-common templates merge consecutive messages of one role, joined by "\n\n".
typedef struct {
    record_role role;
    char *text;
    size_t len;
} merged;

static merged *mistral_merge(const record *r, int *n) {
    merged *out = calloc((size_t)r->nturns + 1, sizeof *out);
    if (!out)
        return NULL;
    int k = 0;
    for (int i = 0; i < r->nturns; i++) {
        const record_turn *m = &r->turns[i];
        if (k > 0 && out[k - 1].role == m->role) {
            merged *g = &out[k - 1];
            char *nt = realloc(g->text, g->len + 2 + m->len + 1);
            if (!nt)
                goto oom;
            memcpy(nt + g->len, "\n\n", 2);
            memcpy(nt + g->len + 2, m->text, m->len);
            g->len += 2 + m->len;
            nt[g->len] = 0;
            g->text = nt;
        } else {
            out[k].role = m->role;
            out[k].text = malloc(m->len + 1);
            if (!out[k].text)
                goto oom;
            memcpy(out[k].text, m->text, m->len);
            out[k].text[m->len] = 0;
            out[k].len = m->len;
            k++;
        }
    }
    *n = k;
    return out;
oom:
    for (int i = 0; i <= k && i <= r->nturns; i++)
        free(out[i].text);
    free(out);
    return NULL;
}

static int render_mistral(builder *b, const chat_template *t, const record *r, char *err, size_t errlen) {
    int n = 0;
    merged *ms = mistral_merge(r, &n);
    if (!ms) {
        b->oom = 1;
        return 0;
    }
    int rc = 0;
    chat_family f = t->family;
    int v3 = f == CHAT_MISTRAL_V3 || f == CHAT_MISTRAL_V3_SPM;
    int has_sys = r->system && r->system_len > 0;
    int last_user = -1, nuser = 0;
    for (int i = 0; i < n; i++)
        if (ms[i].role == ROLE_USER)
            last_user = nuser++;
    if (n > 0 && ms[0].role != ROLE_USER) {
        rc = raise_(err, errlen, "Conversation must start with a user message, got assistant.");
        goto out;
    }
    puts_(b, t->bos, 0);
    int uidx = 0, add_space = 0;
    for (int i = 0; i < n; i++) {
        merged *m = &ms[i];
        if (m->role == ROLE_USER) {
            int with_sys = has_sys && (v3 ? uidx == last_user : i == 0);
            puts_(b, f == CHAT_MISTRAL_V1 ? "[INST] " : f == CHAT_MISTRAL_V1_SPM ? " [INST] "
                     : f == CHAT_MISTRAL_V3                                      ? "[INST]"
                                                                                 : "[INST] ",
                  0);
            if (with_sys) {
                put(b, r->system, r->system_len, 0);
                puts_(b, "\n\n", 0);
            }
            put(b, m->text, m->len, 0);
            puts_(b, v3 ? "[/INST]" : " [/INST]", 0);
            if (f == CHAT_MISTRAL_V1_SPM && i + 1 < n)
                puts_(b, " ", 1);   // the answer's leading space, though the template writes it here
            if (f == CHAT_MISTRAL_V3_SPM && i + 1 < n)
                add_space = 1;
            uidx++;
        } else {
            if (m->len == 0) {
                rc = raise_(err, errlen,
                            v3 ? "Assistant message must have a string or a list of chunks in content or a list "
                                 "of tool calls."
                               : "Assistant message content must be non-empty.");
                goto out;
            }
            if (add_space) {
                puts_(b, " ", 1);   // generated by the model: the prompt ends at "[/INST]"
                add_space = 0;
            }
            put(b, m->text, m->len, 1);
            puts_(b, t->eos, 1);
        }
    }
out:
    for (int i = 0; i < n; i++)
        free(ms[i].text);
    free(ms);
    return rc;
}

// The HF-side Mistral templates (Nemo, Mistral-7B-Instruct-v0.3): alternation checked without the
// system; the system prompt joins the last message when that is a user turn ("loop.last"), or in
// the later v0.3 revision every user turn equal to the last user turn.
static int render_nemo(builder *b, const chat_template *t, const record *r, char *err, size_t errlen) {
    int hf = t->family == CHAT_MISTRAL_HF;
    for (int i = 0; i < r->nturns; i++)
        if ((r->turns[i].role == ROLE_USER) != (i % 2 == 0))
            return raise_(err, errlen,
                          "After the optional system message, conversation roles must alternate "
                          "user/assistant/user/assistant/...");
    const record_turn *last_user = NULL;
    for (int i = 0; i < r->nturns; i++)
        if (r->turns[i].role == ROLE_USER)
            last_user = &r->turns[i];
    puts_(b, t->bos, 0);
    for (int i = 0; i < r->nturns; i++) {
        const record_turn *m = &r->turns[i];
        if (m->role == ROLE_USER) {
            int with_sys = r->system && (t->system_in_last_user
                                             ? m->len == last_user->len && memcmp(m->text, last_user->text, m->len) == 0
                                             : i == r->nturns - 1);
            puts_(b, hf ? "[INST] " : "[INST]", 0);
            if (with_sys) {
                put(b, r->system, r->system_len, 0);
                puts_(b, "\n\n", 0);
            }
            put(b, m->text, m->len, 0);
            puts_(b, "[/INST]", 0);
        } else if (hf) {
            puts_(b, " ", 1);   // generated by the model: the prompt ends at "[/INST]"
            put_stripped(b, m->text, m->len, 1);
            puts_(b, t->eos, 1);
        } else {
            put(b, m->text, m->len, 1);
            puts_(b, t->eos, 1);
        }
    }
    return 0;
}

// Mixtral-8x7B-Instruct-v0.1: strict alternation from the first message, a system message included.
static int render_mistral_legacy(builder *b, const chat_template *t, const record *r, char *err, size_t errlen) {
    int off = r->system ? 1 : 0;
    for (int i = 0; i < r->nturns + off; i++) {
        int user = i >= off && r->turns[i - off].role == ROLE_USER;
        if (user != (i % 2 == 0))
            return raise_(err, errlen, "Conversation roles must alternate user/assistant/user/assistant/...");
    }
    puts_(b, t->bos, 0);
    for (int i = 0; i < r->nturns; i++) {
        const record_turn *m = &r->turns[i];
        if (m->role == ROLE_USER) {
            puts_(b, "[INST] ", 0);
            put(b, m->text, m->len, 0);
            puts_(b, " [/INST]", 0);
        } else {
            put(b, m->text, m->len, 1);
            puts_(b, t->eos, 1);
        }
    }
    return 0;
}

static void render_chatml(builder *b, const chat_template *t, const record *r, int gen) {
    const char *sys = r->system ? r->system : t->default_system;
    size_t sys_len = r->system ? r->system_len : sys ? strlen(sys) : 0;
    if (sys) {
        puts_(b, "<|im_start|>system\n", 0);
        put(b, sys, sys_len, 0);
        puts_(b, "<|im_end|>\n", 0);
    }
    for (int i = 0; i < r->nturns; i++) {
        const record_turn *m = &r->turns[i];
        int a = m->role == ROLE_ASSISTANT;
        puts_(b, a ? "<|im_start|>assistant\n" : "<|im_start|>user\n", 0);
        put(b, m->text, m->len, a);
        puts_(b, "<|im_end|>", a);
        puts_(b, "\n", 0);
    }
    if (gen)
        puts_(b, "<|im_start|>assistant\n", 0);
}

// Python's s.lstrip('\n') / rstrip('\n') on [*a, *b).
static void lstrip_nl(const char *s, size_t *a, size_t b) {
    while (*a < b && s[*a] == '\n')
        (*a)++;
}
static void rstrip_nl(const char *s, size_t a, size_t *b) {
    while (*b > a && s[*b - 1] == '\n')
        (*b)--;
}

// First (last = 0) or last occurrence of needle in s[a, b), or (size_t)-1.
static size_t find_in(const char *s, size_t a, size_t b, const char *needle, int last) {
    size_t n = strlen(needle), at = (size_t)-1;
    for (size_t i = a; i + n <= b; i++)
        if (memcmp(s + i, needle, n) == 0) {
            at = i;
            if (!last)
                break;
        }
    return at;
}

static int has_affixes(const char *s, size_t n, const char *pre, const char *suf) {
    size_t p = strlen(pre), q = strlen(suf);
    return n >= p && n >= q && memcmp(s, pre, p) == 0 && memcmp(s + n - q, suf, q) == 0;
}

// Qwen3 (Qwen/Qwen3-*): ChatML without a default system prompt. The last query is the last user
// turn that is not a <tool_response>; an assistant turn after it gets a <think> block (empty
// unless its content carries "…</think>" reasoning) when it is the last message or has
// reasoning; earlier turns keep only the text after their last </think>.
static void render_qwen3(builder *b, const record *r, int gen) {
    int off = r->system ? 1 : 0;
    int last_query = r->nturns - 1 + off;   // messages|length - 1, the system message counted
    for (int i = r->nturns - 1; i >= 0; i--) {
        const record_turn *m = &r->turns[i];
        if (m->role == ROLE_USER && !has_affixes(m->text, m->len, "<tool_response>", "</tool_response>")) {
            last_query = i + off;
            break;
        }
    }
    if (r->system) {
        puts_(b, "<|im_start|>system\n", 0);
        put(b, r->system, r->system_len, 0);
        puts_(b, "<|im_end|>\n", 0);
    }
    for (int i = 0; i < r->nturns; i++) {
        const record_turn *m = &r->turns[i];
        if (m->role == ROLE_USER) {
            puts_(b, "<|im_start|>user\n", 0);
            put(b, m->text, m->len, 0);
            puts_(b, "<|im_end|>\n", 0);
            continue;
        }
        const char *s = m->text;
        size_t ca = 0, ce = m->len, ra = 0, re = 0;   // content [ca, ce), reasoning [ra, re)
        size_t close = find_in(s, 0, m->len, "</think>", 0);
        if (close != (size_t)-1) {
            ca = find_in(s, 0, m->len, "</think>", 1) + strlen("</think>");
            lstrip_nl(s, &ca, ce);
            re = close;
            rstrip_nl(s, 0, &re);
            size_t open = find_in(s, 0, re, "<think>", 1);
            ra = open == (size_t)-1 ? 0 : open + strlen("<think>");
            lstrip_nl(s, &ra, re);
        }
        puts_(b, "<|im_start|>assistant\n", 0);
        if (i + off > last_query && (i == r->nturns - 1 || re > ra)) {
            lstrip_nl(s, &ra, re);   // reasoning_content.strip('\n')
            rstrip_nl(s, ra, &re);
            puts_(b, "<think>\n", 1);
            put(b, s + ra, re - ra, 1);
            puts_(b, "\n</think>\n\n", 1);
            lstrip_nl(s, &ca, ce);
        }
        put(b, s + ca, ce - ca, 1);
        puts_(b, "<|im_end|>", 1);
        puts_(b, "\n", 0);
    }
    if (gen)
        puts_(b, "<|im_start|>assistant\n", 0);
}

static void render_phi3(builder *b, const chat_template *t, const record *r, int gen) {
    if (r->system && (r->system_len > 0 || !t->system_if_nonempty)) {
        puts_(b, "<|system|>\n", 0);
        put(b, r->system, r->system_len, 0);
        puts_(b, "<|end|>\n", 0);
    }
    for (int i = 0; i < r->nturns; i++) {
        const record_turn *m = &r->turns[i];
        int a = m->role == ROLE_ASSISTANT;
        puts_(b, a ? "<|assistant|>\n" : "<|user|>\n", 0);
        put(b, m->text, m->len, a);
        puts_(b, "<|end|>", a);
        puts_(b, "\n", 0);
    }
    if (gen)
        puts_(b, "<|assistant|>\n", 0);
    else
        puts_(b, t->eos, 1);
}

// gpt-oss's harmony template (openai/gpt-oss-120b chat_template) for Bedrock records: its
// system message (model identity, knowledge cutoff, strftime_now's date, reasoning effort
// "medium", the valid channels; no tools), the record's system text as the developer message's
// "# Instructions" (messages[0] with role "system"; an empty one is left out, as the template
// does), user turns, and each answer in the final channel. Bedrock records carry no reasoning
// ("thinking"), so no analysis channel is rendered: the template writes one only from a message's
// thinking field.
static int render_harmony(builder *b, const record *r, const chat_options *o, int gen, char *err, size_t errlen) {
    char date[64];
    if (o && o->date) {
        snprintf(date, sizeof date, "%s", o->date);
    } else {
        time_t now = o && o->now ? o->now : time(NULL);
        struct tm tm;
        if (!localtime_r(&now, &tm) || strftime(date, sizeof date, "%Y-%m-%d", &tm) == 0)
            snprintf(date, sizeof date, "1970-01-01");
    }
    puts_(b, "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
             "Knowledge cutoff: 2024-06\nCurrent date: ", 0);
    puts_(b, date, 0);
    puts_(b, "\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for "
             "every message.<|end|>", 0);
    if (r->system && r->system_len > 0) {
        puts_(b, "<|start|>developer<|message|># Instructions\n\n", 0);
        put(b, r->system, r->system_len, 0);
        puts_(b, "\n\n<|end|>", 0);
    }
    for (int i = 0; i < r->nturns; i++) {
        const record_turn *m = &r->turns[i];
        if (m->role == ROLE_USER) {
            puts_(b, "<|start|>user<|message|>", 0);
            put(b, m->text, m->len, 0);
            puts_(b, "<|end|>", 0);
            continue;
        }
        if (find_in(m->text, 0, m->len, "<|channel|>analysis<|message|>", 0) != (size_t)-1 ||
            find_in(m->text, 0, m->len, "<|channel|>final<|message|>", 0) != (size_t)-1)
            return raise_(err, errlen,
                          "You have passed a message containing <|channel|> tags in the content field. Instead of "
                          "doing this, you should pass analysis messages (the string between '<|message|>' and "
                          "'<|end|>') in the 'thinking' field, and final messages (the string between '<|message|>' "
                          "and '<|end|>') in the 'content' field.");
        puts_(b, "<|start|>assistant<|channel|>final<|message|>", 0);
        put(b, m->text, m->len, 1);
        // <|return|> ends generation: only the last turn of a training rendering has it.
        puts_(b, i == r->nturns - 1 && !gen ? "<|return|>" : "<|end|>", 1);
    }
    if (gen)
        puts_(b, "<|start|>assistant", 0);
    return 0;
}

// No template: prompt + completion as they are, or the system and turns one per line; EOS last.
// For generation: no EOS, and the separator the answer would follow.
static void render_raw(builder *b, const chat_template *t, const record *r, int gen) {
    const char *sep = r->format == FORMAT_PROMPT_COMPLETION ? "" : "\n";
    int first = 1;
    if (r->system) {
        put(b, r->system, r->system_len, 0);
        first = 0;
    }
    for (int i = 0; i < r->nturns; i++) {
        const record_turn *m = &r->turns[i];
        int a = m->role == ROLE_ASSISTANT;
        if (!first)
            puts_(b, sep, a);
        put(b, m->text, m->len, a);
        first = 0;
    }
    if (gen)
        puts_(b, sep, 0);
    else
        puts_(b, t->eos, 1);
}

static int render(const chat_template *t, const record *r, const chat_options *o, int gen, chat_rendered *out,
                  char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    builder b = {0};
    int rc = 0;
    if (r->format == FORMAT_CPT) {
        put(&b, r->text ? r->text : "", r->text ? r->text_len : 0, 1);
        if (!gen)
            puts_(&b, t->eos, 1);
    } else if (r->nturns <= 0) {
        seterr(err, errlen, "the record has no turns to render");
        return -1;
    } else {
        switch (t->family) {
        case CHAT_RAW: render_raw(&b, t, r, gen); break;
        case CHAT_LLAMA2:
            for (int i = 0; i < r->nturns; i++)
                if ((r->turns[i].role == ROLE_USER) != (i % 2 == 0))
                    return raise_(err, errlen, "Conversation roles must alternate user/assistant/user/assistant/...");
            render_llama2(&b, t, r);
            break;
        case CHAT_LLAMA3:
        case CHAT_LLAMA31:
        case CHAT_LLAMA32: render_llama3(&b, t, r, o, gen); break;
        case CHAT_MISTRAL_V1:
        case CHAT_MISTRAL_V1_SPM:
        case CHAT_MISTRAL_V3:
        case CHAT_MISTRAL_V3_SPM: rc = render_mistral(&b, t, r, err, errlen); break;
        case CHAT_MISTRAL_NEMO:
        case CHAT_MISTRAL_HF: rc = render_nemo(&b, t, r, err, errlen); break;
        case CHAT_MISTRAL_LEGACY: rc = render_mistral_legacy(&b, t, r, err, errlen); break;
        case CHAT_CHATML: render_chatml(&b, t, r, gen); break;
        case CHAT_PHI3: render_phi3(&b, t, r, gen); break;
        case CHAT_QWEN3: render_qwen3(&b, r, gen); break;
        case CHAT_HARMONY: rc = render_harmony(&b, r, o, gen, err, errlen); break;
        }
    }
    if (rc != 0 || b.oom) {
        if (b.oom)
            seterr(err, errlen, "out of memory rendering a record");
        free(b.buf);
        free(b.spans);
        return -1;
    }
    if (!b.buf) {   // an empty rendering (an empty CPT text with no EOS)
        b.buf = calloc(1, 1);
        if (!b.buf) {
            seterr(err, errlen, "out of memory rendering a record");
            return -1;
        }
    }
    if (o && o->train_on_prompt && b.nspans > 0) {
        b.spans[0] = (chat_span){0, b.len, 1};
        b.nspans = 1;
    }
    size_t bl = strlen(t->bos);
    out->text = b.buf;
    out->len = b.len;
    out->spans = b.spans;
    out->nspans = b.nspans;
    out->has_bos = r->format != FORMAT_CPT && bl > 0 && b.len >= bl && memcmp(b.buf, t->bos, bl) == 0;
    return 0;
}

int chat_render(const chat_template *t, const record *r, const chat_options *o, chat_rendered *out,
                char *err, size_t errlen) {
    return render(t, r, o, 0, out, err, errlen);
}

int chat_render_prompt(const chat_template *t, const record *r, const chat_options *o, chat_rendered *out,
                       char *err, size_t errlen) {
    if (r->format != FORMAT_CPT && (r->nturns <= 0 || r->turns[r->nturns - 1].role != ROLE_USER)) {
        seterr(err, errlen, "a generation prompt must end with a user turn");
        return -1;
    }
    return render(t, r, o, 1, out, err, errlen);
}

void chat_rendered_free(chat_rendered *c) {
    if (!c)
        return;
    free(c->text);
    free(c->spans);
    memset(c, 0, sizeof *c);
}

static int ascii_space(char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r'); }

// Token i covers bytes [s, e) of the text. It is trained when one of its non-blank bytes is, or,
// for an all-blank token, when any byte is: a special token that swallowed the answer's leading
// blank (rstrip) stays masked, and "▁The" made of the prompt's " " and the answer's "The" trains.
void chat_mask_from_offsets(const chat_rendered *c, const int32_t *offsets, int n, int train_on_prompt,
                            int8_t *mask) {
    for (int i = 0; i < n; i++) {
        size_t s = offsets[2 * i] < 0 ? 0 : (size_t)offsets[2 * i];
        size_t e = offsets[2 * i + 1] < 0 ? 0 : (size_t)offsets[2 * i + 1];
        if (e > c->len)
            e = c->len;
        if (s >= e || c->nspans == 0) {
            mask[i] = (int8_t)(train_on_prompt ? 1 : 0);
            continue;
        }
        int lo = 0, hi = c->nspans - 1;   // the span holding byte s
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (c->spans[mid].start <= s)
                lo = mid;
            else
                hi = mid - 1;
        }
        int any = 0, solid = 0, blank_only = 1;
        for (size_t b = s, k = (size_t)lo; b < e; b++) {
            while (k + 1 < (size_t)c->nspans && c->spans[k].end <= b)
                k++;
            int sp = ascii_space(c->text[b]);
            blank_only &= sp;
            if (c->spans[k].trained) {
                any = 1;
                solid |= !sp;
            }
        }
        mask[i] = (int8_t)(solid || (blank_only && any));
    }
}
