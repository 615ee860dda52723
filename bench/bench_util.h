/* Helpers shared by the CPU and GPU benches: option lists and allocation that ends the bench on failure. */
#ifndef ZF_BENCH_UTIL_H
#define ZF_BENCH_UTIL_H

#include <stddef.h>

/* Whether name is in the comma-separated list (a NULL list selects everything). */
int zf_bench_listed(const char *list, const char *name);
/* malloc that prints "<prog>: out of memory (N bytes)" and exits 2 on failure. */
void *zf_bench_xmalloc(size_t n, const char *prog);

#endif
