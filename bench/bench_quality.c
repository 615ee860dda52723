/* zfold_quality: ΔL of RTN, OPTQ, Z-FOLD (default) and Z-FOLD (alpha: grid) on every layer group of real models. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "coordinator/config.h"
#include "coordinator/hcache.h"
#include "worker/block.h"
#include "worker/grid.h"
#include "worker/group.h"

#define xmalloc(n) zf_bench_xmalloc((n), "zfold_quality")

/* The compared quantizers: index 2 is the default Z-FOLD, 3 the paper's code's α search. */
enum { V_RTN, V_OPTQ, V_ZFOLD, V_GRID, NV };
static const char *const vnames[NV] = {"rtn", "optq", "zfold", "zfold-grid"};

typedef struct {
    double dl[NV], t[NV];
    double ho[NV]; /* ΔL with the held-out Hessian (NaN without one) */
} case_result;

typedef struct {
    int n, n_grid, worse_grid, worse_optq, n_ho, worse_ho;
    double log_grid, log_optq, worst_grid, t[NV], log_ho, log_in; /* log_in: zfold/optq over the held-out cases */
} summary;

static void usage(void)
{
    fprintf(stderr,
            "usage: zfold_quality [--model DIR --hessians DIR [--holdout DIR]]... [--synthetic OUTxIN]... [--bits LIST]\n"
            "                     [--set KEY=VALUE]... [--json FILE] [--no-paper]\n"
            "  --model, --hessians  a checkpoint and the Hessian cache folder of one of its runs (the folder with the\n"
            "                       b<block>-<group>.hess files, written by quantize with calibration.cache and\n"
            "                       schedule: parallel, which stores every block's full-precision Hessians)\n"
            "  --synthetic OUTxIN   a seeded random layer whose inputs have 8 outlier channels (x10)\n"
            "  --bits     comma-separated bit widths (default 2,3,4)\n"
            "  --set      a quantization key for every method (e.g. group_size=128); repeatable\n"
            "  --holdout DIR  after a --model's --hessians: another cache folder of the same model (other calibration\n"
            "             windows); every result is also scored with that Hessian (ΔL out of sample)\n"
            "  --json     also write every case as JSON to FILE\n"
            "  --no-paper skip the paper's variant (alpha: grid, no widening, refit or fallback; the slowest)\n");
}

/* Quantizer v's options on top of the shared ones. */
static zf_quant_opts variant_opts(const zf_quant_opts *base, int v, int bits)
{
    zf_quant_opts o = *base;
    o.bits = bits;
    o.method = v == V_RTN ? ZF_METHOD_RTN : v == V_OPTQ ? ZF_METHOD_OPTQ : ZF_METHOD_ZFOLD;
    if (v == V_GRID) {
        /* the paper's code: the Hessian-scored α search and OPTQ on its grid, nothing after */
        o.alpha = ZF_ALPHA_GRID;
        o.refit = o.refit_zeta = o.optq_fallback = false;
        o.grid_widen = ZF_WIDEN_OFF;
        o.zfold_rounds = 1;
        o.als_tol = 0.0;
    }
    if (v == V_RTN) o.grid = ZF_GRID_MINMAX;
    o.delta_loss_rtn = v == V_RTN;
    return o;
}

/* --no-paper: the paper's variant (the slowest by far) is not run. */
static bool no_paper;

/* The paper's α search is per output channel only: no such variant with groups. */
static bool variant_skipped(const zf_quant_opts *base, int v)
{
    return v == V_GRID && (base->group_size > 0 || no_paper);
}

/* Σ over rows of (W - deq) Hb (W - deq)ᵀ: group g's members' rows of blk against a result's rows dequantized,
 * ζ_j · scale · (q - zero) with column j's group. */
static int holdout_loss(const zf_model_config *c, zf_group g, const zf_block_weights *blk, const zf_qresult *res,
                        const float *Hb, double *dl)
{
    zf_lin mem[3];
    const int nm = zf_group_members(c, g, mem);
    const int64_t in = zf_group_in(c, g), rows = zf_group_out(c, g);
    float *dW = xmalloc((size_t)rows * (size_t)in * sizeof(float));
    double *rowv = xmalloc((size_t)rows * sizeof(double));
    for (int64_t i = 0, r = 0; i < nm; i++)
        for (int64_t k = 0; k < zf_lin_out(c, mem[i]) * in; k++, r++) {
            const int64_t row = r / in, j = r % in, gi = row * res->ngroups + res->g_idx[j];
            const float deq = res->zeta[j] * zf_dequant((float)res->q[r], res->scale[gi], res->zero[gi]);
            dW[r] = blk->lin_w[mem[i]][k] - deq;
        }
    const int failed = zf_quadform_rows(dW, NULL, rows, in, Hb, rowv, NULL) != ZF_OK;
    *dl = 0.0;
    for (int64_t r = 0; r < rows; r++) *dl += rowv[r];
    free(dW), free(rowv);
    return failed;
}

