/* safetensors reader: mmap, full header validation, single file or sharded index (writer: safetensors_write.c). */
#define _GNU_SOURCE
#include "common/safetensors.h"
#include "common/safetensors_internal.h"
#include "common/fsutil.h"
#include "common/json_kind.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <xxhash.h>

/* Headers are JSON of a few hundred bytes per tensor; anything larger is refused before allocating. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* Index files are small JSON too. */
#define ST_MAX_INDEX ((off_t)100 * 1000 * 1000)
/* Integers in JSON are doubles in cJSON: only those up to 2^53 are exact. */
#define ST_MAX_JSON_INT 9007199254740992.0

typedef struct {
    char *path;
    void *map;
    size_t size;
    size_t data_start;  /* 8 + header length */
} st_shard;

struct zf_safetensors {
    char *path;               /* what was opened (file or directory) */
    st_shard *shards;
    size_t nshards;
    zf_st_tensor *tensors;    /* sorted by name */
    size_t n, cap;
    uint64_t *content;        /* [n] XXH64 of each tensor's bytes, taken when it is read; 0 until then */
};

/* ------------------------------------------------------------------------------------------------ */
/* helpers */

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

/* A JSON number that is an exact non-negative integer (<= 2^53). */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0) || d > ST_MAX_JSON_INT || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

static zf_status push_tensor(zf_safetensors *st, const zf_st_tensor *t)
{
    if (st->n == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 64;
        zf_st_tensor *p = realloc(st->tensors, cap * sizeof *p);
        if (!p) return zf_fail(ZF_ERR_NOMEM, "cannot grow the tensor table to %zu entries", cap);
        st->tensors = p;
        st->cap = cap;
    }
    st->tensors[st->n++] = *t;
    return ZF_OK;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const zf_st_tensor *)a)->name, ((const zf_st_tensor *)b)->name);
}

typedef struct {
    size_t begin, end;
    const char *name;
} st_range;

static int cmp_range(const void *a, const void *b)
{
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* ------------------------------------------------------------------------------------------------ */
/* one file */

/* Validates one header entry and appends the tensor. */
static zf_status parse_entry(zf_safetensors *st, const st_shard *sh, const cJSON *e, size_t data_size)
{
    const char *file = sh->path, *name = e->string;
    if (!cJSON_IsObject(e))
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': expected an object with dtype, shape and data_offsets, found %s",
                       file, name, zf_json_kind(e));
    zf_st_tensor t;
    memset(&t, 0, sizeof t);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt))
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'dtype': expected a string, found %s", file, name,
                       zf_json_kind(dt));
    if (zf_dtype_from_name(dt->valuestring, &t.dtype) != 0)
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'dtype': unknown dtype \"%.40s\" (expected F32, F16, BF16, "
                       "F64, I64, I32, I16, I8, U8, U16, U32 or BOOL)", file, name, dt->valuestring);

    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(sp))
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'shape': expected an array of integers, found %s", file,
                       name, zf_json_kind(sp));
    int nd = cJSON_GetArraySize(sp);
    if (nd > ZF_ST_MAX_DIMS)
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'shape': %d dimensions, at most %d supported", file, name,
                       nd, ZF_ST_MAX_DIMS);
    t.ndim = nd;
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *d = sp->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v)) {
            if (cJSON_IsNumber(d) && d->valuedouble > ST_MAX_JSON_INT && d->valuedouble == floor(d->valuedouble))
                return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'shape'[%d]: expected an integer <= 2^53, found "
                               "%.17g (too large; the shape product would overflow)", file, name, i, d->valuedouble);
            if (cJSON_IsNumber(d))
                return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'shape'[%d]: expected a non-negative integer, "
                               "found %g", file, name, i, d->valuedouble);
            return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'shape'[%d]: expected a non-negative integer, found %s",
                           file, name, i, zf_json_kind(d));
        }
        t.shape[i] = (int64_t)v;
        if (v != 0 && numel > (uint64_t)INT64_MAX / v)
            return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'shape': the product of the dimensions overflows int64",
                           file, name);
        numel *= v;
    }
    size_t dsz = zf_dtype_size(t.dtype);
    if (numel > SIZE_MAX / dsz || numel > (uint64_t)INT64_MAX / dsz)
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'shape': %llu elements of %s overflow the byte size", file,
                       name, (unsigned long long)numel, zf_dtype_name(t.dtype));
    t.numel = (int64_t)numel;
    t.nbytes = (size_t)numel * dsz;

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'data_offsets': expected an array [begin, end], found %s",
                       file, name, off && cJSON_IsArray(off) ? "an array of another length" : zf_json_kind(off));
    uint64_t b, en;
    if (!json_uint(off->child, &b) || !json_uint(off->child->next, &en))
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'data_offsets': expected two non-negative integers", file,
                       name);
    if (b > en)
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'data_offsets': begin %llu > end %llu", file, name,
                       (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'data_offsets': end %llu beyond the data region of %zu bytes",
                       file, name, (unsigned long long)en, data_size);
    if (en - b != t.nbytes) {
        char s[200];
        shape_str(s, sizeof s, t.ndim, t.shape);
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'data_offsets': [%llu, %llu] spans %llu bytes, expected %zu "
                       "(shape %s of %s)", file, name, (unsigned long long)b, (unsigned long long)en,
                       (unsigned long long)(en - b), t.nbytes, s, zf_dtype_name(t.dtype));
    }
    t.data = (const unsigned char *)sh->map + sh->data_start + b;
    t.file = sh->path;
    t.name = zf_strdup(name, "tensor name");
    if (!t.name) return ZF_ERR_NOMEM;
    zf_status s = push_tensor(st, &t);
    if (s != ZF_OK) free((char *)t.name);
    return s;
}

