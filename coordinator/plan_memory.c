/* Host memory of the busiest rank, phase by phase, as the pipeline allocates it: the figures `zfold plan` prints. */
#include "coordinator/plan_memory.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/parts.h"
#include "coordinator/pipeline.h"
#include "coordinator/schedule.h"
#include "worker/hessian.h"
#include "worker/backend.h"
#include "worker/forward.h"
#include "worker/perplexity.h"
#include "worker/zfold.h"
#include "worker/zfold_zeta.h"

typedef struct {
    double rows, in;
    int members;
} group_shape;

static group_shape shape_of(const zf_model_config *c, zf_group g)
{
    zf_lin lins[3];
    return (group_shape){(double)zf_group_out(c, g), (double)zf_group_in(c, g), zf_group_members(c, g, lins)};
}

/* One group's quantization on its owner, in host memory: the stacked weights, H, the result (codes and the
 * quantizer's dequantized copy), on the CPU the quantizer's working set (a GPU holds it in device memory), the
 * ζ refit's host copies of its system and the per-row widening's codes. */
static double group_work(const zf_job_config *cfg, group_shape s)
{
    double rc = s.rows * s.in, zeta = (double)zf_zfold_refit_zeta_host_bytes(&cfg->quant, (int64_t)s.in, s.members) +
                                      (double)zf_zfold_widen_host_bytes(&cfg->quant, (int64_t)s.rows, (int64_t)s.in);
    if (cfg->backend == ZF_BACKEND_CUDA) return rc * 4 + s.in * s.in * 4 + rc * 5 + zeta;
    /* the CPU quantizer works on the caller's W and H in place and writes codes and deq straight into the
     * result: its working set counts H, the result and all but the W copy */
    return rc * 4 + (double)zf_backend_quantize_bytes(&cfg->quant, (int64_t)s.rows, (int64_t)s.in, true) + zeta;
}

static double max2(double a, double b) { return a > b ? a : b; }

/* Bytes an owner holds for group g between the reduction and its quantization: the fp64/fp32 sums, or from stored
 * inputs the fp32 H their panels were reduced into (alone: the inputs, until H is formed from them). */
static double held_bytes(const zf_job_config *cfg, group_shape s, int ranks, double tokens, double hbytes)
{
    if (!zf_sched_capture_inputs(cfg, (int64_t)tokens, (int64_t)s.in)) return s.in * s.in * hbytes;
    return ranks > 1 ? s.in * s.in * 4 : tokens * s.in * 4;
}

/* The sequential schedule's quantization peak on the busiest rank: in each capture pass an owner holds its groups'
 * reduced accumulators (or H from stored inputs), and quantizes them in order (H beside the accumulator while it
 * is finalized), keeping the results until the broadcasts; a team member holds the fp32 H and the work of its
 * share of the rows. */
static double sequential_quant(const zf_job_config *cfg, const zf_model_config *c, int ranks, double tokens,
                               double hbytes)
{
    zf_block_parts p;
    if (zf_assign_parts(c, &cfg->quant, ranks, cfg->split_rows, &p) != ZF_OK) return 0;
    double peak = 0;
    for (int r = 0; r < ranks; r++) {
        for (int first = 0; first < ZF_NGROUP;) {
            int last = cfg->true_sequential ? first + 1 : ZF_NGROUP;
            double waiting = 0, results = 0;
            for (int g = first; g < last && hbytes > 0; g++)
                if (p.first[g] == r) waiting += held_bytes(cfg, shape_of(c, (zf_group)g), ranks, tokens, hbytes);
            for (int g = first; g < last; g++) {
                if (!zf_parts_member(&p, (zf_group)g, r)) continue;
                group_shape s = shape_of(c, (zf_group)g);
                bool owner = p.first[g] == r, ready = zf_sched_capture_inputs(cfg, (int64_t)tokens, (int64_t)s.in);
                int64_t lo, hi;
                zf_part_rows(c, &p, (zf_group)g, r - p.first[g], &lo, &hi);
                /* H formed beside what this group held (alone from inputs: with a panel) */
                double finalize = owner && !(ready && ranks > 1) && hbytes > 0
                                      ? waiting + s.in * s.in * 4 + (ready ? s.in * zf_hessian_panel_width((int64_t)s.in) * 8 : 0)
                                      : 0;
                if (owner && hbytes > 0) waiting -= held_bytes(cfg, s, ranks, tokens, hbytes);
                s.rows = (double)(hi - lo);
                peak = max2(peak, max2(finalize, waiting + results + group_work(cfg, s)));
                results += s.rows * s.in;
            }
            first = last;
        }
    }
    return peak;
}

