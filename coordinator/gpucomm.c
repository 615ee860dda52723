/* The NCCL communicator between ranks: node-local ranks, non-blocking set-up, watched collectives (Hessian sums, result broadcasts), teardown. */
#include "coordinator/gpucomm.h"

#ifdef ZF_HAVE_CUDA

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/check.h"
#include "common/clock.h"
#include "common/log.h"
#include "coordinator/comm.h"

/* Elements per NCCL reduce call: bounds each call well inside NCCL's and the network's limits (broadcasts go in
 * pieces of the staging buffer, ZF_GPUCOMM_STAGE). */
#define ZF_GPUCOMM_CHUNK ((int64_t)1 << 30)
#define ZF_GPUCOMM_POLL_NS 1000000L /* 1 ms between looks at a pending operation */

static struct {
    bool active;
    int device, rank, size;
    double timeout_s;
    ncclComm_t comm;
    cudaStream_t stream;
    void *stage;                  /* device staging buffer of host broadcasts */
    size_t stage_bytes;
    double bytes_moved;           /* payload of the collectives so far */
} gc = {.device = -1};

static void poll_pause(void)
{
    struct timespec ts = {0, ZF_GPUCOMM_POLL_NS};
    nanosleep(&ts, NULL);
}

static bool mpi_running(void)
{
    int started = 0, finished = 0;
    MPI_Initialized(&started);
    MPI_Finalized(&finished);
    return started && !finished;
}

/* An NCCL call's result as a status: the call, file:line, rank, host, NCCL's message and its last error. */
static zf_status nccl_fail(ncclResult_t r, const char *call, const char *file, int line)
{
    if (r == ncclSuccess) return ZF_OK;
    char msg[512];
    snprintf(msg, sizeof msg, "%s (%s)", ncclGetErrorString(r), ncclGetLastError(NULL));
    return zf_check_fail(ZF_ERR_INTERNAL, call, file, line, msg);
}
#define ZF_NCCL_CHECK(call) nccl_fail((call), #call, __FILE__, __LINE__)

static zf_status world_rank_size(int *rank, int *size)
{
    *rank = 0;
    *size = 1;
    if (!mpi_running()) return ZF_OK;
    ZF_TRY(ZF_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, rank)));
    return ZF_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, size));
}

zf_status zf_gpucomm_local_rank(int *local_rank, int *local_size)
{
    *local_rank = 0;
    *local_size = 1;
    int rank = 0, size = 1;
    ZF_TRY(world_rank_size(&rank, &size));
    if (size == 1) return ZF_OK;
    /* the ranks that share memory with this one, in world-rank order: one node */
    MPI_Comm node = MPI_COMM_NULL;
    zf_status s = ZF_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
    if (s == ZF_OK) s = ZF_MPI_CHECK(MPI_Comm_rank(node, local_rank));
    if (s == ZF_OK) s = ZF_MPI_CHECK(MPI_Comm_size(node, local_size));
    if (node != MPI_COMM_NULL) MPI_Comm_free(&node);
    return s;
}

/* Polls until comm's pending operation settles into *state; false when timeout_s passed first. */
static bool settle(ncclComm_t comm, double timeout_s, ncclResult_t *state)
{
    double t0 = zf_now();
    for (;;) {
        ncclResult_t r = ncclCommGetAsyncError(comm, state);
        if (r != ncclSuccess) {
            *state = r;
            return true;
        }
        if (*state != ncclInProgress) return true;
        if (zf_now() - t0 > timeout_s) return false;
        poll_pause();
    }
}

static void destroy_stream(void)
{
    if (gc.stream && cudaStreamDestroy(gc.stream) != cudaSuccess) cudaGetLastError();
    gc.stream = NULL;
}

/* What each rank prepares before the communicator: its device and stream, and on rank 0 the unique id. */
static zf_status prepare_rank(int device, ncclUniqueId *id)
{
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess)
        return zf_fail(ZF_ERR_INTERNAL, "NCCL init on %s: cudaSetDevice(%d) failed: %s", zf_log_place(), device,
                       cudaGetErrorString(e));
    /* non-blocking: communication must not serialize with work on the legacy default stream */
    e = cudaStreamCreateWithFlags(&gc.stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        gc.stream = NULL;
        return zf_fail(ZF_ERR_INTERNAL, "NCCL init on %s: creating the communication stream on cuda:%d failed: %s",
                       zf_log_place(), device, cudaGetErrorString(e));
    }
    if (gc.rank != 0) return ZF_OK;
    return ZF_NCCL_CHECK(ncclGetUniqueId(id));
}

