// tests/chat/test_chat_mask.c — chat_encode gives the ids Hugging Face gives (the rendered text
// tokenized once; cases from gen_mask_cases.py), Mistral's reference token ids for its samples,
// and a loss mask that trains exactly the assistant's tokens and end-of-turn tokens. The mask is
// checked from the bytes under each token (assistant text is Greek, user Cyrillic, system Hebrew),
// not from the renderer's own spans.
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>

#include "data/chat.h"
#include "data/tokenizer.h"
#include "test.h"
#include "chat_case.h"

static void print_ids(const char *label, const int32_t *ids, int n, int from) {
    fprintf(stderr, "  %s (%d ids) from %d: [", label, n, from);
    for (int i = from; i < n && i < from + 16; i++)
        fprintf(stderr, i > from ? ", %d" : "%d", ids[i]);
    fprintf(stderr, "%s]\n", n > from + 16 ? ", ..." : "");
}

// The scripts of the code points that bytes [s, e) of text touch: 1 Greek, 2 Cyrillic/Hebrew.
static int scripts_under(const char *text, size_t len, size_t s, size_t e) {
    const unsigned char *u = (const unsigned char *)text;
    while (s > 0 && (u[s] & 0xc0) == 0x80)
        s--;   // a token may start inside a multi-byte character (byte-level BPE)
    int found = 0;
    for (size_t i = s; i < e && i < len;) {
        unsigned c = u[i], cp = c;
        size_t l = 1;
        if (c >= 0xc0 && c < 0xe0 && i + 1 < len) {
            cp = ((c & 0x1f) << 6) | (u[i + 1] & 0x3f);
            l = 2;
        } else if (c >= 0xe0) {
            l = c < 0xf0 ? 3 : 4;
            cp = 0;
        }
        if (cp >= 0x370 && cp <= 0x3ff)
            found |= 1;
        if ((cp >= 0x400 && cp <= 0x4ff) || (cp >= 0x590 && cp <= 0x5ff))
            found |= 2;
        i += l;
    }
    return found;
}

