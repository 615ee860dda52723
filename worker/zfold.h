/* Z-FOLD: step sizes S = ζ αᵀ by alternating least squares (Algorithm 1), then OPTQ on that grid (Algorithm 2). */
#ifndef ZF_ZFOLD_H
#define ZF_ZFOLD_H

#include "worker/qrun.h"

/* Algorithm 1 then, when o->zfold_optq, Algorithm 2 (OPTQ with the fixed grid scale = α, zero, and ζ); otherwise
 * the ALS codes. Codes and grids in r->q, r->scale, r->zero; fills out's zeta, g_idx, als_iters, zeta_kept, t_als
 * (and OPTQ's fields). */
zf_status zf_zfold_run(zf_qrun *r, const zf_zeta_tie *tie, zf_qresult *out);

#endif
