/* Run directory bookkeeping: manifest.json (config, model fingerprint, finished shards with sizes and XXH64), resume
 * checks (refuse a different config or model, drop shards that fail their checksum) and --restart cleanup. */
#define _GNU_SOURCE
#include "coordinator/rundir.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* a state on the stack: nothing to allocate */
#include <xxhash.h>

#include "common/fsutil.h"
#include "common/log.h"
#include "coordinator/rundir_config.h"

#define MANIFEST "manifest.json"
#define MANIFEST_MAX_BYTES ((int64_t)64 << 20) /* a manifest of a 1000-block model is a few hundred kB */

typedef struct {
    bool done;
    char file[256];   /* relative to the run directory */
    int64_t bytes;
    uint64_t hash;
} entry;

struct zf_rundir {
    char dir[PATH_MAX];
    char *config;     /* effective config text */
    uint64_t model_fp;
    int64_t n_blocks;
    entry *blocks;    /* [n_blocks] */
    entry unq;
    cJSON *inputs;    /* what the run read, by name: content XXH64 as hex (token files, checkpoint tensors) */
};

/* ---- files ----------------------------------------------------------------------------------------------- */

static zf_status file_hash(const char *path, uint64_t *hash, int64_t *bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) return zf_fail(ZF_ERR_INPUT, "%s: %s", path, strerror(errno));
    XXH64_state_t st;
    char *buf = zf_malloc(1 << 20, "the shard checksum buffer");
    if (!buf) {
        fclose(f);
        return ZF_ERR_NOMEM;
    }
    XXH64_reset(&st, 0);
    int64_t total = 0;
    size_t n;
    while ((n = fread(buf, 1, 1 << 20, f)) > 0) {
        XXH64_update(&st, buf, n);
        total += (int64_t)n;
    }
    zf_status s = ferror(f) ? zf_fail(ZF_ERR_INPUT, "%s: read error", path) : ZF_OK;
    fclose(f);
    *hash = XXH64_digest(&st);
    *bytes = total;
    free(buf);
    return s;
}

/* Verifies an entry against the file on disk; the reason goes to why. */
static bool verify_entry(const zf_rundir *r, const entry *e, char *why, size_t n)
{
    if (!e->done) {
        snprintf(why, n, "not finished");
        return false;
    }
    char path[PATH_MAX + 256];
    snprintf(path, sizeof path, "%s/%s", r->dir, e->file);
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(why, n, "%s", strerror(errno));
        return false;
    }
    if ((int64_t)st.st_size != e->bytes) {
        snprintf(why, n, "%lld bytes, the manifest says %lld (truncated or rewritten)", (long long)st.st_size,
                 (long long)e->bytes);
        return false;
    }
    uint64_t h = 0;
    int64_t bytes = 0;
    if (file_hash(path, &h, &bytes) != ZF_OK) {
        snprintf(why, n, "%s", zf_last_error());
        return false;
    }
    if (h != e->hash || bytes != e->bytes) {
        snprintf(why, n, "XXH64 %016" PRIx64 ", the manifest says %016" PRIx64 " (corrupt)", h, e->hash);
        return false;
    }
    return true;
}

static zf_status read_text(const char *path, char **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return zf_fail(ZF_ERR_INPUT, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size > MANIFEST_MAX_BYTES) {
        fclose(f);
        return zf_fail(ZF_ERR_INPUT, "%s: larger than %lld bytes, not a zfold manifest; pass --restart to start over",
                       path, (long long)MANIFEST_MAX_BYTES);
    }
    char *buf = zf_malloc((size_t)st.st_size + 1, path);
    if (!buf) {
        fclose(f);
        return ZF_ERR_NOMEM;
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    return ZF_OK;
}

/* ---- manifest --------------------------------------------------------------------------------------------- */

static zf_status bad_field(const char *path, const char *field, const char *expected)
{
    return zf_fail(ZF_ERR_INPUT, "%s: field '%s' is missing or not %s; the manifest is damaged: pass --restart to "
                   "start over", path, field, expected);
}

static bool get_int(const cJSON *obj, const char *name, int64_t lo, int64_t hi, int64_t *v)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d)) return false;
    *v = (int64_t)d;
    return true;
}

