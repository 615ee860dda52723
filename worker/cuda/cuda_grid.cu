/* Device grids (min-max, MMSE, Hessian-scored, Z-FOLD's diagonal search), H products and quadratic forms per row,
 * the group refit's sums and updates, RTN codes, and the session's copies. */
#include <math.h>

#include "worker/cuda/cuda_quant.h"

#define ZF_RED_THREADS 256

zf_status zf_cq_launched(zf_cq *c)
{
    ZF_CUDA_TRY(c->cu, cudaGetLastError());
    return ZF_OK;
}

zf_status zf_cq_sync(zf_cq *c)
{
    ZF_CUDA_TRY(c->cu, cudaStreamSynchronize(c->cu->stream));
    return ZF_OK;
}

zf_status zf_cq_h2d(zf_cq *c, void *dev, const void *host, size_t bytes)
{
    ZF_CUDA_TRY(c->cu, cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, c->cu->stream));
    /* pageable host memory may be reused by the caller right away */
    ZF_CUDA_TRY(c->cu, cudaStreamSynchronize(c->cu->stream));
    return ZF_OK;
}

zf_status zf_cq_d2h(zf_cq *c, void *host, const void *dev, size_t bytes)
{
    ZF_CUDA_TRY(c->cu, cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, c->cu->stream));
    ZF_CUDA_TRY(c->cu, cudaStreamSynchronize(c->cu->stream));
    return ZF_OK;
}

/* Block-wide double sum over a power-of-two blockDim <= ZF_RED_THREADS; every thread gets the total. */
__device__ double block_sum(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    const double t = sh[0];
    __syncthreads();
    return t;
}

/* zf_grid_range per row: one block per row. The host's comparisons, not fminf/fmaxf: those may take a weight's -0
 * over the +0 start, which flips the sign of the zero point computed from -xmin. */
__global__ void k_range(const float *W, int64_t n, int64_t ldw, bool sym, float *xmin, float *xmax)
{
    __shared__ float slo[ZF_RED_THREADS], shi[ZF_RED_THREADS];
    const float *w = W + (int64_t)blockIdx.x * ldw;
    float lo = 0.0f, hi = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        lo = w[j] < lo ? w[j] : lo;
        hi = w[j] > hi ? w[j] : hi;
    }
    slo[threadIdx.x] = lo;
    shi[threadIdx.x] = hi;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            const float l = slo[threadIdx.x + s], h = shi[threadIdx.x + s];
            if (l < slo[threadIdx.x]) slo[threadIdx.x] = l;
            if (h > shi[threadIdx.x]) shi[threadIdx.x] = h;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        lo = slo[0];
        hi = shi[0];
        if (sym) {
            hi = -lo > hi ? -lo : hi;
            lo = -hi;
        }
        if (lo == 0.0f && hi == 0.0f) {
            lo = -1.0f;
            hi = 1.0f;
        }
        xmin[blockIdx.x] = lo;
        xmax[blockIdx.x] = hi;
    }
}

__global__ void k_minmax(int64_t rows, const float *xmin, const float *xmax, int bits, bool sym, float *scale,
                         int64_t lds, float *zero)
{
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    zf_d_candidate(xmin[r], xmax[r], 1.0, bits, sym, ZF_ZR_ROUND, &scale[r * lds], &zero[r * lds]);
}

/* Weights of one row staged in shared memory per pass of the MMSE search. */
#define ZF_MMSE_TILE 2048

/* |d|^norm as the host adds it: pow in double rounded to float. */
__device__ __forceinline__ double mmse_term(float d, float norm, bool sq)
{
    return sq ? (double)__fmul_rn(d, d) : (double)(float)pow((double)d, (double)norm);
}

/* Reference MMSE, one block per row and one thread per candidate: each candidate's error is summed over the row in
 * column order in double, as on the host, so that equal and nearly equal errors resolve alike; the first strict
 * minimum wins (smallest error, then smallest candidate). blockDim is a multiple of 32, at most ZF_RED_THREADS. */
