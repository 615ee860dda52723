/* The YAML config: defaults, parsing, overrides, errors that name file, line, key and expectation, and the key
 * table's agreement with the quantization options (defaults, ranges, which methods a key affects). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/config.h"
#include "tests/testutil.h"
#include "worker/quant_opts.h"

static const char *write_yaml(const char *name, const char *text)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", zt_tmpdir(), name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void expect_error(const char *name, const char *yaml, const char *needle1, const char *needle2)
{
    zf_job_config c;
    zf_config_defaults(&c);
    const char *p = write_yaml(name, yaml);
    zf_status s = zf_config_load(p, &c);
    CHECK_MSG(s == ZF_ERR_INPUT, "%s: expected an input error", name);
    CHECK_MSG(strstr(zf_last_error(), needle1) != NULL, "%s: message '%s' lacks '%s'", name, zf_last_error(), needle1);
    if (needle2)
        CHECK_MSG(strstr(zf_last_error(), needle2) != NULL, "%s: message '%s' lacks '%s'", name, zf_last_error(),
                  needle2);
}

/* Every quantization key: the config's default is zf_quant_opts_default's (but for delta_loss_rtn: a direct caller
 * gets every figure, a run only the free ones), and set and check agree on the edges. */
static void test_quant_keys_agree(void)
{
    zf_job_config c;
    zf_quant_opts o;
    zf_config_defaults(&c);
    zf_quant_opts_default(&o);
    CHECK(o.delta_loss_rtn && !c.quant.delta_loss_rtn);
    o.delta_loss_rtn = false;
    CHECK(!memcmp(&c.quant, &o, sizeof o));
    CHECK(o.bits == 3 && o.method == ZF_METHOD_ZFOLD && o.alpha == ZF_ALPHA_DIAG && o.grid_points == 100);
    for (size_t i = 0; i < zf_quant_opt_count; i++) {
        const zf_opt_desc *d = &zf_quant_opt_descs[i];
        if (d->type == ZF_OPT_BOOL || d->type == ZF_OPT_ENUM) continue;
        const double edges[4] = {d->min, d->max, d->type == ZF_OPT_DOUBLE ? d->min - 0.5 : d->min - 1,
                                 d->type == ZF_OPT_DOUBLE ? d->max * 1.5 : d->max + 1};
        for (int e = 0; e < 4; e++) {
            char assign[128];
            snprintf(assign, sizeof assign, "%s=%.17g", d->name, edges[e]);
            zf_config_defaults(&c);
            bool set_ok = zf_config_set(&c, assign) == ZF_OK;
            bool want = e < 2 && !(e == 0 && d->min_open);
            CHECK_MSG(set_ok == want, "%s: the parser %s it", assign, set_ok ? "accepts" : "refuses");
            /* the check sees the value the parser refused too */
            zf_quant_opts q;
            zf_quant_opts_default(&q);
            q.method = ZF_METHOD_OPTQ; /* Z-FOLD refuses groups */
            if (d->type == ZF_OPT_I32) *(int *)((char *)&q + d->offset) = (int)edges[e];
            else if (d->type == ZF_OPT_I64) *(int64_t *)((char *)&q + d->offset) = (int64_t)edges[e];
            else *(double *)((char *)&q + d->offset) = edges[e];
            bool check_ok = zf_quant_opts_check(&q) == ZF_OK;
            CHECK_MSG(check_ok == want, "%s: zf_quant_opts_check %s it", assign, check_ok ? "accepts" : "refuses");
            if (!check_ok) CHECK_MSG(strstr(zf_last_error(), d->name), "message lacks %s: %s", d->name, zf_last_error());
        }
    }
    /* enum names: the parser and the name functions read the same table */
    CHECK(zf_config_set(&c, "grid=hessian") == ZF_OK && !strcmp(zf_grid_name(c.quant.grid), "hessian"));
    CHECK(zf_config_set(&c, "alpha=grid") == ZF_OK && !strcmp(zf_alpha_name(c.quant.alpha), "grid"));
    CHECK(zf_config_set(&c, "alpha=lsqq") == ZF_ERR_INPUT && strstr(zf_last_error(), "lsq|grid"));
}