static bool get_hex(const cJSON *obj, const char *name, uint64_t *v)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsString(j)) return false;
    const char *s = j->valuestring;
    size_t n = strlen(s);
    if (n == 0 || n > 16 || strspn(s, "0123456789abcdefABCDEF") != n) return false;
    *v = strtoull(s, NULL, 16);
    return true;
}

/* A relative file name inside the run directory: no absolute path, no "..". */
static bool get_file(const cJSON *obj, char *dst, size_t n)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "file");
    if (!cJSON_IsString(j)) return false;
    const char *s = j->valuestring;
    if (!*s || *s == '/' || strstr(s, "..") || strlen(s) >= n) return false;
    snprintf(dst, n, "%s", s);
    return true;
}

static zf_status parse_entry(const char *path, const cJSON *j, const char *field, entry *e)
{
    char f[96];
    if (!cJSON_IsObject(j)) return bad_field(path, field, "an object");
    snprintf(f, sizeof f, "%s.file", field);
    if (!get_file(j, e->file, sizeof e->file)) return bad_field(path, f, "a relative file name");
    snprintf(f, sizeof f, "%s.bytes", field);
    if (!get_int(j, "bytes", 0, (int64_t)1 << 53, &e->bytes)) return bad_field(path, f, "a byte count");
    snprintf(f, sizeof f, "%s.xxh64", field);
    if (!get_hex(j, "xxh64", &e->hash)) return bad_field(path, f, "a hex XXH64");
    e->done = true;
    return ZF_OK;
}

static void rundir_free(zf_rundir *r)
{
    if (!r) return;
    cJSON_Delete(r->inputs);
    free(r->config);
    free(r->blocks);
    free(r);
}

