/* Z-FOLD on the device: ALS of ζ (input columns) and α (output rows) with the ΔL stopping rule, then OPTQ on ζ·α. */
#include <math.h>
#include <string.h>

#include "worker/cuda/cuda_quant.h"
#include "common/clock.h"

/* On the grid s_rj = α_r·ζ_j with zero z_r: Wt = ζ_j·(q - z_r), dW = W - s_rj·(q - z_r), q codes (each optional). */
__global__ void k_state(const float *W, int64_t rows, int64_t cols, float maxq, const float *alpha, const float *zero,
                        const float *zeta, float *Wt, float *dW, uint8_t *q)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    const int64_t r = i / cols, j = i % cols;
    const float z = zero[r], s = __fmul_rn(alpha[r], zeta[j]), w = W[i];
    const float c = zf_d_qcode(w, s, z, maxq);
    if (Wt) Wt[i] = __fmul_rn(zeta[j], __fsub_rn(c, z));
    if (dW) dW[i] = __fsub_rn(w, zf_d_dequant(c, s, z));
    if (q) q[i] = (uint8_t)c;
}

/* ζ least-squares sums per column, over the rows in order and in double exactly as the host. */
__global__ void k_zeta_sums(const float *W, int64_t rows, int64_t cols, float maxq, const float *alpha,
                            const float *zero, const float *zeta, double *num, double *den)
{
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    const float zj = zeta[j];
    double nu = 0.0, de = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const float a = alpha[r], z = zero[r], w = W[r * cols + j];
        const float c = zf_d_qcode(w, __fmul_rn(a, zj), z, maxq);
        const double wh = __dmul_rn((double)a, (double)__fsub_rn(c, z));
        nu = __dadd_rn(nu, __dmul_rn((double)w, wh));
        de = __dadd_rn(de, __dmul_rn(wh, wh));
    }
    num[j] = nu;
    den[j] = de;
}

__global__ void k_div_cols(const float *W, int64_t rows, int64_t cols, const float *zeta, float *X)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    X[i] = __fdiv_rn(W[i], zeta[i % cols]);
}

/* ΔL of the state held in c->scale (α), c->zero, c->zeta. */
static zf_status state_loss(zf_cq *c, double *rowbuf, double *dl)
{
    k_state<<<zf_cuda_blocks(c->rows * c->cols, 256), 256, 0, c->cu->stream>>>(
        c->W, c->rows, c->cols, c->maxq, c->scale, c->zero, c->zeta, NULL, c->A, NULL);
    ZF_TRY(zf_cq_launched(c));
    ZF_TRY(zf_cq_quadform(c, c->A, NULL, c->rows, rowbuf, NULL));
    double s = 0.0;
    for (int64_t r = 0; r < c->rows; r++) s += rowbuf[r];
    *dl = s;
    return ZF_OK;
}

