/* Shard reader: what zf_shard_write wrote reads back bit for bit; damaged or foreign files give ZF_ERR_INPUT naming the file. */
#define _GNU_SOURCE
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/shard.h"
#include "tests/testutil.h"

/* Under ASan: damaged HDF5 metadata makes libhdf5 itself ask malloc for absurd sizes (hundreds of TB); glibc
 * returns NULL there and HDF5 fails cleanly, which is what this test checks. ASan aborts instead unless told to
 * behave like glibc. (Ignored in builds without ASan.) */
const char *__asan_default_options(void);
__attribute__((used)) const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
/* libhdf5 leaks the half-decoded object header when it refuses a damaged one (inside HDF5, not ours: our handles
 * are counted after every read below). */
const char *__lsan_default_suppressions(void);
__attribute__((used)) const char *__lsan_default_suppressions(void) { return "leak:libhdf5\n"; }

/* A layer's arrays, owned by the test. */
typedef struct {
    char name[64];
    zf_shard_linear l;
    uint8_t *q;
    float *scale, *zero, *zeta, *bias;
    int32_t *g_idx;
} layer;

static void make_layer(layer *L, zt_rng *rng, const char *name, int bits, int64_t out, int64_t in, int64_t gs,
                       int with_bias)
{
    const int64_t ng = gs > 0 ? (in + gs - 1) / gs : 1;
    const int maxq = (1 << bits) - 1;
    snprintf(L->name, sizeof L->name, "%s", name);
    L->q = malloc((size_t)(out * in));
    L->scale = malloc(sizeof(float) * (size_t)(out * ng));
    L->zero = malloc(sizeof(float) * (size_t)(out * ng));
    L->zeta = malloc(sizeof(float) * (size_t)in);
    L->g_idx = malloc(sizeof(int32_t) * (size_t)in);
    L->bias = with_bias ? malloc(sizeof(float) * (size_t)out) : NULL;
    for (int64_t i = 0; i < out * in; i++) L->q[i] = (uint8_t)(zt_rng_u64(rng) % (uint64_t)(maxq + 1));
    for (int64_t i = 0; i < out * ng; i++) {
        L->scale[i] = (float)(1e-3 + zt_rng_uniform(rng));
        L->zero[i] = (float)(zt_rng_u64(rng) % (uint64_t)(maxq + 1));
    }
    for (int64_t j = 0; j < in; j++) {
        L->zeta[j] = (float)(0.5 + zt_rng_uniform(rng));
        L->g_idx[j] = (int32_t)(zt_rng_u64(rng) % (uint64_t)ng); /* act_order: any group per column */
    }
    if (L->bias) zt_fill_normal(rng, L->bias, out, 1.0);
    L->l = (zf_shard_linear){.name = L->name, .bits = bits, .out = out, .in = in, .ngroups = ng,
                             .group_size = gs > 0 ? gs : -1, .q = L->q, .scale = L->scale, .zero = L->zero,
                             .g_idx = L->g_idx, .zeta = L->zeta, .bias = L->bias,
                             .dl_before = zt_rng_uniform(rng), .dl_after = zt_rng_uniform(rng) * 0.1,
                             .als_iters = (int)(zt_rng_u64(rng) % 30), .damp_used = 0.01 * (1 + bits),
                             .damp_retries = bits % 3};
}

static void free_layer(layer *L)
{
    free(L->q);
    free(L->scale);
    free(L->zero);
    free(L->zeta);
    free(L->g_idx);
    free(L->bias);
}

static const zf_shard_linear_data *find_lin(const zf_shard_data *d, const char *name)
{
    for (int i = 0; i < d->nlin; i++)
        if (!strcmp(d->lin[i].name, name)) return &d->lin[i];
    return NULL;
}

static const zf_shard_tensor_data *find_tensor(const zf_shard_data *d, const char *name)
{
    for (int i = 0; i < d->ntensors; i++)
        if (!strcmp(d->tensors[i].name, name)) return &d->tensors[i];
    return NULL;
}

