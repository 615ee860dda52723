/* NCCL over MPI for the CUDA emulation: communicators as MPI communicators, reduce and broadcast staged through host memory, injected faults. */
#define _POSIX_C_SOURCE 200809L

#include <nccl.h>

#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Elements (bytes for broadcasts) per MPI call, since MPI counts are int; a build may set it lower to exercise
 * the split. */
#ifndef ZF_NCCL_EMU_PIECE
#define ZF_NCCL_EMU_PIECE ((size_t)1 << 30)
#endif
_Static_assert(ZF_NCCL_EMU_PIECE >= 1 && ZF_NCCL_EMU_PIECE <= INT_MAX, "ZF_NCCL_EMU_PIECE must fit an MPI count");

#define CONFIG_MAGIC 0xcafebeefu

/* A collective in flight: MPI works on a host copy of the data, which goes to the device once MPI is done. */
struct pending {
    const char *what;      /* the NCCL call, for messages */
    MPI_Request *requests; /* one per piece */
    int nrequests;
    void *host;
    size_t bytes;
    void *dest;            /* device buffer of the result on this rank; NULL when it keeps none */
    struct pending *next;  /* in the list of abandoned operations */
};

struct ncclComm {
    MPI_Comm mpi;
    int rank, nranks;
    bool blocking;
    bool finalized;
    bool hung;          /* an injected hang: the last operation never completes */
    ncclResult_t error; /* sticky: the first failure of an operation */
    struct pending *op;
};

enum fault { FAULT_NONE, FAULT_FAIL, FAULT_HANG };

static _Thread_local char last_error[512];

/* Operations that never completed: MPI may still write into their buffers, and requests of collectives can be
 * neither cancelled nor freed, so they stay here, reachable, until the process ends. */
static struct pending *abandoned;

__attribute__((format(printf, 2, 3))) static ncclResult_t fail(ncclResult_t r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return r;
}

static ncclResult_t mpi_fail(int rc, const char *what, const char *step)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
    return fail(ncclSystemError, "%s: %s: %s", what, step, msg);
}

static ncclResult_t cuda_fail(cudaError_t e, const char *what, const char *step)
{
    cudaGetLastError(); /* reported here as an NCCL error: not left behind for the caller's next CUDA check */
    return fail(ncclUnhandledCudaError, "%s: %s: %s", what, step, cudaGetErrorString(e));
}

/* A failure part-way through an operation leaves the communicator failed, as in NCCL. */
static ncclResult_t poison(ncclComm_t comm, ncclResult_t r)
{
    if (comm->error == ncclSuccess) comm->error = r;
    return r;
}

/* What a call returns while its operation is still pending: only a non-blocking communicator says so. */
static ncclResult_t pending_result(const struct ncclComm *comm)
{
    return comm->blocking ? ncclSuccess : ncclInProgress;
}

/* ---- fault injection: ZF_NCCL_EMU_FAIL / ZF_NCCL_EMU_HANG = init | reduce | broadcast, ZF_NCCL_EMU_RANK = r ------ */

/* Whether environment variable var names operation op; a name that is no operation is an error, so that a
 * misspelt test cannot pass without its fault. */
static ncclResult_t env_names_op(const char *var, const char *op, bool *named)
{
    *named = false;
    const char *v = getenv(var);
    if (!v || !*v) return ncclSuccess;
    if (strcmp(v, "init") && strcmp(v, "reduce") && strcmp(v, "broadcast"))
        return fail(ncclInvalidArgument, "%s=%s: expected init, reduce or broadcast", var, v);
    *named = !strcmp(v, op);
    return ncclSuccess;
}

static ncclResult_t injection_here(bool *here)
{
    *here = true;
    const char *v = getenv("ZF_NCCL_EMU_RANK");
    if (!v || !*v) return ncclSuccess;
    char *end = NULL;
    errno = 0;
    long want = strtol(v, &end, 10);
    if (errno || *end || want < 0 || want > INT_MAX)
        return fail(ncclInvalidArgument, "ZF_NCCL_EMU_RANK=%s: expected a rank of MPI_COMM_WORLD", v);
    int world_rank = 0;
    int rc = MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "ZF_NCCL_EMU_RANK", "querying the world rank");
    *here = world_rank == want;
    return ncclSuccess;
}

