/* `zfold plan CONFIG.yaml --ranks N`: memory per rank and time per block from the cost model, before any allocation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include "common/model.h"
#include "common/clock.h"
#include "coordinator/commands.h"
#include "coordinator/config.h"
#include "coordinator/gpucomm.h"
#include "coordinator/parts.h"
#include "coordinator/pipeline.h"
#include "coordinator/plan_memory.h"
#include "coordinator/schedule.h"
#include "worker/backend.h"
#include "worker/block.h"
#include "worker/hessian.h"

void zf_cmd_plan_help(void)
{
    printf("usage: zfold plan CONFIG.yaml [--ranks N] [--memory GiB] [--gpu-memory GiB] [--memory-only]\n"
           "                  [--set key=value]...\n"
           "Prints, for the config and N ranks (default 1), the memory each rank needs and the predicted time per\n"
           "block from the cost model, and warns when a rank would run out of memory (--memory: GiB per rank;\n"
           "default: this machine's available memory / N). Rates are measured on the backend the run would use (the\n"
           "GPU with backend: cuda when one is visible, else this CPU): one short window through a block of the\n"
           "model's shapes (random weights; skipped above 2 GiB) with and without the Hessian capture, and the\n"
           "configured method on a layer of the largest group's shape (--memory-only: no probes, no time table).\n"
           "Reads config.json, not the weights (model: may name a config.json file, for a model not downloaded).\n"
           "With backend: cuda it also prints the GPU memory each rank needs (one block's weights and forward, the\n"
           "Hessian accumulators, the quantization of the group needing the most; then the evaluation's head and\n"
           "logits) against --gpu-memory (default: device 0's).\n");
}

/* n probe values, uniform in [-scale/2, scale/2) (a 64-bit LCG seeded by seed). */
static void fill_uniform(float *a, int64_t n, uint64_t seed, float scale)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        a[i] = (float)((double)(seed >> 40) / (double)(1ull << 24) - 0.5) * scale;
    }
}

/* Seconds of one window of s tokens through block w on be (x from x0), with every group's Hessian captured when
 * fp64 >= 0 (fp64 then picks the accumulator precision): the second of two runs (the first pays for first
 * touches), or -1 when it fails. */
static double time_window(zf_backend *be, const zf_model_config *mc, const zf_block_weights *w, const float *x0,
                          float *x, int64_t s, int fp64)
{
    zf_bhess hs[ZF_NGROUP];
    zf_bhess *hp[ZF_NGROUP] = {0};
    memset(hs, 0, sizeof hs);
    zf_status st = ZF_OK;
    for (int g = 0; fp64 >= 0 && st == ZF_OK && g < ZF_NGROUP; g++) {
        st = zf_bhess_init(be, &hs[g], zf_group_in(mc, (zf_group)g), fp64 > 0);
        hp[g] = &hs[g];
    }
    double t = -1;
    for (int rep = 0; st == ZF_OK && rep < 2; rep++) {
        memcpy(x, x0, sizeof(float) * (size_t)(s * mc->hidden));
        double t0 = zf_now();
        st = zf_backend_block_forward(be, mc, w, x, 1, s, fp64 >= 0 ? hp : NULL);
        t = st == ZF_OK ? zf_now() - t0 : -1;
    }
    for (int g = 0; g < ZF_NGROUP; g++) zf_bhess_free(&hs[g]);
    return t;
}

/* GFLOP/s of one window of s tokens through a block of the model's shapes (small random weights) on be, or 0
 * when the block is too large to probe. With hess_rate, also the Hessian capture's GFLOP/s (T·Σd_in² counted),
 * from the same window with the capture on (0 when it is lost in the forward's noise). */
