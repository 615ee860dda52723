/* OPTQ fast path (fp32, transposed, blocked, GEMM lazy updates) against a plain column-by-column double reference:
 * per channel, act-order, static and dynamic groups, dead inputs, damping retries, bits 2..4; the group entry's ΔL. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "worker/backend.h"
#include "worker/optq.h"
#include "worker/quant.h"
#include "worker/optq_internal.h"
#include "worker/quant_internal.h"

/* ---- double reference ---- */

static void ref_grid(const double *w, int64_t n, int64_t stride, int bits, bool sym, double *s, double *z)
{
    double lo = 0, hi = 0, maxq = (1 << bits) - 1;
    for (int64_t j = 0; j < n; j++) lo = fmin(lo, w[j * stride]), hi = fmax(hi, w[j * stride]);
    if (sym) hi = fmax(-lo, hi), lo = -hi;
    if (lo == 0 && hi == 0) lo = -1, hi = 1;
    *s = (hi - lo) / maxq;
    *z = sym ? (maxq + 1) / 2 : fmin(fmax(nearbyint(-lo / *s), 0), maxq);
}

/* In-place lower Cholesky of a double SPD matrix; returns 0 on failure. */
static int ref_chol(double *A, int64_t n)
{
    for (int64_t j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int64_t k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0)) return 0;
        A[j * n + j] = sqrt(d);
        for (int64_t i = j + 1; i < n; i++) {
            double s = A[i * n + j];
            for (int64_t k = 0; k < j; k++) s -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = s / A[j * n + j];
        }
        for (int64_t i = 0; i < j; i++) A[i * n + j] = 0;
    }
    return 1;
}

/* U upper with UᵀU = A⁻¹, the textbook way: L = chol(A), A⁻¹ = L⁻ᵀL⁻¹ explicitly, M = chol(A⁻¹), U = Mᵀ. */
static int ref_inv_chol_upper(double *A, int64_t n, double *U)
{
    if (!ref_chol(A, n)) return 0;
    double *Li = calloc((size_t)(n * n), sizeof(double));
    for (int64_t c = 0; c < n; c++) /* forward substitution L x = e_c */
        for (int64_t i = c; i < n; i++) {
            double s = i == c ? 1.0 : 0.0;
            for (int64_t k = c; k < i; k++) s -= A[i * n + k] * Li[k * n + c];
            Li[i * n + c] = s / A[i * n + i];
        }
    for (int64_t i = 0; i < n; i++) /* A⁻¹ = Liᵀ Li */
        for (int64_t j = 0; j <= i; j++) {
            double s = 0;
            for (int64_t k = i; k < n; k++) s += Li[k * n + i] * Li[k * n + j];
            U[i * n + j] = U[j * n + i] = s;
        }
    free(Li);
    if (!ref_chol(U, n)) return 0;
    for (int64_t i = 0; i < n; i++) /* transpose the lower factor into the upper one */
        for (int64_t j = i + 1; j < n; j++) U[i * n + j] = U[j * n + i], U[j * n + i] = 0;
    return 1;
}

typedef struct {
    int bits;
    bool sym, act, stat;
    int64_t gs, block;
    double damp;
} ref_opts;

/* GPTQ column by column in double. The only nod to blocking: dynamic group grids are fitted from W as it stood at
 * the start of the reference's 128-column block (the reference reads its global W there, which in-block updates
 * skip); with group sizes that are multiples of the block size this is the fully updated W. */
