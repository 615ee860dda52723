/* zfold_gpu_bench: RTN/OPTQ/Z-FOLD per layer and a 7B-shaped block forward on CUDA, against measured cuBLAS peaks. */
#include <cblas.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "common/log.h"
#include "common/model.h"
#include "worker/backend.h"
#include "worker/block.h"
#include "worker/grid.h"
#include "worker/quant.h"
#include "common/clock.h"

typedef struct {
    const char *name;
    int64_t out, in;
} layer_shape;

/* out × in: W is [out, in] as in Hugging Face checkpoints. */
static const layer_shape shapes[] = {
    {"4096", 4096, 4096},        /* LLaMA-7B q/k/v/o */
    {"11008x4096", 11008, 4096}, /* LLaMA-7B gate/up */
    {"4096x11008", 4096, 11008}, /* LLaMA-7B down */
    {"8192x28672", 8192, 28672}, /* 70B-class down: H is 28672² */
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "zfold_gpu_bench: %s: %s\n", what, msg);
    exit(2);
}

#define CK_CUDA(call)                                                                                             \
    do {                                                                                                          \
        cudaError_t e_ = (call);                                                                                  \
        if (e_ != cudaSuccess) die(#call, cudaGetErrorString(e_));                                                \
    } while (0)
#define CK_BLAS(call)                                                                                             \
    do {                                                                                                          \
        cublasStatus_t e_ = (call);                                                                               \
        if (e_ != CUBLAS_STATUS_SUCCESS) die(#call, cublasGetStatusString(e_));                                   \
    } while (0)

#define xmalloc(n) zf_bench_xmalloc((n), "zfold_gpu_bench")

/* Uniform values with standard deviation sigma from a hash of (seed, index): parallel and reproducible. */
static void fill(float *x, size_t n, double sigma, uint64_t seed)
{
    const double scale = sigma * sqrt(12.0) * 0x1.0p-53;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint64_t z = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xD1B54A32D192ED03ull + 0x2545F4914F6CDD1Dull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        x[i] = (float)(((double)(z >> 11) - 0x1.0p52) * scale);
    }
}

/* ---------------------------------------------------------------- cuBLAS peaks */

typedef struct {
    double sgemm, tf32, bf16; /* GFLOP/s */
} peaks;

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* n³ GEMM with A, B of type ab and C fp32, best of reps timed runs after one warm-up. */
static double gemm_gflops(cublasHandle_t h, int n, cudaDataType ab, cublasComputeType_t ct, int reps)
{
    const size_t nn = (size_t)n * n, esz = ab == CUDA_R_16BF ? 2 : 4;
    float *host = xmalloc(nn * sizeof(float));
    uint16_t *half = ab == CUDA_R_16BF ? xmalloc(nn * sizeof(uint16_t)) : NULL;
    void *A, *B, *C;
    CK_CUDA(cudaMalloc(&A, nn * esz));
    CK_CUDA(cudaMalloc(&B, nn * esz));
    CK_CUDA(cudaMalloc(&C, nn * sizeof(float)));
    for (int k = 0; k < 2; k++) {
        fill(host, nn, 1.0, 100 + k);
        if (half)
            for (size_t i = 0; i < nn; i++) half[i] = to_bf16(host[i]);
        CK_CUDA(cudaMemcpy(k ? B : A, half ? (const void *)half : (const void *)host, nn * esz,
                           cudaMemcpyHostToDevice));
    }
    free(host), free(half);
    const float alpha = 1.0f, beta = 0.0f;
    cudaEvent_t e0, e1;
    CK_CUDA(cudaEventCreate(&e0));
    CK_CUDA(cudaEventCreate(&e1));
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        CK_CUDA(cudaEventRecord(e0, 0));
        CK_BLAS(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, A, ab, n, B, ab, n, &beta, C, CUDA_R_32F, n,
                             ct, CUBLAS_GEMM_DEFAULT));
        CK_CUDA(cudaEventRecord(e1, 0));
        CK_CUDA(cudaEventSynchronize(e1));
        float ms = 0;
        CK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
        if (r > 0 && ms < best) best = ms; /* run 0 warms up */
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    cudaFree(A), cudaFree(B), cudaFree(C);
    return 2.0 * (double)n * n * n / (best * 1e-3) / 1e9;
}

