/* Token-file writer: the tests make their files with it; zfold only reads them. */
#ifndef ZF_TOKENS_INTERNAL_H
#define ZF_TOKENS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Writes a file (uint16 version 1 if every id < 65536, else uint32 version 7), atomically. */
zf_status zf_tokens_write(const char *path, const int32_t *ids, size_t count);

#endif
