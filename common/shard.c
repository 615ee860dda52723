/* HDF5 shard writer and reader: every H5 call checked, handles closed on every path, temporary file renamed when
 * complete; the reader trusts nothing in the file (sizes bounded by the file size, shapes checked against attributes). */
#define _GNU_SOURCE
#include "common/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/gptq_pack.h"

#define ZF_H5_TRY(expr, what) \
    do { if ((expr) < 0) { s = zf_fail(ZF_ERR_IO, "%s: HDF5 failed to %s", path, what); goto done; } } while (0)

static zf_status attr_str(hid_t loc, const char *path, const char *name, const char *value)
{
    zf_status s = ZF_OK;
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID, a = H5I_INVALID_HID;
    ZF_H5_TRY(type = H5Tcopy(H5T_C_S1), "copy a string type");
    ZF_H5_TRY(H5Tset_size(type, strlen(value) + 1), "size a string type");
    ZF_H5_TRY(space = H5Screate(H5S_SCALAR), "create a scalar space");
    ZF_H5_TRY(a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT), name);
    ZF_H5_TRY(H5Awrite(a, type, value), name);
done:
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return s;
}

static zf_status attr_num(hid_t loc, const char *path, const char *name, hid_t type, const void *value)
{
    zf_status s = ZF_OK;
    hid_t space = H5I_INVALID_HID, a = H5I_INVALID_HID;
    ZF_H5_TRY(space = H5Screate(H5S_SCALAR), "create a scalar space");
    ZF_H5_TRY(a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT), name);
    ZF_H5_TRY(H5Awrite(a, type, value), name);
done:
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return s;
}

/* A creation property list without modification times, so that equal content gives byte-identical files. */
static hid_t untimed(hid_t cls)
{
    hid_t p = H5Pcreate(cls);
    if (p >= 0 && H5Pset_obj_track_times(p, 0) < 0) {
        H5Pclose(p);
        return H5I_INVALID_HID;
    }
    return p;
}

static zf_status dataset(hid_t loc, const char *path, const char *name, hid_t mem_type, hid_t file_type, int ndim,
                         const int64_t *shape, const void *data)
{
    zf_status s = ZF_OK;
    hsize_t dims[2] = {(hsize_t)shape[0], ndim > 1 ? (hsize_t)shape[1] : 1};
    hid_t space = H5I_INVALID_HID, d = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    ZF_H5_TRY(space = H5Screate_simple(ndim, dims, NULL), "create a data space");
    ZF_H5_TRY(dcpl = untimed(H5P_DATASET_CREATE), "create a dataset property list");
    ZF_H5_TRY(d = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), name);
    ZF_H5_TRY(H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), name);
done:
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return s;
}

static zf_status write_linear(hid_t file, const char *path, const zf_shard_linear *l)
{
    zf_status s = ZF_OK;
    hid_t g = H5I_INVALID_HID, gcpl = H5I_INVALID_HID;
    int64_t words = zf_gptq_words(l->in, l->bits);
    int32_t *qweight = zf_malloc(sizeof(int32_t) * (size_t)(words * l->out), "packed codes");
    float *scales = zf_malloc(sizeof(float) * (size_t)(l->ngroups * l->out), "scales");
    int32_t *zeros = zf_malloc(sizeof(int32_t) * (size_t)(l->ngroups * l->out), "zeros");
    if (!qweight || !scales || !zeros) {
        s = ZF_ERR_NOMEM;
        goto done;
    }
    zf_gptq_pack_qweight(l->q, l->out, l->in, l->bits, qweight);
    for (int64_t n = 0; n < l->out; n++)
        for (int64_t k = 0; k < l->ngroups; k++) {
            scales[k * l->out + n] = l->scale[n * l->ngroups + k];
            zeros[k * l->out + n] = (int32_t)l->zero[n * l->ngroups + k];
        }
    ZF_H5_TRY(gcpl = untimed(H5P_GROUP_CREATE), "create a group property list");
    ZF_H5_TRY(g = H5Gcreate2(file, l->name, H5P_DEFAULT, gcpl, H5P_DEFAULT), "create a layer group");
    int64_t shp_qw[2] = {words, l->out}, shp_s[2] = {l->ngroups, l->out}, shp_in[1] = {l->in}, shp_out[1] = {l->out};
    if ((s = dataset(g, path, "qweight", H5T_NATIVE_INT32, H5T_STD_I32LE, 2, shp_qw, qweight)) != ZF_OK ||
        (s = dataset(g, path, "scales", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, shp_s, scales)) != ZF_OK ||
        (s = dataset(g, path, "zeros", H5T_NATIVE_INT32, H5T_STD_I32LE, 2, shp_s, zeros)) != ZF_OK ||
        (s = dataset(g, path, "g_idx", H5T_NATIVE_INT32, H5T_STD_I32LE, 1, shp_in, l->g_idx)) != ZF_OK ||
        (s = dataset(g, path, "zeta", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 1, shp_in, l->zeta)) != ZF_OK)
        goto done;
    if (l->bias && (s = dataset(g, path, "bias", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 1, shp_out, l->bias)) != ZF_OK)
        goto done;
    int bits = l->bits;
    int64_t in = l->in, out = l->out, gs = l->group_size;
    if ((s = attr_num(g, path, "bits", H5T_NATIVE_INT, &bits)) != ZF_OK ||
        (s = attr_num(g, path, "in_features", H5T_NATIVE_INT64, &in)) != ZF_OK ||
        (s = attr_num(g, path, "out_features", H5T_NATIVE_INT64, &out)) != ZF_OK ||
        (s = attr_num(g, path, "group_size", H5T_NATIVE_INT64, &gs)) != ZF_OK ||
        (s = attr_num(g, path, "delta_loss_before", H5T_NATIVE_DOUBLE, &l->dl_before)) != ZF_OK ||
        (s = attr_num(g, path, "delta_loss_after", H5T_NATIVE_DOUBLE, &l->dl_after)) != ZF_OK ||
        (s = attr_num(g, path, "als_iterations", H5T_NATIVE_INT, &l->als_iters)) != ZF_OK ||
        (s = attr_num(g, path, "damp_used", H5T_NATIVE_DOUBLE, &l->damp_used)) != ZF_OK ||
        (s = attr_num(g, path, "damp_retries", H5T_NATIVE_INT, &l->damp_retries)) != ZF_OK)
        goto done;
done:
    if (g >= 0) H5Gclose(g);
    if (gcpl >= 0) H5Pclose(gcpl);
    free(qweight);
    free(scales);
    free(zeros);
    return s;
}

