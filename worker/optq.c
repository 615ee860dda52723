/* OPTQ / GPTQ `fasterquant` on any backend: grids, act order, the damping retries and the blocked column loop. */
#include "worker/optq.h"
#include "worker/optq_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

static const char *chol_why(zf_chol_result res)
{
    switch (res) {
    case ZF_CHOL_NOT_PD: return "not positive definite";
    case ZF_CHOL_SINGULAR: return "triangular factor singular";
    default: return "inverse factor not finite";
    }
}

/* The damping retries on r's backend with r->H; perm and U in backend memory (perm NULL = identity). */
static zf_status optq_factor_run(zf_qrun *r, const int32_t *perm, float *U, double *damp_used, int *retries)
{
    const zf_quant_opts *o = r->o;
    const int64_t n = r->cols;
    double mean = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double h = r->Hh[j * n + j];
        mean += h == 0.0 ? 1.0 : h;
    }
    mean /= (double)n;
    double damp = o->damp;
    char tried[512];
    size_t tl = 0;
    tried[0] = '\0';
    for (int attempt = 0; attempt <= o->damp_retries; attempt++, damp *= 10.0) {
        zf_chol_result res;
        ZF_TRY(r->i->chol_inv(r->qs, r->H, n, perm, (float)(damp * mean), U, &res));
        /* a team retries together: the same H, but its factorizations need not round alike */
        double failed = res != ZF_CHOL_OK;
        ZF_TRY(zf_qrun_team_sum(r, &failed, 1));
        if (failed > 0 && res == ZF_CHOL_OK) res = ZF_CHOL_NOT_PD;
        if (failed == 0) {
            r->lambda = (float)(damp * mean);
            *damp_used = damp;
            *retries = attempt;
            return ZF_OK;
        }
        tl += (size_t)snprintf(tried + tl, tl < sizeof tried ? sizeof tried - tl : 0, "%s%g", attempt ? ", " : "",
                               damp);
        if (tl >= sizeof tried) tl = sizeof tried - 1;
        if (attempt < o->damp_retries)
            zf_log_warn("OPTQ: damped Hessian [%lld x %lld] %s at damp %g; retrying with damp %g", (long long)n,
                        (long long)n, chol_why(res), damp, damp * 10.0);
    }
    return zf_fail(ZF_ERR_NUMERIC,
                   "OPTQ: the damped Hessian [%lld x %lld] could not be Cholesky-factorized and inverted with damp %s "
                   "(λ = damp · mean diag H, mean diag H = %g); raise damp or damp_retries, or check the calibration "
                   "inputs",
                   (long long)n, (long long)n, tried, mean);
}

/* Act-order key: the (dead-fixed) Hessian diagonal, sorted descending; ties keep column order (a stable,
 * deterministic choice where torch.argsort leaves the order unspecified). */
typedef struct {
    float d;
    int64_t j;
} diag_key;

