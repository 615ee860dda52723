/* The parallel schedule: one full-precision calibration pass, then every (block, group) unit quantized at once
 * by its owner rank, and the results installed block by block in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "coordinator/comm.h"
#include "coordinator/schedule.h"

/* One run of the schedule over the unfinished blocks [first, nb); unit u is block first + u / ZF_NGROUP, group
 * u % ZF_NGROUP. */
typedef struct {
    const zf_job_config *cfg;
    zf_qmodel *m;
    const zf_run_hooks *hooks;
    int64_t nb, first, nunits;
    float **H;                   /* [nunits] the owner's reduced Hessian from the pass (NULL elsewhere, or cached) */
    zf_group_result *gr;         /* [nunits] */
    int *owner;                  /* [nunits] */
    bool *cached;                /* [nb] every group of the block is in the Hessian cache */
    double *t_fwd;               /* [nb] pass seconds per group */
    double *t_red;               /* [nunits] reduction seconds */
    int64_t *unit_done;           /* [nunits] 1 where the owner quantized the unit, summed over ranks */
    double t0;
} par_run;

static void *units_alloc(int64_t n, size_t size, const char *what)
{
    return zf_calloc((size_t)(n ? n : 1), size, what);
}

static zf_status par_alloc(par_run *p)
{
    p->H = units_alloc(p->nunits, sizeof *p->H, "owned Hessians");
    p->gr = units_alloc(p->nunits, sizeof *p->gr, "results of every block");
    p->owner = units_alloc(p->nunits, sizeof *p->owner, "unit owners");
    p->unit_done = units_alloc(p->nunits, sizeof *p->unit_done, "units done");
    zf_status s = p->H && p->gr && p->owner && p->unit_done ? ZF_OK : ZF_ERR_NOMEM;
    p->cached = zf_calloc((size_t)p->nb + 1, sizeof *p->cached, "cache hits");
    p->t_fwd = zf_calloc((size_t)p->nb + 1, sizeof *p->t_fwd, "pass times");
    p->t_red = units_alloc(p->nunits, sizeof *p->t_red, "reduction times");
    if (s == ZF_OK && (!p->cached || !p->t_fwd || !p->t_red)) s = ZF_ERR_NOMEM;
    return s;
}

/* The owner's H of unit u finalized from its reduced sums (and stored in the cache); the sums are freed. */
static zf_status keep_owned(par_run *p, int64_t u, zf_bhess *h)
{
    const zf_model_config *c = &p->m->model;
    int64_t b = p->first + u / ZF_NGROUP, dim = zf_group_in(c, (zf_group)(u % ZF_NGROUP));
    p->H[u] = zf_malloc(sizeof(float) * (size_t)(dim * dim), "owned Hessian");
    if (!p->H[u]) return ZF_ERR_NOMEM;
    return zf_sched_owner_hessian(&p->m->hcache, true, false, b, (zf_group)(u % ZF_NGROUP), dim, h, false,
                                  p->t_fwd[b] + p->t_red[u], p->H[u]);
}

/* Forwards the windows through full-precision block b, capturing its partial Hessians unless it is finished or
 * cached, and reduces each group's sums to its owner at once: a rank holds one block's partial sums and the
 * Hessians it owns, never every block's. */
static zf_status pass_block(par_run *p, int64_t b, zf_acts *x)
{
    const zf_model_config *c = &p->m->model;
    const zf_comm *w = zf_comm_world();
    zf_block_weights fp = {0};
    zf_bhess h[ZF_NGROUP] = {0};
    double tb = zf_now();
    bool capture = b >= p->first && !p->cached[b];
    zf_status s = zf_block_load(c, p->m->st, b, &fp);
    if (s == ZF_OK) s = zf_block_check_finite(c, &fp, b);
    for (int g = 0; capture && s == ZF_OK && g < ZF_NGROUP; g++)
        s = zf_bhess_init(p->m->be, &h[g], zf_group_in(c, (zf_group)g), p->cfg->hessian_fp64);
    if (s == ZF_OK) s = zf_acts_forward(x, p->m->be, c, b, &fp, capture ? h : NULL, (1u << ZF_NGROUP) - 1, true);
    zf_block_free(&fp);
    p->t_fwd[b] = (zf_now() - tb) / ZF_NGROUP;
    s = zf_comm_agree(s);
    /* an owner's failure to keep its Hessian waits for the end of the block's reductions, which every rank enters */
    zf_status kept = ZF_OK;
    for (int g = 0; capture && s == ZF_OK && g < ZF_NGROUP; g++) {
        int64_t u = (b - p->first) * ZF_NGROUP + g;
        double tu = zf_now();
        s = zf_sched_reduce_hessian(&h[g], p->owner[u], p->cfg->hessian_reduce_fp32, NULL);
        p->t_red[u] = zf_now() - tu;
        if (s == ZF_OK && kept == ZF_OK && w->rank == p->owner[u]) kept = keep_owned(p, u, &h[g]);
        zf_bhess_free(&h[g]);
    }
    for (int g = 0; g < ZF_NGROUP; g++) zf_bhess_free(&h[g]);
    return s == ZF_OK ? zf_comm_agree(kept) : s;
}

