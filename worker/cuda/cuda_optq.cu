/* OPTQ's device primitives: one damped chol((H + λI)⁻¹) with cuSOLVER, working-copy gathers, the block step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/cuda/cuda_quant.h"

/* Columns handled by one launch of the column kernel (kept in registers per row); the rest of the block is
 * updated from their errors by one GEMM, as on the host. */
#define ZF_CQ_SUB 16
#define ZF_CQ_ROWS_PER_CTA 128

/* J·(Hp + λI)·J, lower triangle row-major (= upper column-major for cuSOLVER), dead diagonals set to 1. */
__global__ void k_damped(const float *H, int64_t n, const int32_t *perm, float lambda, float *A)
{
    const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n) return;
    for (int64_t a = blockIdx.y; a < n; a += gridDim.y) {
        float v = 0.0f;
        if (b <= a) {
            const int64_t pa = perm ? perm[n - 1 - a] : n - 1 - a, pb = perm ? perm[n - 1 - b] : n - 1 - b;
            v = H[pa * n + pb];
            if (a == b) {
                if (v == 0.0f) v = 1.0f;
                v = __fadd_rn(v, lambda);
            }
        }
        A[a * n + b] = v;
    }
}

/* 180° rotation in place: (i, j) <-> (n-1-i, n-1-j). */
__global__ void k_rotate(float *A, int64_t nn)
{
    const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= nn / 2) return;
    const float t = A[k];
    A[k] = A[nn - 1 - k];
    A[nn - 1 - k] = t;
}

/* Strict lower part to zero; flag = 1 if the upper part holds a non-finite value. */
__global__ void k_upper_check(float *U, int64_t n, int *flag)
{
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    for (int64_t i = blockIdx.y; i < n; i += gridDim.y) {
        if (j < i) U[i * n + j] = 0.0f;
        else if (!isfinite(U[i * n + j])) *flag = 1;
    }
}

zf_status zf_cq_chol_workspace(zf_cq *c, cusolverDnParams_t params, float *U, int64_t n)
{
    size_t dp = 0, hp = 0, dt = 0, ht = 0;
    cusolverStatus_t ss = cusolverDnXpotrf_bufferSize(c->cu->solver, params, CUBLAS_FILL_MODE_UPPER, n, CUDA_R_32F,
                                                      U, n, CUDA_R_32F, &dp, &hp);
    if (ss == CUSOLVER_STATUS_SUCCESS)
        ss = cusolverDnXtrtri_bufferSize(c->cu->solver, CUBLAS_FILL_MODE_UPPER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_32F,
                                         U, n, &dt, &ht);
    if (ss != CUSOLVER_STATUS_SUCCESS)
        return zf_fail(ZF_ERR_INTERNAL, "cuda:%d: cuSOLVER workspace query for a [%lld x %lld] Hessian failed: status %d",
                       c->cu->device, (long long)n, (long long)n, (int)ss);
    const size_t dbytes = (dp > dt ? dp : dt) + 16, hbytes = hp > ht ? hp : ht;
    if (dbytes > c->work_bytes) {
        zf_cuda_free(c->cu, c->work);
        c->work = NULL;
        c->work_bytes = 0;
        ZF_TRY(zf_cuda_alloc(c->cu, dbytes, "OPTQ Cholesky workspace", &c->work));
        c->work_bytes = dbytes;
    }
    if (hbytes > c->hwork_bytes) {
        free(c->hwork);
        c->hwork = zf_malloc(hbytes, "OPTQ Cholesky host workspace");
        c->hwork_bytes = c->hwork ? hbytes : 0;
        if (!c->hwork) return ZF_ERR_NOMEM;
    }
    return ZF_OK;
}

