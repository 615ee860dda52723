/* Checks made before the first block is computed (and all a dry run can make without computing). */
#ifndef ZF_PREFLIGHT_H
#define ZF_PREFLIGHT_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/pipeline.h"

typedef struct {
    uint64_t calib_xxh64; /* content of calibration.file (0 with eval_only) */
} zf_preflight_result;

/* Every token file of cfg (calibration.file unless eval_only, eval.files): readable, ids inside the model's
 * vocabulary, at least one window long; eval.seq_len within max_position_embeddings. With every_tensor, also
 * every block's tensors (present, dtype, shape, finite values; the model-level ones were read at open).
 * Errors name the key and the file. */
zf_status zf_preflight(const zf_job_config *cfg, const zf_qmodel *m, bool eval_only, bool every_tensor,
                       zf_preflight_result *out);

#endif
