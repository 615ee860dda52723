/* `zfold quantize CONFIG.yaml`: quantize a model, write its HDF5 shards, measure perplexity, print the report. */
#define _GNU_SOURCE
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/fsutil.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/shard.h"
#include "common/tokens.h"
#include "coordinator/comm.h"
#include "coordinator/commands.h"
#include "coordinator/config.h"
#include "coordinator/export.h"
#include "coordinator/evalstore.h"
#include "coordinator/pipeline.h"
#include "coordinator/preflight.h"
#include "coordinator/rundir.h"
#include "coordinator/shardmap.h"
#include "coordinator/signals.h"
#include "worker/perplexity.h"

void zf_cmd_quantize_help(void)
{
    printf("usage: zfold quantize CONFIG.yaml [--set key=value]... [--dry-run] [--restart]\n"
           "Quantizes the model named in the config block by block (calibration, Hessians, RTN/OPTQ/Z-FOLD,\n"
           "folding), writes <output>/blocks/block-NNNN.h5 and <output>/unquantized.h5, measures perplexity\n"
           "on eval.files and prints a table; <output>/report.json holds the same figures.\n"
           "Every key is described in docs/config.md. Relative paths are relative to the current folder.\n"
           "  --set key=value   override a key (dotted for sections: --set calibration.windows=32)\n"
           "  --dry-run         check the config, the model and the token files, print the plan, stop\n"
           "  --restart         discard the finished blocks of an earlier run in the output folder\n"
           "Running the same command again resumes: finished blocks are verified (checksums) and read back.\n"
           "SIGTERM, SIGINT or SIGUSR1 stop the run after the current block (exit code 3, resumable).\n"
           "Exit codes: 0 done, 1 bad input or failed step, 2 usage, 3 interrupted (resumable), 4 internal error.\n");
}

static char *config_yaml(const zf_job_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    zf_config_write_yaml(cfg, f);
    fclose(f);
    return buf;
}

/* The shards' /provenance config: the effective config less where the run was written, so that one run's shards
 * are byte-identical in any output folder. */
static char *provenance_text(const char *yaml)
{
    char *prov = yaml ? strdup(yaml) : NULL;
    char *line = prov && !strncmp(prov, "output:", 7) ? prov : prov ? strstr(prov, "\noutput:") : NULL;
    if (!line) return prov;
    if (line != prov) line++;
    char *end = strchr(line, '\n');
    memmove(line, end ? end + 1 : line + strlen(line), strlen(end ? end + 1 : line + strlen(line)) + 1);
    return prov;
}

static void block_shard_path(const zf_job_config *cfg, int64_t b, char *path, size_t n)
{
    snprintf(path, n, "%s/blocks/block-%04lld.h5", cfg->output, (long long)b);
}