__global__ void k_mmse(const float *W, int64_t n, int64_t ldw, const float *xmin, const float *xmax, int bits,
                       bool sym, int nshrink, int points, float norm, bool sq, float *scale, int64_t lds, float *zero)
{
    __shared__ float tile[ZF_MMSE_TILE];
    __shared__ double serr[ZF_RED_THREADS];
    __shared__ int sidx[ZF_RED_THREADS];
    const int64_t r = blockIdx.x;
    const float *w = W + r * ldw;
    const float maxq = (float)((1 << bits) - 1);
    const double lo = xmin[r], hi = xmax[r];
    double best = INFINITY;
    int bi = -1;
    for (int i0 = 0; i0 < nshrink; i0 += blockDim.x) {
        const int i = i0 + threadIdx.x;
        const bool on = i < nshrink;
        float s = 1.0f, z = 0.0f;
        if (on) zf_d_candidate(lo, hi, zf_d_ratio(i, points), bits, sym, ZF_ZR_ROUND, &s, &z);
        double err = 0.0;
        for (int64_t j0 = 0; j0 < n; j0 += ZF_MMSE_TILE) {
            const int len = n - j0 < ZF_MMSE_TILE ? (int)(n - j0) : ZF_MMSE_TILE;
            __syncthreads(); /* the previous tile is consumed */
            for (int t = threadIdx.x; t < len; t += blockDim.x) tile[t] = w[j0 + t];
            __syncthreads();
            if (on)
                for (int t = 0; t < len; t++) {
                    const float x = tile[t];
                    const float d = fabsf(__fsub_rn(zf_d_dequant(zf_d_qcode(x, s, z, maxq), s, z), x));
                    err = __dadd_rn(err, mmse_term(d, norm, sq));
                }
        }
        if (on && err < best) {
            best = err;
            bi = i;
        }
    }
    serr[threadIdx.x] = best;
    sidx[threadIdx.x] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)blockDim.x; k++)
            if (sidx[k] >= 0 && (bi < 0 || serr[k] < best || (serr[k] == best && sidx[k] < bi))) {
                best = serr[k];
                bi = sidx[k];
            }
        /* no finite error at all: the unshrunk grid, as the host's initial choice */
        float s, z;
        zf_d_candidate(lo, hi, bi < 0 ? 1.0 : zf_d_ratio(bi, points), bits, sym, ZF_ZR_ROUND, &s, &z);
        scale[r * lds] = s;
        zero[r * lds] = z;
    }
}

/* Hessian-scored search, candidate (p, zr) for rows [r0, r0+nr): E = (w - deq)·ζ per row, and the candidate grid. */
__global__ void k_hess_build(const float *W, int64_t r0, int64_t n, int64_t ldw, const float *zeta,
                             const float *xmin, const float *xmax, double p, int bits, bool sym, int zr, float *E,
                             float *cs, float *cz)
{
    const int64_t rl = blockIdx.y, r = r0 + rl;
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    float s, z;
    zf_d_candidate(xmin[r], xmax[r], p, bits, sym, zr, &s, &z);
    if (j == 0) {
        cs[r] = s;
        cz[r] = z;
    }
    if (j >= n) return;
    const float maxq = (float)((1 << bits) - 1);
    const float w = W[r * ldw + j];
    const float e = __fsub_rn(w, zf_d_dequant(zf_d_qcode(w, s, z, maxq), s, z));
    E[rl * n + j] = zeta ? __fmul_rn(e, zeta[j]) : e;
}

/* Score of the candidate per row (double dot of (E·H) and E); the first strict minimum wins. */
__global__ void k_hess_score(const float *D, const float *E, int64_t r0, int64_t n, const float *cs,
                             const float *cz, double *best, float *scale, int64_t lds, float *zero)
{
    __shared__ double sh[ZF_RED_THREADS];
    const int64_t rl = blockIdx.x, r = r0 + rl;
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += (double)D[rl * n + j] * (double)E[rl * n + j];
    s = block_sum(s, sh);
    if (threadIdx.x == 0 && s < best[r]) {
        best[r] = s;
        scale[r * lds] = cs[r];
        zero[r * lds] = cz[r];
    }
}

