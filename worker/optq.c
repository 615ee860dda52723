/* OPTQ / GPTQ `fasterquant` on a transposed working copy: exact reference semantics, GEMM-bound blocking. */
#include "worker/optq.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "worker/grid.h"
#include "common/clock.h"

/* Columns whose in-block updates are rank-1 axpys; the rest of a 128-column block is updated from these with one
 * small GEMM. Two-level blocking keeps the memory-bound rank-1 work at rows·cols·16/2 flops instead of ·128/2. */
#define ZF_OPTQ_SUB 16
/* Rows per pass of the column kernel: the sub-block's working set (16 × 1024 floats) stays in L1/L2. */
#define ZF_OPTQ_ROWS 1024

/* 180° rotation of an n×n row-major matrix in place: (i, j) <-> (n-1-i, n-1-j). */
static void rotate180(float *A, int64_t n)
{
    const int64_t nn = n * n;
    for (int64_t k = 0; k < nn / 2; k++) {
        float t = A[k];
        A[k] = A[nn - 1 - k];
        A[nn - 1 - k] = t;
    }
}

/* U = chol((Hp + λI)⁻¹) upper, computed as J·L⁻¹·J where J·(Hp + λI)·J = L·Lᵀ (J reverses the indices):
 * J L J is upper triangular and factors Hp + λI = (JLJ)(JLJ)ᵀ, so (JLJ)⁻¹ = J L⁻¹ J is the upper Cholesky factor of
 * the inverse (unique, positive diagonal). One POTRF and one TRTRI (2n³/3 flops) instead of the reference's
 * POTRF + POTRI + POTRF (4n³/3). The row-major buffer is handed to LAPACK as column-major 'U', which is the same
 * memory as row-major 'L', so LAPACKE makes no transposed copies. */
zf_status zf_optq_factor(const zf_quant_opts *o, const float *H, int64_t n, const int64_t *perm, float *U,
                         double *damp_used, int *retries)
{
    double mean = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double h = H[j * n + j];
        mean += h == 0.0 ? 1.0 : h;
    }
    mean /= (double)n;
    double damp = o->damp;
    char tried[512];
    size_t tl = 0;
    tried[0] = '\0';
    for (int attempt = 0; attempt <= o->damp_retries; attempt++, damp *= 10.0) {
        const float lambda = (float)(damp * mean);
        for (int64_t a = 0; a < n; a++) {
            const int64_t pa = perm ? perm[n - 1 - a] : n - 1 - a;
            const float *src = H + pa * n;
            float *dst = U + a * n;
            for (int64_t b = 0; b <= a; b++) dst[b] = src[perm ? perm[n - 1 - b] : n - 1 - b];
            if (dst[a] == 0.0f) dst[a] = 1.0f;
            dst[a] += lambda;
        }
        lapack_int info = LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)n, U, (lapack_int)n);
        const char *why = "not positive definite";
        if (info == 0) {
            info = LAPACKE_strtri_work(LAPACK_COL_MAJOR, 'U', 'N', (lapack_int)n, U, (lapack_int)n);
            why = "triangular factor singular";
        }
        if (info == 0) {
            rotate180(U, n);
            int finite = 1;
            for (int64_t i = 0; i < n && finite; i++) {
                memset(U + i * n, 0, (size_t)i * sizeof(float));
                for (int64_t j = i; j < n; j++) finite &= isfinite(U[i * n + j]) != 0;
            }
            if (finite) {
                *damp_used = damp;
                *retries = attempt;
                return ZF_OK;
            }
            why = "inverse factor not finite";
        }
        if (info < 0) return zf_fail(ZF_ERR_INTERNAL, "LAPACK rejected argument %d factorizing the Hessian", -info);
        tl += (size_t)snprintf(tried + tl, tl < sizeof tried ? sizeof tried - tl : 0, "%s%g", attempt ? ", " : "",
                               damp);
        if (tl >= sizeof tried) tl = sizeof tried - 1;
        if (attempt < o->damp_retries)
            zf_log_warn("OPTQ: damped Hessian [%lld x %lld] %s at damp %g; retrying with damp %g", (long long)n,
                        (long long)n, why, damp, damp * 10.0);
    }
    return zf_fail(ZF_ERR_NUMERIC,
                   "OPTQ: the damped Hessian [%lld x %lld] could not be Cholesky-factorized and inverted with damp %s "
                   "(λ = damp · mean diag H, mean diag H = %g); raise damp or damp_retries, or check the calibration "
                   "inputs",
                   (long long)n, (long long)n, tried, mean);
}