static void ref_optq(const float *W, int64_t rows, int64_t n, const float *H, ref_opts o, float *deq)
{
    const int64_t gs = o.gs > 0 ? o.gs : 0, ng = gs ? (n + gs - 1) / gs : 1;
    const double maxq = (1 << o.bits) - 1;
    double *Wd = malloc(sizeof(double) * rows * n), *Wp = malloc(sizeof(double) * rows * n);
    double *Ws = malloc(sizeof(double) * rows * n), *Hp = malloc(sizeof(double) * n * n);
    double *U = malloc(sizeof(double) * n * n), *S = malloc(sizeof(double) * rows * ng);
    double *Z = malloc(sizeof(double) * rows * ng), *Q = malloc(sizeof(double) * rows * n);
    int64_t *perm = malloc(sizeof(int64_t) * n);
    int *dead = malloc(sizeof(int) * n);
    for (int64_t i = 0; i < rows * n; i++) Wd[i] = W[i];
    for (int64_t j = 0; j < n; j++) dead[j] = H[j * n + j] == 0;
    if (!gs)
        for (int64_t r = 0; r < rows; r++) ref_grid(Wd + r * n, n, 1, o.bits, o.sym, &S[r], &Z[r]);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++)
            if (dead[j]) Wd[r * n + j] = 0;
    if (gs && o.stat)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g < ng; g++) {
                int64_t c0 = g * gs, len = n - c0 < gs ? n - c0 : gs;
                ref_grid(Wd + r * n + c0, len, 1, o.bits, o.sym, &S[r * ng + g], &Z[r * ng + g]);
            }
    for (int64_t j = 0; j < n; j++) perm[j] = j;
    if (o.act) /* stable insertion sort by diag (dead -> 1), descending */
        for (int64_t i = 1; i < n; i++) {
            int64_t v = perm[i], k = i;
            double dv = dead[v] ? 1 : H[v * n + v];
            while (k > 0 && (dead[perm[k - 1]] ? 1 : H[perm[k - 1] * n + perm[k - 1]]) < dv) perm[k] = perm[k - 1], k--;
            perm[k] = v;
        }
    double mean = 0;
    for (int64_t j = 0; j < n; j++) mean += dead[j] ? 1 : H[j * n + j];
    mean /= n;
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++) {
            Hp[a * n + b] = H[perm[a] * n + perm[b]];
            if (a == b) Hp[a * n + a] = (dead[perm[a]] ? 1 : Hp[a * n + a]) + o.damp * mean;
        }
    if (!ref_inv_chol_upper(Hp, n, U)) {
        fprintf(stderr, "reference: Hessian not positive definite\n");
        exit(2);
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t p = 0; p < n; p++) Wp[r * n + p] = Wd[r * n + perm[p]];
    for (int64_t p = 0; p < n; p++) {
        if (p % o.block == 0) memcpy(Ws, Wp, sizeof(double) * rows * n);
        if (gs && !o.stat && p % gs == 0)
            for (int64_t r = 0; r < rows; r++)
                ref_grid(Ws + r * n + p, n - p < gs ? n - p : gs, 1, o.bits, o.sym, &S[r * ng + p / gs],
                         &Z[r * ng + p / gs]);
        const int64_t g = gs ? (o.stat ? perm[p] / gs : p / gs) : 0;
        for (int64_t r = 0; r < rows; r++) {
            double s = S[r * ng + g], z = Z[r * ng + g], w = Wp[r * n + p];
            double c = fmin(fmax(nearbyint(w / s) + z, 0), maxq);
            double e = (w - s * (c - z)) / U[p * n + p];
            Q[r * n + perm[p]] = s * (c - z);
            for (int64_t j = p + 1; j < n; j++) Wp[r * n + j] -= e * U[p * n + j];
        }
    }
    for (int64_t i = 0; i < rows * n; i++) deq[i] = (float)Q[i];
    free(Wd), free(Wp), free(Ws), free(Hp), free(U), free(S), free(Z), free(Q), free(perm), free(dead);
}

/* ---- cases ---- */

static void make_hessian(zt_rng *rng, int64_t n, int64_t ntok, const int *dead, int ndead, float *H)
{
    float *X = malloc(sizeof(float) * ntok * n);
    zt_correlated_inputs(rng, X, ntok, n, 4, 20.0);
    for (int k = 0; k < ndead; k++)
        for (int64_t t = 0; t < ntok; t++) X[t * n + dead[k]] = 0;
    zt_hessian_ref(X, ntok, n, H);
    free(X);
}

