/* Hessian accumulation H = 2/N Σ x xᵀ: SYRK into the lower triangle (fp32 or fp64), symmetric fp32 on finalize. */
#include "worker/hessian.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tokens converted to double per dsyrk call: bounds the scratch buffer, still long enough for an efficient SYRK. */
#define ZF_HESS_F64_CHUNK 256
#define ZF_HESS_F32_CHUNK ((int64_t)1 << 20)

zf_status zf_hessian_init(zf_hessian *h, int64_t dim, bool fp64)
{
    memset(h, 0, sizeof *h);
    if (dim <= 0 || dim > INT_MAX) /* BLAS takes int sizes */
        return zf_fail(ZF_ERR_INPUT, "Hessian dimension %lld: expected 1 .. %d", (long long)dim, INT_MAX);
    h->dim = dim;
    h->fp64 = fp64;
    if (fp64) h->sum64 = zf_calloc((size_t)dim * (size_t)dim, sizeof(double), "Hessian sum (fp64)");
    else h->sum32 = zf_calloc((size_t)dim * (size_t)dim, sizeof(float), "Hessian sum (fp32)");
    if (!h->sum64 && !h->sum32) return ZF_ERR_NOMEM;
    return ZF_OK;
}

void zf_hessian_free(zf_hessian *h)
{
    free(h->sum32);
    free(h->sum64);
    memset(h, 0, sizeof *h);
}

void zf_hessian_reset(zf_hessian *h)
{
    size_t n = (size_t)h->dim * (size_t)h->dim;
    if (h->sum32) memset(h->sum32, 0, n * sizeof(float));
    if (h->sum64) memset(h->sum64, 0, n * sizeof(double));
    h->ntokens = 0;
}

zf_status zf_hessian_add(zf_hessian *h, const float *x, int64_t ntok)
{
    if (ntok < 0) return zf_fail(ZF_ERR_INPUT, "Hessian add: token count %lld is negative", (long long)ntok);
    if (ntok == 0) return ZF_OK;
    const int64_t d = h->dim;
    ZF_TRY(zf_hessian_check_inputs(x, ntok, d));
    if (!h->fp64) {
        for (int64_t t0 = 0; t0 < ntok; t0 += ZF_HESS_F32_CHUNK) { /* keeps k within BLAS's int */
            int64_t nt = ntok - t0 < ZF_HESS_F32_CHUNK ? ntok - t0 : ZF_HESS_F32_CHUNK;
            cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, (int)d, (int)nt, 1.0f, x + t0 * d, (int)d, 1.0f,
                        h->sum32, (int)d);
        }
    } else {
        int64_t chunk = ntok < ZF_HESS_F64_CHUNK ? ntok : ZF_HESS_F64_CHUNK;
        double *xd = zf_malloc((size_t)chunk * (size_t)d * sizeof(double), "Hessian fp64 conversion buffer");
        if (!xd) return ZF_ERR_NOMEM;
        for (int64_t t0 = 0; t0 < ntok; t0 += chunk) {
            int64_t nt = ntok - t0 < chunk ? ntok - t0 : chunk;
            for (int64_t i = 0; i < nt * d; i++) xd[i] = x[t0 * d + i];
            cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, (int)d, (int)nt, 1.0, xd, (int)d, 1.0, h->sum64, (int)d);
        }
        free(xd);
    }
    h->ntokens += ntok;
    return ZF_OK;
}

zf_status zf_hessian_merge(zf_hessian *h, const zf_hessian *other)
{
    if (other->dim != h->dim)
        return zf_fail(ZF_ERR_INPUT, "Hessian merge: dimensions differ (%lld and %lld)", (long long)h->dim,
                       (long long)other->dim);
    const int64_t d = h->dim;
    /* Only the lower triangle is meaningful in both. */
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j <= i; j++) {
            int64_t k = i * d + j;
            double v = other->fp64 ? other->sum64[k] : (double)other->sum32[k];
            if (h->fp64) h->sum64[k] += v;
            else h->sum32[k] += (float)v;
        }
    h->ntokens += other->ntokens;
    return ZF_OK;
}

zf_status zf_hessian_finalize(const zf_hessian *h, float *H)
{
    const int64_t d = h->dim;
    const double f = h->ntokens > 0 ? 2.0 / (double)h->ntokens : 0.0;
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j <= i; j++) {
            int64_t k = i * d + j;
            double s = h->fp64 ? h->sum64[k] : (double)h->sum32[k];
            H[i * d + j] = H[j * d + i] = (float)(f * s);
        }
    return ZF_OK;
}

zf_status zf_hessian_check_inputs(const float *x, int64_t ntok, int64_t dim)
{
    for (int64_t t = 0; t < ntok; t++)
        for (int64_t j = 0; j < dim; j++)
            if (!isfinite(x[t * dim + j]))
                return zf_fail(ZF_ERR_INPUT, "Hessian add: input x[%lld, %lld] = %g is not finite", (long long)t,
                               (long long)j, (double)x[t * dim + j]);
    return ZF_OK;
}

zf_status zf_hessian_panel(const float *X, int64_t n, int64_t dim, int64_t c0, int64_t c1, double *P)
{
    if (c0 < 0 || c1 <= c0 || c1 > dim || dim > INT_MAX)
        return zf_fail(ZF_ERR_INPUT, "Hessian panel: columns [%lld, %lld) of %lld: expected 0 <= c0 < c1 <= dim",
                       (long long)c0, (long long)c1, (long long)dim);
    const int64_t m = dim - c0, w = c1 - c0;
    memset(P, 0, (size_t)m * (size_t)w * sizeof(double));
    if (n == 0) return ZF_OK;
    int64_t chunk = n < ZF_HESS_F64_CHUNK ? n : ZF_HESS_F64_CHUNK;
    double *xd = zf_malloc((size_t)chunk * (size_t)m * sizeof(double), "Hessian panel conversion buffer");
    if (!xd) return ZF_ERR_NOMEM;
    for (int64_t t0 = 0; t0 < n; t0 += chunk) {
        int64_t nt = n - t0 < chunk ? n - t0 : chunk;
        for (int64_t t = 0; t < nt; t++)
            for (int64_t j = 0; j < m; j++) xd[t * m + j] = X[(t0 + t) * dim + c0 + j];
        /* P += X[:, c0:]ᵀ · X[:, c0:c1]: the panel's columns are the first w of the converted rows */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)w, (int)nt, 1.0, xd, (int)m, xd, (int)m,
                    1.0, P, (int)w);
    }
    free(xd);
    return ZF_OK;
}

int64_t zf_hessian_panel_width(int64_t dim)
{
    int64_t w = ((int64_t)1 << 24) / (dim > 0 ? dim : 1);
    return w < 1 ? 1 : w > dim ? dim : w;
}

void zf_hessian_store_panel(const double *P, int64_t dim, int64_t c0, int64_t c1, double f, float *H)
{
    const int64_t w = c1 - c0;
    for (int64_t i = c0; i < dim; i++)
        for (int64_t j = c0; j < c1 && j <= i; j++) H[i * dim + j] = H[j * dim + i] = (float)(f * P[(i - c0) * w + j - c0]);
}
