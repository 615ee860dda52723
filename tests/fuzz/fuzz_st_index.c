/* Fuzz target: model.safetensors.index.json of a sharded checkpoint, beside two small valid shards. */
#include <stdlib.h>

#include "common/safetensors.h"
#include "tests/fuzz/fuzz_io.h"

/* Shards a.safetensors (tensors "x", "y") and b.safetensors ("z"), written once. */
static void write_shards(void)
{
    static int done;
    if (done) return;
    done = 1;
    const float v[6] = {1, 2, 3, 4, 5, 6};
    const int64_t shape[2] = {2, 3};
    const char *names[3] = {"x", "y", "z"};
    for (int f = 0; f < 2; f++) {
        zf_st_writer *w = zf_st_writer_new();
        for (int k = f ? 2 : 0; k < (f ? 3 : 2); k++)
            if (!w || zf_st_writer_add(w, names[k], ZF_DT_F32, 2, shape, v) != ZF_OK) abort();
        const char *path = zfz_write(f ? "b.safetensors" : "a.safetensors", NULL, 0);
        if (zf_st_writer_save(w, path) != ZF_OK) abort();
        zf_st_writer_free(w);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    write_shards();
    zfz_write("model.safetensors.index.json", data, size);
    zf_safetensors *st = NULL;
    if (zf_st_open(zfz_dir(), &st) == ZF_OK) {
        (void)zf_st_find(st, "y");
        zf_st_close(st);
    }
    return 0;
}