static double measure_forward(zf_backend *be, const zf_model_config *mc, int64_t s, double block_params, bool fp64,
                              double *hess_rate)
{
    if (hess_rate) *hess_rate = 0;
    if (block_params * 4 > 2.0 * (1 << 30)) return 0;
    zf_block_weights w;
    if (zf_block_alloc(mc, &w) != ZF_OK) return 0;
    for (int l = 0; l < ZF_NLIN; l++)
        if (w.lin_w[l]) fill_uniform(w.lin_w[l], zf_lin_out(mc, (zf_lin)l) * zf_lin_in(mc, (zf_lin)l), 1 + l, 0.05f);
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < mc->hidden; i++) w.norm_w[k][i] = 1.0f;
    float *x0 = zf_calloc((size_t)(s * mc->hidden), sizeof(float), "probe activations"),
          *x = zf_calloc((size_t)(s * mc->hidden), sizeof(float), "probe activations");
    double rate = 0;
    if (x0 && x) {
        for (int64_t i = 0; i < s * mc->hidden; i++) x0[i] = (float)((i * 37 % 101) - 50) * 0.02f;
        double t_fwd = time_window(be, mc, &w, x0, x, s, -1);
        double flops = 2.0 * (double)s * block_params + 2.0 * (double)s * (double)s * (double)(mc->n_heads * mc->head_dim);
        if (t_fwd > 0) rate = flops / t_fwd / 1e9;
        double t_cap = hess_rate && t_fwd > 0 ? time_window(be, mc, &w, x0, x, s, fp64 ? 1 : 0) : -1;
        if (t_cap > t_fwd * 1.02) {
            double hflops = 0;
            for (int g = 0; g < ZF_NGROUP; g++) {
                double in = (double)zf_group_in(mc, (zf_group)g);
                hflops += (double)s * in * in;
            }
            *hess_rate = hflops / (t_cap - t_fwd) / 1e9;
        }
    }
    free(x0);
    free(x);
    zf_block_free(&w);
    return rate;
}

/* GFLOP/s of quantizing one [rows, cols] layer (random weights, H from random inputs) on be
 * with the config's method, counting the ALS rounds it ran; 0 when it fails. */
static double measure_quantize(zf_backend *be, const zf_quant_opts *q, int64_t rows, int64_t cols)
{
    int64_t t = 2 * cols;
    float *W = zf_calloc((size_t)(rows * cols), sizeof(float), "probe weights"),
          *X = zf_calloc((size_t)(t * cols), sizeof(float), "probe inputs"),
          *H = zf_calloc((size_t)(cols * cols), sizeof(float), "probe Hessian");
    double rate = 0;
    if (W && X && H) {
        fill_uniform(W, rows * cols, 7, 1.0f);
        for (int64_t i = 0; i < t * cols; i++) X[i] = (float)((i * 29 % 97) - 48) * 0.02f + (float)(i % cols == i / cols % cols);
        zf_hessian h;
        zf_status st = zf_hessian_init(&h, cols, false);
        if (st == ZF_OK) {
            st = zf_hessian_add(&h, X, t);
            if (st == ZF_OK) st = zf_hessian_finalize(&h, H);
            zf_hessian_free(&h);
        }
        zf_qresult r;
        memset(&r, 0, sizeof r);
        /* A first call pays once-per-process costs (a GPU's kernel loading and library workspaces, seconds there)
         * that a run spreads over all its layers: a small layer of the same method takes them first. */
        int64_t wr = rows < 64 ? rows : 64, wc = cols < 64 ? cols : 64;
        float *Hw = st == ZF_OK ? zf_calloc((size_t)(wc * wc), sizeof(float), "warm-up Hessian") : NULL;
        if (Hw) {
            for (int64_t i = 0; i < wc; i++) memcpy(Hw + i * wc, H + i * cols, sizeof(float) * (size_t)wc);
            if (zf_backend_quantize(be, q, W, wr, wc, Hw, NULL, &r) == ZF_OK) zf_qresult_free(&r);
            memset(&r, 0, sizeof r);
            free(Hw);
        }
        double t0 = zf_now();
        if (st == ZF_OK && zf_backend_quantize(be, q, W, rows, cols, H, NULL, &r) == ZF_OK)
            rate = zf_quant_flops(q, (double)rows, (double)cols, r.als_iters) / (zf_now() - t0) / 1e9;
        zf_qresult_free(&r);
    }
    free(W);
    free(X);
    free(H);
    return rate;
}

