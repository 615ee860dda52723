/* OPTQ on the device: damping and dead inputs, chol((H + λI)⁻¹) with cuSOLVER, the column loop and lazy GEMM updates. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/cuda/cuda_quant.h"
#include "common/clock.h"

/* Columns handled by one launch of the column kernel (kept in registers per row); the rest of the block is
 * updated from their errors by one GEMM, as on the host. */
#define ZF_CQ_SUB 16
#define ZF_CQ_ROWS_PER_CTA 128

/* J·(Hp + λI)·J, lower triangle row-major (= upper column-major for cuSOLVER), dead diagonals set to 1. */
__global__ void k_damped(const float *H, int64_t n, const int32_t *perm, float lambda, float *A)
{
    const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n) return;
    for (int64_t a = blockIdx.y; a < n; a += gridDim.y) {
        float v = 0.0f;
        if (b <= a) {
            const int64_t pa = perm ? perm[n - 1 - a] : n - 1 - a, pb = perm ? perm[n - 1 - b] : n - 1 - b;
            v = H[pa * n + pb];
            if (a == b) {
                if (v == 0.0f) v = 1.0f;
                v = __fadd_rn(v, lambda);
            }
        }
        A[a * n + b] = v;
    }
}

/* 180° rotation in place: (i, j) <-> (n-1-i, n-1-j). */
__global__ void k_rotate(float *A, int64_t nn)
{
    const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= nn / 2) return;
    const float t = A[k];
    A[k] = A[nn - 1 - k];
    A[nn - 1 - k] = t;
}

/* Strict lower part to zero; flag = 1 if the upper part holds a non-finite value. */
__global__ void k_upper_check(float *U, int64_t n, int *flag)
{
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    for (int64_t i = blockIdx.y; i < n; i += gridDim.y) {
        if (j < i) U[i * n + j] = 0.0f;
        else if (!isfinite(U[i * n + j])) *flag = 1;
    }
}

