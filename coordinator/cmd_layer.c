/* `zfold layer`: quantize one weight matrix read from a safetensors file and write codes, grids, ζ and ΔL. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/safetensors.h"
#include "coordinator/commands.h"
#include "coordinator/config.h"
#include "worker/hessian.h"
#include "worker/quant.h"

void zf_cmd_layer_help(void)
{
    printf("usage: zfold layer IN.safetensors OUT.safetensors [options]\n"
           "Quantizes one weight matrix W [out, in] with its Hessian H [in, in] (or inputs X [tokens, in],\n"
           "from which H = 2/N XᵀX is computed) and writes the result as safetensors:\n"
           "  q (U8 [out, in] integer codes), scale and zero (F32 [out, groups]), zeta (F32 [in]),\n"
           "  g_idx (I32 [in]), deq (F32 [out, in] = zeta·scale·(q - zero)), delta_loss (F64 [2]: RTN, result).\n"
           "Options:\n"
           "  --weight NAME     tensor holding W (default: weight)\n"
           "  --hessian NAME    tensor holding H (default: hessian, if present)\n"
           "  --inputs NAME     tensor holding X (default: inputs, used when there is no H)\n"
           "  --zeta-positive   keep every ζ > 0 (needed to fold through ReLU)\n"
           "  --<key> VALUE     any quantization key of the config (docs/config.md): --method zfold --bits 3\n"
           "                    --sym true --group_size 128 --grid mmse --damp 0.01 --act_order true --alpha grid ...\n"
           "Prints ΔL = tr(ΔW H ΔWᵀ) of min-max RTN (before) and of the result (after).\n");
}

/* H = 2/N XᵀX is symmetric; another program's float H may differ from its transpose only in the last bits. */
static zf_status check_symmetric(const char *file, const char *name, const float *H, int64_t n)
{
    float big = 0;
    for (int64_t i = 0; i < n * n; i++) big = fabsf(H[i]) > big ? fabsf(H[i]) : big;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            if (fabsf(H[i * n + j] - H[j * n + i]) > 1e-5f * big)
                return zf_fail(ZF_ERR_INPUT, "%s: '%s' is not symmetric: [%lld, %lld] = %g but [%lld, %lld] = %g (a "
                               "Hessian 2/N XᵀX is symmetric)", file, name, (long long)i, (long long)j,
                               (double)H[i * n + j], (long long)j, (long long)i, (double)H[j * n + i]);
    return ZF_OK;
}

static zf_status load_any(const zf_safetensors *st, const char *path, const char *name, int ndim_expected,
                          const zf_st_tensor **t, float **data)
{
    *t = zf_st_find(st, name);
    if (!*t) return zf_fail(ZF_ERR_INPUT, "%s: no tensor named '%s'", path, name);
    if ((*t)->ndim != ndim_expected)
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s' has %d dimensions, expected %d", path, name, (*t)->ndim,
                       ndim_expected);
    return zf_st_load_f32(st, name, (*t)->ndim, (*t)->shape, data);
}

