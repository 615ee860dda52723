/* The CUDA model forward: weight upload, norms, rotary, causal attention, MLP and residuals with Hessian captures; the head and next-token NLL. */
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

/* The project headers are C: their functions keep C linkage. */
extern "C" {
#include "common/model.h"
#include "common/status.h"
#include "worker/backend.h"
#include "worker/block.h"
#include "worker/forward.h"
}

#include "worker/cuda/cuda_internal.h"

#define ZF_FWD_THREADS 256

/* Internal linkage for everything but the entry point: other .cu files of the backend have kernels of their own. */
namespace {

#include "worker/cuda/cuda_forward_kernels.cuh"

/* ---------------------------------------------------------------------------------------------------------------- */

/* Everything one call holds on the device; NULL pointers were never allocated. */
typedef struct {
    zf_cuda *cu;
    bool opt;
    int64_t seq, d, hd, nh, nkv, qdim, kvdim, ff;
    cudaDataType wtype;               /* weights and the activation operand of the block's GEMMs */
    size_t wsize;
    cublasComputeType_t wcompute;     /* for the block's linears */
    cublasComputeType_t acompute;     /* for QKᵀ and PV (fp32 activations) */
    void *W[ZF_NLIN];
    float *B[ZF_NLIN];
    float *norm_w[2], *norm_b[2];
    float *staging;                   /* fp32 upload buffer for half weights */
    float *xw;                        /* the residual stream of one window [seq, d] */
    float *h;                         /* a norm's output [seq, d] */
    float *big;                       /* q, k, v, attention mix; later gate/up (or fc1) */
    float *scores;                    /* one head's [seq, seq] */
    float *rope;                      /* cos then sin [seq, hd/2] (llama) */
    void *op;                         /* a GEMM's activation operand in the weight type */
} fwd_dev;

static unsigned grid_for(int64_t n)
{
    /* Grid-stride loops cover the rest; the cap keeps gridDim.x well within limits. */
    int64_t b = (n + ZF_FWD_THREADS - 1) / ZF_FWD_THREADS;
    if (b < 1) b = 1;
    if (b > 65536) b = 65536;
    return (unsigned)b;
}

static zf_status launched(zf_cuda *cu, const char *kernel)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return zf_fail(ZF_ERR_INTERNAL, "cuda:%d: launching %s failed: %s", cu->device, kernel,
                       cudaGetErrorString(e));
    return ZF_OK;
}

/* cuBLAS takes int sizes and leading dimensions, and a window is one grid of seq blocks: refuse what does not fit. */
static zf_status check_int_sizes(const zf_model_config *c, int64_t seq)
{
    if (seq > INT_MAX)
        return zf_fail(ZF_ERR_INPUT, "CUDA block forward: a window of %lld tokens is more than cuBLAS can index",
                       (long long)seq);
    int64_t qdim = c->n_heads * c->head_dim, kvdim = c->n_kv_heads * c->head_dim;
    if (c->hidden > INT_MAX || qdim > INT_MAX || kvdim > INT_MAX || c->intermediate > INT_MAX ||
        c->n_heads > INT_MAX / c->head_dim)
        return zf_fail(ZF_ERR_INPUT, "CUDA block forward: layer sizes (hidden %lld, heads·head_dim %lld, "
                                     "intermediate %lld) are more than cuBLAS can index",
                       (long long)c->hidden, (long long)qdim, (long long)c->intermediate);
    return ZF_OK;
}

static zf_status upload_f32(zf_cuda *cu, const float *host, int64_t n, const char *what, float **dev)
{
    ZF_TRY(zf_cuda_alloc(cu, sizeof(float) * (size_t)n, what, (void **)dev));
    ZF_CUDA_TRY(cu, cudaMemcpyAsync(*dev, host, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice, cu->stream));
    return ZF_OK;
}

