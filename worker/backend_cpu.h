/* The host backend's quantization primitives (worker/backend_cpu_quant.c), for its table in worker/backend_cpu.c. */
#ifndef ZF_BACKEND_CPU_H
#define ZF_BACKEND_CPU_H

#include "worker/backend_impl.h"

zf_status zf_cpu_q_begin(void *ctx, const zf_quant_opts *o, int64_t rows, int64_t cols, bool hessian, void **qs);
void zf_cpu_q_end(void *qs, zf_status st);
zf_status zf_cpu_grid_fit(void *qs, zf_grid_kind kind, const float *W, int64_t rows, int64_t n, int64_t ldw,
                          const float *H, int64_t ldh, const float *zeta, float *scale, int64_t lds, float *zero);
zf_status zf_cpu_quadform(void *qs, const float *A, const float *B, int64_t rows, const float *H, double *aa,
                          double *ab);
zf_status zf_cpu_rtn_codes(void *qs, const float *W, int64_t rows, int64_t cols, int64_t gs, int64_t ngroups,
                           const float *scale, const float *zero, uint8_t *q);
zf_status zf_cpu_dequant(void *qs, const float *W, const uint8_t *q, const float *scale, const float *zero,
                         const float *zeta, const int32_t *gidx, int64_t gs, int64_t ngroups, int64_t rows,
                         int64_t cols, float *deq, float *dW);
zf_status zf_cpu_zstate(void *qs, const float *W, int64_t rows, int64_t cols, const float *alpha, const float *zero,
                        const float *zeta, float *Wt, float *dW, uint8_t *q);
zf_status zf_cpu_zeta_sums(void *qs, const float *W, int64_t rows, int64_t cols, const float *alpha,
                           const float *zero, const float *zeta, double *num, double *den);
zf_status zf_cpu_zgrid_diag(void *qs, const float *X, int64_t rows, int64_t cols, int64_t ldx, const float *g,
                            int stride, int window, float *scale, int64_t lds, float *zero, double *score);
zf_status zf_cpu_rowdot(void *qs, const float *A, int64_t rows, int64_t cols, const float *X, int64_t ldx,
                        double *out);
zf_status zf_cpu_hmul(void *qs, const float *A, int64_t rows, const float *H, float *D);
zf_status zf_cpu_div_cols(void *qs, const float *W, int64_t rows, int64_t cols, const float *zeta, float *X);
zf_status zf_cpu_gather_t(void *qs, const float *W, const float *H, int64_t rows, int64_t n, const int32_t *perm,
                          float *Wt);
zf_status zf_cpu_slice_static(void *qs, const float *W, const float *H, int64_t rows, int64_t n, int64_t c0,
                              int64_t len, float *G);
zf_status zf_cpu_slice_t(void *qs, const float *Wt, int64_t rows, int64_t c0, int64_t len, float *G);
zf_status zf_cpu_group_hess(void *qs, const float *H, int64_t n, const int32_t *perm, int64_t c0, int64_t len,
                            float *Hb);
zf_status zf_cpu_chol_inv(void *qs, const float *H, int64_t n, const int32_t *perm, float lambda, float *U,
                          zf_chol_result *res);
zf_status zf_cpu_zrow_sums(void *qs, const float *W, const uint8_t *q, const float *scale, const float *zero,
                          const float *zeta, const float *v, int64_t rows, int64_t cols, double *out);
zf_status zf_cpu_tri_solve(void *qs, const float *U, int64_t n, bool trans, float *B, int64_t cols);
zf_status zf_cpu_optq_block(void *qs, const zf_optq_bufs *b, int64_t i1, int64_t i2);
/* The session's column count (H is [cols, cols]). */
int64_t zf_cpu_session_cols(const void *qs);
zf_status zf_cpu_coldot(void *qs, const float *A, const float *B, int64_t rows, int64_t cols, double *out);
zf_status zf_cpu_hgram(void *qs, const float *A, int64_t rows, const float *H, float *M);
zf_status zf_cpu_chol_solve(void *qs, float *M, int64_t n, float lambda, float *x, zf_chol_result *res);
zf_status zf_cpu_group_sums(void *qs, const float *Y, const uint8_t *q, const float *zero, int64_t lds,
                            const float *zeta, const float *H, int64_t rows, int64_t c0, int64_t len, float *scratch,
                            double *out);
zf_status zf_cpu_group_update(void *qs, float *Y, const uint8_t *q, float *scale, float *zero, int64_t lds,
                              const float *anew, const float *znew, const float *zeta, const float *H, int64_t rows,
                              int64_t c0, int64_t len, int64_t y0, float *scratch);
zf_status zf_cpu_unpermute(void *qs, const uint8_t *Qt, int64_t rows, int64_t n, const int32_t *perm, uint8_t *q);

#endif
