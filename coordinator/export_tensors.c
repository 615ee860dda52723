/* The tensors of an export: the plan of every tensor and file (padded sizes, shapes, shards), each block's layers
 * converted in turn, the safetensors files streamed, and the index. */
#define _GNU_SOURCE
#include "coordinator/export_tensors.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype_internal.h"
#include "common/gptq_pack.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "common/shard.h"
#include "coordinator/export_meta.h"

#define NAME_LEN 256

/* ------------------------------------------------------------------------------------------------ */
/* the plan: every tensor of the folder, in writing order, with its shard */

typedef enum { IT_FLOAT, IT_QWEIGHT, IT_QZEROS, IT_SCALES, IT_GIDX, IT_BIAS } item_kind;

typedef struct {
    char name[NAME_LEN];
    item_kind kind;
    int64_t block;             /* -1: a model-level tensor (unquantized.h5) */
    int lin;                   /* the linear layer of IT_Q*, IT_SCALES, IT_GIDX, IT_BIAS */
    zf_dtype dtype;
    int ndim;
    int64_t shape[2];
    int64_t nbytes;
    int shard;
} item;

typedef struct {
    const zf_model_config *c;
    const zf_export_opts *o;
    int bits;
    int64_t group_size;        /* -1 per channel */
    int64_t inter_pad;
    item *items;
    int nitems, cap;
} plan;

static zf_status add_item(plan *p, const char *name, item_kind kind, int64_t block, int lin, zf_dtype dt, int ndim,
                          int64_t d0, int64_t d1)
{
    if (p->nitems == p->cap) {
        int cap = p->cap ? 2 * p->cap : 256;
        item *it = realloc(p->items, sizeof *it * (size_t)cap);
        if (!it) return zf_fail(ZF_ERR_NOMEM, "cannot grow the export plan");
        p->items = it;
        p->cap = cap;
    }
    item *it = &p->items[p->nitems++];
    memset(it, 0, sizeof *it);
    snprintf(it->name, sizeof it->name, "%s", name);
    it->kind = kind;
    it->block = block;
    it->lin = lin;
    it->dtype = dt;
    it->ndim = ndim;
    it->shape[0] = d0;
    it->shape[1] = d1;
    it->nbytes = (int64_t)zf_dtype_size(dt) * d0 * (ndim > 1 ? d1 : 1);
    return ZF_OK;
}

/* gate/up (fc1) have the MLP's inner width as outputs, down (fc2) as inputs */
static bool lin_out_padded(int l) { return l == ZF_LIN_GATE || l == ZF_LIN_UP; }

static int64_t lin_out_pad(const plan *p, int l)
{
    return lin_out_padded(l) ? p->inter_pad : zf_lin_out(p->c, (zf_lin)l);
}

static int64_t lin_in_pad(const plan *p, int l)
{
    return l == ZF_LIN_DOWN ? p->inter_pad : zf_lin_in(p->c, (zf_lin)l);
}

static int64_t lin_groups(const plan *p, int l)
{
    int64_t in = lin_in_pad(p, l);
    return p->group_size > 0 ? (in + p->group_size - 1) / p->group_size : 1;
}

static int64_t lcm64(int64_t a, int64_t b)
{
    int64_t x = a, y = b;
    while (y) {
        int64_t t = x % y;
        x = y;
        y = t;
    }
    return a / x * b;
}

/* Sizes GPTQ kernels take: every in_features a multiple of 32 and out_features·bits of 32; the MLP's inner width is
 * padded to a multiple of 32 and of the group size (exact: zero rows in, zero columns out). */
static zf_status plan_sizes(plan *p)
{
    const zf_model_config *c = p->c;
    int64_t unit = p->group_size > 0 ? lcm64(32, p->group_size) : 32;
    p->inter_pad = (c->intermediate + unit - 1) / unit * unit;
    for (int l = 0; l < ZF_NLIN; l++) {
        if (!zf_lin_present(c, (zf_lin)l)) continue;
        char name[NAME_LEN];
        zf_lin_tensor_prefix(c, 0, (zf_lin)l, name, sizeof name);
        int64_t in = lin_in_pad(p, l), out = lin_out_pad(p, l);
        if (in % 32 != 0 || (out * p->bits) % 32 != 0)
            return zf_fail(ZF_ERR_INPUT, "%s (and every block's): %lld inputs, %lld outputs: GPTQ checkpoints need "
                           "in_features a multiple of 32 and out_features·bits a multiple of 32 (only the MLP's inner "
                           "width can be padded exactly)", name, (long long)in, (long long)out);
        if (p->group_size > 0 && in % p->group_size != 0)
            zf_log_warn("%s: %lld inputs are not a multiple of group_size %lld: transformers loads it, vLLM refuses it",
                        name, (long long)in, (long long)p->group_size);
    }
    return ZF_OK;
}

