/* Run directory: manifest round trip, resume keeps verified blocks, damaged shards dropped, other configs refused (keys
 * that do not affect the run's method aside), the config fingerprint of existing manifests, restart. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/log.h"
#include "common/shard.h"
#include "coordinator/commands.h"
#include "coordinator/config.h"
#include "coordinator/rundir.h"
#include "tests/testutil.h"
#define XXH_INLINE_ALL
#include <xxhash.h>

enum { NB = 4 };

/* The run directory the phases below share, its shards and its config text. */
static const uint64_t FP = 0x0123456789abcdefull;
static char dir[1024], p0[1200], p1[1200], p2[1200], p3[1200], pu[1200];
static char *yaml;

int zf_cmd_inspect(int argc, char **argv); /* also in commands.h once the command table lists it */

/* The effective config text of the defaults plus the given overrides. */
static char *yaml_with(const char *set1, const char *set2)
{
    zf_job_config c;
    zf_config_defaults(&c);
    CHECK_OK(zf_config_set(&c, "model=/models/tiny"));
    CHECK_OK(zf_config_set(&c, "output=/runs/tiny"));
    CHECK_OK(zf_config_set(&c, "calibration.file=/data/calib.bin"));
    if (set1) CHECK_OK(zf_config_set(&c, set1));
    if (set2) CHECK_OK(zf_config_set(&c, set2));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    zf_config_write_yaml(&c, f);
    fclose(f);
    return buf;
}

/* A real block shard (tiny), so `zfold inspect` can read it. */
static void write_block(const char *dir, int b, char *path, size_t n)
{
    enum { OUT = 4, IN = 8 };
    uint8_t q[OUT * IN];
    float scale[OUT], zero[OUT], zeta[IN], norm[IN];
    int32_t g_idx[IN] = {0};
    for (int i = 0; i < OUT * IN; i++) q[i] = (uint8_t)((i * 5 + b) % 8);
    for (int i = 0; i < OUT; i++) {
        scale[i] = 0.1f * (float)(i + 1);
        zero[i] = 3;
    }
    for (int j = 0; j < IN; j++) zeta[j] = norm[j] = 1.0f + 0.125f * (float)j;
    zf_shard_linear lin = {.name = "self_attn.q_proj", .bits = 3, .out = OUT, .in = IN, .ngroups = 1,
                           .group_size = -1, .q = q, .scale = scale, .zero = zero, .g_idx = g_idx, .zeta = zeta,
                           .bias = NULL, .dl_before = 2.0 + b, .dl_after = 1.0, .als_iters = 3, .damp_used = 0.01};
    zf_shard_tensor t = {"input_layernorm.weight", 1, {IN, 0}, norm};
    snprintf(path, n, "%s/blocks/block-%04d.h5", dir, b);
    CHECK_OK(zf_shard_write(path, "block", b, 1, &lin, 1, &t, "bits: 3\n"));
}

static void write_unquantized(const char *dir, char *path, size_t n)
{
    float emb[6 * 8];
    for (int i = 0; i < 48; i++) emb[i] = (float)i;
    zf_shard_tensor t = {"model.embed_tokens.weight", 2, {6, 8}, emb};
    snprintf(path, n, "%s/unquantized.h5", dir);
    CHECK_OK(zf_shard_write(path, "unquantized", -1, 0, NULL, 1, &t, NULL));
}

/* Runs fn with stderr captured into buf (for zf_log_warn). */
static zf_status open_capturing(const char *dir, const char *yaml, uint64_t fp, bool restart, zf_rundir **r, char *buf,
                                size_t n)
{
    char cap[1024];
    snprintf(cap, sizeof cap, "%s/stderr.txt", zt_tmpdir());
    fflush(stderr);
    int saved = dup(2);
    int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    zf_status s = zf_rundir_open(dir, yaml, fp, NB, restart, r);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(cap, "r");
    size_t got = f ? fread(buf, 1, n - 1, f) : 0;
    buf[got] = '\0';
    if (f) fclose(f);
    fputs(buf, stderr); /* still visible in the test log */
    return s;
}

static void flip_byte(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
}

/* The config fingerprint existing manifests hold: XXH64 of "key: value\n" of every key but output, threads,
 * calibration.cache, gpu.comm_timeout, eval.* and delta_loss_rtn (what is measured, not what is computed; an
 * independent copy of the definition, so that it cannot drift). */