/* fp32 host [n] → device in the weight type; half types go through the staging buffer chunk by chunk. */
static zf_status upload_weight(fwd_dev *f, const float *host, int64_t n, const char *what, void **dev)
{
    zf_cuda *cu = f->cu;
    if (f->wtype == CUDA_R_32F) return upload_f32(cu, host, n, what, (float **)dev);
    ZF_TRY(zf_cuda_alloc(cu, f->wsize * (size_t)n, what, dev));
    for (int64_t off = 0; off < n; off += ZF_CUDA_STAGING_FLOATS) {
        int64_t len = n - off < ZF_CUDA_STAGING_FLOATS ? n - off : ZF_CUDA_STAGING_FLOATS;
        /* Stream order keeps the previous chunk's conversion ahead of this copy into the same staging buffer. */
        ZF_CUDA_TRY(cu, cudaMemcpyAsync(f->staging, host + off, sizeof(float) * (size_t)len, cudaMemcpyHostToDevice,
                                        cu->stream));
        if (f->wtype == CUDA_R_16BF)
            to_half_kernel<__nv_bfloat16><<<grid_for(len), ZF_FWD_THREADS, 0, cu->stream>>>(
                f->staging, (__nv_bfloat16 *)*dev + off, len);
        else
            to_half_kernel<__half><<<grid_for(len), ZF_FWD_THREADS, 0, cu->stream>>>(f->staging, (__half *)*dev + off,
                                                                                      len);
        ZF_TRY(launched(cu, "the weight conversion kernel"));
    }
    return ZF_OK;
}

static int64_t lin_out(const fwd_dev *f, int l)
{
    switch (l) {
    case ZF_LIN_Q: return f->qdim;
    case ZF_LIN_K: case ZF_LIN_V: return f->kvdim;
    case ZF_LIN_GATE: case ZF_LIN_UP: return f->ff;
    default: return f->d; /* O, DOWN */
    }
}

static int64_t lin_in(const fwd_dev *f, int l)
{
    switch (l) {
    case ZF_LIN_O: return f->qdim;
    case ZF_LIN_DOWN: return f->ff;
    default: return f->d;
    }
}

/* Weights, biases, norms, the rotary table and the activation buffers of one window. */
static zf_status setup(fwd_dev *f, const zf_block_weights *w, const float *rope_host)
{
    zf_cuda *cu = f->cu;
    int64_t seq = f->seq, d = f->d;
    if (f->wtype != CUDA_R_32F) {
        int64_t most = 0;
        for (int l = 0; l < ZF_NLIN; l++)
            if (w->lin_w[l] && lin_out(f, l) * lin_in(f, l) > most) most = lin_out(f, l) * lin_in(f, l);
        if (most > ZF_CUDA_STAGING_FLOATS) most = ZF_CUDA_STAGING_FLOATS;
        ZF_TRY(zf_cuda_alloc(cu, sizeof(float) * (size_t)most, "forward weight staging", (void **)&f->staging));
    }
    for (int l = 0; l < ZF_NLIN; l++) {
        if (!w->lin_w[l]) continue;
        ZF_TRY(upload_weight(f, w->lin_w[l], lin_out(f, l) * lin_in(f, l), "forward weights", &f->W[l]));
        if (w->lin_b[l]) ZF_TRY(upload_f32(cu, w->lin_b[l], lin_out(f, l), "forward biases", &f->B[l]));
    }
    if (f->staging) {
        /* Conversions are done once the stream gets here; the staging memory is better left to activations. */
        ZF_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
        zf_cuda_free(cu, f->staging);
        f->staging = NULL;
    }
    for (int i = 0; i < 2; i++) {
        ZF_TRY(upload_f32(cu, w->norm_w[i], d, "forward norm weights", &f->norm_w[i]));
        if (w->norm_b[i]) ZF_TRY(upload_f32(cu, w->norm_b[i], d, "forward norm biases", &f->norm_b[i]));
    }
    if (rope_host) ZF_TRY(upload_f32(cu, rope_host, 2 * seq * (f->hd / 2), "forward rotary table", &f->rope));

    int64_t attn = 2 * f->qdim + 2 * f->kvdim, mlp = (f->opt ? 1 : 2) * f->ff, big = attn > mlp ? attn : mlp;
    ZF_TRY(zf_cuda_alloc(cu, sizeof(float) * (size_t)(seq * d), "forward residual stream", (void **)&f->xw));
    ZF_TRY(zf_cuda_alloc(cu, sizeof(float) * (size_t)(seq * d), "forward norm output", (void **)&f->h));
    ZF_TRY(zf_cuda_alloc(cu, sizeof(float) * (size_t)seq * (size_t)big, "forward activations", (void **)&f->big));
    ZF_TRY(zf_cuda_alloc(cu, sizeof(float) * (size_t)seq * (size_t)seq, "forward attention scores",
                         (void **)&f->scores));
    if (f->wtype != CUDA_R_32F) {
        int64_t widest = d > f->qdim ? d : f->qdim;
        if (f->ff > widest) widest = f->ff;
        ZF_TRY(zf_cuda_alloc(cu, f->wsize * (size_t)seq * (size_t)widest, "forward GEMM operand", &f->op));
    }
    return ZF_OK;
}

