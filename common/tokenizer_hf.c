/* Encoding and decoding with a Hugging Face tokenizer.json: added tokens, normalizers, pre-tokenizers, BPE,
 * the post-processor's template; the decoder chain back to text. */
#define _GNU_SOURCE
#include "common/tokenizer_hf.h"

#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <uninorm.h>

/* A piece of text being pre-tokenized: bytes in one of the work buffers. */
typedef struct {
    const char *s;
    size_t len;
} span;

typedef struct {
    span *v;
    size_t n, cap;
} span_list;

/* Everything one encode call allocates, reused across the text's pieces. */
typedef struct {
    zf_strbuf clean, norm, sym;
    zf_strbuf *owned; /* buffers that spans point into (Metaspace rewrites) */
    size_t n_owned, cap_owned;
    span_list a, b;
    pcre2_match_data *md;
    zf_bpe_work bpe;
    zf_token_ids word;
} encoder;

static zf_status span_push(span_list *l, const char *s, size_t len)
{
    if (!len) return ZF_OK;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        span *g = realloc(l->v, cap * sizeof *g);
        if (!g) return zf_fail(ZF_ERR_NOMEM, "out of memory for %zu pre-tokens", cap);
        l->v = g;
        l->cap = cap;
    }
    l->v[l->n++] = (span){s, len};
    return ZF_OK;
}

static zf_strbuf *owned_buffer(encoder *e)
{
    if (e->n_owned == e->cap_owned) {
        size_t cap = e->cap_owned ? 2 * e->cap_owned : 8;
        zf_strbuf *g = realloc(e->owned, cap * sizeof *g);
        if (!g) {
            zf_fail(ZF_ERR_NOMEM, "out of memory for pre-tokenizer buffers");
            return NULL;
        }
        memset(g + e->cap_owned, 0, (cap - e->cap_owned) * sizeof *g);
        e->owned = g;
        e->cap_owned = cap;
    }
    zf_strbuf *b = &e->owned[e->n_owned++];
    b->len = 0;
    return b;
}

static void encoder_free(encoder *e)
{
    zf_strbuf_free(&e->clean);
    zf_strbuf_free(&e->norm);
    zf_strbuf_free(&e->sym);
    for (size_t i = 0; i < e->cap_owned; i++) zf_strbuf_free(&e->owned[i]);
    free(e->owned);
    free(e->a.v);
    free(e->b.v);
    pcre2_match_data_free(e->md);
    zf_bpe_work_free(&e->bpe);
    zf_token_ids_free(&e->word);
}

/* Each ill-formed UTF-8 sequence becomes U+FFFD, as TextDecoder (and so the JavaScript tokenizer) reads text. */
static zf_status sanitize(encoder *e, const char *text, size_t len, const char **out)
{
    const unsigned char *u = (const unsigned char *)text;
    size_t i = 0;
    bool ok = true;
    while (i < len && ok) {
        size_t k = zf_utf8_scan(u + i, len - i, &ok);
        if (ok) i += k;
    }
    if (i == len) {
        *out = text;
        return ZF_OK;
    }
    e->clean.len = 0;
    ZF_TRY(zf_strbuf_put(&e->clean, text, i));
    while (i < len) {
        size_t k = zf_utf8_scan(u + i, len - i, &ok);
        ZF_TRY(ok ? zf_strbuf_put(&e->clean, u + i, k) : zf_strbuf_put(&e->clean, "\xEF\xBF\xBD", 3));
        i += k;
    }
    *out = e->clean.s;
    return ZF_OK;
}

/* ---- normalizers ---- */