/* zf_optq_factor on the device: POTRF + TRTRI of the index-reversed damped Hessian, rotated, exactly as the host. */
static zf_status factor(zf_cq *c, const int32_t *perm_dev, double *damp_used, int *retries)
{
    const zf_quant_opts *o = c->o;
    const int64_t n = c->cols;
    const cudaStream_t st = c->cu->stream;
    double mean = 0.0;
    for (int64_t j = 0; j < n; j++) {
        const double h = c->Hh[j * n + j];
        mean += h == 0.0 ? 1.0 : h;
    }
    mean /= (double)n;

    cusolverDnParams_t params = NULL;
    ZF_CUSOLVER_TRY(c->cu, cusolverDnCreateParams(&params));
    size_t dp = 0, hp = 0, dt = 0, ht = 0;
    cusolverStatus_t ss = cusolverDnXpotrf_bufferSize(c->cu->solver, params, CUBLAS_FILL_MODE_UPPER, n, CUDA_R_32F,
                                                      c->U, n, CUDA_R_32F, &dp, &hp);
    if (ss == CUSOLVER_STATUS_SUCCESS)
        ss = cusolverDnXtrtri_bufferSize(c->cu->solver, CUBLAS_FILL_MODE_UPPER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_32F,
                                         c->U, n, &dt, &ht);
    if (ss != CUSOLVER_STATUS_SUCCESS) {
        cusolverDnDestroyParams(params);
        return zf_fail(ZF_ERR_INTERNAL, "cuda:%d: cuSOLVER workspace query for a [%lld x %lld] Hessian failed: status %d",
                       c->cu->device, (long long)n, (long long)n, (int)ss);
    }
    const size_t dbytes = (dp > dt ? dp : dt) + 16, hbytes = hp > ht ? hp : ht;
    zf_status s = ZF_OK;
    if (dbytes > c->work_bytes) {
        zf_cuda_free(c->cu, c->work);
        c->work = NULL;
        c->work_bytes = 0;
        s = zf_cuda_alloc(c->cu, dbytes, "OPTQ Cholesky workspace", &c->work);
        if (s == ZF_OK) c->work_bytes = dbytes;
    }
    if (s == ZF_OK && hbytes > c->hwork_bytes) {
        free(c->hwork);
        c->hwork = zf_malloc(hbytes, "OPTQ Cholesky host workspace");
        c->hwork_bytes = c->hwork ? hbytes : 0;
        if (!c->hwork) s = ZF_ERR_NOMEM;
    }
    if (s != ZF_OK) {
        cusolverDnDestroyParams(params);
        return s;
    }

    double damp = o->damp;
    char tried[512];
    size_t tl = 0;
    tried[0] = '\0';
    const dim3 g2(zf_cuda_blocks(n, 256), (unsigned)(n < 65535 ? n : 65535));
    for (int attempt = 0; attempt <= o->damp_retries; attempt++, damp *= 10.0) {
        const float lambda = (float)(damp * mean);
        k_damped<<<g2, 256, 0, st>>>(c->H, n, perm_dev, lambda, c->U);
        if ((s = zf_cq_launched(c)) != ZF_OK) break;
        int info = 0;
        ss = cusolverDnXpotrf(c->cu->solver, params, CUBLAS_FILL_MODE_UPPER, n, CUDA_R_32F, c->U, n, CUDA_R_32F,
                              c->work, c->work_bytes, c->hwork, c->hwork_bytes, c->flag);
        if (ss != CUSOLVER_STATUS_SUCCESS) {
            s = zf_fail(ZF_ERR_INTERNAL, "cuda:%d: cusolverDnXpotrf [%lld x %lld] failed: status %d", c->cu->device,
                        (long long)n, (long long)n, (int)ss);
            break;
        }
        if ((s = zf_cq_d2h(c, &info, c->flag, sizeof info)) != ZF_OK) break;
        const char *why = "not positive definite";
        if (info == 0) {
            ss = cusolverDnXtrtri(c->cu->solver, CUBLAS_FILL_MODE_UPPER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_32F, c->U, n,
                                  c->work, c->work_bytes, c->hwork, c->hwork_bytes, c->flag);
            if (ss != CUSOLVER_STATUS_SUCCESS) {
                s = zf_fail(ZF_ERR_INTERNAL, "cuda:%d: cusolverDnXtrtri [%lld x %lld] failed: status %d",
                            c->cu->device, (long long)n, (long long)n, (int)ss);
                break;
            }
            if ((s = zf_cq_d2h(c, &info, c->flag, sizeof info)) != ZF_OK) break;
            why = "triangular factor singular";
        }
        if (info == 0) {
            if (n > 1) { /* n = 1 has nothing to swap, and an empty grid is a launch error */
                k_rotate<<<zf_cuda_blocks(n * n / 2, 256), 256, 0, st>>>(c->U, n * n);
                if ((s = zf_cq_launched(c)) != ZF_OK) break;
            }
            int bad = 0;
            if ((s = zf_cq_h2d(c, c->flag, &bad, sizeof bad)) != ZF_OK) break;
            k_upper_check<<<g2, 256, 0, st>>>(c->U, n, c->flag);
            if ((s = zf_cq_launched(c)) != ZF_OK) break;
            if ((s = zf_cq_d2h(c, &bad, c->flag, sizeof bad)) != ZF_OK) break;
            if (!bad) {
                *damp_used = damp;
                *retries = attempt;
                break;
            }
            why = "inverse factor not finite";
        }
        if (info < 0) {
            s = zf_fail(ZF_ERR_INTERNAL, "cuSOLVER rejected argument %d factorizing the Hessian", -info);
            break;
        }
        tl += (size_t)snprintf(tried + tl, tl < sizeof tried ? sizeof tried - tl : 0, "%s%g", attempt ? ", " : "",
                               damp);
        if (tl >= sizeof tried) tl = sizeof tried - 1;
        if (attempt < o->damp_retries) {
            zf_log_warn("OPTQ: damped Hessian [%lld x %lld] %s at damp %g; retrying with damp %g", (long long)n,
                        (long long)n, why, damp, damp * 10.0);
        } else {
            s = zf_fail(ZF_ERR_NUMERIC,
                        "OPTQ: the damped Hessian [%lld x %lld] could not be Cholesky-factorized and inverted with "
                        "damp %s (λ = damp · mean diag H, mean diag H = %g); raise damp or damp_retries, or check the "
                        "calibration inputs",
                        (long long)n, (long long)n, tried, mean);
        }
    }
    cusolverDnDestroyParams(params);
    return s;
}

