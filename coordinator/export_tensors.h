/* The tensors of an export: every tensor planned, converted block by block and streamed into safetensors files. */
#ifndef ZF_EXPORT_TENSORS_H
#define ZF_EXPORT_TENSORS_H

#include <stdint.h>

#include "common/model.h"
#include "common/status.h"
#include "coordinator/export.h"
#include "coordinator/rundir.h"

/* Writes the finished run run_dir (manifest r; model c; bits and group_size, −1 per channel) as safetensors files in
 * dir: model.safetensors, or model-0000K-of-0000N.safetensors and model.safetensors.index.json. Fills sum's
 * nfiles, bytes, intermediate, intermediate_padded and zeros_shifted. */
zf_status zf_export_tensors(const char *run_dir, const zf_rundir *r, const zf_model_config *c, int bits,
                            int64_t group_size, const zf_export_opts *o, const char *dir, zf_export_summary *sum);

#endif