static void check_layer(const zf_shard_data *d, const zf_shard_linear *w)
{
    const zf_shard_linear_data *r = find_lin(d, w->name);
    CHECK_MSG(r != NULL, "layer %s not read back", w->name);
    if (!r) return;
    const int64_t ng = w->ngroups;
    CHECK(r->bits == w->bits && r->out == w->out && r->in == w->in && r->ngroups == ng &&
          r->group_size == w->group_size);
    CHECK(memcmp(r->q, w->q, (size_t)(w->out * w->in)) == 0);
    CHECK(memcmp(r->scale, w->scale, sizeof(float) * (size_t)(w->out * ng)) == 0);
    CHECK(memcmp(r->zero, w->zero, sizeof(float) * (size_t)(w->out * ng)) == 0);
    CHECK(memcmp(r->g_idx, w->g_idx, sizeof(int32_t) * (size_t)w->in) == 0);
    CHECK(memcmp(r->zeta, w->zeta, sizeof(float) * (size_t)w->in) == 0);
    CHECK((r->bias == NULL) == (w->bias == NULL));
    if (r->bias && w->bias) CHECK(memcmp(r->bias, w->bias, sizeof(float) * (size_t)w->out) == 0);
    CHECK(r->dl_before == w->dl_before && r->dl_after == w->dl_after && r->als_iters == w->als_iters &&
          r->damp_used == w->damp_used && r->damp_retries == w->damp_retries);
}

/* Reading `path` must fail with ZF_ERR_INPUT naming the file and, when given, containing `needle`. */
static void expect_input_error(const char *path, const char *needle, const char *what)
{
    zf_shard_data d;
    zf_status s = zf_shard_read(path, &d);
    CHECK_MSG(s == ZF_ERR_INPUT, "%s: got %s (%s)", what, zf_status_name(s), zf_last_error());
    CHECK_MSG(strstr(zf_last_error(), path) != NULL, "%s: message does not name the file: %s", what, zf_last_error());
    if (needle) CHECK_MSG(strstr(zf_last_error(), needle) != NULL, "%s: message lacks '%s': %s", what, needle,
                          zf_last_error());
    CHECK(d.nlin == 0 && d.lin == NULL && d.ntensors == 0 && d.tensors == NULL && d.config_yaml == NULL);
    CHECK_MSG(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0, "%s: HDF5 handles left open", what);
    zf_shard_data_free(&d);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len);
    if (fread(b, 1, *len, f) != *len) *len = 0;
    fclose(f);
    return b;
}