/* Quantization flops per block of the busiest rank: the units go to owners as the pipeline assigns them (one
 * block's four groups in the sequential schedule, split by rows across teams when split_rows applies, every
 * block's at once in the parallel one). */
static double busiest_owner_flops(const zf_job_config *cfg, const zf_model_config *mc, const double *rows,
                                  const double *in, int ranks, int iters)
{
    bool parallel = cfg->schedule == ZF_SCHEDULE_PARALLEL;
    int64_t nb = parallel ? mc->n_layers : 1;
    int *owner = zf_calloc((size_t)(nb * ZF_NGROUP), sizeof *owner, "unit owners");
    double *load = zf_calloc((size_t)ranks, sizeof *load, "rank loads"), busiest = 0;
    zf_block_parts p;
    if (parallel && owner && load && zf_assign_owners(mc, nb, ranks, owner) == ZF_OK) {
        for (int64_t u = 0; u < nb * ZF_NGROUP; u++)
            load[owner[u]] += zf_quant_flops(&cfg->quant, rows[u % ZF_NGROUP], in[u % ZF_NGROUP], iters);
    } else if (!parallel && load && zf_assign_parts(mc, &cfg->quant, ranks, cfg->split_rows, &p) == ZF_OK) {
        for (int g = 0; g < ZF_NGROUP; g++)
            for (int i = 0; i < p.n[g]; i++) {
                int64_t lo, hi;
                zf_part_rows(mc, &p, (zf_group)g, i, &lo, &hi);
                load[p.first[g] + i] += zf_quant_flops(&cfg->quant, (double)(hi - lo), in[g], iters);
            }
    }
    for (int r = 0; load && r < ranks; r++)
        if (load[r] > busiest) busiest = load[r];
    free(owner);
    free(load);
    return busiest / (double)nb;
}

/* The rates (GFLOP/s) the time rows turn flops into seconds with, and where each comes from. */
typedef struct {
    double fwd, hess, quant;
    char where[200], fwd_how[80], hess_how[80], quant_how[80];
} rates;

/* Rates measured on the backend a run would use: one window (ntok tokens) through a block of the model's shapes
 * without and with the Hessian capture, and the quantization of a layer of the largest group's shape (each side
 * at most cap). */
static rates measure_rates(zf_backend *be, const zf_job_config *cfg, const zf_model_config *mc, int64_t ntok,
                           double block_params, int64_t max_rows, int64_t max_cols, int64_t cap)
{
    rates r = {0};
    zf_backend_info info;
    zf_backend_get_info(be, &info);
    int64_t qr = max_rows < cap ? max_rows : cap, qc = max_cols < cap ? max_cols : cap;
    r.quant = measure_quantize(be, &cfg->quant, qr, qc);
    r.fwd = measure_forward(be, mc, ntok, block_params, cfg->hessian_fp64, &r.hess);
    snprintf(r.where, sizeof r.where, "%s", info.kind == ZF_BACKEND_CPU ? "this CPU" : info.name);
    snprintf(r.quant_how, sizeof r.quant_how, "%s of a [%lld x %lld] layer", zf_method_name(cfg->quant.method),
             (long long)qr, (long long)qc);
    if (r.fwd > 0) snprintf(r.fwd_how, sizeof r.fwd_how, "a window of %lld tokens through a block of these shapes", (long long)ntok);
    else snprintf(r.fwd_how, sizeof r.fwd_how, "the quantization's; block too large to probe");
    snprintf(r.hess_how, sizeof r.hess_how, r.hess > 0 ? "that window captured, %s" : "the forward's; capture within noise",
             cfg->hessian_fp64 ? "fp64" : "fp32");
    if (r.quant <= 0) r.quant = 1; /* a failed probe; the row then shows 1.0 rather than dividing by zero */
    if (r.fwd <= 0) r.fwd = r.quant;
    if (r.hess <= 0) r.hess = r.fwd;
    return r;
}

