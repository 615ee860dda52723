/* Z-FOLD on any backend: ALS factorization of the step sizes into ζ (input channels) and α (output channels), then OPTQ. */
#include "worker/zfold.h"
#include "worker/zfold_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "worker/grid.h"
#include "worker/optq.h"

/* Eq. 13's ratio rule: alpha[r] = num[r] / den[r] when finite and positive (also as a float), else alpha_prev[r]. */
static void alpha_from_sums(int64_t rows, const double *num, const double *den, const float *alpha_prev,
                              float *alpha)
{
    for (int64_t r = 0; r < rows; r++) {
        const double a = num[r] / den[r];
        alpha[r] = den[r] > 0.0 && isfinite(a) && a > 0.0 && (float)a > 0.0f ? (float)a : alpha_prev[r];
    }
}

zf_status zf_zfold_alpha_lsq(const float *W, const float *Wt, int64_t rows, int64_t cols, const float *H,
                             const float *alpha_prev, float *alpha)
{
    double *num = zf_malloc((size_t)rows * 2 * sizeof(double), "Z-FOLD alpha sums");
    if (!num) return ZF_ERR_NOMEM;
    double *den = num + rows;
    zf_status st = zf_quadform_rows(Wt, W, rows, cols, H, den, num);
    if (st == ZF_OK) alpha_from_sums(rows, num, den, alpha_prev, alpha);
    free(num);
    return st;
}

