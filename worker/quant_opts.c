/* Quantization options: the descriptor table (the single source of defaults, ranges and names), names and checks. */
#include "worker/quant_opts.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const method_names[] = {"rtn", "optq", "zfold", NULL};
static const char *const grid_names[] = {"minmax", "mmse", "hessian", NULL};
static const char *const alpha_names[] = {"lsq", "grid", "diag", NULL};
static const char *const widen_names[] = {"off", "layer", "row", NULL};

#define OPT(f) offsetof(zf_quant_opts, f)
#define ALL ZF_AFFECTS_ALL
#define OPTQ_ZFOLD (ZF_AFFECTS(ZF_METHOD_OPTQ) | ZF_AFFECTS(ZF_METHOD_ZFOLD))
#define ZFOLD ZF_AFFECTS(ZF_METHOD_ZFOLD)

/* Ranges beyond the physical limits are chosen so that every value in them means something distinct: damp = 0
 * would make the ×10 retries useless, one ALS iteration is the least Z-FOLD that is not OPTQ, two clip ratios the
 * least search, and mmse_norm >= 1 keeps the MMSE error a norm. */
const zf_opt_desc zf_quant_opt_descs[] = {
    {"method", ZF_OPT_ENUM, OPT(method), ZF_METHOD_ZFOLD, 0, 0, false, method_names, ALL,
     "Quantizer: round-to-nearest, OPTQ (GPTQ), or Z-FOLD followed by OPTQ"},
    {"bits", ZF_OPT_I32, OPT(bits), 3, 2, 8, false, NULL, ALL, "Weight bit width"},
    {"sym", ZF_OPT_BOOL, OPT(sym), 0, 0, 0, false, NULL, ALL, "Symmetric grid (zero point in the middle)"},
    {"group_size", ZF_OPT_I64, OPT(group_size), -1, -1, 1 << 20, false, NULL, ALL,
     "Input columns per grid; -1 = one grid per output channel. Z-FOLD: α and zero per (row, group), ζ per input "
     "column shared by the groups, groups fixed before act_order's reordering (static)"},
    {"grid", ZF_OPT_ENUM, OPT(grid), ZF_GRID_MINMAX, 0, 0, false, grid_names, ALL,
     "How the initial grid is chosen: min-max, MMSE clip search, or Hessian-scored clip search"},
    {"damp", ZF_OPT_DOUBLE, OPT(damp), 0.01, 0, 10, true, NULL, OPTQ_ZFOLD, "OPTQ damping, fraction of mean(diag H)"},
    {"damp_retries", ZF_OPT_I32, OPT(damp_retries), 4, 0, 10, false, NULL, OPTQ_ZFOLD,
     "Times the damping is multiplied by 10 when the Cholesky factorization fails"},
    {"block_size", ZF_OPT_I64, OPT(block_size), 128, 1, 1 << 16, false, NULL, OPTQ_ZFOLD,
     "OPTQ lazy-update block width"},
    {"act_order", ZF_OPT_BOOL, OPT(act_order), 0, 0, 0, false, NULL, OPTQ_ZFOLD,
     "OPTQ: quantize columns in order of decreasing Hessian diagonal"},
    /* groups only; Z-FOLD's own groups are always static, its OPTQ fallback follows this */
    {"static_groups", ZF_OPT_BOOL, OPT(static_groups), 0, 0, 0, false, NULL, OPTQ_ZFOLD,
     "OPTQ with act_order and groups: fix group grids before reordering"},
    {"alpha", ZF_OPT_ENUM, OPT(alpha), ZF_ALPHA_DIAG, 0, 0, false, alpha_names, ZFOLD,
     "Z-FOLD ALS α update: diag = clip ratio and zero searched per row (or row and group) scored on H's diagonal, "
     "coarse to fine, no GEMM per iteration; grid = the same search scored on the full H (the paper's code, 200 GEMMs "
     "per iteration); lsq = Hessian-weighted least squares (paper, eq. 13). Measured on the fixtures' 159 layer x bit "
     "cases with the default widening, refit and fallback: diag's ΔL is 0.860x the paper's code on geometric mean "
     "(9 cases above it) and 0.657x OPTQ's, at 2.4x OPTQ's CPU time at 4096x4096, 2.8x at 11008x4096 and 1.9x at "
     "4096x11008 (docs/results.md); grid with als_tol 0 is never above the paper's code, at about 100x OPTQ's time"},
    {"als_max_iter", ZF_OPT_I32, OPT(als_max_iter), 30, 1, 1000, false, NULL, ZFOLD, "Z-FOLD ALS iteration limit"},
    {"als_tol", ZF_OPT_DOUBLE, OPT(als_tol), 1e-3, 0, 1, false, NULL, ZFOLD,
     "Z-FOLD: the ALS stops once an iteration lowers its loss by less than this fraction (0: only when it rises)"},
    {"grid_widen", ZF_OPT_ENUM, OPT(grid_widen), ZF_WIDEN_ROW, 0, 0, false, widen_names, ZFOLD,
     "Z-FOLD: after the ALS, OPTQ on the grid with every scale stretched by 1.1, 1.2, ... (up to 2) while its ΔL falls, "
     "and the best kept (the ALS fits the clip to rounding, and OPTQ's error feedback carries weights past it). row = "
     "each row its own: OPTQ on every row once per factor tried (two column loops where 1.1 already loses, as at 4 "
     "bits), each row keeping its best run after the α refit, so no run follows; layer = one factor for the layer, "
     "chosen on grid_widen_sample of its rows (at least 256), then OPTQ on all rows; off = the ALS grid as it is. "
     "Measured on the fixtures' 159 layer x bit cases with the default refit: ΔL / the paper's code 0.860 (row), "
     "0.930 (layer), 0.993 (off) on geometric mean"},
    {"grid_widen_sample", ZF_OPT_DOUBLE, OPT(grid_widen_sample), 0.0625, 0, 1, true, NULL, ZFOLD,
     "Z-FOLD's layer widening: the fraction of the rows (four evenly spaced blocks) on which the factor is chosen, "
     "at least 256 rows (every row of a layer of up to 256)"},
    {"refit", ZF_OPT_BOOL, OPT(refit), 1, 0, 0, false, NULL, ZFOLD,
     "Z-FOLD: after OPTQ, each row's α and zero point refitted on H with the codes fixed (closed form from the column "
     "loop's own sums in OPTQ's factor basis, one triangular solve per layer; never raises ΔL); with group_size, "
     "each row's groups in turn, the others fixed (ΔW·H formed once and kept current on the groups still to come: "
     "about 1.5 GEMMs; 3.2% lower ΔL than without on the fixtures' g128 cases)"},
    {"refit_zeta", ZF_OPT_BOOL, OPT(refit_zeta), 0, 0, 0, false, NULL, ZFOLD,
     "Z-FOLD: after OPTQ and the α refit, ζ refitted on H with the codes, α and zero fixed: the normal equations "
     "(H ∘ AᵀA) ζ = Σ_r a_r ∘ (W H)_r, A = α(q - z), one SYRK and one Cholesky solve; kept only when ΔL falls, scored "
     "in closed form, for a group of several layers (Q/K/V, gate/up) each layer's own from its rows' part of the SYRK; "
     "tied and kept positive as the ALS's ζ. About 1.5x OPTQ's CPU time more (W·H and the SYRK) for 1.3% lower ΔL on "
     "the fixtures' layers"},
    {"zfold_rounds", ZF_OPT_I32, OPT(zfold_rounds), 1, 1, 16, false, NULL, ZFOLD,
     "Z-FOLD: OPTQ runs on the grid, each after the first on the grid the refits left, followed by the refits again; "
     "a round is kept only when it lowers ΔL. Each extra round costs about 1.5x OPTQ's time; a second one lowered ΔL by "
     "0.9% on geometric mean over the fixture layers (docs/results.md)"},
    {"optq_fallback", ZF_OPT_BOOL, OPT(optq_fallback), 1, 0, 0, false, NULL, ZFOLD,
     "Z-FOLD: also run plain OPTQ (sharing the factorization, refitted likewise; with groups its ζ only) and keep "
     "whichever has the lower ΔL over the layer group"},
    {"optq_screen", ZF_OPT_DOUBLE, OPT(optq_screen), 0.0625, 0, 0.5, false, NULL, ZFOLD,
     "Z-FOLD's fallback: plain OPTQ first on this fraction of the layer's rows (four evenly spaced blocks; only where "
     "that makes at least 256 rows, from 4096 rows at the default); when Z-FOLD's ΔL on them is below 0.85x plain "
     "OPTQ's, Z-FOLD is kept and plain OPTQ skips the other rows, else it runs on all rows and the lower total is "
     "kept. 0 = plain OPTQ always on all rows"},
    {"delta_loss_rtn", ZF_OPT_BOOL, OPT(delta_loss_rtn), 0, 0, 0, false, NULL, 0,
     "Also measure ΔL of min-max RTN on every layer (the 'before' of ΔL after/before) and, with method rtn, ΔL "
     "after: by ΔW H ΔWᵀ, a GEMM as large as the layer's whole OPTQ loop each. OPTQ and Z-FOLD take ΔL after from "
     "their column loop's errors at no cost; a figure not measured is null in report.json and NaN in the shards"},
    {"mmse_norm", ZF_OPT_DOUBLE, OPT(mmse_norm), 2.4, 1, 8, false, NULL, ALL, "Exponent of the MMSE grid error"},
    {"grid_points", ZF_OPT_I32, OPT(grid_points), 100, 2, 10000, false, NULL, ALL,
     "Clip ratios tried by the MMSE and Hessian grids"},
};
const size_t zf_quant_opt_count = sizeof zf_quant_opt_descs / sizeof zf_quant_opt_descs[0];