/* Runs the four quantizers on one group; dl is each result's ΔL with the undamped H (ho: with Hb, when given). */
static int run_case(zf_backend *be, const zf_quant_opts *base, const zf_model_config *c, int64_t b, zf_group g, const float *H,
                    const float *Hb, const zf_block_weights *blk, case_result *cr)
{
    for (int v = 0; v < NV; v++) {
        cr->ho[v] = NAN;
        if (variant_skipped(base, v)) {
            cr->dl[v] = NAN;
            cr->t[v] = 0.0;
            continue;
        }
        const zf_quant_opts o = variant_opts(base, v, base->bits);
        zf_group_result gr;
        if (zf_group_quantize(be, &o, c, b, g, H, blk, NULL, &gr) != ZF_OK) {
            fprintf(stderr, "zfold_quality: block %lld %s %s: %s\n", (long long)b, zf_group_name(g), vnames[v],
                    zf_last_error());
            return 1;
        }
        zf_lin members[3];
        cr->dl[v] = 0.0;
        for (int k = 0; k < zf_group_members(c, g, members); k++) cr->dl[v] += gr.dl[k];
        cr->t[v] = gr.res.t_total;
        const int failed = Hb && holdout_loss(c, g, blk, &gr.res, Hb, &cr->ho[v]);
        zf_qresult_free(&gr.res);
        if (failed) {
            fprintf(stderr, "zfold_quality: held-out ΔL: %s\n", zf_last_error());
            return 1;
        }
    }
    return 0;
}

static void report(FILE *jf, int *first, const char *name, int bits, const case_result *cr, summary *sm)
{
    const double rg = cr->dl[V_ZFOLD] / cr->dl[V_GRID], ro = cr->dl[V_ZFOLD] / cr->dl[V_OPTQ];
    printf("%-28s %4d %11.5g %11.5g %11.5g %11.5g %8.4f %8.4f %8.3f %8.3f %8.3f\n", name, bits, cr->dl[V_RTN],
           cr->dl[V_OPTQ], cr->dl[V_ZFOLD], cr->dl[V_GRID], rg, ro, cr->t[V_OPTQ], cr->t[V_ZFOLD], cr->t[V_GRID]);
    sm->n++;
    if (isfinite(rg)) {
        sm->n_grid++;
        sm->log_grid += log(rg);
        if (rg > sm->worst_grid) sm->worst_grid = rg;
        if (rg > 1.0 + 1e-6) sm->worse_grid++;
    }
    sm->log_optq += log(ro);
    if (ro > 1.0 + 1e-6) sm->worse_optq++;
    for (int v = 0; v < NV; v++) sm->t[v] += cr->t[v];
    const double rh = cr->ho[V_ZFOLD] / cr->ho[V_OPTQ];
    if (isfinite(rh)) {
        sm->n_ho++;
        sm->log_ho += log(rh);
        sm->log_in += log(ro);
        if (rh > 1.0 + 1e-6) sm->worse_ho++;
    }
    if (!jf) return;
    fprintf(jf, "%s\n    {\"case\": \"%s\", \"bits\": %d", *first ? "" : ",", name, bits);
    for (int v = 0; v < NV; v++) {
        if (isfinite(cr->dl[v]))
            fprintf(jf, ", \"dl_%s\": %.9g, \"t_%s\": %.5f", vnames[v], cr->dl[v], vnames[v], cr->t[v]);
        else fprintf(jf, ", \"dl_%s\": null, \"t_%s\": null", vnames[v], vnames[v]);
        if (isfinite(cr->ho[v])) fprintf(jf, ", \"ho_%s\": %.9g", vnames[v], cr->ho[v]);
    }
    fprintf(jf, "}");
    *first = 0;
}

/* The cache key folder's Hessian of (block, group): read through the cache's own checks. */
static int load_hessian(const char *dir, int64_t b, zf_group g, int64_t dim, float *H)
{
    char root[1024], keyhex[32];
    snprintf(root, sizeof root, "%s", dir);
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/') root[--n] = '\0';
    char *slash = strrchr(root, '/');
    if (!slash) {
        fprintf(stderr, "zfold_quality: --hessians %s: expected <cache>/<16 hex digits>\n", dir);
        return 1;
    }
    snprintf(keyhex, sizeof keyhex, "%s", slash + 1);
    *slash = '\0';
    zf_hcache hc;
    if (zf_hcache_open(&hc, root, strtoull(keyhex, NULL, 16)) != ZF_OK || zf_hcache_load(&hc, b, g, dim, H) != ZF_OK) {
        fprintf(stderr, "zfold_quality: %s\n", zf_last_error());
        return 1;
    }
    return 0;
}

