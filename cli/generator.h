// cli/generator.h — answers from a loaded model for generate and report: the prompt encoded as
// training encodes it (the chat template, BOS only when the template emitted none), then tokens
// sampled (model/sample.h) with a KV cache (model_decode) until a stop token (the template's
// end-of-turn, the tokenizer's EOS, config.json's and generation_config.json's eos_token_id),
// max_new tokens, or the planned context.
#pragma once
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include "model_ref.h"
#include "data/chat.h"
#include "data/record.h"
#include "data/tokenizer.h"
#include "model/sample.h"

enum { GENERATOR_MAX_STOP = 16 };

typedef struct {
    model *m;
    const tokenizer *tok;
    sampler *smp;
    sample_params sp;
    int vocab;                // the model's
    int tok_vocab;            // the tokenizer's (≤ vocab: ids past it are never sampled)
    int ctx;                  // planned sequence length: prompt + answer must fit
    int stop[GENERATOR_MAX_STOP];   // token ids that end the answer
    int nstop;
    float *logits;            // (vocab)
    double load_seconds;      // generator_open's loading of the weights
} generator;

typedef struct {
    int ntok;                 // answer tokens generated (the stop token not counted)
    int stopped;              // 1: a stop token ended it
    double seconds;
    char *text;               // the whole answer decoded (skip special tokens), malloc'ed
} answer;

// The base's config.json, or generation_config.json; NULL when absent or unreadable.
cJSON *generator_read_json(const char *dir, const char *name);
// Loads ref on be for ctx_wanted positions (at most the model's max_position_embeddings: g->ctx
// says what was planned; ≥ 1), with the stops of tmpl (may be NULL), tok, config.json and
// generation_config.json, and a sampler for sp. 0 ok; -1 + message (g is then freed).
int generator_open(generator *g, const model_ref *ref, backend *be, const tokenizer *tok, const chat_template *tmpl,
                   const sample_params *sp, int ctx_wanted, char *err, size_t errlen);
void generator_free(generator *g);
// The prompt's ids as training encodes them (chat_encode). tmpl NULL: raw as the tokenizer
// encodes it with its special tokens. Returns the count (*ids malloc'ed), or -1 + message.
int generator_encode_prompt(const chat_template *tmpl, const tokenizer *tok, const record *r, const char *raw,
                            int32_t **ids, char *err, size_t errlen);
// Generates after ids[0..n) (ids has room for g->ctx + 1), streaming whole characters to out
// (NULL: nothing is streamed). The sampler restarts from sp's seed: an answer does not depend on
// those before it. 0 ok; -1 + message.
int generator_run(generator *g, int32_t *ids, int n, int max_new, FILE *out, answer *a, char *err, size_t errlen);
