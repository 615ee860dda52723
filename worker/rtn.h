/* Round-to-nearest quantization on per-channel or group-wise grids. */
#ifndef ZF_RTN_H
#define ZF_RTN_H

#include "worker/quant.h"

/* Fits grids of kind `grid` (H [cols, cols] needed only for ZF_GRID_HESSIAN; group g uses its diagonal block) per
 * output row, or per row and group of o->group_size columns, and rounds W to them: fills q, scale, zero, g_idx. */
zf_status zf_rtn(const zf_quant_opts *o, zf_grid_kind grid, const float *W, int64_t rows, int64_t cols,
                 const float *H, zf_qresult *out);

#endif
