/* Round-to-nearest: one grid per row (or per row and group), every weight rounded independently. */
#include "worker/rtn.h"

#include "worker/grid.h"

zf_status zf_rtn(const zf_quant_opts *o, zf_grid_kind grid, const float *W, int64_t rows, int64_t cols,
                 const float *H, zf_qresult *out)
{
    const int64_t gs = o->group_size > 0 ? o->group_size : cols;
    const int64_t ngroups = (cols + gs - 1) / gs;
    ZF_ASSERT(out->rows == rows && out->cols == cols && out->ngroups == ngroups);
    for (int64_t g = 0; g < ngroups; g++) {
        const int64_t c0 = g * gs, len = cols - c0 < gs ? cols - c0 : gs;
        ZF_TRY(zf_grid_fit(o, grid, W + c0, rows, len, cols, H ? H + c0 * cols + c0 : NULL, cols, NULL,
                           out->scale + g, ngroups, out->zero + g));
    }
    const float maxq = (float)((1 << o->bits) - 1);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            const int64_t k = r * ngroups + j / gs;
            out->q[r * cols + j] = (uint8_t)zf_qcode(W[r * cols + j], out->scale[k], out->zero[k], maxq);
        }
    for (int64_t j = 0; j < cols; j++) out->g_idx[j] = (int32_t)(j / gs);
    return ZF_OK;
}
