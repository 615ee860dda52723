/* Z-FOLD: ALS factorization of the step sizes into ζ (input channels) and α (output channels), then OPTQ. */
#include "worker/zfold.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "worker/grid.h"
#include "worker/optq.h"
#include "common/clock.h"

/* Columns per task when the ζ sums run over the rows: each task owns its columns, so no reduction is needed. */
#define ZF_ZETA_COLS 256

/* Codes of W on the grid s_rj = α_r·ζ_j with zero z_r, written as w̃ = ζ_j·(q - z_r) into Wt when given and as
 * ΔW = W - α_r ζ_j (q - z_r) (the dequantized form used everywhere else) into dW when given. */
static void quantize_state(const float *W, int64_t rows, int64_t cols, float maxq, const float *alpha,
                           const float *zero, const float *zeta, float *Wt, float *dW, uint8_t *q)
{
    for (int64_t r = 0; r < rows; r++) {
        const float a = alpha[r], z = zero[r];
        const float *w = W + r * cols;
        for (int64_t j = 0; j < cols; j++) {
            const float s = a * zeta[j];
            const float c = zf_qcode(w[j], s, z, maxq);
            if (Wt) Wt[r * cols + j] = zeta[j] * (c - z);
            if (dW) dW[r * cols + j] = w[j] - zf_dequant(c, s, z);
            if (q) q[r * cols + j] = (uint8_t)c;
        }
    }
}

static zf_status state_loss(const float *W, int64_t rows, int64_t cols, const float *H, float maxq,
                            const float *alpha, const float *zero, const float *zeta, float *dW, double *rowbuf,
                            double *dl)
{
    quantize_state(W, rows, cols, maxq, alpha, zero, zeta, NULL, dW, NULL);
    ZF_TRY(zf_quadform_rows(dW, NULL, rows, cols, H, rowbuf, NULL));
    double s = 0.0;
    for (int64_t r = 0; r < rows; r++) s += rowbuf[r];
    *dl = s;
    return ZF_OK;
}

zf_status zf_zfold_alpha_lsq(const float *W, const float *Wt, int64_t rows, int64_t cols, const float *H,
                             const float *alpha_prev, float *alpha)
{
    double *num = zf_malloc((size_t)rows * 2 * sizeof(double), "Z-FOLD alpha sums");
    if (!num) return ZF_ERR_NOMEM;
    double *den = num + rows;
    zf_status st = zf_quadform_rows(Wt, W, rows, cols, H, den, num);
    if (st == ZF_OK)
        for (int64_t r = 0; r < rows; r++) {
            const double a = num[r] / den[r];
            alpha[r] = den[r] > 0.0 && isfinite(a) && a > 0.0 && (float)a > 0.0f ? (float)a : alpha_prev[r];
        }
    free(num);
    return st;
}

void zf_zeta_from_sums(const zf_quant_opts *o, int64_t cols, const zf_zeta_tie *tie, double *num, double *den,
                       double *cnum, double *cden, float *zeta, int *kept)
{
    if (tie) {
        memset(cnum, 0, (size_t)tie->nclasses * sizeof(double));
        memset(cden, 0, (size_t)tie->nclasses * sizeof(double));
        for (int64_t j = 0; j < cols; j++) {
            cnum[tie->cls[j]] += num[j];
            cden[tie->cls[j]] += den[j];
        }
        for (int64_t j = 0; j < cols; j++) {
            num[j] = cnum[tie->cls[j]];
            den[j] = cden[tie->cls[j]];
        }
    }
    for (int64_t j = 0; j < cols; j++) {
        float zn = (float)(num[j] / (den[j] + 1e-10));
        if (zn == 0.0f) zn = 1.0f;
        if (o->zeta_positive && !(zn > 0.0f)) {
            (*kept)++;
            continue;
        }
        zeta[j] = zn;
    }
}

/* ζ_j = Σ_r W_rj Ŵ_rj / (Σ_r Ŵ_rj² + 1e-10), Ŵ = α_r (W_int - z_r), sums pooled over each tie class; ζ = 0 -> 1
 * (the reference's rule for a column that quantized to all zero points). */
static void update_zeta(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, float maxq,
                        const float *alpha, const float *zero, const zf_zeta_tie *tie, float *zeta, double *num,
                        double *den, double *cnum, double *cden, int *kept)
{
    for (int64_t j0 = 0; j0 < cols; j0 += ZF_ZETA_COLS) {
        const int64_t j1 = j0 + ZF_ZETA_COLS < cols ? j0 + ZF_ZETA_COLS : cols;
        for (int64_t j = j0; j < j1; j++) num[j] = den[j] = 0.0;
        for (int64_t r = 0; r < rows; r++) {
            const float a = alpha[r], z = zero[r];
            const float *w = W + r * cols;
            for (int64_t j = j0; j < j1; j++) {
                const float c = zf_qcode(w[j], a * zeta[j], z, maxq);
                const double wh = (double)a * (double)(c - z);
                num[j] += (double)w[j] * wh;
                den[j] += wh * wh;
            }
        }
    }
    zf_zeta_from_sums(o, cols, tie, num, den, cnum, cden, zeta, kept);
}

