/* Z-FOLD: step sizes S = ζ αᵀ by alternating least squares (Algorithm 1), then OPTQ on that grid (Algorithm 2). */
#ifndef ZF_ZFOLD_H
#define ZF_ZFOLD_H

#include "worker/qrun.h"

/* ζ from its per-column sums num/den (Σ W·Ŵ, Σ Ŵ²): pooled over each tie class (cnum/cden: [nclasses] scratch),
 * ζ = num/(den + 1e-10), 0 -> 1, and a ζ <= 0 refused (counted in *kept) when o->zeta_positive. */
void zf_zeta_from_sums(const zf_quant_opts *o, int64_t cols, const zf_zeta_tie *tie, double *num, double *den,
                       double *cnum, double *cden, float *zeta, int *kept);

/* Algorithm 1 on W [rows, cols] with the undamped Hessian H. Starts from ζ = 1 and the o->grid grid (α, zero), then
 * alternates ζ (least squares over rows, tied by `tie` when given, ζ = 0 -> 1, ζ <= 0 kept at its previous value
 * when o->zeta_positive) and α (eq. 13 Hessian-weighted least squares with the zero fixed, or the Hessian-scored
 * grid search on W ⊘ ζ that also picks the zero, o->alpha) until ΔL increases or o->als_max_iter iterations.
 * Returns the best state: alpha, zero [rows], zeta [cols]; *iters = iterations kept; *zeta_kept = refused ζ.
 * trace (NULL or o->als_max_iter + 1 entries) receives ΔL of the initial state and of every iteration computed,
 * *ntrace of them: entries 0..*iters are the kept states, an entry after them is the rejected one. */
zf_status zf_zfold_als(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                       const zf_zeta_tie *tie, float *alpha, float *zero, float *zeta, int *iters, int *zeta_kept,
                       double *trace, int *ntrace);

/* Eq. 13 for every row at once (one GEMM per chunk of rows): alpha[r] = (w̃_r H w_rᵀ) / (w̃_r H w̃_rᵀ), w̃ = Wt
 * (= ζ ⊙ (W_int - z)). A row whose ratio is not finite and positive keeps alpha_prev[r] (a scale must stay > 0). */
zf_status zf_zfold_alpha_lsq(const float *W, const float *Wt, int64_t rows, int64_t cols, const float *H,
                             const float *alpha_prev, float *alpha);

/* Eq. 13's ratio rule: alpha[r] = num[r] / den[r] when finite and positive (also as a float), else alpha_prev[r]. */
void zf_zfold_alpha_from_sums(int64_t rows, const double *num, const double *den, const float *alpha_prev,
                              float *alpha);

/* zf_zfold_als on r's backend; alpha, zero, zeta and trace on the host. */
zf_status zf_zfold_als_run(zf_qrun *r, const zf_zeta_tie *tie, float *alpha, float *zero, float *zeta, int *iters,
                           int *zeta_kept, double *trace, int *ntrace);
/* Algorithm 1 then, when o->zfold_optq, Algorithm 2 (OPTQ with the fixed grid scale = α, zero, and ζ); otherwise
 * the ALS codes. Codes and grids in r->q, r->scale, r->zero; fills out's zeta, g_idx, als_iters, zeta_kept, t_als
 * (and OPTQ's fields). */
zf_status zf_zfold_run(zf_qrun *r, const zf_zeta_tie *tie, zf_qresult *out);

#endif