/* Rank 0's id to every rank, and whether every rank prepared; every rank takes part whatever its own outcome,
 * so that a failure on one rank cannot leave the others blocked here. */
static zf_status share_id(zf_status local, ncclUniqueId *id)
{
    unsigned char msg[1 + sizeof *id];
    msg[0] = gc.rank == 0 && local == ZF_OK;
    memcpy(msg + 1, id, sizeof *id);
    /* a failed broadcast is kept, not returned: the other ranks are already on their way to the agreement */
    zf_status bs = ZF_MPI_CHECK(MPI_Bcast(msg, (int)sizeof msg, MPI_BYTE, 0, MPI_COMM_WORLD));
    if (bs == ZF_OK) memcpy(id, msg + 1, sizeof *id);
    int ok = local == ZF_OK && bs == ZF_OK && msg[0], all_ok = 0;
    ZF_TRY(ZF_MPI_CHECK(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD)));
    if (local != ZF_OK) return local;
    if (bs != ZF_OK) return bs;
    if (!all_ok)
        return zf_fail(ZF_ERR_INTERNAL, "NCCL init on %s: another rank failed to prepare (see its error)",
                       zf_log_place());
    return ZF_OK;
}

static zf_status create_comm(const ncclUniqueId *id)
{
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0; /* calls return at once, so a missing peer shows up as a timeout instead of a hang */
    ncclComm_t comm = NULL;
    ncclResult_t r = ncclCommInitRankConfig(&comm, gc.size, *id, gc.rank, &config);
    ncclResult_t state = r;
    bool settled = true;
    if (r == ncclInProgress || (r == ncclSuccess && comm)) settled = settle(comm, gc.timeout_s, &state);
    if (settled && state == ncclSuccess && comm) {
        gc.comm = comm;
        return ZF_OK;
    }
    char detail[256];
    if (!settled) snprintf(detail, sizeof detail, "no progress for %g s", gc.timeout_s);
    else snprintf(detail, sizeof detail, "%s (%s)", ncclGetErrorString(state), ncclGetLastError(comm));
    if (comm) ncclCommAbort(comm);
    return zf_fail(ZF_ERR_INTERNAL, "NCCL init of %d ranks on %s (cuda:%d): %s", gc.size, zf_log_place(), gc.device,
                   detail);
}

zf_status zf_gpucomm_init(int device, double timeout_s)
{
    if (gc.active || gc.comm) return zf_fail(ZF_ERR_INPUT, "NCCL init: the communicator is already set up");
    if (!(timeout_s > 0))
        return zf_fail(ZF_ERR_INPUT, "NCCL init: timeout %g s: expected a positive number of seconds", timeout_s);
    int rank = 0, size = 1;
    ZF_TRY(world_rank_size(&rank, &size));
    gc.rank = rank;
    gc.size = size;
    gc.device = device;
    gc.timeout_s = timeout_s;

    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    zf_status s = prepare_rank(device, &id);
    if (size > 1) s = share_id(s, &id);
    if (s == ZF_OK) s = create_comm(&id);
    if (s != ZF_OK) {
        destroy_stream();
        return s;
    }
    gc.active = true;
    return ZF_OK;
}

/* A failed collective: abort the communicator so that no later call waits on it, and name what and where. */
static zf_status fail_collective(const char *what, const char *detail)
{
    char msg[320];
    snprintf(msg, sizeof msg, "%s", detail); /* detail may point into NCCL's memory, gone after the abort */
    ncclCommAbort(gc.comm);
    gc.comm = NULL;
    gc.active = false;
    return zf_fail(ZF_ERR_INTERNAL, "NCCL %s on rank %d of %d (cuda:%d, host %s): %s", what, gc.rank, gc.size, gc.device,
                   zf_log_host(), msg);
}

/* After an NCCL call returned r: waits until the operation is enqueued and then finished on the stream, looking
 * every poll interval for an asynchronous NCCL error and for the timeout. */
