/* The sequential quantization protocol: calibration inputs, Hessians per layer group, quantize, fold, forward. */
#include "coordinator/pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/tokens.h"
#include "worker/fold.h"
#include "worker/forward.h"
#include "common/shard.h"
#include "coordinator/commands.h"
#include "coordinator/comm.h"
#include "coordinator/gpucomm.h"

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

zf_status zf_calibration_windows(int64_t ntokens, int64_t seq, int64_t n, uint64_t seed, int64_t *starts)
{
    if (seq <= 0 || ntokens < seq)
        return zf_fail(ZF_ERR_INPUT, "calibration: the token file has %lld tokens, fewer than one window of %lld",
                       (long long)ntokens, (long long)seq);
    uint64_t state = seed;
    uint64_t range = (uint64_t)(ntokens - seq + 1);
    for (int64_t i = 0; i < n; i++) {
        /* rejection sampling keeps the choice uniform and identical on every platform */
        uint64_t limit = UINT64_MAX - UINT64_MAX % range, x;
        do x = splitmix64(&state); while (x >= limit);
        starts[i] = (int64_t)(x % range);
    }
    return ZF_OK;
}

/* A failed NCCL collective leaves the other ranks inside it until their own timeout, or past it: they cannot
 * agree on the failure in step, so the job ends here (MPI_Abort) once the message is out. */
static zf_status gpucomm_or_abort(zf_status s)
{
    if (s == ZF_OK) return ZF_OK;
    zf_log_error("%s; ending the job", zf_last_error());
    zf_comm_abort(ZF_EXIT_INTERNAL);
}

/* Payload bytes this rank has moved over MPI and NCCL. */
static double comm_bytes(void) { return zf_comm_bytes() + zf_gpucomm_bytes(); }

/* This rank's GPU: the one of its node-local index when it sees a GPU per node-local rank, or the only one it
 * sees when the launcher gave each rank its own (srun --gpus-per-task=1: CUDA_VISIBLE_DEVICES per rank, so
 * index 0 on every rank). Ranks left on one GPU are refused by NCCL's set-up. */
static zf_status pick_device(int rank, int local, int nlocal, int ndev, int *device)
{
    *device = ndev <= 1 ? 0 : local;
    if (ndev <= 1 || ndev >= nlocal) return ZF_OK; /* no device at all: opening the backend says so */
    return zf_fail(ZF_ERR_INPUT, "backend: cuda: rank %d is node-local rank %d of %d but sees %d GPUs: expected at "
                   "least one per node-local rank, or exactly one per rank (its own; one rank per GPU)", rank, local,
                   nlocal, ndev);
}

/* CPU, or this rank's GPU and, with several ranks, NCCL between the ranks' GPUs. The failures of one rank are
 * agreed on before the communicator's set-up, which every rank must enter. */
static zf_status open_backend(const zf_job_config *cfg, zf_qmodel *m)
{
    zf_backend_opts o = {.kind = (zf_backend_kind)cfg->backend, .device = -1, .tf32 = cfg->gpu_tf32,
                         .fwd_dtype = (zf_forward_dtype)cfg->gpu_forward_dtype};
    const zf_comm *w = zf_comm_world();
    int local = 0, nlocal = 1;
    zf_status s = ZF_OK;
    if (o.kind == ZF_BACKEND_CUDA) {
        if (w->size > 1) s = zf_gpucomm_local_rank(&local, &nlocal);
        if (s == ZF_OK) s = pick_device(w->rank, local, nlocal, zf_backend_cuda_devices(NULL), &o.device);
    }
    if (s == ZF_OK) s = zf_backend_open(&o, &m->be);
    ZF_TRY(zf_comm_agree(s));
    if (o.kind != ZF_BACKEND_CUDA) return ZF_OK;
    zf_backend_info info;
    zf_backend_get_info(m->be, &info);
    zf_log_info("backend %s (node-local rank %d of %d), %.1f GiB free of %.1f GiB", info.name, local, nlocal,
                (double)info.mem_free / (1 << 30), (double)info.mem_total / (1 << 30));
    if (w->size > 1) ZF_TRY(zf_gpucomm_init(o.device, cfg->gpu_comm_timeout));
    return ZF_OK;
}

static zf_status open_model(const zf_job_config *cfg, zf_qmodel *m)
{
    ZF_TRY(zf_model_config_read(cfg->model, &m->model));
    ZF_TRY(zf_st_open(cfg->model, &m->st));
    ZF_TRY(zf_globals_load(&m->model, m->st, &m->globals));
    m->blocks = zf_calloc((size_t)m->model.n_layers, sizeof *m->blocks, "quantized blocks");
    if (!m->blocks) return ZF_ERR_NOMEM;
    m->calib_seq = cfg->calib_seq_len > 0 ? cfg->calib_seq_len
                                          : (m->model.max_pos < 2048 ? m->model.max_pos : 2048);
    if (m->calib_seq > m->model.max_pos)
        return zf_fail(ZF_ERR_INPUT, "config: calibration.seq_len %lld exceeds the model's max_position_embeddings %lld",
                       (long long)m->calib_seq, (long long)m->model.max_pos);
    return ZF_OK;
}

zf_status zf_qmodel_open(const zf_job_config *cfg, zf_qmodel *m)
{
    memset(m, 0, sizeof *m);
    ZF_TRY(zf_comm_agree(open_model(cfg, m)));
    return open_backend(cfg, m);
}

void zf_qblock_release(zf_qblock *q)
{
    for (int l = 0; l < ZF_NLIN; l++) zf_qresult_free(&q->lin[l]);
    zf_block_free(&q->folded);
    zf_block_free(&q->unfolded);
}

static void qblock_free(zf_qblock *q)
{
    for (int l = 0; l < ZF_NLIN; l++) zf_qresult_free(&q->lin[l]);
    zf_block_free(&q->folded);
    zf_block_free(&q->unfolded);
}

void zf_qmodel_free(zf_qmodel *m)
{
    if (m->blocks)
        for (int64_t b = 0; b < m->model.n_layers; b++) qblock_free(&m->blocks[b]);
    free(m->blocks);
    zf_globals_free(&m->globals);
    zf_st_close(m->st);
    /* NCCL before the device context it uses; both before MPI_Finalize (the caller's) */
    zf_gpucomm_finalize();
    zf_backend_close(m->be);
    memset(m, 0, sizeof *m);
}