static zf_status plan_items(plan *p)
{
    const zf_model_config *c = p->c;
    zf_dtype dt = p->o->dtype;
    char name[NAME_LEN + 16], prefix[NAME_LEN];
    ZF_TRY(add_item(p, zf_embed_tensor_name(c), IT_FLOAT, -1, 0, dt, 2, c->vocab, c->hidden));
    if (c->family == ZF_FAMILY_OPT)
        ZF_TRY(add_item(p, zf_pos_embed_tensor_name(c), IT_FLOAT, -1, 0, dt, 2, c->max_pos + c->opt_pos_offset,
                        c->hidden));
    for (int64_t b = 0; b < c->n_layers; b++) {
        for (int k = 0; k < 2; k++) {
            zf_norm_tensor_prefix(c, b, k, prefix, sizeof prefix);
            snprintf(name, sizeof name, "%s.weight", prefix);
            ZF_TRY(add_item(p, name, IT_FLOAT, b, 0, dt, 1, c->hidden, 0));
            if (!c->norm_bias) continue;
            snprintf(name, sizeof name, "%s.bias", prefix);
            ZF_TRY(add_item(p, name, IT_FLOAT, b, 0, dt, 1, c->hidden, 0));
        }
        for (int l = 0; l < ZF_NLIN; l++) {
            if (!zf_lin_present(c, (zf_lin)l)) continue;
            zf_lin_tensor_prefix(c, b, (zf_lin)l, prefix, sizeof prefix);
            int64_t in = lin_in_pad(p, l), out = lin_out_pad(p, l), ng = lin_groups(p, l);
            snprintf(name, sizeof name, "%s.qweight", prefix);
            ZF_TRY(add_item(p, name, IT_QWEIGHT, b, l, ZF_DT_I32, 2, zf_gptq_words(in, p->bits), out));
            snprintf(name, sizeof name, "%s.qzeros", prefix);
            ZF_TRY(add_item(p, name, IT_QZEROS, b, l, ZF_DT_I32, 2, ng, zf_gptq_words(out, p->bits)));
            snprintf(name, sizeof name, "%s.scales", prefix);
            ZF_TRY(add_item(p, name, IT_SCALES, b, l, dt, 2, ng, out));
            snprintf(name, sizeof name, "%s.g_idx", prefix);
            ZF_TRY(add_item(p, name, IT_GIDX, b, l, ZF_DT_I32, 1, in, 0));
            if (!zf_lin_has_bias(c, (zf_lin)l)) continue;
            snprintf(name, sizeof name, "%s.bias", prefix);
            ZF_TRY(add_item(p, name, IT_BIAS, b, l, dt, 1, out, 0));
        }
    }
    snprintf(name, sizeof name, "%s.weight", zf_final_norm_prefix(c));
    ZF_TRY(add_item(p, name, IT_FLOAT, -1, 0, dt, 1, c->hidden, 0));
    if (c->norm_bias) {
        snprintf(name, sizeof name, "%s.bias", zf_final_norm_prefix(c));
        ZF_TRY(add_item(p, name, IT_FLOAT, -1, 0, dt, 1, c->hidden, 0));
    }
    if (!c->tied_embeddings) ZF_TRY(add_item(p, zf_head_tensor_name(c), IT_FLOAT, -1, 0, dt, 2, c->vocab, c->hidden));
    return ZF_OK;
}

/* Hugging Face's rule: a tensor goes to a new file when it would take the current one past the limit. */
static int plan_shards(plan *p)
{
    int shard = 0;
    int64_t used = 0;
    for (int i = 0; i < p->nitems; i++) {
        if (used > 0 && used + p->items[i].nbytes > p->o->max_shard_bytes) {
            shard++;
            used = 0;
        }
        p->items[i].shard = shard;
        used += p->items[i].nbytes;
    }
    return shard + 1;
}

/* ------------------------------------------------------------------------------------------------ */
/* tensor data, block by block */

typedef struct {
    const plan *p;
    const zf_rundir *run;
    const char *run_dir;
    zf_shard_data globals;
    int64_t cur;               /* block held in blk/lay, -1 none */
    zf_shard_data blk;
    zf_gptq_layer lay[ZF_NLIN];
    int64_t zeros_shifted;
} source;

static void source_release_block(source *src)
{
    zf_shard_data_free(&src->blk);
    for (int l = 0; l < ZF_NLIN; l++) zf_gptq_layer_free(&src->lay[l]);
    src->cur = -1;
}

static zf_status shard_path(const source *src, int64_t b, char *path, size_t n)
{
    const char *f = zf_rundir_file(src->run, b);
    if (!f) return zf_fail(ZF_ERR_INPUT, "%s/manifest.json: no file listed for block %lld", src->run_dir, (long long)b);
    snprintf(path, n, "%s/%s", src->run_dir, f);
    return ZF_OK;
}

