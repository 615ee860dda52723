/* Internal to the device quantizer: the per-call context, the scalar quantizer in exact fp32, and the entry points shared by cuda_*.cu. */
#ifndef ZF_CUDA_QUANT_H
#define ZF_CUDA_QUANT_H

/* The worker headers are C: their functions keep C linkage. */
extern "C" {
#include "common/log.h"
#include "common/status.h"
#include "worker/backend.h"
#include "worker/grid.h"
#include "worker/quant.h"
#include "worker/zfold.h"
}

#include "worker/cuda/cuda_internal.h"

/* One zf_cuda_quantize call: sizes, options and every device buffer (NULL when the method does not need it). */
typedef struct {
    zf_cuda *cu;
    const zf_quant_opts *o;
    const float *Hh;          /* host Hessian (may be NULL for RTN) */
    int64_t rows, cols, ngroups;
    int64_t gs;               /* group size, 0 = per channel */
    int64_t chunk;            /* rows per GEMM in the quadratic forms and the Hessian-scored grid */
    float maxq;

    float *W;                 /* [rows, cols] original weights */
    float *H;                 /* [cols, cols] undamped Hessian */
    float *A, *B;             /* [rows, cols] scratch each */
    float *D, *E;             /* [chunk, cols] GEMM output and Hessian-grid candidate errors */
    float *U;                 /* [cols, cols] OPTQ factor */
    float *Err;               /* [block, rows] OPTQ block errors */
    float *hbuf;              /* [gs, gs] permuted group Hessian (dynamic groups, Hessian grid) */
    float *scale, *zero;      /* [rows, ngroups] */
    float *zeta, *zp;         /* [cols] ζ in original and in processing order */
    float *rng, *cand;        /* [2·rows] row ranges, current candidate grids */
    double *best;             /* [rows] best Hessian-grid score */
    double *rowd;             /* [2·rows] row sums of the quadratic forms */
    double *coln;             /* [2·cols] ζ numerators and denominators */
    uint8_t *q, *Qt;          /* [rows, cols] codes; OPTQ codes in processing order [cols, rows] */
    int32_t *perm, *gidx;     /* [cols] */
    int *flag;                /* [1] device status word */
    void *work;               /* cuSOLVER device workspace */
    size_t work_bytes;

    /* host scratch */
    void *hwork;
    size_t hwork_bytes;
    double *hd;               /* 2·rows + 2·cols + 2·cols doubles */
    float *hf;                /* 2·rows + cols floats */
    int32_t *hperm;           /* [cols] */
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

/* zf_grid_fit on device data: W [rows, n] stride ldw, H [n, n] stride ldh (HESSIAN only), zeta [n] or NULL;
 * results at scale[r·lds], zero[r·lds] (device). rows <= c->rows, n <= c->cols. */
zf_status zf_cq_grid_fit(zf_cq *c, zf_grid_kind kind, const float *W, int64_t rows, int64_t n, int64_t ldw,
                         const float *H, int64_t ldh, const float *zeta, float *scale, int64_t lds, float *zero);

/* zf_quadform_rows on device data A, B [rows, n] (B may be NULL) with c->H (n = c->cols): results on the host. */
zf_status zf_cq_quadform(zf_cq *c, const float *A, const float *B, int64_t rows, double *aa, double *ab);

/* RTN with `grid` into c->q, c->scale, c->zero (device). */
zf_status zf_cq_rtn(zf_cq *c, zf_grid_kind grid);

/* zf_optq on the device: codes into c->q, grids into c->scale/c->zero; fills out's g_idx, damp_used, damp_retries,
 * dead_inputs, t_factor, t_loop. fix_scale/fix_zero/zeta are host arrays (or NULL) as in zf_optq. */
zf_status zf_cq_optq(zf_cq *c, const float *fix_scale, const float *fix_zero, const float *zeta, zf_qresult *out);

/* zf_zfold on the device: ALS with host copies of the small state, then zf_cq_optq or the ALS codes. */
zf_status zf_cq_zfold(zf_cq *c, const zf_zeta_tie *tie, zf_qresult *out);

#endif
