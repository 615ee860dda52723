/* Quantization grids per output row (min-max, MMSE, Hessian-scored), the scalar quantizer and H-quadratic forms. */
#ifndef ZF_GRID_H
#define ZF_GRID_H

#include <math.h>
#include <stdint.h>

#include "worker/quant.h"

/* Round half to even like torch.round / rintf. Adding 1.5·2^23 moves x where the float spacing is 1, so the FPU's
 * round-to-nearest-even does the rounding; unlike rintf this vectorizes without SSE4.1. Exact for |x| < 2^22;
 * larger magnitudes stay that large, which is all the clamp that follows needs. Needs the default rounding mode
 * and no -ffast-math. Kept inline here because every quantization loop is built on it. */
static inline float zf_round_even(float x)
{
    const float magic = 12582912.0f;
    return (x + magic) - magic;
}

/* Integer code clamp(round(w / s) + z, 0, maxq), as a float. */
static inline float zf_qcode(float w, float s, float z, float maxq)
{
    float q = zf_round_even(w / s) + z;
    return q < 0.0f ? 0.0f : (q > maxq ? maxq : q);
}

/* Dequantized value s · (q - z). */
static inline float zf_dequant(float q, float s, float z) { return s * (q - z); }

/* Zero-point rounding of a candidate grid (the Hessian grid tries both floor and ceil, as the official code). */
typedef enum { ZF_ZR_ROUND = 0, ZF_ZR_FLOOR, ZF_ZR_CEIL } zf_zero_rounding;

/* The candidate grid of one row for range [xmin, xmax] (0 inside it) shrunk by ratio p, in double as documented in
 * grid.c so that tests can reproduce it exactly: scale = p(xmax - xmin)/maxq, zero = R(-p·xmin / scale) clamped to
 * [0, maxq] (asymmetric) or (maxq+1)/2 (symmetric, where xmin = -xmax). */
void zf_grid_candidate(double xmin, double xmax, double p, int bits, bool sym, zf_zero_rounding zr, float *scale,
                       float *zero);

/* The clip-ratio index i (ratio 1 - i/points, clamped to [0, points - 1]) nearest to grid scale s on [xmin, xmax]. */
static inline int zf_grid_ratio_index(float s, float xmin, float xmax, int bits, int points)
{
    const double p = (double)s * (double)((1 << bits) - 1) / ((double)xmax - (double)xmin);
    const double i = nearbyint((1.0 - p) * points);
    return i < 0.0 ? 0 : (i > points - 1 ? points - 1 : (int)i);
}

/* The range of one row as the grids use it: [min(w, 0), max(w, 0)], symmetric -> [-max|w|, max|w|],
 * all-zero -> [-1, 1]. */
void zf_grid_range(const float *w, int64_t n, bool sym, float *xmin, float *xmax);

/* Fits one grid per row of the [rows, n] block W (row stride ldw) into scale[r·lds], zero[r·lds].
 * MINMAX and MMSE (o->mmse_norm, o->grid_points, o->max_shrink) need only W. HESSIAN (o->grid_points clip ratios ×
 * {floor, ceil} zero) scores each candidate per row by (Δ⊙ζ) H (Δ⊙ζ)ᵀ with H the [n, n] Hessian block of these
 * columns (row stride ldh) and ζ the per-column weights (NULL = ones; Z-FOLD passes W ⊘ ζ and ζ). */
zf_status zf_grid_fit(const zf_quant_opts *o, zf_grid_kind kind, const float *W, int64_t rows, int64_t n, int64_t ldw,
                      const float *H, int64_t ldh, const float *zeta, float *scale, int64_t lds, float *zero);

/* Per row r of A [rows, n]: aa[r] = A_r H A_rᵀ and, when B and ab are given, ab[r] = A_r H B_rᵀ. One fp32 GEMM
 * per chunk of rows (memory stays O(chunk·n)), the row reductions in double. */
zf_status zf_quadform_rows(const float *A, const float *B, int64_t rows, int64_t n, const float *H, double *aa,
                           double *ab);


#endif
