/* A rank's calibration activations between blocks, kept in fp32 or bf16, and the block forwards over them. */
#include "coordinator/acts.h"

#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "worker/forward.h"

int64_t zf_acts_chunk_windows(int64_t nwin, int64_t seq, int64_t d)
{
    double one = (double)seq * (double)d * sizeof(float);
    int64_t n = one > 0 ? (int64_t)(ZF_ACTS_CHUNK_BYTES / one) : nwin;
    if (n < 1) n = 1;
    return n < nwin ? n : nwin;
}

double zf_acts_bytes(int64_t nwin, int64_t seq, int64_t d, bool bf16)
{
    double values = (double)nwin * (double)seq * (double)d;
    if (!bf16) return 2 * values * sizeof(float);
    return values * sizeof(uint16_t) + (double)zf_acts_chunk_windows(nwin, seq, d) * (double)seq * (double)d * sizeof(float);
}

zf_status zf_acts_init(zf_acts *a, int64_t nwin, int64_t seq, int64_t d, bool bf16)
{
    *a = (zf_acts){.nwin = nwin, .seq = seq, .d = d, .bf16 = bf16};
    size_t n = (size_t)(nwin * seq * d) + 1;
    if (bf16) {
        a->chunk = zf_acts_chunk_windows(nwin, seq, d);
        a->xb = zf_malloc(sizeof(uint16_t) * n, "calibration activations (bf16)");
        a->work = zf_malloc(sizeof(float) * ((size_t)(a->chunk * seq * d) + 1), "calibration activations (fp32 chunk)");
    } else {
        a->chunk = nwin;
        a->x = zf_malloc(sizeof(float) * n, "calibration activations");
        a->work = zf_malloc(sizeof(float) * n, "calibration activations (copy)");
    }
    if ((bf16 ? !a->xb : !a->x) || !a->work) {
        zf_acts_free(a);
        return ZF_ERR_NOMEM;
    }
    return ZF_OK;
}

void zf_acts_free(zf_acts *a)
{
    free(a->x);
    free(a->xb);
    free(a->work);
    memset(a, 0, sizeof *a);
}

zf_status zf_acts_embed(zf_acts *a, const zf_model_config *c, const zf_model_globals *g, const int32_t *ids)
{
    if (!a->bf16) return a->nwin > 0 ? zf_embed(c, g, ids, a->nwin, a->seq, a->x) : ZF_OK;
    const int64_t per = a->seq * a->d;
    for (int64_t w0 = 0; w0 < a->nwin; w0 += a->chunk) {
        int64_t n = a->nwin - w0 < a->chunk ? a->nwin - w0 : a->chunk;
        ZF_TRY(zf_embed(c, g, ids + w0 * a->seq, n, a->seq, a->work));
        zf_convert_f32_to_bf16(a->work, a->xb + w0 * per, (size_t)(n * per));
    }
    return ZF_OK;
}

zf_status zf_acts_forward(zf_acts *a, zf_backend *be, const zf_model_config *c, int64_t b, const zf_block_weights *w,
                          zf_bhess *h, unsigned want, bool keep)
{
    zf_bhess *hess[ZF_NGROUP] = {0};
    for (int g = 0; h && g < ZF_NGROUP; g++)
        if (want & (1u << g)) hess[g] = &h[g];
    const int64_t per = a->seq * a->d;
    zf_status s = ZF_OK;
    if (!a->bf16) {
        float *x = a->x;
        if (!keep) x = memcpy(a->work, a->x, sizeof(float) * (size_t)(a->nwin * per));
        if (a->nwin > 0) s = zf_backend_block_forward(be, c, w, x, a->nwin, a->seq, hess);
    }
    for (int64_t w0 = 0; a->bf16 && s == ZF_OK && w0 < a->nwin; w0 += a->chunk) {
        int64_t n = a->nwin - w0 < a->chunk ? a->nwin - w0 : a->chunk;
        zf_convert_to_f32(ZF_DT_BF16, a->xb + w0 * per, a->work, (size_t)(n * per));
        s = zf_backend_block_forward(be, c, w, a->work, n, a->seq, hess);
        if (s == ZF_OK && keep) zf_convert_f32_to_bf16(a->work, a->xb + w0 * per, (size_t)(n * per));
    }
    if (s != ZF_OK) zf_fail_context(s, "block %lld", (long long)b);
    return s;
}
