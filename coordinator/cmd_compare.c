/* `zfold compare RUN_A RUN_B`: agreement of integer codes and perplexity between two finished runs. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/shard.h"
#include "coordinator/commands.h"
#include "coordinator/rundir.h"

void zf_cmd_compare_help(void)
{
    printf("usage: zfold compare RUN_A RUN_B [--min-agreement F] [--max-ppl-diff F]\n"
           "Compares two finished run directories of the same model: the fraction of integer codes that agree per\n"
           "block and overall, whether the shards are byte-identical, and the relative perplexity difference per\n"
           "eval file (from report.json). Exits 1 when the overall agreement is below --min-agreement (default 0)\n"
           "or a perplexity differs by more than --max-ppl-diff (relative; default: no limit), when there are no codes\n"
           "(or, with --max-ppl-diff, no perplexities) to compare, or on bad input.\n");
}

static int files_equal(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int eq = 0;
    if (fa && fb) {
        fseek(fa, 0, SEEK_END);
        fseek(fb, 0, SEEK_END);
        long na = ftell(fa), nb = ftell(fb);
        rewind(fa);
        rewind(fb);
        if (na == nb && na > 0 && (x = zf_malloc((size_t)na, a)) && (y = zf_malloc((size_t)nb, b)) &&
            fread(x, 1, (size_t)na, fa) == (size_t)na && fread(y, 1, (size_t)nb, fb) == (size_t)nb)
            eq = memcmp(x, y, (size_t)na) == 0;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    free(x);
    free(y);
    return eq;
}

/* Perplexity of eval file `file` in a run's report.json (NAN if absent). */
static double report_ppl(const char *dir, const char *file)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/report.json", dir);
    char *text = NULL;
    zf_read_small_file(path, 64u << 20, "a report", &text); /* absent or unreadable: no figures */
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    double v = NAN;
    cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(root, "eval"))
    {
        cJSON *f = cJSON_GetObjectItem(e, "file"), *p = cJSON_GetObjectItem(e, "ppl");
        if (cJSON_IsString(f) && !strcmp(f->valuestring, file) && cJSON_IsNumber(p)) v = p->valuedouble;
    }
    cJSON_Delete(root);
    free(text);
    return v;
}

