/* The host backend's table: host memory, Hessians as zf_hessian, the fp32 forward, and the quantization primitives. */
#include "worker/backend_cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/forward.h"
#include "worker/hessian.h"

static void cpu_info(void *ctx, zf_backend_info *info)
{
    (void)ctx;
    snprintf(info->name, sizeof info->name, "cpu");
}

static int64_t cpu_peak_bytes(void *ctx, bool reset)
{
    (void)ctx, (void)reset;
    return 0;
}

static zf_status cpu_alloc(void *ctx, size_t bytes, const char *what, void **buf)
{
    (void)ctx;
    *buf = zf_malloc(bytes ? bytes : 1, what);
    return *buf ? ZF_OK : ZF_ERR_NOMEM;
}

static void cpu_free(void *ctx, void *buf)
{
    (void)ctx;
    free(buf);
}

static zf_status cpu_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    if (dst != src) memcpy(dst, src, bytes);
    return ZF_OK;
}

static zf_status cpu_fill_zero(void *ctx, void *buf, size_t bytes)
{
    (void)ctx;
    memset(buf, 0, bytes);
    return ZF_OK;
}

static zf_status cpu_sync(void *ctx)
{
    (void)ctx;
    return ZF_OK;
}

/* The host accumulator is a zf_hessian over the same memory. */
static zf_hessian host_view(const zf_bhess *h)
{
    zf_hessian v = {.dim = h->dim, .ntokens = h->ntokens, .fp64 = h->fp64};
    if (h->fp64) v.sum64 = h->sum;
    else v.sum32 = h->sum;
    return v;
}

static zf_status cpu_hess_zero(void *ctx, void *sum, int64_t dim, bool fp64)
{
    (void)ctx;
    memset(sum, 0, (size_t)dim * (size_t)dim * (fp64 ? sizeof(double) : sizeof(float)));
    return ZF_OK;
}

static zf_status cpu_hess_finalize(void *ctx, const zf_bhess *h, float *H)
{
    (void)ctx;
    zf_hessian v = host_view(h);
    return zf_hessian_finalize(&v, H);
}

typedef struct {
    zf_bhess *const *hess;
    zf_status status;
} cpu_capture;

static void cpu_capture_fn(void *ctx, zf_group g, const float *x, int64_t ntok, int64_t dim)
{
    (void)dim;
    cpu_capture *c = ctx;
    zf_bhess *h = c->hess[g];
    if (!h || c->status != ZF_OK) return;
    if (h->inputs) {
        c->status = zf_hessian_check_inputs(x, ntok, h->dim);
        if (c->status == ZF_OK && h->ntokens + ntok > h->capacity)
            c->status = zf_fail(ZF_ERR_INTERNAL, "Hessian inputs: %lld tokens captured into room for %lld",
                                (long long)(h->ntokens + ntok), (long long)h->capacity);
        if (c->status != ZF_OK) return;
        memcpy(h->inputs + h->ntokens * h->dim, x, sizeof(float) * (size_t)(ntok * h->dim));
        h->ntokens += ntok;
        return;
    }
    zf_hessian v = host_view(h);
    c->status = zf_hessian_add(&v, x, ntok);
    h->ntokens = v.ntokens;
}

/* The capture's failure (a non-finite input) names the layers that read the input. */
static void cpu_capture_named(void *ctx, zf_group g, const float *x, int64_t ntok, int64_t dim)
{
    cpu_capture *c = ctx;
    zf_status before = c->status;
    cpu_capture_fn(ctx, g, x, ntok, dim);
    if (before == ZF_OK && c->status != ZF_OK) zf_fail_context(c->status, "inputs of layer group %s", zf_group_name(g));
}

static zf_status cpu_block_forward(void *ctx, const zf_model_config *c, const zf_block_weights *w, float *x,
                                   int64_t nwin, int64_t seq, zf_bhess *const hess[ZF_NGROUP])
{
    (void)ctx;
    bool any = false;
    for (int g = 0; hess && g < ZF_NGROUP; g++) any |= hess[g] != NULL;
    cpu_capture cap = {hess, ZF_OK};
    for (int64_t i = 0; i < nwin; i++) {
        ZF_TRY(zf_block_forward(c, w, x + i * seq * c->hidden, 1, seq, any ? cpu_capture_named : NULL, &cap));
        ZF_TRY(cap.status);
    }
    return ZF_OK;
}

static zf_status cpu_token_nll(void *ctx, const zf_model_config *c, const zf_model_globals *g, const float *x,
                               const int32_t *tokens, int64_t nwin, int64_t seq, double *nll)
{
    (void)ctx;
    return zf_token_nll(c, g, x, tokens, nwin, seq, nll);
}

static const zf_backend_i cpu_table = {
    .caps = ZF_CAP_HOST_MEMORY,
    .close = NULL,
    .info = cpu_info,
    .peak_bytes = cpu_peak_bytes,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .fill_zero = cpu_fill_zero,
    .sync = cpu_sync,
    .hess_zero = cpu_hess_zero,
    .hess_finalize = cpu_hess_finalize,
    .block_forward = cpu_block_forward,
    .token_nll = cpu_token_nll,
    .q_begin = zf_cpu_q_begin,
    .q_end = zf_cpu_q_end,
    .grid_fit = zf_cpu_grid_fit,
    .quadform = zf_cpu_quadform,
    .rtn_codes = zf_cpu_rtn_codes,
    .dequant = zf_cpu_dequant,
    .zstate = zf_cpu_zstate,
    .zeta_sums = zf_cpu_zeta_sums,
    .zgrid_diag = zf_cpu_zgrid_diag,
    .rowdot = zf_cpu_rowdot,
    .hmul = zf_cpu_hmul,
    .div_cols = zf_cpu_div_cols,
    .gather_t = zf_cpu_gather_t,
    .slice_static = zf_cpu_slice_static,
    .slice_t = zf_cpu_slice_t,
    .group_hess = zf_cpu_group_hess,
    .chol_inv = zf_cpu_chol_inv,
    .tri_solve = zf_cpu_tri_solve,
    .zrow_sums = zf_cpu_zrow_sums,
    .optq_block = zf_cpu_optq_block,
    .unpermute = zf_cpu_unpermute,
    .coldot = zf_cpu_coldot,
    .hgram = zf_cpu_hgram,
    .group_sums = zf_cpu_group_sums,
    .group_update = zf_cpu_group_update,
    .chol_solve = zf_cpu_chol_solve,
};

const zf_backend_i *zf_cpu_backend_table(void) { return &cpu_table; }
