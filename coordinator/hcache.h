/* Cache of full-precision Hessians shared by the runs of a sweep: one checked file per (block, layer group). */
#ifndef ZF_HCACHE_H
#define ZF_HCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/model.h"
#include "common/status.h"

/* Entries live in <root>/<key as 16 hex digits>/b<block>-g<group>.hess. The key covers everything a
 * full-precision Hessian depends on (model, calibration tokens, window length, accumulation precision), so
 * runs that differ only in how they quantize share entries. */
typedef struct {
    bool enabled;             /* false when no root was configured: every call is a no-op/miss */
    char dir[1100];
    uint64_t key;
    int hits, stores;
    double seconds_saved;     /* compute time recorded by the entries that were read instead of recomputed */
} zf_hcache;

/* What the key hashes, in order: the model fingerprint, every calibration window's token ids (all ranks'
 * windows, in order), the window length, and the accumulation precision with the rank count when that
 * matters (fp32 sums depend on how they were split). */
uint64_t zf_hcache_key(uint64_t model_fingerprint, const int32_t *tokens, const int64_t *starts, int64_t nwin,
                       int64_t seq, bool fp64, int nranks);

/* root "" disables the cache. The key folder is created here. */
zf_status zf_hcache_open(zf_hcache *hc, const char *root, uint64_t key);

/* Whether an entry for (block, group) exists with the right header (the data is checked when read). */
bool zf_hcache_has(const zf_hcache *hc, int64_t block, zf_group g, int64_t dim);

/* Reads H [dim, dim]; a damaged entry is an error naming the file and telling to delete it. */
zf_status zf_hcache_load(zf_hcache *hc, int64_t block, zf_group g, int64_t dim, float *H);

/* Writes H atomically with the seconds it cost to compute (credited to later hits). */
zf_status zf_hcache_store(zf_hcache *hc, int64_t block, zf_group g, int64_t dim, const float *H, double seconds);

#endif