static peaks measure_peaks(int device, int n, int reps)
{
    CK_CUDA(cudaSetDevice(device));
    cublasHandle_t h;
    CK_BLAS(cublasCreate(&h));
    CK_BLAS(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    peaks p;
    p.sgemm = gemm_gflops(h, n, CUDA_R_32F, CUBLAS_COMPUTE_32F, reps);
    p.tf32 = gemm_gflops(h, n, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, reps);
    p.bf16 = gemm_gflops(h, n, CUDA_R_16BF, CUBLAS_COMPUTE_32F, reps);
    cublasDestroy(h);
    return p;
}

/* ---------------------------------------------------------------- data */

/* H = 2/N XᵀX for ntok correlated inputs: X = Z + Y·R (rank-64 shared component), 8 outlier channels ×10, as the
 * CPU bench builds it; the Gram matrix is formed on the device (SYRK) and mirrored on the host. */
static void make_hessian(int device, int64_t in, int64_t ntok, uint64_t seed, float *H)
{
    const int64_t k = 64;
    float *X = xmalloc((size_t)ntok * in * sizeof(float)), *Y = xmalloc((size_t)ntok * k * sizeof(float));
    float *R = xmalloc((size_t)k * in * sizeof(float));
    fill(X, (size_t)ntok * in, 1.0, seed);
    fill(Y, (size_t)ntok * k, 1.0, seed + 1);
    fill(R, (size_t)k * in, 1.0 / sqrt((double)k), seed + 2);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ntok, (int)in, (int)k, 1.0f, Y, (int)k, R, (int)in,
                1.0f, X, (int)in);
    for (int o = 0; o < 8; o++) {
        int64_t c = (int64_t)(((uint64_t)(o + 1) * 0x9E3779B97F4A7C15ull ^ seed) % (uint64_t)in);
        for (int64_t t = 0; t < ntok; t++) X[t * in + c] *= 10.0f;
    }
    free(Y), free(R);
    CK_CUDA(cudaSetDevice(device));
    cublasHandle_t h;
    CK_BLAS(cublasCreate(&h));
    float *dX, *dH;
    CK_CUDA(cudaMalloc((void **)&dX, (size_t)ntok * in * sizeof(float)));
    CK_CUDA(cudaMalloc((void **)&dH, (size_t)in * in * sizeof(float)));
    CK_CUDA(cudaMemcpy(dX, X, (size_t)ntok * in * sizeof(float), cudaMemcpyHostToDevice));
    free(X);
    /* row-major X [ntok, in] is column-major [in, ntok]: H = X_cm X_cmᵀ */
    const float alpha = (float)(2.0 / (double)ntok), beta = 0.0f;
    CK_BLAS(cublasSsyrk(h, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, (int)in, (int)ntok, &alpha, dX, (int)in, &beta, dH,
                        (int)in));
    CK_CUDA(cudaMemcpy(H, dH, (size_t)in * in * sizeof(float), cudaMemcpyDeviceToHost));
    cudaFree(dX), cudaFree(dH);
    cublasDestroy(h);
    /* column-major upper = row-major lower: copy it onto the upper triangle */
#pragma omp parallel for schedule(dynamic, 64)
    for (int64_t i = 0; i < in; i++)
        for (int64_t j = i + 1; j < in; j++) H[i * in + j] = H[j * in + i];
}

/* ---------------------------------------------------------------- output */