/* Blocked transpose: dst[j·ldd + i] = src[i·lds + j] for i < m, j < k. */
static void transpose(const float *src, int64_t m, int64_t k, int64_t lds, float *dst, int64_t ldd)
{
    for (int64_t i0 = 0; i0 < m; i0 += 32)
        for (int64_t j0 = 0; j0 < k; j0 += 32)
            for (int64_t i = i0; i < i0 + 32 && i < m; i++)
                for (int64_t j = j0; j < j0 + 32 && j < k; j++) dst[j * ldd + i] = src[i * lds + j];
}

typedef struct {
    int64_t rows, n, ngroups, gs, i1;
    bool static_groups;
    float maxq;
    const int64_t *perm;
    const float *zp, *U, *scale, *zero;
    float *Wt, *ErrT, *cs, *cz;
    uint8_t *Qt;
} optq_ctx;

/* Columns [s0, s1) for rows [ra, rb): quantize column p, error (w - q)/U_pp, rank-1 update of the sub-block's
 * later columns. Single-threaded on purpose: it is a few percent of the flops, and an OpenMP region between
 * every pair of SGEMMs lets libgomp's spinning workers steal the cores OpenBLAS's threads need (measured 2-10x
 * slower overall unless OMP_WAIT_POLICY=passive). */