/* Parses <dir>/manifest.json into a new rundir (every listed shard counted as done, nothing verified). */
static zf_status load_manifest(const char *dir, zf_rundir **out)
{
    *out = NULL;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/" MANIFEST, dir);
    char *text = NULL;
    ZF_TRY(read_text(path, &text));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root)
        return zf_fail(ZF_ERR_INPUT, "%s: not valid JSON; the manifest is damaged: pass --restart to start over",
                       path);
    zf_status s = ZF_OK;
    zf_rundir *r = zf_calloc(1, sizeof *r, "the run directory");
    if (!r) {
        cJSON_Delete(root);
        return ZF_ERR_NOMEM;
    }
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    const cJSON *blocks = cJSON_GetObjectItemCaseSensitive(root, "blocks");
    const cJSON *unq = cJSON_GetObjectItemCaseSensitive(root, "unquantized");
    int64_t version = 0;
    uint64_t cfg_fp = 0;
    if (!cJSON_IsObject(root)) s = bad_field(path, "(root)", "an object");
    else if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, ZF_RUN_FORMAT)) s = bad_field(path, "format", "\"" ZF_RUN_FORMAT "\"");
    else if (!get_int(root, "version", 0, INT32_MAX, &version)) s = bad_field(path, "version", "an integer");
    else if (version != ZF_RUN_VERSION)
        s = zf_fail(ZF_ERR_INPUT, "%s: manifest version %lld is not supported (expected %d); pass --restart to start "
                    "over", path, (long long)version, ZF_RUN_VERSION);
    else if (!cJSON_IsString(cfg)) s = bad_field(path, "config", "a string");
    else if (!get_hex(root, "config_fingerprint", &cfg_fp)) s = bad_field(path, "config_fingerprint", "a hex XXH64");
    else if (!get_hex(root, "model_fingerprint", &r->model_fp)) s = bad_field(path, "model_fingerprint", "a hex XXH64");
    else if (!get_int(root, "n_blocks", 0, 1 << 20, &r->n_blocks)) s = bad_field(path, "n_blocks", "a block count");
    else if (!cJSON_IsArray(blocks)) s = bad_field(path, "blocks", "an array");
    else if (unq && !cJSON_IsNull(unq) && !cJSON_IsObject(unq)) s = bad_field(path, "unquantized", "an object or null");
    if (s == ZF_OK && !(r->config = strdup(cfg->valuestring))) s = zf_fail(ZF_ERR_NOMEM, "no memory for the config");
    if (s == ZF_OK && zf_cfg_fingerprint(r->config) != cfg_fp)
        s = bad_field(path, "config_fingerprint", "the fingerprint of 'config'");
    if (s == ZF_OK && !(r->blocks = zf_calloc((size_t)r->n_blocks + 1, sizeof *r->blocks, "the block list")))
        s = ZF_ERR_NOMEM;
    const cJSON *jb;
    int idx = 0;
    if (s == ZF_OK) cJSON_ArrayForEach(jb, blocks) {
        char field[64];
        int64_t b = -1;
        snprintf(field, sizeof field, "blocks[%d]", idx++);
        entry e = {0};
        if ((s = parse_entry(path, jb, field, &e)) != ZF_OK) break;
        if (!get_int(jb, "block", 0, r->n_blocks - 1, &b)) {
            char f2[96];
            snprintf(f2, sizeof f2, "%s.block", field);
            s = bad_field(path, f2, "a block index below n_blocks");
            break;
        }
        if (r->blocks[b].done) {
            s = zf_fail(ZF_ERR_INPUT, "%s: block %lld is listed twice; the manifest is damaged: pass --restart to "
                        "start over", path, (long long)b);
            break;
        }
        r->blocks[b] = e;
    }
    if (s == ZF_OK && cJSON_IsObject(unq)) s = parse_entry(path, unq, "unquantized", &r->unq);
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs"), *in;
    if (s == ZF_OK && inputs && !cJSON_IsObject(inputs)) s = bad_field(path, "inputs", "an object");
    if (s == ZF_OK) cJSON_ArrayForEach(in, inputs) {
        uint64_t h;
        if (!in->string || !get_hex(inputs, in->string, &h)) {
            s = bad_field(path, "inputs", "an object of hex XXH64 strings");
            break;
        }
    }
    if (s == ZF_OK && !(r->inputs = inputs ? cJSON_Duplicate(inputs, 1) : cJSON_CreateObject()))
        s = zf_fail(ZF_ERR_NOMEM, "no memory for the manifest's inputs");
    cJSON_Delete(root);
    if (s != ZF_OK) {
        rundir_free(r);
        return s;
    }
    *out = r;
    return ZF_OK;
}

static void hex64(char *buf, uint64_t v) { snprintf(buf, 17, "%016" PRIx64, v); }

static cJSON *entry_json(const entry *e, int64_t block)
{
    char hex[17];
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    if (block >= 0) cJSON_AddNumberToObject(j, "block", (double)block);
    cJSON_AddStringToObject(j, "file", e->file);
    cJSON_AddNumberToObject(j, "bytes", (double)e->bytes);
    hex64(hex, e->hash);
    cJSON_AddStringToObject(j, "xxh64", hex);
    return j;
}

