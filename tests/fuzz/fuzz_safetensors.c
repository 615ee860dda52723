/* Fuzz target: a safetensors file (8-byte header length, JSON header, data), opened and every small tensor read. */
#include <stdlib.h>

#include "common/safetensors.h"
#include "common/safetensors_internal.h"
#include "tests/fuzz/fuzz_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zf_safetensors *st = NULL;
    if (zf_st_open(zfz_write("model.safetensors", data, size), &st) != ZF_OK) return 0;
    for (size_t i = 0; i < zf_st_count(st); i++) {
        const zf_st_tensor *t = zf_st_at(st, i);
        float *x = NULL;
        if (t->numel <= (1 << 20) && zf_st_load_f32(st, t->name, t->ndim, t->shape, &x) == ZF_OK) free(x);
    }
    (void)zf_st_fingerprint(st);
    zf_st_close(st);
    return 0;
}
