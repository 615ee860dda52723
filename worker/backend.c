/* The public backend API: opening a table (the CPU's, or CUDA's where built), Hessian accumulators, dispatch, memory estimates. */
#include "worker/backend.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/backend_impl.h"
#include "worker/hessian.h"

/* The one place the build's CUDA support shows: the CUDA table's opener and device count, or their absence. */
#ifdef ZF_HAVE_CUDA
#include "worker/cuda/cuda_backend.h"
#define ZF_CUDA_OPEN zf_cuda_backend_open
#define ZF_CUDA_COUNT zf_cuda_device_count
#else
#define ZF_CUDA_OPEN NULL
#define ZF_CUDA_COUNT NULL
#endif

typedef zf_status (*cuda_open_fn)(const zf_backend_opts *o, const zf_backend_i **i, void **ctx);
typedef int (*cuda_count_fn)(const char **why);
static const cuda_open_fn cuda_open = ZF_CUDA_OPEN;
static const cuda_count_fn cuda_count = ZF_CUDA_COUNT;

const char *zf_backend_kind_name(zf_backend_kind k) { return k == ZF_BACKEND_CUDA ? "cuda" : "cpu"; }

int zf_backend_cuda_devices(const char **why)
{
    if (cuda_count) return cuda_count(why);
    if (why) *why = "this build has no CUDA backend (no toolkit found, or -DZF_WITH_CUDA=OFF)";
    return 0;
}

zf_status zf_backend_open(const zf_backend_opts *o, zf_backend **out)
{
    *out = NULL;
    if (o->kind == ZF_BACKEND_CUDA && !cuda_open)
        return zf_fail(ZF_ERR_INPUT, "backend: cuda was asked for, but this zfold was built without CUDA (configure "
                       "with a CUDA toolkit and -DZF_WITH_CUDA=ON)");
    zf_backend *be = zf_calloc(1, sizeof *be, "backend");
    if (!be) return ZF_ERR_NOMEM;
    be->opts = *o;
    be->i = zf_cpu_backend_table();
    if (o->kind == ZF_BACKEND_CUDA) {
        zf_status s = cuda_open(o, &be->i, &be->ctx);
        if (s != ZF_OK) {
            free(be);
            return s;
        }
    }
    *out = be;
    return ZF_OK;
}

zf_backend *zf_cpu_backend(void)
{
    static zf_backend cpu;
    cpu.opts = (zf_backend_opts){.kind = ZF_BACKEND_CPU, .device = -1};
    cpu.i = zf_cpu_backend_table();
    return &cpu;
}

void zf_backend_close(zf_backend *be)
{
    if (!be) return;
    if (be->i->close) be->i->close(be->ctx);
    free(be);
}

void zf_backend_get_info(const zf_backend *be, zf_backend_info *info)
{
    memset(info, 0, sizeof *info);
    info->kind = be->opts.kind;
    info->device = -1;
    be->i->info(be->ctx, info);
}

unsigned zf_backend_caps(const zf_backend *be) { return be->i->caps; }

int64_t zf_backend_peak_bytes(zf_backend *be, bool reset) { return be->i->peak_bytes(be->ctx, reset); }

zf_status zf_bhess_init(zf_backend *be, zf_bhess *h, int64_t dim, bool fp64)
{
    memset(h, 0, sizeof *h);
    size_t bytes = (size_t)dim * (size_t)dim * (fp64 ? sizeof(double) : sizeof(float));
    char what[96];
    snprintf(what, sizeof what, "Hessian accumulator [%lld, %lld]", (long long)dim, (long long)dim);
    void *sum = NULL;
    if (dim <= 0 || dim > INT_MAX) /* BLAS takes int sizes */
        return zf_fail(ZF_ERR_INPUT, "Hessian dimension %lld: expected 1 .. %d", (long long)dim, INT_MAX);
    ZF_TRY(be->i->alloc(be->ctx, bytes, what, &sum));
    zf_status s = be->i->hess_zero(be->ctx, sum, dim, fp64);
    if (s != ZF_OK) {
        be->i->free(be->ctx, sum);
        return s;
    }
    *h = (zf_bhess){.be = be, .dim = dim, .fp64 = fp64, .sum = sum};
    return ZF_OK;
}

