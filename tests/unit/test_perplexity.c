/* GPTQ-protocol perplexity: window counting, stories260k on TinyStories against run.c, the mini fixtures on 20 windows,
 * chunking invariance and refused inputs. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/model.h"
#include "common/safetensors.h"
#include "common/tokens.h"
#include "tests/testutil.h"
#include "worker/block.h"
#include "worker/perplexity.h"

typedef struct {
    zf_model_config c;
    zf_safetensors *st;
    zf_model_globals g;
    zf_checkpoint_source src;
} model;

static int model_open(model *m, const char *name)
{
    memset(m, 0, sizeof *m);
    CHECK_OK(zf_model_config_read(zt_fixture(name), &m->c));
    CHECK_OK(zf_st_open(zt_fixture(name), &m->st));
    if (!m->st) return 0;
    CHECK_OK(zf_globals_load(&m->c, m->st, &m->g));
    zf_checkpoint_source_init(&m->src, &m->c, m->st);
    return 1;
}

static void model_close(model *m)
{
    zf_checkpoint_source_free(&m->src);
    zf_globals_free(&m->g);
    zf_st_close(m->st);
}

static zf_nll eval(model *m, const zf_tokens *t, int64_t seq, int64_t b, int64_t e, int64_t chunk)
{
    zf_nll n;
    CHECK_OK(zf_eval_nll(NULL, &m->c, &m->g, zf_checkpoint_source_get, &m->src, t->ids, seq, b, e, chunk, &n));
    return n;
}

static void test_windows(void)
{
    CHECK(zf_eval_windows(0, 512) == 0);
    CHECK(zf_eval_windows(511, 512) == 0);
    CHECK(zf_eval_windows(512, 512) == 1);
    CHECK(zf_eval_windows(1023, 512) == 1);
    CHECK(zf_eval_windows(1024, 512) == 2);
    CHECK(zf_eval_windows(17438, 512) == 34);
    CHECK(zf_eval_windows(809247, 512) == 1580);
    CHECK(zf_eval_windows(391257, 256) == 1528);
    CHECK(zf_eval_windows(100, 0) == 0);
    CHECK(zf_eval_windows(100, -5) == 0);
    CHECK(zf_eval_windows(-100, 5) == 0);
    zf_nll none = {0};
    CHECK(isnan(zf_nll_ppl(&none)));
}

static void test_stories(void)
{
    model m;
    zf_tokens t = {0};
    if (!model_open(&m, "stories260k")) return;
    CHECK_OK(zf_tokens_read(zt_fixture("data/tinystories.tok512.bin"), m.c.vocab, &t));
    cJSON *ref = zt_read_json(zt_fixture("reference/perplexity.json"));
    cJSON *r = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "results"), "tinystories.tok512.bin");
    CHECK(r != NULL);
    if (!r) goto out;
    const int64_t seq = 512, nwin = zf_eval_windows((int64_t)t.count, seq);
    CHECK(nwin == (int64_t)cJSON_GetObjectItem(r, "windows")->valuedouble);

    double t0 = zt_now();
    zf_nll all = eval(&m, &t, seq, 0, nwin, 8);
    double ppl = zf_nll_ppl(&all), ref_ppl = cJSON_GetObjectItem(r, "ppl")->valuedouble;
    printf("stories260k tinystories seq 512: ppl %.7f (run.c %.6f, rel diff %.2g), %lld windows, %lld predictions, "
           "%.2f s\n", ppl, ref_ppl, fabs(ppl - ref_ppl) / ref_ppl, (long long)all.windows, (long long)all.predictions,
           zt_now() - t0);
    CHECK_CLOSE(ppl, ref_ppl, 0, 1e-5);
    CHECK(all.windows == 34);
    CHECK(all.predictions == (int64_t)cJSON_GetObjectItem(r, "predictions")->valuedouble);
    CHECK(all.predictions == 17374);

    /* The first 8 windows one at a time against run.c's per-window mean NLL. */
    cJSON *first8 = cJSON_GetObjectItem(r, "per_window_mean_nll_first8");
    double worst = 0;
    for (int w = 0; w < 8; w++) {
        zf_nll one = eval(&m, &t, seq, w, w + 1, 1);
        CHECK(one.windows == 1 && one.predictions == seq - 1);
        double d = fabs(one.nll_sum / (double)one.predictions - cJSON_GetArrayItem(first8, w)->valuedouble);
        worst = fmax(worst, d);
    }
    printf("stories260k first 8 windows: max |mean NLL - run.c| %.2g\n", worst);
    CHECK(worst < 2e-6);

    /* Chunking and splitting the range change nothing but rounding. */
    zf_nll a = eval(&m, &t, seq, 0, 17, 5), b = eval(&m, &t, seq, 17, nwin, 34), c1 = eval(&m, &t, seq, 0, nwin, 1);
    CHECK(a.windows + b.windows == nwin && a.predictions + b.predictions == all.predictions);
    CHECK_CLOSE(a.nll_sum + b.nll_sum, all.nll_sum, 0, 1e-6);
    CHECK_CLOSE(c1.nll_sum, all.nll_sum, 0, 1e-6);

    /* Refusals. */
    zf_nll n;
    CHECK(zf_eval_nll(NULL, &m.c, &m.g, zf_checkpoint_source_get, &m.src, t.ids, 1, 0, 1, 1, &n) == ZF_ERR_INPUT);
    CHECK(zf_eval_nll(NULL, &m.c, &m.g, zf_checkpoint_source_get, &m.src, t.ids, seq, 0, 1, 0, &n) == ZF_ERR_INPUT);
    CHECK(zf_eval_nll(NULL, &m.c, &m.g, zf_checkpoint_source_get, &m.src, t.ids, seq, 3, 2, 1, &n) == ZF_ERR_INPUT);
    CHECK(zf_eval_nll(NULL, &m.c, &m.g, zf_checkpoint_source_get, &m.src, t.ids, seq, -1, 2, 1, &n) == ZF_ERR_INPUT);
    CHECK_OK(zf_eval_nll(NULL, &m.c, &m.g, zf_checkpoint_source_get, &m.src, t.ids, seq, 4, 4, 1, &n));
    CHECK(n.windows == 0 && n.predictions == 0 && n.nll_sum == 0);
    int32_t bad[8] = {1, 2, 3, 4, 5, 6, 7, 512};
    CHECK(zf_eval_nll(NULL, &m.c, &m.g, zf_checkpoint_source_get, &m.src, bad, 4, 0, 2, 2, &n) == ZF_ERR_INPUT);
    printf("out-of-vocabulary token: %s\n", zf_last_error());
