/* fp16/bf16 <-> fp32 conversions against a double-precision reference: exhaustive decode, rounding on millions of floats. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/dtype_internal.h"
#include "tests/testutil.h"

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Reference decoders written from the format definitions, in double. */
static double ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -24);
    else v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static double ref_bf16(uint16_t b)
{
    int s = b >> 15, e = (b >> 7) & 255, m = b & 127;
    double v;
    if (e == 255) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -133);
    else v = ldexp(128 + m, e - 134);
    return s ? -v : v;
}

/* Positive finite values by bit pattern (monotone), plus the "next" value that rounds to inf: 2^16 / 2^128. */
static double tab16[0x7c01], tabbf[0x7f81];

/* Nearest of the two neighbouring representable values to |v|, ties to the even bit pattern. */
static uint16_t ref_round(double v, const double *tab, int top, uint16_t inf_bits, uint16_t qnan)
{
    if (isnan(v)) return qnan;
    uint16_t sign = signbit(v) ? 0x8000 : 0;
    double a = fabs(v);
    if (a >= tab[top]) return sign | inf_bits;
    int lo = 0, hi = top; /* tab[lo] <= a < tab[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (tab[mid] <= a) lo = mid; else hi = mid;
    }
    double dl = a - tab[lo], dh = tab[hi] - a;
    int pick = dl < dh ? lo : dh < dl ? hi : ((lo & 1) ? hi : lo);
    return sign | (uint16_t)pick;
}

static int same_result(uint16_t got, uint16_t want, int is_f16)
{
    if (got == want) return 1;
    /* NaN payloads may differ; it must stay NaN with the sign kept. */
    int gnan = is_f16 ? ((got & 0x7c00) == 0x7c00 && (got & 0x3ff)) : ((got & 0x7f80) == 0x7f80 && (got & 0x7f));
    int wnan = is_f16 ? ((want & 0x7c00) == 0x7c00 && (want & 0x3ff)) : ((want & 0x7f80) == 0x7f80 && (want & 0x7f));
    return gnan && wnan && (got & 0x8000) == (want & 0x8000);
}

static long n_bad16, n_bad_bf, n_tested;

static void check_one(float f)
{
    n_tested++;
    uint16_t w16 = ref_round((double)f, tab16, 0x7c00, 0x7c00, (uint16_t)((fbits(f) >> 16 & 0x8000) | 0x7e00));
    uint16_t wbf = ref_round((double)f, tabbf, 0x7f80, 0x7f80, (uint16_t)((fbits(f) >> 16 & 0x8000) | 0x7fc0));
    uint16_t g16 = zf_f32_to_f16(f), gbf = zf_f32_to_bf16(f);
    if (!same_result(g16, w16, 1) && n_bad16++ < 10)
        fprintf(stderr, "f16(%a [0x%08x]) = 0x%04x, want 0x%04x\n", (double)f, fbits(f), g16, w16);
    if (!same_result(gbf, wbf, 0) && n_bad_bf++ < 10)
        fprintf(stderr, "bf16(%a [0x%08x]) = 0x%04x, want 0x%04x\n", (double)f, fbits(f), gbf, wbf);
}

