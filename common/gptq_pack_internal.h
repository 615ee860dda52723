/* GPTQ qzeros packing: the layout shards do not use (they store integer zeros), kept tested against it. */
#ifndef ZF_GPTQ_PACK_INTERNAL_H
#define ZF_GPTQ_PACK_INTERNAL_H

#include <stdint.h>

/* zeros [groups, out] (integers) → qzeros [groups, words(out)] int32, each value stored as zero - offset
 * (offset 1 for checkpoint_format "gptq" v1, 0 for "gptq_v2"). */
void zf_gptq_pack_qzeros(const int32_t *zeros, int64_t groups, int64_t out, int bits, int offset, int32_t *qzeros);
void zf_gptq_unpack_qzeros(const int32_t *qzeros, int64_t groups, int64_t out, int bits, int offset, int32_t *zeros);

#endif
