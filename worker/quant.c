/* Quantization results, ΔL, and the zf_quantize entry point that validates and dispatches to RTN/OPTQ/Z-FOLD. */
#include "worker/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "worker/grid.h"
#include "worker/optq.h"
#include "worker/rtn.h"
#include "worker/zfold.h"
#include "common/clock.h"

/* Rows of ΔW materialized at a time by zf_delta_loss. */
#define ZF_DL_CHUNK 256

zf_status zf_qresult_alloc(zf_qresult *r, int64_t rows, int64_t cols, int64_t ngroups, int bits)
{
    memset(r, 0, sizeof *r);
    if (rows <= 0 || cols <= 0 || ngroups < 1 || ngroups > cols)
        return zf_fail(ZF_ERR_INPUT, "quantized matrix [%lld x %lld] with %lld groups: expected positive sizes and "
                       "1 .. cols groups", (long long)rows, (long long)cols, (long long)ngroups);
    if ((uint64_t)rows >= ((uint64_t)1 << 31) || (uint64_t)cols >= ((uint64_t)1 << 31))
        return zf_fail(ZF_ERR_INPUT, "quantized matrix [%lld x %lld]: each side must be below 2^31",
                       (long long)rows, (long long)cols);
    if (bits < 2 || bits > 8) return zf_fail(ZF_ERR_INPUT, "bits = %d: expected 2 .. 8", bits);
    const size_t rc = (size_t)rows * (size_t)cols, rg = (size_t)rows * (size_t)ngroups;
    r->rows = rows;
    r->cols = cols;
    r->ngroups = ngroups;
    r->bits = bits;
    r->q = zf_calloc(rc, 1, "quantized codes");
    r->scale = zf_calloc(rg, sizeof(float), "quantization scales");
    r->zero = zf_calloc(rg, sizeof(float), "quantization zero points");
    r->g_idx = zf_calloc((size_t)cols, sizeof(int32_t), "group index");
    r->zeta = zf_calloc((size_t)cols, sizeof(float), "zeta");
    r->deq = zf_calloc(rc, sizeof(float), "dequantized weights");
    if (!r->q || !r->scale || !r->zero || !r->g_idx || !r->zeta || !r->deq) {
        zf_qresult_free(r);
        return ZF_ERR_NOMEM;
    }
    for (int64_t j = 0; j < cols; j++) r->zeta[j] = 1.0f;
    return ZF_OK;
}

void zf_qresult_free(zf_qresult *r)
{
    free(r->q), free(r->scale), free(r->zero), free(r->g_idx), free(r->zeta), free(r->deq);
    memset(r, 0, sizeof *r);
}

/* deq = (scale·ζ)·(q - zero), the same float operations the quantizers use for their error feedback. */
static void dequantize(zf_qresult *r)
{
    const int64_t cols = r->cols, ng = r->ngroups;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < r->rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            const int64_t k = i * ng + r->g_idx[j];
            r->deq[i * cols + j] = zf_dequant((float)r->q[i * cols + j], r->scale[k] * r->zeta[j], r->zero[k]);
        }
}

/* ΔW in fp32 chunks (W - Wq is exact to one rounding), ΔW·H by SGEMM, the per-row dot products and the total in
 * double. Returns NaN (with the error recorded) if the chunk buffers cannot be allocated. */
double zf_delta_loss(const float *W, const float *Wq, int64_t rows, int64_t cols, const float *H)
{
    const int64_t ch = rows < ZF_DL_CHUNK ? rows : ZF_DL_CHUNK;
    float *dW = zf_malloc((size_t)ch * (size_t)cols * sizeof(float), "delta-loss weight error chunk");
    double *rl = zf_malloc((size_t)ch * sizeof(double), "delta-loss row sums");
    double total = 0.0;
    for (int64_t r0 = 0; r0 < rows && dW && rl; r0 += ch) {
        const int64_t nr = rows - r0 < ch ? rows - r0 : ch;
        for (int64_t i = 0; i < nr * cols; i++) dW[i] = W[r0 * cols + i] - Wq[r0 * cols + i];
        if (zf_quadform_rows(dW, NULL, nr, cols, H, rl, NULL) != ZF_OK) {
            total = NAN;
            break;
        }
        for (int64_t r = 0; r < nr; r++) total += rl[r];
    }
    if (!dW || !rl) total = NAN;
    free(dW), free(rl);
    return total;
}

/* First non-finite entry of an n×m matrix, named for the caller's message. */
static zf_status check_finite(const char *what, const float *A, int64_t n, int64_t m)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++)
            if (!isfinite(A[i * m + j]))
                return zf_fail(ZF_ERR_INPUT, "%s[%lld, %lld] = %g is not finite", what, (long long)i, (long long)j,
                               (double)A[i * m + j]);
    return ZF_OK;
}