/* Which keys matter to which method, and when two configurations are the same run. */
static void test_affects(void)
{
    CHECK(!zf_config_key_applies("alpha", ZF_METHOD_RTN) && !zf_config_key_applies("alpha", ZF_METHOD_OPTQ));
    CHECK(zf_config_key_applies("alpha", ZF_METHOD_ZFOLD) && zf_config_key_applies("als_max_iter", ZF_METHOD_ZFOLD));
    CHECK(!zf_config_key_applies("damp", ZF_METHOD_RTN) && zf_config_key_applies("damp", ZF_METHOD_ZFOLD));
    CHECK(!zf_config_key_applies("static_groups", ZF_METHOD_RTN) &&
          zf_config_key_applies("static_groups", ZF_METHOD_OPTQ));
    CHECK(zf_config_key_applies("bits", ZF_METHOD_RTN) && zf_config_key_applies("eval.fp", ZF_METHOD_RTN));
    CHECK(zf_config_key_affects("eval.fp") == 0 && zf_config_key_affects("output") == 0 &&
          zf_config_key_affects("threads") == 0 && zf_config_key_affects("calibration.cache") == 0 &&
          zf_config_key_affects("gpu.comm_timeout") == 0);
    CHECK(zf_config_key_affects("calibration.windows") == ZF_AFFECTS_ALL && zf_config_key_affects("no.such") ==
          ZF_AFFECTS_ALL);

    zf_job_config a, b;
    const char *rtn_lsq[] = {"method=rtn", "alpha=lsq"}, *rtn_grid[] = {"method=rtn", "alpha=grid", "damp=0.5"};
    zf_config_defaults(&a);
    zf_config_defaults(&b);
    for (int i = 0; i < 2; i++) CHECK_OK(zf_config_set(&a, rtn_lsq[i]));
    for (int i = 0; i < 3; i++) CHECK_OK(zf_config_set(&b, rtn_grid[i]));
    CHECK(zf_config_same_run(&a, &b));
    CHECK_OK(zf_config_set(&b, "eval.max_windows=3")); /* a different measurement is a different run */
    CHECK(!zf_config_same_run(&a, &b));
    zf_config_defaults(&a);
    zf_config_defaults(&b);
    CHECK_OK(zf_config_set(&b, "alpha=grid"));
    CHECK(!zf_config_same_run(&a, &b));
    CHECK_OK(zf_config_set(&a, "damp_retries=2")); /* RTN has no damping */
    CHECK_OK(zf_config_set(&a, "method=rtn"));
    CHECK_OK(zf_config_set(&b, "method=rtn"));
    CHECK(zf_config_same_run(&a, &b));
    CHECK_OK(zf_config_set(&a, "method=gptq"));
    CHECK_OK(zf_config_set(&b, "method=optq"));
    CHECK(!zf_config_same_run(&a, &b)); /* damp_retries applies to OPTQ */
}