/* Hessian accumulators of the groups selected in `want` (the others are not captured). */
typedef struct {
    zf_bhess h[ZF_NGROUP];
    unsigned want;
} capture_ctx;

/* Forwards the windows through w, capturing the selected groups' inputs into their Hessians. */
static zf_status forward_windows(zf_backend *be, const zf_model_config *c, const zf_block_weights *w, float *x,
                                 int64_t nwin, int64_t seq, capture_ctx *cap)
{
    zf_bhess *hess[ZF_NGROUP] = {0};
    for (int g = 0; cap && g < ZF_NGROUP; g++)
        if (cap->want & (1u << g)) hess[g] = &cap->h[g];
    return zf_backend_block_forward(be, c, w, x, nwin, seq, hess);
}

/* Copies rows [r0, r0 + nr) of a group result into a member result. */
static zf_status slice_rows(const zf_qresult *src, int64_t r0, int64_t nr, zf_qresult *dst)
{
    ZF_TRY(zf_qresult_alloc(dst, nr, src->cols, src->ngroups, src->bits));
    int64_t c = src->cols, g = src->ngroups;
    memcpy(dst->q, src->q + r0 * c, (size_t)(nr * c));
    memcpy(dst->scale, src->scale + r0 * g, sizeof(float) * (size_t)(nr * g));
    memcpy(dst->zero, src->zero + r0 * g, sizeof(float) * (size_t)(nr * g));
    memcpy(dst->deq, src->deq + r0 * c, sizeof(float) * (size_t)(nr * c));
    memcpy(dst->g_idx, src->g_idx, sizeof(int32_t) * (size_t)c);
    memcpy(dst->zeta, src->zeta, sizeof(float) * (size_t)c);
    dst->als_iters = src->als_iters;
    dst->damp_used = src->damp_used;
    dst->damp_retries = src->damp_retries;
    dst->dead_inputs = src->dead_inputs;
    return ZF_OK;
}

/* The deployable weight of a quantized layer: scale·(q - zero) (ζ lives in the preceding layer). */
static void deploy_weight(const zf_qresult *r, float *w)
{
    for (int64_t i = 0; i < r->rows; i++)
        for (int64_t j = 0; j < r->cols; j++) {
            int64_t g = r->g_idx[j];
            w[i * r->cols + j] = r->scale[i * r->ngroups + g] * ((float)r->q[i * r->cols + j] - r->zero[i * r->ngroups + g]);
        }
}

/* Per-output-row factors that folding group g's ζ applies to the target linear's rows (V or up). */
static zf_lin fold_row_factors(const zf_model_config *c, zf_group g, const float *zeta, float *factor)
{
    zf_fold_target t = zf_group_fold(c, g);
    if (t == ZF_FOLD_UP_ROWS) {
        memcpy(factor, zeta, sizeof(float) * (size_t)c->intermediate);
        return ZF_LIN_UP;
    }
    if (t == ZF_FOLD_V_ROWS) {
        int64_t hd = c->head_dim, rep = c->n_heads / c->n_kv_heads;
        for (int64_t kv = 0; kv < c->n_kv_heads; kv++)
            for (int64_t i = 0; i < hd; i++) factor[kv * hd + i] = zeta[(kv * rep) * hd + i];
        return ZF_LIN_V;
    }
    return ZF_NLIN;
}

/* One group's result as computed by its owner rank and broadcast to every rank. */
typedef struct {
    zf_qresult res;              /* the concatenated rows of the group's members */
    double dl[3], dl_rtn[3];     /* per member ΔL after / before (min-max RTN) */
} group_result;

/* Owner only: quantize group g's members (rows concatenated, so Q/K/V and gate/up share ζ) with Hessian H. */
static zf_status compute_group(zf_backend *be, const zf_job_config *cfg, const zf_model_config *c, int64_t b,
                               zf_group g, const float *H, const zf_block_weights *blk, group_result *gr)
{
    zf_lin mem[3];
    int nm = zf_group_members(c, g, mem);
    int64_t in = zf_group_in(c, g), rows = 0;
    for (int i = 0; i < nm; i++) rows += zf_lin_out(c, mem[i]);
    zf_quant_opts o = cfg->quant;
    zf_fold_target target = zf_group_fold(c, g);
    if (o.method == ZF_METHOD_ZFOLD && target == ZF_FOLD_NONE) {
        zf_log_warn("block %lld %s: ζ cannot be folded here; using OPTQ for this group", (long long)b, zf_group_name(g));
        o.method = ZF_METHOD_OPTQ;
    }
    o.zeta_positive = (target == ZF_FOLD_UP_ROWS && c->family == ZF_FAMILY_OPT);
    int32_t *cls = NULL;
    zf_zeta_tie tie = {0};
    float *W = zf_malloc(sizeof(float) * (size_t)(rows * in), "group weights");
    zf_status s = W ? ZF_OK : ZF_ERR_NOMEM;
    if (s == ZF_OK && o.method == ZF_METHOD_ZFOLD) {
        cls = zf_malloc(sizeof(int32_t) * (size_t)in, "ζ tie classes");
        if (!cls) s = ZF_ERR_NOMEM;
        else {
            tie.nclasses = zf_fold_tie_classes(c, g, cls);
            tie.cls = cls;
        }
    }
    int64_t r0 = 0;
    for (int i = 0; s == ZF_OK && i < nm; i++) {
        memcpy(W + r0 * in, blk->lin_w[mem[i]], sizeof(float) * (size_t)(zf_lin_out(c, mem[i]) * in));
        r0 += zf_lin_out(c, mem[i]);
    }
    if (s == ZF_OK) s = zf_backend_quantize(be, &o, W, rows, in, H, tie.nclasses ? &tie : NULL, &gr->res);
    zf_quant_opts rtn = o;
    rtn.method = ZF_METHOD_RTN;
    rtn.grid = ZF_GRID_MINMAX;
    r0 = 0;
    for (int i = 0; s == ZF_OK && i < nm; i++) {
        int64_t nr = zf_lin_out(c, mem[i]);
        const float *Wm = blk->lin_w[mem[i]];
        zf_qresult base = {0};
        gr->dl[i] = zf_delta_loss(Wm, gr->res.deq + r0 * in, nr, in, H);
        if ((s = zf_backend_quantize(be, &rtn, Wm, nr, in, H, NULL, &base)) == ZF_OK) gr->dl_rtn[i] = base.dl;
        zf_qresult_free(&base);
        r0 += nr;
    }
    if (s != ZF_OK) zf_fail_context(s, "block %lld, %s", (long long)b, zf_group_name(g));
    free(W);
    free(cls);
    return s;
}

