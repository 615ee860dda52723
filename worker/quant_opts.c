/* Quantization options: defaults, method/grid/alpha names and the range checks. */
#include "worker/quant_opts.h"

#include <math.h>
#include <string.h>

void zf_quant_opts_default(zf_quant_opts *o)
{
    *o = (zf_quant_opts){
        .method = ZF_METHOD_ZFOLD,
        .bits = 4,
        .sym = false,          /* Z-FOLD and the GPTQ reference quantize asymmetrically by default */
        .group_size = -1,
        .grid = ZF_GRID_MINMAX,
        .mmse_norm = 2.4,
        .grid_points = 100,
        .max_shrink = 0.8,
        .damp = 0.01,
        .damp_retries = 4,
        .block_size = 128,
        .act_order = false,
        .static_groups = false,
        .alpha = ZF_ALPHA_LSQ, /* the paper's eq. 13; ZF_ALPHA_GRID is the official code's (much slower) search */
        .als_max_iter = 30,
        .zeta_positive = false,
        .zfold_optq = true,
    };
}

static const char *const method_names[] = {"rtn", "optq", "zfold"};
static const char *const grid_names[] = {"minmax", "mmse", "hessian"};
static const char *const alpha_names[] = {"lsq", "grid"};

const char *zf_method_name(zf_method m) { return (unsigned)m < 3 ? method_names[m] : "unknown"; }
const char *zf_grid_name(zf_grid_kind g) { return (unsigned)g < 3 ? grid_names[g] : "unknown"; }
const char *zf_alpha_name(zf_alpha_mode a) { return (unsigned)a < 2 ? alpha_names[a] : "unknown"; }

static int parse_name(const char *s, const char *const *names, int n)
{
    if (!s) return -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

int zf_method_parse(const char *s, zf_method *out)
{
    int i = s && !strcmp(s, "gptq") ? (int)ZF_METHOD_OPTQ : parse_name(s, method_names, 3);
    if (i < 0) return -1;
    *out = (zf_method)i;
    return 0;
}

int zf_grid_parse(const char *s, zf_grid_kind *out)
{
    int i = parse_name(s, grid_names, 3);
    if (i < 0) return -1;
    *out = (zf_grid_kind)i;
    return 0;
}

int zf_alpha_parse(const char *s, zf_alpha_mode *out)
{
    int i = parse_name(s, alpha_names, 2);
    if (i < 0) return -1;
    *out = (zf_alpha_mode)i;
    return 0;
}

zf_status zf_quant_opts_check(const zf_quant_opts *o)
{
    if ((unsigned)o->method > ZF_METHOD_ZFOLD)
        return zf_fail(ZF_ERR_INPUT, "quantization method %d: expected rtn, optq or zfold", (int)o->method);
    if (o->bits < 2 || o->bits > 8)
        return zf_fail(ZF_ERR_INPUT, "bits = %d: expected 2 .. 8 (codes are stored in one byte)", o->bits);
    if ((unsigned)o->grid > ZF_GRID_HESSIAN)
        return zf_fail(ZF_ERR_INPUT, "grid %d: expected minmax, mmse or hessian", (int)o->grid);
    if (!(o->mmse_norm > 0.0) || !isfinite(o->mmse_norm))
        return zf_fail(ZF_ERR_INPUT, "mmse_norm = %g: expected a finite exponent > 0 (2.4 as the reference)",
                       o->mmse_norm);
    if (o->grid_points < 1 || o->grid_points > 100000)
        return zf_fail(ZF_ERR_INPUT, "grid_points = %d: expected 1 .. 100000 (100 as the reference)", o->grid_points);
    if (!(o->max_shrink > 0.0 && o->max_shrink <= 1.0))
        return zf_fail(ZF_ERR_INPUT, "max_shrink = %g: expected a fraction in (0, 1] (0.8 as the reference)",
                       o->max_shrink);
    if (!(o->damp > 0.0) || !isfinite(o->damp))
        return zf_fail(ZF_ERR_INPUT, "damp = %g: expected a finite fraction > 0 of mean(diag H) (0.01)", o->damp);
    if (o->damp_retries < 0 || o->damp_retries > 20)
        return zf_fail(ZF_ERR_INPUT, "damp_retries = %d: expected 0 .. 20", o->damp_retries);
    if (o->block_size < 1 || o->block_size > 1 << 16)
        return zf_fail(ZF_ERR_INPUT, "block_size = %lld: expected 1 .. 65536 (128)", (long long)o->block_size);
    if ((unsigned)o->alpha > ZF_ALPHA_GRID)
        return zf_fail(ZF_ERR_INPUT, "alpha mode %d: expected lsq or grid", (int)o->alpha);
    if (o->als_max_iter < 0 || o->als_max_iter > 10000)
        return zf_fail(ZF_ERR_INPUT, "als_max_iter = %d: expected 0 .. 10000 (30 as the paper)", o->als_max_iter);
    if (o->method == ZF_METHOD_ZFOLD && o->group_size > 0)
        return zf_fail(ZF_ERR_INPUT,
                       "zfold with group_size = %lld: Z-FOLD is per output channel only (ζ folds into one step per "
                       "row, as in the paper); use group_size <= 0, or optq/rtn for group-wise grids",
                       (long long)o->group_size);
    /* static_groups without groups is accepted and means nothing, as in the reference. */
    return ZF_OK;
}