/* The activation operand of a linear: x itself for fp32 weights, else x rounded to the weight type in f->op. */
static zf_status operand(fwd_dev *f, const float *x, int64_t in, const void **out)
{
    if (f->wtype == CUDA_R_32F) {
        *out = x;
        return ZF_OK;
    }
    int64_t n = f->seq * in;
    if (f->wtype == CUDA_R_16BF)
        to_half_kernel<__nv_bfloat16><<<grid_for(n), ZF_FWD_THREADS, 0, f->cu->stream>>>(x, (__nv_bfloat16 *)f->op, n);
    else
        to_half_kernel<__half><<<grid_for(n), ZF_FWD_THREADS, 0, f->cu->stream>>>(x, (__half *)f->op, n);
    ZF_TRY(launched(f->cu, "the activation conversion kernel"));
    *out = f->op;
    return ZF_OK;
}

/* y [seq, out] = x [seq, in]·Wᵀ (+ y when accumulate) for W [out, in] in the weight type.
 * Column-major, row-major x is x_cm [in, seq] and W [out, in] is W_cm [in, out], both with ld = in; the row-major
 * y is y_cm [out, seq] with ld = out, and y_cm = W_cmᵀ · x_cm: op(A) = T on W, op(B) = N on x, m = out, n = seq. */
static zf_status gemm_xwt(fwd_dev *f, const void *x_op, const void *W, int64_t in, int64_t out, float *y,
                          bool accumulate)
{
    zf_cuda *cu = f->cu;
    float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    ZF_CUBLAS_TRY(cu, cublasGemmEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, (int)f->seq, (int)in, &alpha, W,
                                   f->wtype, (int)in, x_op, f->wtype, (int)in, &beta, y, CUDA_R_32F, (int)out,
                                   f->wcompute, CUBLAS_GEMM_DEFAULT));
    return ZF_OK;
}

/* Linear l of the block: y [seq, out] = x·Wᵀ (+ y when accumulate), then (y + b)·scale. */
static zf_status linear(fwd_dev *f, const void *x_op, int l, float *y, bool accumulate, float scale)
{
    zf_cuda *cu = f->cu;
    int64_t out = lin_out(f, l);
    ZF_TRY(gemm_xwt(f, x_op, f->W[l], lin_in(f, l), out, y, accumulate));
    if (f->B[l] || scale != 1.0f) {
        int64_t n = f->seq * out;
        bias_scale_kernel<<<grid_for(n), ZF_FWD_THREADS, 0, cu->stream>>>(y, f->B[l], f->seq, out, scale);
        ZF_TRY(launched(cu, "the bias kernel"));
    }
    return ZF_OK;
}

static zf_status norm(fwd_dev *f, const zf_model_config *c, int which)
{
    zf_cuda *cu = f->cu;
    if (f->opt)
        layer_norm_kernel<<<(unsigned)f->seq, ZF_FWD_THREADS, 0, cu->stream>>>(
            f->xw, f->norm_w[which], f->norm_b[which], (float)c->norm_eps, f->d, f->h);
    else
        rms_norm_kernel<<<(unsigned)f->seq, ZF_FWD_THREADS, 0, cu->stream>>>(f->xw, f->norm_w[which],
                                                                           (float)c->norm_eps, f->d, f->h);
    return launched(cu, f->opt ? "the LayerNorm kernel" : "the RMSNorm kernel");
}

/* Adds the window's input of group g [seq, dim] (device) to its Hessian, when that group is captured. */
static zf_status capture(fwd_dev *f, zf_bhess *const hess[ZF_NGROUP], zf_group g, const float *x, int64_t dim)
{
    if (!hess || !hess[g]) return ZF_OK;
    zf_bhess *hs = hess[g];
    ZF_ASSERT(hs->be && hs->dim == dim && hs->sum);
    ZF_TRY(zf_cuda_hess_add(f->cu, hs->sum, hs->dim, hs->fp64, x, f->seq));
    hs->ntokens += f->seq;
    return ZF_OK;
}

