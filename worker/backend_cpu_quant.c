/* The host backend's quantization primitives: grids, quadratic forms, codes, the damped factor and the OPTQ block step. */
#include "worker/backend_cpu.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "worker/grid.h"

/* Columns whose in-block updates are rank-1 axpys; the rest of a 128-column block is updated from these with one
 * small GEMM. Two-level blocking keeps the memory-bound rank-1 work at rows·cols·16/2 flops instead of ·128/2. */
#define ZF_OPTQ_SUB 16
/* Rows per pass of the column kernel: the sub-block's working set (16 × 1024 floats) stays in L1/L2. */
#define ZF_OPTQ_ROWS 1024
/* Columns per pass of the ζ sums: the tile's sums stay in cache while the rows stream by. */
#define ZF_ZETA_COLS 256

typedef struct {
    const zf_quant_opts *o;
    int64_t rows, cols;
    float maxq;
    float *cur; /* [2·rows] the OPTQ column kernel's current grid, made on first use (for every row: views share it) */
} cpu_qs;

zf_status zf_cpu_q_begin(void *ctx, const zf_quant_opts *o, int64_t rows, int64_t cols, bool hessian, void **qs)
{
    (void)ctx, (void)hessian;
    cpu_qs *s = zf_calloc(1, sizeof *s, "quantization session");
    if (!s) return ZF_ERR_NOMEM;
    *s = (cpu_qs){.o = o, .rows = rows, .cols = cols, .maxq = (float)((1 << o->bits) - 1)};
    *qs = s;
    return ZF_OK;
}

int64_t zf_cpu_session_cols(const void *qs) { return ((const cpu_qs *)qs)->cols; }

void zf_cpu_q_end(void *qs, zf_status st)
{
    (void)st;
    cpu_qs *s = qs;
    if (!s) return;
    free(s->cur);
    free(s);
}

zf_status zf_cpu_grid_fit(void *qs, zf_grid_kind kind, const float *W, int64_t rows, int64_t n, int64_t ldw,
                          const float *H, int64_t ldh, const float *zeta, float *scale, int64_t lds, float *zero)
{
    return zf_grid_fit(((cpu_qs *)qs)->o, kind, W, rows, n, ldw, H, ldh, zeta, scale, lds, zero);
}

zf_status zf_cpu_quadform(void *qs, const float *A, const float *B, int64_t rows, const float *H, double *aa,
                          double *ab)
{
    return zf_quadform_rows(A, B, rows, ((cpu_qs *)qs)->cols, H, aa, ab);
}

zf_status zf_cpu_rtn_codes(void *qs, const float *W, int64_t rows, int64_t cols, int64_t gs, int64_t ngroups,
                           const float *scale, const float *zero, uint8_t *q)
{
    const float maxq = ((cpu_qs *)qs)->maxq;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            const int64_t k = r * ngroups + j / gs;
            q[r * cols + j] = (uint8_t)zf_qcode(W[r * cols + j], scale[k], zero[k], maxq);
        }
    return ZF_OK;
}

zf_status zf_cpu_dequant(void *qs, const float *W, const uint8_t *q, const float *scale, const float *zero,
                         const float *zeta, const int32_t *gidx, int64_t gs, int64_t ngroups, int64_t rows,
                         int64_t cols, float *deq, float *dW)
{
    (void)qs;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            const int64_t k = i * ngroups + (gidx ? gidx[j] : j / gs);
            const float d = zf_dequant((float)q[i * cols + j], zeta ? scale[k] * zeta[j] : scale[k], zero[k]);
            if (deq) deq[i * cols + j] = d;
            if (dW) dW[i * cols + j] = W[i * cols + j] - d;
        }
    return ZF_OK;
}

zf_status zf_cpu_zrow_sums(void *qs, const float *W, const uint8_t *q, const float *scale, const float *zero,
                          const float *zeta, const float *v, int64_t rows, int64_t cols, double *out)
{
    (void)qs;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        const float *w = W + i * cols;
        const uint8_t *qi = q + i * cols;
        double dd = 0.0, aa = 0.0, aw = 0.0, av = 0.0;
        for (int64_t j = 0; j < cols; j++) {
            const float a = zf_dequant((float)qi[j], zeta[j], zero[i]);
            const float e = w[j] - zf_dequant((float)qi[j], scale[i] * zeta[j], zero[i]);
            dd += (double)e * (double)e, aa += (double)a * (double)a;
            aw += (double)a * (double)w[j], av += (double)a * (double)v[j];
        }
        out[i] = dd, out[rows + i] = aa, out[2 * rows + i] = aw, out[3 * rows + i] = av;
    }
    return ZF_OK;
}

