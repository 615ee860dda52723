/* Quantization grids (min-max, symmetric/asymmetric, MMSE, Hessian-scored), the scalar quantizer and H quadratic
 * forms against straightforward double-precision references written here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "worker/grid.h"

#define ROWS 40
#define N 96

static zf_quant_opts opts(int bits, bool sym)
{
    zf_quant_opts o;
    zf_quant_opts_default(&o);
    o.bits = bits;
    o.sym = sym;
    return o;
}

/* ---- double references ---- */

static void ref_range(const float *w, int64_t n, bool sym, double *lo, double *hi)
{
    double a = 0, b = 0;
    for (int64_t j = 0; j < n; j++) a = fmin(a, w[j]), b = fmax(b, w[j]);
    if (sym) b = fmax(-a, b), a = -b;
    if (a == 0 && b == 0) a = -1, b = 1;
    *lo = a, *hi = b;
}

/* zr: 0 round, 1 floor, 2 ceil */
static void ref_candidate(double lo, double hi, double p, int bits, bool sym, int zr, double *s, double *z)
{
    double maxq = (1 << bits) - 1;
    *s = (p * hi - p * lo) / maxq;
    if (sym) {
        *z = (maxq + 1) / 2;
        return;
    }
    double t = -(p * lo) / *s;
    *z = zr == 1 ? floor(t) : zr == 2 ? ceil(t) : nearbyint(t);
    *z = fmin(fmax(*z, 0), maxq);
}

static double ref_code(double w, double s, double z, double maxq) { return fmin(fmax(nearbyint(w / s) + z, 0), maxq); }

static double ref_mmse_err(const float *w, int64_t n, double s, double z, int bits, double norm)
{
    double maxq = (1 << bits) - 1, e = 0;
    for (int64_t j = 0; j < n; j++) e += pow(fabs(s * (ref_code(w[j], s, z, maxq) - z) - w[j]), norm);
    return e;
}

static double ref_h_score(const float *w, int64_t n, double s, double z, int bits, const float *H, const float *zeta)
{
    double maxq = (1 << bits) - 1, *d = malloc(sizeof(double) * n), sc = 0;
    for (int64_t j = 0; j < n; j++) d[j] = (w[j] - s * (ref_code(w[j], s, z, maxq) - z)) * (zeta ? zeta[j] : 1.0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) sc += d[i] * H[i * n + j] * d[j];
    free(d);
    return sc;
}

/* ---- data ---- */

static void make_weights(zt_rng *rng, float *W)
{
    zt_fill_normal(rng, W, ROWS * N, 0.05);
    for (int j = 0; j < N; j++) W[0 * N + j] = 0.0f;                       /* all zero -> [-1, 1] */
    for (int j = 0; j < N; j++) W[1 * N + j] = fabsf(W[1 * N + j]);       /* all positive */
    for (int j = 0; j < N; j++) W[2 * N + j] = -fabsf(W[2 * N + j]);      /* all negative */
    W[3 * N + 5] = 1.5f;                                                   /* one outlier */
    W[4 * N + 7] = 0.3f, W[4 * N + 8] = -0.3f;                             /* exact halves at some grids */
}

/* Codes of the fast quantizer against the double one on the same scale; a mismatch is allowed only when w/s lies
 * within 1e-6 of a rounding boundary (float and double division may round to different sides there). */
static void check_codes(const float *W, int64_t rows, int64_t n, const float *scale, const float *zero, int bits,
                        const char *what)
{
    const float maxq = (float)((1 << bits) - 1);
    int64_t bad = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) {
            double t = (double)W[r * n + j] / scale[r];
            double fr = t - floor(t);
            float c = zf_qcode(W[r * n + j], scale[r], zero[r], maxq);
            if (c != ref_code(W[r * n + j], scale[r], zero[r], maxq) && fabs(fr - 0.5) > 1e-6 * fmax(1, fabs(t)))
                bad++;
        }
    CHECK_MSG(bad == 0, "%s: %lld codes differ from the double quantizer away from rounding ties", what,
              (long long)bad);
}

static void test_round(void)
{
    const float xs[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 0.49999997f, 3.7f, -3.7f, 1e6f + 0.5f, 4194303.5f,
                        0.0f, -0.0f, 7.0f};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) CHECK_CLOSE(zf_round_even(xs[i]), rintf(xs[i]), 0, 0);
    /* Beyond 2^22 the value only needs to stay large for the clamp. */
    CHECK(zf_qcode(1e9f, 1.0f, 3.0f, 15.0f) == 15.0f);
    CHECK(zf_qcode(-1e9f, 1.0f, 3.0f, 15.0f) == 0.0f);
    CHECK(zf_qcode(2.5f, 1.0f, 0.0f, 15.0f) == 2.0f);
    CHECK(zf_qcode(3.5f, 1.0f, 0.0f, 15.0f) == 4.0f);
}

