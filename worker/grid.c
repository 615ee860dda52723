/* Quantization grids per output row: min-max, MMSE clip search, Hessian-scored clip × zero search; H quadratic forms. */
#include "worker/grid.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows per GEMM in the Hessian-scored search and the quadratic forms: keeps scratch at O(chunk·n) while the GEMM
 * is still tall enough to run near the machine's SGEMM rate. */
#define ZF_QF_CHUNK 256

/* All arithmetic in double from float inputs, so a test can reproduce the grid bit for bit. The zero point is
 * clamped to [0, maxq]: it is stored as a b-bit integer (GPTQ qzeros), and although 0 ∈ [xmin, xmax] keeps
 * -xmin/scale inside [0, maxq] mathematically, floor/ceil of a quotient rounded up past maxq would leave it. */
void zf_grid_candidate(double xmin, double xmax, double p, int bits, bool sym, zf_zero_rounding zr, float *scale,
                       float *zero)
{
    const double maxq = (double)((1 << bits) - 1);
    const double lo = p * xmin, hi = p * xmax;
    const double s = (hi - lo) / maxq;
    double z;
    if (sym) {
        z = (maxq + 1.0) / 2.0;
    } else {
        double t = -lo / s;
        z = zr == ZF_ZR_FLOOR ? floor(t) : zr == ZF_ZR_CEIL ? ceil(t) : nearbyint(t);
        z = z < 0.0 ? 0.0 : (z > maxq ? maxq : z);
    }
    *scale = (float)s;
    *zero = (float)z;
}

void zf_grid_range(const float *w, int64_t n, bool sym, float *xmin, float *xmax)
{
    float lo = 0.0f, hi = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        lo = w[j] < lo ? w[j] : lo;
        hi = w[j] > hi ? w[j] : hi;
    }
    if (sym) {
        hi = -lo > hi ? -lo : hi;
        lo = -hi;
    }
    if (lo == 0.0f && hi == 0.0f) {
        lo = -1.0f;
        hi = 1.0f;
    }
    *xmin = lo;
    *xmax = hi;
}

/* Reference MMSE: ratios p = 1 - i/grid for i < max_shrink·grid, error Σ |deq - w|^norm, first strict minimum. */
static void fit_mmse_row(const zf_quant_opts *o, const float *w, int64_t n, float xmin, float xmax, float *scale,
                         float *zero)
{
    const float maxq = (float)((1 << o->bits) - 1);
    const int nshrink = (int)floor(o->max_shrink * o->grid_points + 1e-9);
    const float norm = (float)o->mmse_norm;
    const int sq = o->mmse_norm == 2.0;
    double best = INFINITY;
    zf_grid_candidate(xmin, xmax, 1.0, o->bits, o->sym, ZF_ZR_ROUND, scale, zero);
    for (int i = 0; i < nshrink; i++) {
        float s, z;
        zf_grid_candidate(xmin, xmax, 1.0 - (double)i / o->grid_points, o->bits, o->sym, ZF_ZR_ROUND, &s, &z);
        double err = 0.0;
        for (int64_t j = 0; j < n; j++) {
            float d = fabsf(zf_dequant(zf_qcode(w[j], s, z, maxq), s, z) - w[j]);
            /* pow in double rounded to float: the same term on every host (powf's rounding varies by CPU); the
             * GPU's pow may differ by an ulp before that rounding */
            err += sq ? (double)(d * d) : (double)(float)pow((double)d, (double)norm);
        }
        if (err < best) {
            best = err;
            *scale = s;
            *zero = z;
        }
    }
}

/* Official `--use-hessian` search: every clip ratio × {floor, ceil} zero, each scored for a chunk of rows by one
 * GEMM (Δ⊙ζ)·H; the first strict minimum per row wins. */