/* 1. One full-precision pass: the Hessians of every unfinished block the cache lacks, each reduced to its owner
 *    after its block; the pass stops after the last such block. */
static zf_status calibration_pass(par_run *p, zf_acts *x)
{
    zf_status s = ZF_OK;
    int64_t pass_end = p->first;
    for (int64_t b = p->first; s == ZF_OK && b < p->nb; b++) {
        s = zf_sched_cache_agree(&p->m->hcache, &p->m->model, b, 0, ZF_NGROUP, &p->cached[b]);
        if (!p->cached[b]) pass_end = b + 1;
    }
    for (int64_t b = 0; s == ZF_OK && b < pass_end; b++) {
        s = pass_block(p, b, x);
        if (s == ZF_OK && b + 1 < pass_end) {
            char where[96];
            snprintf(where, sizeof where, "in the calibration pass (block %lld of %lld; nothing quantized yet)",
                     (long long)b + 1, (long long)p->nb);
            s = zf_sched_agreed_stop(p->hooks, where);
        }
    }
    return s;
}

/* Owners by cost over all units, before the pass that reduces each block's sums to them. */
static zf_status assign_owners(par_run *p)
{
    return zf_comm_agree(zf_assign_owners(&p->m->model, p->nb - p->first, zf_comm_world()->size, p->owner));
}

/* Loads full-precision block b into fp unless it is there already (*loaded names the block fp holds, -1 none). */
static zf_status load_weights(const zf_qmodel *m, int64_t b, zf_block_weights *fp, int64_t *loaded)
{
    if (b == *loaded) return ZF_OK;
    zf_block_free(fp);
    *loaded = -1;
    ZF_TRY(zf_block_load(&m->model, m->st, b, fp));
    ZF_TRY(zf_block_check_finite(&m->model, fp, b));
    *loaded = b;
    return ZF_OK;
}

/* 2. Owners quantize their units (H from the pass, or read from the cache) with the full-precision weights, all
 *    at the same time: no collective until every owner is done. A stop request ends a rank's units after the
 *    current one (the pass has already put its Hessians in the cache when the cache is on). */
static zf_status quantize_owned(par_run *p)
{
    const zf_model_config *c = &p->m->model;
    const zf_run_hooks *hooks = p->hooks;
    zf_block_weights fp = {0};
    zf_status s = ZF_OK;
    bool stopping = false;
    int64_t loaded = -1;
    for (int64_t u = 0; s == ZF_OK && u < p->nunits; u++) {
        if (zf_comm_world()->rank != p->owner[u]) continue;
        int64_t b = p->first + u / ZF_NGROUP, dim = zf_group_in(c, (zf_group)(u % ZF_NGROUP));
        zf_group g = (zf_group)(u % ZF_NGROUP);
        if (!stopping && hooks && hooks->stop_requested) stopping = hooks->stop_requested(hooks->ctx) != 0;
        if (stopping) break;
        if (p->cached[b] && !(p->H[u] = zf_malloc(sizeof(float) * (size_t)(dim * dim), "cached Hessian")))
            s = ZF_ERR_NOMEM;
        if (s == ZF_OK && p->cached[b]) s = zf_sched_owner_hessian(&p->m->hcache, true, true, b, g, dim, NULL, false, 0, p->H[u]);
        if (s == ZF_OK) s = load_weights(p->m, b, &fp, &loaded);
        if (s == ZF_OK) s = zf_group_quantize(p->m->be, &p->cfg->quant, c, b, g, p->H[u], &fp, NULL, &p->gr[u]);
        free(p->H[u]);
        p->H[u] = NULL;
        if (s == ZF_OK) {
            p->unit_done[u] = 1;
            zf_log_info("block %lld %s quantized, elapsed %.1fs", (long long)b + 1, zf_group_name(g), zf_now() - p->t0);
        }
    }
    zf_block_free(&fp);
    return s;
}

/* The end of the blocks whose every unit is done, counted from the first. */
static int64_t complete_end(const par_run *p)
{
    int64_t end = p->first;
    while (end < p->nb) {
        bool complete = true;
        for (int g = 0; g < ZF_NGROUP; g++) complete = complete && p->unit_done[(end - p->first) * ZF_NGROUP + g] > 0;
        if (!complete) break;
        end++;
    }
    return end;
}