/* The fault the environment injects into operation op on this rank; a failure wins over a hang. */
static ncclResult_t injected_fault(const char *op, enum fault *fault)
{
    bool fails = false, hangs = false, here = false;
    *fault = FAULT_NONE;
    ncclResult_t r = env_names_op("ZF_NCCL_EMU_FAIL", op, &fails);
    if (r == ncclSuccess) r = env_names_op("ZF_NCCL_EMU_HANG", op, &hangs);
    if (r == ncclSuccess) r = injection_here(&here);
    if (r != ncclSuccess) return r;
    if (here) *fault = fails ? FAULT_FAIL : hangs ? FAULT_HANG : FAULT_NONE;
    return ncclSuccess;
}

/* ---- unique id and communicator set-up --------------------------------------------------------------------------- */

ncclResult_t ncclGetUniqueId(ncclUniqueId *uniqueId)
{
    if (!uniqueId) return fail(ncclInvalidArgument, "ncclGetUniqueId: uniqueId is NULL");
    static unsigned long calls;
    struct {
        pid_t pid;
        unsigned long call;
        struct timespec time;
        char host[64];
    } seed;
    _Static_assert(sizeof seed <= NCCL_UNIQUE_ID_BYTES, "the id's seed must fit the id");
    memset(&seed, 0, sizeof seed); /* padding included: ids are compared byte for byte */
    seed.pid = getpid();
    seed.call = ++calls;
    clock_gettime(CLOCK_REALTIME, &seed.time);
    if (gethostname(seed.host, sizeof seed.host - 1) != 0) seed.host[0] = '\0';
    memset(uniqueId, 0, sizeof *uniqueId);
    memcpy(uniqueId->internal, &seed, sizeof seed);
    return ncclSuccess;
}

static uint64_t id_hash(const ncclUniqueId *id)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    for (size_t i = 0; i < sizeof id->internal; i++) h = (h ^ (unsigned char)id->internal[i]) * 0x100000001b3u;
    return h;
}

static ncclResult_t check_init_args(const ncclComm_t *comm, int nranks, int rank, const ncclConfig_t *config)
{
    const char *what = "ncclCommInitRankConfig";
    if (!comm) return fail(ncclInvalidArgument, "%s: comm is NULL", what);
    if (nranks < 1) return fail(ncclInvalidArgument, "%s: nranks %d: expected at least 1", what, nranks);
    if (rank < 0 || rank >= nranks)
        return fail(ncclInvalidArgument, "%s: rank %d: expected 0 .. %d", what, rank, nranks - 1);
    if (config && config->magic != CONFIG_MAGIC)
        return fail(ncclInvalidArgument, "%s: the config was not set from NCCL_CONFIG_INITIALIZER", what);
    if (config && config->blocking != NCCL_CONFIG_UNDEF_INT && config->blocking != 0 && config->blocking != 1)
        return fail(ncclInvalidArgument, "%s: config blocking %d: expected 0 or 1", what, config->blocking);
    return ncclSuccess;
}

/* The MPI communicator of every world rank, ordered by the NCCL rank. */
static ncclResult_t form_group(int rank, MPI_Comm *mpi)
{
    const char *what = "ncclCommInitRankConfig";
    int rc = MPI_Comm_split(MPI_COMM_WORLD, 0, rank, mpi);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, what, "splitting MPI_COMM_WORLD");
    /* failures come back as codes, reported as NCCL errors, whatever handler the world has */
    rc = MPI_Comm_set_errhandler(*mpi, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) return ncclSuccess;
    MPI_Comm_free(mpi);
    return mpi_fail(rc, what, "setting the error handler");
}

/* The checks the ranks make together, each a 0/1 flag but the id's hash and its complement: equal maxima of both
 * mean equal hashes everywhere. */
enum { AGREE_HASH, AGREE_HASH_COMPLEMENT, AGREE_BAD_ARGS, AGREE_BAD_SIZE, AGREE_BAD_RANK, AGREE_N };

/* Whether the group forms one communicator: every rank's arguments valid, nranks its size, the ranks distinct and
 * one id. A rank whose own arguments are bad keeps its own message. */
