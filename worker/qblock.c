/* A quantized block's storage and the deployable weight of a quantized layer. */
#include "worker/qblock.h"

#include "worker/grid.h"

void zf_qblock_release(zf_qblock *q)
{
    for (int l = 0; l < ZF_NLIN; l++) zf_qresult_free(&q->lin[l]);
    zf_block_free(&q->folded);
    zf_block_free(&q->unfolded);
}

void zf_qresult_deploy(const zf_qresult *r, float *w)
{
    for (int64_t i = 0; i < r->rows; i++)
        for (int64_t j = 0; j < r->cols; j++) {
            int64_t g = r->g_idx[j];
            w[i * r->cols + j] = r->scale[i * r->ngroups + g] * ((float)r->q[i * r->cols + j] - r->zero[i * r->ngroups + g]);
        }
}

void zf_qresult_unfolded(const zf_qresult *r, float *w)
{
    for (int64_t i = 0; i < r->rows; i++)
        for (int64_t j = 0; j < r->cols; j++) {
            int64_t k = i * r->ngroups + r->g_idx[j];
            w[i * r->cols + j] = zf_dequant((float)r->q[i * r->cols + j], r->scale[k] * r->zeta[j], r->zero[k]);
        }
}
