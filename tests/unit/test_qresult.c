/* Quantized results on the wire and at install: packed codes against a bit-by-bit reference, the unfolded weight
 * against a double-precision dequantization, and the quantizer's own deq reproduced from codes, grids and ζ. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "worker/backend.h"
#include "worker/qblock.h"
#include "worker/qresult.h"

/* Bit k of code i is bit i·bits + k of the stream, least significant bit of each byte first. */
static int ref_bit(const uint8_t *packed, int64_t bit) { return (packed[bit / 8] >> (bit % 8)) & 1; }

static void test_pack(void)
{
    zt_rng rng;
    zt_rng_seed(&rng, 17);
    const int64_t lengths[] = {1, 7, 8, 9, 63, 1000, 4099};
    for (int bits = 1; bits <= 8; bits++)
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            int64_t n = lengths[li];
            uint8_t *q = malloc((size_t)n), *back = malloc((size_t)n);
            int64_t nb = zf_codes_packed_bytes(n, bits);
            CHECK(nb == (n * bits + 7) / 8);
            uint8_t *packed = malloc((size_t)nb);
            for (int64_t i = 0; i < n; i++) q[i] = (uint8_t)(zt_rng_u64(&rng) & ((1u << bits) - 1));
            memset(packed, 0xA5, (size_t)nb);
            zf_codes_pack(q, n, bits, packed);
            int wrong = 0;
            for (int64_t i = 0; i < n; i++) {
                int v = 0;
                for (int k = 0; k < bits; k++) v |= ref_bit(packed, i * bits + k) << k;
                wrong += v != q[i];
            }
            for (int64_t bit = n * bits; bit < nb * 8; bit++) wrong += ref_bit(packed, bit); /* padding is zero */
            CHECK_MSG(wrong == 0, "%d bits, %lld codes: %d wrong", bits, (long long)n, wrong);
            memset(back, 0xFF, (size_t)n);
            zf_codes_unpack(packed, n, bits, back);
            CHECK_MSG(!memcmp(q, back, (size_t)n), "%d bits, %lld codes: unpack differs", bits, (long long)n);
            free(q);
            free(back);
            free(packed);
        }
}

/* A real quantizer result (OPTQ and Z-FOLD, grouped): the unfolded weight rebuilt from what travels equals the
 * quantizer's deq, and matches (scale·ζ)(q − zero) in double to fp32 rounding. */
static void test_unfolded(zf_method method, int group_size)
{
    const int64_t rows = 24, cols = 40, ntok = 200;
    zt_rng rng;
    zt_rng_seed(&rng, 5 + (uint64_t)method);
    float *W = malloc(sizeof(float) * rows * cols), *X = malloc(sizeof(float) * ntok * cols);
    float *H = malloc(sizeof(float) * cols * cols), *w = malloc(sizeof(float) * rows * cols);
    zt_fill_normal(&rng, W, rows * cols, 0.05);
    zt_correlated_inputs(&rng, X, ntok, cols, 2, 8.0);
    zt_hessian_ref(X, ntok, cols, H);
    zf_quant_opts o;
    zf_quant_opts_default(&o);
    o.method = method;
    o.bits = 3;
    o.group_size = group_size;
    zf_backend *be = NULL;
    zf_backend_opts bo = {.kind = ZF_BACKEND_CPU, .device = -1};
    CHECK_OK(zf_backend_open(&bo, &be));
    zf_qresult r;
    memset(&r, 0, sizeof r);
    CHECK_OK(zf_backend_quantize(be, &o, W, rows, cols, H, NULL, &r));
    if (r.deq) {
        zf_qresult_unfolded(&r, w);
        double worst = 0, ref_worst = 0;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                int64_t k = i * r.ngroups + r.g_idx[j];
                double ref = (double)r.scale[k] * (double)r.zeta[j] * ((double)r.q[i * cols + j] - (double)r.zero[k]);
                worst = fmax(worst, fabs((double)w[i * cols + j] - (double)r.deq[i * cols + j]));
                ref_worst = fmax(ref_worst, fabs((double)w[i * cols + j] - ref) / fmax(fabs(ref), 1e-30));
            }
        CHECK_MSG(worst <= 1e-7, "%s, group %d: rebuilt weight differs from deq by %g", zf_method_name(method),
                  group_size, worst);
        CHECK_MSG(ref_worst <= 3e-7, "%s, group %d: relative error %g against the double reference",
                  zf_method_name(method), group_size, ref_worst);
    }
    CHECK(r.deq != NULL);
    zf_qresult_free(&r);
    zf_backend_close(be);
    free(W);
    free(X);
    free(H);
    free(w);
}

int main(void)
{
    test_pack();
    test_unfolded(ZF_METHOD_OPTQ, 0);
    test_unfolded(ZF_METHOD_OPTQ, 8);
    test_unfolded(ZF_METHOD_ZFOLD, 0);
    return zt_finish("test_qresult");
}
