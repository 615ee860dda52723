/* The backend interface: a table of primitives over backend memory that the worker's algorithms are written on. */
#ifndef ZF_BACKEND_IMPL_H
#define ZF_BACKEND_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Outcome of one damped Cholesky + inverse attempt (the retry policy is the caller's). */
typedef enum { ZF_CHOL_OK = 0, ZF_CHOL_NOT_PD, ZF_CHOL_SINGULAR, ZF_CHOL_NONFINITE } zf_chol_result;

/* The OPTQ column loop's state, all in backend memory: working copy Wt [n, rows] and codes Qt [n, rows] in
 * processing order, block errors Err [block, rows], inverse factor U [n, n], grids [rows, ngroups], perm and the
 * permuted ζ zp [n]; rowloss [rows] (double, may be NULL) gathers each row's Σ err² over the columns, which is
 * ΔW (H + λI) ΔWᵀ of that row (H⁻¹ = UᵀU makes the errors white). With X (may be NULL; [n, ldx] in
 * processing order, the weights in the factor's basis U⁻ᵀ Wt) rowex [rows] gathers each row's Σ err·x, which is
 * ΔW (H + λI) Wᵀ of that row. */
typedef struct {
    int64_t rows, n, ngroups, gs, ldx;
    bool static_groups;
    const int32_t *perm;
    const float *zp, *U, *scale, *zero, *X;
    float *Wt, *Err;
    uint8_t *Qt;
    double *rowloss, *rowex;
} zf_optq_bufs;

/* Pointers named "backend memory" are what alloc returned (plus offsets); the caller never dereferences them.
 * Outputs named "host" are host memory. Quantization primitives run inside a session (q_begin .. q_end) that holds
 * the options and the backend's scratch. */
