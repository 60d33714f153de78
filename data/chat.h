// data/chat.h — a record rendered as the model family's own chat_template renders it (jinja2 in
// transformers: trim_blocks, lstrip_blocks), written in C per family, plus the loss mask.
// The family comes from fingerprints of the template text (tokenizer_config.json's
// chat_template, chat_template.jinja or chat_template.json) or is forced by name. Rendering
// yields the text and byte spans marked trained/masked; encoding tokenizes the whole text once
// and gives each token the mask of the bytes it came from (1 = a loss target).
//
// Trained: what the model generates after the prompt: each assistant turn's content, the blank
// the template puts before it where the prompt ends at "[/INST]" (Llama 2, Mistral SentencePiece
// variants), and its end-of-turn token (<|eot_id|>, </s>, <|im_end|>, <|end|>); a final EOS.
// Qwen3: the "<think>\n…\n</think>\n\n" block the template writes into the last assistant turn
// (empty unless the data has reasoning) is trained with the answer: the generation prompt ends at
// "<|im_start|>assistant\n" and the model writes the block itself (TRL's {% generation %} for
// Qwen3 marks it too).
// gpt-oss (harmony): each answer's text and its <|end|>/<|return|>; the header
// "<|start|>assistant<|channel|>final<|message|>" is masked (the generation prompt is
// "<|start|>assistant": the model picks the channel, and Bedrock data, having no reasoning, would
// otherwise teach it to skip the analysis channel, which the template leaves out of these turns).
// Masked: BOS, system, user turns, role headers (what add_generation_prompt would add).
// train_on_prompt trains everything. CPT records: all trained.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "data/record.h"
#include "data/tokenizer.h"

typedef enum {
    CHAT_RAW = 0,          // no template (base model): the texts joined, EOS at the end
    CHAT_LLAMA2,           // Llama 2 chat: <s>[INST] <<SYS>>…<</SYS>> … [/INST] … </s>
    CHAT_LLAMA3,           // Llama 3.0 Instruct: headers + <|eot_id|>, no date line
    CHAT_LLAMA31,          // Llama 3.1 / 3.3: date line "26 Jul 2024" unless pinned
    CHAT_LLAMA32,          // Llama 3.2: date line from strftime_now("%d %b %Y") unless pinned
    CHAT_MISTRAL_V1,       // mistral-common v1: "[INST] sys\n\nu [/INST]a</s>", system in the first user turn
    CHAT_MISTRAL_V1_SPM,   // mistral-common v1_spm: " [INST] … [/INST] a</s>"
    CHAT_MISTRAL_V3,       // mistral-common v3 (tekken): "[INST]u[/INST]a</s>", system in the last user turn
    CHAT_MISTRAL_V3_SPM,   // mistral-common v2_spm / v3_spm: "[INST] u[/INST] a</s>", system in the last user turn
    CHAT_MISTRAL_NEMO,     // Mistral-Nemo-Instruct-2407 (HF): system only when the last message is a user turn
    CHAT_MISTRAL_HF,       // Mistral-7B-Instruct-v0.3 (HF): "[INST] u[/INST] a</s>", system as Nemo
    CHAT_MISTRAL_LEGACY,   // Mixtral-8x7B / first Mistral-7B-Instruct HF template: no system role
    CHAT_CHATML,           // ChatML (Qwen2/2.5: a default system prompt when none is given)
    CHAT_PHI3,             // Phi-3 / Phi-3.5: <|user|>\n…<|end|>\n, EOS at the end
    CHAT_QWEN3,            // Qwen3: ChatML, no default system, <think>…</think> on the turns after the last query
    CHAT_HARMONY,          // gpt-oss harmony: system message with a date, Bedrock's system as the developer message,
                           // answers in the final channel (<|return|> ends the last, <|end|> earlier ones)
} chat_family;

