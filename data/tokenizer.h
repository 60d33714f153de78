// data/tokenizer.h — a Hugging Face tokenizer.json (BPE: byte-level with a Split regex, or
// SentencePiece-style with ▁ and byte fallback) run exactly as HF `tokenizers` runs it.
// Anything in a tokenizer.json this code does not implement is refused at load with its name.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

// Loads FILE (a tokenizer.json) or DIR/tokenizer.json. NULL with a message in err on failure.
tokenizer *tokenizer_load(const char *path, char *err, size_t errlen);
void tokenizer_free(tokenizer *t);

// Encodes text (len bytes of UTF-8; not NUL-terminated necessarily). Added/special tokens in
// the text are matched as HF does. add_special: apply the post-processor (BOS/EOS).
// Returns the number of ids (≥ 0), or -1 with a message in err. *ids is malloc'ed (caller
// frees). When offsets is not NULL, *offsets receives 2 per id: the [start, end) byte range in
// text the token came from (as HF's offsets, in bytes; special tokens added by the
// post-processor get [0,0)).
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_special,
                     int32_t **ids, int32_t **offsets, char *err, size_t errlen);

// Decodes ids to UTF-8 as HF's decode(ids, skip_special_tokens=skip_special). Returns a
// malloc'ed NUL-terminated string (length in *len when not NULL), or NULL on an unknown id.
char *tokenizer_decode(const tokenizer *t, const int32_t *ids, int n, int skip_special, size_t *len);

int tokenizer_vocab_size(const tokenizer *t);              // including added tokens
int tokenizer_token_to_id(const tokenizer *t, const char *token);   // -1 when absent
const char *tokenizer_id_to_token(const tokenizer *t, int id);      // NULL when out of range
int tokenizer_bos_id(const tokenizer *t);   // from the post-processor / added tokens; -1 none
int tokenizer_eos_id(const tokenizer *t);   // -1 none (the chat layer also reads tokenizer_config.json)
int tokenizer_adds_bos(const tokenizer *t); // 1 when encode(add_special=1) prepends BOS
