/* Export of a finished run as a GPTQ model folder: checks of the run and the source, the folder's life (temporary
 * name, stale ones removed, a finished one kept, publication by rename), option names, the export: section. */
#define _GNU_SOURCE
#include "coordinator/export.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/log.h"
#include "common/model.h"
#include "common/safetensors.h"
#include "coordinator/export_meta.h"
#include "coordinator/export_tensors.h"
#include "coordinator/rundir.h"

bool zf_export_format_parse(const char *s, zf_gptq_format *out)
{
    if (!strcmp(s, "gptq")) *out = ZF_GPTQ_V1;
    else if (!strcmp(s, "gptq_v2")) *out = ZF_GPTQ_V2;
    else return false;
    return true;
}

const char *zf_export_format_name(zf_gptq_format f) { return f == ZF_GPTQ_V2 ? "gptq_v2" : "gptq"; }

bool zf_export_dtype_parse(const char *s, zf_dtype *out)
{
    if (!strcmp(s, "float16")) *out = ZF_DT_F16;
    else if (!strcmp(s, "bfloat16")) *out = ZF_DT_BF16;
    else if (!strcmp(s, "float32")) *out = ZF_DT_F32;
    else return false;
    return true;
}

const char *zf_export_dtype_name(zf_dtype t)
{
    return t == ZF_DT_F16 ? "float16" : t == ZF_DT_BF16 ? "bfloat16" : "float32";
}

bool zf_export_size_parse(const char *s, int64_t *bytes)
{
    static const struct { const char *unit; double mult; } units[] = {
        {"", 1}, {"B", 1}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
        {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v > 0)) return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(end, units[i].unit) && v * units[i].mult >= 1 && v * units[i].mult < 9.0e18) {
            *bytes = (int64_t)(v * units[i].mult);
            return true;
        }
    return false;
}



/* Whether out_dir holds this export already (true), nothing (false), or something else (an error). */
static zf_status existing_export(const char *out_dir, const zf_export_facts *f, const zf_export_opts *o, bool *done)
{
    struct stat st;
    *done = false;
    if (stat(out_dir, &st) != 0) return ZF_OK;
    char path[PATH_MAX], *text = NULL;
    snprintf(path, sizeof path, "%s/quantize_config.json", out_dir);
    if (access(path, F_OK) != 0)
        return zf_fail(ZF_ERR_INPUT, "%s exists and is not a zfold export (no quantize_config.json): choose another "
                       "folder or remove it", out_dir);
    ZF_TRY(zf_read_small_file(path, 1u << 20, "a quantize_config.json", &text));
    cJSON *q = cJSON_Parse(text);
    free(text);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(q, "meta");
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(m, "config_hash");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(m, "dtype");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(q, "checkpoint_format");
    bool same = cJSON_IsString(hash) && cJSON_IsString(dt) && cJSON_IsString(fmt) &&
                !strcmp(hash->valuestring, f->config_hash) && !strcmp(dt->valuestring, zf_export_dtype_name(o->dtype)) &&
                !strcmp(fmt->valuestring, zf_export_format_name(o->format));
    char was[256];
    snprintf(was, sizeof was, "config_hash %s, checkpoint_format %s, dtype %s",
             cJSON_IsString(hash) ? hash->valuestring : "?", cJSON_IsString(fmt) ? fmt->valuestring : "?",
             cJSON_IsString(dt) ? dt->valuestring : "?");
    cJSON_Delete(q);
    if (!same)
        return zf_fail(ZF_ERR_INPUT, "%s holds another export (%s; this one: config_hash %s, checkpoint_format %s, "
                       "dtype %s): choose another folder or remove it", out_dir, was, f->config_hash,
                       zf_export_format_name(o->format), zf_export_dtype_name(o->dtype));
    *done = true;
    return ZF_OK;
}

static void remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* "<out_dir>.tmp.<pid>" folders of processes that no longer run: left by an interrupted export. */
static void remove_stale(const char *out_dir)
{
    char a[PATH_MAX], b[PATH_MAX];
    snprintf(a, sizeof a, "%s", out_dir);
    snprintf(b, sizeof b, "%s", out_dir);
    const char *parent = dirname(a), *base = basename(b);
    DIR *d = opendir(parent);
    if (!d) return;
    size_t bl = strlen(base);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, base, bl) || strncmp(e->d_name + bl, ".tmp.", 5)) continue;
        char *end;
        long pid = strtol(e->d_name + bl + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", parent, e->d_name);
        zf_log_warn("export: removing %s, left by an interrupted export", p);
        remove_flat_dir(p);
    }
    closedir(d);
}