static int cmp_diag_desc(const void *a, const void *b)
{
    const diag_key *x = a, *y = b;
    if (x->d != y->d) return x->d > y->d ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

/* perm (host) = processing order; zp (host) = ζ in that order. */
static zf_status order(const zf_quant_opts *o, const float *H, int64_t n, const float *zeta, int32_t *perm, float *zp)
{
    for (int64_t j = 0; j < n; j++) perm[j] = (int32_t)j;
    if (o->act_order) {
        diag_key *keys = zf_malloc((size_t)n * sizeof(diag_key), "OPTQ act-order keys");
        if (!keys) return ZF_ERR_NOMEM;
        for (int64_t j = 0; j < n; j++) keys[j] = (diag_key){H[j * n + j] == 0.0f ? 1.0f : H[j * n + j], j};
        qsort(keys, (size_t)n, sizeof(diag_key), cmp_diag_desc);
        for (int64_t p = 0; p < n; p++) perm[p] = (int32_t)keys[p].j;
        free(keys);
    }
    for (int64_t p = 0; p < n; p++) zp[p] = zeta ? zeta[perm[p]] : 1.0f;
    return ZF_OK;
}

/* Grids before the loop: fixed ones, per channel from the original W (before dead inputs are zeroed, as the
 * reference), or static groups from W with dead inputs zeroed in the original column order. */
static zf_status initial_grids(zf_qrun *r, const float *fix_scale, const float *fix_zero)
{
    const zf_quant_opts *o = r->o;
    const int64_t rows = r->rows, n = r->cols, gs = r->gs;
    if (fix_scale) {
        const size_t rg = (size_t)rows * (size_t)r->ngroups;
        ZF_TRY(r->i->upload(r->be->ctx, r->scale, fix_scale, rg * sizeof(float)));
        return r->i->upload(r->be->ctx, r->zero, fix_zero, rg * sizeof(float));
    }
    if (!gs) return r->i->grid_fit(r->qs, o->grid, r->W, rows, n, n, r->H, n, NULL, r->scale, 1, r->zero);
    for (int64_t g = 0; o->static_groups && g < r->ngroups; g++) {
        const int64_t c0 = g * gs, len = n - c0 < gs ? n - c0 : gs;
        ZF_TRY(r->i->slice_static(r->qs, r->W, r->H, rows, n, c0, len, r->B));
        ZF_TRY(r->i->grid_fit(r->qs, o->grid, r->B, rows, len, len, r->H + c0 * n + c0, n, NULL, r->scale + g,
                              r->ngroups, r->zero + g));
    }
    return ZF_OK;
}

/* Dynamic groups starting in block [i1, i2) are fitted from the working copy as it stands before the block's own
 * updates: the reference reads the global W there, which the in-block updates (made on a copy) skip. */
static zf_status dynamic_grids(zf_qrun *r, int64_t i1, int64_t i2)
{
    const zf_quant_opts *o = r->o;
    const int64_t rows = r->rows, n = r->cols, gs = r->gs;
    for (int64_t p = (i1 + gs - 1) / gs * gs; p < i2; p += gs) {
        const int64_t len = n - p < gs ? n - p : gs;
        ZF_TRY(r->i->slice_t(r->qs, r->A, rows, p, len, r->B));
        if (o->grid == ZF_GRID_HESSIAN) ZF_TRY(r->i->group_hess(r->qs, r->H, n, r->perm, p, len, r->hbuf));
        ZF_TRY(r->i->grid_fit(r->qs, o->grid, r->B, rows, len, len, r->hbuf, len, NULL, r->scale + p / gs,
                              r->ngroups, r->zero + p / gs));
    }
    return ZF_OK;
}

/* fixed: the grids were given (in the original column order, as static groups). */
static zf_status column_loop(zf_qrun *r, bool fixed)
{
    const zf_quant_opts *o = r->o;
    const int64_t n = r->cols, B = o->block_size < n ? o->block_size : n;
    const bool stat = o->static_groups || fixed;
    const zf_optq_bufs b = {.rows = r->rows, .n = n, .ngroups = r->ngroups, .gs = r->gs,
                            .static_groups = stat, .perm = r->perm, .zp = r->zp, .U = r->U,
                            .scale = r->scale, .zero = r->zero, .Wt = r->A, .Err = r->Err, .Qt = r->Qt,
                            .rowloss = r->rowloss, .X = r->whitened ? r->Xw : NULL, .ldx = r->ldx,
                            .rowex = r->rowex};
    for (int64_t i1 = 0; i1 < n; i1 += B) {
        const int64_t i2 = i1 + B < n ? i1 + B : n;
        if (r->gs && !stat) ZF_TRY(dynamic_grids(r, i1, i2));
        ZF_TRY(r->i->optq_block(r->qs, &b, i1, i2));
    }
    return r->i->sync(r->be->ctx);
}

/* The processing order into perm (host, [n] ints then ζ in that order as floats) and r->perm, r->zp; the working
 * copy Wt[p, r] = W[r, perm[p]] into Wt (the column being quantized is contiguous); the factor when r has none yet
 * (it depends on H and the order only: a later run on the same session reuses it). */
static zf_status prepare(zf_qrun *r, const float *zeta, int32_t *perm, float *Wt, zf_qresult *out)
{
    const int64_t n = r->cols;
    void *ctx = r->be->ctx;
    float *zp = (float *)(perm + n);
    ZF_TRY(order(r->o, r->Hh, n, zeta, perm, zp));
    ZF_TRY(r->i->upload(ctx, r->perm, perm, (size_t)n * sizeof(int32_t)));
    ZF_TRY(r->i->upload(ctx, r->zp, zp, (size_t)n * sizeof(float)));
    ZF_TRY(r->i->gather_t(r->qs, r->W, r->H, r->rows, n, r->perm, Wt));
    ZF_TRY(r->i->sync(ctx));
    const double t0 = zf_now();
    zf_status st = ZF_OK;
    if (!r->factored)
        st = optq_factor_run(r, r->o->act_order ? r->perm : NULL, r->U, &out->damp_used, &out->damp_retries);
    r->factored = st == ZF_OK;
    out->t_factor += zf_now() - t0;
    return st;
}

zf_status zf_optq_run(zf_qrun *r, const float *fix_scale, const float *fix_zero, const float *zeta, zf_qresult *out)
{
    const zf_quant_opts *o = r->o;
    const int64_t n = r->cols, gs = r->gs;
    ZF_ASSERT(!fix_scale || fix_zero);
    const bool stat = o->static_groups || fix_scale;
    /* Dead inputs (H_jj == 0): the reference sets H_jj = 1 (in the factor) and W[:, j] = 0. */
    out->dead_inputs = 0;
    for (int64_t j = 0; j < n; j++) out->dead_inputs += r->Hh[j * n + j] == 0.0f;
    ZF_TRY(initial_grids(r, fix_scale, fix_zero));

    int32_t *perm = zf_malloc((size_t)n * (sizeof(int32_t) + sizeof(float)), "OPTQ order");
    if (!perm) return ZF_ERR_NOMEM;
    zf_status st = r->whitened ? r->i->fill_zero(r->be->ctx, r->rowex, (size_t)r->rows * sizeof(double)) : ZF_OK;
    if (st == ZF_OK) st = prepare(r, zeta, perm, r->A, out);
    const double t0 = zf_now();
    if (st == ZF_OK) st = column_loop(r, fix_scale != NULL);
    out->t_loop += zf_now() - t0;
    if (st == ZF_OK) st = r->i->unpermute(r->qs, r->Qt, r->rows, n, r->perm, r->q);
    for (int64_t p = 0; st == ZF_OK && p < n; p++)
        out->g_idx[perm[p]] = (int32_t)(gs ? (stat ? perm[p] / gs : p / gs) : 0);
    free(perm);
    return st;
}

zf_status zf_optq_whiten(zf_qrun *r, zf_qresult *out)
{
    int32_t *perm = zf_malloc((size_t)r->cols * (sizeof(int32_t) + sizeof(float)), "OPTQ order");
    if (!perm) return ZF_ERR_NOMEM;
    zf_status st = prepare(r, NULL, perm, r->Xw, out);
    if (st == ZF_OK) st = r->i->tri_solve(r->qs, r->U, r->cols, true, r->Xw, r->rows);
    r->whitened = st == ZF_OK;
    free(perm);
    return st;
}

/* The host entries: the host backend's buffers alias the caller's arrays where they can. */
zf_status zf_optq(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                  const float *fix_scale, const float *fix_zero, const float *zeta, zf_qresult *out)
{
    ZF_ASSERT(out->rows == rows && out->cols == cols && out->ngroups == (o->group_size > 0 ?
              (cols + o->group_size - 1) / o->group_size : 1));
    zf_qrun r;
    ZF_TRY(zf_qrun_open(zf_cpu_backend(), o, W, rows, cols, H, &r));
    zf_status st = zf_optq_run(&r, fix_scale, fix_zero, zeta, out);
    const size_t rg = (size_t)rows * (size_t)out->ngroups;
    if (st == ZF_OK) {
        memcpy(out->q, r.q, (size_t)rows * (size_t)cols);
        memcpy(out->scale, r.scale, rg * sizeof(float));
        memcpy(out->zero, r.zero, rg * sizeof(float));
    }
    zf_qrun_close(&r, st);
    return st;
}

zf_status zf_optq_factor(const zf_quant_opts *o, const float *H, int64_t n, const int64_t *perm, float *U,
                         double *damp_used, int *retries)
{
    zf_quant_opts oo = *o;
    oo.method = ZF_METHOD_RTN; /* the session needs no buffers beyond H */
    zf_qrun r;
    int32_t *p32 = perm ? zf_malloc((size_t)n * sizeof(int32_t), "OPTQ permutation") : NULL;
    if (perm && !p32) return ZF_ERR_NOMEM;
    for (int64_t j = 0; perm && j < n; j++) p32[j] = (int32_t)perm[j];
    zf_status st = zf_qrun_open(zf_cpu_backend(), &oo, H, 1, n, H, &r);
    if (st == ZF_OK) {
        st = optq_factor_run(&r, p32, U, damp_used, retries);
        zf_qrun_close(&r, st);
    }
    free(p32);
    return st;
}