static zf_status fit_hessian(const zf_quant_opts *o, const float *W, int64_t rows, int64_t n, int64_t ldw,
                             const float *H, int64_t ldh, const float *zeta, const float *xmin, const float *xmax,
                             float *scale, int64_t lds, float *zero)
{
    const float maxq = (float)((1 << o->bits) - 1);
    const int64_t ch = rows < ZF_QF_CHUNK ? rows : ZF_QF_CHUNK;
    float *dw = zf_malloc((size_t)ch * (size_t)n * sizeof(float), "Hessian grid: weight error chunk");
    float *dh = zf_malloc((size_t)ch * (size_t)n * sizeof(float), "Hessian grid: error times H chunk");
    double *best = zf_malloc((size_t)ch * sizeof(double), "Hessian grid: best scores");
    float *cs = zf_malloc((size_t)ch * sizeof(float) * 2, "Hessian grid: candidate grids");
    if (!dw || !dh || !best || !cs) {
        free(dw), free(dh), free(best), free(cs);
        return ZF_ERR_NOMEM;
    }
    float *cz = cs + ch;
    const int nround = o->sym ? 1 : 2;
    for (int64_t r0 = 0; r0 < rows; r0 += ch) {
        const int64_t nr = rows - r0 < ch ? rows - r0 : ch;
        for (int64_t r = 0; r < nr; r++) best[r] = INFINITY;
        for (int i = 0; i < o->grid_points; i++) {
            const double p = 1.0 - (double)i / o->grid_points;
            for (int k = 0; k < nround; k++) {
                const zf_zero_rounding zr = o->sym ? ZF_ZR_ROUND : (k == 0 ? ZF_ZR_FLOOR : ZF_ZR_CEIL);
                for (int64_t r = 0; r < nr; r++) {
                    const float *w = W + (r0 + r) * ldw;
                    float s, z;
                    zf_grid_candidate(xmin[r0 + r], xmax[r0 + r], p, o->bits, o->sym, zr, &s, &z);
                    cs[r] = s;
                    cz[r] = z;
                    float *d = dw + r * n;
                    for (int64_t j = 0; j < n; j++) {
                        float e = w[j] - zf_dequant(zf_qcode(w[j], s, z, maxq), s, z);
                        d[j] = zeta ? e * zeta[j] : e;
                    }
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)n, (int)n, 1.0f, dw, (int)n, H,
                            (int)ldh, 0.0f, dh, (int)n);
                for (int64_t r = 0; r < nr; r++) {
                    double sc = 0.0;
                    for (int64_t j = 0; j < n; j++) sc += (double)dh[r * n + j] * dw[r * n + j];
                    if (sc < best[r]) {
                        best[r] = sc;
                        scale[(r0 + r) * lds] = cs[r];
                        zero[(r0 + r) * lds] = cz[r];
                    }
                }
            }
        }
    }
    free(dw), free(dh), free(best), free(cs);
    return ZF_OK;
}

zf_status zf_grid_fit(const zf_quant_opts *o, zf_grid_kind kind, const float *W, int64_t rows, int64_t n, int64_t ldw,
                      const float *H, int64_t ldh, const float *zeta, float *scale, int64_t lds, float *zero)
{
    ZF_ASSERT(rows > 0 && n > 0 && ldw >= n);
    float *rng = zf_malloc((size_t)rows * 2 * sizeof(float), "grid ranges");
    if (!rng) return ZF_ERR_NOMEM;
    float *xmin = rng, *xmax = rng + rows;
    for (int64_t r = 0; r < rows; r++) zf_grid_range(W + r * ldw, n, o->sym, &xmin[r], &xmax[r]);
    zf_status st = ZF_OK;
    switch (kind) {
    case ZF_GRID_MINMAX:
        for (int64_t r = 0; r < rows; r++)
            zf_grid_candidate(xmin[r], xmax[r], 1.0, o->bits, o->sym, ZF_ZR_ROUND, &scale[r * lds], &zero[r * lds]);
        break;
    case ZF_GRID_MMSE:
#pragma omp parallel for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; r++)
            fit_mmse_row(o, W + r * ldw, n, xmin[r], xmax[r], &scale[r * lds], &zero[r * lds]);
        break;
    case ZF_GRID_HESSIAN:
        if (!H) {
            st = zf_fail(ZF_ERR_INPUT, "the Hessian grid needs a Hessian (none was given)");
            break;
        }
        st = fit_hessian(o, W, rows, n, ldw, H, ldh, zeta, xmin, xmax, scale, lds, zero);
        break;
    default:
        ZF_PANIC("unknown grid kind %d", (int)kind);
    }
    free(rng);
    return st;
}

zf_status zf_quadform_rows(const float *A, const float *B, int64_t rows, int64_t n, const float *H, double *aa,
                           double *ab)
{
    const int64_t ch = rows < ZF_QF_CHUNK ? rows : ZF_QF_CHUNK;
    float *D = zf_malloc((size_t)ch * (size_t)n * sizeof(float), "quadratic form: A times H chunk");
    if (!D) return ZF_ERR_NOMEM;
    for (int64_t r0 = 0; r0 < rows; r0 += ch) {
        const int64_t nr = rows - r0 < ch ? rows - r0 : ch;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)n, (int)n, 1.0f, A + r0 * n, (int)n, H,
                    (int)n, 0.0f, D, (int)n);
        for (int64_t r = 0; r < nr; r++) {
            const float *d = D + r * n, *a = A + (r0 + r) * n;
            double s = 0.0;
            for (int64_t j = 0; j < n; j++) s += (double)d[j] * a[j];
            aa[r0 + r] = s;
            if (B && ab) {
                const float *b = B + (r0 + r) * n;
                double t = 0.0;
                for (int64_t j = 0; j < n; j++) t += (double)d[j] * b[j];
                ab[r0 + r] = t;
            }
        }
    }
    free(D);
    return ZF_OK;
}
