/* Block and model-level weights: loading from safetensors in fp32, allocation, copies and finiteness checks. */
#include "worker/block.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_LEN 256

static zf_status load1(const zf_safetensors *st, const char *name, int ndim, int64_t d0, int64_t d1, float **dst)
{
    int64_t shape[2] = {d0, d1};
    return zf_st_load_f32(st, name, ndim, shape, dst);
}

zf_status zf_block_load(const zf_model_config *c, const zf_safetensors *st, int64_t b, zf_block_weights *out)
{
    memset(out, 0, sizeof *out);
    if (b < 0 || b >= c->n_layers)
        return zf_fail(ZF_ERR_INPUT, "block %lld out of range (the model has %lld)", (long long)b, (long long)c->n_layers);
    char prefix[NAME_LEN], name[NAME_LEN + 16];
    zf_status s = ZF_OK;
    for (int l = 0; l < ZF_NLIN && s == ZF_OK; l++) {
        if (!zf_lin_present(c, (zf_lin)l)) continue;
        zf_lin_tensor_prefix(c, b, (zf_lin)l, prefix, sizeof prefix);
        int64_t o = zf_lin_out(c, (zf_lin)l), i = zf_lin_in(c, (zf_lin)l);
        snprintf(name, sizeof name, "%s.weight", prefix);
        s = load1(st, name, 2, o, i, &out->lin_w[l]);
        if (s == ZF_OK && zf_lin_has_bias(c, (zf_lin)l)) {
            snprintf(name, sizeof name, "%s.bias", prefix);
            s = load1(st, name, 1, o, 0, &out->lin_b[l]);
        }
    }
    for (int k = 0; k < 2 && s == ZF_OK; k++) {
        zf_norm_tensor_prefix(c, b, k, prefix, sizeof prefix);
        snprintf(name, sizeof name, "%s.weight", prefix);
        s = load1(st, name, 1, c->hidden, 0, &out->norm_w[k]);
        if (s == ZF_OK && c->norm_bias) {
            snprintf(name, sizeof name, "%s.bias", prefix);
            s = load1(st, name, 1, c->hidden, 0, &out->norm_b[k]);
        }
    }
    if (s != ZF_OK) zf_block_free(out);
    return s;
}

zf_status zf_block_alloc(const zf_model_config *c, zf_block_weights *out)
{
    memset(out, 0, sizeof *out);
    int ok = 1;
    for (int l = 0; l < ZF_NLIN && ok; l++) {
        if (!zf_lin_present(c, (zf_lin)l)) continue;
        int64_t o = zf_lin_out(c, (zf_lin)l), i = zf_lin_in(c, (zf_lin)l);
        ok = (out->lin_w[l] = zf_calloc((size_t)(o * i), sizeof(float), "block weight")) != NULL;
        if (ok && zf_lin_has_bias(c, (zf_lin)l))
            ok = (out->lin_b[l] = zf_calloc((size_t)o, sizeof(float), "block bias")) != NULL;
    }
    for (int k = 0; k < 2 && ok; k++) {
        ok = (out->norm_w[k] = zf_calloc((size_t)c->hidden, sizeof(float), "norm weight")) != NULL;
        if (ok && c->norm_bias) ok = (out->norm_b[k] = zf_calloc((size_t)c->hidden, sizeof(float), "norm bias")) != NULL;
    }
    if (!ok) {
        zf_block_free(out);
        return ZF_ERR_NOMEM;
    }
    return ZF_OK;
}

zf_status zf_block_copy(const zf_model_config *c, const zf_block_weights *src, zf_block_weights *dst)
{
    ZF_TRY(zf_block_alloc(c, dst));
    for (int l = 0; l < ZF_NLIN; l++) {
        int64_t o = zf_lin_present(c, (zf_lin)l) ? zf_lin_out(c, (zf_lin)l) : 0;
        if (dst->lin_w[l]) {
            ZF_ASSERT(src->lin_w[l]);
            memcpy(dst->lin_w[l], src->lin_w[l], (size_t)(o * zf_lin_in(c, (zf_lin)l)) * sizeof(float));
        }
        if (dst->lin_b[l]) {
            ZF_ASSERT(src->lin_b[l]);
            memcpy(dst->lin_b[l], src->lin_b[l], (size_t)o * sizeof(float));
        }
    }
    for (int k = 0; k < 2; k++) {
        ZF_ASSERT(src->norm_w[k]);
        memcpy(dst->norm_w[k], src->norm_w[k], (size_t)c->hidden * sizeof(float));
        if (dst->norm_b[k]) {
            ZF_ASSERT(src->norm_b[k]);
            memcpy(dst->norm_b[k], src->norm_b[k], (size_t)c->hidden * sizeof(float));
        }
    }
    return ZF_OK;
}

