// cli/cmd_init.c — `quarry init --config FILE --out DIR [--tokenizer DIR] [--seed S] [--dtype bf16|fp32]`:
// a randomly initialised Hugging Face checkpoint of any supported config (the demo's tiny model,
// real shapes for benchmarks without downloads). Built in DIR.tmp-XXXXXX, renamed when complete.
#include "args.h"
#include "../data/fileio.h"
#include "commands.h"
#include "../model/config.h"
#include "../model/init.h"
#include "../model/names.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHARD_BYTES (5ull * 1000 * 1000 * 1000)   // transformers' 5GB shards

// A whole text file, refusing one over max bytes (a config or tokenizer file, not weights).
static char *read_text(const char *path, size_t max, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st) == 0 && (size_t)st.st_size > max) {
        snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
        return NULL;
    }
    char *text;
    return fileio_read_all(path, &text, NULL, err, errlen) ? NULL : text;
}

static int write_text(const char *path, const char *text, char *err, size_t errlen) {
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    size_t n = strlen(text);
    int bad = fwrite(text, 1, n, f) != n || (n && text[n - 1] != '\n' && fputc('\n', f) == EOF) || fflush(f) != 0 ||
              fsync(fileno(f)) != 0;
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int copy_file(const char *from, const char *to, char *err, size_t errlen) {
    FILE *in = fopen(from, "rb");
    if (!in) {
        snprintf(err, errlen, "%s: cannot open: %s", from, strerror(errno));
        return -1;
    }
    FILE *out = fopen(to, "wb");
    if (!out) {
        snprintf(err, errlen, "%s: cannot create: %s", to, strerror(errno));
        fclose(in);
        return -1;
    }
    char buf[1 << 16];
    size_t n;
    int bad = 0;
    while (!bad && (n = fread(buf, 1, sizeof buf, in)) > 0) bad = fwrite(buf, 1, n, out) != n;
    if (ferror(in)) bad = 1;
    if (fflush(out) != 0 || fsync(fileno(out)) != 0) bad = 1;
    fclose(in);
    if (fclose(out) != 0) bad = 1;
    if (bad) {
        snprintf(err, errlen, "copying %s to %s failed: %s", from, to, strerror(errno));
        return -1;
    }
    return 0;
}

// 1 when path is a directory with entries, 0 when empty, -1 when not a directory.
static int dir_nonempty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *e;
    int any = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            any = 1;
            break;
        }
    closedir(d);
    return any;
}

// The highest token id a tokenizer.json defines (model vocab and added tokens), or -1.
static long tokenizer_max_id(const char *path, char *err, size_t errlen) {
    char *text = read_text(path, 512u << 20, err, errlen);
    if (!text) return -2;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) {
        snprintf(err, errlen, "%s: not valid JSON", path);
        return -2;
    }
    long max = -1;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = model ? cJSON_GetObjectItemCaseSensitive(model, "vocab") : NULL;
    if (cJSON_IsObject(vocab)) {
        for (const cJSON *e = vocab->child; e; e = e->next)
            if (cJSON_IsNumber(e) && e->valuedouble > max) max = (long)e->valuedouble;
    } else if (cJSON_IsArray(vocab)) {
        max = (long)cJSON_GetArraySize(vocab) - 1;   // Unigram: [piece, score] pairs by id
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    for (const cJSON *e = cJSON_IsArray(added) ? added->child : NULL; e; e = e->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (cJSON_IsNumber(id) && id->valuedouble > max) max = (long)id->valuedouble;
    }
    cJSON_Delete(root);
    return max;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0 && errno == EISDIR) remove_tree(p);
    }
    closedir(d);
    rmdir(dir);
}

static const char *const tokenizer_files[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja",
};

