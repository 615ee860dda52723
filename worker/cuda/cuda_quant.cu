/* The device quantization session (fit check, scratch, math mode) and dequantization. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/cuda/cuda_quant.h"

/* deq = (scale·ζ)·(q - zero) (when deq is given) and, when dW is given, dW = W - deq; g = g_idx[j] or j / gs when g_idx is NULL. */
__global__ void k_deq(const float *W, const uint8_t *q, const float *scale, const float *zero, const float *zeta,
                      const int32_t *gidx, int64_t gs, int64_t ngroups, int64_t rows, int64_t cols, float *deq,
                      float *dW)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    const int64_t r = i / cols, j = i % cols;
    const int64_t k = r * ngroups + (gidx ? gidx[j] : j / gs);
    const float s = zeta ? __fmul_rn(scale[k], zeta[j]) : scale[k];
    const float d = zf_d_dequant((float)q[i], s, zero[k]);
    if (deq) deq[i] = d;
    if (dW) dW[i] = __fsub_rn(W[i], d);
}

zf_status zf_cq_dequant(void *qs, const float *W, const uint8_t *q, const float *scale, const float *zero,
                        const float *zeta, const int32_t *gidx, int64_t gs, int64_t ngroups, int64_t rows,
                        int64_t cols, float *deq, float *dW)
{
    zf_cq *c = (zf_cq *)qs;
    k_deq<<<zf_cuda_blocks(rows * cols, 256), 256, 0, c->cu->stream>>>(W, q, scale, zero, zeta, gidx, gs, ngroups,
                                                                        rows, cols, deq, dW);
    return zf_cq_launched(c);
}

static zf_status dalloc(zf_cq *c, void *pp, size_t bytes, const char *what)
{
    return zf_cuda_alloc(c->cu, bytes ? bytes : 16, what, (void **)pp);
}

/* The session's scratch, after the fit check on everything the layer will need (zf_backend_quantize_bytes). */
static zf_status begin_steps(zf_cq *c, bool hessian)
{
    const zf_quant_opts *o = c->o;
    const int64_t rows = c->rows, cols = c->cols;
    zf_cuda *cu = c->cu;
    const bool needE = hessian && (o->grid == ZF_GRID_HESSIAN || (o->method == ZF_METHOD_ZFOLD && o->alpha == ZF_ALPHA_GRID));
    const size_t cb = (size_t)c->chunk * (size_t)cols;
    char what[128];
    snprintf(what, sizeof what, "quantization of a [%lld x %lld] layer", (long long)rows, (long long)cols);
    ZF_TRY(zf_cuda_check_fits(cu, zf_backend_quantize_bytes(o, rows, cols, hessian), what));
    ZF_CUBLAS_TRY(cu, cublasSetStream(cu->blas, cu->stream));
    ZF_CUSOLVER_TRY(cu, cusolverDnSetStream(cu->solver, cu->stream));
    if (hessian) ZF_TRY(dalloc(c, &c->D, cb * 4, "quantization: rows times Hessian"));
    if (needE) ZF_TRY(dalloc(c, &c->E, cb * 4, "Hessian grid: candidate errors"));
    ZF_TRY(dalloc(c, &c->rng, (size_t)rows * 2 * 4, "quantization: row ranges"));
    ZF_TRY(dalloc(c, &c->cand, (size_t)rows * 2 * 4, "quantization: candidate grids"));
    ZF_TRY(dalloc(c, &c->best, (size_t)rows * 8, "quantization: best scores"));
    ZF_TRY(dalloc(c, &c->rowd, (size_t)rows * 4 * 8, "quantization: row sums"));
    ZF_TRY(dalloc(c, &c->coln, (size_t)(cols * 2 + rows) * 8, "Z-FOLD: zeta sums and column sums"));
    ZF_TRY(dalloc(c, &c->flag, 16, "quantization: status word"));
    /* Quantization is matched against the fp32 host path: no TF32 in its GEMMs whatever the forward uses. */
    ZF_CUBLAS_TRY(cu, cublasGetMathMode(cu->blas, &c->math));
    c->math_saved = true;
    ZF_CUBLAS_TRY(cu, cublasSetMathMode(cu->blas, CUBLAS_DEFAULT_MATH));
    return ZF_OK;
}

zf_status zf_cq_begin(void *ctx, const zf_quant_opts *o, int64_t rows, int64_t cols, bool hessian, void **qs)
{
    *qs = NULL;
    zf_cq *c = (zf_cq *)zf_calloc(1, sizeof *c, "quantization session");
    if (!c) return ZF_ERR_NOMEM;
    c->cu = (zf_cuda *)ctx;
    c->o = o;
    c->rows = rows;
    c->cols = cols;
    c->maxq = (float)((1 << o->bits) - 1);
    int64_t chunk = ZF_CUDA_QCHUNK_FLOATS / cols; /* as zf_backend_quantize_bytes counts it */
    chunk = chunk < 256 ? 256 : chunk;
    chunk = chunk > ZF_CUDA_QCHUNK_MAX ? ZF_CUDA_QCHUNK_MAX : chunk;
    c->chunk = chunk < rows ? chunk : rows;
    zf_status st = begin_steps(c, hessian);
    if (st != ZF_OK) {
        zf_cq_end(c, st);
        return st;
    }
    *qs = c;
    return ZF_OK;
}

void zf_cq_end(void *qs, zf_status st)
{
    zf_cq *c = (zf_cq *)qs;
    zf_cuda *cu = c->cu;
    if (st != ZF_OK) cudaStreamSynchronize(cu->stream); /* no kernel may still use the buffers freed below */
    if (c->math_saved) cublasSetMathMode(cu->blas, c->math);
    void *bufs[] = {c->D, c->E, c->rng, c->cand, c->best, c->rowd, c->coln, c->flag, c->work};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) zf_cuda_free(cu, bufs[i]);
    free(c->hwork);
    free(c);
}
