/* HDF5 shard reader: trusts nothing in the file (sizes bounded by the file size, shapes checked against
 * attributes); every failure is bad input naming the file and the object. */
#define _GNU_SOURCE
#include "common/shard.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/gptq_pack.h"

/* Any HDF5 failure while reading means the file is not what we wrote: bad input, named by file and object. */
#define ZF_H5_IN(expr, ...) \
    do { if ((expr) < 0) { s = rd_fail(path, __VA_ARGS__); goto done; } } while (0)

static zf_status rd_fail(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static zf_status rd_fail(const char *path, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return zf_fail(ZF_ERR_INPUT, "%s: %s", path, msg);
}

/* Opens obj/name as an attribute holding one value; its type (to close) and class are returned. */
static zf_status rd_attr_open(const char *path, hid_t loc, const char *obj, const char *name, hid_t *attr, hid_t *type,
                              H5T_class_t *cls)
{
    zf_status s = ZF_OK;
    hid_t space = H5I_INVALID_HID;
    *attr = *type = H5I_INVALID_HID;
    htri_t exists = H5Aexists(loc, name);
    if (exists <= 0) return rd_fail(path, "%s: attribute '%s' is missing", obj, name);
    ZF_H5_IN(*attr = H5Aopen(loc, name, H5P_DEFAULT), "%s: cannot open attribute '%s'", obj, name);
    ZF_H5_IN(*type = H5Aget_type(*attr), "%s: cannot read the type of attribute '%s'", obj, name);
    ZF_H5_IN(space = H5Aget_space(*attr), "%s: cannot read the space of attribute '%s'", obj, name);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    if (n != 1) {
        s = rd_fail(path, "%s: attribute '%s' holds %lld values, expected one", obj, name, (long long)n);
        goto done;
    }
    *cls = H5Tget_class(*type);
done:
    if (space >= 0) H5Sclose(space);
    if (s != ZF_OK) {
        if (*type >= 0) H5Tclose(*type);
        if (*attr >= 0) H5Aclose(*attr);
        *attr = *type = H5I_INVALID_HID;
    }
    return s;
}

/* A numeric attribute read as mem_type (HDF5 converts the stored width): integers only, or floats too. */
static zf_status rd_attr_num(const char *path, hid_t loc, const char *obj, const char *name, hid_t mem_type,
                             bool floats_too, void *v)
{
    hid_t a, type;
    H5T_class_t cls = H5T_NO_CLASS;
    zf_status s = rd_attr_open(path, loc, obj, name, &a, &type, &cls);
    if (s != ZF_OK) return s;
    if (cls != H5T_INTEGER && !(floats_too && cls == H5T_FLOAT))
        s = rd_fail(path, "%s: attribute '%s' is not %s", obj, name, floats_too ? "a number" : "an integer");
    else if (H5Aread(a, mem_type, v) < 0) s = rd_fail(path, "%s: cannot read attribute '%s'", obj, name);
    H5Tclose(type);
    H5Aclose(a);
    return s;
}

static zf_status rd_attr_i64(const char *path, hid_t loc, const char *obj, const char *name, int64_t *v)
{
    return rd_attr_num(path, loc, obj, name, H5T_NATIVE_INT64, false, v);
}

static zf_status rd_attr_f64(const char *path, hid_t loc, const char *obj, const char *name, double *v)
{
    return rd_attr_num(path, loc, obj, name, H5T_NATIVE_DOUBLE, true, v);
}

static zf_status rd_attr_int(const char *path, hid_t loc, const char *obj, const char *name, int64_t lo, int64_t hi,
                             int *v)
{
    int64_t x = 0;
    ZF_TRY(rd_attr_i64(path, loc, obj, name, &x));
    if (x < lo || x > hi)
        return rd_fail(path, "%s: attribute '%s' is %lld, expected %lld to %lld", obj, name, (long long)x,
                       (long long)lo, (long long)hi);
    *v = (int)x;
    return ZF_OK;
}

/* A string attribute, fixed-length (as we write it) or variable-length; *v is malloc'ed. */
static zf_status rd_attr_str(const char *path, hid_t loc, const char *obj, const char *name, int64_t fsize, char **v)
{
    hid_t a, type, mem = H5I_INVALID_HID;
    H5T_class_t cls = H5T_NO_CLASS;
    *v = NULL;
    zf_status s = rd_attr_open(path, loc, obj, name, &a, &type, &cls);
    if (s != ZF_OK) return s;
    if (cls != H5T_STRING) {
        s = rd_fail(path, "%s: attribute '%s' is not a string", obj, name);
        goto done;
    }
    htri_t var = H5Tis_variable_str(type);
    ZF_H5_IN(var, "%s: cannot read the type of attribute '%s'", obj, name);
    ZF_H5_IN(mem = H5Tcopy(H5T_C_S1), "%s: cannot make a string type", obj);
    if (var) {
        char *p = NULL;
        ZF_H5_IN(H5Tset_size(mem, H5T_VARIABLE), "%s: cannot make a string type", obj);
        ZF_H5_IN(H5Aread(a, mem, &p), "%s: cannot read attribute '%s'", obj, name);
        if (!p) {
            s = rd_fail(path, "%s: attribute '%s' is a null string", obj, name);
            goto done;
        }
        *v = strdup(p);
        H5free_memory(p);
        if (!*v) s = zf_fail(ZF_ERR_NOMEM, "%s: no memory for attribute '%s'", path, name);
    } else {
        size_t n = H5Tget_size(type);
        if (n == 0 || (int64_t)n > fsize) {
            s = rd_fail(path, "%s: attribute '%s' claims %zu bytes in a file of %lld", obj, name, n, (long long)fsize);
            goto done;
        }
        ZF_H5_IN(H5Tset_size(mem, n), "%s: cannot make a string type", obj);
        if (!(*v = zf_calloc(n + 1, 1, "string attribute"))) {
            s = ZF_ERR_NOMEM;
            goto done;
        }
        ZF_H5_IN(H5Aread(a, mem, *v), "%s: cannot read attribute '%s'", obj, name);
    }
done:
    if (mem >= 0) H5Tclose(mem);
    H5Tclose(type);
    H5Aclose(a);
    if (s != ZF_OK) {
        free(*v);
        *v = NULL;
    }
    return s;
}

/* Reads dataset obj/name of class cls and rank ndim into a new buffer of 4-byte elements (mem type). When expect
 * is given the shape must equal it; `what` describes the expected shape for the message. Sizes are bounded by
 * the file size before anything is allocated. */
static zf_status rd_dataset(const char *path, hid_t loc, const char *obj, const char *name, H5T_class_t cls,
                            hid_t mem, int ndim, const hsize_t *expect, const char *what, int64_t fsize,
                            hsize_t *dims, void **data)
{
    zf_status s = ZF_OK;
    hid_t d = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    *data = NULL;
    htri_t exists = H5Lexists(loc, name, H5P_DEFAULT);
    if (exists <= 0) return rd_fail(path, "%s: dataset '%s' is missing", obj, name);
    ZF_H5_IN(d = H5Dopen2(loc, name, H5P_DEFAULT), "%s: cannot open dataset '%s'", obj, name);
    ZF_H5_IN(type = H5Dget_type(d), "%s/%s: cannot read the type", obj, name);
    ZF_H5_IN(space = H5Dget_space(d), "%s/%s: cannot read the shape", obj, name);
    if (H5Tget_class(type) != cls) {
        s = rd_fail(path, "%s/%s: expected %s elements", obj, name, cls == H5T_INTEGER ? "integer" : "float");
        goto done;
    }
    size_t esize = H5Tget_size(type);
    if (esize == 0 || esize > 8) {
        s = rd_fail(path, "%s/%s: element size %zu is not 1 to 8 bytes", obj, name, esize);
        goto done;
    }
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank != ndim) {
        s = rd_fail(path, "%s/%s: rank %d, expected %d (%s)", obj, name, rank, ndim, what);
        goto done;
    }
    ZF_H5_IN(H5Sget_simple_extent_dims(space, dims, NULL), "%s/%s: cannot read the shape", obj, name);
    if (expect)
        for (int i = 0; i < ndim; i++)
            if (dims[i] != expect[i]) {
                if (ndim == 1)
                    s = rd_fail(path, "%s/%s: shape [%llu], expected [%llu] (%s)", obj, name,
                                (unsigned long long)dims[0], (unsigned long long)expect[0], what);
                else
                    s = rd_fail(path, "%s/%s: shape [%llu, %llu], expected [%llu, %llu] (%s)", obj, name,
                                (unsigned long long)dims[0], (unsigned long long)dims[1],
                                (unsigned long long)expect[0], (unsigned long long)expect[1], what);
                goto done;
            }
    /* a stored element takes at least esize bytes of the file: bounds the allocation for any claimed shape */
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] == 0 || dims[i] > (uint64_t)fsize || n > (uint64_t)fsize / dims[i]) {
            s = rd_fail(path, "%s/%s: shape does not fit in a file of %lld bytes", obj, name, (long long)fsize);
            goto done;
        }
        n *= dims[i];
    }
    if (n * esize > (uint64_t)fsize) {
        s = rd_fail(path, "%s/%s: %llu elements do not fit in a file of %lld bytes", obj, name,
                    (unsigned long long)n, (long long)fsize);
        goto done;
    }
    if (!(*data = zf_malloc(4 * (size_t)n, name))) {
        s = ZF_ERR_NOMEM;
        goto done;
    }
    ZF_H5_IN(H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data), "%s/%s: cannot read the data", obj, name);
done:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (d >= 0) H5Dclose(d);
    if (s != ZF_OK) {
        free(*data);
        *data = NULL;
    }
    return s;
}

static zf_status rd_finite(const char *path, const char *obj, const char *name, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return rd_fail(path, "%s/%s: element %lld is %g, expected a finite number", obj, name,
                                            (long long)i, (double)x[i]);
    return ZF_OK;
}

static void linear_data_free(zf_shard_linear_data *l)
{
    free(l->q);
    free(l->scale);
    free(l->zero);
    free(l->g_idx);
    free(l->zeta);
    free(l->bias);
}

/* One layer group: attributes first (they fix every expected shape), then each dataset against them. */
static zf_status rd_linear(const char *path, hid_t g, const char *obj, int64_t fsize, zf_shard_linear_data *l)
{
    zf_status s = ZF_OK;
    int32_t *qweight = NULL, *zeros = NULL;
    float *scales = NULL;
    const int64_t max_dim = (int64_t)1 << 40; /* far above any model; keeps every product below 2^63 */
    snprintf(l->name, sizeof l->name, "%s", obj);
    if ((s = rd_attr_int(path, g, obj, "bits", 2, 8, &l->bits)) != ZF_OK ||
        (s = rd_attr_i64(path, g, obj, "in_features", &l->in)) != ZF_OK ||
        (s = rd_attr_i64(path, g, obj, "out_features", &l->out)) != ZF_OK ||
        (s = rd_attr_i64(path, g, obj, "group_size", &l->group_size)) != ZF_OK ||
        (s = rd_attr_f64(path, g, obj, "delta_loss_before", &l->dl_before)) != ZF_OK ||
        (s = rd_attr_f64(path, g, obj, "delta_loss_after", &l->dl_after)) != ZF_OK ||
        (s = rd_attr_int(path, g, obj, "als_iterations", 0, INT32_MAX, &l->als_iters)) != ZF_OK ||
        (s = rd_attr_f64(path, g, obj, "damp_used", &l->damp_used)) != ZF_OK ||
        (s = rd_attr_int(path, g, obj, "damp_retries", 0, INT32_MAX, &l->damp_retries)) != ZF_OK)
        goto done;
    if (l->in < 1 || l->in > max_dim || l->out < 1 || l->out > max_dim) {
        s = rd_fail(path, "%s: in_features %lld and out_features %lld must be 1 to 2^40", obj, (long long)l->in,
                    (long long)l->out);
        goto done;
    }
    if (l->group_size == 0 || l->group_size < -1 || l->group_size > max_dim) {
        s = rd_fail(path, "%s: attribute 'group_size' is %lld, expected -1 or a positive size", obj,
                    (long long)l->group_size);
        goto done;
    }
    l->ngroups = l->group_size > 0 ? (l->in + l->group_size - 1) / l->group_size : 1;
    const int64_t words = zf_gptq_words(l->in, l->bits), in = l->in, out = l->out, ng = l->ngroups;
    hsize_t dims[2];
    char what[160];
    snprintf(what, sizeof what, "[words(in=%lld, bits=%d), out=%lld]", (long long)in, l->bits, (long long)out);
    if ((s = rd_dataset(path, g, obj, "qweight", H5T_INTEGER, H5T_NATIVE_INT32, 2,
                        (hsize_t[]){(hsize_t)words, (hsize_t)out}, what, fsize, dims, (void **)&qweight)) != ZF_OK)
        goto done;
    snprintf(what, sizeof what, "[groups=%lld for group_size %lld, out=%lld]", (long long)ng,
             (long long)l->group_size, (long long)out);
    if ((s = rd_dataset(path, g, obj, "scales", H5T_FLOAT, H5T_NATIVE_FLOAT, 2, (hsize_t[]){(hsize_t)ng, (hsize_t)out},
                        what, fsize, dims, (void **)&scales)) != ZF_OK ||
        (s = rd_dataset(path, g, obj, "zeros", H5T_INTEGER, H5T_NATIVE_INT32, 2, (hsize_t[]){(hsize_t)ng, (hsize_t)out},
                        what, fsize, dims, (void **)&zeros)) != ZF_OK)
        goto done;
    snprintf(what, sizeof what, "[in=%lld]", (long long)in);
    if ((s = rd_dataset(path, g, obj, "g_idx", H5T_INTEGER, H5T_NATIVE_INT32, 1, (hsize_t[]){(hsize_t)in}, what, fsize,
                        dims, (void **)&l->g_idx)) != ZF_OK ||
        (s = rd_dataset(path, g, obj, "zeta", H5T_FLOAT, H5T_NATIVE_FLOAT, 1, (hsize_t[]){(hsize_t)in}, what, fsize,
                        dims, (void **)&l->zeta)) != ZF_OK ||
        (s = rd_finite(path, obj, "zeta", l->zeta, in)) != ZF_OK)
        goto done;
    htri_t has_bias = H5Lexists(g, "bias", H5P_DEFAULT);
    ZF_H5_IN(has_bias, "%s: cannot look up 'bias'", obj);
    snprintf(what, sizeof what, "[out=%lld]", (long long)out);
    if (has_bias && ((s = rd_dataset(path, g, obj, "bias", H5T_FLOAT, H5T_NATIVE_FLOAT, 1, (hsize_t[]){(hsize_t)out},
                                     what, fsize, dims, (void **)&l->bias)) != ZF_OK ||
                     (s = rd_finite(path, obj, "bias", l->bias, out)) != ZF_OK))
        goto done;
    if ((s = rd_finite(path, obj, "scales", scales, ng * out)) != ZF_OK) goto done;
    const int32_t maxq = (1 << l->bits) - 1;
    for (int64_t j = 0; j < in; j++)
        if (l->g_idx[j] < 0 || l->g_idx[j] >= ng) {
            s = rd_fail(path, "%s/g_idx: element %lld is %d, expected 0 to %lld", obj, (long long)j, (int)l->g_idx[j],
                        (long long)(ng - 1));
            goto done;
        }
    for (int64_t i = 0; i < ng * out; i++)
        if (zeros[i] < 0 || zeros[i] > maxq) {
            s = rd_fail(path, "%s/zeros: element %lld is %d, expected 0 to %d for %d bits", obj, (long long)i,
                        (int)zeros[i], (int)maxq, l->bits);
            goto done;
        }
    /* the writer leaves the bits past in·bits zero: anything else is a corrupt or foreign file */
    const int used = (int)(in * l->bits - (words - 1) * 32);
    if (used < 32) {
        const uint32_t pad = ~((1u << used) - 1u);
        for (int64_t n = 0; n < out; n++)
            if ((uint32_t)qweight[(words - 1) * out + n] & pad) {
                s = rd_fail(path, "%s/qweight: padding bits of column %lld are not zero", obj, (long long)n);
                goto done;
            }
    }
    l->q = zf_malloc((size_t)(out * in), "codes");
    l->scale = zf_malloc(sizeof(float) * (size_t)(out * ng), "scales");
    l->zero = zf_malloc(sizeof(float) * (size_t)(out * ng), "zeros");
    if (!l->q || !l->scale || !l->zero) {
        s = ZF_ERR_NOMEM;
        goto done;
    }
    zf_gptq_unpack_qweight(qweight, out, in, l->bits, l->q);
    for (int64_t n = 0; n < out; n++)
        for (int64_t k = 0; k < ng; k++) {
            l->scale[n * ng + k] = scales[k * out + n];
            l->zero[n * ng + k] = (float)zeros[k * out + n];
        }
done:
    free(qweight);
    free(scales);
    free(zeros);
    return s;
}

