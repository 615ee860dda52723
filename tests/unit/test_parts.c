/* Teams that split a group's rows: how the ranks are spread (owners, disjoint teams, rows covered once), and the
 * quantizer run by a team of threads against the whole layer quantized alone. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/parts.h"
#include "coordinator/pipeline.h"
#include "tests/testutil.h"
#include "worker/backend.h"
#include "worker/backend_impl.h"
#include "worker/hessian.h"

static double busiest(const zf_model_config *c, const zf_quant_opts *q, const zf_block_parts *p, int nranks)
{
    double *load = calloc((size_t)nranks, sizeof *load), most = 0;
    for (int g = 0; g < ZF_NGROUP; g++)
        for (int i = 0; i < p->n[g]; i++) {
            int64_t lo, hi;
            zf_part_rows(c, p, (zf_group)g, i, &lo, &hi);
            load[p->first[g] + i] += zf_quant_flops(q, (double)(hi - lo), (double)zf_group_in(c, (zf_group)g),
                                                    q->method == ZF_METHOD_ZFOLD ? q->als_max_iter : 0);
        }
    for (int r = 0; r < nranks; r++) most = fmax(most, load[r]);
    free(load);
    return most;
}

static void check_spread(const zf_model_config *c, const zf_quant_opts *q)
{
    double prev = INFINITY;
    for (int nranks = 1; nranks <= 64; nranks++) {
        zf_block_parts p;
        CHECK_OK(zf_assign_parts(c, q, nranks, true, &p));
        int used = 0, owners[ZF_NGROUP];
        CHECK_OK(zf_assign_owners(c, 1, nranks, owners));
        for (int g = 0; g < ZF_NGROUP; g++) {
            int64_t rows = zf_group_out(c, (zf_group)g), next = 0;
            CHECK(p.n[g] >= 1 && p.n[g] <= rows && p.first[g] >= 0 && p.first[g] + p.n[g] <= nranks);
            if (nranks <= ZF_NGROUP) CHECK(p.n[g] == 1 && p.first[g] == owners[g]);
            /* the parts cover the rows once, in order, sizes within one of each other */
            for (int i = 0; i < p.n[g]; i++) {
                int64_t lo, hi;
                zf_part_rows(c, &p, (zf_group)g, i, &lo, &hi);
                CHECK(lo == next && hi > lo && hi - lo <= rows / p.n[g] + 1);
                next = hi;
            }
            CHECK(next == rows);
            used += p.n[g];
        }
        if (nranks > ZF_NGROUP) {
            /* disjoint contiguous teams, from rank 0 */
            CHECK(p.first[0] == 0 && used <= nranks);
            for (int g = 1; g < ZF_NGROUP; g++) CHECK(p.first[g] == p.first[g - 1] + p.n[g - 1]);
            for (int r = 0; r < used; r++) {
                int member = 0;
                for (int g = 0; g < ZF_NGROUP; g++) member += zf_parts_member(&p, (zf_group)g, r);
                CHECK_MSG(member == 1, "%d ranks: rank %d in %d teams", nranks, r, member);
            }
            double b = busiest(c, q, &p, nranks);
            CHECK_MSG(b <= prev * (1 + 1e-12), "%d ranks: busiest part %g flops, more than with fewer ranks (%g)",
                      nranks, b, prev);
            prev = b;
        }
        zf_block_parts off;
        CHECK_OK(zf_assign_parts(c, q, nranks, false, &off));
        for (int g = 0; g < ZF_NGROUP; g++) CHECK(off.n[g] == 1 && off.first[g] == owners[g]);
    }
}

/* A team of threads: sums through a shared buffer between two barriers. */
typedef struct {
    pthread_barrier_t bar;
    double buf[1 << 16];
    int64_t n;
    zf_status worst;
} thread_team;

typedef struct {
    thread_team *t;
    int index;
    zf_row_team rt;
    const zf_quant_opts *o;
    const float *W, *H;
    int64_t row0, rows, cols;
    int64_t member_rows[2];
    zf_qresult out;
    double dl[2], dl_rtn[2];
    zf_status st;
} member;

static zf_status team_sum(void *ctx, double *v, int64_t n)
{
    member *m = ctx;
    thread_team *t = m->t;
    if (n > (int64_t)(sizeof t->buf / sizeof t->buf[0])) return ZF_ERR_INTERNAL;
    pthread_barrier_wait(&t->bar);
    if (m->index == 0) memset(t->buf, 0, sizeof(double) * (size_t)n);
    pthread_barrier_wait(&t->bar);
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    for (int64_t i = 0; i < n; i++) t->buf[i] += v[i];
    pthread_mutex_unlock(&mu);
    pthread_barrier_wait(&t->bar);
    memcpy(v, t->buf, sizeof(double) * (size_t)n);
    pthread_barrier_wait(&t->bar);
    return ZF_OK;
}