/* Maps path into sh (size and header length checked against the file); sh->data_start is then set. */
static zf_status map_file(st_shard *sh, const char *path, uint64_t *hlen_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return zf_fail(e == ENOENT ? ZF_ERR_INPUT : ZF_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return zf_fail(ZF_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return zf_fail(ZF_ERR_INPUT, "%s: not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return zf_fail(ZF_ERR_INPUT, "%s: file is %lld bytes, expected at least 8 (the header length)", path,
                       (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return zf_fail(ZF_ERR_INPUT, "%s: file of %lld bytes does not fit in memory", path, (long long)sb.st_size);
    }
    sh->size = (size_t)sb.st_size;
    void *m = mmap(NULL, sh->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return zf_fail(ZF_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, sh->size, strerror(e));
    sh->map = m;

    const unsigned char *p = m;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > ST_MAX_HEADER)
        return zf_fail(ZF_ERR_INPUT, "%s: header length %llu is absurd (expected at most %llu bytes)", path,
                       (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    if (hlen > sh->size - 8)
        return zf_fail(ZF_ERR_INPUT, "%s: header length %llu runs beyond the end of the file (%zu bytes, so at most %zu)",
                       path, (unsigned long long)hlen, sh->size, sh->size - 8);
    if (hlen < 2) return zf_fail(ZF_ERR_INPUT, "%s: header length %llu is too short for a JSON object", path,
                                 (unsigned long long)hlen);
    if (memchr(p + 8, 0, (size_t)hlen))
        return zf_fail(ZF_ERR_INPUT, "%s: header: expected JSON text, found a NUL byte", path);
    sh->data_start = 8 + (size_t)hlen;
    *hlen_out = hlen;
    return ZF_OK;
}

/* No two of the tensors [first, st->n) of sh may share bytes (empty tensors occupy none). */
static zf_status check_overlaps(const zf_safetensors *st, const st_shard *sh, size_t first, const char *path)
{
    size_t cnt = st->n - first;
    if (cnt < 2) return ZF_OK;
    st_range *r = zf_calloc(cnt, sizeof *r, "tensor ranges");
    if (!r) return ZF_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = first; i < st->n; i++) {
        const zf_st_tensor *t = &st->tensors[i];
        if (t->nbytes == 0) continue;
        size_t b = (size_t)((const unsigned char *)t->data - (const unsigned char *)sh->map - sh->data_start);
        r[k++] = (st_range){b, b + t->nbytes, t->name};
    }
    qsort(r, k, sizeof *r, cmp_range);
    zf_status s = ZF_OK;
    for (size_t i = 1; i < k; i++) {
        if (r[i].begin < r[i - 1].end) {
            s = zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': field 'data_offsets': [%zu, %zu] overlaps tensor '%s' at "
                        "[%zu, %zu]", path, r[i].name, r[i].begin, r[i].end, r[i - 1].name, r[i - 1].begin,
                        r[i - 1].end);
            break;
        }
    }
    free(r);
    return s;
}

/* Maps one file, validates its header and appends its tensors to st. */
static zf_status open_file(zf_safetensors *st, const char *path)
{
    st_shard *shards = realloc(st->shards, (st->nshards + 1) * sizeof *shards);
    if (!shards) return zf_fail(ZF_ERR_NOMEM, "cannot grow the shard table");
    st->shards = shards;
    st_shard *sh = &st->shards[st->nshards];
    memset(sh, 0, sizeof *sh);
    sh->path = zf_strdup(path, "shard path");
    if (!sh->path) return ZF_ERR_NOMEM;
    st->nshards++; /* from here on zf_st_close releases it */
    uint64_t hlen = 0;
    ZF_TRY(map_file(sh, path, &hlen));
    size_t data_size = sh->size - sh->data_start;

    char *text = zf_malloc((size_t)hlen + 1, "safetensors header");
    if (!text) return ZF_ERR_NOMEM;
    memcpy(text, (const unsigned char *)sh->map + 8, (size_t)hlen);
    text[hlen] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        free(text);
        return zf_fail(ZF_ERR_INPUT, "%s: header: expected JSON, found a syntax error near byte %zu of %llu", path, at,
                       (unsigned long long)hlen);
    }
    free(text);
    zf_status s = ZF_OK;
    if (!cJSON_IsObject(root)) {
        s = zf_fail(ZF_ERR_INPUT, "%s: header: expected a JSON object, found %s", path, zf_json_kind(root));
        goto done;
    }
    size_t first = st->n;
    for (const cJSON *e2 = root->child; e2; e2 = e2->next) {
        if (strcmp(e2->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e2)) {
                s = zf_fail(ZF_ERR_INPUT, "%s: field '__metadata__': expected an object, found %s", path, zf_json_kind(e2));
                goto done;
            }
            for (const cJSON *mv = e2->child; mv; mv = mv->next) {
                if (!cJSON_IsString(mv)) {
                    s = zf_fail(ZF_ERR_INPUT, "%s: field '__metadata__'.'%s': expected a string, found %s", path,
                                mv->string, zf_json_kind(mv));
                    goto done;
                }
            }
            continue;
        }
        s = parse_entry(st, sh, e2, data_size);
        if (s != ZF_OK) goto done;
    }
    s = check_overlaps(st, sh, first, path);
done:
    cJSON_Delete(root);
    return s;
}

/* ------------------------------------------------------------------------------------------------ */
/* sharded directory */

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = zf_malloc(n, "path");
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static zf_status open_index(zf_safetensors *st, const char *dir, const char *index_path)
{
    char *text;
    ZF_TRY(zf_read_small_file(index_path, ST_MAX_INDEX, "an index", &text));
    cJSON *root = cJSON_Parse(text);
    char why[128];
    if (!root) zf_json_syntax_error(text, why, sizeof why);
    free(text);
    zf_status s = ZF_OK;
    char **files = NULL;
    size_t nfiles = 0;
    if (!root) return zf_fail(ZF_ERR_INPUT, "%s: expected JSON, found %s", index_path, why);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        s = zf_fail(ZF_ERR_INPUT, "%s: field 'weight_map': expected an object, found %s", index_path,
                    cJSON_IsObject(root) ? zf_json_kind(wm) : "a non-object document");
        goto done;
    }
    /* The distinct shard names, in sorted order so the tensor table does not depend on JSON order. */
    int nmap = cJSON_GetArraySize(wm);
    files = zf_calloc((size_t)nmap + 1, sizeof *files, "shard names");
    if (!files) {
        s = ZF_ERR_NOMEM;
        goto done;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strstr(e->valuestring, "..") || e->valuestring[0] == '/') {
            s = zf_fail(ZF_ERR_INPUT, "%s: field 'weight_map'.'%s': expected a shard file name in this folder, found %s",
                        index_path, e->string, cJSON_IsString(e) ? "an unusable path" : zf_json_kind(e));
            goto done;
        }
        files[nfiles++] = e->valuestring;
    }
    qsort(files, nfiles, sizeof *files, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < nfiles; i++)
        if (u == 0 || strcmp(files[u - 1], files[i]) != 0) files[u++] = files[i];
    nfiles = u;
    for (size_t i = 0; i < nfiles; i++) {
        char *p = join_path(dir, files[i]);
        if (!p) {
            s = ZF_ERR_NOMEM;
            goto done;
        }
        if (access(p, F_OK) != 0) {
            s = zf_fail(ZF_ERR_INPUT, "%s: field 'weight_map' names shard '%s', but %s does not exist", index_path,
                        files[i], p);
            free(p);
            goto done;
        }
        s = open_file(st, p);
        free(p);
        if (s != ZF_OK) goto done;
    }
    /* Every mapped tensor must be in its shard; every shard tensor must be mapped there (catches duplicates). */
    for (const cJSON *e = wm->child; e; e = e->next) {
        int found = 0;
        for (size_t i = 0; i < st->n && !found; i++) {
            const zf_st_tensor *t = &st->tensors[i];
            if (strcmp(t->name, e->string) != 0) continue;
            const char *base = strrchr(t->file, '/');
            found = strcmp(base ? base + 1 : t->file, e->valuestring) == 0;
        }
        if (!found) {
            s = zf_fail(ZF_ERR_INPUT, "%s: field 'weight_map': tensor '%s' is mapped to shard '%s', but that shard has "
                        "no such tensor", index_path, e->string, e->valuestring);
            goto done;
        }
    }
    for (size_t i = 0; i < st->n; i++) {
        const zf_st_tensor *t = &st->tensors[i];
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(wm, t->name);
        const char *base = strrchr(t->file, '/');
        base = base ? base + 1 : t->file;
        if (!e || strcmp(e->valuestring, base) != 0) {
            s = zf_fail(ZF_ERR_INPUT, "%s: tensor '%s' is stored in shard %s, but field 'weight_map' maps it %s%s%s",
                        index_path, t->name, t->file, e ? "to '" : "nowhere", e ? e->valuestring : "", e ? "'" : "");
            goto done;
        }
    }
