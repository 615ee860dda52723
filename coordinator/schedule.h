/* What the two schedules share: their entry points and the exchange steps of a unit (block, group) between ranks. */
#ifndef ZF_SCHEDULE_H
#define ZF_SCHEDULE_H

#include <stdbool.h>

#include "coordinator/acts.h"
#include "coordinator/hcache.h"
#include "coordinator/pipeline.h"
#include "worker/group.h"

/* Sequential schedule: block by block, each block's Hessians from the quantized blocks before it; x holds this
 * rank's calibration windows and moves through each finished block. */
zf_status zf_schedule_sequential(const zf_job_config *cfg, zf_qmodel *m, const zf_run_hooks *hooks, zf_acts *x,
                                 double t0);
/* Parallel schedule: every Hessian from one full-precision pass, then all units quantized at once by their owners. */
zf_status zf_schedule_parallel(const zf_job_config *cfg, zf_qmodel *m, const zf_run_hooks *hooks, zf_acts *x,
                               double t0);
/* The largest group input dimension: the size of one Hessian buffer for every group. */
int64_t zf_sched_hessian_dim(const zf_model_config *c);
/* Sums every rank's partial Hessian and token count of one group onto its owner (collective). Afterwards the
 * owner's accumulator holds the total and the other ranks' are spent; from stored inputs (more than one rank)
 * the owner's H [dim, dim] is written instead, finalized. */
zf_status zf_sched_reduce_hessian(zf_bhess *h, int owner, bool fp32_wire, float *H);
/* Whether a rank capturing tokens inputs of width dim keeps the inputs rather than their sums (hessian_capture). */
bool zf_sched_capture_inputs(const zf_job_config *cfg, int64_t tokens, int64_t dim);
/* Bytes per Hessian entry on the wire for cfg. */
int zf_sched_hessian_wire_bytes(const zf_job_config *cfg);
/* Whether the cache holds every group in [g0, g1) of block b: rank 0 looks, every rank gets the answer. */
zf_status zf_sched_cache_agree(const zf_hcache *hc, const zf_model_config *c, int64_t b, int g0, int g1, bool *hit);
/* The owner's H = 2/N Σ xxᵀ of group g (no collective): read from the cache on a hit, else finalized from the
 * reduced accumulator (unless ready: H holds it already) and, for a full-precision pass, stored with the seconds
 * it cost (seconds so far + its own). */
zf_status zf_sched_owner_hessian(zf_hcache *hc, bool fp_pass, bool cached, int64_t b, zf_group g, int64_t dim,
                                 zf_bhess *h, bool ready, double seconds, float *H);
/* A group's result to every rank: part i (rows [row0[i], row0[i + 1]) of row0[nparts]) from rank roots[i], which
 * holds those rows in gr; ζ, g_idx and the statistics from roots[0]. Afterwards gr holds every row on every rank. */
zf_status zf_sched_bcast_group(zf_group_result *gr, int nparts, const int *roots, const int64_t *row0);
/* "ΔL after/before a/b = ratio" of a block's layers, "ΔL a" when the baseline was not measured, or that none was
 * (static buffer). */
const char *zf_sched_dl_note(const zf_qblock *qb);
/* A stop request (a signal on any rank), agreed by every rank; ZF_ERR_INTERRUPTED naming where when there is one. */
zf_status zf_sched_agreed_stop(const zf_run_hooks *hooks, const char *where);

#endif
