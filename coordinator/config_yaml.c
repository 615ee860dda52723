/* The job configuration's YAML reader (libfyaml): sections, required keys, lists as sweep dimensions, and the
 * defaults-file-overrides order of zf_config_read. */
#include <errno.h>
#include <libfyaml.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistr.h>

#include "coordinator/config.h"
#include "coordinator/config_keys.h"

static void node_where(const char *path, struct fy_node *n, char *buf, size_t len)
{
    struct fy_token *t = n ? fy_node_get_scalar_token(n) : NULL;
    const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
    if (m) snprintf(buf, len, "%s:%d:%d", path, m->line + 1, m->column + 1);
    else snprintf(buf, len, "%s", path);
}

/* Records a list value as a sweep dimension; every value is checked now, the first one applied. */
static zf_status add_sweep_dim(const char *path, const char *where, const zf_key_spec *k, struct fy_node *seq,
                               zf_job_config *c, zf_sweep *sweep)
{
    if (sweep->ndims >= ZF_SWEEP_MAX_DIMS)
        return zf_fail(ZF_ERR_INPUT, "%s: key '%s': at most %d keys can be swept", where, k->name, ZF_SWEEP_MAX_DIMS);
    zf_sweep_dim *d = &sweep->dims[sweep->ndims];
    memset(d, 0, sizeof *d);
    snprintf(d->key, sizeof d->key, "%s", k->name);
    snprintf(d->where, sizeof d->where, "%s", where);
    void *it = NULL;
    struct fy_node *item;
    zf_job_config probe = *c;
    while ((item = fy_node_sequence_iterate(seq, &it))) {
        char w2[ZF_PATH_MAX + 64];
        node_where(path, item, w2, sizeof w2);
        size_t vl;
        const char *v = fy_node_is_scalar(item) ? fy_node_get_scalar(item, &vl) : NULL;
        if (!v || vl >= sizeof d->values[0])
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a list of single values", w2, k->name);
        if (d->nvalues >= ZF_SWEEP_MAX_VALUES)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': at most %d values", w2, k->name, ZF_SWEEP_MAX_VALUES);
        snprintf(d->values[d->nvalues], sizeof d->values[0], "%.*s", (int)vl, v);
        ZF_TRY(zf_config_set_value(&probe, k, d->values[d->nvalues], w2));
        d->nvalues++;
    }
    if (d->nvalues == 0) return zf_fail(ZF_ERR_INPUT, "%s: key '%s': the list is empty", where, k->name);
    sweep->ndims++;
    return zf_config_set_value(c, k, d->values[0], where);
}