static zf_status write_manifest(const zf_rundir *r)
{
    char hex[17];
    cJSON *root = cJSON_CreateObject();
    if (!root) return zf_fail(ZF_ERR_NOMEM, "no memory for the manifest");
    cJSON_AddStringToObject(root, "format", ZF_RUN_FORMAT);
    cJSON_AddNumberToObject(root, "version", ZF_RUN_VERSION);
    cJSON_AddStringToObject(root, "zfold_version", ZF_VERSION);
    hex64(hex, zf_cfg_fingerprint(r->config));
    cJSON_AddStringToObject(root, "config_fingerprint", hex);
    hex64(hex, r->model_fp);
    cJSON_AddStringToObject(root, "model_fingerprint", hex);
    cJSON_AddStringToObject(root, "config", r->config);
    cJSON_AddNumberToObject(root, "n_blocks", (double)r->n_blocks);
    cJSON *blocks = cJSON_AddArrayToObject(root, "blocks");
    for (int64_t b = 0; b < r->n_blocks; b++)
        if (r->blocks[b].done) cJSON_AddItemToArray(blocks, entry_json(&r->blocks[b], b));
    if (r->unq.done) cJSON_AddItemToObject(root, "unquantized", entry_json(&r->unq, -1));
    else cJSON_AddNullToObject(root, "unquantized");
    if (r->inputs) cJSON_AddItemReferenceToObject(root, "inputs", r->inputs);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return zf_fail(ZF_ERR_NOMEM, "no memory to format the manifest");
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/" MANIFEST, r->dir);
    zf_status s = zf_write_file_atomic(path, text, strlen(text));
    free(text);
    return s;
}

/* blocks/block-<digits>.h5, optionally with the writer's ".tmp.<pid>" suffix: the only names restart removes. */
static bool is_block_file(const char *name)
{
    if (strncmp(name, "block-", 6)) return false;
    const char *p = name + 6;
    size_t nd = strspn(p, "0123456789");
    if (nd == 0) return false;
    p += nd;
    if (strncmp(p, ".h5", 3)) return false;
    p += 3;
    if (!*p) return true;
    if (strncmp(p, ".tmp.", 5)) return false;
    p += 5;
    return *p && strspn(p, "0123456789") == strlen(p);
}

static zf_status remove_if_present(const char *path)
{
    if (unlink(path) != 0 && errno != ENOENT) return zf_fail(ZF_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return ZF_OK;
}

static zf_status restart_clean(const char *dir)
{
    char path[PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/blocks", dir);
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        zf_status s = ZF_OK;
        while (s == ZF_OK && (de = readdir(d))) {
            if (!is_block_file(de->d_name)) continue;
            snprintf(path, sizeof path, "%s/blocks/%s", dir, de->d_name);
            s = remove_if_present(path);
        }
        closedir(d);
        ZF_TRY(s);
    } else if (errno != ENOENT) {
        return zf_fail(ZF_ERR_IO, "cannot list %s: %s", path, strerror(errno));
    }
    /* kept evaluations: eval/<16 hex digits>.json */
    snprintf(path, sizeof path, "%s/eval", dir);
    if ((d = opendir(path))) {
        struct dirent *de;
        zf_status s = ZF_OK;
        while (s == ZF_OK && (de = readdir(d))) {
            if (strspn(de->d_name, "0123456789abcdef") != 16 || strcmp(de->d_name + 16, ".json")) continue;
            snprintf(path, sizeof path, "%s/eval/%s", dir, de->d_name);
            s = remove_if_present(path);
        }
        closedir(d);
        ZF_TRY(s);
    }
    static const char *files[] = {"unquantized.h5", "report.json", MANIFEST};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        ZF_TRY(remove_if_present(path));
    }
    return ZF_OK;
}

/* ---- public ----------------------------------------------------------------------------------------------- */

zf_status zf_rundir_load(const char *dir, zf_rundir **out)
{
    if (strlen(dir) >= PATH_MAX - 64) return zf_fail(ZF_ERR_INPUT, "run directory path too long: %s", dir);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/" MANIFEST, dir);
    if (access(path, F_OK) != 0)
        return zf_fail(ZF_ERR_INPUT, "%s: not a zfold run directory (no " MANIFEST ": %s)", dir, strerror(errno));
    return load_manifest(dir, out);
}

