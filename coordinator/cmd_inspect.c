/* `zfold inspect RUN_DIR`: the state of a run (config summary, blocks done and verified, per-layer ΔL, perplexities). */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fsutil.h"
#include "common/log.h"
#include "common/shard.h"
#include "coordinator/commands.h"
#include "coordinator/rundir.h"

void zf_cmd_inspect_help(void)
{
    printf("usage: zfold inspect RUN_DIR\n"
           "Prints the state of a run directory written by `zfold quantize`: the configuration (method, bits,\n"
           "model), the blocks finished out of the total, whether each block's shard matches the size and XXH64\n"
           "checksum in manifest.json, each layer's delta loss before (min-max RTN) and after quantization read\n"
           "from the shards, and the perplexities from report.json when evaluation has run.\n"
           "Exit status: 0 when the run is complete and valid (every block and unquantized.h5 present, matching\n"
           "its checksum and readable), 1 when it is unfinished, damaged or not a run directory, 2 on a wrong\n"
           "command line. report.json is informative only and does not change the exit status.\n");
}

static void print_config(const zf_rundir *r)
{
    static const char *keys[] = {"model", "method", "bits", "sym", "group_size", "grid", "act_order",
                                 "calibration.windows", "calibration.seq_len", "calibration.seed"};
    printf("# config:");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char v[512];
        if (zf_rundir_config_value(r, keys[i], v, sizeof v)) printf(" %s=%s", keys[i], v);
    }
    printf("\n# model fingerprint %016" PRIx64 "\n", zf_rundir_model_fingerprint(r));
}

/* Per-layer table of one shard; false when the shard cannot be read. */
static bool print_layers(const char *path, double *before, double *after)
{
    zf_shard_data d;
    if (zf_shard_read(path, &d) != ZF_OK) {
        printf("    unreadable: %s\n", zf_last_error());
        return false;
    }
    for (int i = 0; i < d.nlin; i++) {
        const zf_shard_linear_data *l = &d.lin[i];
        printf("    %-40s %d bits  %6lld x %-6lld dL before %12.6g  after %12.6g  (%5.1f%%)  als %3d  damp %.3g%s\n",
               l->name, l->bits, (long long)l->out, (long long)l->in, l->dl_before, l->dl_after,
               l->dl_before > 0 ? 100.0 * l->dl_after / l->dl_before : 0.0, l->als_iters, l->damp_used,
               l->damp_retries ? " (retried)" : "");
        *before += l->dl_before;
        *after += l->dl_after;
    }
    zf_shard_data_free(&d);
    return true;
}

static void print_report(const char *dir)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/report.json", dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        printf("# no report.json: perplexity not measured yet\n");
        return;
    }
    char *text = NULL;
    zf_read_small_file(path, 64u << 20, "a report", &text); /* unreadable: said below */
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *ev = root ? cJSON_GetObjectItemCaseSensitive(root, "eval") : NULL;
    if (!cJSON_IsArray(ev)) {
        printf("# report.json: unreadable or without an 'eval' list\n");
        cJSON_Delete(root);
        return;
    }
    printf("# perplexities (report.json)\n| eval file | windows | FP ppl | quantized ppl |\n|---|---|---|---|\n");
    const cJSON *e;
    cJSON_ArrayForEach(e, ev) {
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(e, "file");
        const cJSON *win = cJSON_GetObjectItemCaseSensitive(e, "windows");
        const cJSON *fp = cJSON_GetObjectItemCaseSensitive(e, "ppl_fp");
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(e, "ppl");
        printf("| %s | %.0f | ", cJSON_IsString(file) ? file->valuestring : "?",
               cJSON_IsNumber(win) ? win->valuedouble : 0.0);
        if (cJSON_IsNumber(fp)) printf("%.4f | ", fp->valuedouble);
        else printf("- | ");
        if (cJSON_IsNumber(q)) printf("%.4f |\n", q->valuedouble);
        else printf("- |\n");
    }
    cJSON_Delete(root);
}

int zf_cmd_inspect(int argc, char **argv)
{
    const char *dir = NULL;
    zf_log_init(0, 1);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            zf_cmd_inspect_help();
            return ZF_EXIT_OK;
        }
        if (argv[i][0] != '-' && !dir) dir = argv[i];
        else {
            fprintf(stderr, "zfold inspect: unexpected argument '%s'\n", argv[i]);
            return ZF_EXIT_USAGE;
        }
    }
    if (!dir) {
        zf_cmd_inspect_help();
        return ZF_EXIT_USAGE;
    }
    zf_rundir *r = NULL;
    if (zf_rundir_load(dir, &r) != ZF_OK) {
        fprintf(stderr, "zfold: %s\n", zf_last_error());
        return ZF_EXIT_FAILURE;
    }
    printf("# run directory %s\n", dir);
    print_config(r);
    const int64_t nb = zf_rundir_n_blocks(r);
    int64_t valid = 0, listed = 0;
    double before = 0, after = 0;
    char why[512], path[PATH_MAX + 300];
    for (int64_t b = 0; b < nb; b++) {
        const char *file = zf_rundir_file(r, b);
        if (!file) {
            printf("block %4lld  not finished\n", (long long)b);
            continue;
        }
        listed++;
        if (!zf_rundir_verify(r, b, why, sizeof why)) {
            printf("block %4lld  %s  INVALID: %s\n", (long long)b, file, why);
            continue;
        }
        printf("block %4lld  %s  checksum ok\n", (long long)b, file);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        valid += print_layers(path, &before, &after);
    }
    bool unq_ok = zf_rundir_verify(r, -1, why, sizeof why);
    const char *ufile = zf_rundir_file(r, -1);
    if (!ufile) printf("unquantized.h5  not finished\n");
    else printf("unquantized %s  %s%s\n", ufile, unq_ok ? "checksum ok" : "INVALID: ", unq_ok ? "" : why);
    if (unq_ok) {
        zf_shard_data d;
        snprintf(path, sizeof path, "%s/%s", dir, ufile);
        if (zf_shard_read(path, &d) != ZF_OK) {
            printf("    unreadable: %s\n", zf_last_error());
            unq_ok = false;
        } else {
            zf_shard_data_free(&d);
        }
    }
    printf("# blocks done %lld / %lld (valid %lld); delta loss before %.6g, after %.6g\n", (long long)listed,
           (long long)nb, (long long)valid, before, after);
    print_report(dir);
    bool complete = valid == nb && unq_ok;
    printf("# run %s\n", complete ? "COMPLETE" : "INCOMPLETE");
    zf_rundir_close(r);
    return complete ? ZF_EXIT_OK : ZF_EXIT_FAILURE;
}
