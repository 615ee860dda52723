/* Calibration activations in fp32 and bf16: the store against direct forwards, bf16 rounding against a reference in
 * double, capture passes that leave the store as it was, and chunked forwards equal to whole ones. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/model.h"
#include "common/safetensors.h"
#include "common/tokens.h"
#include "coordinator/acts.h"
#include "tests/testutil.h"
#include "worker/block.h"
#include "worker/forward.h"

/* The bf16 value nearest to v (ties to an even mantissa), chosen in double between the two bf16 neighbours. */
static float bf16_ref(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    uint32_t lo_bits = u & 0xffff0000u, hi_bits = lo_bits + 0x10000u;
    float lo, hi;
    memcpy(&lo, &lo_bits, 4);
    memcpy(&hi, &hi_bits, 4);
    double dl = fabs((double)v - (double)lo), dh = fabs((double)hi - (double)v);
    if (dl < dh) return lo;
    if (dh < dl) return hi;
    return (lo_bits >> 16) & 1 ? hi : lo;
}

/* Every stored value is the bf16 rounding of ref. */
static int64_t bf16_mismatches(const zf_acts *a, const float *ref, int64_t n)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float got;
        zf_convert_to_f32(ZF_DT_BF16, &a->xb[i], &got, 1);
        float want = bf16_ref(ref[i]);
        bad += memcmp(&got, &want, 4) != 0;
    }
    return bad;
}

