/* The files of an export besides its tensors: the run's facts, config.json and quantize_config.json, the source
 * folder's tokenizer and generation files. */
#define _GNU_SOURCE
#include "coordinator/export_meta.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "coordinator/rundir_config.h"

/* Files of the source folder a model folder carries beside its weights, copied when present (tokenizer.bin: the
 * llama2.c tokenizer zfold itself reads). */
static const char *const side_files[] = {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                         "special_tokens_map.json", "tokenizer.model", "added_tokens.json",
                                         "vocab.json", "merges.txt", "tokenizer.bin"};



static zf_status run_value(const zf_rundir *r, const char *dir, const char *key, char *buf, size_t n)
{
    if (!zf_rundir_config_value(r, key, buf, n))
        return zf_fail(ZF_ERR_INPUT, "%s/manifest.json: the run's config has no key '%s'", dir, key);
    return ZF_OK;
}

zf_status zf_export_read_facts(const zf_rundir *r, const char *dir, zf_export_facts *f)
{
    char v[PATH_MAX];
    memset(f, 0, sizeof *f);
    ZF_TRY(run_value(r, dir, "method", f->method, sizeof f->method));
    ZF_TRY(run_value(r, dir, "model", f->model, sizeof f->model));
    ZF_TRY(run_value(r, dir, "bits", v, sizeof v));
    f->bits = atoi(v);
    ZF_TRY(run_value(r, dir, "group_size", v, sizeof v));
    f->group_size = atoll(v) > 0 ? atoll(v) : -1;
    ZF_TRY(run_value(r, dir, "damp", v, sizeof v));
    f->damp = atof(v);
    static const char *const flags[] = {"sym", "act_order", "static_groups", "true_sequential"};
    bool *dst[] = {&f->sym, &f->act_order, &f->static_groups, &f->true_sequential};
    for (int i = 0; i < 4; i++) {
        ZF_TRY(run_value(r, dir, flags[i], v, sizeof v));
        *dst[i] = !strcmp(v, "true");
    }
    char path[PATH_MAX + 16], *text = NULL;
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    ZF_TRY(zf_read_small_file(path, 1u << 20, "the run's effective config", &text));
    snprintf(f->config_hash, sizeof f->config_hash, "%016" PRIx64, zf_cfg_fingerprint(text));
    free(text);
    return ZF_OK;
}

static cJSON *quant_config(const zf_export_facts *f, const zf_export_opts *o, const zf_export_summary *sum)
{
    cJSON *q = cJSON_CreateObject();
    cJSON_AddNumberToObject(q, "bits", f->bits);
    cJSON_AddNumberToObject(q, "group_size", (double)f->group_size);
    cJSON_AddNumberToObject(q, "damp_percent", f->damp);
    cJSON_AddBoolToObject(q, "desc_act", f->act_order);
    cJSON_AddBoolToObject(q, "static_groups", f->static_groups);
    cJSON_AddBoolToObject(q, "sym", f->sym);
    cJSON_AddBoolToObject(q, "true_sequential", f->true_sequential);
    cJSON_AddStringToObject(q, "checkpoint_format", zf_export_format_name(o->format));
    cJSON_AddStringToObject(q, "quant_method", "gptq");
    cJSON *m = cJSON_AddObjectToObject(q, "meta");
    cJSON *who = cJSON_AddArrayToObject(m, "quantizer");
    cJSON_AddItemToArray(who, cJSON_CreateString("zfold:" ZF_VERSION));
    cJSON_AddStringToObject(m, "zfold_version", ZF_VERSION);
    cJSON_AddStringToObject(m, "method", f->method);
    cJSON_AddStringToObject(m, "config_hash", f->config_hash);
    cJSON_AddStringToObject(m, "dtype", zf_export_dtype_name(o->dtype));
    cJSON_AddNumberToObject(m, "intermediate_size_unpadded", (double)sum->intermediate);
    return q;
}

zf_status zf_export_write_json(const char *dir, const char *file, const cJSON *j)
{
    char path[PATH_MAX], *text = cJSON_Print(j);
    if (!text) return zf_fail(ZF_ERR_NOMEM, "cannot format %s", file);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    size_t n = strlen(text);
    char *t = realloc(text, n + 2);
    if (!t) {
        free(text);
        return zf_fail(ZF_ERR_NOMEM, "cannot format %s", file);
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    zf_status s = zf_write_file_atomic(path, t, n + 1);
    free(t);
    return s;
}

zf_status zf_export_write_configs(const char *model_dir, const zf_model_config *c, const zf_export_facts *f,
                                  const zf_export_opts *o, const zf_export_summary *sum, const char *dir)
{
    char path[PATH_MAX + 16], *text = NULL;
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    ZF_TRY(zf_read_small_file(path, 16u << 20, "a config.json", &text));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return zf_fail(ZF_ERR_INPUT, "%s: expected a JSON object", path);
    }
    const char *inter_key = c->family == ZF_FAMILY_OPT ? "ffn_dim" : "intermediate_size";
    cJSON_DeleteItemFromObjectCaseSensitive(root, inter_key);
    cJSON_AddNumberToObject(root, inter_key, (double)sum->intermediate_padded);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "torch_dtype");
    cJSON_AddStringToObject(root, "torch_dtype", zf_export_dtype_name(o->dtype));
    cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
    cJSON *q = quant_config(f, o, sum);
    cJSON_AddItemToObject(root, "quantization_config", cJSON_Duplicate(q, true));
    zf_status s = zf_export_write_json(dir, "config.json", root);
    if (s == ZF_OK) s = zf_export_write_json(dir, "quantize_config.json", q);
    cJSON_Delete(root);
    cJSON_Delete(q);
    return s;
}

static zf_status copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb");
    if (!in) return zf_fail(ZF_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    zf_atomic_file a;
    zf_status s = zf_atomic_begin(&a, dst);
    char buf[1 << 16];
    size_t n;
    while (s == ZF_OK && (n = fread(buf, 1, sizeof buf, in)) > 0) zf_atomic_write(&a, buf, n);
    if (s == ZF_OK && ferror(in)) a.status = zf_fail(ZF_ERR_IO, "%s: read failed", src);
    fclose(in);
    return s == ZF_OK ? zf_atomic_commit(&a) : s;
}

zf_status zf_export_copy_side_files(const char *model_dir, const char *dir)
{
    for (size_t i = 0; i < sizeof side_files / sizeof side_files[0]; i++) {
        char src[PATH_MAX + 64], dst[PATH_MAX + 64];
        snprintf(src, sizeof src, "%s/%s", model_dir, side_files[i]);
        if (access(src, F_OK) != 0) continue;
        snprintf(dst, sizeof dst, "%s/%s", dir, side_files[i]);
        ZF_TRY(copy_file(src, dst));
    }
    return ZF_OK;
}

