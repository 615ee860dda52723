/* Z-FOLD's refit of ζ with the codes fixed: the normal equations on the backend, ties and team sums on the host. */
#include "worker/zfold_zeta.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* Values per team sum of the matrix (in double). */
#define ZF_ZETA_TEAM_CHUNK ((int64_t)1 << 20)

/* v [n] (host floats) summed over r's team, in double a chunk at a time. */
static zf_status team_sum_floats(zf_qrun *r, float *v, int64_t n)
{
    double *buf = zf_malloc((size_t)(n < ZF_ZETA_TEAM_CHUNK ? n : ZF_ZETA_TEAM_CHUNK) * sizeof(double), "ζ team sums");
    if (!buf) return ZF_ERR_NOMEM;
    zf_status st = ZF_OK;
    for (int64_t k = 0; k < n && st == ZF_OK; k += ZF_ZETA_TEAM_CHUNK) {
        const int64_t m = n - k < ZF_ZETA_TEAM_CHUNK ? n - k : ZF_ZETA_TEAM_CHUNK;
        for (int64_t i = 0; i < m; i++) buf[i] = v[k + i];
        st = zf_qrun_team_sum(r, buf, m);
        for (int64_t i = 0; i < m && st == ZF_OK; i++) v[k + i] = (float)buf[i];
    }
    free(buf);
    return st;
}

/* The tied system: M [n, n] (host) summed into M [nc, nc] per class pair in place (row-major with stride nc). */
static zf_status pool_classes(const zf_zeta_tie *tie, float *M, int64_t n)
{
    const int64_t nc = tie->nclasses;
    double *acc = zf_calloc((size_t)(nc * nc), sizeof(double), "ζ tied system");
    if (!acc) return ZF_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) acc[tie->cls[i] * nc + tie->cls[j]] += M[i * n + j];
    for (int64_t k = 0; k < nc * nc; k++) M[k] = (float)acc[k];
    free(acc);
    return ZF_OK;
}

/* A group's members' own parts of the normal equations (host, class space once pooled): each member's M_m [nc, nc]
 * and b_m [nc] from this process's rows, so that each member's change of ΔL is known in closed form. */
typedef struct {
    int n;          /* members */
    float *M;       /* [n, nc, nc] */
    double *b;      /* [n, nc] */
} zeta_parts;

/* Each member's hgram and coldot on its rows of r->A (and r->B = W·H) into p (host), M and b their sums (host). */
static zf_status member_parts(zf_qrun *r, zeta_parts *p, float *M, double *b)
{
    const int64_t n = r->cols;
    const size_t nn = (size_t)n * (size_t)n;
    const bool host = (r->i->caps & ZF_CAP_HOST_MEMORY) != 0; /* hgram writes the host copy itself */
    int64_t r0 = 0;
    for (int64_t j = 0; j < n; j++) b[j] = 0.0;
    for (int m = 0; m < p->n; m++) {
        const int64_t rm = r->member_rows[m];
        float *Mm = p->M + (size_t)m * nn;
        double *bm = p->b + (size_t)m * (size_t)n;
        if (rm > 0) {
            ZF_TRY(r->i->coldot(r->qs, r->A + r0 * n, r->B + r0 * n, rm, n, bm));
            ZF_TRY(r->i->hgram(r->qs, r->A + r0 * n, rm, r->H, host ? Mm : r->M));
            if (!host) ZF_TRY(r->i->download(r->be->ctx, Mm, r->M, nn * sizeof(float)));
        } else {
            memset(Mm, 0, nn * sizeof(float));
            for (int64_t j = 0; j < n; j++) bm[j] = 0.0;
        }
        for (int64_t j = 0; j < n; j++) b[j] += bm[j];
        r0 += rm;
    }
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nn; k++) {
        float s = 0.0f;
        for (int m = 0; m < p->n; m++) s += p->M[(size_t)m * nn + k];
        M[k] = s;
    }
    return ZF_OK;
}

/* b [n] pooled per tie class into its first nc entries (tmp [n] scratch). */
static void pool_vector(const zf_zeta_tie *tie, int64_t n, double *b, double *tmp)
{
    memcpy(tmp, b, (size_t)n * sizeof(double));
    for (int64_t a = 0; a < tie->nclasses; a++) b[a] = 0.0;
    for (int64_t j = 0; j < n; j++) b[tie->cls[j]] += tmp[j];
}

/* The normal equations in r->M ([nc, nc], nc = tie classes or columns) and their right-hand side b [nc] (host),
 * summed over the team; *mean_diag = the mean of M's diagonal; p (when given) each member's own parts. b needs n
 * values of room, sq [n] is scratch. */
