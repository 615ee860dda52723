/* safetensors writers through fsutil's atomic path: in memory (collects tensors), and streaming (header first). */
#include "common/safetensors.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"

typedef struct {
    char *name;
    zf_dtype dtype;
    int ndim;
    int64_t shape[ZF_ST_MAX_DIMS];
    void *data;
    size_t nbytes;
} st_wentry;

struct zf_st_writer {
    st_wentry *e;
    size_t n, cap;
    char **meta;   /* key, value pairs */
    size_t nmeta;
};

zf_st_writer *zf_st_writer_new(void) { return zf_calloc(1, sizeof(zf_st_writer), "safetensors writer"); }

void zf_st_writer_free(zf_st_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].data);
    }
    for (size_t i = 0; i < 2 * w->nmeta; i++) free(w->meta[i]);
    free(w->meta);
    free(w->e);
    free(w);
}

/* Checks one tensor's name, dtype and shape; sets its byte size. */
static zf_status check_tensor(const char *name, zf_dtype dtype, int ndim, const int64_t *shape, size_t *nbytes)
{
    if ((unsigned)dtype >= ZF_DT_COUNT) return zf_fail(ZF_ERR_INPUT, "tensor '%s': invalid dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > ZF_ST_MAX_DIMS)
        return zf_fail(ZF_ERR_INPUT, "tensor '%s': %d dimensions, expected 0..%d", name, ndim, ZF_ST_MAX_DIMS);
    if (!name[0] || strcmp(name, "__metadata__") == 0)
        return zf_fail(ZF_ERR_INPUT, "tensor name '%s' is not allowed", name);
    size_t dsz = zf_dtype_size(dtype);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return zf_fail(ZF_ERR_INPUT, "tensor '%s': shape[%d] = %lld is negative", name, i,
                                         (long long)shape[i]);
        if (shape[i] && numel > (uint64_t)INT64_MAX / (uint64_t)shape[i])
            return zf_fail(ZF_ERR_INPUT, "tensor '%s': shape overflows", name);
        numel *= (uint64_t)shape[i];
    }
    if (numel > SIZE_MAX / dsz) return zf_fail(ZF_ERR_INPUT, "tensor '%s': byte size overflows", name);
    *nbytes = (size_t)numel * dsz;
    return ZF_OK;
}

zf_status zf_st_writer_add(zf_st_writer *w, const char *name, zf_dtype dtype, int ndim, const int64_t *shape,
                           const void *data)
{
    size_t nbytes;
    ZF_TRY(check_tensor(name, dtype, ndim, shape, &nbytes));
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0) return zf_fail(ZF_ERR_INPUT, "tensor '%s' added twice", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 32;
        st_wentry *p = realloc(w->e, cap * sizeof *p);
        if (!p) return zf_fail(ZF_ERR_NOMEM, "cannot grow the writer's table");
        w->e = p;
        w->cap = cap;
    }
    st_wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->nbytes = nbytes;
    e->name = zf_strdup(name, "tensor name");
    e->data = zf_malloc(e->nbytes, name);
    if (!e->name || !e->data) {
        free(e->name);
        free(e->data);
        return ZF_ERR_NOMEM;
    }
    if (e->nbytes) memcpy(e->data, data, e->nbytes);
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    w->n++;
    return ZF_OK;
}

zf_status zf_st_writer_meta(zf_st_writer *w, const char *key, const char *value)
{
    char **p = realloc(w->meta, 2 * (w->nmeta + 1) * sizeof *p);
    if (!p) return zf_fail(ZF_ERR_NOMEM, "cannot grow the metadata table");
    w->meta = p;
    char *k = zf_strdup(key, "metadata key"), *v = zf_strdup(value, "metadata value");
    if (!k || !v) {
        free(k);
        free(v);
        return ZF_ERR_NOMEM;
    }
    w->meta[2 * w->nmeta] = k;
    w->meta[2 * w->nmeta + 1] = v;
    w->nmeta++;
    return ZF_OK;
}

/* Growable text buffer for the header. */
typedef struct {
    char *p;
    size_t n, cap;
    int failed;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json_str(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*c;
            sb_put(b, esc, 2);
        } else if (*c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* The header's "__metadata__" object from key, value pairs (nothing when there are none). */
static void header_meta(sbuf *b, const char *const *meta, size_t nmeta)
{
    if (!nmeta) return;
    sb_str(b, "\"__metadata__\":{");
    for (size_t i = 0; i < nmeta; i++) {
        if (i) sb_str(b, ",");
        sb_json_str(b, meta[2 * i]);
        sb_str(b, ":");
        sb_json_str(b, meta[2 * i + 1]);
    }
    sb_str(b, "}");
}

/* One tensor's header entry, its data at [off, off + nbytes) of the data region. */
static void header_entry(sbuf *b, const char *name, zf_dtype dtype, int ndim, const int64_t *shape, size_t off,
                         size_t nbytes)
{
    char num[64];
    sb_json_str(b, name);
    sb_str(b, ":{\"dtype\":\"");
    sb_str(b, zf_dtype_name(dtype));
    sb_str(b, "\",\"shape\":[");
    for (int k = 0; k < ndim; k++) {
        snprintf(num, sizeof num, "%s%lld", k ? "," : "", (long long)shape[k]);
        sb_str(b, num);
    }
    snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + nbytes);
    sb_str(b, num);
}

/* Closes the header, pads it so the data start 8-byte aligned, and starts the file with its length and text. */
static zf_status header_begin_file(sbuf *b, const char *path, zf_atomic_file *a)
{
    sb_str(b, "}");
    while (b->n % 8) sb_str(b, " ");
    if (b->failed) {
        a->f = NULL;
        return a->status = zf_fail(ZF_ERR_NOMEM, "%s: cannot build the header", path);
    }
    if (zf_atomic_begin(a, path) != ZF_OK) return a->status;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)b->n >> (8 * i));
    zf_atomic_write(a, len8, 8);
    zf_atomic_write(a, b->p, b->n);
    return a->status;
}

