/* GPTQ checkpoints as models: quantization_config, the kernels' dequantization, a dequantized safetensors view. */
#define _GNU_SOURCE
#include "common/model_gptq.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/gptq_pack.h"
#include "common/gptq_pack_internal.h"
#include "common/json_kind.h"
#include "common/log.h"
#include "common/safetensors_internal.h"

#define CONFIG_MAX_BYTES (16 * 1024 * 1024)

zf_status zf_gptq_config_parse(const char *path, const cJSON *qc, zf_gptq_config *out)
{
    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(qc))
        return zf_fail(ZF_ERR_INPUT, "%s: key 'quantization_config': expected an object, found %s", path,
                       zf_json_kind(qc));
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    if (!cJSON_IsString(m) || strcmp(m->valuestring, "gptq") != 0)
        return zf_fail(ZF_ERR_INPUT, "%s: key 'quantization_config.quant_method': expected \"gptq\", found %s%s%s "
                       "(only GPTQ checkpoints are read)", path, cJSON_IsString(m) ? "\"" : zf_json_kind(m),
                       cJSON_IsString(m) ? m->valuestring : "", cJSON_IsString(m) ? "\"" : "");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(qc, "bits");
    if (!cJSON_IsNumber(b) || (b->valuedouble != 2 && b->valuedouble != 3 && b->valuedouble != 4 && b->valuedouble != 8))
        return zf_fail(ZF_ERR_INPUT, "%s: key 'quantization_config.bits': expected 2, 3, 4 or 8", path);
    out->bits = (int)b->valuedouble;
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(qc, "group_size");
    out->group_size = -1;
    if (g && !cJSON_IsNull(g)) {
        if (!cJSON_IsNumber(g) || g->valuedouble != (double)(int64_t)g->valuedouble ||
            (g->valuedouble <= 0 && g->valuedouble != -1))
            return zf_fail(ZF_ERR_INPUT, "%s: key 'quantization_config.group_size': expected -1 or a positive integer",
                           path);
        out->group_size = (int64_t)g->valuedouble;
    }
    const cJSON *sym = cJSON_GetObjectItemCaseSensitive(qc, "sym"), *da = cJSON_GetObjectItemCaseSensitive(qc, "desc_act");
    out->sym = cJSON_IsTrue(sym);
    out->desc_act = cJSON_IsTrue(da);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(qc, "checkpoint_format");
    out->format = ZF_GPTQ_V1;
    if (f && !cJSON_IsNull(f)) {
        if (cJSON_IsString(f) && !strcmp(f->valuestring, "gptq_v2")) out->format = ZF_GPTQ_V2;
        else if (!cJSON_IsString(f) || strcmp(f->valuestring, "gptq") != 0)
            return zf_fail(ZF_ERR_INPUT, "%s: key 'quantization_config.checkpoint_format': expected \"gptq\" or "
                           "\"gptq_v2\"", path);
    }
    return ZF_OK;
}

zf_status zf_gptq_dequant(const int32_t *qweight, const int32_t *qzeros, const float *scales, const int32_t *g_idx,
                          int bits, int64_t out, int64_t in, int64_t ngroups, zf_gptq_format format, float *w)
{
    uint8_t *q = zf_malloc((size_t)(out * in), "codes");
    int32_t *z = zf_malloc(sizeof(int32_t) * (size_t)(ngroups * out), "zero points");
    if (!q || !z) {
        free(q);
        free(z);
        return ZF_ERR_NOMEM;
    }
    zf_gptq_unpack_qweight(qweight, out, in, bits, q);
    zf_gptq_unpack_qzeros(qzeros, ngroups, out, bits, format == ZF_GPTQ_V1 ? 1 : 0, z);
    for (int64_t n = 0; n < out; n++)
        for (int64_t k = 0; k < in; k++) {
            int64_t j = g_idx[k];
            w[n * in + k] = scales[j * out + n] * ((float)q[n * in + k] - (float)z[j * out + n]);
        }
    free(q);
    free(z);
    return ZF_OK;
}

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

/* A tensor of the checkpoint by name and expected shape; a message naming both when it is not so. */
static zf_status find_shaped(const zf_safetensors *st, const char *dir, const char *name, int ndim, const int64_t *shape,
                             const zf_st_tensor **out)
{
    const zf_st_tensor *t = zf_st_find(st, name);
    if (!t) return zf_fail(ZF_ERR_INPUT, "%s: no tensor '%s' (a GPTQ layer needs qweight, qzeros and scales)", dir, name);
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char want[64], found[64];
        shape_text(ndim, shape, want, sizeof want);
        shape_text(t->ndim, t->shape, found, sizeof found);
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': expected shape %s (from its qweight and the quantization_config), "
                       "found %s", t->file, name, want, found);
    }
    *out = t;
    return ZF_OK;
}