/* Codes agree on >= 99 % and ΔL within 1 %: not bit-exact because the fast path is fp32 (and blocked, and gets U
 * from POTRF + TRTRI of the reversed matrix) while the reference is double; an error-feedback code that flips at a
 * rounding tie changes every later update of its row a little. */
static void run_case(const char *name, zt_rng *rng, int64_t rows, int64_t n, int bits, bool sym, bool act, bool stat,
                     int64_t gs, int64_t block, const int *dead, int ndead)
{
    float *W = malloc(sizeof(float) * rows * n), *H = malloc(sizeof(float) * n * n);
    float *deq = malloc(sizeof(float) * rows * n);
    zt_fill_normal(rng, W, rows * n, 0.02);
    for (int64_t r = 0; r < rows; r += 17) W[r * n + (r * 7) % n] = 0.15f; /* a few outlier weights */
    make_hessian(rng, n, 2 * n, dead, ndead, H);
    zf_quant_opts o;
    zf_quant_opts_default(&o);
    o.method = ZF_METHOD_OPTQ;
    o.bits = bits, o.sym = sym, o.act_order = act, o.static_groups = stat, o.group_size = gs, o.block_size = block;
    zf_qresult r;
    CHECK_OK(zf_quantize(&o, W, rows, n, H, NULL, &r));
    ref_opts ro = {bits, sym, act, stat, gs, 128, o.damp};
    ref_optq(W, rows, n, H, ro, deq);
    int64_t same = 0;
    for (int64_t i = 0; i < rows * n; i++) {
        const int64_t g = r.g_idx[i % n];
        double s = r.scale[(i / n) * r.ngroups + g];
        same += fabs(r.deq[i] - deq[i]) <= 1e-3 * s; /* same code: the dequantized values agree to the grid's rounding */
    }
    const double agree = (double)same / (double)(rows * n);
    const double dl_ref = zt_delta_loss_ref(W, deq, rows, n, H);
    CHECK_MSG(agree >= 0.99, "%s: codes agree on %.4f of the weights", name, agree);
    CHECK_MSG(fabs(r.dl - dl_ref) <= 0.01 * dl_ref, "%s: ΔL %g vs reference %g", name, r.dl, dl_ref);
    CHECK_MSG(r.dl <= r.dl_rtn, "%s: OPTQ ΔL %g > RTN ΔL %g", name, r.dl, r.dl_rtn);
    /* ΔL from the column loop's errors (damping and dead inputs taken off) is the quadratic form's */
    const double dl_quad = zf_delta_loss(W, r.deq, rows, n, H);
    CHECK_MSG(fabs(r.dl - dl_quad) <= 1e-6 * dl_quad, "%s: ΔL from the loop %.10g, by ΔW H ΔWᵀ %.10g", name, r.dl,
              dl_quad);
    CHECK(r.dead_inputs == ndead);
    CHECK(r.damp_retries == 0 && r.damp_used == o.damp);
    /* Dead inputs: W[:, j] = 0 before quantizing, so their codes are the zero point. */
    int dead_ok = 1;
    for (int k = 0; k < ndead; k++)
        for (int64_t i = 0; i < rows; i++) dead_ok &= r.deq[i * n + dead[k]] == 0.0f;
    CHECK_MSG(dead_ok, "%s: dead inputs did not quantize to 0", name);
    printf("  %-34s agree %.4f  dl %.5g  ref %.5g  rtn %.5g  loop vs quadratic form %.2g\n", name, agree, r.dl, dl_ref,
           r.dl_rtn, fabs(r.dl - dl_quad) / dl_quad);
    zf_qresult_free(&r);
    free(W), free(H), free(deq);
}