/* Z-FOLD's grid of column j: α and zero of (row, j / gs), gs the session's group size (cols per channel). */
static int64_t zgroup_size(const cpu_qs *c) { return c->o->group_size > 0 ? c->o->group_size : c->cols; }

zf_status zf_cpu_zstate(void *qs, const float *W, int64_t rows, int64_t cols, const float *alpha, const float *zero,
                        const float *zeta, float *Wt, float *dW, uint8_t *q)
{
    const cpu_qs *c = qs;
    const float maxq = c->maxq;
    const int64_t gs = zgroup_size(c), ng = (cols + gs - 1) / gs;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *w = W + r * cols;
        for (int64_t g = 0; g < ng; g++) {
            const float a = alpha[r * ng + g], z = zero[r * ng + g];
            const int64_t je = (g + 1) * gs < cols ? (g + 1) * gs : cols;
            for (int64_t j = g * gs; j < je; j++) {
                const float s = a * zeta[j];
                const float code = zf_qcode(w[j], s, z, maxq);
                if (Wt) Wt[r * cols + j] = zeta[j] * (code - z);
                if (dW) dW[r * cols + j] = w[j] - zf_dequant(code, s, z);
                if (q) q[r * cols + j] = (uint8_t)code;
            }
        }
    }
    return ZF_OK;
}

zf_status zf_cpu_zeta_sums(void *qs, const float *W, int64_t rows, int64_t cols, const float *alpha,
                           const float *zero, const float *zeta, double *num, double *den)
{
    const cpu_qs *c = qs;
    const float maxq = c->maxq;
    const int64_t gs = zgroup_size(c), ng = (cols + gs - 1) / gs;
#pragma omp parallel for schedule(static)
    for (int64_t j0 = 0; j0 < cols; j0 += ZF_ZETA_COLS) {
        const int64_t j1 = j0 + ZF_ZETA_COLS < cols ? j0 + ZF_ZETA_COLS : cols;
        for (int64_t j = j0; j < j1; j++) num[j] = den[j] = 0.0;
        for (int64_t r = 0; r < rows; r++) {
            const float *w = W + r * cols;
            /* the tile's columns a group at a time: α and zero constant inside */
            for (int64_t js = j0; js < j1;) {
                const int64_t g = js / gs, je = (g + 1) * gs < j1 ? (g + 1) * gs : j1;
                const float a = alpha[r * ng + g], z = zero[r * ng + g];
                for (int64_t j = js; j < je; j++) {
                    const float code = zf_qcode(w[j], a * zeta[j], z, maxq);
                    const double wh = (double)a * (double)(code - z);
                    num[j] += (double)w[j] * wh;
                    den[j] += wh * wh;
                }
                js = je;
            }
        }
    }
    return ZF_OK;
}

/* x - deq on grid (s, z) with the code from x·(1/s): a search score, which may differ from round(x/s) at a tie. */
static inline float diag_err(float x, float inv, float s, float z, float maxq)
{
    float q = zf_round_even(x * inv) + z;
    q = q > 0.0f ? q : 0.0f; /* max, then min: one instruction each */
    q = q < maxq ? q : maxq;
    return x - zf_dequant(q, s, z);
}

/* Partial sums checked against the bound every this many columns. */
#define ZF_DIAG_CHUNK 256

/* Σ_j g_j (x_j - deq_j)² of one candidate grid: each term in float, summed in double lanes (near-ties then
 * resolve alike on every backend). The terms are non-negative, so a candidate whose partial sum already exceeds
 * bound (by more than any reordering of the sums could explain) cannot score lower: INFINITY then, early. */