/* Root attributes: format, version, kind, block. */
static zf_status rd_header(const char *path, hid_t file, int64_t fsize, zf_shard_data *out)
{
    char *str = NULL;
    int version = 0;
    zf_status s = rd_attr_str(path, file, "/", "format", fsize, &str);
    if (s == ZF_OK && strcmp(str, ZF_SHARD_FORMAT))
        s = rd_fail(path, "attribute 'format' is '%.64s', expected '%s'", str, ZF_SHARD_FORMAT);
    free(str);
    str = NULL;
    if (s == ZF_OK) s = rd_attr_int(path, file, "/", "format_version", ZF_SHARD_VERSION, ZF_SHARD_VERSION, &version);
    if (s == ZF_OK) s = rd_attr_str(path, file, "/", "kind", fsize, &str);
    if (s == ZF_OK && strcmp(str, "block") && strcmp(str, "unquantized"))
        s = rd_fail(path, "attribute 'kind' is '%.64s', expected 'block' or 'unquantized'", str);
    if (s == ZF_OK) snprintf(out->kind, sizeof out->kind, "%s", str);
    free(str);
    if (s == ZF_OK) s = rd_attr_i64(path, file, "/", "block", &out->block);
    if (s == ZF_OK && (out->block < -1 || (!strcmp(out->kind, "block") && out->block < 0)))
        s = rd_fail(path, "attribute 'block' is %lld, expected a block index", (long long)out->block);
    return s;
}