/* Loads an existing manifest and refuses a different run (every relevant difference named); drops the shards that
 * fail verification from the done set. */
static zf_status open_existing(const char *dir, const char *path, const char *config_yaml, uint64_t model_fingerprint,
                               int64_t n_blocks, zf_rundir **out)
{
    zf_rundir *r = NULL;
    zf_status s = ZF_OK;
    *out = NULL;
    {
        ZF_TRY(load_manifest(dir, &r));
        /* refuse to mix: every relevant difference is named, so the user sees what changed in one go */
        char diff[3072] = "";
        int ndiff = 0;
        if ((s = zf_cfg_diff(r->config, config_yaml, diff, sizeof diff, &ndiff)) != ZF_OK) {
            rundir_free(r);
            return s;
        }
        size_t used = strlen(diff);
        if (r->model_fp != model_fingerprint) {
            snprintf(diff + used, sizeof diff - used, "%smodel fingerprint was %016" PRIx64 ", now %016" PRIx64
                     " (a different checkpoint)", ndiff ? "; " : "", r->model_fp, model_fingerprint);
            ndiff++;
            used = strlen(diff);
        }
        if (r->n_blocks != n_blocks) {
            snprintf(diff + used, sizeof diff - used, "%sn_blocks was %lld, now %lld", ndiff ? "; " : "",
                     (long long)r->n_blocks, (long long)n_blocks);
            ndiff++;
        }
        if (ndiff) {
            rundir_free(r);
            return zf_fail(ZF_ERR_INPUT, "%s: the run directory holds a run with a different %s: %s. Pass --restart "
                           "to delete its shards and start over, or choose another output folder", path,
                           ndiff == 1 ? "setting" : "settings", diff);
        }
        char why[512];
        for (int64_t b = 0; b < n_blocks; b++)
            if (r->blocks[b].done && !verify_entry(r, &r->blocks[b], why, sizeof why)) {
                zf_log_warn("%s/%s: block %lld will be quantized again: %s", dir, r->blocks[b].file, (long long)b, why);
                r->blocks[b].done = false;
            }
        if (r->unq.done && !verify_entry(r, &r->unq, why, sizeof why)) {
            zf_log_warn("%s/%s: will be written again: %s", dir, r->unq.file, why);
            r->unq.done = false;
        }
    }
    *out = r;
    return ZF_OK;
}

static const char *const top_files[] = {"unquantized.h5", "report.json", MANIFEST, "config.yaml"};

/* name is "<one of zfold's top-level files>.tmp.<pid>": a write of zfold's that was interrupted. */
static bool is_top_tmp(const char *name)
{
    for (size_t i = 0; i < sizeof top_files / sizeof top_files[0]; i++) {
        size_t n = strlen(top_files[i]);
        if (strncmp(name, top_files[i], n) || strncmp(name + n, ".tmp.", 5)) continue;
        const char *pid = name + n + 5;
        if (*pid && strspn(pid, "0123456789") == strlen(pid)) return true;
    }
    return false;
}

/* A kill between a file's write and its rename leaves <name>.tmp.<pid>: no writer is left to finish it. */
static void remove_stale_tmp(const char *dir)
{
    char path[PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/blocks", dir);
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!is_block_file(de->d_name) || !strstr(de->d_name, ".tmp.")) continue;
        snprintf(path, sizeof path, "%s/blocks/%s", dir, de->d_name);
        if (unlink(path) == 0) zf_log_info("removed %s, left by an interrupted write", path);
    }
    if (d) closedir(d);
    d = opendir(dir);
    while (d && (de = readdir(d))) {
        if (!is_top_tmp(de->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (unlink(path) == 0) zf_log_info("removed %s, left by an interrupted write", path);
    }
    if (d) closedir(d);
}

/* A folder that holds files but no manifest is someone else's: zfold neither writes into it nor cleans it. */
static zf_status refuse_foreign(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return ZF_OK; /* created next */
    struct dirent *de;
    const char *other = NULL;
    char first[256] = "";
    while ((de = readdir(d)))
        /* tokens/: the run's texts, tokenized when the job started (calibration.text, eval.texts) */
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "tokens") &&
            !is_top_tmp(de->d_name)) {
            snprintf(first, sizeof first, "%s", de->d_name);
            other = first;
            break;
        }
    closedir(d);
    if (!other) return ZF_OK;
    return zf_fail(ZF_ERR_INPUT, "%s: the output folder is not empty (it holds '%s') and is not a zfold run directory "
                   "(no " MANIFEST "); choose an empty or new folder", dir, other);
}

