/* Text sources: whole text files and JSON Lines documents (plain or gzip, through zlib), joined and tokenized. */
#include "common/textsrc.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/tokenizer_internal.h"

#define TEXT_MAX_BYTES ((size_t)1 << 34) /* 16 GiB: a guard against reading an unbounded stream */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static zf_status push_doc(zf_documents *d, char *text, size_t len)
{
    if (d->count == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 16;
        zf_document *g = realloc(d->docs, cap * sizeof *g);
        if (!g) {
            free(text);
            return zf_fail(ZF_ERR_NOMEM, "out of memory for %zu documents", cap);
        }
        d->docs = g;
        d->cap = cap;
    }
    d->docs[d->count++] = (zf_document){text, len};
    return ZF_OK;
}

/* The whole (decompressed) file. */
static zf_status read_gz(const char *path, zf_strbuf *out)
{
    gzFile f = gzopen(path, "rb");
    if (!f)
        return zf_fail(errno == ENOENT ? ZF_ERR_INPUT : ZF_ERR_IO, "%s: cannot open: %s", path,
                       errno ? strerror(errno) : "zlib could not allocate");
    zf_status s = zf_strbuf_put(out, "", 0);
    char buf[1 << 16];
    int n;
    while (s == ZF_OK && (n = gzread(f, buf, sizeof buf)) > 0) {
        s = zf_strbuf_put(out, buf, (size_t)n);
        if (s == ZF_OK && out->len > TEXT_MAX_BYTES)
            s = zf_fail(ZF_ERR_INPUT, "%s: more than %zu bytes of text", path, TEXT_MAX_BYTES);
    }
    if (s == ZF_OK && n < 0) {
        int err;
        const char *m = gzerror(f, &err);
        s = zf_fail(ZF_ERR_INPUT, "%s: cannot read (gzip): %s", path, m);
    }
    gzclose(f);
    return s;
}

static zf_status read_jsonl(const char *path, const char *field, zf_strbuf *all, zf_documents *out)
{
    size_t line = 0;
    for (size_t i = 0; i < all->len;) {
        char *nl = memchr(all->s + i, '\n', all->len - i);
        size_t end = nl ? (size_t)(nl - all->s) : all->len;
        line++;
        all->s[end] = 0; /* the buffer's NUL or a newline */
        const char *p = all->s + i;
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (*p) {
            cJSON *o = cJSON_ParseWithLength(all->s + i, end - i);
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
            if (!cJSON_IsObject(o) || !cJSON_IsString(v)) {
                cJSON_Delete(o);
                return zf_fail(ZF_ERR_INPUT, "%s:%zu: expected a JSON object with a string \"%s\"", path, line,
                               field);
            }
            size_t len = strlen(v->valuestring);
            char *text = zf_malloc(len + 1, "document");
            if (text) memcpy(text, v->valuestring, len + 1);
            cJSON_Delete(o);
            if (!text) return ZF_ERR_NOMEM;
            ZF_TRY(push_doc(out, text, len));
        }
        i = end + 1;
    }
    return ZF_OK;
}

zf_status zf_textsrc_read(const char *path, const char *field, zf_documents *out)
{
    if (!field || !*field) field = "text";
    zf_strbuf all = {0};
    zf_status s = read_gz(path, &all);
    if (s == ZF_OK && (ends_with(path, ".jsonl") || ends_with(path, ".jsonl.gz"))) {
        s = read_jsonl(path, field, &all, out);
        zf_strbuf_free(&all);
        return s;
    }
    if (s != ZF_OK) {
        zf_strbuf_free(&all);
        return s;
    }
    return push_doc(out, all.s, all.len);
}

void zf_documents_free(zf_documents *d)
{
    for (size_t i = 0; i < d->count; i++) free(d->docs[i].text);
    free(d->docs);
    memset(d, 0, sizeof *d);
}

zf_status zf_documents_join(zf_documents *d, const char *sep)
{
    zf_strbuf b = {0};
    zf_status s = zf_strbuf_put(&b, "", 0);
    for (size_t i = 0; i < d->count && s == ZF_OK; i++) {
        if (i) s = zf_strbuf_put(&b, sep, strlen(sep));
        if (s == ZF_OK) s = zf_strbuf_put(&b, d->docs[i].text, d->docs[i].len);
    }
    if (s != ZF_OK) {
        zf_strbuf_free(&b);
        return s;
    }
    zf_documents_free(d);
    return push_doc(d, b.s, b.len);
}

zf_status zf_documents_tokenize(const zf_documents *d, const zf_tokenizer *t, bool add_special, zf_token_ids *out)
{
    for (size_t i = 0; i < d->count; i++) ZF_TRY(zf_tokenizer_encode(t, d->docs[i].text, d->docs[i].len, add_special, out));
    return ZF_OK;
}