/* att [seq, qdim] = causal attention of every head of the window; query head h reads KV head h / (nh/nkv).
 * One head at a time keeps the scores at [seq, seq]. Row-major S [query t, key j] is column-major S_cm [keys, queries]
 * with ld = seq: S_cm = K_cmᵀ · Q_cm, where K_cm [hd, seq] (ld kvdim) and Q_cm [hd, seq] (ld qdim) are the head's
 * slices. Then O_cm [hd, seq] (ld qdim) = V_cm [hd, seq] (ld kvdim) · P_cm [keys, queries]. */
static zf_status attention(fwd_dev *f, const float *q, const float *k, const float *v, float *att, float scale)
{
    zf_cuda *cu = f->cu;
    int seq = (int)f->seq, hd = (int)f->hd, qdim = (int)f->qdim, kvdim = (int)f->kvdim;
    int64_t rep = f->nh / f->nkv;
    float zero = 0.0f, one = 1.0f;
    for (int64_t h = 0; h < f->nh; h++) {
        int64_t kh = h / rep;
        ZF_CUBLAS_TRY(cu, cublasGemmEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, seq, seq, hd, &scale, k + kh * hd,
                                       CUDA_R_32F, kvdim, q + h * hd, CUDA_R_32F, qdim, &zero, f->scores, CUDA_R_32F,
                                       seq, f->acompute, CUBLAS_GEMM_DEFAULT));
        causal_softmax_kernel<<<(unsigned)seq, ZF_FWD_THREADS, 0, cu->stream>>>(f->scores, f->seq);
        ZF_TRY(launched(cu, "the causal softmax kernel"));
        ZF_CUBLAS_TRY(cu, cublasGemmEx(cu->blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, seq, seq, &one, v + kh * hd,
                                       CUDA_R_32F, kvdim, f->scores, CUDA_R_32F, seq, &zero, att + h * hd, CUDA_R_32F,
                                       qdim, f->acompute, CUBLAS_GEMM_DEFAULT));
    }
    return ZF_OK;
}

/* The block on the window in f->xw, in place. */
static zf_status window_forward(fwd_dev *f, const zf_model_config *c, zf_bhess *const hess[ZF_NGROUP])
{
    zf_cuda *cu = f->cu;
    int64_t seq = f->seq, half = f->hd / 2;
    const void *op;

    /* Attention. */
    ZF_TRY(norm(f, c, 0));
    ZF_TRY(capture(f, hess, ZF_GROUP_QKV, f->h, f->d));
    float *q = f->big, *k = q + seq * f->qdim, *v = k + seq * f->kvdim, *att = v + seq * f->kvdim;
    float scale = 1.0f / sqrtf((float)f->hd);
    ZF_TRY(operand(f, f->h, f->d, &op));
    /* HF OPT scales q (bias included) right after q_proj, and the scores are not scaled again. */
    ZF_TRY(linear(f, op, ZF_LIN_Q, q, false, f->opt ? scale : 1.0f));
    ZF_TRY(linear(f, op, ZF_LIN_K, k, false, 1.0f));
    ZF_TRY(linear(f, op, ZF_LIN_V, v, false, 1.0f));
    if (f->opt) {
        scale = 1.0f;
    } else {
        const float *cosv = f->rope, *sinv = f->rope + seq * half;
        rope_kernel<<<grid_for(seq * f->nh * half), ZF_FWD_THREADS, 0, cu->stream>>>(q, seq, f->nh, f->hd, cosv, sinv);
        ZF_TRY(launched(cu, "the rotary kernel"));
        rope_kernel<<<grid_for(seq * f->nkv * half), ZF_FWD_THREADS, 0, cu->stream>>>(k, seq, f->nkv, f->hd, cosv,
                                                                                      sinv);
        ZF_TRY(launched(cu, "the rotary kernel"));
    }
    ZF_TRY(attention(f, q, k, v, att, scale));
    ZF_TRY(capture(f, hess, ZF_GROUP_O, att, f->qdim));
    ZF_TRY(operand(f, att, f->qdim, &op));
    ZF_TRY(linear(f, op, ZF_LIN_O, f->xw, true, 1.0f));

    /* MLP: SwiGLU down(silu(gate)·up) or ReLU fc2(relu(fc1)); the activation overwrites the first buffer. */
    ZF_TRY(norm(f, c, 1));
    ZF_TRY(capture(f, hess, ZF_GROUP_MLP_IN, f->h, f->d));
    ZF_TRY(operand(f, f->h, f->d, &op));
    float *act = f->big;
    int64_t n = seq * f->ff;
    if (f->opt) {
        ZF_TRY(linear(f, op, ZF_LIN_UP, act, false, 1.0f));
        relu_kernel<<<grid_for(n), ZF_FWD_THREADS, 0, cu->stream>>>(act, n);
        ZF_TRY(launched(cu, "the ReLU kernel"));
    } else {
        float *up = f->big + n;
        ZF_TRY(linear(f, op, ZF_LIN_GATE, act, false, 1.0f));
        ZF_TRY(linear(f, op, ZF_LIN_UP, up, false, 1.0f));
        swiglu_kernel<<<grid_for(n), ZF_FWD_THREADS, 0, cu->stream>>>(act, up, n);
        ZF_TRY(launched(cu, "the SwiGLU kernel"));
    }
    ZF_TRY(capture(f, hess, ZF_GROUP_MLP_OUT, act, f->ff));
    ZF_TRY(operand(f, act, f->ff, &op));
    ZF_TRY(linear(f, op, ZF_LIN_DOWN, f->xw, true, 1.0f));
    return ZF_OK;
}

