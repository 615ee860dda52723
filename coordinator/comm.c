/* MPI wrappers: chunked collectives, error agreement, abort; no-ops for a single process. */
#include "coordinator/comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static zf_comm world = {0, 1};
static int mpi_started = 0;
static int reported_elsewhere = 0; /* this rank's failure is printed by another */
static double bytes_moved = 0; /* payload of collectives this rank took part in */

#define CHUNK ((int64_t)1 << 28)

static zf_status mpi_check(int rc, const char *what)
{
    if (rc == MPI_SUCCESS) return ZF_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return zf_fail(ZF_ERR_INTERNAL, "MPI %s failed on rank %d: %s", what, world.rank, msg);
}

zf_status zf_comm_init(int *argc, char ***argv, zf_comm *c)
{
    int provided = 0;
    ZF_TRY(mpi_check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "init"));
    mpi_started = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world.size);
    zf_log_init(world.rank, world.size);
    *c = world;
    return ZF_OK;
}

void zf_comm_finalize(void)
{
    if (mpi_started) MPI_Finalize();
    mpi_started = 0;
}

const zf_comm *zf_comm_world(void) { return &world; }

_Noreturn void zf_comm_abort(int code)
{
    fflush(stdout);
    fflush(stderr);
    if (mpi_started && world.size > 1) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

static zf_status reduce_any(void *buf, int64_t n, MPI_Datatype type, size_t elem, int root, int all)
{
    if (world.size == 1) return ZF_OK;
    char *p = buf;
    for (int64_t off = 0; off < n; off += CHUNK) {
        int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
        void *at = p + (size_t)off * elem;
        bytes_moved += (double)cnt * (double)elem;
        int rc;
        if (all) rc = MPI_Allreduce(MPI_IN_PLACE, at, cnt, type, MPI_SUM, MPI_COMM_WORLD);
        else if (world.rank == root) rc = MPI_Reduce(MPI_IN_PLACE, at, cnt, type, MPI_SUM, root, MPI_COMM_WORLD);
        else rc = MPI_Reduce(at, NULL, cnt, type, MPI_SUM, root, MPI_COMM_WORLD);
        ZF_TRY(mpi_check(rc, all ? "allreduce" : "reduce"));
    }
    return ZF_OK;
}

zf_status zf_comm_allreduce_f64(double *buf, int64_t n) { return reduce_any(buf, n, MPI_DOUBLE, sizeof(double), 0, 1); }
zf_status zf_comm_reduce_f32(float *buf, int64_t n, int root) { return reduce_any(buf, n, MPI_FLOAT, sizeof(float), root, 0); }
zf_status zf_comm_reduce_f64(double *buf, int64_t n, int root) { return reduce_any(buf, n, MPI_DOUBLE, sizeof(double), root, 0); }

zf_status zf_comm_bcast(void *buf, size_t bytes, int root)
{
    if (world.size == 1) return ZF_OK;
    char *p = buf;
    for (size_t off = 0; off < bytes; off += (size_t)CHUNK) {
        int cnt = (int)(bytes - off < (size_t)CHUNK ? bytes - off : (size_t)CHUNK);
        bytes_moved += cnt;
        ZF_TRY(mpi_check(MPI_Bcast(p + off, cnt, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast"));
    }
    return ZF_OK;
}

zf_status zf_comm_agree(zf_status local)
{
    reported_elsewhere = 0;
    if (world.size == 1) return local;
    int in[2] = {(int)local, -(int)local}, out[2] = {0, 0}; /* the worst status, and minus the best */
    zf_status s = mpi_check(MPI_Allreduce(in, out, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "status agreement");
    if (s != ZF_OK) return s;
    if (out[0] == ZF_OK) return ZF_OK;
    if (local == ZF_OK) {
        reported_elsewhere = 1;
        return zf_fail((zf_status)out[0], "another rank failed (see its error)");
    }
    if (-out[1] != ZF_OK) {
        /* every rank failed: when a rank's message is rank 0's (no GPU anywhere, a file all of them read), only
         * rank 0 prints it */
        char lead[2048];
        snprintf(lead, sizeof lead, "%s", zf_last_error());
        s = mpi_check(MPI_Bcast(lead, (int)sizeof lead, MPI_CHAR, 0, MPI_COMM_WORLD), "message agreement");
        if (s != ZF_OK) return s;
        if (world.rank != 0 && !strcmp(lead, zf_last_error())) reported_elsewhere = 1;
    }
    return local;
}

void zf_comm_split(int64_t n, int rank, int size, int64_t *lo, int64_t *hi)
{
    int64_t base = n / size, extra = n % size;
    *lo = rank * base + (rank < extra ? rank : extra);
    *hi = *lo + base + (rank < extra ? 1 : 0);
}

int zf_comm_reported_elsewhere(void) { return reported_elsewhere; }

double zf_comm_bytes(void) { return bytes_moved; }
