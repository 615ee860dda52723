/* Bit packing of integer codes in the GPTQ checkpoint layout (qweight along the input axis, qzeros along the output axis). */
#ifndef ZF_GPTQ_PACK_H
#define ZF_GPTQ_PACK_H

#include <stdint.h>

/* Words needed for n values of `bits` bits: ceil(n·bits / 32). */
int64_t zf_gptq_words(int64_t n, int bits);
/* q [out, in] row-major codes → qweight [words(in), out] int32: value (k, n) at bit k·bits of column n,
 * least significant bits first, straddling word boundaries for 3, 5, 6, 7 bits. Padding bits are zero. */
void zf_gptq_pack_qweight(const uint8_t *q, int64_t out, int64_t in, int bits, int32_t *qweight);
void zf_gptq_unpack_qweight(const int32_t *qweight, int64_t out, int64_t in, int bits, uint8_t *q);

#endif
