/* The run directory's manifest (manifest.json): which blocks are finished, with sizes and checksums, for resume. */
#ifndef ZF_RUNDIR_H
#define ZF_RUNDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define ZF_RUN_FORMAT "zfold-run"
#define ZF_RUN_VERSION 1

typedef struct zf_rundir zf_rundir;

/* Opens or creates <dir>/manifest.json. config_yaml is the effective config (as written by zf_config_write_yaml);
 * keys that do not change the quantized result of its method (output, threads, eval.*; alpha for rtn: the key
 * table's affects) are ignored when comparing.
 * If a manifest exists and the model fingerprint or a relevant config key differs: ZF_ERR_INPUT naming each
 * differing key with old and new values (or the model fingerprints), and saying to pass --restart to start over.
 * restart = true deletes the old shards and manifest (only files zfold wrote: blocks/block-*.h5, unquantized.h5,
 * manifest.json, report.json) first. A folder with files but no manifest is refused (not a run directory), and a
 * resume removes the temporary files an interrupted write left.
 * On open, every listed block's shard is verified (exists, size and XXH64 checksum match the manifest); a block whose
 * shard is missing, truncated or corrupt is logged with zf_log_warn (file and reason) and dropped from the done set. */
zf_status zf_rundir_open(const char *dir, const char *config_yaml, uint64_t model_fingerprint, int64_t n_blocks,
                         bool restart, zf_rundir **out);
/* The content (XXH64) of an input the run read (a token file, a checkpoint tensor) under name: recorded the first
 * time (in the manifest at its next write), and on later reads, resumes included, compared: a different content is
 * ZF_ERR_INPUT naming the input. */
zf_status zf_rundir_input(zf_rundir *r, const char *name, uint64_t hash);
/* For evaluation: the same checks as zf_rundir_open on an existing run directory (its manifest must exist), but
 * nothing is written, so a finished run on read-only storage can be evaluated. */
zf_status zf_rundir_open_finished(const char *dir, const char *config_yaml, uint64_t model_fingerprint,
                                  int64_t n_blocks, zf_rundir **out);
/* XXH64 of every finished shard's checksum: changes whenever a shard is written again. */
uint64_t zf_rundir_digest(const zf_rundir *r);
bool zf_rundir_block_done(const zf_rundir *r, int64_t block);
int64_t zf_rundir_blocks_done(const zf_rundir *r);          /* count */
int64_t zf_rundir_first_unfinished(const zf_rundir *r);     /* n_blocks if all done */
/* Records block b's shard (already renamed into place at path, which must lie inside the run directory):
 * size + XXH64, then rewrites manifest.json atomically. */
zf_status zf_rundir_mark_done(zf_rundir *r, int64_t block, const char *path);
zf_status zf_rundir_mark_unquantized(zf_rundir *r, const char *path);  /* same for unquantized.h5 */
bool zf_rundir_unquantized_done(const zf_rundir *r);
const char *zf_rundir_path(const zf_rundir *r);
void zf_rundir_close(zf_rundir *r);

/* Read-only access for `zfold inspect`: loads <dir>/manifest.json without comparing it to a config or verifying
 * the shards (every listed block counts as done until zf_rundir_verify says otherwise). */
zf_status zf_rundir_load(const char *dir, zf_rundir **out);
/* The value of a config key (dotted, e.g. "quant" keys are top level: "bits", "calibration.windows") as written
 * in the YAML, surrounding quotes removed; false if absent. */
bool zf_rundir_config_value(const zf_rundir *r, const char *key, char *buf, size_t n);
uint64_t zf_rundir_model_fingerprint(const zf_rundir *r);
int64_t zf_rundir_n_blocks(const zf_rundir *r);
/* The file recorded for block b (-1: unquantized.h5), relative to the run directory; NULL when not listed. */
const char *zf_rundir_file(const zf_rundir *r, int64_t block);
/* Checks block b's (-1: unquantized.h5) shard against the manifest: exists, size and XXH64. On false, why holds
 * the reason ("not finished", "missing", "N bytes, manifest says M", "checksum differs"). */
bool zf_rundir_verify(const zf_rundir *r, int64_t block, char *why, size_t n);

#endif
