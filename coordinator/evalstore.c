/* Finished evaluations kept as <output>/eval/<key>.json: written atomically, read back by key. */
#include "coordinator/evalstore.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/fsutil.h"

#define EVAL_DIR "eval"

uint64_t zf_eval_key(uint64_t run_digest, uint64_t tokens_xxh64, int64_t seq, int64_t windows, bool fp, bool unfolded)
{
    uint64_t v[6] = {run_digest, tokens_xxh64, (uint64_t)seq, (uint64_t)windows, fp, unfolded};
    return XXH64(v, sizeof v, 0x6576616c); /* "eval" */
}

static void result_path(const char *run_dir, uint64_t key, char *path, size_t n)
{
    snprintf(path, n, "%s/" EVAL_DIR "/%016" PRIx64 ".json", run_dir, key);
}

static double number_or_nan(const cJSON *o, const char *name)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(j) ? j->valuedouble : NAN;
}

bool zf_eval_store_find(const char *run_dir, uint64_t key, zf_eval_result *out)
{
    char path[4200], *text = NULL;
    result_path(run_dir, key, path, sizeof path);
    if (zf_read_small_file(path, 1 << 16, "a kept evaluation", &text) != ZF_OK) {
        zf_clear_error();
        return false;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    bool ok = cJSON_IsObject(root) && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "ppl"));
    if (ok) *out = (zf_eval_result){number_or_nan(root, "ppl_fp"), number_or_nan(root, "ppl"),
                                    number_or_nan(root, "ppl_unfolded"), number_or_nan(root, "seconds")};
    cJSON_Delete(root);
    return ok;
}

static void add_number(cJSON *o, const char *name, double v)
{
    if (isfinite(v)) cJSON_AddNumberToObject(o, name, v);
}

zf_status zf_eval_store_put(const char *run_dir, uint64_t key, const char *file, const zf_eval_result *r)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" EVAL_DIR, run_dir);
    ZF_TRY(zf_mkdirs(path));
    cJSON *root = cJSON_CreateObject();
    if (!root) return zf_fail(ZF_ERR_NOMEM, "no memory for a kept evaluation");
    cJSON_AddStringToObject(root, "file", file);
    add_number(root, "ppl_fp", r->ppl_fp);
    add_number(root, "ppl", r->ppl);
    add_number(root, "ppl_unfolded", r->ppl_unfolded);
    add_number(root, "seconds", r->seconds);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return zf_fail(ZF_ERR_NOMEM, "no memory for a kept evaluation");
    result_path(run_dir, key, path, sizeof path);
    zf_status s = zf_write_file_atomic(path, text, strlen(text));
    free(text);
    return s;
}