/* Bulk data from owner to every rank: over NCCL when the ranks share a GPU communicator, else over MPI. */
static zf_status bcast_payload(void *buf, size_t bytes, int owner)
{
    if (zf_gpucomm_active()) return gpucomm_or_abort(zf_gpucomm_bcast_host(buf, bytes, owner));
    return zf_comm_bcast(buf, bytes, owner);
}

/* Sends the owner's group result to every rank (receivers allocate); sizes and statistics go over MPI. */
static zf_status bcast_group(group_result *gr, int owner)
{
    const zf_comm *w = zf_comm_world();
    if (w->size == 1) return ZF_OK;
    zf_qresult *r = &gr->res;
    int64_t hdr[4] = {r->rows, r->cols, r->ngroups, r->bits};
    ZF_TRY(zf_comm_bcast(hdr, sizeof hdr, owner));
    /* a receiver that cannot hold the result must not leave the others inside the payload broadcasts */
    ZF_TRY(zf_comm_agree(w->rank != owner ? zf_qresult_alloc(r, hdr[0], hdr[1], hdr[2], (int)hdr[3]) : ZF_OK));
    int64_t rc = r->rows * r->cols, rg = r->rows * r->ngroups;
    ZF_TRY(bcast_payload(r->q, (size_t)rc, owner));
    ZF_TRY(bcast_payload(r->scale, sizeof(float) * (size_t)rg, owner));
    ZF_TRY(bcast_payload(r->zero, sizeof(float) * (size_t)rg, owner));
    ZF_TRY(bcast_payload(r->g_idx, sizeof(int32_t) * (size_t)r->cols, owner));
    ZF_TRY(bcast_payload(r->zeta, sizeof(float) * (size_t)r->cols, owner));
    ZF_TRY(bcast_payload(r->deq, sizeof(float) * (size_t)rc, owner));
    double meta[10] = {r->dl_rtn, r->dl, r->als_iters, r->damp_used, r->damp_retries, (double)r->dead_inputs,
                       gr->dl[0], gr->dl[1], gr->dl[2], 0};
    double meta2[3] = {gr->dl_rtn[0], gr->dl_rtn[1], gr->dl_rtn[2]};
    ZF_TRY(zf_comm_bcast(meta, sizeof meta, owner));
    ZF_TRY(zf_comm_bcast(meta2, sizeof meta2, owner));
    r->dl_rtn = meta[0];
    r->dl = meta[1];
    r->als_iters = (int)meta[2];
    r->damp_used = meta[3];
    r->damp_retries = (int)meta[4];
    r->dead_inputs = (int64_t)meta[5];
    for (int i = 0; i < 3; i++) {
        gr->dl[i] = meta[6 + i];
        gr->dl_rtn[i] = meta2[i];
    }
    return ZF_OK;
}

/* Every rank: install the group's quantized members in the block and fold ζ (identically on all ranks). */
static zf_status apply_group(const zf_job_config *cfg, const zf_model_config *c, int64_t b, zf_group g,
                             const group_result *gr, zf_block_weights *blk, zf_qblock *qb)
{
    zf_lin mem[3];
    int nm = zf_group_members(c, g, mem);
    int64_t in = zf_group_in(c, g), r0 = 0;
    for (int i = 0; i < nm; i++) {
        zf_lin l = mem[i];
        int64_t nr = zf_lin_out(c, l);
        ZF_TRY(slice_rows(&gr->res, r0, nr, &qb->lin[l]));
        qb->dl[l] = gr->dl[i];
        qb->dl_rtn[l] = gr->dl_rtn[i];
        qb->als_iters[l] = gr->res.als_iters;
        qb->damp_used[l] = gr->res.damp_used;
        qb->damp_retries[l] = gr->res.damp_retries;
        if (qb->unfolded.lin_w[l]) memcpy(qb->unfolded.lin_w[l], qb->lin[l].deq, sizeof(float) * (size_t)(nr * in));
        deploy_weight(&qb->lin[l], blk->lin_w[l]);
        r0 += nr;
    }
    if (cfg->quant.method != ZF_METHOD_ZFOLD || zf_group_fold(c, g) == ZF_FOLD_NONE) return ZF_OK;
    zf_status s = zf_fold_zeta(c, g, gr->res.zeta, blk);
    if (s != ZF_OK) return zf_fail_context(s, "block %lld, folding %s", (long long)b, zf_group_name(g));
    /* a linear target also carries ζ in its stored per-row scales */
    int64_t nmax = c->intermediate > c->hidden ? c->intermediate : c->hidden;
    float *factor = zf_malloc(sizeof(float) * (size_t)nmax, "fold factors");
    if (!factor) return ZF_ERR_NOMEM;
    zf_lin tl = fold_row_factors(c, g, gr->res.zeta, factor);
    if (tl != ZF_NLIN) {
        zf_qresult *t = &qb->lin[tl];
        for (int64_t r = 0; r < t->rows; r++)
            for (int64_t k = 0; k < t->ngroups; k++) t->scale[r * t->ngroups + k] *= factor[r];
        /* the deployed weight from the stored scales, exactly as a resumed run rebuilds it from the shard */
        deploy_weight(t, blk->lin_w[tl]);
    }
    free(factor);
    return ZF_OK;
}

/* Work per group for balancing: OPTQ's d_out·d_in² plus the Cholesky's d_in³/3. */
static double group_cost(const zf_model_config *c, zf_group g)
{
    zf_lin mem[3];
    int nm = zf_group_members(c, g, mem);
    double in = (double)zf_group_in(c, g), out = 0;
    for (int i = 0; i < nm; i++) out += (double)zf_lin_out(c, mem[i]);
    return 2.0 * out * in * in + in * in * in / 3.0;
}