/* ζ = num/(den + 1e-10) pooled over each tie class, 0 -> 1, and a ζ <= 0 refused (counted) under zeta_positive. */
static void zeta_from_sums(const zf_quant_opts *o, int64_t cols, const zf_zeta_tie *tie, double *num, double *den,
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

/* Host copies of the ALS state: the current one (ca, cz, czeta) and the double sums. */
typedef struct {
    float *ca, *cz, *czeta;
    double *num, *den, *rowa, *rowb, *cnum, *cden;
} als_host;

/* ΔL of the state in r->scale (α), r->zero, r->zeta: ΔW in r->A. */
static zf_status state_loss(zf_qrun *r, double *rowbuf, double *dl)
{
    ZF_TRY(r->i->zstate(r->qs, r->W, r->rows, r->cols, r->scale, r->zero, r->zeta, NULL, r->A, NULL));
    ZF_TRY(zf_qrun_loss(r, r->A, r->rows, rowbuf, dl));
    return zf_qrun_team_sum(r, dl, 1);
}

/* Lines 4-7 of Algorithm 1: ζ by least squares over the rows (the Hessian does not change this solution, §3.1),
 * requantize, then α; r's grids and ζ hold the current state before and after. */
static zf_status als_step(zf_qrun *r, const zf_zeta_tie *tie, als_host *h, int *zeta_kept)
{
    const zf_quant_opts *o = r->o;
    const int64_t rows = r->rows, cols = r->cols;
    void *ctx = r->be->ctx;
    ZF_TRY(r->i->zeta_sums(r->qs, r->W, rows, cols, r->scale, r->zero, r->zeta, h->num, h->den));
    ZF_TRY(zf_qrun_team_sum(r, h->num, 2 * cols)); /* num and den are adjacent: the whole layer's rows */
    zeta_from_sums(o, cols, tie, h->num, h->den, h->cnum, h->cden, h->czeta, zeta_kept);
    ZF_TRY(r->i->upload(ctx, r->zeta, h->czeta, (size_t)cols * sizeof(float)));
    if (o->alpha == ZF_ALPHA_LSQ) {
        ZF_TRY(r->i->zstate(r->qs, r->W, rows, cols, r->scale, r->zero, r->zeta, r->A, NULL, NULL));
        ZF_TRY(r->i->quadform(r->qs, r->A, r->W, rows, r->H, h->rowa, h->rowb)); /* rowa = den, rowb = num */
        alpha_from_sums(rows, h->rowb, h->rowa, h->ca, h->ca);
        return r->i->upload(ctx, r->scale, h->ca, (size_t)rows * sizeof(float));
    }
    ZF_TRY(r->i->div_cols(r->qs, r->W, rows, cols, r->zeta, r->B));
    ZF_TRY(r->i->grid_fit(r->qs, ZF_GRID_HESSIAN, r->B, rows, cols, cols, r->H, cols, r->zeta, r->scale, 1, r->zero));
    ZF_TRY(r->i->download(ctx, h->ca, r->scale, (size_t)rows * sizeof(float)));
    return r->i->download(ctx, h->cz, r->zero, (size_t)rows * sizeof(float));
}

static zf_status als_loop(zf_qrun *r, const zf_zeta_tie *tie, als_host *h, float *alpha, float *zero, float *zeta,
                          int *iters, int *zeta_kept, double *trace, int *ntrace)
{
    const zf_quant_opts *o = r->o;
    const int64_t rows = r->rows, cols = r->cols;
    void *ctx = r->be->ctx;
    /* Line 2: ζ = 1, α (and zero) from the configured grid. */
    for (int64_t j = 0; j < cols; j++) zeta[j] = 1.0f;
    ZF_TRY(r->i->upload(ctx, r->zeta, zeta, (size_t)cols * sizeof(float)));
    ZF_TRY(r->i->grid_fit(r->qs, o->grid, r->W, rows, cols, cols, r->H, cols, NULL, r->scale, 1, r->zero));
    ZF_TRY(r->i->download(ctx, alpha, r->scale, (size_t)rows * sizeof(float)));
    ZF_TRY(r->i->download(ctx, zero, r->zero, (size_t)rows * sizeof(float)));
    double best;
    ZF_TRY(state_loss(r, h->rowa, &best));
    *iters = 0;
    *zeta_kept = 0;
    int nt = 0;
    if (trace) trace[nt++] = best;
    memcpy(h->ca, alpha, (size_t)rows * sizeof(float));
    memcpy(h->cz, zero, (size_t)rows * sizeof(float));
    memcpy(h->czeta, zeta, (size_t)cols * sizeof(float));
    for (int it = 1; it <= o->als_max_iter; it++) {
        ZF_TRY(als_step(r, tie, h, zeta_kept));
        double dl;
        ZF_TRY(state_loss(r, h->rowa, &dl));
        if (trace) trace[nt++] = dl;
        zf_log_debug("Z-FOLD ALS [%lld x %lld] iteration %d: ΔL %.6g (best %.6g)", (long long)rows, (long long)cols,
                     it, dl, best);
        if (!(dl <= best)) break;
        best = dl;
        *iters = it;
        memcpy(alpha, h->ca, (size_t)rows * sizeof(float));
        memcpy(zero, h->cz, (size_t)rows * sizeof(float));
        memcpy(zeta, h->czeta, (size_t)cols * sizeof(float));
    }
    if (ntrace) *ntrace = nt;
    if (*zeta_kept)
        zf_log_warn("Z-FOLD [%lld x %lld]: %d zeta updates were <= 0 and kept their previous value (zeta_positive)",
                    (long long)rows, (long long)cols, *zeta_kept);
    return ZF_OK;
}

/* Algorithm 1 (zf_zfold_als) on r's backend; alpha, zero, zeta and trace on the host. */
static zf_status als_run(zf_qrun *r, const zf_zeta_tie *tie, float *alpha, float *zero, float *zeta, int *iters,
                           int *zeta_kept, double *trace, int *ntrace)
{
    if (tie && tie->nclasses == 0) tie = NULL;
    const int64_t rows = r->rows, cols = r->cols, ncls = tie ? tie->nclasses : 0;
    float *f = zf_malloc(((size_t)rows * 2 + (size_t)cols) * sizeof(float), "Z-FOLD current state");
    double *d = zf_malloc(((size_t)cols * 2 + (size_t)rows * 2 + (size_t)ncls * 2) * sizeof(double), "Z-FOLD sums");
    zf_status st = ZF_ERR_NOMEM;
    if (f && d) {
        als_host h = {.ca = f, .cz = f + rows, .czeta = f + 2 * rows, .num = d, .den = d + cols,
                      .rowa = d + 2 * cols, .rowb = d + 2 * cols + rows, .cnum = d + 2 * cols + 2 * rows,
                      .cden = d + 2 * cols + 2 * rows + ncls};
        st = als_loop(r, tie, &h, alpha, zero, zeta, iters, zeta_kept, trace, ntrace);
    }
    free(f), free(d);
    return st;
}

zf_status zf_zfold_run(zf_qrun *r, const zf_zeta_tie *tie, zf_qresult *out)
{
    ZF_ASSERT(r->ngroups == 1 && !r->gs);
    const int64_t rows = r->rows, cols = r->cols;
    void *ctx = r->be->ctx;
    const double t0 = zf_now();
    ZF_TRY(als_run(r, tie, out->scale, out->zero, out->zeta, &out->als_iters, &out->zeta_kept, NULL, NULL));
    out->t_als = zf_now() - t0;
    /* zf_optq_run reads the fixed grid from the host arrays; the final grids come back into out afterwards */
    if (r->o->zfold_optq) return zf_optq_run(r, out->scale, out->zero, out->zeta, out);
    ZF_TRY(r->i->upload(ctx, r->scale, out->scale, (size_t)rows * sizeof(float)));
    ZF_TRY(r->i->upload(ctx, r->zero, out->zero, (size_t)rows * sizeof(float)));
    ZF_TRY(r->i->upload(ctx, r->zeta, out->zeta, (size_t)cols * sizeof(float)));
    ZF_TRY(r->i->zstate(r->qs, r->W, rows, cols, r->scale, r->zero, r->zeta, NULL, NULL, r->q));
    for (int64_t j = 0; j < cols; j++) out->g_idx[j] = 0;
    return ZF_OK;
}

/* The host entry: Algorithm 1 alone, on the host backend. */
zf_status zf_zfold_als(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                       const zf_zeta_tie *tie, float *alpha, float *zero, float *zeta, int *iters, int *zeta_kept,
                       double *trace, int *ntrace)
{
    zf_qrun r;
    ZF_TRY(zf_qrun_open(zf_cpu_backend(), o, W, rows, cols, H, &r));
    zf_status st = als_run(&r, tie, alpha, zero, zeta, iters, zeta_kept, trace, ntrace);
    zf_qrun_close(&r, st);
    return st;
}
