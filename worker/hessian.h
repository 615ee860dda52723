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
/* ZF_ERR_INPUT naming the first non-finite entry of x [ntok, dim] (one would poison every entry of H). */
zf_status zf_hessian_check_inputs(const float *x, int64_t ntok, int64_t dim);
/* One column panel of Σ x xᵀ over stored inputs X [n, dim], in double: P[i - c0][j - c0] for rows i in [c0, dim)
 * and columns j in [c0, c1) (the part of the lower triangle those columns hold), P row-major
 * [(dim - c0), (c1 - c0)]. */
zf_status zf_hessian_panel(const float *X, int64_t n, int64_t dim, int64_t c0, int64_t c1, double *P);
/* Columns per panel for dim: a panel holds at most 2^24 doubles (128 MiB). */
int64_t zf_hessian_panel_width(int64_t dim);
/* H[i][j] = H[j][i] = (float)(f · P[i - c0][j - c0]) for the lower-triangle entries panel P holds. */
void zf_hessian_store_panel(const double *P, int64_t dim, int64_t c0, int64_t c1, double f, float *H);

#endif
