/* Folding ζ leaves a real block's function unchanged (stories260k with GQA, llama-mini, opt-mini); unsafe folds are
 * refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/model.h"
#include "common/safetensors.h"
#include "common/tokens.h"
#include "tests/testutil.h"
#include "worker/block.h"
#include "worker/fold.h"
#include "worker/forward.h"

#define NWIN 2
#define SEQ 48

typedef struct {
    const char *name;
    zf_model_config c;
    zf_safetensors *st;
    zf_model_globals g;
    zf_block_weights w;      /* block 1 as stored */
    float *x;                /* embedded tokens [NWIN·SEQ, d] */
    float *y;                /* block(x) with the stored weights */
} fixture;

static int fixture_open(fixture *f, const char *name)
{
    memset(f, 0, sizeof *f);
    f->name = name;
    zf_tokens tok = {0};
    CHECK_OK(zf_model_config_read(zt_fixture(name), &f->c));
    CHECK_OK(zf_st_open(zt_fixture(name), &f->st));
    if (!f->st) return 0;
    CHECK_OK(zf_globals_load(&f->c, f->st, &f->g));
    CHECK_OK(zf_block_load(&f->c, f->st, 1, &f->w));
    CHECK_OK(zf_tokens_read(zt_fixture("data/tinystories.tok512.bin"), f->c.vocab, &tok));
    int64_t n = NWIN * SEQ * f->c.hidden;
    f->x = malloc(sizeof(float) * n);
    f->y = malloc(sizeof(float) * n);
    CHECK_OK(zf_embed(&f->c, &f->g, tok.ids + 1000, NWIN, SEQ, f->x));
    memcpy(f->y, f->x, sizeof(float) * n);
    CHECK_OK(zf_block_forward(&f->c, &f->w, f->y, NWIN, SEQ, NULL, NULL));
    zf_tokens_free(&tok);
    return 1;
}

static void fixture_close(fixture *f)
{
    free(f->x), free(f->y);
    zf_block_free(&f->w);
    zf_globals_free(&f->g);
    zf_st_close(f->st);
}

/* Random ζ in [0.5, 2], equal within GQA tie classes; with `flip_signs` half of them negated (exact for SwiGLU). */
static void random_zeta(zt_rng *r, const zf_model_config *c, zf_group g, float *zeta, int flip_signs)
{
    int64_t n = zf_group_in(c, g);
    int32_t *cls = malloc(sizeof(int32_t) * n);
    int64_t ncls = zf_fold_tie_classes(c, g, cls);
    float *per_class = malloc(sizeof(float) * (ncls ? ncls : 1));
    for (int64_t k = 0; k < ncls; k++) per_class[k] = (float)(0.5 + 1.5 * zt_rng_uniform(r));
    for (int64_t i = 0; i < n; i++) {
        zeta[i] = ncls ? per_class[cls[i]] : (float)(0.5 + 1.5 * zt_rng_uniform(r));
        if (flip_signs && zt_rng_uniform(r) < 0.5) zeta[i] = -zeta[i];
    }
    free(cls), free(per_class);
}

/* The members read x·diag(ζ)⁻¹ of the folded input: their columns are divided by ζ. */
static void divide_members(const zf_model_config *c, zf_group g, const float *zeta, zf_block_weights *w)
{
    zf_lin m[3];
    int nm = zf_group_members(c, g, m);
    for (int k = 0; k < nm; k++) {
        int64_t out = zf_lin_out(c, m[k]), in = zf_lin_in(c, m[k]);
        for (int64_t rr = 0; rr < out; rr++)
            for (int64_t j = 0; j < in; j++) w->lin_w[m[k]][rr * in + j] /= zeta[j];
    }
}

/* Folds the groups in mask (bit g) into a copy of the block and compares block(x); returns the relative error. */
static double fold_and_compare(fixture *f, zt_rng *r, unsigned mask, double *delta_rel)
{
    const zf_model_config *c = &f->c;
    zf_block_weights w;
    CHECK_OK(zf_block_copy(c, &f->w, &w));
    for (int g = 0; g < ZF_NGROUP; g++) {
        if (!(mask & (1u << g))) continue;
        float *zeta = malloc(sizeof(float) * zf_group_in(c, g));
        random_zeta(r, c, g, zeta, c->family == ZF_FAMILY_LLAMA && g == ZF_GROUP_MLP_OUT);
        divide_members(c, g, zeta, &w);
        CHECK_OK(zf_fold_zeta(c, g, zeta, &w));
        free(zeta);
    }
    int64_t n = NWIN * SEQ * c->hidden;
    float *y = malloc(sizeof(float) * n);
    memcpy(y, f->x, sizeof(float) * n);
    CHECK_OK(zf_block_forward(c, &w, y, NWIN, SEQ, NULL, NULL));
    double md = zt_max_abs_diff(y, f->y, n), mdelta = 0;
    for (int64_t i = 0; i < n; i++) mdelta = fmax(mdelta, fabs((double)f->y[i] - f->x[i]));
    *delta_rel = md / mdelta;
    free(y);
    zf_block_free(&w);
    return md / zt_max_abs(f->y, n);
}

