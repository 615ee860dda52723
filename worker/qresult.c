/* Allocation and release of quantized-matrix results. */
#include "worker/qresult.h"

#include <stdlib.h>
#include <string.h>

zf_status zf_qresult_alloc_codes(zf_qresult *r, int64_t rows, int64_t cols, int64_t ngroups, int bits)
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
    if (!r->q || !r->scale || !r->zero || !r->g_idx || !r->zeta) {
        zf_qresult_free(r);
        return ZF_ERR_NOMEM;
    }
    for (int64_t j = 0; j < cols; j++) r->zeta[j] = 1.0f;
    return ZF_OK;
}

zf_status zf_qresult_alloc(zf_qresult *r, int64_t rows, int64_t cols, int64_t ngroups, int bits)
{
    ZF_TRY(zf_qresult_alloc_codes(r, rows, cols, ngroups, bits));
    r->deq = zf_calloc((size_t)rows * (size_t)cols, sizeof(float), "dequantized weights");
    if (r->deq) return ZF_OK;
    zf_qresult_free(r);
    return ZF_ERR_NOMEM;
}

void zf_qresult_free(zf_qresult *r)
{
    free(r->q), free(r->scale), free(r->zero), free(r->g_idx), free(r->zeta), free(r->deq);
    memset(r, 0, sizeof *r);
}

int64_t zf_codes_packed_bytes(int64_t n, int bits) { return (n * bits + 7) / 8; }

void zf_codes_pack(const uint8_t *q, int64_t n, int bits, uint8_t *out)
{
    uint64_t acc = 0;
    int have = 0;
    int64_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        acc |= (uint64_t)q[i] << have;
        for (have += bits; have >= 8; have -= 8, acc >>= 8) out[o++] = (uint8_t)acc;
    }
    if (have > 0) out[o] = (uint8_t)acc;
}

void zf_codes_unpack(const uint8_t *in, int64_t n, int bits, uint8_t *q)
{
    uint64_t acc = 0, mask = (1u << bits) - 1;
    int have = 0;
    int64_t i = 0;
    for (int64_t k = 0; i < n; i++) {
        for (; have < bits; have += 8) acc |= (uint64_t)in[k++] << have;
        q[i] = (uint8_t)(acc & mask);
        acc >>= bits;
        have -= bits;
    }
}