static void test_store(const char *model, const char *tokens)
{
    const int64_t nwin = 3, seq = 48;
    zf_model_config c;
    zf_safetensors *st = NULL;
    zf_model_globals g = {0};
    zf_tokens tok = {0};
    zf_backend *be = NULL;
    zf_backend_opts bo = {.kind = ZF_BACKEND_CPU, .device = -1};
    CHECK_OK(zf_model_config_read(zt_fixture(model), &c));
    CHECK_OK(zf_st_open(zt_fixture(model), &st));
    CHECK_OK(zf_tokens_read(zt_fixture(tokens), c.vocab, &tok));
    CHECK_OK(zf_backend_open(&bo, &be));
    if (!st || !be || tok.count < (size_t)(nwin * seq)) return;
    CHECK_OK(zf_globals_load(&c, st, &g));
    zf_block_weights w = {0};
    CHECK_OK(zf_block_load(&c, st, 0, &w));
    const int64_t n = nwin * seq * c.hidden, dq = zf_group_in(&c, ZF_GROUP_QKV);

    /* reference: embed, then one direct forward with the q/k/v inputs captured */
    float *ref = malloc(sizeof(float) * n), *emb = malloc(sizeof(float) * n), *Hr = malloc(sizeof(float) * dq * dq);
    float *Ha = malloc(sizeof(float) * dq * dq);
    CHECK_OK(zf_embed(&c, &g, tok.ids, nwin, seq, emb));

    /* fp32: the embedding as is; a capture pass leaves it; keep moves it through the block, bit for bit */
    zf_acts a;
    CHECK_OK(zf_acts_init(&a, nwin, seq, c.hidden, false));
    CHECK_OK(zf_acts_embed(&a, &c, &g, tok.ids));
    CHECK(memcmp(a.x, emb, sizeof(float) * n) == 0);
    zf_bhess hr = {0}, ha = {0};
    CHECK_OK(zf_bhess_init(be, &hr, dq, true));
    CHECK_OK(zf_bhess_init(be, &ha, dq, true));
    memcpy(ref, emb, sizeof(float) * n);
    zf_bhess *caps[ZF_NGROUP] = {&hr};
    CHECK_OK(zf_backend_block_forward(be, &c, &w, ref, nwin, seq, caps));
    CHECK_OK(zf_acts_forward(&a, be, &c, 0, &w, &ha, 1u << ZF_GROUP_QKV, false));
    CHECK(memcmp(a.x, emb, sizeof(float) * n) == 0);
    CHECK_OK(zf_bhess_finalize(&hr, Hr));
    CHECK_OK(zf_bhess_finalize(&ha, Ha));
    CHECK(memcmp(Hr, Ha, sizeof(float) * dq * dq) == 0);
    CHECK_OK(zf_acts_forward(&a, be, &c, 0, &w, NULL, 0, true));
    CHECK(memcmp(a.x, ref, sizeof(float) * n) == 0);
    zf_acts_free(&a);
    zf_bhess_free(&hr);
    zf_bhess_free(&ha);

    /* bf16, one window per chunk: the embedding rounded; the capture sees the rounded inputs and leaves the store;
     * keep stores the rounded output of the forward of the rounded inputs */
    CHECK_OK(zf_acts_init(&a, nwin, seq, c.hidden, true));
    CHECK(a.chunk == nwin); /* a few small windows fit one chunk */
    a.chunk = 1;
    CHECK_OK(zf_acts_embed(&a, &c, &g, tok.ids));
    CHECK_MSG(bf16_mismatches(&a, emb, n) == 0, "%s: embedding not rounded to nearest bf16", model);
    uint16_t *before = malloc(sizeof(uint16_t) * n);
    memcpy(before, a.xb, sizeof(uint16_t) * n);
    zf_convert_to_f32(ZF_DT_BF16, a.xb, ref, (size_t)n);
    CHECK_OK(zf_bhess_init(be, &hr, dq, true));
    CHECK_OK(zf_bhess_init(be, &ha, dq, true));
    CHECK_OK(zf_backend_block_forward(be, &c, &w, ref, nwin, seq, caps));
    CHECK_OK(zf_acts_forward(&a, be, &c, 0, &w, &ha, 1u << ZF_GROUP_QKV, false));
    CHECK(memcmp(a.xb, before, sizeof(uint16_t) * n) == 0);
    CHECK_OK(zf_bhess_finalize(&hr, Hr));
    CHECK_OK(zf_bhess_finalize(&ha, Ha));
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < dq * dq; i++) {
        worst = fmax(worst, fabs((double)Hr[i] - (double)Ha[i]));
        scale = fmax(scale, fabs((double)Hr[i]));
    }
    CHECK_MSG(worst <= 1e-6 * scale, "%s: chunked capture H differs by %g (max |H| %g)", model, worst, scale);
    CHECK_OK(zf_acts_forward(&a, be, &c, 0, &w, NULL, 0, true));
    CHECK_MSG(bf16_mismatches(&a, ref, n) == 0, "%s: forward output not the bf16 rounding of the fp32 forward", model);
    zf_acts_free(&a);
    zf_bhess_free(&hr);
    zf_bhess_free(&ha);

    free(ref), free(emb), free(Hr), free(Ha), free(before);
    zf_block_free(&w);
    zf_globals_free(&g);
    zf_tokens_free(&tok);
    zf_backend_close(be);
    zf_st_close(st);
}

/* The chunk: as many windows as fit 256 MiB of fp32, at least one, at most all; the byte count the plan uses. */
static void test_sizes(void)
{
    CHECK(zf_acts_chunk_windows(128, 2048, 8192) == 4);
    CHECK(zf_acts_chunk_windows(2, 2048, 8192) == 2);
    CHECK(zf_acts_chunk_windows(128, 4096, 32768) == 1);
    CHECK(zf_acts_chunk_windows(0, 2048, 8192) == 0);
    CHECK_CLOSE(zf_acts_bytes(128, 2048, 8192, false), 2.0 * 128 * 2048 * 8192 * 4, 0, 0);
    CHECK_CLOSE(zf_acts_bytes(128, 2048, 8192, true), 128.0 * 2048 * 8192 * 2 + 4.0 * 2048 * 8192 * 4, 0, 0);
}

int main(void)
{
    test_sizes();
    test_store("stories260k", "data/tinystories.tok512.bin");
    test_store("opt-mini", "data/heldout-book.tok512.bin");
    return zt_finish("test_acts");
}
