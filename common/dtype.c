/* Tensor element types: sizes, safetensors names, and exact fp16/bf16 <-> fp32 conversions (round to nearest even). */
#include "common/dtype.h"
#include "common/dtype_internal.h"

#include <string.h>

#include "common/status.h"

/* safetensors data is little-endian; F32 is copied as is. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "zfold assumes a little-endian host");

static const struct {
    const char *name;
    size_t size;
} dtype_info[ZF_DT_COUNT] = {
    [ZF_DT_F32] = {"F32", 4},  [ZF_DT_F16] = {"F16", 2}, [ZF_DT_BF16] = {"BF16", 2}, [ZF_DT_F64] = {"F64", 8},
    [ZF_DT_I32] = {"I32", 4},  [ZF_DT_I64] = {"I64", 8}, [ZF_DT_U8] = {"U8", 1},     [ZF_DT_I8] = {"I8", 1},
    [ZF_DT_U16] = {"U16", 2},  [ZF_DT_I16] = {"I16", 2}, [ZF_DT_U32] = {"U32", 4},   [ZF_DT_BOOL] = {"BOOL", 1},
};

size_t zf_dtype_size(zf_dtype t)
{
    ZF_ASSERT((unsigned)t < ZF_DT_COUNT);
    return dtype_info[t].size;
}

const char *zf_dtype_name(zf_dtype t)
{
    if ((unsigned)t >= ZF_DT_COUNT) return "?";
    return dtype_info[t].name;
}

int zf_dtype_from_name(const char *name, zf_dtype *out)
{
    if (!name) return -1;
    for (int i = 0; i < ZF_DT_COUNT; i++) {
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (zf_dtype)i;
            return 0;
        }
    }
    return -1;
}

int zf_dtype_is_float_weight(zf_dtype t) { return t == ZF_DT_F32 || t == ZF_DT_F16 || t == ZF_DT_BF16; }

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float zf_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13)); /* inf, NaN keeps its payload */
    if (exp != 0) return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0) return bits_f32(sign);
    /* Subnormal: normalise the mantissa; every fp16 subnormal is an fp32 normal. */
    int e = 113;
    while (!(mant & 0x400)) {
        mant <<= 1;
        e--;
    }
    return bits_f32(sign | ((uint32_t)e << 23) | ((mant & 0x3ff) << 13));
}

uint16_t zf_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) return sign | 0x7e00 | ((x >> 13) & 0x3ff); /* NaN: quiet, keep the top payload bits */
    if (x >= 0x477ff000u) return sign | 0x7c00;                      /* >= 65520 (halfway to 2^16, tie to even) */
    if (x >= 0x38800000u) {                                          /* normal fp16 range, >= 2^-14 */
        /* Adding 0xfff + lsb rounds to nearest even; a carry into the exponent is the right answer. */
        uint32_t r = (x + 0xfffu + ((x >> 13) & 1)) >> 13;
        return sign | (uint16_t)(r - (112u << 10));
    }
    /* Subnormal fp16: value = m·2^(e-150); in units of 2^-24 that is m >> (126 - e). */
    uint32_t e = x >> 23;
    if (e < 102) return sign; /* < 2^-25: below half the smallest subnormal (m < 2^24 so never a tie) */
    uint32_t m = (x & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14 .. 24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return sign | (uint16_t)q;
}

float zf_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t zf_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040); /* quiet NaN (never rounds to inf) */
    /* Round to nearest even; overflow carries into inf as it should. */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

void zf_convert_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = zf_f32_to_bf16(src[i]);
}

void zf_convert_to_f32(zf_dtype src_type, const void *src, float *dst, size_t n)
{
    const unsigned char *p = src;
    switch (src_type) {
    case ZF_DT_F32:
        memcpy(dst, src, n * 4); /* little-endian host; memcpy handles unaligned sources */
        break;
    case ZF_DT_F16:
        for (size_t i = 0; i < n; i++) dst[i] = zf_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        break;
    case ZF_DT_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = zf_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        break;
    default:
        ZF_PANIC("zf_convert_to_f32: %s is not a float weight type", zf_dtype_name(src_type));
    }
}
