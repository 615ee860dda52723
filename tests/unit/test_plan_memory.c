/* zfold plan's memory model against sums worked out here from the shapes: capture accumulators, the parallel
 * schedule's owned Hessians, the phases and the peak; and what changes with the rank count. */
#include <math.h>
#include <string.h>

#include "coordinator/config.h"
#include "coordinator/plan_memory.h"
#include "tests/testutil.h"
#include "worker/backend.h"

static double group_in_sq(const zf_model_config *c, int g) { return (double)zf_group_in(c, g) * (double)zf_group_in(c, g); }

int main(void)
{
    zf_model_config c;
    CHECK_OK(zf_model_config_read(zt_fixture("llama-mini"), &c));
    zf_job_config cfg;
    zf_config_defaults(&cfg);
    cfg.n_eval_files = 1;
    double all = 0, largest = 0;
    for (int g = 0; g < ZF_NGROUP; g++) {
        all += group_in_sq(&c, g);
        largest = fmax(largest, group_in_sq(&c, g));
    }
    zf_plan_memory one, eight;
    zf_plan_memory_host(&cfg, &c, 1, 128, 256, &one);
    zf_plan_memory_host(&cfg, &c, 8, 16, 256, &eight);
    CHECK_CLOSE(one.capture, all * 8, 0, 1e-12);                      /* every group's fp64 accumulator */
    CHECK_CLOSE(one.acts, 2.0 * 128 * 256 * (double)c.hidden * 4 + 128 * 256 * 4, 0, 1e-12);
    CHECK_CLOSE(eight.acts * 8, one.acts, 0, 1e-12);                  /* activations shrink with the ranks */
    CHECK(eight.quant <= one.quant);                                   /* one rank owns every group */
    double peak = fmax(fmax(one.embed_phase, one.capture_phase), fmax(one.quant_phase, one.eval_phase));
    CHECK_CLOSE(one.peak, peak, 0, 0);
    CHECK(one.eval_chunk == 16 && one.eval > 0); /* small shapes: the largest chunk fits the default 2 GiB */

    cfg.true_sequential = true;
    zf_plan_memory ts;
    zf_plan_memory_host(&cfg, &c, 1, 128, 256, &ts);
    CHECK_CLOSE(ts.capture, largest * 8, 0, 1e-12);                   /* one group per pass */
    cfg.true_sequential = false;

    /* parallel: one rank owns every unit's fp32 H; with a rank per unit, the largest group's */
    cfg.schedule = ZF_SCHEDULE_PARALLEL;
    zf_plan_memory p1, pu;
    zf_plan_memory_host(&cfg, &c, 1, 128, 256, &p1);
    zf_plan_memory_host(&cfg, &c, (int)(c.n_layers * ZF_NGROUP), 1, 256, &pu);
    CHECK_CLOSE(p1.owned_h, (double)c.n_layers * all * 4, 0, 1e-12);
    CHECK_CLOSE(pu.owned_h, largest * 4, 0, 1e-12);
    CHECK(pu.capture_phase < p1.capture_phase);

    /* with GPUs the accumulators and the quantizer's working set live in device memory */
    cfg.schedule = ZF_SCHEDULE_SEQUENTIAL;
    cfg.backend = ZF_BACKEND_CUDA;
    zf_plan_memory gpu;
    zf_plan_memory_host(&cfg, &c, 4, 32, 256, &gpu);
    CHECK(gpu.capture == 0 && gpu.reduce == 0);
    double in_max = sqrt(largest), rows_down = (double)c.hidden;
    CHECK(gpu.quant >= in_max * in_max * 4 + rows_down * in_max * 9); /* H, the stacked weights, codes and deq */
    CHECK(gpu.quant < one.quant);
    cfg.backend = ZF_BACKEND_CPU;

    /* stored inputs: a rank seeing fewer tokens than a layer is wide keeps them instead of the sums, and an owner
     * then holds the fp32 H its panels were reduced into, not the fp64 sums */
    zf_plan_memory few_sums, few_inputs;
    const bool zeta_was = cfg.quant.refit_zeta;
    cfg.quant.refit_zeta = false; /* its d_in² matrix would make the widest group's work the peak either way */
    cfg.hessian_capture = ZF_CAPTURE_SUMS;
    zf_plan_memory_host(&cfg, &c, 64, 1, 64, &few_sums);
    cfg.hessian_capture = ZF_CAPTURE_AUTO;
    zf_plan_memory_host(&cfg, &c, 64, 1, 64, &few_inputs);
    double stored = 0;
    for (int g = 0; g < ZF_NGROUP; g++) stored += 64.0 * (double)zf_group_in(&c, g) * 4;
    CHECK_CLOSE(few_sums.capture, all * 8, 0, 1e-12);
    CHECK_CLOSE(few_inputs.capture, stored, 0, 1e-12);
    CHECK(few_inputs.quant < few_sums.quant);
    cfg.quant.refit_zeta = zeta_was;
    cfg.backend = ZF_BACKEND_CUDA; /* a GPU sums on the device whatever the token count */
    zf_plan_memory_host(&cfg, &c, 64, 1, 64, &gpu);
    CHECK(gpu.capture == 0);
    cfg.backend = ZF_BACKEND_CPU;

    /* teams: with more ranks than groups the busiest rank quantizes a share of a group's rows */
    zf_plan_memory four, teams, no_teams;
    zf_plan_memory_host(&cfg, &c, 4, 32, 256, &four);
    zf_plan_memory_host(&cfg, &c, 16, 8, 256, &teams);
    cfg.split_rows = false;
    zf_plan_memory_host(&cfg, &c, 16, 8, 256, &no_teams);
    cfg.split_rows = true;
    CHECK(teams.quant < four.quant && teams.quant < no_teams.quant);
    CHECK_CLOSE(no_teams.quant, four.quant, 0, 1e-12);

    /* the ζ refit adds its backend matrix and its host copies (at least one more d_in² matrix) to every group's
     * work, so to the peak at least the least of them */
    zf_plan_memory zeta_off, zeta_on;
    const bool zeta_default = cfg.quant.refit_zeta;
    cfg.quant.refit_zeta = false;
    zf_plan_memory_host(&cfg, &c, 1, 128, 256, &zeta_off);
    cfg.quant.refit_zeta = true;
    zf_plan_memory_host(&cfg, &c, 1, 128, 256, &zeta_on);
    cfg.quant.refit_zeta = zeta_default;
    double least_in = INFINITY;
    for (int g = 0; g < ZF_NGROUP; g++) least_in = fmin(least_in, (double)zf_group_in(&c, g));
    CHECK(zeta_on.quant - zeta_off.quant >= 2 * least_in * least_in * 4);

    /* a rank's chunk is at most its share of eval.max_windows */
    cfg.eval_max_windows = 8;
    zf_plan_memory share;
    zf_plan_memory_host(&cfg, &c, 4, 32, 256, &share);
    CHECK(share.eval_chunk == 2);
    cfg.eval_max_windows = 0;

    /* without evaluation files there is no evaluation chunk */
    cfg.n_eval_files = 0;
    zf_plan_memory ne;
    zf_plan_memory_host(&cfg, &c, 1, 128, 256, &ne);
    CHECK(ne.eval == 0);
    return zt_finish("test_plan_memory");
}