/* POTRF + TRTRI of the index-reversed damped Hessian, rotated, exactly as the host; *info as LAPACK's. */
static zf_status factor_once(zf_cq *c, cusolverDnParams_t params, const float *H, int64_t n, const int32_t *perm,
                             float lambda, float *U, zf_chol_result *res)
{
    const cudaStream_t st = c->cu->stream;
    const dim3 g2(zf_cuda_blocks(n, 256), (unsigned)(n < 65535 ? n : 65535));
    ZF_TRY(zf_cq_chol_workspace(c, params, U, n));
    k_damped<<<g2, 256, 0, st>>>(H, n, perm, lambda, U);
    ZF_TRY(zf_cq_launched(c));
    int info = 0;
    ZF_CUSOLVER_TRY(c->cu, cusolverDnXpotrf(c->cu->solver, params, CUBLAS_FILL_MODE_UPPER, n, CUDA_R_32F, U, n,
                                            CUDA_R_32F, c->work, c->work_bytes, c->hwork, c->hwork_bytes, c->flag));
    ZF_TRY(zf_cq_d2h(c, &info, c->flag, sizeof info));
    *res = ZF_CHOL_NOT_PD;
    if (info == 0) {
        ZF_CUSOLVER_TRY(c->cu, cusolverDnXtrtri(c->cu->solver, CUBLAS_FILL_MODE_UPPER, CUBLAS_DIAG_NON_UNIT, n,
                                                CUDA_R_32F, U, n, c->work, c->work_bytes, c->hwork, c->hwork_bytes,
                                                c->flag));
        ZF_TRY(zf_cq_d2h(c, &info, c->flag, sizeof info));
        *res = ZF_CHOL_SINGULAR;
    }
    if (info < 0) return zf_fail(ZF_ERR_INTERNAL, "cuSOLVER rejected argument %d factorizing the Hessian", -info);
    if (info > 0) return ZF_OK;
    if (n > 1) { /* n = 1 has nothing to swap, and an empty grid is a launch error */
        k_rotate<<<zf_cuda_blocks(n * n / 2, 256), 256, 0, st>>>(U, n * n);
        ZF_TRY(zf_cq_launched(c));
    }
    int bad = 0;
    ZF_TRY(zf_cq_h2d(c, c->flag, &bad, sizeof bad));
    k_upper_check<<<g2, 256, 0, st>>>(U, n, c->flag);
    ZF_TRY(zf_cq_launched(c));
    ZF_TRY(zf_cq_d2h(c, &bad, c->flag, sizeof bad));
    *res = bad ? ZF_CHOL_NONFINITE : ZF_CHOL_OK;
    return ZF_OK;
}

zf_status zf_cq_chol_inv(void *qs, const float *H, int64_t n, const int32_t *perm, float lambda, float *U,
                         zf_chol_result *res)
{
    zf_cq *c = (zf_cq *)qs;
    cusolverDnParams_t params = NULL;
    ZF_CUSOLVER_TRY(c->cu, cusolverDnCreateParams(&params));
    zf_status s = factor_once(c, params, H, n, perm, lambda, U, res);
    cusolverDnDestroyParams(params);
    return s;
}

/* Wt[p, r] = W[r, perm[p]] (0 for dead inputs) through a shared tile: column p of the working copy is contiguous. */
__global__ void k_gather_t(const float *W, const float *H, int64_t rows, int64_t n, const int32_t *perm, float *Wt)
{
    __shared__ float tile[32][33];
    const int64_t p0 = (int64_t)blockIdx.x * 32, r0 = (int64_t)blockIdx.y * 32;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const int64_t r = r0 + k, p = p0 + threadIdx.x;
        if (r < rows && p < n) {
            const int64_t j = perm[p];
            tile[k][threadIdx.x] = H[j * n + j] == 0.0f ? 0.0f : W[r * n + j];
        }
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const int64_t p = p0 + k, r = r0 + threadIdx.x;
        if (r < rows && p < n) Wt[p * rows + r] = tile[threadIdx.x][k];
    }
}

/* Rows × [c0, c0+len) of the working copy back to row-major [rows, len]. */
__global__ void k_slice_t(const float *Wt, int64_t rows, int64_t c0, int64_t len, float *G)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * len) return;
    const int64_t r = i / len, a = i % len;
    G[i] = Wt[(c0 + a) * rows + r];
}

/* Static group slice of the original W with dead inputs zeroed. */
__global__ void k_slice_static(const float *W, const float *H, int64_t rows, int64_t n, int64_t c0, int64_t len,
                               float *G)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * len) return;
    const int64_t r = i / len, a = i % len, j = c0 + a;
    G[i] = H[j * n + j] == 0.0f ? 0.0f : W[r * n + j];
}