static void run_combo(const char *path, int *ncases) {
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s: %s", path, strerror(errno));
    if (!f)
        return;
    char *line = NULL, err[512];
    size_t cap = 0;
    int lineno = 0, shown = 0, bad_ids = 0, bad_mask = 0;
    chat_template *t = NULL;
    tokenizer *tok = NULL;
    char name[64] = "?";
    int eot_id = -1, final_eos_id = -1, think_id = -1, think_end_id = -1, tag_ids[16], ntag_ids = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        cJSON *j = cJSON_Parse(line);
        if (!j)
            break;
        if (lineno == 1) {
            snprintf(name, sizeof name, "%s", cJSON_GetObjectItem(j, "name")->valuestring);
            char *tpl = slurp(cJSON_GetObjectItem(j, "template_file")->valuestring, NULL);
            t = tpl ? chat_template_from_text(tpl, NULL, cJSON_GetObjectItem(j, "bos")->valuestring,
                                              cJSON_GetObjectItem(j, "eos")->valuestring, err, sizeof err)
                    : NULL;
            free(tpl);
            tok = tokenizer_load(cJSON_GetObjectItem(j, "tokenizer")->valuestring, err, sizeof err);
            CHECK(t && tok, "%s: template or tokenizer: %s", name, err);
            cJSON_Delete(j);
            if (!t || !tok)
                break;
            int l3 = t->family == CHAT_LLAMA3 || t->family == CHAT_LLAMA31 || t->family == CHAT_LLAMA32;
            const char *eot = l3 ? "<|eot_id|>"
                              : t->family == CHAT_CHATML || t->family == CHAT_QWEN3 ? "<|im_end|>"
                              : t->family == CHAT_PHI3                            ? "<|end|>"
                                                                                  : "</s>";
            eot_id = tokenizer_token_to_id(tok, eot);
            static const char *tags[] = {"<|start_header_id|>", "<|end_header_id|>", "<|begin_of_text|>",
                                         "<|im_start|>", "<|user|>", "<|assistant|>", "<|system|>", "[INST]",
                                         "[/INST]", "<s>"};
            ntag_ids = 0;
            for (size_t k = 0; k < sizeof tags / sizeof tags[0]; k++) {
                int id = tokenizer_token_to_id(tok, tags[k]);
                if (id >= 0)
                    tag_ids[ntag_ids++] = id;
            }
            final_eos_id = t->family == CHAT_PHI3 ? tokenizer_token_to_id(tok, "<|endoftext|>") : -1;
            // Qwen3: the empty think block of the last assistant turn is trained, never masked.
            think_id = t->family == CHAT_QWEN3 ? tokenizer_token_to_id(tok, "<think>") : -1;
            think_end_id = t->family == CHAT_QWEN3 ? tokenizer_token_to_id(tok, "</think>") : -1;
            CHECK(t->family != CHAT_QWEN3 || (think_id >= 0 && think_end_id >= 0), "%s: no ids for the think tags", name);
            CHECK(eot_id >= 0, "%s: no id for %s", name, eot);
            continue;
        }
        record r;
        if (record_from_case(j, &r) != 0) {
            CHECK(0, "out of memory");
            cJSON_Delete(j);
            continue;
        }
        const cJSON *want = cJSON_GetObjectItem(j, "ids");
        int nwant = cJSON_GetArraySize(want);
        int32_t *ids;
        int8_t *mask;
        chat_options o = {NULL, 0, 0};
        int n = chat_encode(t, tok, &r, &o, &ids, &mask, err, sizeof err);
        (*ncases)++;
        if (n < 0) {
            CHECK(0, "%s case %d: %s", name, lineno, err);
            record_free(&r);
            cJSON_Delete(j);
            continue;
        }
        int32_t *w = malloc(sizeof *w * (size_t)(nwant + 1));
        for (int i = 0; i < nwant; i++)
            w[i] = (int32_t)cJSON_GetArrayItem(want, i)->valueint;
        int k = 0;
        while (k < n && k < nwant && ids[k] == w[k])
            k++;
        if (k != n || k != nwant) {
            bad_ids++;
            if (shown++ < 3) {
                fprintf(stderr, "FAIL chat mask %s (case line %d): ids differ from HF at %d\n", name, lineno, k);
                print_ids("quarry", ids, n, k > 4 ? k - 4 : 0);
                print_ids("hf    ", w, nwant, k > 4 ? k - 4 : 0);
            }
        } else {
            // The mask, judged from the bytes under each token.
            chat_rendered c;
            int32_t *tid = NULL, *off = NULL;
            int rc = chat_render(t, &r, &o, &c, err, sizeof err);
            int m = rc == 0 ? tokenizer_encode(tok, c.text, c.len, 0, &tid, &off, err, sizeof err) : -1;
            int lead = n - m;   // a BOS the encoder prepended
            int nassist = 0, trained_eot = 0, trained_think = 0, why = 0, at = -1;
            for (int i = 0; i < r.nturns; i++)
                nassist += r.turns[i].role == ROLE_ASSISTANT;
            if (m < 0 || lead < 0 || lead > 1) {
                why = 1;
            } else {
                if (lead == 1 && mask[0] != 0)
                    why = 2, at = 0;
                for (int i = 0; i < m && !why; i++) {
                    int s = scripts_under(c.text, c.len, (size_t)off[2 * i], (size_t)off[2 * i + 1]);
                    int mi = mask[i + lead];
                    if ((s & 1) && !mi)
                        why = 3, at = i + lead;
                    else if (s == 2 && mi)
                        why = 4, at = i + lead;
                    if (tid[i] == eot_id && mi)
                        trained_eot++;
                    if (tid[i] == final_eos_id && !mi)
                        why = 5, at = i + lead;
                    if (think_id >= 0 && (tid[i] == think_id || tid[i] == think_end_id))
                        mi ? trained_think++ : (why = 8, at = i + lead);
                    for (int q = 0; q < ntag_ids; q++)
                        if (tid[i] == tag_ids[q] && mi)
                            why = 7, at = i + lead;
                }
                if (!why && trained_eot != nassist)
                    why = 6;
                if (!why && think_id >= 0 && trained_think != 2)
                    why = 8;
            }
            if (why) {
                bad_mask++;
                if (shown++ < 3) {
                    static const char *whys[] = {"", "re-encoding failed", "BOS trained",
                                                 "an assistant token is masked", "a user/system token is trained",
                                                 "the final EOS is masked", "trained end-of-turn tokens != assistant turns",
                                                 "a role tag or BOS is trained",
                                                 "the think block is not trained once"};
                    fprintf(stderr, "FAIL chat mask %s (case line %d): %s (token %d, %d trained eot, %d turns)\n",
                            name, lineno, whys[why], at, trained_eot, nassist);
                }
            }
            free(tid);
            free(off);
            if (rc == 0)
                chat_rendered_free(&c);
            // --train-on-prompt: every token trained.
            int32_t *ids2;
            int8_t *mask2;
            o.train_on_prompt = 1;
            int n2 = chat_encode(t, tok, &r, &o, &ids2, &mask2, err, sizeof err);
            int all = n2 == n;
            for (int i = 0; i < n2 && all; i++)
                all = mask2[i] == 1 && ids2[i] == ids[i];
            if (!all) {
                bad_mask++;
                if (shown++ < 3)
                    fprintf(stderr, "FAIL chat mask %s (case line %d): --train-on-prompt does not train all\n", name,
                            lineno);
            }
            if (n2 >= 0) {
                free(ids2);
                free(mask2);
            }
        }
        free(w);
        free(ids);
        free(mask);
        record_free(&r);
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    CHECK(bad_ids == 0 && bad_mask == 0, "%s: %d cases with other ids than HF, %d with a wrong mask", name, bad_ids,
          bad_mask);
    printf("chat mask %-15s %d cases, %d ids differ, %d masks wrong\n", name, lineno - 1, bad_ids, bad_mask);
    tokenizer_free(tok);
    chat_template_free(t);
}