static zf_status build_system(zf_qrun *r, const zf_zeta_tie *tie, zeta_parts *p, double *b, double *sq,
                              double *mean_diag)
{
    const int64_t rows = r->rows, n = r->cols, nc = tie ? tie->nclasses : n;
    void *ctx = r->be->ctx;
    /* A = α(q - z) with unit ζ */
    ZF_TRY(r->i->dequant(r->qs, r->W, r->q, r->scale, r->zero, NULL, r->gidx, r->gs ? r->gs : n, r->ngroups, rows, n,
                         r->A, NULL));
    ZF_TRY(r->i->coldot(r->qs, r->A, r->A, rows, n, sq));
    float *M = NULL;
    if (p || r->team || tie) {
        M = zf_malloc((size_t)n * (size_t)n * sizeof(float), "ζ normal equations (host)");
        if (!M) return ZF_ERR_NOMEM;
    }
    zf_status st = ZF_OK;
    if (p) {
        st = member_parts(r, p, M, b);
    } else {
        st = r->i->coldot(r->qs, r->A, r->B, rows, n, b);
        if (st == ZF_OK) st = r->i->hgram(r->qs, r->A, rows, r->H, r->M);
        if (st == ZF_OK && M) st = r->i->download(ctx, M, r->M, (size_t)n * (size_t)n * sizeof(float));
    }
    if (st == ZF_OK) st = zf_qrun_team_sum(r, b, n);
    if (st == ZF_OK) st = zf_qrun_team_sum(r, sq, n);
    double d = 0.0;
    if (st == ZF_OK && !M) {
        for (int64_t j = 0; j < n; j++) d += (double)r->Hh[j * n + j] * sq[j];
        *mean_diag = d / (double)n;
        return ZF_OK;
    }
    if (st == ZF_OK && r->team) st = team_sum_floats(r, M, n * n);
    if (st == ZF_OK && tie) {
        st = pool_classes(tie, M, n);
        pool_vector(tie, n, b, sq);
        for (int m = 0; p && st == ZF_OK && m < p->n; m++) {
            float *Mm = p->M + (size_t)m * (size_t)n * (size_t)n;
            st = pool_classes(tie, Mm, n);
            /* class space packed at the front: the member's stride becomes nc */
            memmove(p->M + (size_t)m * (size_t)(nc * nc), Mm, (size_t)(nc * nc) * sizeof(float));
            pool_vector(tie, n, p->b + (size_t)m * (size_t)n, sq);
            memmove(p->b + (size_t)m * (size_t)nc, p->b + (size_t)m * (size_t)n, (size_t)nc * sizeof(double));
        }
    }
    for (int64_t a = 0; st == ZF_OK && a < nc; a++) d += M[a * nc + a];
    *mean_diag = d / (double)nc;
    if (st == ZF_OK) st = r->i->upload(ctx, r->M, M, (size_t)nc * (size_t)nc * sizeof(float));
    free(M);
    return st;
}

/* The solved ζ per column, stepped from the current ζ toward it only as far as keeps every ζ in (0, ∞) under
 * zeta_positive (at least half the current value) and none 0: ΔL is convex in ζ, so any step toward the minimum
 * lowers it. Returns the step (0 when the solution is not finite). */
static double step_toward(const zf_zeta_tie *tie, bool positive, int64_t n, const float *x, const float *zeta,
                          float *znew)
{
    double t = 1.0;
    for (int64_t j = 0; j < n; j++) {
        const float z = x[tie ? tie->cls[j] : j];
        if (!isfinite(z)) return 0.0;
        znew[j] = z;
        if (positive ? z <= 0.0f : z == 0.0f) {
            const double tj = 0.5 * (double)zeta[j] / ((double)zeta[j] - (double)z);
            if (tj < t) t = tj;
        }
    }
    if (t < 1.0)
        for (int64_t j = 0; j < n; j++) znew[j] = (float)((double)zeta[j] + t * ((double)znew[j] - (double)zeta[j]));
    return t;
}

/* g = b - M ζ (class space, [nc] double) with M not yet factored: -½ the gradient of the total ΔL in ζ. The matrix's
 * rows go through rowdot at most r->rows at a time (the backend's row buffer). With groups r->B held ΔW·H, so b is
 * that already. */
static zf_status gradient(zf_qrun *r, int64_t nc, const double *b, const float *zc, double *g)
{
    if (r->gs) {
        memcpy(g, b, (size_t)nc * sizeof(double));
        return ZF_OK;
    }
    ZF_TRY(r->i->upload(r->be->ctx, r->hvec, zc, (size_t)nc * sizeof(float)));
    for (int64_t k = 0; k < nc; k += r->rows)
        ZF_TRY(r->i->rowdot(r->qs, r->M + k * nc, nc - k < r->rows ? nc - k : r->rows, nc, r->hvec, 0, g + k));
    for (int64_t c = 0; c < nc; c++) g[c] = b[c] - g[c];
    return ZF_OK;
}