__global__ void k_group_hess(const float *H, int64_t n, const int32_t *perm, int64_t c0, int64_t len, float *G)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len * len) return;
    const int64_t a = i / len, b = i % len;
    G[i] = H[(int64_t)perm[c0 + a] * n + perm[c0 + b]];
}

/* Columns [s0, s0+len) of the block starting at i1, one thread per row: quantize, error / U_pp, rank-1 updates of
 * the later columns of the sub-block (kept in registers; nothing else reads them before the GEMM). */
__global__ void __launch_bounds__(ZF_CQ_ROWS_PER_CTA)
k_columns(float *Wt, uint8_t *Qt, float *Err, const float *U, int64_t rows, int64_t n, int64_t i1, int64_t s0,
          int len, const float *scale, const float *zero, int64_t ngroups, int64_t gs, bool static_groups,
          const int32_t *perm, const float *zp, float maxq, double *rowloss, const float *X, int64_t ldx,
          double *rowex)
{
    __shared__ float Us[ZF_CQ_SUB][ZF_CQ_SUB];
    for (int t = threadIdx.x; t < ZF_CQ_SUB * ZF_CQ_SUB; t += blockDim.x) {
        const int a = t / ZF_CQ_SUB, b = t % ZF_CQ_SUB;
        Us[a][b] = a < len && b < len ? U[(s0 + a) * n + s0 + b] : 0.0f;
    }
    __syncthreads();
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float w[ZF_CQ_SUB];
    double loss = 0.0, ex = 0.0;
#pragma unroll
    for (int k = 0; k < ZF_CQ_SUB; k++) w[k] = k < len ? Wt[(s0 + k) * rows + r] : 0.0f;
#pragma unroll
    for (int k = 0; k < ZF_CQ_SUB; k++) {
        if (k < len) {
            const int64_t p = s0 + k;
            const int64_t g = gs ? (static_groups ? perm[p] / gs : p / gs) : 0;
            const float s = __fmul_rn(scale[r * ngroups + g], zp[p]), z = zero[r * ngroups + g];
            const float code = zf_d_qcode(w[k], s, z, maxq);
            Qt[p * rows + r] = (uint8_t)code;
            const float e = __fdiv_rn(__fsub_rn(w[k], zf_d_dequant(code, s, z)), Us[k][k]);
            Err[(p - i1) * rows + r] = e;
            loss += (double)e * (double)e;
            if (X) ex += (double)e * (double)X[p * ldx + r];
            /* unfused like the host's wj -= u·e (ptxas would contract a plain mul and sub into an FMA) */
#pragma unroll
            for (int j = k + 1; j < ZF_CQ_SUB; j++) w[j] = __fsub_rn(w[j], __fmul_rn(Us[k][j], e));
        }
    }
    /* one thread per row and the launches in stream order: no other writer */
    if (rowloss) rowloss[r] += loss;
    if (X) rowex[r] += ex;
}

/* q[r, perm[p]] = Qt[p, r]. */
__global__ void k_unpermute(const uint8_t *Qt, int64_t rows, int64_t n, const int32_t *perm, uint8_t *q)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * n) return;
    const int64_t p = i / rows, r = i % rows;
    q[r * n + perm[p]] = Qt[i];
}

/* Wt[s1:i2 or beyond] -= Err[s0-i1 ...] · U[s0:s1, s1:i2]: column-major C[rows, m] -= E[rows, k] · op(U). */
static zf_status update(zf_cq *c, const zf_optq_bufs *b, int64_t i1, int64_t s0, int64_t s1, int64_t i2)
{
    const float minus = -1.0f, one = 1.0f;
    const int64_t rows = b->rows, n = b->n;
    ZF_CUBLAS_TRY(c->cu, cublasSgemm(c->cu->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)rows, (int)(i2 - s1), (int)(s1 - s0),
                                     &minus, b->Err + (s0 - i1) * rows, (int)rows, b->U + s0 * n + s1, (int)n, &one,
                                     b->Wt + s1 * rows, (int)rows));
    return ZF_OK;
}