zf_status zf_assign_owners(const zf_model_config *c, int64_t nblocks, int nranks, int *owner)
{
    double *load = zf_calloc((size_t)nranks, sizeof *load, "rank loads");
    if (!load) return ZF_ERR_NOMEM;
    int kinds[ZF_NGROUP] = {0, 1, 2, 3};
    for (int i = 0; i < ZF_NGROUP; i++)
        for (int j = i + 1; j < ZF_NGROUP; j++)
            if (group_cost(c, (zf_group)kinds[j]) > group_cost(c, (zf_group)kinds[i])) {
                int t = kinds[i];
                kinds[i] = kinds[j];
                kinds[j] = t;
            }
    for (int k = 0; k < ZF_NGROUP; k++)
        for (int64_t b = 0; b < nblocks; b++) {
            int r = 0;
            for (int q = 1; q < nranks; q++)
                if (load[q] < load[r]) r = q;
            owner[b * ZF_NGROUP + kinds[k]] = r;
            load[r] += group_cost(c, (zf_group)kinds[k]);
        }
    free(load);
    return ZF_OK;
}

/* Sums every rank's partial Hessian and token count of one group onto its owner (collective). Afterwards the
 * owner's accumulator holds the total and the other ranks' are spent. Device sums go over NCCL, host sums over MPI. */
static zf_status reduce_hessian(zf_bhess *h, int owner)
{
    if (zf_comm_world()->size == 1) return ZF_OK;
    double count = (double)h->ntokens;
    ZF_TRY(zf_comm_allreduce_f64(&count, 1));
    h->ntokens = (int64_t)count;
    int64_t n = h->dim * h->dim;
    if (h->on_device) return gpucomm_or_abort(zf_gpucomm_reduce_sum(h->sum, n, h->fp64, owner));
    if (h->fp64) return zf_comm_reduce_f64(h->sum, n, owner);
    return zf_comm_reduce_f32(h->sum, n, owner);
}

/* Whether the cache holds every group in [g0, g1) of block b: rank 0 looks, every rank gets the answer. */
static zf_status cache_agree(const zf_hcache *hc, const zf_model_config *c, int64_t b, int g0, int g1, bool *hit)
{
    double all = zf_comm_world()->rank == 0 && hc->enabled;
    for (int g = g0; all > 0 && g < g1; g++)
        if (!zf_hcache_has(hc, b, (zf_group)g, zf_group_in(c, (zf_group)g))) all = 0;
    ZF_TRY(zf_comm_bcast(&all, sizeof all, 0));
    *hit = all > 0;
    return ZF_OK;
}

/* The owner's H = 2/N Σ xxᵀ of group g (no collective): read from the cache on a hit, else finalized from the
 * reduced accumulator and, for a full-precision pass, stored with the seconds it cost (seconds so far + its own). */
static zf_status owner_hessian(zf_hcache *hc, bool fp_pass, bool cached, int64_t b, zf_group g, int64_t dim,
                               zf_bhess *h, double seconds, float *H)
{
    if (cached) return zf_hcache_load(hc, b, g, dim, H);
    double t0 = zf_now();
    ZF_TRY(zf_bhess_finalize(h, H));
    if (!fp_pass) return ZF_OK;
    zf_status s = zf_hcache_store(hc, b, g, dim, H, seconds + zf_now() - t0);
    if (s != ZF_OK) zf_log_warn("Hessian cache: %s (going on without it)", zf_last_error());
    return ZF_OK;
}

static zf_status quantize_block(const zf_job_config *cfg, zf_qmodel *m, int64_t b, float *x, float *scratch,
                                int64_t nwin)
{
    const zf_model_config *c = &m->model;
    const zf_comm *w = zf_comm_world();
    zf_qblock *qb = &m->blocks[b];
    int64_t seq = m->calib_seq, ntok = nwin * seq, d = c->hidden;
    capture_ctx cap = {0};
    group_result gr[ZF_NGROUP];
    memset(gr, 0, sizeof gr);
    int owner[ZF_NGROUP];
    float *H = NULL;
    zf_status s = zf_assign_owners(c, 1, w->size, owner);
    if (s == ZF_OK) s = zf_block_load(c, m->st, b, &qb->folded);
    if (s == ZF_OK) s = zf_block_check_finite(c, &qb->folded, b);
    if (s == ZF_OK && cfg->eval_unfolded) s = zf_block_copy(c, &qb->folded, &qb->unfolded);
    for (int g = 0; s == ZF_OK && g < ZF_NGROUP; g++)
        s = zf_bhess_init(m->be, &cap.h[g], zf_group_in(c, g), cfg->hessian_fp64);
    int64_t hmax = c->intermediate > c->n_heads * c->head_dim ? c->intermediate : c->n_heads * c->head_dim;
    if (hmax < d) hmax = d;
    if (s == ZF_OK && !(H = zf_malloc(sizeof(float) * (size_t)(hmax * hmax), "Hessian"))) s = ZF_ERR_NOMEM;
    s = zf_comm_agree(s);
    /* Groups are processed in execution order; without true-sequential all Hessians come from one pass and
     * every owner quantizes its groups before any result is exchanged. */
    int first = 0;
    while (s == ZF_OK && first < ZF_NGROUP) {
        int last = cfg->true_sequential ? first + 1 : ZF_NGROUP;
        /* only the first pass of block 0 sees full-precision inputs through full-precision weights */
        bool fp_pass = b == 0 && first == 0, cached = false;
        if (fp_pass) s = cache_agree(&m->hcache, c, b, first, last, &cached);
        cap.want = 0;
        for (int g = first; g < last; g++) cap.want |= 1u << g;
        double t_pass = zf_now();
        if (s == ZF_OK && !cached) {
            memcpy(scratch, x, sizeof(float) * (size_t)(ntok * d));
            if (nwin > 0) s = forward_windows(m->be, c, &qb->folded, scratch, nwin, seq, &cap);
            s = zf_comm_agree(s);
        }
        double t_fwd = (zf_now() - t_pass) / (last - first), t_red[ZF_NGROUP] = {0};
        /* every group's sums to its owner first (collectives only), so that the owners then quantize at once */
        for (int g = first; s == ZF_OK && !cached && g < last; g++) {
            double t0 = zf_now();
            s = reduce_hessian(&cap.h[g], owner[g]);
            t_red[g] = zf_now() - t0;
            if (w->rank != owner[g]) zf_bhess_free(&cap.h[g]);
        }
        for (int g = first; s == ZF_OK && g < last; g++) {
            if (w->rank != owner[g]) continue;
            s = owner_hessian(&m->hcache, fp_pass, cached, b, (zf_group)g, zf_group_in(c, (zf_group)g), &cap.h[g],
                              t_fwd + t_red[g], H);
            zf_bhess_free(&cap.h[g]);
            if (s == ZF_OK) s = compute_group(m->be, cfg, c, b, (zf_group)g, H, &qb->folded, &gr[g]);
        }
        s = zf_comm_agree(s);
        /* a rank that fails to install a group must not leave the others in the next group's broadcasts */
        for (int g = first; s == ZF_OK && g < last; g++) {
            s = bcast_group(&gr[g], owner[g]);
            if (s == ZF_OK) s = apply_group(cfg, c, b, (zf_group)g, &gr[g], &qb->folded, qb);
            s = zf_comm_agree(s);
        }
        first = last;
    }
    /* the next block's inputs come through the quantized block */
    if (s == ZF_OK && nwin > 0) s = forward_windows(m->be, c, &qb->folded, x, nwin, seq, NULL);
    for (int g = 0; g < ZF_NGROUP; g++) {
        zf_bhess_free(&cap.h[g]);
        zf_qresult_free(&gr[g].res);
    }
    free(H);
    return zf_comm_agree(s);
}

