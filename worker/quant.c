/* ΔL and the quantize entry on any backend: validate, open the run, dispatch to RTN/OPTQ/Z-FOLD, dequantize, ΔL per member. */
#include "worker/quant.h"
#include "worker/quant_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/backend.h"
#include "worker/grid.h"
#include "worker/optq.h"
#include "worker/qrun.h"
#include "worker/rtn.h"
#include "worker/zfold.h"
#include "common/clock.h"

/* Rows of ΔW materialized at a time by zf_delta_loss. */
#define ZF_DL_CHUNK 256

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

/* Options, shapes and tie classes, before any work; *tie becomes NULL when it does not apply. */
static zf_status check_inputs(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                              const zf_zeta_tie **tie, const zf_qresult *out)
{
    ZF_TRY(zf_quant_opts_check(o));
    if (!W || !out || rows <= 0 || cols <= 0)
        return zf_fail(ZF_ERR_INPUT, "quantize: weight [%lld x %lld]%s: expected a non-empty matrix and a result",
                       (long long)rows, (long long)cols, W && out ? "" : " (missing pointer)");
    if (!H && (o->method != ZF_METHOD_RTN || o->grid == ZF_GRID_HESSIAN))
        return zf_fail(ZF_ERR_INPUT, "quantize: method %s with grid %s needs the Hessian, none was given",
                       zf_method_name(o->method), zf_grid_name(o->grid));
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
    return zf_backend_quantize(zf_cpu_backend(), o, W, rows, cols, H, tie, out);
}

/* The method's codes and grids into out (host), deq on the host and ΔW = W - deq in r->B. */
static zf_status quantize_codes(zf_qrun *r, const zf_zeta_tie *tie, zf_qresult *out)
{
    const zf_quant_opts *o = r->o;
    const int64_t rows = r->rows, cols = r->cols;
    const size_t rc = (size_t)rows * (size_t)cols, rg = (size_t)rows * (size_t)r->ngroups;
    void *ctx = r->be->ctx;
    switch (o->method) {
    case ZF_METHOD_RTN:
        ZF_TRY(zf_rtn_run(r, o->grid));
        for (int64_t j = 0; j < cols; j++) out->g_idx[j] = (int32_t)(r->gs ? j / r->gs : 0);
        break;
    case ZF_METHOD_OPTQ: ZF_TRY(zf_optq_run(r, NULL, NULL, NULL, out)); break;
    case ZF_METHOD_ZFOLD: ZF_TRY(zf_zfold_run(r, tie, out)); break;
    default: ZF_PANIC("unknown method %d", (int)o->method);
    }
    /* g_idx and ζ are final on the host, codes and grids in backend memory */
    ZF_TRY(r->i->upload(ctx, r->gidx, out->g_idx, (size_t)cols * sizeof(int32_t)));
    ZF_TRY(r->i->upload(ctx, r->zeta, out->zeta, (size_t)cols * sizeof(float)));
    ZF_TRY(r->i->download(ctx, out->q, r->q, rc));
    ZF_TRY(r->i->download(ctx, out->scale, r->scale, rg * sizeof(float)));
    ZF_TRY(r->i->download(ctx, out->zero, r->zero, rg * sizeof(float)));
    const bool host = (r->i->caps & ZF_CAP_HOST_MEMORY) != 0;
    float *deq = host ? out->deq : r->A;
    ZF_TRY(r->i->dequant(r->qs, r->W, r->q, r->scale, r->zero, r->zeta, r->gidx, r->gs ? r->gs : cols, r->ngroups,
                         rows, cols, deq, r->Hh ? r->B : NULL));
    return r->i->download(ctx, out->deq, deq, rc * sizeof(float));
}

/* Sums per member of per-row figures (rows concatenated), over the team's rows. */
static zf_status member_sums(zf_qrun *r, int nmembers, const int64_t *member_rows, const double *rowv, double *out)
{
    int64_t r0 = 0;
    for (int m = 0; m < nmembers; m++) {
        out[m] = 0.0;
        for (int64_t k = 0; k < member_rows[m]; k++) out[m] += rowv[r0 + k];
        r0 += member_rows[m];
    }
    return zf_qrun_team_sum(r, out, nmembers);
}

/* Each row's ΔW H ΔWᵀ (ΔW in r->B) by the row quadratic forms. */
static zf_status quadform_rows(zf_qrun *r, double *rowv)
{
    return r->i->quadform(r->qs, r->B, NULL, r->rows, r->H, rowv, NULL);
}

/* Per member ΔL after (from the column loop when the method ran one, else by the quadratic form with
 * delta_loss_rtn), then with delta_loss_rtn min-max RTN of the whole (row by row the same as of each member alone)
 * for ΔL before. A figure not measured is NaN. */
