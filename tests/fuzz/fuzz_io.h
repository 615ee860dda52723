/* What the fuzz targets share: the input written to a file of this process's scratch folder. */
#ifndef ZF_FUZZ_IO_H
#define ZF_FUZZ_IO_H

#include <stddef.h>
#include <stdint.h>

/* The scratch folder (<ZF_FUZZ_TMPDIR, else /dev/shm, else TMPDIR>/zffuzz-<pid>, created on first use, removed at
 * exit). */
const char *zfz_dir(void);
/* Writes data to <scratch>/name and returns its path (a static buffer). */
const char *zfz_write(const char *name, const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
