/* RTN through zf_quantize (per channel and group-wise, bits 2/3/4/8, sym/asym) against a double scalar reference;
 * ΔL, result layout and input validation of zf_quantize. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "worker/quant.h"
#include "worker/quant_internal.h"

#define ROWS 48
#define COLS 100

/* Min-max grid of one row slice in double, as documented in worker/grid.c. */
static void ref_grid(const float *w, int64_t n, int bits, bool sym, double *s, double *z)
{
    double lo = 0, hi = 0, maxq = (1 << bits) - 1;
    for (int64_t j = 0; j < n; j++) lo = fmin(lo, w[j]), hi = fmax(hi, w[j]);
    if (sym) hi = fmax(-lo, hi), lo = -hi;
    if (lo == 0 && hi == 0) lo = -1, hi = 1;
    *s = (hi - lo) / maxq;
    *z = sym ? (maxq + 1) / 2 : fmin(fmax(nearbyint(-lo / *s), 0), maxq);
}

static void run(const float *W, const float *H, int bits, bool sym, int64_t gs)
{
    zf_quant_opts o;
    zf_quant_opts_default(&o);
    o.method = ZF_METHOD_RTN;
    o.bits = bits;
    o.sym = sym;
    o.group_size = gs;
    zf_qresult r;
    CHECK_OK(zf_quantize(&o, W, ROWS, COLS, H, NULL, &r));
    const int64_t g = gs > 0 ? gs : COLS, ng = (COLS + g - 1) / g;
    CHECK(r.ngroups == ng && r.rows == ROWS && r.cols == COLS && r.bits == bits);
    const double maxq = (1 << bits) - 1;
    int64_t bad_grid = 0, bad_code = 0, bad_deq = 0, bad_meta = 0;
    float *Wq = malloc(sizeof(float) * ROWS * COLS);
    for (int64_t i = 0; i < ROWS; i++) {
        for (int64_t k = 0; k < ng; k++) {
            double s, z;
            int64_t c0 = k * g, len = COLS - c0 < g ? COLS - c0 : g;
            ref_grid(W + i * COLS + c0, len, bits, sym, &s, &z);
            if (!(fabs(r.scale[i * ng + k] - s) <= 1e-6 * s) || r.zero[i * ng + k] != z) bad_grid++;
        }
        for (int64_t j = 0; j < COLS; j++) {
            const int64_t k = i * ng + j / g;
            const double s = r.scale[k], z = r.zero[k], t = W[i * COLS + j] / s;
            const double c = fmin(fmax(nearbyint(t) + z, 0), maxq);
            /* away from rounding ties the code must be the double one */
            if (r.q[i * COLS + j] != c && fabs(t - floor(t) - 0.5) > 1e-6 * fmax(1, fabs(t))) bad_code++;
            if (r.deq[i * COLS + j] != (float)(r.scale[k] * (r.q[i * COLS + j] - r.zero[k]))) bad_deq++;
            Wq[i * COLS + j] = r.deq[i * COLS + j];
        }
    }
    for (int64_t j = 0; j < COLS; j++) bad_meta += r.g_idx[j] != j / g || r.zeta[j] != 1.0f;
    CHECK_MSG(bad_grid == 0 && bad_code == 0 && bad_deq == 0 && bad_meta == 0,
              "RTN bits %d sym %d group %lld: %lld grids, %lld codes, %lld deq, %lld g_idx/zeta differ", bits, sym,
              (long long)gs, (long long)bad_grid, (long long)bad_code, (long long)bad_deq, (long long)bad_meta);
    if (H) {
        /* fp32 GEMM inside, double reduction: 1e-5 relative. */
        double ref = zt_delta_loss_ref(W, Wq, ROWS, COLS, H);
        CHECK_CLOSE(r.dl, ref, 0, 1e-5);
        CHECK(r.dl_rtn == r.dl);
        CHECK_CLOSE(zf_delta_loss(W, Wq, ROWS, COLS, H), ref, 0, 1e-5);
    } else {
        CHECK(r.dl == 0 && r.dl_rtn == 0);
    }
    zf_qresult_free(&r);
    free(Wq);
}

