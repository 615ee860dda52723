/* The fp32 forward against a scalar double reference (tiny llama with GQA and q/k/v biases, tiny opt) and stories260k's
 * reference logits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/model.h"
#include "common/safetensors.h"
#include "common/tokens.h"
#include "tests/testutil.h"
#include "worker/block.h"
#include "worker/forward.h"

/* ---------------------------------------------------------------- scalar double reference */

static void ref_linear(const double *x, int64_t ntok, int64_t in, const float *W, const float *b, int64_t out,
                       double *y)
{
    for (int64_t t = 0; t < ntok; t++)
        for (int64_t o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++) acc += x[t * in + i] * W[o * in + i];
            y[t * out + o] = acc;
        }
}

static void ref_norm(const zf_model_config *c, const double *x, const float *g, const float *b, int64_t ntok,
                     double *y)
{
    int64_t d = c->hidden;
    for (int64_t t = 0; t < ntok; t++) {
        const double *xr = x + t * d;
        double mean = 0, var = 0;
        if (c->family == ZF_FAMILY_OPT) {
            for (int64_t i = 0; i < d; i++) mean += xr[i];
            mean /= d;
        }
        for (int64_t i = 0; i < d; i++) var += (xr[i] - mean) * (xr[i] - mean);
        double inv = 1.0 / sqrt(var / d + c->norm_eps);
        for (int64_t i = 0; i < d; i++) y[t * d + i] = (xr[i] - mean) * inv * g[i] + (b ? b[i] : 0.0);
    }
}

/* Rotates pairs (i, i + hd/2) of each head by pos·θ^(-2i/hd). */
static void ref_rope(const zf_model_config *c, double *v, int64_t pos)
{
    int64_t hd = c->head_dim, half = hd / 2;
    for (int64_t i = 0; i < half; i++) {
        double a = (double)pos * pow(c->rope_theta, -2.0 * (double)i / (double)hd);
        double x1 = v[i], x2 = v[i + half];
        v[i] = x1 * cos(a) - x2 * sin(a);
        v[i + half] = x2 * cos(a) + x1 * sin(a);
    }
}

/* The inputs of the four linear groups of one block, as the reference computed them. */
typedef struct {
    double *in[ZF_NGROUP];
} ref_capture;

