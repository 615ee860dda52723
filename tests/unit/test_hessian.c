/* Hessian accumulation (fp32 and fp64 SYRK, several adds, merge, finalize) and the column panels of stored inputs,
 * against the double reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "worker/hessian.h"

/* Max |H - ref| relative to max |ref|: fp32 SYRK sums N products in fp32 (error ~ sqrt(N)·2^-24 of the
 * magnitudes, N <= 600 here), so 1e-5 for fp32; fp64 is limited by the final cast to fp32, so 1e-7. */
static void check_close(const float *H, const float *ref, int64_t d, double tol, const char *what)
{
    double err = zt_max_abs_diff(H, ref, d * d), mag = zt_max_abs(ref, d * d);
    CHECK_MSG(err <= tol * mag, "%s: max |H - ref| = %g, max |ref| = %g, tolerance %g relative", what, err, mag, tol);
    int sym = 1;
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < d; j++) sym &= H[i * d + j] == H[j * d + i];
    CHECK_MSG(sym, "%s: finalized H is not exactly symmetric", what);
}

static void run(int64_t d, bool fp64)
{
    zt_rng rng;
    zt_rng_seed(&rng, (uint64_t)d * 7 + fp64);
    const int64_t parts[] = {100, 1, 150, 49}, other = 300;
    int64_t total = other;
    for (int i = 0; i < 4; i++) total += parts[i];
    float *X = malloc(sizeof(float) * total * d);
    zt_correlated_inputs(&rng, X, total, d, 3, 20.0);
    float *H = malloc(sizeof(float) * d * d), *ref = malloc(sizeof(float) * d * d);

    zf_hessian h, h2;
    CHECK_OK(zf_hessian_init(&h, d, fp64));
    CHECK_OK(zf_hessian_init(&h2, d, fp64));
    int64_t off = 0;
    for (int i = 0; i < 4; i++) {
        CHECK_OK(zf_hessian_add(&h, X + off * d, parts[i]));
        off += parts[i];
    }
    CHECK_OK(zf_hessian_add(&h2, X + off * d, other));
    CHECK_OK(zf_hessian_add(&h, X, 0));
    CHECK_OK(zf_hessian_merge(&h, &h2));
    CHECK(h.ntokens == total);
    CHECK_OK(zf_hessian_finalize(&h, H));
    zt_hessian_ref(X, total, d, ref);
    char what[64];
    snprintf(what, sizeof what, "dim %lld %s, 4 adds + merge", (long long)d, fp64 ? "fp64" : "fp32");
    check_close(H, ref, d, fp64 ? 1e-7 : 1e-5, what);

    /* Merging an accumulator of the other precision: fp32 tolerance. */
    zf_hessian h3;
    CHECK_OK(zf_hessian_init(&h3, d, !fp64));
    CHECK_OK(zf_hessian_add(&h3, X + off * d, other));
    zf_hessian_reset(&h);
    CHECK_OK(zf_hessian_add(&h, X, off));
    CHECK_OK(zf_hessian_merge(&h, &h3));
    CHECK_OK(zf_hessian_finalize(&h, H));
    snprintf(what, sizeof what, "dim %lld %s merged with %s", (long long)d, fp64 ? "fp64" : "fp32",
             fp64 ? "fp32" : "fp64");
    check_close(H, ref, d, 1e-5, what);
    zf_hessian_free(&h3);

    /* Only the first part, after a reset. */
    zf_hessian_reset(&h);
    CHECK(h.ntokens == 0);
    CHECK_OK(zf_hessian_finalize(&h, H));
    CHECK(zt_max_abs(H, d * d) == 0.0);
    CHECK_OK(zf_hessian_add(&h, X, parts[0]));
    CHECK_OK(zf_hessian_finalize(&h, H));
    zt_hessian_ref(X, parts[0], d, ref);
    snprintf(what, sizeof what, "dim %lld %s after reset", (long long)d, fp64 ? "fp64" : "fp32");
    check_close(H, ref, d, fp64 ? 1e-7 : 1e-5, what);

    zf_hessian_free(&h);
    zf_hessian_free(&h2);
    free(X), free(H), free(ref);
}

/* H assembled from column panels of width w of stored inputs: the double reference to the final fp32 cast (1e-7),
 * exactly symmetric, and each panel's entries the double sums to 1e-12 relative. */
static void run_panels(int64_t d, int64_t n, int64_t w)
{
    zt_rng rng;
    zt_rng_seed(&rng, (uint64_t)(d * 31 + w));
    float *X = malloc(sizeof(float) * n * d), *H = malloc(sizeof(float) * d * d), *ref = malloc(sizeof(float) * d * d);
    double *P = malloc(sizeof(double) * d * w);
    zt_correlated_inputs(&rng, X, n, d, 3, 20.0);
    for (int64_t i = 0; i < d * d; i++) H[i] = NAN;
    double worst = 0;
    for (int64_t c0 = 0; c0 < d; c0 += w) {
        int64_t c1 = c0 + w < d ? c0 + w : d;
        CHECK_OK(zf_hessian_panel(X, n, d, c0, c1, P));
        for (int64_t i = c0; i < d; i++)
            for (int64_t j = c0; j < c1; j++) {
                double s = 0, mag = 0;
                for (int64_t t = 0; t < n; t++) {
                    s += (double)X[t * d + i] * (double)X[t * d + j];
                    mag += fabs((double)X[t * d + i] * (double)X[t * d + j]);
                }
                double e = fabs(P[(i - c0) * (c1 - c0) + j - c0] - s) / (mag > 0 ? mag : 1);
                if (e > worst) worst = e;
            }
        zf_hessian_store_panel(P, d, c0, c1, 2.0 / (double)n, H);
    }
    CHECK_MSG(worst <= 1e-12, "dim %lld, panels of %lld: panel sums off by %g relative", (long long)d, (long long)w, worst);
    zt_hessian_ref(X, n, d, ref);
    char what[64];
    snprintf(what, sizeof what, "dim %lld from panels of %lld", (long long)d, (long long)w);
    check_close(H, ref, d, 1e-7, what);
    free(X), free(H), free(ref), free(P);
}

int main(void)
{
    run_panels(37, 300, 37);
    run_panels(130, 600, 17);
    run_panels(130, 5, 1);
    CHECK(zf_hessian_panel_width(28672) == 585 && zf_hessian_panel_width(64) == 64);
    {
        float x[4] = {0};
        double p[4];
        CHECK(zf_hessian_panel(x, 1, 4, 2, 5, p) == ZF_ERR_INPUT);
        CHECK(zf_hessian_panel(x, 1, 4, 2, 2, p) == ZF_ERR_INPUT);
    }

    run(37, false);
    run(37, true);
    run(130, false);
    run(130, true);

    /* Bad input. */
    zf_hessian h, h2;
    CHECK(zf_hessian_init(&h, 0, false) == ZF_ERR_INPUT);
    CHECK_OK(zf_hessian_init(&h, 8, false));
    CHECK_OK(zf_hessian_init(&h2, 9, false));
    CHECK(zf_hessian_merge(&h, &h2) == ZF_ERR_INPUT);
    CHECK(strstr(zf_last_error(), "dimensions") != NULL);
    float x[16] = {0};
    x[11] = NAN;
    CHECK(zf_hessian_add(&h, x, 2) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "x[1, 3]") != NULL, "message: %s", zf_last_error());
    CHECK(h.ntokens == 0);
    CHECK(zf_hessian_add(&h, x, -1) == ZF_ERR_INPUT);
    zf_hessian_free(&h);
    zf_hessian_free(&h2);
    return zt_finish("test_hessian");
}
