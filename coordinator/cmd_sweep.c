/* `zfold sweep CONFIG.yaml`: one run directory per distinct point of the cartesian product of the listed values, then
 * a summary. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/log.h"
#include "coordinator/comm.h"
#include "coordinator/commands.h"
#include "coordinator/config.h"
#include "coordinator/rundir.h"

void zf_cmd_sweep_help(void)
{
    printf("usage: zfold sweep CONFIG.yaml [--set key=value]... [--report] [--restart]\n"
           "A key given a list (bits: [2, 3, 4], method: [rtn, optq, zfold]) makes a sweep over the cartesian\n"
           "product of the lists. Each point is a run directory <output>/<key>-<value>_..., resumable on its own;\n"
           "finished points (complete shards and report.json) are skipped. A key that does not affect a point's\n"
           "method (alpha for rtn; see zfold help config) is left out of its name, and points that differ only in\n"
           "such keys run once (- in the summary). At the end <output>/sweep-summary.csv,\n"
           "sweep-summary.md and sweep-ppl.svg (perplexity against bits per setting, through gnuplot) are written.\n"
           "Full-precision Hessians (block 0's; every block's with schedule: parallel) are computed once and shared\n"
           "through <output>/hessian-cache unless calibration.cache names another folder.\n"
           "  --report    only rewrite the summary and plot from the points already finished\n"
           "  --restart   start every point over\n"
           "Exit code 3 when interrupted (rerun to resume), 1 when a point failed (the others still ran).\n");
}

typedef struct {
    char name[256];
    char dir[ZF_PATH_MAX + 260];
    char values[ZF_SWEEP_MAX_DIMS][128];
    bool moot[ZF_SWEEP_MAX_DIMS];   /* the key does not apply to the point's method */
    int64_t same_as;                /* the first point that is the same run (itself when distinct) */
} point;

/* The configuration of point index: base with the point's values applied; fills values. */
static zf_status point_config(const zf_job_config *base, const zf_sweep *sw, int64_t index, point *p,
                              zf_job_config *cfg)
{
    for (int d = sw->ndims - 1; d >= 0; d--) {
        const zf_sweep_dim *dim = &sw->dims[d];
        snprintf(p->values[d], sizeof p->values[d], "%s", dim->values[index % dim->nvalues]);
        index /= dim->nvalues;
    }
    *cfg = *base;
    for (int d = 0; d < sw->ndims; d++) {
        char assign[256];
        snprintf(assign, sizeof assign, "%s=%s", sw->dims[d].key, p->values[d]);
        ZF_TRY(zf_config_set(cfg, assign));
    }
    return ZF_OK;
}

/* The name lists the keys that apply to the method (all of them if none does). */
static void point_name(const zf_job_config *base, const zf_sweep *sw, point *p)
{
    bool any = false;
    for (int d = 0; d < sw->ndims; d++) any |= !p->moot[d];
    size_t len = 0;
    p->name[0] = '\0';
    for (int d = 0; d < sw->ndims; d++) {
        if (any && p->moot[d]) continue;
        const char *key = strrchr(sw->dims[d].key, '.');
        key = key ? key + 1 : sw->dims[d].key;
        len += (size_t)snprintf(p->name + len, sizeof p->name - len, "%s%s-%s", len ? "_" : "", key, p->values[d]);
        if (len >= sizeof p->name) len = sizeof p->name - 1;
    }
    for (char *c = p->name; *c; c++)
        if (*c == '/' || *c == ' ') *c = '_';
    snprintf(p->dir, sizeof p->dir, "%s/%s", base->output, p->name);
}

/* Point index of the sweep; its configuration in cfg when cfg is not NULL. Configurations are checked before use. */
static void point_at(const zf_job_config *base, const zf_sweep *sw, int64_t index, point *p, zf_job_config *cfg)
{
    zf_job_config own, other;
    point q;
    if (!cfg) cfg = &own;
    if (point_config(base, sw, index, p, cfg) != ZF_OK) ZF_PANIC("sweep point %lld: %s", (long long)index,
                                                                  zf_last_error());
    for (int d = 0; d < sw->ndims; d++) p->moot[d] = !zf_config_key_applies(sw->dims[d].key, cfg->quant.method);
    point_name(base, sw, p);
    p->same_as = index;
    for (int64_t j = 0; j < index; j++)
        if (point_config(base, sw, j, &q, &other) == ZF_OK && zf_config_same_run(&other, cfg)) {
            p->same_as = j;
            break;
        }
}

