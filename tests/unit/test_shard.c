/* HDF5 shards: written atomically, readable back with the HDF5 API, codes unpack to what was written. */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/gptq_pack.h"
#include "common/shard.h"
#include "tests/testutil.h"

int main(void)
{
    enum { OUT = 6, IN = 40, BITS = 3 };
    uint8_t q[OUT * IN];
    float scale[OUT], zero[OUT], zeta[IN], bias[OUT], norm[IN];
    int32_t g_idx[IN];
    zt_rng rng;
    zt_rng_seed(&rng, 3);
    for (int i = 0; i < OUT * IN; i++) q[i] = (uint8_t)(zt_rng_u64(&rng) % 8);
    for (int i = 0; i < OUT; i++) {
        scale[i] = 0.01f * (float)(i + 1);
        zero[i] = (float)(i % 8);
        bias[i] = (float)i - 2.5f;
    }
    for (int j = 0; j < IN; j++) {
        zeta[j] = 1.0f + 0.01f * (float)j;
        g_idx[j] = 0;
        norm[j] = (float)j;
    }
    zf_shard_linear lin = {.name = "model.layers.0.self_attn.q_proj", .bits = BITS, .out = OUT, .in = IN,
                           .ngroups = 1, .group_size = -1, .q = q, .scale = scale, .zero = zero, .g_idx = g_idx,
                           .zeta = zeta, .bias = bias, .dl_before = 2.0, .dl_after = 1.0, .als_iters = 7,
                           .damp_used = 0.01, .damp_retries = 0};
    zf_shard_tensor t = {"model.layers.0.input_layernorm.weight", 1, {IN, 0}, norm};
    char path[1024];
    snprintf(path, sizeof path, "%s/block-0000.h5", zt_tmpdir());
    CHECK_OK(zf_shard_write(path, "block", 0, 1, &lin, 1, &t, "bits: 3\n"));

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    hid_t d = H5Dopen2(f, "model.layers.0.self_attn.q_proj/qweight", H5P_DEFAULT);
    CHECK(d >= 0);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    H5Sget_simple_extent_dims(sp, dims, NULL);
    CHECK(dims[0] == (hsize_t)zf_gptq_words(IN, BITS) && dims[1] == OUT);
    int32_t qw[4 * OUT];
    CHECK(H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, qw) >= 0);
    uint8_t back[OUT * IN];
    zf_gptq_unpack_qweight(qw, OUT, IN, BITS, back);
    CHECK(memcmp(back, q, sizeof q) == 0);
    H5Sclose(sp);
    H5Dclose(d);
    float nb[IN];
    d = H5Dopen2(f, "model.layers.0.input_layernorm.weight", H5P_DEFAULT);
    CHECK(d >= 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, nb) >= 0);
    CHECK(memcmp(nb, norm, sizeof norm) == 0);
    H5Dclose(d);
    double dl = 0;
    hid_t a = H5Aopen_by_name(f, "model.layers.0.self_attn.q_proj", "delta_loss_after", H5P_DEFAULT, H5P_DEFAULT);
    CHECK(a >= 0 && H5Aread(a, H5T_NATIVE_DOUBLE, &dl) >= 0 && dl == 1.0);
    H5Aclose(a);
    CHECK(H5Lexists(f, "provenance", H5P_DEFAULT) > 0);
    H5Fclose(f);

    /* no temporary file is left behind; a write into a missing folder fails cleanly, naming the path */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    CHECK(access(tmp, F_OK) != 0);
    zf_status s = zf_shard_write("/nonexistent-dir/x.h5", "block", 0, 1, &lin, 0, NULL, NULL);
    CHECK(s == ZF_ERR_IO && strstr(zf_last_error(), "/nonexistent-dir/x.h5"));
    return zt_finish("test_shard");
}