static zf_status run_layer(const char *in, const char *out, const char *wname, const char *hname, const char *xname,
                           const zf_quant_opts *opts)
{
    zf_safetensors *st = NULL;
    float *W = NULL, *H = NULL, *X = NULL;
    zf_qresult r = {0};
    zf_st_writer *w = NULL;
    zf_hessian acc = {0};
    const zf_st_tensor *tw, *th, *tx;
    zf_status s = zf_st_open(in, &st);
    if (s != ZF_OK) goto done;
    if ((s = load_any(st, in, wname, 2, &tw, &W)) != ZF_OK) goto done;
    int64_t rows = tw->shape[0], cols = tw->shape[1];
    if (zf_st_find(st, hname)) {
        if ((s = load_any(st, in, hname, 2, &th, &H)) != ZF_OK) goto done;
        if (th->shape[0] != cols || th->shape[1] != cols) {
            s = zf_fail(ZF_ERR_INPUT, "%s: '%s' is [%lld, %lld], expected [%lld, %lld] to match '%s' [%lld, %lld]", in,
                        hname, (long long)th->shape[0], (long long)th->shape[1], (long long)cols, (long long)cols,
                        wname, (long long)rows, (long long)cols);
            goto done;
        }
        if ((s = check_symmetric(in, hname, H, cols)) != ZF_OK) goto done;
    } else if (zf_st_find(st, xname)) {
        if ((s = load_any(st, in, xname, 2, &tx, &X)) != ZF_OK) goto done;
        if (tx->shape[1] != cols) {
            s = zf_fail(ZF_ERR_INPUT, "%s: '%s' has %lld columns, expected %lld (the inputs of '%s')", in, xname,
                        (long long)tx->shape[1], (long long)cols, wname);
            goto done;
        }
        H = zf_malloc(sizeof(float) * cols * cols, "Hessian");
        if (!H) { s = ZF_ERR_NOMEM; goto done; }
        if ((s = zf_hessian_init(&acc, cols, false)) != ZF_OK) goto done;
        if ((s = zf_hessian_add(&acc, X, tx->shape[0])) != ZF_OK) goto done;
        if ((s = zf_hessian_finalize(&acc, H)) != ZF_OK) goto done;
    } else if (opts->method != ZF_METHOD_RTN) {
        s = zf_fail(ZF_ERR_INPUT, "%s: neither a Hessian '%s' nor inputs '%s' found; %s needs one", in, hname, xname,
                    zf_method_name(opts->method));
        goto done;
    }
    if ((s = zf_quantize(opts, W, rows, cols, H, NULL, &r)) != ZF_OK) goto done;
    printf("layer %s [%lld, %lld]  method %s  bits %d  %s  group %lld\n", wname, (long long)rows, (long long)cols,
           zf_method_name(opts->method), opts->bits, opts->sym ? "sym" : "asym", (long long)opts->group_size);
    printf("delta_loss before (min-max RTN): %.6e\n", r.dl_rtn);
    printf("delta_loss after  (%s):%*s %.6e   ratio %.4f\n", zf_method_name(opts->method),
           (int)(13 - strlen(zf_method_name(opts->method))), "", r.dl, r.dl_rtn > 0 ? r.dl / r.dl_rtn : 0.0);
    if (opts->method == ZF_METHOD_ZFOLD) printf("als iterations: %d\n", r.als_iters);
    if (opts->method != ZF_METHOD_RTN) printf("damp used: %g (%d retries)\n", r.damp_used, r.damp_retries);

    w = zf_st_writer_new();
    if (!w) { s = ZF_ERR_NOMEM; goto done; }
    int64_t shp_w[2] = {rows, cols}, shp_g[2] = {rows, r.ngroups}, shp_c[1] = {cols}, shp_dl[1] = {2};
    double dl[2] = {r.dl_rtn, r.dl};
    char meta[64];
    if ((s = zf_st_writer_add(w, "q", ZF_DT_U8, 2, shp_w, r.q)) != ZF_OK ||
        (s = zf_st_writer_add(w, "scale", ZF_DT_F32, 2, shp_g, r.scale)) != ZF_OK ||
        (s = zf_st_writer_add(w, "zero", ZF_DT_F32, 2, shp_g, r.zero)) != ZF_OK ||
        (s = zf_st_writer_add(w, "zeta", ZF_DT_F32, 1, shp_c, r.zeta)) != ZF_OK ||
        (s = zf_st_writer_add(w, "g_idx", ZF_DT_I32, 1, shp_c, r.g_idx)) != ZF_OK ||
        (s = zf_st_writer_add(w, "deq", ZF_DT_F32, 2, shp_w, r.deq)) != ZF_OK ||
        (s = zf_st_writer_add(w, "delta_loss", ZF_DT_F64, 1, shp_dl, dl)) != ZF_OK)
        goto done;
    snprintf(meta, sizeof meta, "%d", opts->bits);
    if ((s = zf_st_writer_meta(w, "method", zf_method_name(opts->method))) != ZF_OK ||
        (s = zf_st_writer_meta(w, "bits", meta)) != ZF_OK || (s = zf_st_writer_save(w, out)) != ZF_OK)
        goto done;
    printf("wrote %s\n", out);
done:
    zf_st_writer_free(w);
    zf_qresult_free(&r);
    zf_hessian_free(&acc);
    free(W);
    free(H);
    free(X);
    zf_st_close(st);
    return s;
}

int zf_cmd_layer(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *wname = "weight", *hname = "hessian", *xname = "inputs";
    zf_job_config cfg;
    zf_config_defaults(&cfg);
    cfg.quant.delta_loss_rtn = true; /* one layer: both figures are cheap enough to print */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "--", 2)) {
            if (!strcmp(a, "--zeta-positive")) { cfg.quant.zeta_positive = true; continue; }
            if (i + 1 >= argc) {
                fprintf(stderr, "zfold layer: option %s needs a value\n", a);
                return ZF_EXIT_USAGE;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--weight")) wname = v;
            else if (!strcmp(a, "--hessian")) hname = v;
            else if (!strcmp(a, "--inputs")) xname = v;
            else {
                char assign[512];
                snprintf(assign, sizeof assign, "%s=%s", a + 2, v);
                for (char *p = assign; *p && *p != '='; p++)
                    if (*p == '-') *p = '_';
                if (zf_config_set(&cfg, assign) != ZF_OK) {
                    fprintf(stderr, "zfold layer: %s\n", zf_last_error());
                    return ZF_EXIT_USAGE;
                }
            }
        } else if (!in) in = a;
        else if (!out) out = a;
        else {
            fprintf(stderr, "zfold layer: unexpected argument '%s'\n", a);
            return ZF_EXIT_USAGE;
        }
    }
    if (!in || !out) {
        zf_cmd_layer_help();
        return ZF_EXIT_USAGE;
    }
    zf_log_init(0, 1);
    if (zf_quant_opts_check(&cfg.quant) != ZF_OK) {
        fprintf(stderr, "zfold layer: %s\n", zf_last_error());
        return ZF_EXIT_USAGE;
    }
    zf_status s = run_layer(in, out, wname, hname, xname, &cfg.quant);
    if (s != ZF_OK) {
        fprintf(stderr, "zfold layer: %s\n", zf_last_error());
        return s == ZF_ERR_INTERNAL ? ZF_EXIT_INTERNAL : ZF_EXIT_FAILURE;
    }
    return ZF_EXIT_OK;
}
