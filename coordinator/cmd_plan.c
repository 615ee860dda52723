/* `zfold plan CONFIG.yaml --ranks N`: memory per rank and time per block from the cost model, before any allocation. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/model.h"
#include "coordinator/commands.h"
#include "coordinator/config.h"
#include "worker/backend.h"
#include "worker/block.h"
#include "worker/forward.h"
#include "worker/hessian.h"

void zf_cmd_plan_help(void)
{
    printf("usage: zfold plan CONFIG.yaml [--ranks N] [--memory GiB] [--gpu-memory GiB] [--set key=value]...\n"
           "Prints, for the config and N ranks (default 1), the memory each rank needs and the predicted time per\n"
           "block from the cost model, and warns when a rank would run out of memory (--memory: GiB per rank;\n"
           "default: this machine's available memory / N). Rates are measured here: one short window through a\n"
           "block of the model's shapes (random weights; skipped above 2 GiB, then the SGEMM rate), a Hessian\n"
           "accumulation, and SGEMM for the quantization. Reads config.json, not the weights.\n"
           "With backend: cuda it also prints the GPU memory each rank needs (one block's weights and forward, the\n"
           "Hessian accumulators, the largest layer's quantization; then the evaluation's head and logits) against\n"
           "--gpu-memory (default: device 0's).\n");
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* SGEMM GFLOP/s of this machine on 1024² (best of 3), the rate the predictions use. */
static double measure_sgemm(void)
{
    int n = 1024;
    float *a = calloc((size_t)n * n, sizeof(float)), *b = calloc((size_t)n * n, sizeof(float)),
          *c = calloc((size_t)n * n, sizeof(float));
    double best = 0;
    for (int i = 0; a && b && c && i < (int)((size_t)n * n); i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    for (int r = 0; a && b && c && r < 3; r++) {
        double t0 = now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double g = 2.0 * n * n * n / (now_seconds() - t0) / 1e9;
        if (g > best) best = g;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* Forward GFLOP/s of one window of s tokens through a block of the model's shapes (small random weights), or 0
 * when the block is too large to probe. */
static double measure_forward(const zf_model_config *mc, int64_t s, double block_params)
{
    if (block_params * 4 > 2.0 * (1 << 30)) return 0;
    zf_block_weights w;
    if (zf_block_alloc(mc, &w) != ZF_OK) return 0;
    uint64_t state = 1;
    for (int l = 0; l < ZF_NLIN; l++) {
        if (!w.lin_w[l]) continue;
        int64_t n = zf_lin_out(mc, (zf_lin)l) * zf_lin_in(mc, (zf_lin)l);
        for (int64_t i = 0; i < n; i++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            w.lin_w[l][i] = (float)((double)(state >> 40) / (double)(1ull << 24) - 0.5) * 0.05f;
        }
    }
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < mc->hidden; i++) w.norm_w[k][i] = 1.0f;
    float *x = malloc(sizeof(float) * (size_t)(s * mc->hidden));
    double rate = 0;
    if (x) {
        for (int64_t i = 0; i < s * mc->hidden; i++) x[i] = (float)((i * 37 % 101) - 50) * 0.02f;
        double t0 = now_seconds();
        if (zf_block_forward(mc, &w, x, 1, s, NULL, NULL) == ZF_OK) {
            double flops = 2.0 * (double)s * block_params + 2.0 * (double)s * (double)s * (double)(mc->n_heads * mc->head_dim);
            rate = flops / (now_seconds() - t0) / 1e9;
        }
        free(x);
    }
    zf_block_free(&w);
    return rate;
}

/* Hessian accumulation GFLOP/s (T·d² counted) at the configured precision, d = min(d_in, 2048). */
static double measure_hessian(int64_t d_in, bool fp64)
{
    int64_t d = d_in < 2048 ? d_in : 2048, t = 512;
    zf_hessian h;
    float *x = malloc(sizeof(float) * (size_t)(t * d));
    double rate = 0;
    if (x && zf_hessian_init(&h, d, fp64) == ZF_OK) {
        for (int64_t i = 0; i < t * d; i++) x[i] = (float)((i * 13 % 17) - 8) * 0.1f;
        if (zf_hessian_add(&h, x, t) == ZF_OK) { /* the first call pays for page faults */
            double t0 = now_seconds();
            if (zf_hessian_add(&h, x, t) == ZF_OK) rate = (double)t * (double)d * (double)d / (now_seconds() - t0) / 1e9;
        }
        zf_hessian_free(&h);
    }
    free(x);
    return rate;
}

static double available_gib(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb / (1024.0 * 1024.0);
}

int zf_cmd_plan(int argc, char **argv)
{
    const char *config_path = NULL;
    int ranks = 1;
    double mem_limit = 0, gpu_limit = 0;
    zf_job_config cfg;
    const char *sets[ZF_MAX_SETS];
    int nsets = 0;
    for (int i = 1, took; i < argc; i++) {
        if ((took = zf_config_take_set(argc, argv, i, sets, &nsets))) i += took - 1;
        else if (!strcmp(argv[i], "--ranks") && i + 1 < argc) ranks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--memory") && i + 1 < argc) mem_limit = atof(argv[++i]);
        else if (!strcmp(argv[i], "--gpu-memory") && i + 1 < argc) gpu_limit = atof(argv[++i]);
        else if (argv[i][0] != '-' && !config_path) config_path = argv[i];
        else {
            zf_cmd_plan_help();
            return ZF_EXIT_USAGE;
        }
    }
    if (!config_path || ranks < 1) {
        zf_cmd_plan_help();
        return ZF_EXIT_USAGE;
    }
    zf_model_config mc;
    zf_status s = zf_config_read(config_path, sets, nsets, &cfg, NULL);
    if (s == ZF_OK) s = zf_model_config_read(cfg.model, &mc);
    if (s != ZF_OK) {
        fprintf(stderr, "zfold: %s\n", zf_last_error());
        return ZF_EXIT_FAILURE;
    }
    if (mem_limit <= 0) mem_limit = available_gib() / ranks;
    int64_t seq = cfg.calib_seq_len > 0 ? cfg.calib_seq_len : (mc.max_pos < 2048 ? mc.max_pos : 2048);
    int64_t wins = (cfg.calib_windows + ranks - 1) / ranks, T = wins * seq, Tall = cfg.calib_windows * seq;
    int64_t d = mc.hidden, qd = mc.n_heads * mc.head_dim, ff = mc.intermediate;
    int hbytes = cfg.hessian_fp64 ? 8 : 4;
    double block_params = 0, hess = 0, max_group = 0, max_in = 0, optq_flops = 0, als_flops = 0;
    for (int g = 0; g < ZF_NGROUP; g++) {
        zf_lin mem[3];
        int nm = zf_group_members(&mc, (zf_group)g, mem);
        double in = (double)zf_group_in(&mc, (zf_group)g), rows = 0;
        for (int i = 0; i < nm; i++) rows += (double)zf_lin_out(&mc, mem[i]);
        block_params += rows * in;
        hess += in * in * hbytes;
        if (rows * in > max_group) max_group = rows * in;
        if (in > max_in) max_in = in;
        optq_flops += in * in * in / 3.0 * 2 + 2.0 * rows * in * in;
        /* ALS: each iteration quantizes (rows·in) and solves α with one GEMM rows × in × in */
        if (cfg.quant.method == ZF_METHOD_ZFOLD) als_flops += cfg.quant.als_max_iter * 2.0 * rows * in * in;
    }
    if (cfg.schedule == ZF_SCHEDULE_PARALLEL) hess *= (double)mc.n_layers; /* every block's, held at once */
    double gib = 1024.0 * 1024.0 * 1024.0;
    double act = 2.0 * (double)T * d * 4;                            /* activations and their copy */
    double fwd = (double)T * (3.0 * qd + 2.0 * ff + d) * 4;            /* q, k, v, mix, gate/up of the windows */
    double weights = block_params * 4 * (cfg.eval_unfolded ? 2 : 1);  /* the block in fp32 */
    double unfolded_all = cfg.eval_unfolded ? block_params * 4 * 2 * (double)mc.n_layers : 0;
    double quant = max_group * (4 + 4 + 1 + 4) + 3.0 * max_in * max_in * 4; /* W, deq, codes, work; H, U, copy */
    double globals = (double)mc.vocab * d * 4 * (mc.tied_embeddings ? 1 : 2) + (mc.family == ZF_FAMILY_OPT ? (double)(mc.max_pos + 2) * d * 4 : 0);
    double eval = (double)cfg.eval_chunk * seq * ((double)mc.vocab + 3.0 * qd + 2.0 * ff + 2.0 * d) * 4;
    double total = act + fwd + weights + unfolded_all + hess + quant + globals + eval;
    double fwd_flops = 2.0 * (double)T * block_params + 4.0 * (double)T * seq * qd / 2.0;
    double hess_flops = 0;
    for (int g = 0; g < ZF_NGROUP; g++) {
        double in = (double)zf_group_in(&mc, (zf_group)g);
        hess_flops += (double)T * in * in;
    }
    double quant_flops = (optq_flops + als_flops) / (ranks < ZF_NGROUP ? ranks : ZF_NGROUP);
    double gemm = measure_sgemm();
    double fwd_rate = measure_forward(&mc, seq < 128 ? seq : 128, block_params);
    bool fwd_measured = fwd_rate > 0;
    if (!fwd_measured) fwd_rate = gemm;
    double hess_rate = measure_hessian((int64_t)max_in, cfg.hessian_fp64);
    if (hess_rate <= 0) hess_rate = gemm;
    double t_fwd = 2.0 * fwd_flops / (fwd_rate * 1e9), t_hess = hess_flops / (hess_rate * 1e9);
    double t_quant = quant_flops / (gemm * 1e9), t_block = t_fwd + t_hess + t_quant;
    printf("# plan: %s, %s model, %lld blocks, d %lld, %lld parameters; %d rank%s\n", config_path, mc.model_type,
           (long long)mc.n_layers, (long long)d, (long long)zf_model_param_count(&mc), ranks, ranks > 1 ? "s" : "");
    printf("# calibration: %lld windows x %lld tokens (%lld tokens per rank); method %s, %d bits\n",
           (long long)cfg.calib_windows, (long long)seq, (long long)T, zf_method_name(cfg.quant.method), cfg.quant.bits);
    printf("| memory per rank | GiB |\n|---|---|\n");
    printf("| calibration activations (x and a copy) | %.3f |\n| forward intermediates | %.3f |\n", act / gib, fwd / gib);
    printf("| one block in fp32%s | %.3f |\n", cfg.eval_unfolded ? " (folded and unfolded)" : "", weights / gib);
    if (unfolded_all > 0) printf("| every block kept for eval.unfolded | %.3f |\n", unfolded_all / gib);
    printf("| Hessian accumulators (%s%s) | %.3f |\n| largest group's quantization work | %.3f |\n",
           cfg.hessian_fp64 ? "fp64" : "fp32", cfg.schedule == ZF_SCHEDULE_PARALLEL ? ", every block" : "", hess / gib,
           quant / gib);
    printf("| embeddings, head, final norm | %.3f |\n| evaluation chunk (%lld windows, logits) | %.3f |\n",
           globals / gib, (long long)cfg.eval_chunk, eval / gib);
    printf("| **total** | **%.3f** |\n\n", total / gib);
    printf("| time per block (cost model) | GFLOP | GFLOP/s measured here | seconds |\n|---|---|---|---|\n");
    printf("| forward x2 (capture, then through the quantized block) | %.2f | %.1f (%s) | %.3f |\n", 2 * fwd_flops / 1e9,
           fwd_rate, fwd_measured ? "one window through a block of these shapes" : "SGEMM; block too large to probe",
           t_fwd);
    printf("| Hessians T·Σd_in² | %.2f | %.1f (%s accumulation) | %.3f |\n", hess_flops / 1e9, hess_rate,
           cfg.hessian_fp64 ? "fp64" : "fp32", t_hess);
    printf("| OPTQ%s, per owner | %.2f | %.1f (SGEMM) | %.3f |\n",
           cfg.quant.method == ZF_METHOD_ZFOLD ? " + Z-FOLD ALS (upper bound)" : "", quant_flops / 1e9, gemm, t_quant);
    printf("| **block** | | | **%.3f** (whole model ≈ %.1f s) |\n", t_block, t_block * (double)mc.n_layers);
    printf("(calibration of %lld tokens in all)\n", (long long)Tall);
    int rc = ZF_EXIT_OK;
    if (cfg.backend == ZF_BACKEND_CUDA) {
        int64_t max_rows = 0, max_cols = 0;
        for (int g = 0; g < ZF_NGROUP; g++) {
            zf_lin mem[3];
            int nm = zf_group_members(&mc, (zf_group)g, mem);
            int64_t rows = 0, in = zf_group_in(&mc, (zf_group)g);
            for (int i = 0; i < nm; i++) rows += zf_lin_out(&mc, mem[i]);
            if (rows * in > max_rows * max_cols) max_rows = rows, max_cols = in;
        }
        double g_fwd = (double)zf_backend_forward_bytes(&mc, seq, (zf_forward_dtype)cfg.gpu_forward_dtype);
        double g_quant = (double)zf_backend_quantize_bytes(max_rows, max_cols), g_quant_total = g_fwd + hess + g_quant;
        /* evaluation runs after quantization: the forward again, then the head and one window's logits */
        int64_t eval_seq = cfg.eval_seq_len > 0 ? cfg.eval_seq_len : seq;
        double g_eval = (double)zf_backend_forward_bytes(&mc, eval_seq, (zf_forward_dtype)cfg.gpu_forward_dtype) +
                        (double)zf_backend_nll_bytes(&mc, eval_seq, (zf_forward_dtype)cfg.gpu_forward_dtype);
        double g_total = g_quant_total > g_eval ? g_quant_total : g_eval;
        const char *source = "--gpu-memory";
        if (gpu_limit <= 0 && zf_backend_cuda_devices() > 0) {
            zf_backend_opts bo = {.kind = ZF_BACKEND_CUDA, .device = 0};
            zf_backend *be = NULL;
            if (zf_backend_open(&bo, &be) == ZF_OK) {
                zf_backend_info info;
                zf_backend_get_info(be, &info);
                gpu_limit = (double)info.mem_total / gib;
                source = info.name;
                zf_backend_close(be);
            }
        }
        printf("\n| GPU memory per rank (backend cuda) | GiB |\n|---|---|\n");
        printf("| one block's weights (%s) and one window's forward | %.3f |\n",
               cfg.gpu_forward_dtype == ZF_FWD_FP32 ? "fp32" : "16-bit", g_fwd / gib);
        printf("| Hessian accumulators (%s) | %.3f |\n| largest group's quantization [%lld x %lld] | %.3f |\n",
               cfg.hessian_fp64 ? "fp64" : "fp32", hess / gib, (long long)max_rows, (long long)max_cols, g_quant / gib);
        printf("| quantization total | %.3f |\n", g_quant_total / gib);
        printf("| evaluation: forward, head and one window's logits (%lld tokens) | %.3f |\n", (long long)eval_seq,
               g_eval / gib);
        printf("| **peak** | **%.3f** |\n", g_total / gib);
        if (gpu_limit <= 0) printf("GPU memory: no device here; pass --gpu-memory GiB to check against a GPU\n");
        else if (g_total / gib > gpu_limit) {
            printf("WARNING: a rank needs %.2f GiB of GPU memory but %s has %.2f GiB: use fewer calibration windows "
                   "per rank (more ranks), gpu.forward_dtype: bf16, or hessian_fp64: false\n", g_total / gib, source,
                   gpu_limit);
            rc = ZF_EXIT_FAILURE;
        } else printf("GPU memory OK: %.2f GiB needed of %.2f GiB (%s)\n", g_total / gib, gpu_limit, source);
    }
    if (total / gib > mem_limit) {
        printf("WARNING: a rank needs %.2f GiB but has %.2f GiB: use more ranks (the calibration activations shrink "
               "with them) or fewer calibration windows\n", total / gib, mem_limit);
        return ZF_EXIT_FAILURE;
    }
    printf("memory OK: %.2f GiB needed of %.2f GiB per rank\n", total / gib, mem_limit);
    return rc;
}
