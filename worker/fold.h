/* Folding ζ into the preceding norm (γ, β) or linear layer (output rows and bias), exactly. */
#ifndef ZF_FOLD_H
#define ZF_FOLD_H

#include "common/model.h"
#include "worker/block.h"

/* Folds group g's ζ [zf_group_in(c, g)] into its fold target in w (see zf_group_fold):
 *  ATTN_NORM/MLP_NORM: γ ⊙= ζ, β ⊙= ζ;  V_ROWS: V's row (kv·hd + i) and bias scaled by ζ of O's column i of any
 *  query head that reads that KV head (the ζ must be tied across those heads);  UP_ROWS: up/fc1 rows and bias
 *  scaled by ζ (through ReLU only if every ζ > 0).
 * The members' weights are not touched: the caller replaces them by their quantized form W_q / ζ (= scale·(q - z)).
 * Refuses (ZF_ERR_INPUT) a fold that would not be exact, saying why. */
zf_status zf_fold_zeta(const zf_model_config *c, zf_group g, const float *zeta, zf_block_weights *w);

/* The column-tie classes needed for group g's ζ to be foldable (GQA for O), or nclasses = 0 when no tie is needed.
 * cls must hold zf_group_in(c, g) entries. */
int64_t zf_fold_tie_classes(const zf_model_config *c, zf_group g, int32_t *cls);

#endif