zf_status zf_rundir_open_finished(const char *dir, const char *config_yaml, uint64_t model_fingerprint,
                                  int64_t n_blocks, zf_rundir **out)
{
    *out = NULL;
    zf_rundir *r = NULL;
    ZF_TRY(zf_rundir_load(dir, &r));
    rundir_free(r);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/" MANIFEST, dir);
    return open_existing(dir, path, config_yaml, model_fingerprint, n_blocks, out);
}

zf_status zf_rundir_open(const char *dir, const char *config_yaml, uint64_t model_fingerprint, int64_t n_blocks,
                         bool restart, zf_rundir **out)
{
    ZF_ASSERT(dir && config_yaml && out && n_blocks >= 0);
    *out = NULL;
    if (strlen(dir) >= PATH_MAX - 64) return zf_fail(ZF_ERR_INPUT, "run directory path too long: %s", dir);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/" MANIFEST, dir);
    bool existing = access(path, F_OK) == 0;
    if (!existing) ZF_TRY(refuse_foreign(dir));
    ZF_TRY(zf_mkdirs(dir));
    if (restart) ZF_TRY(restart_clean(dir));
    remove_stale_tmp(dir);
    existing = existing && !restart;
    zf_rundir *r = NULL;
    zf_status s = ZF_OK;
    if (existing) {
        ZF_TRY(open_existing(dir, path, config_yaml, model_fingerprint, n_blocks, &r));
        /* the new config text differs at most in ignored keys (eval.*, ...): record the one in use */
        free(r->config);
        r->config = NULL;
    } else {
        if (!(r = zf_calloc(1, sizeof *r, "the run directory")) ||
            !(r->blocks = zf_calloc((size_t)n_blocks + 1, sizeof *r->blocks, "the block list"))) {
            rundir_free(r);
            return ZF_ERR_NOMEM;
        }
        snprintf(r->dir, sizeof r->dir, "%s", dir);
        r->model_fp = model_fingerprint;
        r->n_blocks = n_blocks;
        if (!(r->inputs = cJSON_CreateObject())) {
            rundir_free(r);
            return ZF_ERR_NOMEM;
        }
    }
    if (!(r->config = strdup(config_yaml))) s = zf_fail(ZF_ERR_NOMEM, "no memory for the config");
    if (s == ZF_OK) s = write_manifest(r);
    if (s != ZF_OK) {
        rundir_free(r);
        return s;
    }
    *out = r;
    return ZF_OK;
}

zf_status zf_rundir_input(zf_rundir *r, const char *name, uint64_t hash)
{
    uint64_t was;
    char hex[17];
    if (get_hex(r->inputs, name, &was)) {
        if (was == hash) return ZF_OK;
        return zf_fail(ZF_ERR_INPUT, "%s/" MANIFEST ": %s has changed since the run began (content XXH64 %016" PRIx64
                       ", recorded %016" PRIx64 "): the finished blocks were computed from the earlier one. Restore it, "
                       "or pass --restart to start over", r->dir, name, hash, was);
    }
    hex64(hex, hash);
    if (!cJSON_AddStringToObject(r->inputs, name, hex)) return zf_fail(ZF_ERR_NOMEM, "no memory for the manifest");
    return ZF_OK;
}

