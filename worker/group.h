/* One layer group of a block (Q/K/V, O, gate/up, down): quantized together, then sliced, deployed and folded. */
#ifndef ZF_GROUP_H
#define ZF_GROUP_H

#include "common/model.h"
#include "worker/backend.h"
#include "worker/qblock.h"
#include "worker/quant.h"

/* A group's result as its owner computes it: the members' rows concatenated (they share ζ), and per member ΔL. */
typedef struct {
    zf_qresult res;
    double dl[3], dl_rtn[3];     /* per member ΔL after / before (min-max RTN) */
} zf_group_result;

/* This process's rows [row0, row0 + rows) of a group's concatenated members, quantized with a team that holds the
 * others (zf_row_team). */
typedef struct {
    int64_t row0, rows;
    const zf_row_team *team;
} zf_row_part;

/* Quantizes group g of block b with Hessian H and the weights of blk under options o: Z-FOLD falls back to OPTQ
 * where ζ cannot be folded, and ζ stays positive where it folds through OPT's ReLU. With a part (NULL: every row,
 * alone) gr holds the part's rows and the whole group's ζ and statistics. */
zf_status zf_group_quantize(zf_backend *be, const zf_quant_opts *o, const zf_model_config *c, int64_t b, zf_group g,
                            const float *H, const zf_block_weights *blk, const zf_row_part *part,
                            zf_group_result *gr);

/* Installs a group's result in qb: each member's rows, statistics and deployed weight, and with Z-FOLD the fold of
 * ζ into the preceding layer (the same on every rank, from the same result). */
zf_status zf_group_install(const zf_model_config *c, zf_method method, int64_t b, zf_group g,
                           const zf_group_result *gr, zf_qblock *qb);

#endif
