/* The steps both schedules share: owners by cost, Hessians to owners, results to every rank, agreed stops. */
#include "coordinator/schedule.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "coordinator/comm.h"
#include "coordinator/exit_codes.h"
#include "coordinator/gpucomm.h"
#include "coordinator/parts.h"
#include "worker/hessian.h"

/* A failed NCCL collective leaves the other ranks inside it until their own timeout, or past it: they cannot
 * agree on the failure in step, so the job ends here (MPI_Abort) once the message is out. */
static zf_status gpucomm_or_abort(zf_status s)
{
    if (s == ZF_OK) return ZF_OK;
    zf_log_error("%s; ending the job", zf_last_error());
    zf_comm_abort(ZF_EXIT_INTERNAL);
}

int64_t zf_sched_hessian_dim(const zf_model_config *c)
{
    int64_t dmax = c->intermediate > c->n_heads * c->head_dim ? c->intermediate : c->n_heads * c->head_dim;
    return dmax < c->hidden ? c->hidden : dmax;
}

/* Bulk data from owner to every rank: over NCCL when the ranks share a GPU communicator, else over MPI. */
static zf_status bcast_payload(void *buf, size_t bytes, int owner)
{
    if (zf_gpucomm_active()) return gpucomm_or_abort(zf_gpucomm_bcast_host(buf, bytes, owner));
    return zf_comm_bcast(buf, bytes, owner);
}

/* The codes as a bit stream: bits/8 bytes per weight on the wire instead of 1. */
static zf_status bcast_codes(uint8_t *q, int64_t n, int bits, int owner)
{
    int64_t nb = zf_codes_packed_bytes(n, bits);
    uint8_t *packed = zf_malloc((size_t)(nb > 0 ? nb : 1), "packed codes");
    ZF_TRY(zf_comm_agree(packed ? ZF_OK : ZF_ERR_NOMEM));
    bool mine = zf_comm_world()->rank == owner;
    if (mine) zf_codes_pack(q, n, bits, packed);
    zf_status s = bcast_payload(packed, (size_t)nb, owner);
    if (s == ZF_OK && !mine) zf_codes_unpack(packed, n, bits, q);
    free(packed);
    return s;
}

/* The statistics, identical on every part's rank, from the first part's. */
static zf_status bcast_stats(zf_group_result *gr, int root)
{
    zf_qresult *r = &gr->res;
    double meta[12] = {r->dl_rtn, r->dl, r->als_iters, r->damp_used, r->damp_retries, (double)r->dead_inputs,
                       gr->dl[0], gr->dl[1], gr->dl[2], gr->dl_rtn[0], gr->dl_rtn[1], gr->dl_rtn[2]};
    ZF_TRY(zf_comm_bcast(meta, sizeof meta, root));
    r->dl_rtn = meta[0];
    r->dl = meta[1];
    r->als_iters = (int)meta[2];
    r->damp_used = meta[3];
    r->damp_retries = (int)meta[4];
    r->dead_inputs = (int64_t)meta[5];
    for (int i = 0; i < 3; i++) {
        gr->dl[i] = meta[6 + i];
        gr->dl_rtn[i] = meta[9 + i];
    }
    return ZF_OK;
}

/* Sizes and statistics go over MPI, the arrays as bulk data: codes, grids and ζ, from which every rank rebuilds
 * the weights (the owner's deq stays with it). */
zf_status zf_sched_bcast_group(zf_group_result *gr, int nparts, const int *roots, const int64_t *row0)
{
    const zf_comm *w = zf_comm_world();
    if (w->size == 1) return ZF_OK;
    int mine = -1;
    for (int i = 0; i < nparts; i++)
        if (roots[i] == w->rank) mine = i;
    zf_qresult *r = &gr->res, whole = {0};
    int64_t hdr[3] = {r->cols, r->ngroups, r->bits};
    ZF_TRY(zf_comm_bcast_i64(hdr, 3, roots[0]));
    int64_t rows = row0[nparts], cols = hdr[0], ng = hdr[1];
    /* a part's rank gathers into a new whole; the others receive into theirs; nobody may leave the payload
     * broadcasts early */
    zf_qresult *dst = nparts == 1 && mine == 0 ? r : &whole;
    zf_status s = zf_comm_agree(dst == r ? ZF_OK : zf_qresult_alloc_codes(dst, rows, cols, ng, (int)hdr[2]));
    if (s != ZF_OK) {
        zf_qresult_free(&whole);
        return s;
    }
    if (mine >= 0 && dst != r) {
        int64_t r0 = row0[mine];
        memcpy(dst->q + r0 * cols, r->q, (size_t)(r->rows * cols));
        memcpy(dst->scale + r0 * ng, r->scale, sizeof(float) * (size_t)(r->rows * ng));
        memcpy(dst->zero + r0 * ng, r->zero, sizeof(float) * (size_t)(r->rows * ng));
        memcpy(dst->g_idx, r->g_idx, sizeof(int32_t) * (size_t)cols);
        memcpy(dst->zeta, r->zeta, sizeof(float) * (size_t)cols);
    }
    for (int i = 0; s == ZF_OK && i < nparts; i++) {
        int64_t r0 = row0[i], nr = row0[i + 1] - row0[i];
        s = bcast_codes(dst->q + r0 * cols, nr * cols, dst->bits, roots[i]);
        if (s == ZF_OK) s = bcast_payload(dst->scale + r0 * ng, sizeof(float) * (size_t)(nr * ng), roots[i]);
        if (s == ZF_OK) s = bcast_payload(dst->zero + r0 * ng, sizeof(float) * (size_t)(nr * ng), roots[i]);
    }
    if (s == ZF_OK) s = bcast_payload(dst->g_idx, sizeof(int32_t) * (size_t)cols, roots[0]);
    if (s == ZF_OK) s = bcast_payload(dst->zeta, sizeof(float) * (size_t)cols, roots[0]);
    if (dst != r) {
        double keep[2] = {r->dl_rtn, r->dl};
        int keep_i[3] = {r->als_iters, r->damp_retries, (int)r->dead_inputs};
        double damp = r->damp_used;
        zf_qresult_free(r);
        *r = whole;
        r->dl_rtn = keep[0], r->dl = keep[1], r->damp_used = damp;
        r->als_iters = keep_i[0], r->damp_retries = keep_i[1], r->dead_inputs = keep_i[2];
    }
    return s == ZF_OK ? bcast_stats(gr, roots[0]) : s;
}

