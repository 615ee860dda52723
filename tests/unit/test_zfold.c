/* Z-FOLD: ALS trace monotone, ΔL <= OPTQ on the fixtures' real weights (2/3 bits, sym/asym) and as reported, eq. 13
 * α, the row refit, the diagonal search and the ζ refit against double references, ζ ties and positivity, the grid-search α,
 * ALS-only results, and Algorithm 2's equivalence. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "common/safetensors.h"
#include "worker/hessian.h"
#include "worker/optq.h"
#include "worker/quant.h"
#include "worker/zfold.h"
#include "worker/optq_internal.h"
#include "worker/zfold_internal.h"
#include "worker/zfold_refit.h"
#include "worker/backend.h"
#include "worker/backend_impl.h"
#include "worker/grid.h"
#include "worker/quant_internal.h"

/* H = 2/N XᵀX of correlated inputs with outlier channels (zf_hessian; checked against the reference elsewhere). */
static float *make_hessian(zt_rng *rng, int64_t n)
{
    const int64_t ntok = n < 256 ? 512 : 2 * n;
    float *X = malloc(sizeof(float) * ntok * n), *H = malloc(sizeof(float) * n * n);
    zt_correlated_inputs(rng, X, ntok, n, 4, 20.0);
    zf_hessian h;
    CHECK_OK(zf_hessian_init(&h, n, true));
    CHECK_OK(zf_hessian_add(&h, X, ntok));
    CHECK_OK(zf_hessian_finalize(&h, H));
    zf_hessian_free(&h);
    free(X);
    return H;
}

static zf_quant_opts opts(zf_method m, int bits, bool sym)
{
    zf_quant_opts o;
    zf_quant_opts_default(&o);
    o.method = m, o.bits = bits, o.sym = sym;
    return o;
}

/* Kept ALS states never increase ΔL; the entry after them (if any) is the rejected increase. */
static void check_trace(const char *name, const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols,
                        const float *H, const zf_zeta_tie *tie)
{
    const int64_t rg = rows * (o->group_size > 0 ? (cols + o->group_size - 1) / o->group_size : 1);
    float *alpha = malloc(sizeof(float) * rg * 2), *zeta = malloc(sizeof(float) * cols);
    double *trace = malloc(sizeof(double) * (o->als_max_iter + 1));
    int iters = -1, kept = -1, nt = 0;
    CHECK_OK(zf_zfold_als(o, W, rows, cols, H, tie, alpha, alpha + rg, zeta, &iters, &kept, trace, &nt));
    int mono = 1;
    for (int k = 1; k <= iters; k++) mono &= trace[k] <= trace[k - 1];
    CHECK_MSG(mono, "%s: ALS ΔL increased among kept states", name);
    CHECK_MSG(nt == iters + 1 || (nt == iters + 2 && trace[nt - 1] > trace[iters]),
              "%s: trace of %d entries, %d iterations kept", name, nt, iters);
    const bool converged = iters >= 1 && nt == iters + 1 && trace[iters - 1] - trace[iters] < o->als_tol * trace[iters - 1];
    CHECK_MSG(nt == o->als_max_iter + 1 || nt == iters + 2 || converged,
              "%s: stopped without an increase, convergence or the limit", name);
    /* diag's starting point is already a search: its first step may find nothing better */
    CHECK(trace[iters] <= trace[0] && (o->alpha == ZF_ALPHA_DIAG || (iters >= 1 && trace[iters] < trace[0])));
    printf("  %-36s ALS: %2d iterations, ΔL %.5g -> %.5g\n", name, iters, trace[0], trace[iters]);
    free(alpha), free(zeta), free(trace);
}

/* Z-FOLD against OPTQ and RTN on one matrix. */
static void compare(const char *name, const float *W, int64_t rows, int64_t cols, const float *H, int bits, bool sym,
                    zf_alpha_mode am)
{
    zf_quant_opts oo = opts(ZF_METHOD_OPTQ, bits, sym), oz = opts(ZF_METHOD_ZFOLD, bits, sym);
    oz.alpha = am;
    oz.zeta_positive = true;
    zf_qresult ro, rz;
    CHECK_OK(zf_quantize(&oo, W, rows, cols, H, NULL, &ro));
    CHECK_OK(zf_quantize(&oz, W, rows, cols, H, NULL, &rz));
    CHECK_MSG(rz.dl <= ro.dl, "%s: Z-FOLD ΔL %g > OPTQ ΔL %g", name, rz.dl, ro.dl);
    CHECK(ro.dl <= ro.dl_rtn && rz.dl_rtn == ro.dl_rtn);
    /* the reported ΔL (refits and fallback included) is the result's own */
    CHECK_CLOSE(rz.dl, zf_delta_loss(W, rz.deq, rows, cols, H), 0, 1e-4);
    /* the refit alone never raises ΔL: the same ALS and OPTQ without and with it */
    zf_quant_opts on = oz, or = oz;
    on.refit = on.optq_fallback = or.optq_fallback = false;
    zf_qresult rn, rr;
    CHECK_OK(zf_quantize(&on, W, rows, cols, H, NULL, &rn));
    CHECK_OK(zf_quantize(&or, W, rows, cols, H, NULL, &rr));
    CHECK_MSG(rr.dl <= rn.dl * (1 + 1e-9), "%s: refit raised ΔL %g -> %g", name, rn.dl, rr.dl);
    CHECK_CLOSE(rr.dl, zf_delta_loss(W, rr.deq, rows, cols, H), 0, 1e-4);
    zf_qresult_free(&rn);
    zf_qresult_free(&rr);
    /* ζ > 0 (foldable through ReLU), deq = ζ_j·scale·(q - zero), zeros are integers in [0, maxq]. */
    int ok = rz.zeta_kept == 0, grid_ok = 1;
    for (int64_t j = 0; j < cols; j++) ok &= rz.zeta[j] > 0 && isfinite(rz.zeta[j]);
    for (int64_t i = 0; i < rows; i++) {
        grid_ok &= rz.scale[i] > 0 && rz.zero[i] >= 0 && rz.zero[i] <= (1 << bits) - 1 && rz.zero[i] == rintf(rz.zero[i]);
        for (int64_t j = 0; j < cols; j++)
            grid_ok &= rz.deq[i * cols + j] == (rz.scale[i] * rz.zeta[j]) * ((float)rz.q[i * cols + j] - rz.zero[i]);
    }
    CHECK_MSG(ok, "%s: ζ not all positive (or %d kept)", name, rz.zeta_kept);
    CHECK_MSG(grid_ok, "%s: scale/zero/deq inconsistent", name);
    printf("  %-36s %d-bit %s: rtn %.5g  optq %.5g  zfold %.5g (%d ALS iterations)\n", name, bits,
           sym ? "sym " : "asym", ro.dl_rtn, ro.dl, rz.dl, rz.als_iters);
    zf_qresult_free(&ro);
    zf_qresult_free(&rz);
}

/* Group-wise Z-FOLD against group-wise OPTQ with the same options: never above it, its ΔL as reported, and
 * deq = ζ_j·scale[r, g_idx[j]]·(q - zero[r, g_idx[j]]) with static groups g_idx[j] = j / gs. */
