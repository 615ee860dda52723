/* The CUDA device context: device selection, stream, cuBLAS and cuSOLVER handles, and checked device memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/cuda/cuda_internal.h"

static const double GIB = 1024.0 * 1024.0 * 1024.0;

int zf_cuda_device_count(const char **why)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (why) *why = e != cudaSuccess ? cudaGetErrorString(e) : count > 0 ? NULL : "0 devices";
    if (e != cudaSuccess) {
        cudaGetLastError(); /* no driver or no device is an answer (0), not a sticky error for later calls */
        return 0;
    }
    return count > 0 ? count : 0;
}

/* Everything zf_cuda_open creates, in order; on failure the caller closes what was made so far. */
static zf_status open_steps(zf_cuda *cu, bool tf32)
{
    ZF_CUDA_TRY(cu, cudaSetDevice(cu->device));
    cudaDeviceProp prop;
    ZF_CUDA_TRY(cu, cudaGetDeviceProperties(&prop, cu->device));
    cu->sm = prop.major * 10 + prop.minor;
    snprintf(cu->name, sizeof cu->name, "cuda:%d %.100s (sm_%d%d)", cu->device, prop.name, prop.major, prop.minor);

    /* non-blocking: our work must not serialize with the legacy default stream other libraries may use */
    ZF_CUDA_TRY(cu, cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking));

    ZF_CUBLAS_TRY(cu, cublasCreate(&cu->blas));
    ZF_CUBLAS_TRY(cu, cublasSetStream(cu->blas, cu->stream));
    ZF_CUBLAS_TRY(cu, cublasSetMathMode(cu->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));

    ZF_CUSOLVER_TRY(cu, cusolverDnCreate(&cu->solver));
    ZF_CUSOLVER_TRY(cu, cusolverDnSetStream(cu->solver, cu->stream));
    return ZF_OK;
}

zf_status zf_cuda_open(int device, bool tf32, zf_forward_dtype fwd_dtype, zf_cuda **out)
{
    *out = NULL;
    const char *why = NULL;
    int count = zf_cuda_device_count(&why);
    if (count == 0)
        return zf_fail(ZF_ERR_INPUT, "cuda:%d: no CUDA device is visible (%s; check the driver and "
                       "CUDA_VISIBLE_DEVICES)", device, why);
    if (device < 0 || device >= count)
        return zf_fail(ZF_ERR_INPUT, "cuda:%d: no such device (%d device%s seen, ordinals 0 .. %d)", device, count,
                       count == 1 ? "" : "s", count - 1);

    zf_cuda *cu = (zf_cuda *)zf_calloc(1, sizeof *cu, "CUDA context");
    if (!cu) return ZF_ERR_NOMEM;
    cu->device = device;
    cu->tf32 = tf32;
    cu->fwd_dtype = fwd_dtype;
    /* A debugging aid: a kernel or library call that reads memory before anything wrote it then shows in the
     * results as NaN instead of as a plausible stale value. */
    const char *poison = getenv("ZF_CUDA_POISON");
    cu->poison = poison && *poison && strcmp(poison, "0") != 0;
    zf_status s = open_steps(cu, tf32);
    if (s != ZF_OK) {
        zf_cuda_close(cu);
        return s;
    }
    *out = cu;
    return ZF_OK;
}

void zf_cuda_close(zf_cuda *cu)
{
    if (!cu) return;
    /* Teardown cannot report; errors here (e.g. after a device fault) are dropped so they do not stick. */
    if (cudaSetDevice(cu->device) == cudaSuccess && cu->stream) cudaStreamSynchronize(cu->stream);
    if (cu->scratch) cudaFree(cu->scratch);
    if (cu->solver) cusolverDnDestroy(cu->solver);
    if (cu->blas) cublasDestroy(cu->blas);
    if (cu->stream) cudaStreamDestroy(cu->stream);
    cudaGetLastError();
    free(cu);
}

void zf_cuda_info(const zf_cuda *cu, zf_backend_info *info)
{
    memset(info, 0, sizeof *info);
    info->kind = ZF_BACKEND_CUDA;
    info->device = cu->device;
    snprintf(info->name, sizeof info->name, "%s", cu->name);
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
        info->mem_free = (int64_t)free_bytes;
        info->mem_total = (int64_t)total_bytes;
    } else {
        cudaGetLastError(); /* info is best effort: zeros say "unknown" */
    }
}