static zf_status all_windows(fwd_dev *f, const zf_model_config *c, float *x, int64_t nwin,
                             zf_bhess *const hess[ZF_NGROUP])
{
    zf_cuda *cu = f->cu;
    size_t bytes = sizeof(float) * (size_t)(f->seq * f->d);
    for (int64_t wi = 0; wi < nwin; wi++) {
        float *xh = x + wi * f->seq * f->d;
        ZF_CUDA_TRY(cu, cudaMemcpyAsync(f->xw, xh, bytes, cudaMemcpyHostToDevice, cu->stream));
        ZF_TRY(window_forward(f, c, hess));
        ZF_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
        ZF_CUDA_TRY(cu, cudaMemcpyAsync(xh, f->xw, bytes, cudaMemcpyDeviceToHost, cu->stream));
        ZF_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
    }
    return ZF_OK;
}

/* Shapes and GEMM types of a forward over windows of seq tokens; nothing allocated yet. */
static void fwd_init(fwd_dev *f, zf_cuda *cu, const zf_model_config *c, int64_t seq)
{
    memset(f, 0, sizeof *f);
    f->cu = cu;
    f->opt = c->family == ZF_FAMILY_OPT;
    f->seq = seq;
    f->d = c->hidden;
    f->hd = c->head_dim;
    f->nh = c->n_heads;
    f->nkv = c->n_kv_heads;
    f->qdim = c->n_heads * c->head_dim;
    f->kvdim = c->n_kv_heads * c->head_dim;
    f->ff = c->intermediate;
    switch (cu->fwd_dtype) {
    case ZF_FWD_BF16: f->wtype = CUDA_R_16BF; f->wsize = 2; break;
    case ZF_FWD_FP16: f->wtype = CUDA_R_16F; f->wsize = 2; break;
    default: f->wtype = CUDA_R_32F; f->wsize = 4; break;
    }
    /* TF32 only where asked for, and only for fp32 operands (half operands always accumulate in plain fp32). */
    f->wcompute = f->wtype == CUDA_R_32F && cu->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    f->acompute = cu->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

/* Frees what a forward call allocated, once nothing queued still uses it. */
static void fwd_release(fwd_dev *f)
{
    zf_cuda *cu = f->cu;
    (void)cudaStreamSynchronize(cu->stream);
    for (int l = 0; l < ZF_NLIN; l++) {
        if (f->W[l]) zf_cuda_free(cu, f->W[l]);
        if (f->B[l]) zf_cuda_free(cu, f->B[l]);
    }
    for (int i = 0; i < 2; i++) {
        if (f->norm_w[i]) zf_cuda_free(cu, f->norm_w[i]);
        if (f->norm_b[i]) zf_cuda_free(cu, f->norm_b[i]);
    }
    void *rest[] = {f->staging, f->xw, f->h, f->big, f->scores, f->rope, f->op};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++)
        if (rest[i]) zf_cuda_free(cu, rest[i]);
    memset(f, 0, sizeof *f);
}

