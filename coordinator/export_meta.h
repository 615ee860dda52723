/* The files of an export besides its tensors: configs with quantization_config, and the source's side files. */
#ifndef ZF_EXPORT_META_H
#define ZF_EXPORT_META_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/model.h"
#include "common/status.h"
#include "coordinator/export.h"
#include "coordinator/rundir.h"

/* What a run's configuration says that an export records. */
typedef struct {
    char method[32], model[PATH_MAX];
    int bits;
    int64_t group_size;        /* −1 per channel */
    bool sym, act_order, static_groups, true_sequential;
    double damp;
    char config_hash[17];      /* XXH64 of the lines that change the result, as manifest.json's config_fingerprint */
} zf_export_facts;

/* From the manifest r of the run directory dir and its config.yaml; a missing key is named. */
zf_status zf_export_read_facts(const zf_rundir *r, const char *dir, zf_export_facts *f);
/* dir/file: j printed, with a final newline, atomically. */
zf_status zf_export_write_json(const char *dir, const char *file, const cJSON *j);
/* config.json (the source model_dir's with the padded MLP width, torch_dtype and quantization_config) and
 * quantize_config.json in dir. */
zf_status zf_export_write_configs(const char *model_dir, const zf_model_config *c, const zf_export_facts *f,
                                  const zf_export_opts *o, const zf_export_summary *sum, const char *dir);
/* The tokenizer and generation files of model_dir, copied into dir when present. */
zf_status zf_export_copy_side_files(const char *model_dir, const char *dir);

#endif