static ncclResult_t agree_on_group(MPI_Comm mpi, int nranks, int rank, const ncclUniqueId *id, bool bad_args)
{
    const char *what = "ncclCommInitRankConfig";
    int size = 0, me = 0;
    int rc = MPI_Comm_size(mpi, &size);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(mpi, &me);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, what, "querying the new communicator");
    uint64_t hash = id_hash(id);
    uint64_t mine[AGREE_N] = {hash, ~hash, bad_args, !bad_args && size != nranks, !bad_args && me != rank};
    uint64_t all[AGREE_N];
    rc = MPI_Allreduce(mine, all, AGREE_N, MPI_UINT64_T, MPI_MAX, mpi);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, what, "agreeing on the communicator");
    if (bad_args) return ncclInvalidArgument;
    if (all[AGREE_BAD_ARGS]) return fail(ncclInvalidArgument, "%s: another rank passed invalid arguments", what);
    if (all[AGREE_HASH] != hash || all[AGREE_HASH_COMPLEMENT] != ~hash)
        return fail(ncclInvalidArgument, "%s: the ranks passed different unique ids", what);
    if (all[AGREE_BAD_SIZE])
        return fail(ncclInvalidArgument, "%s: %d ranks of MPI_COMM_WORLD called it, and nranks is %d here: every world "
                    "rank takes part, all with nranks the world's size", what, size, nranks);
    if (all[AGREE_BAD_RANK])
        return fail(ncclInvalidArgument, "%s: rank %d here: the ranks passed must be distinct", what, rank);
    return ncclSuccess;
}

static ncclResult_t comm_new(MPI_Comm mpi, int nranks, int rank, const ncclConfig_t *config, ncclComm_t *comm)
{
    struct ncclComm *c = calloc(1, sizeof *c);
    if (!c) return fail(ncclSystemError, "ncclCommInitRankConfig: out of memory for the communicator");
    c->mpi = mpi;
    c->nranks = nranks;
    c->rank = rank;
    c->blocking = !config || config->blocking != 0; /* NCCL's default is blocking */
    *comm = c;
    return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank, ncclConfig_t *config)
{
    const char *what = "ncclCommInitRankConfig";
    int mpi_up = 0;
    if (MPI_Initialized(&mpi_up) != MPI_SUCCESS || !mpi_up)
        return fail(ncclInvalidUsage, "%s: MPI is not initialized", what);
    if (comm) *comm = NULL;
    enum fault fault = FAULT_NONE;
    ncclResult_t local = check_init_args(comm, nranks, rank, config);
    if (local == ncclSuccess) local = injected_fault("init", &fault);
    /* every world rank takes part in the set-up, whatever its own arguments and faults, so that the ranks stay
     * in step on MPI_COMM_WORLD */
    MPI_Comm mpi = MPI_COMM_NULL;
    ncclResult_t r = form_group(rank, &mpi);
    if (r != ncclSuccess) return r;
    ncclResult_t agreed = agree_on_group(mpi, nranks, rank, &commId, local != ncclSuccess);
    r = local != ncclSuccess ? local : agreed;
    if (r == ncclSuccess && fault == FAULT_FAIL)
        r = fail(ncclSystemError, "%s: injected failure (ZF_NCCL_EMU_FAIL=init)", what);
    if (r == ncclSuccess) r = comm_new(mpi, nranks, rank, config, comm);
    if (r != ncclSuccess) {
        MPI_Comm_free(&mpi);
        return r;
    }
    (*comm)->hung = fault == FAULT_HANG;
    return (*comm)->hung ? pending_result(*comm) : ncclSuccess;
}

/* ---- operations in flight ---------------------------------------------------------------------------------------- */

static void pending_free(struct pending *op)
{
    free(op->requests);
    free(op->host);
    free(op);
}

static void abandon(struct pending *op)
{
    if (op->nrequests == 0) {
        pending_free(op);
        return;
    }
    op->next = abandoned;
    abandoned = op;
}

/* Whether count elements of elem bytes fit in memory and in an int count of pieces (of elements or of bytes). */
static ncclResult_t check_size(const char *what, size_t count, size_t elem)
{
    if (count > SIZE_MAX / elem || count * elem / ZF_NCCL_EMU_PIECE >= INT_MAX)
        return fail(ncclInvalidArgument, "%s: count %zu of %zu-byte elements: too large", what, count, elem);
    return ncclSuccess;
}

static ncclResult_t pending_new(const char *what, size_t count, size_t elem, struct pending **op)
{
    size_t pieces = (count + ZF_NCCL_EMU_PIECE - 1) / ZF_NCCL_EMU_PIECE;
    struct pending *p = calloc(1, sizeof *p);
    if (p) p->requests = malloc(pieces * sizeof *p->requests);
    if (p) p->host = malloc(count * elem);
    if (!p || !p->requests || !p->host) {
        if (p) pending_free(p);
        return fail(ncclSystemError, "%s: out of host memory for %zu bytes of staging", what, count * elem);
    }
    p->what = what;
    p->bytes = count * elem;
    *op = p;
    return ncclSuccess;
}

