/* GPTQ packing against a bit-by-bit reference, round trips for every width 2..8, and the dequantization rule. */
#include <stdlib.h>
#include <string.h>

#include "common/gptq_pack.h"
#include "common/gptq_pack_internal.h"
#include "tests/testutil.h"

/* Reference: bit b of the stream for column n lives in word b/32, bit b%32, of that column. */
static int ref_bit(const int32_t *qweight, int64_t out, int64_t n, int64_t bit)
{
    uint32_t w = (uint32_t)qweight[(bit / 32) * out + n];
    return (int)((w >> (bit % 32)) & 1u);
}

int main(void)
{
    zt_rng rng;
    zt_rng_seed(&rng, 7);
    for (int bits = 2; bits <= 8; bits++) {
        int64_t out = 5, in = 96 + bits; /* in·bits not a multiple of 32 for most widths: exercises padding */
        uint8_t *q = malloc((size_t)(out * in)), *back = malloc((size_t)(out * in));
        int64_t words = zf_gptq_words(in, bits);
        CHECK(words == (in * bits + 31) / 32);
        int32_t *qw = malloc(sizeof(int32_t) * (size_t)(words * out));
        for (int64_t i = 0; i < out * in; i++) q[i] = (uint8_t)(zt_rng_u64(&rng) % (1u << bits));
        zf_gptq_pack_qweight(q, out, in, bits, qw);
        int bad = 0;
        for (int64_t n = 0; n < out; n++)
            for (int64_t k = 0; k < in; k++) {
                int v = 0;
                for (int b = 0; b < bits; b++) v |= ref_bit(qw, out, n, k * bits + b) << b;
                bad += v != q[n * in + k];
            }
        CHECK_MSG(bad == 0, "bits %d: %d values differ from the bit-level reference", bits, bad);
        int pad = 0;
        for (int64_t n = 0; n < out; n++)
            for (int64_t bit = in * bits; bit < words * 32; bit++) pad += ref_bit(qw, out, n, bit);
        CHECK_MSG(pad == 0, "bits %d: padding bits are not zero", bits);
        zf_gptq_unpack_qweight(qw, out, in, bits, back);
        CHECK(memcmp(q, back, (size_t)(out * in)) == 0);

        int64_t groups = 3;
        int32_t zeros[3 * 5], zback[3 * 5];
        int32_t *qz = malloc(sizeof(int32_t) * (size_t)(groups * zf_gptq_words(out, bits)));
        for (int i = 0; i < groups * out; i++) zeros[i] = 1 + (int32_t)(zt_rng_u64(&rng) % ((1u << bits) - 1));
        for (int offset = 0; offset <= 1; offset++) {
            zf_gptq_pack_qzeros(zeros, groups, out, bits, offset, qz);
            zf_gptq_unpack_qzeros(qz, groups, out, bits, offset, zback);
            CHECK_MSG(memcmp(zeros, zback, sizeof zeros) == 0, "bits %d offset %d: zero points round trip", bits, offset);
        }
        free(q);
        free(back);
        free(qw);
        free(qz);
    }
    /* 3-bit values straddle words: value 10 of a column starts at bit 30 */
    uint8_t q3[32];
    for (int k = 0; k < 32; k++) q3[k] = (uint8_t)(k == 10 ? 7 : 0);
    int32_t w3[3];
    zf_gptq_pack_qweight(q3, 1, 32, 3, w3);
    CHECK((uint32_t)w3[0] == 0xC0000000u);
    CHECK(w3[1] == 1 && w3[2] == 0);
    return zt_finish("test_gptq_pack");
}
