/* Helpers shared by the CPU and GPU benches: option lists and allocation that ends the bench on failure. */
#include "bench_util.h"

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
