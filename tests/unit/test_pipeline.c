/* The pipeline on stories260K: deterministic windows, folding exactness at model level, method ordering, and shards
 * that rebuild the deployed blocks bit for bit. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/tokens.h"
#include "coordinator/config.h"
#include "coordinator/pipeline.h"
#include "coordinator/shardmap.h"
#include "worker/perplexity.h"
#include "tests/testutil.h"

static zf_job_config base_config(void)
{
    zf_job_config c;
    zf_config_defaults(&c);
    snprintf(c.model, sizeof c.model, "%s", zt_fixture("stories260k"));
    snprintf(c.output, sizeof c.output, "%s/run", zt_tmpdir());
    snprintf(c.calib_file, sizeof c.calib_file, "%s", zt_fixture("data/wikitext2-valid.tok512.bin"));
    c.calib_windows = 32;
    c.calib_seq_len = 256;
    return c;
}

/* Quantizes and returns the ppl on the first windows of tinystories (folded and unfolded). */
static double run(zf_job_config *cfg, const zf_tokens *eval, double *ppl_unfolded, double *ppl_fp)
{
    zf_qmodel m;
    zf_nll nll;
    double ppl = NAN;
    CHECK_OK(zf_qmodel_open(cfg, &m));
    zf_status s = zf_qmodel_quantize(cfg, &m, NULL);
    CHECK_OK(s);
    int64_t nw = zf_eval_windows((int64_t)eval->count, 512);
    const zf_model_globals *g = NULL;
    if (s == ZF_OK) CHECK_OK(zf_qmodel_globals(&m, &g));
    if (g) {
        CHECK_OK(zf_eval_nll(NULL, &m.model, g, zf_qmodel_folded_source, &m, eval->ids, 512, 0, nw, 8, &nll));
        ppl = zf_nll_ppl(&nll);
        if (ppl_unfolded) {
            CHECK_OK(zf_eval_nll(NULL, &m.model, g, zf_qmodel_unfolded_source, &m, eval->ids, 512, 0, nw, 8, &nll));
            *ppl_unfolded = zf_nll_ppl(&nll);
        }
        if (ppl_fp) {
            zf_checkpoint_source src;
            zf_checkpoint_source_init(&src, &m.model, m.st);
            CHECK_OK(zf_eval_nll(NULL, &m.model, g, zf_checkpoint_source_get, &src, eval->ids, 512, 0, nw, 8, &nll));
            zf_checkpoint_source_free(&src);
            *ppl_fp = zf_nll_ppl(&nll);
        }
    }
    zf_qmodel_free(&m);
    return ppl;
}