static void ref_block(const zf_model_config *c, const zf_block_weights *w, double *x, int64_t nwin, int64_t seq,
                      ref_capture *cap)
{
    int64_t ntok = nwin * seq, d = c->hidden, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
    int64_t qd = nh * hd, kvd = nkv * hd, ff = c->intermediate;
    bool opt = c->family == ZF_FAMILY_OPT;
    double *h = calloc(ntok * d, sizeof(double)), *q = calloc(ntok * qd, sizeof(double));
    double *k = calloc(ntok * kvd, sizeof(double)), *v = calloc(ntok * kvd, sizeof(double));
    double *att = calloc(ntok * qd, sizeof(double)), *o = calloc(ntok * d, sizeof(double));
    double *gate = calloc(ntok * ff, sizeof(double)), *up = calloc(ntok * ff, sizeof(double));
    double *p = calloc(seq, sizeof(double));

    ref_norm(c, x, w->norm_w[0], w->norm_b[0], ntok, h);
    memcpy(cap->in[ZF_GROUP_QKV], h, sizeof(double) * ntok * d);
    ref_linear(h, ntok, d, w->lin_w[ZF_LIN_Q], w->lin_b[ZF_LIN_Q], qd, q);
    ref_linear(h, ntok, d, w->lin_w[ZF_LIN_K], w->lin_b[ZF_LIN_K], kvd, k);
    ref_linear(h, ntok, d, w->lin_w[ZF_LIN_V], w->lin_b[ZF_LIN_V], kvd, v);
    if (!opt)
        for (int64_t t = 0; t < ntok; t++) {
            for (int64_t hh = 0; hh < nh; hh++) ref_rope(c, q + t * qd + hh * hd, t % seq);
            for (int64_t hh = 0; hh < nkv; hh++) ref_rope(c, k + t * kvd + hh * hd, t % seq);
        }
    for (int64_t wi = 0; wi < nwin; wi++)
        for (int64_t hh = 0; hh < nh; hh++) {
            int64_t kh = hh / (nh / nkv);
            for (int64_t t = 0; t < seq; t++) {
                const double *qt = q + (wi * seq + t) * qd + hh * hd;
                double m = -INFINITY, sum = 0;
                for (int64_t j = 0; j <= t; j++) {
                    const double *kj = k + (wi * seq + j) * kvd + kh * hd;
                    double s = 0;
                    for (int64_t e = 0; e < hd; e++) s += qt[e] * kj[e];
                    p[j] = s / sqrt((double)hd);
                    if (p[j] > m) m = p[j];
                }
                for (int64_t j = 0; j <= t; j++) sum += (p[j] = exp(p[j] - m));
                for (int64_t e = 0; e < hd; e++) {
                    double acc = 0;
                    for (int64_t j = 0; j <= t; j++) acc += p[j] / sum * v[(wi * seq + j) * kvd + kh * hd + e];
                    att[(wi * seq + t) * qd + hh * hd + e] = acc;
                }
            }
        }
    memcpy(cap->in[ZF_GROUP_O], att, sizeof(double) * ntok * qd);
    ref_linear(att, ntok, qd, w->lin_w[ZF_LIN_O], w->lin_b[ZF_LIN_O], d, o);
    for (int64_t i = 0; i < ntok * d; i++) x[i] += o[i];

    ref_norm(c, x, w->norm_w[1], w->norm_b[1], ntok, h);
    memcpy(cap->in[ZF_GROUP_MLP_IN], h, sizeof(double) * ntok * d);
    ref_linear(h, ntok, d, w->lin_w[ZF_LIN_UP], w->lin_b[ZF_LIN_UP], ff, up);
    if (opt) {
        for (int64_t i = 0; i < ntok * ff; i++) gate[i] = up[i] > 0 ? up[i] : 0;
    } else {
        ref_linear(h, ntok, d, w->lin_w[ZF_LIN_GATE], w->lin_b[ZF_LIN_GATE], ff, gate);
        for (int64_t i = 0; i < ntok * ff; i++) gate[i] = gate[i] / (1.0 + exp(-gate[i])) * up[i];
    }
    memcpy(cap->in[ZF_GROUP_MLP_OUT], gate, sizeof(double) * ntok * ff);
    ref_linear(gate, ntok, ff, w->lin_w[ZF_LIN_DOWN], w->lin_b[ZF_LIN_DOWN], d, o);
    for (int64_t i = 0; i < ntok * d; i++) x[i] += o[i];
    free(h), free(q), free(k), free(v), free(att), free(o), free(gate), free(up), free(p);
}

/* ---------------------------------------------------------------- tiny random models */

static zf_model_config tiny_llama(void)
{
    zf_model_config c = {0};
    c.family = ZF_FAMILY_LLAMA;
    strcpy(c.model_type, "llama");
    c.hidden = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8, c.intermediate = 48;
    c.vocab = 40, c.max_pos = 64, c.norm_eps = 1e-5, c.rope_theta = 10000.0;
    c.attn_bias = true; /* Qwen2-style q/k/v biases */
    return c;
}

static zf_model_config tiny_opt(void)
{
    zf_model_config c = {0};
    c.family = ZF_FAMILY_OPT;
    strcpy(c.model_type, "opt");
    c.hidden = 24, c.n_layers = 2, c.n_heads = 3, c.n_kv_heads = 3, c.head_dim = 8, c.intermediate = 64;
    c.vocab = 40, c.max_pos = 32, c.norm_eps = 1e-5, c.tied_embeddings = true;
    c.attn_bias = c.o_bias = c.mlp_bias = c.norm_bias = true;
    c.opt_pos_offset = 2;
    return c;
}

