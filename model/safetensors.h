// model/safetensors.h — read (mmap) and write safetensors files, single or sharded with
// model.safetensors.index.json. Every header field is checked; errors name file and tensor.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum { ST_F32 = 0, ST_F16, ST_BF16, ST_OTHER } st_dtype;

// The dtype as config.json's "torch_dtype" names it ("float32", "float16", "bfloat16"); NULL for others.
const char *st_dtype_torch_name(st_dtype dtype);

typedef struct {
    char *name;
    st_dtype dtype;
    char dtype_name[8];          // as in the header: "F32", "BF16", ...
    int ndim;
    int64_t shape[8];
    const void *data;            // into the mmap; valid while the set is open
    size_t nbytes;
    int file_index;              // which shard
} st_tensor;

typedef struct st_set st_set;    // all tensors of a checkpoint (one file or all shards)

// Opens PATH: a .safetensors file, an index.json, or a directory holding model.safetensors or
// model.safetensors.index.json. NULL with a message in err on any malformed header.
st_set *st_open(const char *path, char *err, size_t errlen);
void st_close(st_set *s);
int st_count(const st_set *s);
const st_tensor *st_get(const st_set *s, int i);
const st_tensor *st_find(const st_set *s, const char *name);   // NULL when absent
// Header "__metadata__" value for key, or NULL.
const char *st_metadata(const st_set *s, const char *key);

// Copies a tensor into dst as float32 (converting F16/BF16). 0 ok, -1 on a dtype it cannot read.
int st_read_f32(const st_tensor *t, float *dst);

// Parses a header (the JSON after the 8-byte length) against a data section of data_len
// bytes; used by st_open and by the fuzz harness. 0 ok, -1 with a message.
int st_parse_header(const char *json, size_t json_len, size_t data_len, const char *file_name,
                    char *err, size_t errlen);

// Writing: tensors are added with their data (copied or referenced until finish).
typedef struct st_writer st_writer;
st_writer *st_writer_begin(void);
// data must stay valid until st_writer_finish; nbytes must equal prod(shape) × dtype size.
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  const void *data, size_t nbytes);
// Writes one file with metadata {"format":"pt"} plus the given extra key/value pairs (may be 0).
// Writes to path.tmp, fsyncs, renames. 0 ok, -1 with a message.
int st_writer_finish(st_writer *w, const char *path, const char **meta_keys, const char **meta_values,
                     int nmeta, char *err, size_t errlen);
void st_writer_free(st_writer *w);

// float32 → bf16 with round-to-nearest-even (NaN kept NaN), and back; and fp16.
uint16_t f32_to_bf16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);