static zf_status load_mapping(const char *path, struct fy_node *map, const char *prefix, zf_job_config *c,
                              bool *seen, zf_sweep *sweep)
{
    size_t nkeys;
    const zf_key_spec *keys = zf_config_keys(&nkeys);
    void *iter = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(map, &iter))) {
        struct fy_node *kn = fy_node_pair_key(pair), *vn = fy_node_pair_value(pair);
        char where[ZF_PATH_MAX + 64], full[256];
        node_where(path, kn, where, sizeof where);
        size_t klen = 0;
        const char *ks = fy_node_is_scalar(kn) ? fy_node_get_scalar(kn, &klen) : NULL;
        if (!ks || klen == 0 || klen > 100) return zf_fail(ZF_ERR_INPUT, "%s: expected a plain key", where);
        snprintf(full, sizeof full, "%s%s%.*s", prefix, prefix[0] ? "." : "", (int)klen, ks);
        const zf_key_spec *k = zf_config_find_key(full);
        if (!k) {
            /* a section (mapping) such as calibration: or eval: */
            size_t flen = strlen(full);
            bool is_section = false;
            for (size_t i = 0; i < nkeys; i++)
                if (!strncmp(keys[i].name, full, flen) && keys[i].name[flen] == '.') is_section = true;
            if (is_section) {
                if (!fy_node_is_mapping(vn))
                    return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a mapping of sub-keys", where, full);
                ZF_TRY(load_mapping(path, vn, full, c, seen, sweep));
                continue;
            }
            const char *near = zf_config_nearest_key(full);
            if (near) return zf_fail(ZF_ERR_INPUT, "%s: unknown key '%s' (did you mean '%s'?)", where, full, near);
            return zf_fail(ZF_ERR_INPUT, "%s: unknown key '%s' (see docs/config.md)", where, full);
        }
        seen[k - keys] = true;
        if (k->type == ZF_KEY_PATH_LIST) {
            char(*items)[ZF_PATH_MAX];
            int *n;
            zf_config_path_list(c, k->offset, &items, &n);
            *n = 0;
            if (fy_node_is_scalar(vn)) {
                size_t vl;
                const char *v = fy_node_get_scalar(vn, &vl);
                char buf[ZF_PATH_MAX];
                snprintf(buf, sizeof buf, "%.*s", (int)vl, v);
                ZF_TRY(zf_config_set_value(c, k, buf, where));
                continue;
            }
            if (!fy_node_is_sequence(vn))
                return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a list of file names", where, full);
            void *it2 = NULL;
            struct fy_node *item;
            while ((item = fy_node_sequence_iterate(vn, &it2))) {
                char w2[ZF_PATH_MAX + 64], buf[ZF_PATH_MAX];
                node_where(path, item, w2, sizeof w2);
                size_t vl;
                const char *v = fy_node_is_scalar(item) ? fy_node_get_scalar(item, &vl) : NULL;
                if (!v) return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a file name", w2, full);
                snprintf(buf, sizeof buf, "%.*s", (int)vl, v);
                ZF_TRY(zf_config_set_value(c, k, buf, w2));
            }
            continue;
        }
        if (fy_node_is_sequence(vn) && sweep) {
            ZF_TRY(add_sweep_dim(path, where, k, vn, c, sweep));
            continue;
        }
        if (!fy_node_is_scalar(vn))
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a single value, found a %s", where, full,
                           fy_node_is_sequence(vn) ? "list" : "mapping");
        size_t vl;
        const char *v = fy_node_get_scalar(vn, &vl);
        char buf[ZF_PATH_MAX + 1], vwhere[ZF_PATH_MAX + 64];
        if (vl > ZF_PATH_MAX) return zf_fail(ZF_ERR_INPUT, "%s: key '%s': value too long", where, full);
        snprintf(buf, sizeof buf, "%.*s", (int)vl, v);
        node_where(path, vn, vwhere, sizeof vwhere);
        ZF_TRY(zf_config_set_value(c, k, buf, vwhere));
    }
    return ZF_OK;
}

/* A config larger than this is not one. */
#define ZF_CONFIG_MAX_BYTES (16 << 20)

/* The file is UTF-8 text: libfyaml loops forever on some invalid bytes (in a '%' directive). */
static zf_status check_utf8(const char *path, FILE *f, int64_t size)
{
    if (size > ZF_CONFIG_MAX_BYTES)
        return zf_fail(ZF_ERR_INPUT, "%s: %lld bytes; expected a YAML config (at most %d bytes)", path, (long long)size,
                       ZF_CONFIG_MAX_BYTES);
    uint8_t *buf = zf_malloc((size_t)size + 1, "config text");
    if (!buf) return ZF_ERR_NOMEM;
    zf_status s = ZF_OK;
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        s = zf_fail(ZF_ERR_IO, "%s: cannot read it", path);
    } else {
        const uint8_t *bad = u8_check(buf, (size_t)size);
        if (bad) {
            int line = 1, col = 1;
            for (const uint8_t *p = buf; p < bad; p++) line += *p == '\n', col = *p == '\n' ? 1 : col + 1;
            s = zf_fail(ZF_ERR_INPUT, "%s:%d:%d: byte 0x%02x is not valid UTF-8; expected a UTF-8 text file", path, line,
                        col, *bad);
        }
    }
    free(buf);
    return s;
}

/* The file's one YAML document; a folder, an empty file, bytes that are not UTF-8 or a second document is refused
 * by name. */
