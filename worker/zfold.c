/* Z-FOLD on any backend: ALS factorization of the steps into ζ (input channels) and α (output channels), OPTQ on that
 * grid, the refit of α and zero with the codes fixed, and plain OPTQ kept where it does better. */
#include "worker/zfold.h"
#include "worker/zfold_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "worker/grid.h"
#include "worker/optq.h"
#include "worker/zfold_refit.h"
#include "worker/zfold_zeta.h"

/* diag's search: every ZF_DIAG_STRIDE-th clip ratio at the start, then ZF_DIAG_WINDOW ratios each side of the best
 * (at the start: of the best coarse one). */
#define ZF_DIAG_STRIDE 8
#define ZF_DIAG_WINDOW 3

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
    double *score;  /* diag: [ngroups, rows] each (row, group)'s search score */
    float *g;       /* diag: [cols] the search's column weights */
} als_host;

/* ΔL of the state in r->scale (α), r->zero, r->zeta by ΔW H ΔWᵀ (ΔW in r->A); diag's is its search's score. */
static zf_status state_loss(zf_qrun *r, als_host *h, double *dl)
{
    if (r->o->alpha == ZF_ALPHA_DIAG) {
        double s = 0.0;
        for (int64_t k = 0; k < r->rows * r->ngroups; k++) s += h->score[k];
        *dl = s;
    } else {
        ZF_TRY(r->i->zstate(r->qs, r->W, r->rows, r->cols, r->scale, r->zero, r->zeta, NULL, r->A, NULL));
        ZF_TRY(zf_qrun_loss(r, r->A, r->rows, h->rowa, dl));
    }
    return zf_qrun_team_sum(r, dl, 1);
}

/* diag's α and zero: the search on X = W ⊘ ζ scored on H's diagonal, g_j = H_jj ζ_j² (so that the score is
 * Σ_j H_jj (w_j - ζ_j deq_j)²): coarse to fine over the whole ratio range first, then around the current ratio. */
