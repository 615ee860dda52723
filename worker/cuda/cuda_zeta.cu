/* The ζ refit's device primitives: column dot products, the Hessian-weighted Gram matrix and its damped solve. */
#include <math.h>

#include "worker/cuda/cuda_quant.h"

/* out[j] = Σ_r A[r, j]·B[r, j] over the rows in order, in double exactly as the host. */
__global__ void k_coldot(const float *A, const float *B, int64_t rows, int64_t cols, double *out)
{
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    double s = 0.0;
    for (int64_t r = 0; r < rows; r++) s = __dadd_rn(s, __dmul_rn((double)A[r * cols + j], (double)B[r * cols + j]));
    out[j] = s;
}

/* M ∘= H from the row-major upper triangle of AᵀA (cuBLAS's column-major lower), both triangles written. */
__global__ void k_hadamard_sym(float *M, const float *H, int64_t n)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * n) return;
    const int64_t a = i / n, b = i % n;
    if (b < a) return;
    const float v = M[i];
    M[i] = __fmul_rn(v, H[i]);
    if (b != a) M[b * n + a] = __fmul_rn(v, H[b * n + a]);
}

__global__ void k_add_diag(float *M, int64_t n, float lambda)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) M[i * n + i] = __fadd_rn(M[i * n + i], lambda);
}

zf_status zf_cq_coldot(void *qs, const float *A, const float *B, int64_t rows, int64_t cols, double *out)
{
    zf_cq *c = (zf_cq *)qs;
    k_coldot<<<zf_cuda_blocks(cols, 128), 128, 0, c->cu->stream>>>(A, B, rows, cols, c->coln);
    ZF_TRY(zf_cq_launched(c));
    return zf_cq_d2h(c, out, c->coln, (size_t)cols * sizeof(double));
}

zf_status zf_cq_hgram(void *qs, const float *A, int64_t rows, const float *H, float *M)
{
    zf_cq *c = (zf_cq *)qs;
    const int64_t n = c->cols;
    const float one = 1.0f, zero = 0.0f;
    /* row-major A [rows, n] is column-major [n, rows]: A·Aᵀ there is AᵀA here */
    ZF_CUBLAS_TRY(c->cu, cublasSsyrk(c->cu->blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)n, (int)rows, &one, A,
                                     (int)n, &zero, M, (int)n));
    k_hadamard_sym<<<zf_cuda_blocks(n * n, 256), 256, 0, c->cu->stream>>>(M, H, n);
    return zf_cq_launched(c);
}

zf_status zf_cq_chol_solve(void *qs, float *M, int64_t n, float lambda, float *x, zf_chol_result *res)
{
    zf_cq *c = (zf_cq *)qs;
    cusolverDnParams_t params = NULL;
    ZF_CUSOLVER_TRY(c->cu, cusolverDnCreateParams(&params));
    zf_status st = zf_cq_chol_workspace(c, params, M, n);
    int info = 0;
    *res = ZF_CHOL_NOT_PD;
    if (st == ZF_OK) {
        k_add_diag<<<zf_cuda_blocks(n, 256), 256, 0, c->cu->stream>>>(M, n, lambda);
        st = zf_cq_launched(c);
    }
    if (st == ZF_OK && cusolverDnXpotrf(c->cu->solver, params, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, M, n, CUDA_R_32F,
                                        c->work, c->work_bytes, c->hwork, c->hwork_bytes,
                                        c->flag) != CUSOLVER_STATUS_SUCCESS)
        st = zf_fail(ZF_ERR_INTERNAL, "cuda:%d: cuSOLVER POTRF of the ζ normal equations failed", c->cu->device);
    if (st == ZF_OK) st = zf_cq_d2h(c, &info, c->flag, sizeof info);
    if (st == ZF_OK && info == 0 &&
        cusolverDnXpotrs(c->cu->solver, params, CUBLAS_FILL_MODE_LOWER, n, 1, CUDA_R_32F, M, n, CUDA_R_32F, x, n,
                         c->flag) != CUSOLVER_STATUS_SUCCESS)
        st = zf_fail(ZF_ERR_INTERNAL, "cuda:%d: cuSOLVER POTRS of the ζ normal equations failed", c->cu->device);
    cusolverDnDestroyParams(params);
    if (st != ZF_OK || info != 0) return st;
    float *h = (float *)zf_malloc((size_t)n * sizeof(float), "ζ solution");
    if (!h) return ZF_ERR_NOMEM;
    st = zf_cq_d2h(c, h, x, (size_t)n * sizeof(float));
    bool finite = true;
    for (int64_t i = 0; i < n && st == ZF_OK; i++) finite = finite && isfinite(h[i]);
    free(h);
    if (st == ZF_OK) *res = finite ? ZF_CHOL_OK : ZF_CHOL_NONFINITE;
    return st;
}
