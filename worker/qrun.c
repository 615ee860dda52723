/* One quantization's buffers in backend memory: session, allocation, upload, release, and the row-loss sum. */
#include "worker/qrun.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* Ones uploaded per call when the unit scales are filled. */
#define ZF_ONES_CHUNK 1024

/* Backend buffers of one quantization: what zf_backend_quantize_bytes counts besides the backend's own scratch. */
static zf_status qrun_alloc(zf_qrun *r, bool host)
{
    const zf_quant_opts *o = r->o;
    const int64_t rows = r->rows, cols = r->cols, gs = r->gs;
    const bool optq = o->method == ZF_METHOD_OPTQ || (o->method == ZF_METHOD_ZFOLD && o->zfold_optq);
    const bool zfold = o->method == ZF_METHOD_ZFOLD;
    const bool need_hb = optq && gs && !o->static_groups && o->grid == ZF_GRID_HESSIAN;
    const int64_t bk = o->block_size < cols ? o->block_size : cols, gl = gs ? (gs < cols ? gs : cols) : 0;
    const size_t rc = (size_t)rows * (size_t)cols, nn = (size_t)cols * (size_t)cols;
    const size_t rg = (size_t)rows * (size_t)r->ngroups, c4 = (size_t)cols * 4;
    struct {
        void *p;
        size_t n;
        const char *what;
        bool want;
    } b[] = {
        {&r->W, rc * 4, "quantization: weights", !host},
        {&r->A, rc * 4, "quantization: working weights", true},
        {&r->B, rc * 4, "quantization: weight scratch", true},
        {&r->q, rc, "quantization: codes", true},
        {&r->Qt, rc, "OPTQ: codes in processing order", optq},
        {&r->U, nn * 4, "OPTQ: inverse Hessian factor", optq},
        {&r->Err, (size_t)bk * (size_t)rows * 4, "OPTQ: block errors", optq},
        {&r->H, nn * 4, "quantization: Hessian", r->Hh && !host},
        {&r->hbuf, (size_t)gl * (size_t)gl * 4, "OPTQ: group Hessian", need_hb},
        {&r->scale, rg * 4, "quantization: scales", true},
        {&r->zero, rg * 4, "quantization: zero points", true},
        {&r->zeta, c4, "quantization: zeta", true},
        {&r->zp, c4, "quantization: permuted zeta", true},
        {&r->perm, c4, "quantization: permutation", true},
        {&r->gidx, c4, "quantization: group index", true},
        {&r->rowloss, (size_t)rows * sizeof(double), "OPTQ: row losses", optq && r->Hh},
        {&r->hvec, c4, "Z-FOLD: Hessian vector", zfold},
        {&r->ones, (size_t)rows * 4, "Z-FOLD: unit scales", zfold},
        {&r->M, nn * 4, "Z-FOLD: ζ normal equations", zfold && o->zfold_optq && o->refit_zeta && r->Hh},
        {&r->gbuf, (size_t)rows * (size_t)(2 * gl + 2) * 4, "Z-FOLD: group refit scratch",
         zfold && o->zfold_optq && o->refit && gs && r->Hh},
        {&r->Xw, rc * 4, "Z-FOLD: weights in the factor's basis", zfold && o->zfold_optq && o->refit && !gs && r->Hh},
        {&r->rowex, (size_t)rows * sizeof(double), "Z-FOLD: row error products",
         zfold && o->zfold_optq && o->refit && !gs && r->Hh},
    };
    for (size_t k = 0; k < sizeof b / sizeof b[0]; k++)
        if (b[k].want) ZF_TRY(r->i->alloc(r->be->ctx, b[k].n, b[k].what, (void **)b[k].p));
    return ZF_OK;
}

zf_status zf_qrun_open(zf_backend *be, const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols,
                       const float *H, zf_qrun *r)
{
    const int64_t gs = o->group_size > 0 ? o->group_size : 0;
    *r = (zf_qrun){.be = be, .i = be->i, .o = o, .Wh = W, .Hh = H, .rows = rows, .cols = cols, .gs = gs,
                   .ngroups = gs ? (cols + gs - 1) / gs : 1};
    ZF_TRY(r->i->q_begin(be->ctx, o, rows, cols, H != NULL, &r->qs));
    const bool host = (r->i->caps & ZF_CAP_HOST_MEMORY) != 0;
    r->own_w = !host;
    if (host) {
        /* read only: the drivers never write W or H */
        r->W = (float *)W;
        r->H = (float *)H;
    }
    r->ldx = rows;
    zf_status st = qrun_alloc(r, host);
    const size_t rg = (size_t)rows * (size_t)r->ngroups;
    if (st == ZF_OK && !host) st = r->i->upload(be->ctx, r->W, W, (size_t)rows * (size_t)cols * sizeof(float));
    if (st == ZF_OK && H && !host) st = r->i->upload(be->ctx, r->H, H, (size_t)cols * (size_t)cols * sizeof(float));
    /* a row no grid could fit keeps zero scale and zero point */
    if (st == ZF_OK) st = r->i->fill_zero(be->ctx, r->scale, rg * sizeof(float));
    if (st == ZF_OK) st = r->i->fill_zero(be->ctx, r->zero, rg * sizeof(float));
    if (st == ZF_OK && r->rowloss) st = r->i->fill_zero(be->ctx, r->rowloss, (size_t)rows * sizeof(double));
    float one[ZF_ONES_CHUNK];
    for (int k = 0; k < ZF_ONES_CHUNK; k++) one[k] = 1.0f;
    for (int64_t k = 0; st == ZF_OK && r->ones && k < rows; k += ZF_ONES_CHUNK) {
        const int64_t n = rows - k < ZF_ONES_CHUNK ? rows - k : ZF_ONES_CHUNK;
        st = r->i->upload(be->ctx, r->ones + k, one, (size_t)n * sizeof(float));
    }
    if (st != ZF_OK) zf_qrun_close(r, st);
    return st;
}

