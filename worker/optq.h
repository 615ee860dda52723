/* OPTQ / GPTQ (`fasterquant`): blocked column-by-column quantization with error feedback through chol(H⁻¹). */
#ifndef ZF_OPTQ_H
#define ZF_OPTQ_H

#include "worker/qrun.h"

/* OPTQ on r's backend: codes in r->q, grids in r->scale/zero; fix_scale, fix_zero, zeta are host arrays or NULL;
 * fills out's g_idx, damp_used, damp_retries, dead_inputs, t_factor, t_loop. Grids: fix_scale/fix_zero [rows] when
 * given (Z-FOLD's α and zero; per channel only), else fitted with o->grid from the full matrix, per static group, or
 * per dynamic group on the already-updated W. zeta [cols] (NULL = ones) multiplies the step of column j. The
 * damped factor retries with damp ×10 up to o->damp_retries times (logged). */
zf_status zf_optq_run(zf_qrun *r, const float *fix_scale, const float *fix_zero, const float *zeta, zf_qresult *out);

/* r->Xw = U⁻ᵀ Wt (r->ldx = r->rows): the weights in the factor's basis, in processing order, with dead inputs zeroed
 * (H + λI = RRᵀ with R = U⁻¹ gives x = w R, so x·x = w (H + λI) wᵀ), and U factored first when it is not yet
 * (out's damp_used, damp_retries, t_factor). Every later column loop on r, or on a row view of it, gathers each
 * row's Σ err·x in r->rowex: W - Q = E U, so that is ΔW (H + λI) Wᵀ. */
zf_status zf_optq_whiten(zf_qrun *r, zf_qresult *out);

#endif
