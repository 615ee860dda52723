/* Fuzz target: an HDF5 block shard, read and validated as `zfold inspect` and resume read it. */
#include "common/shard.h"
#include "tests/fuzz/fuzz_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zf_shard_data d;
    (void)zf_shard_read(zfz_write("block.h5", data, size), &d);
    zf_shard_data_free(&d);
    return 0;
}
