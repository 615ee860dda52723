/* Allocation and release of quantized-matrix results. */
#include "worker/qresult.h"

#include <stdlib.h>
#include <string.h>

zf_status zf_qresult_alloc(zf_qresult *r, int64_t rows, int64_t cols, int64_t ngroups, int bits)
{
    memset(r, 0, sizeof *r);
    if (rows <= 0 || cols <= 0 || ngroups < 1 || ngroups > cols)
        return zf_fail(ZF_ERR_INPUT, "quantized matrix [%lld x %lld] with %lld groups: expected positive sizes and "
                       "1 .. cols groups", (long long)rows, (long long)cols, (long long)ngroups);
    if ((uint64_t)rows >= ((uint64_t)1 << 31) || (uint64_t)cols >= ((uint64_t)1 << 31))
        return zf_fail(ZF_ERR_INPUT, "quantized matrix [%lld x %lld]: each side must be below 2^31",
                       (long long)rows, (long long)cols);
    if (bits < 2 || bits > 8) return zf_fail(ZF_ERR_INPUT, "bits = %d: expected 2 .. 8", bits);
    const size_t rc = (size_t)rows * (size_t)cols, rg = (size_t)rows * (size_t)ngroups;
    r->rows = rows;
    r->cols = cols;
    r->ngroups = ngroups;
    r->bits = bits;
    r->q = zf_calloc(rc, 1, "quantized codes");
    r->scale = zf_calloc(rg, sizeof(float), "quantization scales");
    r->zero = zf_calloc(rg, sizeof(float), "quantization zero points");
    r->g_idx = zf_calloc((size_t)cols, sizeof(int32_t), "group index");
    r->zeta = zf_calloc((size_t)cols, sizeof(float), "zeta");
    r->deq = zf_calloc(rc, sizeof(float), "dequantized weights");
    if (!r->q || !r->scale || !r->zero || !r->g_idx || !r->zeta || !r->deq) {
        zf_qresult_free(r);
        return ZF_ERR_NOMEM;
    }
    for (int64_t j = 0; j < cols; j++) r->zeta[j] = 1.0f;
    return ZF_OK;
}

void zf_qresult_free(zf_qresult *r)
{
    free(r->q), free(r->scale), free(r->zero), free(r->g_idx), free(r->zeta), free(r->deq);
    memset(r, 0, sizeof *r);
}