zf_status zf_bhess_init_inputs(zf_backend *be, zf_bhess *h, int64_t dim, int64_t capacity, bool fp64)
{
    memset(h, 0, sizeof *h);
    if (!(be->i->caps & ZF_CAP_HOST_MEMORY))
        return zf_fail(ZF_ERR_INPUT, "Hessian from stored inputs: the backend keeps its activations in device memory; "
                                     "use its sums");
    if (dim <= 0 || dim > INT_MAX || capacity < 0)
        return zf_fail(ZF_ERR_INPUT, "Hessian inputs [%lld, %lld]: expected 1 .. %d columns", (long long)capacity,
                       (long long)dim, INT_MAX);
    char what[96];
    snprintf(what, sizeof what, "Hessian inputs [%lld, %lld]", (long long)capacity, (long long)dim);
    float *x = zf_malloc(sizeof(float) * (size_t)(capacity > 0 ? capacity * dim : 1), what);
    if (!x) return ZF_ERR_NOMEM;
    *h = (zf_bhess){.be = be, .dim = dim, .fp64 = fp64, .inputs = x, .capacity = capacity};
    return ZF_OK;
}

void zf_bhess_free(zf_bhess *h)
{
    if (h->sum) h->be->i->free(h->be->ctx, h->sum);
    free(h->inputs);
    memset(h, 0, sizeof *h);
}

/* H from stored inputs, panel by panel (the reduction does the same across ranks). */
static zf_status finalize_inputs(const zf_bhess *h, float *H)
{
    const int64_t d = h->dim, w = zf_hessian_panel_width(d);
    double *P = zf_malloc(sizeof(double) * (size_t)(d * w), "Hessian panel");
    if (!P) return ZF_ERR_NOMEM;
    const double f = h->ntokens > 0 ? 2.0 / (double)h->ntokens : 0.0;
    zf_status s = ZF_OK;
    for (int64_t c0 = 0; s == ZF_OK && c0 < d; c0 += w) {
        int64_t c1 = c0 + w < d ? c0 + w : d;
        s = zf_hessian_panel(h->inputs, h->ntokens, d, c0, c1, P);
        if (s == ZF_OK) zf_hessian_store_panel(P, d, c0, c1, f, H);
    }
    free(P);
    return s;
}

zf_status zf_bhess_finalize(zf_bhess *h, float *H)
{
    if (h->inputs) return finalize_inputs(h, H);
    return h->be->i->hess_finalize(h->be->ctx, h, H);
}

zf_status zf_backend_block_forward(zf_backend *be, const zf_model_config *c, const zf_block_weights *w, float *x,
                                   int64_t nwin, int64_t seq, zf_bhess *const hess[ZF_NGROUP])
{
    return be->i->block_forward(be->ctx, c, w, x, nwin, seq, hess);
}

zf_status zf_backend_token_nll(zf_backend *be, const zf_model_config *c, const zf_model_globals *g, const float *x,
                               const int32_t *tokens, int64_t nwin, int64_t seq, double *nll)
{
    return be->i->token_nll(be->ctx, c, g, x, tokens, nwin, seq, nll);
}

/* The larger of a phase's activations and the staging buffer that 16-bit weights of up to n floats go through
 * (freed before the activations are allocated). */
static int64_t acts_or_staging(int64_t act_bytes, int64_t n, zf_forward_dtype dt)
{
    if (dt == ZF_FWD_FP32) return act_bytes;
    int64_t staging = (n < ZF_CUDA_STAGING_FLOATS ? n : ZF_CUDA_STAGING_FLOATS) * 4;
    return act_bytes > staging ? act_bytes : staging;
}

int64_t zf_backend_cuda_fixed_bytes(bool hessian_fp64)
{
    int64_t context = (int64_t)576 << 20; /* CUDA context and library workspaces: measured ones stay below this */
    return context + (hessian_fp64 ? ZF_CUDA_HESS_F64_SCRATCH_BYTES : 0);
}

