/* The job configuration: the key table, values and overrides, validation, YAML/Markdown output, which keys matter. */
#include "coordinator/config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/config_keys.h"
#include "worker/backend.h"

#define OFF(f) offsetof(zf_job_config, f)
#define ALL ZF_AFFECTS_ALL
/* where the quantization options' descriptors are spliced in */
#define QUANT_KEYS {NULL, ZF_KEY_BOOL, 0, 0, 0, 0, false, NULL, 0, NULL, false}

static const char *const schedule_names[] = {"sequential", "parallel", NULL};
static const char *const capture_names[] = {"auto", "sums", "inputs", NULL};
static const char *const backend_names[] = {"cpu", "cuda", NULL};
static const char *const dtype_names[] = {"fp32", "bf16", "fp16", NULL};
static const char *const acts_names[] = {"fp32", "bf16", NULL};
static const char *const export_format_names[] = {"gptq", "gptq_v2", NULL};
static const char *const export_dtype_names[] = {"float16", "bfloat16", "float32", NULL};

/* affects = 0: the key changes where the run goes, how fast it runs or what is measured after, not the shards */
static const zf_key_spec own_keys[] = {
    {"model", ZF_KEY_PATH, OFF(model), 0, 0, 0, false, NULL, ALL,
     "Hugging Face checkpoint folder: config.json and model.safetensors (or a sharded index)", true},
    {"output", ZF_KEY_PATH, OFF(output), 0, 0, 0, false, NULL, 0, "Run directory for the quantized model and reports", true},
    QUANT_KEYS,
    {"schedule", ZF_KEY_ENUM, OFF(schedule), ZF_SCHEDULE_SEQUENTIAL, 0, 0, false, schedule_names, ALL,
     "sequential: block b calibrates on the quantized blocks < b (GPTQ protocol); parallel: every Hessian from one "
     "full-precision pass, then all layer groups of all blocks quantized at once across the ranks", false},
    {"true_sequential", ZF_KEY_BOOL, OFF(true_sequential), 0, 0, 0, false, NULL, ALL,
     "Capture each layer group's inputs from the block with the earlier groups already quantized", false},
    {"hessian_fp64", ZF_KEY_BOOL, OFF(hessian_fp64), 1, 0, 0, false, NULL, ALL,
     "Accumulate Hessians in double (then the result does not depend on the number of ranks)", false},
    {"hessian_reduce_fp32", ZF_KEY_BOOL, OFF(hessian_reduce_fp32), 0, 0, 0, false, NULL, ALL,
     "With hessian_fp64: send the partial sums to their owner in fp32 (half the bytes; each rank accumulates in "
     "double, the owner keeps its own part in double; the result then depends on the number of ranks). backend: "
     "cpu only", false},
    {"hessian_capture", ZF_KEY_ENUM, OFF(hessian_capture), ZF_CAPTURE_AUTO, 0, 0, false, capture_names, ALL,
     "Sequential schedule: what a rank keeps of a layer group's inputs until its Hessian is reduced. sums: Σ x xᵀ "
     "[d_in, d_in]; inputs: the inputs themselves [tokens of the rank, d_in], their Gram matrix formed and reduced "
     "in column panels (backend: cpu); auto: inputs where they take fewer bytes than the sums (many ranks, long "
     "layers), else sums", false},
    {"split_rows", ZF_KEY_BOOL, OFF(split_rows), 1, 0, 0, false, NULL, ALL,
     "Sequential schedule with more ranks than a block's four layer groups: each group is quantized by its own team "
     "of ranks, each rank a share of the rows (the spare ranks go where the work is); false: one rank per group",
     false},
    {"calibration.file", ZF_KEY_PATH, OFF(calib_file), 0, 0, 0, false, NULL, ALL,
     "Token file of the calibration text (this or calibration.text is required, except for rtn)", false},
    {"calibration.text", ZF_KEY_PATH, OFF(calib_text), 0, 0, 0, false, NULL, ALL,
     "Calibration text instead of a token file: \"[preset:]file\", a UTF-8 text file or JSON Lines (.jsonl, "
     ".jsonl.gz), tokenized with the model's tokenizer when the job starts; presets wikitext2, ptb, c4 "
     "(docs/text.md)", false},
    {"calibration.windows", ZF_KEY_INT, OFF(calib_windows), 128, 1, 1 << 24, false, NULL, ALL,
     "Number of random calibration windows", false},
    {"calibration.seq_len", ZF_KEY_INT, OFF(calib_seq_len), 0, 0, 1 << 20, false, NULL, ALL,
     "Tokens per calibration window; 0 = min(2048, max_position_embeddings)", false},
    {"calibration.activations", ZF_KEY_ENUM, OFF(calib_bf16), 0, 0, 0, false, acts_names, ALL,
     "How a rank keeps its calibration windows' activations between blocks: fp32 (the windows and a copy: 8 bytes "
     "per value), or bf16 (2 bytes per value and an fp32 chunk of 256 MiB that the forwards go through; each "
     "block's inputs are then rounded to bf16)", false},
    {"calibration.seed", ZF_KEY_INT, OFF(seed), 0, 0, 9.0e15, false, NULL, ALL, "Seed of the window choice", false},
    {"calibration.cache", ZF_KEY_PATH, OFF(calib_cache), 0, 0, 0, false, NULL, 0,
     "Folder of full-precision Hessians shared between runs (a sweep sets <output>/hessian-cache); \"\" = off. "
     "Hits need the same model, calibration tokens, seq_len and hessian_fp64", false},
    {"eval.files", ZF_KEY_PATH_LIST, OFF(eval_files), 0, 0, 0, false, NULL, 0, "Token files to measure perplexity on", false},
    {"eval.texts", ZF_KEY_PATH_LIST, OFF(eval_texts), 0, 0, 0, false, NULL, 0,
     "Texts to measure perplexity on, as calibration.text: \"[preset:]file\" each (wikitext2, ptb, c4: the GPTQ "
     "protocols, docs/text.md)", false},
    {"eval.seq_len", ZF_KEY_INT, OFF(eval_seq_len), 0, 0, 1 << 20, false, NULL, 0,
     "Perplexity window; 0 = the calibration seq_len", false},
    {"eval.max_windows", ZF_KEY_INT, OFF(eval_max_windows), 0, 0, 1 << 30, false, NULL, 0,
     "Evaluate only the first N windows of each file; 0 = all", false},
    {"eval.chunk", ZF_KEY_INT, OFF(eval_chunk), 0, 0, 1 << 20, false, NULL, 0,
     "Windows per forward chunk; 0 = as many as fit eval.memory_gib (at most 16)", false},
    {"eval.memory_gib", ZF_KEY_DOUBLE, OFF(eval_memory_gib), 2, 0.001, 1 << 20, false, NULL, 0,
     "Host memory for one chunk's activations and logits when eval.chunk is 0", false},
    {"eval.fp", ZF_KEY_BOOL, OFF(eval_fp), 1, 0, 0, false, NULL, 0, "Also report the full-precision perplexity", false},
    {"eval.unfolded", ZF_KEY_BOOL, OFF(eval_unfolded), 0, 0, 0, false, NULL, 0,
     "Also evaluate the fake-quantized model before folding (checks that folding is exact)", false},
    {"threads", ZF_KEY_INT, OFF(threads), 0, 0, 4096, false, NULL, 0, "Compute threads per process; 0 = library default",
     false},
    {"backend", ZF_KEY_ENUM, OFF(backend), 0, 0, 0, false, backend_names, ALL,
     "Where each rank computes: cpu (OpenBLAS + LAPACKE) or cuda (one GPU per rank: the only one it sees, or "
     "the one of its node-local index; NCCL between ranks)", false},
    {"gpu.tf32", ZF_KEY_BOOL, OFF(gpu_tf32), 0, 0, 0, false, NULL, ALL,
     "cuda: let fp32 GEMMs use TF32 tensor cores (faster, about 1e-3 relative error per product)", false},
    {"gpu.forward_dtype", ZF_KEY_ENUM, OFF(gpu_forward_dtype), 0, 0, 0, false, dtype_names, ALL,
     "cuda: precision of the weights in the block forward (GEMMs accumulate in fp32)", false},
    {"gpu.comm_timeout", ZF_KEY_DOUBLE, OFF(gpu_comm_timeout), 600, 1, 86400, false, NULL, 0,
     "cuda: seconds a NCCL collective may make no progress before the job is aborted", false},
    {"export.folder", ZF_KEY_PATH, OFF(export_folder), 0, 0, 0, false, NULL, 0,
     "After the run, write it here as a Hugging Face GPTQ model folder (zfold export; docs/export.md); \"\" = none", false},
    {"export.format", ZF_KEY_ENUM, OFF(export_format), ZF_EXPORT_FORMAT_GPTQ, 0, 0, false, export_format_names, 0,
     "checkpoint_format: gptq (qzeros hold zero - 1; what vLLM reads) or gptq_v2 (qzeros hold zero)", false},
    {"export.dtype", ZF_KEY_ENUM, OFF(export_dtype), ZF_EXPORT_DTYPE_FLOAT16, 0, 0, false, export_dtype_names, 0,
     "Scales, biases, norms, embeddings and head of the export (float32 keeps the run's weights exactly)", false},
    {"export.max_shard_gb", ZF_KEY_DOUBLE, OFF(export_max_shard_gb), 5, 0, 1e6, true, NULL, 0,
     "Largest safetensors file of the export, in GB (10^9 bytes), before the next one starts", false},
};
#define NOWN (sizeof own_keys / sizeof own_keys[0])