static int run_model(zf_backend *be, const zf_quant_opts *base, const char *model, const char *hdir, const char *hodir,
                     const int *bits, int nbits, FILE *jf, int *first, summary *sm)
{
    zf_model_config c;
    zf_safetensors *st = NULL;
    if (zf_model_config_read(model, &c) != ZF_OK || zf_st_open(model, &st) != ZF_OK) {
        fprintf(stderr, "zfold_quality: %s\n", zf_last_error());
        return 1;
    }
    const char *mname = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
    int failed = 0;
    for (int64_t b = 0; b < c.n_layers && !failed; b++) {
        zf_block_weights blk;
        if (zf_block_load(&c, st, b, &blk) != ZF_OK) {
            fprintf(stderr, "zfold_quality: %s\n", zf_last_error());
            failed = 1;
            break;
        }
        for (int g = 0; g < ZF_NGROUP && !failed; g++) {
            const int64_t dim = zf_group_in(&c, (zf_group)g);
            float *H = xmalloc((size_t)dim * (size_t)dim * sizeof(float)), *Hb = NULL;
            failed = load_hessian(hdir, b, (zf_group)g, dim, H);
            if (!failed && hodir) {
                Hb = xmalloc((size_t)dim * (size_t)dim * sizeof(float));
                failed = load_hessian(hodir, b, (zf_group)g, dim, Hb);
            }
            for (int i = 0; i < nbits && !failed; i++) {
                zf_quant_opts o = *base;
                o.bits = bits[i];
                case_result cr;
                char name[96];
                snprintf(name, sizeof name, "%s/b%lld/%s", mname, (long long)b, zf_group_name((zf_group)g));
                failed = run_case(be, &o, &c, b, (zf_group)g, H, Hb, &blk, &cr);
                if (!failed) report(jf, first, name, bits[i], &cr, sm);
                fflush(stdout);
            }
            free(H), free(Hb);
        }
        zf_block_free(&blk);
    }
    zf_st_close(st);
    return failed;
}

/* A seeded layer W ~ N(0, 0.02²) with the benches' outlier-channel Hessian, quantized alone. */
static int run_synthetic(const zf_quant_opts *base, const char *shape, const int *bits, int nbits, FILE *jf,
                         int *first, summary *sm)
{
    long long out = 0, in = 0;
    if (sscanf(shape, "%lldx%lld", &out, &in) != 2 || out <= 0 || in <= 0) {
        fprintf(stderr, "zfold_quality: --synthetic %s: expected OUTxIN, e.g. 512x512\n", shape);
        return 1;
    }
    zf_bench_seed(7);
    float *W = xmalloc((size_t)out * (size_t)in * sizeof(float)), *H = xmalloc((size_t)in * (size_t)in * sizeof(float));
    zf_bench_fill_normal(W, (size_t)out * (size_t)in, 0.02);
    zf_bench_make_hessian(in, 4 * in, H, "zfold_quality");
    int failed = 0;
    for (int i = 0; i < nbits && !failed; i++) {
        case_result cr;
        for (int v = 0; v < NV; v++) cr.ho[v] = NAN;
        for (int v = 0; v < NV && !failed; v++) {
            if (variant_skipped(base, v)) {
                cr.dl[v] = NAN;
                cr.t[v] = 0.0;
                continue;
            }
            const zf_quant_opts o = variant_opts(base, v, bits[i]);
            zf_qresult r;
            if (zf_quantize(&o, W, out, in, H, NULL, &r) != ZF_OK) {
                fprintf(stderr, "zfold_quality: synthetic %s: %s\n", shape, zf_last_error());
                failed = 1;
                break;
            }
            cr.dl[v] = r.dl;
            cr.t[v] = r.t_total;
            zf_qresult_free(&r);
        }
        char name[64];
        snprintf(name, sizeof name, "synthetic/%s", shape);
        if (!failed) report(jf, first, name, bits[i], &cr, sm);
    }
    free(W), free(H);
    return failed;
}

