/* Z-FOLD's steps on host arrays through the host backend, for the tests: the ALS alone and the α update. */
#ifndef ZF_ZFOLD_INTERNAL_H
#define ZF_ZFOLD_INTERNAL_H

#include "worker/zfold.h"

/* Algorithm 1 on W [rows, cols] with the undamped Hessian H. Starts from ζ = 1 and the o->grid grid (α, zero), then
 * alternates ζ (least squares over rows, tied by `tie` when given, ζ = 0 -> 1, ζ <= 0 kept at its previous value
 * when o->zeta_positive) and α (o->alpha: eq. 13 Hessian-weighted least squares with the zero fixed; the
 * Hessian-scored grid search on W ⊘ ζ that also picks the zero; or that search scored on H's diagonal, per group of
 * o->group_size columns) until ΔL increases, falls by less than o->als_tol of itself, or o->als_max_iter iterations
 * (diag's ΔL is its diagonal score).
 * Returns the best state: alpha, zero [rows, ngroups] (groups of o->group_size columns), zeta [cols];
 * *iters = iterations kept; *zeta_kept = refused ζ.
 * trace (NULL or o->als_max_iter + 1 entries) receives ΔL of the initial state and of every iteration computed,
 * *ntrace of them: entries 0..*iters are the kept states, an entry after them is the rejected one. */
zf_status zf_zfold_als(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                       const zf_zeta_tie *tie, float *alpha, float *zero, float *zeta, int *iters, int *zeta_kept,
                       double *trace, int *ntrace);

/* Eq. 13 for every row at once (one GEMM per chunk of rows): alpha[r] = (w̃_r H w_rᵀ) / (w̃_r H w̃_rᵀ), w̃ = Wt
 * (= ζ ⊙ (W_int - z)). A row whose ratio is not finite and positive keeps alpha_prev[r] (a scale must stay > 0). */
zf_status zf_zfold_alpha_lsq(const float *W, const float *Wt, int64_t rows, int64_t cols, const float *H,
                             const float *alpha_prev, float *alpha);

#endif