static void test_exact(fixture *f)
{
    zt_rng r;
    zt_rng_seed(&r, 7);
    static const char *what[] = {"QKV→attn norm", "O→V rows", "MLP in→MLP norm", "MLP out→up rows"};
    for (int g = 0; g <= ZF_NGROUP; g++) {
        unsigned mask = g == ZF_NGROUP ? 0xfu : 1u << g;
        double drel, rel = fold_and_compare(f, &r, mask, &drel);
        printf("%-12s fold %-16s: rel err of block output %.3g (of the block's update %.3g)\n", f->name,
               g == ZF_NGROUP ? "all four" : what[g], rel, drel);
        CHECK_MSG(rel < 1e-5, "%s mask %x: %g", f->name, mask, rel);
    }
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static void test_refusals(fixture *f)
{
    const zf_model_config *c = &f->c;
    zf_block_weights w;
    CHECK_OK(zf_block_copy(c, &f->w, &w));
    int64_t hd = c->head_dim, nq = zf_group_in(c, ZF_GROUP_O), nf = zf_group_in(c, ZF_GROUP_MLP_OUT);
    int64_t vsize = zf_lin_out(c, ZF_LIN_V) * zf_lin_in(c, ZF_LIN_V);
    int64_t upsize = zf_lin_out(c, ZF_LIN_UP) * zf_lin_in(c, ZF_LIN_UP);
    float *zo = malloc(sizeof(float) * nq), *zf = malloc(sizeof(float) * nf);
    int32_t *cls = malloc(sizeof(int32_t) * nq);

    int64_t ncls = zf_fold_tie_classes(c, ZF_GROUP_O, cls);
    CHECK(zf_fold_tie_classes(c, ZF_GROUP_QKV, cls) == 0);
    if (c->n_kv_heads < c->n_heads) {
        int64_t rep = c->n_heads / c->n_kv_heads;
        zf_fold_tie_classes(c, ZF_GROUP_O, cls);
        CHECK(ncls == c->n_kv_heads * hd);
        int ok = 1;
        for (int64_t h = 0; h < c->n_heads; h++)
            for (int64_t i = 0; i < hd; i++) ok &= cls[h * hd + i] == (h / rep) * hd + i;
        CHECK(ok);
        /* Head 1 reads KV head 0 like head 0 but gets a different ζ in column 3. */
        for (int64_t i = 0; i < nq; i++) zo[i] = 1.0f;
        zo[hd + 3] = 1.5f;
        CHECK(zf_fold_zeta(c, ZF_GROUP_O, zo, &w) == ZF_ERR_INPUT);
        printf("%s untied GQA ζ: %s\n", f->name, zf_last_error());
        CHECK(contains(zf_last_error(), "not tied across heads sharing KV head 0"));
        CHECK(memcmp(w.lin_w[ZF_LIN_V], f->w.lin_w[ZF_LIN_V], sizeof(float) * vsize) == 0);
    } else {
        CHECK(ncls == 0);
    }

    for (int64_t i = 0; i < nf; i++) zf[i] = 1.0f;
    if (c->family == ZF_FAMILY_OPT) {
        zf[5] = -0.5f;
        zf[9] = 0.0f;
        CHECK(zf_fold_zeta(c, ZF_GROUP_MLP_OUT, zf, &w) == ZF_ERR_INPUT);
        printf("%s negative ζ through ReLU: %s\n", f->name, zf_last_error());
        CHECK(contains(zf_last_error(), "ζ[5]") && contains(zf_last_error(), "ReLU"));
        zf[5] = 1.0f;
        CHECK(zf_fold_zeta(c, ZF_GROUP_MLP_OUT, zf, &w) == ZF_ERR_INPUT);
        CHECK(contains(zf_last_error(), "ζ[9]"));
    } else {
        zf[9] = 0.0f;
        CHECK(zf_fold_zeta(c, ZF_GROUP_MLP_OUT, zf, &w) == ZF_ERR_INPUT);
        printf("%s zero ζ into up: %s\n", f->name, zf_last_error());
        CHECK(contains(zf_last_error(), "ζ[9]"));
    }
    zf[9] = NAN;
    CHECK(zf_fold_zeta(c, ZF_GROUP_MLP_OUT, zf, &w) == ZF_ERR_INPUT);
    CHECK(memcmp(w.lin_w[ZF_LIN_UP], f->w.lin_w[ZF_LIN_UP], sizeof(float) * upsize) == 0);
    free(zo), free(zf), free(cls);
    zf_block_free(&w);
}

int main(void)
{
    static const char *names[] = {"stories260k", "llama-mini", "opt-mini"};
    for (int i = 0; i < 3; i++) {
        fixture f;
        if (!fixture_open(&f, names[i])) continue;
        test_exact(&f);
        test_refusals(&f);
        fixture_close(&f);
    }
    return zt_finish("test_fold");
}
