/* The fp32 CPU forward: embeddings, one llama or opt block (with input capture), final norm and logits. */
#include "worker/forward.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Only the loops with real work per element (attention, the SwiGLU activation) run under OpenMP: the cheap
 * elementwise ones would pay a barrier each, which costs more than they do when cores are shared with BLAS. */

/* Key tiles of this many columns keep the score accumulators in registers (see attention_head). */
#define KEY_TILE 16

zf_status zf_forward_check_config(const zf_model_config *c)
{
    if (c->family != ZF_FAMILY_LLAMA && c->family != ZF_FAMILY_OPT)
        return zf_fail(ZF_ERR_INPUT, "model config: unknown model family %d", (int)c->family);
    if (c->hidden <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 || c->intermediate <= 0 ||
        c->vocab <= 0)
        return zf_fail(ZF_ERR_INPUT, "model config: hidden, heads, kv heads, head_dim, intermediate and vocab must be "
                                     "positive");
    if (c->n_heads % c->n_kv_heads)
        return zf_fail(ZF_ERR_INPUT, "model config: num_attention_heads %lld is not a multiple of "
                                     "num_key_value_heads %lld", (long long)c->n_heads, (long long)c->n_kv_heads);
    if (c->family == ZF_FAMILY_LLAMA && c->head_dim % 2)
        return zf_fail(ZF_ERR_INPUT, "model config: rotary embeddings need an even head_dim, not %lld",
                       (long long)c->head_dim);
    return ZF_OK;
}

/* BLAS takes int sizes: refuse what would not fit rather than truncate. */
static zf_status check_blas_size(int64_t ntok, const char *what)
{
    if (ntok > INT_MAX)
        return zf_fail(ZF_ERR_INPUT, "%s: %lld tokens at once is more than BLAS can index", what, (long long)ntok);
    return ZF_OK;
}

/* y [ntok, out] = x [ntok, in] · Wᵀ + b, or y += x·Wᵀ + b when accumulate (the residual add). */
static void linear(const float *x, int64_t ntok, int64_t in, const float *W, const float *b, int64_t out, float *y,
                   int accumulate)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ntok, (int)out, (int)in, 1.0f, x, (int)in, W, (int)in,
                accumulate ? 1.0f : 0.0f, y, (int)out);
    if (!b) return;
    for (int64_t t = 0; t < ntok; t++)
        for (int64_t o = 0; o < out; o++) y[t * out + o] += b[o];
}

/* Like transformers' LlamaRMSNorm: fp32 variance (accumulated in double here), x·rsqrt(var + eps), then γ·. */
static void rms_norm(const float *x, const float *g, float eps, int64_t ntok, int64_t d, float *y)
{
    for (int64_t t = 0; t < ntok; t++) {
        const float *xr = x + t * d;
        float *yr = y + t * d;
        double ss = 0;
        for (int64_t i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        float inv = 1.0f / sqrtf((float)(ss / (double)d) + eps);
        for (int64_t i = 0; i < d; i++) yr[i] = g[i] * (xr[i] * inv);
    }
}

/* LayerNorm with β (OPT): biased variance, statistics in double. */
static void layer_norm(const float *x, const float *g, const float *b, float eps, int64_t ntok, int64_t d, float *y)
{
    for (int64_t t = 0; t < ntok; t++) {
        const float *xr = x + t * d;
        float *yr = y + t * d;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < d; i++) mean += xr[i];
        mean /= (double)d;
        for (int64_t i = 0; i < d; i++) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        float rstd = (float)(1.0 / sqrt(var / (double)d + eps)), m = (float)mean;
        for (int64_t i = 0; i < d; i++) yr[i] = (xr[i] - m) * rstd * g[i] + (b ? b[i] : 0.0f);
    }
}

static void block_norm(const zf_model_config *c, const float *x, const float *g, const float *b, int64_t ntok,
                       float *y)
{
    if (c->family == ZF_FAMILY_OPT)
        layer_norm(x, g, b, (float)c->norm_eps, ntok, c->hidden, y);
    else
        rms_norm(x, g, (float)c->norm_eps, ntok, c->hidden, y);
}