static void test_minmax(const float *W, int bits, bool sym)
{
    zf_quant_opts o = opts(bits, sym);
    float scale[ROWS], zero[ROWS];
    CHECK_OK(zf_grid_fit(&o, ZF_GRID_MINMAX, W, ROWS, N, N, NULL, 0, NULL, scale, 1, zero));
    int ok = 1;
    for (int r = 0; r < ROWS; r++) {
        double lo, hi, s, z;
        ref_range(W + r * N, N, sym, &lo, &hi);
        ref_candidate(lo, hi, 1.0, bits, sym, 0, &s, &z);
        ok &= fabs(scale[r] - s) <= 1e-6 * s && zero[r] == z;
    }
    CHECK_MSG(ok, "min-max grid bits %d sym %d differs from the reference", bits, sym);
    /* Spot values of the definitions. */
    const double maxq = (1 << bits) - 1;
    CHECK_CLOSE(scale[0], 2.0 / maxq, 0, 1e-6); /* all-zero row -> [-1, 1] */
    if (sym) {
        CHECK(zero[3] == (maxq + 1) / 2);
        double m = 0;
        for (int j = 0; j < N; j++) m = fmax(m, fabs(W[3 * N + j]));
        CHECK_CLOSE(scale[3], 2 * m / maxq, 0, 1e-6);
    } else {
        CHECK(zero[1] == 0);    /* all positive: xmin = 0 */
        CHECK(zero[2] == maxq); /* all negative: xmax = 0 */
    }
    char what[64];
    snprintf(what, sizeof what, "min-max bits %d sym %d", bits, sym);
    check_codes(W, ROWS, N, scale, zero, bits, what);
}

static void test_mmse(const float *W, int bits, bool sym, double norm)
{
    zf_quant_opts o = opts(bits, sym);
    o.mmse_norm = norm;
    float scale[ROWS], zero[ROWS];
    CHECK_OK(zf_grid_fit(&o, ZF_GRID_MMSE, W, ROWS, N, N, NULL, 0, NULL, scale, 1, zero));
    int exact = 0, bad = 0;
    for (int r = 0; r < ROWS; r++) {
        double lo, hi, best = INFINITY, bs = 0, bz = 0;
        ref_range(W + r * N, N, sym, &lo, &hi);
        for (int i = 0; i < 80; i++) {
            double s, z;
            ref_candidate(lo, hi, 1 - i / 100.0, bits, sym, 0, &s, &z);
            double e = ref_mmse_err(W + r * N, N, s, z, bits, norm);
            if (e < best) best = e, bs = s, bz = z;
        }
        if (fabs(scale[r] - bs) <= 1e-6 * bs && zero[r] == bz) {
            exact++;
        } else {
            /* Only a near-tie (fp32 error sums) may pick another ratio: its error must match the best. */
            double e = ref_mmse_err(W + r * N, N, scale[r], zero[r], bits, norm);
            if (!(e <= best * (1 + 1e-5))) bad++;
        }
    }
    CHECK_MSG(bad == 0 && exact >= ROWS - 2, "MMSE bits %d sym %d norm %g: %d rows exact, %d worse than the reference",
              bits, sym, norm, exact, bad);
    char what[64];
    snprintf(what, sizeof what, "MMSE bits %d sym %d", bits, sym);
    check_codes(W, ROWS, N, scale, zero, bits, what);
}