int main(int argc, char **argv)
{
    const char *models[16], *hdirs[16], *hodirs[16] = {NULL}, *synth[8], *json = NULL;
    int nmodels = 0, nh = 0, nsynth = 0, bits[8] = {2, 3, 4}, nbits = 3;
    zf_job_config cfg;
    zf_config_defaults(&cfg);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v && nmodels < 16) models[nmodels++] = v, i++;
        else if (!strcmp(a, "--hessians") && v && nh < 16) hdirs[nh++] = v, i++;
        else if (!strcmp(a, "--holdout") && v && nh > 0 && !hodirs[nh - 1]) hodirs[nh - 1] = v, i++;
        else if (!strcmp(a, "--synthetic") && v && nsynth < 8) synth[nsynth++] = v, i++;
        else if (!strcmp(a, "--json") && v) json = v, i++;
        else if (!strcmp(a, "--no-paper")) no_paper = true;
        else if (!strcmp(a, "--set") && v) {
            if (zf_config_set(&cfg, v) != ZF_OK) {
                fprintf(stderr, "zfold_quality: --set %s: %s\n", v, zf_last_error());
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--bits") && v) {
            nbits = 0;
            for (char *p = (char *)v; *p && nbits < 8; p++) {
                bits[nbits++] = (int)strtol(p, &p, 10);
                if (*p != ',') break;
            }
            i++;
        } else {
            usage();
            return strcmp(a, "--help") ? 2 : 0;
        }
    }
    if (nmodels != nh || nmodels + nsynth == 0) {
        usage();
        return 2;
    }
    zf_log_init(0, 1);
    if (!getenv("ZFOLD_LOG")) zf_log_set_level(ZF_LOG_WARN); /* ZFOLD_LOG=debug: each layer's decisions */
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) {
        fprintf(stderr, "zfold_quality: cannot write %s\n", json);
        return 2;
    }
    if (jf) fprintf(jf, "{\n  \"cases\": [");
    printf("# ΔL = tr(ΔW H ΔWᵀ) with the undamped H; zfold = the default Z-FOLD (alpha: %s), zfold-grid = the paper's "
           "code (alpha: grid, no refit, no OPTQ fallback, als_tol 0)\n",
           zf_alpha_name(cfg.quant.alpha));
    printf("%-28s %4s %11s %11s %11s %11s %8s %8s %8s %8s %8s\n", "case", "bits", "dl_rtn", "dl_optq", "dl_zfold",
           "dl_grid", "zf/grid", "zf/optq", "t_optq", "t_zfold", "t_grid");
    zf_backend *be = NULL;
    const zf_backend_opts bo = {.kind = ZF_BACKEND_CPU, .device = -1};
    if (zf_backend_open(&bo, &be) != ZF_OK) {
        fprintf(stderr, "zfold_quality: %s\n", zf_last_error());
        return 2;
    }
    summary sm = {0};
    int first = 1, failed = 0;
    for (int m = 0; m < nmodels && !failed; m++)
        failed = run_model(be, &cfg.quant, models[m], hdirs[m], hodirs[m], bits, nbits, jf, &first, &sm);
    for (int s = 0; s < nsynth && !failed; s++) failed = run_synthetic(&cfg.quant, synth[s], bits, nbits, jf, &first, &sm);
    if (sm.n) {
        const double gm_grid = sm.n_grid ? exp(sm.log_grid / sm.n_grid) : NAN, gm_optq = exp(sm.log_optq / sm.n);
        printf("# %d cases: geometric mean zfold/grid %.4f (worst %.4f, %d above grid), zfold/optq %.4f (%d above "
               "OPTQ); time zfold/optq %.2f, grid/optq %.2f\n",
               sm.n, gm_grid, sm.worst_grid, sm.worse_grid, gm_optq, sm.worse_optq, sm.t[V_ZFOLD] / sm.t[V_OPTQ],
               sm.t[V_GRID] / sm.t[V_OPTQ]);
        if (sm.n_ho)
            printf("# held out (%d cases): zfold/optq %.4f (%d above OPTQ) where in sample it is %.4f\n", sm.n_ho,
                   exp(sm.log_ho / sm.n_ho), sm.worse_ho, exp(sm.log_in / sm.n_ho));
        if (jf && sm.n_grid)
            fprintf(jf, "\n  ],\n  \"geomean_zfold_over_grid\": %.6f,\n  \"worst_zfold_over_grid\": %.6f,\n"
                        "  \"above_grid\": %d,", gm_grid, sm.worst_grid, sm.worse_grid);
        else if (jf)
            fprintf(jf, "\n  ],");
        if (jf)
            fprintf(jf, "\n  \"geomean_zfold_over_optq\": %.6f,\n  \"above_optq\": %d%s", gm_optq,
                    sm.worse_optq, sm.n_ho ? "," : "\n}\n");
        if (jf && sm.n_ho)
            fprintf(jf, "\n  \"holdout_geomean_zfold_over_optq\": %.6f,\n  \"holdout_above_optq\": %d\n}\n",
                    exp(sm.log_ho / sm.n_ho), sm.worse_ho);
    } else if (jf) fprintf(jf, "\n  ]\n}\n");
    if (jf) fclose(jf);
    zf_backend_close(be);
    return failed;
}
