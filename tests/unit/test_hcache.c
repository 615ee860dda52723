/* The Hessian cache: what the key covers, exact round trips, and entries that do not fit being ignored or refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator/hcache.h"
#include "tests/testutil.h"

int main(void)
{
    int32_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = i * 7 % 31;
    int64_t starts[3] = {0, 10, 40};
    uint64_t k = zf_hcache_key(42, tok, starts, 3, 16, true, 1);
    CHECK(k == zf_hcache_key(42, tok, starts, 3, 16, true, 4)); /* fp64 sums do not depend on the rank count */
    CHECK(k != zf_hcache_key(43, tok, starts, 3, 16, true, 1)); /* another model */
    CHECK(k != zf_hcache_key(42, tok, starts, 3, 8, true, 1));  /* another window length */
    CHECK(k != zf_hcache_key(42, tok, starts, 2, 16, true, 1)); /* fewer windows */
    CHECK(k != zf_hcache_key(42, tok, starts, 3, 16, false, 1));
    CHECK(zf_hcache_key(42, tok, starts, 3, 16, false, 1) != zf_hcache_key(42, tok, starts, 3, 16, false, 2));
    tok[45] ^= 1; /* one token inside the third window */
    CHECK(k != zf_hcache_key(42, tok, starts, 3, 16, true, 1));
    tok[45] ^= 1;
    tok[30] ^= 1; /* a token no window covers */
    CHECK(k == zf_hcache_key(42, tok, starts, 3, 16, true, 1));

    zf_hcache off;
    CHECK_OK(zf_hcache_open(&off, "", k));
    CHECK(!off.enabled && !zf_hcache_has(&off, 0, ZF_GROUP_QKV, 4));

    char root[1024];
    snprintf(root, sizeof root, "%s/cache", zt_tmpdir());
    zf_hcache hc;
    CHECK_OK(zf_hcache_open(&hc, root, k));
    enum { D = 5 };
    float H[D * D], back[D * D];
    for (int i = 0; i < D * D; i++) H[i] = (float)(i * 0.37 - 3.1);
    CHECK(!zf_hcache_has(&hc, 2, ZF_GROUP_O, D));
    CHECK_OK(zf_hcache_store(&hc, 2, ZF_GROUP_O, D, H, 1.5));
    CHECK(hc.stores == 1);
    CHECK(zf_hcache_has(&hc, 2, ZF_GROUP_O, D));
    CHECK(!zf_hcache_has(&hc, 2, ZF_GROUP_O, D + 1)); /* another model's dimension */
    CHECK(!zf_hcache_has(&hc, 3, ZF_GROUP_O, D));
    CHECK(!zf_hcache_has(&hc, 2, ZF_GROUP_QKV, D));
    CHECK_OK(zf_hcache_load(&hc, 2, ZF_GROUP_O, D, back));
    CHECK(!memcmp(H, back, sizeof H) && hc.hits == 1 && hc.seconds_saved == 1.5);

    /* another key never sees the entry */
    zf_hcache other;
    CHECK_OK(zf_hcache_open(&other, root, k + 1));
    CHECK(!zf_hcache_has(&other, 2, ZF_GROUP_O, D));

    /* truncated: not there; a changed data byte: refused by name */
    char path[1200];
    snprintf(path, sizeof path, "%s/b0002-o.hess", hc.dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    fseek(f, -3, SEEK_END);
    fputc(0x55, f);
    fclose(f);
    CHECK(zf_hcache_load(&hc, 2, ZF_GROUP_O, D, back) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "b0002-o.hess") && strstr(zf_last_error(), "damaged"), "%s", zf_last_error());
    CHECK(truncate(path, 40) == 0);
    CHECK(!zf_hcache_has(&hc, 2, ZF_GROUP_O, D));
    CHECK(zf_hcache_load(&hc, 2, ZF_GROUP_O, D, back) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "shorter than its header") || strstr(zf_last_error(), "size differs"), "%s",
              zf_last_error());
    return zt_finish("test_hcache");
}
