/* The sequential schedule: block by block, each block's Hessians through the quantized blocks before it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "coordinator/comm.h"
#include "coordinator/exit_codes.h"
#include "coordinator/gpucomm.h"
#include "coordinator/parts.h"
#include "coordinator/schedule.h"

/* Payload bytes this rank has moved over MPI and NCCL. */
static double comm_bytes(void) { return zf_comm_bytes() + zf_gpucomm_bytes(); }

static const char *comm_note(double measured, int64_t predicted)
{
    static char buf[96];
    snprintf(buf, sizeof buf, "  comm %.2f MB (model %.2f MB)", measured / 1e6, (double)predicted / 1e6);
    return buf;
}

/* The row team of this rank (NULL where it quantizes whole groups alone), as the quantizer's callbacks. */
typedef struct {
    zf_team *team;
    bool started; /* past the team's agreed start: a failure now leaves the others inside a team collective */
} team_ctx;

static zf_status team_sum(void *ctx, double *v, int64_t n) { return zf_team_sum_f64(((team_ctx *)ctx)->team, v, n); }

static zf_status team_agree(void *ctx, zf_status local)
{
    team_ctx *t = ctx;
    zf_status s = zf_team_agree(t->team, local);
    t->started = s == ZF_OK;
    return s;
}

/* Group g's H on every rank of its team (the owner's reduced or cached one, then fp32 over the team), and this
 * rank's part of the group quantized into gr. A team failing after its start ends the job. */
static zf_status quantize_part(const zf_job_config *cfg, zf_qmodel *m, const zf_block_parts *parts, team_ctx *tc,
                               int64_t b, zf_group g, bool fp_pass, bool cached, zf_bhess *h, float *ready,
                               double seconds, zf_group_result *gr)
{
    const zf_model_config *c = &m->model;
    int rank = zf_comm_world()->rank, n = parts->n[g];
    bool owner = rank == parts->first[g];
    tc->started = false;
    int64_t dim = zf_group_in(c, g);
    float *H = ready ? ready : zf_malloc(sizeof(float) * (size_t)(dim * dim), "Hessian");
    zf_status s = H ? ZF_OK : ZF_ERR_NOMEM;
    if (s == ZF_OK && owner)
        s = zf_sched_owner_hessian(&m->hcache, fp_pass, cached, b, g, dim, h, ready != NULL, seconds, H);
    zf_bhess_free(h);
    zf_row_team rt = {team_sum, team_agree, tc};
    zf_row_part part = {0, zf_group_out(c, g), n > 1 ? &rt : NULL};
    if (n > 1) {
        int64_t hi;
        zf_part_rows(c, parts, g, rank - parts->first[g], &part.row0, &hi);
        part.rows = hi - part.row0;
        s = zf_team_agree(tc->team, s);
        if (s == ZF_OK) s = zf_team_bcast(tc->team, H, sizeof(float) * (size_t)(dim * dim), 0);
    }
    if (s == ZF_OK)
        s = zf_group_quantize(m->be, &cfg->quant, c, b, g, H, &m->blocks[b].folded, n > 1 ? &part : NULL, gr);
    free(H);
    if (s != ZF_OK && tc->started) {
        zf_log_error("%s; ending the job (the other ranks of this group's team cannot go on without this one)",
                     zf_last_error());
        zf_comm_abort(zf_exit_code(s));
    }
    return s;
}