static zf_status wait_collective(const char *what, ncclResult_t r)
{
    char detail[320];
    if (r != ncclSuccess && r != ncclInProgress) {
        snprintf(detail, sizeof detail, "%s (%s)", ncclGetErrorString(r), ncclGetLastError(gc.comm));
        return fail_collective(what, detail);
    }
    double t0 = zf_now();
    for (;;) {
        ncclResult_t state = ncclSuccess;
        ncclResult_t q = ncclCommGetAsyncError(gc.comm, &state);
        if (q != ncclSuccess) state = q;
        if (state != ncclSuccess && state != ncclInProgress) {
            snprintf(detail, sizeof detail, "%s (%s)", ncclGetErrorString(state), ncclGetLastError(gc.comm));
            return fail_collective(what, detail);
        }
        if (state == ncclSuccess) { /* enqueued: now the stream tells whether it ran */
            cudaError_t e = cudaStreamQuery(gc.stream);
            if (e == cudaSuccess) return ZF_OK;
            if (e != cudaErrorNotReady) {
                snprintf(detail, sizeof detail, "the communication stream failed: %s", cudaGetErrorString(e));
                return fail_collective(what, detail);
            }
        }
        if (zf_now() - t0 > gc.timeout_s) {
            snprintf(detail, sizeof detail, "no progress for %g s", gc.timeout_s);
            return fail_collective(what, detail);
        }
        poll_pause();
    }
}

static zf_status ready_for(const char *what, int root)
{
    if (!gc.active) return zf_fail(ZF_ERR_INPUT, "NCCL %s: the communicator is not set up (or failed before)", what);
    if (root < 0 || root >= gc.size)
        return zf_fail(ZF_ERR_INPUT, "NCCL %s: root rank %d: expected 0 .. %d", what, root, gc.size - 1);
    /* the collectives run on gc.device whatever this thread made current since */
    cudaError_t e = cudaSetDevice(gc.device);
    if (e != cudaSuccess)
        return zf_fail(ZF_ERR_INTERNAL, "NCCL %s on %s: cudaSetDevice(%d) failed: %s", what, zf_log_place(), gc.device,
                       cudaGetErrorString(e));
    return ZF_OK;
}

zf_status zf_gpucomm_reduce_sum(void *dev_buf, int64_t count, bool fp64, int root)
{
    const char *what = fp64 ? "reduce (fp64 sum)" : "reduce (fp32 sum)";
    ZF_TRY(ready_for(what, root));
    if (gc.size == 1 || count <= 0) return ZF_OK;
    size_t elem = fp64 ? sizeof(double) : sizeof(float);
    char *p = dev_buf;
    for (int64_t off = 0; off < count; off += ZF_GPUCOMM_CHUNK) {
        int64_t n = count - off < ZF_GPUCOMM_CHUNK ? count - off : ZF_GPUCOMM_CHUNK;
        void *at = p + (size_t)off * elem;
        ZF_TRY(wait_collective(what, ncclReduce(at, at, (size_t)n, fp64 ? ncclDouble : ncclFloat, ncclSum, root,
                                                gc.comm, gc.stream)));
        gc.bytes_moved += (double)n * (double)elem;
    }
    return ZF_OK;
}

/* A staging buffer of at least `bytes` (≤ ZF_GPUCOMM_STAGE), kept for later calls. */
static zf_status stage_reserve(size_t bytes)
{
    if (gc.stage_bytes >= bytes) return ZF_OK;
    if (gc.stage && cudaFree(gc.stage) != cudaSuccess) cudaGetLastError();
    gc.stage = NULL;
    gc.stage_bytes = 0;
    cudaError_t e = cudaMalloc(&gc.stage, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        gc.stage = NULL;
        return zf_fail(e == cudaErrorMemoryAllocation ? ZF_ERR_NOMEM : ZF_ERR_INTERNAL,
                       "NCCL broadcast staging buffer on %s (cuda:%d): %zu bytes: %s", zf_log_place(), gc.device, bytes,
                       cudaGetErrorString(e));
    }
    gc.stage_bytes = bytes;
    return ZF_OK;
}

