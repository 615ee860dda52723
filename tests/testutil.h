/* Test harness: checks that count failures, fixture paths, seeded random data and small double-precision helpers. */
#ifndef ZF_TESTUTIL_H
#define ZF_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>

extern int zt_failures;
extern int zt_checks;

#define CHECK(cond) \
    do { zt_checks++; if (!(cond)) { zt_failures++; \
        fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) \
    do { zt_checks++; if (!(cond)) { zt_failures++; \
        fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
/* |a - b| <= atol + rtol·|b| */
#define CHECK_CLOSE(a, b, atol, rtol) \
    do { double zt_a_ = (a), zt_b_ = (b); zt_checks++; \
        if (!(zt_fabs(zt_a_ - zt_b_) <= (atol) + (rtol) * zt_fabs(zt_b_))) { zt_failures++; \
        fprintf(stderr, "FAIL %s:%d: %s = %.9g, %s = %.9g (atol %g, rtol %g)\n", __FILE__, __LINE__, \
                #a, zt_a_, #b, zt_b_, (double)(atol), (double)(rtol)); } } while (0)
#define CHECK_OK(expr) \
    do { zf_status zt_s_ = (expr); zt_checks++; if (zt_s_ != ZF_OK) { zt_failures++; \
        fprintf(stderr, "FAIL %s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #expr, \
                zf_status_name(zt_s_), zf_last_error()); } } while (0)

double zt_fabs(double x);
/* Prints "<name>: N checks, M failed" and returns the exit code (0 only when nothing failed and something was checked). */
int zt_finish(const char *name);
/* Path under the fixtures folder (ZF_FIXTURES, else ../shared/fixtures); static buffer, rotating over 8 slots. */
const char *zt_fixture(const char *rel);
/* A fresh empty temporary directory for this test (removed at exit unless ZT_KEEP is set). */
const char *zt_tmpdir(void);

/* Monotonic seconds. */
double zt_now(void);
/* A parsed JSON file (cJSON *, free with cJSON_Delete), NULL when unreadable. */
struct cJSON *zt_read_json(const char *path);

/* Deterministic generator (splitmix64 / xoshiro-style). */
typedef struct { uint64_t s; } zt_rng;
void zt_rng_seed(zt_rng *r, uint64_t seed);
uint64_t zt_rng_u64(zt_rng *r);
double zt_rng_uniform(zt_rng *r);              /* [0, 1) */
double zt_rng_normal(zt_rng *r);
void zt_fill_normal(zt_rng *r, float *x, int64_t n, double sigma);

/* Correlated inputs with outlier channels: X [ntok, dim] = Z·M with a random mixing M, and a few
 * channels scaled up by `outlier_scale`. Then H = 2/N XᵀX (double reference in tests). */
void zt_correlated_inputs(zt_rng *r, float *X, int64_t ntok, int64_t dim, int n_outliers, double outlier_scale);
/* Inputs driven by four shared factors of scale 10 (channel j follows factor j mod 4) plus independent noise: strongly
 * correlated, so that OPTQ's error feedback is large. */
void zt_factor_inputs(zt_rng *r, float *X, int64_t ntok, int64_t dim, double noise);
/* H = 2/N XᵀX in double, returned as fp32 [dim, dim]. */
void zt_hessian_ref(const float *X, int64_t ntok, int64_t dim, float *H);
/* Σ_r (ΔW H ΔWᵀ)_rr in double. */
double zt_delta_loss_ref(const float *W, const float *Wq, int64_t rows, int64_t cols, const float *H);
/* max |a - b| and max |b| */
double zt_max_abs_diff(const float *a, const float *b, int64_t n);
double zt_max_abs(const float *a, int64_t n);

#endif
