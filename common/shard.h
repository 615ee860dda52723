/* HDF5 shards of a run: one file per quantized block and one for the unquantized tensors, written atomically
 * and read back with every attribute, rank, shape and code range checked. */
#ifndef ZF_SHARD_H
#define ZF_SHARD_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"

#define ZF_SHARD_FORMAT "zfold-shard"
#define ZF_SHARD_VERSION 1

/* One quantized linear layer as stored: codes packed in the GPTQ layout along the input axis. */
typedef struct {
    const char *name;          /* e.g. "self_attn.q_proj" */
    int bits;
    int64_t out, in, ngroups, group_size;
    const uint8_t *q;          /* [out, in] codes */
    const float *scale;        /* [out, ngroups] (stored transposed as [ngroups, out], GPTQ order) */
    const float *zero;         /* [out, ngroups] integer zero points */
    const int32_t *g_idx;      /* [in] */
    const float *zeta;         /* [in] ζ that was folded into the preceding layer (ones if none) */
    const float *bias;         /* [out] or NULL (already carries any folded ζ) */
    double dl_before, dl_after;
    int als_iters;
    double damp_used;
    int damp_retries;
} zf_shard_linear;

/* A plain fp32 tensor (norm weights, embeddings, ...). */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[2];
    const float *data;
} zf_shard_tensor;

/* Writes path atomically (temporary name, fsync, rename). kind is "block" or "unquantized"; block is the block
 * index (-1 for unquantized); provenance_json is stored as the /provenance group's "config" attribute. */
zf_status zf_shard_write(const char *path, const char *kind, int64_t block, int nlin, const zf_shard_linear *lin,
                         int ntensors, const zf_shard_tensor *tensors, const char *provenance_json);

/* One quantized linear layer as read back: codes unpacked, scales and zeros in [out, ngroups] order. */
typedef struct {
    char name[256];
    int bits;
    int64_t out, in, ngroups, group_size;
    uint8_t *q;                /* [out, in] codes */
    float *scale;              /* [out, ngroups] */
    float *zero;               /* [out, ngroups] */
    int32_t *g_idx;            /* [in] */
    float *zeta;               /* [in] */
    float *bias;               /* [out], NULL if absent */
    double dl_before, dl_after;
    int als_iters;
    double damp_used;
    int damp_retries;
} zf_shard_linear_data;

typedef struct {
    char name[256];
    int ndim;
    int64_t shape[2];          /* shape[1] = 0 when ndim = 1 */
    float *data;
} zf_shard_tensor_data;

/* A whole shard in memory; layers and tensors in HDF5 link-name order (alphabetical), not writing order. */
typedef struct {
    char kind[32];             /* "block" or "unquantized" */
    int64_t block;             /* -1 for unquantized */
    int nlin;
    zf_shard_linear_data *lin;
    int ntensors;
    zf_shard_tensor_data *tensors;
    char *config_yaml;         /* /provenance "config" attribute, NULL if absent */
} zf_shard_data;

/* Reads a shard written by zf_shard_write. Any problem with the file (not HDF5, truncated, missing or misshapen
 * dataset, wrong format, codes out of range, non-finite floats) returns ZF_ERR_INPUT with a message naming the
 * file, the dataset or attribute and what was expected; out is then empty (zf_shard_data_free is still safe). */
zf_status zf_shard_read(const char *path, zf_shard_data *out);
void zf_shard_data_free(zf_shard_data *d);

#endif