out:
    cJSON_Delete(ref);
    zf_tokens_free(&t);
    model_close(&m);
}

static zf_status failing_source(void *ctx, int64_t b, const zf_block_weights **out)
{
    (void)ctx;
    *out = NULL;
    return zf_fail(ZF_ERR_IO, "simulated read failure");
}

/* A source's error reaches the caller with the block named. */
static void test_source_error(void)
{
    model m;
    if (!model_open(&m, "stories260k")) return;
    int32_t toks[16] = {1, 410, 20, 30, 40, 50, 60, 70, 1, 410, 20, 30, 40, 50, 60, 70};
    zf_nll n;
    CHECK(zf_eval_nll(NULL, &m.c, &m.g, failing_source, NULL, toks, 8, 0, 2, 2, &n) == ZF_ERR_IO);
    CHECK(strstr(zf_last_error(), "block 0") && strstr(zf_last_error(), "simulated"));
    model_close(&m);
}

/* llama-mini (untied head) and opt-mini on the first 20 windows of heldout-book at 256, against their references. */
static void test_mini(const char *name)
{
    model m;
    zf_tokens t = {0};
    if (!model_open(&m, name)) return;
    CHECK_OK(zf_tokens_read(zt_fixture("data/heldout-book.tok512.bin"), m.c.vocab, &t));
    char path[64];
    snprintf(path, sizeof path, "%s/reference.json", name);
    cJSON *ref = zt_read_json(zt_fixture(path));
    cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "verification"), "heldout_first20windows_ppl_numpy");
    CHECK(v != NULL);
    double t0 = zt_now();
    zf_nll n = eval(&m, &t, 256, 0, 20, 8);
    double ppl = zf_nll_ppl(&n);
    if (v) {
        printf("%s heldout-book first 20 windows of 256: ppl %.7f (numpy %.7f, rel diff %.2g), %.2f s\n", name, ppl,
               v->valuedouble, fabs(ppl - v->valuedouble) / v->valuedouble, zt_now() - t0);
        CHECK_CLOSE(ppl, v->valuedouble, 0, 1e-5);
    }
    CHECK(n.windows == 20 && n.predictions == 20 * 255);
    cJSON_Delete(ref);
    zf_tokens_free(&t);
    model_close(&m);
}

/* Evaluation chunk bytes against the allocations counted by hand, and the automatic chunk against a budget. */
static void test_auto_chunk(void)
{
    zf_model_config c = {0};
    c.family = ZF_FAMILY_LLAMA;
    c.hidden = 8192, c.n_heads = 64, c.n_kv_heads = 8, c.head_dim = 128, c.intermediate = 28672, c.vocab = 32000;
    int64_t seq = 2048;
    double ntok = 3.0 * (double)seq;
    /* blocks: x, norm output, gate/up (2·28672 > q, k, v, mix); head: x, final norm output, logits, NLL */
    double blocks = ntok * (2 * 8192.0 + 2 * 28672.0) * 4, head = ntok * (2 * 8192.0 + 32000) * 4 + ntok * 8;
    CHECK_CLOSE(zf_eval_chunk_bytes(&c, seq, 3), fmax(blocks, head), 0, 1e-12);
    const double gib = 1073741824.0, budgets[] = {0.1, 1, 2, 4, 1000};
    for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
        int64_t k = zf_eval_auto_chunk(&c, seq, budgets[i] * gib);
        CHECK(k >= 1 && k <= ZF_EVAL_CHUNK_MAX);
        CHECK_MSG(k == 1 || zf_eval_chunk_bytes(&c, seq, k) <= budgets[i] * gib, "%lld windows over %g GiB",
                  (long long)k, budgets[i]);
        CHECK_MSG(k == ZF_EVAL_CHUNK_MAX || zf_eval_chunk_bytes(&c, seq, k + 1) > budgets[i] * gib,
                  "%lld windows: one more would fit %g GiB", (long long)k, budgets[i]);
    }
    CHECK(zf_eval_auto_chunk(&c, seq, 2 * gib) == 3); /* 3 x 2048 tokens of 70B shapes: 1.69 GiB */
}

int main(void)
{
    test_auto_chunk();
    test_windows();
    test_stories();
    test_source_error();
    test_mini("llama-mini");
    test_mini("opt-mini");
    return zt_finish("test_perplexity");
}
