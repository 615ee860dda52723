/* Fuzz target: a Hugging Face config.json, read as a model description. */
#include "common/model.h"
#include "tests/fuzz/fuzz_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zf_model_config c;
    (void)zf_model_config_read_file(zfz_write("config.json", data, size), &c);
    return 0;
}
