/* One transformer block's weights in fp32 and the model-level tensors (embeddings, final norm, head). */
#ifndef ZF_BLOCK_H
#define ZF_BLOCK_H

#include "common/model.h"
#include "common/safetensors.h"
#include "common/status.h"

typedef struct {
    float *lin_w[ZF_NLIN];   /* [out, in]; NULL when the family has no such layer */
    float *lin_b[ZF_NLIN];   /* [out]; NULL without bias */
    float *norm_w[2];        /* [d]: 0 = attention norm, 1 = MLP norm */
    float *norm_b[2];        /* [d]; NULL for RMSNorm */
} zf_block_weights;

typedef struct {
    float *embed;            /* [vocab, d] */
    float *pos;              /* OPT learned positions [max_pos + 2, d]; NULL for llama */
    float *final_norm_w;     /* [d] */
    float *final_norm_b;     /* [d] or NULL */
    float *head;             /* [vocab, d]; equals embed when tied (not a separate allocation) */
} zf_model_globals;

/* Loads block b from the checkpoint, converting to fp32 and checking every shape against the config. */
zf_status zf_block_load(const zf_model_config *c, const zf_safetensors *st, int64_t b, zf_block_weights *out);
/* Allocates a zero block with the config's shapes. */
zf_status zf_block_alloc(const zf_model_config *c, zf_block_weights *out);
zf_status zf_block_copy(const zf_model_config *c, const zf_block_weights *src, zf_block_weights *dst);
void zf_block_free(zf_block_weights *w);

zf_status zf_globals_load(const zf_model_config *c, const zf_safetensors *st, zf_model_globals *out);
void zf_globals_free(zf_model_globals *g);

/* Rejects NaN/Inf in any tensor, naming the tensor (for block b). */
zf_status zf_block_check_finite(const zf_model_config *c, const zf_block_weights *w, int64_t b);

#endif
