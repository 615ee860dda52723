/* One quantized block: its layers' results, per-layer statistics and deployable weights. */
#ifndef ZF_QBLOCK_H
#define ZF_QBLOCK_H

#include "common/model.h"
#include "worker/block.h"
#include "worker/quant.h"

/* Per-layer results (scales already carry any ζ folded into their rows) and the deployable fp32 block
 * (weights scale·(q - zero), folded norms and biases). */
typedef struct {
    zf_qresult lin[ZF_NLIN];
    double dl_rtn[ZF_NLIN];      /* per layer ΔL of min-max RTN, before */
    double dl[ZF_NLIN];          /* per layer ΔL of the result, after */
    int als_iters[ZF_NLIN];
    double damp_used[ZF_NLIN];
    int damp_retries[ZF_NLIN];
    zf_block_weights folded;
    zf_block_weights unfolded;   /* fake-quantized weights before folding (only with eval.unfolded) */
    double seconds;
    double comm_bytes;           /* payload this rank moved for the block */
} zf_qblock;

/* Releases a block's codes and weights, keeping its statistics. */
void zf_qblock_release(zf_qblock *q);

/* The deployable weight of a quantized layer: scale·(q - zero) (ζ lives in the preceding layer). */
void zf_qresult_deploy(const zf_qresult *r, float *w);
/* The fake-quantized weight before folding, (scale·ζ)(q - zero), as the quantizers' dequantization computes it. */
void zf_qresult_unfolded(const zf_qresult *r, float *w);

#endif