int64_t zf_block_comm_bytes_model(const zf_model_config *c, int nranks, int hessian_bytes)
{
    if (nranks < 2) return 0;
    int64_t bytes = 0;
    for (int g = 0; g < ZF_NGROUP; g++) {
        zf_lin mem[3];
        int nm = zf_group_members(c, (zf_group)g, mem);
        int64_t in = zf_group_in(c, (zf_group)g), rows = 0;
        for (int i = 0; i < nm; i++) rows += zf_lin_out(c, mem[i]);
        /* partial Hessian and token count reduced; codes (1 B), deq (4 B), scale, zero, g_idx, ζ broadcast */
        bytes += in * in * hessian_bytes + 8 + rows * in * 5 + rows * 8 + in * 8 + 32 + 104;
    }
    return bytes;
}

static const char *comm_note(double measured, int64_t predicted)
{
    static char buf[96];
    snprintf(buf, sizeof buf, "  comm %.2f MB (model %.2f MB)", measured / 1e6, (double)predicted / 1e6);
    return buf;
}

/* A stop request (a signal on any rank), agreed by every rank; ZF_ERR_INTERRUPTED naming where when there is one. */
static zf_status agreed_stop(const zf_run_hooks *hooks, const char *where)
{
    if (!hooks || !hooks->stop_requested) return ZF_OK;
    double sig = hooks->stop_requested(hooks->ctx);
    ZF_TRY(zf_comm_allreduce_f64(&sig, 1));
    if (sig <= 0) return ZF_OK;
    return zf_fail(ZF_ERR_INTERRUPTED, "stopped by a signal %s; run the same command again to resume", where);
}

/* Parallel schedule: every Hessian from one full-precision pass, then all (block, group) units spread over the
 * ranks by cost, reduced to their owners and quantized at once; results are installed block by block in order. */
