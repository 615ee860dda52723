/* Quantization of one weight matrix [rows=out, cols=in] given its Hessian on the host: the entry point and ΔL. */
#ifndef ZF_QUANT_H
#define ZF_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "worker/qresult.h"
#include "worker/quant_opts.h"

/* Quantizes W [rows, cols] (row-major fp32, not modified) with Hessian H [cols, cols] (undamped, symmetric;
 * may be NULL for RTN with a min-max or MMSE grid). */
zf_status zf_quantize(const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols, const float *H,
                      const zf_zeta_tie *tie, zf_qresult *out);

#endif
