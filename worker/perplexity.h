/* Perplexity by the GPTQ protocol: non-overlapping seq windows, tail dropped, tokens 1..seq-1 predicted. */
#ifndef ZF_PERPLEXITY_H
#define ZF_PERPLEXITY_H

#include <stdint.h>

#include "common/model.h"
#include "worker/backend.h"
#include "worker/block.h"

/* Supplies block b's weights; the pointer stays valid until the next call. */
typedef zf_status (*zf_block_source_fn)(void *ctx, int64_t b, const zf_block_weights **out);

typedef struct {
    double nll_sum;          /* Σ -log p(target), in double */
    int64_t predictions;
    int64_t windows;
} zf_nll;

/* Evaluates windows [win_begin, win_end) of the token stream (window w = tokens[w·seq .. (w+1)·seq)),
 * chunk_windows at a time (memory ∝ chunk · seq · max(d, vocab)). The blocks run on be (NULL: the CPU). */
zf_status zf_eval_nll(zf_backend *be, const zf_model_config *c, const zf_model_globals *g, zf_block_source_fn source, void *source_ctx,
                      const int32_t *tokens, int64_t seq, int64_t win_begin, int64_t win_end, int64_t chunk_windows,
                      zf_nll *out);
/* Largest host bytes of evaluating chunk windows of seq tokens on the host kernels: the chunk's activations,
 * one block's intermediates for it, the head's logits and the per-token NLL. */
double zf_eval_chunk_bytes(const zf_model_config *c, int64_t seq, int64_t chunk);
/* Windows per chunk: the most, up to ZF_EVAL_CHUNK_MAX, whose zf_eval_chunk_bytes fit budget_bytes (at least 1). */
#define ZF_EVAL_CHUNK_MAX 16
int64_t zf_eval_auto_chunk(const zf_model_config *c, int64_t seq, double budget_bytes);
/* Number of full windows in a stream of n tokens. */
int64_t zf_eval_windows(int64_t ntokens, int64_t seq);
double zf_nll_ppl(const zf_nll *n);

/* A block source reading the checkpoint (fp32 copy of one block at a time). */
typedef struct {
    const zf_model_config *cfg;
    const zf_safetensors *st;
    zf_block_weights cur;
    int64_t cur_block;
} zf_checkpoint_source;
void zf_checkpoint_source_init(zf_checkpoint_source *s, const zf_model_config *c, const zf_safetensors *st);
zf_status zf_checkpoint_source_get(void *ctx, int64_t b, const zf_block_weights **out);
void zf_checkpoint_source_free(zf_checkpoint_source *s);

#endif
