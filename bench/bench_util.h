/* Helpers shared by the CPU and GPU benches: option lists and allocation that ends the bench on failure. */
#ifndef ZF_BENCH_UTIL_H
#define ZF_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "worker/quant.h"

/* Whether name is in the comma-separated list (a NULL list selects everything). */
int zf_bench_listed(const char *list, const char *name);
/* malloc that prints "<prog>: out of memory (N bytes)" and exits 2 on failure. */
void *zf_bench_xmalloc(size_t n, const char *prog);

/* Seeded normal numbers (the same sequence on every machine) and the benches' Hessian: H from ntok correlated inputs,
 * X = Z + Y·R (a rank-64 shared component) with 8 outlier input channels scaled ×10. */
void zf_bench_seed(uint64_t seed);
double zf_bench_normal(void);
void zf_bench_fill_normal(float *x, size_t n, double sigma);
void zf_bench_make_hessian(int64_t in, int64_t ntok, float *H, const char *prog);

/* The flops of quantizing an [out, in] layer with o, as both benches count them: OPTQ 2·out·in² + in³; Z-FOLD adds
 * 2·out·in² per ALS GEMM (alpha lsq: 1 + 2 per ALS iteration run; grid: also one per candidate grid; diag: none).
 * *core_s gets the seconds they took (ALS, factor and column loops; 0 for RTN, which has no such phases). */
double zf_bench_quant_flops(const zf_quant_opts *o, const zf_qresult *r, int64_t out, int64_t in, double *core_s);

#endif
