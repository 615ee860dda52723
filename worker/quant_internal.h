/* ΔL on host arrays, for the tests. */
#ifndef ZF_QUANT_INTERNAL_H
#define ZF_QUANT_INTERNAL_H

#include "worker/quant.h"

/* ΔL = Σ_r (ΔW H ΔWᵀ)_rr in double, ΔW = W - Wq. */
double zf_delta_loss(const float *W, const float *Wq, int64_t rows, int64_t cols, const float *H);

#endif
