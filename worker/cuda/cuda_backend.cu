/* The CUDA backend's table: device memory, Hessians, forward and the quantization primitives of the .cu files beside it. */
#include <stdio.h>
#include <string.h>

#include "worker/cuda/cuda_quant.h"

static void cu_close(void *ctx) { zf_cuda_close((zf_cuda *)ctx); }

static void cu_info(void *ctx, zf_backend_info *info) { zf_cuda_info((const zf_cuda *)ctx, info); }

static int64_t cu_peak_bytes(void *ctx, bool reset) { return zf_cuda_peak_bytes((zf_cuda *)ctx, reset); }

static zf_status cu_alloc(void *ctx, size_t bytes, const char *what, void **buf)
{
    return zf_cuda_alloc((zf_cuda *)ctx, bytes, what, buf);
}

static void cu_free(void *ctx, void *buf) { zf_cuda_free((zf_cuda *)ctx, buf); }

/* Synchronous: pageable host memory may be reused by the caller right away. */
static zf_status cu_copy(zf_cuda *cu, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    ZF_CUDA_TRY(cu, cudaMemcpyAsync(dst, src, bytes, kind, cu->stream));
    ZF_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
    return ZF_OK;
}

static zf_status cu_upload(void *ctx, void *dst, const void *src, size_t bytes)
{
    return cu_copy((zf_cuda *)ctx, dst, src, bytes, cudaMemcpyHostToDevice);
}

static zf_status cu_download(void *ctx, void *dst, const void *src, size_t bytes)
{
    return cu_copy((zf_cuda *)ctx, dst, src, bytes, cudaMemcpyDeviceToHost);
}

static zf_status cu_fill_zero(void *ctx, void *buf, size_t bytes)
{
    zf_cuda *cu = (zf_cuda *)ctx;
    ZF_CUDA_TRY(cu, cudaMemsetAsync(buf, 0, bytes, cu->stream));
    return ZF_OK;
}

static zf_status cu_sync(void *ctx)
{
    zf_cuda *cu = (zf_cuda *)ctx;
    ZF_CUDA_TRY(cu, cudaStreamSynchronize(cu->stream));
    return ZF_OK;
}

static zf_status cu_hess_zero(void *ctx, void *sum, int64_t dim, bool fp64)
{
    return zf_cuda_hess_zero((zf_cuda *)ctx, sum, dim, fp64);
}

static zf_status cu_hess_finalize(void *ctx, const zf_bhess *h, float *H)
{
    return zf_cuda_hess_finalize((zf_cuda *)ctx, h->sum, h->dim, h->fp64, h->ntokens, H);
}

static zf_status cu_block_forward(void *ctx, const zf_model_config *c, const zf_block_weights *w, float *x,
                                  int64_t nwin, int64_t seq, zf_bhess *const hess[ZF_NGROUP])
{
    return zf_cuda_block_forward((zf_cuda *)ctx, c, w, x, nwin, seq, hess);
}

static zf_status cu_token_nll(void *ctx, const zf_model_config *c, const zf_model_globals *g, const float *x,
                              const int32_t *tokens, int64_t nwin, int64_t seq, double *nll)
{
    return zf_cuda_token_nll((zf_cuda *)ctx, c, g, x, tokens, nwin, seq, nll);
}

static zf_backend_i make_table(void)
{
    zf_backend_i t;
    memset(&t, 0, sizeof t);
    t.caps = ZF_CAP_DEVICE_SUMS;
    t.close = cu_close;
    t.info = cu_info;
    t.peak_bytes = cu_peak_bytes;
    t.alloc = cu_alloc;
    t.free = cu_free;
    t.upload = cu_upload;
    t.download = cu_download;
    t.fill_zero = cu_fill_zero;
    t.sync = cu_sync;
    t.hess_zero = cu_hess_zero;
    t.hess_finalize = cu_hess_finalize;
    t.block_forward = cu_block_forward;
    t.token_nll = cu_token_nll;
    t.q_begin = zf_cq_begin;
    t.q_end = zf_cq_end;
    t.grid_fit = zf_cq_grid_fit;
    t.quadform = zf_cq_quadform;
    t.rtn_codes = zf_cq_rtn_codes;
    t.dequant = zf_cq_dequant;
    t.zstate = zf_cq_zstate;
    t.zeta_sums = zf_cq_zeta_sums;
    t.zgrid_diag = zf_cq_zgrid_diag;
    t.rowdot = zf_cq_rowdot;
    t.zrow_sums = zf_cq_zrow_sums;
    t.hmul = zf_cq_hmul;
    t.div_cols = zf_cq_div_cols;
    t.gather_t = zf_cq_gather_t;
    t.slice_static = zf_cq_slice_static;
    t.slice_t = zf_cq_slice_t;
    t.group_hess = zf_cq_group_hess;
    t.chol_inv = zf_cq_chol_inv;
    t.tri_solve = zf_cq_tri_solve;
    t.optq_block = zf_cq_optq_block;
    t.unpermute = zf_cq_unpermute;
    t.coldot = zf_cq_coldot;
    t.hgram = zf_cq_hgram;
    t.group_sums = zf_cq_group_sums;
    t.group_update = zf_cq_group_update;
    t.chol_solve = zf_cq_chol_solve;
    return t;
}

static const zf_backend_i cuda_table = make_table();

extern "C" zf_status zf_cuda_backend_open(const zf_backend_opts *o, const zf_backend_i **i, void **ctx)
{
    zf_cuda *cu = NULL;
    ZF_TRY(zf_cuda_open(o->device, o->tf32, o->fwd_dtype, &cu));
    *i = &cuda_table;
    *ctx = cu;
    return ZF_OK;
}
