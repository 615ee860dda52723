/* llm.c token files: validated reader (u16 version 1 / u32 version 7) and atomic writer. */
#define _GNU_SOURCE
#include "common/tokens.h"
#include "common/tokens_internal.h"
#include "common/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define HEADER_INTS 256
#define HEADER_BYTES (HEADER_INTS * 4)

static int32_t le32(const unsigned char *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

zf_status zf_tokens_read(const char *path, int64_t vocab_size, zf_tokens *out)
{
    memset(out, 0, sizeof *out);
    if (!*path) return zf_fail(ZF_ERR_INPUT, "a token file's path is empty");
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return zf_fail(e == ENOENT ? ZF_ERR_INPUT : ZF_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    zf_status s = ZF_OK;
    unsigned char *raw = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s = zf_fail(ZF_ERR_INPUT, "%s: not a regular file", path);
        goto done;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < HEADER_BYTES) {
        s = zf_fail(ZF_ERR_INPUT, "%s: file is %llu bytes, expected at least %d (the 256-int32 header)", path,
                    (unsigned long long)size, HEADER_BYTES);
        goto done;
    }
    unsigned char hdr[HEADER_BYTES];
    if (fread(hdr, 1, HEADER_BYTES, f) != HEADER_BYTES) {
        s = zf_fail(ZF_ERR_IO, "%s: cannot read the header", path);
        goto done;
    }
    int32_t magic = le32(hdr), version = le32(hdr + 4), count = le32(hdr + 8);
    size_t width;
    if (magic == ZF_TOKENS_MAGIC_U16) {
        if (version != 1) {
            s = zf_fail(ZF_ERR_INPUT, "%s: version %d, expected 1 for magic %d (uint16 tokens)", path, version, magic);
            goto done;
        }
        width = 2;
    } else if (magic == ZF_TOKENS_MAGIC_U32) {
        if (version != 7) {
            s = zf_fail(ZF_ERR_INPUT, "%s: version %d, expected 7 for magic %d (uint32 tokens)", path, version, magic);
            goto done;
        }
        width = 4;
    } else {
        s = zf_fail(ZF_ERR_INPUT, "%s: magic %d, expected %d (uint16 tokens) or %d (uint32 tokens)", path, magic,
                    ZF_TOKENS_MAGIC_U16, ZF_TOKENS_MAGIC_U32);
        goto done;
    }
    if (count < 0) {
        s = zf_fail(ZF_ERR_INPUT, "%s: token count %d is negative", path, count);
        goto done;
    }
    uint64_t want = HEADER_BYTES + (uint64_t)count * width;
    if (size != want) {
        s = zf_fail(ZF_ERR_INPUT, "%s: header says %d tokens of %zu bytes, so the file should be %llu bytes, but it is "
                    "%llu bytes", path, count, width, (unsigned long long)want, (unsigned long long)size);
        goto done;
    }
    size_t n = (size_t)count;
    raw = zf_malloc(n * width, "token data");
    out->ids = zf_malloc(n * sizeof(int32_t), "token ids");
    out->path = zf_malloc(strlen(path) + 1, "token path");
    if (!raw || !out->ids || !out->path) {
        s = ZF_ERR_NOMEM;
        goto done;
    }
    strcpy(out->path, path);
    if (fread(raw, 1, n * width, f) != n * width) {
        s = zf_fail(ZF_ERR_IO, "%s: short read of %zu token bytes", path, n * width);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t id = width == 2 ? (uint32_t)(raw[2 * i] | raw[2 * i + 1] << 8) : (uint32_t)le32(raw + 4 * i);
        if (id > INT32_MAX) {
            s = zf_fail(ZF_ERR_INPUT, "%s: token %zu has id %u, which does not fit in int32", path, i, id);
            goto done;
        }
        if (vocab_size > 0 && (int64_t)id >= vocab_size) {
            s = zf_fail(ZF_ERR_INPUT, "%s: token %zu has id %u, expected < vocab size %lld", path, i, id,
                        (long long)vocab_size);
            goto done;
        }
        out->ids[i] = (int32_t)id;
    }
    out->count = n;
    XXH64_state_t *h = XXH64_createState();
    if (!h) {
        s = zf_fail(ZF_ERR_NOMEM, "no memory to hash %s", path);
        goto done;
    }
    XXH64_reset(h, 0);
    XXH64_update(h, hdr, HEADER_BYTES);
    XXH64_update(h, raw, n * width);
    out->xxh64 = XXH64_digest(h);
    XXH64_freeState(h);
done:
    fclose(f);
    free(raw);
    if (s != ZF_OK) zf_tokens_free(out);
    return s;
}

void zf_tokens_free(zf_tokens *t)
{
    if (!t) return;
    free(t->path);
    free(t->ids);
    memset(t, 0, sizeof *t);
}

zf_status zf_tokens_write(const char *path, const int32_t *ids, size_t count)
{
    return zf_tokens_write_vocab(path, ids, count, 0);
}

zf_status zf_tokens_write_vocab(const char *path, const int32_t *ids, size_t count, int64_t vocab_size)
{
    if (count > INT32_MAX) return zf_fail(ZF_ERR_INPUT, "%s: %zu tokens, at most %d fit the header", path, count, INT32_MAX);
    int wide = vocab_size > 65536;
    for (size_t i = 0; i < count; i++) {
        if (ids[i] < 0) return zf_fail(ZF_ERR_INPUT, "%s: token %zu has negative id %d", path, i, ids[i]);
        if (ids[i] > 65535) wide = 1;
    }
    size_t width = wide ? 4 : 2;
    unsigned char hdr[HEADER_BYTES];
    memset(hdr, 0, sizeof hdr);
    int32_t h[3] = {wide ? ZF_TOKENS_MAGIC_U32 : ZF_TOKENS_MAGIC_U16, wide ? 7 : 1, (int32_t)count};
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 4; j++) hdr[4 * k + j] = (unsigned char)((uint32_t)h[k] >> (8 * j));
    unsigned char *raw = zf_malloc(count * width, "token data");
    if (!raw) return ZF_ERR_NOMEM;
    for (size_t i = 0; i < count; i++)
        for (size_t j = 0; j < width; j++) raw[i * width + j] = (unsigned char)((uint32_t)ids[i] >> (8 * j));

    zf_atomic_file a;
    if (zf_atomic_begin(&a, path) == ZF_OK) {
        zf_atomic_write(&a, hdr, sizeof hdr);
        zf_atomic_write(&a, raw, count * width);
    }
    zf_status s = zf_atomic_commit(&a);
    free(raw);
    return s;
}