static zf_status replace_all(const zf_hf_norm *n, const char *s, size_t len, zf_strbuf *out)
{
    out->len = 0;
    ZF_TRY(zf_strbuf_put(out, "", 0));
    if (!n->re) {
        size_t i = 0;
        while (i < len) {
            const char *hit = len - i >= n->text_len ? memmem(s + i, len - i, n->text, n->text_len) : NULL;
            if (!hit) break;
            ZF_TRY(zf_strbuf_put(out, s + i, (size_t)(hit - (s + i))));
            ZF_TRY(zf_strbuf_put(out, n->content, n->content_len));
            i = (size_t)(hit - s) + n->text_len;
        }
        return zf_strbuf_put(out, s + i, len - i);
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(n->re, NULL);
    if (!md) return zf_fail(ZF_ERR_NOMEM, "out of memory for a regex match");
    size_t i = 0;
    zf_status st = ZF_OK;
    while (i <= len && st == ZF_OK) {
        int rc = pcre2_match(n->re, (PCRE2_SPTR)s, len, i, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        st = zf_strbuf_put(out, s + i, ov[0] - i);
        if (st == ZF_OK) st = zf_strbuf_put(out, n->content, n->content_len);
        if (ov[1] == ov[0]) { /* an empty match: keep one character and go on */
            bool ok;
            size_t k = ov[0] < len ? zf_utf8_scan((const unsigned char *)s + ov[0], len - ov[0], &ok) : 1;
            if (ov[0] < len && st == ZF_OK) st = zf_strbuf_put(out, s + ov[0], k);
            i = ov[0] + k;
        } else i = ov[1];
    }
    if (st == ZF_OK && i < len) st = zf_strbuf_put(out, s + i, len - i);
    pcre2_match_data_free(md);
    return st;
}

static zf_status unicode_step(zf_hf_norm_kind kind, const char *s, size_t len, zf_strbuf *out)
{
    size_t n = 0;
    uint8_t *r;
    if (kind == HF_NORM_LOWERCASE) r = u8_tolower((const uint8_t *)s, len, NULL, NULL, NULL, &n);
    else {
        uninorm_t form = kind == HF_NORM_NFC ? UNINORM_NFC : kind == HF_NORM_NFD ? UNINORM_NFD
                       : kind == HF_NORM_NFKC ? UNINORM_NFKC : UNINORM_NFKD;
        r = u8_normalize(form, (const uint8_t *)s, len, NULL, &n);
    }
    if (!r && len) return zf_fail(ZF_ERR_NOMEM, "cannot normalize %zu bytes of text", len);
    out->len = 0;
    zf_status st = zf_strbuf_put(out, r, n);
    free(r);
    return st;
}

zf_status zf_hf_normalize(const struct zf_hf_tokenizer *hf, const char *s, size_t n, zf_strbuf *out)
{
    zf_strbuf tmp = {0};
    out->len = 0;
    zf_status st = zf_strbuf_put(out, s, n);
    for (int i = 0; i < hf->n_norm && st == ZF_OK; i++) {
        const zf_hf_norm *d = &hf->norm[i];
        if (d->kind == HF_NORM_PREPEND) {
            if (!out->len) continue; /* nothing to prepend to */
            tmp.len = 0;
            st = zf_strbuf_put(&tmp, d->text, d->text_len);
            if (st == ZF_OK) st = zf_strbuf_put(&tmp, out->s, out->len);
        } else if (d->kind == HF_NORM_REPLACE) st = replace_all(d, out->s, out->len, &tmp);
        else st = unicode_step(d->kind, out->s, out->len, &tmp);
        zf_strbuf swap = *out;
        *out = tmp;
        tmp = swap;
    }
    zf_strbuf_free(&tmp);
    return st;
}

/* ---- pre-tokenizers ---- */

/* Splits s by the regex: Isolated keeps matches and the text between them, Removed only the text between. */
static zf_status regex_split(encoder *e, pcre2_code *re, zf_hf_split_behavior behavior, const char *s, size_t len,
                             span_list *out)
{
    size_t i = 0, last = 0;
    while (i <= len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, len, i, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return zf_fail(ZF_ERR_INPUT, "pre-tokenizer regex failed: %s", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        if (ov[1] == ov[0]) { /* an empty match splits nothing */
            bool ok;
            i = ov[0] + (ov[0] < len ? zf_utf8_scan((const unsigned char *)s + ov[0], len - ov[0], &ok) : 1);
            continue;
        }
        ZF_TRY(span_push(out, s + last, ov[0] - last));
        if (behavior == HF_SPLIT_ISOLATED) ZF_TRY(span_push(out, s + ov[0], ov[1] - ov[0]));
        last = i = ov[1];
    }
    return span_push(out, s + last, len - last);
}

static zf_status metaspace(encoder *e, const zf_hf_pre *p, const char *s, size_t len, bool first, span_list *out)
{
    zf_strbuf *b = owned_buffer(e);
    if (!b) return ZF_ERR_NOMEM;
    ZF_TRY(zf_strbuf_put(b, "", 0));
    bool starts = len >= p->replacement_len && !memcmp(s, p->replacement, p->replacement_len);
    if (!(len && s[0] == ' ') && !starts &&
        (p->prepend == HF_PREPEND_ALWAYS || (p->prepend == HF_PREPEND_FIRST && first)))
        ZF_TRY(zf_strbuf_put(b, p->replacement, p->replacement_len));
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') ZF_TRY(zf_strbuf_put(b, p->replacement, p->replacement_len));
        else ZF_TRY(zf_strbuf_put(b, s + i, 1));
    }
    if (!p->split) return span_push(out, b->s, b->len);
    /* each piece starts at a replacement character */
    size_t start = 0;
    for (size_t i = 1; i + p->replacement_len <= b->len; i++)
        if (!memcmp(b->s + i, p->replacement, p->replacement_len)) {
            ZF_TRY(span_push(out, b->s + start, i - start));
            start = i;
        }
    return span_push(out, b->s + start, b->len - start);
}

/* Runs the pre-tokenizers over s; the pieces end in e->a. */
static zf_status pre_tokenize(encoder *e, const struct zf_hf_tokenizer *hf, const char *s, size_t len, bool first)
{
    e->a.n = 0;
    ZF_TRY(span_push(&e->a, s, len));
    for (int k = 0; k < hf->n_pre; k++) {
        const zf_hf_pre *p = &hf->pre[k];
        e->b.n = 0;
        for (size_t i = 0; i < e->a.n; i++) {
            span x = e->a.v[i];
            if (p->kind == HF_PRE_SPLIT) {
                /* inverted, the matches are the pieces and the rest the delimiters: with Isolated both stay */
                ZF_TRY(regex_split(e, p->re, p->invert ? HF_SPLIT_ISOLATED : p->behavior, x.s, x.len, &e->b));
            } else if (p->kind == HF_PRE_DIGITS) {
                ZF_TRY(regex_split(e, p->re, HF_SPLIT_ISOLATED, x.s, x.len, &e->b));
            } else if (p->kind == HF_PRE_METASPACE) {
                ZF_TRY(metaspace(e, p, x.s, x.len, first && i == 0, &e->b));
            } else { /* ByteLevel: the prefix space, then GPT-2's split; bytes become characters in the model */
                if (p->add_prefix_space && !(x.len && x.s[0] == ' ')) {
                    zf_strbuf *b = owned_buffer(e);
                    if (!b) return ZF_ERR_NOMEM;
                    ZF_TRY(zf_strbuf_put(b, " ", 1));
                    ZF_TRY(zf_strbuf_put(b, x.s, x.len));
                    x = (span){b->s, b->len};
                }
                if (p->re) ZF_TRY(regex_split(e, p->re, HF_SPLIT_ISOLATED, x.s, x.len, &e->b));
                else ZF_TRY(span_push(&e->b, x.s, x.len));
            }
        }
        span_list t = e->a;
        e->a = e->b;
        e->b = t;
    }
    return ZF_OK;
}

/* ---- the BPE model over one pre-token ---- */

static zf_status model_word(encoder *e, const zf_tokenizer *t, const char *s, size_t len, zf_token_ids *out)
{
    const struct zf_hf_tokenizer *hf = t->hf;
    const unsigned char *u = (const unsigned char *)s;
    if (hf->ignore_merges) { /* a word that is a token stays whole */
        int32_t id;
        if (hf->byte_level) {
            e->sym.len = 0;
            for (size_t i = 0; i < len; i++) ZF_TRY(zf_utf8_put(&e->sym, zf_hf_byte_char(u[i])));
            id = zf_strmap_get(&t->map, e->sym.s, e->sym.len);
        } else id = zf_strmap_get(&t->map, s, len);
        if (id >= 0) return zf_token_ids_push(out, id);
    }
    zf_token_ids *w = &e->word;
    w->count = 0;
    if (hf->byte_level) {
        for (size_t i = 0; i < len; i++) {
            int32_t id = hf->byte_ids[u[i]] >= 0 ? hf->byte_ids[u[i]] : hf->unk;
            if (id >= 0) ZF_TRY(zf_token_ids_push(w, id));
        }
    } else {
        bool last_unk = false;
        for (size_t i = 0; i < len;) {
            bool ok;
            size_t k = zf_utf8_scan(u + i, len - i, &ok);
            int32_t id = zf_strmap_get(&t->map, s + i, k);
            bool bytes = false;
            if (id < 0 && hf->byte_fallback) {
                bytes = true;
                for (size_t j = 0; j < k; j++) bytes = bytes && hf->byte_ids[u[i + j]] >= 0;
            }
            if (id >= 0) ZF_TRY(zf_token_ids_push(w, id));
            else if (bytes)
                for (size_t j = 0; j < k; j++) ZF_TRY(zf_token_ids_push(w, hf->byte_ids[u[i + j]]));
            else if (hf->unk >= 0 && !(hf->fuse_unk && last_unk)) ZF_TRY(zf_token_ids_push(w, hf->unk));
            last_unk = id < 0 && !bytes;
            i += k;
        }
    }
    size_t n = w->count;
    ZF_TRY(zf_bpe_merge(&t->merges, &e->bpe, w->ids, &n));
    for (size_t i = 0; i < n; i++) ZF_TRY(zf_token_ids_push(out, w->ids[i]));
    return ZF_OK;
}

/* ---- added tokens ---- */

/* The longest added token at s[0] (its index), or -1. */
static int added_at(const struct zf_hf_tokenizer *hf, const zf_hf_splitter *sp, const char *s, size_t avail)
{
    unsigned c = (unsigned char)s[0];
    for (int k = 0; k < sp->n[c]; k++) {
        const zf_hf_added *a = &hf->added[sp->by_byte[c][k]];
        if (a->len <= avail && !memcmp(a->content, s, a->len)) return sp->by_byte[c][k];
    }
    return -1;
}

static size_t trim_start(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        bool ok;
        size_t k = zf_utf8_scan((const unsigned char *)s + i, len - i, &ok);
        if (!zf_hf_is_space(zf_utf8_decode((const unsigned char *)s + i, k))) break;
        i += k;
    }
    return i;
}

static size_t trim_end(const char *s, size_t len)
{
    while (len) {
        size_t k = 1;
        while (k < len && k < 4 && ((unsigned char)s[len - k] & 0xC0) == 0x80) k++;
        if (!zf_hf_is_space(zf_utf8_decode((const unsigned char *)s + len - k, k))) break;
        len -= k;
    }
    return len;
}

/* Calls fn on each stretch of s between added tokens and pushes the tokens' ids; lstrip/rstrip tokens take the
 * whitespace beside them. */
typedef zf_status (*gap_fn)(encoder *e, const zf_tokenizer *t, const char *s, size_t len, bool first,
                            zf_token_ids *out);

static zf_status split_added(encoder *e, const zf_tokenizer *t, const zf_hf_splitter *sp, const char *s, size_t len,
                             bool first, gap_fn fn, zf_token_ids *out)
{
    const struct zf_hf_tokenizer *hf = t->hf;
    size_t gap = 0, i = 0;
    bool skip_space = false; /* the previous token strips on its right */
    while (i < len) {
        int k = sp->n[(unsigned char)s[i]] ? added_at(hf, sp, s + i, len - i) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        const zf_hf_added *a = &hf->added[k];
        size_t g0 = gap, g1 = i;
        if (skip_space) g0 += trim_start(s + g0, g1 - g0);
        if (a->lstrip) g1 = g0 + trim_end(s + g0, g1 - g0);
        if (g1 > g0) ZF_TRY(fn(e, t, s + g0, g1 - g0, first && g0 == 0, out));
        ZF_TRY(zf_token_ids_push(out, a->id));
        skip_space = a->rstrip;
        i += a->len;
        gap = i;
    }
    if (skip_space) gap += trim_start(s + gap, len - gap);
    if (len > gap) ZF_TRY(fn(e, t, s + gap, len - gap, first && gap == 0, out));
    return ZF_OK;
}

static zf_status encode_normalized(encoder *e, const zf_tokenizer *t, const char *s, size_t len, bool first,
                                   zf_token_ids *out)
{
    ZF_TRY(pre_tokenize(e, t->hf, s, len, first));
    for (size_t i = 0; i < e->a.n; i++) ZF_TRY(model_word(e, t, e->a.v[i].s, e->a.v[i].len, out));
    return ZF_OK;
}

static zf_status encode_raw(encoder *e, const zf_tokenizer *t, const char *s, size_t len, bool first,
                            zf_token_ids *out)
{
    const struct zf_hf_tokenizer *hf = t->hf;
    e->n_owned = 0;
    if (!hf->n_norm) return split_added(e, t, &hf->norm_split, s, len, first, encode_normalized, out);
    ZF_TRY(zf_hf_normalize(hf, s, len, &e->norm));
    return split_added(e, t, &hf->norm_split, e->norm.s, e->norm.len, first, encode_normalized, out);
}

zf_status zf_tok_hf_encode(const zf_tokenizer *t, const char *text, size_t len, bool add_special, zf_token_ids *out)
{
    const struct zf_hf_tokenizer *hf = t->hf;
    encoder e = {0};
    e.md = pcre2_match_data_create(32, NULL);
    if (!e.md) return zf_fail(ZF_ERR_NOMEM, "out of memory for a regex match");
    const char *s = text;
    zf_status st = sanitize(&e, text, len, &s);
    for (int i = 0; add_special && i < hf->n_prefix && st == ZF_OK; i++) st = zf_token_ids_push(out, hf->prefix[i]);
    size_t n = s == text ? len : e.clean.len; /* the text, or its U+FFFD-cleaned copy */
    if (st == ZF_OK) st = split_added(&e, t, &hf->raw_split, s, n, true, encode_raw, out);
    for (int i = 0; add_special && i < hf->n_suffix && st == ZF_OK; i++) st = zf_token_ids_push(out, hf->suffix[i]);
    encoder_free(&e);
    return st;
}

/* ---- decoding: the decoder chain over the tokens' strings ---- */

typedef struct {
    zf_strbuf *v;
    size_t n;
} token_list;

static void tokens_free(token_list *l)
{
    for (size_t i = 0; i < l->n; i++) zf_strbuf_free(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* GPT-2's characters back to bytes; characters outside the table stay as they are */
static zf_status bytelevel_decode(zf_strbuf *tok)
{
    static int16_t rev[324];
    static bool ready;
    if (!ready) { /* the table is a pure function: filling it twice is harmless */
        for (int c = 0; c < 324; c++) rev[c] = -1;
        for (unsigned b = 0; b < 256; b++) rev[zf_hf_byte_char(b)] = (int16_t)b;
        ready = true;
    }
    zf_strbuf out = {0};
    zf_status st = zf_strbuf_put(&out, "", 0);
    for (size_t i = 0; i < tok->len && st == ZF_OK;) {
        bool ok;
        size_t k = zf_utf8_scan((const unsigned char *)tok->s + i, tok->len - i, &ok);
        uint32_t cp = ok ? zf_utf8_decode((const unsigned char *)tok->s + i, k) : 0xFFFFFFFF;
        if (ok && cp < 324 && rev[cp] >= 0) {
            unsigned char byte = (unsigned char)rev[cp];
            st = zf_strbuf_put(&out, &byte, 1);
        } else st = zf_strbuf_put(&out, tok->s + i, k);
        i += k;
    }
    zf_strbuf_free(tok);
    *tok = out;
    return st;
}

static zf_status replace_in(zf_strbuf *tok, const char *pat, size_t pat_len, const char *with, size_t with_len)
{
    zf_hf_norm n = {.kind = HF_NORM_REPLACE, .text = (char *)pat, .text_len = pat_len, .content = (char *)with,
                    .content_len = with_len};
    zf_strbuf out = {0};
    zf_status st = replace_all(&n, tok->s, tok->len, &out);
    zf_strbuf_free(tok);
    *tok = out;
    return st;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Runs of <0xXX> tokens become their bytes when those are UTF-8, else one U+FFFD per byte (as Hugging Face). */
static zf_status byte_fallback(token_list *l)
{
    zf_strbuf bytes = {0};
    size_t k = 0, run_start = 0;
    zf_status st = zf_strbuf_put(&bytes, "", 0);
    for (size_t i = 0; i <= l->n && st == ZF_OK; i++) {
        zf_strbuf *t = i < l->n ? &l->v[i] : NULL;
        int hi = -1, lo = -1;
        bool is_byte = t && t->len == 6 && !memcmp(t->s, "<0x", 3) && t->s[5] == '>' &&
                       (hi = hex_digit(t->s[3])) >= 0 && (lo = hex_digit(t->s[4])) >= 0;
        if (is_byte) {
            if (!bytes.len) run_start = i;
            unsigned char b = (unsigned char)(hi << 4 | lo);
            st = zf_strbuf_put(&bytes, &b, 1);
            zf_strbuf_free(t);
            continue;
        }
        if (bytes.len) { /* close the run into one token */
            bool valid = true;
            for (size_t j = 0; j < bytes.len && valid;) {
                bool ok;
                j += zf_utf8_scan((const unsigned char *)bytes.s + j, bytes.len - j, &ok);
                valid = ok;
            }
            zf_strbuf run = {0};
            st = zf_strbuf_put(&run, "", 0);
            if (valid) st = zf_strbuf_put(&run, bytes.s, bytes.len);
            else
                for (size_t j = 0; j < bytes.len && st == ZF_OK; j++) st = zf_strbuf_put(&run, "\xEF\xBF\xBD", 3);
            l->v[k++] = run;
            bytes.len = 0;
            (void)run_start;
        }
        if (t) l->v[k++] = *t;
    }
    l->n = k;
    zf_strbuf_free(&bytes);
    return st;
}

zf_status zf_tok_hf_decode(const zf_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text,
                           size_t *len)
{
    const struct zf_hf_tokenizer *hf = t->hf;
    token_list l = {zf_calloc(n ? n : 1, sizeof(zf_strbuf), "decoded tokens"), 0};
    if (!l.v) return ZF_ERR_NOMEM;
    zf_status st = ZF_OK;
    for (size_t i = 0; i < n && st == ZF_OK; i++) {
        if (skip_special && t->special[ids[i]]) continue;
        const zf_piece *p = &t->pieces[ids[i]];
        st = zf_strbuf_put(&l.v[l.n++], p->s, p->len);
    }
    for (int k = 0; k < hf->n_dec && st == ZF_OK; k++) {
        const zf_hf_dec *d = &hf->dec[k];
        if (d->kind == HF_DEC_BYTEFALLBACK) {
            st = byte_fallback(&l);
            continue;
        }
        if (d->kind == HF_DEC_FUSE) {
            for (size_t i = 1; i < l.n && st == ZF_OK; i++) st = zf_strbuf_put(&l.v[0], l.v[i].s, l.v[i].len);
            for (size_t i = 1; i < l.n; i++) zf_strbuf_free(&l.v[i]);
            if (l.n > 1) l.n = 1;
            continue;
        }
        for (size_t i = 0; i < l.n && st == ZF_OK; i++) {
            zf_strbuf *tok = &l.v[i];
            if (d->kind == HF_DEC_BYTELEVEL) st = bytelevel_decode(tok);
            else if (d->kind == HF_DEC_REPLACE) st = replace_in(tok, d->pattern, d->pattern_len, d->content, d->content_len);
            else if (d->kind == HF_DEC_METASPACE) {
                st = replace_in(tok, d->pattern, d->pattern_len, " ", 1);
                if (st == ZF_OK && i == 0 && d->prepend && tok->len && tok->s[0] == ' ') {
                    memmove(tok->s, tok->s + 1, tok->len);
                    tok->len--;
                }
            } else if (d->kind == HF_DEC_STRIP) { /* up to start leading and stop trailing copies of content */
                size_t a = 0, b = tok->len, c = d->content_len;
                for (int j = 0; j < d->start && b - a >= c && !memcmp(tok->s + a, d->content, c); j++) a += c;
                for (int j = 0; j < d->stop && b - a >= c && !memcmp(tok->s + b - c, d->content, c); j++) b -= c;
                memmove(tok->s, tok->s + a, b - a);
                tok->len = b - a;
                if (tok->s) tok->s[tok->len] = 0;
            }
        }
    }
    /* with no decoder, Hugging Face joins the tokens with spaces */
    zf_strbuf out = {0};
    if (st == ZF_OK) st = zf_strbuf_put(&out, "", 0);
    for (size_t i = 0; i < l.n && st == ZF_OK; i++) {
        if (i && !hf->n_dec) st = zf_strbuf_put(&out, " ", 1);
        if (st == ZF_OK) st = zf_strbuf_put(&out, l.v[i].s, l.v[i].len);
    }
    tokens_free(&l);
    if (st != ZF_OK) {
        zf_strbuf_free(&out);
        return st;
    }
    *text = out.s;
    *len = out.len;
    return ZF_OK;
}