// Mistral's reference library tokenized samples/no_tools (tokens_vN.json); rendering with the
// SentencePiece variant of the template and encoding once must give the same ids.
static void test_mistral_tokens(const char *testdata, const char *toks) {
    char path[16384], err[512];
    snprintf(path, sizeof path, "%s/chat_templates/mistral/samples/no_tools/sample.json", testdata);
    char *js = slurp(path, NULL);
    cJSON *j = js ? cJSON_Parse(js) : NULL;
    free(js);
    CHECK(j != NULL, "%s unreadable", path);
    if (!j)
        return;
    record r = {0};
    r.format = FORMAT_MESSAGES;
    const cJSON *msgs = cJSON_GetObjectItem(j, "messages"), *m;
    r.turns = calloc((size_t)cJSON_GetArraySize(msgs), sizeof *r.turns);
    cJSON_ArrayForEach(m, msgs) {
        record_turn *t = &r.turns[r.nturns++];
        t->role = strcmp(cJSON_GetObjectItem(m, "role")->valuestring, "assistant") == 0 ? ROLE_ASSISTANT : ROLE_USER;
        t->text = strdup(cJSON_GetObjectItem(m, "content")->valuestring);
        t->len = strlen(t->text);
    }
    cJSON_Delete(j);
    j = NULL;
    const char *v[][3] = {{"v1", "v1_spm", "mistral1"}, {"v2", "v2_spm", "mistral3"}, {"v3", "v3_spm", "mistral3"}};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/chat_templates/mistral/samples/no_tools/tokens_%s.json", testdata, v[k][0]);
        js = slurp(path, NULL);
        cJSON *doc = js ? cJSON_Parse(js) : NULL;
        const cJSON *want = doc ? cJSON_GetObjectItem(doc, "tokens") : NULL;
        free(js);
        snprintf(path, sizeof path, "%s/chat_templates/mistral/%s.jinja", testdata, v[k][1]);
        char *tpl = slurp(path, NULL);
        snprintf(path, sizeof path, "%s/%s.json", toks, v[k][2]);
        tokenizer *tok = tokenizer_load(path, err, sizeof err);
        chat_template *t = tpl ? chat_template_from_text(tpl, NULL, NULL, NULL, err, sizeof err) : NULL;
        free(tpl);
        CHECK(want && tok && t, "mistral sample %s: %s", v[k][0], err);
        if (want && tok && t) {
            int32_t *ids;
            int8_t *mask;
            int n = chat_encode(t, tok, &r, NULL, &ids, &mask, err, sizeof err);
            int nw = cJSON_GetArraySize(want), same = n == nw;
            for (int i = 0; i < n && same; i++)
                same = ids[i] == cJSON_GetArrayItem(want, i)->valueint;
            CHECK(same, "mistral sample no_tools with %s.jinja: ids differ from tokens_%s.json (%d vs %d ids)",
                  v[k][1], v[k][0], n, nw);
            if (n >= 0) {
                free(ids);
                free(mask);
            }
        }
        cJSON_Delete(doc);
        tokenizer_free(tok);
        chat_template_free(t);
    }
    record_free(&r);
}