done:
    free(files);
    cJSON_Delete(root);
    return s;
}

/* ------------------------------------------------------------------------------------------------ */
/* public reader API */

zf_status zf_st_open(const char *path, zf_safetensors **out)
{
    *out = NULL;
    zf_safetensors *st = zf_calloc(1, sizeof *st, "safetensors handle");
    if (!st) return ZF_ERR_NOMEM;
    st->path = zf_strdup(path, "safetensors path");
    if (!st->path) {
        free(st);
        return ZF_ERR_NOMEM;
    }
    zf_status s;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        s = zf_fail(errno == ENOENT ? ZF_ERR_INPUT : ZF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        char *idx = join_path(path, "model.safetensors.index.json");
        char *single = join_path(path, "model.safetensors");
        if (!idx || !single) s = ZF_ERR_NOMEM;
        else if (access(idx, F_OK) == 0) s = open_index(st, path, idx);
        else if (access(single, F_OK) == 0) s = open_file(st, single);
        else s = zf_fail(ZF_ERR_INPUT, "%s: folder holds neither model.safetensors nor model.safetensors.index.json", path);
        free(idx);
        free(single);
    } else {
        s = open_file(st, path);
    }
    if (s == ZF_OK && !(st->content = zf_calloc(st->n + 1, sizeof *st->content, "tensor content hashes")))
        s = ZF_ERR_NOMEM;
    if (s == ZF_OK && st->n > 1) {
        qsort(st->tensors, st->n, sizeof *st->tensors, cmp_tensor_name);
        for (size_t i = 1; i < st->n; i++) {
            if (strcmp(st->tensors[i].name, st->tensors[i - 1].name) == 0) {
                s = zf_fail(ZF_ERR_INPUT, "%s: tensor '%s' appears twice (in %s and %s)", path, st->tensors[i].name,
                            st->tensors[i - 1].file, st->tensors[i].file);
                break;
            }
        }
    }
    if (s != ZF_OK) {
        zf_st_close(st);
        return s;
    }
    *out = st;
    return ZF_OK;
}

