/* The YAML config: defaults, parsing, overrides, and errors that name file, line, key and expectation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/config.h"
#include "tests/testutil.h"

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

    /* zfold requires per-channel grids */
    zf_config_defaults(&c);
    CHECK_OK(zf_config_load(ok, &c));
    CHECK_OK(zf_config_set(&c, "method=zfold"));
    CHECK_OK(zf_config_set(&c, "group_size=128"));
    CHECK(zf_config_validate(&c) == ZF_ERR_INPUT);
    return zt_finish("test_config");
}
