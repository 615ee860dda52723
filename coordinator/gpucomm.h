/* The NCCL communicator between ranks (one GPU each): node-local ranks, set-up, watched device-buffer collectives, teardown. */
#ifndef ZF_GPUCOMM_H
#define ZF_GPUCOMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Host broadcasts pass through a device buffer of at most this many bytes, reused from call to call. */
#define ZF_GPUCOMM_STAGE ((size_t)256 << 20)
/* Device memory NCCL itself holds per rank (its channel buffers): an allowance for the memory plan. */
#define ZF_GPUCOMM_NCCL_ALLOWANCE ((int64_t)512 << 20)

/* Without CUDA in the build every function below that returns a status fails with ZF_ERR_INPUT.
 *
 * Buffers are device memory of the device given to zf_gpucomm_init. The collectives run on their own stream:
 * the caller synchronizes the stream that wrote dev_buf before calling, and each call returns only when the
 * collective has finished on this rank, so dev_buf may be used on any stream afterwards.
 *
 * No rank waits forever: a collective that reports an asynchronous NCCL error, or has not finished after the
 * timeout given to zf_gpucomm_init, aborts the communicator and fails with ZF_ERR_INTERNAL naming the collective
 * and the rank; the caller then ends the job (MPI_Abort). The timeout must cover the longest time by which one
 * rank may reach a collective after another. */

/* This rank's index among the ranks on the same host (in rank order) and how many there are; 0 of 1 without MPI. */
zf_status zf_gpucomm_local_rank(int *local_rank, int *local_size);

/* Makes `device` current and creates one communicator over MPI_COMM_WORLD. Collective: every rank calls it. */
zf_status zf_gpucomm_init(int device, double timeout_s);

/* In place, element-wise sum of count floats (doubles with fp64) into root's dev_buf; other ranks must not rely
 * on their dev_buf afterwards. */
zf_status zf_gpucomm_reduce_sum(void *dev_buf, int64_t count, bool fp64, int root);
/* root's bytes of a host buffer to every rank's host buffer, through a device staging buffer (at most 256 MiB,
 * kept until finalize) so that the data travel by NCCL (NVLink, InfiniBand) instead of MPI. */
zf_status zf_gpucomm_bcast_host(void *host_buf, size_t bytes, int root);

/* Payload bytes of the collectives this rank has taken part in so far. */
double zf_gpucomm_bytes(void);

/* Flushes and destroys the communicator (aborts it when it failed) and its stream; safe to call when inactive. */
void zf_gpucomm_finalize(void);
/* Whether zf_gpucomm_init succeeded and no collective has failed since. */
bool zf_gpucomm_active(void);

#endif
