/* Token files in the llm.c convention: 256 int32 header (magic, version, count), then uint16 or uint32 tokens. */
#ifndef ZF_TOKENS_H
#define ZF_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define ZF_TOKENS_MAGIC_U16 20240520 /* version 1: uint16 tokens */
#define ZF_TOKENS_MAGIC_U32 20240801 /* version 7: uint32 tokens */

typedef struct {
    char *path;
    int32_t *ids;   /* widened to int32 */
    size_t count;
    uint64_t xxh64; /* of the file's bytes, taken as they are read: a run notices a file replaced in place */
} zf_tokens;

/* Reads and validates the whole file; vocab_size > 0 also checks every id < vocab_size. */
zf_status zf_tokens_read(const char *path, int64_t vocab_size, zf_tokens *out);
void zf_tokens_free(zf_tokens *t);
/* Writes ids atomically: uint32 (version 7) when vocab_size > 65536 or an id needs it, else uint16 (version 1). */
zf_status zf_tokens_write_vocab(const char *path, const int32_t *ids, size_t count, int64_t vocab_size);

#endif