void zf_rope_table(const zf_model_config *c, int64_t seq, float *cosv, float *sinv)
{
    int64_t half = c->head_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        float inv_freq = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        for (int64_t p = 0; p < seq; p++) {
            float a = (float)p * inv_freq;
            cosv[p * half + i] = cosf(a);
            sinv[p * half + i] = sinf(a);
        }
    }
}

/* rotate_half on the halves (i, i + hd/2) of every head of rows x [ntok, nheads·hd]; row t is at position t mod seq. */
static void rope_apply(float *x, int64_t ntok, int64_t seq, int64_t nheads, int64_t hd, const float *cosv,
                       const float *sinv)
{
    int64_t half = hd / 2;
    for (int64_t t = 0; t < ntok; t++) {
        const float *cr = cosv + (t % seq) * half, *sr = sinv + (t % seq) * half;
        for (int64_t h = 0; h < nheads; h++) {
            float *v = x + (t * nheads + h) * hd;
            for (int64_t i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half];
                v[i] = x1 * cr[i] - x2 * sr[i];
                v[i + half] = x2 * cr[i] + x1 * sr[i];
            }
        }
    }
}

/* Four floats as one GCC vector (SSE2 on x86-64, NEON on arm64): the attention loops vectorize without -ffast-math,
 * and their summation order is fixed by the code, not by the compiler. A key tile is NV such vectors, in registers. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
#define NV (KEY_TILE / 4)

static inline v4f vload(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, v4f v) { memcpy(p, &v, sizeof v); }

static inline v4f vsplat(float x) { return (v4f){x, x, x, x}; }

static inline v4f vselect(v4i mask, v4f a, v4f b) { return (v4f)(((v4i)a & mask) | ((v4i)b & ~mask)); }

/* e^x lane by lane for the softmax (x <= 0): Cody-Waite reduction x = n·ln2 + r and Cephes' polynomial for e^r
 * (about 1 ulp, like the vectorized exp torch uses); below -87.3, where e^x leaves the normal floats, it is 0. */
static inline v4f vexp(v4f x)
{
    v4i under = x < -87.3f;
    v4f xc = vselect(under, vsplat(-87.3f), x);
    v4f n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest by the 1.5·2^23 shift */
    v4f r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    v4f p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    v4i bits = (__builtin_convertvector(n, v4i) + 127) << 23;
    return (v4f)((v4i)(p * (v4f)bits) & ~under);
}

/* Σ of the lanes of acc[0..NV) in a fixed order. */
static inline float tile_sum(const v4f *acc)
{
    v4f t = acc[0];
    for (int u = 1; u < NV; u++) t += acc[u];
    return (t[0] + t[1]) + (t[2] + t[3]);
}

/* One query head of one window: out[t] = softmax_{j≤t}(scale · q_t·k_j) · V. kt = Kᵀ and vt = Vᵀ [hd, seqp] are
 * zero-padded to whole key tiles; s is a [seqp] score row. Every pass over the keys goes tile by tile. */