static uint64_t manifest_fingerprint_v1(const char *yaml)
{
    XXH64_state_t st;
    XXH64_reset(&st, 0);
    char section[64] = "", line[2048], key[256];
    for (const char *p = yaml; *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        p += len + (eol != NULL);
        char *colon = strchr(line, ':');
        if (!colon) continue;
        if (line[0] != ' ' && colon[1] == '\0') {
            snprintf(section, sizeof section, "%.*s", (int)(colon - line), line);
            continue;
        }
        if (line[0] == ' ') snprintf(key, sizeof key, "%s.%.*s", section, (int)(colon - line - 2), line + 2);
        else snprintf(key, sizeof key, "%.*s", (int)(colon - line), line);
        if (!strcmp(key, "output") || !strcmp(key, "threads") || !strcmp(key, "calibration.cache") ||
            !strcmp(key, "gpu.comm_timeout") || !strncmp(key, "eval.", 5) || !strcmp(key, "delta_loss_rtn") ||
            !strncmp(key, "export.", 7))
            continue;
        XXH64_update(&st, key, strlen(key));
        XXH64_update(&st, ": ", 2);
        XXH64_update(&st, colon + 2, strlen(colon + 2));
        XXH64_update(&st, "\n", 1);
    }
    return XXH64_digest(&st);
}

static uint64_t recorded_fingerprint(const char *dir)
{
    char path[1200], *text = NULL;
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    CHECK_OK(zf_read_small_file(path, 1 << 20, "a manifest", &text));
    const char *at = text ? strstr(text, "\"config_fingerprint\":") : NULL;
    CHECK(at != NULL);
    uint64_t fp = at ? strtoull(strchr(at + 21, '"') + 1, NULL, 16) : 0;
    free(text);
    return fp;
}

/* Keys that affect only other methods do not block a resume; the fingerprint keeps its definition. */
static void test_method_keys(void)
{
    char rdir[1024];
    snprintf(rdir, sizeof rdir, "%s/rtn-run", zt_tmpdir());
    char *rtn = yaml_with("method=rtn", NULL), *rtn_alpha = yaml_with("method=rtn", "alpha=grid");
    char *rtn_damp = yaml_with("method=rtn", "damp=0.5"), *rtn_bits = yaml_with("method=rtn", "bits=4");
    char *optq_alpha = yaml_with("method=optq", "alpha=grid"), *zfold_alpha = yaml_with("alpha=grid", NULL);
    zf_rundir *r = NULL;
    CHECK_OK(zf_rundir_open(rdir, rtn, FP, NB, false, &r));
    zf_rundir_close(r);
    CHECK(recorded_fingerprint(rdir) == manifest_fingerprint_v1(rtn));
    r = NULL;
    CHECK_OK(zf_rundir_open(rdir, rtn_alpha, FP, NB, false, &r));
    zf_rundir_close(r);
    CHECK(recorded_fingerprint(rdir) == manifest_fingerprint_v1(rtn_alpha));
    r = NULL;
    CHECK_OK(zf_rundir_open(rdir, rtn_damp, FP, NB, false, &r));
    zf_rundir_close(r);
    r = NULL;
    CHECK(zf_rundir_open(rdir, rtn_bits, FP, NB, false, &r) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "bits was 3, now 4") && !strstr(zf_last_error(), "damp") &&
              !strstr(zf_last_error(), "alpha"), "%s", zf_last_error());
    /* a change of method names every key that matters to either method */
    CHECK(zf_rundir_open(rdir, zfold_alpha, FP, NB, false, &r) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "method was rtn, now zfold") && strstr(zf_last_error(), "damp was 0.5") &&
              strstr(zf_last_error(), "alpha was diag, now grid"), "%s", zf_last_error());
    CHECK(zf_rundir_open(rdir, optq_alpha, FP, NB, false, &r) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "method was rtn, now optq") && !strstr(zf_last_error(), "alpha"), "%s",
              zf_last_error());
    free(rtn), free(rtn_alpha), free(rtn_damp), free(rtn_bits), free(optq_alpha), free(zfold_alpha);
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static int inspect(const char *dir)
{
    char *argv[] = {"inspect", (char *)dir, NULL};
    fflush(stdout);
    return zf_cmd_inspect(2, argv);
}