zf_status zf_cq_optq_block(void *qs, const zf_optq_bufs *b, int64_t i1, int64_t i2)
{
    zf_cq *c = (zf_cq *)qs;
    const int64_t rows = b->rows;
    for (int64_t s0 = i1; s0 < i2; s0 += ZF_CQ_SUB) {
        const int64_t s1 = s0 + ZF_CQ_SUB < i2 ? s0 + ZF_CQ_SUB : i2;
        k_columns<<<zf_cuda_blocks(rows, ZF_CQ_ROWS_PER_CTA), ZF_CQ_ROWS_PER_CTA, 0, c->cu->stream>>>(
            b->Wt, b->Qt, b->Err, b->U, rows, b->n, i1, s0, (int)(s1 - s0), b->scale, b->zero, b->ngroups, b->gs,
            b->static_groups, b->perm, b->zp, c->maxq, b->rowloss, b->X, b->ldx, b->rowex);
        ZF_TRY(zf_cq_launched(c));
        if (s1 < i2) ZF_TRY(update(c, b, i1, s0, s1, i2));
    }
    /* Lazy update of every later column. */
    if (i2 < b->n) ZF_TRY(update(c, b, i1, i1, i2, b->n));
    return ZF_OK;
}

/* Row-major B [n, cols] is column-major Bᵀ, row-major U is column-major Uᵀ (lower): op(U) X = B is Xᵀ op(U)ᵀ = Bᵀ. */
zf_status zf_cq_tri_solve(void *qs, const float *U, int64_t n, bool trans, float *B, int64_t cols)
{
    zf_cq *c = (zf_cq *)qs;
    const float one = 1.0f;
    ZF_CUBLAS_TRY(c->cu, cublasStrsm(c->cu->blas, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER,
                                     trans ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, (int)cols, (int)n, &one,
                                     U, (int)n, B, (int)cols));
    return ZF_OK;
}

zf_status zf_cq_gather_t(void *qs, const float *W, const float *H, int64_t rows, int64_t n, const int32_t *perm,
                         float *Wt)
{
    zf_cq *c = (zf_cq *)qs;
    k_gather_t<<<dim3(zf_cuda_blocks(n, 32), zf_cuda_blocks(rows, 32)), dim3(32, 8), 0, c->cu->stream>>>(W, H, rows, n,
                                                                                                         perm, Wt);
    return zf_cq_launched(c);
}

zf_status zf_cq_slice_static(void *qs, const float *W, const float *H, int64_t rows, int64_t n, int64_t c0,
                             int64_t len, float *G)
{
    zf_cq *c = (zf_cq *)qs;
    k_slice_static<<<zf_cuda_blocks(rows * len, 256), 256, 0, c->cu->stream>>>(W, H, rows, n, c0, len, G);
    return zf_cq_launched(c);
}

zf_status zf_cq_slice_t(void *qs, const float *Wt, int64_t rows, int64_t c0, int64_t len, float *G)
{
    zf_cq *c = (zf_cq *)qs;
    k_slice_t<<<zf_cuda_blocks(rows * len, 256), 256, 0, c->cu->stream>>>(Wt, rows, c0, len, G);
    return zf_cq_launched(c);
}

zf_status zf_cq_group_hess(void *qs, const float *H, int64_t n, const int32_t *perm, int64_t c0, int64_t len,
                           float *Hb)
{
    zf_cq *c = (zf_cq *)qs;
    k_group_hess<<<zf_cuda_blocks(len * len, 256), 256, 0, c->cu->stream>>>(H, n, perm, c0, len, Hb);
    return zf_cq_launched(c);
}

zf_status zf_cq_unpermute(void *qs, const uint8_t *Qt, int64_t rows, int64_t n, const int32_t *perm, uint8_t *q)
{
    zf_cq *c = (zf_cq *)qs;
    k_unpermute<<<zf_cuda_blocks(rows * n, 256), 256, 0, c->cu->stream>>>(Qt, rows, n, perm, q);
    return zf_cq_launched(c);
}