static zf_key_spec keys[ZF_KEYS_MAX];
static size_t nkeys;

/* The full key table: own_keys with the quantization options in place of QUANT_KEYS (built once). */
static void build_keys(void)
{
    if (nkeys) return;
    ZF_ASSERT(NOWN - 1 + zf_quant_opt_count <= ZF_KEYS_MAX);
    for (size_t i = 0; i < NOWN; i++) {
        if (own_keys[i].name) {
            keys[nkeys++] = own_keys[i];
            continue;
        }
        for (size_t j = 0; j < zf_quant_opt_count; j++) {
            const zf_opt_desc *o = &zf_quant_opt_descs[j];
            keys[nkeys++] = (zf_key_spec){o->name, (zf_key_type)o->type, OFF(quant) + o->offset, o->def, o->min, o->max,
                                       o->min_open, o->names, o->affects, o->doc, false};
        }
    }
}

const zf_key_spec *zf_config_keys(size_t *n)
{
    build_keys();
    *n = nkeys;
    return keys;
}

const zf_key_spec *zf_config_find_key(const char *k)
{
    build_keys();
    for (size_t i = 0; i < nkeys; i++)
        if (!strcmp(keys[i].name, k)) return &keys[i];
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

const char *zf_config_nearest_key(const char *k)
{
    const char *best = NULL;
    size_t bestd = 4;
    build_keys();
    for (size_t i = 0; i < nkeys; i++) {
        size_t d = edit_distance(k, keys[i].name);
        const char *dot = strrchr(keys[i].name, '.');
        if (dot) {
            size_t d2 = edit_distance(k, dot + 1);
            if (d2 < d) d = d2;
        }
        if (d < bestd) {
            bestd = d;
            best = keys[i].name;
        }
    }
    return best;
}

static bool in_range(const zf_key_spec *k, double x)
{
    return (k->min_open ? x > k->min : x >= k->min) && x <= k->max;
}

static void join_names(const zf_key_spec *k, char sep, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; k->names[i] && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? (char[]){sep, 0} : "", k->names[i]);
}