static void test_damping(zt_rng *rng)
{
    enum { R = 32, N = 64, T = 12 };
    float *W = malloc(sizeof(float) * R * N), *H = malloc(sizeof(float) * N * N), *X = malloc(sizeof(float) * T * N);
    zt_fill_normal(rng, W, R * N, 0.02);
    zt_correlated_inputs(rng, X, T, N, 0, 1.0); /* rank 12 < 64: singular */
    zt_hessian_ref(X, T, N, H);
    zf_quant_opts o;
    zf_quant_opts_default(&o);
    o.method = ZF_METHOD_OPTQ;
    o.damp = 1e-10;
    o.damp_retries = 10;
    zf_qresult r;
    CHECK_OK(zf_quantize(&o, W, R, N, H, NULL, &r));
    CHECK_MSG(r.damp_retries > 0 && r.damp_used > o.damp, "damp retries %d, damp used %g", r.damp_retries,
              r.damp_used);
    CHECK_CLOSE(r.damp_used, o.damp * pow(10, r.damp_retries), 0, 1e-9);
    CHECK(r.dl <= r.dl_rtn);
    printf("  rank-deficient H: damp %g after %d retries, dl %.5g rtn %.5g\n", r.damp_used, r.damp_retries, r.dl,
           r.dl_rtn);
    zf_qresult_free(&r);

    /* Not fixable by damping: a hugely negative diagonal entry. */
    zf_quant_opts_default(&o);
    o.method = ZF_METHOD_OPTQ;
    zt_correlated_inputs(rng, X, T, N, 0, 1.0);
    H[0] = -1e6f;
    CHECK(zf_quantize(&o, W, R, N, H, NULL, &r) == ZF_ERR_NUMERIC);
    CHECK_MSG(strstr(zf_last_error(), "[64 x 64]") && strstr(zf_last_error(), "damp 0.01, 0.1, 1, 10, 100"),
              "message: %s", zf_last_error());
    free(W), free(H), free(X);
}

/* U from zf_optq_factor against the double reference factor. */
static void test_factor(zt_rng *rng)
{
    enum { N = 150 };
    float *H = malloc(sizeof(float) * N * N), *U = malloc(sizeof(float) * N * N);
    double *Hd = malloc(sizeof(double) * N * N), *Ud = malloc(sizeof(double) * N * N);
    make_hessian(rng, N, 3 * N, NULL, 0, H);
    zf_quant_opts o;
    zf_quant_opts_default(&o);
    int64_t perm[N];
    for (int i = 0; i < N; i++) perm[i] = (i * 37) % N; /* 37 is coprime to 150 */
    double used;
    int retries;
    CHECK_OK(zf_optq_factor(&o, H, N, perm, U, &used, &retries));
    double mean = 0;
    for (int i = 0; i < N; i++) mean += H[i * N + i];
    mean /= N;
    for (int a = 0; a < N; a++)
        for (int b = 0; b < N; b++) Hd[a * N + b] = H[perm[a] * N + perm[b]] + (a == b ? 0.01 * mean : 0);
    CHECK(ref_inv_chol_upper(Hd, N, Ud));
    double err = 0, mag = 0;
    for (int i = 0; i < N * N; i++) err = fmax(err, fabs(U[i] - Ud[i])), mag = fmax(mag, fabs(Ud[i]));
    /* fp32 factorization of a damped (condition ~1e3..1e4) matrix: 1e-3 of the largest entry. */
    CHECK_MSG(err <= 1e-3 * mag, "U: max error %g, max |U| %g", err, mag);
    int lower_zero = 1;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < i; j++) lower_zero &= U[i * N + j] == 0.0f;
    CHECK(lower_zero && retries == 0 && used == o.damp);
    free(H), free(U), free(Hd), free(Ud);
}

/* zf_backend_quantize_group: per member ΔL after (from the column loop) and before, the figures of a host ΔL of the
 * member's rows and of a min-max RTN quantization of the member alone to 1e-6 (fp32 sums in other orders); no
 * group-level figures. */