static void compare_groups(const char *name, const float *W, int64_t rows, int64_t cols, const float *H, int64_t gs,
                           bool act)
{
    zf_quant_opts oo = opts(ZF_METHOD_OPTQ, 3, false), oz = opts(ZF_METHOD_ZFOLD, 3, false);
    oo.group_size = oz.group_size = gs;
    oo.act_order = oz.act_order = act;
    zf_qresult ro, rz;
    CHECK_OK(zf_quantize(&oo, W, rows, cols, H, NULL, &ro));
    CHECK_OK(zf_quantize(&oz, W, rows, cols, H, NULL, &rz));
    CHECK_MSG(rz.dl <= ro.dl, "%s g%lld: Z-FOLD ΔL %g > OPTQ ΔL %g", name, (long long)gs, rz.dl, ro.dl);
    CHECK_CLOSE(rz.dl, zf_delta_loss(W, rz.deq, rows, cols, H), 0, 1e-4);
    CHECK(rz.ngroups == (cols + gs - 1) / gs);
    int ok = 1;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            const int64_t g = rz.g_idx[j], k = i * rz.ngroups + g;
            ok &= rz.optq_kept || g == j / gs;
            ok &= rz.deq[i * cols + j] == (rz.scale[k] * rz.zeta[j]) * ((float)rz.q[i * cols + j] - rz.zero[k]);
        }
    CHECK_MSG(ok, "%s g%lld: groups or deq inconsistent", name, (long long)gs);
    printf("  %-36s g%-4lld%s: optq %.5g  zfold %.5g%s\n", name, (long long)gs, act ? " act" : "    ", ro.dl, rz.dl,
           rz.optq_kept ? " (OPTQ kept)" : "");
    zf_qresult_free(&ro);
    zf_qresult_free(&rz);
}

typedef struct {
    const char *model, *tensor;
    int64_t rows, cols;
} fixture_tensor;

static void test_fixtures(zt_rng *rng)
{
    const fixture_tensor ts[] = {
        {"stories260k", "model.layers.0.self_attn.q_proj.weight", 64, 64},
        {"stories260k", "model.layers.2.mlp.down_proj.weight", 64, 172},
        {"llama-mini", "model.layers.0.self_attn.q_proj.weight", 256, 256},
        {"llama-mini", "model.layers.1.mlp.down_proj.weight", 256, 688},
        {"llama-mini", "model.layers.3.mlp.gate_proj.weight", 688, 256},
        {"opt-mini", "model.decoder.layers.0.self_attn.out_proj.weight", 256, 256},
        {"opt-mini", "model.decoder.layers.2.fc2.weight", 256, 1024},
    };
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        zf_safetensors *st = NULL;
        const char *path = zt_fixture(ts[k].model);
        char p[4200];
        snprintf(p, sizeof p, "%s/model.safetensors", path);
        CHECK_OK(zf_st_open(p, &st));
        if (!st) continue;
        float *W = NULL;
        const int64_t shape[2] = {ts[k].rows, ts[k].cols};
        CHECK_OK(zf_st_load_f32(st, ts[k].tensor, 2, shape, &W));
        zf_st_close(st);
        if (!W) continue;
        float *H = make_hessian(rng, ts[k].cols);
        char name[96];
        snprintf(name, sizeof name, "%s %s", ts[k].model, strstr(ts[k].tensor, "layers.") + 7);
        for (int bits = 2; bits <= 3; bits++) {
            compare(name, W, ts[k].rows, ts[k].cols, H, bits, false, ZF_ALPHA_DIAG);
            compare(name, W, ts[k].rows, ts[k].cols, H, bits, false, ZF_ALPHA_LSQ);
            if (ts[k].cols <= 256) compare(name, W, ts[k].rows, ts[k].cols, H, bits, true, ZF_ALPHA_LSQ);
        }
        if (ts[k].cols >= 172) {
            compare_groups(name, W, ts[k].rows, ts[k].cols, H, 64, false);
            compare_groups(name, W, ts[k].rows, ts[k].cols, H, 128, true);
        }
        zf_quant_opts o = opts(ZF_METHOD_ZFOLD, 3, false);
        check_trace(name, &o, W, ts[k].rows, ts[k].cols, H, NULL);
        o.group_size = 32;
        check_trace(name, &o, W, ts[k].rows, ts[k].cols, H, NULL);
        o.group_size = -1;
        o.alpha = ZF_ALPHA_LSQ;
        check_trace(name, &o, W, ts[k].rows, ts[k].cols, H, NULL);
        if (k == 0 || k == 5) { /* the official code's grid-search α: 200 GEMMs per iteration, small layers only */
            compare(name, W, ts[k].rows, ts[k].cols, H, 3, false, ZF_ALPHA_GRID);
            o.alpha = ZF_ALPHA_GRID;
            o.als_tol = 0.0;
            check_trace(name, &o, W, ts[k].rows, ts[k].cols, H, NULL);
        }
        free(W), free(H);
    }
}

/* Eq. 13 against a double scalar reference. */
static void test_alpha_lsq(zt_rng *rng)
{
    enum { R = 40, N = 120 };
    float *W = malloc(sizeof(float) * R * N), *Wt = malloc(sizeof(float) * R * N), *H = make_hessian(rng, N);
    float alpha[R], prev[R];
    zt_fill_normal(rng, W, R * N, 0.03);
    for (int i = 0; i < R; i++) {
        prev[i] = 0.01f;
        for (int j = 0; j < N; j++) Wt[i * N + j] = i == 3 ? 0.0f : rintf(W[i * N + j] / 0.01f); /* row 3: no data */
    }
    CHECK_OK(zf_zfold_alpha_lsq(W, Wt, R, N, H, prev, alpha));
    int ok = 1;
    for (int i = 0; i < R; i++) {
        double num = 0, den = 0;
        for (int a = 0; a < N; a++)
            for (int b = 0; b < N; b++) {
                num += (double)Wt[i * N + a] * H[a * N + b] * W[i * N + b];
                den += (double)Wt[i * N + a] * H[a * N + b] * Wt[i * N + b];
            }
        double ref = den > 0 ? num / den : prev[i];
        /* fp32 GEMM for both quadratic forms: 1e-5 relative */
        ok &= fabs(alpha[i] - ref) <= 1e-5 * ref;
    }
    CHECK_MSG(ok, "α least squares differs from the double reference");
    CHECK(alpha[3] == prev[3]);
    free(W), free(Wt), free(H);
}

/* ζ tied across classes of 4 columns (GQA's O ← V fold): equal within each class, bit for bit. */
static void test_tie(zt_rng *rng)
{
    enum { R = 96, N = 128 };
    float *W = malloc(sizeof(float) * R * N), *H = make_hessian(rng, N);
    zt_fill_normal(rng, W, R * N, 0.02);
    for (int j = 0; j < N; j++) /* columns of different scales: a free ζ would differ */
        for (int i = 0; i < R; i++) W[i * N + j] *= (float)(0.5 + (j % 7) * 0.3);
    int32_t cls[N];
    for (int j = 0; j < N; j++) cls[j] = (j % 32) / 4; /* 8 classes, members spread over the matrix */
    zf_zeta_tie tie = {cls, 8};
    zf_quant_opts o = opts(ZF_METHOD_ZFOLD, 3, false);
    zf_qresult r, rf;
    CHECK_OK(zf_quantize(&o, W, R, N, H, &tie, &r));
    CHECK_OK(zf_quantize(&o, W, R, N, H, NULL, &rf));
    int tied = 1, free_differs = 0;
    for (int j = 0; j < N; j++) {
        for (int k = 0; k < N; k++) tied &= cls[j] != cls[k] || r.zeta[j] == r.zeta[k];
        free_differs |= cls[j] == cls[0] && rf.zeta[j] != rf.zeta[0];
    }
    CHECK_MSG(tied, "tied ζ differ within a class");
    CHECK(free_differs);
    CHECK(r.dl <= r.dl_rtn && rf.dl <= r.dl_rtn);
    check_trace("tied classes", &o, W, R, N, H, &tie);
    /* Bad classes are refused. */
    cls[5] = 8;
    zf_qresult bad;
    CHECK(zf_quantize(&o, W, R, N, H, &tie, &bad) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "column 5") != NULL, "message: %s", zf_last_error());
    zf_qresult_free(&r);
    zf_qresult_free(&rf);
    free(W), free(H);
}

/* Without Algorithm 2 the result is the ALS state: its ΔL is the trace's last kept entry, and the ALS starts at
 * the min-max RTN loss. */
