/* Z-FOLD's refit of ζ on H with the codes, α and zero fixed: one linear system over the input channels. */
#ifndef ZF_ZFOLD_ZETA_H
#define ZF_ZFOLD_ZETA_H

#include "worker/qrun.h"

/* Relative damping of the ζ normal equations (fraction of their mean diagonal), toward the current ζ. */
#define ZF_ZETA_DAMP 1e-4

/* The ζ of least ΔL with the codes r->q, grids r->scale, r->zero and groups r->gidx fixed: with A = α(q - z) (ζ = 1),
 * ΔL(ζ) = Σ_r (w_r - a_r ⊙ ζ) H (w_r - a_r ⊙ ζ)ᵀ is least where (H ∘ AᵀA) ζ = Σ_r a_r ⊙ (W H)_r. Solved damped
 * toward the current ζ, pooled per tie class, stepped back toward the current ζ where a ζ would leave (0, ∞) under
 * o->zeta_positive or be 0; kept only when the team's total ΔL falls. The change along the step t·d is the closed
 * form -2t dᵀg + t² dᵀMd (g = b - Mζ, (M + λI) d = g); a group of several members (r->nmembers) builds each
 * member's own M_m and b_m from its rows (the same SYRK split by rows), so each member's change is exact too. A
 * member's rows share its change in proportion to their ΔL (the member's sum exact, each row not); should a
 * member's closed form come out negative, each row's exact ΔW H ΔWᵀ decides instead (one GEMM).
 * r->B holds W·H on entry (with groups ΔW·H of the current codes, grids and ζ); zeta (host, also in r->zeta) is the current ζ, rowv each row's ΔL; both are replaced when
 * the new ζ is kept (*kept). r->A is overwritten. */
zf_status zf_zfold_refit_zeta(zf_qrun *r, const zf_zeta_tie *tie, float *zeta, double *rowv, bool *kept);
/* Host bytes the ζ refit of a [rows, cols] group of nmembers layers holds besides the backend's buffers: each
 * member's part of the system and their sum (one matrix alone, with a team or ties); 0 when no ζ refit runs. */
int64_t zf_zfold_refit_zeta_host_bytes(const zf_quant_opts *o, int64_t cols, int nmembers);

#endif
