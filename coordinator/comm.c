/* MPI wrappers: chunked collectives, error agreement, abort; no-ops for a single process. */
#include "coordinator/comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"

static zf_comm world = {0, 1};
static int mpi_started = 0;
static int reported_elsewhere = 0; /* this rank's failure is printed by another */
static int team_echo = 0;          /* this rank's failure came from its team's agreement: printed by the rank that failed */
static double bytes_moved = 0; /* payload of collectives this rank took part in */

/* elements per collective call: bounds the library's temporary buffers (a reduction may hold one chunk more) */
#define CHUNK ((int64_t)1 << 24)

zf_status zf_mpi_fail(int rc, const char *call, const char *file, int line)
{
    if (rc == MPI_SUCCESS) return ZF_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
    return zf_check_fail(ZF_ERR_INTERNAL, call, file, line, msg);
}

zf_status zf_comm_init(int *argc, char ***argv, zf_comm *c)
{
    int provided = 0;
    ZF_TRY(ZF_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided)));
    mpi_started = 1;
    ZF_TRY(ZF_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN)));
    ZF_TRY(ZF_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world.rank)));
    ZF_TRY(ZF_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world.size)));
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
        if (all) ZF_TRY(ZF_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, at, cnt, type, MPI_SUM, MPI_COMM_WORLD)));
        else if (world.rank == root)
            ZF_TRY(ZF_MPI_CHECK(MPI_Reduce(MPI_IN_PLACE, at, cnt, type, MPI_SUM, root, MPI_COMM_WORLD)));
        else ZF_TRY(ZF_MPI_CHECK(MPI_Reduce(at, NULL, cnt, type, MPI_SUM, root, MPI_COMM_WORLD)));
    }
    return ZF_OK;
}

zf_status zf_comm_allreduce_f64(double *buf, int64_t n) { return reduce_any(buf, n, MPI_DOUBLE, sizeof(double), 0, 1); }
zf_status zf_comm_reduce_f32(float *buf, int64_t n, int root) { return reduce_any(buf, n, MPI_FLOAT, sizeof(float), root, 0); }
zf_status zf_comm_reduce_f64(double *buf, int64_t n, int root) { return reduce_any(buf, n, MPI_DOUBLE, sizeof(double), root, 0); }

zf_status zf_comm_any(bool *flag)
{
    if (world.size == 1) return ZF_OK;
    int in = *flag, out = 0;
    bytes_moved += sizeof in;
    ZF_TRY(ZF_MPI_CHECK(MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD)));
    *flag = out != 0;
    return ZF_OK;
}

zf_status zf_comm_sum_i64(int64_t *v, int n) { return reduce_any(v, n, MPI_INT64_T, sizeof *v, 0, 1); }

zf_status zf_comm_bcast_i64(int64_t *v, int n, int root)
{
    if (world.size == 1 || n <= 0) return ZF_OK;
    bytes_moved += (double)n * sizeof *v;
    return ZF_MPI_CHECK(MPI_Bcast(v, n, MPI_INT64_T, root, MPI_COMM_WORLD));
}

zf_status zf_comm_bcast_bool(bool *flag, int root)
{
    if (world.size == 1) return ZF_OK;
    int v = *flag;
    bytes_moved += sizeof v;
    ZF_TRY(ZF_MPI_CHECK(MPI_Bcast(&v, 1, MPI_INT, root, MPI_COMM_WORLD)));
    *flag = v != 0;
    return ZF_OK;
}

zf_status zf_comm_bcast(void *buf, size_t bytes, int root)
{
    if (world.size == 1) return ZF_OK;
    char *p = buf;
    for (size_t off = 0; off < bytes; off += (size_t)CHUNK) {
        int cnt = (int)(bytes - off < (size_t)CHUNK ? bytes - off : (size_t)CHUNK);
        bytes_moved += cnt;
        ZF_TRY(ZF_MPI_CHECK(MPI_Bcast(p + off, cnt, MPI_BYTE, root, MPI_COMM_WORLD)));
    }
    return ZF_OK;
}