void zf_st_close(zf_safetensors *st)
{
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free((char *)st->tensors[i].name);
    for (size_t i = 0; i < st->nshards; i++) {
        if (st->shards[i].map) munmap(st->shards[i].map, st->shards[i].size);
        free(st->shards[i].path);
    }
    free(st->tensors);
    free(st->content);
    free(st->shards);
    free(st->path);
    free(st);
}

size_t zf_st_count(const zf_safetensors *st) { return st->n; }

const zf_st_tensor *zf_st_at(const zf_safetensors *st, size_t i)
{
    ZF_ASSERT(i < st->n);
    return &st->tensors[i];
}

const zf_st_tensor *zf_st_find(const zf_safetensors *st, const char *name)
{
    if (st->n == 0) return NULL; /* an empty header or weight_map: no table to search (bsearch wants one) */
    zf_st_tensor key;
    key.name = name;
    return bsearch(&key, st->tensors, st->n, sizeof key, cmp_tensor_name);
}

/* Read pages of the mapping stay in the process's resident set until dropped: without this a rank's resident memory
 * grows to the size of the checkpoint. Later reads fault them in again from the page cache. */
static void drop_pages(const void *p, size_t n)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t e = ((uintptr_t)p + n) & ~(page - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);
}

zf_status zf_st_read_f32(const zf_safetensors *st, const char *name, int ndim, const int64_t *shape, float *dst)
{
    const zf_st_tensor *t = zf_st_find(st, name);
    if (!t) return zf_fail(ZF_ERR_INPUT, "%s: no tensor '%s'", st->path, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char want[200], got[200];
        shape_str(want, sizeof want, ndim, shape);
        shape_str(got, sizeof got, t->ndim, t->shape);
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': expected shape %s, found %s", t->file, name, want, got);
    }
    if (!zf_dtype_is_float_weight(t->dtype))
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s': dtype %s, expected F32, F16 or BF16", t->file, name,
                       zf_dtype_name(t->dtype));
    size_t nbytes = (size_t)t->numel * zf_dtype_size(t->dtype);
    /* the content is hashed while its pages are in memory anyway: a run notices a checkpoint replaced in place */
    uint64_t h = XXH64(t->data, nbytes, 0);
    st->content[t - st->tensors] = h ? h : 1;
    zf_convert_to_f32(t->dtype, t->data, dst, (size_t)t->numel);
    drop_pages(t->data, nbytes);
    for (int64_t i = 0; i < t->numel; i++) {
        if (isfinite(dst[i])) continue;
        char at[64];
        if (t->ndim == 2) snprintf(at, sizeof at, "[%lld, %lld]", (long long)(i / t->shape[1]), (long long)(i % t->shape[1]));
        else snprintf(at, sizeof at, t->ndim == 1 ? "[%lld]" : "flat index %lld", (long long)i);
        return zf_fail(ZF_ERR_INPUT, "%s: tensor '%s' holds %s at %s: a checkpoint must hold finite values", t->file,
                       name, isnan(dst[i]) ? "NaN" : dst[i] > 0 ? "+Inf" : "-Inf", at);
    }
    return ZF_OK;
}