static void test_als_only(zt_rng *rng)
{
    enum { R = 64, N = 96 };
    float *W = malloc(sizeof(float) * R * N), *H = make_hessian(rng, N);
    zt_fill_normal(rng, W, R * N, 0.02);
    for (int sym = 0; sym < 2; sym++) {
        zf_quant_opts o = opts(ZF_METHOD_ZFOLD, 3, sym);
        o.zfold_optq = false;
        o.alpha = ZF_ALPHA_LSQ; /* its trace is ΔL itself (diag's is H's diagonal) */
        zf_qresult r;
        CHECK_OK(zf_quantize(&o, W, R, N, H, NULL, &r));
        double trace[31];
        float a[2 * R], z[N];
        int it, kept, nt;
        CHECK_OK(zf_zfold_als(&o, W, R, N, H, NULL, a, a + R, z, &it, &kept, trace, &nt));
        CHECK(it == r.als_iters);
        CHECK_CLOSE(r.dl, trace[it], 0, 1e-6);
        CHECK_CLOSE(trace[0], r.dl_rtn, 0, 1e-6);
        CHECK(r.dl < r.dl_rtn);
        zf_qresult_free(&r);
    }
    free(W), free(H);
}

/* Algorithm 2 with a per-column grid ζ_j·α_r equals OPTQ on W ⊘ ζ with H' = diag(ζ)·H·diag(ζ): the error feedback
 * W_j -= (w_i - q_i)/U_ii · U_ij in W space becomes W'_j -= (w'_i - q'_i)/U'_ii · U'_ij with U' = U·diag(ζ)⁻¹. Both
 * runs get the same damped H (damp added explicitly, the in-call damp negligible). */
static void test_alg2_equivalence(zt_rng *rng)
{
    enum { R = 80, N = 160 };
    float *W = malloc(sizeof(float) * R * N), *H = make_hessian(rng, N), *W2 = malloc(sizeof(float) * R * N);
    float *H2 = malloc(sizeof(float) * N * N), zeta[N], alpha[R], zero[R];
    zt_fill_normal(rng, W, R * N, 0.02);
    double mean = 0;
    for (int j = 0; j < N; j++) mean += H[j * N + j] / N;
    for (int j = 0; j < N; j++) H[j * N + j] += (float)(0.01 * mean);
    for (int j = 0; j < N; j++) zeta[j] = (float)(0.6 + 0.8 * zt_rng_uniform(rng));
    for (int i = 0; i < R; i++)
        for (int j = 0; j < N; j++) W2[i * N + j] = W[i * N + j] / zeta[j];
    for (int a = 0; a < N; a++)
        for (int b = 0; b < N; b++) H2[a * N + b] = zeta[a] * H[a * N + b] * zeta[b];
    zf_quant_opts o = opts(ZF_METHOD_OPTQ, 3, false);
    o.damp = 1e-9;
    o.act_order = true;
    CHECK_OK(zf_quant_opts_check(&o));
    zf_qresult ra, rb;
    CHECK_OK(zf_qresult_alloc(&ra, R, N, 1, 3));
    CHECK_OK(zf_qresult_alloc(&rb, R, N, 1, 3));
    /* A per-row grid from W ⊘ ζ, as the ALS would leave it. */
    for (int i = 0; i < R; i++) {
        float lo = 0, hi = 0;
        for (int j = 0; j < N; j++) lo = fminf(lo, W2[i * N + j]), hi = fmaxf(hi, W2[i * N + j]);
        alpha[i] = 0.9f * (hi - lo) / 7;
        zero[i] = rintf(-0.9f * lo / alpha[i]);
    }
    /* act-order permutes by diag H vs diag H'; give both the same order by making them agree: compare without. */
    o.act_order = false;
    CHECK_OK(zf_optq(&o, W, R, N, H, alpha, zero, zeta, &ra));
    CHECK_OK(zf_optq(&o, W2, R, N, H2, alpha, zero, NULL, &rb));
    int64_t same = 0;
    for (int64_t i = 0; i < R * N; i++) same += ra.q[i] == rb.q[i];
    CHECK_MSG(same >= 0.995 * R * N, "Algorithm 2 forms agree on %lld of %d codes", (long long)same, R * N);
    CHECK(ra.scale[0] == alpha[0] && ra.zero[0] == zero[0]);
    printf("  Algorithm 2: per-column ζ grid vs OPTQ on W/ζ, diag(ζ)Hdiag(ζ): %lld of %d codes equal\n",
           (long long)same, R * N);
    zf_qresult_free(&ra);
    zf_qresult_free(&rb);
    free(W), free(H), free(W2), free(H2);
}

/* (w - α ζ(q - z)) H (...)ᵀ in double. */
static double row_loss(const float *w, const float *q, const float *zeta, const float *H, int64_t n, double alpha,
                       double z)
{
    double s = 0.0;
    for (int64_t j = 0; j < n; j++)
        for (int64_t k = 0; k < n; k++) {
            const double ej = w[j] - alpha * zeta[j] * (q[j] - z), ek = w[k] - alpha * zeta[k] * (q[k] - z);
            s += ej * (double)H[j * n + k] * ek;
        }
    return s;
}

/* zf_refit_row against losses summed in double from the vectors: its change is exact, never positive, and its
 * grid is the best of z0 and the rounded continuous optimum (solved here by scanning the zero finely). */
static void test_refit_row(zt_rng *rng)
{
    enum { N = 48 };
    float *H = make_hessian(rng, N), w[N], q[N], zeta[N];
    for (int t = 0; t < 20; t++) {
        const int bits = 2 + t % 3;
        const float maxq = (float)((1 << bits) - 1), z0 = (float)(t % (1 << bits)), a0 = 0.05f;
        for (int j = 0; j < N; j++) {
            zeta[j] = (float)(0.5 + zt_rng_uniform(rng));
            w[j] = (float)(0.1 * zt_rng_normal(rng));
            double c = nearbyint(w[j] / (a0 * zeta[j])) + z0;
            q[j] = (float)(c < 0 ? 0 : c > maxq ? maxq : c);
        }
        zf_row_model m = {0};
        for (int j = 0; j < N; j++)
            for (int k = 0; k < N; k++) {
                const double h = H[j * N + k], aj = zeta[j] * (q[j] - z0), ak = zeta[k] * (q[k] - z0);
                m.aa += aj * h * ak, m.aw += aj * h * w[k], m.av += aj * h * zeta[k], m.wv += w[j] * h * zeta[k];
                m.vv += zeta[j] * h * zeta[k];
            }
        float a, z;
        const double ch = zf_refit_row(&m, a0, z0, false, maxq, &a, &z);
        const double l0 = row_loss(w, q, zeta, H, N, a0, z0), l1 = row_loss(w, q, zeta, H, N, a, z);
        CHECK(ch <= 0.0 && a > 0.0f && z >= 0.0f && z <= maxq && z == rintf(z));
        CHECK_CLOSE(l1 - l0, ch, 1e-9 * l0, 1e-6); /* a difference of two sums of n² terms */
        /* at every integer zero the best α (by a fine scan of α around its closed form) is no better than this */
        double best = INFINITY;
        for (int zi = 0; zi <= (int)maxq; zi++)
            for (int s = -50; s <= 50; s++) {
                const double l = row_loss(w, q, zeta, H, N, a * (1.0 + s * 0.01), zi);
                best = l < best ? l : best;
            }
        CHECK_MSG(l1 <= best * (1.0 + 1e-6) + 1e-12 || z != z0, "refit row %d: %g, a scan finds %g", t, l1, best);
        /* the zero held fixed (sym) moves only α */
        float as, zs;
        zf_refit_row(&m, a0, z0, true, maxq, &as, &zs);
        CHECK(zs == z0 && row_loss(w, q, zeta, H, N, as, zs) <= l0 * (1.0 + 1e-9));
    }
    free(H);
}