/* A fresh run, then a resume that keeps the done set. */
static void test_fresh_and_resume(void)
{
    char path[1200], log[8192];
    /* fresh run: manifest written at once, nothing done */
    zf_rundir *r = NULL;
    CHECK_OK(zf_rundir_open(dir, yaml, FP, NB, false, &r));
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    CHECK(exists(path));
    CHECK(r && zf_rundir_blocks_done(r) == 0 && zf_rundir_first_unfinished(r) == 0 && !zf_rundir_unquantized_done(r));
    CHECK(r && !strcmp(zf_rundir_path(r), dir));
    CHECK_OK(zf_mkdirs((snprintf(path, sizeof path, "%s/blocks", dir), path)));
    write_block(dir, 0, p0, sizeof p0);
    write_block(dir, 1, p1, sizeof p1);
    write_block(dir, 3, p3, sizeof p3);
    CHECK_OK(zf_rundir_mark_done(r, 0, p0));
    CHECK_OK(zf_rundir_mark_done(r, 1, p1));
    CHECK_OK(zf_rundir_mark_done(r, 3, p3));
    CHECK(zf_rundir_blocks_done(r) == 3 && zf_rundir_first_unfinished(r) == 2);
    CHECK(zf_rundir_block_done(r, 3) && !zf_rundir_block_done(r, 2) && !zf_rundir_block_done(r, 7));
    /* a path outside the run directory is refused */
    snprintf(path, sizeof path, "%s/elsewhere.h5", zt_tmpdir());
    CHECK_OK(zf_write_file_atomic(path, "x", 1));
    CHECK(zf_rundir_mark_done(r, 2, path) == ZF_ERR_INPUT && strstr(zf_last_error(), "not inside"));
    zf_rundir_close(r);
    CHECK(inspect(dir) == 1); /* unfinished */

    /* reopen with the same config: done set preserved */
    r = NULL;
    CHECK_OK(open_capturing(dir, yaml, FP, false, &r, log, sizeof log));
    CHECK(log[0] == '\0');
    CHECK(r && zf_rundir_blocks_done(r) == 3 && zf_rundir_first_unfinished(r) == 2);
    write_block(dir, 2, p2, sizeof p2);
    write_unquantized(dir, pu, sizeof pu);
    if (r) {
        CHECK_OK(zf_rundir_mark_done(r, 2, p2));
        CHECK_OK(zf_rundir_mark_unquantized(r, pu));
        CHECK(zf_rundir_first_unfinished(r) == NB && zf_rundir_unquantized_done(r));
        zf_rundir_close(r);
    }
    CHECK(inspect(dir) == 0); /* complete and valid */
    snprintf(path, sizeof path, "%s/report.json", dir);
    const char *report = "{\"eval\": [{\"file\": \"wiki.bin\", \"windows\": 4, \"ppl_fp\": 10.5, \"ppl\": 11.25}]}";
    CHECK_OK(zf_write_file_atomic(path, report, strlen(report)));
    CHECK(inspect(dir) == 0);
}