/* Each row's exact ΔL on the new ζ in r->zeta (rown), their totals before and after over the team. */
static zf_status exact_totals(zf_qrun *r, const double *rowv, double *rown, double tot[2])
{
    const int64_t rows = r->rows, n = r->cols;
    ZF_TRY(r->i->dequant(r->qs, r->W, r->q, r->scale, r->zero, r->zeta, r->gidx, r->gs ? r->gs : n, r->ngroups, rows,
                         n, NULL, r->A));
    ZF_TRY(r->i->quadform(r->qs, r->A, NULL, rows, r->H, rown, NULL));
    tot[0] = zf_qrun_rows_total(r, rowv), tot[1] = zf_qrun_rows_total(r, rown);
    return zf_qrun_team_sum(r, tot, 2);
}

int64_t zf_zfold_refit_zeta_host_bytes(const zf_quant_opts *o, int64_t cols, int nmembers)
{
    if (o->method != ZF_METHOD_ZFOLD || !o->zfold_optq || !o->refit_zeta) return 0;
    const int64_t nn4 = cols * cols * 4;
    return nmembers > 1 ? (nmembers + 1) * nn4 + nmembers * cols * 8 : nn4;
}

/* Each member's change of ΔL on this process along t·d (class space): -2t dᵀ(b_m - M_m ζ) + t² dᵀ M_m d (b_m alone
 * when it came from ΔW·H, resid); ch [n]. */
static void member_changes(const zeta_parts *p, int64_t nc, const float *d, const float *zc, double t, bool resid,
                           double *ch)
{
    for (int m = 0; m < p->n; m++) {
        const float *M = p->M + (size_t)m * (size_t)(nc * nc);
        const double *b = p->b + (size_t)m * (size_t)nc;
        double lin = 0.0, quad = 0.0;
#pragma omp parallel for reduction(+ : lin, quad) schedule(static)
        for (int64_t a = 0; a < nc; a++) {
            double md = 0.0, mz = 0.0;
            for (int64_t c = 0; c < nc; c++) md += (double)M[a * nc + c] * d[c], mz += (double)M[a * nc + c] * zc[c];
            lin += (double)d[a] * (resid ? b[a] : b[a] - mz);
            quad += (double)d[a] * md;
        }
        ch[m] = -2.0 * t * lin + t * t * quad;
    }
}

/* rowv's rows of each member (this process's) take its change ch[m] in proportion to their ΔL. */
static void share_changes(const zf_qrun *r, int nm, const double *ch, double *rowv)
{
    int64_t r0 = 0;
    for (int m = 0; m < nm; m++) {
        const int64_t rm = nm > 1 ? r->member_rows[m] : r->rows;
        double loc = 0.0;
        for (int64_t k = r0; k < r0 + rm; k++) loc += rowv[k];
        for (int64_t k = r0; k < r0 + rm; k++) rowv[k] += loc > 0.0 ? ch[m] * rowv[k] / loc : ch[m] / (double)rm;
        r0 += rm;
    }
}