__attribute__((target_clones("arch=x86-64-v3", "default")))
static double diag_score(const float *x, const float *g, int64_t n, float s, float z, float maxq, double bound)
{
    const float inv = 1.0f / s;
    const double stop = bound * (1.0 + 1e-9);
    double acc[16] = {0.0}; /* sixteen lanes: four vector sums in flight */
    int64_t j = 0;
    while (j + 16 <= n) {
        const int64_t end = j + ZF_DIAG_CHUNK < n ? j + ZF_DIAG_CHUNK : n;
        for (; j + 16 <= end; j += 16)
            for (int k = 0; k < 16; k++) {
                const float e = diag_err(x[j + k], inv, s, z, maxq);
                acc[k] += (double)(g[j + k] * (e * e));
            }
        double part = 0.0;
        for (int k = 0; k < 16; k++) part += acc[k];
        if (part > stop) return INFINITY;
    }
    for (int k = 0; k < 8; k++) acc[k] += acc[k + 8];
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) {
            const float e = diag_err(x[j + k], inv, s, z, maxq);
            acc[k] += (double)(g[j + k] * (e * e));
        }
    double t = 0.0;
    for (; j < n; j++) {
        const float e = diag_err(x[j], inv, s, z, maxq);
        t += (double)(g[j] * (e * e));
    }
    for (int k = 0; k < 8; k++) t += acc[k];
    return t;
}

/* Ratios [i0, i1] step di of one row's search, floor and ceil zero each; the best strictly lower score wins. */
static void diag_search(const zf_quant_opts *o, float maxq, const float *x, const float *g, int64_t n, float xmin,
                        float xmax, int i0, int i1, int di, float *scale, float *zero, double *best)
{
    const int nround = o->sym ? 1 : 2;
    for (int i = i0; i <= i1; i += di)
        for (int k = 0; k < nround; k++) {
            float s, z;
            zf_grid_candidate(xmin, xmax, 1.0 - (double)i / o->grid_points, o->bits, o->sym,
                              o->sym ? ZF_ZR_ROUND : (k == 0 ? ZF_ZR_FLOOR : ZF_ZR_CEIL), &s, &z);
            const double e = diag_score(x, g, n, s, z, maxq, *best);
            if (e < *best) {
                *best = e;
                *scale = s;
                *zero = z;
            }
        }
}

zf_status zf_cpu_zgrid_diag(void *qs, const float *X, int64_t rows, int64_t cols, int64_t ldx, const float *g,
                            int stride, int window, float *scale, int64_t lds, float *zero, double *score)
{
    const cpu_qs *c = qs;
    const zf_quant_opts *o = c->o;
    const int last = o->grid_points - 1;
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t r = 0; r < rows; r++) {
        const float *x = X + r * ldx;
        float xmin, xmax, *s = &scale[r * lds], *z = &zero[r * lds];
        zf_grid_range(x, cols, o->sym, &xmin, &xmax);
        double best = diag_score(x, g, cols, *s, *z, c->maxq, INFINITY);
        if (stride > 0) diag_search(o, c->maxq, x, g, cols, xmin, xmax, 0, last, stride, s, z, &best);
        const int ic = zf_grid_ratio_index(*s, xmin, xmax, o->bits, o->grid_points);
        diag_search(o, c->maxq, x, g, cols, xmin, xmax, ic - window < 0 ? 0 : ic - window,
                    ic + window > last ? last : ic + window, 1, s, z, &best);
        score[r] = best;
    }
    return ZF_OK;
}

zf_status zf_cpu_rowdot(void *qs, const float *A, int64_t rows, int64_t cols, const float *X, int64_t ldx,
                        double *out)
{
    (void)qs;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *a = A + r * cols, *x = X + r * ldx;
        double s = 0.0;
        for (int64_t j = 0; j < cols; j++) s += (double)a[j] * (double)x[j];
        out[r] = s;
    }
    return ZF_OK;
}

zf_status zf_cpu_hmul(void *qs, const float *A, int64_t rows, const float *H, float *D)
{
    const int64_t n = ((cpu_qs *)qs)->cols;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)n, 1.0f, A, (int)n, H, (int)n, 0.0f,
                D, (int)n);
    return ZF_OK;
}

zf_status zf_cpu_div_cols(void *qs, const float *W, int64_t rows, int64_t cols, const float *zeta, float *X)
{
    (void)qs;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) X[r * cols + j] = W[r * cols + j] / zeta[j];
    return ZF_OK;
}

