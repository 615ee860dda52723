/* CUDA emulation: the fp16 storage type and its round-to-nearest-even conversions. */
#ifndef ZF_CUDA_EMU_FP16_H
#define ZF_CUDA_EMU_FP16_H

#include <string.h>

struct __half {
    unsigned short x;
};

static inline __half __float2half_rn(float f)
{
    _Float16 h = (_Float16)f; /* IEEE binary16, rounded to nearest even */
    __half r;
    memcpy(&r.x, &h, sizeof r.x);
    return r;
}

static inline float __half2float(__half h)
{
    _Float16 v;
    memcpy(&v, &h.x, sizeof v);
    return (float)v;
}

#endif