/* Wt[p, r] = W[r, perm[p]] (0 for dead inputs) through a shared tile: column p of the working copy is contiguous. */
__global__ void k_gather_t(const float *W, const float *H, int64_t rows, int64_t n, const int32_t *perm, float *Wt)
{
    __shared__ float tile[32][33];
    const int64_t p0 = (int64_t)blockIdx.x * 32, r0 = (int64_t)blockIdx.y * 32;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const int64_t r = r0 + k, p = p0 + threadIdx.x;
        if (r < rows && p < n) {
            const int64_t j = perm[p];
            tile[k][threadIdx.x] = H[j * n + j] == 0.0f ? 0.0f : W[r * n + j];
        }
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const int64_t p = p0 + k, r = r0 + threadIdx.x;
        if (r < rows && p < n) Wt[p * rows + r] = tile[threadIdx.x][k];
    }
}

/* Rows × [c0, c0+len) of the working copy back to row-major [rows, len]. */
__global__ void k_slice_t(const float *Wt, int64_t rows, int64_t c0, int64_t len, float *G)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * len) return;
    const int64_t r = i / len, a = i % len;
    G[i] = Wt[(c0 + a) * rows + r];
}

/* Static group slice of the original W with dead inputs zeroed. */
__global__ void k_slice_static(const float *W, const float *H, int64_t rows, int64_t n, int64_t c0, int64_t len,
                               float *G)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * len) return;
    const int64_t r = i / len, a = i % len, j = c0 + a;
    G[i] = H[j * n + j] == 0.0f ? 0.0f : W[r * n + j];
}

__global__ void k_group_hess(const float *H, int64_t n, const int32_t *perm, int64_t c0, int64_t len, float *G)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len * len) return;
    const int64_t a = i / len, b = i % len;
    G[i] = H[(int64_t)perm[c0 + a] * n + perm[c0 + b]];
}

/* Columns [s0, s0+len) of the block starting at i1, one thread per row: quantize, error / U_pp, rank-1 updates of
 * the later columns of the sub-block (kept in registers; nothing else reads them before the GEMM). */
__global__ void __launch_bounds__(ZF_CQ_ROWS_PER_CTA)
k_columns(float *Wt, uint8_t *Qt, float *Err, const float *U, int64_t rows, int64_t n, int64_t i1, int64_t s0,
          int len, const float *scale, const float *zero, int64_t ngroups, int64_t gs, bool static_groups,
          const int32_t *perm, const float *zp, float maxq)
{
    __shared__ float Us[ZF_CQ_SUB][ZF_CQ_SUB];
    for (int t = threadIdx.x; t < ZF_CQ_SUB * ZF_CQ_SUB; t += blockDim.x) {
        const int a = t / ZF_CQ_SUB, b = t % ZF_CQ_SUB;
        Us[a][b] = a < len && b < len ? U[(s0 + a) * n + s0 + b] : 0.0f;
    }
    __syncthreads();
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float w[ZF_CQ_SUB];
#pragma unroll
    for (int k = 0; k < ZF_CQ_SUB; k++) w[k] = k < len ? Wt[(s0 + k) * rows + r] : 0.0f;
#pragma unroll
    for (int k = 0; k < ZF_CQ_SUB; k++) {
        if (k < len) {
            const int64_t p = s0 + k;
            const int64_t g = gs ? (static_groups ? perm[p] / gs : p / gs) : 0;
            const float s = __fmul_rn(scale[r * ngroups + g], zp[p]), z = zero[r * ngroups + g];
            const float code = zf_d_qcode(w[k], s, z, maxq);
            Qt[p * rows + r] = (uint8_t)code;
            const float e = __fdiv_rn(__fsub_rn(w[k], zf_d_dequant(code, s, z)), Us[k][k]);
            Err[(p - i1) * rows + r] = e;
            /* unfused like the host's wj -= u·e (ptxas would contract a plain mul and sub into an FMA) */
#pragma unroll
            for (int j = k + 1; j < ZF_CQ_SUB; j++) w[j] = __fsub_rn(w[j], __fmul_rn(Us[k][j], e));
        }
    }
}