static cJSON *read_report(const char *dir)
{
    char path[ZF_PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/report.json", dir);
    char *text = NULL;
    zf_read_small_file(path, 64u << 20, "a report", &text); /* absent or unreadable: no figures */
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

/* A point is finished when its report exists and every shard matches the manifest. */
static bool point_finished(const point *p)
{
    cJSON *rep = read_report(p->dir);
    if (!rep) return false;
    cJSON_Delete(rep);
    zf_rundir *r = NULL;
    if (zf_rundir_load(p->dir, &r) != ZF_OK) return false;
    bool ok = zf_rundir_verify(r, -1, NULL, 0);
    for (int64_t b = 0; ok && b < zf_rundir_n_blocks(r); b++) ok = zf_rundir_verify(r, b, NULL, 0);
    zf_rundir_close(r);
    return ok;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* The index of the point with bits = bi and the other keys from series index sidx. */
static int64_t series_point(const zf_sweep *sw, int bits_dim, int64_t sidx, int bi)
{
    int64_t rest = sidx, index = 0, mult = 1;
    for (int d = sw->ndims - 1; d >= 0; d--) {
        int v;
        if (d == bits_dim) v = bi;
        else {
            v = (int)(rest % sw->dims[d].nvalues);
            rest /= sw->dims[d].nvalues;
        }
        index += v * mult;
        mult *= sw->dims[d].nvalues;
    }
    return index;
}

static void plot(const zf_job_config *base, const zf_sweep *sw, int64_t npoints)
{
    int bits_dim = -1;
    for (int d = 0; d < sw->ndims; d++)
        if (!strcmp(sw->dims[d].key, "bits")) bits_dim = d;
    if (bits_dim < 0 || base->n_eval_files + base->n_eval_texts == 0) {
        zf_log_info("sweep: no plot (it needs bits among the swept keys and an eval file)");
        return;
    }
    char path[ZF_PATH_MAX + 32], data[ZF_PATH_MAX + 32];
    snprintf(data, sizeof data, "%s/sweep-ppl.dat", base->output);
    FILE *f = fopen(data, "w");
    if (!f) return;
    /* one data block per setting of the other keys, each sorted by bits (the product is bits-innermost-first) */
    int64_t series = npoints / sw->dims[bits_dim].nvalues;
    char titles[64][256];
    int ntitles = 0;
    for (int64_t sidx = 0; sidx < series && ntitles < 64; sidx++) {
        bool any = false;
        for (int bi = 0; bi < sw->dims[bits_dim].nvalues; bi++) {
            int64_t index = series_point(sw, bits_dim, sidx, bi);
            point p;
            point_at(base, sw, index, &p, NULL);
            if (p.same_as != index) break; /* bits applies to every method: the whole series repeats another */
            cJSON *rep = read_report(p.dir);
            cJSON *e0 = rep ? cJSON_GetArrayItem(cJSON_GetObjectItem(rep, "eval"), 0) : NULL;
            cJSON *ppl = e0 ? cJSON_GetObjectItem(e0, "ppl") : NULL;
            if (cJSON_IsNumber(ppl)) {
                fprintf(f, "%s %.6g\n", p.values[bits_dim], ppl->valuedouble);
                any = true;
            }
            if (bi == 0) {
                size_t len = 0;
                titles[ntitles][0] = '\0';
                for (int d = 0; d < sw->ndims; d++)
                    if (d != bits_dim && !p.moot[d])
                        len += (size_t)snprintf(titles[ntitles] + len, sizeof titles[0] - len, "%s%s=%s",
                                                len ? " " : "", sw->dims[d].key, p.values[d]);
            }
            cJSON_Delete(rep);
        }
        if (!any) continue;
        ntitles++;
        fprintf(f, "\n\n");
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/sweep-ppl.svg", base->output);
    FILE *g = popen("gnuplot 2>/dev/null", "w");
    if (!g) {
        zf_log_warn("sweep: gnuplot not available; no plot");
        return;
    }
    fprintf(g, "set terminal svg size 720,480\nset output '%s'\nset logscale y\nset xlabel 'bits'\n"
               "set ylabel 'perplexity (%s)'\nset key top right\nset grid\nplot ",
            path, base_name(base->n_eval_files ? base->eval_files[0] : base->eval_texts[0]));
    for (int i = 0; i < ntitles; i++)
        fprintf(g, "%s'%s' index %d with linespoints title '%s'", i ? ", " : "", data, i, titles[i][0] ? titles[i] : "run");
    fprintf(g, "\n");
    if (pclose(g) != 0) zf_log_warn("sweep: gnuplot failed; no plot");
    else zf_log_info("sweep: plot %s", path);
}

static zf_status write_summary(const zf_job_config *base, const zf_sweep *sw, int64_t npoints)
{
    char *csv = NULL, *md = NULL;
    size_t csv_len = 0, md_len = 0;
    FILE *c = open_memstream(&csv, &csv_len), *m = open_memstream(&md, &md_len);
    if (!c || !m) return zf_fail(ZF_ERR_NOMEM, "sweep summary");
    fprintf(c, "point");
    fprintf(m, "| point |");
    for (int d = 0; d < sw->ndims; d++) {
        fprintf(c, ",%s", sw->dims[d].key);
        fprintf(m, " %s |", sw->dims[d].key);
    }
    int n_eval = base->n_eval_files + base->n_eval_texts; /* a run evaluates eval.files, then eval.texts */
    for (int i = 0; i < n_eval; i++) {
        const char *f = i < base->n_eval_files ? base->eval_files[i] : base->eval_texts[i - base->n_eval_files];
        fprintf(c, ",ppl %s", base_name(f));
        fprintf(m, " ppl %s |", base_name(f));
    }
    fprintf(c, ",delta_loss_before,delta_loss_after,seconds,cache_seconds_saved\n");
    fprintf(m, " ΔL before | ΔL after | time (s) | cache saved (s) |\n|---|");
    for (int d = 0; d < sw->ndims + n_eval + 4; d++) fprintf(m, "---|");
    fprintf(m, "\n");
    int64_t finished = 0;
    double saved_total = 0;
    int64_t runs = 0;
    for (int64_t i = 0; i < npoints; i++) {
        point p;
        point_at(base, sw, i, &p, NULL);
        if (p.same_as != i) continue;
        runs++;
        cJSON *rep = read_report(p.dir);
        if (!rep) continue;
        finished++;
        fprintf(c, "%s", p.name);
        fprintf(m, "| %s |", p.name);
        for (int d = 0; d < sw->ndims; d++) {
            fprintf(c, ",%s", p.moot[d] ? "" : p.values[d]);
            fprintf(m, " %s |", p.moot[d] ? "-" : p.values[d]);
        }
        cJSON *ev = cJSON_GetObjectItem(rep, "eval");
        for (int k = 0; k < n_eval; k++) {
            cJSON *e = cJSON_GetArrayItem(ev, k), *ppl = e ? cJSON_GetObjectItem(e, "ppl") : NULL;
            double v = cJSON_IsNumber(ppl) ? ppl->valuedouble : NAN;
            fprintf(c, ",%.6g", v);
            fprintf(m, " %.4f |", v);
        }
        cJSON *b = cJSON_GetObjectItem(rep, "delta_loss_before"), *a = cJSON_GetObjectItem(rep, "delta_loss_after"),
              *t = cJSON_GetObjectItem(rep, "total_seconds"),
              *saved = cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "hessian_cache"), "seconds_saved");
        double sv = cJSON_IsNumber(saved) ? saved->valuedouble : 0;
        saved_total += sv;
        fprintf(c, ",%.6g,%.6g,%.2f,%.2f\n", cJSON_IsNumber(b) ? b->valuedouble : NAN,
                cJSON_IsNumber(a) ? a->valuedouble : NAN, cJSON_IsNumber(t) ? t->valuedouble : NAN, sv);
        fprintf(m, " %.4g | %.4g | %.1f | %.1f |\n", cJSON_IsNumber(b) ? b->valuedouble : NAN,
                cJSON_IsNumber(a) ? a->valuedouble : NAN, cJSON_IsNumber(t) ? t->valuedouble : NAN, sv);
        cJSON_Delete(rep);
    }
    fclose(c);
    fclose(m);
    char path[ZF_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/sweep-summary.csv", base->output);
    zf_status s = zf_write_file_atomic(path, csv, csv_len);
    snprintf(path, sizeof path, "%s/sweep-summary.md", base->output);
    if (s == ZF_OK) s = zf_write_file_atomic(path, md, md_len);
    if (s == ZF_OK)
        printf("\n%s\n%lld of %lld points finished; the Hessian cache saved %.1f s of compute; summary in "
               "%s/sweep-summary.{csv,md}\n", md, (long long)finished, (long long)runs, saved_total, base->output);
    free(csv);
    free(md);
    if (s == ZF_OK) plot(base, sw, npoints);
    return s;
}

/* Checks every point before the first one runs; *runs: the number of distinct ones. */
static zf_status check_points(const char *config_path, const zf_job_config *base, const zf_sweep *sw,
                              int64_t npoints, int64_t *runs)
{
    *runs = 0;
    for (int64_t i = 0; i < npoints; i++) {
        point p;
        zf_job_config cfg;
        zf_status s = point_config(base, sw, i, &p, &cfg);
        if (s == ZF_OK) s = zf_config_validate(&cfg);
        if (s != ZF_OK) {
            for (int d = 0; d < sw->ndims; d++) p.moot[d] = false;
            point_name(base, sw, &p);
            return zf_fail_context(s, "%s, sweep point %s", config_path, p.name);
        }
        point_at(base, sw, i, &p, NULL);
        *runs += p.same_as == i;
    }
    return ZF_OK;
}

/* Runs point i unless it repeats another point or finished earlier; ZF_ERR_INTERRUPTED stops the sweep. */
static zf_status run_point(const char *config_path, const zf_job_config *base, const zf_sweep *sw, int64_t i,
                           int64_t *run, int64_t runs, bool restart, bool lead)
{
    point p, first;
    zf_job_config cfg;
    point_at(base, sw, i, &p, &cfg);
    if (p.same_as != i) {
        char combo[512] = "";
        for (int d = 0; d < sw->ndims; d++)
            snprintf(combo + strlen(combo), sizeof combo - strlen(combo), "%s%s=%s", d ? " " : "", sw->dims[d].key,
                     p.values[d]);
        point_at(base, sw, p.same_as, &first, NULL);
        zf_log_info("sweep: %s is the same run as %s (%s)", combo, first.name, zf_method_name(cfg.quant.method));
        return ZF_OK;
    }
    ++*run;
    bool done = lead && !restart && point_finished(&p);
    ZF_TRY(zf_comm_any(&done));
    if (done) {
        zf_log_info("sweep point %lld/%lld %s: finished earlier, skipped", (long long)*run, (long long)runs, p.name);
        return ZF_OK;
    }
    zf_log_info("sweep point %lld/%lld %s", (long long)*run, (long long)runs, p.name);
    if (strlen(p.dir) >= sizeof cfg.output) {
        zf_log_error("sweep point %s: output path too long", p.name);
        return ZF_ERR_INPUT;
    }
    snprintf(cfg.output, sizeof cfg.output, "%s", p.dir);
    static const char cache_dir[] = "/hessian-cache";
    if (!cfg.calib_cache[0] && strlen(base->output) + sizeof cache_dir <= sizeof cfg.calib_cache) {
        strcpy(cfg.calib_cache, base->output);
        strcat(cfg.calib_cache, cache_dir);
    }
    zf_status s = zf_quantize_job(&cfg, config_path, restart, false, false);
    if (s != ZF_OK && s != ZF_ERR_INTERRUPTED && !zf_comm_reported_elsewhere())
        zf_log_error("sweep point %s: %s", p.name, zf_last_error());
    return s;
}

int zf_cmd_sweep(int argc, char **argv)
{
    const char *config_path = NULL;
    bool report_only = false, restart = false;
    const char *sets[ZF_MAX_SETS];
    int nsets = 0;
    for (int i = 1, took; i < argc; i++) {
        if ((took = zf_config_take_set(argc, argv, i, sets, &nsets))) i += took - 1;
        else if (!strcmp(argv[i], "--report")) report_only = true;
        else if (!strcmp(argv[i], "--restart")) restart = true;
        else if (argv[i][0] != '-' && !config_path) config_path = argv[i];
        else {
            zf_cmd_sweep_help();
            return ZF_EXIT_USAGE;
        }
    }
    if (!config_path) {
        zf_cmd_sweep_help();
        return ZF_EXIT_USAGE;
    }
    zf_comm comm;
    int rc = zf_job_start(&argc, &argv, &comm);
    if (rc != ZF_EXIT_OK) return rc;
    bool lead = comm.rank == 0;
    zf_job_config base;
    zf_sweep sw;
    zf_status s = zf_config_read(config_path, sets, nsets, &base, &sw);
    int64_t npoints = 1, runs = 0, run = 0;
    for (int d = 0; s == ZF_OK && d < sw.ndims; d++) npoints *= sw.dims[d].nvalues;
    if (s == ZF_OK) s = check_points(config_path, &base, &sw, npoints, &runs);
    if (s != ZF_OK) return zf_job_end_early(&comm);
    zf_log_info("sweep %s: %lld run%s of %lld combination%s under %s", config_path, (long long)runs,
                runs == 1 ? "" : "s", (long long)npoints, npoints == 1 ? "" : "s", base.output);
    int failed = 0;
    for (int64_t i = 0; !report_only && i < npoints; i++) {
        s = run_point(config_path, &base, &sw, i, &run, runs, restart, lead);
        if (s == ZF_ERR_INTERRUPTED) break;
        if (s != ZF_OK) {
            failed++;
            s = ZF_OK;
        }
    }
    if (s == ZF_OK && lead) {
        if (zf_mkdirs(base.output) == ZF_OK) s = write_summary(&base, &sw, npoints);
        if (s != ZF_OK) zf_log_error("%s", zf_last_error());
    }
    zf_comm_finalize();
    if (s == ZF_ERR_INTERRUPTED) {
        if (lead) zf_log_error("%s", zf_last_error());
        return ZF_EXIT_INTERRUPTED;
    }
    return s != ZF_OK || failed ? ZF_EXIT_FAILURE : ZF_EXIT_OK;
}
