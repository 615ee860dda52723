/* Hessian accumulators in device memory: zeroing, the finite check and SYRK of each capture, and the symmetric fp32 finalize.
 *
 * Layout: sum is [dim, dim] and only its column-major UPPER triangle is valid after zf_cuda_hess_add, i.e. entry
 * (r, c) with r <= c at sum[c * dim + r]. Read row-major, that is the lower triangle (i >= j at sum[i * dim + j]),
 * the same memory the CPU accumulator in worker/hessian.c fills, so sums from either backend add element-wise. */
#include <limits.h>
#include <stdint.h>

#include "worker/cuda/cuda_internal.h"

/* Tokens per SYRK: keeps k within cuBLAS's int and each call short enough to check for errors in between. */
#define ZF_HESS_F32_CHUNK ((int64_t)1 << 20)
/* fp64: tokens converted to double per DSYRK, from a scratch of about ZF_CUDA_HESS_F64_SCRATCH_BYTES (backend.h)
 * holding at least this many tokens. */
#define ZF_HESS_F64_MIN_CHUNK 256
/* Scratch layout: the finite-check result first, then the fp64 tokens (kept 256-byte aligned). */
#define ZF_HESS_FLAG_BYTES 256
#define ZF_HESS_TILE 32
#define ZF_HESS_TILE_ROWS 8

static zf_status check_dim(const zf_cuda *cu, const char *where, int64_t dim)
{
    if (dim <= 0 || dim > INT_MAX)
        return zf_fail(ZF_ERR_INPUT, "cuda:%d: %s: Hessian dimension %lld: expected 1 .. %d", cu->device, where,
                       (long long)dim, INT_MAX);
    return ZF_OK;
}

zf_status zf_cuda_hess_zero(zf_cuda *cu, void *sum, int64_t dim, bool fp64)
{
    ZF_TRY(check_dim(cu, "Hessian zero", dim));
    size_t bytes = (size_t)dim * (size_t)dim * (fp64 ? sizeof(double) : sizeof(float));
    ZF_CUDA_TRY(cu, cudaMemsetAsync(sum, 0, bytes, cu->stream));
    /* a rank without tokens passes the sum straight to the NCCL reduce, which runs on another stream */
    ZF_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
    return ZF_OK;
}

/* Lowest linear index of a non-finite element of x[n], into *first_bad (left at ULLONG_MAX when all are finite). */
__global__ void find_first_nonfinite(const float *__restrict__ x, int64_t n, unsigned long long *first_bad)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        if (!isfinite(x[i])) {
            atomicMin(first_bad, (unsigned long long)i);
            return; /* later indices of this thread are larger */
        }
    }
}

__global__ void widen_to_double(const float *__restrict__ x, int64_t n, double *__restrict__ out)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = (double)x[i];
}

/* Grid-stride launches: enough blocks to fill the device, not one per element. */
static unsigned stride_blocks(int64_t n, int threads)
{
    unsigned b = zf_cuda_blocks(n, threads);
    return b < 8192u ? (b > 0 ? b : 1u) : 8192u;
}

/* Fails with ZF_ERR_INPUT naming the first non-finite element of x [ntok, dim]; waits for the stream. */
static zf_status check_finite(zf_cuda *cu, const float *x, int64_t ntok, int64_t dim, unsigned long long *flag_dev)
{
    const int threads = 256;
    int64_t n = ntok * dim;
    ZF_CUDA_TRY(cu, cudaMemsetAsync(flag_dev, 0xff, sizeof *flag_dev, cu->stream));
    find_first_nonfinite<<<stride_blocks(n, threads), threads, 0, cu->stream>>>(x, n, flag_dev);
    ZF_CUDA_TRY(cu, cudaGetLastError());
    unsigned long long first_bad = 0;
    ZF_CUDA_TRY(cu, cudaMemcpyAsync(&first_bad, flag_dev, sizeof first_bad, cudaMemcpyDeviceToHost, cu->stream));
    ZF_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
    if (first_bad == ULLONG_MAX) return ZF_OK;
    float v = 0.0f;
    ZF_CUDA_TRY(cu, cudaMemcpyAsync(&v, x + first_bad, sizeof v, cudaMemcpyDeviceToHost, cu->stream));
    ZF_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
    /* One non-finite activation would poison every entry of H; name it while we still know where it is. */
    return zf_fail(ZF_ERR_INPUT, "Hessian add: input x[%lld, %lld] = %g is not finite",
                   (long long)(first_bad / (unsigned long long)dim), (long long)(first_bad % (unsigned long long)dim),
                   (double)v);
}

