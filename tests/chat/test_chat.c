// tests/chat/test_chat.c — data/chat renders every official template exactly as jinja2 in
// transformers does (cases from gen_chat_cases.py), Mistral's own samples, the template loader,
// and the loss spans.
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>

#include "data/chat.h"
#include "test.h"
#include "chat_case.h"

// Prints a with escapes, at most max bytes from start.
static void print_escaped(const char *label, const char *s, size_t len, size_t start, size_t max) {
    fprintf(stderr, "  %s: \"", label);
    for (size_t i = start; i < len && i < start + max; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\n')
            fputs("\\n", stderr);
        else if (ch == '\t')
            fputs("\\t", stderr);
        else if (ch == '"' || ch == '\\')
            fprintf(stderr, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(stderr, "\\x%02x", ch);
        else
            fputc(ch, stderr);
    }
    fprintf(stderr, "\"\n");
}

static void report_mismatch(const char *name, int line, const char *got, size_t glen, const char *want, size_t wlen) {
    size_t i = 0;
    while (i < glen && i < wlen && got[i] == want[i])
        i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "FAIL chat %s (case line %d): first difference at byte %zu (quarry %zu bytes, jinja2 %zu)\n",
            name, line, i, glen, wlen);
    print_escaped("quarry", got, glen, from, 160);
    print_escaped("jinja2", want, wlen, from, 160);
}

// Every byte is in exactly one span, spans in order, neighbours differ.
static int spans_ok(const chat_rendered *c) {
    size_t at = 0;
    for (int i = 0; i < c->nspans; i++) {
        if (c->spans[i].start != at || c->spans[i].end <= c->spans[i].start)
            return 0;
        if (i > 0 && c->spans[i].trained == c->spans[i - 1].trained)
            return 0;
        at = c->spans[i].end;
    }
    return at == c->len;
}