/* Moves the pending operation on, or with `wait` waits for it; once MPI is done the result goes to the device. */
static ncclResult_t progress(ncclComm_t comm, bool wait)
{
    struct pending *op = comm->op;
    if (!op) return ncclSuccess;
    int done = 1;
    int rc = wait ? MPI_Waitall(op->nrequests, op->requests, MPI_STATUSES_IGNORE)
                  : MPI_Testall(op->nrequests, op->requests, &done, MPI_STATUSES_IGNORE);
    if (rc == MPI_SUCCESS && !done) return ncclInProgress;
    comm->op = NULL;
    if (rc != MPI_SUCCESS) {
        ncclResult_t r = mpi_fail(rc, op->what, "completing the MPI collective");
        abandon(op);
        return poison(comm, r);
    }
    cudaError_t e = op->dest ? cudaMemcpy(op->dest, op->host, op->bytes, cudaMemcpyHostToDevice) : cudaSuccess;
    ncclResult_t r = e == cudaSuccess ? ncclSuccess : cuda_fail(e, op->what, "copying the result to the device");
    pending_free(op);
    return poison(comm, r);
}

/* The started operation becomes the communicator's pending one; rc tells whether starting its pieces failed. */
static ncclResult_t launch(ncclComm_t comm, struct pending *op, int rc)
{
    if (rc != MPI_SUCCESS) {
        ncclResult_t r = mpi_fail(rc, op->what, "starting the MPI collective");
        abandon(op);
        return poison(comm, r);
    }
    comm->op = op;
    ncclResult_t r = progress(comm, comm->blocking);
    return r == ncclInProgress ? pending_result(comm) : r;
}

/* Whether comm can start a collective: usable, a valid root, and the previous operation completed, in order. */
static ncclResult_t collective_ready(ncclComm_t comm, const char *what, int root)
{
    if (!comm) return fail(ncclInvalidArgument, "%s: comm is NULL", what);
    if (comm->finalized) return fail(ncclInvalidUsage, "%s: the communicator was finalized", what);
    if (comm->error != ncclSuccess)
        return fail(comm->error, "%s: the communicator failed before: %s", what, ncclGetErrorString(comm->error));
    if (comm->hung)
        return fail(ncclInvalidUsage, "%s: the communicator's previous operation never completes (ZF_NCCL_EMU_HANG)",
                    what);
    if (root < 0 || root >= comm->nranks)
        return fail(ncclInvalidArgument, "%s: root %d: expected 0 .. %d", what, root, comm->nranks - 1);
    return progress(comm, true);
}

static ncclResult_t check_buffer(const void *buf, const char *what, const char *name)
{
    return buf ? ncclSuccess : fail(ncclInvalidArgument, "%s: %s is NULL", what, name);
}

/* An injected fault: a failure, or an operation that never completes. Either way this rank enters no MPI call,
 * so its peers' operations stay pending on the communicator's own MPI communicator and MPI_COMM_WORLD stays
 * usable. */
static ncclResult_t inject(ncclComm_t comm, enum fault fault, const char *what, const char *op)
{
    if (fault == FAULT_HANG) {
        comm->hung = true;
        return pending_result(comm);
    }
    return poison(comm, fail(ncclSystemError, "%s: injected failure (ZF_NCCL_EMU_FAIL=%s)", what, op));
}

/* The host copy an operation works on, holding this rank's data (none when src is NULL), taken after the work
 * queued on stream. */
static ncclResult_t stage_in(ncclComm_t comm, const char *what, cudaStream_t stream, const void *src, size_t count,
                             size_t elem, struct pending **op)
{
    cudaError_t e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) return poison(comm, cuda_fail(e, what, "synchronizing the stream"));
    ncclResult_t r = pending_new(what, count, elem, op);
    if (r != ncclSuccess) return poison(comm, r);
    if (!src) return ncclSuccess;
    e = cudaMemcpy((*op)->host, src, count * elem, cudaMemcpyDeviceToHost);
    if (e == cudaSuccess) return ncclSuccess;
    pending_free(*op);
    return poison(comm, cuda_fail(e, what, "copying the data to the host"));
}