/* Solves S x = y (S [n, n] symmetric positive definite) by Cholesky in double, in place. */
static void spd_solve_ref(double *S, double *y, int64_t n)
{
    for (int64_t j = 0; j < n; j++) {
        for (int64_t k = 0; k < j; k++) S[j * n + j] -= S[j * n + k] * S[j * n + k];
        S[j * n + j] = sqrt(S[j * n + j]);
        for (int64_t i = j + 1; i < n; i++) {
            for (int64_t k = 0; k < j; k++) S[i * n + j] -= S[i * n + k] * S[j * n + k];
            S[i * n + j] /= S[j * n + j];
        }
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < i; k++) y[i] -= S[i * n + k] * y[k];
        y[i] /= S[i * n + i];
    }
    for (int64_t i = n - 1; i >= 0; i--) {
        for (int64_t k = i + 1; k < n; k++) y[i] -= S[k * n + i] * y[k];
        y[i] /= S[i * n + i];
    }
}

/* The host backend's ζ refit primitives against double references: column dot products, H ∘ AᵀA, the damped
 * solve. */
static void test_zeta_primitives(zt_rng *rng)
{
    enum { R = 40, N = 72 };
    float *A = malloc(sizeof(float) * R * N), *B = malloc(sizeof(float) * R * N), *H = make_hessian(rng, N);
    float *M = malloc(sizeof(float) * N * N), x[N];
    double *S = malloc(sizeof(double) * N * N), out[N], y[N];
    zt_fill_normal(rng, A, R * N, 1.0);
    zt_fill_normal(rng, B, R * N, 1.0);
    zf_quant_opts o = opts(ZF_METHOD_ZFOLD, 3, false);
    const zf_backend_i *be = zf_cpu_backend_table();
    void *qs;
    CHECK_OK(be->q_begin(NULL, &o, R, N, true, &qs));
    CHECK_OK(be->coldot(qs, A, B, R, N, out));
    int ok = 1;
    for (int64_t j = 0; j < N; j++) {
        double s = 0.0;
        for (int64_t r = 0; r < R; r++) s += (double)A[r * N + j] * B[r * N + j];
        ok &= fabs(out[j] - s) <= 1e-12 * (1.0 + fabs(s));
    }
    CHECK_MSG(ok, "coldot differs from the double sums");
    CHECK_OK(be->hgram(qs, A, R, H, M));
    double err = 0.0, scale = 0.0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++) {
            double g = 0.0;
            for (int64_t r = 0; r < R; r++) g += (double)A[r * N + i] * A[r * N + j];
            S[i * N + j] = g * H[i * N + j];
            err = fmax(err, fabs(M[i * N + j] - S[i * N + j]));
            scale = fmax(scale, fabs(S[i * N + j]));
        }
    CHECK_MSG(err <= 1e-5 * scale, "H ∘ AᵀA: max error %g of %g", err, scale);
    const float lambda = (float)(1e-3 * S[0]);
    for (int64_t j = 0; j < N; j++) S[j * N + j] += lambda, y[j] = x[j] = (float)zt_rng_normal(rng);
    for (int64_t j = 0; j < N; j++) y[j] = x[j];
    zf_chol_result res;
    CHECK_OK(be->chol_solve(qs, M, N, lambda, x, &res));
    CHECK(res == ZF_CHOL_OK);
    spd_solve_ref(S, y, N);
    double dx = 0.0, ny = 0.0;
    for (int64_t j = 0; j < N; j++) dx = fmax(dx, fabs(x[j] - y[j])), ny = fmax(ny, fabs(y[j]));
    CHECK_MSG(dx <= 1e-3 * ny, "damped solve: max error %g of %g", dx, ny);
    /* an indefinite matrix is reported, not solved */
    for (int64_t i = 0; i < N * N; i++) M[i] = 0.0f;
    M[0] = -1.0f;
    CHECK_OK(be->chol_solve(qs, M, N, 0.0f, x, &res));
    CHECK(res == ZF_CHOL_NOT_PD);
    be->q_end(qs, ZF_OK);
    free(A), free(B), free(H), free(M), free(S);
}

/* The α refit's primitives against double references: the triangular solves of the factor basis (both ways), the
 * fused row sums, and the column loop's Σ err·x, which must be ΔW (H + λI) Wᵀ of each row (W - Q = E U), with act
 * order and a dead input. */
static void test_basis_primitives(zt_rng *rng)
{
    enum { R = 24, N = 48 };
    float *W = malloc(sizeof(float) * R * N), *H = make_hessian(rng, N), *B = malloc(sizeof(float) * N * R);
    float *U = calloc((size_t)N * N, sizeof(float)), *X = malloc(sizeof(float) * N * R), v[N], sc[R], zr[R];
    double *ref = malloc(sizeof(double) * N * R), out[4 * R];
    uint8_t *q = malloc((size_t)R * N);
    zt_fill_normal(rng, W, R * N, 0.02);
    zf_quant_opts o = opts(ZF_METHOD_ZFOLD, 3, false);
    const zf_backend_i *be = zf_cpu_backend_table();
    void *qs;
    CHECK_OK(be->q_begin(NULL, &o, R, N, true, &qs));
    /* an upper triangle with a dominant diagonal */
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = i; j < N; j++) U[i * N + j] = (float)(i == j ? 1.0 + zt_rng_uniform(rng) : 0.1 * zt_rng_normal(rng));
    for (int trans = 0; trans < 2; trans++) {
        zt_fill_normal(rng, B, N * R, 1.0);
        memcpy(X, B, sizeof(float) * N * R);
        CHECK_OK(be->tri_solve(qs, U, N, trans, X, R));
        /* op(U) X = B by substitution in double */
        for (int64_t c = 0; c < R; c++)
            for (int64_t k = 0; k < N; k++) {
                const int64_t i = trans ? k : N - 1 - k;
                double t = B[i * R + c];
                for (int64_t m = 0; m < N; m++) {
                    const double u = trans ? (m < i ? U[m * N + i] : 0.0) : (m > i ? U[i * N + m] : 0.0);
                    if (u != 0.0) t -= u * ref[m * R + c];
                }
                ref[i * R + c] = t / (trans ? U[i * N + i] : U[i * N + i]);
            }
        double err = 0.0, mag = 0.0;
        for (int64_t k = 0; k < N * R; k++) err = fmax(err, fabs(X[k] - ref[k])), mag = fmax(mag, fabs(ref[k]));
        CHECK_MSG(err <= 1e-5 * mag, "tri_solve (trans %d): max error %g of %g", trans, err, mag);
    }
    /* row sums: a = ζ(q - z), ΔW = W - s·a */
    for (int64_t k = 0; k < R * N; k++) q[k] = (uint8_t)(zt_rng_uniform(rng) * 8) % 8;
    for (int64_t j = 0; j < N; j++) v[j] = (float)zt_rng_normal(rng);
    float zeta[N];
    for (int64_t j = 0; j < N; j++) zeta[j] = (float)(0.5 + zt_rng_uniform(rng));
    for (int64_t r = 0; r < R; r++) sc[r] = (float)(0.005 * (1.0 + zt_rng_uniform(rng))), zr[r] = (float)(r % 8);
    CHECK_OK(be->zrow_sums(qs, W, q, sc, zr, zeta, v, R, N, out));
    int ok = 1;
    for (int64_t r = 0; r < R; r++) {
        double s[4] = {0, 0, 0, 0};
        for (int64_t j = 0; j < N; j++) {
            const double a = (double)zeta[j] * ((double)q[r * N + j] - zr[r]);
            const double e = W[r * N + j] - (double)sc[r] * a;
            s[0] += e * e, s[1] += a * a, s[2] += a * W[r * N + j], s[3] += a * v[j];
        }
        for (int k = 0; k < 4; k++) ok &= fabs(out[k * R + r] - s[k]) <= 1e-5 * (fabs(s[k]) + 1e-12) + 1e-12;
    }
    CHECK_MSG(ok, "zrow_sums differ from the double sums");
    be->q_end(qs, ZF_OK);
    /* the loop's Σ err·x: plain OPTQ on the whitened session, act order, input 5 dead */
    o.act_order = true;
    for (int64_t j = 0; j < N; j++) H[5 * N + j] = H[j * N + 5] = 0.0f;
    zf_qrun run;
    CHECK_OK(zf_qrun_open(zf_cpu_backend(), &o, W, R, N, H, &run));
    zf_qresult res;
    CHECK_OK(zf_qresult_alloc(&res, R, N, 1, 3));
    CHECK_OK(zf_optq_whiten(&run, &res));
    CHECK_OK(zf_optq_run(&run, NULL, NULL, NULL, &res));
    const double lam = run.lambda;
    for (int64_t r = 0; r < R; r++) {
        /* working copy: the dead input's weight is 0, and so its error */
        double ex = 0.0;
        for (int64_t j = 0; j < N; j++) {
            if (j == 5) continue;
            const int64_t g = 0;
            const double dj = W[r * N + j] - run.scale[r * 1 + g] * ((double)run.q[r * N + j] - run.zero[r]);
            for (int64_t k = 0; k < N; k++)
                if (k != 5) ex += dj * ((double)H[j * N + k] + (j == k ? lam : 0.0)) * W[r * N + k];
        }
        CHECK_CLOSE(run.rowex[r], ex, 1e-9, 1e-3);
    }
    zf_qresult_free(&res);
    zf_qrun_close(&run, ZF_OK);
    free(W), free(H), free(B), free(U), free(X), free(ref), free(q);
}

