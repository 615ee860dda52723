/* HDF5 shard writer: every H5 call checked, handles closed on every path, temporary file renamed when complete. */
#define _GNU_SOURCE
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gptq_pack.h"

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

static zf_status dataset(hid_t loc, const char *path, const char *name, hid_t mem_type, hid_t file_type, int ndim,
                         const int64_t *shape, const void *data)
{
    zf_status s = ZF_OK;
    hsize_t dims[2] = {(hsize_t)shape[0], ndim > 1 ? (hsize_t)shape[1] : 1};
    hid_t space = H5I_INVALID_HID, d = H5I_INVALID_HID;
    ZF_H5_TRY(space = H5Screate_simple(ndim, dims, NULL), "create a data space");
    ZF_H5_TRY(d = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), name);
    ZF_H5_TRY(H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), name);
done:
    if (d >= 0) H5Dclose(d);
    if (space >= 0) H5Sclose(space);
    return s;
}

static zf_status write_linear(hid_t file, const char *path, const zf_shard_linear *l)
{
    zf_status s = ZF_OK;
    hid_t g = H5I_INVALID_HID;
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
    ZF_H5_TRY(g = H5Gcreate2(file, l->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create a layer group");
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
    hid_t file = H5I_INVALID_HID, prov = H5I_INVALID_HID;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our messages name the file; HDF5's stack is not for users */
    ZF_H5_TRY(file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "create the file");
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
    ZF_H5_TRY(prov = H5Gcreate2(file, "provenance", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create /provenance");
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
    if (file >= 0 && H5Fclose(file) < 0 && s == ZF_OK) s = zf_fail(ZF_ERR_IO, "%s: HDF5 failed to close", path);
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