/* nll[p] = -log softmax(logits[p])[target[p]] for each of gridDim.x rows of logits [rows, vocab], as the CPU's
 * zf_row_nll: max of the fp32 logits, then the sum of exp(l - max) and the result in double. */
__global__ void row_nll_kernel(const float *logits, int64_t vocab, const int32_t *target, double *nll)
{
    const float *l = logits + (int64_t)blockIdx.x * vocab;
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) m = fmaxf(m, l[i]);
    double md = (double)block_max(m), sum = 0;
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) sum += exp((double)l[i] - md);
    sum = block_sum(sum);
    if (threadIdx.x == 0) nll[blockIdx.x] = md + log(sum) - (double)l[target[blockIdx.x]];
}

/* Final norm, head and NLL of each window: x [nwin·seq, d] host, targets host, nll [nwin·(seq-1)] host. */
static zf_status windows_nll(fwd_dev *f, const zf_model_config *c, const zf_model_globals *g, const float *x,
                             const int32_t *tokens, int64_t nwin, double *nll)
{
    zf_cuda *cu = f->cu;
    int64_t seq = f->seq, d = f->d, vocab = c->vocab, npred = seq - 1;
    if (f->wtype != CUDA_R_32F) {
        int64_t most = vocab * d < ZF_CUDA_STAGING_FLOATS ? vocab * d : ZF_CUDA_STAGING_FLOATS;
        ZF_TRY(zf_cuda_alloc(cu, sizeof(float) * (size_t)most, "head weight staging", (void **)&f->staging));
    }
    /* the head rides in the first linear slot: nothing else of the block is resident */
    ZF_TRY(upload_weight(f, g->head, vocab * d, "head weights", &f->W[0]));
    if (f->staging) {
        ZF_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
        zf_cuda_free(cu, f->staging);
        f->staging = NULL;
    }
    ZF_TRY(upload_f32(cu, g->final_norm_w, d, "final norm weights", &f->norm_w[0]));
    if (g->final_norm_b) ZF_TRY(upload_f32(cu, g->final_norm_b, d, "final norm biases", &f->norm_b[0]));
    ZF_TRY(zf_cuda_alloc(cu, sizeof(float) * (size_t)(seq * d), "head input", (void **)&f->xw));
    ZF_TRY(zf_cuda_alloc(cu, sizeof(float) * (size_t)(seq * d), "final norm output", (void **)&f->h));
    ZF_TRY(zf_cuda_alloc(cu, sizeof(float) * (size_t)seq * (size_t)vocab, "logits of one window", (void **)&f->big));
    if (f->wtype != CUDA_R_32F)
        ZF_TRY(zf_cuda_alloc(cu, f->wsize * (size_t)(seq * d), "head GEMM operand", &f->op));
    /* targets then NLL share one buffer: npred int32 (padded to 8 bytes) and npred doubles */
    size_t tbytes = (sizeof(int32_t) * (size_t)npred + 7) & ~(size_t)7;
    ZF_TRY(zf_cuda_alloc(cu, tbytes + sizeof(double) * (size_t)npred, "targets and NLL", (void **)&f->scores));
    int32_t *target = (int32_t *)f->scores;
    double *nll_dev = (double *)((char *)f->scores + tbytes);

    for (int64_t wi = 0; wi < nwin; wi++) {
        ZF_CUDA_TRY(cu, cudaMemcpyAsync(f->xw, x + wi * seq * d, sizeof(float) * (size_t)(seq * d),
                                        cudaMemcpyHostToDevice, cu->stream));
        /* position p predicts token p + 1 of the same window */
        ZF_CUDA_TRY(cu, cudaMemcpyAsync(target, tokens + wi * seq + 1, sizeof(int32_t) * (size_t)npred,
                                        cudaMemcpyHostToDevice, cu->stream));
        ZF_TRY(norm(f, c, 0));
        const void *op;
        ZF_TRY(operand(f, f->h, d, &op));
        ZF_TRY(gemm_xwt(f, op, f->W[0], d, vocab, f->big, false));
        row_nll_kernel<<<(unsigned)npred, ZF_FWD_THREADS, 0, cu->stream>>>(f->big, vocab, target, nll_dev);
        ZF_TRY(launched(cu, "the NLL kernel"));
        ZF_CUDA_TRY(cu, cudaMemcpyAsync(nll + wi * npred, nll_dev, sizeof(double) * (size_t)npred,
                                        cudaMemcpyDeviceToHost, cu->stream));
        /* the next window's copies overwrite x and the targets: the pageable sources must have been read */
        ZF_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
    }
    return ZF_OK;
}

} /* namespace */