static void attention_head(const float *q, int64_t qstride, const float *kt, const float *vt, int64_t seqp,
                           float *out, int64_t seq, int64_t hd, float scale, float *s)
{
    for (int64_t t = 0; t < seq; t++) {
        const float *qt = q + t * qstride;
        int64_t n = t + 1, np = (n + KEY_TILE - 1) / KEY_TILE * KEY_TILE;
        for (int64_t j0 = 0; j0 < np; j0 += KEY_TILE) {
            v4f acc[NV] = {0};
            for (int64_t e = 0; e < hd; e++) {
                v4f qe = vsplat(qt[e]);
                for (int u = 0; u < NV; u++) acc[u] += qe * vload(kt + e * seqp + j0 + 4 * u);
            }
            for (int u = 0; u < NV; u++) vstore(s + j0 + 4 * u, acc[u] * scale);
        }
        /* The causal mask: keys after t in the last tile get -inf, hence probability 0. */
        for (int64_t j = n; j < np; j++) s[j] = -INFINITY;
        v4f mx[NV], part[NV] = {0};
        for (int u = 0; u < NV; u++) mx[u] = vsplat(-INFINITY);
        for (int64_t j0 = 0; j0 < np; j0 += KEY_TILE)
            for (int u = 0; u < NV; u++) {
                v4f v = vload(s + j0 + 4 * u);
                mx[u] = vselect(v > mx[u], v, mx[u]);
            }
        float m = -INFINITY;
        for (int u = 0; u < NV; u++)
            for (int i = 0; i < 4; i++) m = mx[u][i] > m ? mx[u][i] : m;
        for (int64_t j0 = 0; j0 < np; j0 += KEY_TILE)
            for (int u = 0; u < NV; u++) {
                v4f p = vexp(vload(s + j0 + 4 * u) - m);
                vstore(s + j0 + 4 * u, p);
                part[u] += p;
            }
        float sum = tile_sum(part), *ot = out + t * qstride;
        for (int64_t e = 0; e < hd; e++) {
            v4f acc[NV] = {0};
            const float *vr = vt + e * seqp;
            for (int64_t j0 = 0; j0 < np; j0 += KEY_TILE)
                for (int u = 0; u < NV; u++) acc[u] += vload(s + j0 + 4 * u) * vload(vr + j0 + 4 * u);
            ot[e] = tile_sum(acc) / sum;
        }
    }
}

/* att [ntok, nh·hd] = causal attention of every (window, head); query head h reads KV head h / (nh/nkv). */
static zf_status attention(const zf_model_config *c, const float *q, const float *k, const float *v, float *att,
                           int64_t nwin, int64_t seq, float scale)
{
    int64_t hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads, rep = nh / nkv;
    int64_t qdim = nh * hd, kvdim = nkv * hd;
    int64_t seqp = (seq + KEY_TILE - 1) / KEY_TILE * KEY_TILE;
    int64_t per_thread = 2 * hd * seqp + seqp;
    int nthreads = omp_get_max_threads();
    float *scratch = zf_calloc((size_t)nthreads * (size_t)per_thread, sizeof(float), "attention scratch");
    if (!scratch) return ZF_ERR_NOMEM;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t w = 0; w < nwin; w++)
        for (int64_t kh = 0; kh < nkv; kh++) {
            float *kt = scratch + (size_t)omp_get_thread_num() * (size_t)per_thread;
            float *vt = kt + hd * seqp, *s = vt + hd * seqp;
            const float *kw = k + w * seq * kvdim + kh * hd, *vw = v + w * seq * kvdim + kh * hd;
            /* Kᵀ and Vᵀ once per KV head, shared by its rep query heads; the padding columns stay zero. */
            for (int64_t j = 0; j < seq; j++)
                for (int64_t e = 0; e < hd; e++) {
                    kt[e * seqp + j] = kw[j * kvdim + e];
                    vt[e * seqp + j] = vw[j * kvdim + e];
                }
            for (int64_t h = kh * rep; h < (kh + 1) * rep; h++)
                attention_head(q + w * seq * qdim + h * hd, qdim, kt, vt, seqp, att + w * seq * qdim + h * hd, seq,
                               hd, scale, s);
        }
    free(scratch);
    return ZF_OK;
}