/* Quantizes block b into m->blocks[b] and moves x through it. */
static zf_status quantize_block(const zf_job_config *cfg, zf_qmodel *m, const zf_block_parts *parts, team_ctx *tc,
                                int64_t b, zf_acts *x)
{
    const zf_model_config *c = &m->model;
    const zf_comm *w = zf_comm_world();
    zf_qblock *qb = &m->blocks[b];
    int64_t ntok = x->nwin * x->seq;
    zf_bhess hs[ZF_NGROUP] = {0};
    zf_group_result gr[ZF_NGROUP];
    memset(gr, 0, sizeof gr);
    zf_status s = zf_block_load(c, m->st, b, &qb->folded);
    if (s == ZF_OK) s = zf_block_check_finite(c, &qb->folded, b);
    if (s == ZF_OK && cfg->eval_unfolded) s = zf_block_copy(c, &qb->folded, &qb->unfolded);
    s = zf_comm_agree(s);
    /* Groups are processed in execution order; without true-sequential all Hessians come from one pass and
     * every owner quantizes its groups before any result is exchanged. */
    int first = 0;
    while (s == ZF_OK && first < ZF_NGROUP) {
        int last = cfg->true_sequential ? first + 1 : ZF_NGROUP;
        /* only the first pass of block 0 sees full-precision inputs through full-precision weights */
        bool fp_pass = b == 0 && first == 0, cached = false;
        if (fp_pass) s = zf_sched_cache_agree(&m->hcache, c, b, first, last, &cached);
        unsigned want = 0;
        for (int g = first; g < last; g++) want |= 1u << g;
        double t_pass = zf_now();
        /* accumulators only for this pass's groups: with true_sequential one group's at a time */
        for (int g = first; s == ZF_OK && !cached && g < last; g++) {
            int64_t dim = zf_group_in(c, g);
            s = zf_sched_capture_inputs(cfg, ntok, dim) ? zf_bhess_init_inputs(m->be, &hs[g], dim, ntok, cfg->hessian_fp64)
                                                        : zf_bhess_init(m->be, &hs[g], dim, cfg->hessian_fp64);
        }
        s = zf_comm_agree(s);
        if (s == ZF_OK && !cached) s = zf_comm_agree(zf_acts_forward(x, m->be, c, b, &qb->folded, hs, want, false));
        double t_fwd = (zf_now() - t_pass) / (last - first), t_red[ZF_NGROUP] = {0};
        float *ready[ZF_NGROUP] = {0}; /* owners' H reduced from stored inputs */
        /* every group's sums to its owner first (collectives only), so that the owners then quantize at once */
        for (int g = first; s == ZF_OK && !cached && g < last; g++) {
            double t0 = zf_now();
            int64_t dim = zf_group_in(c, g);
            bool owner = w->rank == parts->first[g], panels = hs[g].inputs && w->size > 1;
            if (panels && owner) ready[g] = zf_malloc(sizeof(float) * (size_t)(dim * dim), "Hessian");
            s = zf_comm_agree(panels && owner && !ready[g] ? ZF_ERR_NOMEM : ZF_OK);
            if (s == ZF_OK) s = zf_sched_reduce_hessian(&hs[g], parts->first[g], cfg->hessian_reduce_fp32, ready[g]);
            t_red[g] = zf_now() - t0;
            if (!owner || panels) zf_bhess_free(&hs[g]);
        }
        for (int g = first; g < last; g++)
            if (s == ZF_OK && zf_parts_member(parts, (zf_group)g, w->rank)) {
                s = quantize_part(cfg, m, parts, tc, b, (zf_group)g, fp_pass, cached, &hs[g], ready[g],
                                  t_fwd + t_red[g], &gr[g]);
                ready[g] = NULL; /* quantize_part's now */
            }
        for (int g = first; g < last; g++) free(ready[g]);
        s = zf_comm_agree(s);
        /* a rank that fails to install a group must not leave the others in the next group's broadcasts */
        for (int g = first; s == ZF_OK && g < last; g++) {
            int np = parts->n[g], *roots = zf_malloc(sizeof(int) * (size_t)np, "part roots");
            int64_t *row0 = zf_malloc(sizeof(int64_t) * (size_t)(np + 1), "part rows");
            s = zf_comm_agree(roots && row0 ? ZF_OK : ZF_ERR_NOMEM);
            for (int i = 0; s == ZF_OK && i < np; i++) {
                roots[i] = parts->first[g] + i;
                zf_part_rows(c, parts, (zf_group)g, i, &row0[i], &row0[i + 1]);
            }
            if (s == ZF_OK) s = zf_sched_bcast_group(&gr[g], np, roots, row0);
            free(roots);
            free(row0);
            if (s == ZF_OK) s = zf_group_install(c, cfg->quant.method, b, (zf_group)g, &gr[g], qb);
            zf_qresult_free(&gr[g].res);
            s = zf_comm_agree(s);
        }
        first = last;
    }
    /* the next block's inputs come through the quantized block */
    if (s == ZF_OK) s = zf_acts_forward(x, m->be, c, b, &qb->folded, NULL, 0, true);
    for (int g = 0; g < ZF_NGROUP; g++) {
        zf_bhess_free(&hs[g]);
        zf_qresult_free(&gr[g].res);
    }
    return zf_comm_agree(s);
}

