/* zfold_bench: times RTN, OPTQ and Z-FOLD on LLaMA-sized layers against the machine's own SGEMM rate. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "common/log.h"
#include "worker/backend_impl.h"
#include "worker/grid.h"
#include "worker/hessian.h"
#include "worker/quant.h"
#include "common/clock.h"
#include "coordinator/config.h"

typedef struct {
    const char *name;
    int64_t out, in;
} layer_shape;

/* out × in, i.e. W is [out, in] as in Hugging Face checkpoints. */
static const layer_shape shapes[] = {
    {"768", 768, 768},
    {"2048", 2048, 2048},
    {"4096", 4096, 4096},
    {"11008x4096", 11008, 4096}, /* LLaMA-7B gate/up: out = 11008, in = 4096 */
    {"4096x11008", 4096, 11008}, /* LLaMA-7B down:    out = 4096,  in = 11008 */
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

#define xmalloc(n) zf_bench_xmalloc((n), "zfold_bench")
#define fill_normal zf_bench_fill_normal

static double sgemm_gflops(int64_t n)
{
    float *A = xmalloc((size_t)n * n * sizeof(float)), *B = xmalloc((size_t)n * n * sizeof(float)),
          *C = xmalloc((size_t)n * n * sizeof(float));
    fill_normal(A, (size_t)n * n, 1.0);
    fill_normal(B, (size_t)n * n, 1.0);
    double best = 1e30;
    for (int i = 0; i < 3; i++) {
        double t = zf_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, A, (int)n, B, (int)n,
                    0.0f, C, (int)n);
        t = zf_now() - t;
        best = t < best ? t : best;
    }
    free(A), free(B), free(C);
    return 2.0 * (double)n * n * n / best / 1e9;
}

#define ZF_BENCH_MAX_MEMBERS 8

/* W quantized as a group of nmembers layers of (nearly) equal rows; out's dl and dl_rtn summed over them. */
static zf_status quantize(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                          int nmembers, zf_qresult *out)
{
    int64_t mrows[ZF_BENCH_MAX_MEMBERS];
    double dl[ZF_BENCH_MAX_MEMBERS], dl_rtn[ZF_BENCH_MAX_MEMBERS];
    for (int m = 0; m < nmembers; m++) mrows[m] = rows / nmembers + (m < rows % nmembers);
    ZF_TRY(zf_backend_quantize_group(zf_cpu_backend(), o, W, rows, cols, H, NULL, nmembers, mrows, NULL, out, dl,
                                     dl_rtn));
    out->dl = out->dl_rtn = 0.0;
    for (int m = 0; m < nmembers; m++) out->dl += dl[m], out->dl_rtn += dl_rtn[m];
    return ZF_OK;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: zfold_bench [--sizes LIST] [--methods LIST] [--threads N] [--tokens N] [--bits B] [--json FILE]\n"
            "                   [--delta-loss-rtn 0|1] [--repeat N] [--members N] [--group-size G]\n"
            "                   [--set KEY=VALUE]...\n"
            "  --sizes    comma-separated subset of 768,2048,4096,11008x4096,4096x11008 (out x in; default all)\n"
            "  --methods  comma-separated subset of rtn,optq,zfold (default all)\n"
            "  --threads  BLAS and OpenMP threads (default: the libraries' own defaults)\n"
            "  --tokens   calibration tokens for H (default 4096)\n"
            "  --bits     bits (default 4)\n"
            "  --delta-loss-rtn 0|1  also the min-max RTN baseline's ΔL (default 1; a run's default is 0)\n"
            "  --repeat   runs of each method per layer; the fastest is reported (default 1)\n"
            "  --group-size  α and zero per G input columns (default 0: per channel)\n"
            "  --members  each layer quantized as a group of N layers sharing its input (rows split evenly, as\n"
            "             Q/K/V or gate/up are; ΔL per member, summed here; default 1)\n"
            "  --set      a quantization key for every method (e.g. grid_widen=row); repeatable\n"
            "  --json     also write the results as JSON to FILE\n");
}

