/* The job configuration: the key table, YAML parsing (libfyaml), overrides, validation and YAML/Markdown output. */
#include "coordinator/config.h"

#include <errno.h>
#include <libfyaml.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum { K_PATH, K_INT, K_I32, K_DOUBLE, K_BOOL, K_ENUM, K_PATH_LIST } key_type; /* K_INT is int64_t */

typedef struct {
    const char *key;       /* dotted path in the YAML document */
    key_type type;
    size_t offset;         /* into zf_job_config */
    const char *def;       /* default, as YAML text ("" = none) */
    bool required;
    double min, max;       /* K_INT / K_DOUBLE range */
    const char *choices;   /* K_ENUM: "a|b|c" */
    const char *doc;
} key_spec;

#define OFF(f) offsetof(zf_job_config, f)

static const key_spec keys[] = {
    {"model", K_PATH, OFF(model), "", true, 0, 0, NULL,
     "Hugging Face checkpoint folder: config.json and model.safetensors (or a sharded index)"},
    {"output", K_PATH, OFF(output), "", true, 0, 0, NULL, "Run directory for the quantized model and reports"},
    {"method", K_ENUM, OFF(quant.method), "zfold", false, 0, 0, "rtn|optq|zfold",
     "Quantizer: round-to-nearest, OPTQ (GPTQ), or Z-FOLD followed by OPTQ"},
    {"bits", K_I32, OFF(quant.bits), "3", false, 2, 8, NULL, "Weight bit width"},
    {"sym", K_BOOL, OFF(quant.sym), "false", false, 0, 0, NULL, "Symmetric grid (zero point in the middle)"},
    {"group_size", K_INT, OFF(quant.group_size), "-1", false, -1, 1 << 20, NULL,
     "Input columns per grid; -1 = one grid per output channel (required for zfold)"},
    {"grid", K_ENUM, OFF(quant.grid), "minmax", false, 0, 0, "minmax|mmse|hessian",
     "How the initial grid is chosen: min-max, MMSE clip search, or Hessian-scored clip search"},
    {"damp", K_DOUBLE, OFF(quant.damp), "0.01", false, 0, 10, NULL, "OPTQ damping, fraction of mean(diag H)"},
    {"damp_retries", K_I32, OFF(quant.damp_retries), "4", false, 0, 10, NULL,
     "Times the damping is multiplied by 10 when the Cholesky factorization fails"},
    {"block_size", K_INT, OFF(quant.block_size), "128", false, 1, 1 << 16, NULL, "OPTQ lazy-update block width"},
    {"act_order", K_BOOL, OFF(quant.act_order), "false", false, 0, 0, NULL,
     "OPTQ: quantize columns in order of decreasing Hessian diagonal"},
    {"static_groups", K_BOOL, OFF(quant.static_groups), "false", false, 0, 0, NULL,
     "OPTQ with act_order and groups: fix group grids before reordering"},
    {"alpha", K_ENUM, OFF(quant.alpha), "lsq", false, 0, 0, "lsq|grid",
     "Z-FOLD α update: Hessian-weighted least squares (paper, eq. 13) or Hessian-scored grid search (official code)"},
    {"als_max_iter", K_I32, OFF(quant.als_max_iter), "30", false, 1, 1000, NULL, "Z-FOLD ALS iteration limit"},
    {"mmse_norm", K_DOUBLE, OFF(quant.mmse_norm), "2.4", false, 1, 8, NULL, "Exponent of the MMSE grid error"},
    {"grid_points", K_I32, OFF(quant.grid_points), "100", false, 2, 10000, NULL,
     "Clip ratios tried by the MMSE and Hessian grids"},
    {"schedule", K_ENUM, OFF(schedule), "sequential", false, 0, 0, "sequential|parallel",
     "sequential: block b calibrates on the quantized blocks < b (GPTQ protocol); parallel: every Hessian from one "
     "full-precision pass, then all layer groups of all blocks quantized at once across the ranks"},
    {"true_sequential", K_BOOL, OFF(true_sequential), "false", false, 0, 0, NULL,
     "Capture each layer group's inputs from the block with the earlier groups already quantized"},
    {"hessian_fp64", K_BOOL, OFF(hessian_fp64), "true", false, 0, 0, NULL,
     "Accumulate Hessians in double (then the result does not depend on the number of ranks)"},
    {"calibration.file", K_PATH, OFF(calib_file), "", true, 0, 0, NULL, "Token file of the calibration text"},
    {"calibration.windows", K_INT, OFF(calib_windows), "128", false, 1, 1 << 24, NULL,
     "Number of random calibration windows"},
    {"calibration.seq_len", K_INT, OFF(calib_seq_len), "0", false, 0, 1 << 20, NULL,
     "Tokens per calibration window; 0 = min(2048, max_position_embeddings)"},
    {"calibration.seed", K_INT, OFF(seed), "0", false, 0, 9.0e15, NULL, "Seed of the window choice"},
    {"calibration.cache", K_PATH, OFF(calib_cache), "", false, 0, 0, NULL,
     "Folder of full-precision Hessians shared between runs (a sweep sets <output>/hessian-cache); \"\" = off. "
     "Hits need the same model, calibration tokens, seq_len and hessian_fp64"},
    {"eval.files", K_PATH_LIST, OFF(eval_files), "[]", false, 0, 0, NULL, "Token files to measure perplexity on"},
    {"eval.seq_len", K_INT, OFF(eval_seq_len), "0", false, 0, 1 << 20, NULL,
     "Perplexity window; 0 = the calibration seq_len"},
    {"eval.max_windows", K_INT, OFF(eval_max_windows), "0", false, 0, 1 << 30, NULL,
     "Evaluate only the first N windows of each file; 0 = all"},
    {"eval.chunk", K_INT, OFF(eval_chunk), "16", false, 1, 1 << 20, NULL, "Windows per forward chunk"},
    {"eval.fp", K_BOOL, OFF(eval_fp), "true", false, 0, 0, NULL, "Also report the full-precision perplexity"},
    {"eval.unfolded", K_BOOL, OFF(eval_unfolded), "false", false, 0, 0, NULL,
     "Also evaluate the fake-quantized model before folding (checks that folding is exact)"},
    {"threads", K_INT, OFF(threads), "0", false, 0, 4096, NULL, "Compute threads per process; 0 = library default"},
    {"backend", K_ENUM, OFF(backend), "cpu", false, 0, 0, "cpu|cuda",
     "Where each rank computes: cpu (OpenBLAS + LAPACKE) or cuda (one GPU per rank: the only one it sees, or "
     "the one of its node-local index; NCCL between ranks)"},
    {"gpu.tf32", K_BOOL, OFF(gpu_tf32), "false", false, 0, 0, NULL,
     "cuda: let fp32 GEMMs use TF32 tensor cores (faster, about 1e-3 relative error per product)"},
    {"gpu.forward_dtype", K_ENUM, OFF(gpu_forward_dtype), "fp32", false, 0, 0, "fp32|bf16|fp16",
     "cuda: precision of the weights in the block forward (GEMMs accumulate in fp32)"},
    {"gpu.comm_timeout", K_DOUBLE, OFF(gpu_comm_timeout), "600", false, 1, 86400, NULL,
     "cuda: seconds a NCCL collective may make no progress before the job is aborted"},
};
#define NKEYS (sizeof keys / sizeof keys[0])

