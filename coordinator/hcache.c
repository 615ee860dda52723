/* Hessian cache files: a fixed header (magic, key, block, group, dim, seconds, XXH64 of the data) then fp32 data. */
#include "coordinator/hcache.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/fsutil.h"

#define MAGIC "ZFHESS01"

typedef struct {
    char magic[8];
    uint64_t key;
    int64_t block, group, dim;
    double seconds;
    uint64_t data_hash;
} header;

uint64_t zf_hcache_key(uint64_t model_fingerprint, const int32_t *tokens, const int64_t *starts, int64_t nwin,
                       int64_t seq, bool fp64, int nranks)
{
    XXH64_state_t *st = XXH64_createState();
    ZF_ASSERT(st);
    XXH64_reset(st, 0x68657373ull);
    int64_t meta[4] = {seq, nwin, fp64 ? 64 : 32, fp64 ? 0 : nranks};
    XXH64_update(st, &model_fingerprint, sizeof model_fingerprint);
    XXH64_update(st, meta, sizeof meta);
    for (int64_t i = 0; i < nwin; i++) XXH64_update(st, tokens + starts[i], sizeof(int32_t) * (size_t)seq);
    uint64_t h = XXH64_digest(st);
    XXH64_freeState(st);
    return h;
}

zf_status zf_hcache_open(zf_hcache *hc, const char *root, uint64_t key)
{
    memset(hc, 0, sizeof *hc);
    if (!root || !root[0]) return ZF_OK;
    int n = snprintf(hc->dir, sizeof hc->dir, "%s/%016" PRIx64, root, key);
    if (n < 0 || (size_t)n >= sizeof hc->dir) return zf_fail(ZF_ERR_INPUT, "calibration.cache: path too long: %s", root);
    ZF_TRY(zf_mkdirs(hc->dir));
    hc->key = key;
    hc->enabled = true;
    return ZF_OK;
}

static void entry_path(const zf_hcache *hc, int64_t block, zf_group g, char *path, size_t cap)
{
    snprintf(path, cap, "%s/b%04lld-%s.hess", hc->dir, (long long)block, zf_group_name(g));
}

/* Opens an entry and checks its header against what the caller expects; NULL (with why) when it does not fit. */
static FILE *open_entry(const zf_hcache *hc, int64_t block, zf_group g, int64_t dim, header *h, char *why,
                        size_t cap)
{
    char path[1200];
    entry_path(hc, block, g, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, cap, "%s", strerror(errno));
        return NULL;
    }
    long expect = (long)(sizeof *h + sizeof(float) * (size_t)(dim * dim));
    const char *bad = NULL;
    if (fread(h, sizeof *h, 1, f) != 1) bad = "shorter than its header";
    else if (memcmp(h->magic, MAGIC, 8)) bad = "not a zfold Hessian cache entry (magic)";
    else if (h->key != hc->key) bad = "key differs from its folder's";
    else if (h->block != block || h->group != g) bad = "block or group differs from its name";
    else if (h->dim != dim) bad = "dimension differs from the model's";
    else if (fseek(f, 0, SEEK_END) != 0 || ftell(f) != expect) bad = "size differs from its header's dimension";
    else if (fseek(f, (long)sizeof *h, SEEK_SET) != 0) bad = "cannot seek";
    if (bad) {
        snprintf(why, cap, "%s", bad);
        fclose(f);
        return NULL;
    }
    return f;
}

bool zf_hcache_has(const zf_hcache *hc, int64_t block, zf_group g, int64_t dim)
{
    if (!hc->enabled) return false;
    header h;
    char why[128];
    FILE *f = open_entry(hc, block, g, dim, &h, why, sizeof why);
    if (f) fclose(f);
    return f != NULL;
}

zf_status zf_hcache_load(zf_hcache *hc, int64_t block, zf_group g, int64_t dim, float *H)
{
    char path[1200], why[128];
    entry_path(hc, block, g, path, sizeof path);
    header h;
    FILE *f = open_entry(hc, block, g, dim, &h, why, sizeof why);
    if (!f)
        return zf_fail(ZF_ERR_INPUT, "%s: Hessian cache entry unusable: %s; delete it (or %s) to recompute", path, why,
                       hc->dir);
    size_t n = (size_t)(dim * dim);
    size_t got = fread(H, sizeof(float), n, f);
    fclose(f);
    if (got != n || XXH64(H, sizeof(float) * n, 0) != h.data_hash)
        return zf_fail(ZF_ERR_INPUT, "%s: Hessian cache entry damaged (data checksum differs from its header); delete "
                       "it (or %s) to recompute", path, hc->dir);
    hc->hits++;
    hc->seconds_saved += h.seconds;
    return ZF_OK;
}

zf_status zf_hcache_store(zf_hcache *hc, int64_t block, zf_group g, int64_t dim, const float *H, double seconds)
{
    if (!hc->enabled) return ZF_OK;
    char path[1200];
    entry_path(hc, block, g, path, sizeof path);
    size_t bytes = sizeof(float) * (size_t)(dim * dim);
    header h = {.key = hc->key, .block = block, .group = g, .dim = dim, .seconds = seconds,
                .data_hash = XXH64(H, bytes, 0)};
    memcpy(h.magic, MAGIC, 8);
    zf_atomic_file a;
    ZF_TRY(zf_atomic_begin(&a, path));
    zf_atomic_write(&a, &h, sizeof h);
    zf_atomic_write(&a, H, bytes);
    ZF_TRY(zf_atomic_commit(&a));
    hc->stores++;
    return ZF_OK;
}
