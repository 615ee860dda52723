/* The shard layout of a quantized block and of the unquantized globals: written here, read back here. */
#include "coordinator/shardmap.h"

#include <stdio.h>
#include <string.h>

zf_status zf_shardmap_write_block(const zf_model_config *c, int64_t b, const zf_qblock *qb, int64_t group_size,
                                  const char *path, const char *prov)
{
    char names[ZF_NLIN][256], norm_names[4][256];
    zf_shard_linear lin[ZF_NLIN];
    zf_shard_tensor ten[4];
    int nl = 0, nt = 0;
    for (int l = 0; l < ZF_NLIN; l++) {
        if (!zf_lin_present(c, (zf_lin)l)) continue;
        const zf_qresult *r = &qb->lin[l];
        zf_lin_tensor_prefix(c, b, (zf_lin)l, names[l], sizeof names[l]);
        lin[nl++] = (zf_shard_linear){
            .name = names[l], .bits = r->bits, .out = r->rows, .in = r->cols, .ngroups = r->ngroups,
            .group_size = group_size > 0 ? group_size : -1, .q = r->q, .scale = r->scale,
            .zero = r->zero, .g_idx = r->g_idx, .zeta = r->zeta, .bias = qb->folded.lin_b[l],
            .dl_before = qb->dl_rtn[l], .dl_after = qb->dl[l], .als_iters = r->als_iters,
            .damp_used = r->damp_used, .damp_retries = r->damp_retries};
    }
    for (int which = 0; which < 2; which++) {
        char prefix[200];
        zf_norm_tensor_prefix(c, b, which, prefix, sizeof prefix);
        snprintf(norm_names[nt], sizeof norm_names[nt], "%s.weight", prefix);
        ten[nt] = (zf_shard_tensor){norm_names[nt], 1, {c->hidden, 0}, qb->folded.norm_w[which]};
        nt++;
        if (qb->folded.norm_b[which]) {
            snprintf(norm_names[nt], sizeof norm_names[nt], "%s.bias", prefix);
            ten[nt] = (zf_shard_tensor){norm_names[nt], 1, {c->hidden, 0}, qb->folded.norm_b[which]};
            nt++;
        }
    }
    return zf_shard_write(path, "block", b, nl, lin, nt, ten, prov);
}

zf_status zf_shardmap_write_globals(const zf_model_config *c, const zf_model_globals *g, const char *path,
                                    const char *prov)
{
    zf_shard_tensor ten[6];
    int nt = 0;
    char fnw[256], fnb[256];
    ten[nt++] = (zf_shard_tensor){zf_embed_tensor_name(c), 2, {c->vocab, c->hidden}, g->embed};
    if (g->pos)
        ten[nt++] = (zf_shard_tensor){zf_pos_embed_tensor_name(c), 2, {c->max_pos + c->opt_pos_offset, c->hidden}, g->pos};
    snprintf(fnw, sizeof fnw, "%s.weight", zf_final_norm_prefix(c));
    ten[nt++] = (zf_shard_tensor){fnw, 1, {c->hidden, 0}, g->final_norm_w};
    if (g->final_norm_b) {
        snprintf(fnb, sizeof fnb, "%s.bias", zf_final_norm_prefix(c));
        ten[nt++] = (zf_shard_tensor){fnb, 1, {c->hidden, 0}, g->final_norm_b};
    }
    if (!c->tied_embeddings) ten[nt++] = (zf_shard_tensor){zf_head_tensor_name(c), 2, {c->vocab, c->hidden}, g->head};
    return zf_shard_write(path, "unquantized", -1, 0, NULL, nt, ten, prov);
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
        ZF_TRY(zf_qresult_alloc_codes(r, sl->out, sl->in, sl->ngroups, sl->bits));
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
        zf_qresult_deploy(r, qb->folded.lin_w[l]);
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