static zf_status fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0) return zf_fail(ZF_ERR_IO, "cannot open %s to sync it: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return zf_fail(ZF_ERR_IO, "fsync of %s failed: %s", path, strerror(errno));
    return ZF_OK;
}

zf_status zf_shard_write(const char *path, const char *kind, int64_t block, int nlin, const zf_shard_linear *lin,
                         int ntensors, const zf_shard_tensor *tensors, const char *provenance_json)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    zf_status s = ZF_OK;
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID, prov = H5I_INVALID_HID, gcpl = H5I_INVALID_HID,
          fcpl = H5I_INVALID_HID;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our messages name the file; HDF5's stack is not for users */
    /* Object headers v2 carry checksums: a damaged shard is then refused by HDF5 instead of being decoded (HDF5
     * 1.10 reads out of bounds on some corrupt v1 headers). Same groups, datasets and attributes; HDF5 >= 1.8. */
    ZF_H5_TRY(fapl = H5Pcreate(H5P_FILE_ACCESS), "create a file access list");
    ZF_H5_TRY(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V110), "set the file format versions");
    ZF_H5_TRY(fcpl = untimed(H5P_FILE_CREATE), "create a file creation list");
    ZF_H5_TRY(file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl), "create the file");
    int version = ZF_SHARD_VERSION;
    if ((s = attr_str(file, path, "format", ZF_SHARD_FORMAT)) != ZF_OK ||
        (s = attr_num(file, path, "format_version", H5T_NATIVE_INT, &version)) != ZF_OK ||
        (s = attr_str(file, path, "kind", kind)) != ZF_OK ||
        (s = attr_num(file, path, "block", H5T_NATIVE_INT64, &block)) != ZF_OK)
        goto done;
    for (int i = 0; i < nlin; i++)
        if ((s = write_linear(file, path, &lin[i])) != ZF_OK) goto done;
    for (int i = 0; i < ntensors; i++)
        if ((s = dataset(file, path, tensors[i].name, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, tensors[i].ndim,
                         tensors[i].shape, tensors[i].data)) != ZF_OK)
            goto done;
    ZF_H5_TRY(gcpl = untimed(H5P_GROUP_CREATE), "create a group property list");
    ZF_H5_TRY(prov = H5Gcreate2(file, "provenance", H5P_DEFAULT, gcpl, H5P_DEFAULT), "create /provenance");
    if ((s = attr_str(prov, path, "version", ZF_VERSION)) != ZF_OK ||
        (s = attr_str(prov, path, "git_revision", ZF_GIT_REV)) != ZF_OK ||
        (s = attr_str(prov, path, "compiler", "gcc " __VERSION__)) != ZF_OK)
        goto done;
    {
        unsigned maj, min, rel;
        char h5v[64];
        H5get_libversion(&maj, &min, &rel);
        snprintf(h5v, sizeof h5v, "%u.%u.%u", maj, min, rel);
        if ((s = attr_str(prov, path, "hdf5", h5v)) != ZF_OK) goto done;
    }
    if (provenance_json && (s = attr_str(prov, path, "config", provenance_json)) != ZF_OK) goto done;
    ZF_H5_TRY(H5Fflush(file, H5F_SCOPE_GLOBAL), "flush");