__global__ void k_fill_d(double *x, int64_t n, double v)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = v;
}

/* Row-major C[m, n] = A[m, k] · B[k, n] (all fp32, pure fp32 math mode set by the caller). */
static zf_status gemm_rm(zf_cq *c, int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const float *B,
                         int64_t ldb, float *C, int64_t ldc)
{
    const float one = 1.0f, zero = 0.0f;
    ZF_CUBLAS_TRY(c->cu, cublasSgemm(c->cu->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)m, (int)k, &one, B, (int)ldb,
                                     A, (int)lda, &zero, C, (int)ldc));
    return ZF_OK;
}

static zf_status fit_hessian(zf_cq *c, const float *W, int64_t rows, int64_t n, int64_t ldw, const float *H,
                             int64_t ldh, const float *zeta, float *scale, int64_t lds, float *zero)
{
    const zf_quant_opts *o = c->o;
    const cudaStream_t st = c->cu->stream;
    const float *xmin = c->rng, *xmax = c->rng + c->rows;
    float *cs = c->cand, *cz = c->cand + c->rows;
    k_fill_d<<<zf_cuda_blocks(rows, 256), 256, 0, st>>>(c->best, rows, INFINITY);
    ZF_TRY(zf_cq_launched(c));
    const int nround = o->sym ? 1 : 2;
    for (int64_t r0 = 0; r0 < rows; r0 += c->chunk) {
        const int64_t nr = rows - r0 < c->chunk ? rows - r0 : c->chunk;
        for (int i = 0; i < o->grid_points; i++) {
            const double p = 1.0 - (double)i / o->grid_points;
            for (int k = 0; k < nround; k++) {
                const int zr = o->sym ? ZF_ZR_ROUND : (k == 0 ? ZF_ZR_FLOOR : ZF_ZR_CEIL);
                const dim3 grid(zf_cuda_blocks(n, 256), (unsigned)nr);
                k_hess_build<<<grid, 256, 0, st>>>(W, r0, n, ldw, zeta, xmin, xmax, p, o->bits, o->sym, zr, c->E,
                                                   cs, cz);
                ZF_TRY(zf_cq_launched(c));
                ZF_TRY(gemm_rm(c, nr, n, n, c->E, n, H, ldh, c->D, n));
                k_hess_score<<<(unsigned)nr, ZF_RED_THREADS, 0, st>>>(c->D, c->E, r0, n, cs, cz, c->best, scale, lds,
                                                                       zero);
                ZF_TRY(zf_cq_launched(c));
            }
        }
    }
    return ZF_OK;
}

zf_status zf_cq_grid_fit(void *qs, zf_grid_kind kind, const float *W, int64_t rows, int64_t n, int64_t ldw,
                         const float *H, int64_t ldh, const float *zeta, float *scale, int64_t lds, float *zero)
{
    zf_cq *c = (zf_cq *)qs;
    const zf_quant_opts *o = c->o;
    const cudaStream_t st = c->cu->stream;
    float *xmin = c->rng, *xmax = c->rng + c->rows;
    ZF_ASSERT(rows > 0 && rows <= c->rows && n > 0 && n <= c->cols && ldw >= n);
    k_range<<<(unsigned)rows, ZF_RED_THREADS, 0, st>>>(W, n, ldw, o->sym, xmin, xmax);
    ZF_TRY(zf_cq_launched(c));
    switch (kind) {
    case ZF_GRID_MINMAX:
        k_minmax<<<zf_cuda_blocks(rows, 128), 128, 0, st>>>(rows, xmin, xmax, o->bits, o->sym, scale, lds, zero);
        return zf_cq_launched(c);
    case ZF_GRID_MMSE: {
        const int nshrink = (int)floor(o->max_shrink * o->grid_points + 1e-9);
        /* one thread per candidate, whole warps */
        int threads = (nshrink + 31) / 32 * 32;
        threads = threads < 32 ? 32 : (threads > ZF_RED_THREADS ? ZF_RED_THREADS : threads);
        k_mmse<<<(unsigned)rows, threads, 0, st>>>(W, n, ldw, xmin, xmax, o->bits, o->sym, nshrink, o->grid_points,
                                                   (float)o->mmse_norm, o->mmse_norm == 2.0, scale, lds, zero);
        return zf_cq_launched(c);
    }
    case ZF_GRID_HESSIAN:
        if (!H) return zf_fail(ZF_ERR_INPUT, "the Hessian grid needs a Hessian (none was given)");
        return fit_hessian(c, W, rows, n, ldw, H, ldh, zeta, scale, lds, zero);
    default:
        ZF_PANIC("unknown grid kind %d", (int)kind);
    }
}