static zf_status load_i32(const zf_st_tensor *t, int32_t **dst)
{
    if (t->dtype != ZF_DT_I32)
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': expected dtype I32, found %s", t->file, t->name,
                       zf_dtype_name(t->dtype));
    *dst = zf_malloc(t->nbytes, t->name);
    if (!*dst) return ZF_ERR_NOMEM;
    memcpy(*dst, t->data, t->nbytes);
    return ZF_OK;
}

/* One layer <prefix> (its .qweight is qw): the fp32 weight [out, in] into *w. */
static zf_status dequant_layer(const zf_safetensors *st, const char *dir, const zf_gptq_config *gc, const char *prefix,
                               const zf_st_tensor *qw, float **w)
{
    char name[512 + 16];
    int bits = gc->bits;
    int64_t out = qw->shape[1], in = qw->shape[0] * 32 / bits;
    int64_t ngroups = gc->group_size > 0 ? (in + gc->group_size - 1) / gc->group_size : 1;
    const zf_st_tensor *tz = NULL, *ts = NULL, *tg = NULL;
    int64_t zshape[2] = {ngroups, zf_gptq_words(out, bits)}, sshape[2] = {ngroups, out}, gshape[1] = {in};
    int32_t *qweight = NULL, *qzeros = NULL, *g_idx = NULL;
    float *scales = NULL;
    snprintf(name, sizeof name, "%s.qzeros", prefix);
    zf_status s = find_shaped(st, dir, name, 2, zshape, &tz);
    snprintf(name, sizeof name, "%s.scales", prefix);
    if (s == ZF_OK) s = find_shaped(st, dir, name, 2, sshape, &ts);
    snprintf(name, sizeof name, "%s.g_idx", prefix);
    if (s == ZF_OK && zf_st_find(st, name)) s = find_shaped(st, dir, name, 1, gshape, &tg);
    if (s == ZF_OK) s = load_i32(qw, &qweight);
    if (s == ZF_OK) s = load_i32(tz, &qzeros);
    if (s == ZF_OK && tg) s = load_i32(tg, &g_idx);
    if (s == ZF_OK && !tg && !(g_idx = zf_malloc(sizeof(int32_t) * (size_t)in, "g_idx"))) s = ZF_ERR_NOMEM;
    if (s == ZF_OK && !tg)
        for (int64_t k = 0; k < in; k++) g_idx[k] = (int32_t)(gc->group_size > 0 ? k / gc->group_size : 0);
    for (int64_t k = 0; s == ZF_OK && k < in; k++)
        if (g_idx[k] < 0 || g_idx[k] >= ngroups)
            s = zf_fail(ZF_ERR_INPUT, "%s: tensor '%s.g_idx': value %d at [%lld]: expected a group in [0, %lld)",
                        tg->file, prefix, g_idx[k], (long long)k, (long long)ngroups);
    if (s == ZF_OK && !zf_dtype_is_float_weight(ts->dtype))
        s = zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': expected dtype F16, BF16 or F32, found %s", ts->file, ts->name,
                    zf_dtype_name(ts->dtype));
    if (s == ZF_OK && !(scales = zf_malloc(sizeof(float) * (size_t)(ngroups * out), "scales"))) s = ZF_ERR_NOMEM;
    if (s == ZF_OK) zf_convert_to_f32(ts->dtype, ts->data, scales, (size_t)(ngroups * out));
    if (s == ZF_OK && !(*w = zf_malloc(sizeof(float) * (size_t)(out * in), "dequantized weight"))) s = ZF_ERR_NOMEM;
    if (s == ZF_OK) s = zf_gptq_dequant(qweight, qzeros, scales, g_idx, bits, out, in, ngroups, gc->format, *w);
    free(qweight);
    free(qzeros);
    free(g_idx);
    free(scales);
    return s;
}

static bool has_suffix(const char *s, const char *suffix, size_t *prefix_len)
{
    size_t n = strlen(s), m = strlen(suffix);
    *prefix_len = n >= m ? n - m : 0;
    return n > m && !strcmp(s + n - m, suffix);
}

/* Whether name is a qzeros/scales/g_idx tensor of a layer that has a qweight (read with it, not kept). */
static bool layer_part(const zf_safetensors *st, const char *name)
{
    static const char *const parts[] = {".qzeros", ".scales", ".g_idx"};
    for (int i = 0; i < 3; i++) {
        size_t p;
        if (!has_suffix(name, parts[i], &p)) continue;
        char qw[512 + 16];
        snprintf(qw, sizeof qw, "%.*s.qweight", (int)p, name);
        return zf_st_find(st, qw) != NULL;
    }
    return false;
}

