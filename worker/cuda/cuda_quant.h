/* Internal to the device quantizer: the session, the scalar quantizer in exact fp32, and the primitives shared by cuda_*.cu. */
#ifndef ZF_CUDA_QUANT_H
#define ZF_CUDA_QUANT_H

/* The worker headers are C: their functions keep C linkage. */
extern "C" {
#include "common/log.h"
#include "common/status.h"
#include "worker/backend_impl.h"
#include "worker/grid.h"
#include "worker/quant.h"
}

#include "worker/cuda/cuda_internal.h"

/* One quantization session: sizes, options and the device scratch of the primitives (the layer's buffers are the
 * caller's, from the table's alloc). */
typedef struct {
    zf_cuda *cu;
    const zf_quant_opts *o;
    int64_t rows, cols;
    int64_t chunk;            /* rows per GEMM in the quadratic forms and the Hessian-scored grid */
    float maxq;
    cublasMath_t math;        /* the cuBLAS math mode to restore at the end */
    bool math_saved;

    float *D, *E;             /* [chunk, cols] GEMM output and Hessian-grid candidate errors */
    float *rng, *cand;        /* [2·rows] row ranges, current candidate grids */
    double *best;             /* [rows] best Hessian-grid score */
    double *rowd;             /* [4·rows] row sums of the quadratic forms and of the group refit */
    double *coln;             /* [2·cols + rows] ζ numerators and denominators; coldot's sums (cols or rows of them) */
    int *flag;                /* [1] device status word */
    void *work;               /* cuSOLVER device workspace */
    size_t work_bytes;
    void *hwork;              /* cuSOLVER host workspace */
    size_t hwork_bytes;
} zf_cq;

/* Exact fp32 scalar quantizer: the _rn intrinsics keep nvcc from fusing into FMAs so the codes and the error
 * feedback round exactly like the host's separate operations. rintf rounds half to even like zf_round_even. */
__device__ __forceinline__ float zf_d_qcode(float w, float s, float z, float maxq)
{
    float q = __fadd_rn(rintf(__fdiv_rn(w, s)), z);
    return q < 0.0f ? 0.0f : (q > maxq ? maxq : q);
}

__device__ __forceinline__ float zf_d_dequant(float q, float s, float z) { return __fmul_rn(s, __fsub_rn(q, z)); }

/* zf_grid_candidate in double with the same operations (no contraction). */
__device__ __forceinline__ void zf_d_candidate(double xmin, double xmax, double p, int bits, bool sym, int zr,
                                               float *scale, float *zero)
{
    const double maxq = (double)((1 << bits) - 1);
    const double lo = __dmul_rn(p, xmin), hi = __dmul_rn(p, xmax);
    const double s = __ddiv_rn(__dsub_rn(hi, lo), maxq);
    double z;
    if (sym) {
        z = (maxq + 1.0) / 2.0;
    } else {
        const double t = __ddiv_rn(-lo, s);
        z = zr == ZF_ZR_FLOOR ? floor(t) : zr == ZF_ZR_CEIL ? ceil(t) : rint(t);
        z = z < 0.0 ? 0.0 : (z > maxq ? maxq : z);
    }
    *scale = (float)s;
    *zero = (float)z;
}

/* Clip ratio i of the MMSE and Hessian searches: 1 - i/grid_points, as on the host. */
__device__ __forceinline__ double zf_d_ratio(int i, int points) { return __dsub_rn(1.0, __ddiv_rn((double)i, (double)points)); }

/* Launch check and stream sync. */
zf_status zf_cq_launched(zf_cq *c);
zf_status zf_cq_sync(zf_cq *c);
zf_status zf_cq_h2d(zf_cq *c, void *dev, const void *host, size_t bytes);
zf_status zf_cq_d2h(zf_cq *c, void *host, const void *dev, size_t bytes);

/* cuSOLVER's POTRF and TRTRI workspaces for an [n, n] factor, kept in the session for every attempt. */
zf_status zf_cq_chol_workspace(zf_cq *c, cusolverDnParams_t params, float *U, int64_t n);

