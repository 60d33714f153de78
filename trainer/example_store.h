// trainer/example_store.h — a Bedrock JSONL file → its token store (data/token_store.h), the one
// data path of train, eval and report: the token cache's file when it holds this data, else the
// file tokenized (trainer/examples.h) and streamed into a new store — the cache's (written once,
// atomically; data-parallel ranks started as processes wait on its lock and map the file the
// first one wrote), or a private one when the cache is off.
#pragma once
#include "examples.h"
#include "../data/token_store.h"

// The store of src->path (one reference for the caller), or NULL with err (invalid records are
// printed as examples_load prints them).
token_store *example_store_open(const examples_source *src, char *err, size_t errlen);
