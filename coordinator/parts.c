/* Owners and row-splitting teams for one block's groups, and the flops model that sizes the teams. */
#include "coordinator/parts.h"

#include "coordinator/comm.h"
#include "coordinator/pipeline.h"

double zf_quant_flops(const zf_quant_opts *q, double rows, double cols, int als_iters)
{
    double form = 2.0 * rows * cols * cols; /* one pass of ΔW·H over the rows */
    double optq = q->method == ZF_METHOD_RTN ? 0 : cols * cols * cols / 3.0 * 2 + form;
    /* the RTN baseline; RTN's own ΔL is that same figure unless its grid is not min-max */
    int stats = q->delta_loss_rtn ? 1 + (q->method == ZF_METHOD_RTN && q->grid != ZF_GRID_MINMAX) : 0;
    return optq + als_iters * form + stats * form;
}

/* One team member's flops when group g's rows are split k ways (the factor is every member's). */
static double part_flops(const zf_model_config *c, const zf_quant_opts *q, zf_group g, int k, int iters)
{
    double rows = (double)zf_group_out(c, g);
    return zf_quant_flops(q, (rows + k - 1) / k, (double)zf_group_in(c, g), iters);
}

zf_status zf_assign_parts(const zf_model_config *c, const zf_quant_opts *q, int nranks, bool split, zf_block_parts *p)
{
    if (!split || nranks <= ZF_NGROUP) {
        ZF_TRY(zf_assign_owners(c, 1, nranks, p->first));
        for (int g = 0; g < ZF_NGROUP; g++) p->n[g] = 1;
        return ZF_OK;
    }
    int iters = q->method == ZF_METHOD_ZFOLD ? q->als_max_iter : 0;
    for (int g = 0; g < ZF_NGROUP; g++) p->n[g] = 1;
    for (int spare = nranks - ZF_NGROUP; spare > 0; spare--) {
        int worst = 0;
        for (int g = 1; g < ZF_NGROUP; g++)
            if (part_flops(c, q, (zf_group)g, p->n[g], iters) > part_flops(c, q, (zf_group)worst, p->n[worst], iters)) worst = g;
        int k = p->n[worst];
        if (k >= zf_group_out(c, (zf_group)worst) ||
            part_flops(c, q, (zf_group)worst, k + 1, iters) > 0.99 * part_flops(c, q, (zf_group)worst, k, iters))
            break;
        p->n[worst] = k + 1;
    }
    for (int g = 0, next = 0; g < ZF_NGROUP; g++) {
        p->first[g] = next;
        next += p->n[g];
    }
    return ZF_OK;
}

void zf_part_rows(const zf_model_config *c, const zf_block_parts *p, zf_group g, int i, int64_t *lo, int64_t *hi)
{
    zf_comm_split(zf_group_out(c, g), i, p->n[g], lo, hi);
}

int zf_parts_team_of(const zf_block_parts *p, int rank)
{
    for (int g = 0; g < ZF_NGROUP; g++)
        if (p->n[g] > 1 && rank >= p->first[g] && rank < p->first[g] + p->n[g]) return g;
    return -1;
}

bool zf_parts_member(const zf_block_parts *p, zf_group g, int rank)
{
    return rank >= p->first[g] && rank < p->first[g] + p->n[g];
}
