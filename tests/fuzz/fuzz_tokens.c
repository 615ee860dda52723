/* Fuzz target: a token file (llm.c header, uint16 or uint32 ids), checked against a vocabulary of 512. */
#include "common/tokens.h"
#include "tests/fuzz/fuzz_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zf_tokens t;
    if (zf_tokens_read(zfz_write("data.bin", data, size), 512, &t) == ZF_OK) zf_tokens_free(&t);
    return 0;
}