void zf_block_free(zf_block_weights *w)
{
    if (!w) return;
    for (int l = 0; l < ZF_NLIN; l++) {
        free(w->lin_w[l]);
        free(w->lin_b[l]);
    }
    for (int k = 0; k < 2; k++) {
        free(w->norm_w[k]);
        free(w->norm_b[k]);
    }
    memset(w, 0, sizeof *w);
}

zf_status zf_globals_load(const zf_model_config *c, const zf_safetensors *st, zf_model_globals *out)
{
    memset(out, 0, sizeof *out);
    char name[NAME_LEN];
    zf_status s = load1(st, zf_embed_tensor_name(c), 2, c->vocab, c->hidden, &out->embed);
    if (s == ZF_OK && c->family == ZF_FAMILY_OPT)
        s = load1(st, zf_pos_embed_tensor_name(c), 2, c->max_pos + c->opt_pos_offset, c->hidden, &out->pos);
    if (s == ZF_OK) {
        snprintf(name, sizeof name, "%s.weight", zf_final_norm_prefix(c));
        s = load1(st, name, 1, c->hidden, 0, &out->final_norm_w);
    }
    if (s == ZF_OK && c->norm_bias) {
        snprintf(name, sizeof name, "%s.bias", zf_final_norm_prefix(c));
        s = load1(st, name, 1, c->hidden, 0, &out->final_norm_b);
    }
    if (s == ZF_OK) {
        if (c->tied_embeddings) out->head = out->embed; /* an alias: zf_globals_free frees it once */
        else s = load1(st, zf_head_tensor_name(c), 2, c->vocab, c->hidden, &out->head);
    }
    if (s != ZF_OK) zf_globals_free(out);
    return s;
}

void zf_globals_free(zf_model_globals *g)
{
    if (!g) return;
    if (g->head != g->embed) free(g->head);
    free(g->embed);
    free(g->pos);
    free(g->final_norm_w);
    free(g->final_norm_b);
    memset(g, 0, sizeof *g);
}

/* Names the first non-finite element of x [rows, cols] (cols = 0 for a vector). */
static zf_status check_array(const char *name, const float *x, int64_t rows, int64_t cols)
{
    if (!x) return ZF_OK;
    int64_t n = cols ? rows * cols : rows;
    for (int64_t i = 0; i < n; i++) {
        if (isfinite(x[i])) continue;
        const char *what = isnan(x[i]) ? "NaN" : x[i] > 0 ? "+Inf" : "-Inf";
        if (cols)
            return zf_fail(ZF_ERR_NUMERIC, "%s has %s at [%lld, %lld]", name, what, (long long)(i / cols),
                           (long long)(i % cols));
        return zf_fail(ZF_ERR_NUMERIC, "%s has %s at [%lld]", name, what, (long long)i);
    }
    return ZF_OK;
}

zf_status zf_block_check_finite(const zf_model_config *c, const zf_block_weights *w, int64_t b)
{
    char prefix[NAME_LEN], name[NAME_LEN + 16];
    for (int l = 0; l < ZF_NLIN; l++) {
        if (!zf_lin_present(c, (zf_lin)l)) continue;
        zf_lin_tensor_prefix(c, b, (zf_lin)l, prefix, sizeof prefix);
        snprintf(name, sizeof name, "%s.weight", prefix);
        ZF_TRY(check_array(name, w->lin_w[l], zf_lin_out(c, (zf_lin)l), zf_lin_in(c, (zf_lin)l)));
        snprintf(name, sizeof name, "%s.bias", prefix);
        ZF_TRY(check_array(name, w->lin_b[l], zf_lin_out(c, (zf_lin)l), 0));
    }
    for (int k = 0; k < 2; k++) {
        zf_norm_tensor_prefix(c, b, k, prefix, sizeof prefix);
        snprintf(name, sizeof name, "%s.weight", prefix);
        ZF_TRY(check_array(name, w->norm_w[k], c->hidden, 0));
        snprintf(name, sizeof name, "%s.bias", prefix);
        ZF_TRY(check_array(name, w->norm_b[k], c->hidden, 0));
    }
    return ZF_OK;
}