/* Per row: aa = Σ_j D_rj A_rj and ab = Σ_j D_rj B_rj in double, D = A·H. */
__global__ void k_rowdots(const float *D, const float *A, const float *B, int64_t r0, int64_t n, double *aa,
                          double *ab)
{
    __shared__ double sh[ZF_RED_THREADS];
    const int64_t rl = blockIdx.x;
    const float *d = D + rl * n, *a = A + (r0 + rl) * n;
    double s = 0.0, t = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        s += (double)d[j] * (double)a[j];
        if (B) t += (double)d[j] * (double)B[(r0 + rl) * n + j];
    }
    s = block_sum(s, sh);
    if (B) t = block_sum(t, sh);
    if (threadIdx.x == 0) {
        aa[r0 + rl] = s;
        if (B) ab[r0 + rl] = t;
    }
}

zf_status zf_cq_quadform(void *qs, const float *A, const float *B, int64_t rows, const float *H, double *aa,
                         double *ab)
{
    zf_cq *c = (zf_cq *)qs;
    const int64_t n = c->cols;
    double *daa = c->rowd, *dab = c->rowd + c->rows;
    for (int64_t r0 = 0; r0 < rows; r0 += c->chunk) {
        const int64_t nr = rows - r0 < c->chunk ? rows - r0 : c->chunk;
        ZF_TRY(gemm_rm(c, nr, n, n, A + r0 * n, n, H, n, c->D, n));
        k_rowdots<<<(unsigned)nr, ZF_RED_THREADS, 0, c->cu->stream>>>(c->D, A, B && ab ? B : NULL, r0, n, daa, dab);
        ZF_TRY(zf_cq_launched(c));
    }
    ZF_TRY(zf_cq_d2h(c, aa, daa, (size_t)rows * sizeof(double)));
    if (B && ab) ZF_TRY(zf_cq_d2h(c, ab, dab, (size_t)rows * sizeof(double)));
    return ZF_OK;
}

__global__ void k_rtn_codes(const float *W, int64_t rows, int64_t cols, int64_t gs, int64_t ngroups,
                            const float *scale, const float *zero, float maxq, uint8_t *q)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    const int64_t r = i / cols, j = i % cols, k = r * ngroups + j / gs;
    q[i] = (uint8_t)zf_d_qcode(W[i], scale[k], zero[k], maxq);
}

zf_status zf_cq_rtn_codes(void *qs, const float *W, int64_t rows, int64_t cols, int64_t gs, int64_t ngroups,
                          const float *scale, const float *zero, uint8_t *q)
{
    zf_cq *c = (zf_cq *)qs;
    k_rtn_codes<<<zf_cuda_blocks(rows * cols, 256), 256, 0, c->cu->stream>>>(W, rows, cols, gs, ngroups, scale, zero,
                                                                              c->maxq, q);
    return zf_cq_launched(c);
}

/* x - deq with the code from x·(1/s), as the host's diag search. */
__device__ __forceinline__ float diag_err(float x, float inv, float s, float z, float maxq)
{
    float q = __fadd_rn(rintf(__fmul_rn(x, inv)), z);
    q = q < 0.0f ? 0.0f : (q > maxq ? maxq : q);
    return __fsub_rn(x, zf_d_dequant(q, s, z));
}