static zf_status quantize_parallel(const zf_job_config *cfg, zf_qmodel *m, const zf_run_hooks *hooks, float *x,
                                   int64_t nwin, double t0)
{
    const zf_model_config *c = &m->model;
    const zf_comm *w = zf_comm_world();
    int64_t nb = c->n_layers, seq = m->calib_seq, first = hooks ? hooks->resume_from : 0;
    int64_t nunits = (nb - first) * ZF_NGROUP;
    zf_bhess *hs = zf_calloc((size_t)(nunits ? nunits : 1), sizeof *hs, "Hessians of every block");
    group_result *gr = zf_calloc((size_t)(nunits ? nunits : 1), sizeof *gr, "results of every block");
    int *owner = zf_calloc((size_t)(nunits ? nunits : 1), sizeof *owner, "unit owners");
    zf_block_weights fp = {0};
    float *H = NULL;
    zf_status s = hs && gr && owner ? ZF_OK : ZF_ERR_NOMEM;
    int64_t dmax = c->intermediate > c->n_heads * c->head_dim ? c->intermediate : c->n_heads * c->head_dim;
    if (dmax < c->hidden) dmax = c->hidden;
    if (s == ZF_OK && !(H = zf_malloc(sizeof(float) * (size_t)(dmax * dmax), "Hessian"))) s = ZF_ERR_NOMEM;
    /* 1. one full-precision pass: partial Hessians of every unfinished block the cache lacks; the pass stops
     *    after the last such block */
    bool *cached = zf_calloc((size_t)nb + 1, sizeof *cached, "cache hits");
    double *t_fwd = zf_calloc((size_t)nb + 1, sizeof *t_fwd, "pass times");
    double *t_red = zf_calloc((size_t)(nunits ? nunits : 1), sizeof *t_red, "reduction times");
    if (s == ZF_OK && (!cached || !t_fwd || !t_red)) s = ZF_ERR_NOMEM;
    s = zf_comm_agree(s);
    int64_t pass_end = first;
    for (int64_t b = first; s == ZF_OK && b < nb; b++) {
        s = cache_agree(&m->hcache, c, b, 0, ZF_NGROUP, &cached[b]);
        if (!cached[b]) pass_end = b + 1;
    }
    for (int64_t b = 0; s == ZF_OK && b < pass_end; b++) {
        double tb = zf_now();
        bool capture = b >= first && !cached[b];
        s = zf_block_load(c, m->st, b, &fp);
        if (s == ZF_OK) s = zf_block_check_finite(c, &fp, b);
        capture_ctx cap = {0};
        if (capture) {
            for (int g = 0; s == ZF_OK && g < ZF_NGROUP; g++)
                s = zf_bhess_init(m->be, &hs[(b - first) * ZF_NGROUP + g], zf_group_in(c, (zf_group)g),
                                  cfg->hessian_fp64);
            cap.want = (1u << ZF_NGROUP) - 1;
            for (int g = 0; g < ZF_NGROUP; g++) cap.h[g] = hs[(b - first) * ZF_NGROUP + g];
        }
        if (s == ZF_OK && nwin > 0) s = forward_windows(m->be, c, &fp, x, nwin, seq, capture ? &cap : NULL);
        if (capture)
            for (int g = 0; g < ZF_NGROUP; g++) hs[(b - first) * ZF_NGROUP + g] = cap.h[g];
        zf_block_free(&fp);
        t_fwd[b] = (zf_now() - tb) / ZF_NGROUP;
        s = zf_comm_agree(s);
        if (s == ZF_OK && b + 1 < pass_end) {
            char where[96];
            snprintf(where, sizeof where, "in the calibration pass (block %lld of %lld; nothing quantized yet)",
                     (long long)b + 1, (long long)nb);
            s = agreed_stop(hooks, where);
        }
    }
    /* 2. owners by cost over all units */
    if (s == ZF_OK) s = zf_assign_owners(c, nb - first, w->size, owner);
    s = zf_comm_agree(s);
    if (s == ZF_OK)
        zf_log_info("calibration pass done, elapsed %.1fs; quantizing %lld units (block, group) on %d rank%s",
                    zf_now() - t0, (long long)nunits, w->size, w->size > 1 ? "s" : "");
    /* 3. every unit's sums to its owner (collectives only; the other ranks drop theirs) */
    for (int64_t u = 0; s == ZF_OK && u < nunits; u++) {
        if (cached[first + u / ZF_NGROUP]) continue;
        double tu = zf_now();
        s = reduce_hessian(&hs[u], owner[u]);
        t_red[u] = zf_now() - tu;
        if (w->rank != owner[u]) zf_bhess_free(&hs[u]);
    }
    /* 4. owners quantize their units (H reduced, or read from the cache) with the full-precision weights, all
     *    at the same time: no collective until every owner is done. A stop request ends a rank's units after the
     *    current one; its remaining reduced Hessians still go to the cache. */
    double *unit_done = zf_calloc((size_t)(nunits ? nunits : 1), sizeof *unit_done, "units done");
    if (s == ZF_OK && !unit_done) s = ZF_ERR_NOMEM;
    bool stopping = false;
    int64_t loaded = -1;
    for (int64_t u = 0; s == ZF_OK && u < nunits; u++) {
        if (w->rank != owner[u]) continue;
        int64_t b = first + u / ZF_NGROUP;
        zf_group g = (zf_group)(u % ZF_NGROUP);
        if (!stopping && hooks && hooks->stop_requested) stopping = hooks->stop_requested(hooks->ctx) != 0;
        if (stopping) {
            if (!cached[b] && m->hcache.enabled)
                s = owner_hessian(&m->hcache, true, false, b, g, zf_group_in(c, g), &hs[u], t_fwd[b] + t_red[u], H);
            zf_bhess_free(&hs[u]);
            continue;
        }
        s = owner_hessian(&m->hcache, true, cached[b], b, g, zf_group_in(c, g), &hs[u], t_fwd[b] + t_red[u], H);
        zf_bhess_free(&hs[u]);
        if (s == ZF_OK && b != loaded) {
            zf_block_free(&fp);
            loaded = -1;
            s = zf_block_load(c, m->st, b, &fp);
            if (s == ZF_OK) s = zf_block_check_finite(c, &fp, b);
            if (s == ZF_OK) loaded = b;
        }
        if (s == ZF_OK) s = compute_group(m->be, cfg, c, b, g, H, &fp, &gr[u]);
        if (s == ZF_OK) {
            unit_done[u] = 1;
            zf_log_info("block %lld %s quantized, elapsed %.1fs", (long long)b + 1, zf_group_name(g), zf_now() - t0);
        }
    }
    zf_block_free(&fp);
    free(cached);
    free(t_fwd);
    free(t_red);
    s = zf_comm_agree(s);
    /* 5. every rank installs the blocks in order, up to the first with an unfinished unit (after a stop); a rank
     *    that fails must not leave the others in a broadcast */
    if (s == ZF_OK) s = zf_comm_allreduce_f64(unit_done, nunits);
    int64_t install_end = first;
    while (s == ZF_OK && install_end < nb) {
        bool complete = true;
        for (int g = 0; g < ZF_NGROUP; g++) complete = complete && unit_done[(install_end - first) * ZF_NGROUP + g] > 0;
        if (!complete) break;
        install_end++;
    }
    free(unit_done);
    for (int64_t b = first; s == ZF_OK && b < install_end; b++) {
        zf_qblock *qb = &m->blocks[b];
        s = zf_block_load(c, m->st, b, &qb->folded);
        if (s == ZF_OK && cfg->eval_unfolded) s = zf_block_copy(c, &qb->folded, &qb->unfolded);
        s = zf_comm_agree(s);
        for (int g = 0; s == ZF_OK && g < ZF_NGROUP; g++) {
            int64_t u = (b - first) * ZF_NGROUP + g;
            s = bcast_group(&gr[u], owner[u]);
            if (s == ZF_OK) s = apply_group(cfg, c, b, (zf_group)g, &gr[u], &qb->folded, qb);
            zf_qresult_free(&gr[u].res);
            s = zf_comm_agree(s);
        }
        qb->seconds = zf_now() - t0;
        if (s == ZF_OK && hooks && hooks->block_done) {
            s = zf_comm_agree(hooks->block_done(hooks->ctx, b, qb));
            if (!cfg->eval_unfolded) zf_qblock_release(qb);
        }
        double before = 0, after = 0;
        for (int l = 0; l < ZF_NLIN; l++) {
            before += qb->dl_rtn[l];
            after += qb->dl[l];
        }
        if (s == ZF_OK)
            zf_log_info("block %lld/%lld  elapsed %.1fs  ΔL after/before %.4g/%.4g = %.3f (parallel schedule)",
                        (long long)b + 1, (long long)nb, zf_now() - t0, after, before,
                        before > 0 ? after / before : 0.0);
    }
    if (s == ZF_OK && install_end < nb)
        s = zf_fail(ZF_ERR_INTERRUPTED, "stopped by a signal while quantizing (parallel schedule): the first %lld of %lld "
                    "blocks are written; run the same command again to resume", (long long)install_end, (long long)nb);
    for (int64_t u = 0; u < nunits; u++) {
        zf_bhess_free(&hs[u]);
        zf_qresult_free(&gr[u].res);
    }
    zf_block_free(&fp);
    free(hs);
    free(gr);
    free(owner);
    free(H);
    return s;
}