static void fill_block(zt_rng *r, const zf_model_config *c, zf_block_weights *w)
{
    for (int l = 0; l < ZF_NLIN; l++) {
        if (!w->lin_w[l]) continue;
        int64_t out = zf_lin_out(c, l), in = zf_lin_in(c, l);
        zt_fill_normal(r, w->lin_w[l], out * in, 1.0 / sqrt((double)in));
        if (w->lin_b[l]) zt_fill_normal(r, w->lin_b[l], out, 0.2);
    }
    for (int n = 0; n < 2; n++) {
        for (int64_t i = 0; i < c->hidden; i++) w->norm_w[n][i] = (float)(1.0 + 0.2 * zt_rng_normal(r));
        if (w->norm_b[n]) zt_fill_normal(r, w->norm_b[n], c->hidden, 0.1);
    }
}

typedef struct {
    int calls;
    zf_group order[ZF_NGROUP];
    float *in[ZF_NGROUP];
    int64_t ntok[ZF_NGROUP], dim[ZF_NGROUP];
} capture_log;

static void capture_cb(void *ctx, zf_group g, const float *x, int64_t ntok, int64_t dim)
{
    capture_log *cl = ctx;
    if (cl->calls < ZF_NGROUP) cl->order[cl->calls] = g;
    cl->calls++;
    free(cl->in[g]);
    cl->in[g] = malloc(sizeof(float) * ntok * dim);
    memcpy(cl->in[g], x, sizeof(float) * ntok * dim);
    cl->ntok[g] = ntok, cl->dim[g] = dim;
}

/* max |a - b| / max(1, max |b|) over n values (b the double reference). */
static double rel_err(const float *a, const double *b, int64_t n)
{
    double m = 0, s = 1;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (e > m || e != e) m = e;
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    return m / s;
}