static zf_status team_agree(void *ctx, zf_status local)
{
    double bad = local != ZF_OK;
    team_sum(ctx, &bad, 1);
    return local != ZF_OK ? local : bad > 0 ? ZF_ERR_INPUT : ZF_OK;
}

static void *run_member(void *arg)
{
    member *m = arg;
    m->st = zf_backend_quantize_group(zf_cpu_backend(), m->o, m->W + m->row0 * m->cols, m->rows, m->cols, m->H, NULL,
                                      2, m->member_rows, &m->rt, &m->out, m->dl, m->dl_rtn);
    return NULL;
}

/* Three threads each quantize a third of a [rows, cols] layer of two members (split 50/50, so that one part
 * holds rows of both): ζ, the iteration count and the per-member ΔL are the whole layer's; codes agree. */
static void check_team(zf_method method)
{
    const int64_t rows = 96, cols = 64, ntok = 512, half = rows / 2;
    zt_rng rng;
    zt_rng_seed(&rng, 11);
    float *W = malloc(sizeof(float) * rows * cols), *X = malloc(sizeof(float) * ntok * cols),
          *H = malloc(sizeof(float) * cols * cols);
    zt_fill_normal(&rng, W, rows * cols, 0.05);
    zt_correlated_inputs(&rng, X, ntok, cols, 3, 20.0);
    zf_hessian h;
    CHECK_OK(zf_hessian_init(&h, cols, true));
    CHECK_OK(zf_hessian_add(&h, X, ntok));
    CHECK_OK(zf_hessian_finalize(&h, H));
    zf_hessian_free(&h);
    zf_quant_opts o;
    zf_quant_opts_default(&o);
    o.method = method;
    o.bits = 3;

    zf_qresult whole;
    int64_t mrows[2] = {half, rows - half};
    double dl[2], dl_rtn[2];
    CHECK_OK(zf_backend_quantize_group(zf_cpu_backend(), &o, W, rows, cols, H, NULL, 2, mrows, NULL, &whole, dl, dl_rtn));

    enum { K = 3 };
    thread_team t = {.worst = ZF_OK};
    pthread_barrier_init(&t.bar, NULL, K);
    member m[K];
    pthread_t th[K];
    for (int i = 0; i < K; i++) {
        int64_t lo = rows * i / K, hi = rows * (i + 1) / K;
        m[i] = (member){.t = &t, .index = i, .o = &o, .W = W, .H = H, .row0 = lo, .rows = hi - lo, .cols = cols};
        m[i].rt = (zf_row_team){team_sum, team_agree, &m[i]};
        m[i].member_rows[0] = lo < half ? (hi < half ? hi : half) - lo : 0;
        m[i].member_rows[1] = (hi - lo) - m[i].member_rows[0];
        pthread_create(&th[i], NULL, run_member, &m[i]);
    }
    for (int i = 0; i < K; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&t.bar);
    int64_t agree = 0;
    for (int i = 0; i < K; i++) {
        CHECK_OK(m[i].st);
        CHECK(m[i].out.rows == m[i].rows && m[i].out.als_iters == whole.als_iters);
        for (int64_t j = 0; j < cols; j++)
            CHECK_CLOSE(m[i].out.zeta[j], whole.zeta[j], 0, 1e-5);
        for (int k = 0; k < 2; k++) {
            CHECK_CLOSE(m[i].dl[k], dl[k], 0, 1e-4);
            CHECK_CLOSE(m[i].dl_rtn[k], dl_rtn[k], 0, 1e-6);
        }
        for (int64_t e = 0; e < m[i].rows * cols; e++) agree += m[i].out.q[e] == whole.q[m[i].row0 * cols + e];
        zf_qresult_free(&m[i].out);
    }
    CHECK_MSG((double)agree >= 0.99 * (double)(rows * cols), "%s: %lld of %lld codes agree with the whole layer's",
              zf_method_name(method), (long long)agree, (long long)(rows * cols));
    zf_qresult_free(&whole);
    free(W), free(X), free(H);
}

int main(void)
{
    zf_quant_opts q;
    zf_quant_opts_default(&q);
    zf_model_config c;
    CHECK_OK(zf_model_config_read(zt_fixture("llama-mini"), &c));
    check_spread(&c, &q);
    q.method = ZF_METHOD_OPTQ;
    check_spread(&c, &q);
    check_team(ZF_METHOD_ZFOLD);
    check_team(ZF_METHOD_OPTQ);
    check_team(ZF_METHOD_RTN);
    return zt_finish("test_parts");
}