typedef struct {
    chat_family family;
    char *name;            // the family's name, as --template takes it
    char *bos;             // BOS token text ("<s>", "<|begin_of_text|>"); "" when none
    char *eos;             // EOS token text; "" when none
    char *default_system;  // ChatML: the template's default system prompt; NULL when none
    int system_if_nonempty;// Phi-3.5: an empty system prompt is left out
    int system_in_last_user;// mistral-hf revision: system in every user turn equal to the last user turn
    char *source;          // where the template came from (file), or "--template NAME"
    char *note;            // non-NULL when worth telling the user (e.g. two template sources)
} chat_template;

typedef struct {
    const char *date;      // Llama 3.1+: pins date_string ("26 Jul 2024"); gpt-oss: the "Current date:"
                           // ("2025-08-05"); NULL = template default
    time_t now;            // Llama 3.2, gpt-oss without date: strftime_now's clock; 0 = the current time
    int train_on_prompt;   // 1: every byte trained
} chat_options;

typedef struct {
    size_t start, end;     // byte range [start, end) in the rendered text
    int trained;
} chat_span;

typedef struct {
    char *text;            // NUL-terminated UTF-8
    size_t len;
    chat_span *spans;      // contiguous, cover [0, len), neighbours differ in .trained
    int nspans;
    int has_bos;           // the text begins with the BOS token text the template emitted
} chat_rendered;

// Names --template accepts, comma-separated ("llama2, llama3, llama3.1, ...").
const char *chat_family_names(void);

// The template of a model directory: tokenizer_config.json (chat_template as a string or a list
// of {name, template}: "default" wins), chat_template.jinja, chat_template.json; bos/eos from
// tokenizer_config.json. force_name (NULL = detect) picks the family by name. No template at
// all → CHAT_RAW. An unrecognised template → NULL with an error naming --template.
chat_template *chat_template_load(const char *model_dir, const char *force_name, char *err, size_t errlen);
// Detects the family of jinja source text (force_name NULL) or takes force_name; bos/eos NULL
// → the family's usual tokens.
chat_template *chat_template_from_text(const char *jinja, const char *force_name, const char *bos,
                                       const char *eos, char *err, size_t errlen);
void chat_template_free(chat_template *t);

// Renders r. Returns 0, or -1 with a message in err (the template's own raise_exception text
// where the template would raise).
int chat_render(const chat_template *t, const record *r, const chat_options *o, chat_rendered *out,
                char *err, size_t errlen);
void chat_rendered_free(chat_rendered *c);

// The prompt a model answers: r (its last turn a user turn; a CPT record as its text) rendered
// as the template renders it with add_generation_prompt=True — the assistant header where the
// template has one (Llama 3, ChatML, Phi-3; gpt-oss: "<|start|>assistant", the model picks the channel), nothing after [/INST] (Llama 2, Mistral) — and
// without the final EOS. For CHAT_RAW: the turns joined, then the separator the answer follows.
int chat_render_prompt(const chat_template *t, const record *r, const chat_options *o, chat_rendered *out,
                       char *err, size_t errlen);

// Renders r and tokenizes the text once (template tokens are special tokens; the tokenizer's
// BOS is prepended only when the template emitted none and the tokenizer adds one; raw/CPT
// renderings with no EOS text known get the tokenizer's EOS id). *ids and *mask (1 = trained)
// are malloc'ed, n entries. Returns n ≥ 0 or -1 with a message in err. Thread-safe.
int chat_encode(const chat_template *t, const tokenizer *tok, const record *r, const chat_options *o,
                int32_t **ids, int8_t **mask, char *err, size_t errlen);

// The per-token mask of an encoding of c->text, from the token byte offsets [offsets[2i],
// offsets[2i+1]): a token is trained when one of its non-blank bytes is trained, or, when all its
// bytes are blanks, when any of them is (a special token whose rstrip swallowed the answer's leading
// blank stays masked; "▁The" from the prompt's " " and the answer's "The" is trained). A
// zero-width token (added by the post-processor) is trained only with train_on_prompt.
void chat_mask_from_offsets(const chat_rendered *c, const int32_t *offsets, int n, int train_on_prompt,
                            int8_t *mask);
