/* The effective config text a run directory records: its key/value lines, fingerprint and comparison. */
#ifndef ZF_RUNDIR_CONFIG_H
#define ZF_RUNDIR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* One "key: value" line of the YAML written by zf_config_write_yaml, with its section prefixed ("eval.fp"). */
typedef struct {
    char key[128];
    const char *value; /* into the text, not terminated */
    size_t vlen;
} zf_cfg_line;

bool zf_cfg_find(const char *text, const char *key, zf_cfg_line *out);
/* XXH64 of the lines of every key that can change a quantized result (the table's affects != 0). */
uint64_t zf_cfg_fingerprint(const char *text);
/* Appends "key was OLD, now NEW" to buf for every key that differs and matters to the method of either text; a key
 * one text lacks (written by an older zfold) counts as its default. *ndiff: the number of differences. */
zf_status zf_cfg_diff(const char *old_text, const char *new_text, char *buf, size_t cap, int *ndiff);

#endif