static void test_tiny(const zf_model_config *c, const char *name)
{
    const double tol = 1e-5; /* relative to max(1, max |ref|): fp32 rounding through two blocks */
    zt_rng r;
    zt_rng_seed(&r, 42);
    int64_t nwin = 2, seq = 19, ntok = nwin * seq, d = c->hidden;
    zf_block_weights blocks[2];
    for (int b = 0; b < 2; b++) {
        CHECK_OK(zf_block_alloc(c, &blocks[b]));
        fill_block(&r, c, &blocks[b]);
    }
    zf_model_globals g = {0};
    g.embed = malloc(sizeof(float) * c->vocab * d);
    zt_fill_normal(&r, g.embed, c->vocab * d, 1.0);
    if (c->family == ZF_FAMILY_OPT) {
        g.pos = malloc(sizeof(float) * (c->max_pos + 2) * d);
        zt_fill_normal(&r, g.pos, (c->max_pos + 2) * d, 0.5);
    }
    g.final_norm_w = malloc(sizeof(float) * d);
    for (int64_t i = 0; i < d; i++) g.final_norm_w[i] = (float)(1.0 + 0.2 * zt_rng_normal(&r));
    if (c->norm_bias) {
        g.final_norm_b = malloc(sizeof(float) * d);
        zt_fill_normal(&r, g.final_norm_b, d, 0.1);
    }
    if (c->tied_embeddings) {
        g.head = g.embed;
    } else {
        g.head = malloc(sizeof(float) * c->vocab * d);
        zt_fill_normal(&r, g.head, c->vocab * d, 1.0 / sqrt((double)d));
    }
    int32_t tokens[38];
    for (int64_t t = 0; t < ntok; t++) tokens[t] = (int32_t)(zt_rng_u64(&r) % (uint64_t)c->vocab);

    float *x = malloc(sizeof(float) * ntok * d);
    double *xr = malloc(sizeof(double) * ntok * d);
    CHECK_OK(zf_embed(c, &g, tokens, nwin, seq, x));
    for (int64_t t = 0; t < ntok; t++)
        for (int64_t i = 0; i < d; i++)
            xr[t * d + i] = (double)g.embed[tokens[t] * d + i] +
                            (g.pos ? (double)g.pos[(t % seq + 2) * d + i] : 0.0);
    printf("%s: embed rel err %.3g\n", name, rel_err(x, xr, ntok * d));
    CHECK(rel_err(x, xr, ntok * d) < 1e-6);

    ref_capture rc;
    int64_t gdim[ZF_NGROUP] = {d, c->n_heads * c->head_dim, d, c->intermediate};
    for (int gi = 0; gi < ZF_NGROUP; gi++) rc.in[gi] = malloc(sizeof(double) * ntok * gdim[gi]);
    for (int b = 0; b < 2; b++) {
        capture_log cl = {0};
        CHECK_OK(zf_block_forward(c, &blocks[b], x, nwin, seq, capture_cb, &cl));
        ref_block(c, &blocks[b], xr, nwin, seq, &rc);
        double e = rel_err(x, xr, ntok * d);
        printf("%s: block %d output rel err %.3g\n", name, b, e);
        CHECK_MSG(e < tol, "%s block %d: %g", name, b, e);
        CHECK_MSG(cl.calls == ZF_NGROUP, "%d capture calls", cl.calls);
        for (int gi = 0; gi < ZF_NGROUP && gi < cl.calls; gi++) {
            CHECK(cl.order[gi] == (zf_group)gi);
            CHECK(cl.ntok[gi] == ntok && cl.dim[gi] == gdim[gi]);
            double ce = rel_err(cl.in[gi], rc.in[gi], ntok * gdim[gi]);
            printf("%s: block %d capture %s rel err %.3g\n", name, b, zf_group_name(gi), ce);
            CHECK_MSG(ce < tol, "%s block %d group %s: %g", name, b, zf_group_name(gi), ce);
            free(cl.in[gi]);
        }
    }
    float *logits = malloc(sizeof(float) * ntok * c->vocab);
    double *lr = malloc(sizeof(double) * ntok * c->vocab), *hn = malloc(sizeof(double) * ntok * d);
    CHECK_OK(zf_logits(c, &g, x, ntok, logits));
    ref_norm(c, xr, g.final_norm_w, g.final_norm_b, ntok, hn);
    ref_linear(hn, ntok, d, g.head, NULL, c->vocab, lr);
    double le = rel_err(logits, lr, ntok * c->vocab);
    printf("%s: logits rel err %.3g\n", name, le);
    CHECK_MSG(le < tol, "%s logits: %g", name, le);

    /* Next-token NLL: log-sum-exp of the double logits; position p of a window predicts its token p + 1. */
    double *nll = malloc(sizeof(double) * nwin * (seq - 1)), ne = 0;
    CHECK_OK(zf_token_nll(c, &g, x, tokens, nwin, seq, nll));
    for (int64_t i = 0; i < nwin; i++)
        for (int64_t p = 0; p + 1 < seq; p++) {
            const double *l = lr + (i * seq + p) * c->vocab;
            double m = l[0], sum = 0;
            for (int64_t v = 1; v < c->vocab; v++) m = l[v] > m ? l[v] : m;
            for (int64_t v = 0; v < c->vocab; v++) sum += exp(l[v] - m);
            double ref = m + log(sum) - l[tokens[i * seq + p + 1]];
            ne = fmax(ne, fabs(nll[i * (seq - 1) + p] - ref));
        }
    printf("%s: next-token NLL max abs err %.3g\n", name, ne);
    CHECK_MSG(ne < 1e-4, "%s next-token NLL: %g nats", name, ne); /* logits within 1e-5 relative */
    free(nll);

    /* Windows are independent: window 1 alone gives what it gave beside window 0. */
    float *x1 = malloc(sizeof(float) * seq * d);
    CHECK_OK(zf_embed(c, &g, tokens + seq, 1, seq, x1));
    for (int b = 0; b < 2; b++) CHECK_OK(zf_block_forward(c, &blocks[b], x1, 1, seq, NULL, NULL));
    double we = zt_max_abs_diff(x1, x + seq * d, seq * d) / zt_max_abs(x + seq * d, seq * d);
    printf("%s: window alone vs in a batch rel diff %.3g\n", name, we);
    CHECK(we < 1e-6);

    /* Out-of-vocabulary ids are refused. */
    int32_t bad[2] = {0, (int32_t)c->vocab};
    CHECK(zf_embed(c, &g, bad, 1, 2, x1) == ZF_ERR_INPUT);
    if (c->family == ZF_FAMILY_OPT) CHECK(zf_embed(c, &g, tokens, 1, c->max_pos + 1, x) == ZF_ERR_INPUT);

    free(x1), free(logits), free(lr), free(hn), free(x), free(xr);
    for (int gi = 0; gi < ZF_NGROUP; gi++) free(rc.in[gi]);
    for (int b = 0; b < 2; b++) zf_block_free(&blocks[b]);
    if (g.head != g.embed) free(g.head);
    free(g.embed), free(g.pos), free(g.final_norm_w), free(g.final_norm_b);
}