zf_status zf_zfold_refit_zeta(zf_qrun *r, const zf_zeta_tie *tie, float *zeta, double *rowv, bool *kept)
{
    if (tie && tie->nclasses == 0) tie = NULL;
    const int64_t rows = r->rows, n = r->cols, nc = tie ? tie->nclasses : n;
    const int nm = r->nmembers > 1 ? r->nmembers : 1;
    void *ctx = r->be->ctx;
    *kept = false;
    double *d = zf_malloc(((size_t)n * 2 + (size_t)rows + 3 * (size_t)nm) * sizeof(double), "ζ refit sums");
    float *f = zf_malloc((size_t)n * 4 * sizeof(float), "ζ refit vectors");
    zeta_parts parts = {.n = nm}, *p = nm > 1 ? &parts : NULL;
    if (p) {
        parts.M = zf_malloc((size_t)nm * (size_t)n * (size_t)n * sizeof(float), "ζ refit members' systems");
        parts.b = zf_malloc((size_t)nm * (size_t)n * sizeof(double), "ζ refit members' sums");
    }
    zf_status st = d && f && (!p || (parts.M && parts.b)) ? ZF_OK : ZF_ERR_NOMEM;
    double *b = d, *g = d + n, *rown = d + 2 * n, *ch = d + 2 * n + rows, *mtot = ch + nm, mean_diag = 0.0;
    float *x = f, *znew = f + n, *zc = f + 2 * n, *dx = f + 3 * n;
    zf_chol_result res = ZF_CHOL_NOT_PD;
    if (st == ZF_OK) st = build_system(r, tie, p, b, g, &mean_diag);
    for (int64_t j = 0; st == ZF_OK && j < n; j++) zc[tie ? tie->cls[j] : j] = zeta[j]; /* ζ is tied already */
    if (st == ZF_OK) st = gradient(r, nc, b, zc, g);
    /* the step d from the current ζ, damped toward it: (M + λI) d = g */
    const double lambda = ZF_ZETA_DAMP * mean_diag;
    for (int64_t c = 0; st == ZF_OK && c < nc; c++) x[c] = (float)g[c];
    if (st == ZF_OK && !(lambda > 0.0 && isfinite(lambda))) res = ZF_CHOL_SINGULAR; /* every column dead */
    else if (st == ZF_OK) st = r->i->upload(ctx, r->hvec, x, (size_t)nc * sizeof(float));
    if (st == ZF_OK && res != ZF_CHOL_SINGULAR) st = r->i->chol_solve(r->qs, r->M, nc, (float)lambda, r->hvec, &res);
    if (st == ZF_OK && res == ZF_CHOL_OK) st = r->i->download(ctx, x, r->hvec, (size_t)nc * sizeof(float));
    double step = 0.0, dg = 0.0, dd = 0.0;
    for (int64_t c = 0; st == ZF_OK && res == ZF_CHOL_OK && c < nc; c++) {
        dg += (double)x[c] * g[c], dd += (double)x[c] * x[c];
        dx[c] = x[c];
        x[c] = (float)((double)zc[c] + (double)x[c]);
    }
    if (st == ZF_OK && res == ZF_CHOL_OK) step = step_toward(tie, r->o->zeta_positive, n, x, zeta, znew);
    /* M d = g - λ d: the total's change along t·d in closed form; a group's members each their own */
    double change = -2.0 * step * dg + step * step * (dg - lambda * dd);
    if (st == ZF_OK && step > 0.0) {
        /* this process's change of each member (alone: its share of the closed form, below) and its rows' ΔL, then
         * each member's over the team */
        if (p) member_changes(p, nc, dx, zc, step, r->gs != 0, ch);
        int64_t r0 = 0;
        for (int m = 0; m < nm; m++) {
            const int64_t rm = p ? r->member_rows[m] : rows;
            mtot[m] = p ? ch[m] : 0.0;
            mtot[nm + m] = 0.0;
            for (int64_t k = r0; k < r0 + rm; k++) mtot[nm + m] += rowv[k];
            r0 += rm;
        }
        const double loc = mtot[nm]; /* alone: this process's rows' ΔL */
        st = zf_qrun_team_sum(r, mtot, 2 * nm);
        double tot[2] = {0.0, 0.0};
        for (int m = 0; m < nm; m++) tot[0] += mtot[nm + m];
        if (p) {
            change = 0.0;
            for (int m = 0; m < nm; m++) change += mtot[m];
        } else {
            mtot[0] = change;
            ch[0] = tot[0] > 0.0 ? change * loc / tot[0] : 0.0; /* the rows share it in proportion */
        }
        /* a negative ΔL cannot be: then the closed form's inputs are wrong, and the rows decide */
        bool closed = st == ZF_OK;
        for (int m = 0; m < nm; m++) closed &= mtot[nm + m] + mtot[m] >= 0.0;
        if (st == ZF_OK && !closed)
            zf_log_warn("Z-FOLD [%lld x %lld]: ζ refit's closed-form ΔL %g < 0 for a member; scored by each row "
                        "instead", (long long)rows, (long long)n, tot[0] + change);
        if (closed) {
            tot[1] = tot[0] + change;
        } else if (st == ZF_OK) {
            st = r->i->upload(ctx, r->zeta, znew, (size_t)n * sizeof(float));
            if (st == ZF_OK) st = exact_totals(r, rowv, rown, tot);
        }
        *kept = st == ZF_OK && tot[1] < tot[0];
        zf_log_debug("Z-FOLD [%lld x %lld]: ζ refit (step %.3g): ΔL %.6g -> %.6g (closed form %.6g), %s", (long long)rows,
                     (long long)n, step, tot[0], tot[1], tot[0] + change, *kept ? "kept" : "not kept");
        if (*kept) {
            memcpy(zeta, znew, (size_t)n * sizeof(float));
            if (closed) {
                st = r->i->upload(ctx, r->zeta, znew, (size_t)n * sizeof(float));
                share_changes(r, nm, ch, rowv);
            } else {
                memcpy(rowv, rown, (size_t)rows * sizeof(double));
            }
        } else if (st == ZF_OK && !closed) {
            st = r->i->upload(ctx, r->zeta, zeta, (size_t)n * sizeof(float));
        }
    } else if (st == ZF_OK) {
        zf_log_debug("Z-FOLD [%lld x %lld]: ζ refit not solved (%d): ζ kept", (long long)rows, (long long)n, (int)res);
    }
    free(d), free(f), free(parts.M), free(parts.b);
    return st;
}