static const key_spec *find_key(const char *k)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].key, k)) return &keys[i];
    return NULL;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[128], cur[128];
    if (la >= 127 || lb >= 127) return 1000;
    for (size_t j = 0; j <= lb; j++) prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(size_t) * (lb + 1));
    }
    return prev[lb];
}

static const char *nearest_key(const char *k)
{
    const char *best = NULL;
    size_t bestd = 4;
    for (size_t i = 0; i < NKEYS; i++) {
        size_t d = edit_distance(k, keys[i].key);
        const char *dot = strrchr(keys[i].key, '.');
        if (dot) {
            size_t d2 = edit_distance(k, dot + 1);
            if (d2 < d) d = d2;
        }
        if (d < bestd) {
            bestd = d;
            best = keys[i].key;
        }
    }
    return best;
}

/* Stores one scalar value; `where` prefixes errors ("file:line:col" or "--set"). */
static zf_status set_scalar(zf_job_config *c, const key_spec *k, const char *v, const char *where)
{
    void *dst = (char *)c + k->offset;
    char *end = NULL;
    switch (k->type) {
    case K_PATH:
        if (strlen(v) >= ZF_PATH_MAX)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': path longer than %d bytes", where, k->key, ZF_PATH_MAX - 1);
        strcpy(dst, v);
        return ZF_OK;
    case K_INT:
    case K_I32: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected an integer, found '%s'", where, k->key, v);
        if ((double)x < k->min || (double)x > k->max)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': %lld is out of range [%.0f, %.0f]", where, k->key, x, k->min,
                           k->max);
        if (k->type == K_I32) *(int *)dst = (int)x;
        else *(int64_t *)dst = x;
        return ZF_OK;
    }
    case K_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a number, found '%s'", where, k->key, v);
        if (x < k->min || x > k->max)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': %g is out of range [%g, %g]", where, k->key, x, k->min, k->max);
        *(double *)dst = x;
        return ZF_OK;
    }
    case K_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on")) *(bool *)dst = true;
        else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off")) *(bool *)dst = false;
        else return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected true or false, found '%s'", where, k->key, v);
        return ZF_OK;
    case K_ENUM: {
        const char *p = k->choices;
        int idx = 0;
        size_t n = strlen(v);
        while (p && *p) {
            const char *bar = strchr(p, '|');
            size_t len = bar ? (size_t)(bar - p) : strlen(p);
            if (len == n && !strncmp(p, v, n)) {
                *(int *)dst = idx;
                return ZF_OK;
            }
            idx++;
            p = bar ? bar + 1 : NULL;
        }
        if (k->offset == OFF(quant.method) && !strcmp(v, "gptq")) {
            *(int *)dst = ZF_METHOD_OPTQ;
            return ZF_OK;
        }
        return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected one of %s, found '%s'", where, k->key, k->choices, v);
    }
    case K_PATH_LIST:
        if (c->n_eval_files >= ZF_MAX_EVAL_FILES)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': at most %d files", where, k->key, ZF_MAX_EVAL_FILES);
        if (strlen(v) >= ZF_PATH_MAX)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': path longer than %d bytes", where, k->key, ZF_PATH_MAX - 1);
        strcpy(c->eval_files[c->n_eval_files++], v);
        return ZF_OK;
    }
    ZF_PANIC("unhandled key type %d", (int)k->type);
}

