/* HDF5 shard writer: every H5 call checked, handles closed on every path, published through fsutil's atomic path. */
#define _GNU_SOURCE
#include "common/shard.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/fsutil.h"
#include "common/gptq_pack.h"

/* A failed HDF5 call while writing path (what the call was for): the check's message, prefixed with both. */
#define ZF_H5_TRY(expr, what) \
    do { if ((s = ZF_H5_CHECK(expr)) != ZF_OK) { zf_fail_context(s, "%s: %s", path, what); goto done; } } while (0)

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

zf_status zf_shard_write(const char *path, const char *kind, int64_t block, int nlin, const zf_shard_linear *lin,
                         int ntensors, const zf_shard_tensor *tensors, const char *provenance_json)
{
    char tmp[4096];
    zf_status s = zf_tmp_name(path, tmp, sizeof tmp);
    if (s != ZF_OK) return s;
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
    if (file >= 0 && H5Fclose(file) < 0 && s == ZF_OK)
        s = zf_fail_context(zf_h5_fail("H5Fclose", __FILE__, __LINE__), "%s: close", path);
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    return zf_atomic_publish(tmp, path, s);
}