/* Writes every kept tensor of st, dequantized, as fp32 to path. */
static zf_status write_dequantized(const zf_safetensors *st, const char *dir, const zf_gptq_config *gc, const char *path,
                                   int *nlayers)
{
    size_t n = zf_st_count(st), ns = 0;
    zf_st_spec *specs = zf_calloc(n ? n : 1, sizeof *specs, "tensor list");
    const zf_st_tensor **src = zf_calloc(n ? n : 1, sizeof *src, "tensor list");
    char (*names)[512] = zf_calloc(n ? n : 1, sizeof *names, "tensor names");
    if (!specs || !src || !names) {
        free(specs), free(src), free(names);
        return ZF_ERR_NOMEM;
    }
    zf_status s = ZF_OK;
    *nlayers = 0;
    for (size_t i = 0; i < n && s == ZF_OK; i++) {
        const zf_st_tensor *t = zf_st_at(st, i);
        size_t p;
        if (has_suffix(t->name, ".qweight", &p)) {
            if (t->ndim != 2 || (t->shape[0] * 32) % gc->bits != 0)
                s = zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': expected 2 dimensions [in·%d/32, out]", t->file, t->name,
                            gc->bits);
            snprintf(names[ns], sizeof names[ns], "%.*s.weight", (int)p, t->name);
            specs[ns] = (zf_st_spec){names[ns], ZF_DT_F32, 2, {t->shape[1], t->shape[0] * 32 / gc->bits}};
            (*nlayers)++;
        } else if (zf_dtype_is_float_weight(t->dtype) && !layer_part(st, t->name)) {
            snprintf(names[ns], sizeof names[ns], "%s", t->name);
            specs[ns] = (zf_st_spec){names[ns], ZF_DT_F32, t->ndim, {0}};
            memcpy(specs[ns].shape, t->shape, sizeof t->shape);
        } else {
            continue;
        }
        src[ns++] = t;
    }
    zf_st_stream *out = NULL;
    if (s == ZF_OK) s = zf_st_stream_open(path, specs, ns, NULL, &out);
    for (size_t i = 0; i < ns && s == ZF_OK; i++) {
        float *w = NULL;
        size_t p;
        if (has_suffix(src[i]->name, ".qweight", &p)) {
            char prefix[512];
            snprintf(prefix, sizeof prefix, "%.*s", (int)p, src[i]->name);
            s = dequant_layer(st, dir, gc, prefix, src[i], &w);
        } else if (!(w = zf_malloc(sizeof(float) * (size_t)src[i]->numel, src[i]->name))) {
            s = ZF_ERR_NOMEM;
        } else {
            zf_convert_to_f32(src[i]->dtype, src[i]->data, w, (size_t)src[i]->numel);
        }
        int64_t numel = 1;
        for (int d = 0; d < specs[i].ndim; d++) numel *= specs[i].shape[d];
        if (s == ZF_OK) s = zf_st_stream_write(out, w, sizeof(float) * (size_t)numel);
        free(w);
    }
    if (out) s = zf_st_stream_close(out, s);
    free(specs);
    free(src);
    free(names);
    return s;
}

zf_status zf_gptq_open_dequantized(const char *dir, zf_safetensors **out)
{
    *out = NULL;
    char path[PATH_MAX + 32], tmpdir[PATH_MAX];
    char *text = NULL;
    snprintf(path, sizeof path, "%s/config.json", dir);
    zf_status s = zf_read_small_file(path, CONFIG_MAX_BYTES, "a config.json", &text);
    if (s != ZF_OK) return s;
    cJSON *root = cJSON_Parse(text);
    free(text);
    zf_gptq_config gc;
    s = root ? zf_gptq_config_parse(path, cJSON_GetObjectItemCaseSensitive(root, "quantization_config"), &gc)
             : zf_fail(ZF_ERR_INPUT, "%s: expected JSON, found a syntax error", path);
    cJSON_Delete(root);
    if (s != ZF_OK) return s;
    zf_safetensors *st = NULL;
    ZF_TRY(zf_st_open(dir, &st));
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/zfold-gptq-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        zf_st_close(st);
        return zf_fail(ZF_ERR_IO, "%s: cannot create a temporary folder for the dequantized weights", tmpdir);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    int nlayers = 0;
    s = write_dequantized(st, dir, &gc, path, &nlayers);
    zf_st_close(st);
    if (s == ZF_OK) s = zf_st_open(path, out);
    unlink(path); /* the mapping stays valid; nothing is left on disk */
    rmdir(tmpdir);
    if (s != ZF_OK) return zf_fail_context(s, "reading the GPTQ checkpoint %s", dir);
    zf_log_info("GPTQ checkpoint %s: %d bits, group size %lld, format %s, %d layers dequantized", dir, gc.bits,
                (long long)gc.group_size, gc.format == ZF_GPTQ_V1 ? "gptq" : "gptq_v2", nlayers);
    return ZF_OK;
}
