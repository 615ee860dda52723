/* The quantization engine's entry: the model and backend of this rank, calibration inputs, the schedule, the
 * sources evaluation reads. */
#include "coordinator/pipeline.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/model_gptq.h"
#include "common/tokens.h"
#include "coordinator/comm.h"
#include "coordinator/gpucomm.h"
#include "coordinator/schedule.h"
#include "worker/forward.h"

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
    ZF_TRY(m->model.gptq ? zf_gptq_open_dequantized(cfg->model, &m->st) : zf_st_open(cfg->model, &m->st));
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

void zf_qmodel_free(zf_qmodel *m)
{
    if (m->blocks)
        for (int64_t b = 0; b < m->model.n_layers; b++) zf_qblock_release(&m->blocks[b]);
    free(m->blocks);
    zf_globals_free(&m->globals);
    zf_st_close(m->st);
    /* NCCL before the device context it uses; both before MPI_Finalize (the caller's) */
    zf_gpucomm_finalize();
    zf_backend_close(m->be);
    memset(m, 0, sizeof *m);
}

/* The model fingerprint for the Hessian cache's key, with the arithmetic of the forward that produced the
 * Hessians' inputs when it is not the CPU's (another backend, weight dtype or TF32 gives other Hessians). */
static uint64_t hessian_source_fingerprint(const zf_job_config *cfg, const zf_qmodel *m)
{
    uint64_t fp = zf_st_fingerprint(m->st);
    if (cfg->hessian_reduce_fp32) fp = XXH64(&fp, sizeof fp, 0x66703332); /* "fp32": sums rounded on the wire */
    if (cfg->calib_bf16) fp = XXH64(&fp, sizeof fp, 0x62663136);          /* "bf16": inputs rounded between blocks */
    if (cfg->backend != ZF_BACKEND_CUDA) return fp;
    uint64_t v[3] = {fp, (uint64_t)cfg->gpu_forward_dtype, (uint64_t)cfg->gpu_tf32};
    return XXH64(v, sizeof v, 0x63756461); /* "cuda" */
}

/* This rank's calibration inputs: its contiguous share of the windows every rank draws alike (data parallel),
 * embedded. */
typedef struct {
    zf_tokens tok;
    int64_t *starts;             /* [nall] every rank's windows */
    int32_t *ids;
    zf_acts x;
    int64_t nall, lo, nwin;
} calib_inputs;

/* Reads and embeds this rank's windows and opens the Hessian cache under their key. A rank that fails here goes
 * on to the caller's agreement like the others. */
static zf_status calib_open(const zf_job_config *cfg, zf_qmodel *m, calib_inputs *ci)
{
    const zf_model_config *c = &m->model;
    const zf_comm *w = zf_comm_world();
    int64_t seq = m->calib_seq, d = c->hidden, hi;
    ci->nall = cfg->calib_windows;
    zf_comm_split(ci->nall, w->rank, w->size, &ci->lo, &hi);
    ci->nwin = hi - ci->lo;
    int64_t nwin = ci->nwin;
    zf_status s = zf_tokens_read(cfg->calib_file, c->vocab, &ci->tok);
    if (s == ZF_OK) {
        ci->starts = zf_malloc(sizeof(int64_t) * (size_t)ci->nall, "calibration windows");
        ci->ids = zf_malloc(sizeof(int32_t) * (size_t)(nwin * seq), "calibration tokens");
        if (!ci->starts || !ci->ids) s = ZF_ERR_NOMEM;
        if (s == ZF_OK) s = zf_acts_init(&ci->x, nwin, seq, d, cfg->calib_bf16);
        if (s == ZF_OK && cfg->calib_in_order) /* the windows were drawn as the text was tokenized (C4 preset) */
            for (int64_t i = 0; i < ci->nall; i++) ci->starts[i] = i * seq;
        else if (s == ZF_OK)
            s = zf_calibration_windows((int64_t)ci->tok.count, seq, ci->nall, (uint64_t)cfg->seed, ci->starts);
        if (s != ZF_OK) zf_fail_context(s, "%s", cfg->calib_file);
    }
    for (int64_t i = 0; s == ZF_OK && i < nwin; i++)
        memcpy(ci->ids + i * seq, ci->tok.ids + ci->starts[ci->lo + i], sizeof(int32_t) * (size_t)seq);
    if (s == ZF_OK) s = zf_acts_embed(&ci->x, c, &m->globals, ci->ids);
    if (s == ZF_OK)
        s = zf_hcache_open(&m->hcache, cfg->calib_cache,
                           zf_hcache_key(hessian_source_fingerprint(cfg, m), ci->tok.ids, ci->starts, ci->nall, seq,
                                         cfg->hessian_fp64, w->size));
    return s;
}

static void calib_free(calib_inputs *ci)
{
    zf_tokens_free(&ci->tok);
    free(ci->starts);
    free(ci->ids);
    zf_acts_free(&ci->x);
}

/* Every rank's cache reads and writes, summed, in the log. */
static zf_status hcache_tally(zf_hcache *hc)
{
    int64_t counts[2] = {hc->hits, hc->stores};
    ZF_TRY(zf_comm_sum_i64(counts, 2));
    ZF_TRY(zf_comm_allreduce_f64(&hc->seconds_saved, 1));
    hc->hits = (int)counts[0];
    hc->stores = (int)counts[1];
    zf_log_info("Hessian cache %s: %d read (%.1f s of compute saved), %d written", hc->dir, hc->hits,
                hc->seconds_saved, hc->stores);
    return ZF_OK;
}

zf_status zf_qmodel_quantize(const zf_job_config *cfg, zf_qmodel *m, const zf_run_hooks *hooks)
{
    calib_inputs ci = {0};
    double t0 = zf_now();
    zf_status s = zf_comm_agree(calib_open(cfg, m, &ci));
    zf_globals_free(&m->globals); /* the windows are embedded */
    if (s == ZF_OK && cfg->schedule == ZF_SCHEDULE_PARALLEL)
        s = zf_schedule_parallel(cfg, m, hooks, &ci.x, t0);
    else if (s == ZF_OK && cfg->schedule == ZF_SCHEDULE_SEQUENTIAL)
        s = zf_schedule_sequential(cfg, m, hooks, &ci.x, t0);
    m->quant_seconds = zf_now() - t0;
    if (s == ZF_OK && m->hcache.enabled) s = hcache_tally(&m->hcache);
    calib_free(&ci);
    return s;
}

zf_status zf_qmodel_globals(zf_qmodel *m, const zf_model_globals **g)
{
    if (!m->globals.embed) ZF_TRY(zf_globals_load(&m->model, m->st, &m->globals));
    *g = &m->globals;
    return ZF_OK;
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
