/* Closed-form refits of a row's step α and integer zero point with its codes fixed, from a quadratic loss model. */
#include "worker/zfold_refit.h"

#include <math.h>

/* aa(z) and aw(z) of a = a0 - d·v, d = z - z0. */
static void at_zero(const zf_row_model *m, double d, double *aa, double *aw)
{
    *aa = m->aa - 2.0 * d * m->av + d * d * m->vv;
    *aw = m->aw - d * m->wv;
}

double zf_row_model_change(const zf_row_model *m, float alpha0, float z0, float alpha, float zero)
{
    double aa, aw;
    at_zero(m, (double)zero - (double)z0, &aa, &aw);
    const double a = alpha, a0 = alpha0;
    return (a * a * aa - 2.0 * a * aw) - (a0 * a0 * m->aa - 2.0 * a0 * m->aw);
}

double zf_refit_row(const zf_row_model *m, float alpha0, float z0, bool fix_zero, float maxq, float *alpha,
                    float *zero)
{
    *alpha = alpha0;
    *zero = z0;
    double cand[3] = {z0, z0, z0};
    const double det = m->aa * m->vv - m->av * m->av;
    if (!fix_zero && m->vv > 0.0 && det > 0.0) {
        /* joint least squares in (α, β = α·d): the continuous zero is z0 + β/α */
        const double a = (m->aw * m->vv - m->av * m->wv) / det, b = (a * m->av - m->wv) / m->vv;
        const double z = (double)z0 + b / a;
        if (a > 0.0 && isfinite(z)) {
            const double lo = floor(z), hi = ceil(z);
            cand[1] = lo < 0.0 ? 0.0 : (lo > maxq ? maxq : lo);
            cand[2] = hi < 0.0 ? 0.0 : (hi > maxq ? maxq : hi);
        }
    }
    double best = 0.0;
    for (int k = 0; k < 3; k++) {
        double aa, aw;
        at_zero(m, cand[k] - (double)z0, &aa, &aw);
        if (!(aa > 0.0)) continue;
        const float a = (float)(aw / aa);
        if (!(a > 0.0f) || !isfinite(a)) continue;
        const double ch = zf_row_model_change(m, alpha0, z0, a, (float)cand[k]);
        if (ch < best) {
            best = ch;
            *alpha = a;
            *zero = (float)cand[k];
        }
    }
    return best;
}