/* ΔL of the codes q and per-channel grids (scale, zero) on ζ, in double. */
static double zeta_loss(const float *W, const zf_qresult *r, const double *zeta, const float *H, int64_t R, int64_t N)
{
    double s = 0.0, *e = malloc(sizeof(double) * N);
    for (int64_t i = 0; i < R; i++) {
        for (int64_t j = 0; j < N; j++)
            e[j] = W[i * N + j] - (double)r->scale[i] * zeta[j] * ((double)r->q[i * N + j] - r->zero[i]);
        for (int64_t j = 0; j < N; j++)
            for (int64_t k = 0; k < N; k++) s += e[j] * H[j * N + k] * e[k];
    }
    free(e);
    return s;
}

/* a without a refit (off), b with it (on): the same codes, ΔL not raised, and b's ΔL its own. */
static void refit_pair(const zf_quant_opts *off, const zf_quant_opts *on, const float *W, int64_t R, int64_t N,
                       const float *H, const char *what, zf_qresult *a, zf_qresult *b)
{
    CHECK_OK(zf_quantize(off, W, R, N, H, NULL, a));
    CHECK_OK(zf_quantize(on, W, R, N, H, NULL, b));
    CHECK_MSG(memcmp(a->q, b->q, (size_t)(R * N)) == 0, "%s: the refit changed the codes", what);
    CHECK_MSG(b->dl <= a->dl, "%s: the refit raised ΔL %g -> %g", what, a->dl, b->dl);
    CHECK_CLOSE(b->dl, zf_delta_loss(W, b->deq, R, N, H), 0, 1e-4);
}

/* The ζ refit reaches the least ΔL over ζ for its codes and grids (the normal equations solved here in double), never
 * raises ΔL, and reports the result's own ΔL. */
static void test_refit_zeta(zt_rng *rng)
{
    enum { R = 48, N = 64 };
    float *W = malloc(sizeof(float) * R * N), *H = make_hessian(rng, N);
    double *S = malloc(sizeof(double) * N * N), y[N], zf[N], zs[N];
    zt_fill_normal(rng, W, R * N, 0.02);
    for (int bits = 2; bits <= 4; bits++) {
        zf_quant_opts on = opts(ZF_METHOD_ZFOLD, bits, false), off;
        on.refit = on.optq_fallback = false;
        on.refit_zeta = true;
        off = on;
        off.refit_zeta = false;
        zf_qresult a, b;
        char what[32];
        snprintf(what, sizeof what, "ζ refit %d-bit", bits);
        refit_pair(&off, &on, W, R, N, H, what, &a, &b);
        /* the minimum over ζ: (H ∘ AᵀA) ζ = Σ_r a_r ∘ (W H)_r, A = α(q - z) */
        for (int64_t j = 0; j < N; j++) {
            y[j] = 0.0;
            for (int64_t k = 0; k < N; k++) {
                double g = 0.0;
                for (int64_t r = 0; r < R; r++)
                    g += (double)b.scale[r] * (b.q[r * N + j] - b.zero[r]) * b.scale[r] * (b.q[r * N + k] - b.zero[r]);
                S[j * N + k] = g * H[j * N + k];
            }
            for (int64_t r = 0; r < R; r++) {
                double wh = 0.0;
                for (int64_t k = 0; k < N; k++) wh += (double)W[r * N + k] * H[k * N + j];
                y[j] += (double)b.scale[r] * (b.q[r * N + j] - b.zero[r]) * wh;
            }
        }
        spd_solve_ref(S, y, N);
        for (int64_t j = 0; j < N; j++) zf[j] = b.zeta[j], zs[j] = a.zeta[j];
        const double l_min = zeta_loss(W, &b, y, H, R, N), l_got = zeta_loss(W, &b, zf, H, R, N);
        const double l_old = zeta_loss(W, &b, zs, H, R, N);
        CHECK_MSG(l_got <= l_min + 0.02 * (l_old - l_min), "%d-bit: ΔL %g, the least over ζ %g (before %g)", bits,
                  l_got, l_min, l_old);
        printf("  ζ refit %d-bit: ΔL %.6g -> %.6g (least over ζ %.6g)\n", bits, l_old, l_got, l_min);
        /* a group of two members: the refit scores each row exactly (not the closed-form total), and each member's
         * ΔL is its own rows' ΔW H ΔWᵀ */
        zf_quant_opts dflt = opts(ZF_METHOD_ZFOLD, bits, false);
        dflt.refit_zeta = true;
        const int64_t mrows[2] = {R / 3, R - R / 3};
        double dl[2], dl_rtn[2];
        zf_qresult g;
        CHECK_OK(zf_backend_quantize_group(zf_cpu_backend(), &dflt, W, R, N, H, NULL, 2, mrows, NULL, &g, dl, dl_rtn));
        CHECK_CLOSE(dl[0], zf_delta_loss(W, g.deq, mrows[0], N, H), 0, 1e-4);
        CHECK_CLOSE(dl[1], zf_delta_loss(W + mrows[0] * N, g.deq + mrows[0] * N, mrows[1], N, H), 0, 1e-4);
        zf_qresult_free(&g);
        zf_qresult_free(&a);
        zf_qresult_free(&b);
    }
    free(W), free(H), free(S);
}

/* Row i's terms of its group [c0, c1) at zero z: p = ζ(q - z) on the group, u = e + a0 ζ(q - z0) there (e the row's
 * error elsewhere): pp = p H pᵀ, pu = p H uᵀ, so that α gives the loss α² pp - 2α pu (plus what α does not change). */
static void group_terms(const zf_qresult *r, const float *H, const double *e, int64_t N, int64_t i, int64_t c0,
                        int64_t c1, double a0, double z0, double z, double *pp, double *pu)
{
    *pp = *pu = 0.0;
    for (int64_t j = c0; j < c1; j++)
        for (int64_t k = 0; k < N; k++) {
            const double pj = r->zeta[j] * ((double)r->q[i * N + j] - z);
            const bool in = k >= c0 && k < c1;
            const double pk = in ? r->zeta[k] * ((double)r->q[i * N + k] - z) : 0.0;
            const double uk = e[k] + (in ? a0 * r->zeta[k] * ((double)r->q[i * N + k] - z0) : 0.0);
            *pp += pj * H[j * N + k] * pk, *pu += pj * H[j * N + k] * uk;
        }
}

/* The group refit's reference: one pass over the groups in order, each row's (α, zero) of the group from the exact
 * quadratic loss with its other groups fixed, every integer zero tried, in double. Returns ΔL. */
