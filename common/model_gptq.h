/* A GPTQ checkpoint folder (config.json with a gptq quantization_config) read as a model, dequantized on load. */
#ifndef ZF_MODEL_GPTQ_H
#define ZF_MODEL_GPTQ_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/export_layer.h"
#include "common/safetensors.h"
#include "common/status.h"

typedef struct {
    int bits;                  /* 2, 3, 4 or 8 */
    int64_t group_size;        /* -1: one group per output channel */
    bool sym, desc_act;
    zf_gptq_format format;     /* checkpoint_format: "gptq" (default) or "gptq_v2" */
} zf_gptq_config;

/* Reads config.json's quantization_config (qc); path names the file in messages. Anything but quant_method "gptq"
 * with 2, 3, 4 or 8 bits is refused naming the field. */
zf_status zf_gptq_config_parse(const char *path, const cJSON *qc, zf_gptq_config *out);

/* The decoding of GPTQ kernels: w [out, in] with w[n, k] = scales[g, n] · (q[k, n] − z[g, n]), g = g_idx[k],
 * z = the stored qzeros value + 1 for format gptq (no wrap: a stored 2^bits − 1 decodes as 2^bits), as stored for
 * gptq_v2. In fp32, in the order zfold deploys its own weights. g_idx values must lie in [0, ngroups). */
zf_status zf_gptq_dequant(const int32_t *qweight, const int32_t *qzeros, const float *scales, const int32_t *g_idx,
                          int bits, int64_t out, int64_t in, int64_t ngroups, zf_gptq_format format, float *w);

/* Opens the GPTQ checkpoint folder dir as a full-precision model: every <module>.qweight (with .qzeros, .scales,
 * and .g_idx, or k / group_size without it) becomes <module>.weight in fp32, every other float tensor is kept (in
 * fp32). The dequantized tensors go to a temporary file (under TMPDIR) that is unlinked once mapped. Shapes are
 * checked against each other and the config, naming the tensor. */
zf_status zf_gptq_open_dequantized(const char *dir, zf_safetensors **out);

#endif