static zf_status publish_dir(const char *tmp, const char *out_dir)
{
    if (rename(tmp, out_dir) != 0)
        return zf_fail(ZF_ERR_IO, "cannot rename %s to %s: %s", tmp, out_dir, strerror(errno));
    char a[PATH_MAX];
    snprintf(a, sizeof a, "%s", out_dir);
    int fd = open(dirname(a), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return ZF_OK;
}

/* Every block and unquantized.h5 finished and matching the manifest. */
static zf_status check_finished(const zf_rundir *r, const char *dir)
{
    for (int64_t b = -1; b < zf_rundir_n_blocks(r); b++) {
        char why[256], what[64];
        if (b < 0) snprintf(what, sizeof what, "unquantized.h5");
        else snprintf(what, sizeof what, "block %lld", (long long)b);
        if (!zf_rundir_verify(r, b, why, sizeof why))
            return zf_fail(ZF_ERR_INPUT, "%s: %s: %s: run zfold quantize to finish the run first", dir, what, why);
    }
    return ZF_OK;
}

static zf_status check_model(const char *model_dir, const zf_rundir *r, zf_model_config *c)
{
    ZF_TRY(zf_model_config_read(model_dir, c));
    zf_safetensors *st = NULL;
    ZF_TRY(zf_st_open(model_dir, &st));
    uint64_t fp = zf_st_fingerprint(st);
    zf_st_close(st);
    if (fp != zf_rundir_model_fingerprint(r))
        return zf_fail(ZF_ERR_INPUT, "%s: model fingerprint %016" PRIx64 ", the run recorded %016" PRIx64 ": the source "
                       "model changed since the run", model_dir, fp, zf_rundir_model_fingerprint(r));
    return ZF_OK;
}

zf_status zf_export_run(const char *run_dir, const char *out_dir, const zf_export_opts *o, zf_export_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    if (o->max_shard_bytes <= 0) return zf_fail(ZF_ERR_INPUT, "export: max_shard_size: expected a positive size");
    zf_rundir *r = NULL;
    ZF_TRY(zf_rundir_load(run_dir, &r));
    zf_export_facts f;
    zf_model_config c;
    zf_status s = check_finished(r, run_dir);
    if (s == ZF_OK) s = zf_export_read_facts(r, run_dir, &f);
    bool done = false;
    if (s == ZF_OK) s = existing_export(out_dir, &f, o, &done);
    if (s == ZF_OK && done) {
        sum->already_done = true;
        zf_log_info("export: %s already holds this run's export (config_hash %s, %s, %s)", out_dir, f.config_hash,
                    zf_export_format_name(o->format), zf_export_dtype_name(o->dtype));
        zf_rundir_close(r);
        return ZF_OK;
    }
    if (s == ZF_OK) s = check_model(f.model, r, &c);
    if (s == ZF_OK && c.gptq) s = zf_fail(ZF_ERR_INPUT, "%s: the run's model is a GPTQ checkpoint", f.model);
    char tmp[PATH_MAX];
    if (s == ZF_OK) {
        remove_stale(out_dir);
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_dir, (long)getpid());
        remove_flat_dir(tmp);
        s = zf_mkdirs(tmp);
        if (s == ZF_OK) s = zf_export_tensors(run_dir, r, &c, f.bits, f.group_size, o, tmp, sum);
        if (s == ZF_OK) s = zf_export_write_configs(f.model, &c, &f, o, sum, tmp);
        if (s == ZF_OK) s = zf_export_copy_side_files(f.model, tmp);
        if (s == ZF_OK) s = publish_dir(tmp, out_dir);
        if (s != ZF_OK) remove_flat_dir(tmp);
    }
    zf_rundir_close(r);
    if (s == ZF_OK)
        zf_log_info("export: %s written (%s, %s scales, %d file%s, %.1f MB of tensors, %lld zero point%s stored "
                    "shifted by one code)", out_dir, zf_export_format_name(o->format), zf_export_dtype_name(o->dtype),
                    sum->nfiles, sum->nfiles > 1 ? "s" : "", (double)sum->bytes / 1e6, (long long)sum->zeros_shifted,
                    sum->zeros_shifted == 1 ? "" : "s");
    return s;
}

zf_status zf_export_configured(const zf_job_config *cfg)
{
    if (!cfg->export_folder[0]) return ZF_OK;
    zf_export_opts o = {.format = cfg->export_format == ZF_EXPORT_FORMAT_GPTQ_V2 ? ZF_GPTQ_V2 : ZF_GPTQ_V1,
                        .dtype = cfg->export_dtype == ZF_EXPORT_DTYPE_FLOAT32    ? ZF_DT_F32
                                 : cfg->export_dtype == ZF_EXPORT_DTYPE_BFLOAT16 ? ZF_DT_BF16
                                                                                 : ZF_DT_F16,
                        .max_shard_bytes = (int64_t)(cfg->export_max_shard_gb * 1e9)};
    zf_export_summary sum;
    return zf_export_run(cfg->output, cfg->export_folder, &o, &sum);
}