zf_status zf_zfold_als(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                       const zf_zeta_tie *tie, float *alpha, float *zero, float *zeta, int *iters, int *zeta_kept,
                       double *trace, int *ntrace)
{
    if (tie && tie->nclasses == 0) tie = NULL;
    const float maxq = (float)((1 << o->bits) - 1);
    const size_t rc = (size_t)rows * (size_t)cols;
    const int64_t ncls = tie ? tie->nclasses : 0;
    zf_status st = ZF_OK;
    float *Wt = zf_malloc(rc * sizeof(float), "Z-FOLD integer weights times zeta");
    float *dW = zf_malloc(rc * sizeof(float), "Z-FOLD weight error");
    float *x = o->alpha == ZF_ALPHA_GRID ? zf_malloc(rc * sizeof(float), "Z-FOLD W / zeta") : NULL;
    float *cur = zf_malloc(((size_t)rows * 2 + (size_t)cols) * sizeof(float), "Z-FOLD current state");
    double *dbuf = zf_malloc(((size_t)cols * 2 + (size_t)rows + (size_t)ncls * 2) * sizeof(double),
                             "Z-FOLD sums");
    if (!Wt || !dW || !cur || !dbuf || (o->alpha == ZF_ALPHA_GRID && !x)) {
        st = ZF_ERR_NOMEM;
        goto done;
    }
    float *ca = cur, *cz = cur + rows, *czeta = cur + 2 * rows;
    double *num = dbuf, *den = dbuf + cols, *rowbuf = dbuf + 2 * cols, *cnum = rowbuf + rows, *cden = cnum + ncls;

    /* Line 2: ζ = 1, α (and zero) from the configured grid. */
    for (int64_t j = 0; j < cols; j++) zeta[j] = 1.0f;
    st = zf_grid_fit(o, o->grid, W, rows, cols, cols, H, cols, NULL, alpha, 1, zero);
    if (st != ZF_OK) goto done;
    double best;
    st = state_loss(W, rows, cols, H, maxq, alpha, zero, zeta, dW, rowbuf, &best);
    if (st != ZF_OK) goto done;
    *iters = 0;
    *zeta_kept = 0;
    int nt = 0;
    if (trace) trace[nt++] = best;
    memcpy(ca, alpha, (size_t)rows * sizeof(float));
    memcpy(cz, zero, (size_t)rows * sizeof(float));
    memcpy(czeta, zeta, (size_t)cols * sizeof(float));

    for (int it = 1; it <= o->als_max_iter; it++) {
        /* Lines 4-5: ζ by least squares over the rows (the Hessian does not change this solution, §3.1). */
        update_zeta(o, W, rows, cols, maxq, ca, cz, tie, czeta, num, den, cnum, cden, zeta_kept);
        /* Lines 6-7: requantize, then α. */
        if (o->alpha == ZF_ALPHA_LSQ) {
            quantize_state(W, rows, cols, maxq, ca, cz, czeta, Wt, NULL, NULL);
            st = zf_zfold_alpha_lsq(W, Wt, rows, cols, H, ca, ca);
        } else {
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cols; j++) x[r * cols + j] = W[r * cols + j] / czeta[j];
            st = zf_grid_fit(o, ZF_GRID_HESSIAN, x, rows, cols, cols, H, cols, czeta, ca, 1, cz);
        }
        if (st != ZF_OK) goto done;
        double dl;
        st = state_loss(W, rows, cols, H, maxq, ca, cz, czeta, dW, rowbuf, &dl);
        if (st != ZF_OK) goto done;
        if (trace) trace[nt++] = dl;
        zf_log_debug("Z-FOLD ALS [%lld x %lld] iteration %d: ΔL %.6g (best %.6g)", (long long)rows, (long long)cols,
                     it, dl, best);
        if (!(dl <= best)) break;
        best = dl;
        *iters = it;
        memcpy(alpha, ca, (size_t)rows * sizeof(float));
        memcpy(zero, cz, (size_t)rows * sizeof(float));
        memcpy(zeta, czeta, (size_t)cols * sizeof(float));
    }
    if (ntrace) *ntrace = nt;
    if (*zeta_kept)
        zf_log_warn("Z-FOLD [%lld x %lld]: %d zeta updates were <= 0 and kept their previous value (zeta_positive)",
                    (long long)rows, (long long)cols, *zeta_kept);

done:
    free(Wt), free(dW), free(x), free(cur), free(dbuf);
    return st;
}

zf_status zf_zfold(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                   const zf_zeta_tie *tie, zf_qresult *out)
{
    ZF_ASSERT(out->ngroups == 1);
    const double t0 = zf_now();
    ZF_TRY(zf_zfold_als(o, W, rows, cols, H, tie, out->scale, out->zero, out->zeta, &out->als_iters,
                        &out->zeta_kept, NULL, NULL));
    out->t_als = zf_now() - t0;
    if (o->zfold_optq) {
        /* zf_optq reads the fixed grid from its arguments and writes out->scale/zero: hand it copies. */
        float *grid = zf_malloc((size_t)rows * 2 * sizeof(float), "Z-FOLD grid");
        if (!grid) return ZF_ERR_NOMEM;
        memcpy(grid, out->scale, (size_t)rows * sizeof(float));
        memcpy(grid + rows, out->zero, (size_t)rows * sizeof(float));
        zf_status st = zf_optq(o, W, rows, cols, H, grid, grid + rows, out->zeta, out);
        free(grid);
        return st;
    }
    quantize_state(W, rows, cols, (float)((1 << o->bits) - 1), out->scale, out->zero, out->zeta, NULL, NULL, out->q);
    for (int64_t j = 0; j < cols; j++) out->g_idx[j] = 0;
    return ZF_OK;
}
