/* GPTQ bit packing: little-endian bit streams of `bits`-bit values in 32-bit words. */
#include "common/gptq_pack.h"
#include "common/gptq_pack_internal.h"

#include <string.h>

int64_t zf_gptq_words(int64_t n, int bits) { return (n * bits + 31) / 32; }

static void put_bits(uint32_t *words, int64_t stride, int64_t index, int bits, uint32_t v)
{
    int64_t bit = index * bits, w = bit / 32;
    int sh = (int)(bit % 32);
    words[w * stride] |= v << sh;
    if (sh + bits > 32) words[(w + 1) * stride] |= v >> (32 - sh);
}

static uint32_t get_bits(const uint32_t *words, int64_t stride, int64_t index, int bits)
{
    int64_t bit = index * bits, w = bit / 32;
    int sh = (int)(bit % 32);
    uint64_t v = words[w * stride] >> sh;
    if (sh + bits > 32) v |= (uint64_t)words[(w + 1) * stride] << (32 - sh);
    return (uint32_t)(v & ((1u << bits) - 1));
}

void zf_gptq_pack_qweight(const uint8_t *q, int64_t out, int64_t in, int bits, int32_t *qweight)
{
    memset(qweight, 0, sizeof(int32_t) * (size_t)(zf_gptq_words(in, bits) * out));
    uint32_t *w = (uint32_t *)qweight;
    for (int64_t n = 0; n < out; n++)
        for (int64_t k = 0; k < in; k++) put_bits(w + n, out, k, bits, q[n * in + k]);
}

void zf_gptq_unpack_qweight(const int32_t *qweight, int64_t out, int64_t in, int bits, uint8_t *q)
{
    const uint32_t *w = (const uint32_t *)qweight;
    for (int64_t n = 0; n < out; n++)
        for (int64_t k = 0; k < in; k++) q[n * in + k] = (uint8_t)get_bits(w + n, out, k, bits);
}

void zf_gptq_pack_qzeros(const int32_t *zeros, int64_t groups, int64_t out, int bits, int offset, int32_t *qzeros)
{
    int64_t words = zf_gptq_words(out, bits);
    memset(qzeros, 0, sizeof(int32_t) * (size_t)(groups * words));
    uint32_t mask = (1u << bits) - 1;
    for (int64_t g = 0; g < groups; g++)
        for (int64_t n = 0; n < out; n++)
            put_bits((uint32_t *)qzeros + g * words, 1, n, bits, (uint32_t)(zeros[g * out + n] - offset) & mask);
}

void zf_gptq_unpack_qzeros(const int32_t *qzeros, int64_t groups, int64_t out, int bits, int offset, int32_t *zeros)
{
    int64_t words = zf_gptq_words(out, bits);
    for (int64_t g = 0; g < groups; g++)
        for (int64_t n = 0; n < out; n++)
            zeros[g * out + n] = (int32_t)get_bits((const uint32_t *)qzeros + g * words, 1, n, bits) + offset;
}