int zf_sched_hessian_wire_bytes(const zf_job_config *cfg)
{
    return cfg->hessian_fp64 && !cfg->hessian_reduce_fp32 ? 8 : 4;
}

/* fp64 sums reduced in fp32 pieces: every rank rounds its partial sums once; the owner adds the others' total to
 * its own part in double. */
static zf_status reduce_f64_as_f32(double *sum, int64_t n, int owner)
{
    enum { PIECE = 1 << 22 };
    bool root = zf_comm_world()->rank == owner;
    float *buf = zf_malloc(sizeof(float) * (size_t)(n < PIECE ? n : PIECE), "Hessian reduction piece");
    zf_status s = zf_comm_agree(buf ? ZF_OK : ZF_ERR_NOMEM);
    for (int64_t off = 0; s == ZF_OK && off < n; off += PIECE) {
        int64_t cnt = n - off < PIECE ? n - off : PIECE;
        for (int64_t i = 0; i < cnt; i++) buf[i] = root ? 0.0f : (float)sum[off + i];
        s = zf_comm_reduce_f32(buf, cnt, owner);
        for (int64_t i = 0; s == ZF_OK && root && i < cnt; i++) sum[off + i] += (double)buf[i];
    }
    free(buf);
    return s;
}

/* Stored inputs: every rank forms one column panel of its Gram matrix at a time, the panels are summed onto the
 * owner, which writes them into H; no rank ever holds the fp64 sums of the whole matrix. */
static zf_status reduce_panels(zf_bhess *h, int owner, bool fp32_wire, float *H)
{
    const int64_t d = h->dim, w = zf_hessian_panel_width(d);
    const bool root = zf_comm_world()->rank == owner;
    int64_t n = h->ntokens;
    ZF_TRY(zf_comm_sum_i64(&n, 1));
    double *P = zf_malloc(sizeof(double) * (size_t)(d * w), "Hessian panel");
    zf_status s = zf_comm_agree(P ? ZF_OK : ZF_ERR_NOMEM);
    const double f = n > 0 ? 2.0 / (double)n : 0.0;
    for (int64_t c0 = 0; s == ZF_OK && c0 < d; c0 += w) {
        int64_t c1 = c0 + w < d ? c0 + w : d, cnt = (d - c0) * (c1 - c0);
        s = zf_comm_agree(zf_hessian_panel(h->inputs, h->ntokens, d, c0, c1, P));
        if (s == ZF_OK) s = fp32_wire ? reduce_f64_as_f32(P, cnt, owner) : zf_comm_reduce_f64(P, cnt, owner);
        if (s == ZF_OK && root) zf_hessian_store_panel(P, d, c0, c1, f, H);
    }
    free(P);
    h->ntokens = n;
    return s;
}

/* Device sums go over NCCL, host sums over MPI. */
zf_status zf_sched_reduce_hessian(zf_bhess *h, int owner, bool fp32_wire, float *H)
{
    if (zf_comm_world()->size == 1) return ZF_OK;
    if (h->inputs) return reduce_panels(h, owner, fp32_wire, H);
    ZF_TRY(zf_comm_sum_i64(&h->ntokens, 1));
    int64_t n = h->dim * h->dim;
    if (zf_backend_caps(h->be) & ZF_CAP_DEVICE_SUMS)
        return gpucomm_or_abort(zf_gpucomm_reduce_sum(h->sum, n, h->fp64, owner));
    if (h->fp64 && fp32_wire) return reduce_f64_as_f32(h->sum, n, owner);
    if (h->fp64) return zf_comm_reduce_f64(h->sum, n, owner);
    return zf_comm_reduce_f32(h->sum, n, owner);
}