static zf_status source_block(source *src, int64_t b)
{
    if (src->cur == b) return ZF_OK;
    source_release_block(src);
    const plan *p = src->p;
    char path[PATH_MAX];
    ZF_TRY(shard_path(src, b, path, sizeof path));
    ZF_TRY(zf_shard_read(path, &src->blk));
    src->cur = b;
    for (int l = 0; l < ZF_NLIN; l++) {
        if (!zf_lin_present(p->c, (zf_lin)l)) continue;
        char name[NAME_LEN];
        zf_lin_tensor_prefix(p->c, b, (zf_lin)l, name, sizeof name);
        const zf_shard_linear_data *sl = NULL;
        for (int i = 0; i < src->blk.nlin && !sl; i++)
            if (!strcmp(src->blk.lin[i].name, name)) sl = &src->blk.lin[i];
        if (!sl) return zf_fail(ZF_ERR_INPUT, "%s: no layer '%s'", path, name);
        if (sl->bits != p->bits || sl->out != zf_lin_out(p->c, (zf_lin)l) || sl->in != zf_lin_in(p->c, (zf_lin)l) ||
            !sl->bias != !zf_lin_has_bias(p->c, (zf_lin)l))
            return zf_fail(ZF_ERR_INPUT, "%s: layer '%s' is %d bits, %lld x %lld%s: the run's config and model expect "
                           "%d bits, %lld x %lld%s", path, name, sl->bits, (long long)sl->out, (long long)sl->in,
                           sl->bias ? " with a bias" : "", p->bits, (long long)zf_lin_out(p->c, (zf_lin)l),
                           (long long)zf_lin_in(p->c, (zf_lin)l), zf_lin_has_bias(p->c, (zf_lin)l) ? " with a bias" : "");
        ZF_TRY(zf_gptq_layer_build(sl, name, lin_out_pad(p, l), lin_in_pad(p, l), p->group_size, p->o->format,
                                   &src->lay[l]));
        ZF_ASSERT(src->lay[l].ngroups == lin_groups(p, l));
        src->zeros_shifted += src->lay[l].zeros_shifted;
    }
    return ZF_OK;
}

static const float *find_float(const zf_shard_data *d, const char *name, int64_t numel)
{
    for (int i = 0; i < d->ntensors; i++) {
        const zf_shard_tensor_data *t = &d->tensors[i];
        if (!strcmp(t->name, name) && t->shape[0] * (t->ndim > 1 ? t->shape[1] : 1) == numel) return t->data;
    }
    return NULL;
}

/* x as dtype t into a new buffer. Values the dtype cannot hold (overflow, or a nonzero scale that rounds to 0) are
 * refused: the checkpoint would not decode to the run's weights' neighbourhood. */
static zf_status convert(const char *name, const float *x, int64_t n, zf_dtype t, bool scale, void **out)
{
    *out = zf_malloc(zf_dtype_size(t) * (size_t)n, name);
    if (!*out) return ZF_ERR_NOMEM;
    if (t == ZF_DT_F32) {
        memcpy(*out, x, sizeof(float) * (size_t)n);
        return ZF_OK;
    }
    uint16_t *h = *out;
    for (int64_t i = 0; i < n; i++) {
        h[i] = t == ZF_DT_F16 ? zf_f32_to_f16(x[i]) : zf_f32_to_bf16(x[i]);
        float back = t == ZF_DT_F16 ? zf_f16_to_f32(h[i]) : zf_bf16_to_f32(h[i]);
        if (!isfinite(back) || (scale && back == 0.0f && x[i] != 0.0f)) {
            free(*out);
            *out = NULL;
            return zf_fail(ZF_ERR_INPUT, "%s: value %g at [%lld] %s in %s; export with --dtype %s", name, x[i],
                           (long long)i, isfinite(back) ? "rounds to 0" : "overflows", zf_export_dtype_name(t),
                           t == ZF_DT_F16 ? "bfloat16 or float32" : "float32");
        }
    }
    return ZF_OK;
}