/* ---- presets: the GPTQ evaluation and calibration protocols ---- */

#define C4_EVAL_DOCUMENTS 1100
#define C4_EVAL_WINDOWS 256
#define C4_MAX_DRAWS_PER_WINDOW 10000

static const char *const preset_names[] = {"plain", "wikitext2", "ptb", "c4"};

const char *zf_text_preset_name(zf_text_preset p) { return preset_names[p]; }

zf_status zf_text_spec_parse(const char *spec, zf_text_preset *preset, const char **path)
{
    *preset = ZF_TEXT_PLAIN;
    *path = spec;
    const char *colon = strchr(spec, ':');
    if (!colon) return ZF_OK;
    for (int p = 1; p < 4; p++)
        if ((size_t)(colon - spec) == strlen(preset_names[p]) && !strncmp(spec, preset_names[p], (size_t)(colon - spec))) {
            *preset = (zf_text_preset)p;
            *path = colon + 1;
            return ZF_OK;
        }
    /* a drive-less path with a colon is a file name; an unknown word before it is most likely a typo */
    if (!strchr(spec, '/') || strchr(spec, '/') > colon)
        return zf_fail(ZF_ERR_INPUT, "%s: unknown preset '%.*s' (expected wikitext2, ptb or c4 before the colon)",
                       spec, (int)(colon - spec), spec);
    return ZF_OK;
}

/* splitmix64: the draw of C4 documents and offsets, the same on every platform */
static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [0, n) without modulo bias */
static uint64_t draw_below(uint64_t *s, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
    do x = next_random(s); while (x >= limit);
    return x % n;
}

static zf_status c4_calibration(const char *path, const zf_documents *d, const zf_tokenizer *t,
                                const zf_text_use *use, zf_token_ids *out)
{
    if (!d->count) return zf_fail(ZF_ERR_INPUT, "%s: no documents", path);
    uint64_t state = use->seed;
    zf_token_ids doc = {0};
    zf_status s = ZF_OK;
    for (int64_t w = 0; w < use->windows && s == ZF_OK; w++) {
        int64_t draws = 0;
        for (;;) {
            size_t i = (size_t)draw_below(&state, d->count);
            doc.count = 0;
            if ((s = zf_tokenizer_encode(t, d->docs[i].text, d->docs[i].len, true, &doc)) != ZF_OK) break;
            if ((int64_t)doc.count > use->seq) break;
            if (++draws == C4_MAX_DRAWS_PER_WINDOW) {
                s = zf_fail(ZF_ERR_INPUT, "%s: %d random documents in a row are not longer than a window of %lld "
                            "tokens (c4 calibration takes windows from longer documents)", path,
                            C4_MAX_DRAWS_PER_WINDOW, (long long)use->seq);
                break;
            }
        }
        if (s != ZF_OK) break;
        /* GPTQ: randint(0, n - seq - 1), both ends included */
        size_t start = (size_t)draw_below(&state, (uint64_t)((int64_t)doc.count - use->seq));
        for (int64_t k = 0; k < use->seq && s == ZF_OK; k++) s = zf_token_ids_push(out, doc.ids[start + (size_t)k]);
    }
    zf_token_ids_free(&doc);
    return s;
}

zf_status zf_text_tokens(const char *spec, const zf_tokenizer *t, const zf_text_use *use, zf_token_ids *out,
                         bool *in_order)
{
    zf_text_preset preset;
    const char *path;
    *in_order = false;
    ZF_TRY(zf_text_spec_parse(spec, &preset, &path));
    zf_documents d = {0};
    zf_status s = zf_textsrc_read(path, preset == ZF_TEXT_PTB ? "sentence" : "text", &d);
    if (s == ZF_OK && preset == ZF_TEXT_C4 && use->calibration) {
        s = c4_calibration(path, &d, t, use, out);
        *in_order = true;
    } else if (s == ZF_OK) {
        if (preset == ZF_TEXT_C4 && d.count > C4_EVAL_DOCUMENTS) {
            for (size_t i = C4_EVAL_DOCUMENTS; i < d.count; i++) free(d.docs[i].text);
            d.count = C4_EVAL_DOCUMENTS;
        }
        if (preset != ZF_TEXT_PLAIN)
            s = zf_documents_join(&d, preset == ZF_TEXT_WIKITEXT2 ? "\n\n" : " ");
        if (s == ZF_OK) s = zf_documents_tokenize(&d, t, true, out);
        if (s == ZF_OK && preset == ZF_TEXT_C4 && (int64_t)out->count > C4_EVAL_WINDOWS * use->seq)
            out->count = (size_t)(C4_EVAL_WINDOWS * use->seq);
    }
    zf_documents_free(&d);
    return s;
}