// Continued pre-training: BOS (when the tokenizer adds one) + text + EOS, every token trained.
static void test_cpt(const char *toks) {
    char path[8192], err[512];
    snprintf(path, sizeof path, "%s/llama2.json", toks);
    tokenizer *tok = tokenizer_load(path, err, sizeof err);
    chat_template *t = chat_template_from_text(NULL, "llama2", NULL, NULL, err, sizeof err);
    CHECK(tok && t, "cpt: %s", err);
    if (tok && t) {
        record r = {0};
        r.format = FORMAT_CPT;
        r.text = "Once upon a time";
        r.text_len = strlen(r.text);
        int32_t *ids, *plain;
        int8_t *mask;
        int n = chat_encode(t, tok, &r, NULL, &ids, &mask, err, sizeof err);
        int np = tokenizer_encode(tok, r.text, r.text_len, 0, &plain, NULL, err, sizeof err);
        int ok = n == np + 2 && ids[0] == tokenizer_bos_id(tok) && ids[n - 1] == tokenizer_token_to_id(tok, "</s>");
        for (int i = 0; ok && i < np; i++)
            ok = ids[i + 1] == plain[i];
        for (int i = 0; ok && i < n; i++)
            ok = mask[i] == 1;
        CHECK(ok, "cpt: want <s> + ids(text) + </s>, all trained (%d ids, text alone %d)", n, np);
        if (n >= 0) {
            free(ids);
            free(mask);
        }
        if (np >= 0)
            free(plain);
    }
    tokenizer_free(tok);
    chat_template_free(t);
}

int main(void) {
    const char *testdata = test_env("QUARRY_TESTDATA", "../shared/testdata");
    char path[8192], out[2048];
    gen_cases("gen_mask_cases.py", "chat_mask_cases", 200, "tokenizer/jinja2", "", out, sizeof out);
    if (test_failures)
        return test_finish("test_chat_mask");
    static const char *names[] = {"llama3.1", "llama3.0", "llama2", "qwen2.5", "mistral-v1-spm", "mistral-v3-spm",
                                  "mistral-hf", "phi3.5", "qwen3"};
    int total = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.jsonl", out, names[i]);
        run_combo(path, &total);
    }
    char toks[2100], fallback[2100];
    snprintf(fallback, sizeof fallback, "%s/tokenizers", out);   // as gen_mask_cases.py chooses
    snprintf(toks, sizeof toks, "%s", test_env("QUARRY_TOKENIZER_CACHE", fallback));
    test_mistral_tokens(testdata, toks);
    test_cpt(toks);
    printf("chat mask: %d conversations encoded and compared with HF\n", total);
    return test_finish("test_chat_mask");
}
