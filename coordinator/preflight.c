/* Checks made before the first block is computed: the token files (calibration and evaluation) and, for a dry
 * run, every tensor of the checkpoint; their content hashes for the run directory. */
#include "coordinator/preflight.h"

#include <stdio.h>

#include "common/log.h"
#include "common/tokens.h"
#include "worker/block.h"

/* One token file: readable, every id in the vocabulary, at least one window of seq tokens. */
static zf_status check_token_file(const char *key, const char *path, const zf_model_config *c, int64_t seq,
                                  uint64_t *hash, int64_t *count)
{
    zf_tokens t = {0};
    zf_status s = zf_tokens_read(path, c->vocab, &t);
    if (s == ZF_OK && (int64_t)t.count < seq)
        s = zf_fail(ZF_ERR_INPUT, "%s: %zu tokens, fewer than one window of %lld", path, t.count, (long long)seq);
    if (s == ZF_OK) {
        *hash = t.xxh64;
        *count = (int64_t)t.count;
    }
    zf_tokens_free(&t);
    if (s != ZF_OK) zf_fail_context(s, "%s", key);
    return s;
}

zf_status zf_preflight(const zf_job_config *cfg, const zf_qmodel *m, bool eval_only, bool every_tensor,
                       zf_preflight_result *out)
{
    const zf_model_config *c = &m->model;
    out->calib_xxh64 = 0;
    int64_t eval_seq = cfg->eval_seq_len > 0 ? cfg->eval_seq_len : m->calib_seq;
    if (eval_seq > c->max_pos)
        return zf_fail(ZF_ERR_INPUT, "config: eval.seq_len %lld exceeds the model's max_position_embeddings %lld",
                       (long long)eval_seq, (long long)c->max_pos);
    if (eval_seq < 2)
        return zf_fail(ZF_ERR_INPUT, "config: eval.seq_len %lld: a perplexity window needs at least 2 tokens",
                       (long long)eval_seq);
    int64_t n = 0;
    if (!eval_only) {
        ZF_TRY(check_token_file("calibration.file", cfg->calib_file, c, m->calib_seq, &out->calib_xxh64, &n));
        /* windows start anywhere in [0, n - seq]: with fewer than two windows of tokens they overlap mostly */
        if (n < 2 * m->calib_seq)
            zf_log_warn("calibration.file %s: %lld tokens, fewer than two windows of %lld: the %lld calibration "
                        "windows overlap almost entirely (%lld distinct starts)", cfg->calib_file, (long long)n,
                        (long long)m->calib_seq, (long long)cfg->calib_windows, (long long)(n - m->calib_seq + 1));
    }
    for (int i = 0; i < cfg->n_eval_files; i++) {
        char key[32];
        uint64_t h;
        snprintf(key, sizeof key, "eval.files[%d]", i);
        ZF_TRY(check_token_file(key, cfg->eval_files[i], c, eval_seq, &h, &n));
    }
    /* the blocks are read as they are quantized; a dry run reads them all now (shape, dtype, finite values) */
    for (int64_t b = 0; every_tensor && b < c->n_layers; b++) {
        zf_block_weights w;
        ZF_TRY(zf_block_load(c, m->st, b, &w));
        zf_block_free(&w);
    }
    return ZF_OK;
}