static zf_status parse_document(const char *path, struct fy_parser **parser, struct fy_document **doc)
{
    *parser = NULL;
    *doc = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return zf_fail(ZF_ERR_INPUT, "cannot open config file %s: %s", path, strerror(errno));
    struct stat sb;
    int st = fstat(fileno(f), &sb);
    zf_status text = st == 0 && S_ISREG(sb.st_mode) ? check_utf8(path, f, (int64_t)sb.st_size) : ZF_OK;
    fclose(f);
    if (st == 0 && S_ISDIR(sb.st_mode)) return zf_fail(ZF_ERR_INPUT, "%s: is a folder, expected a YAML config file", path);
    if (st == 0 && sb.st_size == 0)
        return zf_fail(ZF_ERR_INPUT, "%s: the file is empty; expected a mapping of keys (model:, output:, "
                       "calibration: ...)", path);
    ZF_TRY(text);
    struct fy_parse_cfg cfg = {0};
    if (!(*parser = fy_parser_create(&cfg)) || fy_parser_set_input_file(*parser, path) != 0)
        return zf_fail(ZF_ERR_IO, "%s: cannot read it as YAML", path);
    if (!(*doc = fy_parse_load_document(*parser)))
        return zf_fail(ZF_ERR_INPUT, "%s: not valid YAML (the parser's message is above), or no document in it", path);
    struct fy_document *second = fy_parse_load_document(*parser);
    if (second) {
        struct fy_node *r2 = fy_document_root(second);
        int line = r2 && fy_node_get_scalar_token(r2) ? fy_token_start_mark(fy_node_get_scalar_token(r2))->line + 1 : 0;
        fy_parse_document_destroy(*parser, second);
        if (line) return zf_fail(ZF_ERR_INPUT, "%s:%d: a second YAML document (after '---'); expected one", path, line);
        return zf_fail(ZF_ERR_INPUT, "%s: a second YAML document (after '---'); expected one", path);
    }
    return ZF_OK;
}

static zf_status load_file(const char *path, zf_job_config *c, zf_sweep *sweep)
{
    struct fy_parser *parser;
    struct fy_document *doc;
    zf_status s = parse_document(path, &parser, &doc);
    struct fy_node *root = s == ZF_OK ? fy_document_root(doc) : NULL;
    if (s != ZF_OK) {
    } else if (!root || !fy_node_is_mapping(root)) {
        s = zf_fail(ZF_ERR_INPUT, "%s: expected a mapping of keys at the top level", path);
    } else {
        bool seen[ZF_KEYS_MAX] = {0};
        size_t nkeys;
        const zf_key_spec *keys = zf_config_keys(&nkeys);
        s = load_mapping(path, root, "", c, seen, sweep);
        for (size_t i = 0; s == ZF_OK && i < nkeys; i++)
            if (keys[i].required && !seen[i])
                s = zf_fail(ZF_ERR_INPUT, "%s: missing required key '%s' (%s)", path, keys[i].name, keys[i].doc);
    }
    if (doc) fy_parse_document_destroy(parser, doc);
    if (parser) fy_parser_destroy(parser);
    return s;
}

zf_status zf_config_load(const char *path, zf_job_config *c) { return load_file(path, c, NULL); }

/* A list given to a single-valued key makes a sweep dimension (recorded in sweep, first value applied). */
static zf_status zf_config_load_sweep(const char *path, zf_job_config *c, zf_sweep *sweep)
{
    memset(sweep, 0, sizeof *sweep);
    return load_file(path, c, sweep);
}

zf_status zf_config_read(const char *path, const char *const *sets, int nsets, zf_job_config *c, zf_sweep *sweep)
{
    zf_config_defaults(c);
    if (sweep) {
        ZF_TRY(zf_config_load_sweep(path, c, sweep));
        for (int i = 0; i < nsets; i++) ZF_TRY(zf_config_set(c, sets[i]));
        return ZF_OK;
    }
    /* a sweep config runs as one of its points when every list is overridden */
    zf_sweep lists;
    ZF_TRY(zf_config_load_sweep(path, c, &lists));
    for (int i = 0; i < nsets; i++) ZF_TRY(zf_config_set(c, sets[i]));
    for (int d = 0; d < lists.ndims; d++) {
        bool picked = false;
        size_t klen = strlen(lists.dims[d].key);
        for (int i = 0; i < nsets; i++)
            if (!strncmp(sets[i], lists.dims[d].key, klen) && sets[i][klen] == '=') picked = true;
        if (!picked)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a single value, found a list (a list makes a sweep: "
                           "run it with zfold sweep, or pick one value with --set %s=VALUE)", lists.dims[d].where,
                           lists.dims[d].key, lists.dims[d].key);
    }
    return zf_config_validate(c);
}