int main(void)
{
    zt_rng rng;
    zt_rng_seed(&rng, 7);
    float *W = malloc(sizeof(float) * ROWS * COLS), *H = malloc(sizeof(float) * COLS * COLS);
    float *X = malloc(sizeof(float) * 300 * COLS);
    zt_fill_normal(&rng, W, ROWS * COLS, 0.02);
    for (int j = 0; j < COLS; j++) W[5 * COLS + j] = 0.0f;
    W[9 * COLS + 3] = 0.4f;
    zt_correlated_inputs(&rng, X, 300, COLS, 3, 10.0);
    zt_hessian_ref(X, 300, COLS, H);

    const int bits[] = {2, 3, 4, 8};
    for (int b = 0; b < 4; b++)
        for (int sym = 0; sym < 2; sym++) {
            run(W, H, bits[b], sym, -1);
            run(W, H, bits[b], sym, 32); /* 100 = 3·32 + 4: a short last group */
            run(W, H, bits[b], sym, 100);
        }
    run(W, NULL, 4, false, -1);
    run(W, NULL, 3, true, 16);

    /* Input validation. */
    zf_quant_opts o;
    zf_quant_opts_default(&o);
    o.method = ZF_METHOD_RTN;
    zf_qresult r;
    W[7 * COLS + 11] = NAN;
    CHECK(zf_quantize(&o, W, ROWS, COLS, H, NULL, &r) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "W[7, 11]") != NULL, "message: %s", zf_last_error());
    W[7 * COLS + 11] = 0.0f;
    H[3 * COLS + 4] = INFINITY;
    CHECK(zf_quantize(&o, W, ROWS, COLS, H, NULL, &r) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "H[3, 4]") != NULL, "message: %s", zf_last_error());
    H[3 * COLS + 4] = H[4 * COLS + 3];
    o.bits = 9;
    CHECK(zf_quantize(&o, W, ROWS, COLS, H, NULL, &r) == ZF_ERR_INPUT);
    CHECK(strstr(zf_last_error(), "bits") != NULL);
    o.bits = 1;
    CHECK(zf_quant_opts_check(&o) == ZF_ERR_INPUT);
    zf_quant_opts_default(&o);
    o.method = ZF_METHOD_ZFOLD;
    o.group_size = 128;
    CHECK_OK(zf_quant_opts_check(&o));
    o.alpha = ZF_ALPHA_GRID;
    CHECK(zf_quant_opts_check(&o) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "needs alpha = diag") != NULL, "message: %s", zf_last_error());
    zf_quant_opts_default(&o);
    o.damp = 0;
    CHECK(zf_quant_opts_check(&o) == ZF_ERR_INPUT);
    zf_quant_opts_default(&o);
    o.method = ZF_METHOD_OPTQ;
    CHECK(zf_quantize(&o, W, ROWS, COLS, NULL, NULL, &r) == ZF_ERR_INPUT);
    o.method = ZF_METHOD_RTN;
    o.grid = ZF_GRID_HESSIAN;
    CHECK(zf_quantize(&o, W, ROWS, COLS, NULL, NULL, &r) == ZF_ERR_INPUT);
    CHECK(strstr(zf_last_error(), "needs the Hessian") != NULL);

    /* Names. */
    zf_method m;
    zf_grid_kind g;
    zf_alpha_mode a;
    CHECK(zf_method_parse("gptq", &m) == 0 && m == ZF_METHOD_OPTQ);
    CHECK(zf_method_parse("zfold", &m) == 0 && m == ZF_METHOD_ZFOLD);
    CHECK(zf_method_parse("awq", &m) == -1);
    CHECK(zf_grid_parse("mmse", &g) == 0 && g == ZF_GRID_MMSE);
    CHECK(zf_alpha_parse("grid", &a) == 0 && a == ZF_ALPHA_GRID);
    CHECK(!strcmp(zf_method_name(ZF_METHOD_RTN), "rtn") && !strcmp(zf_grid_name(ZF_GRID_HESSIAN), "hessian") &&
          !strcmp(zf_alpha_name(ZF_ALPHA_LSQ), "lsq"));
    zf_quant_opts_default(&o);
    CHECK_OK(zf_quant_opts_check(&o));
    free(W), free(H), free(X);
    return zt_finish("test_rtn");
}
