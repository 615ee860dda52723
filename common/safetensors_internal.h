/* safetensors reader internals the tests look at: tensors by index and reads into a caller's buffer. */
#ifndef ZF_SAFETENSORS_INTERNAL_H
#define ZF_SAFETENSORS_INTERNAL_H

#include "common/safetensors.h"

size_t zf_st_count(const zf_safetensors *st);
const zf_st_tensor *zf_st_at(const zf_safetensors *st, size_t i);
/* Finds name, checks its shape equals shape[0..ndim), converts to fp32 into dst (numel floats).
 * Errors name the file, the tensor and the expected and found shapes. */
zf_status zf_st_read_f32(const zf_safetensors *st, const char *name, int ndim, const int64_t *shape, float *dst);

#endif