/* ---------------------------------------------------------------- stories260k vs run.c */

static void test_stories_logits(void)
{
    const int64_t n = 128;
    zf_model_config c;
    zf_safetensors *st = NULL;
    zf_model_globals g = {0};
    zf_tokens tok = {0};
    CHECK_OK(zf_model_config_read(zt_fixture("stories260k"), &c));
    CHECK_OK(zf_st_open(zt_fixture("stories260k"), &st));
    if (!st) return;
    CHECK_OK(zf_globals_load(&c, st, &g));
    CHECK_OK(zf_tokens_read(zt_fixture("data/tinystories.tok512.bin"), c.vocab, &tok));
    float *ref = malloc(sizeof(float) * n * c.vocab);
    FILE *f = fopen(zt_fixture("reference/tinystories_first128.logits.f32"), "rb");
    CHECK(f && fread(ref, sizeof(float), n * c.vocab, f) == (size_t)(n * c.vocab));
    if (f) fclose(f);

    float *x = malloc(sizeof(float) * n * c.hidden), *logits = malloc(sizeof(float) * n * c.vocab);
    CHECK_OK(zf_embed(&c, &g, tok.ids, 1, n, x));
    for (int64_t b = 0; b < c.n_layers; b++) {
        zf_block_weights w = {0};
        CHECK_OK(zf_block_load(&c, st, b, &w));
        CHECK_OK(zf_block_forward(&c, &w, x, 1, n, NULL, NULL));
        zf_block_free(&w);
    }
    CHECK_OK(zf_logits(&c, &g, x, n, logits));
    double md = zt_max_abs_diff(logits, ref, n * c.vocab);
    int argmax_equal = 0;
    for (int64_t t = 0; t < n; t++) {
        int64_t a = 0, b = 0;
        for (int64_t i = 1; i < c.vocab; i++) {
            if (logits[t * c.vocab + i] > logits[t * c.vocab + a]) a = i;
            if (ref[t * c.vocab + i] > ref[t * c.vocab + b]) b = i;
        }
        argmax_equal += a == b;
    }
    printf("stories260k first 128 tokens: max abs logit diff vs run.c %.3g (max |logit| %.3g), argmax equal %d/%lld\n",
           md, zt_max_abs(ref, n * c.vocab), argmax_equal, (long long)n);
    CHECK_MSG(md < 1e-4, "max abs diff %g", md);
    CHECK(argmax_equal == n);
    free(ref), free(x), free(logits);
    zf_tokens_free(&tok);
    zf_globals_free(&g);
    zf_st_close(st);
}

int main(void)
{
    zf_model_config l = tiny_llama(), o = tiny_opt();
    test_tiny(&l, "tiny llama (GQA 2:1, q/k/v bias)");
    test_tiny(&o, "tiny opt");
    test_stories_logits();
    return zt_finish("test_forward");
}