static int same_floats(const float *a, const float *b, int64_t n)
{
    if (!a || !b) return a == b;
    return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

/* Every block written to a shard and read back gives the deployed weights the run installed (what resuming relies on). */
static void check_shard_roundtrip(zf_job_config *cfg)
{
    zf_qmodel m;
    CHECK_OK(zf_qmodel_open(cfg, &m));
    CHECK_OK(zf_qmodel_quantize(cfg, &m, NULL));
    const zf_model_config *c = &m.model;
    for (int64_t b = 0; b < c->n_layers; b++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/block-%lld.h5", zt_tmpdir(), (long long)b);
        CHECK_OK(zf_shardmap_write_block(c, b, &m.blocks[b], cfg->quant.group_size, path, "test"));
        zf_shard_data d;
        memset(&d, 0, sizeof d);
        zf_qblock back = {0};
        CHECK_OK(zf_shard_read(path, &d));
        CHECK_OK(zf_qblock_from_shard(c, b, path, &d, &back));
        const zf_block_weights *x = &m.blocks[b].folded, *y = &back.folded;
        for (int l = 0; l < ZF_NLIN; l++) {
            if (!zf_lin_present(c, (zf_lin)l)) continue;
            int64_t out = zf_lin_out(c, (zf_lin)l), in = zf_lin_in(c, (zf_lin)l);
            CHECK(same_floats(x->lin_w[l], y->lin_w[l], out * in));
            CHECK(same_floats(x->lin_b[l], y->lin_b[l], out));
            CHECK(memcmp(m.blocks[b].lin[l].q, back.lin[l].q, (size_t)(out * in)) == 0);
            /* ΔL after from the column loop; the RTN baseline not measured by default (NaN), kept as it was */
            CHECK(isfinite(m.blocks[b].dl[l]) && back.dl[l] == m.blocks[b].dl[l]);
            CHECK(!memcmp(&back.dl_rtn[l], &m.blocks[b].dl_rtn[l], sizeof(double)));
        }
        for (int k = 0; k < 2; k++) {
            CHECK(same_floats(x->norm_w[k], y->norm_w[k], c->hidden));
            CHECK(same_floats(x->norm_b[k], y->norm_b[k], c->hidden));
        }
        zf_qblock_release(&back);
        zf_shard_data_free(&d);
    }
    zf_qmodel_free(&m);
}

int main(void)
{
    int64_t a[16], b[16];
    CHECK_OK(zf_calibration_windows(100000, 512, 16, 0, a));
    CHECK_OK(zf_calibration_windows(100000, 512, 16, 0, b));
    CHECK(memcmp(a, b, sizeof a) == 0);
    int distinct = 0;
    for (int i = 0; i < 16; i++) distinct += a[i] >= 0 && a[i] <= 100000 - 512 && (i == 0 || a[i] != a[i - 1]);
    CHECK(distinct == 16);
    CHECK_OK(zf_calibration_windows(100000, 512, 16, 1, b));
    CHECK(memcmp(a, b, sizeof a) != 0);
    CHECK(zf_calibration_windows(100, 512, 1, 0, a) == ZF_ERR_INPUT);

    zf_tokens eval = {0};
    CHECK_OK(zf_tokens_read(zt_fixture("data/tinystories.tok512.bin"), 512, &eval));

    /* Z-FOLD at 3 bits: the folded model computes what the unfolded fake-quantized model computes */
    zf_job_config cfg = base_config();
    cfg.eval_unfolded = true;
    double unfolded = NAN, fp = NAN;
    double zfold3 = run(&cfg, &eval, &unfolded, &fp);
    printf("stories260k tinystories: fp %.5f  zfold w3 folded %.6f unfolded %.6f\n", fp, zfold3, unfolded);
    CHECK_CLOSE(zfold3, unfolded, 0.0, 1e-4);
    CHECK(zfold3 > fp);

    cfg = base_config();
    cfg.quant.method = ZF_METHOD_OPTQ;
    double optq3 = run(&cfg, &eval, NULL, NULL);
    cfg.quant.method = ZF_METHOD_RTN;
    double rtn3 = run(&cfg, &eval, NULL, NULL);
    printf("stories260k tinystories w3: rtn %.4f  optq %.4f  zfold %.4f\n", rtn3, optq3, zfold3);
    CHECK(zfold3 <= optq3);
    CHECK(optq3 <= rtn3);

    /* activations kept in bf16 between blocks: other Hessians (the option takes effect), and a model no further
     * from the fp32 one than twice what another draw of calibration windows gives (3-bit OPTQ on this small model
     * moves by a few per cent with the calibration) */
    cfg = base_config();
    cfg.quant.method = ZF_METHOD_OPTQ;
    cfg.calib_bf16 = true;
    double optq3_b16 = run(&cfg, &eval, NULL, NULL);
    cfg.calib_bf16 = false;
    cfg.seed = 1;
    double optq3_seed1 = run(&cfg, &eval, NULL, NULL);
    printf("stories260k tinystories optq w3: activations fp32 %.5f, bf16 %.5f; fp32 with seed 1 %.5f\n", optq3,
           optq3_b16, optq3_seed1);
    CHECK(optq3_b16 != optq3);
    CHECK(fabs(optq3_b16 - optq3) <= fmax(2 * fabs(optq3_seed1 - optq3), 0.01 * optq3));

    cfg = base_config();
    cfg.calib_windows = 8;
    check_shard_roundtrip(&cfg);
    zf_tokens_free(&eval);
    return zt_finish("test_pipeline");
}
