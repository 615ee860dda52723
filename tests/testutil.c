/* Test harness implementation: failure counting, fixtures, temporary folders, random data, double references. */
#define _GNU_SOURCE
#include "tests/testutil.h"

#include "common/fsutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int zt_failures = 0;
int zt_checks = 0;

double zt_fabs(double x) { return fabs(x); }

int zt_finish(const char *name)
{
    if (zt_checks == 0) {
        fprintf(stderr, "%s: no checks ran\n", name);
        return 1;
    }
    printf("%s: %d checks, %d failed\n", name, zt_checks, zt_failures);
    return zt_failures ? 1 : 0;
}

const char *zt_fixture(const char *rel)
{
    static char bufs[8][4096];
    static int slot = 0;
    char *b = bufs[slot];
    slot = (slot + 1) % 8;
    const char *root = getenv("ZF_FIXTURES");
    snprintf(b, 4096, "%s/%s", root && *root ? root : "../shared/fixtures", rel);
    return b;
}

static char tmpdir_path[512];

static void remove_tmpdir(void)
{
    if (!tmpdir_path[0] || getenv("ZT_KEEP")) return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir_path);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir_path);
}

const char *zt_tmpdir(void)
{
    if (tmpdir_path[0]) return tmpdir_path;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir_path, sizeof tmpdir_path, "%s/zftest.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir_path)) {
        perror("mkdtemp");
        exit(2);
    }
    atexit(remove_tmpdir);
    return tmpdir_path;
}

void zt_rng_seed(zt_rng *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull; }

uint64_t zt_rng_u64(zt_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double zt_rng_uniform(zt_rng *r) { return (double)(zt_rng_u64(r) >> 11) * 0x1.0p-53; }

double zt_rng_normal(zt_rng *r)
{
    double u1 = zt_rng_uniform(r), u2 = zt_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void zt_fill_normal(zt_rng *r, float *x, int64_t n, double sigma)
{
    for (int64_t i = 0; i < n; i++) x[i] = (float)(sigma * zt_rng_normal(r));
}

void zt_correlated_inputs(zt_rng *r, float *X, int64_t ntok, int64_t dim, int n_outliers, double outlier_scale)
{
    double *M = malloc(sizeof(double) * dim * dim);
    double *z = malloc(sizeof(double) * dim);
    for (int64_t i = 0; i < dim * dim; i++) M[i] = zt_rng_normal(r) / sqrt((double)dim);
    for (int64_t i = 0; i < dim; i++) M[i * dim + i] += 1.0;
    double *chan = malloc(sizeof(double) * dim);
    for (int64_t j = 0; j < dim; j++) chan[j] = 1.0;
    for (int k = 0; k < n_outliers && k < dim; k++) chan[zt_rng_u64(r) % (uint64_t)dim] = outlier_scale;
    for (int64_t t = 0; t < ntok; t++) {
        for (int64_t i = 0; i < dim; i++) z[i] = zt_rng_normal(r);
        for (int64_t j = 0; j < dim; j++) {
            double acc = 0;
            for (int64_t i = 0; i < dim; i++) acc += z[i] * M[i * dim + j];
            X[t * dim + j] = (float)(acc * chan[j]);
        }
    }
    free(M);
    free(z);
    free(chan);
}

void zt_factor_inputs(zt_rng *r, float *X, int64_t ntok, int64_t dim, double noise)
{
    float f[4];
    zt_fill_normal(r, X, ntok * dim, noise);
    for (int64_t t = 0; t < ntok; t++) {
        zt_fill_normal(r, f, 4, 10.0);
        for (int64_t j = 0; j < dim; j++) X[t * dim + j] += f[j % 4];
    }
}

void zt_hessian_ref(const float *X, int64_t ntok, int64_t dim, float *H)
{
    for (int64_t i = 0; i < dim; i++)
        for (int64_t j = 0; j <= i; j++) {
            double acc = 0;
            for (int64_t t = 0; t < ntok; t++) acc += (double)X[t * dim + i] * X[t * dim + j];
            double v = ntok ? 2.0 * acc / (double)ntok : 0.0;
            H[i * dim + j] = H[j * dim + i] = (float)v;
        }
}

double zt_delta_loss_ref(const float *W, const float *Wq, int64_t rows, int64_t cols, const float *H)
{
    double total = 0;
    double *d = malloc(sizeof(double) * cols);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < cols; j++) d[j] = (double)W[r * cols + j] - Wq[r * cols + j];
        for (int64_t i = 0; i < cols; i++) {
            double acc = 0;
            for (int64_t j = 0; j < cols; j++) acc += H[i * cols + j] * d[j];
            total += d[i] * acc;
        }
    }
    free(d);
    return total;
}

double zt_max_abs_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d) m = d;
    }
    return m;
}

double zt_max_abs(const float *a, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

double zt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

cJSON *zt_read_json(const char *path)
{
    char *text = NULL;
    if (zf_read_small_file(path, 64u << 20, "a JSON file", &text) != ZF_OK) return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}
