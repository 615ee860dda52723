/* safetensors files: mmap reader (single file or sharded with model.safetensors.index.json) and atomic writers. */
#ifndef ZF_SAFETENSORS_H
#define ZF_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"

#define ZF_ST_MAX_DIMS 8

typedef struct {
    const char *name;
    zf_dtype dtype;
    int ndim;
    int64_t shape[ZF_ST_MAX_DIMS];
    int64_t numel;
    const void *data;      /* points into the mmap; may be unaligned */
    size_t nbytes;
    const char *file;      /* path of the file that holds it */
} zf_st_tensor;

typedef struct zf_safetensors zf_safetensors;

/* Opens a safetensors file, or a directory holding model.safetensors or model.safetensors.index.json
 * (sharded). Every header field is validated against the file size. */
zf_status zf_st_open(const char *path, zf_safetensors **out);
void zf_st_close(zf_safetensors *st);

/* NULL when absent (not an error by itself; callers decide). */
const zf_st_tensor *zf_st_find(const zf_safetensors *st, const char *name);
/* Same, allocating the destination (free with free()). */
zf_status zf_st_load_f32(const zf_safetensors *st, const char *name, int ndim, const int64_t *shape, float **dst);
/* A fingerprint (xxh64) of every tensor's name, dtype, shape and size; stable across runs. */
uint64_t zf_st_fingerprint(const zf_safetensors *st);
/* The content of tensor i (in name order, i < zf_st_tensor_count) as XXH64 of its stored bytes, taken when it was
 * read (a read also refuses non-finite values, naming the tensor and index); false while it has not been read. */
size_t zf_st_tensor_count(const zf_safetensors *st);
bool zf_st_content_hash(const zf_safetensors *st, size_t i, const char **name, uint64_t *hash);

/* Writer: collects tensors and writes one file atomically (temporary name, fsync, rename). */
typedef struct zf_st_writer zf_st_writer;
zf_st_writer *zf_st_writer_new(void);
/* Copies the data. dtype F32, F64, I32, F16, BF16, ... as given. */
zf_status zf_st_writer_add(zf_st_writer *w, const char *name, zf_dtype dtype, int ndim, const int64_t *shape,
                           const void *data);
/* Adds a string entry to __metadata__. */
zf_status zf_st_writer_meta(zf_st_writer *w, const char *key, const char *value);
zf_status zf_st_writer_save(zf_st_writer *w, const char *path);
void zf_st_writer_free(zf_st_writer *w);

/* Streaming writer, for files larger than memory: the header is written from the tensors' shapes first, then
 * their bytes in the listed order, a piece at a time; atomic like the writer above. */
typedef struct {
    const char *name;
    zf_dtype dtype;
    int ndim;
    int64_t shape[ZF_ST_MAX_DIMS];
} zf_st_spec;
typedef struct zf_st_stream zf_st_stream;
/* Creates path's temporary file and writes the header of specs[0..n) (in that order) with the __metadata__
 * pairs of meta (NULL, or key, value, ..., NULL). */
zf_status zf_st_stream_open(const char *path, const zf_st_spec *specs, size_t n, const char *const *meta,
                            zf_st_stream **out);
/* The next len bytes of the tensors' data: each tensor's bytes in turn, in any number of pieces. */
zf_status zf_st_stream_write(zf_st_stream *s, const void *data, size_t len);
/* Publishes the file when status is ZF_OK and every byte was written; otherwise removes the temporary file and
 * returns the failure (after a failed write, saying the partial file was removed). Frees s. */
zf_status zf_st_stream_close(zf_st_stream *s, zf_status status);

#endif