void zf_config_defaults(zf_job_config *c)
{
    memset(c, 0, sizeof *c);
    zf_quant_opts_default(&c->quant);
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == K_PATH_LIST || !keys[i].def[0]) continue;
        zf_status s = set_scalar(c, &keys[i], keys[i].def, "default");
        if (s != ZF_OK) ZF_PANIC("bad default for %s: %s", keys[i].key, zf_last_error());
    }
}

static void node_where(const char *path, struct fy_node *n, char *buf, size_t len)
{
    struct fy_token *t = n ? fy_node_get_scalar_token(n) : NULL;
    const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
    if (m) snprintf(buf, len, "%s:%d:%d", path, m->line + 1, m->column + 1);
    else snprintf(buf, len, "%s", path);
}

/* Records a list value as a sweep dimension; every value is checked now, the first one applied. */
static zf_status add_sweep_dim(const char *path, const char *where, const key_spec *k, struct fy_node *seq,
                               zf_job_config *c, zf_sweep *sweep)
{
    if (sweep->ndims >= ZF_SWEEP_MAX_DIMS)
        return zf_fail(ZF_ERR_INPUT, "%s: key '%s': at most %d keys can be swept", where, k->key, ZF_SWEEP_MAX_DIMS);
    zf_sweep_dim *d = &sweep->dims[sweep->ndims];
    memset(d, 0, sizeof *d);
    snprintf(d->key, sizeof d->key, "%s", k->key);
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
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a list of single values", w2, k->key);
        if (d->nvalues >= ZF_SWEEP_MAX_VALUES)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': at most %d values", w2, k->key, ZF_SWEEP_MAX_VALUES);
        snprintf(d->values[d->nvalues], sizeof d->values[0], "%.*s", (int)vl, v);
        ZF_TRY(set_scalar(&probe, k, d->values[d->nvalues], w2));
        d->nvalues++;
    }
    if (d->nvalues == 0) return zf_fail(ZF_ERR_INPUT, "%s: key '%s': the list is empty", where, k->key);
    sweep->ndims++;
    return set_scalar(c, k, d->values[0], where);
}

