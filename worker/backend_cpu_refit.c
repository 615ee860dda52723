/* The host backend's primitives of the refits after OPTQ: the ζ refit's column dot products, Hessian-weighted Gram
 * matrix and solve, and the group refit's sums and updates. */
#include "worker/backend_cpu.h"
#include "worker/grid.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

/* Columns per pass of the column sums: the tile's sums stay in cache while the rows stream by. */
#define ZF_COLDOT_COLS 256
/* Side of the square tiles in which hgram weights and mirrors AᵀA. */
#define ZF_HGRAM_TILE 64

zf_status zf_cpu_coldot(void *qs, const float *A, const float *B, int64_t rows, int64_t cols, double *out)
{
    (void)qs;
#pragma omp parallel for schedule(static)
    for (int64_t j0 = 0; j0 < cols; j0 += ZF_COLDOT_COLS) {
        const int64_t j1 = j0 + ZF_COLDOT_COLS < cols ? j0 + ZF_COLDOT_COLS : cols;
        for (int64_t j = j0; j < j1; j++) out[j] = 0.0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = j0; j < j1; j++) out[j] += (double)A[r * cols + j] * (double)B[r * cols + j];
    }
    return ZF_OK;
}

zf_status zf_cpu_hgram(void *qs, const float *A, int64_t rows, const float *H, float *M)
{
    const int64_t n = zf_cpu_session_cols(qs);
    /* row-major lower of AᵀA = column-major upper: then both triangles from it, times H */
    cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, (int)n, (int)rows, 1.0f, A, (int)n, 0.0f, M, (int)n);
    /* tile by tile: a tile and its mirror stay in cache while the mirror is written */
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i0 = 0; i0 < n; i0 += ZF_HGRAM_TILE)
        for (int64_t j0 = 0; j0 <= i0; j0 += ZF_HGRAM_TILE) {
            const int64_t i1 = i0 + ZF_HGRAM_TILE < n ? i0 + ZF_HGRAM_TILE : n;
            for (int64_t i = i0; i < i1; i++) {
                const int64_t j1 = j0 + ZF_HGRAM_TILE < i + 1 ? j0 + ZF_HGRAM_TILE : i + 1;
                for (int64_t j = j0; j < j1; j++) {
                    const float v = M[i * n + j];
                    M[i * n + j] = v * H[i * n + j];
                    M[j * n + i] = v * H[j * n + i];
                }
            }
        }
    return ZF_OK;
}

zf_status zf_cpu_chol_solve(void *qs, float *M, int64_t n, float lambda, float *x, zf_chol_result *res)
{
    (void)qs;
    for (int64_t i = 0; i < n; i++) M[i * n + i] += lambda;
    /* symmetric: row-major and column-major are the same matrix */
    lapack_int info = LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n, M, (lapack_int)n);
    if (info < 0) return zf_fail(ZF_ERR_INTERNAL, "LAPACK rejected argument %d factorizing the ζ normal equations", -info);
    *res = ZF_CHOL_NOT_PD;
    if (info > 0) return ZF_OK;
    info = LAPACKE_spotrs_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n, 1, M, (lapack_int)n, x, (lapack_int)n);
    if (info < 0) return zf_fail(ZF_ERR_INTERNAL, "LAPACK rejected argument %d solving the ζ normal equations", -info);
    int finite = 1;
    for (int64_t i = 0; i < n; i++) finite &= isfinite(x[i]) != 0;
    *res = finite ? ZF_CHOL_OK : ZF_CHOL_NONFINITE;
    return ZF_OK;
}

zf_status zf_cpu_group_sums(void *qs, const float *Y, const uint8_t *q, const float *zero, int64_t lds,
                            const float *zeta, const float *H, int64_t rows, int64_t c0, int64_t len, float *scratch,
                            double *out)
{
    const int64_t n = zf_cpu_session_cols(qs);
    float *A = scratch, *P = scratch + rows * len;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < len; j++)
            A[r * len + j] = zeta[c0 + j] * ((float)q[r * n + c0 + j] - zero[r * lds]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)len, (int)len, 1.0f, A, (int)len,
                H + c0 * n + c0, (int)n, 0.0f, P, (int)len);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        double aa = 0.0, av = 0.0, ay = 0.0, vy = 0.0;
        for (int64_t j = 0; j < len; j++) {
            const double a = A[r * len + j], v = zeta[c0 + j], p = P[r * len + j], y = Y[r * n + c0 + j];
            aa += a * p, av += v * p, ay += a * y, vy += v * y;
        }
        out[r] = aa, out[rows + r] = av, out[2 * rows + r] = ay, out[3 * rows + r] = vy;
    }
    return ZF_OK;
}

zf_status zf_cpu_group_update(void *qs, float *Y, const uint8_t *q, float *scale, float *zero, int64_t lds,
                              const float *anew, const float *znew, const float *zeta, const float *H, int64_t rows,
                              int64_t c0, int64_t len, int64_t y0, float *scratch)
{
    const int64_t n = zf_cpu_session_cols(qs);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float a0 = scale[r * lds], z0 = zero[r * lds], a1 = anew[r], z1 = znew[r];
        for (int64_t j = 0; j < len; j++) {
            const float c = (float)q[r * n + c0 + j], z = zeta[c0 + j];
            scratch[r * len + j] = zf_dequant(c, a0 * z, z0) - zf_dequant(c, a1 * z, z1);
        }
        scale[r * lds] = a1, zero[r * lds] = z1;
    }
    if (y0 < n)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)(n - y0), (int)len, 1.0f, scratch,
                    (int)len, H + c0 * n + y0, (int)n, 1.0f, Y + y0, (int)n);
    return ZF_OK;
}
