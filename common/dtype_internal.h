/* Scalar fp16/bf16 conversions behind dtype.c, exported for the tests that hold them to exact values. */
#ifndef ZF_DTYPE_INTERNAL_H
#define ZF_DTYPE_INTERNAL_H

#include <stdint.h>

float zf_f16_to_f32(uint16_t h);
uint16_t zf_f32_to_f16(float f);   /* round to nearest even; overflow to inf; NaN stays NaN */
float zf_bf16_to_f32(uint16_t b);
uint16_t zf_f32_to_bf16(float f);  /* round to nearest even; NaN stays NaN */

#endif