static double group_refit_ref(const float *W, const zf_qresult *r, const float *H, int64_t R, int64_t N, int64_t gs,
                              int bits, float *scale, float *zero)
{
    const int64_t ng = (N + gs - 1) / gs;
    double *e = malloc(sizeof(double) * N), total = 0.0;
    for (int64_t i = 0; i < R; i++) {
        for (int64_t j = 0; j < N; j++)
            e[j] = W[i * N + j] - (double)scale[i * ng + j / gs] * r->zeta[j] * ((double)r->q[i * N + j] - zero[i * ng + j / gs]);
        for (int64_t g = 0; g < ng; g++) {
            const int64_t c0 = g * gs, c1 = c0 + gs < N ? c0 + gs : N;
            const double a0 = scale[i * ng + g], z0 = zero[i * ng + g];
            double pp, pu;
            group_terms(r, H, e, N, i, c0, c1, a0, z0, z0, &pp, &pu);
            double best = a0 * a0 * pp - 2.0 * a0 * pu, ba = a0, bz = z0; /* the current grid's */
            for (int zi = 0; zi < (1 << bits); zi++) {
                group_terms(r, H, e, N, i, c0, c1, a0, z0, zi, &pp, &pu);
                if (!(pp > 0.0) || !(pu / pp > 0.0)) continue;
                const double a = pu / pp, l = a * a * pp - 2.0 * a * pu;
                if (l < best) best = l, ba = a, bz = zi;
            }
            for (int64_t j = c0; j < c1; j++)
                e[j] += a0 * r->zeta[j] * ((double)r->q[i * N + j] - z0) - ba * r->zeta[j] * ((double)r->q[i * N + j] - bz);
            scale[i * ng + g] = (float)ba, zero[i * ng + g] = (float)bz;
        }
        for (int64_t j = 0; j < N; j++)
            for (int64_t k = 0; k < N; k++) total += e[j] * H[j * N + k] * e[k];
    }
    free(e);
    return total;
}

/* Group-wise α and zero refitted per row and group after OPTQ: the codes unchanged, ΔL never raised and exact, and
 * the reference's (which searches every integer zero per group) to 0.1%; with act order too (Z-FOLD's groups are
 * runs of input columns either way: its grid is fixed before OPTQ). */
static void test_refit_groups(zt_rng *rng)
{
    enum { R = 24, N = 96, GS = 32 };
    float *W = malloc(sizeof(float) * R * N), *H = make_hessian(rng, N);
    zt_fill_normal(rng, W, R * N, 0.02);
    int lower = 0;
    for (int k = 0; k < 6; k++) {
        const int bits = 2 + k % 3;
        const bool act = k >= 3;
        zf_quant_opts on = opts(ZF_METHOD_ZFOLD, bits, false), off;
        on.group_size = GS;
        on.act_order = act;
        on.refit_zeta = on.optq_fallback = false;
        off = on;
        off.refit = false;
        zf_qresult a, b;
        char what[48];
        snprintf(what, sizeof what, "group refit g%d %d-bit%s", GS, bits, act ? " act order" : "");
        refit_pair(&off, &on, W, R, N, H, what, &a, &b);
        for (int64_t j = 0; j < N; j++) CHECK(a.g_idx[j] == j / GS);
        const int64_t rg = R * (N / GS);
        float *s = malloc(sizeof(float) * rg * 2);
        memcpy(s, a.scale, sizeof(float) * rg), memcpy(s + rg, a.zero, sizeof(float) * rg);
        const double ref = group_refit_ref(W, &a, H, R, N, GS, bits, s, s + rg);
        CHECK_MSG(b.dl <= ref * 1.001, "%s: ΔL %g, the reference's %g", what, b.dl, ref);
        printf("  %s: ΔL %.6g -> %.6g (reference %.6g)\n", what, a.dl, b.dl, ref);
        lower += b.dl < a.dl;
        free(s);
        zf_qresult_free(&a);
        zf_qresult_free(&b);
    }
    CHECK_MSG(lower == 6, "the group refit lowered ΔL in %d of 6 cases", lower);
    free(W), free(H);
}

/* Group-wise Z-FOLD with tied ζ where plain OPTQ is kept (forced): its codes get the ζ refit too, which must see
 * W·H (not what OPTQ's group grids left in the scratch): ΔL exact, never above plain OPTQ's, and lower somewhere. */
static void test_groups_optq_kept(zt_rng *rng)
{
    enum { R = 32, N = 128 };
    float *W = malloc(sizeof(float) * R * N), *H = make_hessian(rng, N);
    zt_fill_normal(rng, W, R * N, 0.02);
    for (int j = 0; j < N; j++)
        for (int i = 0; i < R; i++) W[i * N + j] *= (float)(0.5 + (j % 7) * 0.3);
    int32_t cls[N];
    for (int j = 0; j < N; j++) cls[j] = j % 16; /* heads sharing ζ, as V's output rows under GQA */
    zf_zeta_tie tie = {cls, 16};
    int lower = 0;
    for (int bits = 2; bits <= 4; bits++) {
        zf_quant_opts oo = opts(ZF_METHOD_OPTQ, bits, false), oz = opts(ZF_METHOD_ZFOLD, bits, false);
        oo.group_size = oz.group_size = 32;
        oz.optq_always = oz.refit_zeta = true;
        zf_qresult ro, rz;
        CHECK_OK(zf_quantize(&oo, W, R, N, H, NULL, &ro));
        CHECK_OK(zf_quantize(&oz, W, R, N, H, &tie, &rz));
        CHECK(rz.optq_kept);
        CHECK_MSG(rz.dl <= ro.dl, "g32 tied %d-bit: OPTQ kept and refitted ΔL %g > OPTQ %g", bits, rz.dl, ro.dl);
        CHECK_CLOSE(rz.dl, zf_delta_loss(W, rz.deq, R, N, H), 0, 1e-4);
        lower += rz.dl < ro.dl;
        printf("  g32 tied %d-bit, OPTQ kept: ΔL %.6g, with ζ refitted %.6g\n", bits, ro.dl, rz.dl);
        zf_qresult_free(&ro);
        zf_qresult_free(&rz);
    }
    CHECK_MSG(lower > 0, "the ζ refit never lowered plain OPTQ's ΔL");
    free(W), free(H);
}

/* The fallback's screen: plain OPTQ on a quarter of the rows. Where Z-FOLD wins there by the margin it is kept and
 * the result is the full comparison's own (codes, grids, ζ, ΔL); where the screen cannot tell, plain OPTQ runs on all
 * rows and the result is again the unscreened one. Both outcomes must occur over these layers. */
