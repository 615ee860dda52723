/* The tokenizer's public entry points (load, encode, decode), its hash maps and its byte and id buffers. */
#include "common/tokenizer.h"
#include "common/tokenizer_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

zf_status zf_token_ids_push(zf_token_ids *v, int32_t id)
{
    if (v->count == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 1024;
        int32_t *p = realloc(v->ids, cap * sizeof *p);
        if (!p) return zf_fail(ZF_ERR_NOMEM, "out of memory for %zu token ids", cap);
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->count++] = id;
    return ZF_OK;
}

void zf_token_ids_free(zf_token_ids *v)
{
    free(v->ids);
    memset(v, 0, sizeof *v);
}

zf_status zf_strbuf_put(zf_strbuf *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) return zf_fail(ZF_ERR_NOMEM, "out of memory for %zu bytes of text", cap);
        b->s = p;
        b->cap = cap;
    }
    if (len) memcpy(b->s + b->len, data, len);
    b->len += len;
    b->s[b->len] = 0;
    return ZF_OK;
}

void zf_strbuf_free(zf_strbuf *b)
{
    free(b->s);
    memset(b, 0, sizeof *b);
}

size_t zf_utf8_scan(const unsigned char *s, size_t avail, bool *valid)
{
    *valid = false;
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
    if (c < 0x80) {
        *valid = true;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 1;
    for (size_t i = 1; i < need; i++) {
        if (i >= avail) return i;
        unsigned b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return i;
    }
    *valid = true;
    return need;
}

uint32_t zf_utf8_decode(const unsigned char *s, size_t n)
{
    if (n == 1) return s[0];
    uint32_t cp = s[0] & (0xFF >> (n + 1));
    for (size_t i = 1; i < n; i++) cp = cp << 6 | (s[i] & 0x3F);
    return cp;
}

zf_status zf_utf8_put(zf_strbuf *b, uint32_t cp)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | cp >> 6);
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | cp >> 12);
        u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xF0 | cp >> 18);
        u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return zf_strbuf_put(b, u, n);
}

/* ---- string -> id ---- */

static size_t table_size(size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

zf_status zf_strmap_build(zf_strmap *m, const zf_piece *pieces, int32_t n)
{
    m->mask = table_size((size_t)n) - 1;
    m->pieces = pieces;
    m->slots = zf_malloc((m->mask + 1) * sizeof *m->slots, "vocabulary hash table");
    if (!m->slots) return ZF_ERR_NOMEM;
    memset(m->slots, 0xFF, (m->mask + 1) * sizeof *m->slots);
    for (int32_t id = 0; id < n; id++) {
        if (!pieces[id].s) continue;
        size_t h = (size_t)XXH3_64bits(pieces[id].s, pieces[id].len) & m->mask;
        for (;; h = (h + 1) & m->mask) {
            int32_t o = m->slots[h];
            if (o < 0) {
                m->slots[h] = id;
                break;
            }
            if (pieces[o].len == pieces[id].len && !memcmp(pieces[o].s, pieces[id].s, pieces[id].len)) break;
        }
    }
    return ZF_OK;
}

int32_t zf_strmap_get(const zf_strmap *m, const char *s, size_t len)
{
    size_t h = (size_t)XXH3_64bits(s, len) & m->mask;
    for (;; h = (h + 1) & m->mask) {
        int32_t o = m->slots[h];
        if (o < 0) return -1;
        if (m->pieces[o].len == len && !memcmp(m->pieces[o].s, s, len)) return o;
    }
}

void zf_strmap_free(zf_strmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- (a, b) -> merge ---- */

static size_t pair_hash(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key;
}

zf_status zf_pairmap_init(zf_pairmap *m, size_t expected)
{
    m->count = 0;
    m->mask = table_size(expected) - 1;
    m->slots = zf_malloc((m->mask + 1) * sizeof *m->slots, "merge hash table");
    if (!m->slots) return ZF_ERR_NOMEM;
    for (size_t i = 0; i <= m->mask; i++) m->slots[i].key = UINT64_MAX;
    return ZF_OK;
}

zf_status zf_pairmap_put(zf_pairmap *m, int32_t a, int32_t b, double prio, int32_t id)
{
    if (2 * (m->count + 1) > m->mask + 1) {
        zf_pairmap g;
        ZF_TRY(zf_pairmap_init(&g, 2 * (m->count + 1)));
        for (size_t i = 0; i <= m->mask; i++)
            if (m->slots[i].key != UINT64_MAX) {
                size_t h = pair_hash(m->slots[i].key) & g.mask;
                while (g.slots[h].key != UINT64_MAX) h = (h + 1) & g.mask;
                g.slots[h] = m->slots[i];
                g.count++;
            }
        free(m->slots);
        *m = g;
    }
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t h = pair_hash(key) & m->mask;
    for (;; h = (h + 1) & m->mask) {
        if (m->slots[h].key == key) break;
        if (m->slots[h].key == UINT64_MAX) {
            m->count++;
            break;
        }
    }
    m->slots[h] = (zf_pair_entry){key, prio, id};
    return ZF_OK;
}

const zf_pair_entry *zf_pairmap_get(const zf_pairmap *m, int32_t a, int32_t b)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t h = pair_hash(key) & m->mask;; h = (h + 1) & m->mask) {
        if (m->slots[h].key == key) return &m->slots[h];
        if (m->slots[h].key == UINT64_MAX) return NULL;
    }
}