extern "C" zf_status zf_cuda_token_nll(zf_cuda *cu, const zf_model_config *c, const zf_model_globals *g, const float *x,
                                       const int32_t *tokens, int64_t nwin, int64_t seq, double *nll)
{
    ZF_ASSERT(cu && c && g && g->head && g->final_norm_w && x && tokens && nll && nwin >= 0 && seq >= 2);
    if (nwin == 0) return ZF_OK;
    if (seq > INT_MAX || c->hidden > INT_MAX || c->vocab > INT_MAX || seq * c->vocab > INT64_MAX / 4)
        return zf_fail(ZF_ERR_INPUT, "CUDA head: windows of %lld tokens and a vocabulary of %lld are more than "
                       "cuBLAS can index", (long long)seq, (long long)c->vocab);
    /* a token outside the vocabulary would read past a logits row on the device, where nothing would notice */
    for (int64_t i = 0; i < nwin * seq; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab)
            return zf_fail(ZF_ERR_INPUT, "CUDA head: token %lld is %d, outside the vocabulary [0, %lld)",
                           (long long)i, (int)tokens[i], (long long)c->vocab);
    fwd_dev f;
    fwd_init(&f, cu, c, seq);
    zf_status st;
    cublasStatus_t bs = cublasSetStream(cu->blas, cu->stream);
    if (bs != CUBLAS_STATUS_SUCCESS)
        st = zf_fail(ZF_ERR_INTERNAL, "cuda:%d: cublasSetStream failed: %s", cu->device, cublasGetStatusString(bs));
    else
        st = windows_nll(&f, c, g, x, tokens, nwin, nll);
    fwd_release(&f);
    return st;
}

extern "C" zf_status zf_cuda_block_forward(zf_cuda *cu, const zf_model_config *c, const zf_block_weights *w, float *x,
                                           int64_t nwin, int64_t seq, zf_bhess *const hess[ZF_NGROUP])
{
    ZF_ASSERT(cu && c && w && x && nwin >= 0 && seq >= 0);
    ZF_TRY(zf_forward_check_config(c));
    if (nwin * seq == 0) return ZF_OK;
    ZF_TRY(check_int_sizes(c, seq));
    bool opt = c->family == ZF_FAMILY_OPT;
    ZF_ASSERT(w->lin_w[ZF_LIN_Q] && w->lin_w[ZF_LIN_K] && w->lin_w[ZF_LIN_V] && w->lin_w[ZF_LIN_O]);
    ZF_ASSERT(w->lin_w[ZF_LIN_UP] && w->lin_w[ZF_LIN_DOWN] && (opt || w->lin_w[ZF_LIN_GATE]));
    ZF_ASSERT(w->norm_w[0] && w->norm_w[1]);

    fwd_dev f;
    fwd_init(&f, cu, c, seq);
    zf_status st = ZF_OK;
    float *rope_host = NULL;
    if (!opt) {
        int64_t half = f.hd / 2;
        rope_host = (float *)zf_malloc(sizeof(float) * (size_t)(2 * seq * half), "rotary table");
        if (!rope_host) return ZF_ERR_NOMEM;
        zf_rope_table(c, seq, rope_host, rope_host + seq * half); /* the CPU forward's angles, bit for bit */
    }

    cublasStatus_t bs = cublasSetStream(cu->blas, cu->stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        st = zf_fail(ZF_ERR_INTERNAL, "cuda:%d: cublasSetStream failed: %s", cu->device, cublasGetStatusString(bs));
        goto cleanup;
    }
    if ((st = setup(&f, w, rope_host)) != ZF_OK) goto cleanup;
    st = all_windows(&f, c, x, nwin, hess);

cleanup:
    /* Nothing queued may still read or write the buffers (nor rope_host, a pageable copy source) when they go. */
    fwd_release(&f);
    free(rope_host);
    return st;
}
