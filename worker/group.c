/* Group compute: options per group, the shared-ζ quantization, member slices, deployment and the ζ fold. */
#include "worker/group.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "worker/fold.h"

/* The options for group g: Z-FOLD only where ζ folds, and ζ > 0 where it folds through OPT's ReLU (fc1 rows). */
static zf_quant_opts group_options(const zf_quant_opts *base, const zf_model_config *c, int64_t b, zf_group g)
{
    zf_quant_opts o = *base;
    zf_fold_target target = zf_group_fold(c, g);
    if (o.method == ZF_METHOD_ZFOLD && target == ZF_FOLD_NONE) {
        zf_log_warn("block %lld %s: ζ cannot be folded here; using OPTQ for this group", (long long)b, zf_group_name(g));
        o.method = ZF_METHOD_OPTQ;
    }
    o.zeta_positive = (target == ZF_FOLD_UP_ROWS && c->family == ZF_FAMILY_OPT);
    return o;
}

zf_status zf_group_quantize(zf_backend *be, const zf_quant_opts *opts, const zf_model_config *c, int64_t b, zf_group g,
                            const float *H, const zf_block_weights *blk, const zf_row_part *part,
                            zf_group_result *gr)
{
    zf_lin mem[3];
    int nm = zf_group_members(c, g, mem);
    int64_t in = zf_group_in(c, g), rows = zf_group_out(c, g);
    int64_t p0 = part ? part->row0 : 0, pn = part ? part->rows : rows, part_rows[3];
    zf_quant_opts o = group_options(opts, c, b, g);
    int32_t *cls = NULL;
    zf_zeta_tie tie = {0};
    float *W = zf_malloc(sizeof(float) * (size_t)(pn * in), "group weights");
    zf_status s = W ? ZF_OK : ZF_ERR_NOMEM;
    if (s == ZF_OK && o.method == ZF_METHOD_ZFOLD) {
        cls = zf_malloc(sizeof(int32_t) * (size_t)in, "ζ tie classes");
        if (!cls) s = ZF_ERR_NOMEM;
        else {
            tie.nclasses = zf_fold_tie_classes(c, g, cls);
            tie.cls = cls;
        }
    }
    /* each member's rows that fall in [p0, p0 + pn), in order */
    int64_t m0 = 0;
    for (int i = 0; i < nm; i++) {
        int64_t mr = zf_lin_out(c, mem[i]), lo = p0 > m0 ? p0 : m0, hi = p0 + pn < m0 + mr ? p0 + pn : m0 + mr;
        part_rows[i] = hi > lo ? hi - lo : 0;
        if (s == ZF_OK && part_rows[i] > 0)
            memcpy(W + (lo - p0) * in, blk->lin_w[mem[i]] + (lo - m0) * in, sizeof(float) * (size_t)(part_rows[i] * in));
        m0 += mr;
    }
    const zf_row_team *team = part ? part->team : NULL;
    /* a team's members agree inside, so a local failure before it must still reach the team */
    if (s != ZF_OK && team) s = team->agree(team->ctx, s);
    else if (s == ZF_OK)
        s = zf_backend_quantize_group(be, &o, W, pn, in, H, tie.nclasses ? &tie : NULL, nm, part_rows, team,
                                      &gr->res, gr->dl, gr->dl_rtn);
    if (s != ZF_OK) zf_fail_context(s, "block %lld, %s", (long long)b, zf_group_name(g));
    /* the weights follow from the codes when installed: a kept result holds no fp32 copy */
    free(gr->res.deq);
    gr->res.deq = NULL;
    free(W);
    free(cls);
    return s;
}

/* Copies rows [r0, r0 + nr) of a group result into a member result. */
static zf_status slice_rows(const zf_qresult *src, int64_t r0, int64_t nr, zf_qresult *dst)
{
    ZF_TRY(zf_qresult_alloc_codes(dst, nr, src->cols, src->ngroups, src->bits));
    int64_t c = src->cols, g = src->ngroups;
    memcpy(dst->q, src->q + r0 * c, (size_t)(nr * c));
    memcpy(dst->scale, src->scale + r0 * g, sizeof(float) * (size_t)(nr * g));
    memcpy(dst->zero, src->zero + r0 * g, sizeof(float) * (size_t)(nr * g));
    memcpy(dst->g_idx, src->g_idx, sizeof(int32_t) * (size_t)c);
    memcpy(dst->zeta, src->zeta, sizeof(float) * (size_t)c);
    dst->als_iters = src->als_iters;
    dst->damp_used = src->damp_used;
    dst->damp_retries = src->damp_retries;
    dst->dead_inputs = src->dead_inputs;
    return ZF_OK;
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

/* Folds ζ into the preceding layer of qb->folded; a linear target also carries ζ in its stored per-row scales. */
static zf_status fold_group(const zf_model_config *c, int64_t b, zf_group g, const float *zeta, zf_qblock *qb)
{
    zf_block_weights *blk = &qb->folded;
    zf_status s = zf_fold_zeta(c, g, zeta, blk);
    if (s != ZF_OK) return zf_fail_context(s, "block %lld, folding %s", (long long)b, zf_group_name(g));
    int64_t nmax = c->intermediate > c->hidden ? c->intermediate : c->hidden;
    float *factor = zf_malloc(sizeof(float) * (size_t)nmax, "fold factors");
    if (!factor) return ZF_ERR_NOMEM;
    zf_lin tl = fold_row_factors(c, g, zeta, factor);
    if (tl != ZF_NLIN) {
        zf_qresult *t = &qb->lin[tl];
        for (int64_t r = 0; r < t->rows; r++)
            for (int64_t k = 0; k < t->ngroups; k++) t->scale[r * t->ngroups + k] *= factor[r];
        /* the deployed weight from the stored scales, exactly as a resumed run rebuilds it from the shard */
        zf_qresult_deploy(t, blk->lin_w[tl]);
    }
    free(factor);
    return ZF_OK;
}

zf_status zf_group_install(const zf_model_config *c, zf_method method, int64_t b, zf_group g,
                           const zf_group_result *gr, zf_qblock *qb)
{
    zf_lin mem[3];
    int nm = zf_group_members(c, g, mem);
    int64_t r0 = 0;
    for (int i = 0; i < nm; i++) {
        zf_lin l = mem[i];
        int64_t nr = zf_lin_out(c, l);
        ZF_TRY(slice_rows(&gr->res, r0, nr, &qb->lin[l]));
        qb->dl[l] = gr->dl[i];
        qb->dl_rtn[l] = gr->dl_rtn[i];
        qb->als_iters[l] = gr->res.als_iters;
        qb->damp_used[l] = gr->res.damp_used;
        qb->damp_retries[l] = gr->res.damp_retries;
        if (qb->unfolded.lin_w[l]) zf_qresult_unfolded(&qb->lin[l], qb->unfolded.lin_w[l]);
        zf_qresult_deploy(&qb->lin[l], qb->folded.lin_w[l]);
        r0 += nr;
    }
    if (method != ZF_METHOD_ZFOLD || zf_group_fold(c, g) == ZF_FOLD_NONE) return ZF_OK;
    return fold_group(c, b, g, gr->res.zeta, qb);
}