zf_status zf_cq_zfold(zf_cq *c, const zf_zeta_tie *tie, zf_qresult *out)
{
    const zf_quant_opts *o = c->o;
    const int64_t rows = c->rows, cols = c->cols;
    const cudaStream_t st = c->cu->stream;
    ZF_ASSERT(c->ngroups == 1 && !c->gs);
    const double t0 = zf_now();

    /* Host copies of the current state (ca, cz, czeta) and the double sums; the best state lives in out. */
    float *ca = c->hf, *cz = ca + rows, *czeta = cz + rows;
    double *rowa = c->hd, *rowb = rowa + rows, *num = rowb + rows, *den = num + cols, *cnum = den + cols,
           *cden = cnum + cols;
    float *alpha = out->scale, *zero = out->zero, *zeta = out->zeta;

    /* Line 2: ζ = 1, α and zero from the configured grid. */
    for (int64_t j = 0; j < cols; j++) zeta[j] = 1.0f;
    ZF_TRY(zf_cq_h2d(c, c->zeta, zeta, (size_t)cols * sizeof(float)));
    ZF_TRY(zf_cq_grid_fit(c, o->grid, c->W, rows, cols, cols, c->H, cols, NULL, c->scale, 1, c->zero));
    ZF_TRY(zf_cq_d2h(c, alpha, c->scale, (size_t)rows * sizeof(float)));
    ZF_TRY(zf_cq_d2h(c, zero, c->zero, (size_t)rows * sizeof(float)));
    double best;
    ZF_TRY(state_loss(c, rowa, &best));
    out->als_iters = 0;
    out->zeta_kept = 0;
    memcpy(ca, alpha, (size_t)rows * sizeof(float));
    memcpy(cz, zero, (size_t)rows * sizeof(float));
    memcpy(czeta, zeta, (size_t)cols * sizeof(float));

    for (int it = 1; it <= o->als_max_iter; it++) {
        /* Lines 4-5: ζ by least squares over the rows; the device holds ca, cz, czeta here. */
        k_zeta_sums<<<zf_cuda_blocks(cols, 128), 128, 0, st>>>(c->W, rows, cols, c->maxq, c->scale, c->zero, c->zeta,
                                                               c->coln, c->coln + cols);
        ZF_TRY(zf_cq_launched(c));
        ZF_TRY(zf_cq_d2h(c, num, c->coln, (size_t)cols * sizeof(double)));
        ZF_TRY(zf_cq_d2h(c, den, c->coln + cols, (size_t)cols * sizeof(double)));
        zf_zeta_from_sums(o, cols, tie, num, den, cnum, cden, czeta, &out->zeta_kept);
        ZF_TRY(zf_cq_h2d(c, c->zeta, czeta, (size_t)cols * sizeof(float)));

        /* Lines 6-7: requantize, then α (least squares with the zero fixed, or the Hessian grid on W ⊘ ζ). */
        if (o->alpha == ZF_ALPHA_LSQ) {
            k_state<<<zf_cuda_blocks(rows * cols, 256), 256, 0, st>>>(c->W, rows, cols, c->maxq, c->scale, c->zero,
                                                                      c->zeta, c->A, NULL, NULL);
            ZF_TRY(zf_cq_launched(c));
            ZF_TRY(zf_cq_quadform(c, c->A, c->W, rows, rowa, rowb)); /* rowa = den, rowb = num */
            for (int64_t r = 0; r < rows; r++) {
                const double a = rowb[r] / rowa[r];
                ca[r] = rowa[r] > 0.0 && isfinite(a) && a > 0.0 && (float)a > 0.0f ? (float)a : ca[r];
            }
            ZF_TRY(zf_cq_h2d(c, c->scale, ca, (size_t)rows * sizeof(float)));
        } else {
            k_div_cols<<<zf_cuda_blocks(rows * cols, 256), 256, 0, st>>>(c->W, rows, cols, c->zeta, c->B);
            ZF_TRY(zf_cq_launched(c));
            ZF_TRY(zf_cq_grid_fit(c, ZF_GRID_HESSIAN, c->B, rows, cols, cols, c->H, cols, c->zeta, c->scale, 1,
                                  c->zero));
            ZF_TRY(zf_cq_d2h(c, ca, c->scale, (size_t)rows * sizeof(float)));
            ZF_TRY(zf_cq_d2h(c, cz, c->zero, (size_t)rows * sizeof(float)));
        }
        double dl;
        ZF_TRY(state_loss(c, rowa, &dl));
        zf_log_debug("Z-FOLD ALS [%lld x %lld] iteration %d: ΔL %.6g (best %.6g)", (long long)rows, (long long)cols,
                     it, dl, best);
        if (!(dl <= best)) break;
        best = dl;
        out->als_iters = it;
        memcpy(alpha, ca, (size_t)rows * sizeof(float));
        memcpy(zero, cz, (size_t)rows * sizeof(float));
        memcpy(zeta, czeta, (size_t)cols * sizeof(float));
    }
    if (out->zeta_kept)
        zf_log_warn("Z-FOLD [%lld x %lld]: %d zeta updates were <= 0 and kept their previous value (zeta_positive)",
                    (long long)rows, (long long)cols, out->zeta_kept);
    out->t_als = zf_now() - t0;

    if (o->zfold_optq) {
        /* zf_cq_optq only reads the fixed grid on the host; the device copy comes back into out at the end. */
        return zf_cq_optq(c, alpha, zero, zeta, out);
    }
    ZF_TRY(zf_cq_h2d(c, c->scale, alpha, (size_t)rows * sizeof(float)));
    ZF_TRY(zf_cq_h2d(c, c->zero, zero, (size_t)rows * sizeof(float)));
    ZF_TRY(zf_cq_h2d(c, c->zeta, zeta, (size_t)cols * sizeof(float)));
    k_state<<<zf_cuda_blocks(rows * cols, 256), 256, 0, st>>>(c->W, rows, cols, c->maxq, c->scale, c->zero, c->zeta,
                                                              NULL, NULL, c->q);
    ZF_TRY(zf_cq_launched(c));
    for (int64_t j = 0; j < cols; j++) out->g_idx[j] = 0;
    return ZF_OK;
}