/* The bytes of item it (a new buffer in *buf, or a pointer into the source in *data). */
static zf_status item_data(source *src, const item *it, void **buf, const void **data)
{
    *buf = NULL;
    int64_t numel = it->shape[0] * (it->ndim > 1 ? it->shape[1] : 1);
    if (it->kind == IT_FLOAT) {
        const zf_shard_data *d = &src->globals;
        if (it->block >= 0) {
            ZF_TRY(source_block(src, it->block));
            d = &src->blk;
        }
        const float *x = find_float(d, it->name, numel);
        if (!x)
            return zf_fail(ZF_ERR_INPUT, "%s: the %s shard has no tensor '%s' of %lld values", src->run_dir,
                           it->block >= 0 ? "block" : "unquantized", it->name, (long long)numel);
        ZF_TRY(convert(it->name, x, numel, it->dtype, false, buf));
        *data = *buf;
        return ZF_OK;
    }
    ZF_TRY(source_block(src, it->block));
    const zf_gptq_layer *g = &src->lay[it->lin];
    switch (it->kind) {
    case IT_QWEIGHT: *data = g->qweight; return ZF_OK;
    case IT_QZEROS: *data = g->qzeros; return ZF_OK;
    case IT_GIDX: *data = g->g_idx; return ZF_OK;
    case IT_SCALES: ZF_TRY(convert(it->name, g->scales, numel, it->dtype, true, buf)); break;
    case IT_BIAS: ZF_TRY(convert(it->name, g->bias, numel, it->dtype, false, buf)); break;
    case IT_FLOAT: break;
    }
    *data = *buf;
    return ZF_OK;
}

static void shard_file_name(int k, int n, char *buf, size_t len)
{
    if (n == 1) snprintf(buf, len, "model.safetensors");
    else snprintf(buf, len, "model-%05d-of-%05d.safetensors", k + 1, n);
}

/* Each file streamed tensor by tensor (memory: one block's layers), atomically. */
static zf_status write_shards(source *src, int nshards, const char *dir, cJSON *weight_map)
{
    const plan *p = src->p;
    static const char *const meta[] = {"format", "pt", NULL};
    zf_status s = ZF_OK;
    zf_st_spec *specs = zf_calloc((size_t)p->nitems, sizeof *specs, "tensor list");
    if (!specs) return ZF_ERR_NOMEM;
    for (int k = 0, i = 0; k < nshards && s == ZF_OK; k++) {
        char file[64], path[PATH_MAX + 80];
        shard_file_name(k, nshards, file, sizeof file);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        int first = i, n = 0;
        int64_t bytes = 0;
        for (; i < p->nitems && p->items[i].shard == k; i++, n++) {
            const item *it = &p->items[i];
            specs[n] = (zf_st_spec){it->name, it->dtype, it->ndim, {it->shape[0], it->shape[1]}};
            bytes += it->nbytes;
            if (weight_map) cJSON_AddStringToObject(weight_map, it->name, file);
        }
        zf_st_stream *out = NULL;
        s = zf_st_stream_open(path, specs, (size_t)n, meta, &out);
        for (int t = first; s == ZF_OK && t < first + n; t++) {
            void *buf = NULL;
            const void *data = NULL;
            s = item_data(src, &p->items[t], &buf, &data);
            if (s == ZF_OK) s = zf_st_stream_write(out, data, (size_t)p->items[t].nbytes);
            free(buf);
        }
        if (out) s = zf_st_stream_close(out, s);
        if (s == ZF_OK) zf_log_info("export: %s (%.1f MB)", file, (double)bytes / 1e6);
    }
    free(specs);
    return s;
}

zf_status zf_export_tensors(const char *run_dir, const zf_rundir *r, const zf_model_config *c, int bits,
                            int64_t group_size, const zf_export_opts *o, const char *tmp, zf_export_summary *sum)
{
    plan p = {.c = c, .o = o, .bits = bits, .group_size = group_size};
    source src = {.p = &p, .run = r, .run_dir = run_dir, .cur = -1};
    cJSON *index = NULL;
    zf_status s = plan_sizes(&p);
    if (s == ZF_OK) s = plan_items(&p);
    int nshards = s == ZF_OK ? plan_shards(&p) : 0;
    sum->intermediate = c->intermediate;
    sum->intermediate_padded = p.inter_pad;
    sum->nfiles = nshards;
    for (int i = 0; i < p.nitems; i++) sum->bytes += p.items[i].nbytes;
    if (s == ZF_OK && p.inter_pad != c->intermediate)
        zf_log_info("export: MLP width %lld padded to %lld (zero rows in, zero columns out: the same function)",
                    (long long)c->intermediate, (long long)p.inter_pad);
    char path[PATH_MAX];
    if (s == ZF_OK) s = shard_path(&src, -1, path, sizeof path);
    if (s == ZF_OK) s = zf_shard_read(path, &src.globals);
    if (s == ZF_OK && nshards > 1) {
        index = cJSON_CreateObject();
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(index, "metadata"), "total_size", (double)sum->bytes);
    }
    if (s == ZF_OK) s = write_shards(&src, nshards, tmp, index ? cJSON_AddObjectToObject(index, "weight_map") : NULL);
    sum->zeros_shifted = src.zeros_shifted;
    if (s == ZF_OK && index) s = zf_export_write_json(tmp, "model.safetensors.index.json", index);
    cJSON_Delete(index);
    source_release_block(&src);
    zf_shard_data_free(&src.globals);
    free(p.items);
    return s;
}