static void test_screen(zt_rng *rng)
{
    enum { R = 1024, N = 64 };
    float *W = malloc(sizeof(float) * R * N), *H = make_hessian(rng, N);
    int screened = 0, full = 0;
    for (int kind = 0; kind < 3; kind++)
        for (int bits = 2; bits <= 4; bits++) {
            zt_fill_normal(rng, W, R * N, 0.02);
            for (int j = 0; kind == 1 && j < N; j += 8)
                for (int r = 0; r < R; r++) W[r * N + j] *= 6.0f; /* ζ has work to do: Z-FOLD wins clearly */
            /* kind 2: each row on its own min-max grid, nearly: plain OPTQ's grid is right, Z-FOLD cannot win much */
            for (int r = 0; kind == 2 && r < R; r++)
                for (int j = 0; j < N; j++) {
                    const int code = j == 0 ? 0 : j == 1 ? (1 << bits) - 1 : (int)(zt_rng_uniform(rng) * (1 << bits)) % (1 << bits);
                    W[r * N + j] = 0.01f * (float)(1 + r % 5) * ((float)code + 0.01f * (float)zt_rng_uniform(rng));
                }
            zf_quant_opts on = opts(ZF_METHOD_ZFOLD, bits, false), off;
            on.optq_screen = 0.25;
            off = on;
            off.optq_screen = 0;
            zf_qresult a, b;
            CHECK_OK(zf_quantize(&on, W, R, N, H, NULL, &a));
            CHECK_OK(zf_quantize(&off, W, R, N, H, NULL, &b));
            CHECK(b.optq_screen_rows == 0);
            CHECK_MSG(a.optq_screen_rows == 0 || a.optq_screen_rows == R / 4, "%lld rows screened",
                      (long long)a.optq_screen_rows);
            if (a.optq_screen_rows) CHECK(!a.optq_kept && !b.optq_kept);
            screened += a.optq_screen_rows > 0, full += a.optq_screen_rows == 0;
            CHECK_MSG(a.optq_kept == b.optq_kept && a.dl == b.dl && !memcmp(a.q, b.q, (size_t)R * N) &&
                          !memcmp(a.scale, b.scale, R * sizeof(float)) && !memcmp(a.zeta, b.zeta, N * sizeof(float)),
                      "kind %d, %d-bit: screened result (ΔL %g, OPTQ kept %d) differs from the full comparison's "
                      "(ΔL %g, %d)", kind, bits, a.dl, a.optq_kept, b.dl, b.optq_kept);
            /* kind 2's ΔL is ~1e-3 of the others': the loop's float sums are relatively coarser there */
            CHECK_CLOSE(a.dl, zf_delta_loss(W, a.deq, R, N, H), 0, kind == 2 ? 1e-3 : 1e-4);
            printf("  screen kind %d %d-bit: ΔL %.6g, %s\n", kind, bits, a.dl,
                   a.optq_screen_rows ? "Z-FOLD kept on the screen" : b.optq_kept ? "OPTQ kept" : "full comparison");
            zf_qresult_free(&a);
            zf_qresult_free(&b);
        }
    CHECK_MSG(screened > 0 && full > 0, "screened %d, full %d: both outcomes expected", screened, full);
    free(W), free(H);
}

/* Each row's ΔW H ΔWᵀ in double (rowv [rows]) of the codes q on the grid (scale, zero per row, ζ per column). */
static void grid_row_losses(const float *W, const uint8_t *q, const float *scale, const float *zero,
                            const float *zeta, const float *H, int64_t rows, int64_t n, double *rowv)
{
    double *e = malloc(sizeof(double) * n);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < n; j++)
            e[j] = (double)W[r * n + j] - (double)zeta[j] * (double)scale[r] * ((double)q[r * n + j] - (double)zero[r]);
        rowv[r] = 0.0;
        for (int64_t j = 0; j < n; j++)
            for (int64_t k = 0; k < n; k++) rowv[r] += e[j] * (double)H[j * n + k] * e[k];
    }
    free(e);
}

/* grid_widen against a reference built from the parts: the ALS grid (zf_zfold_als), OPTQ on its scales times 1, 1.1,
 * ... (zf_optq) while ΔL in double over the rows tried falls; Z-FOLD without refits or fallback must choose the same
 * factor and return that OPTQ run's codes, over all rows (R = 128) and on four blocks of 128 rows (R = 1024,
 * grid_widen_sample 0.5: rows [256 b, 256 b + 128)). Per row, each row's own factor: never above the layer's ΔL.
 * Somewhere the factor must exceed 1. */
static void test_widen(zt_rng *rng)
{
    enum { N = 64, T = 512 };
    /* inputs driven by four shared factors: OPTQ's error feedback is large, and widening pays at 2 bits */
    float *X = malloc(sizeof(float) * T * N), *H = malloc(sizeof(float) * N * N);
    zt_factor_inputs(rng, X, T, N, 0.3);
    zt_hessian_ref(X, T, N, H);
    free(X);
    int widened = 0;
    for (int64_t R = 128; R <= 1024; R *= 8)
        for (int bits = 2; bits <= 3; bits++) {
            float *W = malloc(sizeof(float) * R * N), *alpha = malloc(sizeof(float) * R * 3), zeta[N];
            float *zero = alpha + R, *sc = alpha + 2 * R;
            zt_fill_normal(rng, W, R * N, 0.02);
            zf_quant_opts o = opts(ZF_METHOD_ZFOLD, bits, false);
            o.refit = o.refit_zeta = o.optq_fallback = false;
            o.grid_widen = ZF_WIDEN_LAYER;
            o.grid_widen_sample = 0.5;
            int iters, kept;
            CHECK_OK(zf_zfold_als(&o, W, R, N, H, NULL, alpha, zero, zeta, &iters, &kept, NULL, NULL));
            zf_qresult t;
            CHECK_OK(zf_qresult_alloc(&t, R, N, 1, bits));
            double best = INFINITY, cbest = 1.0, margin = INFINITY, bestall = 0.0, *rowv = malloc(sizeof(double) * R);
            uint8_t *qbest = malloc((size_t)R * N);
            for (int k = 0; k <= 10; k++) {
                const double c = 1.0 + k * 0.1;
                for (int64_t r = 0; r < R; r++) sc[r] = (float)((double)alpha[r] * c);
                CHECK_OK(zf_optq(&o, W, R, N, H, sc, zero, zeta, &t));
                grid_row_losses(W, t.q, sc, zero, zeta, H, R, N, rowv);
                double dl = 0.0, all = 0.0;
                for (int64_t r = 0; r < R; r++) {
                    all += rowv[r];
                    if (R <= 256 || r % 256 < 128) dl += rowv[r]; /* the rows tried */
                }
                margin = fmin(margin, fabs(dl - best) / dl);
                if (!(dl < best)) break;
                best = dl, cbest = c, bestall = all;
                memcpy(qbest, t.q, (size_t)R * N);
            }
            zf_qresult a, b;
            CHECK_OK(zf_quantize(&o, W, R, N, H, NULL, &a));
            o.grid_widen = ZF_WIDEN_ROW;
            CHECK_OK(zf_quantize(&o, W, R, N, H, NULL, &b));
            CHECK_MSG(margin > 1e-5, "R %lld %d-bit: trials within %g of each other: choose another layer",
                      (long long)R, bits, margin);
            CHECK_MSG(fabs(a.grid_widen - cbest) < 1e-9 && !memcmp(a.q, qbest, (size_t)R * N),
                      "R %lld %d-bit: widened %g, reference %g", (long long)R, bits, a.grid_widen, cbest);
            CHECK_CLOSE(a.dl, bestall, 0, 1e-4);
            CHECK_MSG(b.dl <= a.dl * (1 + 1e-6) && b.grid_widen >= 1.0, "R %lld %d-bit: per row ΔL %g (mean factor "
                      "%g), per layer %g", (long long)R, bits, b.dl, b.grid_widen, a.dl);
            for (int64_t r = 0; r < R; r++) {
                const double f = (double)b.scale[r] / (double)alpha[r];
                CHECK_MSG(f > 0.9999 && f < 2.0001 && fabs(f * 10 - rint(f * 10)) < 1e-4, "row %lld factor %g",
                          (long long)r, f);
            }
            widened += cbest > 1.0;
            printf("  grid_widen R %lld %d-bit: layer %.1fx ΔL %.6g (reference %.6g), per row (mean %.3fx) %.6g\n",
                   (long long)R, bits, a.grid_widen, a.dl, bestall, b.grid_widen, b.dl);
            zf_qresult_free(&a), zf_qresult_free(&b), zf_qresult_free(&t);
            free(W), free(alpha), free(qbest), free(rowv);
        }
    CHECK_MSG(widened > 0, "no layer widened its grid");
    free(H);
}

/* ΔL from the column loop is Σ err² less the damping's part λ |ΔW|²: with a few inputs 10⁴x larger than the rest
 * (their weights 0), λ = damp · mean diag H is nearly all of every row's sum, and the difference must come from the
 * quadratic form instead. OPTQ and Z-FOLD report the double reference's ΔL. */