/* Σ_j g_j (x_j - deq_j)² of one candidate over the block; every thread gets it. */
__device__ double diag_score(const float *x, const float *g, int64_t n, float s, float z, float maxq, double *sh)
{
    const float inv = __fdiv_rn(1.0f, s);
    double t = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const float e = diag_err(x[j], inv, s, z, maxq);
        t += (double)__fmul_rn(g[j], __fmul_rn(e, e));
    }
    return block_sum(t, sh);
}

/* Ratios [i0, i1] step di, floor and ceil zero each (round when sym); the best strictly lower score wins. */
__device__ void diag_search(const float *x, const float *g, int64_t n, double lo, double hi, int bits, bool sym,
                            int points, int i0, int i1, int di, float *s, float *z, double *best, double *sh)
{
    const float maxq = (float)((1 << bits) - 1);
    for (int i = i0; i <= i1; i += di)
        for (int k = 0; k < (sym ? 1 : 2); k++) {
            float cs, cz;
            zf_d_candidate(lo, hi, zf_d_ratio(i, points), bits, sym, sym ? ZF_ZR_ROUND : (k == 0 ? ZF_ZR_FLOOR : ZF_ZR_CEIL),
                           &cs, &cz);
            const double e = diag_score(x, g, n, cs, cz, maxq, sh);
            if (e < *best) {
                *best = e;
                *s = cs;
                *z = cz;
            }
        }
}

/* zgrid_diag, one block per row: every thread follows the same search (the block sums reach them all). */
__global__ void k_zgrid_diag(const float *X, int64_t n, int64_t ldx, const float *xmin, const float *xmax,
                             const float *g, int bits, bool sym, int points, int stride, int window, float *scale,
                             int64_t lds, float *zero, double *score)
{
    __shared__ double sh[ZF_RED_THREADS];
    const int64_t r = blockIdx.x;
    const float *x = X + r * ldx;
    const double lo = xmin[r], hi = xmax[r];
    float s = scale[r * lds], z = zero[r * lds];
    double best = diag_score(x, g, n, s, z, (float)((1 << bits) - 1), sh);
    if (stride > 0) diag_search(x, g, n, lo, hi, bits, sym, points, 0, points - 1, stride, &s, &z, &best, sh);
    const double p = __ddiv_rn(__dmul_rn((double)s, (double)((1 << bits) - 1)), __dsub_rn(hi, lo));
    const double fi = rint(__dmul_rn(__dsub_rn(1.0, p), (double)points));
    const int ic = fi < 0.0 ? 0 : (fi > points - 1 ? points - 1 : (int)fi);
    diag_search(x, g, n, lo, hi, bits, sym, points, ic - window < 0 ? 0 : ic - window,
                ic + window > points - 1 ? points - 1 : ic + window, 1, &s, &z, &best, sh);
    if (threadIdx.x == 0) {
        scale[r * lds] = s;
        zero[r * lds] = z;
        score[r] = best;
    }
}

zf_status zf_cq_zgrid_diag(void *qs, const float *X, int64_t rows, int64_t cols, int64_t ldx, const float *g,
                           int stride, int window, float *scale, int64_t lds, float *zero, double *score)
{
    zf_cq *c = (zf_cq *)qs;
    const zf_quant_opts *o = c->o;
    const cudaStream_t st = c->cu->stream;
    float *xmin = c->rng, *xmax = c->rng + c->rows;
    k_range<<<(unsigned)rows, ZF_RED_THREADS, 0, st>>>(X, cols, ldx, o->sym, xmin, xmax);
    ZF_TRY(zf_cq_launched(c));
    k_zgrid_diag<<<(unsigned)rows, ZF_RED_THREADS, 0, st>>>(X, cols, ldx, xmin, xmax, g, o->bits, o->sym,
                                                            o->grid_points, stride, window, scale, lds, zero, c->best);
    ZF_TRY(zf_cq_launched(c));
    return zf_cq_d2h(c, score, c->best, (size_t)rows * sizeof(double));
}

