/* Folding a group's ζ into the norm or linear layer that feeds it, refusing folds that would not be exact. */
#include "worker/fold.h"

#include <math.h>

/* Tolerance for "tied" ζ of query heads that share one KV head (relative). */
#define TIE_RTOL 1e-6

static void scale_rows(float *W, float *b, int64_t rows, int64_t cols, const float *zeta)
{
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < cols; j++) W[r * cols + j] *= zeta[r];
        if (b) b[r] *= zeta[r];
    }
}

/* Every target needs finite ζ; ζ = 0 would make the members' W / ζ infinite. */
static zf_status check_finite_nonzero(zf_group g, const float *zeta, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(zeta[i]) || zeta[i] == 0.0f)
            return zf_fail(ZF_ERR_INPUT, "cannot fold ζ of group %s: ζ[%lld] = %g (must be finite and nonzero)",
                           zf_group_name(g), (long long)i, (double)zeta[i]);
    return ZF_OK;
}

/* O ← V: one ζ per V output row (kv·hd + i), taken from the first query head of that KV head once all agree. */
static zf_status fold_v_rows(const zf_model_config *c, const float *zeta, zf_block_weights *w)
{
    int64_t hd = c->head_dim, nkv = c->n_kv_heads, rep = c->n_heads / c->n_kv_heads;
    for (int64_t kv = 0; kv < nkv; kv++)
        for (int64_t i = 0; i < hd; i++) {
            float ref = zeta[kv * rep * hd + i];
            for (int64_t h = kv * rep + 1; h < (kv + 1) * rep; h++) {
                float z = zeta[h * hd + i];
                if (fabs((double)z - ref) > TIE_RTOL * fmax(fabs((double)z), fabs((double)ref)))
                    return zf_fail(ZF_ERR_INPUT,
                                   "cannot fold ζ of o_proj into v_proj: ζ is not tied across heads sharing KV head "
                                   "%lld (column %lld of head %lld is %.9g, of head %lld is %.9g)",
                                   (long long)kv, (long long)i, (long long)(kv * rep), (double)ref, (long long)h,
                                   (double)z);
            }
        }
    int64_t d = c->hidden;
    float *W = w->lin_w[ZF_LIN_V], *b = w->lin_b[ZF_LIN_V];
    ZF_ASSERT(W);
    for (int64_t kv = 0; kv < nkv; kv++)
        scale_rows(W + kv * hd * d, b ? b + kv * hd : NULL, hd, d, zeta + kv * rep * hd);
    return ZF_OK;
}

zf_status zf_fold_zeta(const zf_model_config *c, zf_group g, const float *zeta, zf_block_weights *w)
{
    zf_fold_target t = zf_group_fold(c, g);
    int64_t n = zf_group_in(c, g);
    if (t == ZF_FOLD_NONE)
        return zf_fail(ZF_ERR_INPUT, "group %s of a %s model has nowhere to fold its ζ", zf_group_name(g),
                       c->model_type);
    /* relu(ζ·a) = ζ·relu(a) only for ζ > 0; SwiGLU is linear in up, so any nonzero ζ folds there. */
    if (t == ZF_FOLD_UP_ROWS && c->family == ZF_FAMILY_OPT)
        for (int64_t i = 0; i < n; i++)
            if (!(zeta[i] > 0.0f))
                return zf_fail(ZF_ERR_INPUT, "cannot fold ζ of %s into %s through ReLU: ζ[%lld] = %g is not positive",
                               zf_lin_short_name(c, ZF_LIN_DOWN), zf_lin_short_name(c, ZF_LIN_UP), (long long)i,
                               (double)zeta[i]);
    ZF_TRY(check_finite_nonzero(g, zeta, n));
    switch (t) {
    case ZF_FOLD_NONE: /* refused above */
        break;
    case ZF_FOLD_ATTN_NORM:
    case ZF_FOLD_MLP_NORM: {
        int which = t == ZF_FOLD_ATTN_NORM ? 0 : 1;
        ZF_ASSERT(n == c->hidden && w->norm_w[which]);
        for (int64_t i = 0; i < n; i++) {
            w->norm_w[which][i] *= zeta[i];
            if (w->norm_b[which]) w->norm_b[which][i] *= zeta[i];
        }
        return ZF_OK;
    }
    case ZF_FOLD_V_ROWS:
        ZF_ASSERT(n == c->n_heads * c->head_dim);
        return fold_v_rows(c, zeta, w);
    case ZF_FOLD_UP_ROWS:
        ZF_ASSERT(n == c->intermediate && w->lin_w[ZF_LIN_UP]);
        scale_rows(w->lin_w[ZF_LIN_UP], w->lin_b[ZF_LIN_UP], n, c->hidden, zeta);
        return ZF_OK;
    }
    ZF_PANIC("unknown fold target %d", (int)t);
}

int64_t zf_fold_tie_classes(const zf_model_config *c, zf_group g, int32_t *cls)
{
    if (zf_group_fold(c, g) != ZF_FOLD_V_ROWS || c->n_heads == c->n_kv_heads) return 0;
    int64_t hd = c->head_dim, rep = c->n_heads / c->n_kv_heads;
    for (int64_t h = 0; h < c->n_heads; h++)
        for (int64_t i = 0; i < hd; i++) cls[h * hd + i] = (int32_t)((h / rep) * hd + i);
    return c->n_kv_heads * hd;
}
