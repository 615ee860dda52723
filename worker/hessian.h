/* Hessian accumulation H = 2/N Σ x xᵀ over calibration tokens (SYRK), fp32 or fp64 accumulation. */
#ifndef ZF_HESSIAN_H
#define ZF_HESSIAN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"

typedef struct {
    int64_t dim;
    int64_t ntokens;   /* N so far */
    bool fp64;
    float *sum32;      /* [dim, dim] Σ x xᵀ (full symmetric after finalize), when !fp64 */
    double *sum64;     /* same, when fp64 */
} zf_hessian;

zf_status zf_hessian_init(zf_hessian *h, int64_t dim, bool fp64);
void zf_hessian_free(zf_hessian *h);
void zf_hessian_reset(zf_hessian *h);
/* Adds the rows of x [ntok, dim] (row-major). */
zf_status zf_hessian_add(zf_hessian *h, const float *x, int64_t ntok);
/* Adds another accumulator of the same dim (sum of partial sums, as a reduction does). */
zf_status zf_hessian_merge(zf_hessian *h, const zf_hessian *other);
/* Writes H = 2/N · Σ x xᵀ as a full symmetric fp32 matrix [dim, dim]. N = 0 gives zeros. */
zf_status zf_hessian_finalize(const zf_hessian *h, float *H);

#endif