zf_status zf_embed(const zf_model_config *c, const zf_model_globals *g, const int32_t *tokens, int64_t nwin,
                   int64_t seq, float *x)
{
    ZF_ASSERT(nwin >= 0 && seq >= 0 && g->embed);
    int64_t d = c->hidden, ntok = nwin * seq;
    bool opt = c->family == ZF_FAMILY_OPT;
    if (opt) {
        ZF_ASSERT(g->pos);
        if (seq > c->max_pos)
            return zf_fail(ZF_ERR_INPUT, "window of %lld tokens is longer than the %lld learned positions",
                           (long long)seq, (long long)c->max_pos);
    }
    for (int64_t t = 0; t < ntok; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab)
            return zf_fail(ZF_ERR_INPUT, "token %lld has id %d outside the vocabulary [0, %lld)", (long long)t,
                           tokens[t], (long long)c->vocab);
    for (int64_t t = 0; t < ntok; t++) {
        float *xr = x + t * d;
        memcpy(xr, g->embed + (int64_t)tokens[t] * d, sizeof(float) * (size_t)d);
        if (opt) {
            const float *pr = g->pos + (t % seq + c->opt_pos_offset) * d;
            for (int64_t i = 0; i < d; i++) xr[i] += pr[i];
        }
    }
    return ZF_OK;
}

int64_t zf_forward_big_floats(const zf_model_config *c)
{
    int64_t attn = 2 * c->n_heads * c->head_dim + 2 * c->n_kv_heads * c->head_dim;
    int64_t mlp = (c->family == ZF_FAMILY_OPT ? 1 : 2) * c->intermediate;
    return attn > mlp ? attn : mlp;
}

zf_status zf_block_forward(const zf_model_config *c, const zf_block_weights *w, float *x, int64_t nwin, int64_t seq,
                           zf_capture_fn capture, void *capture_ctx)
{
    ZF_ASSERT(nwin >= 0 && seq >= 0);
    ZF_TRY(zf_forward_check_config(c));
    int64_t ntok = nwin * seq;
    if (ntok == 0) return ZF_OK;
    ZF_TRY(check_blas_size(ntok, "block forward"));
    bool opt = c->family == ZF_FAMILY_OPT;
    int64_t d = c->hidden, hd = c->head_dim, qdim = c->n_heads * hd, kvdim = c->n_kv_heads * hd;
    int64_t ff = c->intermediate;
    ZF_ASSERT(w->lin_w[ZF_LIN_Q] && w->lin_w[ZF_LIN_K] && w->lin_w[ZF_LIN_V] && w->lin_w[ZF_LIN_O]);
    ZF_ASSERT(w->lin_w[ZF_LIN_UP] && w->lin_w[ZF_LIN_DOWN] && (opt || w->lin_w[ZF_LIN_GATE]));
    ZF_ASSERT(w->norm_w[0] && w->norm_w[1]);

    /* h: a norm's output; big: q, k, v and the attention mix, later gate/up (or fc1) — never both at once. */
    int64_t big_floats = zf_forward_big_floats(c);
    int64_t half = opt ? 0 : hd / 2;
    float *h = zf_malloc(sizeof(float) * (size_t)(ntok * d), "block norm output");
    float *big = zf_malloc(sizeof(float) * (size_t)ntok * (size_t)big_floats, "block activations");
    float *rope = zf_malloc(sizeof(float) * (size_t)(2 * seq * half), "rotary table");
    zf_status st = ZF_ERR_NOMEM;
    if (!h || !big || !rope) goto done;

    /* Attention. */
    block_norm(c, x, w->norm_w[0], w->norm_b[0], ntok, h);
    if (capture) capture(capture_ctx, ZF_GROUP_QKV, h, ntok, d);
    float *q = big, *k = q + ntok * qdim, *v = k + ntok * kvdim, *att = v + ntok * kvdim;
    linear(h, ntok, d, w->lin_w[ZF_LIN_Q], w->lin_b[ZF_LIN_Q], qdim, q, 0);
    linear(h, ntok, d, w->lin_w[ZF_LIN_K], w->lin_b[ZF_LIN_K], kvdim, k, 0);
    linear(h, ntok, d, w->lin_w[ZF_LIN_V], w->lin_b[ZF_LIN_V], kvdim, v, 0);
    float scale = 1.0f / sqrtf((float)hd);
    if (opt) {
        /* HF OPT scales q (bias included) right after q_proj, and the scores are not scaled again. */
        for (int64_t i = 0; i < ntok * qdim; i++) q[i] *= scale;
        scale = 1.0f;
    } else {
        zf_rope_table(c, seq, rope, rope + seq * half);
        rope_apply(q, ntok, seq, c->n_heads, hd, rope, rope + seq * half);
        rope_apply(k, ntok, seq, c->n_kv_heads, hd, rope, rope + seq * half);
    }
    if ((st = attention(c, q, k, v, att, nwin, seq, scale)) != ZF_OK) goto done;
    if (capture) capture(capture_ctx, ZF_GROUP_O, att, ntok, qdim);
    linear(att, ntok, qdim, w->lin_w[ZF_LIN_O], w->lin_b[ZF_LIN_O], d, x, 1);

    /* MLP: SwiGLU down(silu(gate)·up) or ReLU fc2(relu(fc1)); the activation overwrites the first buffer. */
    block_norm(c, x, w->norm_w[1], w->norm_b[1], ntok, h);
    if (capture) capture(capture_ctx, ZF_GROUP_MLP_IN, h, ntok, d);
    float *act = big;
    if (opt) {
        linear(h, ntok, d, w->lin_w[ZF_LIN_UP], w->lin_b[ZF_LIN_UP], ff, act, 0);
        for (int64_t i = 0; i < ntok * ff; i++) act[i] = act[i] > 0.0f ? act[i] : 0.0f;
    } else {
        float *up = big + ntok * ff;
        linear(h, ntok, d, w->lin_w[ZF_LIN_GATE], w->lin_b[ZF_LIN_GATE], ff, act, 0);
        linear(h, ntok, d, w->lin_w[ZF_LIN_UP], w->lin_b[ZF_LIN_UP], ff, up, 0);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < ntok * ff; i++) act[i] = act[i] / (1.0f + expf(-act[i])) * up[i];
    }
    if (capture) capture(capture_ctx, ZF_GROUP_MLP_OUT, act, ntok, ff);
    linear(act, ntok, ff, w->lin_w[ZF_LIN_DOWN], w->lin_b[ZF_LIN_DOWN], d, x, 1);
    st = ZF_OK;
