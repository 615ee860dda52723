/* How the sequential schedule spreads a block's four layer groups over the ranks: an owner each, or teams that split
 * each group's rows when there are more ranks than groups. */
#ifndef ZF_PARTS_H
#define ZF_PARTS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/model.h"
#include "worker/quant_opts.h"

/* Group g is quantized by ranks first[g] .. first[g] + n[g] - 1, each its share of the rows (zf_part_rows); the
 * first one owns the group's Hessian. Teams of more than one rank never share a rank. */
typedef struct zf_block_parts {
    int first[ZF_NGROUP], n[ZF_NGROUP];
} zf_block_parts;

/* Flops of quantizing a [rows, cols] layer with q: OPTQ's inverse factor and column loop (not for RTN), als_iters
 * Z-FOLD rounds of two row quadratic forms each, and the ΔL quadratic forms delta_loss_rtn asks for. */
double zf_quant_flops(const zf_quant_opts *q, double rows, double cols, int als_iters);

/* The same answer on every rank. With split and more ranks than groups, every group gets its own team, and the
 * spare ranks join the team whose part costs most while that cuts its cost by at least 1 %; otherwise one owner
 * per group (zf_assign_owners). */
zf_status zf_assign_parts(const zf_model_config *c, const zf_quant_opts *q, int nranks, bool split, zf_block_parts *p);
/* Rows [lo, hi) of group g's concatenated members for the team's i-th rank. */
void zf_part_rows(const zf_model_config *c, const zf_block_parts *p, zf_group g, int i, int64_t *lo, int64_t *hi);
/* The group whose team of two or more ranks holds rank, or -1. */
int zf_parts_team_of(const zf_block_parts *p, int rank);
/* Whether rank takes part in group g (its owner or a team member). */
bool zf_parts_member(const zf_block_parts *p, zf_group g, int rank);

#endif