/* The parallel schedule on its busiest rank: during the pass, one block's accumulators beside the owned fp32
 * Hessians reduced so far; then each owned unit quantized in turn, the earlier units' results kept. */
static void parallel_memory(const zf_job_config *cfg, const zf_model_config *c, int ranks, double *owned_h,
                            double *quant)
{
    int64_t nb = c->n_layers, nu = nb * ZF_NGROUP;
    int *owner = zf_calloc((size_t)nu, sizeof *owner, "unit owners");
    *owned_h = *quant = 0;
    if (!owner || zf_assign_owners(c, nb, ranks, owner) != ZF_OK) {
        free(owner);
        return;
    }
    for (int r = 0; r < ranks; r++) {
        double h = 0, results = 0, q = 0;
        for (int64_t u = 0; u < nu; u++)
            if (owner[u] == r) h += shape_of(c, (zf_group)(u % ZF_NGROUP)).in * shape_of(c, (zf_group)(u % ZF_NGROUP)).in * 4;
        double held = h;
        for (int64_t u = 0; u < nu; u++) {
            if (owner[u] != r) continue;
            group_shape s = shape_of(c, (zf_group)(u % ZF_NGROUP));
            q = max2(q, held + results + group_work(cfg, s) - s.in * s.in * 4);
            held -= s.in * s.in * 4;
            results += s.rows * s.in;
        }
        if (h > *owned_h) *owned_h = h;
        *quant = max2(*quant, q);
    }
    free(owner);
}

/* What one capture pass keeps for its groups on a rank seeing tokens tokens: all four groups', or the largest
 * group's when each pass captures one group (true_sequential); sums or stored inputs as hessian_capture says. */
static double capture_bytes(const zf_job_config *cfg, const zf_model_config *c, double tokens, double hbytes,
                            bool one_group)
{
    double all = 0, largest = 0;
    for (int g = 0; g < ZF_NGROUP; g++) {
        double in = (double)zf_group_in(c, (zf_group)g);
        double b = zf_sched_capture_inputs(cfg, (int64_t)tokens, (int64_t)in) ? tokens * in * 4 : in * in * hbytes;
        all += b;
        largest = max2(largest, b);
    }
    return one_group ? largest : all;
}

double zf_plan_capture_bytes(const zf_job_config *cfg, const zf_model_config *c)
{
    /* on a device: always the sums (hessian_capture inputs is for the CPU) */
    return capture_bytes(cfg, c, 0, cfg->hessian_fp64 ? 8 : 4, cfg->true_sequential && cfg->schedule != ZF_SCHEDULE_PARALLEL);
}