static void test_group(zt_rng *rng)
{
    enum { N = 192 };
    const int64_t mrows[3] = {40, 24, 64}, rows = 128;
    float *W = malloc(sizeof(float) * rows * N), *H = malloc(sizeof(float) * N * N);
    zt_fill_normal(rng, W, rows * N, 0.02);
    make_hessian(rng, N, 2 * N, NULL, 0, H);
    zf_backend *cpu = NULL;
    zf_backend_opts bo = {.kind = ZF_BACKEND_CPU, .device = -1};
    CHECK_OK(zf_backend_open(&bo, &cpu));
    CHECK(zf_backend_caps(cpu) & ZF_CAP_HOST_MEMORY);
    for (int gs = 0; gs < 2; gs++) {
        zf_quant_opts o;
        zf_quant_opts_default(&o);
        o.method = ZF_METHOD_OPTQ;
        o.bits = 3;
        o.group_size = gs ? 64 : -1;
        zf_qresult r, whole;
        double dl[3], dl_rtn[3];
        CHECK_OK(zf_backend_quantize_group(cpu, &o, W, rows, N, H, NULL, 3, mrows, NULL, &r, dl, dl_rtn));
        CHECK_OK(zf_quantize(&o, W, rows, N, H, NULL, &whole));
        CHECK(r.dl == 0.0 && r.dl_rtn == 0.0);
        CHECK(memcmp(r.deq, whole.deq, sizeof(float) * rows * N) == 0 && memcmp(r.q, whole.q, rows * N) == 0);
        zf_quant_opts rtn = o;
        rtn.method = ZF_METHOD_RTN;
        rtn.grid = ZF_GRID_MINMAX;
        int64_t r0 = 0;
        for (int m = 0; m < 3; m++) {
            zf_qresult base;
            CHECK_OK(zf_quantize(&rtn, W + r0 * N, mrows[m], N, H, NULL, &base));
            double ref = zf_delta_loss(W + r0 * N, r.deq + r0 * N, mrows[m], N, H);
            CHECK_CLOSE(dl[m], ref, 0, 1e-6);
            CHECK_CLOSE(dl_rtn[m], base.dl, 0, 1e-6);
            zf_qresult_free(&base);
            r0 += mrows[m];
        }
        const int64_t bad[2] = {100, 100};
        zf_qresult rb;
        CHECK(zf_backend_quantize_group(cpu, &o, W, rows, N, H, NULL, 2, bad, NULL, &rb, dl, dl_rtn) == ZF_ERR_INPUT);
        zf_qresult_free(&r);
        zf_qresult_free(&whole);
    }
    zf_backend_close(cpu);
    free(W), free(H);
}

int main(void)
{
    zt_rng rng;
    zt_rng_seed(&rng, 2024);
    const int dead[] = {3, 40, 41, 200, 255};
    test_factor(&rng);
    run_case("4-bit asym per channel", &rng, 128, 256, 4, false, false, false, -1, 128, NULL, 0);
    run_case("3-bit sym act-order", &rng, 128, 256, 3, true, true, false, -1, 128, NULL, 0);
    run_case("2-bit asym", &rng, 96, 256, 2, false, false, false, -1, 128, NULL, 0);
    run_case("4-bit groups 64 (mid-block refits)", &rng, 96, 256, 4, false, false, false, 64, 128, NULL, 0);
    run_case("4-bit groups 128", &rng, 96, 256, 4, false, false, false, 128, 128, NULL, 0);
    run_case("3-bit static groups 32 + act-order", &rng, 96, 256, 3, false, true, true, 32, 128, NULL, 0);
    run_case("4-bit groups 64 + act-order", &rng, 96, 256, 4, true, true, false, 64, 128, NULL, 0);
    run_case("4-bit dead inputs + act-order", &rng, 96, 256, 4, false, true, false, -1, 128, dead, 5);
    run_case("3-bit block 32", &rng, 96, 256, 3, false, false, false, -1, 32, NULL, 0);
    run_case("3-bit 688 columns", &rng, 64, 688, 3, false, false, false, -1, 128, NULL, 0);
    test_damping(&rng);
    test_group(&rng);
    return zt_finish("test_optq");
}