int main(void)
{
    for (int i = 0; i <= 0x7c00; i++) tab16[i] = i == 0x7c00 ? 65536.0 : ref_f16((uint16_t)i);
    for (int i = 0; i <= 0x7f80; i++) tabbf[i] = i == 0x7f80 ? ldexp(1, 128) : ref_bf16((uint16_t)i);

    /* Exhaustive decode of all 65536 patterns of each format. */
    long bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        double r16 = ref_f16((uint16_t)i), rbf = ref_bf16((uint16_t)i);
        float g16 = zf_f16_to_f32((uint16_t)i), gbf = zf_bf16_to_f32((uint16_t)i);
        int ok16 = isnan(r16) ? (isnan(g16) && !signbit(g16) == !signbit(r16)) : (fbits(g16) == fbits((float)r16));
        int okbf = isnan(rbf) ? (isnan(gbf) && !signbit(gbf) == !signbit(rbf)) : (fbits(gbf) == fbits((float)rbf));
        if ((!ok16 || !okbf) && bad++ < 10) fprintf(stderr, "decode 0x%04x: f16 %a bf16 %a\n", i, (double)g16, (double)gbf);
        /* Exactly representable values survive a round trip bit for bit (NaN stays NaN). */
        if (!isnan(r16) && zf_f32_to_f16(g16) != i && bad++ < 10) fprintf(stderr, "f16 round trip 0x%04x\n", i);
        if (!isnan(rbf) && zf_f32_to_bf16(gbf) != i && bad++ < 10) fprintf(stderr, "bf16 round trip 0x%04x\n", i);
        if (isnan(r16)) CHECK(isnan(zf_f16_to_f32(zf_f32_to_f16(g16))));
    }
    CHECK_MSG(bad == 0, "%ld decode mismatches", bad);

    /* Edge cases: every fp16/bf16 value, the midpoints between neighbours and one float ulp either side of them. */
    for (int i = 0; i < 0x7c00; i++) {
        float lo = (float)tab16[i], mid = (float)((tab16[i] + tab16[i + 1]) / 2); /* midpoints are exact floats */
        CHECK((double)mid == (tab16[i] + tab16[i + 1]) / 2);
        float c[] = {lo, mid, nextafterf(mid, 0), nextafterf(mid, INFINITY), nextafterf(lo, 0), nextafterf(lo, INFINITY)};
        for (int k = 0; k < 6; k++) { check_one(c[k]); check_one(-c[k]); }
    }
    for (int i = 0; i < 0x7f80; i++) {
        float lo = (float)tabbf[i];
        double midd = (tabbf[i] + tabbf[i + 1]) / 2;
        float mid = (float)midd;
        float c[] = {lo, mid, nextafterf(mid, 0), nextafterf(mid, INFINITY), nextafterf(lo, 0), nextafterf(lo, INFINITY)};
        for (int k = 0; k < 6; k++) { check_one(c[k]); check_one(-c[k]); }
    }
    float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 65504.0f, 65519.99f, 65520.0f, 65536.0f,
                        3.4028235e38f, 1e-45f, 5.96e-8f, 2.98e-8f, 6.1035156e-05f, bitsf(0x7f800001u),
                        bitsf(0xffc00000u), bitsf(0x7fbfffffu), bitsf(0x33000000u), bitsf(0x33000001u), bitsf(0x32ffffffu)};
    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) check_one(specials[k]);

    /* Random bit patterns (every class of float) and random magnitudes within and around the fp16 range. */
    zt_rng r;
    zt_rng_seed(&r, 12345);
    for (int i = 0; i < 4000000; i++) check_one(bitsf((uint32_t)zt_rng_u64(&r)));
    for (int i = 0; i < 2000000; i++) {
        double e = -30.0 + 48.0 * zt_rng_uniform(&r);
        float f = (float)(exp2(e) * (zt_rng_u64(&r) & 1 ? -1 : 1));
        check_one(f);
    }
    CHECK_MSG(n_bad16 == 0, "%ld of %ld fp16 roundings differ from the reference", n_bad16, n_tested);
    CHECK_MSG(n_bad_bf == 0, "%ld of %ld bf16 roundings differ from the reference", n_bad_bf, n_tested);

    /* Specific known answers. */
    CHECK(zf_f32_to_f16(1.0f) == 0x3c00);
    CHECK(zf_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(zf_f32_to_f16(65520.0f) == 0x7c00);         /* tie between max and 2^16 goes to even -> inf */
    CHECK(zf_f32_to_f16(bitsf(0x477fefffu)) == 0x7bff); /* just below the tie */
    CHECK(zf_f32_to_f16(bitsf(0x33000000u)) == 0x0000); /* 2^-25: tie between 0 and the smallest subnormal */
    CHECK(zf_f32_to_f16(bitsf(0x33000001u)) == 0x0001);
    CHECK(zf_f32_to_f16(-0.0f) == 0x8000);
    CHECK(zf_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);   /* tie, even stays */
    CHECK(zf_f32_to_bf16(1.0f + 0x3p-8f) == 0x3f82);   /* tie, odd rounds up */
    CHECK(zf_f32_to_bf16(3.4028235e38f) == 0x7f80);    /* rounds past the largest bf16 */
    CHECK(isnan(zf_bf16_to_f32(zf_f32_to_bf16(bitsf(0x7f800001u))))); /* NaN with a low payload stays NaN */
    CHECK(isnan(zf_f16_to_f32(zf_f32_to_f16(bitsf(0x7f800001u)))));

    /* dtype table and zf_convert_to_f32 on unaligned data. */
    zf_dtype t;
    CHECK(zf_dtype_from_name("BF16", &t) == 0 && t == ZF_DT_BF16);
    CHECK(zf_dtype_from_name("F8_E4M3", &t) == -1);
    CHECK(zf_dtype_size(ZF_DT_I64) == 8 && zf_dtype_size(ZF_DT_BOOL) == 1);
    CHECK(strcmp(zf_dtype_name(ZF_DT_F16), "F16") == 0);
    CHECK(zf_dtype_is_float_weight(ZF_DT_BF16) && !zf_dtype_is_float_weight(ZF_DT_I32));
    unsigned char buf[1 + 3 * 4];
    uint16_t h[3] = {0x3c00, 0xc000, 0x0001};
    memcpy(buf + 1, h, sizeof h);
    float out[3];
    zf_convert_to_f32(ZF_DT_F16, buf + 1, out, 3);
    CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0x1p-24f);
    uint16_t b[3] = {0x3f80, 0xc040, 0x0001};
    memcpy(buf + 1, b, sizeof b);
    zf_convert_to_f32(ZF_DT_BF16, buf + 1, out, 3);
    CHECK(out[0] == 1.0f && out[1] == -3.0f && out[2] == 0x1p-133f);
    float fl[3] = {1.5f, -0.25f, 1e30f};
    memcpy(buf + 1, fl, sizeof fl);
    zf_convert_to_f32(ZF_DT_F32, buf + 1, out, 3);
    CHECK(memcmp(out, fl, sizeof fl) == 0);
    return zt_finish("test_dtype");
}
