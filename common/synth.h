/* Synthetic checkpoints: a config's tensors under their Hugging Face names, bf16, seeded values with outlier channels. */
#ifndef ZF_SYNTH_H
#define ZF_SYNTH_H

#include <stdint.h>

#include "common/model.h"
#include "common/status.h"

/* The distributions (also printed by `zfold help synth`): every value is N(mean, σ²) times its channel's factor. */
#define ZF_SYNTH_SIGMA_LINEAR 0.02   /* linear weights (and an untied lm_head) */
#define ZF_SYNTH_SIGMA_EMBED 0.02    /* token and learned position embeddings */
#define ZF_SYNTH_SIGMA_NORM 0.02     /* norm weights: mean 1 */
#define ZF_SYNTH_SIGMA_BIAS 0.01     /* linear and LayerNorm biases: mean 0 */
#define ZF_SYNTH_OUTLIER_COLS 0.005  /* fraction of a linear weight's input columns scaled (at least one) */
#define ZF_SYNTH_OUTLIER_COL_SCALE 10.0
#define ZF_SYNTH_OUTLIER_NORM 0.001  /* fraction of a norm weight's channels scaled (at least one) */
#define ZF_SYNTH_OUTLIER_NORM_SCALE 8.0
#define ZF_SYNTH_SHARD_BYTES 5e9     /* transformers' max_shard_size "5GB" */

typedef struct {
    uint64_t seed;
    double shard_bytes;  /* most bytes of tensors per file; a larger tensor gets a file of its own */
    int64_t tokens;      /* token ids for tokens.bin; 0: none */
} zf_synth_opts;

typedef struct {
    int64_t params, bytes;  /* elements and bytes of every tensor */
    int shards;
} zf_synth_result;

/* Writes out_dir/config.json (a copy of config_path), the bf16 safetensors (one model.safetensors, or
 * model-NNNNN-of-MMMMM.safetensors with model.safetensors.index.json) and, with o->tokens, tokens.bin. Memory
 * stays a few MB whatever the model's size: each file's header is written first, then its tensors in pieces. */
zf_status zf_synth_write(const char *config_path, const char *out_dir, const zf_synth_opts *o, zf_synth_result *r);

#endif