static int run_cases(const char *path, int *ncases) {
    FILE *f = fopen(path, "r");
    if (!f) {
        CHECK(0, "cannot open %s: %s", path, strerror(errno));
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int lineno = 0, shown = 0, fails = 0;
    chat_template *t = NULL;
    char name[64] = "?";
    while ((got = getline(&line, &cap, f)) > 0) {
        lineno++;
        cJSON *j = cJSON_Parse(line);
        if (!j) {
            CHECK(0, "%s:%d: bad JSON", path, lineno);
            break;
        }
        if (lineno == 1) {
            snprintf(name, sizeof name, "%s", cJSON_GetObjectItem(j, "name")->valuestring);
            char *tpl = slurp(cJSON_GetObjectItem(j, "template_file")->valuestring, NULL);
            char err[512] = "";
            CHECK(tpl != NULL, "%s: template file missing", name);
            t = tpl ? chat_template_from_text(tpl, NULL, cJSON_GetObjectItem(j, "bos")->valuestring,
                                              cJSON_GetObjectItem(j, "eos")->valuestring, err, sizeof err)
                    : NULL;
            free(tpl);
            CHECK(t != NULL, "%s: template not recognised: %s", name, err);
            const char *want_family = cJSON_GetObjectItem(j, "family")->valuestring;
            CHECK(!t || strcmp(t->name, want_family) == 0, "%s: detected as %s, want %s", name, t ? t->name : "-",
                  want_family);
            cJSON_Delete(j);
            if (!t)
                break;
            continue;
        }
        record r;
        if (record_from_case(j, &r) != 0) {
            cJSON_Delete(j);
            break;
        }
        const cJSON *date = cJSON_GetObjectItem(j, "date");
        const cJSON *now = cJSON_GetObjectItem(j, "now");
        chat_options o = {cJSON_IsString(date) ? date->valuestring : NULL, (time_t)now->valuedouble, 0};
        const cJSON *want = cJSON_GetObjectItem(j, "text");
        const cJSON *want_err = cJSON_GetObjectItem(j, "error");
        chat_rendered c;
        char err[512] = "";
        int rc = chat_render(t, &r, &o, &c, err, sizeof err);
        (*ncases)++;
        int bad = 0;
        if (cJSON_IsString(want)) {
            if (rc != 0) {
                bad = 1;
                if (shown++ < 3)
                    fprintf(stderr, "FAIL chat %s (case line %d): quarry refused (%s), jinja2 rendered it\n", name,
                            lineno, err);
            } else if (c.len != strlen(want->valuestring) || memcmp(c.text, want->valuestring, c.len) != 0) {
                bad = 1;
                if (shown++ < 3)
                    report_mismatch(name, lineno, c.text, c.len, want->valuestring, strlen(want->valuestring));
            } else if (!spans_ok(&c)) {
                bad = 1;
                if (shown++ < 3)
                    fprintf(stderr, "FAIL chat %s (case line %d): spans do not tile the text\n", name, lineno);
            }
        } else if (rc == 0) {
            bad = 1;
            if (shown++ < 3)
                fprintf(stderr, "FAIL chat %s (case line %d): jinja2 raised (%s), quarry rendered it\n", name, lineno,
                        cJSON_IsString(want_err) ? want_err->valuestring : "?");
        }
        if (rc == 0)
            chat_rendered_free(&c);
        fails += bad;
        record_free(&r);
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    chat_template_free(t);
    CHECK(fails == 0, "%s: %d of %d cases differ from jinja2", name, fails, lineno - 1);
    printf("chat %-15s %d cases, %d differ\n", name, lineno - 1, fails);
    return lineno - 1;
}

// The trained bytes, runs joined by '|'.
static char *trained_text(const chat_rendered *c) {
    char *s = malloc(c->len + (size_t)c->nspans + 1);
    size_t k = 0;
    for (int i = 0; i < c->nspans; i++) {
        if (!c->spans[i].trained)
            continue;
        if (k)
            s[k++] = '|';
        memcpy(s + k, c->text + c->spans[i].start, c->spans[i].end - c->spans[i].start);
        k += c->spans[i].end - c->spans[i].start;
    }
    s[k] = 0;
    return s;
}

static void check_spans(const char *family, record_format fmt, const char *system, const char *want_text,
                        const char *want_trained) {
    char err[512];
    chat_template *t = chat_template_from_text(NULL, family, NULL, NULL, err, sizeof err);
    CHECK(t != NULL, "--template %s: %s", family, err);
    if (!t)
        return;
    record_turn turns[4] = {{ROLE_USER, "  Hi\n", 5}, {ROLE_ASSISTANT, "Hello!  ", 8}, {ROLE_USER, "Bye", 3},
                            {ROLE_ASSISTANT, "Ciao", 4}};
    record r = {0};
    r.format = fmt;
    r.system = (char *)system;
    r.system_len = system ? strlen(system) : 0;
    r.turns = turns;
    r.nturns = 4;
    if (fmt == FORMAT_CPT) {
        r.nturns = 0;
        r.text = "Once upon a time";
        r.text_len = strlen(r.text);
    }
    chat_options o = {"01 Jan 2025", 0, 0};
    chat_rendered c;
    int rc = chat_render(t, &r, &o, &c, err, sizeof err);
    CHECK(rc == 0, "%s: %s", family, err);
    if (rc == 0) {
        char *tr = trained_text(&c);
        CHECK(strcmp(c.text, want_text) == 0, "%s text:\n  got  \"%s\"\n  want \"%s\"", family, c.text, want_text);
        CHECK(strcmp(tr, want_trained) == 0, "%s trained bytes:\n  got  \"%s\"\n  want \"%s\"", family, tr,
              want_trained);
        CHECK(spans_ok(&c), "%s: spans do not tile the text", family);
        free(tr);
        chat_rendered_free(&c);
        o.train_on_prompt = 1;
        rc = chat_render(t, &r, &o, &c, err, sizeof err);
        CHECK(rc == 0 && c.nspans == 1 && c.spans[0].trained, "%s --train-on-prompt: one trained span", family);
        if (rc == 0)
            chat_rendered_free(&c);
    }
    chat_template_free(t);
}

static void test_spans(void) {
    check_spans("llama3.1", FORMAT_MESSAGES, "Be brief. ",
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December "
                "2023\nToday Date: 01 Jan 2025\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
                "Hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>"
                "user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nCiao<|eot_id|>",
                "Hello!<|eot_id|>|Ciao<|eot_id|>");
    check_spans("llama2", FORMAT_MESSAGES, "S",
                "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\n  Hi [/INST] Hello! </s><s>[INST] Bye [/INST] Ciao </s>",
                " Hello! </s>| Ciao </s>");
    check_spans("qwen2.5", FORMAT_MESSAGES, NULL,
                "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                "<|im_start|>user\n  Hi\n<|im_end|>\n<|im_start|>assistant\nHello!  <|im_end|>\n<|im_start|>user\n"
                "Bye<|im_end|>\n<|im_start|>assistant\nCiao<|im_end|>\n",
                "Hello!  <|im_end|>|Ciao<|im_end|>");
    // Qwen3: the last assistant turn gets the empty think block, trained with the answer; earlier
    // turns have none; role headers and the newline after <|im_end|> stay masked.
    check_spans("qwen3", FORMAT_MESSAGES, NULL,
                "<|im_start|>user\n  Hi\n<|im_end|>\n<|im_start|>assistant\nHello!  <|im_end|>\n<|im_start|>user\n"
                "Bye<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nCiao<|im_end|>\n",
                "Hello!  <|im_end|>|<think>\n\n</think>\n\nCiao<|im_end|>");
    check_spans("mistral-v3-spm", FORMAT_MESSAGES, "S",
                "<s>[INST]   Hi\n[/INST] Hello!  </s>[INST] S\n\nBye[/INST] Ciao</s>", " Hello!  </s>| Ciao</s>");
    check_spans("phi3.5", FORMAT_MESSAGES, "",
                "<|user|>\n  Hi\n<|end|>\n<|assistant|>\nHello!  <|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n"
                "Ciao<|end|>\n<|endoftext|>",
                "Hello!  <|end|>|Ciao<|end|>|<|endoftext|>");
    // gpt-oss: Bedrock's system text is the developer message; trained: each answer's text and its
    // end token (<|end|> earlier, <|return|> last), not the final-channel header.
    check_spans("harmony", FORMAT_MESSAGES, "Be brief.",
                "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge "
                "cutoff: 2024-06\nCurrent date: 01 Jan 2025\n\nReasoning: medium\n\n# Valid channels: analysis, "
                "commentary, final. Channel must be included for every message.<|end|><|start|>developer<|message|>"
                "# Instructions\n\nBe brief.\n\n<|end|><|start|>user<|message|>  Hi\n<|end|><|start|>assistant"
                "<|channel|>final<|message|>Hello!  <|end|><|start|>user<|message|>Bye<|end|><|start|>assistant"
                "<|channel|>final<|message|>Ciao<|return|>",
                "Hello!  <|end|>|Ciao<|return|>");
    check_spans("raw", FORMAT_PROMPT_COMPLETION, NULL, "  Hi\nHello!  ByeCiao", "Hello!  |Ciao");
    check_spans("raw", FORMAT_MESSAGES, "S", "S\n  Hi\n\nHello!  \nBye\nCiao", "\nHello!  |\nCiao");
    check_spans("llama3", FORMAT_CPT, NULL, "Once upon a time<|eot_id|>", "Once upon a time<|eot_id|>");
}

// gpt-oss's generation prompt (add_generation_prompt): "<|start|>assistant", the model picks the
// channel; the date from the clock when none is pinned (strftime_now("%Y-%m-%d"), local time).
static void test_harmony_prompt(void) {
    char err[512];
    chat_template *t = chat_template_from_text(NULL, "gpt-oss", NULL, NULL, err, sizeof err);
    CHECK(t && t->family == CHAT_HARMONY && !strcmp(t->eos, "<|return|>"), "--template gpt-oss: %s", err);
    if (!t)
        return;
    record_turn turns[3] = {{ROLE_USER, "Hi", 2}, {ROLE_ASSISTANT, "Hello", 5}, {ROLE_USER, "Bye", 3}};
    record r = {0};
    r.format = FORMAT_MESSAGES;
    r.turns = turns;
    r.nturns = 3;
    time_t now = 1754352000;   // 2025-08-05 00:00 UTC: the 4th or 5th in local time
    struct tm tm;
    char day[32], want[64];
    localtime_r(&now, &tm);
    strftime(day, sizeof day, "%Y-%m-%d", &tm);
    snprintf(want, sizeof want, "Current date: %s\n", day);
    chat_options o = {NULL, now, 0};
    chat_rendered c;
    int rc = chat_render_prompt(t, &r, &o, &c, err, sizeof err);
    CHECK(rc == 0, "harmony prompt: %s", err);
    if (rc == 0) {
        const char *tail = "<|start|>assistant<|channel|>final<|message|>Hello<|end|><|start|>user<|message|>Bye<|end|>"
                           "<|start|>assistant";
        CHECK(c.len >= strlen(tail) && !strcmp(c.text + c.len - strlen(tail), tail), "harmony prompt ends: %s", c.text);
        CHECK(strstr(c.text, want) != NULL, "harmony prompt dated %s: %s", day, c.text);
        chat_rendered_free(&c);
    }
    chat_template_free(t);
}

// Mixtral-8x7B-Instruct's HF template (mistral-legacy) is Mistral v1 (what mistral-common uses for
// Mixtral) for alternating conversations without a system prompt: same bytes, same trained spans.
// With a system prompt v1 folds it into the first user turn and the HF template raises.
static void test_mixtral_is_v1(void) {
    char err[512];
    chat_template *v1 = chat_template_from_text(NULL, "mistral-v1", NULL, NULL, err, sizeof err);
    chat_template *hf = chat_template_from_text(NULL, "mistral-legacy", NULL, NULL, err, sizeof err);
    record_turn turns[4] = {{ROLE_USER, "  Hi\n", 5}, {ROLE_ASSISTANT, "Hello!  ", 8}, {ROLE_USER, "Bye", 3},
                            {ROLE_ASSISTANT, "Ciao", 4}};
    record r = {0};
    r.format = FORMAT_MESSAGES;
    r.turns = turns;
    r.nturns = 4;
    chat_rendered a, b;
    int ra = v1 ? chat_render(v1, &r, NULL, &a, err, sizeof err) : -1;
    int rb = hf ? chat_render(hf, &r, NULL, &b, err, sizeof err) : -1;
    CHECK(ra == 0 && rb == 0, "mistral-v1 / mistral-legacy render: %s", err);
    if (ra == 0 && rb == 0) {
        char *ta = trained_text(&a), *tb = trained_text(&b);
        CHECK(a.len == b.len && memcmp(a.text, b.text, a.len) == 0 && strcmp(ta, tb) == 0,
              "Mixtral's HF template and mistral-v1 differ:\n  v1     \"%s\" [%s]\n  legacy \"%s\" [%s]", a.text, ta,
              b.text, tb);
        free(ta);
        free(tb);
    }
    if (ra == 0)
        chat_rendered_free(&a);
    if (rb == 0)
        chat_rendered_free(&b);
    r.system = "S";
    r.system_len = 1;
    CHECK(hf && chat_render(hf, &r, NULL, &b, err, sizeof err) == -1 && strstr(err, "alternate"),
          "mistral-legacy with a system prompt raises as the template does");
    chat_template_free(v1);
    chat_template_free(hf);
}

// Mistral's reference library rendered samples/no_tools (text_vN.txt: pieces joined, ▁ for a space);
// the SentencePiece variants of the templates must give the same text.
static void test_mistral_samples(const char *testdata) {
    char path[4096];
    snprintf(path, sizeof path, "%s/chat_templates/mistral/samples/no_tools/sample.json", testdata);
    char *js = slurp(path, NULL);
    CHECK(js != NULL, "%s missing", path);
    if (!js)
        return;
    cJSON *j = cJSON_Parse(js);
    free(js);
    record r = {0};
    r.format = FORMAT_MESSAGES;
    const cJSON *msgs = cJSON_GetObjectItem(j, "messages"), *m;
    r.turns = calloc((size_t)cJSON_GetArraySize(msgs), sizeof *r.turns);
    cJSON_ArrayForEach(m, msgs) {
        const char *role = cJSON_GetObjectItem(m, "role")->valuestring;
        const char *text = cJSON_GetObjectItem(m, "content")->valuestring;
        if (strcmp(role, "system") == 0) {
            r.system = strdup(text);
            r.system_len = strlen(text);
            continue;
        }
        record_turn *t = &r.turns[r.nturns++];
        t->role = strcmp(role, "assistant") == 0 ? ROLE_ASSISTANT : ROLE_USER;
        t->text = strdup(text);
        t->len = strlen(text);
    }
    cJSON_Delete(j);
    const char *variants[][2] = {{"v1", "v1_spm"}, {"v2", "v2_spm"}, {"v3", "v3_spm"}};
    for (int v = 0; v < 3; v++) {
        snprintf(path, sizeof path, "%s/chat_templates/mistral/samples/no_tools/text_%s.txt", testdata, variants[v][0]);
        size_t n;
        char *want = slurp(path, &n);
        snprintf(path, sizeof path, "%s/chat_templates/mistral/%s.jinja", testdata, variants[v][1]);
        char *tpl = slurp(path, NULL);
        CHECK(want && tpl, "mistral sample files missing (%s)", variants[v][0]);
        if (!want || !tpl) {
            free(want);
            free(tpl);
            continue;
        }
        // ▁ (U+2581, e2 96 81) → ' '
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 2 < n && (unsigned char)want[i] == 0xe2 && (unsigned char)want[i + 1] == 0x96 &&
                (unsigned char)want[i + 2] == 0x81) {
                want[k++] = ' ';
                i += 2;
            } else {
                want[k++] = want[i];
            }
        }
        want[k] = 0;
        char err[512];
        chat_template *t = chat_template_from_text(tpl, NULL, NULL, NULL, err, sizeof err);
        CHECK(t != NULL, "%s: %s", variants[v][1], err);
        chat_rendered c;
        if (t && chat_render(t, &r, NULL, &c, err, sizeof err) == 0) {
            if (c.len != k || memcmp(c.text, want, k) != 0) {
                CHECK(0, "mistral sample no_tools with %s.jinja differs from text_%s.txt", variants[v][1],
                      variants[v][0]);
                report_mismatch(variants[v][1], 0, c.text, c.len, want, k);
            }
            chat_rendered_free(&c);
        } else if (t) {
            CHECK(0, "mistral sample %s: %s", variants[v][1], err);
        }
        chat_template_free(t);
        free(want);
        free(tpl);
    }
    record_free(&r);
}