static void test_hessian_grid(zt_rng *rng, const float *W, int bits, bool sym, bool with_zeta)
{
    float *X = malloc(sizeof(float) * 4 * N * N), H[N * N], zeta[N];
    zt_correlated_inputs(rng, X, 4 * N, N, 2, 8.0);
    zt_hessian_ref(X, 4 * N, N, H);
    for (int j = 0; j < N; j++) zeta[j] = (float)(0.5 + zt_rng_uniform(rng));
    zf_quant_opts o = opts(bits, sym);
    o.grid_points = 40; /* keeps the double reference quick; the search itself is the same for 100 */
    float scale[ROWS], zero[ROWS];
    CHECK_OK(zf_grid_fit(&o, ZF_GRID_HESSIAN, W, ROWS, N, N, H, N, with_zeta ? zeta : NULL, scale, 1, zero));
    int exact = 0, bad = 0;
    for (int r = 0; r < ROWS; r++) {
        double lo, hi, best = INFINITY, bs = 0, bz = 0;
        ref_range(W + r * N, N, sym, &lo, &hi);
        for (int i = 0; i < o.grid_points; i++)
            for (int k = 0; k < (sym ? 1 : 2); k++) {
                double s, z;
                ref_candidate(lo, hi, 1 - (double)i / o.grid_points, bits, sym, sym ? 0 : 1 + k, &s, &z);
                double e = ref_h_score(W + r * N, N, s, z, bits, H, with_zeta ? zeta : NULL);
                if (e < best) best = e, bs = s, bz = z;
            }
        if (fabs(scale[r] - bs) <= 1e-6 * bs && zero[r] == bz) {
            exact++;
        } else {
            double e = ref_h_score(W + r * N, N, scale[r], zero[r], bits, H, with_zeta ? zeta : NULL);
            if (!(e <= best * (1 + 1e-4))) bad++; /* fp32 GEMM scores: near-ties may flip */
        }
        CHECK(zero[r] >= 0 && zero[r] <= (1 << bits) - 1 && zero[r] == rintf(zero[r]));
    }
    CHECK_MSG(bad == 0 && exact >= ROWS - 3, "Hessian grid bits %d sym %d zeta %d: %d rows exact, %d worse", bits,
              sym, with_zeta, exact, bad);
    free(X);
}

static void test_quadform(zt_rng *rng)
{
    enum { R = 300, M = 70 }; /* R > one GEMM chunk */
    float *A = malloc(sizeof(float) * R * M), *B = malloc(sizeof(float) * R * M), H[M * M];
    float *X = malloc(sizeof(float) * 200 * M);
    zt_fill_normal(rng, A, R * M, 1.0);
    zt_fill_normal(rng, B, R * M, 1.0);
    zt_correlated_inputs(rng, X, 200, M, 1, 5.0);
    zt_hessian_ref(X, 200, M, H);
    double aa[R], ab[R];
    CHECK_OK(zf_quadform_rows(A, B, R, M, H, aa, ab));
    double worst = 0;
    for (int r = 0; r < R; r++) {
        double raa = 0, rab = 0, mag = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < M; j++) {
                raa += (double)A[r * M + i] * H[i * M + j] * A[r * M + j];
                rab += (double)A[r * M + i] * H[i * M + j] * B[r * M + j];
                mag += fabs((double)A[r * M + i] * H[i * M + j]) * (fabs(A[r * M + j]) + fabs(B[r * M + j]));
            }
        /* fp32 GEMM: error relative to Σ|a||H|(|a|+|b|) */
        worst = fmax(worst, fmax(fabs(aa[r] - raa), fabs(ab[r] - rab)) / mag);
    }
    CHECK_MSG(worst <= 1e-6, "quadratic forms: worst error %g of the absolute sums", worst);
    free(A), free(B), free(X);
}

int main(void)
{
    zt_rng rng;
    zt_rng_seed(&rng, 42);
    float *W = malloc(sizeof(float) * ROWS * N);
    make_weights(&rng, W);
    test_round();
    const int bits[] = {2, 3, 4, 8};
    for (int b = 0; b < 4; b++)
        for (int sym = 0; sym < 2; sym++) {
            test_minmax(W, bits[b], sym);
            test_mmse(W, bits[b], sym, 2.4);
            test_mmse(W, bits[b], sym, 2.0);
        }
    for (int b = 0; b < 3; b++)
        for (int sym = 0; sym < 2; sym++) test_hessian_grid(&rng, W, bits[b], sym, b == 1);
    test_quadform(&rng);

    /* Group-sized blocks inside a wider matrix (row stride ldw, output stride lds). */
    zf_quant_opts o = opts(3, false);
    float sc[ROWS * 3], ze[ROWS * 3], ref_s[ROWS], ref_z[ROWS];
    for (int g = 0; g < 3; g++)
        CHECK_OK(zf_grid_fit(&o, ZF_GRID_MINMAX, W + g * 32, ROWS, 32, N, NULL, 0, NULL, sc + g, 3, ze + g));
    float blk[ROWS * 32];
    for (int r = 0; r < ROWS; r++) memcpy(blk + r * 32, W + r * N + 64, 32 * sizeof(float));
    CHECK_OK(zf_grid_fit(&o, ZF_GRID_MINMAX, blk, ROWS, 32, 32, NULL, 0, NULL, ref_s, 1, ref_z));
    int same = 1;
    for (int r = 0; r < ROWS; r++) same &= sc[r * 3 + 2] == ref_s[r] && ze[r * 3 + 2] == ref_z[r];
    CHECK(same);
    CHECK(zf_grid_fit(&o, ZF_GRID_HESSIAN, W, ROWS, N, N, NULL, 0, NULL, sc, 1, ze) == ZF_ERR_INPUT);
    free(W);
    return zt_finish("test_grid");
}