static zf_status agree_world(zf_status local);

zf_status zf_comm_agree(zf_status local)
{
    reported_elsewhere = 0;
    if (team_echo && local != ZF_OK) {
        team_echo = 0;
        zf_status s = agree_world(local);
        reported_elsewhere = 1;
        return s;
    }
    team_echo = 0;
    return agree_world(local);
}

static zf_status agree_world(zf_status local)
{
    if (world.size == 1) return local;
    int in[2] = {(int)local, -(int)local}, out[2] = {0, 0}; /* the worst status, and minus the best */
    zf_status s = ZF_MPI_CHECK(MPI_Allreduce(in, out, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
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
        s = ZF_MPI_CHECK(MPI_Bcast(lead, (int)sizeof lead, MPI_CHAR, 0, MPI_COMM_WORLD));
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

struct zf_team {
    MPI_Comm comm;
    int rank, size;
};

zf_status zf_team_create(int color, zf_team **out)
{
    *out = NULL;
    MPI_Comm comm = MPI_COMM_NULL;
    if (world.size > 1)
        ZF_TRY(ZF_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color >= 0 ? color : MPI_UNDEFINED, world.rank, &comm)));
    if (color < 0) return ZF_OK;
    zf_team *t = zf_calloc(1, sizeof *t, "team");
    if (!t) {
        if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
        return ZF_ERR_NOMEM;
    }
    *t = (zf_team){comm, 0, 1};
    zf_status s = ZF_OK;
    if (comm != MPI_COMM_NULL) {
        s = ZF_MPI_CHECK(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
        if (s == ZF_OK) s = ZF_MPI_CHECK(MPI_Comm_rank(comm, &t->rank));
        if (s == ZF_OK) s = ZF_MPI_CHECK(MPI_Comm_size(comm, &t->size));
    }
    if (s != ZF_OK) zf_team_free(t);
    else *out = t;
    return s;
}

void zf_team_free(zf_team *t)
{
    if (!t) return;
    if (t->comm != MPI_COMM_NULL && mpi_started) MPI_Comm_free(&t->comm);
    free(t);
}

int zf_team_rank(const zf_team *t) { return t->rank; }
int zf_team_size(const zf_team *t) { return t->size; }

zf_status zf_team_sum_f64(zf_team *t, double *v, int64_t n)
{
    if (t->size == 1) return ZF_OK;
    for (int64_t off = 0; off < n; off += CHUNK) {
        int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
        bytes_moved += (double)cnt * sizeof(double);
        ZF_TRY(ZF_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v + off, cnt, MPI_DOUBLE, MPI_SUM, t->comm)));
    }
    return ZF_OK;
}

zf_status zf_team_bcast(zf_team *t, void *buf, size_t bytes, int root)
{
    if (t->size == 1) return ZF_OK;
    char *p = buf;
    for (size_t off = 0; off < bytes; off += (size_t)CHUNK) {
        int cnt = (int)(bytes - off < (size_t)CHUNK ? bytes - off : (size_t)CHUNK);
        bytes_moved += cnt;
        ZF_TRY(ZF_MPI_CHECK(MPI_Bcast(p + off, cnt, MPI_BYTE, root, t->comm)));
    }
    return ZF_OK;
}

zf_status zf_team_agree(zf_team *t, zf_status local)
{
    if (t->size == 1) return local;
    int in = (int)local, worst = 0;
    ZF_TRY(ZF_MPI_CHECK(MPI_Allreduce(&in, &worst, 1, MPI_INT, MPI_MAX, t->comm)));
    if (worst == ZF_OK || local != ZF_OK) return local;
    team_echo = 1;
    return zf_fail((zf_status)worst, "another rank of this rank's team failed (see its error)");
}