bool zf_st_content_hash(const zf_safetensors *st, size_t i, const char **name, uint64_t *hash)
{
    if (i >= st->n || !st->content[i]) return false;
    *name = st->tensors[i].name;
    *hash = st->content[i];
    return true;
}

size_t zf_st_tensor_count(const zf_safetensors *st) { return st->n; }

zf_status zf_st_load_f32(const zf_safetensors *st, const char *name, int ndim, const int64_t *shape, float **dst)
{
    *dst = NULL;
    const zf_st_tensor *t = zf_st_find(st, name);
    if (!t) return zf_fail(ZF_ERR_INPUT, "%s: no tensor '%s'", st->path, name);
    float *p = zf_malloc((size_t)t->numel * sizeof(float), name);
    if (!p) return ZF_ERR_NOMEM;
    zf_status s = zf_st_read_f32(st, name, ndim, shape, p);
    if (s != ZF_OK) {
        free(p);
        return s;
    }
    *dst = p;
    return ZF_OK;
}

uint64_t zf_st_fingerprint(const zf_safetensors *st)
{
    /* Tensors are sorted by name, so the order is fixed; fields are hashed as fixed-width little-endian values. */
    XXH64_state_t *h = XXH64_createState();
    ZF_ASSERT(h);
    XXH64_reset(h, 0x7a666f6c64ull);
    for (size_t i = 0; i < st->n; i++) {
        const zf_st_tensor *t = &st->tensors[i];
        XXH64_update(h, t->name, strlen(t->name) + 1);
        const char *dn = zf_dtype_name(t->dtype);
        XXH64_update(h, dn, strlen(dn) + 1);
        int64_t v = t->ndim;
        XXH64_update(h, &v, 8);
        for (int k = 0; k < t->ndim; k++) XXH64_update(h, &t->shape[k], 8);
        uint64_t nb = t->nbytes;
        XXH64_update(h, &nb, 8);
    }
    uint64_t r = XXH64_digest(h);
    XXH64_freeState(h);
    return r;
}