int64_t zf_backend_forward_bytes(const zf_model_config *c, int64_t seq, zf_forward_dtype dt)
{
    bool opt = c->family == ZF_FAMILY_OPT;
    int64_t d = c->hidden, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, ff = c->intermediate;
    int64_t params = 0, biases = 0, largest = 0, wbytes = dt == ZF_FWD_FP32 ? 4 : 2;
    for (int l = 0; l < ZF_NLIN; l++) {
        if (!zf_lin_present(c, (zf_lin)l)) continue;
        int64_t n = zf_lin_out(c, (zf_lin)l) * zf_lin_in(c, (zf_lin)l);
        params += n;
        if (n > largest) largest = n;
        if (zf_lin_has_bias(c, (zf_lin)l)) biases += zf_lin_out(c, (zf_lin)l);
    }
    /* as the CUDA forward allocates: weights in their type, fp32 biases and norms; then the rotary table (LLaMA),
     * the residual stream and the norm output, the larger of q/k/v/mix and the MLP intermediates, one head's
     * scores, and for 16-bit weights the activation operand rounded to their type */
    int64_t weights = params * wbytes + biases * 4 + 2 * d * 4 * (c->norm_bias ? 2 : 1);
    int64_t attn = 2 * qd + 2 * kvd, mlp = (opt ? 1 : 2) * ff, big = attn > mlp ? attn : mlp;
    int64_t widest = d > qd ? d : qd;
    if (ff > widest) widest = ff;
    int64_t acts = (opt ? 0 : 2 * seq * (c->head_dim / 2) * 4) + (2 * seq * d + seq * big + seq * seq) * 4 +
                   (dt == ZF_FWD_FP32 ? 0 : wbytes * seq * widest);
    return weights + acts_or_staging(acts, largest, dt);
}

int64_t zf_backend_quantize_bytes(const zf_quant_opts *o, int64_t rows, int64_t cols, bool hessian)
{
    int64_t gs = o->group_size > 0 ? o->group_size : 0, ngroups = gs ? (cols + gs - 1) / gs : 1;
    int64_t chunk = ZF_CUDA_QCHUNK_FLOATS / cols;
    chunk = chunk < 256 ? 256 : chunk > ZF_CUDA_QCHUNK_MAX ? ZF_CUDA_QCHUNK_MAX : chunk;
    chunk = chunk < rows ? chunk : rows;
    bool optq = o->method == ZF_METHOD_OPTQ || (o->method == ZF_METHOD_ZFOLD && o->zfold_optq);
    bool need_e = hessian && (o->grid == ZF_GRID_HESSIAN || (o->method == ZF_METHOD_ZFOLD && o->alpha == ZF_ALPHA_GRID));
    bool need_hb = optq && gs && !o->static_groups && o->grid == ZF_GRID_HESSIAN;
    bool zfold = o->method == ZF_METHOD_ZFOLD;
    int64_t bk = o->block_size < cols ? o->block_size : cols, gl = gs ? (gs < cols ? gs : cols) : 0;
    int64_t rc = rows * cols, nn = cols * cols, cb = chunk * cols, rg = rows * ngroups;
    /* W, deq and the transposed working copy (fp32), codes; OPTQ: its codes, H⁻¹ factor and lazy-update block; H
     * and one chunk of products; the Hessian grid's second chunk and per-group Hessian; scales and zeros; per
     * column and per row state; Z-FOLD's Hessian vector and unit scales, its ζ refit's matrix, and its group
     * refit's scratch; per channel its α refit's weights in the factor's basis and row products */
    return 3 * rc * 4 + rc + (optq ? rc + nn * 4 + bk * rows * 4 + rows * 8 : 0) + (hessian ? nn * 4 + cb * 4 : 0) +
           (need_e ? cb * 4 : 0) + (need_hb ? gl * gl * 4 : 0) + 2 * rg * 4 + 4 * cols * 4 + 4 * rows * 4 +
           6 * rows * 8 + 2 * cols * 8 + (zfold ? cols * 4 + rows * 4 : 0) +
           (zfold && o->zfold_optq && o->refit_zeta && hessian ? nn * 4 : 0) +
           (zfold && o->zfold_optq && o->refit && gs && hessian ? rows * (2 * gl + 2) * 4 : 0) +
           (zfold && o->zfold_optq && o->refit && !gs && hessian ? rc * 4 + rows * 8 : 0) + 16;
}

int64_t zf_backend_nll_bytes(const zf_model_config *c, int64_t seq, zf_forward_dtype dt)
{
    int64_t d = c->hidden, wbytes = dt == ZF_FWD_FP32 ? 4 : 2, npred = seq - 1;
    /* as the CUDA NLL allocates: the head in its type, the final norm; one window's x and norm output, its
     * 16-bit operand, the logits, and the targets (padded to 8 bytes) with the NLL */
    int64_t norm = d * 4 * (c->norm_bias ? 2 : 1);
    int64_t acts = 2 * seq * d * 4 + (dt == ZF_FWD_FP32 ? 0 : wbytes * seq * d) + seq * c->vocab * 4 +
                   ((npred * 4 + 7) & ~(int64_t)7) + npred * 8;
    return c->vocab * d * wbytes + norm + acts_or_staging(acts, c->vocab * d, dt);
}