int main(int argc, char **argv)
{
    const char *sizes = NULL, *json = NULL, *methods_sel = NULL;
    int threads = 0, bits = 4, baseline = 1, repeat = 1, members = 1, group_size = 0;
    int64_t ntok = 4096;
    zf_job_config cfg;
    zf_config_defaults(&cfg);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc) sizes = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) ntok = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--bits") && i + 1 < argc) bits = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--methods") && i + 1 < argc) methods_sel = argv[++i];
        else if (!strcmp(argv[i], "--delta-loss-rtn") && i + 1 < argc) baseline = atoi(argv[++i]) != 0;
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--members") && i + 1 < argc) members = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--group-size") && i + 1 < argc) group_size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            if (zf_config_set(&cfg, argv[++i]) != ZF_OK) {
                fprintf(stderr, "zfold_bench: --set %s: %s\n", argv[i], zf_last_error());
                return 2;
            }
        } else {
            usage();
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    zf_log_init(0, 1);
    if (!getenv("ZFOLD_LOG")) zf_log_set_level(ZF_LOG_WARN); /* ZFOLD_LOG=debug: each layer's decisions */
    if (threads > 0) {
        openblas_set_num_threads(threads);
        omp_set_num_threads(threads);
    }
    const double peak = sgemm_gflops(4096);
    if (repeat < 1) repeat = 1;
    if (group_size < 0) {
        fprintf(stderr, "zfold_bench: --group-size: expected 0 (per channel) or more columns\n");
        return 2;
    }
    if (members < 1 || members > ZF_BENCH_MAX_MEMBERS) {
        fprintf(stderr, "zfold_bench: --members: expected 1 to %d\n", ZF_BENCH_MAX_MEMBERS);
        return 2;
    }
    printf("# zfold_bench: SGEMM 4096^3 best of 3 = %.1f GFLOP/s, BLAS threads %d, OpenMP threads %d, bits %d, "
           "H from %lld tokens, each method's fastest of %d runs, %d member(s) per layer, group size %d\n",
           peak, openblas_get_num_threads(), omp_get_max_threads(), bits, (long long)ntok, repeat, members, group_size);
    printf("# flops: OPTQ 2*out*in^2 + in^3; Z-FOLD adds 2*out*in^2 per ALS GEMM (alpha diag, the default: none);\n"
           "# core = ALS + factor + column loops (Z-FOLD: its trials too); refit = Z-FOLD's α/zero/ζ refits with W·H;\n"
           "# fallback = Z-FOLD's plain-OPTQ fallback less its loops; stats = the ΔL figures (OPTQ/Z-FOLD dl from the\n"
           "#   loop's errors; dl_rtn and RTN's dl one GEMM each, with --delta-loss-rtn 1);\n"
           "# loop GF/s = 2*out*in^2 / column-loop seconds (the OPTQ update count of the brief)\n");
    printf("%-11s %-6s %9s %9s %9s %9s %9s %9s %9s %8s %8s %7s %9s %5s\n", "layer", "method", "total_s", "core_s",
           "als_s", "loop_s", "refit_s", "fallbk_s", "stats_s", "core_GF/s", "loop_GF/s", "ratio", "dl/dl_rtn", "iters");
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) {
        fprintf(stderr, "zfold_bench: cannot write %s\n", json);
        return 2;
    }
    if (jf) fprintf(jf, "{\n  \"sgemm_gflops\": %.3f,\n  \"bits\": %d,\n  \"tokens\": %lld,\n  \"repeat\": %d,\n"
                    "  \"members\": %d,\n  \"group_size\": %d,\n  \"results\": [", peak, bits, (long long)ntok, repeat,
                    members, group_size);
    int first = 1, failed = 0;
    for (size_t s = 0; s < NSHAPES; s++) {
        const layer_shape *L = &shapes[s];
        if (!zf_bench_listed(sizes, L->name)) continue;
        zf_bench_seed(s + 1); /* each layer's data independent of --sizes */
        float *W = xmalloc((size_t)L->out * L->in * sizeof(float));
        float *H = xmalloc((size_t)L->in * L->in * sizeof(float));
        fill_normal(W, (size_t)L->out * L->in, 0.02);
        zf_bench_make_hessian(L->in, ntok, H, "zfold_bench");
        const zf_method methods[] = {ZF_METHOD_RTN, ZF_METHOD_OPTQ, ZF_METHOD_ZFOLD};
        for (int m = 0; m < 3; m++) {
            if (!zf_bench_listed(methods_sel, zf_method_name(methods[m]))) continue;
            zf_quant_opts o = cfg.quant;
            o.method = methods[m];
            o.bits = bits;
            o.delta_loss_rtn = baseline;
            o.group_size = group_size;
            zf_qresult r = {0};
            int ok = 1;
            for (int k = 0; k < repeat && ok; k++) {
                zf_qresult t;
                if (quantize(&o, W, L->out, L->in, H, members, &t) != ZF_OK) {
                    fprintf(stderr, "zfold_bench: %s %s: %s\n", L->name, zf_method_name(o.method), zf_last_error());
                    failed = 1, ok = 0;
                    break;
                }
                if (r.q && r.t_total <= t.t_total) {
                    zf_qresult_free(&t);
                } else {
                    if (r.q) zf_qresult_free(&r);
                    r = t;
                }
            }
            if (!ok) {
                if (r.q) zf_qresult_free(&r);
                continue;
            }
            const double oi2 = 2.0 * (double)L->out * (double)L->in * (double)L->in;
            double core = 0.0;
            const double flops = zf_bench_quant_flops(&o, &r, L->out, L->in, &core);
            const double gf = core > 0 ? flops / core / 1e9 : 0.0;
            const double lgf = r.t_loop > 0 ? oi2 / r.t_loop / 1e9 : 0.0;
            printf("%-11s %-6s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %8.1f %8.1f %7.2f %9.4f %5d\n", L->name,
                   zf_method_name(o.method), r.t_total, core, r.t_als, r.t_loop, r.t_refit, r.t_fallback, r.t_stats,
                   gf, lgf, gf / peak, r.dl / r.dl_rtn, r.als_iters);
            char dl_s[32], dlr_s[32]; /* JSON has no NaN: a figure not measured is null */
            snprintf(dl_s, sizeof dl_s, isnan(r.dl) ? "null" : "%.6g", r.dl);
            snprintf(dlr_s, sizeof dlr_s, isnan(r.dl_rtn) ? "null" : "%.6g", r.dl_rtn);
            if (jf)
                fprintf(jf,
                        "%s\n    {\"layer\": \"%s\", \"out\": %lld, \"in\": %lld, \"method\": \"%s\", "
                        "\"total_s\": %.4f, \"core_s\": %.4f, \"als_s\": %.4f, \"factor_s\": %.4f, \"loop_s\": %.4f, "
                        "\"refit_s\": %.4f, \"fallback_s\": %.4f, "
                        "\"core_flops\": %.6g, \"core_gflops\": %.3f, \"loop_gflops\": %.3f, \"ratio_to_sgemm\": %.4f, "
                        "\"loop_ratio_to_sgemm\": %.4f, \"stats_s\": %.4f, \"dl\": %s, \"dl_rtn\": %s, \"als_iters\": %d}",
                        first ? "" : ",", L->name, (long long)L->out, (long long)L->in, zf_method_name(o.method),
                        r.t_total, core, r.t_als, r.t_factor, r.t_loop, r.t_refit, r.t_fallback, flops, gf, lgf,
                        gf / peak, lgf / peak,
                        r.t_stats, dl_s, dlr_s, r.als_iters);
            first = 0;
            fflush(stdout);
            zf_qresult_free(&r);
        }
        free(W), free(H);
    }
    /* Other work on the machine shows up as a lower rate here than at the start. */
    const double peak_end = sgemm_gflops(4096);
    printf("# SGEMM 4096^3 again at the end: %.1f GFLOP/s (a drop means the machine was busy meanwhile)\n", peak_end);
    if (jf) {
        fprintf(jf, "\n  ],\n  \"sgemm_gflops_end\": %.3f\n}\n", peak_end);
        fclose(jf);
    }
    return failed;
}
