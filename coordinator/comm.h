/* MPI communication for the coordinator and workers; a single process (size 1) never calls MPI. */
#ifndef ZF_COMM_H
#define ZF_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* An MPI call's result as a status: on failure ZF_ERR_INTERNAL naming the call, file:line, rank, host and
 * MPI's own message. */
zf_status zf_mpi_fail(int rc, const char *call, const char *file, int line);
#define ZF_MPI_CHECK(call) zf_mpi_fail((call), #call, __FILE__, __LINE__)

typedef struct {
    int rank;
    int size;
} zf_comm;

/* Initializes MPI (works without mpirun as a singleton) and the rank-prefixed log, and sets errors to return, so a failure is reported
 * with its message and then ends the job through MPI_Abort. */
zf_status zf_comm_init(int *argc, char ***argv, zf_comm *c);
void zf_comm_finalize(void);
/* The process-wide communicator (rank 0 of 1 when MPI was not initialized). */
const zf_comm *zf_comm_world(void);
/* Ends every rank of the job with code (MPI_Abort), or exits when alone. */
_Noreturn void zf_comm_abort(int code);

/* Small typed collectives for flags and counts; every rank calls them with the same n. */
/* Whether the flag is true on any rank. */
zf_status zf_comm_any(bool *flag);
/* Element-wise sums of n counts, in place. */
zf_status zf_comm_sum_i64(int64_t *v, int n);
/* root's n values to every rank. */
zf_status zf_comm_bcast_i64(int64_t *v, int n, int root);
zf_status zf_comm_bcast_bool(bool *flag, int root);

/* Element-wise sums, in place. Counts may exceed INT_MAX (sent in pieces). */
zf_status zf_comm_allreduce_f64(double *buf, int64_t n);
zf_status zf_comm_reduce_f32(float *buf, int64_t n, int root);
zf_status zf_comm_reduce_f64(double *buf, int64_t n, int root);
zf_status zf_comm_bcast(void *buf, size_t bytes, int root);
/* Every rank learns whether any rank failed: returns the worst status (and on failing ranks keeps their message). */
zf_status zf_comm_agree(zf_status local);
/* True when another rank prints this rank's failure: zf_comm_agree reported another rank's failure, or every
 * rank failed and this rank's message is rank 0's. */
int zf_comm_reported_elsewhere(void);

/* A subset of the world's ranks with its own collectives (an MPI communicator); the ranks in it are ordered as in
 * the world. */
typedef struct zf_team zf_team;
/* Collective over the world: the ranks passing the same color >= 0 form a team; *out is NULL for color < 0. */
zf_status zf_team_create(int color, zf_team **out);
void zf_team_free(zf_team *t);
int zf_team_rank(const zf_team *t);
int zf_team_size(const zf_team *t);
/* Collectives over the team, counted in zf_comm_bytes. */
zf_status zf_team_sum_f64(zf_team *t, double *v, int64_t n);
zf_status zf_team_bcast(zf_team *t, void *buf, size_t bytes, int root);
/* The team's worst status: a rank whose team failed elsewhere gets "another rank of its team failed", and the next
 * zf_comm_agree leaves the printing to the rank that failed. */
zf_status zf_team_agree(zf_team *t, zf_status local);

/* Payload bytes of the reductions and broadcasts this rank has taken part in so far. */
double zf_comm_bytes(void);

/* [lo, hi) of n items for this rank (contiguous, sizes differ by at most one). */
void zf_comm_split(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

#endif
