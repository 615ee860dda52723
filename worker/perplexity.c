/* GPTQ-protocol perplexity: chunks of windows through embed → blocks → logits, NLL in double; a checkpoint block source. */
#include "worker/perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "worker/forward.h"

int64_t zf_eval_windows(int64_t ntokens, int64_t seq)
{
    if (seq <= 0 || ntokens <= 0) return 0;
    return ntokens / seq;
}

double zf_eval_chunk_bytes(const zf_model_config *c, int64_t seq, int64_t chunk)
{
    double ntok = (double)(chunk * seq), d = (double)c->hidden;
    double big = (double)zf_forward_big_floats(c);
    double blocks = ntok * (2 * d + big) * 4;                         /* x, the norm output, q/k/v/mix or gate/up */
    double head = ntok * (2 * d + (double)c->vocab) * 4 + ntok * 8;   /* x, final norm output, logits, NLL */
    return blocks > head ? blocks : head;
}

int64_t zf_eval_auto_chunk(const zf_model_config *c, int64_t seq, double budget_bytes)
{
    int64_t chunk = 1;
    while (chunk < ZF_EVAL_CHUNK_MAX && zf_eval_chunk_bytes(c, seq, chunk + 1) <= budget_bytes) chunk++;
    return chunk;
}

double zf_nll_ppl(const zf_nll *n)
{
    if (n->predictions <= 0) return NAN;
    return exp(n->nll_sum / (double)n->predictions);
}

zf_status zf_eval_nll(zf_backend *be, const zf_model_config *c, const zf_model_globals *g, zf_block_source_fn source, void *source_ctx,
                      const int32_t *tokens, int64_t seq, int64_t win_begin, int64_t win_end, int64_t chunk_windows,
                      zf_nll *out)
{
    memset(out, 0, sizeof *out);
    if (seq < 2) return zf_fail(ZF_ERR_INPUT, "perplexity windows need at least 2 tokens, not %lld", (long long)seq);
    if (win_begin < 0 || win_end < win_begin)
        return zf_fail(ZF_ERR_INPUT, "bad window range [%lld, %lld)", (long long)win_begin, (long long)win_end);
    if (chunk_windows < 1)
        return zf_fail(ZF_ERR_INPUT, "chunk of %lld windows: must be at least 1", (long long)chunk_windows);
    int64_t chunk = win_end - win_begin < chunk_windows ? win_end - win_begin : chunk_windows;
    if (chunk == 0) return ZF_OK;

    /* host kernels forward a chunk's windows together; a backend with its own memory takes them one at a time */
    bool on_backend = be && !(zf_backend_caps(be) & ZF_CAP_HOST_MEMORY);
    int64_t d = c->hidden, npred = seq - 1;
    float *x = zf_malloc(sizeof(float) * (size_t)(chunk * seq * d), "perplexity activations");
    double *nll = zf_malloc(sizeof(double) * (size_t)(chunk * npred), "per-token NLL");
    zf_status st = ZF_ERR_NOMEM;
    if (!x || !nll) goto done;

    for (int64_t w0 = win_begin; w0 < win_end; w0 += chunk) {
        int64_t nw = win_end - w0 < chunk ? win_end - w0 : chunk;
        const int32_t *tw = tokens + w0 * seq;
        if ((st = zf_embed(c, g, tw, nw, seq, x)) != ZF_OK) goto done;
        for (int64_t b = 0; b < c->n_layers; b++) {
            const zf_block_weights *bw = NULL;
            if ((st = source(source_ctx, b, &bw)) != ZF_OK) {
                st = zf_fail_context(st, "weights of block %lld", (long long)b);
                goto done;
            }
            st = on_backend ? zf_backend_block_forward(be, c, bw, x, nw, seq, NULL)
                        : zf_block_forward(c, bw, x, nw, seq, NULL, NULL);
            if (st != ZF_OK) goto done;
        }
        st = on_backend ? zf_backend_token_nll(be, c, g, x, tw, nw, seq, nll) : zf_token_nll(c, g, x, tw, nw, seq, nll);
        if (st != ZF_OK) goto done;
        /* Summed in order so the result does not depend on the thread count. */
        for (int64_t r = 0; r < nw * npred; r++) out->nll_sum += nll[r];
        out->predictions += nw * npred;
        out->windows += nw;
    }
    st = ZF_OK;
done:
    free(x);
    free(nll);
    return st;
}

void zf_checkpoint_source_init(zf_checkpoint_source *s, const zf_model_config *c, const zf_safetensors *st)
{
    memset(s, 0, sizeof *s);
    s->cfg = c;
    s->st = st;
    s->cur_block = -1;
}

zf_status zf_checkpoint_source_get(void *ctx, int64_t b, const zf_block_weights **out)
{
    zf_checkpoint_source *s = ctx;
    ZF_ASSERT(b >= 0 && b < s->cfg->n_layers);
    if (b != s->cur_block) {
        /* Only one block is resident: the previous one is dropped before the next is read. */
        zf_block_free(&s->cur);
        s->cur_block = -1;
        ZF_TRY(zf_block_load(s->cfg, s->st, b, &s->cur));
        s->cur_block = b;
    }
    *out = &s->cur;
    return ZF_OK;
}

void zf_checkpoint_source_free(zf_checkpoint_source *s)
{
    zf_block_free(&s->cur);
    s->cur_block = -1;
}