static int cmp_wentry(const void *a, const void *b) { return strcmp(((const st_wentry *)a)->name, ((const st_wentry *)b)->name); }

zf_status zf_st_writer_save(zf_st_writer *w, const char *path)
{
    qsort(w->e, w->n, sizeof *w->e, cmp_wentry);
    sbuf b = {0};
    sb_str(&b, "{");
    header_meta(&b, (const char *const *)w->meta, w->nmeta);
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const st_wentry *e = &w->e[i];
        if (i || w->nmeta) sb_str(&b, ",");
        header_entry(&b, e->name, e->dtype, e->ndim, e->shape, off, e->nbytes);
        off += e->nbytes;
    }
    zf_atomic_file a;
    if (header_begin_file(&b, path, &a) == ZF_OK)
        for (size_t i = 0; i < w->n; i++) zf_atomic_write(&a, w->e[i].data, w->e[i].nbytes);
    free(b.p);
    return zf_atomic_commit(&a);
}

/* ------------------------------------------------------------------------------------------------ */
/* streaming writer */

struct zf_st_stream {
    zf_atomic_file a;
    char *path;
    size_t written, total;  /* data bytes so far, and of every tensor */
};

zf_status zf_st_stream_open(const char *path, const zf_st_spec *specs, size_t n, const char *const *meta,
                            zf_st_stream **out)
{
    *out = NULL;
    size_t nmeta = 0;
    while (meta && meta[2 * nmeta]) nmeta++;
    sbuf b = {0};
    sb_str(&b, "{");
    header_meta(&b, meta, nmeta);
    size_t off = 0, nbytes;
    for (size_t i = 0; i < n; i++) {
        const zf_st_spec *t = &specs[i];
        zf_status s = check_tensor(t->name, t->dtype, t->ndim, t->shape, &nbytes);
        for (size_t j = 0; s == ZF_OK && j < i; j++)
            if (!strcmp(specs[j].name, t->name)) s = zf_fail(ZF_ERR_INPUT, "tensor '%s' listed twice", t->name);
        if (s != ZF_OK) {
            free(b.p);
            return zf_fail_context(s, "%s", path);
        }
        if (i || nmeta) sb_str(&b, ",");
        header_entry(&b, t->name, t->dtype, t->ndim, t->shape, off, nbytes);
        off += nbytes;
    }
    zf_st_stream *st = zf_calloc(1, sizeof *st, "safetensors stream");
    char *p = zf_strdup(path, "safetensors path");
    zf_status s = st && p ? ZF_OK : ZF_ERR_NOMEM;
    if (s == ZF_OK) {
        st->path = p;
        st->total = off;
        s = header_begin_file(&b, p, &st->a);
    }
    free(b.p);
    if (s != ZF_OK) {
        if (st && st->a.f) zf_atomic_commit(&st->a); /* removes the temporary file: its status is already a failure */
        free(st);
        free(p);
        return s;
    }
    *out = st;
    return ZF_OK;
}

zf_status zf_st_stream_write(zf_st_stream *s, const void *data, size_t len)
{
    if (len > s->total - s->written)
        ZF_PANIC("%s: %zu more bytes written than its header lists", s->path, len - (s->total - s->written));
    zf_atomic_write(&s->a, data, len);
    s->written += len;
    return s->a.status;
}

zf_status zf_st_stream_close(zf_st_stream *s, zf_status status)
{
    bool own = status == ZF_OK || s->a.status != ZF_OK; /* a failure, if any, of this file's writes */
    if (status == ZF_OK && s->a.status == ZF_OK && s->written != s->total)
        status = zf_fail(ZF_ERR_INTERNAL, "%s: %zu of the %zu data bytes its header lists were written", s->path,
                         s->written, s->total);
    if (s->a.status == ZF_OK) s->a.status = status; /* a failure makes commit remove the file */
    zf_status r = zf_atomic_commit(&s->a);
    if (r != ZF_OK && own) zf_fail_context(r, "%s not written (its partial temporary file was removed)", s->path);
    free(s->path);
    free(s);
    return r;
}
