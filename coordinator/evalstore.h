/* Finished evaluations kept in the run directory (<output>/eval/<key>.json), so that a resumed or repeated
 * evaluation does not measure a file again. */
#ifndef ZF_EVALSTORE_H
#define ZF_EVALSTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"

typedef struct {
    double ppl_fp, ppl, ppl_unfolded; /* NaN where not measured */
    double seconds;
} zf_eval_result;

/* What a result depends on: the shards (the run directory's digest), the token file's content, the window length
 * and count, and which models were measured. */
uint64_t zf_eval_key(uint64_t run_digest, uint64_t tokens_xxh64, int64_t seq, int64_t windows, bool fp, bool unfolded);
/* False when no result is kept under key (or it cannot be read). */
bool zf_eval_store_find(const char *run_dir, uint64_t key, zf_eval_result *out);
/* Writes the result atomically; file is recorded for people reading the folder. */
zf_status zf_eval_store_put(const char *run_dir, uint64_t key, const char *file, const zf_eval_result *r);

#endif