int cmd_init(int argc, char **argv) {
    const char *config_path = NULL, *out = NULL, *tok = NULL, *dtype_s = "bf16";
    int seed = 0;
    long long shard_size = (long long)SHARD_BYTES;
    const arg_spec specs[] = {
        {"config", ARG_STRING, &config_path, "FILE", "a Hugging Face config.json (or a directory holding one)"},
        {"out", ARG_STRING, &out, "DIR", "the checkpoint directory to create (must not exist or be empty)"},
        {"tokenizer", ARG_STRING, &tok, "DIR", "copy tokenizer.json, tokenizer_config.json, ... from DIR"},
        {"seed", ARG_INT, &seed, "S", "random seed (default 0); the same seed gives the same bytes"},
        {"dtype", ARG_STRING, &dtype_s, "bf16|fp32", "weight dtype (default bf16)"},
        {"shard-size", ARG_BYTES, &shard_size, "SIZE", "largest safetensors shard (default 5GB)"},
    };
    const arg_parser p = {
        "init", "quarry init --config FILE --out DIR [--tokenizer DIR] [--seed S] [--dtype bf16|fp32] [--shard-size SIZE]",
        "Writes a randomly initialised Hugging Face checkpoint for a supported config (Llama, Mistral,\n"
        "Qwen2): safetensors weights initialised as transformers does (normal with std initializer_range,\n"
        "RMSNorm weights one, biases zero), config.json with torch_dtype set, and the tokenizer files\n"
        "of --tokenizer. Checkpoints over --shard-size are sharded with model.safetensors.index.json.",
        specs, (int)(sizeof specs / sizeof specs[0]), 0, 0};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    if (!config_path || !out) {
        fprintf(stderr, "quarry init: error: --config and --out are required\nusage: %s\n", p.usage);
        return 2;
    }
    st_dtype dtype;
    const char *torch_dtype;
    if (!strcmp(dtype_s, "bf16") || !strcmp(dtype_s, "bfloat16")) {
        dtype = ST_BF16;
        torch_dtype = "bfloat16";
    } else if (!strcmp(dtype_s, "fp32") || !strcmp(dtype_s, "float32")) {
        dtype = ST_F32;
        torch_dtype = "float32";
    } else {
        fprintf(stderr, "quarry init: error: --dtype must be bf16 or fp32, got '%s'\n", dtype_s);
        return 2;
    }
    if (shard_size < 1) {
        fprintf(stderr, "quarry init: error: --shard-size must be positive\n");
        return 2;
    }
    if (seed < 0) {
        fprintf(stderr, "quarry init: error: --seed must be a non-negative integer\n");
        return 2;
    }

    char err[12000];
    model_config cfg;
    if (model_config_load(&cfg, config_path, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    char cfg_file[4096];
    struct stat st;
    if (stat(config_path, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(cfg_file, sizeof cfg_file, "%s/config.json", config_path);
    else snprintf(cfg_file, sizeof cfg_file, "%s", config_path);

    // Never overwrite: --out must be absent or an empty directory.
    if (stat(out, &st) == 0) {
        int ne = dir_nonempty(out);
        if (ne != 0) {
            fprintf(stderr, "quarry init: error: %s %s; refusing to overwrite it\nhint: choose a new --out directory\n",
                    out, ne < 0 ? "exists and is not a directory" : "is not empty");
            return 1;
        }
    }
    char tokjson[4200];
    if (tok) {
        snprintf(tokjson, sizeof tokjson, "%s/tokenizer.json", tok);
        char tokmodel[4200];
        snprintf(tokmodel, sizeof tokmodel, "%s/tokenizer.model", tok);
        if (access(tokjson, R_OK) != 0 && access(tokmodel, R_OK) != 0) {
            fprintf(stderr, "quarry init: error: %s holds neither tokenizer.json nor tokenizer.model\n", tok);
            return 1;
        }
        if (access(tokjson, R_OK) == 0) {
            long max = tokenizer_max_id(tokjson, err, sizeof err);
            if (max == -2) {
                fprintf(stderr, "quarry init: error: %s\n", err);
                return 1;
            }
            if (max >= cfg.vocab_size) {
                fprintf(stderr,
                        "quarry init: error: %s defines token ids up to %ld but %s has vocab_size %d\n"
                        "hint: set vocab_size to at least %ld in the config\n",
                        tokjson, max, cfg_file, cfg.vocab_size, max + 1);
                return 1;
            }
        }
    }

    // config.json: the input byte for byte, with torch_dtype (and transformers 5's "dtype") set.
    char *text = read_text(cfg_file, 64u << 20, err, sizeof err);
    if (!text) {
        fprintf(stderr, "quarry init: error: %s\n", err);
        return 1;
    }
    cJSON *cj = cJSON_Parse(text);
    char *cfg_text = cj ? model_config_text_set_dtype(text, torch_dtype) : NULL;
    free(text);
    if (!cfg_text) {
        fprintf(stderr, "quarry init: error: %s could not be re-read\n", cfg_file);
        cJSON_Delete(cj);
        return 1;
    }
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(cj, "pad_token_id");
    int pad_id = cJSON_IsNumber(pad) ? (int)pad->valuedouble : -1;
    // generation_config.json as save_pretrained derives it from the model config.
    cJSON *gen = cJSON_CreateObject();
    if (gen) {
        cJSON_AddBoolToObject(gen, "_from_model_config", 1);
        const char *keys[] = {"bos_token_id", "eos_token_id", "pad_token_id"};
        for (int i = 0; i < 3; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(cj, keys[i]);
            if (v && !cJSON_IsNull(v)) cJSON_AddItemToObject(gen, keys[i], cJSON_Duplicate(v, 1));
        }
    }
    if (!gen) {
        cJSON_Delete(cj);
        free(cfg_text);
        fprintf(stderr, "quarry init: error: out of memory\n");
        return 1;
    }

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", out);
    if (fileio_mkdir_parent(out, err, sizeof err)) {
        fprintf(stderr, "quarry init: error: cannot create the directory that holds %s: %s\n", out, err);
        cJSON_Delete(gen);
        cJSON_Delete(cj);
        free(cfg_text);
        return 1;
    }
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "quarry init: error: cannot create a directory beside %s: %s\n", out, strerror(errno));
        cJSON_Delete(gen);
        cJSON_Delete(cj);
        free(cfg_text);
        return 1;
    }
    mode_t mask = umask(0);   // mkdtemp makes 0700; the checkpoint gets the usual permissions
    umask(mask);
    if (chmod(tmp, 0777 & ~mask) != 0) fprintf(stderr, "quarry init: warning: chmod %s: %s\n", tmp, strerror(errno));
    size_t nparams = model_config_num_params(&cfg);
    double bytes = (double)nparams * (dtype == ST_F32 ? 4 : 2);
    fprintf(stderr, "quarry init: %s, %zu parameters (%.*f %s in %s), seed %d\n", cfg.architecture, nparams,
            bytes >= 1e9 ? 2 : 1, bytes >= 1e9 ? bytes / 1e9 : bytes / 1e6, bytes >= 1e9 ? "GB" : "MB", dtype_s, seed);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char path[4400];
    int failed = 0;
    snprintf(path, sizeof path, "%s/config.json", tmp);
    failed = write_text(path, cfg_text, err, sizeof err);
    free(cfg_text);
    if (!failed) {
        snprintf(path, sizeof path, "%s/generation_config.json", tmp);
        failed = model_write_json(path, gen, err, sizeof err);
    }
    cJSON_Delete(gen);
    cJSON_Delete(cj);
    if (!failed) failed = model_init_write(&cfg, tmp, (uint64_t)seed, dtype, pad_id, (size_t)shard_size, err, sizeof err);
    for (size_t i = 0; !failed && tok && i < sizeof tokenizer_files / sizeof tokenizer_files[0]; i++) {
        char from[4400];
        snprintf(from, sizeof from, "%s/%s", tok, tokenizer_files[i]);
        if (access(from, F_OK) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", tmp, tokenizer_files[i]);
        failed = copy_file(from, path, err, sizeof err);
    }
    if (!failed) {
        // An empty --out made by the user is replaced by the finished directory.
        if (stat(out, &st) == 0 && dir_nonempty(out) == 0 && rmdir(out) != 0) {
            snprintf(err, sizeof err, "cannot replace the empty directory %s: %s", out, strerror(errno));
            failed = 1;
        } else if (rename(tmp, out) != 0) {
            snprintf(err, sizeof err, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
            failed = 1;
        }
    }
    if (failed) {
        fprintf(stderr, "quarry init: error: %s\n", err);
        remove_tree(tmp);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "quarry init: wrote %s in %.1f s\n", out,
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return 0;
}