done:
    free(h);
    free(big);
    free(rope);
    return st;
}

zf_status zf_logits(const zf_model_config *c, const zf_model_globals *g, const float *x, int64_t ntok, float *logits)
{
    ZF_ASSERT(ntok >= 0 && g->head && g->final_norm_w);
    if (ntok == 0) return ZF_OK;
    ZF_TRY(check_blas_size(ntok, "logits"));
    float *h = zf_malloc(sizeof(float) * (size_t)(ntok * c->hidden), "final norm output");
    if (!h) return ZF_ERR_NOMEM;
    block_norm(c, x, g->final_norm_w, g->final_norm_b, ntok, h);
    linear(h, ntok, c->hidden, g->head, NULL, c->vocab, logits, 0);
    free(h);
    return ZF_OK;
}

double zf_row_nll(const float *l, int64_t vocab, int32_t target)
{
    double m = l[0];
    for (int64_t i = 1; i < vocab; i++)
        if (l[i] > m) m = l[i];
    double sum = 0;
    for (int64_t i = 0; i < vocab; i++) sum += exp((double)l[i] - m);
    return m + log(sum) - (double)l[target];
}

zf_status zf_token_nll(const zf_model_config *c, const zf_model_globals *g, const float *x, const int32_t *tokens,
                       int64_t nwin, int64_t seq, double *nll)
{
    ZF_ASSERT(nwin >= 0 && seq >= 2);
    int64_t vocab = c->vocab, npred = seq - 1;
    float *logits = zf_malloc(sizeof(float) * (size_t)(nwin * seq) * (size_t)vocab, "logits");
    if (!logits) return ZF_ERR_NOMEM;
    zf_status s = zf_logits(c, g, x, nwin * seq, logits);
    if (s == ZF_OK) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < nwin * npred; r++) {
            int64_t i = r / npred, p = r % npred;
            nll[r] = zf_row_nll(logits + (i * seq + p) * vocab, vocab, tokens[i * seq + p + 1]);
        }
    }
    free(logits);
    return s;
}