/* Which ranks quantize which rows of each group, once per run. */
static void log_parts(const zf_model_config *c, const zf_block_parts *p)
{
    char line[512];
    size_t n = 0;
    for (int g = 0; g < ZF_NGROUP && n < sizeof line; g++)
        n += (size_t)snprintf(line + n, sizeof line - n, "%s%s: ranks %d-%d (%lld rows each)", g ? ", " : "",
                              zf_group_name((zf_group)g), p->first[g], p->first[g] + p->n[g] - 1,
                              (long long)((zf_group_out(c, (zf_group)g) + p->n[g] - 1) / p->n[g]));
    zf_log_info("groups split by rows across teams of ranks: %s", line);
}

/* A finished block read back from its shard: x moves through it as through a computed one. */
static zf_status resume_block(zf_qmodel *m, const zf_run_hooks *hooks, int64_t b, zf_acts *x)
{
    zf_qblock *qb = &m->blocks[b];
    zf_status s = zf_comm_agree(hooks->load_block(hooks->ctx, b, qb));
    if (s == ZF_OK) s = zf_acts_forward(x, m->be, &m->model, b, &qb->folded, NULL, 0, true);
    zf_qblock_release(qb);
    s = zf_comm_agree(s);
    if (s == ZF_OK)
        zf_log_info("block %lld/%lld  resumed from its shard", (long long)b + 1, (long long)m->model.n_layers);
    return s;
}

static void log_block(const zf_job_config *cfg, const zf_qmodel *m, const zf_block_parts *parts, int64_t b,
                      int64_t nwin, int64_t resume_from, double t0)
{
    const zf_model_config *c = &m->model;
    const zf_qblock *qb = &m->blocks[b];
    const zf_comm *w = zf_comm_world();
    int retries = 0;
    for (int l = 0; l < ZF_NLIN; l++) retries += qb->damp_retries[l];
    double elapsed = zf_now() - t0;
    double eta = elapsed / (double)(b + 1 - resume_from) * (double)(c->n_layers - b - 1);
    zf_log_info("block %lld/%lld  %.2fs  elapsed %.1fs  eta %.1fs  %s%s%s", (long long)b + 1, (long long)c->n_layers,
                qb->seconds, elapsed, eta, zf_sched_dl_note(qb), retries ? "  (damping retried)" : "",
                w->size > 1 ? comm_note(qb->comm_bytes, zf_block_comm_bytes_model(c, cfg, parts, w->size, w->rank,
                                                                                   nwin * m->calib_seq))
                            : "");
}

zf_status zf_schedule_sequential(const zf_job_config *cfg, zf_qmodel *m, const zf_run_hooks *hooks, zf_acts *x,
                                 double t0)
{
    const zf_model_config *c = &m->model;
    int64_t resume_from = hooks ? hooks->resume_from : 0;
    const zf_comm *w = zf_comm_world();
    /* the same spread for every block: the teams are formed once */
    zf_block_parts parts;
    team_ctx tc = {0};
    zf_status s = zf_comm_agree(zf_assign_parts(c, &cfg->quant, w->size, cfg->split_rows, &parts));
    if (s == ZF_OK) s = zf_comm_agree(zf_team_create(zf_parts_team_of(&parts, w->rank), &tc.team));
    bool teams = false;
    for (int g = 0; g < ZF_NGROUP; g++) teams |= parts.n[g] > 1;
    if (s == ZF_OK && teams) log_parts(c, &parts);
    for (int64_t b = 0; s == ZF_OK && b < c->n_layers; b++) {
        if (b < resume_from) {
            s = resume_block(m, hooks, b, x);
            continue;
        }
        double tb = zf_now(), bytes0 = comm_bytes();
        zf_qblock *qb = &m->blocks[b];
        s = quantize_block(cfg, m, &parts, &tc, b, x);
        qb->comm_bytes = comm_bytes() - bytes0;
        qb->seconds = zf_now() - tb;
        if (s == ZF_OK && hooks && hooks->block_done) {
            s = zf_comm_agree(hooks->block_done(hooks->ctx, b, qb));
            if (!cfg->eval_unfolded) zf_qblock_release(qb);
        }
        if (s != ZF_OK) break;
        log_block(cfg, m, &parts, b, x->nwin, resume_from, t0);
        if (b + 1 < c->n_layers) {
            char where[64];
            snprintf(where, sizeof where, "after block %lld of %lld", (long long)b + 1, (long long)c->n_layers);
            s = zf_sched_agreed_stop(hooks, where);
        }
    }
    zf_team_free(tc.team);
    return s;
}
