/* safetensors writer: collects tensors and metadata, writes one file through fsutil's atomic path. */
#include "common/safetensors.h"

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

zf_status zf_st_writer_add(zf_st_writer *w, const char *name, zf_dtype dtype, int ndim, const int64_t *shape,
                           const void *data)
{
    if ((unsigned)dtype >= ZF_DT_COUNT) return zf_fail(ZF_ERR_INPUT, "tensor '%s': invalid dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > ZF_ST_MAX_DIMS)
        return zf_fail(ZF_ERR_INPUT, "tensor '%s': %d dimensions, expected 0..%d", name, ndim, ZF_ST_MAX_DIMS);
    if (!name[0] || strcmp(name, "__metadata__") == 0)
        return zf_fail(ZF_ERR_INPUT, "tensor name '%s' is not allowed", name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0) return zf_fail(ZF_ERR_INPUT, "tensor '%s' added twice", name);
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
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 32;
        st_wentry *p = realloc(w->e, cap * sizeof *p);
        if (!p) return zf_fail(ZF_ERR_NOMEM, "cannot grow the writer's table");
        w->e = p;
        w->cap = cap;
    }
    st_wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->nbytes = (size_t)numel * dsz;
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

static int cmp_wentry(const void *a, const void *b) { return strcmp(((const st_wentry *)a)->name, ((const st_wentry *)b)->name); }

zf_status zf_st_writer_save(zf_st_writer *w, const char *path)
{
    qsort(w->e, w->n, sizeof *w->e, cmp_wentry);
    sbuf b = {0};
    char num[64];
    sb_str(&b, "{");
    if (w->nmeta) {
        sb_str(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nmeta; i++) {
            if (i) sb_str(&b, ",");
            sb_json_str(&b, w->meta[2 * i]);
            sb_str(&b, ":");
            sb_json_str(&b, w->meta[2 * i + 1]);
        }
        sb_str(&b, "}");
    }
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const st_wentry *e = &w->e[i];
        if (i || w->nmeta) sb_str(&b, ",");
        sb_json_str(&b, e->name);
        sb_str(&b, ":{\"dtype\":\"");
        sb_str(&b, zf_dtype_name(e->dtype));
        sb_str(&b, "\",\"shape\":[");
        for (int k = 0; k < e->ndim; k++) {
            snprintf(num, sizeof num, "%s%lld", k ? "," : "", (long long)e->shape[k]);
            sb_str(&b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + e->nbytes);
        sb_str(&b, num);
        off += e->nbytes;
    }
    sb_str(&b, "}");
    while (b.n % 8) sb_str(&b, " "); /* pad so the data starts 8-byte aligned */
    if (b.failed) {
        free(b.p);
        return zf_fail(ZF_ERR_NOMEM, "%s: cannot build the header", path);
    }

    zf_atomic_file a;
    if (zf_atomic_begin(&a, path) == ZF_OK) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)b.n >> (8 * i));
        zf_atomic_write(&a, len8, 8);
        zf_atomic_write(&a, b.p, b.n);
        for (size_t i = 0; i < w->n; i++) zf_atomic_write(&a, w->e[i].data, w->e[i].nbytes);
    }
    zf_status s = zf_atomic_commit(&a);
    free(b.p);
    return s;
}