/* The model fingerprint for the Hessian cache's key, with the arithmetic of the forward that produced the
 * Hessians' inputs when it is not the CPU's (another backend, weight dtype or TF32 gives other Hessians). */
static uint64_t hessian_source_fingerprint(const zf_job_config *cfg, const zf_qmodel *m)
{
    uint64_t fp = zf_st_fingerprint(m->st);
    if (cfg->backend != ZF_BACKEND_CUDA) return fp;
    uint64_t v[3] = {fp, (uint64_t)cfg->gpu_forward_dtype, (uint64_t)cfg->gpu_tf32};
    return XXH64(v, sizeof v, 0x63756461); /* "cuda" */
}

zf_status zf_qmodel_quantize(const zf_job_config *cfg, zf_qmodel *m, const zf_run_hooks *hooks)
{
    const zf_model_config *c = &m->model;
    const zf_comm *w = zf_comm_world();
    int64_t nall = cfg->calib_windows, seq = m->calib_seq, d = c->hidden, lo, hi;
    /* every rank draws the same windows and keeps its contiguous share (data parallel) */
    zf_comm_split(nall, w->rank, w->size, &lo, &hi);
    int64_t nwin = hi - lo;
    zf_tokens tok = {0};
    int64_t *starts = NULL;
    int32_t *ids = NULL;
    float *x = NULL, *scratch = NULL;
    double t0 = zf_now();
    /* a rank that fails here goes on to the agreement below like the others */
    zf_status s = zf_tokens_read(cfg->calib_file, c->vocab, &tok);
    if (s == ZF_OK) {
        starts = zf_malloc(sizeof(int64_t) * (size_t)nall, "calibration windows");
        ids = zf_malloc(sizeof(int32_t) * (size_t)(nwin * seq), "calibration tokens");
        x = zf_malloc(sizeof(float) * (size_t)(nwin * seq * d), "calibration activations");
        scratch = zf_malloc(sizeof(float) * (size_t)(nwin * seq * d), "calibration activations (copy)");
        if (!starts || !ids || !x || !scratch) s = ZF_ERR_NOMEM;
        if (s == ZF_OK) s = zf_calibration_windows((int64_t)tok.count, seq, nall, (uint64_t)cfg->seed, starts);
        if (s != ZF_OK) zf_fail_context(s, "%s", cfg->calib_file);
    }
    for (int64_t i = 0; s == ZF_OK && i < nwin; i++)
        memcpy(ids + i * seq, tok.ids + starts[lo + i], sizeof(int32_t) * (size_t)seq);
    if (s == ZF_OK && nwin > 0) s = zf_embed(c, &m->globals, ids, nwin, seq, x);
    if (s == ZF_OK)
        s = zf_hcache_open(&m->hcache, cfg->calib_cache,
                           zf_hcache_key(hessian_source_fingerprint(cfg, m), tok.ids, starts, nall, seq,
                                         cfg->hessian_fp64, w->size));
    s = zf_comm_agree(s);
    int64_t resume_from = hooks ? hooks->resume_from : 0;
    if (s == ZF_OK && cfg->schedule == ZF_SCHEDULE_PARALLEL) {
        /* the finished blocks are only read back for their statistics: inputs come from the FP model */
        for (int64_t b = 0; s == ZF_OK && b < resume_from; b++) {
            s = zf_comm_agree(hooks->load_block(hooks->ctx, b, &m->blocks[b]));
            zf_qblock_release(&m->blocks[b]);
        }
        if (s == ZF_OK) s = quantize_parallel(cfg, m, hooks, x, nwin, t0);
    }
    for (int64_t b = 0; s == ZF_OK && cfg->schedule == ZF_SCHEDULE_SEQUENTIAL && b < c->n_layers; b++) {
        double tb = zf_now();
        zf_qblock *qb = &m->blocks[b];
        if (b < resume_from) {
            s = zf_comm_agree(hooks->load_block(hooks->ctx, b, qb));
            if (s == ZF_OK && nwin > 0) s = forward_windows(m->be, c, &qb->folded, x, nwin, seq, NULL);
            zf_qblock_release(qb);
            s = zf_comm_agree(s);
            if (s == ZF_OK) zf_log_info("block %lld/%lld  resumed from its shard", (long long)b + 1, (long long)c->n_layers);
            continue;
        }
        double bytes0 = comm_bytes();
        s = quantize_block(cfg, m, b, x, scratch, nwin);
        qb->comm_bytes = comm_bytes() - bytes0;
        qb->seconds = zf_now() - tb;
        if (s == ZF_OK && hooks && hooks->block_done) {
            s = zf_comm_agree(hooks->block_done(hooks->ctx, b, qb));
            if (!cfg->eval_unfolded) zf_qblock_release(qb);
        }
        if (s != ZF_OK) break;
        double before = 0, after = 0;
        int retries = 0;
        for (int l = 0; l < ZF_NLIN; l++) {
            before += qb->dl_rtn[l];
            after += qb->dl[l];
            retries += qb->damp_retries[l];
        }
        double elapsed = zf_now() - t0;
        double eta = elapsed / (double)(b + 1 - resume_from) * (double)(c->n_layers - b - 1);
        zf_log_info("block %lld/%lld  %.2fs  elapsed %.1fs  eta %.1fs  ΔL after/before %.4g/%.4g = %.3f%s%s",
                    (long long)b + 1, (long long)c->n_layers, qb->seconds, elapsed, eta, after, before,
                    before > 0 ? after / before : 0.0, retries ? "  (damping retried)" : "",
                    w->size > 1 ? comm_note(qb->comm_bytes, zf_block_comm_bytes_model(c, w->size, cfg->hessian_fp64 ? 8 : 4)) : "");
        if (b + 1 < c->n_layers) {
            char where[64];
            snprintf(where, sizeof where, "after block %lld of %lld", (long long)b + 1, (long long)c->n_layers);
            s = agreed_stop(hooks, where);
        }
    }
    m->quant_seconds = zf_now() - t0;
    if (s == ZF_OK && m->hcache.enabled) {
        double tally[3] = {m->hcache.hits, m->hcache.stores, m->hcache.seconds_saved};
        s = zf_comm_allreduce_f64(tally, 3);
        m->hcache.hits = (int)tally[0];
        m->hcache.stores = (int)tally[1];
        m->hcache.seconds_saved = tally[2];
        zf_log_info("Hessian cache %s: %d read (%.1f s of compute saved), %d written", m->hcache.dir,
                    m->hcache.hits, m->hcache.seconds_saved, m->hcache.stores);
    }
    zf_tokens_free(&tok);
    free(starts);
    free(ids);
    free(x);
    free(scratch);
    return s;
}

