/* Element types of tensors on disk and exact conversions between fp32, fp16 and bf16 (round to nearest even). */
#ifndef ZF_DTYPE_H
#define ZF_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    ZF_DT_F32 = 0,
    ZF_DT_F16,
    ZF_DT_BF16,
    ZF_DT_F64,
    ZF_DT_I32,
    ZF_DT_I64,
    ZF_DT_U8,
    ZF_DT_I8,
    ZF_DT_U16,
    ZF_DT_I16,
    ZF_DT_U32,
    ZF_DT_BOOL,
    ZF_DT_COUNT
} zf_dtype;

size_t zf_dtype_size(zf_dtype t);
/* safetensors spelling ("F32", "F16", "BF16", ...). */
const char *zf_dtype_name(zf_dtype t);
/* Returns 0 and sets *out when name is a known safetensors dtype, -1 otherwise. */
int zf_dtype_from_name(const char *name, zf_dtype *out);
/* True for the types a model's weights may be stored in (F32, F16, BF16). */
int zf_dtype_is_float_weight(zf_dtype t);

/* Converts n elements of a float weight type (F32/F16/BF16, little-endian, any alignment) to fp32. */
void zf_convert_to_f32(zf_dtype src_type, const void *src, float *dst, size_t n);
/* Rounds n fp32 values to bf16 (nearest even; NaN stays NaN), host byte order. */
void zf_convert_f32_to_bf16(const float *src, uint16_t *dst, size_t n);

#endif
