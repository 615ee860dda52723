/* Quantization options of one layer: method, grid, Z-FOLD settings; defaults, names and checks. */
#ifndef ZF_QUANT_OPTS_H
#define ZF_QUANT_OPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"

typedef enum { ZF_METHOD_RTN = 0, ZF_METHOD_OPTQ, ZF_METHOD_ZFOLD } zf_method;
typedef enum { ZF_GRID_MINMAX = 0, ZF_GRID_MMSE, ZF_GRID_HESSIAN } zf_grid_kind;
typedef enum { ZF_ALPHA_LSQ = 0, ZF_ALPHA_GRID } zf_alpha_mode;

typedef struct {
    zf_method method;
    int bits;                /* 2..8 */
    bool sym;
    int64_t group_size;      /* <= 0: one grid per output channel */
    zf_grid_kind grid;       /* how RTN/OPTQ grids (and Z-FOLD's initial α) are chosen */
    double mmse_norm;        /* exponent of the MMSE error, 2.4 as the reference */
    int grid_points;         /* clip ratios tried by MMSE/Hessian grids (100) */
    double max_shrink;       /* MMSE tries ratios 1 .. 1-max_shrink (0.8) */
    double damp;             /* λ = damp · mean(diag H), 0.01 */
    int damp_retries;        /* times the damp is multiplied by 10 after a failed Cholesky (4) */
    int64_t block_size;      /* OPTQ lazy-update block (128) */
    bool act_order;
    bool static_groups;
    zf_alpha_mode alpha;     /* Z-FOLD α update: Hessian-weighted least squares (paper) or grid search (official code) */
    int als_max_iter;        /* 30 */
    bool zeta_positive;      /* ζ must stay > 0 (fold through ReLU) */
    bool zfold_optq;         /* Algorithm 2: OPTQ on the ζ·α grid after the ALS (true) */
} zf_quant_opts;

void zf_quant_opts_default(zf_quant_opts *o);
const char *zf_method_name(zf_method m);
const char *zf_grid_name(zf_grid_kind g);
const char *zf_alpha_name(zf_alpha_mode a);
/* Parses "rtn"/"optq"/"gptq"/"zfold"; returns -1 when unknown. */
int zf_method_parse(const char *s, zf_method *out);
int zf_grid_parse(const char *s, zf_grid_kind *out);
int zf_alpha_parse(const char *s, zf_alpha_mode *out);
/* Checks ranges and combinations; the message names the option and what is allowed. */
zf_status zf_quant_opts_check(const zf_quant_opts *o);

#endif
