/* Helpers shared by the CPU and GPU benches: option lists and allocation that ends the bench on failure. */
#include "bench/bench_util.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "worker/hessian.h"

int zf_bench_listed(const char *list, const char *name)
{
    if (!list) return 1;
    char buf[512], key[64];
    snprintf(buf, sizeof buf, ",%s,", list);
    snprintf(key, sizeof key, ",%s,", name);
    return strstr(buf, key) != NULL;
}

void *zf_bench_xmalloc(size_t n, const char *prog)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "%s: out of memory (%zu bytes)\n", prog, n);
        exit(2);
    }
    return p;
}

double zf_bench_quant_flops(const zf_quant_opts *o, const zf_qresult *r, int64_t out, int64_t in, double *core_s)
{
    const double oi2 = 2.0 * (double)out * (double)in * (double)in, in3 = (double)in * (double)in * (double)in;
    const int als_run = r->als_iters < o->als_max_iter ? r->als_iters + 1 : o->als_max_iter;
    /* GEMMs of the ALS: lsq one per state loss and one per α fit; grid one per candidate grid as well; diag none */
    const double cand = (double)o->grid_points * (o->sym ? 1.0 : 2.0);
    const double als_gemms = o->alpha == ZF_ALPHA_LSQ    ? 1.0 + 2.0 * als_run
                             : o->alpha == ZF_ALPHA_GRID ? 1.0 + (1.0 + cand) * als_run
                                                         : 0.0;
    double flops = 0.0, core = 0.0;
    if (o->method == ZF_METHOD_OPTQ || o->method == ZF_METHOD_ZFOLD) {
        flops = oi2 + in3;
        core = r->t_factor + r->t_loop;
    }
    if (o->method == ZF_METHOD_ZFOLD) {
        flops += als_gemms * oi2;
        core += r->t_als;
    }
    *core_s = core;
    return flops;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

void zf_bench_seed(uint64_t seed) { rng_state = 0x9E3779B97F4A7C15ull * seed; }

double zf_bench_normal(void)
{
    uint64_t a = (rng_state += 0x9E3779B97F4A7C15ull), b = (rng_state += 0x9E3779B97F4A7C15ull);
    a = (a ^ (a >> 30)) * 0xBF58476D1CE4E5B9ull, a ^= a >> 27;
    b = (b ^ (b >> 30)) * 0xBF58476D1CE4E5B9ull, b ^= b >> 27;
    double u1 = ((a >> 11) + 1) * 0x1.0p-53, u2 = (b >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void zf_bench_fill_normal(float *x, size_t n, double sigma)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(sigma * zf_bench_normal());
}

void zf_bench_make_hessian(int64_t in, int64_t ntok, float *H, const char *prog)
{
    const int64_t k = 64;
    float *X = zf_bench_xmalloc((size_t)ntok * (size_t)in * sizeof(float), prog);
    float *Y = zf_bench_xmalloc((size_t)ntok * (size_t)k * sizeof(float), prog);
    float *R = zf_bench_xmalloc((size_t)k * (size_t)in * sizeof(float), prog);
    zf_bench_fill_normal(X, (size_t)ntok * (size_t)in, 1.0);
    zf_bench_fill_normal(Y, (size_t)ntok * (size_t)k, 1.0);
    zf_bench_fill_normal(R, (size_t)k * (size_t)in, 1.0 / sqrt((double)k));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ntok, (int)in, (int)k, 1.0f, Y, (int)k, R, (int)in,
                1.0f, X, (int)in);
    for (int o = 0; o < 8; o++) {
        int64_t c = (int64_t)((uint64_t)(zf_bench_normal() * 1e9) % (uint64_t)in);
        for (int64_t t = 0; t < ntok; t++) X[t * in + c] *= 10.0f;
    }
    zf_hessian h;
    if (zf_hessian_init(&h, in, false) != ZF_OK || zf_hessian_add(&h, X, ntok) != ZF_OK ||
        zf_hessian_finalize(&h, H) != ZF_OK) {
        fprintf(stderr, "%s: Hessian: %s\n", prog, zf_last_error());
        exit(2);
    }
    zf_hessian_free(&h);
    free(X), free(Y), free(R);
}