void zf_plan_memory_host(const zf_job_config *cfg, const zf_model_config *c, int ranks, int64_t windows_per_rank,
                         int64_t seq, zf_plan_memory *out)
{
    memset(out, 0, sizeof *out);
    double d = (double)c->hidden, T = (double)(windows_per_rank * seq), S = (double)seq;
    double big = (double)zf_forward_big_floats(c), block_params = 0, hbytes = cfg->hessian_fp64 ? 8 : 4;
    for (int g = 0; g < ZF_NGROUP; g++) block_params += shape_of(c, (zf_group)g).rows * shape_of(c, (zf_group)g).in;
    bool parallel = cfg->schedule == ZF_SCHEDULE_PARALLEL;

    out->runtime = ZF_PLAN_RUNTIME_BYTES;
    out->acts = zf_acts_bytes(windows_per_rank, seq, c->hidden, cfg->calib_bf16) + T * 4;
    out->window = S * (d + big) * 4 + S * (double)c->head_dim * 4;
    out->block = block_params * (4 + 1) + (cfg->eval_unfolded ? block_params * 4 : 0);
    out->unfolded_all = cfg->eval_unfolded ? block_params * 4 * (double)(c->n_layers - 1) : 0;
    /* a GPU accumulates the Hessians in device memory; the host holds the owners' finalized H */
    bool device_sums = cfg->backend == ZF_BACKEND_CUDA;
    bool one_group = cfg->true_sequential && !parallel;
    out->capture = device_sums ? 0 : parallel ? capture_bytes(cfg, c, 0, hbytes, false)
                                              : capture_bytes(cfg, c, T, hbytes, one_group);
    /* Open MPI's temporaries for one reduction call: the messages go in pieces of at most 2^24 entries; stored
     * inputs add a panel and its conversion buffer */
    double dmax = 0, panel = 0;
    for (int g = 0; g < ZF_NGROUP; g++) dmax = max2(dmax, shape_of(c, (zf_group)g).in);
    double piece = fmin(dmax * dmax, (double)(1 << 24));
    for (int g = 0; g < ZF_NGROUP && !parallel; g++) {
        double in = shape_of(c, (zf_group)g).in;
        if (zf_sched_capture_inputs(cfg, (int64_t)T, (int64_t)in))
            panel = max2(panel, in * (double)zf_hessian_panel_width((int64_t)in) * 8 + fmin(T, 256) * in * 8);
    }
    out->reduce = ranks > 1 && !device_sums ? 2.0 * piece * hbytes + panel : 0;
    out->globals = (double)c->vocab * d * 4 * (c->tied_embeddings ? 1 : 2) +
                   (c->family == ZF_FAMILY_OPT ? (double)(c->max_pos + 2) * d * 4 : 0);
    int64_t eval_seq = cfg->eval_seq_len > 0 ? cfg->eval_seq_len : seq;
    out->eval_chunk = cfg->eval_chunk > 0 ? cfg->eval_chunk
                                          : zf_eval_auto_chunk(c, eval_seq, cfg->eval_memory_gib * 1073741824.0);
    int64_t share = cfg->eval_max_windows > 0 ? (cfg->eval_max_windows + ranks - 1) / ranks : 0;
    if (share > 0 && share < out->eval_chunk) out->eval_chunk = share; /* a rank evaluates at most its share */
    out->eval = cfg->n_eval_files + cfg->n_eval_texts > 0 ? zf_eval_chunk_bytes(c, eval_seq, out->eval_chunk) : 0;

    double base = out->runtime + out->acts;
    if (parallel) {
        parallel_memory(cfg, c, ranks, &out->owned_h, &out->quant);
        /* the pass: one full-precision block, its accumulators and the owned Hessians; then the owners' units with
         * the unit's block in fp32 */
        out->capture_phase = base + out->block + out->window + out->capture + out->owned_h + out->reduce;
        out->quant_phase = base + out->block + out->quant;
    } else {
        out->quant = sequential_quant(cfg, c, ranks, T, device_sums ? 0 : hbytes);
        out->capture_phase = base + out->unfolded_all + out->block + out->window + out->capture + out->reduce;
        out->quant_phase = base + out->unfolded_all + out->block + out->quant;
    }
    out->embed_phase = base + out->globals;
    out->eval_phase = out->runtime + out->unfolded_all + out->globals + out->block + out->eval;
    out->peak = out->embed_phase;
    out->peak_phase = "embedding";
    if (out->capture_phase > out->peak) out->peak = out->capture_phase, out->peak_phase = "Hessian capture";
    if (out->quant_phase > out->peak) out->peak = out->quant_phase, out->peak_phase = "quantization";
    if (out->eval_phase > out->peak) out->peak = out->eval_phase, out->peak_phase = "evaluation";
}