zf_status zf_cpu_gather_t(void *qs, const float *W, const float *H, int64_t rows, int64_t n, const int32_t *perm,
                          float *Wt)
{
    (void)qs;
#pragma omp parallel for schedule(static)
    for (int64_t p0 = 0; p0 < n; p0 += 32)
        for (int64_t r0 = 0; r0 < rows; r0 += 32)
            for (int64_t p = p0; p < p0 + 32 && p < n; p++) {
                const int64_t j = perm[p];
                const int dead = H[j * n + j] == 0.0f;
                for (int64_t r = r0; r < r0 + 32 && r < rows; r++) Wt[p * rows + r] = dead ? 0.0f : W[r * n + j];
            }
    return ZF_OK;
}

zf_status zf_cpu_slice_static(void *qs, const float *W, const float *H, int64_t rows, int64_t n, int64_t c0,
                              int64_t len, float *G)
{
    (void)qs;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < len; j++)
            G[r * len + j] = H[(c0 + j) * n + c0 + j] == 0.0f ? 0.0f : W[r * n + c0 + j];
    return ZF_OK;
}

zf_status zf_cpu_slice_t(void *qs, const float *Wt, int64_t rows, int64_t c0, int64_t len, float *G)
{
    (void)qs;
    const float *src = Wt + c0 * rows;
    for (int64_t i0 = 0; i0 < len; i0 += 32)
        for (int64_t j0 = 0; j0 < rows; j0 += 32)
            for (int64_t i = i0; i < i0 + 32 && i < len; i++)
                for (int64_t j = j0; j < j0 + 32 && j < rows; j++) G[j * len + i] = src[i * rows + j];
    return ZF_OK;
}

zf_status zf_cpu_group_hess(void *qs, const float *H, int64_t n, const int32_t *perm, int64_t c0, int64_t len,
                            float *Hb)
{
    (void)qs;
    for (int64_t a = 0; a < len; a++)
        for (int64_t b = 0; b < len; b++) Hb[a * len + b] = H[perm[c0 + a] * n + perm[c0 + b]];
    return ZF_OK;
}

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
zf_status zf_cpu_chol_inv(void *qs, const float *H, int64_t n, const int32_t *perm, float lambda, float *U,
                          zf_chol_result *res)
{
    (void)qs;
    for (int64_t a = 0; a < n; a++) {
        const int64_t pa = perm ? perm[n - 1 - a] : n - 1 - a;
        const float *src = H + pa * n;
        float *dst = U + a * n;
        for (int64_t b = 0; b <= a; b++) dst[b] = src[perm ? perm[n - 1 - b] : n - 1 - b];
        if (dst[a] == 0.0f) dst[a] = 1.0f;
        dst[a] += lambda;
    }
    lapack_int info = LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)n, U, (lapack_int)n);
    *res = ZF_CHOL_NOT_PD;
    if (info == 0) {
        info = LAPACKE_strtri_work(LAPACK_COL_MAJOR, 'U', 'N', (lapack_int)n, U, (lapack_int)n);
        *res = ZF_CHOL_SINGULAR;
    }
    if (info < 0) return zf_fail(ZF_ERR_INTERNAL, "LAPACK rejected argument %d factorizing the Hessian", -info);
    if (info > 0) return ZF_OK;
    rotate180(U, n);
    int finite = 1;
    for (int64_t i = 0; i < n && finite; i++) {
        memset(U + i * n, 0, (size_t)i * sizeof(float));
        for (int64_t j = i; j < n; j++) finite &= isfinite(U[i * n + j]) != 0;
    }
    *res = finite ? ZF_CHOL_OK : ZF_CHOL_NONFINITE;
    return ZF_OK;
}

/* Columns [s0, s1) for rows [ra, rb): quantize column p, error (w - q)/U_pp, rank-1 update of the sub-block's
 * later columns. Single-threaded on purpose: it is a few percent of the flops, and an OpenMP region between
 * every pair of SGEMMs lets libgomp's spinning workers steal the cores OpenBLAS's threads need (measured 2-10x
 * slower overall unless OMP_WAIT_POLICY=passive). */