static zf_status syrk_f32(zf_cuda *cu, float *sum, int64_t dim, const float *x, int64_t ntok)
{
    const float one = 1.0f;
    for (int64_t t0 = 0; t0 < ntok; t0 += ZF_HESS_F32_CHUNK) {
        int64_t nt = ntok - t0 < ZF_HESS_F32_CHUNK ? ntok - t0 : ZF_HESS_F32_CHUNK;
        /* x rows are tokens: column-major that is [dim, nt] with ld = dim, so sum += x_cm · x_cmᵀ */
        ZF_CUBLAS_TRY(cu, cublasSsyrk(cu->blas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, (int)dim, (int)nt, &one,
                                      x + t0 * dim, (int)dim, &one, sum, (int)dim));
    }
    return ZF_OK;
}

static zf_status syrk_f64(zf_cuda *cu, double *sum, int64_t dim, const float *x, int64_t ntok, double *xd,
                          int64_t chunk)
{
    const double one = 1.0;
    const int threads = 256;
    for (int64_t t0 = 0; t0 < ntok; t0 += chunk) {
        int64_t nt = ntok - t0 < chunk ? ntok - t0 : chunk;
        /* products of fp32 inputs are exact in double, as on the CPU; stream order protects xd between chunks */
        widen_to_double<<<stride_blocks(nt * dim, threads), threads, 0, cu->stream>>>(x + t0 * dim, nt * dim, xd);
        ZF_CUDA_TRY(cu, cudaGetLastError());
        ZF_CUBLAS_TRY(cu, cublasDsyrk(cu->blas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, (int)dim, (int)nt, &one, xd,
                                      (int)dim, &one, sum, (int)dim));
    }
    return ZF_OK;
}

/* The add itself, given the scratch; cuBLAS settings it changes are put back by the caller. */
static zf_status hess_add_with(zf_cuda *cu, void *sum, int64_t dim, bool fp64, const float *x_dev, int64_t ntok,
                               char *scratch, int64_t chunk)
{
    ZF_TRY(check_finite(cu, x_dev, ntok, dim, (unsigned long long *)scratch));
    if (fp64) return syrk_f64(cu, (double *)sum, dim, x_dev, ntok, (double *)(scratch + ZF_HESS_FLAG_BYTES), chunk);
    return syrk_f32(cu, (float *)sum, dim, x_dev, ntok);
}

zf_status zf_cuda_hess_add(zf_cuda *cu, void *sum, int64_t dim, bool fp64, const float *x_dev, int64_t ntok)
{
    ZF_TRY(check_dim(cu, "Hessian add", dim));
    if (ntok < 0) return zf_fail(ZF_ERR_INPUT, "Hessian add: token count %lld is negative", (long long)ntok);
    if (ntok == 0) return ZF_OK;

    int64_t chunk = 0, bytes = ZF_HESS_FLAG_BYTES;
    if (fp64) {
        chunk = ZF_CUDA_HESS_F64_SCRATCH_BYTES / ((int64_t)sizeof(double) * dim);
        if (chunk < ZF_HESS_F64_MIN_CHUNK) chunk = ZF_HESS_F64_MIN_CHUNK;
        if (chunk > ntok) chunk = ntok;
        bytes += chunk * dim * (int64_t)sizeof(double);
    }
    void *scratch = NULL;
    ZF_TRY(zf_cuda_scratch(cu, (size_t)bytes, fp64 ? "Hessian fp64 conversion buffer" : "Hessian finite check",
                           &scratch));

    /* The Hessian feeds a Cholesky: its products stay full fp32 even when the forward may use TF32, and alpha and
     * beta are host values whatever another caller left set. */
    cublasMath_t math = CUBLAS_DEFAULT_MATH;
    cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
    zf_status s = ZF_OK;
    cublasStatus_t b = cublasGetMathMode(cu->blas, &math);
    if (b == CUBLAS_STATUS_SUCCESS) b = cublasGetPointerMode(cu->blas, &pointer_mode);
    if (b == CUBLAS_STATUS_SUCCESS) b = cublasSetMathMode(cu->blas, CUBLAS_DEFAULT_MATH);
    if (b == CUBLAS_STATUS_SUCCESS) b = cublasSetPointerMode(cu->blas, CUBLAS_POINTER_MODE_HOST);
    if (b != CUBLAS_STATUS_SUCCESS)
        s = zf_fail(ZF_ERR_INTERNAL, "cuda:%d: Hessian add: setting cuBLAS math and pointer mode failed: %s",
                    cu->device, cublasGetStatusString(b));
    if (s == ZF_OK) s = hess_add_with(cu, sum, dim, fp64, x_dev, ntok, (char *)scratch, chunk);

    cublasStatus_t restore_math = cublasSetMathMode(cu->blas, math);
    cublasStatus_t restore_pointer = cublasSetPointerMode(cu->blas, pointer_mode);
    if (s == ZF_OK && (restore_math != CUBLAS_STATUS_SUCCESS || restore_pointer != CUBLAS_STATUS_SUCCESS))
        s = zf_fail(ZF_ERR_INTERNAL, "cuda:%d: Hessian add: restoring cuBLAS math and pointer mode failed: %s",
                    cu->device,
                    cublasGetStatusString(restore_math != CUBLAS_STATUS_SUCCESS ? restore_math : restore_pointer));
    /* wait here so that a failed SYRK is reported as this add's error, and the scratch is free for the next user */
    if (s == ZF_OK) {
        cudaError_t e = cudaStreamSynchronize(cu->stream);
        if (e != cudaSuccess)
            s = zf_fail(ZF_ERR_INTERNAL, "cuda:%d: Hessian add: SYRK of %lld tokens failed: %s", cu->device,
                        (long long)ntok, cudaGetErrorString(e));
    }
    return s;
}