static void log_block(const par_run *p, int64_t b)
{
    const zf_qblock *qb = &p->m->blocks[b];
    zf_log_info("block %lld/%lld  elapsed %.1fs  %s (parallel schedule)", (long long)b + 1, (long long)p->nb,
                zf_now() - p->t0, zf_sched_dl_note(qb));
}

/* Every rank builds block b from the full-precision weights and its groups' results, then persists it; a rank
 * that fails must not leave the others in a broadcast. */
static zf_status install_block(par_run *p, int64_t b)
{
    const zf_model_config *c = &p->m->model;
    zf_qblock *qb = &p->m->blocks[b];
    zf_status s = zf_block_load(c, p->m->st, b, &qb->folded);
    if (s == ZF_OK && p->cfg->eval_unfolded) s = zf_block_copy(c, &qb->folded, &qb->unfolded);
    s = zf_comm_agree(s);
    for (int g = 0; s == ZF_OK && g < ZF_NGROUP; g++) {
        int64_t u = (b - p->first) * ZF_NGROUP + g;
        int64_t rows[2] = {0, zf_group_out(c, (zf_group)g)};
        s = zf_sched_bcast_group(&p->gr[u], 1, &p->owner[u], rows);
        if (s == ZF_OK) s = zf_group_install(c, p->cfg->quant.method, b, (zf_group)g, &p->gr[u], qb);
        zf_qresult_free(&p->gr[u].res);
        s = zf_comm_agree(s);
    }
    qb->seconds = zf_now() - p->t0;
    if (s == ZF_OK && p->hooks && p->hooks->block_done) {
        s = zf_comm_agree(p->hooks->block_done(p->hooks->ctx, b, qb));
        if (!p->cfg->eval_unfolded) zf_qblock_release(qb);
    }
    if (s == ZF_OK) log_block(p, b);
    return s;
}

/* 5. Every rank installs the blocks in order, up to the first with an unfinished unit (after a stop). */
static zf_status install_in_order(par_run *p, zf_status s)
{
    if (s == ZF_OK) s = zf_comm_sum_i64(p->unit_done, (int)p->nunits);
    int64_t install_end = s == ZF_OK ? complete_end(p) : p->first;
    for (int64_t b = p->first; s == ZF_OK && b < install_end; b++) s = install_block(p, b);
    if (s == ZF_OK && install_end < p->nb)
        s = zf_fail(ZF_ERR_INTERRUPTED, "stopped by a signal while quantizing (parallel schedule): the first %lld of %lld "
                    "blocks are written; run the same command again to resume", (long long)install_end, (long long)p->nb);
    return s;
}

static void par_free(par_run *p)
{
    for (int64_t u = 0; p->H && p->gr && u < p->nunits; u++) {
        free(p->H[u]);
        zf_qresult_free(&p->gr[u].res);
    }
    free(p->cached);
    free(p->t_fwd);
    free(p->t_red);
    free(p->unit_done);
    free(p->H);
    free(p->gr);
    free(p->owner);
}

/* Owners, then the pass with the Hessians reduced block by block, then quantization of all units, then the
 * in-order install. */
static zf_status run_units(par_run *p, zf_acts *x)
{
    zf_status s = zf_comm_agree(par_alloc(p));
    if (s == ZF_OK) s = assign_owners(p);
    if (s == ZF_OK) s = calibration_pass(p, x);
    if (s == ZF_OK)
        zf_log_info("calibration pass done, elapsed %.1fs; quantizing %lld units (block, group) on %d rank%s",
                    zf_now() - p->t0, (long long)p->nunits, zf_comm_world()->size, zf_comm_world()->size > 1 ? "s" : "");
    if (s == ZF_OK) s = quantize_owned(p);
    s = zf_comm_agree(s);
    return install_in_order(p, s);
}

zf_status zf_schedule_parallel(const zf_job_config *cfg, zf_qmodel *m, const zf_run_hooks *hooks, zf_acts *x,
                               double t0)
{
    int64_t first = hooks ? hooks->resume_from : 0;
    zf_status s = ZF_OK;
    /* the finished blocks are only read back for their statistics: inputs come from the FP model */
    for (int64_t b = 0; s == ZF_OK && b < first; b++) {
        s = zf_comm_agree(hooks->load_block(hooks->ctx, b, &m->blocks[b]));
        zf_qblock_release(&m->blocks[b]);
    }
    if (s != ZF_OK) return s;
    par_run p = {.cfg = cfg, .m = m, .hooks = hooks, .nb = m->model.n_layers, .first = first, .t0 = t0};
    p.nunits = (p.nb - first) * ZF_NGROUP;
    s = run_units(&p, x);
    par_free(&p);
    return s;
}