done:
    if (prov >= 0) H5Gclose(prov);
    if (gcpl >= 0) H5Pclose(gcpl);
    if (file >= 0 && H5Fclose(file) < 0 && s == ZF_OK) s = zf_fail(ZF_ERR_IO, "%s: HDF5 failed to close", path);
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (s == ZF_OK) s = fsync_path(tmp, O_RDONLY);
    if (s == ZF_OK && rename(tmp, path) != 0)
        s = zf_fail(ZF_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (s == ZF_OK) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        s = fsync_path(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
    }
    if (s != ZF_OK) unlink(tmp);
    return s;
}

/* ---- reader ---------------------------------------------------------------------------------------------- */

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

zf_status zf_shard_read(const char *path, zf_shard_data *out)
{
    memset(out, 0, sizeof *out);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our messages name the file; HDF5's stack is not for users */
    struct stat st;
    if (stat(path, &st) != 0) return zf_fail(ZF_ERR_INPUT, "%s: cannot open the shard: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return zf_fail(ZF_ERR_INPUT, "%s: not a regular file", path);
    const int64_t fsize = (int64_t)st.st_size;
    zf_status s = ZF_OK;
    hid_t file = H5I_INVALID_HID, obj = H5I_INVALID_HID;
    char *name = NULL;
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
    for (hsize_t i = 0; i < gi.nlinks; i++) {
        ssize_t len = H5Lget_name_by_idx(file, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
        ZF_H5_IN(len, "cannot read the name of root entry %llu", (unsigned long long)i);
        if (len == 0 || len >= 256) {
            s = rd_fail(path, "root entry %llu has a name of %lld bytes, expected 1 to 255", (unsigned long long)i,
                        (long long)len);
            goto done;
        }
        name = zf_calloc((size_t)len + 1, 1, "entry name");
        if (!name) {
            s = ZF_ERR_NOMEM;
            goto done;
        }
        ZF_H5_IN(H5Lget_name_by_idx(file, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, (size_t)len + 1, H5P_DEFAULT),
                 "cannot read the name of root entry %llu", (unsigned long long)i);
        H5L_info_t li;
        ZF_H5_IN(H5Lget_info(file, name, &li, H5P_DEFAULT), "cannot read link '%s'", name);
        if (li.type != H5L_TYPE_HARD) { /* a soft or external link could point anywhere: not ours */
            s = rd_fail(path, "'%s' is a soft or external link, expected a group or dataset", name);
            goto done;
        }
        ZF_H5_IN(obj = H5Oopen(file, name, H5P_DEFAULT), "cannot open '%s'", name);
        H5I_type_t type = H5Iget_type(obj);
        if (type == H5I_GROUP && !strcmp(name, "provenance")) {
            htri_t has = H5Aexists(obj, "config");
            ZF_H5_IN(has, "provenance: cannot look up attribute 'config'");
            if (has && (s = rd_attr_str(path, obj, "provenance", "config", fsize, &out->config_yaml)) != ZF_OK)
                goto done;
        } else if (type == H5I_GROUP) {
            zf_shard_linear_data *p = grow(out->lin, out->nlin, &cap_lin, sizeof *p);
            if (!p) {
                s = zf_fail(ZF_ERR_NOMEM, "%s: no memory for the layer list", path);
                goto done;
            }
            out->lin = p;
            s = rd_linear(path, obj, name, fsize, &out->lin[out->nlin]);
            out->nlin++; /* counted even on failure so zf_shard_data_free releases what was read */
            if (s != ZF_OK) goto done;
        } else if (type == H5I_DATASET) {
            zf_shard_tensor_data *p = grow(out->tensors, out->ntensors, &cap_ten, sizeof *p);
            if (!p) {
                s = zf_fail(ZF_ERR_NOMEM, "%s: no memory for the tensor list", path);
                goto done;
            }
            out->tensors = p;
            zf_shard_tensor_data *t = &out->tensors[out->ntensors++];
            snprintf(t->name, sizeof t->name, "%s", name);
            hid_t sp = H5Dget_space(obj);
            int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
            if (sp >= 0) H5Sclose(sp);
            if (rank != 1 && rank != 2) {
                s = rd_fail(path, "dataset '%s' has rank %d, expected 1 or 2", name, rank);
                goto done;
            }
            hsize_t dims[2] = {0, 0};
            if ((s = rd_dataset(path, file, "/", name, H5T_FLOAT, H5T_NATIVE_FLOAT, rank, NULL, "a tensor", fsize,
                                dims, (void **)&t->data)) != ZF_OK)
                goto done;
            t->ndim = rank;
            t->shape[0] = (int64_t)dims[0];
            t->shape[1] = rank == 2 ? (int64_t)dims[1] : 0;
            if ((s = rd_finite(path, "", name, t->data, t->shape[0] * (rank == 2 ? t->shape[1] : 1))) != ZF_OK)
                goto done;
        } else {
            s = rd_fail(path, "'%s' is neither a group nor a dataset", name);
            goto done;
        }
        H5Oclose(obj);
        obj = H5I_INVALID_HID;
        free(name);
        name = NULL;
    }
done:
    if (obj >= 0) H5Oclose(obj);
    if (file >= 0 && H5Fclose(file) < 0 && s == ZF_OK) s = rd_fail(path, "HDF5 failed to close it");
    free(name);
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