zf_status zf_config_set_value(zf_job_config *c, const zf_key_spec *k, const char *v, const char *where)
{
    void *dst = (char *)c + k->offset;
    char *end = NULL;
    switch (k->type) {
    case ZF_KEY_PATH:
        if (strlen(v) >= ZF_PATH_MAX)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': path longer than %d bytes", where, k->name, ZF_PATH_MAX - 1);
        strcpy(dst, v);
        return ZF_OK;
    case ZF_KEY_INT:
    case ZF_KEY_I32: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected an integer, found '%s'", where, k->name, v);
        if (!in_range(k, (double)x))
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': %lld is out of range [%.0f, %.0f]", where, k->name, x, k->min,
                           k->max);
        if (k->type == ZF_KEY_I32) *(int *)dst = (int)x;
        else *(int64_t *)dst = x;
        return ZF_OK;
    }
    case ZF_KEY_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a number, found '%s'", where, k->name, v);
        if (!in_range(k, x))
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': %g is out of range %c%g, %g]", where, k->name, x,
                           k->min_open ? '(' : '[', k->min, k->max);
        *(double *)dst = x;
        return ZF_OK;
    }
    case ZF_KEY_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on")) *(bool *)dst = true;
        else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off")) *(bool *)dst = false;
        else return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected true or false, found '%s'", where, k->name, v);
        return ZF_OK;
    case ZF_KEY_ENUM: {
        int idx = -1;
        for (int i = 0; idx < 0 && k->names[i]; i++)
            if (!strcmp(k->names[i], v)) idx = i;
        if (idx < 0 && k->offset == OFF(quant.method) && !strcmp(v, "gptq")) idx = ZF_METHOD_OPTQ;
        if (idx >= 0) {
            *(int *)dst = idx;
            return ZF_OK;
        }
        char allowed[128];
        join_names(k, '|', allowed, sizeof allowed);
        return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected one of %s, found '%s'", where, k->name, allowed, v);
    }
    case ZF_KEY_PATH_LIST: {
        char(*items)[ZF_PATH_MAX];
        int *n;
        zf_config_path_list(c, k->offset, &items, &n);
        if (*n >= ZF_MAX_EVAL_FILES)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': at most %d files", where, k->name, ZF_MAX_EVAL_FILES);
        if (strlen(v) >= ZF_PATH_MAX)
            return zf_fail(ZF_ERR_INPUT, "%s: key '%s': path longer than %d bytes", where, k->name, ZF_PATH_MAX - 1);
        strcpy(items[(*n)++], v);
        return ZF_OK;
    }
    }
    ZF_PANIC("unhandled key type %d", (int)k->type);
}