void zf_pairmap_free(zf_pairmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- the tokenizer ---- */

zf_status zf_tok_alloc_pieces(zf_tokenizer *t, int32_t n)
{
    t->n_pieces = n;
    t->pieces = zf_calloc((size_t)n ? (size_t)n : 1, sizeof *t->pieces, "vocabulary");
    t->special = zf_calloc((size_t)n ? (size_t)n : 1, sizeof *t->special, "vocabulary flags");
    return t->pieces && t->special ? ZF_OK : ZF_ERR_NOMEM;
}

zf_status zf_tok_set_piece(zf_tokenizer *t, int32_t id, const char *s, size_t len)
{
    char *p = zf_malloc(len + 1, "vocabulary entry");
    if (!p) return ZF_ERR_NOMEM;
    memcpy(p, s, len);
    p[len] = 0;
    free(t->pieces[id].s);
    t->pieces[id] = (zf_piece){p, (uint32_t)len};
    return ZF_OK;
}

static bool is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

zf_status zf_tokenizer_load(const char *path, zf_tokenizer **out)
{
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return zf_fail(errno == ENOENT ? ZF_ERR_INPUT : ZF_ERR_IO, "%s: cannot open the tokenizer: %s", path,
                       strerror(errno));
    zf_tokenizer *t = zf_calloc(1, sizeof *t, "tokenizer");
    if (!t) return ZF_ERR_NOMEM;
    t->bos = t->eos = -1;
    char json[4096], config[4096], bin[4096];
    const char *dir_slash = "";
    zf_status s;
    if (S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path);
        dir_slash = n && path[n - 1] == '/' ? "" : "/";
        snprintf(json, sizeof json, "%s%stokenizer.json", path, dir_slash);
        snprintf(config, sizeof config, "%s%stokenizer_config.json", path, dir_slash);
        snprintf(bin, sizeof bin, "%s%stokenizer.bin", path, dir_slash);
        if (is_file(json)) s = zf_tok_hf_load(t, json, is_file(config) ? config : NULL);
        else if (is_file(bin)) s = zf_tok_bin_load(t, bin);
        else s = zf_fail(ZF_ERR_INPUT, "%s: the folder has no tokenizer.json and no tokenizer.bin", path);
    } else if (ends_with(path, ".json")) {
        /* tokenizer_config.json beside it, as in a model folder */
        const char *slash = strrchr(path, '/');
        int dir_len = slash ? (int)(slash - path + 1) : 0;
        snprintf(config, sizeof config, "%.*stokenizer_config.json", dir_len, path);
        s = zf_tok_hf_load(t, path, is_file(config) ? config : NULL);
    } else {
        s = zf_tok_bin_load(t, path);
    }
    if (s == ZF_OK) {
        t->path = zf_strdup(path, "tokenizer path");
        if (!t->path) s = ZF_ERR_NOMEM;
    }
    if (s != ZF_OK) {
        zf_tokenizer_free(t);
        return s;
    }
    *out = t;
    return ZF_OK;
}

void zf_tokenizer_free(zf_tokenizer *t)
{
    if (!t) return;
    for (int32_t i = 0; i < t->n_pieces; i++) free(t->pieces[i].s);
    free(t->pieces);
    free(t->special);
    free(t->scores);
    free(t->path);
    zf_strmap_free(&t->map);
    zf_pairmap_free(&t->merges);
    zf_tok_hf_free(t->hf);
    free(t);
}

int64_t zf_tokenizer_vocab_size(const zf_tokenizer *t) { return t->n_pieces; }
const char *zf_tokenizer_kind(const zf_tokenizer *t) { return t->kind; }
int32_t zf_tokenizer_bos(const zf_tokenizer *t) { return t->bos; }
int32_t zf_tokenizer_eos(const zf_tokenizer *t) { return t->eos; }

zf_status zf_tokenizer_encode(const zf_tokenizer *t, const char *text, size_t len, bool add_special,
                              zf_token_ids *out)
{
    return t->family == ZF_TOK_LLAMA2C ? zf_tok_bin_encode(t, text, len, add_special, out)
                                       : zf_tok_hf_encode(t, text, len, add_special, out);
}

zf_status zf_tokenizer_decode(const zf_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text,
                              size_t *len)
{
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_pieces || !t->pieces[ids[i]].s)
            return zf_fail(ZF_ERR_INPUT, "%s: token %zu has id %d, which is not in the vocabulary (%d ids)", t->path,
                           i, ids[i], t->n_pieces);
    return t->family == ZF_TOK_LLAMA2C ? zf_tok_bin_decode(t, ids, n, skip_special, text, len)
                                       : zf_tok_hf_decode(t, ids, n, skip_special, text, len);
}
