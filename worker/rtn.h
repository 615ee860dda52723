/* Round-to-nearest quantization on per-channel or group-wise grids. */
#ifndef ZF_RTN_H
#define ZF_RTN_H

#include "worker/qrun.h"

/* Fits grids of kind `grid` (r->H needed only for ZF_GRID_HESSIAN; group g uses its diagonal block) per output row,
 * or per row and group of o->group_size columns, and rounds W to them: r->q, r->scale, r->zero. */
zf_status zf_rtn_run(zf_qrun *r, zf_grid_kind grid);

#endif