static void test_loop_digits(zt_rng *rng)
{
    enum { R = 64, N = 64, T = 512 };
    float *X = malloc(sizeof(float) * T * N), *H = malloc(sizeof(float) * N * N), *W = malloc(sizeof(float) * R * N);
    zt_fill_normal(rng, X, T * N, 1.0);
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < 4; j++) X[t * N + j] *= 1e4f;
    zt_hessian_ref(X, T, N, H);
    zt_fill_normal(rng, W, R * N, 0.02);
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < 4; j++) W[r * N + j] = 0.0f;
    for (int m = 0; m < 2; m++) {
        zf_quant_opts o = opts(m ? ZF_METHOD_ZFOLD : ZF_METHOD_OPTQ, 3, false);
        zf_qresult res;
        CHECK_OK(zf_quantize(&o, W, R, N, H, NULL, &res));
        const double ref = zt_delta_loss_ref(W, res.deq, R, N, H);
        CHECK_MSG(res.dl >= 0.0 && fabs(res.dl - ref) <= 1e-4 * ref, "%s: ΔL %g, reference %g", m ? "Z-FOLD" : "OPTQ",
                  res.dl, ref);
        printf("  damping-dominated sums, %s: ΔL %.6g (reference %.6g)\n", m ? "Z-FOLD" : "OPTQ", res.dl, ref);
        zf_qresult_free(&res);
    }
    free(X), free(H), free(W);
}

/* zfold_rounds: more rounds never raise ΔL, the reported ΔL stays exact and the result consistent, and somewhere
 * they lower it. */
static void test_rounds(zt_rng *rng)
{
    enum { R = 48, N = 96 };
    float *W = malloc(sizeof(float) * R * N), *H = make_hessian(rng, N);
    zt_fill_normal(rng, W, R * N, 0.02);
    for (int j = 0; j < N; j += 12)
        for (int r = 0; r < R; r++) W[r * N + j] *= 4.0f; /* outlier input channels: ζ has work to do */
    int lowered = 0;
    for (int bits = 2; bits <= 4; bits++)
        for (int64_t gs = 0; gs <= 32; gs += 32) {
            zf_quant_opts one = opts(ZF_METHOD_ZFOLD, bits, false), three;
            one.group_size = gs;
            three = one;
            three.zfold_rounds = 3;
            zf_qresult a, b;
            CHECK_OK(zf_quantize(&one, W, R, N, H, NULL, &a));
            CHECK_OK(zf_quantize(&three, W, R, N, H, NULL, &b));
            CHECK_MSG(b.dl <= a.dl, "%d-bit g%lld: 3 rounds ΔL %g > 1 round's %g", bits, (long long)gs, b.dl, a.dl);
            CHECK_CLOSE(b.dl, zf_delta_loss(W, b.deq, R, N, H), 0, 1e-4);
            int ok = 1;
            for (int64_t i = 0; i < R; i++)
                for (int64_t j = 0; j < N; j++) {
                    const int64_t k = i * b.ngroups + b.g_idx[j];
                    ok &= b.deq[i * N + j] == (b.scale[k] * b.zeta[j]) * ((float)b.q[i * N + j] - b.zero[k]);
                }
            CHECK_MSG(ok, "%d-bit g%lld: deq inconsistent after rounds", bits, (long long)gs);
            lowered += b.dl < a.dl;
            printf("  rounds %d-bit g%-3lld: ΔL 1 round %.6g, 3 rounds %.6g\n", bits, (long long)gs, a.dl, b.dl);
            zf_qresult_free(&a);
            zf_qresult_free(&b);
        }
    CHECK_MSG(lowered > 0, "extra rounds never lowered ΔL");
    free(W), free(H);
}

/* The host backend's diagonal search against double scores of every candidate it may try (N spans several of
 * its early-stop chunks and both of its tails). */
static void test_zgrid_diag(zt_rng *rng)
{
    enum { R = 24, N = 603 };
    zf_quant_opts o = opts(ZF_METHOD_ZFOLD, 3, false);
    float *X = malloc(sizeof(float) * R * N), g[N], scale[R], zero[R];
    double score[R];
    zt_fill_normal(rng, X, R * N, 0.1);
    for (int j = 0; j < N; j++) g[j] = (float)(j % 7 == 0 ? 20.0 : 0.5 + zt_rng_uniform(rng));
    const zf_backend_i *be = zf_cpu_backend_table();
    for (int pass = 0; pass < 2; pass++) {
        o.sym = pass == 1;
        void *qs;
        CHECK_OK(be->q_begin(NULL, &o, R, N, false, &qs));
        const float maxq = (float)((1 << o.bits) - 1);
        for (int r = 0; r < R; r++) {
            float lo, hi;
            zf_grid_range(X + r * N, N, o.sym, &lo, &hi);
            zf_grid_candidate(lo, hi, 1.0, o.bits, o.sym, ZF_ZR_ROUND, &scale[r], &zero[r]);
        }
        CHECK_OK(be->zgrid_diag(qs, X, R, N, N, g, 5, 5, scale, 1, zero, score));
        int ok = 1;
        for (int r = 0; r < R; r++) {
            const float *x = X + r * N;
            float lo, hi;
            zf_grid_range(x, N, o.sym, &lo, &hi);
            double mine = 0.0, low = INFINITY;
            for (int j = 0; j < N; j++) {
                const double e = x[j] - (double)scale[r] * (zf_qcode(x[j], scale[r], zero[r], maxq) - zero[r]);
                mine += g[j] * e * e;
            }
            /* no candidate on the coarse lattice or in the window of the chosen ratio scores lower */
            for (int i = 0; i < o.grid_points; i++)
                for (int k = 0; k < (o.sym ? 1 : 2); k++) {
                    float s, z;
                    zf_grid_candidate(lo, hi, 1.0 - (double)i / o.grid_points, o.bits, o.sym,
                                      o.sym ? ZF_ZR_ROUND : (k ? ZF_ZR_CEIL : ZF_ZR_FLOOR), &s, &z);
                    const int ic = zf_grid_ratio_index(scale[r], lo, hi, o.bits, o.grid_points);
                    if (i % 5 != 0 && abs(i - ic) > 5) continue;
                    double e2 = 0.0;
                    for (int j = 0; j < N; j++) {
                        const double e = x[j] - (double)s * (zf_qcode(x[j], s, z, maxq) - z);
                        e2 += g[j] * e * e;
                    }
                    low = e2 < low ? e2 : low;
                }
            ok &= fabs(mine - score[r]) <= 1e-5 * mine && mine <= low * (1.0 + 1e-5);
        }
        CHECK_MSG(ok, "diagonal search (%s): a scored candidate beats the choice, or the score is not its own",
                  o.sym ? "sym" : "asym");
        be->q_end(qs, ZF_OK);
    }
    free(X);
}

int main(void)
{
    zt_rng rng;
    zt_rng_seed(&rng, 99);
    test_refit_row(&rng);
    test_zgrid_diag(&rng);
    test_zeta_primitives(&rng);
    test_basis_primitives(&rng);
    test_refit_zeta(&rng);
    test_rounds(&rng);
    test_groups_optq_kept(&rng);
    test_refit_groups(&rng);
    test_screen(&rng);
    test_widen(&rng);
    test_loop_digits(&rng);
    test_alpha_lsq(&rng);
    test_tie(&rng);
    test_als_only(&rng);
    test_alg2_equivalence(&rng);
    test_fixtures(&rng);
    /* Z-FOLD + act-order also beats OPTQ + act-order. */
    float *W = malloc(sizeof(float) * 128 * 200), *H = make_hessian(&rng, 200);
    zt_fill_normal(&rng, W, 128 * 200, 0.02);
    zf_quant_opts oo = opts(ZF_METHOD_OPTQ, 3, false), oz = opts(ZF_METHOD_ZFOLD, 3, false);
    oo.act_order = oz.act_order = true;
    zf_qresult ro, rz;
    CHECK_OK(zf_quantize(&oo, W, 128, 200, H, NULL, &ro));
    CHECK_OK(zf_quantize(&oz, W, 128, 200, H, NULL, &rz));
    CHECK_MSG(rz.dl <= ro.dl, "act-order: Z-FOLD %g > OPTQ %g", rz.dl, ro.dl);
    zf_qresult_free(&ro);
    zf_qresult_free(&rz);
    free(W), free(H);
    return zt_finish("test_zfold");
}
