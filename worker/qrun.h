/* The quantization drivers' shared state: one layer's buffers in backend memory, opened and closed once per call. */
#ifndef ZF_QRUN_H
#define ZF_QRUN_H

#include "worker/backend_impl.h"
#include "worker/qresult.h"
#include "worker/quant_opts.h"

/* One quantization on a backend: sizes, options and buffers in backend memory (NULL when the method does not need
 * them). W and H alias the caller's host arrays on a host-memory backend. */
typedef struct {
    zf_backend *be;
    const zf_backend_i *i;
    void *qs;                 /* the backend's session */
    const zf_quant_opts *o;
    const float *Wh, *Hh;     /* host weights and Hessian (Hh NULL for RTN without one) */
    const zf_row_team *team;  /* the processes sharing this layer's rows (NULL: alone) */
    int64_t rows, cols, ngroups, gs; /* gs: group size, 0 = per channel */
    bool own_w;               /* W and H were allocated here */
    float *W, *H;             /* [rows, cols], [cols, cols] */
    float *A, *B;             /* [rows, cols] scratch each */
    float *U, *Err, *hbuf;    /* OPTQ: [cols, cols] factor, [block, rows] errors, [gs, gs] group Hessian */
    float *scale, *zero;      /* [rows, ngroups] */
    float *zeta, *zp;         /* [cols] ζ in original and in processing order */
    uint8_t *q, *Qt;          /* [rows, cols] codes; OPTQ codes in processing order [cols, rows] */
    int32_t *perm, *gidx;     /* [cols] */
    double *rowloss;          /* OPTQ with H: [rows] Σ err² of each row's column loop (zf_optq_bufs) */
    float *hvec, *ones;       /* Z-FOLD: [cols] H's diagonal or H·ζ, [rows] ones */
    float *M;                 /* Z-FOLD's ζ refit: [cols, cols] its normal equations' matrix */
    float *Xw;                /* Z-FOLD's α refit: [cols, ldx] the weights in OPTQ's factor basis (zf_optq_whiten) */
    int64_t ldx;              /* Xw's row stride: the whole layer's rows (a row view keeps it) */
    double *rowex;            /* Z-FOLD's α refit: [rows] each row's Σ err·x over its column loop */
    float *gbuf;              /* Z-FOLD's group refit: [rows, 2·group + 2] scratch and new grids */
    float lambda;             /* OPTQ: the damping added to the factored H's diagonal */
    bool factored;            /* OPTQ: U holds the factor of this H (a second OPTQ run reuses it) */
    bool whitened;            /* Xw holds this factor's basis: the column loop gathers rowex */
    double *rowdl;            /* host [rows]: each row's final ΔL when the method computed it (else NULL) */
    int nmembers;             /* the layers whose rows r holds, concatenated (Q/K/V, gate/up); 1 = one layer */
    const int64_t *member_rows; /* [nmembers] this process's rows of each (NULL with one member) */
} zf_qrun;

/* A row's loop sum keeps this fraction at least once the damping's part is off: below it, the float loop's rounding
 * may be all that is left (a large mean diagonal, as outlier input channels give, makes λ |ΔW|² nearly the whole sum). */
#define ZF_LOOP_KEPT 0.01

/* Opens the session and the buffers options o need, with W and H (host) in backend memory. */
zf_status zf_qrun_open(zf_backend *be, const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols,
                       const float *H, zf_qrun *r);
void zf_qrun_close(zf_qrun *r, zf_status st);
/* The sum of rowv [r->rows], this process's rows. */
double zf_qrun_rows_total(const zf_qrun *r, const double *rowv);
/* Element-wise sums of v [n] over r's team, in place (nothing alone). */
zf_status zf_qrun_team_sum(zf_qrun *r, double *v, int64_t n);
/* Σ_r of the row quadratic forms of A [rows, cols] (backend memory) with r->H, in row order, in double. */
zf_status zf_qrun_loss(zf_qrun *r, const float *A, int64_t rows, double *rowbuf, double *dl);
/* Each row's ΔL after OPTQ's column loop, from its Σ err² (r->rowloss) and deq [rows, cols] on the host, or with deq
 * NULL (only without dead inputs) from |ΔW|² (live [rows] on the host when given, else taken on the backend); where the damping's part leaves a row too few
 * digits, every row's ΔW H ΔWᵀ by the quadratic form instead (r->A scratch either way). */
zf_status zf_qrun_loop_rows(zf_qrun *r, const float *deq, const double *live, double *rowv);
/* Whether an input channel is dead (H_jj = 0). */
bool zf_qrun_dead_inputs(const zf_qrun *r);

#endif