__attribute__((target_clones("arch=haswell", "default")))
static void column_kernel(const optq_ctx *c, int64_t s0, int64_t s1, int64_t ra, int64_t rb)
{
    const int64_t rows = c->rows, n = c->n;
    int64_t cur_g = -1;
    for (int64_t p = s0; p < s1; p++) {
        const int64_t g = c->gs ? (c->static_groups ? c->perm[p] / c->gs : p / c->gs) : 0;
        if (g != cur_g) {
            for (int64_t r = ra; r < rb; r++) {
                c->cs[r] = c->scale[r * c->ngroups + g];
                c->cz[r] = c->zero[r * c->ngroups + g];
            }
            cur_g = g;
        }
        const float d = c->U[p * n + p], zt = c->zp[p], maxq = c->maxq;
        float *restrict w = c->Wt + p * rows;
        float *restrict e = c->ErrT + (p - c->i1) * rows;
        uint8_t *restrict q = c->Qt + p * rows;
        const float *restrict cs = c->cs, *restrict cz = c->cz;
        for (int64_t r = ra; r < rb; r++) {
            const float s = cs[r] * zt, z = cz[r];
            const float code = zf_qcode(w[r], s, z, maxq);
            q[r] = (uint8_t)code;
            e[r] = (w[r] - zf_dequant(code, s, z)) / d;
        }
        for (int64_t j = p + 1; j < s1; j++) {
            const float u = c->U[p * n + j];
            float *restrict wj = c->Wt + j * rows;
            for (int64_t r = ra; r < rb; r++) wj[r] -= u * e[r];
        }
    }
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

/* Grid of group g from the rows × [c0, c0+len) slice of the transposed, permuted working copy. */
static zf_status fit_group_t(const zf_quant_opts *o, const float *Wt, int64_t rows, int64_t c0, int64_t len,
                             const float *H, int64_t n, const int64_t *perm, float *gbuf, float *hbuf, float *scale,
                             float *zero, int64_t ngroups, int64_t g)
{
    transpose(Wt + c0 * rows, len, rows, rows, gbuf, len);
    if (o->grid == ZF_GRID_HESSIAN)
        for (int64_t a = 0; a < len; a++)
            for (int64_t b = 0; b < len; b++) hbuf[a * len + b] = H[perm[c0 + a] * n + perm[c0 + b]];
    return zf_grid_fit(o, o->grid, gbuf, rows, len, len, hbuf, len, NULL, scale + g, ngroups, zero + g);
}

zf_status zf_optq(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                  const float *fix_scale, const float *fix_zero, const float *zeta, zf_qresult *out)
{
    const int64_t n = cols, gs = o->group_size > 0 ? o->group_size : 0;
    const int64_t ngroups = gs ? (n + gs - 1) / gs : 1;
    ZF_ASSERT(out->rows == rows && out->cols == cols && out->ngroups == ngroups);
    ZF_ASSERT(!fix_scale || (!gs && fix_zero));
    const int64_t B = o->block_size < n ? o->block_size : n;
    const int64_t gl = gs ? (gs < n ? gs : n) : 0;
    const size_t rn = (size_t)rows * (size_t)n;
    zf_status st = ZF_OK;

    int64_t *perm = zf_malloc((size_t)n * sizeof(int64_t), "OPTQ permutation");
    float *diag = zf_malloc((size_t)n * sizeof(float), "OPTQ Hessian diagonal");
    float *zp = zf_malloc((size_t)n * sizeof(float), "OPTQ permuted zeta");
    float *Wt = zf_malloc(rn * sizeof(float), "OPTQ working weights (transposed)");
    uint8_t *Qt = zf_malloc(rn, "OPTQ codes (transposed)");
    float *U = zf_malloc((size_t)n * (size_t)n * sizeof(float), "OPTQ inverse Hessian factor");
    float *ErrT = zf_malloc((size_t)B * (size_t)rows * sizeof(float), "OPTQ block errors");
    float *cur = zf_malloc((size_t)rows * 2 * sizeof(float), "OPTQ current grid");
    float *gbuf = gs ? zf_malloc((size_t)rows * (size_t)gl * sizeof(float), "OPTQ group slice") : NULL;
    float *hbuf = gs && o->grid == ZF_GRID_HESSIAN ? zf_malloc((size_t)gl * (size_t)gl * sizeof(float),
                                                              "OPTQ group Hessian") : NULL;
    if (!perm || !diag || !zp || !Wt || !Qt || !U || !ErrT || !cur || (gs && !gbuf) ||
        (gs && o->grid == ZF_GRID_HESSIAN && !hbuf)) {
        st = ZF_ERR_NOMEM;
        goto done;
    }

    /* Dead inputs (H_jj == 0): the reference sets H_jj = 1 (in zf_optq_factor) and W[:, j] = 0. */
    out->dead_inputs = 0;
    for (int64_t j = 0; j < n; j++) {
        diag[j] = H[j * n + j] == 0.0f ? 1.0f : H[j * n + j];
        out->dead_inputs += H[j * n + j] == 0.0f;
    }

    /* Grids: per channel from the full original W (before dead inputs are zeroed, as the reference); static groups
     * from W with dead inputs zeroed, in the original column order; dynamic groups later, in the loop. */
    if (fix_scale) {
        for (int64_t r = 0; r < rows; r++) {
            out->scale[r] = fix_scale[r];
            out->zero[r] = fix_zero[r];
        }
    } else if (!gs) {
        st = zf_grid_fit(o, o->grid, W, rows, n, n, H, n, NULL, out->scale, 1, out->zero);
    } else if (o->static_groups) {
        for (int64_t g = 0; g < ngroups && st == ZF_OK; g++) {
            const int64_t c0 = g * gs, len = n - c0 < gs ? n - c0 : gs;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < len; j++)
                    gbuf[r * len + j] = H[(c0 + j) * n + c0 + j] == 0.0f ? 0.0f : W[r * n + c0 + j];
            st = zf_grid_fit(o, o->grid, gbuf, rows, len, len, H + c0 * n + c0, n, NULL, out->scale + g, ngroups,
                             out->zero + g);
        }
    }
    if (st != ZF_OK) goto done;

    for (int64_t j = 0; j < n; j++) perm[j] = j;
    if (o->act_order) {
        diag_key *keys = zf_malloc((size_t)n * sizeof(diag_key), "OPTQ act-order keys");
        if (!keys) {
            st = ZF_ERR_NOMEM;
            goto done;
        }
        for (int64_t j = 0; j < n; j++) keys[j] = (diag_key){diag[j], j};
        qsort(keys, (size_t)n, sizeof(diag_key), cmp_diag_desc);
        for (int64_t p = 0; p < n; p++) perm[p] = keys[p].j;
        free(keys);
    }
    for (int64_t p = 0; p < n; p++) zp[p] = zeta ? zeta[perm[p]] : 1.0f;

    /* Working copy Wt[p, r] = W[r, perm[p]]: the column being quantized is contiguous. */
#pragma omp parallel for schedule(static)
    for (int64_t p0 = 0; p0 < n; p0 += 32)
        for (int64_t r0 = 0; r0 < rows; r0 += 32)
            for (int64_t p = p0; p < p0 + 32 && p < n; p++) {
                const int64_t j = perm[p];
                const int dead = H[j * n + j] == 0.0f;
                for (int64_t r = r0; r < r0 + 32 && r < rows; r++) Wt[p * rows + r] = dead ? 0.0f : W[r * n + j];
            }

    double t0 = zf_now();
    st = zf_optq_factor(o, H, n, o->act_order ? perm : NULL, U, &out->damp_used, &out->damp_retries);
    out->t_factor = zf_now() - t0;
    if (st != ZF_OK) goto done;

    t0 = zf_now();
    optq_ctx c = {.rows = rows, .n = n, .ngroups = ngroups, .gs = gs, .static_groups = o->static_groups,
                  .maxq = (float)((1 << o->bits) - 1), .perm = perm, .zp = zp, .U = U, .scale = out->scale,
                  .zero = out->zero, .Wt = Wt, .ErrT = ErrT, .cs = cur, .cz = cur + rows, .Qt = Qt};
    for (int64_t i1 = 0; i1 < n; i1 += B) {
        const int64_t i2 = i1 + B < n ? i1 + B : n;
        c.i1 = i1;
        /* Dynamic groups starting in this block are fitted now, from W as it stands before the block's own
         * updates: the reference reads the global W there, which the in-block updates (made on a copy) skip. */
        if (gs && !o->static_groups)
            for (int64_t p = (i1 + gs - 1) / gs * gs; p < i2 && st == ZF_OK; p += gs)
                st = fit_group_t(o, Wt, rows, p, n - p < gs ? n - p : gs, H, n, perm, gbuf, hbuf, out->scale,
                                 out->zero, ngroups, p / gs);
        if (st != ZF_OK) goto done;
        for (int64_t s0 = i1; s0 < i2; s0 += ZF_OPTQ_SUB) {
            const int64_t s1 = s0 + ZF_OPTQ_SUB < i2 ? s0 + ZF_OPTQ_SUB : i2;
            for (int64_t ra = 0; ra < rows; ra += ZF_OPTQ_ROWS)
                column_kernel(&c, s0, s1, ra, ra + ZF_OPTQ_ROWS < rows ? ra + ZF_OPTQ_ROWS : rows);
            if (s1 < i2)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(i2 - s1), (int)rows, (int)(s1 - s0), -1.0f,
                            U + s0 * n + s1, (int)n, ErrT + (s0 - i1) * rows, (int)rows, 1.0f, Wt + s1 * rows,
                            (int)rows);
        }
        /* Lazy update of every later column: W[:, i2:] -= Err · U[i1:i2, i2:]. */
        if (i2 < n)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(n - i2), (int)rows, (int)(i2 - i1), -1.0f,
                        U + i1 * n + i2, (int)n, ErrT, (int)rows, 1.0f, Wt + i2 * rows, (int)rows);
    }
    out->t_loop = zf_now() - t0;

    /* Back to the original column order. */
#pragma omp parallel for schedule(static)
    for (int64_t r0 = 0; r0 < rows; r0 += 32)
        for (int64_t p0 = 0; p0 < n; p0 += 32)
            for (int64_t r = r0; r < r0 + 32 && r < rows; r++)
                for (int64_t p = p0; p < p0 + 32 && p < n; p++) out->q[r * n + perm[p]] = Qt[p * rows + r];
    for (int64_t p = 0; p < n; p++)
        out->g_idx[perm[p]] = (int32_t)(gs ? (o->static_groups ? perm[p] / gs : p / gs) : 0);

done:
    free(perm), free(diag), free(zp), free(Wt), free(Qt), free(U), free(ErrT), free(cur), free(gbuf), free(hbuf);
    return st;
}