typedef struct zf_backend_i {
    unsigned caps; /* zf_backend_cap flags */
    void (*close)(void *ctx);
    void (*info)(void *ctx, zf_backend_info *info);
    int64_t (*peak_bytes)(void *ctx, bool reset);

    zf_status (*alloc)(void *ctx, size_t bytes, const char *what, void **buf);
    void (*free)(void *ctx, void *buf);
    zf_status (*upload)(void *ctx, void *dst, const void *src, size_t bytes);
    zf_status (*download)(void *ctx, void *dst, const void *src, size_t bytes);
    zf_status (*fill_zero)(void *ctx, void *buf, size_t bytes);
    zf_status (*sync)(void *ctx);

    zf_status (*hess_zero)(void *ctx, void *sum, int64_t dim, bool fp64);
    zf_status (*hess_finalize)(void *ctx, const zf_bhess *h, float *H);
    zf_status (*block_forward)(void *ctx, const zf_model_config *c, const zf_block_weights *w, float *x, int64_t nwin,
                               int64_t seq, zf_bhess *const hess[ZF_NGROUP]);
    zf_status (*token_nll)(void *ctx, const zf_model_config *c, const zf_model_globals *g, const float *x,
                           const int32_t *tokens, int64_t nwin, int64_t seq, double *nll);

    /* hessian: whether the session will get a Hessian. end frees the session whatever st says. */
    zf_status (*q_begin)(void *ctx, const zf_quant_opts *o, int64_t rows, int64_t cols, bool hessian, void **qs);
    void (*q_end)(void *qs, zf_status st);
    /* zf_grid_fit on backend memory (rows and n at most the session's). */
    zf_status (*grid_fit)(void *qs, zf_grid_kind kind, const float *W, int64_t rows, int64_t n, int64_t ldw,
                          const float *H, int64_t ldh, const float *zeta, float *scale, int64_t lds, float *zero);
    /* zf_quadform_rows with H [n, n] = the session's cols; aa, ab on the host. */
    zf_status (*quadform)(void *qs, const float *A, const float *B, int64_t rows, const float *H, double *aa,
                          double *ab);
    /* q = clamp(round(W / scale) + zero) with group j / gs. */
    zf_status (*rtn_codes)(void *qs, const float *W, int64_t rows, int64_t cols, int64_t gs, int64_t ngroups,
                           const float *scale, const float *zero, uint8_t *q);
    /* deq = (scale·ζ)(q - zero), g = gidx[j] (j / gs when NULL), ζ NULL = ones; dW = W - deq when dW is given (deq
     * may then be NULL). */
    zf_status (*dequant)(void *qs, const float *W, const uint8_t *q, const float *scale, const float *zero,
                         const float *zeta, const int32_t *gidx, int64_t gs, int64_t ngroups, int64_t rows,
                         int64_t cols, float *deq, float *dW);
    /* Z-FOLD state on the grid α·ζ_j, zero z: Wt = ζ(q - z), dW = W - deq, q codes (each optional). α and zero are
     * [rows, ngroups], column j in group j / group_size of the session's options (one group per channel). */
    zf_status (*zstate)(void *qs, const float *W, int64_t rows, int64_t cols, const float *alpha, const float *zero,
                        const float *zeta, float *Wt, float *dW, uint8_t *q);
    /* ζ least-squares sums per column in double, over the rows in order, α and zero as zstate's; num, den on the
     * host. */
    zf_status (*zeta_sums)(void *qs, const float *W, int64_t rows, int64_t cols, const float *alpha,
                           const float *zero, const float *zeta, double *num, double *den);
    /* Z-FOLD's diagonal α step: for each row x of X [rows, cols] (row stride ldx; W ⊘ ζ or a group of its columns),
     * clip ratios 1 - i/grid_points × floor and ceil zero (round when sym), scored by Σ_j g_j (x_j - deq_j)²: with
     * stride > 0 every stride-th i from 0, then the i within window of the best so far; with stride 0 the i within
     * window of the current grid's ratio. The current grid (scale[r·lds], zero[r·lds]; in and out) is kept unless a
     * candidate scores strictly lower; score (host, [rows]) receives the kept grid's score. */
    zf_status (*zgrid_diag)(void *qs, const float *X, int64_t rows, int64_t cols, int64_t ldx, const float *g,
                            int stride, int window, float *scale, int64_t lds, float *zero, double *score);
    /* out[r] = Σ_j A[r, j]·X[r·ldx + j] in double over the columns in order (ldx 0: X is one vector); out on the
     * host. */
    zf_status (*rowdot)(void *qs, const float *A, int64_t rows, int64_t cols, const float *X, int64_t ldx,
                        double *out);
    /* Per channel, each row's sums in double over the columns in order, with a = ζ ⊙ (q - zero[r]) and ΔW = W -
     * scale[r]·a (the dequantization's rounding): out (host, [4, rows]) = ΔW·ΔW, a·a, a·W, a·v; v [cols]. */
    zf_status (*zrow_sums)(void *qs, const float *W, const uint8_t *q, const float *scale, const float *zero,
                           const float *zeta, const float *v, int64_t rows, int64_t cols, double *out);
    /* D [rows, n] = A [rows, n] · H, H [n, n] the session's cols. */
    zf_status (*hmul)(void *qs, const float *A, int64_t rows, const float *H, float *D);
    /* X = W ⊘ ζ (column-wise). */
    zf_status (*div_cols)(void *qs, const float *W, int64_t rows, int64_t cols, const float *zeta, float *X);
    /* Wt[p, r] = W[r, perm[p]], 0 where H[j, j] == 0 (dead input). */
    zf_status (*gather_t)(void *qs, const float *W, const float *H, int64_t rows, int64_t n, const int32_t *perm,
                          float *Wt);
    /* G [rows, len] = W[:, c0:c0+len) with dead inputs zeroed. */
    zf_status (*slice_static)(void *qs, const float *W, const float *H, int64_t rows, int64_t n, int64_t c0,
                              int64_t len, float *G);
    /* G [rows, len] = rows × [c0, c0+len) of the working copy Wt [n, rows]. */
    zf_status (*slice_t)(void *qs, const float *Wt, int64_t rows, int64_t c0, int64_t len, float *G);
    /* Hb [len, len] = H[perm[c0+a], perm[c0+b]]. */
    zf_status (*group_hess)(void *qs, const float *H, int64_t n, const int32_t *perm, int64_t c0, int64_t len,
                            float *Hb);
    /* One attempt: U = upper chol((Hp + λI)⁻¹), Hp = H[perm][:, perm] (NULL = identity) with zero diagonals set to
     * 1, strictly lower part zero; *res says whether it worked and, if not, why. */
    zf_status (*chol_inv)(void *qs, const float *H, int64_t n, const int32_t *perm, float lambda, float *U,
                          zf_chol_result *res);
    /* B [n, cols] ← op(U)⁻¹ B, U [n, n] upper triangular (row-major, as chol_inv leaves it), op(U) = Uᵀ when trans. */
    zf_status (*tri_solve)(void *qs, const float *U, int64_t n, bool trans, float *B, int64_t cols);
    /* Columns [i1, i2) of the OPTQ loop: quantize, error feedback inside the block, lazy update of later columns. */
    zf_status (*optq_block)(void *qs, const zf_optq_bufs *b, int64_t i1, int64_t i2);
    /* q[r, perm[p]] = Qt[p, r]. */
    zf_status (*unpermute)(void *qs, const uint8_t *Qt, int64_t rows, int64_t n, const int32_t *perm, uint8_t *q);
    /* out[j] = Σ_r A[r, j]·B[r, j] in double over the rows in order; out on the host; cols at most the session's
     * rows or cols, whichever is more. */
    zf_status (*coldot)(void *qs, const float *A, const float *B, int64_t rows, int64_t cols, double *out);
    /* M [n, n] = H ∘ (AᵀA), A [rows, n], n the session's cols (both triangles). */
    zf_status (*hgram)(void *qs, const float *A, int64_t rows, const float *H, float *M);
    /* One attempt: x [n] ← (M + λI)⁻¹ x, M [n, n] symmetric, overwritten by its factor; *res says whether it worked
     * (the factorization, and a finite x). */
    zf_status (*chol_solve)(void *qs, float *M, int64_t n, float lambda, float *x, zf_chol_result *res);
    /* Group refit sums over the columns [c0, c0 + len) of one group, per row r: with a = ζ ⊙ (q - zero[r·lds]) and
     * P = a · H[c0:c0+len, c0:c0+len]: out = [a·Pᵀ, ζ·Pᵀ, a·Y, ζ·Y] (host, [4, rows], double); Y [rows, cols] is
     * ΔW·H; scratch is [rows, 2·len]. */
    zf_status (*group_sums)(void *qs, const float *Y, const uint8_t *q, const float *zero, int64_t lds,
                            const float *zeta, const float *H, int64_t rows, int64_t c0, int64_t len, float *scratch,
                            double *out);
    /* The group's grids changed from (scale, zero)[r·lds] to (anew, znew)[r] (backend memory): Y[:, y0:] +=
     * (Ŵ_old - Ŵ_new)[:, c0:c0+len] · H[c0:c0+len, y0:], then the new grids written in place; scratch is [rows,
     * len]. */
    zf_status (*group_update)(void *qs, float *Y, const uint8_t *q, float *scale, float *zero, int64_t lds,
                              const float *anew, const float *znew, const float *zeta, const float *H, int64_t rows,
                              int64_t c0, int64_t len, int64_t y0, float *scratch);
} zf_backend_i;

struct zf_backend {
    zf_backend_opts opts;
    const zf_backend_i *i;
    void *ctx;
};

/* The host backend's table; its context is unused (NULL). */
const zf_backend_i *zf_cpu_backend_table(void);
/* A host backend for callers without one (zf_quantize): static, never closed. */
zf_backend *zf_cpu_backend(void);

#ifdef __cplusplus
}
#endif

#endif