/* Keys that do not change the result are ignored; other differences are refused by name. */
static void test_config_changes(void)
{
    zf_rundir *r = NULL;
    /* keys that do not change the result are ignored: eval.*, threads, output */
    char *yaml_eval = yaml_with("eval.max_windows=5", "threads=3");
    char *yaml_out = yaml_with("output=/elsewhere", "eval.files=/a.bin,/b.bin");
    r = NULL;
    CHECK_OK(zf_rundir_open(dir, yaml_eval, FP, NB, false, &r));
    CHECK(r && zf_rundir_blocks_done(r) == NB);
    zf_rundir_close(r);
    r = NULL;
    CHECK_OK(zf_rundir_open(dir, yaml_out, FP, NB, false, &r));
    CHECK(r && zf_rundir_blocks_done(r) == NB && zf_rundir_unquantized_done(r));
    zf_rundir_close(r);

    /* alpha matters to Z-FOLD */
    char *yaml_alpha = yaml_with("alpha=grid", NULL);
    r = NULL;
    CHECK(zf_rundir_open(dir, yaml_alpha, FP, NB, false, &r) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "alpha was diag, now grid"), "%s", zf_last_error());
    free(yaml_alpha);
    CHECK(recorded_fingerprint(dir) == manifest_fingerprint_v1(yaml_out));

    /* a key one side lacks (an older zfold wrote the manifest) counts as its default value */
    char *yaml_old = yaml_with("true_sequential=false", NULL);
    char *line = strstr(yaml_old, "true_sequential: false\n");
    CHECK(line != NULL);
    if (line) memmove(line, line + strlen("true_sequential: false\n"), strlen(line + strlen("true_sequential: false\n")) + 1);
    r = NULL;
    CHECK_OK(zf_rundir_open(dir, yaml_old, FP, NB, false, &r));
    CHECK(r && zf_rundir_blocks_done(r) == NB);
    zf_rundir_close(r);
    char *model_line = strstr(yaml_old, "model: ");
    CHECK(model_line != NULL);
    if (model_line) model_line[0] = '#'; /* model absent: its default ("") differs from the recorded one */
    r = NULL;
    CHECK(zf_rundir_open(dir, yaml_old, FP, NB, false, &r) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "model was \"/models/tiny\", now (absent)"), "%s", zf_last_error());
    free(yaml_old);

    /* a different relevant key is refused, naming the key with both values and --restart */
    char *yaml_bits = yaml_with("bits=4", NULL);
    r = NULL;
    CHECK(zf_rundir_open(dir, yaml_bits, FP, NB, false, &r) == ZF_ERR_INPUT && r == NULL);
    CHECK_MSG(strstr(zf_last_error(), "bits was 3, now 4") && strstr(zf_last_error(), "--restart") &&
              strstr(zf_last_error(), "manifest.json"), "%s", zf_last_error());
    CHECK(!strstr(zf_last_error(), "eval") && !strstr(zf_last_error(), "threads"));
    char *yaml_two = yaml_with("method=optq", "calibration.windows=7");
    CHECK(zf_rundir_open(dir, yaml_two, FP, NB, false, &r) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "method was zfold, now optq") &&
              strstr(zf_last_error(), "calibration.windows was 128, now 7"), "%s", zf_last_error());
    /* a different model is refused, naming both fingerprints */
    CHECK(zf_rundir_open(dir, yaml, FP ^ 1, NB, false, &r) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "model fingerprint was 0123456789abcdef, now 0123456789abcdee") &&
              strstr(zf_last_error(), "--restart"), "%s", zf_last_error());
    CHECK(zf_rundir_open(dir, yaml, FP, NB + 1, false, &r) == ZF_ERR_INPUT && strstr(zf_last_error(), "n_blocks"));
    CHECK(exists(p0) && exists(p3)); /* a refusal deletes nothing */
    free(yaml_eval);
    free(yaml_out);
    free(yaml_bits);
    free(yaml_two);
}

/* Truncated, corrupt and missing shards are dropped with a warning naming the file. */
static void test_damaged_shards(void)
{
    char log[8192];
    zf_rundir *r = NULL;
    /* damaged shards: block 1 truncated, block 3 with a flipped byte → dropped with a warning naming the file */
    struct stat st;
    CHECK(stat(p1, &st) == 0 && truncate(p1, st.st_size / 2) == 0);
    CHECK(stat(p3, &st) == 0);
    flip_byte(p3, (long)st.st_size / 2);
    CHECK(inspect(dir) == 1); /* reports both as INVALID (inspect never rewrites the manifest) */
    r = NULL;
    CHECK_OK(open_capturing(dir, yaml, FP, false, &r, log, sizeof log));
    CHECK_MSG(strstr(log, "block-0001.h5") && strstr(log, "truncated"), "warning: %s", log);
    CHECK_MSG(strstr(log, "block-0003.h5") && strstr(log, "corrupt"), "warning: %s", log);
    CHECK(!strstr(log, "block-0000.h5") && !strstr(log, "block-0002.h5"));
    CHECK(r && zf_rundir_blocks_done(r) == 2 && zf_rundir_block_done(r, 0) && !zf_rundir_block_done(r, 1) &&
          zf_rundir_block_done(r, 2) && !zf_rundir_block_done(r, 3) && zf_rundir_first_unfinished(r) == 1);
    zf_rundir_close(r);
    CHECK(inspect(dir) == 1);
    /* a missing shard too */
    CHECK(unlink(p2) == 0);
    r = NULL;
    CHECK_OK(open_capturing(dir, yaml, FP, false, &r, log, sizeof log));
    CHECK_MSG(strstr(log, "block-0002.h5"), "warning: %s", log);
    CHECK(r && zf_rundir_blocks_done(r) == 1 && zf_rundir_first_unfinished(r) == 1);
    zf_rundir_close(r);
}