/* ---- collectives ------------------------------------------------------------------------------------------------- */

static size_t type_size(ncclDataType_t type)
{
    switch (type) {
    case ncclInt8: case ncclUint8: case ncclFloat8e4m3: case ncclFloat8e5m2: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
    }
}

/* MPI has no 16- or 8-bit floating-point types: those can be broadcast, not reduced. */
static MPI_Datatype mpi_reduce_type(ncclDataType_t type)
{
    switch (type) {
    case ncclInt8: return MPI_INT8_T;
    case ncclUint8: return MPI_UINT8_T;
    case ncclInt32: return MPI_INT32_T;
    case ncclUint32: return MPI_UINT32_T;
    case ncclInt64: return MPI_INT64_T;
    case ncclUint64: return MPI_UINT64_T;
    case ncclFloat32: return MPI_FLOAT;
    case ncclFloat64: return MPI_DOUBLE;
    default: return MPI_DATATYPE_NULL;
    }
}

static MPI_Op mpi_reduce_op(ncclRedOp_t op)
{
    switch (op) {
    case ncclSum: return MPI_SUM;
    case ncclProd: return MPI_PROD;
    case ncclMax: return MPI_MAX;
    case ncclMin: return MPI_MIN;
    default: return MPI_OP_NULL;
    }
}

static ncclResult_t check_reduce(ncclDataType_t datatype, ncclRedOp_t op, const char *what)
{
    if (mpi_reduce_type(datatype) == MPI_DATATYPE_NULL)
        return fail(ncclInvalidArgument, "%s: datatype %d: the emulation reduces 8-, 32- and 64-bit integers, float "
                    "and double", what, (int)datatype);
    if (mpi_reduce_op(op) == MPI_OP_NULL)
        return fail(ncclInvalidArgument, "%s: op %d: expected ncclSum, ncclProd, ncclMax or ncclMin", what, (int)op);
    return ncclSuccess;
}

/* MPI's reduction of the staged data, piece by piece; root's result lands in its staging buffer. */
static int start_reduce(ncclComm_t comm, struct pending *op, size_t count, ncclDataType_t datatype, ncclRedOp_t nop,
                        int root)
{
    MPI_Datatype type = mpi_reduce_type(datatype);
    MPI_Op mop = mpi_reduce_op(nop);
    size_t elem = type_size(datatype);
    for (size_t off = 0; off < count; off += ZF_NCCL_EMU_PIECE) {
        int n = (int)(count - off < ZF_NCCL_EMU_PIECE ? count - off : ZF_NCCL_EMU_PIECE);
        char *at = (char *)op->host + off * elem;
        MPI_Request *req = &op->requests[op->nrequests];
        int rc = comm->rank == root ? MPI_Ireduce(MPI_IN_PLACE, at, n, type, mop, root, comm->mpi, req)
                                    : MPI_Ireduce(at, NULL, n, type, mop, root, comm->mpi, req);
        if (rc != MPI_SUCCESS) return rc;
        op->nrequests++;
    }
    return MPI_SUCCESS;
}

ncclResult_t ncclReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                        int root, ncclComm_t comm, cudaStream_t stream)
{
    const char *what = "ncclReduce";
    enum fault fault = FAULT_NONE;
    ncclResult_t r = collective_ready(comm, what, root);
    if (r == ncclSuccess) r = check_reduce(datatype, op, what);
    if (r == ncclSuccess) r = injected_fault("reduce", &fault);
    if (r != ncclSuccess) return r;
    if (fault != FAULT_NONE) return inject(comm, fault, what, "reduce");
    if (count == 0) return ncclSuccess;
    bool is_root = comm->rank == root;
    size_t elem = type_size(datatype);
    r = check_size(what, count, elem);
    if (r == ncclSuccess) r = check_buffer(sendbuff, what, "sendbuff");
    if (r == ncclSuccess && is_root) r = check_buffer(recvbuff, what, "recvbuff on the root");
    struct pending *p = NULL;
    if (r == ncclSuccess) r = stage_in(comm, what, stream, sendbuff, count, elem, &p);
    if (r != ncclSuccess) return r;
    p->dest = is_root ? recvbuff : NULL;
    return launch(comm, p, start_reduce(comm, p, count, datatype, op, root));
}