/* q[r, perm[p]] = Qt[p, r]. */
__global__ void k_unpermute(const uint8_t *Qt, int64_t rows, int64_t n, const int32_t *perm, uint8_t *q)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * n) return;
    const int64_t p = i / rows, r = i % rows;
    q[r * n + perm[p]] = Qt[i];
}

/* Act-order key: diagonal descending, ties by column (stable and deterministic, as the host). */
typedef struct {
    float d;
    int64_t j;
} diag_key;

static int cmp_diag_desc(const void *a, const void *b)
{
    const diag_key *x = (const diag_key *)a, *y = (const diag_key *)b;
    if (x->d != y->d) return x->d > y->d ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

/* Wt[s1:i2 or beyond] -= Err[s0-i1 ...] · U[s0:s1, s1:i2]: column-major C[rows, m] -= E[rows, k] · op(U). */
static zf_status update(zf_cq *c, int64_t i1, int64_t s0, int64_t s1, int64_t i2, float *Wt)
{
    const float minus = -1.0f, one = 1.0f;
    const int64_t rows = c->rows, n = c->cols;
    ZF_CUBLAS_TRY(c->cu, cublasSgemm(c->cu->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)rows, (int)(i2 - s1), (int)(s1 - s0),
                                     &minus, c->Err + (s0 - i1) * rows, (int)rows, c->U + s0 * n + s1, (int)n, &one,
                                     Wt + s1 * rows, (int)rows));
    return ZF_OK;
}