/* out[r] = Σ_j A_rj X[r·ldx + j] in double. */
__global__ void k_rowdot(const float *A, int64_t n, const float *X, int64_t ldx, double *out)
{
    __shared__ double sh[ZF_RED_THREADS];
    const int64_t r = blockIdx.x;
    const float *a = A + r * n, *x = X + r * ldx;
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += (double)a[j] * (double)x[j];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) out[r] = s;
}

zf_status zf_cq_rowdot(void *qs, const float *A, int64_t rows, int64_t cols, const float *X, int64_t ldx, double *out)
{
    zf_cq *c = (zf_cq *)qs;
    k_rowdot<<<(unsigned)rows, ZF_RED_THREADS, 0, c->cu->stream>>>(A, cols, X, ldx, c->rowd);
    ZF_TRY(zf_cq_launched(c));
    return zf_cq_d2h(c, out, c->rowd, (size_t)rows * sizeof(double));
}

/* One block per row: out[k·rows + r] = ΔW·ΔW, a·a, a·W, a·v with a = ζ ⊙ (q - zero_r), ΔW = W - scale_r·a. */
__global__ void k_zrow_sums(const float *W, const uint8_t *q, const float *scale, const float *zero, const float *zeta,
                            const float *v, int64_t rows, int64_t n, double *out)
{
    __shared__ double sh[ZF_RED_THREADS];
    const int64_t r = blockIdx.x;
    const float *w = W + r * n;
    const uint8_t *qr = q + r * n;
    double dd = 0.0, aa = 0.0, aw = 0.0, av = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const float a = zf_d_dequant((float)qr[j], zeta[j], zero[r]);
        const float e = __fsub_rn(w[j], zf_d_dequant((float)qr[j], __fmul_rn(scale[r], zeta[j]), zero[r]));
        dd += (double)e * (double)e, aa += (double)a * (double)a;
        aw += (double)a * (double)w[j], av += (double)a * (double)v[j];
    }
    dd = block_sum(dd, sh);
    aa = block_sum(aa, sh);
    aw = block_sum(aw, sh);
    av = block_sum(av, sh);
    if (threadIdx.x == 0) out[r] = dd, out[rows + r] = aa, out[2 * rows + r] = aw, out[3 * rows + r] = av;
}

zf_status zf_cq_zrow_sums(void *qs, const float *W, const uint8_t *q, const float *scale, const float *zero,
                          const float *zeta, const float *v, int64_t rows, int64_t cols, double *out)
{
    zf_cq *c = (zf_cq *)qs;
    k_zrow_sums<<<(unsigned)rows, ZF_RED_THREADS, 0, c->cu->stream>>>(W, q, scale, zero, zeta, v, rows, cols, c->rowd);
    ZF_TRY(zf_cq_launched(c));
    return zf_cq_d2h(c, out, c->rowd, (size_t)rows * 4 * sizeof(double));
}

zf_status zf_cq_hmul(void *qs, const float *A, int64_t rows, const float *H, float *D)
{
    zf_cq *c = (zf_cq *)qs;
    return gemm_rm(c, rows, c->cols, c->cols, A, c->cols, H, c->cols, D, c->cols);
}

/* The group refit's a = ζ ⊙ (q - zero) on the group's columns, [rows, len]. */
__global__ void k_group_a(const uint8_t *q, const float *zero, int64_t lds, const float *zeta, int64_t rows, int64_t n,
                          int64_t c0, int64_t len, float *A)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * len) return;
    const int64_t r = i / len, j = i % len;
    A[i] = __fmul_rn(zeta[c0 + j], __fsub_rn((float)q[r * n + c0 + j], zero[r * lds]));
}