/* Stores a number, flag or enum index as the key's type. */
static void store(zf_job_config *c, const zf_key_spec *k, double v)
{
    void *dst = (char *)c + k->offset;
    switch (k->type) {
    case ZF_KEY_BOOL: *(bool *)dst = v != 0; break;
    case ZF_KEY_I32:
    case ZF_KEY_ENUM: *(int *)dst = (int)v; break;
    case ZF_KEY_INT: *(int64_t *)dst = (int64_t)v; break;
    case ZF_KEY_DOUBLE: *(double *)dst = v; break;
    default: break; /* paths default to "" and lists to [] */
    }
}

void zf_config_defaults(zf_job_config *c)
{
    memset(c, 0, sizeof *c);
    zf_quant_opts_default(&c->quant); /* for the options that are not keys */
    build_keys();
    for (size_t i = 0; i < nkeys; i++) store(c, &keys[i], keys[i].def);
}

void zf_config_path_list(zf_job_config *c, size_t offset, char (**items)[ZF_PATH_MAX], int **count)
{
    bool texts = offset == OFF(eval_texts);
    *items = texts ? c->eval_texts : c->eval_files;
    *count = texts ? &c->n_eval_texts : &c->n_eval_files;
}

zf_status zf_config_set(zf_job_config *c, const char *assignment)
{
    const char *eq = strchr(assignment, '=');
    if (!eq) return zf_fail(ZF_ERR_INPUT, "--set '%s': expected key=value", assignment);
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(eq - assignment), assignment);
    const zf_key_spec *k = zf_config_find_key(key);
    if (!k) {
        const char *near = zf_config_nearest_key(key);
        return zf_fail(ZF_ERR_INPUT, "--set: unknown key '%s'%s%s%s", key, near ? " (did you mean '" : "",
                       near ? near : "", near ? "'?)" : "");
    }
    if (k->type == ZF_KEY_PATH_LIST) {
        char(*items)[ZF_PATH_MAX];
        int *n;
        zf_config_path_list(c, k->offset, &items, &n);
        *n = 0;
        char buf[ZF_PATH_MAX * 2];
        snprintf(buf, sizeof buf, "%s", eq + 1);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) ZF_TRY(zf_config_set_value(c, k, tok, "--set"));
        return ZF_OK;
    }
    return zf_config_set_value(c, k, eq + 1, "--set");
}

