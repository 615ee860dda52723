/* A rank's calibration activations between blocks, kept in fp32 or bf16, and the block forwards over them. */
#ifndef ZF_ACTS_H
#define ZF_ACTS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/model.h"
#include "worker/backend.h"

/* fp32: the windows and a copy for the capture passes (2 x 4 bytes per value). bf16: the windows in bf16 and an
 * fp32 work buffer of a few windows that the forwards go through chunk by chunk (2 bytes per value + the chunk). */
typedef struct {
    int64_t nwin, seq, d;
    bool bf16;
    float *x;          /* fp32: [nwin, seq, d] */
    uint16_t *xb;      /* bf16: [nwin, seq, d] */
    float *work;       /* fp32: a copy as large as x; bf16: [chunk, seq, d] */
    int64_t chunk;     /* windows per forward call */
} zf_acts;

/* Work buffer of the bf16 store: as many windows as fit this many bytes (at least one). */
#define ZF_ACTS_CHUNK_BYTES (256.0 * 1048576.0)

/* Windows per forward call of the bf16 store for windows of seq tokens of width d. */
int64_t zf_acts_chunk_windows(int64_t nwin, int64_t seq, int64_t d);
/* Bytes a store of nwin windows holds (the plan's count). */
double zf_acts_bytes(int64_t nwin, int64_t seq, int64_t d, bool bf16);

zf_status zf_acts_init(zf_acts *a, int64_t nwin, int64_t seq, int64_t d, bool bf16);
void zf_acts_free(zf_acts *a);
/* Embeds ids [nwin, seq] into the store. */
zf_status zf_acts_embed(zf_acts *a, const zf_model_config *c, const zf_model_globals *g, const int32_t *ids);
/* Forwards every window through block b's weights w, adding the inputs of the groups in `want` to h (h may be
 * NULL). keep: the store moves through the block; otherwise it is left as it was (a capture pass). A failure
 * names the block. */
zf_status zf_acts_forward(zf_acts *a, zf_backend *be, const zf_model_config *c, int64_t b, const zf_block_weights *w,
                          zf_bhess *h, unsigned want, bool keep);

#endif
