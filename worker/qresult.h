/* One quantized matrix (codes, grids, ζ, statistics) and the ζ tie classes of a layer group. */
#ifndef ZF_QRESULT_H
#define ZF_QRESULT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"

/* One quantized matrix. Dequantized weight: deq[r, j] = zeta[j] · scale[r, g] · (q[r, j] - zero[r, g]), g = g_idx[j]. */
typedef struct {
    int64_t rows, cols;
    int64_t ngroups;         /* 1 when per channel */
    int bits;
    uint8_t *q;              /* [rows, cols] integer codes in [0, 2^bits - 1], original column order */
    float *scale;            /* [rows, ngroups] */
    float *zero;             /* [rows, ngroups]; integers in [0, 2^bits - 1] */
    int32_t *g_idx;          /* [cols] group of each input column */
    float *zeta;             /* [cols]; all ones except for Z-FOLD */
    float *deq;              /* [rows, cols]; only in a quantizer's output (NULL in stored and received results) */
    double dl_rtn;           /* ΔL of min-max RTN on the same H (the "before" figure) */
    double dl;               /* ΔL of this result, tr(ΔW H ΔWᵀ) with the undamped H */
    int als_iters;           /* Z-FOLD ALS iterations kept (0 otherwise) */
    double damp_used;        /* damp fraction that made the Cholesky succeed */
    int damp_retries;
    int64_t dead_inputs;     /* input channels with H_ii == 0 */
    int zeta_kept;           /* Z-FOLD: ζ updates refused by zeta_positive (ζ <= 0 replaced by its previous value) */
    bool optq_kept;          /* Z-FOLD: plain OPTQ had the lower ΔL and is the result (ζ = 1) */
    int64_t optq_screen_rows; /* Z-FOLD: rows (over the team) on which plain OPTQ was screened and lost clearly,
                                 so that it did not run on the others (0: it ran on every row, or not at all) */
    double grid_widen;       /* Z-FOLD: the factor its grid's scales were stretched by (grid_widen row: the rows' mean) */
    double t_als;            /* seconds: Z-FOLD alternating least squares */
    double t_factor;         /* seconds: OPTQ damping + chol(H⁻¹) */
    double t_loop;           /* seconds: OPTQ column loop and lazy updates (every run: Z-FOLD's trials included) */
    double t_refit;          /* seconds: Z-FOLD's refits of α, zero and ζ after OPTQ, W·H included */
    double t_fallback;       /* seconds: Z-FOLD's fallback to plain OPTQ, its factor and column loops excluded */
    double t_total;          /* seconds: all of zf_quantize, ΔL figures included */
    double t_stats;          /* seconds: the ΔL figures (after and, with delta_loss_rtn, the RTN baseline) */
} zf_qresult;

/* A quantizer's output: codes, grids, ζ = 1 and deq. */
zf_status zf_qresult_alloc(zf_qresult *r, int64_t rows, int64_t cols, int64_t ngroups, int bits);
/* The same without deq: what a block stores and what other ranks receive (deq follows from the codes). */
zf_status zf_qresult_alloc_codes(zf_qresult *r, int64_t rows, int64_t cols, int64_t ngroups, int bits);
void zf_qresult_free(zf_qresult *r);

/* Codes of `bits` bits as a little-endian bit stream (code i at bit i·bits): the narrowest exact form to send. */
int64_t zf_codes_packed_bytes(int64_t n, int bits);
void zf_codes_pack(const uint8_t *q, int64_t n, int bits, uint8_t *out);
void zf_codes_unpack(const uint8_t *in, int64_t n, int bits, uint8_t *q);

/* Column classes whose ζ must be equal (grouped-query attention's O ← V fold); NULL means every column free. */
typedef struct {
    const int32_t *cls;      /* [cols] class of each column, 0..nclasses-1 */
    int64_t nclasses;
} zf_zeta_tie;

#endif