/* MPI's broadcast of the staged bytes, piece by piece. */
static int start_broadcast(ncclComm_t comm, struct pending *op, int root)
{
    for (size_t off = 0; off < op->bytes; off += ZF_NCCL_EMU_PIECE) {
        int n = (int)(op->bytes - off < ZF_NCCL_EMU_PIECE ? op->bytes - off : ZF_NCCL_EMU_PIECE);
        int rc = MPI_Ibcast((char *)op->host + off, n, MPI_BYTE, root, comm->mpi, &op->requests[op->nrequests]);
        if (rc != MPI_SUCCESS) return rc;
        op->nrequests++;
    }
    return MPI_SUCCESS;
}

ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream)
{
    const char *what = "ncclBroadcast";
    enum fault fault = FAULT_NONE;
    ncclResult_t r = collective_ready(comm, what, root);
    if (r == ncclSuccess && type_size(datatype) == 0)
        r = fail(ncclInvalidArgument, "%s: datatype %d: not an NCCL type", what, (int)datatype);
    if (r == ncclSuccess) r = injected_fault("broadcast", &fault);
    if (r != ncclSuccess) return r;
    if (fault != FAULT_NONE) return inject(comm, fault, what, "broadcast");
    if (count == 0) return ncclSuccess;
    bool is_root = comm->rank == root;
    size_t elem = type_size(datatype); /* any type goes as bytes */
    r = check_size(what, count, elem);
    if (r == ncclSuccess) r = check_buffer(recvbuff, what, "recvbuff");
    if (r == ncclSuccess && is_root) r = check_buffer(sendbuff, what, "sendbuff on the root");
    struct pending *p = NULL;
    if (r == ncclSuccess) r = stage_in(comm, what, stream, is_root ? sendbuff : NULL, count * elem, 1, &p);
    if (r != ncclSuccess) return r;
    p->dest = is_root && sendbuff == recvbuff ? NULL : recvbuff;
    return launch(comm, p, start_broadcast(comm, p, root));
}

/* ---- state and teardown ------------------------------------------------------------------------------------------ */

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError)
{
    if (!comm || !asyncError) return fail(ncclInvalidArgument, "ncclCommGetAsyncError: comm or asyncError is NULL");
    ncclResult_t state = comm->error;
    if (state == ncclSuccess) state = comm->hung ? ncclInProgress : progress(comm, false);
    *asyncError = state;
    return ncclSuccess;
}

/* Frees comm without waiting: an operation still in flight is abandoned with the MPI communicator it uses;
 * otherwise MPI_Comm_free, which only marks the communicator for deallocation, releases that. */
static ncclResult_t comm_release(ncclComm_t comm, const char *what)
{
    int rc = MPI_SUCCESS, mpi_down = 0;
    if (comm->op) abandon(comm->op);
    else if (MPI_Finalized(&mpi_down) == MPI_SUCCESS && !mpi_down) rc = MPI_Comm_free(&comm->mpi);
    free(comm);
    return rc == MPI_SUCCESS ? ncclSuccess : mpi_fail(rc, what, "freeing the MPI communicator");
}

ncclResult_t ncclCommFinalize(ncclComm_t comm)
{
    const char *what = "ncclCommFinalize";
    if (!comm) return fail(ncclInvalidArgument, "%s: comm is NULL", what);
    if (comm->finalized) return fail(ncclInvalidUsage, "%s: the communicator was finalized before", what);
    comm->finalized = true;
    if (comm->error != ncclSuccess)
        return fail(comm->error, "%s: the communicator failed before: %s", what, ncclGetErrorString(comm->error));
    if (comm->hung) return pending_result(comm);
    ncclResult_t r = progress(comm, comm->blocking);
    return r == ncclInProgress ? pending_result(comm) : r;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
    if (!comm) return ncclSuccess;
    /* what is in flight completes first, as in ncclCommFinalize; a hung or failed operation is dropped */
    ncclResult_t r = comm->error == ncclSuccess && !comm->hung ? progress(comm, true) : ncclSuccess;
    ncclResult_t freed = comm_release(comm, "ncclCommDestroy");
    return r != ncclSuccess ? r : freed;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) { return comm ? comm_release(comm, "ncclCommAbort") : ncclSuccess; }

const char *ncclGetErrorString(ncclResult_t result)
{
    switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}

const char *ncclGetLastError(ncclComm_t comm)
{
    (void)comm; /* the last message of this thread, whichever communicator it came from */
    return last_error;
}
