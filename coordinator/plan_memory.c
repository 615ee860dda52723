/* Host memory of the busiest rank, phase by phase, as the pipeline allocates it: the figures `zfold plan` prints. */
#include "coordinator/plan_memory.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/pipeline.h"
#include "worker/backend.h"
#include "worker/forward.h"
#include "worker/perplexity.h"

typedef struct {
    double rows, in;
} group_shape;

static group_shape shape_of(const zf_model_config *c, zf_group g)
{
    return (group_shape){(double)zf_group_out(c, g), (double)zf_group_in(c, g)};
}

/* One group's quantization on its owner, in host memory: the stacked weights, H, the result (codes and the
 * quantizer's dequantized copy), and on the CPU the quantizer's working set (a GPU holds it in device memory). */
static double group_work(const zf_job_config *cfg, group_shape s)
{
    double rc = s.rows * s.in, host = rc * 4 + s.in * s.in * 4;
    if (cfg->backend == ZF_BACKEND_CUDA) return host + rc * 5;
    /* the CPU quantizer writes codes and deq straight into the result: they are in its working set */
    return host + (double)zf_backend_quantize_bytes(&cfg->quant, (int64_t)s.rows, (int64_t)s.in, true);
}

static double max2(double a, double b) { return a > b ? a : b; }

/* The sequential schedule's quantization peak on the busiest rank: in each capture pass an owner holds its groups'
 * reduced accumulators, and quantizes them in order (H beside the accumulator while it is finalized), keeping the
 * results until the broadcasts. */
static double sequential_quant(const zf_job_config *cfg, const zf_model_config *c, int ranks, double hbytes)
{
    int owner[ZF_NGROUP];
    if (zf_assign_owners(c, 1, ranks, owner) != ZF_OK) return 0;
    double peak = 0;
    for (int r = 0; r < ranks && r < ZF_NGROUP; r++) {
        for (int first = 0; first < ZF_NGROUP;) {
            int last = cfg->true_sequential ? first + 1 : ZF_NGROUP;
            double waiting = 0, results = 0;
            for (int g = first; g < last && hbytes > 0; g++)
                if (owner[g] == r) waiting += shape_of(c, (zf_group)g).in * shape_of(c, (zf_group)g).in * hbytes;
            for (int g = first; g < last; g++) {
                if (owner[g] != r) continue;
                group_shape s = shape_of(c, (zf_group)g);
                double finalize = waiting + s.in * s.in * 4;
                waiting -= s.in * s.in * hbytes;
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

/* All four groups' accumulators, or the largest one's when each pass captures one group (true_sequential). */
static double capture_bytes(const zf_model_config *c, double hbytes, bool one_group)
{
    double all = 0, largest = 0;
    for (int g = 0; g < ZF_NGROUP; g++) {
        double in = (double)zf_group_in(c, (zf_group)g);
        all += in * in * hbytes;
        largest = max2(largest, in * in * hbytes);
    }
    return one_group ? largest : all;
}

double zf_plan_capture_bytes(const zf_job_config *cfg, const zf_model_config *c)
{
    return capture_bytes(c, cfg->hessian_fp64 ? 8 : 4, cfg->true_sequential && cfg->schedule != ZF_SCHEDULE_PARALLEL);
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
    out->acts = 2 * T * d * 4 + T * 4;
    out->window = S * (d + big) * 4 + S * (double)c->head_dim * 4;
    out->block = block_params * (4 + 1) + (cfg->eval_unfolded ? block_params * 4 : 0);
    out->unfolded_all = cfg->eval_unfolded ? block_params * 4 * (double)(c->n_layers - 1) : 0;
    /* a GPU accumulates the Hessians in device memory; the host holds the owners' finalized H */
    bool device_sums = cfg->backend == ZF_BACKEND_CUDA;
    out->capture = device_sums ? 0 : zf_plan_capture_bytes(cfg, c);
    /* Open MPI's temporaries for one reduction call: the messages go in pieces of at most 2^24 entries */
    double piece = fmin(capture_bytes(c, 1, true), (double)(1 << 24));
    out->reduce = ranks > 1 && !device_sums ? 2.0 * piece * hbytes : 0;
    out->globals = (double)c->vocab * d * 4 * (c->tied_embeddings ? 1 : 2) +
                   (c->family == ZF_FAMILY_OPT ? (double)(c->max_pos + 2) * d * 4 : 0);
    int64_t eval_seq = cfg->eval_seq_len > 0 ? cfg->eval_seq_len : seq;
    out->eval_chunk = cfg->eval_chunk > 0 ? cfg->eval_chunk
                                          : zf_eval_auto_chunk(c, eval_seq, cfg->eval_memory_gib * 1073741824.0);
    int64_t share = cfg->eval_max_windows > 0 ? (cfg->eval_max_windows + ranks - 1) / ranks : 0;
    if (share > 0 && share < out->eval_chunk) out->eval_chunk = share; /* a rank evaluates at most its share */
    out->eval = cfg->n_eval_files > 0 ? zf_eval_chunk_bytes(c, eval_seq, out->eval_chunk) : 0;

    double base = out->runtime + out->acts;
    if (parallel) {
        parallel_memory(cfg, c, ranks, &out->owned_h, &out->quant);
        /* the pass: one full-precision block, its accumulators and the owned Hessians; then the owners' units with
         * the unit's block in fp32 */
        out->capture_phase = base + out->block + out->window + out->capture + out->owned_h + out->reduce;
        out->quant_phase = base + out->block + out->quant;
    } else {
        out->quant = sequential_quant(cfg, c, ranks, device_sums ? 0 : hbytes);
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
