/* Export of a finished run directory as a Hugging Face GPTQ model folder (safetensors, config, tokenizer files). */
#ifndef ZF_EXPORT_H
#define ZF_EXPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/export_layer.h"
#include "common/status.h"
#include "coordinator/config.h"

typedef struct {
    zf_gptq_format format;     /* checkpoint_format gptq (v1) or gptq_v2 */
    zf_dtype dtype;            /* scales, biases, norms, embeddings, head: ZF_DT_F16, ZF_DT_BF16 or ZF_DT_F32 */
    int64_t max_shard_bytes;   /* a new model-0000K-of-0000N.safetensors when the next tensor would pass this */
} zf_export_opts;

typedef struct {
    bool already_done;         /* out_dir held this export already: nothing written */
    int nfiles;                /* safetensors files */
    int64_t bytes;             /* tensor bytes */
    int64_t intermediate, intermediate_padded;
    int64_t zeros_shifted;     /* grids with zero point 0 stored shifted by one code (format gptq) */
} zf_export_summary;

/* Export option names: "gptq"/"gptq_v2", "float16"/"bfloat16"/"float32", sizes such as "5GB", "500MB", "2GiB" or
 * bytes. Return false for anything else. */
bool zf_export_format_parse(const char *s, zf_gptq_format *out);
bool zf_export_dtype_parse(const char *s, zf_dtype *out);
bool zf_export_size_parse(const char *s, int64_t *bytes);
const char *zf_export_format_name(zf_gptq_format f);
const char *zf_export_dtype_name(zf_dtype t);

/* Writes the finished run run_dir as a GPTQ folder out_dir. The folder is built as "<out_dir>.tmp.<pid>" and renamed
 * into place, so out_dir exists only when complete; stale temporary folders of dead processes are removed. An
 * out_dir that already holds the same export (run configuration hash, format and dtype in its quantize_config.json)
 * is kept (summary->already_done); any other existing out_dir is refused. An unfinished or damaged run, a changed
 * source model, sizes GPTQ kernels cannot take, zero points format gptq cannot store and scales the dtype cannot
 * hold are refused with ZF_ERR_INPUT naming the file, layer or tensor. */
zf_status zf_export_run(const char *run_dir, const char *out_dir, const zf_export_opts *o, zf_export_summary *summary);

/* The export: section of a finished run's config: zf_export_run(output, export.folder) when export.folder is set. */
zf_status zf_export_configured(const zf_job_config *cfg);

#endif