static zf_status check_tie(const zf_zeta_tie *tie, int64_t cols)
{
    if (tie->nclasses < 0 || tie->nclasses > cols || (tie->nclasses > 0 && !tie->cls))
        return zf_fail(ZF_ERR_INPUT, "zeta tie: %lld classes for %lld columns: expected 0 .. cols and a class array",
                       (long long)tie->nclasses, (long long)cols);
    for (int64_t j = 0; j < cols && tie->nclasses > 0; j++)
        if (tie->cls[j] < 0 || tie->cls[j] >= tie->nclasses)
            return zf_fail(ZF_ERR_INPUT, "zeta tie: column %lld has class %d, expected 0 .. %lld", (long long)j,
                           (int)tie->cls[j], (long long)tie->nclasses - 1);
    return ZF_OK;
}

/* ΔL of min-max RTN with the same bits, symmetry and groups: the "before" figure of every report. */
static zf_status rtn_minmax_loss(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols,
                                 const float *H, int64_t ngroups, double *dl)
{
    zf_qresult r;
    ZF_TRY(zf_qresult_alloc(&r, rows, cols, ngroups, o->bits));
    zf_status st = zf_rtn(o, ZF_GRID_MINMAX, W, rows, cols, NULL, &r);
    if (st == ZF_OK) {
        dequantize(&r);
        *dl = zf_delta_loss(W, r.deq, rows, cols, H);
        if (isnan(*dl)) st = ZF_ERR_NOMEM;
    }
    zf_qresult_free(&r);
    return st;
}

zf_status zf_quantize_check_inputs(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                                   const zf_zeta_tie **tie, const zf_qresult *out)
{
    ZF_TRY(zf_quant_opts_check(o));
    if (!W || !out || rows <= 0 || cols <= 0)
        return zf_fail(ZF_ERR_INPUT, "quantize: weight [%lld x %lld]%s: expected a non-empty matrix and a result",
                       (long long)rows, (long long)cols, W && out ? "" : " (missing pointer)");
    if (!H && (o->method != ZF_METHOD_RTN || o->grid == ZF_GRID_HESSIAN))
        return zf_fail(ZF_ERR_INPUT, "quantize: method %s with grid %s needs the Hessian, none was given",
                       zf_method_name(o->method), zf_grid_name(o->grid));
    ZF_TRY(check_finite("W", W, rows, cols));
    if (H) ZF_TRY(check_finite("H", H, cols, cols));
    if (o->method != ZF_METHOD_ZFOLD) *tie = NULL;
    else if (*tie) {
        ZF_TRY(check_tie(*tie, cols));
        if ((*tie)->nclasses == 0) *tie = NULL;
    }
    return ZF_OK;
}

zf_status zf_quantize(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                      const zf_zeta_tie *tie, zf_qresult *out)
{
    const double t0 = zf_now();
    ZF_TRY(zf_quantize_check_inputs(o, W, rows, cols, H, &tie, out));
    const int64_t ngroups = o->group_size > 0 ? (cols + o->group_size - 1) / o->group_size : 1;
    ZF_TRY(zf_qresult_alloc(out, rows, cols, ngroups, o->bits));

    zf_status st;
    switch (o->method) {
    case ZF_METHOD_RTN: st = zf_rtn(o, o->grid, W, rows, cols, H, out); break;
    case ZF_METHOD_OPTQ: st = zf_optq(o, W, rows, cols, H, NULL, NULL, NULL, out); break;
    case ZF_METHOD_ZFOLD: st = zf_zfold(o, W, rows, cols, H, tie, out); break;
    default: ZF_PANIC("unknown method %d", (int)o->method);
    }
    if (st == ZF_OK) {
        dequantize(out);
        if (H) {
            out->dl = zf_delta_loss(W, out->deq, rows, cols, H);
            if (isnan(out->dl)) st = ZF_ERR_NOMEM;
            else if (o->method == ZF_METHOD_RTN && o->grid == ZF_GRID_MINMAX) out->dl_rtn = out->dl;
            else st = rtn_minmax_loss(o, W, rows, cols, H, ngroups, &out->dl_rtn);
        }
    }
    if (st != ZF_OK) {
        zf_fail_context(st, "quantizing a [%lld x %lld] weight with %s", (long long)rows, (long long)cols,
                        zf_method_name(o->method));
        zf_qresult_free(out);
        return st;
    }
    out->t_total = zf_now() - t0;
    return ZF_OK;
}