static zf_status write_block_shard(const zf_job_config *cfg, const zf_qmodel *m, int64_t b, const char *prov,
                                   char *path, size_t pathlen)
{
    char dir[ZF_PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/blocks", cfg->output);
    ZF_TRY(zf_mkdirs(dir));
    block_shard_path(cfg, b, path, pathlen);
    return zf_shardmap_write_block(&m->model, b, &m->blocks[b], cfg->quant.group_size, path, prov);
}

static zf_status write_unquantized(const zf_job_config *cfg, zf_qmodel *m, const char *prov, char *path,
                                   size_t pathlen)
{
    const zf_model_globals *g = NULL;
    ZF_TRY(zf_qmodel_globals(m, &g));
    snprintf(path, pathlen, "%s/unquantized.h5", cfg->output);
    return zf_shardmap_write_globals(&m->model, g, path, prov);
}

/* The run around the pipeline: shards persisted as blocks finish, finished blocks read back on resume. */
typedef struct {
    const zf_job_config *cfg;
    zf_qmodel *m;
    zf_rundir *run;             /* rank 0 only */
    const char *prov;
    uint64_t digest;            /* rank 0: the finished shards' zf_rundir_digest, for kept evaluations */
} run_ctx;

/* The content of every checkpoint tensor read so far, in the run directory: a resume refuses a replaced one. */
static zf_status record_tensors(zf_rundir *run, const zf_safetensors *st)
{
    const char *name;
    uint64_t h;
    char key[320];
    for (size_t i = 0; i < zf_st_tensor_count(st); i++)
        if (zf_st_content_hash(st, i, &name, &h)) {
            snprintf(key, sizeof key, "tensor %s", name);
            ZF_TRY(zf_rundir_input(run, key, h));
        }
    return ZF_OK;
}

static zf_status hook_load(void *ctx, int64_t b, zf_qblock *qb)
{
    run_ctx *r = ctx;
    char path[ZF_PATH_MAX + 64];
    block_shard_path(r->cfg, b, path, sizeof path);
    zf_shard_data d;
    memset(&d, 0, sizeof d);
    zf_status s = zf_shard_read(path, &d);
    if (s == ZF_OK) s = zf_qblock_from_shard(&r->m->model, b, path, &d, qb);
    zf_shard_data_free(&d);
    return s;
}

/* One JSON line per finished block in <output>/progress.jsonl: the facts of the progress line, for tools. */
static void append_progress(const run_ctx *r, int64_t b, const zf_qblock *qb)
{
    const zf_model_config *c = &r->m->model;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "block", (double)b);
    cJSON_AddNumberToObject(j, "blocks", (double)c->n_layers);
    cJSON_AddNumberToObject(j, "seconds", qb->seconds);
    cJSON_AddNumberToObject(j, "comm_bytes", qb->comm_bytes);
    cJSON *layers = cJSON_AddObjectToObject(j, "layers");
    for (int l = 0; l < ZF_NLIN; l++) {
        if (!zf_lin_present(c, (zf_lin)l)) continue;
        cJSON *jl = cJSON_AddObjectToObject(layers, zf_lin_short_name(c, (zf_lin)l));
        cJSON_AddNumberToObject(jl, "delta_loss_before", qb->dl_rtn[l]);
        cJSON_AddNumberToObject(jl, "delta_loss_after", qb->dl[l]);
        cJSON_AddNumberToObject(jl, "damp_retries", qb->damp_retries[l]);
    }
    char *line = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char path[ZF_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/progress.jsonl", r->cfg->output);
    FILE *f = fopen(path, "a");
    if (f && line) fprintf(f, "%s\n", line);
    if (f) fclose(f);
    free(line);
}

static zf_status hook_done(void *ctx, int64_t b, const zf_qblock *qb)
{
    run_ctx *r = ctx;
    if (!r->run) return ZF_OK;
    char path[ZF_PATH_MAX + 64];
    ZF_TRY(record_tensors(r->run, r->m->st));
    ZF_TRY(write_block_shard(r->cfg, r->m, b, r->prov, path, sizeof path));
    ZF_TRY(zf_rundir_mark_done(r->run, b, path));
    append_progress(r, b, qb);
    return ZF_OK;
}

static int hook_stop(void *ctx) { return zf_signals_pending(); }

/* Evaluation reads the quantized model back from its shards, one block at a time: what is measured is what
 * was written, and memory stays at one block. */
typedef struct {
    run_ctx *run;
    zf_qblock slot;
    int64_t cur;
} shard_source;

static zf_status shard_source_get(void *ctx, int64_t b, const zf_block_weights **out)
{
    shard_source *src = ctx;
    if (src->cur != b) {
        zf_qblock_release(&src->slot);
        src->cur = -1;
        ZF_TRY(hook_load(src->run, b, &src->slot));
        src->cur = b;
    }
    *out = &src->slot.folded;
    return ZF_OK;
}

typedef struct {
    char file[ZF_PATH_MAX];
    int64_t windows, seq;
    double ppl_fp, ppl_q, ppl_unfolded;
    double seconds;
} eval_row;

/* A block source that gives up once a stop is requested: evaluation stops within one block's forward. */
typedef struct {
    zf_block_source_fn fn;
    void *ctx;
} stoppable_source;

static zf_status stoppable_get(void *ctx, int64_t b, const zf_block_weights **out)
{
    stoppable_source *s = ctx;
    if (zf_signals_pending())
        return zf_fail(ZF_ERR_INTERRUPTED, "stopped by a signal during evaluation; run the same command again to "
                       "resume (finished evaluation files are kept)");
    return s->fn(s->ctx, b, out);
}

/* This rank's share of the windows, then the sums of every rank: the same perplexity for any rank count up to
 * the order of the final sum. */
static zf_status eval_share(zf_backend *be, const zf_model_config *c, const zf_model_globals *g, zf_block_source_fn src,
                            void *ctx, const int32_t *ids, int64_t seq, int64_t nw, int64_t chunk, double *ppl)
{
    const zf_comm *w = zf_comm_world();
    int64_t lo, hi;
    zf_comm_split(nw, w->rank, w->size, &lo, &hi);
    zf_nll nll = {0};
    stoppable_source stop = {src, ctx};
    zf_status s = hi > lo ? zf_eval_nll(be, c, g, stoppable_get, &stop, ids, seq, lo, hi, chunk, &nll) : ZF_OK;
    s = zf_comm_agree(s);
    int64_t counts[2] = {nll.predictions, nll.windows};
    if (s == ZF_OK) s = zf_comm_allreduce_f64(&nll.nll_sum, 1);
    if (s == ZF_OK) s = zf_comm_sum_i64(counts, 2);
    nll.predictions = counts[0];
    nll.windows = counts[1];
    if (s == ZF_OK) *ppl = zf_nll_ppl(&nll);
    return s;
}

static zf_status evaluate(const zf_job_config *cfg, zf_qmodel *m, run_ctx *rctx, eval_row *rows)
{
    const zf_model_config *c = &m->model;
    const zf_model_globals *g = NULL;
    if (cfg->n_eval_files > 0) ZF_TRY(zf_comm_agree(zf_qmodel_globals(m, &g)));
    for (int i = 0; i < cfg->n_eval_files; i++) {
        eval_row *r = &rows[i];
        double t0 = zf_now();
        zf_tokens tok = {0};
        snprintf(r->file, sizeof r->file, "%s", cfg->eval_files[i]);
        r->seq = cfg->eval_seq_len > 0 ? cfg->eval_seq_len : m->calib_seq;
        int64_t chunk = cfg->eval_chunk > 0 ? cfg->eval_chunk
                                            : zf_eval_auto_chunk(c, r->seq, cfg->eval_memory_gib * 1073741824.0);
        r->ppl_fp = r->ppl_unfolded = NAN;
        zf_status s = zf_tokens_read(cfg->eval_files[i], c->vocab, &tok);
        int64_t nw = zf_eval_windows((int64_t)tok.count, r->seq);
        if (cfg->eval_max_windows > 0 && nw > cfg->eval_max_windows) nw = cfg->eval_max_windows;
        r->windows = nw;
        if (s == ZF_OK && nw == 0)
            s = zf_fail(ZF_ERR_INPUT, "%s: fewer tokens (%zu) than one window of %lld", r->file, tok.count,
                        (long long)r->seq);
        /* every rank reads the file: one that cannot must not leave the others in the collectives below */
        s = zf_comm_agree(s);
        /* a file measured before on these shards (an evaluation stopped by a signal, or repeated) is not redone */
        uint64_t key = zf_eval_key(rctx->digest, tok.xxh64, r->seq, nw, cfg->eval_fp, cfg->eval_unfolded);
        zf_eval_result kept = {NAN, NAN, NAN, 0};
        bool have = s == ZF_OK && rctx->run && zf_eval_store_find(cfg->output, key, &kept);
        if (s == ZF_OK) s = zf_comm_bcast_bool(&have, 0);
        if (s == ZF_OK && have) s = zf_comm_bcast(&kept, sizeof kept, 0);
        if (s == ZF_OK && have) {
            zf_tokens_free(&tok);
            *r = (eval_row){.windows = nw, .seq = r->seq, .ppl_fp = kept.ppl_fp, .ppl_q = kept.ppl,
                            .ppl_unfolded = kept.ppl_unfolded, .seconds = kept.seconds};
            snprintf(r->file, sizeof r->file, "%s", cfg->eval_files[i]);
            zf_log_info("eval %s: ppl %.4f (fp %.4f), kept from an earlier evaluation of these shards", r->file,
                        r->ppl_q, r->ppl_fp);
            continue;
        }
        if (s == ZF_OK && cfg->eval_fp && !c->gptq) {
            zf_checkpoint_source src;
            zf_checkpoint_source_init(&src, c, m->st);
            s = eval_share(m->be, c, g, zf_checkpoint_source_get, &src, tok.ids, r->seq, nw, chunk, &r->ppl_fp);
            zf_checkpoint_source_free(&src);
        }
        if (s == ZF_OK && c->gptq) { /* a GPTQ checkpoint, dequantized on load: the model itself is measured */
            zf_checkpoint_source src;
            zf_checkpoint_source_init(&src, c, m->st);
            s = eval_share(m->be, c, g, zf_checkpoint_source_get, &src, tok.ids, r->seq, nw, chunk, &r->ppl_q);
            zf_checkpoint_source_free(&src);
        } else if (s == ZF_OK) {
            shard_source src = {.run = rctx, .cur = -1};
            s = eval_share(m->be, c, g, shard_source_get, &src, tok.ids, r->seq, nw, chunk, &r->ppl_q);
            zf_qblock_release(&src.slot);
        }
        if (s == ZF_OK && cfg->eval_unfolded)
            s = eval_share(m->be, c, g, zf_qmodel_unfolded_source, m, tok.ids, r->seq, nw, chunk, &r->ppl_unfolded);
        zf_tokens_free(&tok);
        if (s != ZF_OK) return s;
        r->seconds = zf_now() - t0;
        zf_eval_result done = {r->ppl_fp, r->ppl_q, r->ppl_unfolded, r->seconds};
        if (rctx->run && zf_eval_store_put(cfg->output, key, r->file, &done) != ZF_OK)
            zf_log_warn("the result is not kept for a later run: %s", zf_last_error());
        zf_log_info("eval %s: %lld windows of %lld (chunks of %lld), ppl %.4f (fp %.4f)", r->file, (long long)nw,
                    (long long)r->seq, (long long)chunk, r->ppl_q, r->ppl_fp);
    }
    return ZF_OK;
}

static const char *basename_of(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static zf_status write_report(const zf_job_config *cfg, const zf_qmodel *m, const eval_row *rows, double total)
{
    const zf_model_config *c = &m->model;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", cfg->model);
    cJSON_AddStringToObject(root, "model_type", c->model_type);
    cJSON_AddStringToObject(root, "method", zf_method_name(cfg->quant.method));
    cJSON_AddNumberToObject(root, "bits", cfg->quant.bits);
    cJSON_AddBoolToObject(root, "sym", cfg->quant.sym);
    cJSON_AddNumberToObject(root, "group_size", (double)cfg->quant.group_size);
    cJSON_AddStringToObject(root, "grid", zf_grid_name(cfg->quant.grid));
    cJSON_AddNumberToObject(root, "calibration_windows", (double)cfg->calib_windows);
    cJSON_AddNumberToObject(root, "calibration_seq_len", (double)m->calib_seq);
    cJSON_AddNumberToObject(root, "quantize_seconds", m->quant_seconds);
    cJSON_AddNumberToObject(root, "total_seconds", total);
    cJSON *hc = cJSON_AddObjectToObject(root, "hessian_cache");
    cJSON_AddBoolToObject(hc, "enabled", m->hcache.enabled);
    cJSON_AddNumberToObject(hc, "hits", m->hcache.hits);
    cJSON_AddNumberToObject(hc, "stores", m->hcache.stores);
    cJSON_AddNumberToObject(hc, "seconds_saved", m->hcache.seconds_saved);
    double before = 0, after = 0;
    if (c->gptq) cJSON_AddBoolToObject(root, "gptq_checkpoint", true);
    cJSON *blocks = cJSON_AddArrayToObject(root, "blocks");
    for (int64_t b = 0; b < (c->gptq ? 0 : c->n_layers); b++) {
        const zf_qblock *qb = &m->blocks[b];
        cJSON *jb = cJSON_CreateObject();
        cJSON_AddNumberToObject(jb, "block", (double)b);
        cJSON_AddNumberToObject(jb, "seconds", qb->seconds);
        cJSON *layers = cJSON_AddObjectToObject(jb, "layers");
        for (int l = 0; l < ZF_NLIN; l++) {
            if (!zf_lin_present(c, (zf_lin)l)) continue;
            cJSON *jl = cJSON_AddObjectToObject(layers, zf_lin_short_name(c, (zf_lin)l));
            cJSON_AddNumberToObject(jl, "delta_loss_before", qb->dl_rtn[l]);
            cJSON_AddNumberToObject(jl, "delta_loss_after", qb->dl[l]);
            cJSON_AddNumberToObject(jl, "als_iterations", qb->als_iters[l]);
            cJSON_AddNumberToObject(jl, "damp_used", qb->damp_used[l]);
            cJSON_AddNumberToObject(jl, "damp_retries", qb->damp_retries[l]);
            before += qb->dl_rtn[l];
            after += qb->dl[l];
        }
        cJSON_AddItemToArray(blocks, jb);
    }
    cJSON_AddNumberToObject(root, "delta_loss_before", before);
    cJSON_AddNumberToObject(root, "delta_loss_after", after);
    cJSON *ev = cJSON_AddArrayToObject(root, "eval");
    for (int i = 0; i < cfg->n_eval_files; i++) {
        cJSON *je = cJSON_CreateObject();
        cJSON_AddStringToObject(je, "file", rows[i].file);
        cJSON_AddNumberToObject(je, "windows", (double)rows[i].windows);
        cJSON_AddNumberToObject(je, "seq_len", (double)rows[i].seq);
        if (!isnan(rows[i].ppl_fp)) cJSON_AddNumberToObject(je, "ppl_fp", rows[i].ppl_fp);
        cJSON_AddNumberToObject(je, "ppl", rows[i].ppl_q);
        if (!isnan(rows[i].ppl_unfolded)) cJSON_AddNumberToObject(je, "ppl_unfolded", rows[i].ppl_unfolded);
        cJSON_AddNumberToObject(je, "seconds", rows[i].seconds);
        cJSON_AddItemToArray(ev, je);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return zf_fail(ZF_ERR_NOMEM, "cannot format report.json");
    char path[ZF_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/report.json", cfg->output);
    zf_status s = zf_write_file_atomic(path, text, strlen(text));
    free(text);
    return s;
}

static void print_table(const zf_job_config *cfg, const zf_qmodel *m, const eval_row *rows, double total)
{
    printf("\n| method | bits | eval file | windows | FP ppl | quantized ppl |%s time (s) |\n",
           cfg->eval_unfolded ? " unfolded ppl |" : "");
    printf("|---|---|---|---|---|---|%s---|\n", cfg->eval_unfolded ? "---|" : "");
    for (int i = 0; i < cfg->n_eval_files; i++) {
        printf("| %s | %d | %s | %lld | %.4f | %.4f |", zf_method_name(cfg->quant.method), cfg->quant.bits,
               basename_of(rows[i].file), (long long)rows[i].windows, rows[i].ppl_fp, rows[i].ppl_q);
        if (cfg->eval_unfolded) printf(" %.4f |", rows[i].ppl_unfolded);
        printf(" %.1f |\n", rows[i].seconds);
    }
    printf("quantization %.1f s, total %.1f s; run directory %s\n", m->quant_seconds, total, cfg->output);
}

int zf_job_start(int *argc, char ***argv, zf_comm *comm)
{
    zf_signals_install(); /* a stop requested while starting is honoured before the first block (exit code 3) */
    if (zf_comm_init(argc, argv, comm) == ZF_OK) return ZF_EXIT_OK;
    fprintf(stderr, "zfold: %s\n", zf_last_error());
    return ZF_EXIT_INTERNAL;
}

int zf_job_end_early(const zf_comm *comm)
{
    if (comm->rank == 0) fprintf(stderr, "zfold: %s\n", zf_last_error());
    zf_comm_finalize();
    return ZF_EXIT_FAILURE;
}

zf_status zf_quantize_job(const zf_job_config *cfg_in, const char *config_path, bool restart, bool dry_run,
                          bool eval_only)
{
    const zf_comm *w = zf_comm_world();
    bool lead = w->rank == 0;
    zf_job_config cfg = *cfg_in;
    zf_status s = ZF_OK;
    if (cfg.threads > 0) {
        openblas_set_num_threads((int)cfg.threads);
        omp_set_num_threads((int)cfg.threads);
    }
    char *yaml = config_yaml(&cfg);
    zf_log_info("effective configuration (%s), %d rank%s:\n%s", config_path, w->size, w->size > 1 ? "s" : "",
                yaml ? yaml : "");
    double t0 = zf_now();
    zf_qmodel m;
    eval_row rows[ZF_MAX_EVAL_FILES];
    s = zf_comm_agree(zf_qmodel_open(&cfg, &m));
    if (s == ZF_OK) s = zf_comm_agree(zf_job_prepare_texts(&cfg, m.calib_seq, lead));
    if (s == ZF_OK)
        zf_log_info("model %s: %s, %lld blocks, d %lld, %lld parameters; calibration %lld windows x %lld tokens",
                    cfg.model, m.model.model_type, (long long)m.model.n_layers, (long long)m.model.hidden,
                    (long long)zf_model_param_count(&m.model), (long long)cfg.calib_windows, (long long)m.calib_seq);
    /* everything that can be found wrong without computing is found before the first block */
    zf_preflight_result pre = {0};
    if (s == ZF_OK) s = zf_comm_agree(zf_preflight(&cfg, &m, eval_only, dry_run, &pre));
    bool stop = zf_signals_pending() != 0;
    if (s == ZF_OK) s = zf_comm_any(&stop);
    if (s == ZF_OK && stop)
        s = zf_fail(ZF_ERR_INTERRUPTED, "stopped by a signal while starting, before anything was computed; run the "
                    "same command again");
    if (s == ZF_OK && m.model.gptq && !eval_only)
        s = zf_fail(ZF_ERR_INPUT, "%s: a GPTQ checkpoint (config.json has a quantization_config): zfold quantize needs "
                    "a full-precision model; zfold eval measures this one", cfg.model);
    if (s == ZF_OK && dry_run) {
        zf_log_info("dry run: configuration, every tensor of the model and the token files checked; nothing computed");
    } else if (s == ZF_OK && m.model.gptq) { /* no run directory: the checkpoint is the quantized model */
        cfg.eval_unfolded = false;
        if (lead) s = zf_mkdirs(cfg.output);
        s = zf_comm_agree(s);
        run_ctx none = {&cfg, &m, NULL, yaml, 0};
        if (s == ZF_OK) s = evaluate(&cfg, &m, &none, rows);
        double total = zf_now() - t0;
        if (s == ZF_OK && lead) s = write_report(&cfg, &m, rows, total);
        if (s == ZF_OK && lead) print_table(&cfg, &m, rows, total);
        s = zf_comm_agree(s);
    } else if (s == ZF_OK) {
        zf_rundir *run = NULL;
        int64_t resume_from = 0;
        if (lead && eval_only)
            s = zf_rundir_open_finished(cfg.output, yaml, zf_st_fingerprint(m.st), m.model.n_layers, &run);
        else if (lead)
            s = zf_rundir_open(cfg.output, yaml, zf_st_fingerprint(m.st), m.model.n_layers, restart, &run);
        if (s == ZF_OK && lead && !eval_only) {
            char path[ZF_PATH_MAX + 32];
            snprintf(path, sizeof path, "%s/config.yaml", cfg.output);
            s = zf_rundir_input(run, "calibration.file", pre.calib_xxh64);
            if (s == ZF_OK) s = record_tensors(run, m.st);
            if (s == ZF_OK) s = zf_write_file_atomic(path, yaml, strlen(yaml));
        }
        if (s == ZF_OK && lead) {
            resume_from = zf_rundir_first_unfinished(run);
            if (resume_from > 0)
                zf_log_info("resuming %s: %lld of %lld blocks already done", cfg.output, (long long)resume_from,
                            (long long)m.model.n_layers);
        }
        s = zf_comm_agree(s);
        if (s == ZF_OK) s = zf_comm_sum_i64(&resume_from, 1);
        if (s == ZF_OK && eval_only && resume_from < m.model.n_layers)
            s = zf_fail(ZF_ERR_INPUT, "%s: %lld of %lld blocks finished; run zfold quantize to finish the run first",
                        cfg.output, (long long)resume_from, (long long)m.model.n_layers);
        if (s == ZF_OK && resume_from > 0 && cfg.eval_unfolded) {
            zf_log_warn("eval.unfolded needs every block computed in this run; resumed, so it is skipped");
            cfg.eval_unfolded = false;
        }
        if (s == ZF_OK && eval_only && lead && !zf_rundir_unquantized_done(run))
            s = zf_fail(ZF_ERR_INPUT, "%s: unquantized.h5 is not finished; run zfold quantize to finish the run first",
                        cfg.output);
        char *prov = provenance_text(yaml);
        run_ctx rctx = {&cfg, &m, run, prov, 0};
        zf_run_hooks hooks = {resume_from, hook_load, hook_done, hook_stop, &rctx};
        if (s == ZF_OK) s = zf_qmodel_quantize(&cfg, &m, &hooks);
        if (s == ZF_OK && lead && !eval_only) {
            char path[ZF_PATH_MAX + 32];
            s = write_unquantized(&cfg, &m, prov, path, sizeof path);
            if (s == ZF_OK) s = zf_rundir_mark_unquantized(run, path);
        }
        if (s == ZF_OK && lead) rctx.digest = zf_rundir_digest(run);
        s = zf_comm_agree(s);
        if (s == ZF_OK) s = evaluate(&cfg, &m, &rctx, rows);
        zf_rundir_close(run);
        rctx.run = NULL;
        double total = zf_now() - t0;
        if (s == ZF_OK && lead) s = write_report(&cfg, &m, rows, total);
        if (s != ZF_OK && eval_only && lead && s == ZF_ERR_IO) {
            zf_log_warn("report.json not written (%s); the table below is the result", zf_last_error());
            s = ZF_OK;
        }
        if (s == ZF_OK && lead) print_table(&cfg, &m, rows, total);
        if (s == ZF_OK && lead && !eval_only) s = zf_export_configured(&cfg);
        s = zf_comm_agree(s);
        free(prov);
    }
    zf_qmodel_free(&m);
    free(yaml);
    return s;
}

static int quantize_or_eval(int argc, char **argv, bool eval_only)
{
    const char *config_path = NULL;
    bool dry_run = false, restart = false;
    zf_job_config cfg;
    const char *sets[ZF_MAX_SETS];
    int nsets = 0;
    for (int i = 1, took; i < argc; i++) {
        if ((took = zf_config_take_set(argc, argv, i, sets, &nsets))) i += took - 1;
        else if (!strcmp(argv[i], "--dry-run")) dry_run = true;
        else if (!strcmp(argv[i], "--restart")) restart = true;
        else if (argv[i][0] != '-' && !config_path) config_path = argv[i];
        else {
            fprintf(stderr, "zfold quantize: unexpected argument '%s'\n", argv[i]);
            return ZF_EXIT_USAGE;
        }
    }
    if (!config_path) {
        zf_cmd_quantize_help();
        return ZF_EXIT_USAGE;
    }
    zf_comm comm;
    int rc = zf_job_start(&argc, &argv, &comm);
    if (rc != ZF_EXIT_OK) return rc;
    zf_status s = zf_config_read(config_path, sets, nsets, &cfg, NULL);
    if (s != ZF_OK) return zf_job_end_early(&comm);
    s = zf_quantize_job(&cfg, config_path, restart, dry_run, eval_only);
    if (s != ZF_OK && !zf_comm_reported_elsewhere()) zf_log_error("%s", zf_last_error());
    zf_comm_finalize();
    return zf_exit_code(s);
}

int zf_cmd_quantize(int argc, char **argv) { return quantize_or_eval(argc, argv, false); }

int zf_cmd_eval(int argc, char **argv) { return quantize_or_eval(argc, argv, true); }

void zf_cmd_eval_help(void)
{
    printf("usage: zfold eval CONFIG.yaml [--set key=value]...\n"
           "Measures perplexity on eval.files of the finished run in the config's output folder (its shards are\n"
           "verified and read back; nothing is quantized), and of the full-precision model when eval.fp is true.\n"
           "Change eval.* freely (--set eval.files=a.bin,b.bin); other keys must match the run. Fails when the run\n"
           "is not finished.\n");
}