/* The time table: the cost model's flops per block turned into seconds with the measured rates. */
static void print_times(const zf_job_config *cfg, const zf_model_config *mc, const rates *r, double fwd_flops,
                        double hess_flops, double quant_flops)
{
    /* sequential: capture, then the windows through the quantized block; parallel: the full-precision pass */
    bool parallel = cfg->schedule == ZF_SCHEDULE_PARALLEL;
    double passes = parallel ? 1 : 2;
    double t_fwd = passes * fwd_flops / (r->fwd * 1e9), t_hess = hess_flops / (r->hess * 1e9);
    double t_quant = quant_flops / (r->quant * 1e9), t_block = t_fwd + t_hess + t_quant;
    printf("| time per block (cost model) | GFLOP | GFLOP/s measured on %s | seconds |\n|---|---|---|---|\n", r->where);
    printf("| forward %s | %.2f | %.1f (%s) | %.3f |\n",
           parallel ? "x1 (the full-precision pass)" : "x2 (capture, then through the quantized block)",
           passes * fwd_flops / 1e9, r->fwd, r->fwd_how, t_fwd);
    printf("| Hessians T·Σd_in² | %.2f | %.1f (%s) | %.3f |\n", hess_flops / 1e9, r->hess, r->hess_how, t_hess);
    char als[64] = "";
    if (cfg->quant.method == ZF_METHOD_ZFOLD)
        snprintf(als, sizeof als, " + Z-FOLD ALS (all %d iterations: an upper bound)", cfg->quant.als_max_iter);
    printf("| OPTQ%s, busiest rank%s | %.2f | %.1f (%s) | %.3f |\n", als,
           parallel ? " (every block's units spread over the ranks)" : "", quant_flops / 1e9, r->quant, r->quant_how,
           t_quant);
    printf("| **block** | | | **%.3f** (whole model ≈ %.1f s) |\n", t_block, t_block * (double)mc->n_layers);
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

/* The GPU memory table of backend cuda against gpu_info's device (NULL when none) or gpu_limit GiB: exit code. */
static int print_gpu_memory(const zf_job_config *cfg, const zf_model_config *mc, int64_t seq, int ranks, double hess,
                            const double *rows, const double *in, double gpu_limit, const zf_backend_info *gpu_info)
{
    double gib = 1024.0 * 1024.0 * 1024.0;
    double g_fwd = (double)zf_backend_forward_bytes(mc, seq, (zf_forward_dtype)cfg->gpu_forward_dtype);
    double g_fixed = (double)zf_backend_cuda_fixed_bytes(cfg->hessian_fp64);
    double g_nccl = ranks > 1 ? (double)ZF_GPUCOMM_NCCL_ALLOWANCE + (double)ZF_GPUCOMM_STAGE : 0;
    g_fixed += g_nccl;
    double g_quant = 0, part_rows[ZF_NGROUP]; /* the group whose quantization holds the most, per rank */
    int g_most = 0;
    zf_block_parts p;
    bool split = cfg->schedule != ZF_SCHEDULE_PARALLEL &&
                 zf_assign_parts(mc, &cfg->quant, ranks, cfg->split_rows, &p) == ZF_OK;
    for (int g = 0; g < ZF_NGROUP; g++) {
        part_rows[g] = split ? ceil(rows[g] / p.n[g]) : rows[g];
        double b = (double)zf_backend_quantize_bytes(&cfg->quant, (int64_t)part_rows[g], (int64_t)in[g], true);
        if (b > g_quant) g_quant = b, g_most = g;
    }
    double g_quant_total = g_fixed + g_fwd + hess + g_quant;
    /* evaluation runs after quantization: the forward again, then the head and one window's logits */
    int64_t eval_seq = cfg->eval_seq_len > 0 ? cfg->eval_seq_len : seq;
    double g_eval = g_fixed + (double)zf_backend_forward_bytes(mc, eval_seq, (zf_forward_dtype)cfg->gpu_forward_dtype) +
                    (double)zf_backend_nll_bytes(mc, eval_seq, (zf_forward_dtype)cfg->gpu_forward_dtype);
    double g_total = g_quant_total > g_eval ? g_quant_total : g_eval;
    const char *source = "--gpu-memory";
    if (gpu_limit <= 0 && gpu_info) {
        gpu_limit = (double)gpu_info->mem_total / gib;
        source = gpu_info->name;
    }
    printf("\n| GPU memory per rank (backend cuda) | GiB |\n|---|---|\n");
    printf("| CUDA context and library workspaces (allowance)%s%s | %.3f |\n",
           cfg->hessian_fp64 ? ", fp64 Hessian scratch" : "",
           g_nccl > 0 ? "; NCCL buffers (allowance) and broadcast staging" : "", g_fixed / gib);
    printf("| one block's weights (%s) and one window's forward | %.3f |\n",
           cfg->gpu_forward_dtype == ZF_FWD_FP32 ? "fp32" : "16-bit", g_fwd / gib);
    printf("| Hessian accumulators (%s) | %.3f |\n| largest group's quantization (%s, [%lld x %lld]) | %.3f |\n",
           cfg->hessian_fp64 ? "fp64" : "fp32", hess / gib, zf_group_name((zf_group)g_most), (long long)part_rows[g_most],
           (long long)in[g_most], g_quant / gib);
    printf("| quantization total | %.3f |\n", g_quant_total / gib);
    printf("| evaluation total: forward, head and one window's logits (%lld tokens) | %.3f |\n", (long long)eval_seq,
           g_eval / gib);
    printf("| **peak** | **%.3f** |\n", g_total / gib);
    if (gpu_limit <= 0) printf("GPU memory: no device here; pass --gpu-memory GiB to check against a GPU\n");
    else if (g_total / gib > gpu_limit) {
        printf("WARNING: a rank needs %.2f GiB of GPU memory but %s has %.2f GiB: use fewer calibration windows "
               "per rank (more ranks), gpu.forward_dtype: bf16, or hessian_fp64: false\n", g_total / gib, source,
               gpu_limit);
        return ZF_EXIT_FAILURE;
    } else printf("GPU memory OK: %.2f GiB needed of %.2f GiB (%s)\n", g_total / gib, gpu_limit, source);
    return ZF_EXIT_OK;
}

/* The host memory table of the busiest rank, by phase, and the bytes each rank moves. */
static void print_host_memory(const zf_job_config *cfg, const zf_model_config *mc, int ranks, int64_t tokens,
                              const zf_plan_memory *pm)
{
    double gib = 1024.0 * 1024.0 * 1024.0;
    bool parallel = cfg->schedule == ZF_SCHEDULE_PARALLEL;
    printf("| host memory per rank (busiest rank) | GiB |\n|---|---|\n");
    printf("| libraries, MPI, thread stacks | %.3f |\n", pm->runtime / gib);
    printf("| calibration activations of this rank (%s) | %.3f |\n",
           cfg->calib_bf16 ? "bf16 and an fp32 chunk" : "x and a copy, fp32", pm->acts / gib);
    printf("| forward intermediates of one window | %.3f |\n", pm->window / gib);
    printf("| one block: fp32 weights and codes%s | %.3f |\n", cfg->eval_unfolded ? ", unfolded copy" : "",
           pm->block / gib);
    if (pm->unfolded_all > 0) printf("| every block's unfolded copy kept for eval.unfolded | %.3f |\n", pm->unfolded_all / gib);
    printf("| Hessian accumulators of one %s (%s%s) | %.3f |\n", parallel ? "block" : "capture pass",
           cfg->hessian_fp64 ? "fp64" : "fp32", cfg->backend == ZF_BACKEND_CUDA ? ", in GPU memory: none here" : "",
           pm->capture / gib);
    if (parallel) printf("| Hessians this rank owns (fp32, all its units) | %.3f |\n", pm->owned_h / gib);
    printf("| quantization on the busiest owner (H, group work, results kept) | %.3f |\n", pm->quant / gib);
    if (pm->reduce > 0) printf("| MPI reduction staging | %.3f |\n", pm->reduce / gib);
    printf("| embeddings, head, final norm (at embedding and evaluation only) | %.3f |\n", pm->globals / gib);
    printf("| evaluation chunk (%lld windows: activations, logits) | %.3f |\n", (long long)pm->eval_chunk, pm->eval / gib);
    printf("| phase totals: embedding %.2f, Hessian capture %.2f, quantization %.2f, evaluation %.2f | |\n",
           pm->embed_phase / gib, pm->capture_phase / gib, pm->quant_phase / gib, pm->eval_phase / gib);
    printf("| **peak (%s)** | **%.3f** |\n\n", pm->peak_phase, pm->peak / gib);
    if (ranks > 1 && !parallel) {
        zf_block_parts p;
        double per_block = 0;
        if (zf_assign_parts(mc, &cfg->quant, ranks, cfg->split_rows, &p) == ZF_OK)
            for (int r = 0; r < ranks; r++) {
                double b = (double)zf_block_comm_bytes_model(mc, cfg, &p, ranks, r, tokens);
                if (b > per_block) per_block = b;
            }
        printf("traffic per rank (the busiest): %.3f GB per block, %.1f GB for the model (Hessian sums to their owners, codes, "
               "scales and ζ back, a team's Hessian from its owner)\n\n", per_block / 1e9, per_block * (double)mc->n_layers / 1e9);
    }
}

/* The command line of zfold plan. */
typedef struct {
    const char *config_path;
    int ranks;
    double mem_limit, gpu_limit; /* GiB; 0 when not given */
    bool memory_only;
    const char *sets[ZF_MAX_SETS];
    int nsets;
} plan_args;

static bool parse_args(int argc, char **argv, plan_args *a)
{
    memset(a, 0, sizeof *a);
    a->ranks = 1;
    for (int i = 1, took; i < argc; i++) {
        if ((took = zf_config_take_set(argc, argv, i, a->sets, &a->nsets))) i += took - 1;
        else if (!strcmp(argv[i], "--ranks") && i + 1 < argc) a->ranks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--memory") && i + 1 < argc) a->mem_limit = atof(argv[++i]);
        else if (!strcmp(argv[i], "--memory-only")) a->memory_only = true;
        else if (!strcmp(argv[i], "--gpu-memory") && i + 1 < argc) a->gpu_limit = atof(argv[++i]);
        else if (argv[i][0] != '-' && !a->config_path) a->config_path = argv[i];
        else return false;
    }
    return a->config_path && a->ranks >= 1;
}

int zf_cmd_plan(int argc, char **argv)
{
    plan_args a;
    if (!parse_args(argc, argv, &a)) {
        zf_cmd_plan_help();
        return ZF_EXIT_USAGE;
    }
    const char *config_path = a.config_path;
    int ranks = a.ranks;
    zf_job_config cfg;
    zf_model_config mc;
    zf_status s = zf_config_read(config_path, a.sets, a.nsets, &cfg, NULL);
    /* a plan needs shapes only: model may name a config.json of its own */
    size_t ml = strlen(cfg.model);
    bool json = ml > 5 && !strcmp(cfg.model + ml - 5, ".json");
    if (s == ZF_OK) s = json ? zf_model_config_read_file(cfg.model, &mc) : zf_model_config_read(cfg.model, &mc);
    if (s != ZF_OK) {
        fprintf(stderr, "zfold: %s\n", zf_last_error());
        return ZF_EXIT_FAILURE;
    }
    double mem_limit = a.mem_limit > 0 ? a.mem_limit : available_gib() / ranks;
    int64_t seq = cfg.calib_seq_len > 0 ? cfg.calib_seq_len : (mc.max_pos < 2048 ? mc.max_pos : 2048);
    int64_t wins = (cfg.calib_windows + ranks - 1) / ranks, T = wins * seq, Tall = cfg.calib_windows * seq;
    int64_t d = mc.hidden, qd = mc.n_heads * mc.head_dim;
    double rows[ZF_NGROUP], in[ZF_NGROUP]; /* each group's output rows (its members stacked) and input width */
    double block_params = 0, max_group = 0, hess_flops = 0;
    int64_t max_rows = 0, max_cols = 0; /* the largest group */
    for (int g = 0; g < ZF_NGROUP; g++) {
        in[g] = (double)zf_group_in(&mc, (zf_group)g);
        rows[g] = (double)zf_group_out(&mc, (zf_group)g);
        block_params += rows[g] * in[g];
        hess_flops += (double)T * in[g] * in[g];
        if (rows[g] * in[g] > max_group) max_group = rows[g] * in[g], max_rows = (int64_t)rows[g], max_cols = (int64_t)in[g];
    }
    double gib = 1024.0 * 1024.0 * 1024.0;
    zf_plan_memory pm;
    zf_plan_memory_host(&cfg, &mc, ranks, wins, seq, &pm);
    double fwd_flops = 2.0 * (double)T * block_params + 4.0 * (double)T * seq * qd / 2.0;
    /* the config's GPU when one is visible: its memory, and the rates */
    zf_backend *gpu = NULL;
    zf_backend_info gpu_info = {0};
    if (cfg.backend == ZF_BACKEND_CUDA && zf_backend_cuda_devices(NULL) > 0) {
        zf_backend_opts bo = {.kind = ZF_BACKEND_CUDA, .device = 0, .tf32 = cfg.gpu_tf32,
                              .fwd_dtype = (zf_forward_dtype)cfg.gpu_forward_dtype};
        if (zf_backend_open(&bo, &gpu) == ZF_OK) zf_backend_get_info(gpu, &gpu_info);
        else fprintf(stderr, "zfold plan: %s; rates from this CPU\n", zf_last_error());
    }
    printf("# plan: %s, %s model, %lld blocks, d %lld, %lld parameters; %d rank%s\n", config_path, mc.model_type,
           (long long)mc.n_layers, (long long)d, (long long)zf_model_param_count(&mc), ranks, ranks > 1 ? "s" : "");
    printf("# calibration: %lld windows x %lld tokens (%lld tokens per rank); method %s, %d bits\n",
           (long long)cfg.calib_windows, (long long)seq, (long long)T, zf_method_name(cfg.quant.method), cfg.quant.bits);
    print_host_memory(&cfg, &mc, ranks, T, &pm);
    if (!a.memory_only) {
        zf_backend_opts co = {.kind = ZF_BACKEND_CPU, .device = -1};
        zf_backend *cpu = NULL;
        if (!gpu && zf_backend_open(&co, &cpu) != ZF_OK) {
            fprintf(stderr, "zfold: %s\n", zf_last_error());
            zf_backend_close(gpu);
            return ZF_EXIT_FAILURE;
        }
        rates r = gpu ? measure_rates(gpu, &cfg, &mc, seq < 512 ? seq : 512, block_params, max_rows, max_cols, 2048)
                      : measure_rates(cpu, &cfg, &mc, seq < 128 ? seq : 128, block_params, max_rows, max_cols, 2048);
        zf_backend_close(cpu);
        if (cfg.backend == ZF_BACKEND_CUDA && !gpu)
            printf("backend cuda, but no GPU here: the times below use this CPU's rates; run zfold plan on a GPU "
                   "node for GPU times\n");
        print_times(&cfg, &mc, &r, fwd_flops, hess_flops,
                    busiest_owner_flops(&cfg, &mc, rows, in, ranks,
                                        cfg.quant.method == ZF_METHOD_ZFOLD ? cfg.quant.als_max_iter : 0));
    }
    printf("(calibration of %lld tokens in all)\n", (long long)Tall);
    int rc = cfg.backend == ZF_BACKEND_CUDA
                 ? print_gpu_memory(&cfg, &mc, seq, ranks, zf_plan_capture_bytes(&cfg, &mc), rows, in, a.gpu_limit, gpu ? &gpu_info : NULL)
                 : ZF_EXIT_OK;
    zf_backend_close(gpu);
    if (pm.peak / gib > mem_limit) {
        printf("WARNING: a rank needs %.2f GiB but has %.2f GiB: use more ranks (the calibration activations shrink "
               "with them), fewer calibration windows, true_sequential (one group's Hessian at a time) or "
               "hessian_fp64: false\n", pm.peak / gib, mem_limit);
        return ZF_EXIT_FAILURE;
    }
    printf("memory OK: %.2f GiB needed of %.2f GiB per rank\n", pm.peak / gib, mem_limit);
    return rc;
}