/* Malformed manifests are refused naming the file and the field. */
static void test_malformed_manifests(void)
{
    char path[1200];
    zf_rundir *r = NULL;
    /* malformed manifests: refused naming the file and the field */
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    size_t mlen = 0;
    char *good = NULL;
    {
        FILE *f = fopen(path, "rb");
        CHECK(f != NULL);
        fseek(f, 0, SEEK_END);
        mlen = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        good = calloc(mlen + 1, 1);
        CHECK(fread(good, 1, mlen, f) == mlen);
        fclose(f);
    }
    CHECK_OK(zf_write_file_atomic(path, good, mlen / 2));
    CHECK(zf_rundir_open(dir, yaml, FP, NB, false, &r) == ZF_ERR_INPUT && strstr(zf_last_error(), path) &&
          strstr(zf_last_error(), "--restart"));
    char *m = strdup(good), *at = strstr(m, "\"n_blocks\"");
    CHECK(at != NULL);
    if (at) memcpy(at, "\"n_blockz\"", 10);
    CHECK_OK(zf_write_file_atomic(path, m, mlen));
    CHECK(zf_rundir_open(dir, yaml, FP, NB, false, &r) == ZF_ERR_INPUT && strstr(zf_last_error(), "'n_blocks'"));
    strcpy(m, good);
    at = strstr(m, "\"xxh64\":");
    if (at) at = strchr(at + 8, '"');
    CHECK(at != NULL);
    if (at) at[1] = 'g';
    CHECK_OK(zf_write_file_atomic(path, m, mlen));
    CHECK_MSG(zf_rundir_open(dir, yaml, FP, NB, false, &r) == ZF_ERR_INPUT &&
              strstr(zf_last_error(), "'blocks[0].xxh64'"), "%s", zf_last_error());
    free(m);
    CHECK(inspect(dir) == 1);
    free(good);
}

/* --restart removes only zfold's files, then starts clean. */
static void test_restart(void)
{
    char path[1200];
    zf_rundir *r = NULL;
    char *yaml_bits = yaml_with("bits=4", NULL);
    /* restart: only zfold's files are removed, then a clean start */
    char keep1[1200], keep2[1200], tmpshard[1200];
    snprintf(keep1, sizeof keep1, "%s/notes.txt", dir);
    snprintf(keep2, sizeof keep2, "%s/blocks/block-0000.h5.bak", dir);
    snprintf(tmpshard, sizeof tmpshard, "%s/blocks/block-0002.h5.tmp.12345", dir);
    CHECK_OK(zf_write_file_atomic(keep1, "mine", 4));
    CHECK_OK(zf_write_file_atomic(keep2, "mine", 4));
    CHECK_OK(zf_write_file_atomic(tmpshard, "half", 4));
    r = NULL;
    CHECK_OK(zf_rundir_open(dir, yaml_bits, FP ^ 1, NB, true, &r));
    CHECK(r && zf_rundir_blocks_done(r) == 0 && zf_rundir_first_unfinished(r) == 0 && !zf_rundir_unquantized_done(r));
    zf_rundir_close(r);
    CHECK(!exists(p0) && !exists(p1) && !exists(p3) && !exists(pu) && !exists(tmpshard));
    snprintf(path, sizeof path, "%s/report.json", dir);
    CHECK(!exists(path));
    CHECK(exists(keep1) && exists(keep2));
    /* and the new manifest now holds the new config: the old one is refused */
    r = NULL;
    CHECK(zf_rundir_open(dir, yaml, FP, NB, false, &r) == ZF_ERR_INPUT && strstr(zf_last_error(), "bits was 4, now 3"));
    CHECK_OK(zf_rundir_open(dir, yaml_bits, FP ^ 1, NB, false, &r));
    zf_rundir_close(r);
    /* inspect on a folder without a manifest */
    snprintf(path, sizeof path, "%s/empty", zt_tmpdir());
    CHECK_OK(zf_mkdirs(path));
    CHECK(inspect(path) == 1);
    free(yaml_bits);
}

int main(void)
{
    zf_log_init(0, 1);
    snprintf(dir, sizeof dir, "%s/run", zt_tmpdir());
    yaml = yaml_with(NULL, NULL);
    test_fresh_and_resume();
    test_config_changes();
    test_damaged_shards();
    test_malformed_manifests();
    test_restart();
    test_method_keys();
    free(yaml);
    return zt_finish("test_rundir");
}