__attribute__((target_clones("arch=x86-64-v3", "default")))
static void column_kernel(const zf_optq_bufs *c, float maxq, int64_t i1, float *cur, int64_t s0, int64_t s1,
                          int64_t ra, int64_t rb)
{
    const int64_t rows = c->rows, n = c->n;
    int64_t cur_g = -1;
    float *cs = cur, *cz = cur + rows;
    for (int64_t p = s0; p < s1; p++) {
        const int64_t g = c->gs ? (c->static_groups ? c->perm[p] / c->gs : p / c->gs) : 0;
        if (g != cur_g) {
            for (int64_t r = ra; r < rb; r++) {
                cs[r] = c->scale[r * c->ngroups + g];
                cz[r] = c->zero[r * c->ngroups + g];
            }
            cur_g = g;
        }
        const float d = c->U[p * n + p], zt = c->zp[p];
        float *restrict w = c->Wt + p * rows;
        float *restrict e = c->Err + (p - i1) * rows;
        uint8_t *restrict q = c->Qt + p * rows;
        const float *restrict ccs = cs, *restrict ccz = cz;
        for (int64_t r = ra; r < rb; r++) {
            const float s = ccs[r] * zt, z = ccz[r];
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

/* Below this many rows the block's SGEMMs are too small to share: OpenBLAS's threads cost more than they save
 * (measured: a 64-row view of a 4096-column layer 0.024 s with two threads, 0.017 s with one). */
#define ZF_OPTQ_SERIAL_ROWS 128

zf_status zf_cpu_optq_block(void *qs, const zf_optq_bufs *b, int64_t i1, int64_t i2)
{
    cpu_qs *s = qs;
    const int64_t rows = b->rows, n = b->n;
    if (!s->cur && !(s->cur = zf_malloc((size_t)s->rows * 2 * sizeof(float), "OPTQ current grid"))) return ZF_ERR_NOMEM;
    const int threads = openblas_get_num_threads(), serial = rows < ZF_OPTQ_SERIAL_ROWS && threads > 1;
    if (serial) openblas_set_num_threads(1);
    for (int64_t s0 = i1; s0 < i2; s0 += ZF_OPTQ_SUB) {
        const int64_t s1 = s0 + ZF_OPTQ_SUB < i2 ? s0 + ZF_OPTQ_SUB : i2;
        for (int64_t ra = 0; ra < rows; ra += ZF_OPTQ_ROWS)
            column_kernel(b, s->maxq, i1, s->cur, s0, s1, ra, ra + ZF_OPTQ_ROWS < rows ? ra + ZF_OPTQ_ROWS : rows);
        for (int64_t p = s0; b->rowloss && p < s1; p++) {
            const float *e = b->Err + (p - i1) * rows;
            for (int64_t r = 0; r < rows; r++) b->rowloss[r] += (double)e[r] * (double)e[r];
        }
        for (int64_t p = s0; b->X && p < s1; p++) {
            const float *e = b->Err + (p - i1) * rows, *x = b->X + p * b->ldx;
            for (int64_t r = 0; r < rows; r++) b->rowex[r] += (double)e[r] * (double)x[r];
        }
        if (s1 < i2)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(i2 - s1), (int)rows, (int)(s1 - s0), -1.0f,
                        b->U + s0 * n + s1, (int)n, b->Err + (s0 - i1) * rows, (int)rows, 1.0f, b->Wt + s1 * rows,
                        (int)rows);
    }
    /* Lazy update of every later column: W[:, i2:] -= Err · U[i1:i2, i2:]. */
    if (i2 < n)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(n - i2), (int)rows, (int)(i2 - i1), -1.0f,
                    b->U + i1 * n + i2, (int)n, b->Err, (int)rows, 1.0f, b->Wt + i2 * rows, (int)rows);
    if (serial) openblas_set_num_threads(threads);
    return ZF_OK;
}

zf_status zf_cpu_tri_solve(void *qs, const float *U, int64_t n, bool trans, float *B, int64_t cols)
{
    (void)qs;
    cblas_strsm(CblasRowMajor, CblasLeft, CblasUpper, trans ? CblasTrans : CblasNoTrans, CblasNonUnit, (int)n,
                (int)cols, 1.0f, U, (int)n, B, (int)cols);
    return ZF_OK;
}

zf_status zf_cpu_unpermute(void *qs, const uint8_t *Qt, int64_t rows, int64_t n, const int32_t *perm, uint8_t *q)
{
    (void)qs;
#pragma omp parallel for schedule(static)
    for (int64_t r0 = 0; r0 < rows; r0 += 32)
        for (int64_t p0 = 0; p0 < n; p0 += 32)
            for (int64_t r = r0; r < r0 + 32 && r < rows; r++)
                for (int64_t p = p0; p < p0 + 32 && p < n; p++) q[r * n + perm[p]] = Qt[p * rows + r];
    return ZF_OK;
}
