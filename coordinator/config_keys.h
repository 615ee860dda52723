/* The config key table's entries, shared by config.c (the table and values) and config_yaml.c (the YAML reader). */
#ifndef ZF_CONFIG_KEYS_H
#define ZF_CONFIG_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "coordinator/config.h"

/* The option types of worker/quant_opts.h, then the config-only ones. */
typedef enum { ZF_KEY_BOOL = ZF_OPT_BOOL, ZF_KEY_I32 = ZF_OPT_I32, ZF_KEY_INT = ZF_OPT_I64, ZF_KEY_DOUBLE = ZF_OPT_DOUBLE,
               ZF_KEY_ENUM = ZF_OPT_ENUM, ZF_KEY_PATH, ZF_KEY_PATH_LIST } zf_key_type;

/* The fields of zf_opt_desc, with offset into zf_job_config; paths default to "" and lists to []. */
typedef struct {
    const char *name;          /* dotted YAML path */
    zf_key_type type;
    size_t offset;
    double def, min, max;
    bool min_open;
    const char *const *names;
    unsigned affects;
    const char *doc;
    bool required;
} zf_key_spec;

#define ZF_KEYS_MAX 64

/* Every key, in the order of the effective YAML. */
const zf_key_spec *zf_config_keys(size_t *n);
const zf_key_spec *zf_config_find_key(const char *name);
/* The key nearest to a misspelt name (a typo or a missing section), or NULL. */
const char *zf_config_nearest_key(const char *name);
/* Stores one scalar value (or appends one list item); where prefixes errors ("file:line:col" or "--set"). */
zf_status zf_config_set_value(zf_job_config *c, const zf_key_spec *k, const char *v, const char *where);

#endif