/* out = [a·pᵀ, ζ·pᵀ, a·y, ζ·y] per row in double: one block per row. */
__global__ void k_group_sums(const float *A, const float *P, const float *Y, const float *zeta, int64_t rows,
                             int64_t n, int64_t c0, int64_t len, double *out)
{
    __shared__ double sh[ZF_RED_THREADS];
    const int64_t r = blockIdx.x;
    double aa = 0.0, av = 0.0, ay = 0.0, vy = 0.0;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
        const double a = A[r * len + j], v = zeta[c0 + j], p = P[r * len + j], y = Y[r * n + c0 + j];
        aa += a * p, av += v * p, ay += a * y, vy += v * y;
    }
    aa = block_sum(aa, sh), av = block_sum(av, sh), ay = block_sum(ay, sh), vy = block_sum(vy, sh);
    if (threadIdx.x == 0) out[r] = aa, out[rows + r] = av, out[2 * rows + r] = ay, out[3 * rows + r] = vy;
}

/* Ŵ_old - Ŵ_new on the group's columns, [rows, len]. */
__global__ void k_group_delta(const uint8_t *q, const float *scale, const float *zero, int64_t lds, const float *anew,
                              const float *znew, const float *zeta, int64_t rows, int64_t n, int64_t c0, int64_t len,
                              float *D)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * len) return;
    const int64_t r = i / len, j = i % len;
    const float c = (float)q[r * n + c0 + j], z = zeta[c0 + j];
    D[i] = __fsub_rn(zf_d_dequant(c, __fmul_rn(scale[r * lds], z), zero[r * lds]),
                     zf_d_dequant(c, __fmul_rn(anew[r], z), znew[r]));
}

__global__ void k_group_set(float *scale, float *zero, int64_t lds, const float *anew, const float *znew, int64_t rows)
{
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r < rows) scale[r * lds] = anew[r], zero[r * lds] = znew[r];
}

zf_status zf_cq_group_sums(void *qs, const float *Y, const uint8_t *q, const float *zero, int64_t lds,
                           const float *zeta, const float *H, int64_t rows, int64_t c0, int64_t len, float *scratch,
                           double *out)
{
    zf_cq *c = (zf_cq *)qs;
    const int64_t n = c->cols;
    float *A = scratch, *P = scratch + rows * len;
    k_group_a<<<zf_cuda_blocks(rows * len, 256), 256, 0, c->cu->stream>>>(q, zero, lds, zeta, rows, n, c0, len, A);
    ZF_TRY(zf_cq_launched(c));
    ZF_TRY(gemm_rm(c, rows, len, len, A, len, H + c0 * n + c0, n, P, len));
    k_group_sums<<<(unsigned)rows, ZF_RED_THREADS, 0, c->cu->stream>>>(A, P, Y, zeta, rows, n, c0, len, c->rowd);
    ZF_TRY(zf_cq_launched(c));
    return zf_cq_d2h(c, out, c->rowd, (size_t)rows * 4 * sizeof(double));
}

zf_status zf_cq_group_update(void *qs, float *Y, const uint8_t *q, float *scale, float *zero, int64_t lds,
                             const float *anew, const float *znew, const float *zeta, const float *H, int64_t rows,
                             int64_t c0, int64_t len, int64_t y0, float *scratch)
{
    zf_cq *c = (zf_cq *)qs;
    const int64_t n = c->cols;
    const float one = 1.0f;
    k_group_delta<<<zf_cuda_blocks(rows * len, 256), 256, 0, c->cu->stream>>>(q, scale, zero, lds, anew, znew, zeta,
                                                                               rows, n, c0, len, scratch);
    ZF_TRY(zf_cq_launched(c));
    /* row-major Y[:, y0:] [rows, n - y0] += D [rows, len] · H[c0:c0+len, y0:] */
    if (y0 < n)
        ZF_CUBLAS_TRY(c->cu, cublasSgemm(c->cu->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)(n - y0), (int)rows, (int)len,
                                         &one, H + c0 * n + y0, (int)n, scratch, (int)len, &one, Y + y0, (int)n));
    k_group_set<<<zf_cuda_blocks(rows, 256), 256, 0, c->cu->stream>>>(scale, zero, lds, anew, znew, rows);
    return zf_cq_launched(c);
}