/* H[i, j] = scale · S(min(i, j), max(i, j)) for the full [dim, dim] row-major H, where S(r, c) with r <= c is the
 * valid upper triangle at sum[c * dim + r]. One block per 32×32 tile of H; tiles above the diagonal read their
 * mirror tile through shared memory so that both reads and writes stay coalesced. */
template <typename T>
__global__ void symmetric_scaled(const T *__restrict__ sum, int64_t dim, double scale, float *__restrict__ H)
{
    __shared__ T tile[ZF_HESS_TILE][ZF_HESS_TILE + 1];
    const int64_t row0 = (int64_t)blockIdx.y * ZF_HESS_TILE, col0 = (int64_t)blockIdx.x * ZF_HESS_TILE;
    const int tx = threadIdx.x;
    if (blockIdx.y >= blockIdx.x) {
        /* on or below the diagonal: H[i, j] = sum[i * dim + j] for i >= j (the diagonal tile mirrors in place) */
        for (int ty = threadIdx.y; ty < ZF_HESS_TILE; ty += ZF_HESS_TILE_ROWS) {
            int64_t i = row0 + ty, j = col0 + tx;
            if (i >= dim || j >= dim) continue;
            T v = i >= j ? sum[i * dim + j] : sum[j * dim + i];
            H[i * dim + j] = (float)(scale * (double)v);
        }
        return;
    }
    /* strictly above: H[i, j] = sum[j * dim + i]; load rows j of the mirror tile, write transposed */
    for (int ty = threadIdx.y; ty < ZF_HESS_TILE; ty += ZF_HESS_TILE_ROWS) {
        int64_t j = col0 + ty, i = row0 + tx;
        tile[ty][tx] = (i < dim && j < dim) ? sum[j * dim + i] : (T)0;
    }
    __syncthreads();
    for (int ty = threadIdx.y; ty < ZF_HESS_TILE; ty += ZF_HESS_TILE_ROWS) {
        int64_t i = row0 + ty, j = col0 + tx;
        if (i < dim && j < dim) H[i * dim + j] = (float)(scale * (double)tile[tx][ty]);
    }
}

static zf_status finalize_into(zf_cuda *cu, const void *sum, int64_t dim, bool fp64, double scale, float *H_dev,
                               float *H)
{
    unsigned tiles = zf_cuda_blocks(dim, ZF_HESS_TILE);
    if (tiles > 65535u)
        return zf_fail(ZF_ERR_INPUT, "cuda:%d: Hessian finalize: dimension %lld exceeds the %u tiles a grid holds",
                       cu->device, (long long)dim, 65535u);
    dim3 grid(tiles, tiles), block(ZF_HESS_TILE, ZF_HESS_TILE_ROWS);
    if (fp64) symmetric_scaled<double><<<grid, block, 0, cu->stream>>>((const double *)sum, dim, scale, H_dev);
    else symmetric_scaled<float><<<grid, block, 0, cu->stream>>>((const float *)sum, dim, scale, H_dev);
    ZF_CUDA_TRY(cu, cudaGetLastError());
    size_t bytes = (size_t)dim * (size_t)dim * sizeof(float);
    ZF_CUDA_TRY(cu, cudaMemcpyAsync(H, H_dev, bytes, cudaMemcpyDeviceToHost, cu->stream));
    ZF_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
    return ZF_OK;
}

zf_status zf_cuda_hess_finalize(zf_cuda *cu, const void *sum, int64_t dim, bool fp64, int64_t ntok, float *H)
{
    ZF_TRY(check_dim(cu, "Hessian finalize", dim));
    if (ntok < 0) return zf_fail(ZF_ERR_INPUT, "Hessian finalize: token count %lld is negative", (long long)ntok);
    const double scale = ntok > 0 ? 2.0 / (double)ntok : 0.0;
    void *H_dev = NULL;
    ZF_TRY(zf_cuda_alloc(cu, (size_t)dim * (size_t)dim * sizeof(float), "finalized Hessian", &H_dev));
    zf_status s = finalize_into(cu, sum, dim, fp64, scale, (float *)H_dev, H);
    zf_cuda_free(cu, H_dev);
    return s;
}