/* Rewrites part of a valid shard with the HDF5 API (a foreign or damaged writer). */
static void h5_edit(const char *path, const char *del, const char *ds_name, int ndim, const hsize_t *dims, hid_t type,
                    const void *data)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0);
    if (del) CHECK(H5Ldelete(f, del, H5P_DEFAULT) >= 0);
    if (ds_name) {
        hid_t sp = H5Screate_simple(ndim, dims, NULL);
        hid_t d = H5Dcreate2(f, ds_name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        CHECK(d >= 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
        H5Dclose(d);
        H5Sclose(sp);
    }
    H5Fclose(f);
}

static void h5_set_int_attr(const char *path, const char *obj, const char *name, int64_t v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT); /* H5Aopen_by_name + H5Awrite fails in HDF5 1.10 */
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    CHECK(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    H5Oclose(o);
    H5Fclose(f);
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    zt_rng rng;
    zt_rng_seed(&rng, 11);
    const char *dir = zt_tmpdir();
    char path[1024], good[1024];

    /* 1. round trip: every bit width, one and three groups, with and without bias, two layers and tensors */
    static const int bitss[] = {2, 3, 4, 8};
    int file_no = 0;
    for (int bi = 0; bi < 4; bi++)
        for (int gi = 0; gi < 2; gi++)
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                const int bits = bitss[bi];
                layer L[2];
                make_layer(&L[0], &rng, "model.layers.3.self_attn.q_proj", bits, 7, 40, gi ? 16 : -1, with_bias);
                make_layer(&L[1], &rng, "model.layers.3.mlp.down_proj", bits, 12, 37, gi ? 13 : -1, !with_bias);
                CHECK(L[0].l.ngroups == (gi ? 3 : 1) && L[1].l.ngroups == (gi ? 3 : 1));
                zf_shard_linear lin[2] = {L[0].l, L[1].l};
                float norm[40], emb[5 * 40];
                zt_fill_normal(&rng, norm, 40, 1.0);
                zt_fill_normal(&rng, emb, 5 * 40, 1.0);
                zf_shard_tensor ten[2] = {{"model.layers.3.input_layernorm.weight", 1, {40, 0}, norm},
                                          {"extra.matrix", 2, {5, 40}, emb}};
                snprintf(path, sizeof path, "%s/block-%04d.h5", dir, file_no);
                const char *prov = "method: zfold\nbits: 3\n";
                CHECK_OK(zf_shard_write(path, "block", file_no, 2, lin, 2, ten, prov));
                zf_shard_data d;
                zf_status s = zf_shard_read(path, &d);
                CHECK_OK(s);
                if (s == ZF_OK) {
                    CHECK(!strcmp(d.kind, "block") && d.block == file_no && d.nlin == 2 && d.ntensors == 2);
                    CHECK(d.config_yaml && !strcmp(d.config_yaml, prov));
                    check_layer(&d, &lin[0]);
                    check_layer(&d, &lin[1]);
                    const zf_shard_tensor_data *t = find_tensor(&d, ten[0].name);
                    CHECK(t && t->ndim == 1 && t->shape[0] == 40 && t->shape[1] == 0 &&
                          !memcmp(t->data, norm, sizeof norm));
                    t = find_tensor(&d, ten[1].name);
                    CHECK(t && t->ndim == 2 && t->shape[0] == 5 && t->shape[1] == 40 && !memcmp(t->data, emb, sizeof emb));
                }
                zf_shard_data_free(&d);
                CHECK(d.lin == NULL && d.nlin == 0);
                if (bits == 3 && gi == 1 && with_bias) snprintf(good, sizeof good, "%s", path);
                free_layer(&L[0]);
                free_layer(&L[1]);
                file_no++;
            }

    /* an unquantized shard: tensors only, no provenance config */
    {
        float emb[9 * 4], fn[4];
        zt_fill_normal(&rng, emb, 9 * 4, 1.0);
        zt_fill_normal(&rng, fn, 4, 1.0);
        zf_shard_tensor ten[2] = {{"model.embed_tokens.weight", 2, {9, 4}, emb}, {"model.norm.weight", 1, {4, 0}, fn}};
        snprintf(path, sizeof path, "%s/unquantized.h5", dir);
        CHECK_OK(zf_shard_write(path, "unquantized", -1, 0, NULL, 2, ten, NULL));
        zf_shard_data d;
        CHECK_OK(zf_shard_read(path, &d));
        CHECK(!strcmp(d.kind, "unquantized") && d.block == -1 && d.nlin == 0 && d.ntensors == 2 && !d.config_yaml);
        const zf_shard_tensor_data *t = find_tensor(&d, "model.embed_tokens.weight");
        CHECK(t && t->ndim == 2 && !memcmp(t->data, emb, sizeof emb));
        zf_shard_data_free(&d);
    }

    /* 2. files that are not shards */
    size_t glen = 0;
    unsigned char *orig = slurp(good, &glen);
    CHECK(orig && glen > 2048);
    char bad[1024];
    snprintf(bad, sizeof bad, "%s/bad.h5", dir);
    expect_input_error("/nonexistent-dir/missing.h5", "missing.h5", "missing file");
    CHECK_OK(zf_write_file_atomic(bad, "", 0));
    expect_input_error(bad, "not an HDF5 file", "empty file");
    const char *text = "this is not an HDF5 file, it is a plain text file with some words in it\n";
    CHECK_OK(zf_write_file_atomic(bad, text, strlen(text)));
    expect_input_error(bad, "not an HDF5 file", "text file");
    expect_input_error(dir, "not a regular file", "a folder");

    /* 3. truncated at several lengths */
    const size_t cuts[] = {1, 7, 8, 96, 512, 1024, glen / 4, glen / 2, glen - 4096, glen - 100, glen - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (cuts[i] == 0 || cuts[i] >= glen) continue;
        CHECK_OK(zf_write_file_atomic(bad, orig, cuts[i]));
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", cuts[i], glen);
        expect_input_error(bad, NULL, what);
    }

    /* 4. random bytes flipped in the middle: never a crash; either a clean error naming the file, or (a flip in
     * raw data the format cannot detect) a successful read — the run's XXH64 checksums catch those. */
    unsigned char *copy = malloc(glen);
    int detected = 0, trials = 300;
    for (int t = 0; t < trials; t++) {
        memcpy(copy, orig, glen);
        int nflip = 1 + (int)(zt_rng_u64(&rng) % 8);
        for (int k = 0; k < nflip; k++) {
            /* half the trials anywhere past the superblock (metadata), half in the middle half */
            size_t lo = t % 2 ? glen / 4 : 64, span = t % 2 ? glen / 2 : glen - 64;
            size_t pos = lo + (size_t)(zt_rng_u64(&rng) % span);
            copy[pos] ^= (unsigned char)(1 + zt_rng_u64(&rng) % 255);
        }
        CHECK_OK(zf_write_file_atomic(bad, copy, glen));
        zf_shard_data d;
        zf_status s = zf_shard_read(bad, &d);
        CHECK_MSG(s == ZF_OK || (s == ZF_ERR_INPUT && strstr(zf_last_error(), bad)), "flip trial %d: %s: %s", t,
                  zf_status_name(s), zf_last_error());
        CHECK_MSG(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0, "flip trial %d: HDF5 handles left open", t);
        if (s != ZF_OK) {
            detected++;
            CHECK(d.nlin == 0 && d.lin == NULL);
        }
        zf_shard_data_free(&d);
    }
    printf("flipped-byte trials: %d of %d rejected by the reader (the rest changed raw data only)\n", detected, trials);
    CHECK(detected > 0);

    /* 5. well-formed HDF5 with the wrong content: each named */
    const char *lay = "model.layers.3.self_attn.q_proj";
    char ds[256];
#define FRESH() CHECK_OK(zf_write_file_atomic(bad, orig, glen))
    FRESH();
    snprintf(ds, sizeof ds, "%s/zeta", lay);
    h5_edit(bad, ds, NULL, 0, NULL, 0, NULL);
    expect_input_error(bad, "'zeta' is missing", "missing zeta");
    FRESH();
    snprintf(ds, sizeof ds, "%s/scales", lay);
    float wrong[4 * 7] = {0};
    h5_edit(bad, ds, ds, 2, (hsize_t[]){4, 7}, H5T_NATIVE_FLOAT, wrong);
    expect_input_error(bad, "scales: shape [4, 7], expected [3, 7]", "misshapen scales");
    FRESH();
    snprintf(ds, sizeof ds, "%s/qweight", lay);
    int32_t qw1[40];
    memset(qw1, 0, sizeof qw1);
    h5_edit(bad, ds, ds, 1, (hsize_t[]){40}, H5T_NATIVE_INT32, qw1);
    expect_input_error(bad, "qweight: rank 1, expected 2", "qweight of rank 1");
    FRESH();
    snprintf(ds, sizeof ds, "%s/zeros", lay);
    int32_t zbad[3 * 7];
    for (int i = 0; i < 21; i++) zbad[i] = 9; /* 3 bits: 0..7 */
    h5_edit(bad, ds, ds, 2, (hsize_t[]){3, 7}, H5T_NATIVE_INT32, zbad);
    expect_input_error(bad, "zeros: element 0 is 9, expected 0 to 7", "zero point out of range");
    FRESH();
    snprintf(ds, sizeof ds, "%s/g_idx", lay);
    int32_t gbad[40] = {0};
    gbad[5] = 3;
    h5_edit(bad, ds, ds, 1, (hsize_t[]){40}, H5T_NATIVE_INT32, gbad);
    expect_input_error(bad, "g_idx: element 5 is 3", "g_idx out of range");
    FRESH();
    snprintf(ds, sizeof ds, "%s/bias", lay);
    float nanb[7] = {0, 0, 0, __builtin_nanf(""), 0, 0, 0};
    h5_edit(bad, ds, ds, 1, (hsize_t[]){7}, H5T_NATIVE_FLOAT, nanb);
    expect_input_error(bad, "bias: element 3 is nan", "non-finite bias");
    FRESH();
    h5_set_int_attr(bad, "/", "format_version", 2);
    expect_input_error(bad, "format_version", "future format version");
    FRESH();
    h5_set_int_attr(bad, lay, "bits", 9);
    expect_input_error(bad, "'bits' is 9, expected 2 to 8", "bits out of range");
    FRESH();
    h5_set_int_attr(bad, lay, "in_features", 50);
    expect_input_error(bad, "qweight: shape [4, 7], expected [5, 7] ([words(in=50, bits=3), out=7])", "in_features not matching qweight");
    FRESH();
    float cube[2 * 2 * 10] = {0};
    h5_edit(bad, "model.layers.3.input_layernorm.weight", "model.layers.3.input_layernorm.weight", 3,
            (hsize_t[]){2, 2, 10}, H5T_NATIVE_FLOAT, cube);
    expect_input_error(bad, "rank 3, expected 1 or 2", "tensor of rank 3");
    /* a file of ours with the wrong format attribute */
    {
        hid_t f = H5Fcreate(bad, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 6);
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(f, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
        CHECK(a >= 0 && H5Awrite(a, t, "other") >= 0);
        H5Aclose(a);
        H5Sclose(sp);
        H5Tclose(t);
        H5Fclose(f);
        expect_input_error(bad, "'format' is 'other', expected 'zfold-shard'", "wrong format");
        f = H5Fcreate(bad, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        H5Fclose(f);
        expect_input_error(bad, "'format' is missing", "HDF5 without attributes");
    }
    /* the original still reads after all this */
    FRESH();
    zf_shard_data d;
    CHECK_OK(zf_shard_read(bad, &d));
    zf_shard_data_free(&d);
    zf_shard_data_free(&d); /* twice is safe */
    free(copy);
    free(orig);
    return zt_finish("test_shard_read");
}