static void test_loader(const char *dir) {
    char path[8192], err[512];
    struct {
        const char *model, *family, *bos, *eos;
        int has_note;
    } cases[] = {
        {"qwen", "chatml", "", "<|im_end|>", 0},
        {"phi3", "phi3", "<s>", "<|endoftext|>", 0},
        {"llama31-two-sources", "llama3.1", "<|begin_of_text|>", "<|eot_id|>", 1},
        {"list", "mistral-v3", "<s>", "</s>", 0},
        {"json", "llama2", "<s>", "</s>", 0},
        {"base", "raw", "<s>", "</s>", 0},
        {"qwen3", "qwen3", "", "<|im_end|>", 0},
        {"mixtral", "raw", "<s>", "</s>", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/models/%s", dir, cases[i].model);
        chat_template *t = chat_template_load(path, NULL, err, sizeof err);
        CHECK(t != NULL, "load %s: %s", cases[i].model, err);
        if (!t)
            continue;
        CHECK(strcmp(t->name, cases[i].family) == 0, "load %s: family %s, want %s", cases[i].model, t->name,
              cases[i].family);
        CHECK(strcmp(t->bos, cases[i].bos) == 0 && strcmp(t->eos, cases[i].eos) == 0, "load %s: bos/eos %s %s",
              cases[i].model, t->bos, t->eos);
        CHECK((t->note != NULL) == cases[i].has_note, "load %s: note %s", cases[i].model, t->note ? t->note : "none");
        chat_template_free(t);
    }
    snprintf(path, sizeof path, "%s/models/qwen", dir);
    chat_template *t = chat_template_load(path, NULL, err, sizeof err);
    CHECK(t && t->default_system && strstr(t->default_system, "You are Qwen"), "qwen default system prompt");
    chat_template_free(t);
    snprintf(path, sizeof path, "%s/models/qwen3-thinking", dir);
    t = chat_template_load(path, NULL, err, sizeof err);
    CHECK(t == NULL && strstr(err, "--template NAME"), "a Thinking-2507 template is not taken for qwen3: %s",
          t ? t->name : err);
    chat_template_free(t);
    snprintf(path, sizeof path, "%s/models/unknown", dir);
    t = chat_template_load(path, NULL, err, sizeof err);
    CHECK(t == NULL && strstr(err, "--template NAME"), "an unknown template names --template: %s", err);
    chat_template_free(t);
    t = chat_template_load(path, "chatml", err, sizeof err);
    CHECK(t && strcmp(t->name, "chatml") == 0, "--template chatml forces the family: %s", t ? "" : err);
    chat_template_free(t);
    t = chat_template_load(path, "nonsense", err, sizeof err);
    CHECK(t == NULL && strstr(err, "nonsense"), "an unknown --template is refused: %s", err);
    chat_template_free(t);
}

int main(void) {
    const char *testdata = test_env("QUARRY_TESTDATA", "../shared/testdata");
    test_spans();
    test_mixtral_is_v1();
    char path[8192], out[2048];
    gen_cases("gen_chat_cases.py", "chat_cases", 1000, "jinja2", "; the jinja2 comparison did not run", out,
              sizeof out);
    if (test_failures)
        return test_finish("test_chat");
    static const char *names[] = {"llama3.1", "llama3.2", "llama3.3", "llama3.0", "llama2", "qwen2.5", "qwen2", "qwen3", "phi3.5",
                                  "phi3", "mistral-v1", "mistral-v1-spm", "mistral-v2-spm", "mistral-v3",
                                  "mistral-v3-spm", "mistral-nemo", "mistral-hf", "mistral-hf-lastuser",
                                  "mistral-legacy", "harmony"};
    int total = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/cases/%s.jsonl", out, names[i]);
        int n = 0;
        run_cases(path, &n);
        CHECK(n >= 1000, "%s: only %d cases", names[i], n);
        total += n;
    }
    test_mistral_samples(testdata);
    test_harmony_prompt();
    test_loader(out);
    printf("chat: %d rendered conversations compared with jinja2\n", total);
    return test_finish("test_chat");
}
