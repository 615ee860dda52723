/* FP32 perplexity of every fixture on its full evaluation sets against the references (slow: minutes). */
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/model.h"
#include "common/safetensors.h"
#include "common/tokens.h"
#include "tests/testutil.h"
#include "worker/block.h"
#include "worker/perplexity.h"

/* "To 4 significant digits" (and in practice far better: the references agree with run.c/torch to ~1e-7). */
#define PPL_RTOL 1e-4

static double num(cJSON *o, const char *key)
{
    cJSON *v = cJSON_GetObjectItem(o, key);
    CHECK_MSG(cJSON_IsNumber(v), "reference field %s missing", key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Evaluates one model on one token file and checks ppl, windows and predictions against the reference entry r. */
static void check_one(const char *model_dir, const char *token_file, int64_t seq, cJSON *r)
{
    zf_model_config c;
    zf_safetensors *st = NULL;
    zf_model_globals g = {0};
    zf_tokens t = {0};
    CHECK_OK(zf_model_config_read(zt_fixture(model_dir), &c));
    CHECK_OK(zf_st_open(zt_fixture(model_dir), &st));
    if (!st) return;
    CHECK_OK(zf_globals_load(&c, st, &g));
    CHECK_OK(zf_tokens_read(zt_fixture(token_file), c.vocab, &t));
    zf_checkpoint_source src;
    zf_checkpoint_source_init(&src, &c, st);
    int64_t nwin = zf_eval_windows((int64_t)t.count, seq);
    zf_nll n = {0};
    double t0 = zt_now();
    CHECK_OK(zf_eval_nll(NULL, &c, &g, zf_checkpoint_source_get, &src, t.ids, seq, 0, nwin, 16, &n));
    double dt = zt_now() - t0, ppl = zf_nll_ppl(&n), ref = num(r, "ppl");
    printf("%-12s %-30s seq %3lld: %5lld windows %7lld predictions  ppl %11.6f  ref %11.6f  rel diff %.2e  %7.1f s "
           "(%.0f tok/s)\n", model_dir, token_file, (long long)seq, (long long)n.windows, (long long)n.predictions, ppl,
           ref, fabs(ppl - ref) / ref, dt, (double)(nwin * seq) / dt);
    fflush(stdout);
    CHECK_CLOSE(ppl, ref, 0, PPL_RTOL);
    CHECK(n.windows == (int64_t)num(r, "windows"));
    CHECK(n.predictions == (int64_t)num(r, "predictions"));
    zf_checkpoint_source_free(&src);
    zf_tokens_free(&t);
    zf_globals_free(&g);
    zf_st_close(st);
}

int main(void)
{
    double t0 = zt_now();
    printf("# OpenMP threads %d\n", omp_get_max_threads());
    static const char *stories_files[] = {"wikitext2-test.tok512.bin", "wikitext2-valid.tok512.bin",
                                          "ptb-test.tok512.bin", "ptb-valid.tok512.bin", "tinystories.tok512.bin"};
    cJSON *sref = zt_read_json(zt_fixture("reference/perplexity.json"));
    CHECK(sref != NULL);
    cJSON *results = cJSON_GetObjectItem(sref, "results");
    for (int i = 0; i < 5; i++) {
        char path[128];
        snprintf(path, sizeof path, "data/%s", stories_files[i]);
        cJSON *r = cJSON_GetObjectItem(results, stories_files[i]);
        CHECK_MSG(r != NULL, "no reference for %s", stories_files[i]);
        if (r) check_one("stories260k", path, 512, r);
    }
    cJSON_Delete(sref);

    /* The mini fixtures' reference.json keys and the token files they were computed on. */
    static const char *keys[] = {"heldout_book", "wikitext2_test", "ptb_test"};
    static const char *files[] = {"data/heldout-book.tok512.bin", "data/wikitext2-test.tok512.bin",
                                  "data/ptb-test.tok512.bin"};
    static const char *minis[] = {"llama-mini", "opt-mini"};
    for (int m = 0; m < 2; m++) {
        char path[64];
        snprintf(path, sizeof path, "%s/reference.json", minis[m]);
        cJSON *ref = zt_read_json(zt_fixture(path));
        CHECK(ref != NULL);
        cJSON *ppl = cJSON_GetObjectItem(ref, "perplexity");
        for (int k = 0; k < 3; k++) {
            cJSON *r = cJSON_GetObjectItem(ppl, keys[k]);
            CHECK_MSG(r != NULL, "no reference %s in %s", keys[k], path);
            if (r) check_one(minis[m], files[k], 256, r);
        }
        cJSON_Delete(ref);
    }
    printf("# total %.1f s\n", zt_now() - t0);
    return zt_finish("test_ppl_fixtures");
}