int zf_cmd_compare(int argc, char **argv)
{
    const char *a = NULL, *b = NULL;
    double min_agree = 0, max_ppl = INFINITY;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--min-agreement") && i + 1 < argc) min_agree = atof(argv[++i]);
        else if (!strcmp(argv[i], "--max-ppl-diff") && i + 1 < argc) max_ppl = atof(argv[++i]);
        else if (argv[i][0] != '-' && !a) a = argv[i];
        else if (argv[i][0] != '-' && !b) b = argv[i];
        else {
            zf_cmd_compare_help();
            return ZF_EXIT_USAGE;
        }
    }
    if (!a || !b) {
        zf_cmd_compare_help();
        return ZF_EXIT_USAGE;
    }
    zf_rundir *ra = NULL, *rb = NULL;
    if (zf_rundir_load(a, &ra) != ZF_OK || zf_rundir_load(b, &rb) != ZF_OK) {
        fprintf(stderr, "zfold compare: %s\n", zf_last_error());
        zf_rundir_close(ra);
        return ZF_EXIT_FAILURE;
    }
    int rc = ZF_EXIT_OK;
    int64_t nb = zf_rundir_n_blocks(ra);
    if (nb != zf_rundir_n_blocks(rb)) {
        fprintf(stderr, "zfold compare: %s has %lld blocks, %s has %lld\n", a, (long long)nb, b,
                (long long)zf_rundir_n_blocks(rb));
        rc = ZF_EXIT_FAILURE;
    }
    int64_t agree_all = 0, total_all = 0, identical = 0;
    printf("| block | codes agreeing | byte-identical |\n|---|---|---|\n");
    for (int64_t k = 0; rc == ZF_EXIT_OK && k < nb; k++) {
        char pa[4096], pb[4096];
        if (!zf_rundir_file(ra, k) || !zf_rundir_file(rb, k)) {
            fprintf(stderr, "zfold compare: %s: block %lld is not finished (%lld of %lld blocks done); finish the run "
                    "with zfold quantize first\n", zf_rundir_file(ra, k) ? b : a, (long long)k,
                    (long long)zf_rundir_blocks_done(zf_rundir_file(ra, k) ? rb : ra), (long long)nb);
            rc = ZF_EXIT_FAILURE;
            break;
        }
        snprintf(pa, sizeof pa, "%s/%s", a, zf_rundir_file(ra, k));
        snprintf(pb, sizeof pb, "%s/%s", b, zf_rundir_file(rb, k));
        /* a shard is read only once its checksum matches the manifest: HDF5 does not survive every corrupt file */
        char why[512];
        const bool a_ok = zf_rundir_verify(ra, k, why, sizeof why);
        if (!a_ok || !zf_rundir_verify(rb, k, why, sizeof why)) {
            fprintf(stderr, "zfold compare: %s: %s; resume that run with zfold quantize to redo the block\n",
                    a_ok ? pb : pa, why);
            rc = ZF_EXIT_FAILURE;
            break;
        }
        zf_shard_data da, db;
        memset(&da, 0, sizeof da);
        memset(&db, 0, sizeof db);
        if (zf_shard_read(pa, &da) != ZF_OK || zf_shard_read(pb, &db) != ZF_OK) {
            fprintf(stderr, "zfold compare: %s\n", zf_last_error());
            rc = ZF_EXIT_FAILURE;
        }
        int64_t agree = 0, total = 0;
        for (int i = 0; rc == ZF_EXIT_OK && i < da.nlin; i++) {
            const zf_shard_linear_data *x = &da.lin[i], *y = NULL;
            for (int j = 0; j < db.nlin; j++)
                if (!strcmp(db.lin[j].name, x->name)) y = &db.lin[j];
            if (!y || y->out != x->out || y->in != x->in) {
                fprintf(stderr, "zfold compare: layer %s differs in shape or is missing in %s\n", x->name, pb);
                rc = ZF_EXIT_FAILURE;
                break;
            }
            for (int64_t e = 0; e < x->out * x->in; e++) agree += x->q[e] == y->q[e];
            total += x->out * x->in;
        }
        int same = rc == ZF_EXIT_OK && files_equal(pa, pb);
        if (rc == ZF_EXIT_OK)
            printf("| %lld | %.6f | %s |\n", (long long)k, total ? (double)agree / (double)total : 1.0, same ? "yes" : "no");
        identical += same;
        agree_all += agree;
        total_all += total;
        zf_shard_data_free(&da);
        zf_shard_data_free(&db);
    }
    double frac = total_all ? (double)agree_all / (double)total_all : 1.0;
    if (rc == ZF_EXIT_OK) {
        printf("codes agreeing: %lld of %lld (%.6f); byte-identical blocks: %lld of %lld\n", (long long)agree_all,
               (long long)total_all, frac, (long long)identical, (long long)nb);
        if (frac < min_agree) rc = ZF_EXIT_FAILURE;
        if (total_all == 0) {
            fprintf(stderr, "zfold compare: no quantized codes to compare (no finished blocks in %s)\n", a);
            rc = ZF_EXIT_FAILURE;
        }
        int compared = 0;
        char path[4096];
        snprintf(path, sizeof path, "%s/report.json", a);
        char *text = NULL;
        zf_read_small_file(path, 64u << 20, "a report", &text); /* absent or unreadable: no figures */
        cJSON *root = text ? cJSON_Parse(text) : NULL, *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(root, "eval"))
        {
            cJSON *f = cJSON_GetObjectItem(e, "file"), *p = cJSON_GetObjectItem(e, "ppl");
            if (!cJSON_IsString(f) || !cJSON_IsNumber(p)) continue;
            double pb2 = report_ppl(b, f->valuestring), rel = fabs(pb2 - p->valuedouble) / p->valuedouble;
            printf("ppl %s: %.6f vs %.6f (relative difference %.2e)\n", f->valuestring, p->valuedouble, pb2, rel);
            if (!(rel <= max_ppl)) rc = ZF_EXIT_FAILURE;
            compared++;
        }
        if (isfinite(max_ppl) && compared == 0) {
            fprintf(stderr, "zfold compare: --max-ppl-diff given, but %s has no perplexity to compare\n", path);
            rc = ZF_EXIT_FAILURE;
        }
        cJSON_Delete(root);
        free(text);
    }
    zf_rundir_close(ra);
    zf_rundir_close(rb);
    return rc;
}