/* Appends an element to a growing array (capacity doubles). */
static void *grow(void *arr, int n, int *cap, size_t elem)
{
    if (n < *cap) return arr;
    int nc = *cap ? 2 * *cap : 8;
    void *p = realloc(arr, (size_t)nc * elem);
    if (!p) return NULL;
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *cap = nc;
    return p;
}

/* A root dataset: a plain fp32 tensor, appended to out. */
static zf_status rd_tensor(const char *path, hid_t file, hid_t obj, const char *name, int64_t fsize,
                           zf_shard_data *out, int *cap)
{
    zf_shard_tensor_data *p = grow(out->tensors, out->ntensors, cap, sizeof *p);
    if (!p) return zf_fail(ZF_ERR_NOMEM, "%s: no memory for the tensor list", path);
    out->tensors = p;
    zf_shard_tensor_data *t = &out->tensors[out->ntensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    hid_t sp = H5Dget_space(obj);
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (sp >= 0) H5Sclose(sp);
    if (rank != 1 && rank != 2) return rd_fail(path, "dataset '%s' has rank %d, expected 1 or 2", name, rank);
    hsize_t dims[2] = {0, 0};
    ZF_TRY(rd_dataset(path, file, "/", name, H5T_FLOAT, H5T_NATIVE_FLOAT, rank, NULL, "a tensor", fsize, dims,
                      (void **)&t->data));
    t->ndim = rank;
    t->shape[0] = (int64_t)dims[0];
    t->shape[1] = rank == 2 ? (int64_t)dims[1] : 0;
    return rd_finite(path, "", name, t->data, t->shape[0] * (rank == 2 ? t->shape[1] : 1));
}

/* One root entry by name: the provenance group, a layer group or a tensor. */
static zf_status rd_entry(const char *path, hid_t file, const char *name, int64_t fsize, zf_shard_data *out,
                          int *cap_lin, int *cap_ten)
{
    zf_status s = ZF_OK;
    hid_t obj = H5I_INVALID_HID;
    H5L_info_t li;
    ZF_H5_IN(H5Lget_info(file, name, &li, H5P_DEFAULT), "cannot read link '%s'", name);
    if (li.type != H5L_TYPE_HARD) /* a soft or external link could point anywhere: not ours */
        return rd_fail(path, "'%s' is a soft or external link, expected a group or dataset", name);
    ZF_H5_IN(obj = H5Oopen(file, name, H5P_DEFAULT), "cannot open '%s'", name);
    H5I_type_t type = H5Iget_type(obj);
    if (type == H5I_GROUP && !strcmp(name, "provenance")) {
        htri_t has = H5Aexists(obj, "config");
        ZF_H5_IN(has, "provenance: cannot look up attribute 'config'");
        if (has) s = rd_attr_str(path, obj, "provenance", "config", fsize, &out->config_yaml);
    } else if (type == H5I_GROUP) {
        zf_shard_linear_data *p = grow(out->lin, out->nlin, cap_lin, sizeof *p);
        if (!p) {
            s = zf_fail(ZF_ERR_NOMEM, "%s: no memory for the layer list", path);
            goto done;
        }
        out->lin = p;
        s = rd_linear(path, obj, name, fsize, &out->lin[out->nlin]);
        out->nlin++; /* counted even on failure so zf_shard_data_free releases what was read */
    } else if (type == H5I_DATASET) {
        s = rd_tensor(path, file, obj, name, fsize, out, cap_ten);
    } else {
        s = rd_fail(path, "'%s' is neither a group nor a dataset", name);
    }
done:
    if (obj >= 0) H5Oclose(obj);
    return s;
}

/* The root group's entry names as H5Literate finds them (at most cap, each 1 to 255 bytes). */
typedef struct {
    char **names;
    hsize_t n, cap;
    bool bad;
    char why[96];
} root_names;

static herr_t collect_name(hid_t g, const char *name, const H5L_info_t *info, void *ctx)
{
    (void)g, (void)info;
    root_names *rn = ctx;
    const size_t len = strlen(name);
    if (rn->n >= rn->cap || len == 0 || len >= 256) {
        rn->bad = true;
        snprintf(rn->why, sizeof rn->why, rn->n >= rn->cap ? "root group lists more than the %llu entries it claims"
                                                           : "root entry %llu has a name of %zu bytes, expected 1 to 255",
                 (unsigned long long)(rn->n >= rn->cap ? rn->cap : rn->n), len);
        return 1;
    }
    if (!(rn->names[rn->n] = zf_malloc(len + 1, "entry name"))) {
        rn->bad = true;
        snprintf(rn->why, sizeof rn->why, "out of memory for an entry name");
        return -1;
    }
    memcpy(rn->names[rn->n++], name, len + 1);
    return 0;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

zf_status zf_shard_read(const char *path, zf_shard_data *out)
{
    memset(out, 0, sizeof *out);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our messages name the file; HDF5's stack is not for users */
    struct stat st;
    if (stat(path, &st) != 0) return zf_fail(ZF_ERR_INPUT, "%s: cannot open the shard: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return zf_fail(ZF_ERR_INPUT, "%s: not a regular file", path);
    const int64_t fsize = (int64_t)st.st_size;
    zf_status s = ZF_OK;
    hid_t file = H5I_INVALID_HID;
    int cap_lin = 0, cap_ten = 0;
    htri_t is_h5 = H5Fis_hdf5(path);
    if (is_h5 <= 0) {
        s = rd_fail(path, "not an HDF5 file (empty, truncated or another format)");
        goto done;
    }
    ZF_H5_IN(file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "HDF5 cannot open it (truncated or corrupt)");
    if ((s = rd_header(path, file, fsize, out)) != ZF_OK) goto done;
    H5G_info_t gi;
    ZF_H5_IN(H5Gget_info(file, &gi), "cannot list the root group");
    if (gi.nlinks > (hsize_t)fsize) {
        s = rd_fail(path, "root group claims %llu entries", (unsigned long long)gi.nlinks);
        goto done;
    }
    /* names collected in the group's native order and sorted here: HDF5 1.10 crashes building its own sorted
     * table of a corrupt dense group (H5G__link_release_table) */
    root_names rn = {.cap = gi.nlinks};
    rn.names = zf_calloc(gi.nlinks ? (size_t)gi.nlinks : 1, sizeof(char *), "root entry names");
    if (!rn.names) {
        s = ZF_ERR_NOMEM;
        goto done;
    }
    hsize_t at = 0;
    herr_t it = H5Literate(file, H5_INDEX_NAME, H5_ITER_NATIVE, &at, collect_name, &rn);
    if (it < 0 || rn.bad) {
        s = rn.bad ? rd_fail(path, "%s", rn.why) : rd_fail(path, "cannot list the root group's entries");
        goto names_done;
    }
    qsort(rn.names, (size_t)rn.n, sizeof(char *), cmp_name);
    for (hsize_t i = 0; i < rn.n; i++)
        if ((s = rd_entry(path, file, rn.names[i], fsize, out, &cap_lin, &cap_ten)) != ZF_OK) break;
names_done:
    for (hsize_t i = 0; i < rn.n; i++) free(rn.names[i]);
    free(rn.names);
done:
    if (file >= 0 && H5Fclose(file) < 0 && s == ZF_OK) s = rd_fail(path, "HDF5 failed to close it");
    if (s != ZF_OK) zf_shard_data_free(out);
    return s;
}

void zf_shard_data_free(zf_shard_data *d)
{
    if (!d) return;
    for (int i = 0; i < d->nlin; i++) linear_data_free(&d->lin[i]);
    for (int i = 0; i < d->ntensors; i++) free(d->tensors[i].data);
    free(d->lin);
    free(d->tensors);
    free(d->config_yaml);
    memset(d, 0, sizeof *d);
}