uint64_t zf_rundir_digest(const zf_rundir *r)
{
    XXH64_state_t st;
    XXH64_reset(&st, 0);
    for (int64_t b = 0; b < r->n_blocks; b++)
        if (r->blocks[b].done) XXH64_update(&st, &r->blocks[b].hash, sizeof r->blocks[b].hash);
    if (r->unq.done) XXH64_update(&st, &r->unq.hash, sizeof r->unq.hash);
    return XXH64_digest(&st);
}

bool zf_rundir_block_done(const zf_rundir *r, int64_t block)
{
    return block >= 0 && block < r->n_blocks && r->blocks[block].done;
}

int64_t zf_rundir_blocks_done(const zf_rundir *r)
{
    int64_t n = 0;
    for (int64_t b = 0; b < r->n_blocks; b++) n += r->blocks[b].done;
    return n;
}

int64_t zf_rundir_first_unfinished(const zf_rundir *r)
{
    for (int64_t b = 0; b < r->n_blocks; b++)
        if (!r->blocks[b].done) return b;
    return r->n_blocks;
}

/* Measures path and records it in e, relative to the run directory. */
static zf_status record(zf_rundir *r, entry *e, const char *path)
{
    char real_dir[PATH_MAX], real_file[PATH_MAX];
    if (!realpath(r->dir, real_dir)) return zf_fail(ZF_ERR_IO, "cannot resolve %s: %s", r->dir, strerror(errno));
    if (!realpath(path, real_file)) return zf_fail(ZF_ERR_INPUT, "cannot resolve %s: %s", path, strerror(errno));
    size_t n = strlen(real_dir);
    if (strncmp(real_file, real_dir, n) || real_file[n] != '/' || strlen(real_file + n + 1) >= sizeof e->file)
        return zf_fail(ZF_ERR_INPUT, "%s is not inside the run directory %s", path, r->dir);
    entry ne = {.done = true};
    snprintf(ne.file, sizeof ne.file, "%s", real_file + n + 1);
    ZF_TRY(file_hash(path, &ne.hash, &ne.bytes));
    *e = ne;
    return write_manifest(r);
}

zf_status zf_rundir_mark_done(zf_rundir *r, int64_t block, const char *path)
{
    ZF_ASSERT(block >= 0 && block < r->n_blocks);
    return record(r, &r->blocks[block], path);
}

zf_status zf_rundir_mark_unquantized(zf_rundir *r, const char *path) { return record(r, &r->unq, path); }

bool zf_rundir_unquantized_done(const zf_rundir *r) { return r->unq.done; }

const char *zf_rundir_path(const zf_rundir *r) { return r->dir; }

void zf_rundir_close(zf_rundir *r) { rundir_free(r); }

bool zf_rundir_config_value(const zf_rundir *r, const char *key, char *buf, size_t n)
{
    zf_cfg_line l;
    if (!zf_cfg_find(r->config, key, &l)) return false;
    const char *v = l.value;
    size_t len = l.vlen;
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        v++;
        len -= 2;
    }
    snprintf(buf, n, "%.*s", (int)len, v);
    return true;
}

uint64_t zf_rundir_model_fingerprint(const zf_rundir *r) { return r->model_fp; }

int64_t zf_rundir_n_blocks(const zf_rundir *r) { return r->n_blocks; }

const char *zf_rundir_file(const zf_rundir *r, int64_t block)
{
    const entry *e = block < 0 ? &r->unq : block < r->n_blocks ? &r->blocks[block] : NULL;
    return e && e->done ? e->file : NULL;
}

bool zf_rundir_verify(const zf_rundir *r, int64_t block, char *why, size_t n)
{
    if (block >= r->n_blocks) {
        snprintf(why, n, "no block %lld", (long long)block);
        return false;
    }
    return verify_entry(r, block < 0 ? &r->unq : &r->blocks[block], why, n);
}
