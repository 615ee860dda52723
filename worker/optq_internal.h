/* OPTQ on host arrays through the host backend, for the tests: the whole method and the damped factor alone. */
#ifndef ZF_OPTQ_INTERNAL_H
#define ZF_OPTQ_INTERNAL_H

#include "worker/optq.h"

/* Quantizes W [rows, cols] with the undamped Hessian H [cols, cols] into out (allocated with the right ngroups), on
 * the host: fills q, scale, zero, g_idx, damp_used, damp_retries, dead_inputs, t_factor and t_loop (not deq or ΔL).
 * Grids: fix_scale/fix_zero [rows] when given (Z-FOLD's α and zero; per channel only), else fitted with o->grid
 * from the full matrix, per static group, or per dynamic group on the already-updated W.
 * zeta [cols] (NULL = ones) multiplies the step of column j: code = clamp(round(w / (scale_r·ζ_j)) + zero_r).
 * That is Algorithm 2 of Z-FOLD, and equals OPTQ on W ⊘ ζ with H' = diag(ζ)(H + λI)diag(ζ) (tested). */
zf_status zf_optq(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                  const float *fix_scale, const float *fix_zero, const float *zeta, zf_qresult *out);

/* U = upper Cholesky factor of (Hp + λI)⁻¹ with λ = damp·mean(diag Hp), Hp = H[perm][:, perm] with zero diagonal
 * entries replaced by 1 (dead inputs), perm NULL = identity. Retries with damp ×10 up to o->damp_retries times
 * (logged); ZF_ERR_NUMERIC naming the size and the damps tried when every attempt fails. U is [n, n], row-major,
 * strictly lower part zero. On the host. */
zf_status zf_optq_factor(const zf_quant_opts *o, const float *H, int64_t n, const int64_t *perm, float *U,
                         double *damp_used, int *retries);

#endif