/* Exact bytes as well as GiB: a small request that fails shows as 0.00 GiB. */
static zf_status not_enough_memory(const zf_cuda *cu, const char *what, uint64_t bytes, size_t free_bytes,
                                   size_t total_bytes, const char *why)
{
    return zf_fail(ZF_ERR_NOMEM, "cuda:%d: %s needs %llu bytes (%.2f GiB), %zu bytes (%.2f GiB) free of %.2f GiB%s",
                   cu->device, what, (unsigned long long)bytes, (double)bytes / GIB, free_bytes,
                   (double)free_bytes / GIB, (double)total_bytes / GIB, why);
}

zf_status zf_cuda_alloc(zf_cuda *cu, size_t bytes, const char *what, void **dev)
{
    *dev = NULL;
    size_t free_bytes = 0, total_bytes = 0;
    ZF_CUDA_TRY(cu, cudaMemGetInfo(&free_bytes, &total_bytes));
    if (bytes > free_bytes) return not_enough_memory(cu, what, bytes, free_bytes, total_bytes, "");
    /* one byte for an empty request so that callers always get a pointer they can free */
    cudaError_t e = cudaMalloc(dev, bytes > 0 ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        *dev = NULL;
        return not_enough_memory(cu, what, bytes, free_bytes, total_bytes, " but not in one piece");
    }
    if (e != cudaSuccess) {
        *dev = NULL;
        return zf_fail(ZF_ERR_INTERNAL, "cuda:%d: cudaMalloc of %zu bytes for %s failed: %s", cu->device, bytes,
                       what, cudaGetErrorString(e));
    }
    if (cu->poison && (e = cudaMemsetAsync(*dev, 0xFF, bytes, cu->stream)) != cudaSuccess) {
        cudaFree(*dev);
        *dev = NULL;
        return zf_fail(ZF_ERR_INTERNAL, "cuda:%d: filling %s with NaN failed: %s", cu->device, what,
                       cudaGetErrorString(e));
    }
    if (cu->nheld == ZF_CUDA_TRACKED) {
        cu->nuntracked++;
        cu->lost = true;
    } else {
        cu->held[cu->nheld].p = *dev;
        cu->held[cu->nheld++].n = bytes;
        cu->live_bytes += (int64_t)bytes;
        if (cu->live_bytes > cu->peak_bytes) cu->peak_bytes = cu->live_bytes;
    }
    return ZF_OK;
}

void zf_cuda_free(zf_cuda *cu, void *dev)
{
    if (!dev) return;
    if (cudaFree(dev) != cudaSuccess) cudaGetLastError(); /* freeing cannot report; keep the error from sticking */
    for (int i = cu->nheld - 1; i >= 0; i--)
        if (cu->held[i].p == dev) {
            cu->live_bytes -= (int64_t)cu->held[i].n;
            cu->held[i] = cu->held[--cu->nheld];
            return;
        }
    if (cu->nuntracked > 0) cu->nuntracked--;
}

int64_t zf_cuda_peak_bytes(zf_cuda *cu, bool reset)
{
    int64_t peak = cu->lost ? -1 : cu->peak_bytes - cu->base_bytes;
    if (reset) {
        cu->peak_bytes = cu->base_bytes = cu->live_bytes;
        cu->lost = cu->nuntracked > 0;
    }
    return peak;
}

zf_status zf_cuda_check_fits(zf_cuda *cu, int64_t bytes, const char *what)
{
    if (bytes <= 0) return ZF_OK;
    size_t free_bytes = 0, total_bytes = 0;
    ZF_CUDA_TRY(cu, cudaMemGetInfo(&free_bytes, &total_bytes));
    if ((uint64_t)bytes > (uint64_t)free_bytes)
        return not_enough_memory(cu, what, (uint64_t)bytes, free_bytes, total_bytes, "");
    return ZF_OK;
}

zf_status zf_cuda_scratch(zf_cuda *cu, size_t bytes, const char *what, void **dev)
{
    if (cu->scratch_bytes < bytes) {
        if (cu->scratch) zf_cuda_free(cu, cu->scratch); /* waits for queued work that may still use it */
        cu->scratch = NULL;
        cu->scratch_bytes = 0;
        ZF_TRY(zf_cuda_alloc(cu, bytes, what, &cu->scratch));
        cu->scratch_bytes = bytes;
    } else if (cu->poison) {
        ZF_CUDA_TRY(cu, cudaMemsetAsync(cu->scratch, 0xFF, cu->scratch_bytes, cu->stream));
    }
    *dev = cu->scratch;
    return ZF_OK;
}
