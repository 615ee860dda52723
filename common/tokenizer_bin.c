/* llama2.c tokenizer.bin: vocabulary with scores; encode and decode as run.c's encode() and decode() do. */
#include "common/tokenizer_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* run.c's fixed ids: BOS 1, EOS 2, and byte b is the token b + 3 */
#define BIN_BOS 1
#define BIN_EOS 2
#define BIN_BYTE0 3
#define BIN_MAX_VOCAB (1 << 24)

static zf_status read_all(const char *path, unsigned char **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return zf_fail(errno == ENOENT ? ZF_ERR_INPUT : ZF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    zf_status s = ZF_OK;
    if (fseek(f, 0, SEEK_END) != 0 || ftell(f) < 0) s = zf_fail(ZF_ERR_IO, "%s: cannot find its size", path);
    long n = s == ZF_OK ? ftell(f) : 0;
    if (s == ZF_OK && n > (1L << 30)) s = zf_fail(ZF_ERR_INPUT, "%s: %ld bytes, expected a tokenizer.bin under 1 GiB",
                                                   path, n);
    *data = s == ZF_OK ? zf_malloc((size_t)n + 1, "tokenizer.bin") : NULL;
    if (s == ZF_OK && !*data) s = ZF_ERR_NOMEM;
    if (s == ZF_OK && (fseek(f, 0, SEEK_SET) != 0 || fread(*data, 1, (size_t)n, f) != (size_t)n))
        s = zf_fail(ZF_ERR_IO, "%s: short read", path);
    fclose(f);
    if (s != ZF_OK) {
        free(*data);
        *data = NULL;
    }
    *size = (size_t)n;
    return s;
}

static int32_t rd32(const unsigned char *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

/* Every merge run.c's encode can make: a piece split in two whose halves are pieces; its score ranks it. With
 * duplicate strings, run.c's lookup finds one id per string: every id of a half's string pairs alike. */
static zf_status build_merges(zf_tokenizer *t)
{
    int32_t *next_same = zf_malloc((size_t)t->n_pieces * sizeof *next_same, "duplicate-piece links");
    if (!next_same) return ZF_ERR_NOMEM;
    for (int32_t i = 0; i < t->n_pieces; i++) next_same[i] = -1;
    for (int32_t i = t->n_pieces - 1; i >= 0; i--) {
        int32_t first = zf_strmap_get(&t->map, t->pieces[i].s, t->pieces[i].len);
        if (first != i) {
            next_same[i] = next_same[first];
            next_same[first] = i;
        }
    }
    zf_status s = zf_pairmap_init(&t->merges, (size_t)t->n_pieces * 4);
    for (int32_t v = 0; v < t->n_pieces && s == ZF_OK; v++) {
        const zf_piece *p = &t->pieces[v];
        int32_t merged = zf_strmap_get(&t->map, p->s, p->len);
        if (merged != v) continue;
        for (uint32_t k = 1; k < p->len && s == ZF_OK; k++) {
            int32_t a0 = zf_strmap_get(&t->map, p->s, k), b0 = zf_strmap_get(&t->map, p->s + k, p->len - k);
            if (a0 < 0 || b0 < 0) continue;
            for (int32_t a = a0; a >= 0 && s == ZF_OK; a = next_same[a])
                for (int32_t b = b0; b >= 0 && s == ZF_OK; b = next_same[b])
                    s = zf_pairmap_put(&t->merges, a, b, -(double)t->scores[merged], merged);
        }
    }
    free(next_same);
    return s;
}

zf_status zf_tok_bin_load(zf_tokenizer *t, const char *path)
{
    unsigned char *d = NULL;
    size_t size = 0;
    ZF_TRY(read_all(path, &d, &size));
    t->family = ZF_TOK_LLAMA2C;
    zf_status s = ZF_OK;
    if (size < 4) {
        s = zf_fail(ZF_ERR_INPUT, "%s: %zu bytes, expected at least 4 (max_token_length)", path, size);
        goto done;
    }
    int32_t max_len = rd32(d);
    if (max_len <= 0) {
        s = zf_fail(ZF_ERR_INPUT, "%s: max_token_length %d, expected > 0", path, max_len);
        goto done;
    }
    /* count the entries first: the file does not say how many there are */
    int32_t n = 0;
    for (size_t off = 4; off < size; n++) {
        if (size - off < 8) {
            s = zf_fail(ZF_ERR_INPUT, "%s: entry %d at byte %zu: %zu bytes left, expected 8 (score, length)", path,
                        n, off, size - off);
            goto done;
        }
        int32_t len = rd32(d + off + 4);
        if (len < 0 || len > max_len || (size_t)len > size - off - 8) {
            s = zf_fail(ZF_ERR_INPUT, "%s: entry %d at byte %zu: length %d, expected 0..%d within the file", path, n,
                        off, len, max_len);
            goto done;
        }
        if (n >= BIN_MAX_VOCAB) {
            s = zf_fail(ZF_ERR_INPUT, "%s: more than %d entries", path, BIN_MAX_VOCAB);
            goto done;
        }
        off += 8 + (size_t)len;
    }
    if (n < BIN_BYTE0 + 256) {
        s = zf_fail(ZF_ERR_INPUT, "%s: %d entries, expected at least %d (<unk>, BOS, EOS and the 256 byte tokens)",
                    path, n, BIN_BYTE0 + 256);
        goto done;
    }
    if ((s = zf_tok_alloc_pieces(t, n)) != ZF_OK) goto done;
    t->scores = zf_malloc((size_t)n * sizeof *t->scores, "tokenizer scores");
    if (!t->scores) {
        s = ZF_ERR_NOMEM;
        goto done;
    }
    size_t off = 4;
    for (int32_t i = 0; i < n && s == ZF_OK; i++) {
        memcpy(&t->scores[i], d + off, 4);
        int32_t len = rd32(d + off + 4);
        s = zf_tok_set_piece(t, i, (const char *)d + off + 8, (size_t)len);
        off += 8 + (size_t)len;
    }
    if (s != ZF_OK) goto done;
    if ((s = zf_strmap_build(&t->map, t->pieces, n)) != ZF_OK) goto done;
    if (zf_strmap_get(&t->map, " ", 1) < 0) {
        s = zf_fail(ZF_ERR_INPUT, "%s: no \" \" piece, which run.c's encode puts before the text", path);
        goto done;
    }
    if ((s = build_merges(t)) != ZF_OK) goto done;
    t->bos = BIN_BOS;
    t->eos = BIN_EOS;
    t->special[BIN_BOS] = t->special[BIN_EOS] = true;
    snprintf(t->kind, sizeof t->kind, "tokenizer.bin (llama2.c, vocab %d)", n);
done:
    free(d);
    return s;
}

zf_status zf_tok_bin_encode(const zf_tokenizer *t, const char *text, size_t len, bool add_bos, zf_token_ids *out)
{
    if (add_bos) ZF_TRY(zf_token_ids_push(out, BIN_BOS));
    if (!len) return ZF_OK;
    size_t start = out->count;
    ZF_TRY(zf_token_ids_push(out, zf_strmap_get(&t->map, " ", 1)));
    /* one piece per code point (run.c groups a lead byte with at most 3 continuation bytes), else its bytes */
    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t k = 1;
        while (i + k < len && (u[i + k] & 0xC0) == 0x80 && k < 4) k++;
        int32_t id = zf_strmap_get(&t->map, text + i, k);
        if (id >= 0) ZF_TRY(zf_token_ids_push(out, id));
        else
            for (size_t j = 0; j < k; j++) ZF_TRY(zf_token_ids_push(out, (int32_t)u[i + j] + BIN_BYTE0));
        i += k;
    }
    zf_bpe_work w = {0};
    size_t n = out->count - start;
    zf_status s = zf_bpe_merge(&t->merges, &w, out->ids + start, &n);
    zf_bpe_work_free(&w);
    out->count = start + n;
    return s;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

zf_status zf_tok_bin_decode(const zf_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text,
                            size_t *len)
{
    zf_strbuf b = {0};
    zf_status s = zf_strbuf_put(&b, "", 0);
    int32_t prev = -1;
    for (size_t i = 0; i < n && s == ZF_OK; i++) {
        const zf_piece *p = &t->pieces[ids[i]];
        const char *piece = p->s;
        size_t plen = p->len;
        if (!(skip_special && t->special[ids[i]])) {
            /* run.c: a space right after BOS is the encoder's dummy prefix */
            if (prev == BIN_BOS && plen && piece[0] == ' ') {
                piece++;
                plen--;
            }
            int hi, lo;
            if (plen == 6 && !memcmp(piece, "<0x", 3) && piece[5] == '>' && (hi = hex_value(piece[3])) >= 0 &&
                (lo = hex_value(piece[4])) >= 0) {
                unsigned char byte = (unsigned char)(hi << 4 | lo);
                s = zf_strbuf_put(&b, &byte, 1);
            } else s = zf_strbuf_put(&b, piece, plen);
        }
        prev = ids[i];
    }
    if (s != ZF_OK) {
        zf_strbuf_free(&b);
        return s;
    }
    *text = b.s;
    *len = b.len;
    return ZF_OK;
}
