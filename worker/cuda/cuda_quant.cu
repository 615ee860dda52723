/* zf_cuda_quantize: validation, device buffers, dispatch to RTN/OPTQ/Z-FOLD, dequantization and ΔL figures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/cuda/cuda_quant.h"
#include "common/clock.h"

/* Rows per GEMM in the quadratic forms and the Hessian grid: scratch stays at about 256 MiB per buffer; the
 * Hessian grid launches one block row per row of a chunk, hence the grid-dimension cap. */

/* deq = (scale·ζ)·(q - zero) and, when dW is given, dW = W - deq; g = g_idx[j] or j / gs when g_idx is NULL. */
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
    deq[i] = d;
    if (dW) dW[i] = __fsub_rn(W[i], d);
}

/* ΔL of the codes in c->q: dequantized into c->A (and copied to deq_host when given), ΔW into c->B. */
static zf_status loss_of_codes(zf_cq *c, const float *zeta, const int32_t *gidx, float *deq_host, double *dl)
{
    const int64_t rows = c->rows, cols = c->cols;
    k_deq<<<zf_cuda_blocks(rows * cols, 256), 256, 0, c->cu->stream>>>(c->W, c->q, c->scale, c->zero, zeta, gidx,
                                                                        c->gs ? c->gs : cols, c->ngroups, rows, cols,
                                                                        c->A, c->H ? c->B : NULL);
    ZF_TRY(zf_cq_launched(c));
    if (deq_host) ZF_TRY(zf_cq_d2h(c, deq_host, c->A, (size_t)rows * (size_t)cols * sizeof(float)));
    if (!c->H) return ZF_OK;
    double *rowbuf = c->hd;
    ZF_TRY(zf_cq_quadform(c, c->B, NULL, rows, rowbuf, NULL));
    double s = 0.0;
    for (int64_t r = 0; r < rows; r++) s += rowbuf[r];
    *dl = s;
    return ZF_OK;
}

static zf_status run(zf_cq *c, const float *W, const zf_zeta_tie *tie, zf_qresult *out)
{
    const zf_quant_opts *o = c->o;
    const int64_t rows = c->rows, cols = c->cols;
    const size_t rc = (size_t)rows * (size_t)cols, rg = (size_t)rows * (size_t)c->ngroups;
    ZF_CUBLAS_TRY(c->cu, cublasSetStream(c->cu->blas, c->cu->stream));
    ZF_CUSOLVER_TRY(c->cu, cusolverDnSetStream(c->cu->solver, c->cu->stream));
    ZF_TRY(zf_cq_h2d(c, c->W, W, rc * sizeof(float)));
    /* a row no grid could fit keeps zero scale and zero point, as the host's calloc'ed result does */
    ZF_CUDA_TRY(c->cu, cudaMemsetAsync(c->scale, 0, rg * sizeof(float), c->cu->stream));
    ZF_CUDA_TRY(c->cu, cudaMemsetAsync(c->zero, 0, rg * sizeof(float), c->cu->stream));
    if (c->H) ZF_TRY(zf_cq_h2d(c, c->H, c->Hh, (size_t)cols * (size_t)cols * sizeof(float)));

    switch (o->method) {
    case ZF_METHOD_RTN:
        ZF_TRY(zf_cq_rtn(c, o->grid));
        for (int64_t j = 0; j < cols; j++) out->g_idx[j] = (int32_t)(c->gs ? j / c->gs : 0);
        break;
    case ZF_METHOD_OPTQ: ZF_TRY(zf_cq_optq(c, NULL, NULL, NULL, out)); break;
    case ZF_METHOD_ZFOLD: ZF_TRY(zf_cq_zfold(c, tie, out)); break;
    default: ZF_PANIC("unknown method %d", (int)o->method);
    }

    /* Results: g_idx and ζ are final on the host, codes and grids on the device. */
    ZF_TRY(zf_cq_h2d(c, c->gidx, out->g_idx, (size_t)cols * sizeof(int32_t)));
    ZF_TRY(zf_cq_h2d(c, c->zeta, out->zeta, (size_t)cols * sizeof(float)));
    ZF_TRY(zf_cq_d2h(c, out->q, c->q, rc));
    ZF_TRY(zf_cq_d2h(c, out->scale, c->scale, rg * sizeof(float)));
    ZF_TRY(zf_cq_d2h(c, out->zero, c->zero, rg * sizeof(float)));
    ZF_TRY(loss_of_codes(c, c->zeta, c->gidx, out->deq, &out->dl));
    if (!c->H) return ZF_OK;
    if (o->method == ZF_METHOD_RTN && o->grid == ZF_GRID_MINMAX) {
        out->dl_rtn = out->dl;
        return ZF_OK;
    }
    /* The "before" figure: min-max RTN with the same bits, symmetry and groups (overwrites the device results,
     * which are already on the host). */
    ZF_TRY(zf_cq_rtn(c, ZF_GRID_MINMAX));
    return loss_of_codes(c, NULL, NULL, NULL, &out->dl_rtn);
}

