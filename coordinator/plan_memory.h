/* Host memory of the busiest rank, phase by phase, as the pipeline allocates it: the figures `zfold plan` prints. */
#ifndef ZF_PLAN_MEMORY_H
#define ZF_PLAN_MEMORY_H

#include <stdint.h>

#include "common/model.h"
#include "coordinator/config.h"

/* Libraries, MPI, OpenBLAS buffers and thread stacks: what the fixture runs hold beyond their arrays (30-60 MiB). */
#define ZF_PLAN_RUNTIME_BYTES (48.0 * 1024 * 1024)

typedef struct {
    /* parts, bytes */
    double runtime;        /* ZF_PLAN_RUNTIME_BYTES */
    double acts;           /* the rank's calibration activations and their copy, token ids */
    double window;         /* one window's forward intermediates (the forward runs one window at a time) */
    double block;          /* one block in fp32 and its codes (and its unfolded copy with eval.unfolded) */
    double unfolded_all;   /* eval.unfolded: every block kept until the evaluation */
    double capture;        /* Hessian accumulators of one capture pass (sequential) or of one block (parallel) */
    double owned_h;        /* parallel: the fp32 Hessians this rank owns, held from the pass to its quantization */
    double quant;          /* the busiest owner's quantization: waiting accumulators, H, group work, results */
    double reduce;         /* MPI reduction staging (during the reductions, before any quantization) */
    double globals;        /* embeddings, head, final norm (OPT: positions): at embedding and evaluation only */
    double eval;           /* one evaluation chunk */
    int64_t eval_chunk;    /* its windows */
    /* phases, bytes */
    double embed_phase, capture_phase, quant_phase, eval_phase, peak;
    const char *peak_phase;
} zf_plan_memory;

/* Memory per rank for cfg on ranks ranks, windows_per_rank calibration windows of seq tokens each. */
void zf_plan_memory_host(const zf_job_config *cfg, const zf_model_config *c, int ranks, int64_t windows_per_rank,
                         int64_t seq, zf_plan_memory *out);
/* Bytes of the Hessian accumulators one capture pass holds on a device (the GPU table's row). */
double zf_plan_capture_bytes(const zf_job_config *cfg, const zf_model_config *c);

#endif
