/* Quantization options of one layer: the option descriptors (defaults, ranges, names, reach), names and checks. */
#ifndef ZF_QUANT_OPTS_H
#define ZF_QUANT_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef enum { ZF_METHOD_RTN = 0, ZF_METHOD_OPTQ, ZF_METHOD_ZFOLD } zf_method;
typedef enum { ZF_GRID_MINMAX = 0, ZF_GRID_MMSE, ZF_GRID_HESSIAN } zf_grid_kind;
typedef enum { ZF_ALPHA_LSQ = 0, ZF_ALPHA_GRID, ZF_ALPHA_DIAG } zf_alpha_mode;
typedef enum { ZF_WIDEN_OFF = 0, ZF_WIDEN_LAYER, ZF_WIDEN_ROW } zf_widen_mode;

typedef struct {
    zf_method method;
    int bits;
    bool sym;
    int64_t group_size;      /* <= 0: one grid per output channel */
    zf_grid_kind grid;       /* how RTN/OPTQ grids (and Z-FOLD's initial α) are chosen */
    double mmse_norm;        /* exponent of the MMSE error */
    int grid_points;         /* clip ratios tried by MMSE/Hessian grids */
    double max_shrink;       /* MMSE tries ratios 1 .. 1-max_shrink (not a config key) */
    double damp;             /* λ = damp · mean(diag H) */
    int damp_retries;        /* times the damp is multiplied by 10 after a failed Cholesky */
    int64_t block_size;      /* OPTQ lazy-update block */
    bool act_order;
    bool static_groups;
    zf_alpha_mode alpha;     /* Z-FOLD ALS α update: least squares on H (paper), grid search (official code), or
                                least squares with the zero point on H's diagonal */
    int als_max_iter;
    double als_tol;          /* Z-FOLD: the ALS stops once an iteration lowers its loss by less than this fraction */
    zf_widen_mode grid_widen; /* Z-FOLD: the ALS grid's scales stretched where OPTQ's ΔL falls (one factor or per row) */
    double grid_widen_sample; /* Z-FOLD's layer widening: fraction of the rows it is chosen on */
    bool refit;              /* Z-FOLD: α and zero refitted on H with OPTQ's codes fixed */
    bool refit_zeta;         /* Z-FOLD: ζ refitted on H with OPTQ's codes, α and zero fixed */
    int zfold_rounds;        /* Z-FOLD: OPTQ runs on the refitted grid (1: the ALS grid's only) */
    bool optq_fallback;      /* Z-FOLD: plain OPTQ too, the lower ΔL of the two kept */
    double optq_screen;      /* Z-FOLD's fallback: fraction of the rows plain OPTQ runs on first (0: all at once) */
    bool zeta_positive;      /* ζ must stay > 0 (fold through ReLU; not a config key) */
    bool zfold_optq;         /* Algorithm 2: OPTQ on the ζ·α grid after the ALS (not a config key) */
    bool optq_always;        /* Z-FOLD: the fallback keeps plain OPTQ whatever the ΔL (tests; not a config key) */
    bool delta_loss_rtn;     /* ΔL of min-max RTN, and of methods without a column loop, by ΔW H ΔWᵀ */
} zf_quant_opts;

/* Value types of option descriptors; the config's key table extends this list past ZF_OPT_ENUM. */
typedef enum { ZF_OPT_BOOL = 0, ZF_OPT_I32, ZF_OPT_I64, ZF_OPT_DOUBLE, ZF_OPT_ENUM } zf_opt_type;

/* Bits of zf_opt_desc.affects: the methods whose quantized result an option's value changes. */
#define ZF_AFFECTS(m) (1u << (m))
#define ZF_AFFECTS_ALL (ZF_AFFECTS(ZF_METHOD_RTN) | ZF_AFFECTS(ZF_METHOD_OPTQ) | ZF_AFFECTS(ZF_METHOD_ZFOLD))

/* One option that is also a config key: the only place its default, range and value names are written. */
typedef struct {
    const char *name;
    zf_opt_type type;
    size_t offset;             /* into zf_quant_opts */
    double def;                /* bool 0/1, enum index */
    double min, max;           /* inclusive range of numbers */
    bool min_open;             /* min itself is excluded */
    const char *const *names;  /* ZF_OPT_ENUM: value names in enum order, NULL-terminated */
    unsigned affects;          /* ZF_AFFECTS bits */
    const char *doc;
} zf_opt_desc;

extern const zf_opt_desc zf_quant_opt_descs[];
extern const size_t zf_quant_opt_count;

void zf_quant_opts_default(zf_quant_opts *o);
const char *zf_method_name(zf_method m);
const char *zf_grid_name(zf_grid_kind g);
const char *zf_alpha_name(zf_alpha_mode a);
/* Parses "rtn"/"optq"/"gptq"/"zfold"; returns -1 when unknown. */
int zf_method_parse(const char *s, zf_method *out);
int zf_grid_parse(const char *s, zf_grid_kind *out);
int zf_alpha_parse(const char *s, zf_alpha_mode *out);
/* Checks every option against its descriptor, then combinations; the message names the option and what is allowed. */
zf_status zf_quant_opts_check(const zf_quant_opts *o);

#endif