static zf_status load_mapping(const char *path, struct fy_node *map, const char *prefix, zf_job_config *c,
                              bool *seen, zf_sweep *sweep)
{
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
        const key_spec *k = find_key(full);
        if (!k) {
            /* a section (mapping) such as calibration: or eval: */
            size_t flen = strlen(full);
            bool is_section = false;
            for (size_t i = 0; i < NKEYS; i++)
                if (!strncmp(keys[i].key, full, flen) && keys[i].key[flen] == '.') is_section = true;
            if (is_section) {
                if (!fy_node_is_mapping(vn))
                    return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a mapping of sub-keys", where, full);
                ZF_TRY(load_mapping(path, vn, full, c, seen, sweep));
                continue;
            }
            const char *near = nearest_key(full);
            if (near) return zf_fail(ZF_ERR_INPUT, "%s: unknown key '%s' (did you mean '%s'?)", where, full, near);
            return zf_fail(ZF_ERR_INPUT, "%s: unknown key '%s' (see docs/config.md)", where, full);
        }
        seen[k - keys] = true;
        if (k->type == K_PATH_LIST) {
            c->n_eval_files = 0;
            if (fy_node_is_scalar(vn)) {
                size_t vl;
                const char *v = fy_node_get_scalar(vn, &vl);
                char buf[ZF_PATH_MAX];
                snprintf(buf, sizeof buf, "%.*s", (int)vl, v);
                ZF_TRY(set_scalar(c, k, buf, where));
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
                ZF_TRY(set_scalar(c, k, buf, w2));
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
        ZF_TRY(set_scalar(c, k, buf, vwhere));
    }
    return ZF_OK;
}

static zf_status load_file(const char *path, zf_job_config *c, zf_sweep *sweep)
{
    FILE *f = fopen(path, "rb");
    if (!f) return zf_fail(ZF_ERR_INPUT, "cannot open config file %s: %s", path, strerror(errno));
    fclose(f);
    struct fy_parse_cfg cfg = {0};
    struct fy_document *doc = fy_document_build_from_file(&cfg, path);
    if (!doc) return zf_fail(ZF_ERR_INPUT, "%s: not valid YAML (the parser's message is above)", path);
    struct fy_node *root = fy_document_root(doc);
    zf_status s = ZF_OK;
    if (!root || !fy_node_is_mapping(root)) {
        s = zf_fail(ZF_ERR_INPUT, "%s: expected a mapping of keys at the top level", path);
    } else {
        bool seen[NKEYS] = {0};
        s = load_mapping(path, root, "", c, seen, sweep);
        for (size_t i = 0; s == ZF_OK && i < NKEYS; i++)
            if (keys[i].required && !seen[i])
                s = zf_fail(ZF_ERR_INPUT, "%s: missing required key '%s' (%s)", path, keys[i].key, keys[i].doc);
    }
    fy_document_destroy(doc);
    return s;
}

zf_status zf_config_load(const char *path, zf_job_config *c) { return load_file(path, c, NULL); }

zf_status zf_config_load_sweep(const char *path, zf_job_config *c, zf_sweep *sweep)
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

zf_status zf_config_set(zf_job_config *c, const char *assignment)
{
    const char *eq = strchr(assignment, '=');
    if (!eq) return zf_fail(ZF_ERR_INPUT, "--set '%s': expected key=value", assignment);
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(eq - assignment), assignment);
    const key_spec *k = find_key(key);
    if (!k) {
        const char *near = nearest_key(key);
        return zf_fail(ZF_ERR_INPUT, "--set: unknown key '%s'%s%s%s", key, near ? " (did you mean '" : "",
                       near ? near : "", near ? "'?)" : "");
    }
    if (k->type == K_PATH_LIST) {
        c->n_eval_files = 0;
        char buf[ZF_PATH_MAX * 2];
        snprintf(buf, sizeof buf, "%s", eq + 1);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) ZF_TRY(set_scalar(c, k, tok, "--set"));
        return ZF_OK;
    }
    return set_scalar(c, k, eq + 1, "--set");
}