void zf_qrun_close(zf_qrun *r, zf_status st)
{
    void *bufs[] = {r->A, r->B, r->U, r->Err, r->hbuf, r->scale, r->zero, r->zeta, r->zp, r->q, r->Qt, r->perm,
                    r->gidx, r->rowloss, r->hvec, r->ones, r->M, r->gbuf, r->Xw, r->rowex, r->own_w ? r->W : NULL,
                    r->own_w ? r->H : NULL};
    if (st != ZF_OK) r->i->sync(r->be->ctx); /* no queued work may still use the buffers freed below */
    for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++)
        if (bufs[k]) r->i->free(r->be->ctx, bufs[k]);
    if (r->qs) r->i->q_end(r->qs, st);
    free(r->rowdl);
    memset(r, 0, sizeof *r);
}

zf_status zf_qrun_loss(zf_qrun *r, const float *A, int64_t rows, double *rowbuf, double *dl)
{
    ZF_TRY(r->i->quadform(r->qs, A, NULL, rows, r->H, rowbuf, NULL));
    double s = 0.0;
    for (int64_t k = 0; k < rows; k++) s += rowbuf[k];
    *dl = s;
    return ZF_OK;
}

zf_status zf_qrun_team_sum(zf_qrun *r, double *v, int64_t n)
{
    return r->team ? r->team->sum(r->team->ctx, v, n) : ZF_OK;
}

/* Σ err² of a row is ΔW (H + λI) ΔWᵀ with dead inputs' diagonal 1 (and their weights zeroed): the damping's part
 * comes off. */
double zf_qrun_rows_total(const zf_qrun *r, const double *rowv)
{
    double s = 0.0;
    for (int64_t k = 0; k < r->rows; k++) s += rowv[k];
    return s;
}

bool zf_qrun_dead_inputs(const zf_qrun *r)
{
    for (int64_t j = 0; j < r->cols; j++)
        if (r->Hh[j * r->cols + j] == 0.0f) return true;
    return false;
}

zf_status zf_qrun_loop_rows(zf_qrun *r, const float *deq, const double *live_in, double *rowv)
{
    const int64_t rows = r->rows, n = r->cols;
    const float *W = r->Wh;
    const double lam = (double)r->lambda;
    ZF_TRY(r->i->download(r->be->ctx, rowv, r->rowloss, (size_t)rows * sizeof(double)));
    int lost = 0;
    if (!deq) {
        /* no dead input: each row's |ΔW|² on the backend, ΔW in r->A */
        ZF_ASSERT(!zf_qrun_dead_inputs(r));
        double *own = live_in ? NULL : zf_malloc((size_t)(rows > 0 ? rows : 1) * sizeof(double), "row sums");
        if (!live_in && !own) return ZF_ERR_NOMEM;
        zf_status st = ZF_OK;
        if (own) {
            st = r->i->dequant(r->qs, r->W, r->q, r->scale, r->zero, r->zeta, r->gidx, r->gs ? r->gs : n, r->ngroups,
                               rows, n, NULL, r->A);
            if (st == ZF_OK) st = r->i->rowdot(r->qs, r->A, rows, n, r->A, n, own);
        }
        const double *live = live_in ? live_in : own;
        for (int64_t i = 0; st == ZF_OK && i < rows; i++) {
            const double sum = rowv[i];
            rowv[i] -= lam * live[i];
            lost |= !(rowv[i] >= ZF_LOOP_KEPT * sum);
        }
        free(own);
        ZF_TRY(st);
        if (!lost) return ZF_OK;
        zf_log_debug("ΔL [%lld x %lld]: the damping is nearly all of the loop's sums; each row's ΔW H ΔWᵀ computed "
                     "instead", (long long)rows, (long long)n);
        if (live_in)
            ZF_TRY(r->i->dequant(r->qs, r->W, r->q, r->scale, r->zero, r->zeta, r->gidx, r->gs ? r->gs : n,
                                 r->ngroups, rows, n, NULL, r->A));
        return r->i->quadform(r->qs, r->A, NULL, rows, r->H, rowv, NULL);
    }
    uint8_t *dead = zf_malloc((size_t)n, "dead inputs");
    if (!dead) return ZF_ERR_NOMEM;
    for (int64_t j = 0; j < n; j++) dead[j] = r->Hh[j * n + j] == 0.0f;
#pragma omp parallel for schedule(static) reduction(| : lost)
    for (int64_t i = 0; i < rows; i++) {
        double live = 0.0, gone = 0.0;
        for (int64_t j = 0; j < n; j++) {
            const double q = (double)deq[i * n + j], e = (double)W[i * n + j] - q;
            if (dead[j]) gone += q * q;
            else live += e * e;
        }
        const double sum = rowv[i];
        rowv[i] -= lam * live + (1.0 + lam) * gone;
        lost |= !(rowv[i] >= ZF_LOOP_KEPT * sum);
    }
    free(dead);
    if (!lost) return ZF_OK;
    /* each row's ΔW H ΔWᵀ by the quadratic form, ΔW in r->A (scratch here) */
    zf_log_debug("ΔL [%lld x %lld]: the damping is nearly all of the loop's sums; each row's ΔW H ΔWᵀ computed instead",
                 (long long)rows, (long long)n);
    ZF_TRY(r->i->dequant(r->qs, r->W, r->q, r->scale, r->zero, r->zeta, r->gidx, r->gs ? r->gs : n, r->ngroups, rows,
                         n, NULL, r->A));
    return r->i->quadform(r->qs, r->A, NULL, rows, r->H, rowv, NULL);
}