static const zf_shard_tensor_data *find_tensor(const zf_shard_data *d, const char *name)
{
    for (int i = 0; i < d->ntensors; i++)
        if (!strcmp(d->tensors[i].name, name)) return &d->tensors[i];
    return NULL;
}

zf_status zf_qblock_from_shard(const zf_model_config *c, int64_t b, const char *path, const zf_shard_data *d,
                               zf_qblock *qb)
{
    if (strcmp(d->kind, "block") || d->block != b)
        return zf_fail(ZF_ERR_INPUT, "%s: holds %s %lld, expected block %lld", path, d->kind, (long long)d->block,
                       (long long)b);
    ZF_TRY(zf_block_alloc(c, &qb->folded));
    for (int l = 0; l < ZF_NLIN; l++) {
        if (!zf_lin_present(c, (zf_lin)l)) continue;
        char name[256];
        zf_lin_tensor_prefix(c, b, (zf_lin)l, name, sizeof name);
        const zf_shard_linear_data *sl = NULL;
        for (int i = 0; i < d->nlin; i++)
            if (!strcmp(d->lin[i].name, name)) sl = &d->lin[i];
        if (!sl) return zf_fail(ZF_ERR_INPUT, "%s: no layer '%s'", path, name);
        if (sl->out != zf_lin_out(c, (zf_lin)l) || sl->in != zf_lin_in(c, (zf_lin)l))
            return zf_fail(ZF_ERR_INPUT, "%s: layer '%s' is [%lld, %lld], the model expects [%lld, %lld]", path, name,
                           (long long)sl->out, (long long)sl->in, (long long)zf_lin_out(c, (zf_lin)l),
                           (long long)zf_lin_in(c, (zf_lin)l));
        if (zf_lin_has_bias(c, (zf_lin)l) != (sl->bias != NULL))
            return zf_fail(ZF_ERR_INPUT, "%s: layer '%s' %s a bias, the model %s", path, name,
                           sl->bias ? "has" : "lacks", sl->bias ? "has none" : "has one");
        zf_qresult *r = &qb->lin[l];
        ZF_TRY(zf_qresult_alloc(r, sl->out, sl->in, sl->ngroups, sl->bits));
        memcpy(r->q, sl->q, (size_t)(sl->out * sl->in));
        memcpy(r->scale, sl->scale, sizeof(float) * (size_t)(sl->out * sl->ngroups));
        memcpy(r->zero, sl->zero, sizeof(float) * (size_t)(sl->out * sl->ngroups));
        memcpy(r->g_idx, sl->g_idx, sizeof(int32_t) * (size_t)sl->in);
        memcpy(r->zeta, sl->zeta, sizeof(float) * (size_t)sl->in);
        r->als_iters = qb->als_iters[l] = sl->als_iters;
        r->damp_used = qb->damp_used[l] = sl->damp_used;
        r->damp_retries = qb->damp_retries[l] = sl->damp_retries;
        r->dl_rtn = qb->dl_rtn[l] = sl->dl_before;
        r->dl = qb->dl[l] = sl->dl_after;
        deploy_weight(r, qb->folded.lin_w[l]);
        /* the fold factors are inside the stored scales: the deployed weight is what deq means here */
        memcpy(r->deq, qb->folded.lin_w[l], sizeof(float) * (size_t)(sl->out * sl->in));
        if (sl->bias) memcpy(qb->folded.lin_b[l], sl->bias, sizeof(float) * (size_t)sl->out);
    }
    for (int which = 0; which < 2; which++) {
        char prefix[200], name[256];
        zf_norm_tensor_prefix(c, b, which, prefix, sizeof prefix);
        for (int part = 0; part < 2; part++) {
            float *dst = part ? qb->folded.norm_b[which] : qb->folded.norm_w[which];
            if (!dst) continue;
            snprintf(name, sizeof name, "%s.%s", prefix, part ? "bias" : "weight");
            const zf_shard_tensor_data *t = find_tensor(d, name);
            if (!t || t->ndim != 1 || t->shape[0] != c->hidden)
                return zf_fail(ZF_ERR_INPUT, "%s: '%s' missing or not [%lld]", path, name, (long long)c->hidden);
            memcpy(dst, t->data, sizeof(float) * (size_t)c->hidden);
        }
    }
    return zf_block_check_finite(c, &qb->folded, b);
}

zf_status zf_qmodel_folded_source(void *ctx, int64_t b, const zf_block_weights **out)
{
    zf_qmodel *m = ctx;
    *out = &m->blocks[b].folded;
    return ZF_OK;
}

zf_status zf_qmodel_unfolded_source(void *ctx, int64_t b, const zf_block_weights **out)
{
    zf_qmodel *m = ctx;
    if (!m->blocks[b].unfolded.lin_w[ZF_LIN_Q])
        return zf_fail(ZF_ERR_INTERNAL, "block %lld has no unfolded copy (eval.unfolded was off)", (long long)b);
    *out = &m->blocks[b].unfolded;
    return ZF_OK;
}