static double get_value(const zf_quant_opts *o, const zf_opt_desc *d)
{
    const void *p = (const char *)o + d->offset;
    switch (d->type) {
    case ZF_OPT_BOOL: return *(const bool *)p;
    case ZF_OPT_I32: return *(const int *)p;
    case ZF_OPT_I64: return (double)*(const int64_t *)p;
    case ZF_OPT_DOUBLE: return *(const double *)p;
    case ZF_OPT_ENUM: return *(const int *)p;
    }
    ZF_PANIC("unhandled option type %d", (int)d->type);
}

static void set_value(zf_quant_opts *o, const zf_opt_desc *d, double v)
{
    void *p = (char *)o + d->offset;
    switch (d->type) {
    case ZF_OPT_BOOL: *(bool *)p = v != 0; return;
    case ZF_OPT_I32:
    case ZF_OPT_ENUM: *(int *)p = (int)v; return;
    case ZF_OPT_I64: *(int64_t *)p = (int64_t)v; return;
    case ZF_OPT_DOUBLE: *(double *)p = v; return;
    }
    ZF_PANIC("unhandled option type %d", (int)d->type);
}

void zf_quant_opts_default(zf_quant_opts *o)
{
    memset(o, 0, sizeof *o);
    for (size_t i = 0; i < zf_quant_opt_count; i++) set_value(o, &zf_quant_opt_descs[i], zf_quant_opt_descs[i].def);
    o->max_shrink = 0.8; /* the reference MMSE search */
    o->zeta_positive = false;
    o->zfold_optq = true;
    o->delta_loss_rtn = true; /* every figure for a direct caller; a run's config chooses (default off) */
}