zf_status zf_cq_optq(zf_cq *c, const float *fix_scale, const float *fix_zero, const float *zeta, zf_qresult *out)
{
    const zf_quant_opts *o = c->o;
    const int64_t rows = c->rows, n = c->cols, gs = c->gs, ngroups = c->ngroups;
    const int64_t B = o->block_size < n ? o->block_size : n;
    const cudaStream_t st = c->cu->stream;
    const float *H = c->Hh;
    float *Wt = c->A, *gbuf = c->B;
    ZF_ASSERT(!fix_scale || (!gs && fix_zero));

    out->dead_inputs = 0;
    for (int64_t j = 0; j < n; j++) out->dead_inputs += H[j * n + j] == 0.0f;

    /* Grids: per channel from the original W, static groups from W with dead inputs zeroed; dynamic ones in the loop. */
    if (fix_scale) {
        ZF_TRY(zf_cq_h2d(c, c->scale, fix_scale, (size_t)rows * sizeof(float)));
        ZF_TRY(zf_cq_h2d(c, c->zero, fix_zero, (size_t)rows * sizeof(float)));
    } else if (!gs) {
        ZF_TRY(zf_cq_grid_fit(c, o->grid, c->W, rows, n, n, c->H, n, NULL, c->scale, 1, c->zero));
    } else if (o->static_groups) {
        for (int64_t g = 0; g < ngroups; g++) {
            const int64_t c0 = g * gs, len = n - c0 < gs ? n - c0 : gs;
            k_slice_static<<<zf_cuda_blocks(rows * len, 256), 256, 0, st>>>(c->W, c->H, rows, n, c0, len, gbuf);
            ZF_TRY(zf_cq_launched(c));
            ZF_TRY(zf_cq_grid_fit(c, o->grid, gbuf, rows, len, len, c->H + c0 * n + c0, n, NULL, c->scale + g,
                                  ngroups, c->zero + g));
        }
    }

    int32_t *perm = c->hperm;
    if (o->act_order) {
        diag_key *keys = (diag_key *)zf_malloc((size_t)n * sizeof(diag_key), "OPTQ act-order keys");
        if (!keys) return ZF_ERR_NOMEM;
        for (int64_t j = 0; j < n; j++) keys[j] = (diag_key){H[j * n + j] == 0.0f ? 1.0f : H[j * n + j], j};
        qsort(keys, (size_t)n, sizeof(diag_key), cmp_diag_desc);
        for (int64_t p = 0; p < n; p++) perm[p] = (int32_t)keys[p].j;
        free(keys);
    } else {
        for (int64_t p = 0; p < n; p++) perm[p] = (int32_t)p;
    }
    float *zp = c->hf; /* [n] host scratch */
    for (int64_t p = 0; p < n; p++) zp[p] = zeta ? zeta[perm[p]] : 1.0f;
    ZF_TRY(zf_cq_h2d(c, c->perm, perm, (size_t)n * sizeof(int32_t)));
    ZF_TRY(zf_cq_h2d(c, c->zp, zp, (size_t)n * sizeof(float)));

    k_gather_t<<<dim3(zf_cuda_blocks(n, 32), zf_cuda_blocks(rows, 32)), dim3(32, 8), 0, st>>>(c->W, c->H, rows, n,
                                                                                              c->perm, Wt);
    ZF_TRY(zf_cq_launched(c));

    ZF_TRY(zf_cq_sync(c));
    double t0 = zf_now();
    ZF_TRY(factor(c, o->act_order ? c->perm : NULL, &out->damp_used, &out->damp_retries));
    out->t_factor = zf_now() - t0;

    t0 = zf_now();
    for (int64_t i1 = 0; i1 < n; i1 += B) {
        const int64_t i2 = i1 + B < n ? i1 + B : n;
        /* Dynamic groups starting in this block, from the working copy before the block's own updates. */
        if (gs && !o->static_groups)
            for (int64_t p = (i1 + gs - 1) / gs * gs; p < i2; p += gs) {
                const int64_t len = n - p < gs ? n - p : gs;
                k_slice_t<<<zf_cuda_blocks(rows * len, 256), 256, 0, st>>>(Wt, rows, p, len, gbuf);
                ZF_TRY(zf_cq_launched(c));
                if (o->grid == ZF_GRID_HESSIAN) {
                    k_group_hess<<<zf_cuda_blocks(len * len, 256), 256, 0, st>>>(c->H, n, c->perm, p, len, c->hbuf);
                    ZF_TRY(zf_cq_launched(c));
                }
                ZF_TRY(zf_cq_grid_fit(c, o->grid, gbuf, rows, len, len, c->hbuf, len, NULL, c->scale + p / gs,
                                      ngroups, c->zero + p / gs));
            }
        for (int64_t s0 = i1; s0 < i2; s0 += ZF_CQ_SUB) {
            const int64_t s1 = s0 + ZF_CQ_SUB < i2 ? s0 + ZF_CQ_SUB : i2;
            k_columns<<<zf_cuda_blocks(rows, ZF_CQ_ROWS_PER_CTA), ZF_CQ_ROWS_PER_CTA, 0, st>>>(
                Wt, c->Qt, c->Err, c->U, rows, n, i1, s0, (int)(s1 - s0), c->scale, c->zero, ngroups, gs,
                o->static_groups, c->perm, c->zp, c->maxq);
            ZF_TRY(zf_cq_launched(c));
            if (s1 < i2) ZF_TRY(update(c, i1, s0, s1, i2, Wt));
        }
        /* Lazy update of every later column. */
        if (i2 < n) ZF_TRY(update(c, i1, i1, i2, n, Wt));
    }
    ZF_TRY(zf_cq_sync(c));
    out->t_loop = zf_now() - t0;

    k_unpermute<<<zf_cuda_blocks(rows * n, 256), 256, 0, st>>>(c->Qt, rows, n, c->perm, c->q);
    ZF_TRY(zf_cq_launched(c));
    for (int64_t p = 0; p < n; p++)
        out->g_idx[perm[p]] = (int32_t)(gs ? (o->static_groups ? perm[p] / gs : p / gs) : 0);
    return ZF_OK;
}
