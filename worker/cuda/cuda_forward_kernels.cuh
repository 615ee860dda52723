/* The CUDA forward's kernels: block reductions, norms, rotary, attention softmax, activations and conversions. */
/* Included once, inside cuda_forward.cu's anonymous namespace (kernels keep internal linkage). */
#ifndef ZF_CUDA_FORWARD_KERNELS_CUH
#define ZF_CUDA_FORWARD_KERNELS_CUH

/* ---------------------------------------------------------------------------------------------------------------- */
/* Reductions over a thread block (blockDim.x a multiple of 32); every thread gets the result. */

template <typename T> __device__ T warp_sum(T v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

template <typename T> __device__ T block_sum(T v)
{
    __shared__ T part[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* a previous reduction may still be reading part */
    if (lane == 0) part[wid] = v;
    __syncthreads();
    return warp_sum(lane < nw ? part[lane] : T(0));
}

__device__ float block_max(float v)
{
    __shared__ float part[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) part[wid] = v;
    __syncthreads();
    return warp_max(lane < nw ? part[lane] : -INFINITY);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Kernels. Token-wise ones take one block per token; elementwise ones use grid-stride loops. */

/* RMSNorm as the CPU does it: sum of squares in double, x·rsqrt(mean + eps) in fp32, then γ·. */
__global__ void rms_norm_kernel(const float *x, const float *g, float eps, int64_t d, float *y)
{
    const float *xr = x + (int64_t)blockIdx.x * d;
    float *yr = y + (int64_t)blockIdx.x * d;
    double ss = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += (double)xr[i] * xr[i];
    ss = block_sum(ss);
    float inv = 1.0f / sqrtf((float)(ss / (double)d) + eps);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yr[i] = g[i] * (xr[i] * inv);
}

/* LayerNorm with optional β: mean and biased variance in double (two passes), then fp32 as the CPU. */
__global__ void layer_norm_kernel(const float *x, const float *g, const float *b, float eps, int64_t d, float *y)
{
    const float *xr = x + (int64_t)blockIdx.x * d;
    float *yr = y + (int64_t)blockIdx.x * d;
    double s = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s += xr[i];
    double mean = block_sum(s) / (double)d;
    double v = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) v += ((double)xr[i] - mean) * ((double)xr[i] - mean);
    double var = block_sum(v);
    float rstd = (float)(1.0 / sqrt(var / (double)d + (double)eps)), m = (float)mean;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yr[i] = (xr[i] - m) * rstd * g[i] + (b ? b[i] : 0.0f);
}

/* Half-split rotary on every head of x [seq, nheads·hd]: (v_i, v_{i+hd/2}) rotated by the angle of (t, i). */
__global__ void rope_kernel(float *x, int64_t seq, int64_t nheads, int64_t hd, const float *cosv, const float *sinv)
{
    int64_t half = hd / 2, n = seq * nheads * half;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = idx % half, th = idx / half, t = th / nheads;
        float *v = x + th * hd;
        float c = cosv[t * half + i], s = sinv[t * half + i];
        float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c - x2 * s;
        v[i + half] = x2 * c + x1 * s;
    }
}

/* y [ntok, out] = (y + b) · scale, b optional; scale ≠ 1 only for OPT's query scaling (after the bias, as HF). */
__global__ void bias_scale_kernel(float *y, const float *b, int64_t ntok, int64_t out, float scale)
{
    int64_t n = ntok * out;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = y[i];
        if (b) v += b[i % out];
        y[i] = scale == 1.0f ? v : v * scale;
    }
}

/* Causal softmax of the score rows s [seq queries, seq keys] in place; keys after the query get probability 0. */
__global__ void causal_softmax_kernel(float *s, int64_t seq)
{
    int64_t t = blockIdx.x, n = t + 1;
    float *row = s + t * seq;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, row[j]);
    m = block_max(m);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        float e = expf(row[j] - m);
        row[j] = e;
        sum += e;
    }
    sum = block_sum(sum);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) row[j] = row[j] / sum;
    for (int64_t j = n + threadIdx.x; j < seq; j += blockDim.x) row[j] = 0.0f;
}

/* SwiGLU in place on the gate: silu(gate)·up. */
__global__ void swiglu_kernel(float *gate, const float *up, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float a = gate[i];
        gate[i] = a / (1.0f + expf(-a)) * up[i];
    }
}

__global__ void relu_kernel(float *x, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* fp32 → bf16/fp16, round to nearest even. */
__device__ inline void store_half(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }
__device__ inline void store_half(__half *p, float v) { *p = __float2half_rn(v); }

template <typename T> __global__ void to_half_kernel(const float *src, T *dst, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        store_half(dst + i, src[i]);
}

#endif
