/* Z-FOLD's device primitives: codes on the grid α_r·ζ_j, the ζ least-squares sums, and W ⊘ ζ. */
#include <math.h>

#include "worker/cuda/cuda_quant.h"

/* On the grid s_rj = α_rg·ζ_j with zero z_rg, g = j / gs: Wt = ζ_j·(q - z), dW = W - s_rj·(q - z), q codes (each
 * optional). */
__global__ void k_state(const float *W, int64_t rows, int64_t cols, int64_t gs, int64_t ng, float maxq,
                        const float *alpha, const float *zero, const float *zeta, float *Wt, float *dW, uint8_t *q)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    const int64_t r = i / cols, j = i % cols, k = r * ng + j / gs;
    const float z = zero[k], s = __fmul_rn(alpha[k], zeta[j]), w = W[i];
    const float c = zf_d_qcode(w, s, z, maxq);
    if (Wt) Wt[i] = __fmul_rn(zeta[j], __fsub_rn(c, z));
    if (dW) dW[i] = __fsub_rn(w, zf_d_dequant(c, s, z));
    if (q) q[i] = (uint8_t)c;
}

/* ζ least-squares sums per column, over the rows in order and in double exactly as the host. */
__global__ void k_zeta_sums(const float *W, int64_t rows, int64_t cols, int64_t gs, int64_t ng, float maxq,
                            const float *alpha, const float *zero, const float *zeta, double *num, double *den)
{
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    const float zj = zeta[j];
    double nu = 0.0, de = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t k = r * ng + j / gs;
        const float a = alpha[k], z = zero[k], w = W[r * cols + j];
        const float c = zf_d_qcode(w, __fmul_rn(a, zj), z, maxq);
        const double wh = __dmul_rn((double)a, (double)__fsub_rn(c, z));
        nu = __dadd_rn(nu, __dmul_rn((double)w, wh));
        de = __dadd_rn(de, __dmul_rn(wh, wh));
    }
    num[j] = nu;
    den[j] = de;
}

__global__ void k_div_cols(const float *W, int64_t rows, int64_t cols, const float *zeta, float *X)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    X[i] = __fdiv_rn(W[i], zeta[i % cols]);
}

/* Z-FOLD's group size: the session's (the whole row per channel). */
static int64_t zgroup_size(const zf_cq *c) { return c->o->group_size > 0 ? c->o->group_size : c->cols; }

zf_status zf_cq_zstate(void *qs, const float *W, int64_t rows, int64_t cols, const float *alpha, const float *zero,
                       const float *zeta, float *Wt, float *dW, uint8_t *q)
{
    zf_cq *c = (zf_cq *)qs;
    const int64_t gs = zgroup_size(c), ng = (cols + gs - 1) / gs;
    k_state<<<zf_cuda_blocks(rows * cols, 256), 256, 0, c->cu->stream>>>(W, rows, cols, gs, ng, c->maxq, alpha, zero,
                                                                          zeta, Wt, dW, q);
    return zf_cq_launched(c);
}

zf_status zf_cq_zeta_sums(void *qs, const float *W, int64_t rows, int64_t cols, const float *alpha,
                          const float *zero, const float *zeta, double *num, double *den)
{
    zf_cq *c = (zf_cq *)qs;
    const int64_t gs = zgroup_size(c), ng = (cols + gs - 1) / gs;
    k_zeta_sums<<<zf_cuda_blocks(cols, 128), 128, 0, c->cu->stream>>>(W, rows, cols, gs, ng, c->maxq, alpha, zero,
                                                                       zeta, c->coln, c->coln + cols);
    ZF_TRY(zf_cq_launched(c));
    ZF_TRY(zf_cq_d2h(c, num, c->coln, (size_t)cols * sizeof(double)));
    return zf_cq_d2h(c, den, c->coln + cols, (size_t)cols * sizeof(double));
}

zf_status zf_cq_div_cols(void *qs, const float *W, int64_t rows, int64_t cols, const float *zeta, float *X)
{
    zf_cq *c = (zf_cq *)qs;
    k_div_cols<<<zf_cuda_blocks(rows * cols, 256), 256, 0, c->cu->stream>>>(W, rows, cols, zeta, X);
    return zf_cq_launched(c);
}
