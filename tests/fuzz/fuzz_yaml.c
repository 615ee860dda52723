/* Fuzz target: a zfold YAML configuration, read as a run and as a sweep. */
#include "coordinator/config.h"
#include "tests/fuzz/fuzz_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static zf_job_config c;
    static zf_sweep sweep;
    const char *path = zfz_write("run.yaml", data, size);
    (void)zf_config_read(path, NULL, 0, &c, NULL);
    (void)zf_config_read(path, NULL, 0, &c, &sweep);
    return 0;
}