zf_status zf_config_validate(const zf_job_config *c)
{
    if (!c->model[0]) return zf_fail(ZF_ERR_INPUT, "config: missing required key 'model'");
    if (!c->output[0]) return zf_fail(ZF_ERR_INPUT, "config: missing required key 'output'");
    if (!c->calib_file[0] && !c->calib_text[0] && c->quant.method != ZF_METHOD_RTN)
        return zf_fail(ZF_ERR_INPUT, "config: missing required key 'calibration.file' (or 'calibration.text')");
    if (c->calib_file[0] && c->calib_text[0])
        return zf_fail(ZF_ERR_INPUT, "config: calibration.file and calibration.text are both set; give one");
    if (c->n_eval_files + c->n_eval_texts > ZF_MAX_EVAL_FILES)
        return zf_fail(ZF_ERR_INPUT, "config: eval.files and eval.texts name %d files, at most %d in all",
                       c->n_eval_files + c->n_eval_texts, ZF_MAX_EVAL_FILES);
    if (c->schedule == ZF_SCHEDULE_PARALLEL && c->true_sequential)
        return zf_fail(ZF_ERR_INPUT, "config: schedule: parallel and true_sequential: true conflict (the parallel "
                       "schedule takes every Hessian from the full-precision model)");
    if (c->hessian_capture == ZF_CAPTURE_INPUTS && c->schedule == ZF_SCHEDULE_PARALLEL)
        return zf_fail(ZF_ERR_INPUT, "config: hessian_capture: inputs applies to schedule: sequential (the parallel "
                                     "schedule sums each block's inputs as it goes); use auto or sums");
    if (c->hessian_capture == ZF_CAPTURE_INPUTS && c->backend == ZF_BACKEND_CUDA)
        return zf_fail(ZF_ERR_INPUT, "config: hessian_capture: inputs needs backend: cpu (with cuda the inputs stay in "
                                     "GPU memory and are summed there); use auto or sums");
    if (c->hessian_reduce_fp32 && c->backend == ZF_BACKEND_CUDA)
        return zf_fail(ZF_ERR_INPUT, "config: hessian_reduce_fp32: true needs backend: cpu (with cuda the sums are "
                       "reduced between the GPUs in their accumulation type)");
    zf_status s = zf_quant_opts_check(&c->quant);
    if (s != ZF_OK) return zf_fail_context(s, "config");
    return ZF_OK;
}

static int count_names(const zf_key_spec *k)
{
    int n = 0;
    while (k->names[n]) n++;
    return n;
}

/* A YAML double-quoted scalar: a path with quotes, backslashes or line breaks reads back as itself. */
static void write_quoted(const char *s, FILE *f)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void write_value(const zf_job_config *c, const zf_key_spec *k, FILE *f)
{
    const void *src = (const char *)c + k->offset;
    switch (k->type) {
    case ZF_KEY_PATH: write_quoted((const char *)src, f); break;
    case ZF_KEY_INT: fprintf(f, "%lld", (long long)*(const int64_t *)src); break;
    case ZF_KEY_I32: fprintf(f, "%d", *(const int *)src); break;
    case ZF_KEY_DOUBLE: fprintf(f, "%.17g", *(const double *)src); break;
    case ZF_KEY_BOOL: fprintf(f, "%s", *(const bool *)src ? "true" : "false"); break;
    case ZF_KEY_ENUM: {
        int idx = *(const int *)src;
        fputs(idx >= 0 && idx < count_names(k) ? k->names[idx] : "", f);
        break;
    }
    case ZF_KEY_PATH_LIST: {
        char(*items)[ZF_PATH_MAX];
        int *n;
        zf_config_path_list((zf_job_config *)c, k->offset, &items, &n);
        fputc('[', f);
        for (int i = 0; i < *n; i++) {
            if (i) fputs(", ", f);
            write_quoted(items[i], f);
        }
        fputc(']', f);
        break;
    }
    }
}

