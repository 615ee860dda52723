/* The model forward on the CPU in fp32: embeddings, a block (llama or opt) with input capture, final norm, logits and next-token NLL. */
#ifndef ZF_FORWARD_H
#define ZF_FORWARD_H

#include <stdint.h>

#include "common/model.h"
#include "worker/block.h"

/* Called with the input of every linear group while a block runs: x [ntok, dim] row-major. */
typedef void (*zf_capture_fn)(void *ctx, zf_group g, const float *x, int64_t ntok, int64_t dim);

/* Rejects a model config the forward cannot run (family, sizes, heads, rotary), naming the field. */
zf_status zf_forward_check_config(const zf_model_config *c);

/* cos/sin [seq, hd/2] of the rotary embedding in the transformers convention: inv_freq = 1/θ^(2i/hd) and the
 * angles pos·inv_freq in fp32 (the CUDA forward uploads the same table). */
void zf_rope_table(const zf_model_config *c, int64_t seq, float *cosv, float *sinv);
/* x [nwin·seq, d] = embeddings of tokens [nwin, seq] (plus OPT's learned positions). */
zf_status zf_embed(const zf_model_config *c, const zf_model_globals *g, const int32_t *tokens, int64_t nwin,
                   int64_t seq, float *x);
/* In place: x [nwin·seq, d] ← block(x); each window is an independent sequence at positions 0..seq-1.
 * capture may be NULL. */
/* Floats per token of the block forward's largest intermediate: q, k, v and the attention mix, or gate/up (fc1). */
int64_t zf_forward_big_floats(const zf_model_config *c);
zf_status zf_block_forward(const zf_model_config *c, const zf_block_weights *w, float *x, int64_t nwin, int64_t seq,
                           zf_capture_fn capture, void *capture_ctx);
/* logits [ntok, vocab] = head(final_norm(x [ntok, d])). */
zf_status zf_logits(const zf_model_config *c, const zf_model_globals *g, const float *x, int64_t ntok, float *logits);
/* -log softmax(logits)[target] in double from one row of fp32 logits (shifted by the max). */
double zf_row_nll(const float *logits, int64_t vocab, int32_t target);
/* nll [nwin·(seq-1)] = -log p(tokens[i·seq + p + 1]) at positions p < seq-1 of each window i, from the last
 * block's output x [nwin·seq, d]: final norm, head, log-softmax. */
zf_status zf_token_nll(const zf_model_config *c, const zf_model_globals *g, const float *x, const int32_t *tokens,
                       int64_t nwin, int64_t seq, double *nll);

#endif