int main(void)
{
    zf_job_config c;
    zf_config_defaults(&c);
    CHECK(c.quant.method == ZF_METHOD_ZFOLD && c.quant.bits == 3 && c.quant.group_size == -1);
    CHECK(c.calib_windows == 128 && c.quant.damp == 0.01 && c.eval_fp && !c.quant.sym);

    char ok[1024];
    snprintf(ok, sizeof ok, "%s", write_yaml("ok.yaml", "model: m\noutput: o\nmethod: optq\nbits: 4\nsym: true\n"
                                           "calibration:\n  file: c.bin\n  windows: 16\n  seq_len: 64\n"
                                           "eval:\n  files: [a.bin, b.bin]\n  max_windows: 3\n"));
    CHECK_OK(zf_config_load(ok, &c));
    CHECK(c.quant.method == ZF_METHOD_OPTQ && c.quant.bits == 4 && c.quant.sym);
    CHECK(c.calib_windows == 16 && c.calib_seq_len == 64 && !strcmp(c.calib_file, "c.bin"));
    CHECK(c.n_eval_files == 2 && !strcmp(c.eval_files[1], "b.bin") && c.eval_max_windows == 3);
    CHECK_OK(zf_config_validate(&c));
    CHECK_OK(zf_config_set(&c, "bits=2"));
    CHECK(c.quant.bits == 2);
    CHECK_OK(zf_config_set(&c, "calibration.windows=8"));
    CHECK(c.calib_windows == 8);
    CHECK_OK(zf_config_set(&c, "method=gptq"));
    CHECK(c.quant.method == ZF_METHOD_OPTQ);
    CHECK(zf_config_set(&c, "bitz=3") == ZF_ERR_INPUT && strstr(zf_last_error(), "did you mean 'bits'"));
    CHECK(zf_config_set(&c, "bits=9") == ZF_ERR_INPUT && strstr(zf_last_error(), "out of range"));

    /* the effective YAML parses back to the same configuration */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    zf_config_write_yaml(&c, f);
    fclose(f);
    zf_job_config c2;
    zf_config_defaults(&c2);
    CHECK_OK(zf_config_load(write_yaml("eff.yaml", buf), &c2));
    CHECK(c2.quant.bits == c.quant.bits && c2.calib_windows == c.calib_windows && c2.n_eval_files == 2 &&
          c2.quant.damp == c.quant.damp && !strcmp(c2.eval_files[0], "a.bin"));
    free(buf);

    expect_error("unknown.yaml", "model: m\noutput: o\ncalibration:\n  file: c\nmethd: zfold\n", "unknown key 'methd'",
                 "did you mean 'method'");
    expect_error("line.yaml", "model: m\noutput: o\ncalibration:\n  file: c\nbits: three\n", "line.yaml:5:7",
                 "expected an integer");
    expect_error("range.yaml", "model: m\noutput: o\ncalibration:\n  file: c\nbits: 12\n", "'bits'", "out of range");
    expect_error("enum.yaml", "model: m\noutput: o\ncalibration:\n  file: c\nmethod: awq\n", "rtn|optq|zfold", NULL);
    expect_error("missing.yaml", "model: m\ncalibration:\n  file: c\n", "missing required key 'output'", NULL);
    expect_error("list.yaml", "model: m\noutput: o\ncalibration:\n  file: c\nbits: [2, 3]\n", "'bits'", "list");
    expect_error("dup.yaml", "model: m\noutput: o\nmodel: n\ncalibration:\n  file: c\n", "dup.yaml", "not valid YAML");
    expect_error("section.yaml", "model: m\noutput: o\ncalibration: c\n", "'calibration'", "mapping");
    expect_error("bool.yaml", "model: m\noutput: o\ncalibration:\n  file: c\nsym: maybe\n", "true or false", NULL);
    expect_error("top.yaml", "- a\n- b\n", "top level", NULL);
    zf_config_defaults(&c);
    CHECK(zf_config_load("/nonexistent/zfold.yaml", &c) == ZF_ERR_INPUT &&
          strstr(zf_last_error(), "/nonexistent/zfold.yaml"));

    /* a sweep config runs as one point when --set picks a value for every list */
    const char *swp = write_yaml("sweep.yaml", "model: m\noutput: o\ncalibration:\n  file: c\nbits: [2, 3]\n"
                                               "method: [optq, zfold]\n");
    const char *pick_both[] = {"bits=4", "method=rtn"}, *pick_one[] = {"bits=4"};
    CHECK_OK(zf_config_read(swp, pick_both, 2, &c, NULL));
    CHECK(c.quant.bits == 4 && c.quant.method == ZF_METHOD_RTN);
    CHECK(zf_config_read(swp, pick_one, 1, &c, NULL) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "sweep.yaml:6:1") && strstr(zf_last_error(), "'method'") &&
              strstr(zf_last_error(), "--set method="), "message: %s", zf_last_error());
    zf_sweep sw;
    CHECK_OK(zf_config_read(swp, pick_one, 1, &c, &sw));
    CHECK(sw.ndims == 2 && sw.dims[0].nvalues == 2 && c.quant.bits == 4);

    /* group-wise zfold needs the diagonal α search */
    zf_config_defaults(&c);
    CHECK_OK(zf_config_load(ok, &c));
    CHECK_OK(zf_config_set(&c, "method=zfold"));
    CHECK_OK(zf_config_set(&c, "group_size=128"));
    CHECK_OK(zf_config_validate(&c));
    CHECK_OK(zf_config_set(&c, "alpha=lsq"));
    CHECK(zf_config_validate(&c) == ZF_ERR_INPUT);

    test_quant_keys_agree();
    test_affects();
    return zt_finish("test_config");
}
