/* Round-to-nearest: one grid per row (or per row and group), every weight rounded independently, on any backend. */
#include "worker/rtn.h"

#include "worker/qrun.h"

zf_status zf_rtn_run(zf_qrun *r, zf_grid_kind grid)
{
    const int64_t rows = r->rows, cols = r->cols, gs = r->gs ? r->gs : cols;
    for (int64_t g = 0; g < r->ngroups; g++) {
        const int64_t c0 = g * gs, len = cols - c0 < gs ? cols - c0 : gs;
        ZF_TRY(r->i->grid_fit(r->qs, grid, r->W + c0, rows, len, cols, r->H ? r->H + c0 * cols + c0 : NULL, cols,
                              NULL, r->scale + g, r->ngroups, r->zero + g));
    }
    return r->i->rtn_codes(r->qs, r->W, rows, cols, gs, r->ngroups, r->scale, r->zero, r->q);
}