static int count_names(const char *const *names)
{
    int n = 0;
    while (names[n]) n++;
    return n;
}

static const char *name_of(const char *const *names, int i)
{
    return i >= 0 && i < count_names(names) ? names[i] : "unknown";
}

const char *zf_method_name(zf_method m) { return name_of(method_names, (int)m); }
const char *zf_grid_name(zf_grid_kind g) { return name_of(grid_names, (int)g); }
const char *zf_alpha_name(zf_alpha_mode a) { return name_of(alpha_names, (int)a); }

static int parse_name(const char *s, const char *const *names)
{
    for (int i = 0; s && names[i]; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

int zf_method_parse(const char *s, zf_method *out)
{
    int i = s && !strcmp(s, "gptq") ? (int)ZF_METHOD_OPTQ : parse_name(s, method_names);
    if (i < 0) return -1;
    *out = (zf_method)i;
    return 0;
}

int zf_grid_parse(const char *s, zf_grid_kind *out)
{
    int i = parse_name(s, grid_names);
    if (i < 0) return -1;
    *out = (zf_grid_kind)i;
    return 0;
}

int zf_alpha_parse(const char *s, zf_alpha_mode *out)
{
    int i = parse_name(s, alpha_names);
    if (i < 0) return -1;
    *out = (zf_alpha_mode)i;
    return 0;
}

static zf_status check_one(const zf_quant_opts *o, const zf_opt_desc *d)
{
    double v = get_value(o, d);
    if (d->type == ZF_OPT_ENUM) {
        if (v >= 0 && v < count_names(d->names)) return ZF_OK;
        char allowed[128] = "";
        for (int i = 0; d->names[i]; i++)
            snprintf(allowed + strlen(allowed), sizeof allowed - strlen(allowed), "%s%s", i ? "|" : "", d->names[i]);
        return zf_fail(ZF_ERR_INPUT, "%s = %d: expected one of %s", d->name, (int)v, allowed);
    }
    if (d->type == ZF_OPT_BOOL) return ZF_OK;
    bool low = d->min_open ? !(v > d->min) : !(v >= d->min);
    if (isfinite(v) && !low && v <= d->max) return ZF_OK;
    return zf_fail(ZF_ERR_INPUT, "%s = %g: expected %s%g .. %g", d->name, v, d->min_open ? "> " : "", d->min, d->max);
}

zf_status zf_quant_opts_check(const zf_quant_opts *o)
{
    for (size_t i = 0; i < zf_quant_opt_count; i++) ZF_TRY(check_one(o, &zf_quant_opt_descs[i]));
    if (!(o->max_shrink > 0.0 && o->max_shrink <= 1.0))
        return zf_fail(ZF_ERR_INPUT, "max_shrink = %g: expected a fraction in (0, 1] (0.8 as the reference)",
                       o->max_shrink);
    if (o->method == ZF_METHOD_ZFOLD && o->group_size > 0 && o->alpha != ZF_ALPHA_DIAG)
        return zf_fail(ZF_ERR_INPUT,
                       "zfold with group_size = %lld and alpha = %s: group-wise Z-FOLD needs alpha = diag (lsq and grid "
                       "fit one α per output channel, as in the paper)",
                       (long long)o->group_size, zf_alpha_name(o->alpha));
    /* static_groups without groups is accepted and means nothing, as in the reference. */
    return ZF_OK;
}