static zf_status dalloc(zf_cq *c, void *pp, size_t bytes, const char *what)
{
    return zf_cuda_alloc(c->cu, bytes ? bytes : 16, what, (void **)pp);
}

extern "C" zf_status zf_cuda_quantize(zf_cuda *cu, const zf_quant_opts *o, const float *W, int64_t rows,
                                      int64_t cols, const float *H, const zf_zeta_tie *tie, zf_qresult *out)
{
    const double t0 = zf_now();
    ZF_TRY(zf_quantize_check_inputs(o, W, rows, cols, H, &tie, out));
    memset(out, 0, sizeof *out); /* freed on every error below, allocated or not */
    const int64_t gs = o->group_size > 0 ? o->group_size : 0;
    const int64_t ngroups = gs ? (cols + gs - 1) / gs : 1;

    zf_cq c;
    memset(&c, 0, sizeof c);
    c.cu = cu;
    c.o = o;
    c.Hh = H;
    c.rows = rows;
    c.cols = cols;
    c.ngroups = ngroups;
    c.gs = gs;
    c.maxq = (float)((1 << o->bits) - 1);
    int64_t chunk = ZF_CUDA_QCHUNK_FLOATS / cols; /* as zf_backend_quantize_bytes counts it */
    chunk = chunk < 256 ? 256 : chunk;
    chunk = chunk > ZF_CUDA_QCHUNK_MAX ? ZF_CUDA_QCHUNK_MAX : chunk;
    c.chunk = chunk < rows ? chunk : rows;

    const bool optq = o->method == ZF_METHOD_OPTQ || (o->method == ZF_METHOD_ZFOLD && o->zfold_optq);
    const bool needE = H && (o->grid == ZF_GRID_HESSIAN || (o->method == ZF_METHOD_ZFOLD && o->alpha == ZF_ALPHA_GRID));
    const bool needHb = optq && gs && !o->static_groups && o->grid == ZF_GRID_HESSIAN;
    const int64_t Bk = o->block_size < cols ? o->block_size : cols, gl = gs ? (gs < cols ? gs : cols) : 0;
    const size_t rc = (size_t)rows * (size_t)cols, nn = (size_t)cols * (size_t)cols, cb = (size_t)c.chunk * cols;
    const size_t rg = (size_t)rows * (size_t)ngroups;
    const int64_t bytes = zf_backend_quantize_bytes(o, rows, cols, H != NULL); /* the allocations below */
    char what[128];
    snprintf(what, sizeof what, "quantization of a [%lld x %lld] layer", (long long)rows, (long long)cols);

    cublasMath_t math = CUBLAS_DEFAULT_MATH;
    bool math_saved = false;
    zf_status st = zf_cuda_check_fits(cu, bytes, what);
    /* the host result only once the device side is known to fit */
    if (st == ZF_OK) st = zf_qresult_alloc(out, rows, cols, ngroups, o->bits);
    /* host scratch */
    if (st == ZF_OK) {
        c.hd = (double *)zf_malloc(((size_t)rows * 2 + (size_t)cols * 4) * sizeof(double), "quantization row sums");
        c.hf = (float *)zf_malloc(((size_t)rows * 2 + (size_t)cols) * sizeof(float), "quantization state");
        c.hperm = (int32_t *)zf_malloc((size_t)cols * sizeof(int32_t), "quantization permutation");
        if (!c.hd || !c.hf || !c.hperm) st = ZF_ERR_NOMEM;
    }
#define ZF_CQ_ALLOC(ptr, n, what_)                                  \
    do {                                                            \
        if (st == ZF_OK) st = dalloc(&c, &(ptr), (n), (what_));     \
    } while (0)
    ZF_CQ_ALLOC(c.W, rc * 4, "quantization: weights");
    ZF_CQ_ALLOC(c.A, rc * 4, "quantization: working weights");
    ZF_CQ_ALLOC(c.B, rc * 4, "quantization: weight scratch");
    ZF_CQ_ALLOC(c.q, rc, "quantization: codes");
    if (optq) {
        ZF_CQ_ALLOC(c.Qt, rc, "OPTQ: codes in processing order");
        ZF_CQ_ALLOC(c.U, nn * 4, "OPTQ: inverse Hessian factor");
        ZF_CQ_ALLOC(c.Err, (size_t)Bk * rows * 4, "OPTQ: block errors");
    }
    if (H) {
        ZF_CQ_ALLOC(c.H, nn * 4, "quantization: Hessian");
        ZF_CQ_ALLOC(c.D, cb * 4, "quantization: rows times Hessian");
    }
    if (needE) ZF_CQ_ALLOC(c.E, cb * 4, "Hessian grid: candidate errors");
    if (needHb) ZF_CQ_ALLOC(c.hbuf, (size_t)gl * gl * 4, "OPTQ: group Hessian");
    ZF_CQ_ALLOC(c.scale, rg * 4, "quantization: scales");
    ZF_CQ_ALLOC(c.zero, rg * 4, "quantization: zero points");
    ZF_CQ_ALLOC(c.zeta, (size_t)cols * 4, "quantization: zeta");
    ZF_CQ_ALLOC(c.zp, (size_t)cols * 4, "quantization: permuted zeta");
    ZF_CQ_ALLOC(c.perm, (size_t)cols * 4, "quantization: permutation");
    ZF_CQ_ALLOC(c.gidx, (size_t)cols * 4, "quantization: group index");
    ZF_CQ_ALLOC(c.rng, (size_t)rows * 2 * 4, "quantization: row ranges");
    ZF_CQ_ALLOC(c.cand, (size_t)rows * 2 * 4, "quantization: candidate grids");
    ZF_CQ_ALLOC(c.best, (size_t)rows * 8, "quantization: best scores");
    ZF_CQ_ALLOC(c.rowd, (size_t)rows * 2 * 8, "quantization: row sums");
    ZF_CQ_ALLOC(c.coln, (size_t)cols * 2 * 8, "Z-FOLD: zeta sums");
    ZF_CQ_ALLOC(c.flag, 16, "quantization: status word");
#undef ZF_CQ_ALLOC
    if (st == ZF_OK) {
        /* Quantization is matched against the fp32 host path: no TF32 in its GEMMs whatever the forward uses. */
        cublasStatus_t bs = cublasGetMathMode(cu->blas, &math);
        if (bs == CUBLAS_STATUS_SUCCESS) {
            math_saved = true;
            bs = cublasSetMathMode(cu->blas, CUBLAS_DEFAULT_MATH);
        }
        if (bs != CUBLAS_STATUS_SUCCESS)
            st = zf_fail(ZF_ERR_INTERNAL, "cuda:%d: setting the cuBLAS math mode failed: %s", cu->device,
                         cublasGetStatusString(bs));
    }
    if (st == ZF_OK) st = run(&c, W, tie, out);

    /* cleanup: every path */
    if (st != ZF_OK) cudaStreamSynchronize(cu->stream); /* no kernel may still use the buffers freed below */
    if (math_saved) cublasSetMathMode(cu->blas, math);
    void *bufs[] = {c.W, c.H, c.A, c.B, c.D, c.E, c.U, c.Err, c.hbuf, c.scale, c.zero, c.zeta, c.zp,
                    c.rng, c.cand, c.best, c.rowd, c.coln, c.q, c.Qt, c.perm, c.gidx, c.flag, c.work};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) zf_cuda_free(cu, bufs[i]);
    free(c.hwork), free(c.hd), free(c.hf), free(c.hperm);
    if (st != ZF_OK) {
        /* as zf_quantize: the result is freed on error */
        zf_fail_context(st, "quantizing a [%lld x %lld] weight with %s on cuda:%d", (long long)rows, (long long)cols,
                        zf_method_name(o->method), cu->device);
        zf_qresult_free(out);
        return st;
    }
    out->t_total = zf_now() - t0;
    return ZF_OK;
}
