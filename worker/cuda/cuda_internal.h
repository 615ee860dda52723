/* Shared by the .cu files: the device context and the checks that turn CUDA, cuBLAS and cuSOLVER errors into zf_status. */
#ifndef ZF_CUDA_INTERNAL_H
#define ZF_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include "worker/cuda/cuda_backend.h"

/* Live device allocations a context keeps account of (more make its byte counts unknown). */
#define ZF_CUDA_TRACKED 1024

struct zf_cuda {
    int device;
    char name[160];
    int sm;                       /* compute capability, e.g. 90 */
    bool tf32;
    zf_forward_dtype fwd_dtype;
    bool poison;                  /* ZF_CUDA_POISON=1: NaN bytes in every allocation and scratch hand-out */
    cudaStream_t stream;
    cublasHandle_t blas;
    cusolverDnHandle_t solver;
    void *scratch;                /* zf_cuda_scratch's buffer, grown on demand, freed by zf_cuda_close */
    size_t scratch_bytes;
    /* what zf_cuda_alloc handed out and zf_cuda_free has not taken back: the memory estimates are checked on it */
    struct {
        void *p;
        size_t n;
    } held[ZF_CUDA_TRACKED];
    int nheld;
    int nuntracked;               /* live allocations that did not fit in held[]: their bytes are not counted */
    bool lost;                    /* one was live since the last reset: the peak is not known */
    int64_t live_bytes, peak_bytes, base_bytes;
};

/* A device scratch buffer of at least `bytes`, kept for later calls (a cudaMalloc and cudaFree per call would
 * synchronize the device every time). Valid until the next call; one user at a time. */
zf_status zf_cuda_scratch(zf_cuda *cu, size_t bytes, const char *what, void **dev);

/* Each returns from the enclosing function (which returns zf_status) with ZF_ERR_INTERNAL naming the call,
 * the device and the library's message; out-of-memory becomes ZF_ERR_NOMEM. */
#define ZF_CUDA_TRY(cu, call)                                                                                     \
    do {                                                                                                          \
        cudaError_t e_ = (call);                                                                                  \
        if (e_ != cudaSuccess)                                                                                    \
            return zf_fail(e_ == cudaErrorMemoryAllocation ? ZF_ERR_NOMEM : ZF_ERR_INTERNAL,                     \
                           "cuda:%d: %s failed: %s (%s:%d)", (cu)->device, #call, cudaGetErrorString(e_),        \
                           __FILE__, __LINE__);                                                                   \
    } while (0)

#define ZF_CUBLAS_TRY(cu, call)                                                                                   \
    do {                                                                                                          \
        cublasStatus_t e_ = (call);                                                                               \
        if (e_ != CUBLAS_STATUS_SUCCESS)                                                                          \
            return zf_fail(e_ == CUBLAS_STATUS_ALLOC_FAILED ? ZF_ERR_NOMEM : ZF_ERR_INTERNAL,                    \
                           "cuda:%d: %s failed: %s (%s:%d)", (cu)->device, #call, cublasGetStatusString(e_),     \
                           __FILE__, __LINE__);                                                                   \
    } while (0)

#define ZF_CUSOLVER_TRY(cu, call)                                                                                 \
    do {                                                                                                          \
        cusolverStatus_t e_ = (call);                                                                             \
        if (e_ != CUSOLVER_STATUS_SUCCESS)                                                                        \
            return zf_fail(e_ == CUSOLVER_STATUS_ALLOC_FAILED ? ZF_ERR_NOMEM : ZF_ERR_INTERNAL,                   \
                           "cuda:%d: %s failed: cusolver status %d (%s:%d)", (cu)->device, #call, (int)e_,        \
                           __FILE__, __LINE__);                                                                   \
    } while (0)

/* Launch configuration helper: blocks of `threads` covering n items. */
static inline unsigned zf_cuda_blocks(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

#endif