void zf_config_write_yaml(const zf_job_config *c, FILE *f)
{
    build_keys();
    const char *section = "";
    size_t seclen = 0;
    for (size_t i = 0; i < nkeys; i++) {
        const char *dot = strchr(keys[i].name, '.');
        const char *name = keys[i].name;
        if (dot) {
            size_t len = (size_t)(dot - keys[i].name);
            if (len != seclen || strncmp(section, keys[i].name, len)) {
                fprintf(f, "%.*s:\n", (int)len, keys[i].name);
                section = keys[i].name;
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

/* The default as the docs show it. */
static void format_default(const zf_key_spec *k, char *buf, size_t n)
{
    zf_job_config c;
    memset(&c, 0, sizeof c);
    store(&c, k, k->def);
    if (k->required) snprintf(buf, n, "(required)");
    else if (k->type == ZF_KEY_PATH) snprintf(buf, n, "\"\"");
    else if (k->type == ZF_KEY_PATH_LIST) snprintf(buf, n, "[]");
    else if (k->type == ZF_KEY_DOUBLE) snprintf(buf, n, "%g", k->def);
    else {
        FILE *f = fmemopen(buf, n, "w");
        if (!f) ZF_PANIC("fmemopen failed");
        write_value(&c, k, f);
        fclose(f);
    }
}

void zf_config_write_docs(FILE *f)
{
    static const char *type_names[] = {"boolean", "integer", "integer", "number", "one of", "path", "list of paths"};
    build_keys();
    fprintf(f, "| key | type | default | allowed | affects | meaning |\n|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < nkeys; i++) {
        const zf_key_spec *k = &keys[i];
        char allowed[128] = "", def[64], affects[64] = "";
        const char *open = k->min_open ? "> " : "";
        if (k->type == ZF_KEY_INT || k->type == ZF_KEY_I32)
            snprintf(allowed, sizeof allowed, "%s%.0f … %.0f", open, k->min, k->max);
        else if (k->type == ZF_KEY_DOUBLE) snprintf(allowed, sizeof allowed, "%s%g … %g", open, k->min, k->max);
        else if (k->type == ZF_KEY_ENUM) join_names(k, '/', allowed, sizeof allowed);
        else if (k->type == ZF_KEY_BOOL) snprintf(allowed, sizeof allowed, "true\\|false");
        format_default(k, def, sizeof def);
        for (int m = ZF_METHOD_RTN; m <= ZF_METHOD_ZFOLD; m++)
            if (k->affects != ZF_AFFECTS_ALL && (k->affects & ZF_AFFECTS(m)))
                snprintf(affects + strlen(affects), sizeof affects - strlen(affects), "%s%s", affects[0] ? ", " : "",
                         zf_method_name((zf_method)m));
        if (!k->affects || k->affects == ZF_AFFECTS_ALL) snprintf(affects, sizeof affects, k->affects ? "all" : "-");
        fprintf(f, "| `%s` | %s | %s | %s | %s | %s |\n", k->name, type_names[k->type], def, allowed, affects, k->doc);
    }
}

int zf_config_take_set(int argc, char **argv, int i, const char **sets, int *nsets)
{
    if (*nsets >= ZF_MAX_SETS) return 0;
    bool two = !strcmp(argv[i], "--set") && i + 1 < argc;
    if (!two && strncmp(argv[i], "--set=", 6)) return 0;
    const char *v = two ? argv[i + 1] : argv[i] + 6;
    /* a malformed override is a command-line error (exit code 2), told here */
    const char *eq = strchr(v, '=');
    if (!eq || eq == v) {
        fprintf(stderr, "zfold: --set %s: expected key=value (e.g. --set bits=4)\n", v);
        return 0;
    }
    sets[(*nsets)++] = v;
    return two ? 2 : 1;
}

unsigned zf_config_key_affects(const char *key)
{
    const zf_key_spec *k = zf_config_find_key(key);
    return k ? k->affects : ZF_AFFECTS_ALL;
}

bool zf_config_key_applies(const char *key, zf_method m)
{
    unsigned a = zf_config_key_affects(key);
    return a == 0 || (a & ZF_AFFECTS(m));
}

static bool same_value(const zf_job_config *a, const zf_job_config *b, const zf_key_spec *k)
{
    const char *pa = (const char *)a + k->offset, *pb = (const char *)b + k->offset;
    switch (k->type) {
    case ZF_KEY_BOOL: return *(const bool *)pa == *(const bool *)pb;
    case ZF_KEY_I32:
    case ZF_KEY_ENUM: return *(const int *)pa == *(const int *)pb;
    case ZF_KEY_INT: return *(const int64_t *)pa == *(const int64_t *)pb;
    case ZF_KEY_DOUBLE: return *(const double *)pa == *(const double *)pb;
    case ZF_KEY_PATH: return !strcmp(pa, pb);
    case ZF_KEY_PATH_LIST: {
        char(*ia)[ZF_PATH_MAX], (*ib)[ZF_PATH_MAX];
        int *na, *nb;
        zf_config_path_list((zf_job_config *)a, k->offset, &ia, &na);
        zf_config_path_list((zf_job_config *)b, k->offset, &ib, &nb);
        if (*na != *nb) return false;
        for (int i = 0; i < *na; i++)
            if (strcmp(ia[i], ib[i])) return false;
        return true;
    }
    }
    ZF_PANIC("unhandled key type %d", (int)k->type);
}

bool zf_config_same_run(const zf_job_config *a, const zf_job_config *b)
{
    if (a->quant.method != b->quant.method) return false;
    build_keys();
    for (size_t i = 0; i < nkeys; i++)
        if (zf_config_key_applies(keys[i].name, a->quant.method) && !same_value(a, b, &keys[i])) return false;
    return true;
}