zf_status zf_sched_cache_agree(const zf_hcache *hc, const zf_model_config *c, int64_t b, int g0, int g1, bool *hit)
{
    bool all = zf_comm_world()->rank == 0 && hc->enabled;
    for (int g = g0; all && g < g1; g++)
        if (!zf_hcache_has(hc, b, (zf_group)g, zf_group_in(c, (zf_group)g))) all = false;
    ZF_TRY(zf_comm_bcast_bool(&all, 0));
    *hit = all;
    return ZF_OK;
}

zf_status zf_sched_owner_hessian(zf_hcache *hc, bool fp_pass, bool cached, int64_t b, zf_group g, int64_t dim,
                                 zf_bhess *h, bool ready, double seconds, float *H)
{
    if (cached) return zf_hcache_load(hc, b, g, dim, H);
    double t0 = zf_now();
    if (!ready) ZF_TRY(zf_bhess_finalize(h, H));
    if (!fp_pass) return ZF_OK;
    zf_status s = zf_hcache_store(hc, b, g, dim, H, seconds + zf_now() - t0);
    if (s != ZF_OK) zf_log_warn("Hessian cache: %s (going on without it)", zf_last_error());
    return ZF_OK;
}

const char *zf_sched_dl_note(const zf_qblock *qb)
{
    static char buf[96];
    double before = 0, after = 0;
    for (int l = 0; l < ZF_NLIN; l++) {
        before += qb->dl_rtn[l];
        after += qb->dl[l];
    }
    if (isnan(after)) snprintf(buf, sizeof buf, "ΔL not measured (delta_loss_rtn: true)");
    else if (isnan(before)) snprintf(buf, sizeof buf, "ΔL %.4g", after);
    else snprintf(buf, sizeof buf, "ΔL after/before %.4g/%.4g = %.3f", after, before, before > 0 ? after / before : 0.0);
    return buf;
}

zf_status zf_sched_agreed_stop(const zf_run_hooks *hooks, const char *where)
{
    if (!hooks || !hooks->stop_requested) return ZF_OK;
    bool stop = hooks->stop_requested(hooks->ctx) != 0;
    ZF_TRY(zf_comm_any(&stop));
    if (!stop) return ZF_OK;
    return zf_fail(ZF_ERR_INTERRUPTED, "stopped by a signal %s; run the same command again to resume", where);
}

/* Work per group for balancing: OPTQ's d_out·d_in² plus the Cholesky's d_in³/3. */
static double group_cost(const zf_model_config *c, zf_group g)
{
    double in = (double)zf_group_in(c, g), out = (double)zf_group_out(c, g);
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

/* Entries of a dim² Hessian on the wire: all of them, or from stored inputs the panels' lower parts. */
static int64_t wire_entries(int64_t dim, bool panels)
{
    if (!panels) return dim * dim;
    int64_t w = zf_hessian_panel_width(dim), n = 0;
    for (int64_t c0 = 0; c0 < dim; c0 += w) n += (dim - c0) * ((c0 + w < dim ? c0 + w : dim) - c0);
    return n;
}

int64_t zf_block_comm_bytes_model(const zf_model_config *c, const zf_job_config *cfg, const zf_block_parts *p,
                                  int nranks, int rank, int64_t tokens)
{
    if (nranks < 2) return 0;
    const int hessian_bytes = zf_sched_hessian_wire_bytes(cfg), bits = cfg->quant.bits;
    int64_t bytes = 0;
    for (int g = 0; g < ZF_NGROUP; g++) {
        int64_t in = zf_group_in(c, (zf_group)g), rows = zf_group_out(c, (zf_group)g);
        int parts = p ? p->n[g] : 1;
        /* partial Hessian and token count reduced; per part packed codes, scale and zero; g_idx, ζ and the
         * statistics broadcast; sizes and agreements */
        bytes += wire_entries(in, zf_sched_capture_inputs(cfg, tokens, in)) * hessian_bytes + 8 + rows * 8 + in * 8 +
                 24 + 96;
        for (int i = 0; i < parts; i++) {
            int64_t lo = 0, hi = rows;
            if (p) zf_part_rows(c, p, (zf_group)g, i, &lo, &hi);
            bytes += zf_codes_packed_bytes((hi - lo) * in, bits);
        }
        /* a team's fp32 H from its owner */
        if (p && p->n[g] > 1 && zf_parts_member(p, (zf_group)g, rank)) bytes += in * in * 4;
    }
    return bytes;
}

bool zf_sched_capture_inputs(const zf_job_config *cfg, int64_t tokens, int64_t dim)
{
    if (cfg->backend == ZF_BACKEND_CUDA || cfg->schedule == ZF_SCHEDULE_PARALLEL ||
        cfg->hessian_capture == ZF_CAPTURE_SUMS)
        return false;
    if (cfg->hessian_capture == ZF_CAPTURE_INPUTS) return true;
    return (double)tokens * 4.0 < (double)dim * (cfg->hessian_fp64 ? 8.0 : 4.0);
}
