/* Quantization options, results and the zf_quantize entry point that validates and dispatches to RTN/OPTQ/Z-FOLD. */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grid.h"
#include "optq.h"
#include "rtn.h"
#include "zfold.h"

/* Rows of ΔW materialized at a time by zf_delta_loss. */
#define ZF_DL_CHUNK 256

void zf_quant_opts_default(zf_quant_opts *o)
{
    *o = (zf_quant_opts){
        .method = ZF_METHOD_ZFOLD,
        .bits = 4,
        .sym = false,          /* Z-FOLD and the GPTQ reference quantize asymmetrically by default */
        .group_size = -1,
        .grid = ZF_GRID_MINMAX,
        .mmse_norm = 2.4,
        .grid_points = 100,
        .max_shrink = 0.8,
        .damp = 0.01,
        .damp_retries = 4,
        .block_size = 128,
        .act_order = false,
        .static_groups = false,
        .alpha = ZF_ALPHA_LSQ, /* the paper's eq. 13; ZF_ALPHA_GRID is the official code's (much slower) search */
        .als_max_iter = 30,
        .zeta_positive = false,
        .zfold_optq = true,
    };
}

static const char *const method_names[] = {"rtn", "optq", "zfold"};
static const char *const grid_names[] = {"minmax", "mmse", "hessian"};
static const char *const alpha_names[] = {"lsq", "grid"};

const char *zf_method_name(zf_method m) { return (unsigned)m < 3 ? method_names[m] : "unknown"; }
const char *zf_grid_name(zf_grid_kind g) { return (unsigned)g < 3 ? grid_names[g] : "unknown"; }
const char *zf_alpha_name(zf_alpha_mode a) { return (unsigned)a < 2 ? alpha_names[a] : "unknown"; }

static int parse_name(const char *s, const char *const *names, int n)
{
    if (!s) return -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

int zf_method_parse(const char *s, zf_method *out)
{
    int i = s && !strcmp(s, "gptq") ? (int)ZF_METHOD_OPTQ : parse_name(s, method_names, 3);
    if (i < 0) return -1;
    *out = (zf_method)i;
    return 0;
}

int zf_grid_parse(const char *s, zf_grid_kind *out)
{
    int i = parse_name(s, grid_names, 3);
    if (i < 0) return -1;
    *out = (zf_grid_kind)i;
    return 0;
}

int zf_alpha_parse(const char *s, zf_alpha_mode *out)
{
    int i = parse_name(s, alpha_names, 2);
    if (i < 0) return -1;
    *out = (zf_alpha_mode)i;
    return 0;
}

zf_status zf_quant_opts_check(const zf_quant_opts *o)
{
    if ((unsigned)o->method > ZF_METHOD_ZFOLD)
        return zf_fail(ZF_ERR_INPUT, "quantization method %d: expected rtn, optq or zfold", (int)o->method);
    if (o->bits < 2 || o->bits > 8)
        return zf_fail(ZF_ERR_INPUT, "bits = %d: expected 2 .. 8 (codes are stored in one byte)", o->bits);
    if ((unsigned)o->grid > ZF_GRID_HESSIAN)
        return zf_fail(ZF_ERR_INPUT, "grid %d: expected minmax, mmse or hessian", (int)o->grid);
    if (!(o->mmse_norm > 0.0) || !isfinite(o->mmse_norm))
        return zf_fail(ZF_ERR_INPUT, "mmse_norm = %g: expected a finite exponent > 0 (2.4 as the reference)",
                       o->mmse_norm);
    if (o->grid_points < 1 || o->grid_points > 100000)
        return zf_fail(ZF_ERR_INPUT, "grid_points = %d: expected 1 .. 100000 (100 as the reference)", o->grid_points);
    if (!(o->max_shrink > 0.0 && o->max_shrink <= 1.0))
        return zf_fail(ZF_ERR_INPUT, "max_shrink = %g: expected a fraction in (0, 1] (0.8 as the reference)",
                       o->max_shrink);
    if (!(o->damp > 0.0) || !isfinite(o->damp))
        return zf_fail(ZF_ERR_INPUT, "damp = %g: expected a finite fraction > 0 of mean(diag H) (0.01)", o->damp);
    if (o->damp_retries < 0 || o->damp_retries > 20)
        return zf_fail(ZF_ERR_INPUT, "damp_retries = %d: expected 0 .. 20", o->damp_retries);
    if (o->block_size < 1 || o->block_size > 1 << 16)
        return zf_fail(ZF_ERR_INPUT, "block_size = %lld: expected 1 .. 65536 (128)", (long long)o->block_size);
    if ((unsigned)o->alpha > ZF_ALPHA_GRID)
        return zf_fail(ZF_ERR_INPUT, "alpha mode %d: expected lsq or grid", (int)o->alpha);
    if (o->als_max_iter < 0 || o->als_max_iter > 10000)
        return zf_fail(ZF_ERR_INPUT, "als_max_iter = %d: expected 0 .. 10000 (30 as the paper)", o->als_max_iter);
    if (o->method == ZF_METHOD_ZFOLD && o->group_size > 0)
        return zf_fail(ZF_ERR_INPUT,
                       "zfold with group_size = %lld: Z-FOLD is per output channel only (ζ folds into one step per "
                       "row, as in the paper); use group_size <= 0, or optq/rtn for group-wise grids",
                       (long long)o->group_size);
    /* static_groups without groups is accepted and means nothing, as in the reference. */
    return ZF_OK;
}

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
