/* One quantized linear layer of a run as GPTQ checkpoint tensors: exact padding, zero points per format, packing. */
#ifndef ZF_EXPORT_LAYER_H
#define ZF_EXPORT_LAYER_H

#include <stdint.h>

#include "common/shard.h"
#include "common/status.h"

/* checkpoint_format of a GPTQ checkpoint: "gptq" stores zero − 1 in qzeros (kernels add 1 back), "gptq_v2" zero. */
typedef enum { ZF_GPTQ_V1 = 1, ZF_GPTQ_V2 = 2 } zf_gptq_format;

typedef struct {
    int bits;
    int64_t out, in, ngroups;  /* after padding */
    int32_t *qweight;          /* [in·bits/32, out] */
    int32_t *qzeros;           /* [ngroups, out·bits/32] */
    float *scales;             /* [ngroups, out] */
    int32_t *g_idx;            /* [in] */
    float *bias;               /* [out], NULL when the layer has none */
    int64_t zeros_shifted;     /* (row, group) grids stored as q + 1 and zero + 1 (format gptq, zero point 0) */
} zf_gptq_layer;

/* Converts l (named name in messages) to GPTQ tensors of out_pad rows and in_pad columns (≥ l's). Padded rows and
 * columns decode to exact zeros: padded rows get scale 1 and q = zero = 1 (bias 0), padded columns q = the row's
 * zero in the group g_idx = k / group_size (0 per channel); groups beyond l's get scale 1, zero 1.
 * For ZF_GPTQ_V1 a grid with zero point 0 is stored as zero 1 with every code + 1, which decodes to the same
 * weights when the grid does not use the top code 2^bits − 1; otherwise ZF_ERR_INPUT names the layer, row and group.
 * Sizes: in_pad a multiple of 32, out_pad·bits a multiple of 32 (ZF_ERR_INPUT otherwise). */
zf_status zf_gptq_layer_build(const zf_shard_linear_data *l, const char *name, int64_t out_pad, int64_t in_pad,
                              int64_t group_size, zf_gptq_format format, zf_gptq_layer *g);
void zf_gptq_layer_free(zf_gptq_layer *g);

#endif