/* The table's quantization primitives (worker/backend_impl.h), qs a zf_cq. */
zf_status zf_cq_begin(void *ctx, const zf_quant_opts *o, int64_t rows, int64_t cols, bool hessian, void **qs);
void zf_cq_end(void *qs, zf_status st);
zf_status zf_cq_grid_fit(void *qs, zf_grid_kind kind, const float *W, int64_t rows, int64_t n, int64_t ldw,
                         const float *H, int64_t ldh, const float *zeta, float *scale, int64_t lds, float *zero);
zf_status zf_cq_quadform(void *qs, const float *A, const float *B, int64_t rows, const float *H, double *aa,
                         double *ab);
zf_status zf_cq_rtn_codes(void *qs, const float *W, int64_t rows, int64_t cols, int64_t gs, int64_t ngroups,
                          const float *scale, const float *zero, uint8_t *q);
zf_status zf_cq_dequant(void *qs, const float *W, const uint8_t *q, const float *scale, const float *zero,
                        const float *zeta, const int32_t *gidx, int64_t gs, int64_t ngroups, int64_t rows,
                        int64_t cols, float *deq, float *dW);
zf_status zf_cq_zstate(void *qs, const float *W, int64_t rows, int64_t cols, const float *alpha, const float *zero,
                       const float *zeta, float *Wt, float *dW, uint8_t *q);
zf_status zf_cq_zgrid_diag(void *qs, const float *X, int64_t rows, int64_t cols, int64_t ldx, const float *g,
                           int stride, int window, float *scale, int64_t lds, float *zero, double *score);
zf_status zf_cq_zrow_sums(void *qs, const float *W, const uint8_t *q, const float *scale, const float *zero,
                          const float *zeta, const float *v, int64_t rows, int64_t cols, double *out);
zf_status zf_cq_rowdot(void *qs, const float *A, int64_t rows, int64_t cols, const float *X, int64_t ldx, double *out);
zf_status zf_cq_hmul(void *qs, const float *A, int64_t rows, const float *H, float *D);
zf_status zf_cq_zeta_sums(void *qs, const float *W, int64_t rows, int64_t cols, const float *alpha,
                          const float *zero, const float *zeta, double *num, double *den);
zf_status zf_cq_div_cols(void *qs, const float *W, int64_t rows, int64_t cols, const float *zeta, float *X);
zf_status zf_cq_gather_t(void *qs, const float *W, const float *H, int64_t rows, int64_t n, const int32_t *perm,
                         float *Wt);
zf_status zf_cq_slice_static(void *qs, const float *W, const float *H, int64_t rows, int64_t n, int64_t c0,
                             int64_t len, float *G);
zf_status zf_cq_slice_t(void *qs, const float *Wt, int64_t rows, int64_t c0, int64_t len, float *G);
zf_status zf_cq_group_hess(void *qs, const float *H, int64_t n, const int32_t *perm, int64_t c0, int64_t len,
                           float *Hb);
zf_status zf_cq_chol_inv(void *qs, const float *H, int64_t n, const int32_t *perm, float lambda, float *U,
                         zf_chol_result *res);
zf_status zf_cq_tri_solve(void *qs, const float *U, int64_t n, bool trans, float *B, int64_t cols);
zf_status zf_cq_optq_block(void *qs, const zf_optq_bufs *b, int64_t i1, int64_t i2);
zf_status zf_cq_coldot(void *qs, const float *A, const float *B, int64_t rows, int64_t cols, double *out);
zf_status zf_cq_hgram(void *qs, const float *A, int64_t rows, const float *H, float *M);
zf_status zf_cq_chol_solve(void *qs, float *M, int64_t n, float lambda, float *x, zf_chol_result *res);
zf_status zf_cq_group_sums(void *qs, const float *Y, const uint8_t *q, const float *zero, int64_t lds,
                           const float *zeta, const float *H, int64_t rows, int64_t c0, int64_t len, float *scratch,
                           double *out);
zf_status zf_cq_group_update(void *qs, float *Y, const uint8_t *q, float *scale, float *zero, int64_t lds,
                             const float *anew, const float *znew, const float *zeta, const float *H, int64_t rows,
                             int64_t c0, int64_t len, int64_t y0, float *scratch);
zf_status zf_cq_unpermute(void *qs, const uint8_t *Qt, int64_t rows, int64_t n, const int32_t *perm, uint8_t *q);

#endif
