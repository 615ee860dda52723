/* The CUDA side of the backend (C linkage, implemented by the .cu files beside it): its table, device context, Hessians, forward. */
#ifndef ZF_CUDA_BACKEND_H
#define ZF_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "worker/backend.h"

typedef struct zf_cuda zf_cuda;
struct zf_backend_i;

/* The CUDA backend's table and a context on device o->device: the one registration point (worker/backend.c). */
zf_status zf_cuda_backend_open(const zf_backend_opts *o, const struct zf_backend_i **i, void **ctx);

/* Number of visible devices; 0 when the driver or a device is missing (never an error), with *why (if why is not
 * NULL) saying which: the CUDA runtime's message, e.g. a driver older than the runtime. */
int zf_cuda_device_count(const char **why);
/* Makes `device` current, creates its stream, cuBLAS and cuSOLVER handles. Errors name the device and the call. */
zf_status zf_cuda_open(int device, bool tf32, zf_forward_dtype fwd_dtype, zf_cuda **out);
void zf_cuda_close(zf_cuda *cu);
void zf_cuda_info(const zf_cuda *cu, zf_backend_info *info);

/* Device memory with a clear ZF_ERR_NOMEM ("<what>: needs N bytes, M free on cuda:K") instead of a crash. */
zf_status zf_cuda_alloc(zf_cuda *cu, size_t bytes, const char *what, void **dev);
void zf_cuda_free(zf_cuda *cu, void *dev);
/* See zf_backend_peak_bytes. */
int64_t zf_cuda_peak_bytes(zf_cuda *cu, bool reset);
/* Fails with ZF_ERR_NOMEM naming `what` when `bytes` exceed the free device memory. */
zf_status zf_cuda_check_fits(zf_cuda *cu, int64_t bytes, const char *what);

/* Hessian accumulators in device memory: sum [dim, dim] fp32 or fp64. */
zf_status zf_cuda_hess_zero(zf_cuda *cu, void *sum, int64_t dim, bool fp64);
/* sum += xᵀx for x [ntok, dim] row-major in device memory (SYRK, fp32 products accumulated at the sum's precision). */
zf_status zf_cuda_hess_add(zf_cuda *cu, void *sum, int64_t dim, bool fp64, const float *x_dev, int64_t ntok);
/* H (host, full symmetric fp32) = 2/ntok · sum; zeros when ntok = 0. */
zf_status zf_cuda_hess_finalize(zf_cuda *cu, const void *sum, int64_t dim, bool fp64, int64_t ntok, float *H);

/* zf_backend_block_forward on the device: weights uploaded once per call (streamed per block), windows one at a
 * time, captures accumulated into the hess[g] device sums. */
zf_status zf_cuda_block_forward(zf_cuda *cu, const zf_model_config *c, const zf_block_weights *w, float *x,
                                int64_t nwin, int64_t seq, zf_bhess *const hess[ZF_NGROUP]);

/* zf_token_nll on the device: final norm and head one window at a time (its [seq, vocab] logits resident),
 * log-softmax in double. */
zf_status zf_cuda_token_nll(zf_cuda *cu, const zf_model_config *c, const zf_model_globals *g, const float *x,
                            const int32_t *tokens, int64_t nwin, int64_t seq, double *nll);

#ifdef __cplusplus
}
#endif

#endif
