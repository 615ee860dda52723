/* The quantization engine: open a model and this rank's backend, quantize it under a schedule, evaluate sources. */
#ifndef ZF_PIPELINE_H
#define ZF_PIPELINE_H

#include "common/model.h"
#include "common/safetensors.h"
#include "coordinator/config.h"
#include "coordinator/hcache.h"
#include "worker/backend.h"
#include "worker/block.h"
#include "worker/qblock.h"

typedef struct {
    zf_model_config model;
    zf_safetensors *st;
    zf_model_globals globals;    /* loaded at open; released once the calibration windows are embedded */
    zf_qblock *blocks;           /* [n_layers] */
    int64_t calib_seq;
    double quant_seconds;
    zf_hcache hcache;            /* full-precision Hessians shared between runs (calibration.cache) */
    zf_backend *be;              /* where this rank computes (backend:) */
} zf_qmodel;

struct zf_block_parts;
/* Bytes rank moves per block in the sequential schedule (Hessian reductions, result broadcasts with bits-wide
 * codes, a team's Hessian from its owner) with the groups spread as p says (NULL: one owner each) and tokens
 * calibration tokens on each rank. */
int64_t zf_block_comm_bytes_model(const zf_model_config *c, const zf_job_config *cfg, const struct zf_block_parts *p,
                                  int nranks, int rank, int64_t tokens);
/* Owners of nblocks × ZF_NGROUP units (owner[b·ZF_NGROUP + g]): largest first onto the least loaded rank, the
 * same answer on every rank. Groups cost the same in every block, so kinds by cost, then blocks in order. */
zf_status zf_assign_owners(const zf_model_config *c, int64_t nblocks, int nranks, int *owner);

/* Picks n windows of seq tokens from a stream of ntokens with a seeded generator: starts[i] in [0, ntokens - seq].
 * Same seed, same windows on any machine. */
zf_status zf_calibration_windows(int64_t ntokens, int64_t seq, int64_t n, uint64_t seed, int64_t *starts);

/* Opens the model of cfg and checks it (shapes, finite values) before any compute, and this rank's backend:
 * with cuda, the GPU of its node-local rank, and NCCL between the ranks' GPUs when there are several. */
zf_status zf_qmodel_open(const zf_job_config *cfg, zf_qmodel *m);
/* What the caller does around each block: resume from finished shards, persist new ones, stop on request. */
typedef struct {
    int64_t resume_from;                                          /* blocks [0, resume_from) are loaded */
    zf_status (*load_block)(void *ctx, int64_t b, zf_qblock *qb); /* every rank */
    zf_status (*block_done)(void *ctx, int64_t b, const zf_qblock *qb); /* every rank, after a computed block */
    int (*stop_requested)(void *ctx);                             /* this rank's signal or 0; the pipeline agrees */
    void *ctx;
} zf_run_hooks;

/* Runs the configured schedule (sequential or parallel) over every block; hooks may be NULL. With a block_done hook (the shard is the
 * record) and without eval.unfolded, a finished block's codes and weights are released: memory stays at one
 * block plus the calibration activations, and evaluation reads the shards back. Returns ZF_ERR_INTERRUPTED after the block
 * during which a stop was requested (its shard written), leaving the run resumable. */
zf_status zf_qmodel_quantize(const zf_job_config *cfg, zf_qmodel *m, const zf_run_hooks *hooks);
void zf_qmodel_free(zf_qmodel *m);
/* Embeddings, head and final norm, read again when quantization has released them (it holds them only to embed
 * the calibration windows). */
zf_status zf_qmodel_globals(zf_qmodel *m, const zf_model_globals **g);

/* Block sources for perplexity: the quantized (folded) model and the unfolded fake-quantized one. */
zf_status zf_qmodel_folded_source(void *ctx, int64_t b, const zf_block_weights **out);
zf_status zf_qmodel_unfolded_source(void *ctx, int64_t b, const zf_block_weights **out);

#endif
