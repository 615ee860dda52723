/* Helpers shared by the CPU and GPU benches: option lists and allocation that ends the bench on failure. */
#include "bench/bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    double flops = 0.0, core = 0.0;
    if (o->method == ZF_METHOD_OPTQ || o->method == ZF_METHOD_ZFOLD) {
        flops = oi2 + in3;
        core = r->t_factor + r->t_loop;
    }
    if (o->method == ZF_METHOD_ZFOLD) {
        flops += (1.0 + 2.0 * als_run) * oi2;
        core += r->t_als;
    }
    *core_s = core;
    return flops;
}