zf_status zf_config_validate(const zf_job_config *c)
{
    if (!c->model[0]) return zf_fail(ZF_ERR_INPUT, "config: missing required key 'model'");
    if (!c->output[0]) return zf_fail(ZF_ERR_INPUT, "config: missing required key 'output'");
    if (!c->calib_file[0] && c->quant.method != ZF_METHOD_RTN)
        return zf_fail(ZF_ERR_INPUT, "config: missing required key 'calibration.file'");
    if (c->schedule == ZF_SCHEDULE_PARALLEL && c->true_sequential)
        return zf_fail(ZF_ERR_INPUT, "config: schedule: parallel and true_sequential: true conflict (the parallel "
                       "schedule takes every Hessian from the full-precision model)");
    zf_status s = zf_quant_opts_check(&c->quant);
    if (s != ZF_OK) return zf_fail_context(s, "config");
    return ZF_OK;
}

static void write_value(const zf_job_config *c, const key_spec *k, FILE *f)
{
    const void *src = (const char *)c + k->offset;
    switch (k->type) {
    case K_PATH: fprintf(f, "\"%s\"", (const char *)src); break;
    case K_INT: fprintf(f, "%lld", (long long)*(const int64_t *)src); break;
    case K_I32: fprintf(f, "%d", *(const int *)src); break;
    case K_DOUBLE: fprintf(f, "%.17g", *(const double *)src); break;
    case K_BOOL: fprintf(f, "%s", *(const bool *)src ? "true" : "false"); break;
    case K_ENUM: {
        int idx = *(const int *)src;
        const char *p = k->choices;
        for (int i = 0; i < idx && p; i++) {
            p = strchr(p, '|');
            if (p) p++;
        }
        const char *bar = p ? strchr(p, '|') : NULL;
        fprintf(f, "%.*s", p ? (int)(bar ? bar - p : (long)strlen(p)) : 0, p ? p : "");
        break;
    }
    case K_PATH_LIST:
        fputc('[', f);
        for (int i = 0; i < c->n_eval_files; i++) fprintf(f, "%s\"%s\"", i ? ", " : "", c->eval_files[i]);
        fputc(']', f);
        break;
    }
}

void zf_config_write_yaml(const zf_job_config *c, FILE *f)
{
    const char *section = "";
    size_t seclen = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        const char *dot = strchr(keys[i].key, '.');
        const char *name = keys[i].key;
        if (dot) {
            size_t len = (size_t)(dot - keys[i].key);
            if (len != seclen || strncmp(section, keys[i].key, len)) {
                fprintf(f, "%.*s:\n", (int)len, keys[i].key);
                section = keys[i].key;
                seclen = len;
            }
            name = dot + 1;
            fputs("  ", f);
        } else {
            section = "";
            seclen = 0;
        }
        fprintf(f, "%s: ", name);
        write_value(c, &keys[i], f);
        fputc('\n', f);
    }
}

void zf_config_write_docs(FILE *f)
{
    static const char *type_names[] = {"path", "integer", "integer", "number", "boolean", "one of", "list of paths"};
    fprintf(f, "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < NKEYS; i++) {
        const key_spec *k = &keys[i];
        char allowed[128] = "";
        if (k->type == K_INT || k->type == K_I32) snprintf(allowed, sizeof allowed, "%.0f … %.0f", k->min, k->max);
        else if (k->type == K_DOUBLE) snprintf(allowed, sizeof allowed, "%g … %g", k->min, k->max);
        else if (k->type == K_ENUM) snprintf(allowed, sizeof allowed, "%s", k->choices);
        else if (k->type == K_BOOL) snprintf(allowed, sizeof allowed, "true\\|false");
        for (char *p = allowed; *p; p++)
            if (*p == '|' && (p == allowed || p[-1] != '\\')) *p = '/';
        fprintf(f, "| `%s` | %s | %s | %s | %s |\n", k->key, type_names[k->type],
                k->required ? "(required)" : (k->def[0] ? k->def : "\"\""), allowed, k->doc);
    }
}

int zf_config_take_set(int argc, char **argv, int i, const char **sets, int *nsets)
{
    if (*nsets >= ZF_MAX_SETS) return 0;
    if (!strcmp(argv[i], "--set") && i + 1 < argc) {
        sets[(*nsets)++] = argv[i + 1];
        return 2;
    }
    if (!strncmp(argv[i], "--set=", 6)) {
        sets[(*nsets)++] = argv[i] + 6;
        return 1;
    }
    return 0;
}