static void pct(char *buf, size_t n, double gf, double peak)
{
    if (gf > 0 && peak > 0) snprintf(buf, n, "%.1f", 100.0 * gf / peak);
    else snprintf(buf, n, "-");
}

static void usage(void)
{
    fprintf(stderr,
            "usage: zfold_gpu_bench [--device N] [--sizes LIST] [--methods LIST] [--bits B] [--tokens N]\n"
            "                       [--windows N] [--reps N] [--no-layers] [--no-forward] [--json FILE]\n"
            "  --device   CUDA device ordinal (default 0)\n"
            "  --sizes    comma-separated subset of 4096,11008x4096,4096x11008,8192x28672 (out x in; default all)\n"
            "  --methods  comma-separated subset of rtn,optq,zfold (default all)\n"
            "  --bits     bits (default 4)\n"
            "  --tokens   calibration tokens for H (default 4096)\n"
            "  --windows  windows of 2048 tokens per block-forward call (default 4)\n"
            "  --reps     timed block-forward calls, the best is reported (default 3)\n"
            "  --json     also write the results as JSON to FILE\n"
            "Prints Markdown tables to stdout.\n");
}

int main(int argc, char **argv)
{
    const char *sizes = NULL, *methods_sel = NULL, *json = NULL;
    int device = 0, bits = 4, reps = 3, do_layers = 1, do_forward = 1;
    int64_t ntok = 4096, nwin = 4;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) device = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) sizes = argv[++i];
        else if (!strcmp(argv[i], "--methods") && i + 1 < argc) methods_sel = argv[++i];
        else if (!strcmp(argv[i], "--bits") && i + 1 < argc) bits = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) ntok = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--windows") && i + 1 < argc) nwin = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--no-layers")) do_layers = 0;
        else if (!strcmp(argv[i], "--no-forward")) do_forward = 0;
        else {
            usage();
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (nwin < 1 || reps < 1 || ntok < 1) {
        usage();
        return 2;
    }
    zf_log_init(0, 1);
    zf_log_set_level(ZF_LOG_WARN);
    const char *why = NULL;
    const int ndev = zf_backend_cuda_devices(&why);
    if (device < 0 || device >= ndev) {
        fprintf(stderr, "zfold_gpu_bench: no CUDA device %d (%d visible%s%s)\n", device, ndev, why ? ": " : "",
                why ? why : "");
        return 1;
    }
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) {
        fprintf(stderr, "zfold_gpu_bench: cannot write %s\n", json);
        return 2;
    }

    const peaks pk = measure_peaks(device, 8192, 5);
    zf_backend_opts bo = {.kind = ZF_BACKEND_CUDA, .device = device, .tf32 = false, .fwd_dtype = ZF_FWD_FP32};
    zf_backend *be = NULL;
    if (zf_backend_open(&bo, &be) != ZF_OK) die("opening the CUDA backend", zf_last_error());
    zf_backend_info info;
    zf_backend_get_info(be, &info);
    printf("# zfold GPU bench: %s, %.1f GiB\n\n", info.name, (double)info.mem_total / (1 << 30));
    printf("cuBLAS 8192³ GEMM peaks (cublasGemmEx, best of 5): SGEMM %.1f TFLOP/s, TF32 %.1f TFLOP/s, "
           "BF16 (fp32 accumulate) %.1f TFLOP/s.\n\n",
           pk.sgemm / 1e3, pk.tf32 / 1e3, pk.bf16 / 1e3);
    if (jf)
        fprintf(jf, "{\n  \"device\": \"%s\",\n  \"peaks_gflops\": {\"sgemm\": %.1f, \"tf32\": %.1f, \"bf16\": %.1f},\n"
                    "  \"bits\": %d,\n  \"tokens\": %lld,\n  \"layers\": [",
                info.name, pk.sgemm, pk.tf32, pk.bf16, bits, (long long)ntok);
    int failed = 0, first = 1;

    if (do_layers) {
        printf("Quantization, %d bits, H from %lld tokens. Flops as the CPU bench counts them: OPTQ 2·out·in² + in³; "
               "Z-FOLD adds 2·out·in² per ALS GEMM (1 + 2 per ALS iteration run); GFLOP/s over core = ALS + factor "
               "+ column loop (wall also has the transfers and the ΔL figures).\n\n",
               bits, (long long)ntok);
        printf("| layer | method | wall s | core s | GFLOP/s | %% SGEMM | %% TF32 | %% BF16 | ΔL/ΔL_rtn | ALS iters |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        fflush(stdout);
        /* the first call pays for library initialisation: keep it out of the table */
        {
            float *w = xmalloc(256 * 256 * sizeof(float)), *h = xmalloc(256 * 256 * sizeof(float));
            fill(w, 256 * 256, 0.02, 1);
            make_hessian(device, 256, 1024, 2, h);
            zf_quant_opts o;
            zf_quant_opts_default(&o);
            zf_qresult r;
            if (zf_backend_quantize(be, &o, w, 256, 256, h, NULL, &r) == ZF_OK) zf_qresult_free(&r);
            free(w), free(h);
        }
        for (size_t s = 0; s < NSHAPES; s++) {
            const layer_shape *L = &shapes[s];
            if (!zf_bench_listed(sizes, L->name)) continue;
            int64_t need = 0; /* the most any of the methods holds */
            for (int m = 0; m < 3; m++) {
                zf_quant_opts o;
                zf_quant_opts_default(&o);
                o.method = (zf_method[]){ZF_METHOD_RTN, ZF_METHOD_OPTQ, ZF_METHOD_ZFOLD}[m];
                int64_t b = zf_backend_quantize_bytes(&o, L->out, L->in, true);
                need = b > need ? b : need;
            }
            if (need > info.mem_free) {
                printf("| %s | - | does not fit: %lld bytes needed | | | | | | | |\n", L->name, (long long)need);
                continue;
            }
            float *W = xmalloc((size_t)L->out * L->in * sizeof(float));
            float *H = xmalloc((size_t)L->in * L->in * sizeof(float));
            fill(W, (size_t)L->out * L->in, 0.02, 1000 + s);
            make_hessian(device, L->in, ntok, 2000 + s, H);
            const zf_method methods[] = {ZF_METHOD_RTN, ZF_METHOD_OPTQ, ZF_METHOD_ZFOLD};
            for (int m = 0; m < 3; m++) {
                if (!zf_bench_listed(methods_sel, zf_method_name(methods[m]))) continue;
                zf_quant_opts o;
                zf_quant_opts_default(&o);
                o.method = methods[m];
                o.bits = bits;
                zf_qresult r;
                double t = zf_now();
                zf_status st = zf_backend_quantize(be, &o, W, L->out, L->in, H, NULL, &r);
                t = zf_now() - t;
                if (st != ZF_OK) {
                    fprintf(stderr, "zfold_gpu_bench: %s %s: %s\n", L->name, zf_method_name(o.method),
                            zf_last_error());
                    printf("| %s | %s | failed: %s | | | | | | | |\n", L->name, zf_method_name(o.method),
                           zf_status_name(st));
                    failed = 1;
                    continue;
                }
                double core = 0.0;
                const double flops = zf_bench_quant_flops(&o, &r, L->out, L->in, &core);
                const double secs = core > 0 ? core : t; /* wall time when the backend reports no phase times */
                const double gf = flops > 0 && secs > 0 ? flops / secs / 1e9 : 0.0;
                char gfs[32], p1[16], p2[16], p3[16];
                if (gf > 0) snprintf(gfs, sizeof gfs, "%.0f", gf);
                else snprintf(gfs, sizeof gfs, "-");
                pct(p1, sizeof p1, gf, pk.sgemm), pct(p2, sizeof p2, gf, pk.tf32), pct(p3, sizeof p3, gf, pk.bf16);
                printf("| %s | %s | %.3f | %.3f | %s | %s | %s | %s | %.4f | %d |\n", L->name,
                       zf_method_name(o.method), t, core, gfs, p1, p2, p3, r.dl_rtn > 0 ? r.dl / r.dl_rtn : 0.0, r.als_iters);
                fflush(stdout);
                if (jf)
                    fprintf(jf,
                            "%s\n    {\"layer\": \"%s\", \"out\": %lld, \"in\": %lld, \"method\": \"%s\", "
                            "\"wall_s\": %.4f, \"core_s\": %.4f, \"als_s\": %.4f, \"factor_s\": %.4f, "
                            "\"loop_s\": %.4f, \"refit_s\": %.4f, \"fallback_s\": %.4f, \"flops\": %.6g, "
                            "\"gflops\": %.3f, \"pct_sgemm\": %.3f, "
                            "\"pct_tf32\": %.3f, \"pct_bf16\": %.3f, \"dl\": %.6g, \"dl_rtn\": %.6g, "
                            "\"als_iters\": %d}",
                            first ? "" : ",", L->name, (long long)L->out, (long long)L->in, zf_method_name(o.method),
                            t, core, r.t_als, r.t_factor, r.t_loop, r.t_refit, r.t_fallback, flops, gf,
                            100.0 * gf / pk.sgemm,
                            100.0 * gf / pk.tf32, 100.0 * gf / pk.bf16, r.dl, r.dl_rtn, r.als_iters);
                first = 0;
                zf_qresult_free(&r);
            }
            free(W), free(H);
        }
        printf("\n");
    }
    zf_backend_close(be);
    if (jf) fprintf(jf, "\n  ],\n  \"forward\": [");

    if (do_forward) {
        zf_model_config c = {0};
        c.family = ZF_FAMILY_LLAMA;
        strcpy(c.model_type, "llama");
        c.hidden = 4096, c.n_layers = 32, c.n_heads = 32, c.n_kv_heads = 32, c.head_dim = 128;
        c.intermediate = 11008, c.vocab = 32000, c.max_pos = 4096, c.norm_eps = 1e-5, c.rope_theta = 10000.0;
        const int64_t seq = 2048, d = c.hidden, qd = c.n_heads * c.head_dim;
        int64_t params = 0;
        for (int l = 0; l < ZF_NLIN; l++)
            if (zf_lin_present(&c, (zf_lin)l)) params += zf_lin_out(&c, (zf_lin)l) * zf_lin_in(&c, (zf_lin)l);
        /* linear layers 2·seq·params, attention QKᵀ and PV over the causal half: 2·seq²·(heads·head_dim) */
        const double flops = (double)nwin * (2.0 * seq * (double)params + 2.0 * (double)seq * seq * qd);
        printf("Block forward, LLaMA-7B shape (hidden 4096, 32 heads, intermediate 11008), %lld window%s of %lld "
               "tokens per call, best of %d calls after one warm-up; weights are uploaded on every call. Flops: "
               "2·tokens·params + 2·seq²·hidden per window (causal attention) = %.1f GFLOP per call.\n\n",
               (long long)nwin, nwin == 1 ? "" : "s", (long long)seq, reps, flops / 1e9);
        printf("| forward | s per call | ms per window | GFLOP/s | %% SGEMM | %% TF32 | %% BF16 |\n"
               "|---|---:|---:|---:|---:|---:|---:|\n");
        fflush(stdout);
        zf_block_weights w;
        if (zf_block_alloc(&c, &w) != ZF_OK) die("7B block", zf_last_error());
        for (int l = 0; l < ZF_NLIN; l++)
            if (w.lin_w[l])
                fill(w.lin_w[l], (size_t)(zf_lin_out(&c, (zf_lin)l) * zf_lin_in(&c, (zf_lin)l)),
                     1.0 / sqrt((double)zf_lin_in(&c, (zf_lin)l)), 3000 + l);
        for (int n = 0; n < 2; n++)
            for (int64_t i = 0; i < d; i++) w.norm_w[n][i] = 1.0f;
        const size_t xbytes = (size_t)(nwin * seq * d) * sizeof(float);
        float *x0 = xmalloc(xbytes), *x = xmalloc(xbytes);
        fill(x0, (size_t)(nwin * seq * d), 1.0, 4000);
        struct {
            const char *name;
            bool tf32, capture;
            zf_forward_dtype dt;
        } runs[] = {
            {"fp32", false, false, ZF_FWD_FP32},
            {"fp32 + TF32", true, false, ZF_FWD_FP32},
            {"bf16", false, false, ZF_FWD_BF16},
            {"bf16 + capture (fp64 H)", false, true, ZF_FWD_BF16},
        };
        int ffirst = 1;
        for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
            zf_backend_opts fo = {.kind = ZF_BACKEND_CUDA, .device = device, .tf32 = runs[k].tf32,
                                  .fwd_dtype = runs[k].dt};
            zf_backend *fb = NULL;
            if (zf_backend_open(&fo, &fb) != ZF_OK) die("opening the CUDA backend", zf_last_error());
            zf_bhess hs[ZF_NGROUP];
            zf_bhess *hp[ZF_NGROUP] = {0};
            int ok = 1;
            if (runs[k].capture)
                for (int g = 0; g < ZF_NGROUP && ok; g++) {
                    if (zf_bhess_init(fb, &hs[g], zf_group_in(&c, (zf_group)g), true) != ZF_OK) ok = 0;
                    else hp[g] = &hs[g];
                }
            double best = 1e30;
            for (int r = 0; ok && r <= reps; r++) {
                memcpy(x, x0, xbytes);
                double t = zf_now();
                if (zf_backend_block_forward(fb, &c, &w, x, nwin, seq, runs[k].capture ? hp : NULL) != ZF_OK)
                    ok = 0;
                t = zf_now() - t;
                if (r > 0 && t < best) best = t;
            }
            if (!ok) {
                fprintf(stderr, "zfold_gpu_bench: forward %s: %s\n", runs[k].name, zf_last_error());
                printf("| %s | failed | | | | | |\n", runs[k].name);
                failed = 1;
            } else {
                const double gf = flops / best / 1e9;
                char p1[16], p2[16], p3[16];
                pct(p1, sizeof p1, gf, pk.sgemm), pct(p2, sizeof p2, gf, pk.tf32), pct(p3, sizeof p3, gf, pk.bf16);
                printf("| %s | %.4f | %.2f | %.0f | %s | %s | %s |\n", runs[k].name, best, 1e3 * best / (double)nwin,
                       gf, p1, p2, p3);
                fflush(stdout);
                if (jf)
                    fprintf(jf,
                            "%s\n    {\"forward\": \"%s\", \"windows\": %lld, \"seq\": %lld, \"s_per_call\": %.5f, "
                            "\"flops\": %.6g, \"gflops\": %.3f, \"pct_sgemm\": %.3f, \"pct_tf32\": %.3f, "
                            "\"pct_bf16\": %.3f}",
                            ffirst ? "" : ",", runs[k].name, (long long)nwin, (long long)seq, best, flops, gf,
                            100.0 * gf / pk.sgemm, 100.0 * gf / pk.tf32, 100.0 * gf / pk.bf16);
                ffirst = 0;
            }
            for (int g = 0; g < ZF_NGROUP; g++)
                if (hp[g]) zf_bhess_free(hp[g]);
            zf_backend_close(fb);
        }
        free(x0), free(x);
        zf_block_free(&w);
        printf("\n");
    }
    if (jf) {
        fprintf(jf, "\n  ]\n}\n");
        fclose(jf);
    }
    return failed;
}
