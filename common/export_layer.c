/* GPTQ tensors of one quantized linear layer: padding that decodes to zeros, v1 zero points, qweight/qzeros packing. */
#include "common/export_layer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/gptq_pack.h"
#include "common/gptq_pack_internal.h"

void zf_gptq_layer_free(zf_gptq_layer *g)
{
    if (!g) return;
    free(g->qweight);
    free(g->qzeros);
    free(g->scales);
    free(g->g_idx);
    free(g->bias);
    memset(g, 0, sizeof *g);
}

/* Integer zero points [out_pad, ngroups] and codes [out_pad, in_pad] of the padded layer, before any v1 shift. */
static zf_status padded_grid(const zf_shard_linear_data *l, const char *name, int64_t out_pad, int64_t in_pad,
                             int64_t ngroups, int32_t *zero, uint8_t *q, zf_gptq_layer *g)
{
    int maxq = (1 << l->bits) - 1;
    for (int64_t n = 0; n < out_pad; n++)
        for (int64_t j = 0; j < ngroups; j++) {
            int32_t z = 1;
            float s = 1.0f;
            if (n < l->out && j < l->ngroups) {
                float zf = l->zero[n * l->ngroups + j];
                if (!(zf >= 0 && zf <= (float)maxq) || zf != floorf(zf))
                    return zf_fail(ZF_ERR_INPUT, "%s: zero point %g at row %lld, group %lld: expected an integer in "
                                   "[0, %d]", name, zf, (long long)n, (long long)j, maxq);
                z = (int32_t)zf;
                s = l->scale[n * l->ngroups + j];
            }
            zero[n * ngroups + j] = z;
            g->scales[j * out_pad + n] = s;
        }
    for (int64_t n = 0; n < out_pad; n++)
        for (int64_t k = 0; k < in_pad; k++)
            q[n * in_pad + k] = n < l->out && k < l->in ? l->q[n * l->in + k]
                                                        : (uint8_t)zero[n * ngroups + g->g_idx[k]];
    return ZF_OK;
}

/* Format gptq cannot store zero point 0: shift such grids by one code where the top code is unused. */
static zf_status shift_zero_points(const char *name, int bits, int64_t out, int64_t in, int64_t ngroups,
                                   const int32_t *g_idx, int32_t *zero, uint8_t *q, int64_t *shifted)
{
    int maxq = (1 << bits) - 1;
    for (int64_t n = 0; n < out; n++) {
        for (int64_t k = 0; k < in; k++) {
            int64_t j = g_idx[k];
            if (zero[n * ngroups + j] == 0 && q[n * in + k] == maxq)
                return zf_fail(ZF_ERR_INPUT, "%s: row %lld, group %lld has zero point 0 and uses code %d: format gptq "
                               "stores zero − 1 and cannot hold it without changing the weights (expected a zero "
                               "point in [1, %d]); export with --format gptq_v2", name, (long long)n, (long long)j,
                               maxq, maxq);
        }
        for (int64_t k = 0; k < in; k++)
            if (zero[n * ngroups + g_idx[k]] == 0) q[n * in + k]++;
        for (int64_t j = 0; j < ngroups; j++)
            if (zero[n * ngroups + j] == 0) {
                zero[n * ngroups + j] = 1;
                (*shifted)++;
            }
    }
    return ZF_OK;
}

zf_status zf_gptq_layer_build(const zf_shard_linear_data *l, const char *name, int64_t out_pad, int64_t in_pad,
                              int64_t group_size, zf_gptq_format format, zf_gptq_layer *g)
{
    memset(g, 0, sizeof *g);
    int bits = l->bits;
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return zf_fail(ZF_ERR_INPUT, "%s: %d bits: GPTQ checkpoints hold 2, 3, 4 or 8 bits", name, bits);
    if (out_pad < l->out || in_pad < l->in || in_pad % 32 != 0 || (out_pad * bits) % 32 != 0)
        return zf_fail(ZF_ERR_INPUT, "%s: %lld x %lld padded to %lld x %lld: expected in_features a multiple of 32 and "
                       "out_features·bits a multiple of 32 (GPTQ packs 32-bit words)", name, (long long)l->out,
                       (long long)l->in, (long long)out_pad, (long long)in_pad);
    int64_t ngroups = group_size > 0 ? (in_pad + group_size - 1) / group_size : 1;
    if (ngroups < l->ngroups) ngroups = l->ngroups;
    g->bits = bits;
    g->out = out_pad;
    g->in = in_pad;
    g->ngroups = ngroups;
    g->qweight = zf_malloc(sizeof(int32_t) * (size_t)(zf_gptq_words(in_pad, bits) * out_pad), "qweight");
    g->qzeros = zf_malloc(sizeof(int32_t) * (size_t)(ngroups * zf_gptq_words(out_pad, bits)), "qzeros");
    g->scales = zf_malloc(sizeof(float) * (size_t)(ngroups * out_pad), "scales");
    g->g_idx = zf_malloc(sizeof(int32_t) * (size_t)in_pad, "g_idx");
    if (l->bias) g->bias = zf_calloc((size_t)out_pad, sizeof(float), "bias");
    int32_t *zero = zf_malloc(sizeof(int32_t) * (size_t)(out_pad * ngroups), "zero points");
    int32_t *zero_t = zf_malloc(sizeof(int32_t) * (size_t)(out_pad * ngroups), "zero points");
    uint8_t *q = zf_malloc((size_t)(out_pad * in_pad), "codes");
    zf_status s = ZF_OK;
    if (!g->qweight || !g->qzeros || !g->scales || !g->g_idx || (l->bias && !g->bias) || !zero || !zero_t || !q)
        s = ZF_ERR_NOMEM;
    for (int64_t k = 0; s == ZF_OK && k < in_pad; k++) {
        g->g_idx[k] = k < l->in ? l->g_idx[k] : (int32_t)(group_size > 0 ? k / group_size : 0);
        if (g->g_idx[k] < 0 || g->g_idx[k] >= ngroups)
            s = zf_fail(ZF_ERR_INPUT, "%s: g_idx[%lld] = %d: expected a group in [0, %lld)", name, (long long)k,
                        g->g_idx[k], (long long)ngroups);
    }
    if (s == ZF_OK) s = padded_grid(l, name, out_pad, in_pad, ngroups, zero, q, g);
    if (s == ZF_OK && format == ZF_GPTQ_V1)
        s = shift_zero_points(name, bits, out_pad, in_pad, ngroups, g->g_idx, zero, q, &g->zeros_shifted);
    if (s == ZF_OK) {
        if (l->bias) memcpy(g->bias, l->bias, sizeof(float) * (size_t)l->out);
        for (int64_t n = 0; n < out_pad; n++)
            for (int64_t j = 0; j < ngroups; j++) zero_t[j * out_pad + n] = zero[n * ngroups + j];
        zf_gptq_pack_qweight(q, out_pad, in_pad, bits, g->qweight);
        zf_gptq_pack_qzeros(zero_t, ngroups, out_pad, bits, format == ZF_GPTQ_V1 ? 1 : 0, g->qzeros);
    }
    free(zero);
    free(zero_t);
    free(q);
    if (s != ZF_OK) zf_gptq_layer_free(g);
    return s;
}
