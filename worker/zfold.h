/* Z-FOLD: step sizes S = ζ αᵀ by alternating least squares (Algorithm 1), OPTQ on that grid (Algorithm 2), refits. */
#ifndef ZF_ZFOLD_H
#define ZF_ZFOLD_H

#include "worker/qrun.h"

/* Algorithm 1 then, when o->zfold_optq, Algorithm 2 (OPTQ with the fixed grids scale = α, zero per row or per
 * (row, group), and ζ; α first widened as o->grid_widen chooses, out->grid_widen), o->refit's per-channel refit of α and zero with the codes fixed, and with o->optq_fallback
 * plain OPTQ kept where its ΔL is lower (out->optq_kept, ζ = 1; each row's ΔL then in r->rowdl; o->optq_screen
 * screens it on a sample of rows first, out->optq_screen_rows); otherwise the ALS
 * codes. Codes and grids in r->q, r->scale, r->zero; fills out's zeta, g_idx, als_iters, zeta_kept, t_als (and
 * OPTQ's fields). */
zf_status zf_zfold_run(zf_qrun *r, const zf_zeta_tie *tie, zf_qresult *out);
/* Host bytes a [rows, cols] group's per-row widening holds besides the backend's buffers: each row's best codes and
 * the trial's. */
int64_t zf_zfold_widen_host_bytes(const zf_quant_opts *o, int64_t rows, int64_t cols);

#endif