static zf_status group_losses(zf_qrun *r, const float *W, const zf_qresult *out, int nmembers,
                              const int64_t *member_rows, double *dl, double *dl_rtn)
{
    const zf_quant_opts *o = r->o;
    for (int m = 0; m < nmembers; m++) dl[m] = dl_rtn[m] = NAN;
    if (!r->rowloss && !r->rowdl && !o->delta_loss_rtn) return ZF_OK;
    double *rowv = zf_malloc((size_t)(r->rows > 0 ? r->rows : 1) * sizeof(double), "quantization row sums");
    if (!rowv) return ZF_ERR_NOMEM;
    zf_status st = ZF_OK;
    if (r->rowdl) memcpy(rowv, r->rowdl, (size_t)r->rows * sizeof(double));
    else st = r->rowloss ? zf_qrun_loop_rows(r, out->deq, NULL, rowv) : quadform_rows(r, rowv);
    if (st == ZF_OK) st = member_sums(r, nmembers, member_rows, rowv, dl);
    if (st == ZF_OK && o->delta_loss_rtn && o->method == ZF_METHOD_RTN && o->grid == ZF_GRID_MINMAX) {
        memcpy(dl_rtn, dl, (size_t)nmembers * sizeof(double));
    } else if (st == ZF_OK && o->delta_loss_rtn) {
        /* overwrites the method's codes and grids, which are on the host already */
        st = zf_rtn_run(r, ZF_GRID_MINMAX);
        if (st == ZF_OK)
            st = r->i->dequant(r->qs, r->W, r->q, r->scale, r->zero, NULL, NULL, r->gs ? r->gs : r->cols, r->ngroups,
                               r->rows, r->cols, r->A, r->B);
        if (st == ZF_OK) st = quadform_rows(r, rowv);
        if (st == ZF_OK) st = member_sums(r, nmembers, member_rows, rowv, dl_rtn);
    }
    free(rowv);
    return st;
}

static zf_status check_members(int64_t rows, int nmembers, const int64_t *member_rows)
{
    int64_t sum = 0;
    for (int m = 0; m < nmembers && member_rows; m++) sum += member_rows[m] >= 0 ? member_rows[m] : -rows - 1;
    if (nmembers < 1 || !member_rows || sum != rows)
        return zf_fail(ZF_ERR_INPUT, "quantize group: %d members: expected row counts >= 0 summing to %lld",
                       nmembers, (long long)rows);
    return ZF_OK;
}

zf_status zf_backend_quantize_group(zf_backend *be, const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols,
                                    const float *H, const zf_zeta_tie *tie, int nmembers, const int64_t *member_rows,
                                    const zf_row_team *team, zf_qresult *out, double *dl, double *dl_rtn)
{
    const double t0 = zf_now();
    ZF_TRY(check_inputs(o, W, rows, cols, H, &tie, out));
    ZF_TRY(check_members(rows, nmembers, member_rows));
    memset(out, 0, sizeof *out); /* freed on every error below, allocated or not */
    for (int m = 0; m < nmembers; m++) dl[m] = dl_rtn[m] = 0.0;
    zf_qrun r;
    /* the host result only once the backend's side is known to fit */
    zf_status st = zf_qrun_open(be, o, W, rows, cols, H, &r);
    const bool opened = st == ZF_OK;
    /* after the backend's fit check: a layer too large for the device is refused before W and H are read */
    if (st == ZF_OK) st = check_finite("W", W, rows, cols);
    if (st == ZF_OK && H) st = check_finite("H", H, cols, cols);
    if (st == ZF_OK) st = zf_qresult_alloc(out, rows, cols, r.ngroups, o->bits);
    /* from here on every member of the team takes part in each of its sums */
    if (team) st = team->agree(team->ctx, st);
    if (opened) r.team = team;
    if (opened) r.nmembers = nmembers, r.member_rows = nmembers > 1 ? member_rows : NULL;
    if (st == ZF_OK) st = quantize_codes(&r, tie, out);
    const double t_stats = zf_now();
    if (st == ZF_OK && H) st = group_losses(&r, W, out, nmembers, member_rows, dl, dl_rtn);
    out->t_stats = zf_now() - t_stats;
    if (opened) zf_qrun_close(&r, st);
    if (st != ZF_OK) {
        zf_backend_info info;
        zf_backend_get_info(be, &info);
        zf_fail_context(st, "quantizing a [%lld x %lld] weight with %s on %s", (long long)rows, (long long)cols,
                        zf_method_name(o->method), info.name);
        zf_qresult_free(out);
        return st;
    }
    out->t_total = zf_now() - t0;
    return ZF_OK;
}

zf_status zf_backend_quantize(zf_backend *be, const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols,
                              const float *H, const zf_zeta_tie *tie, zf_qresult *out)
{
    double dl = 0.0, dl_rtn = 0.0;
    ZF_TRY(zf_backend_quantize_group(be, o, W, rows, cols, H, tie, 1, &rows, NULL, out, &dl, &dl_rtn));
    out->dl = dl;
    out->dl_rtn = dl_rtn;
    return ZF_OK;
}
