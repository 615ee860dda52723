/* Closed-form refits of a row's step α and integer zero point with its codes fixed, from a quadratic loss model. */
#ifndef ZF_ZFOLD_REFIT_H
#define ZF_ZFOLD_REFIT_H

#include <stdbool.h>

/* One row's loss around its current grid (α0, z0) with the codes fixed: the row's weights w, a0 = ζ ⊙ (q - z0) and
 * v = ζ, and a weighting M (H, or H's diagonal): aa = a0 M a0ᵀ, aw = a0 M wᵀ, av = a0 M vᵀ, wv = w M vᵀ, vv = v M vᵀ.
 * With zero z, a = a0 - (z - z0)·v, so the loss (w - α a) M (w - α a)ᵀ is known in closed form for every (α, z). */
typedef struct {
    double aa, aw, av, wv, vv;
} zf_row_model;

/* The loss change of grid (alpha, zero) against (alpha0, z0) under m. */
double zf_row_model_change(const zf_row_model *m, float alpha0, float z0, float alpha, float zero);

/* The α > 0 and integer zero in [0, maxq] (zero kept when fix_zero) of least loss under m: the continuous
 * optimum's zero rounded down and up, and z0, each with its best α. Returns the loss change (<= 0); alpha and zero
 * keep alpha0 and z0 when nothing lowers the loss. */
double zf_refit_row(const zf_row_model *m, float alpha0, float z0, bool fix_zero, float maxq, float *alpha,
                    float *zero);

#endif