/* Copies on the communication stream and waits for them (copies do not depend on the peers). */
static zf_status stage_copy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind)
{
    cudaError_t e = cudaMemcpyAsync(dst, src, n, kind, gc.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(gc.stream);
    if (e != cudaSuccess)
        return zf_fail(ZF_ERR_INTERNAL, "NCCL broadcast staging copy (%s, %zu bytes) on %s (cuda:%d): %s",
                       kind == cudaMemcpyHostToDevice ? "to the device" : "to the host", n, zf_log_place(), gc.device,
                       cudaGetErrorString(e));
    return ZF_OK;
}

zf_status zf_gpucomm_bcast_host(void *host_buf, size_t bytes, int root)
{
    ZF_TRY(ready_for("broadcast", root));
    if (gc.size == 1 || bytes == 0) return ZF_OK;
    /* a staging failure leaves this rank out of the broadcast the others are in: the communicator is aborted */
    if (stage_reserve(bytes < ZF_GPUCOMM_STAGE ? bytes : ZF_GPUCOMM_STAGE) != ZF_OK)
        return fail_collective("broadcast", zf_last_error());
    char *p = host_buf;
    for (size_t off = 0; off < bytes; off += gc.stage_bytes) {
        size_t n = bytes - off < gc.stage_bytes ? bytes - off : gc.stage_bytes;
        if (gc.rank == root && stage_copy(gc.stage, p + off, n, cudaMemcpyHostToDevice) != ZF_OK)
            return fail_collective("broadcast", zf_last_error());
        ZF_TRY(wait_collective("broadcast", ncclBroadcast(gc.stage, gc.stage, n, ncclUint8, root, gc.comm, gc.stream)));
        if (gc.rank != root && stage_copy(p + off, gc.stage, n, cudaMemcpyDeviceToHost) != ZF_OK)
            return fail_collective("broadcast", zf_last_error());
        gc.bytes_moved += (double)n;
    }
    return ZF_OK;
}

void zf_gpucomm_finalize(void)
{
    if (gc.comm) {
        if (cudaSetDevice(gc.device) != cudaSuccess) cudaGetLastError();
        /* a clean finalize flushes pending work with the peers; when that fails or stalls, abort instead */
        ncclResult_t r = ncclCommFinalize(gc.comm), state = r;
        bool settled = true;
        if (r == ncclInProgress) settled = settle(gc.comm, gc.timeout_s, &state);
        if (settled && state == ncclSuccess) {
            r = ncclCommDestroy(gc.comm);
            if (r != ncclSuccess) zf_log_warn("NCCL teardown on rank %d: ncclCommDestroy: %s", gc.rank, ncclGetErrorString(r));
        } else {
            zf_log_warn("NCCL teardown on rank %d: finalize %s; aborting the communicator", gc.rank,
                        settled ? ncclGetErrorString(state) : "made no progress");
            ncclCommAbort(gc.comm);
        }
        gc.comm = NULL;
    }
    if (gc.stage && cudaFree(gc.stage) != cudaSuccess) cudaGetLastError();
    gc.stage = NULL;
    gc.stage_bytes = 0;
    destroy_stream();
    gc.active = false;
}

bool zf_gpucomm_active(void) { return gc.active; }

double zf_gpucomm_bytes(void) { return gc.bytes_moved; }

#else /* without CUDA: the same functions, each saying why it cannot work */

zf_status zf_gpucomm_local_rank(int *local_rank, int *local_size)
{
    *local_rank = 0;
    *local_size = 1;
    return zf_fail(ZF_ERR_INPUT, "GPU communication (node-local rank): this zfold was built without CUDA");
}

zf_status zf_gpucomm_init(int device, double timeout_s)
{
    (void)device;
    (void)timeout_s;
    return zf_fail(ZF_ERR_INPUT, "GPU communication (NCCL init): this zfold was built without CUDA");
}

zf_status zf_gpucomm_reduce_sum(void *dev_buf, int64_t count, bool fp64, int root)
{
    (void)dev_buf;
    (void)count;
    (void)fp64;
    (void)root;
    return zf_fail(ZF_ERR_INPUT, "GPU communication (NCCL reduce): this zfold was built without CUDA");
}

zf_status zf_gpucomm_bcast_host(void *host_buf, size_t bytes, int root)
{
    (void)host_buf;
    (void)bytes;
    (void)root;
    return zf_fail(ZF_ERR_INPUT, "GPU communication (NCCL broadcast): this zfold was built without CUDA");
}

void zf_gpucomm_finalize(void) {}

bool zf_gpucomm_active(void) { return false; }

double zf_gpucomm_bytes(void) { return 0; }

#endif