static zf_status diag_step(zf_qrun *r, als_host *h, const float *zeta, bool first)
{
    const int64_t rows = r->rows, cols = r->cols, ng = r->ngroups, gs = r->gs ? r->gs : cols;
    void *ctx = r->be->ctx;
    for (int64_t j = 0; j < cols; j++) h->g[j] = r->Hh[j * cols + j] * zeta[j] * zeta[j];
    ZF_TRY(r->i->upload(ctx, r->hvec, h->g, (size_t)cols * sizeof(float)));
    ZF_TRY(r->i->div_cols(r->qs, r->W, rows, cols, r->zeta, r->B));
    for (int64_t g = 0; g < ng; g++) {
        const int64_t c0 = g * gs, len = cols - c0 < gs ? cols - c0 : gs;
        ZF_TRY(r->i->zgrid_diag(r->qs, r->B + c0, rows, len, cols, r->hvec + c0, first ? ZF_DIAG_STRIDE : 0,
                                ZF_DIAG_WINDOW, r->scale + g, ng, r->zero + g, h->score + g * rows));
    }
    ZF_TRY(r->i->download(ctx, h->ca, r->scale, (size_t)(rows * ng) * sizeof(float)));
    return r->i->download(ctx, h->cz, r->zero, (size_t)(rows * ng) * sizeof(float));
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
    if (o->alpha == ZF_ALPHA_DIAG) return diag_step(r, h, h->czeta, false);
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
    const int64_t ng = r->ngroups, gs = r->gs ? r->gs : cols, rg = rows * ng;
    if (o->alpha == ZF_ALPHA_DIAG) {
        for (int64_t g = 0; g < ng; g++) {
            const int64_t c0 = g * gs, len = cols - c0 < gs ? cols - c0 : gs;
            ZF_TRY(r->i->grid_fit(r->qs, ZF_GRID_MINMAX, r->W + c0, rows, len, cols, NULL, cols, NULL, r->scale + g, ng,
                                  r->zero + g));
        }
        ZF_TRY(diag_step(r, h, zeta, true));
    } else {
        ZF_TRY(r->i->grid_fit(r->qs, o->grid, r->W, rows, cols, cols, r->H, cols, NULL, r->scale, 1, r->zero));
    }
    ZF_TRY(r->i->download(ctx, alpha, r->scale, (size_t)rg * sizeof(float)));
    ZF_TRY(r->i->download(ctx, zero, r->zero, (size_t)rg * sizeof(float)));
    double best;
    ZF_TRY(state_loss(r, h, &best));
    *iters = 0;
    *zeta_kept = 0;
    int nt = 0;
    if (trace) trace[nt++] = best;
    memcpy(h->ca, alpha, (size_t)rg * sizeof(float));
    memcpy(h->cz, zero, (size_t)rg * sizeof(float));
    memcpy(h->czeta, zeta, (size_t)cols * sizeof(float));
    for (int it = 1; it <= o->als_max_iter; it++) {
        ZF_TRY(als_step(r, tie, h, zeta_kept));
        double dl;
        ZF_TRY(state_loss(r, h, &dl));
        if (trace) trace[nt++] = dl;
        zf_log_debug("Z-FOLD ALS [%lld x %lld] iteration %d: ΔL %.6g (best %.6g)", (long long)rows, (long long)cols,
                     it, dl, best);
        if (!(dl <= best)) break;
        const bool converged = best - dl < o->als_tol * best;
        best = dl;
        *iters = it;
        memcpy(alpha, h->ca, (size_t)rg * sizeof(float));
        memcpy(zero, h->cz, (size_t)rg * sizeof(float));
        memcpy(zeta, h->czeta, (size_t)cols * sizeof(float));
        if (converged) break;
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
    const int64_t rows = r->rows, cols = r->cols, ncls = tie ? tie->nclasses : 0, rg = rows * r->ngroups;
    float *f = zf_malloc(((size_t)rg * 2 + (size_t)cols * 2) * sizeof(float), "Z-FOLD current state");
    double *d = zf_malloc(((size_t)cols * 2 + (size_t)rows * 2 + (size_t)rg + (size_t)ncls * 2) * sizeof(double),
                          "Z-FOLD sums");
    zf_status st = ZF_ERR_NOMEM;
    if (f && d) {
        als_host h = {.ca = f, .cz = f + rg, .czeta = f + 2 * rg, .g = f + 2 * rg + cols, .num = d, .den = d + cols,
                      .rowa = d + 2 * cols, .rowb = d + 2 * cols + rows, .score = d + 2 * cols + 2 * rows,
                      .cnum = d + 2 * cols + 2 * rows + rg, .cden = d + 2 * cols + 2 * rows + rg + ncls};
        st = als_loop(r, tie, &h, alpha, zero, zeta, iters, zeta_kept, trace, ntrace);
    }
    free(f), free(d);
    return st;
}

/* What the α refits share: each row's x·x in the factor's basis (zf_optq_whiten), H·ζ, each row's w·Hζ and ζ H ζᵀ,
 * and the row sums of the last column loop (zrow_sums: |ΔW|², a0·a0, a0·w, a0·Hζ in dd, aa0, aw0, av). */
typedef struct {
    double *xx;                                 /* [rows] x·x = w (H + λI) wᵀ */
    double *dd, *aa0, *aw0, *av, *wv, *ee, *ex; /* [rows] each */
    float *hz;                              /* [cols] H·ζ, also in r->hvec */
    double vv;                              /* ζ H ζᵀ */
} refit_ctx;

/* H·ζ, each row's w·Hζ and ζ H ζᵀ for the α refit on ζ (host); r->hvec holds H·ζ until another step takes it. */
static zf_status refit_prepare(zf_qrun *r, refit_ctx *c, const float *zeta)
{
    const int64_t n = r->cols;
    double vv = 0.0;
#pragma omp parallel for reduction(+ : vv) schedule(static)
    for (int64_t j = 0; j < n; j++) {
        double s = 0.0;
        for (int64_t k = 0; k < n; k++) s += (double)r->Hh[j * n + k] * (double)zeta[k];
        c->hz[j] = (float)s;
        vv += (double)zeta[j] * s;
    }
    c->vv = vv;
    ZF_TRY(r->i->upload(r->be->ctx, r->hvec, c->hz, (size_t)n * sizeof(float)));
    return r->i->rowdot(r->qs, r->W, r->rows, n, r->hvec, 0, c->wv);
}

/* Each row's ΔL of the codes and grids in r->q, r->scale, r->zero with ζ in r->zeta and groups in r->gidx, from
 * OPTQ's loop; deq is host scratch [rows, cols] (used only with dead inputs). Per channel with the α refit and c
 * given, also the row sums it reads into c (on ζ as refit_prepare left r->hvec). */
static zf_status loop_losses(zf_qrun *r, refit_ctx *c, float *deq, double *rowv)
{
    const int64_t rows = r->rows, n = r->cols;
    const bool sums = c && r->Xw;
    if (sums) {
        /* [4, rows] from the backend; c's arrays may be a row view's of longer ones */
        double *t = zf_malloc((size_t)rows * 4 * sizeof(double), "Z-FOLD row sums");
        if (!t) return ZF_ERR_NOMEM;
        zf_status st = r->i->zrow_sums(r->qs, r->W, r->q, r->scale, r->zero, r->zeta, r->hvec, rows, n, t);
        double *dst[4] = {c->dd, c->aa0, c->aw0, c->av};
        for (int k = 0; st == ZF_OK && k < 4; k++) memcpy(dst[k], t + k * rows, (size_t)rows * sizeof(double));
        free(t);
        ZF_TRY(st);
    }
    if (!zf_qrun_dead_inputs(r)) return zf_qrun_loop_rows(r, NULL, sums ? c->dd : NULL, rowv);
    ZF_TRY(r->i->dequant(r->qs, r->W, r->q, r->scale, r->zero, r->zeta, r->gidx, r->gs ? r->gs : n, r->ngroups, rows,
                         n, r->A, NULL));
    ZF_TRY(r->i->download(r->be->ctx, deq, r->A, (size_t)rows * (size_t)n * sizeof(float)));
    return zf_qrun_loop_rows(r, deq, NULL, rowv);
}

/* r->B = ΔW·H of the codes, grids, ζ and groups in r (r->A scratch): what the group refit and, with groups, the ζ
 * refit read. */
static zf_status residual_h(zf_qrun *r)
{
    ZF_TRY(r->i->dequant(r->qs, r->W, r->q, r->scale, r->zero, r->zeta, r->gidx, r->gs ? r->gs : r->cols, r->ngroups,
                         r->rows, r->cols, NULL, r->A));
    return r->i->hmul(r->qs, r->A, r->rows, r->H, r->B);
}

/* α and zero of every row refitted on H with the codes in r->q and ζ (in r->zeta, prepared in c) fixed, right after
 * the column loop that made the codes and loop_losses: zf_refit_row on each row's loss model, taken in the factor's
 * basis. There the row's weights are x, its loop errors e (W - Q = E U) and its dequantized weights x - e = α0 ã0,
 * so a0 (H + λI) a0ᵀ = |x - e|²/α0² and a0 (H + λI) wᵀ = (x·x - x·e)/α0 from the loop's own sums; the damping's
 * part comes off with a0·a0 and a0·w: no GEMM, unless that leaves a row too few digits (then the quadratic forms).
 * (Dead inputs: their working weights are 0, so their codes are the zero point and a0 is 0 there.) The grids change
 * on the host (alpha, zero) and in r->scale, r->zero together; rowv gets each row's change. */
static zf_status refit_rows(zf_qrun *r, refit_ctx *c, float *alpha, float *zero, double *rowv)
{
    const int64_t rows = r->rows, n = r->cols;
    void *ctx = r->be->ctx;
    const double lam = (double)r->lambda;
    ZF_TRY(r->i->download(ctx, c->ee, r->rowloss, (size_t)rows * sizeof(double)));
    ZF_TRY(r->i->download(ctx, c->ex, r->rowex, (size_t)rows * sizeof(double)));
    bool lost = false;
    for (int64_t k = 0; k < rows; k++) {
        const double a0 = alpha[k], xx = c->xx[k], ex = c->ex[k], ee = c->ee[k];
        if (!(a0 > 0.0)) continue; /* a row no grid could fit */
        const double aad = (xx - 2.0 * ex + ee) / (a0 * a0), awd = (xx - ex) / a0;
        c->aa0[k] = aad - lam * c->aa0[k], c->aw0[k] = awd - lam * c->aw0[k];
        lost |= !(c->aa0[k] >= ZF_LOOP_KEPT * aad) || !(fabs(c->aw0[k]) >= ZF_LOOP_KEPT * fabs(awd));
    }
    if (lost) {
        /* the damping is nearly all of some row's sums (as in zf_qrun_loop_rows): a0 H a0ᵀ and a0 H wᵀ exactly */
        zf_log_debug("Z-FOLD [%lld x %lld]: α refit by the quadratic forms: the damping is nearly all of the factor "
                     "basis' sums", (long long)rows, (long long)n);
        ZF_TRY(r->i->dequant(r->qs, r->W, r->q, r->ones, r->zero, r->zeta, NULL, n, 1, rows, n, r->A, NULL));
        ZF_TRY(r->i->quadform(r->qs, r->A, r->W, rows, r->H, c->aa0, c->aw0));
    }
    const float maxq = (float)((1 << r->o->bits) - 1);
    for (int64_t k = 0; k < rows; k++) {
        if (!(alpha[k] > 0.0f)) continue;
        const zf_row_model m = {.aa = c->aa0[k], .aw = c->aw0[k], .av = c->av[k], .wv = c->wv[k], .vv = c->vv};
        rowv[k] += zf_refit_row(&m, alpha[k], zero[k], r->o->sym, maxq, &alpha[k], &zero[k]);
    }
    ZF_TRY(r->i->upload(ctx, r->scale, alpha, (size_t)rows * sizeof(float)));
    return r->i->upload(ctx, r->zero, zero, (size_t)rows * sizeof(float));
}

/* The fallback's screen: plain OPTQ on ZF_SCREEN_BLOCKS evenly spaced blocks of rows (o->optq_screen of them, at
 * least ZF_SCREEN_MIN_ROWS over the team) first; Z-FOLD wins without the full run when its ΔL on those rows is below
 * ZF_SCREEN_MARGIN times plain OPTQ's. Rows are quantized independently, so the blocks' ΔL are the full run's own. */
#define ZF_SCREEN_BLOCKS 4
#define ZF_SCREEN_MIN_ROWS 256
#define ZF_SCREEN_MARGIN 0.85

/* r restricted to its rows [r0, r0 + k): the same H, factor and scratch; rows' buffers offset. */
static zf_qrun row_view(const zf_qrun *r, int64_t r0, int64_t k)
{
    zf_qrun v = *r;
    const int64_t n = r->cols, ng = r->ngroups;
    v.rows = k;
    v.nmembers = 1, v.member_rows = NULL; /* no ζ refit runs on a view */
    v.Wh = r->Wh + r0 * n, v.W = r->W + r0 * n, v.B = r->B + r0 * n, v.q = r->q + r0 * n;
    v.scale = r->scale + r0 * ng, v.zero = r->zero + r0 * ng, v.rowloss = r->rowloss + r0;
    if (r->Xw) v.Xw = r->Xw + r0, v.rowex = r->rowex + r0; /* columns of Xw: its stride stays */
    return v;
}

/* Plain OPTQ as the fallback runs it (ones uploaded as ζ, and refit_prepare'd in c) on rows [r0, r0 + k) of r: codes
 * and grids into r's rows, the rows' ΔL into rowo + r0, grids into alpha and zero + r0·ngroups. */
static zf_status plain_rows(zf_qrun *r, refit_ctx *c, zf_qresult *out, int64_t r0, int64_t k, float *alpha,
                            float *zero, double *rowo)
{
    zf_qrun v = row_view(r, r0, k);
    const int64_t rg = k * r->ngroups;
    refit_ctx cv = {.xx = c->xx + r0, .dd = c->dd + r0, .aa0 = c->aa0 + r0, .aw0 = c->aw0 + r0, .av = c->av + r0,
                    .wv = c->wv + r0, .ee = c->ee + r0, .ex = c->ex + r0, .vv = c->vv};
    alpha += r0 * r->ngroups, zero += r0 * r->ngroups;
    ZF_TRY(r->i->fill_zero(r->be->ctx, v.rowloss, (size_t)k * sizeof(double))); /* the loop adds to it */
    ZF_TRY(zf_optq_run(&v, NULL, NULL, NULL, out));
    ZF_TRY(r->i->download(r->be->ctx, alpha, v.scale, (size_t)rg * sizeof(float)));
    ZF_TRY(r->i->download(r->be->ctx, zero, v.zero, (size_t)rg * sizeof(float)));
    ZF_TRY(loop_losses(&v, &cv, out->deq, rowo + r0));
    if (r->o->refit && !r->gs) ZF_TRY(refit_rows(&v, &cv, alpha, zero, rowo + r0));
    return ZF_OK;
}

/* *clear: plain OPTQ lost clearly on the screened rows (then out->optq_screen_rows counts them over the team);
 * *screened: the rows screened at the start of each of the ZF_SCREEN_BLOCKS spans (0: no screen ran). */
static zf_status screen(zf_qrun *r, refit_ctx *c, zf_qresult *out, const double *rowz, float *alpha, float *zero,
                        double *rowo, bool *clear, int64_t *screened)
{
    const int64_t rows = r->rows, kb = (int64_t)(r->o->optq_screen * (double)rows) / ZF_SCREEN_BLOCKS;
    double s[3] = {(double)(kb * ZF_SCREEN_BLOCKS), 0.0, 0.0}; /* rows, Z-FOLD's ΔL, plain OPTQ's ΔL */
    *clear = false, *screened = 0;
    ZF_TRY(zf_qrun_team_sum(r, s, 1));
    if (s[0] < ZF_SCREEN_MIN_ROWS) return ZF_OK; /* the same on every process of the team */
    *screened = kb;
    for (int b = 0; b < ZF_SCREEN_BLOCKS && kb > 0; b++) {
        const int64_t r0 = b * (rows / ZF_SCREEN_BLOCKS);
        ZF_TRY(plain_rows(r, c, out, r0, kb, alpha, zero, rowo));
        for (int64_t i = r0; i < r0 + kb; i++) s[1] += rowz[i], s[2] += rowo[i];
    }
    ZF_TRY(zf_qrun_team_sum(r, s + 1, 2));
    *clear = s[1] < ZF_SCREEN_MARGIN * s[2];
    zf_log_debug("Z-FOLD [%lld x %lld]: on %.0f screened rows ΔL %.6g, plain OPTQ %.6g (%.3fx): %s", (long long)rows,
                 (long long)r->cols, s[0], s[1], s[2], s[1] / s[2], *clear ? "Z-FOLD kept" : "plain OPTQ on all rows");
    if (*clear) out->optq_screen_rows = (int64_t)s[0];
    return ZF_OK;
}

/* Plain OPTQ (ζ = 1, its own grids, refitted like Z-FOLD per channel) on the same factor; kept in r and out when its
 * ΔL over the team's rows is lower than rowz's, then with ζ refitted on its codes; the Z-FOLD result (codes, grids,
 * groups, ζ) otherwise restored. */
static zf_status fallback(zf_qrun *r, const zf_zeta_tie *tie, refit_ctx *c, zf_qresult *out, double *rowz,
                          float *grids, int32_t *gidx, double *rowo)
{
    const zf_quant_opts *o = r->o;
    const int64_t rows = r->rows, n = r->cols, rg = rows * r->ngroups;
    void *ctx = r->be->ctx;
    float *ones = grids, *alpha = grids + n, *zero = grids + n + rg;
    for (int64_t j = 0; j < n; j++) ones[j] = 1.0f;
    double tot[2] = {zf_qrun_rows_total(r, rowz), 0.0};
    memcpy(gidx, out->g_idx, (size_t)n * sizeof(int32_t));
    ZF_TRY(r->i->download(ctx, out->q, r->q, (size_t)rows * (size_t)n));
    ZF_TRY(r->i->upload(ctx, r->zeta, ones, (size_t)n * sizeof(float)));
    if (r->Xw) ZF_TRY(refit_prepare(r, c, ones));
    bool clear = false;
    int64_t kb = 0;
    if (o->optq_screen > 0 && !o->optq_always) ZF_TRY(screen(r, c, out, rowz, alpha, zero, rowo, &clear, &kb));
    if (!clear) {
        /* the rows the screen did not run: the rest of each span (all rows when it ran on none) */
        const int64_t nspan = kb ? ZF_SCREEN_BLOCKS : 1, span = rows / nspan;
        for (int64_t b = 0; b < nspan; b++) {
            const int64_t r0 = b * span + kb, r1 = b == nspan - 1 ? rows : (b + 1) * span;
            if (r1 > r0) ZF_TRY(plain_rows(r, c, out, r0, r1 - r0, alpha, zero, rowo));
        }
        ZF_TRY(r->i->upload(ctx, r->gidx, out->g_idx, (size_t)n * sizeof(int32_t)));
        tot[1] = zf_qrun_rows_total(r, rowo);
        ZF_TRY(zf_qrun_team_sum(r, tot, 2));
    }
    out->optq_kept = !clear && (tot[1] < tot[0] || o->optq_always);
    if (!clear)
        zf_log_debug("Z-FOLD [%lld x %lld]: ΔL %.6g, plain OPTQ %.6g: %s kept", (long long)rows, (long long)n, tot[0],
                     tot[1], out->optq_kept ? "OPTQ" : "Z-FOLD");
    if (out->optq_kept) {
        memcpy(out->zeta, ones, (size_t)n * sizeof(float));
        memcpy(rowz, rowo, (size_t)rows * sizeof(double));
        /* OPTQ's codes on a refitted ζ: a Z-FOLD grid that may do better still (with groups the ζ refit reads
         * ΔW·H of OPTQ's codes) */
        bool zeta_kept = false;
        if (r->M && r->gs) ZF_TRY(residual_h(r));
        if (r->M) ZF_TRY(zf_zfold_refit_zeta(r, tie, out->zeta, rowz, &zeta_kept));
        return ZF_OK;
    }
    memcpy(out->g_idx, gidx, (size_t)n * sizeof(int32_t));
    ZF_TRY(r->i->upload(ctx, r->q, out->q, (size_t)rows * (size_t)n));
    ZF_TRY(r->i->upload(ctx, r->scale, out->scale, (size_t)rg * sizeof(float)));
    ZF_TRY(r->i->upload(ctx, r->zero, out->zero, (size_t)rg * sizeof(float)));
    return r->i->upload(ctx, r->zeta, out->zeta, (size_t)n * sizeof(float));
}

/* Whether each group is a run of gs columns in order (Z-FOLD's always are; plain OPTQ's act-order groups are not):
 * what the group refit's slices need. */
static bool groups_in_order(const zf_qrun *r, const int32_t *gidx)
{
    for (int64_t j = 0; j < r->cols; j++)
        if (gidx[j] != j / r->gs) return false;
    return true;
}

/* α and zero per row and group refitted with the codes and ζ fixed: each group in turn, every row's closed form
 * (zf_refit_row) with its other groups fixed, so ΔL never rises; r->B = ΔW·H on entry, kept current for the ζ
 * refit, else only on the columns of the groups still to come (all a group reads). */
static zf_status refit_groups(zf_qrun *r, zf_qresult *out, double *rowv)
{
    const int64_t rows = r->rows, n = r->cols, ng = r->ngroups, gs = r->gs;
    const float maxq = (float)((1 << r->o->bits) - 1);
    double *s = zf_malloc((size_t)rows * 4 * sizeof(double), "group refit sums");
    float *fresh = zf_malloc((size_t)rows * 2 * sizeof(float), "group refit grids");
    zf_status st = s && fresh ? ZF_OK : ZF_ERR_NOMEM;
    float *dfresh = r->gbuf + rows * 2 * (gs < n ? gs : n); /* after the scratch of two [rows, group] matrices */
    for (int64_t g = 0; st == ZF_OK && g < ng; g++) {
        const int64_t c0 = g * gs, len = n - c0 < gs ? n - c0 : gs;
        double vv = 0.0;
        for (int64_t j = c0; j < c0 + len; j++)
            for (int64_t k = c0; k < c0 + len; k++) vv += (double)out->zeta[j] * r->Hh[j * n + k] * out->zeta[k];
        st = r->i->group_sums(r->qs, r->B, r->q, r->zero + g, ng, r->zeta, r->H, rows, c0, len, r->gbuf, s);
        bool changed = false;
        for (int64_t k = 0; st == ZF_OK && k < rows; k++) {
            float *a = out->scale + k * ng + g, *z = out->zero + k * ng + g;
            fresh[k] = *a, fresh[rows + k] = *z;
            if (!(*a > 0.0f)) continue; /* a row no grid could fit */
            /* the group's share of the row, u = ΔW + α a: a H uᵀ = a·(ΔW H) + α a H aᵀ, likewise with v = ζ */
            const double a0 = *a;
            const zf_row_model m = {.aa = s[k], .aw = s[2 * rows + k] + a0 * s[k], .av = s[rows + k],
                                    .wv = s[3 * rows + k] + a0 * s[rows + k], .vv = vv};
            const double ch = zf_refit_row(&m, *a, *z, r->o->sym, maxq, &fresh[k], &fresh[rows + k]);
            if (!(ch < 0.0)) continue;
            rowv[k] += ch, changed = true;
            *a = fresh[k], *z = fresh[rows + k];
        }
        if (st != ZF_OK || !changed) continue;
        st = r->i->upload(r->be->ctx, dfresh, fresh, (size_t)rows * 2 * sizeof(float));
        if (st == ZF_OK)
            st = r->i->group_update(r->qs, r->B, r->q, r->scale + g, r->zero + g, ng, dfresh, dfresh + rows, r->zeta,
                                    r->H, rows, c0, len, r->M ? 0 : c0 + len, r->gbuf);
    }
    free(s), free(fresh);
    return st;
}

/* The refits after an OPTQ run on the Z-FOLD grid: α and zero (per channel unless alpha_done, or per row and group),
 * then ζ. Per channel with the ζ refit W·H in r->B on entry; with groups ΔW·H is formed here. */
static zf_status refits(zf_qrun *r, const zf_zeta_tie *tie, refit_ctx *c, zf_qresult *out, double *rowv,
                        bool alpha_done)
{
    const double t0 = zf_now();
    bool zeta_kept = false;
    zf_status st = ZF_OK;
    if (r->gs && (r->M || r->gbuf)) st = residual_h(r);
    if (st == ZF_OK && r->gbuf && groups_in_order(r, out->g_idx)) st = refit_groups(r, out, rowv);
    if (st == ZF_OK && r->Xw && !alpha_done) st = refit_rows(r, c, out->scale, out->zero, rowv);
    if (st == ZF_OK && r->M) st = zf_zfold_refit_zeta(r, tie, out->zeta, rowv, &zeta_kept);
    out->t_refit += zf_now() - t0;
    return st;
}

/* A round's state: codes (host), α, zero, ζ and the rows' ΔL. */
typedef struct {
    uint8_t *q;
    float *scale, *zero, *zeta;
    double *rowv;
} round_state;

static void round_save(const zf_qrun *r, const zf_qresult *out, round_state *s)
{
    const size_t rg = (size_t)(r->rows * r->ngroups);
    memcpy(s->scale, out->scale, rg * sizeof(float));
    memcpy(s->zero, out->zero, rg * sizeof(float));
    memcpy(s->zeta, out->zeta, (size_t)r->cols * sizeof(float));
    memcpy(s->rowv, r->rowdl, (size_t)r->rows * sizeof(double));
}

static zf_status round_restore(zf_qrun *r, const round_state *s, zf_qresult *out)
{
    const size_t rg = (size_t)(r->rows * r->ngroups), n = (size_t)r->cols;
    void *ctx = r->be->ctx;
    memcpy(out->scale, s->scale, rg * sizeof(float));
    memcpy(out->zero, s->zero, rg * sizeof(float));
    memcpy(out->zeta, s->zeta, n * sizeof(float));
    memcpy(r->rowdl, s->rowv, (size_t)r->rows * sizeof(double));
    ZF_TRY(r->i->upload(ctx, r->q, s->q, (size_t)r->rows * n));
    ZF_TRY(r->i->upload(ctx, r->scale, out->scale, rg * sizeof(float)));
    ZF_TRY(r->i->upload(ctx, r->zero, out->zero, rg * sizeof(float)));
    return r->i->upload(ctx, r->zeta, out->zeta, n * sizeof(float));
}

/* zfold_rounds: OPTQ again on the grid the refits left, and the refits again, while the layer's ΔL falls; a round
 * that does not lower it is undone. The codes' groups stay (static on a fixed grid). */
static zf_status rounds(zf_qrun *r, const zf_zeta_tie *tie, refit_ctx *c, zf_qresult *out)
{
    const int64_t rows = r->rows, n = r->cols, rg = rows * r->ngroups;
    round_state s = {.q = zf_malloc((size_t)rows * (size_t)n, "Z-FOLD round codes"),
                     .scale = zf_malloc(((size_t)rg * 2 + (size_t)n) * sizeof(float), "Z-FOLD round grids"),
                     .rowv = zf_malloc((size_t)rows * sizeof(double), "Z-FOLD round losses")};
    zf_status st = s.q && s.scale && s.rowv ? ZF_OK : ZF_ERR_NOMEM;
    if (st == ZF_OK) s.zero = s.scale + rg, s.zeta = s.scale + 2 * rg;
    for (int k = 2; st == ZF_OK && k <= r->o->zfold_rounds; k++) {
        st = r->i->download(r->be->ctx, s.q, r->q, (size_t)rows * (size_t)n);
        round_save(r, out, &s);
        double tot[2] = {zf_qrun_rows_total(r, s.rowv), 0.0};
        if (st == ZF_OK) st = r->i->fill_zero(r->be->ctx, r->rowloss, (size_t)rows * sizeof(double));
        if (st == ZF_OK) st = zf_optq_run(r, out->scale, out->zero, out->zeta, out);
        if (st == ZF_OK && r->Xw) st = refit_prepare(r, c, out->zeta);
        if (st == ZF_OK) st = loop_losses(r, c, out->deq, r->rowdl);
        if (st == ZF_OK) st = refits(r, tie, c, out, r->rowdl, false);
        tot[1] = zf_qrun_rows_total(r, r->rowdl);
        if (st == ZF_OK) st = zf_qrun_team_sum(r, tot, 2);
        if (st != ZF_OK) break;
        zf_log_debug("Z-FOLD [%lld x %lld] round %d: ΔL %.6g -> %.6g%s", (long long)rows, (long long)n, k, tot[0],
                     tot[1], tot[1] < tot[0] ? "" : ", undone");
        if (!(tot[1] < tot[0])) {
            st = round_restore(r, &s, out);
            break;
        }
    }
    free(s.q), free(s.scale), free(s.rowv);
    return st;
}

/* After OPTQ on the ALS grid: the refits (α per channel, ζ) and the fallback, with each row's final ΔL in r->rowdl.
 * kept: the per-row widening left each row's best run in r, its ΔL in r->rowdl and (per channel) its α refitted. */
static zf_status after_optq(zf_qrun *r, const zf_zeta_tie *tie, refit_ctx *c, zf_qresult *out, bool kept)
{
    const int64_t rows = r->rows, n = r->cols, rg = rows * r->ngroups;
    double *rowo = zf_malloc((size_t)rows * sizeof(double), "Z-FOLD plain OPTQ row losses");
    float *f = zf_malloc(((size_t)n + 2 * (size_t)rg) * sizeof(float), "Z-FOLD fallback grids");
    int32_t *gidx = zf_malloc((size_t)n * sizeof(int32_t), "Z-FOLD groups");
    zf_status st = rowo && f && gidx ? ZF_OK : ZF_ERR_NOMEM;
    if (st == ZF_OK) st = r->i->upload(r->be->ctx, r->zeta, out->zeta, (size_t)n * sizeof(float));
    if (st == ZF_OK) st = r->i->upload(r->be->ctx, r->gidx, out->g_idx, (size_t)n * sizeof(int32_t));
    if (st == ZF_OK && !kept && r->Xw) st = refit_prepare(r, c, out->zeta);
    if (st == ZF_OK && !kept) st = loop_losses(r, c, out->deq, r->rowdl);
    /* per channel the ζ refit reads W·H (with groups refits() forms ΔW·H for each state it refits) */
    const double t0 = zf_now();
    if (st == ZF_OK && !r->gs && r->M) st = r->i->hmul(r->qs, r->W, rows, r->H, r->B);
    out->t_refit += zf_now() - t0;
    if (st == ZF_OK) st = refits(r, tie, c, out, r->rowdl, kept);
    if (st == ZF_OK && r->o->zfold_rounds > 1) st = rounds(r, tie, c, out);
    if (st == ZF_OK && r->o->optq_fallback) {
        /* its own time: the factor and column loops it runs count as OPTQ's */
        const double t1 = zf_now(), optq1 = out->t_factor + out->t_loop;
        st = fallback(r, tie, c, out, r->rowdl, f, gidx, rowo);
        out->t_fallback = zf_now() - t1 - (out->t_factor + out->t_loop - optq1);
    }
    free(rowo), free(f), free(gidx);
    return st;
}

/* The α refit's context (c->xx and r->Xw when it runs per channel: the factor first); ctx_close frees it. */
static zf_status ctx_open(zf_qrun *r, zf_qresult *out, refit_ctx *c)
{
    const int64_t rows = r->rows;
    double *d = zf_malloc((size_t)rows * 8 * sizeof(double), "Z-FOLD refit row sums");
    float *hz = zf_malloc((size_t)r->cols * sizeof(float), "Z-FOLD H·ζ");
    *c = (refit_ctx){.xx = d, .dd = d + rows, .aa0 = d + 2 * rows, .aw0 = d + 3 * rows, .av = d + 4 * rows,
                     .wv = d + 5 * rows, .ee = d + 6 * rows, .ex = d + 7 * rows, .hz = hz};
    if (!d || !hz) return ZF_ERR_NOMEM;
    if (!r->Xw) return ZF_OK;
    const double t0 = zf_now(), f0 = out->t_factor;
    ZF_TRY(zf_optq_whiten(r, out));
    ZF_TRY(r->i->coldot(r->qs, r->Xw, r->Xw, r->cols, rows, c->xx));
    out->t_refit += zf_now() - t0 - (out->t_factor - f0);
    return ZF_OK;
}

static void ctx_close(refit_ctx *c)
{
    free(c->xx), free(c->hz);
}

/* grid_widen: OPTQ's codes on the ALS grid's scales times 1, 1 + ZF_WIDEN_STEP, ... (at most ZF_WIDEN_MAX) while the
 * ΔL of the rows tried falls over the team. The ALS fits the clip to rounding, and OPTQ's error feedback carries
 * weights past it, most at 2 and 3 bits. */
#define ZF_WIDEN_STEP 0.1
#define ZF_WIDEN_MAX 2.0
#define ZF_WIDEN_MIN_ROWS 256

/* Host scratch of the widening: the ALS scales, the trial scales, and per row its ΔL, best ΔL and factor; per row
 * also the trial's refitted grids and codes and the best ones. */
typedef struct {
    float *base, *trial, *fac;
    double *rowv, *best;
    float *ta, *tz, *ba, *bz; /* [rows, ngroups] each */
    uint8_t *qt, *qb;         /* [rows, cols] each */
} widen_host;

/* grid_widen: row — the trial's rows refitted (α and zero per channel) and each row's best run kept whole: its
 * codes, grids and ΔL. */
static zf_status keep_rows(zf_qrun *r, refit_ctx *c, zf_qresult *out, widen_host *h, double f)
{
    const int64_t rows = r->rows, n = r->cols, ng = r->ngroups;
    memcpy(h->ta, h->trial, (size_t)(rows * ng) * sizeof(float));
    memcpy(h->tz, out->zero, (size_t)(rows * ng) * sizeof(float));
    if (r->Xw) ZF_TRY(refit_rows(r, c, h->ta, h->tz, h->rowv));
    ZF_TRY(r->i->download(r->be->ctx, h->qt, r->q, (size_t)rows * (size_t)n));
    for (int64_t k = 0; k < rows; k++) {
        if (!(h->rowv[k] < h->best[k]) && isfinite(h->best[k])) continue; /* a row's first run is always kept */
        h->best[k] = h->rowv[k], h->fac[k] = (float)f;
        memcpy(h->qb + k * n, h->qt + k * n, (size_t)n);
        memcpy(h->ba + k * ng, h->ta + k * ng, (size_t)ng * sizeof(float));
        memcpy(h->bz + k * ng, h->tz + k * ng, (size_t)ng * sizeof(float));
    }
    return ZF_OK;
}

/* The factor's trial on the rows tried (ZF_SCREEN_BLOCKS blocks of kb rows, or all rows when kb is 0): their ΔL
 * total (team-summed) in *tot; per row, the best so far (grid_widen: row: its run kept, keep_rows). */
static zf_status widen_try(zf_qrun *r, refit_ctx *c, zf_qresult *out, widen_host *h, int64_t kb, double f,
                           double *tot)
{
    const int64_t rows = r->rows, ng = r->ngroups, nb = kb ? ZF_SCREEN_BLOCKS : 1, len = kb ? kb : rows;
    for (int64_t k = 0; k < rows * ng; k++) h->trial[k] = (float)((double)h->base[k] * f);
    *tot = 0.0;
    for (int64_t b = 0; b < nb; b++) {
        const int64_t r0 = b * (rows / nb);
        zf_qrun v = row_view(r, r0, len);
        ZF_TRY(r->i->fill_zero(r->be->ctx, v.rowloss, (size_t)len * sizeof(double))); /* the loop adds to it */
        ZF_TRY(zf_optq_run(&v, h->trial + r0 * ng, out->zero + r0 * ng, out->zeta, out));
        r->factored = v.factored, r->lambda = v.lambda; /* the first trial's factor serves every later run */
        ZF_TRY(r->i->upload(r->be->ctx, r->gidx, out->g_idx, (size_t)r->cols * sizeof(int32_t)));
        ZF_TRY(loop_losses(&v, h->qb ? c : NULL, out->deq, h->rowv + r0));
        if (h->qb) {
            ZF_TRY(keep_rows(r, c, out, h, f));
        } else {
            for (int64_t k = r0; k < r0 + len; k++)
                if (h->rowv[k] < h->best[k]) h->best[k] = h->rowv[k], h->fac[k] = (float)f;
        }
        for (int64_t k = r0; k < r0 + len; k++) *tot += h->rowv[k];
    }
    return zf_qrun_team_sum(r, tot, 1);
}

/* grid_widen: row — each row's best run into r (codes, grids) and out (grids), its ΔL into r->rowdl. */
static zf_status widen_keep(zf_qrun *r, zf_qresult *out, const widen_host *h)
{
    const size_t rg = (size_t)(r->rows * r->ngroups);
    void *ctx = r->be->ctx;
    memcpy(out->scale, h->ba, rg * sizeof(float));
    memcpy(out->zero, h->bz, rg * sizeof(float));
    memcpy(r->rowdl, h->best, (size_t)r->rows * sizeof(double));
    ZF_TRY(r->i->upload(ctx, r->q, h->qb, (size_t)r->rows * (size_t)r->cols));
    ZF_TRY(r->i->upload(ctx, r->scale, out->scale, rg * sizeof(float)));
    return r->i->upload(ctx, r->zero, out->zero, rg * sizeof(float));
}

/* out->scale stretched as grid_widen chooses (out->grid_widen the factor, or the rows' mean); r->rowloss zeroed for
 * the run that follows. grid_widen: row runs OPTQ on every row for each factor and keeps each row's best run, its
 * α and zero refitted (*kept: no run follows). */
static zf_status widen(zf_qrun *r, refit_ctx *c, zf_qresult *out, bool *kept)
{
    const zf_quant_opts *o = r->o;
    const int64_t rows = r->rows, n = r->cols, ng = r->ngroups, rg = rows * ng;
    const bool per_row = o->grid_widen == ZF_WIDEN_ROW;
    /* the rows tried: four blocks of grid_widen_sample of them but at least ZF_WIDEN_MIN_ROWS; every row where that
     * is all of them (and per row) */
    const double want = fmax(o->grid_widen_sample * (double)rows, ZF_WIDEN_MIN_ROWS);
    int64_t kb = per_row ? 0 : (int64_t)want / ZF_SCREEN_BLOCKS;
    if (kb * ZF_SCREEN_BLOCKS >= rows) kb = 0;
    widen_host h = {.base = zf_malloc((size_t)rg * (per_row ? 6 : 2) * sizeof(float) + (size_t)rows * sizeof(float),
                                      "grid widening"),
                    .rowv = zf_malloc((size_t)rows * 2 * sizeof(double), "grid widening row losses"),
                    .qt = per_row ? zf_malloc((size_t)rows * (size_t)n * 2, "grid widening codes") : NULL};
    zf_status st = h.base && h.rowv && (!per_row || h.qt) ? ZF_OK : ZF_ERR_NOMEM;
    double best = INFINITY, cbest = 1.0, tot = 0.0;
    if (st == ZF_OK) {
        h.trial = h.base + rg, h.fac = h.base + 2 * rg, h.best = h.rowv + rows;
        if (per_row) h.ta = h.fac + rows, h.tz = h.ta + rg, h.ba = h.tz + rg, h.bz = h.ba + rg, h.qb = h.qt + rows * n;
        memcpy(h.base, out->scale, (size_t)rg * sizeof(float));
        for (int64_t k = 0; k < rows; k++) h.best[k] = INFINITY, h.fac[k] = 1.0f;
        st = r->i->upload(r->be->ctx, r->zeta, out->zeta, (size_t)r->cols * sizeof(float));
    }
    if (st == ZF_OK && per_row && r->Xw) st = refit_prepare(r, c, out->zeta);
    for (int k = 0; st == ZF_OK; k++) {
        const double f = 1.0 + k * ZF_WIDEN_STEP;
        if (f > ZF_WIDEN_MAX + 1e-9) break;
        st = widen_try(r, c, out, &h, kb, f, &tot);
        zf_log_debug("Z-FOLD [%lld x %lld]: grid widened %.1fx: ΔL %.6g on the rows tried", (long long)rows,
                     (long long)r->cols, f, tot);
        if (!(tot < best)) break;
        best = tot, cbest = f;
    }
    double mean = 0.0;
    for (int64_t k = 0; st == ZF_OK && k < rows; k++) {
        const double f = per_row ? (double)h.fac[k] : cbest;
        for (int64_t g = 0; !per_row && g < ng; g++) out->scale[k * ng + g] = (float)((double)h.base[k * ng + g] * f);
        mean += f;
    }
    out->grid_widen = per_row ? (rows ? mean / (double)rows : 1.0) : cbest;
    *kept = per_row && st == ZF_OK;
    if (*kept) st = widen_keep(r, out, &h);
    if (st == ZF_OK) st = r->i->fill_zero(r->be->ctx, r->rowloss, (size_t)rows * sizeof(double));
    free(h.base), free(h.rowv), free(h.qt);
    return st;
}

int64_t zf_zfold_widen_host_bytes(const zf_quant_opts *o, int64_t rows, int64_t cols)
{
    const bool per_row = o->method == ZF_METHOD_ZFOLD && o->zfold_optq && o->grid_widen == ZF_WIDEN_ROW;
    return per_row ? 2 * rows * cols : 0;
}

zf_status zf_zfold_run(zf_qrun *r, const zf_zeta_tie *tie, zf_qresult *out)
{
    const int64_t rows = r->rows, cols = r->cols, rg = rows * r->ngroups;
    void *ctx = r->be->ctx;
    const double t0 = zf_now();
    ZF_TRY(als_run(r, tie, out->scale, out->zero, out->zeta, &out->als_iters, &out->zeta_kept, NULL, NULL));
    out->t_als = zf_now() - t0;
    out->grid_widen = 1.0;
    if (r->o->zfold_optq) {
        refit_ctx c;
        bool kept = false; /* the widening kept each row's best run */
        r->rowdl = zf_malloc((size_t)rows * sizeof(double), "Z-FOLD row losses");
        zf_status st = r->rowdl ? ctx_open(r, out, &c) : ZF_ERR_NOMEM;
        if (st == ZF_OK && r->o->grid_widen != ZF_WIDEN_OFF) st = widen(r, &c, out, &kept);
        /* zf_optq_run reads the fixed grids from the host arrays; the final grids come back into out afterwards */
        if (st == ZF_OK && !kept) st = zf_optq_run(r, out->scale, out->zero, out->zeta, out);
        if (st == ZF_OK && (kept || r->o->refit || r->M || r->o->optq_fallback)) st = after_optq(r, tie, &c, out, kept);
        if (st == ZF_OK && !kept && !(r->o->refit || r->M || r->o->optq_fallback)) free(r->rowdl), r->rowdl = NULL;
        ctx_close(&c);
        return st;
    }
    ZF_TRY(r->i->upload(ctx, r->scale, out->scale, (size_t)rg * sizeof(float)));
    ZF_TRY(r->i->upload(ctx, r->zero, out->zero, (size_t)rg * sizeof(float)));
    ZF_TRY(r->i->upload(ctx, r->zeta, out->zeta, (size_t)cols * sizeof(float)));
    ZF_TRY(r->i->zstate(r->qs, r->W, rows, cols, r->scale, r->zero, r->zeta, NULL, NULL, r->q));
    for (int64_t j = 0; j < cols; j++) out->g_idx[j] = (int32_t)(r->gs ? j / r->gs : 0);
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
