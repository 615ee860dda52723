/* Block and global weights: every block of the three fixtures against raw tensor reads, copies, tied heads, NaN/Inf detection. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/model.h"
#include "common/safetensors.h"
#include "tests/testutil.h"
#include "worker/block.h"

/* x[idx] equals the raw fp32 value of tensor `name` at element idx. */
static int raw_equals(const zf_safetensors *st, const char *name, const float *x, int64_t idx)
{
    const zf_st_tensor *t = zf_st_find(st, name);
    if (!t || t->dtype != ZF_DT_F32 || idx >= t->numel) return 0;
    float v;
    memcpy(&v, (const unsigned char *)t->data + 4 * idx, 4);
    return memcmp(&v, &x[idx], 4) == 0;
}

static void check_model(const char *dir)
{
    zf_model_config c;
    zf_safetensors *st = NULL;
    CHECK_OK(zf_model_config_read(zt_fixture(dir), &c));
    CHECK_OK(zf_st_open(zt_fixture(dir), &st));
    if (!st) return;
    char prefix[256], name[300];
    for (int64_t b = 0; b < c.n_layers; b++) {
        zf_block_weights w;
        CHECK_OK(zf_block_load(&c, st, b, &w));
        for (int l = 0; l < ZF_NLIN; l++) {
            zf_lin lin = (zf_lin)l;
            if (!zf_lin_present(&c, lin)) {
                CHECK(w.lin_w[l] == NULL && w.lin_b[l] == NULL);
                continue;
            }
            CHECK(w.lin_w[l] != NULL);
            CHECK((w.lin_b[l] != NULL) == zf_lin_has_bias(&c, lin));
            if (!w.lin_w[l]) continue;
            int64_t n = zf_lin_out(&c, lin) * zf_lin_in(&c, lin);
            zf_lin_tensor_prefix(&c, b, lin, prefix, sizeof prefix);
            snprintf(name, sizeof name, "%s.weight", prefix);
            CHECK_MSG(raw_equals(st, name, w.lin_w[l], 0) && raw_equals(st, name, w.lin_w[l], n - 1) &&
                      raw_equals(st, name, w.lin_w[l], n / 3), "%s", name);
            /* The whole tensor, bit for bit. */
            CHECK(memcmp(zf_st_find(st, name)->data, w.lin_w[l], (size_t)n * 4) == 0);
            if (w.lin_b[l]) {
                snprintf(name, sizeof name, "%s.bias", prefix);
                CHECK(raw_equals(st, name, w.lin_b[l], zf_lin_out(&c, lin) - 1));
            }
        }
        for (int k = 0; k < 2; k++) {
            zf_norm_tensor_prefix(&c, b, k, prefix, sizeof prefix);
            snprintf(name, sizeof name, "%s.weight", prefix);
            CHECK(w.norm_w[k] && raw_equals(st, name, w.norm_w[k], c.hidden - 1));
            CHECK((w.norm_b[k] != NULL) == c.norm_bias);
            if (w.norm_b[k]) {
                snprintf(name, sizeof name, "%s.bias", prefix);
                CHECK(raw_equals(st, name, w.norm_b[k], 5));
            }
        }
        CHECK_OK(zf_block_check_finite(&c, &w, b));

        /* A copy is equal and independent. */
        zf_block_weights cp;
        CHECK_OK(zf_block_copy(&c, &w, &cp));
        zf_lin up = ZF_LIN_UP;
        int64_t nup = zf_lin_out(&c, up) * zf_lin_in(&c, up);
        CHECK(cp.lin_w[up] != w.lin_w[up] && memcmp(cp.lin_w[up], w.lin_w[up], (size_t)nup * 4) == 0);
        CHECK(memcmp(cp.norm_w[1], w.norm_w[1], (size_t)c.hidden * 4) == 0);
        if (w.norm_b[0]) CHECK(memcmp(cp.norm_b[0], w.norm_b[0], (size_t)c.hidden * 4) == 0);
        if (w.lin_b[ZF_LIN_DOWN]) CHECK(memcmp(cp.lin_b[ZF_LIN_DOWN], w.lin_b[ZF_LIN_DOWN], (size_t)c.hidden * 4) == 0);

        /* NaN / Inf detection names the tensor and the element. */
        if (b == 2 || (b == c.n_layers - 1 && c.n_layers < 3)) {
            int64_t in = zf_lin_in(&c, up);
            cp.lin_w[up][3 * in + 17] = NAN;
            zf_status s = zf_block_check_finite(&c, &cp, b);
            zf_lin_tensor_prefix(&c, b, up, prefix, sizeof prefix);
            snprintf(name, sizeof name, "%s.weight has NaN at [3, 17]", prefix);
            CHECK_MSG(s != ZF_OK && strstr(zf_last_error(), name), "%s", zf_last_error());
            cp.lin_w[up][3 * in + 17] = 0;
            cp.norm_w[0][9] = -INFINITY;
            s = zf_block_check_finite(&c, &cp, b);
            zf_norm_tensor_prefix(&c, b, 0, prefix, sizeof prefix);
            snprintf(name, sizeof name, "%s.weight has -Inf at [9]", prefix);
            CHECK_MSG(s != ZF_OK && strstr(zf_last_error(), name), "%s", zf_last_error());
            cp.norm_w[0][9] = 1;
            if (cp.lin_b[ZF_LIN_V]) {
                cp.lin_b[ZF_LIN_V][0] = INFINITY;
                s = zf_block_check_finite(&c, &cp, b);
                CHECK_MSG(s != ZF_OK && strstr(zf_last_error(), "v_proj.bias has +Inf at [0]"), "%s", zf_last_error());
                cp.lin_b[ZF_LIN_V][0] = 0;
            }
            CHECK_OK(zf_block_check_finite(&c, &cp, b));
        }
        zf_block_free(&cp);
        zf_block_free(&w);
        CHECK(w.lin_w[ZF_LIN_Q] == NULL); /* freeing clears, so a second free is harmless */
        zf_block_free(&w);
    }

    /* Model-level tensors. */
    zf_model_globals g;
    CHECK_OK(zf_globals_load(&c, st, &g));
    CHECK(g.embed && raw_equals(st, zf_embed_tensor_name(&c), g.embed, c.vocab * c.hidden - 1));
    snprintf(name, sizeof name, "%s.weight", zf_final_norm_prefix(&c));
    CHECK(g.final_norm_w && raw_equals(st, name, g.final_norm_w, 0));
    CHECK((g.final_norm_b != NULL) == c.norm_bias);
    CHECK((g.pos != NULL) == (c.family == ZF_FAMILY_OPT));
    if (g.pos) CHECK(raw_equals(st, zf_pos_embed_tensor_name(&c), g.pos, (c.max_pos + 2) * c.hidden - 1));
    if (c.tied_embeddings) CHECK(g.head == g.embed);
    else CHECK(g.head && g.head != g.embed && raw_equals(st, "lm_head.weight", g.head, 1234));
    zf_globals_free(&g);
    CHECK(g.embed == NULL && g.head == NULL);

    /* Out-of-range block; a config that disagrees with the checkpoint names the tensor and both shapes. */
    zf_block_weights w;
    CHECK(zf_block_load(&c, st, c.n_layers, &w) == ZF_ERR_INPUT);
    zf_model_config bad = c;
    bad.intermediate += 1;
    zf_status s = zf_block_load(&bad, st, 1, &w);
    CHECK(s == ZF_ERR_INPUT && w.lin_w[ZF_LIN_Q] == NULL);
    /* The first MLP-in member (gate, or fc1 for OPT) is the first tensor whose shape changed. */
    zf_lin_tensor_prefix(&c, 1, zf_lin_present(&c, ZF_LIN_GATE) ? ZF_LIN_GATE : ZF_LIN_UP, prefix, sizeof prefix);
    char want[64];
    snprintf(want, sizeof want, "expected shape [%lld, %lld]", (long long)bad.intermediate, (long long)c.hidden);
    CHECK_MSG(strstr(zf_last_error(), prefix) && strstr(zf_last_error(), want), "%s", zf_last_error());
    bad = c;
    bad.tied_embeddings = !c.tied_embeddings;
    s = zf_globals_load(&bad, st, &g);
    if (c.tied_embeddings) CHECK(s == ZF_ERR_INPUT && strstr(zf_last_error(), "lm_head.weight"));
    else { CHECK_OK(s); CHECK(g.head == g.embed); }
    zf_globals_free(&g);

    /* Allocation gives zeros with the right layout. */
    CHECK_OK(zf_block_alloc(&c, &w));
    CHECK(w.lin_w[ZF_LIN_DOWN][zf_lin_out(&c, ZF_LIN_DOWN) * zf_lin_in(&c, ZF_LIN_DOWN) - 1] == 0.0f);
    CHECK((w.lin_w[ZF_LIN_GATE] != NULL) == zf_lin_present(&c, ZF_LIN_GATE));
    CHECK_OK(zf_block_check_finite(&c, &w, 0));
    zf_block_free(&w);
    zf_st_close(st);
}

int main(void)
{
    check_model("stories260k");
    check_model("llama-mini");
    check_model("opt-mini");
    return zt_finish("test_block");
}
