/* GPTQ export of one layer: decoding (bit-level double reference) equals the run's weights, padding decodes to zeros,
 * zero point 0 under format gptq shifted exactly or refused, bad sizes refused; quantization_config parsing and the
 * export's option names. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/export_layer.h"
#include "common/model_gptq.h"
#include "coordinator/export.h"
#include "tests/testutil.h"

/* value idx (bits wide) of the little-endian bit stream of column col in words [nwords, stride] */
static int ref_value(const int32_t *words, int64_t stride, int64_t col, int64_t idx, int bits)
{
    int v = 0;
    for (int b = 0; b < bits; b++) {
        int64_t bit = idx * bits + b;
        v |= (int)(((uint32_t)words[(bit / 32) * stride + col] >> (bit % 32)) & 1u) << b;
    }
    return v;
}

typedef struct {
    zf_shard_linear_data l;
    uint8_t q[20 * 40];
    float scale[20 * 3], zero[20 * 3], bias[20];
    int32_t g_idx[40];
} layer;

static void make_layer(zt_rng *r, int bits, int64_t group, layer *x)
{
    memset(x, 0, sizeof *x);
    zf_shard_linear_data *l = &x->l;
    l->bits = bits;
    l->out = 20;
    l->in = 40;
    l->group_size = group;
    l->ngroups = group > 0 ? (40 + group - 1) / group : 1;
    int maxq = (1 << bits) - 1;
    for (int64_t i = 0; i < l->out * l->ngroups; i++) {
        x->scale[i] = (float)(0.01 + 0.09 * zt_rng_uniform(r));
        x->zero[i] = (float)(1 + zt_rng_u64(r) % (uint64_t)maxq);
    }
    for (int64_t i = 0; i < l->out * l->in; i++) x->q[i] = (uint8_t)(zt_rng_u64(r) % (uint64_t)(maxq + 1));
    for (int64_t k = 0; k < l->in; k++) x->g_idx[k] = (int32_t)(group > 0 ? k / group : 0);
    for (int64_t n = 0; n < l->out; n++) x->bias[n] = (float)zt_rng_normal(r);
    l->q = x->q;
    l->scale = x->scale;
    l->zero = x->zero;
    l->g_idx = x->g_idx;
    l->bias = x->bias;
}

/* Decodes g with the bit-level reference in double and compares with l's weights (and zeros where padded). */
static int check_decode(const zf_shard_linear_data *l, const zf_gptq_layer *g, zf_gptq_format f)
{
    int bad = 0;
    int64_t zwords = (g->out * g->bits + 31) / 32;
    float *w = malloc(sizeof(float) * (size_t)(g->out * g->in));
    CHECK_OK(zf_gptq_dequant(g->qweight, g->qzeros, g->scales, g->g_idx, g->bits, g->out, g->in, g->ngroups, f, w));
    for (int64_t n = 0; n < g->out; n++)
        for (int64_t k = 0; k < g->in; k++) {
            int64_t j = g->g_idx[k];
            int q = ref_value(g->qweight, g->out, n, k, g->bits);
            int z = ref_value(g->qzeros + j * zwords, 1, 0, n, g->bits) + (f == ZF_GPTQ_V1 ? 1 : 0);
            double dec = (double)g->scales[j * g->out + n] * (q - z);
            double want = 0;
            if (n < l->out && k < l->in) {
                int64_t lj = l->g_idx[k];
                want = (double)l->scale[n * l->ngroups + lj] * ((double)l->q[n * l->in + k] - l->zero[n * l->ngroups + lj]);
            }
            bad += dec != want;                                        /* exact: the same integers and scales */
            bad += fabs((double)w[n * g->in + k] - want) > 1e-7 * fabs(want); /* fp32 product of exact factors */
        }
    free(w);
    return bad;
}

static void test_round_trips(void)
{
    zt_rng r;
    zt_rng_seed(&r, 11);
    static const int widths[] = {2, 3, 4, 8};
    for (int wi = 0; wi < 4; wi++)
        for (int gi = 0; gi < 2; gi++)
            for (int f = ZF_GPTQ_V1; f <= ZF_GPTQ_V2; f++) {
                int bits = widths[wi];
                int64_t group = gi ? 16 : -1;
                layer x;
                make_layer(&r, bits, group, &x);
                zf_gptq_layer g;
                CHECK_OK(zf_gptq_layer_build(&x.l, "layer", 32, 64, group, (zf_gptq_format)f, &g));
                CHECK(g.ngroups == (group > 0 ? 4 : 1));
                CHECK(g.zeros_shifted == 0);
                CHECK_MSG(check_decode(&x.l, &g, (zf_gptq_format)f) == 0, "bits %d group %lld format %d", bits,
                          (long long)group, f);
                for (int64_t k = 40; k < 64; k++) CHECK(g.g_idx[k] == (group > 0 ? k / group : 0));
                for (int64_t n = 20; n < 32; n++) CHECK(g.bias[n] == 0.0f);
                CHECK(g.bias[7] == x.bias[7]);
                zf_gptq_layer_free(&g);
            }
}

static void test_zero_point_zero(void)
{
    zt_rng r;
    zt_rng_seed(&r, 5);
    layer x;
    make_layer(&r, 3, 16, &x);
    /* row 3, group 0: zero 0, codes below the top one: format gptq stores it shifted by one code */
    x.zero[3 * 3 + 0] = 0;
    for (int k = 0; k < 16; k++) x.q[3 * 40 + k] = (uint8_t)(k % 7);
    zf_gptq_layer g;
    CHECK_OK(zf_gptq_layer_build(&x.l, "layer", 32, 64, 16, ZF_GPTQ_V1, &g));
    CHECK(g.zeros_shifted == 1);
    CHECK(check_decode(&x.l, &g, ZF_GPTQ_V1) == 0);
    zf_gptq_layer_free(&g);
    /* the same grid using code 7: format gptq cannot hold it; gptq_v2 can */
    x.q[3 * 40 + 5] = 7;
    CHECK(zf_gptq_layer_build(&x.l, "model.layers.0.mlp.up_proj", 32, 64, 16, ZF_GPTQ_V1, &g) == ZF_ERR_INPUT);
    CHECK(strstr(zf_last_error(), "model.layers.0.mlp.up_proj") && strstr(zf_last_error(), "row 3, group 0") &&
          strstr(zf_last_error(), "gptq_v2"));
    CHECK(g.qweight == NULL);
    CHECK_OK(zf_gptq_layer_build(&x.l, "layer", 32, 64, 16, ZF_GPTQ_V2, &g));
    CHECK(g.zeros_shifted == 0);
    CHECK(check_decode(&x.l, &g, ZF_GPTQ_V2) == 0);
    zf_gptq_layer_free(&g);
}

static void test_refusals(void)
{
    zt_rng r;
    zt_rng_seed(&r, 3);
    layer x;
    make_layer(&r, 3, -1, &x);
    zf_gptq_layer g;
    CHECK(zf_gptq_layer_build(&x.l, "L", 32, 48, -1, ZF_GPTQ_V1, &g) == ZF_ERR_INPUT); /* in not a multiple of 32 */
    CHECK(strstr(zf_last_error(), "L: 20 x 40 padded to 32 x 48") != NULL);
    CHECK(zf_gptq_layer_build(&x.l, "L", 20, 64, -1, ZF_GPTQ_V1, &g) == ZF_ERR_INPUT); /* 20·3 bits */
    CHECK(zf_gptq_layer_build(&x.l, "L", 16, 64, -1, ZF_GPTQ_V1, &g) == ZF_ERR_INPUT); /* fewer rows than the layer */
    x.zero[4] = 2.5f;
    CHECK(zf_gptq_layer_build(&x.l, "L", 32, 64, -1, ZF_GPTQ_V1, &g) == ZF_ERR_INPUT);
    CHECK(strstr(zf_last_error(), "zero point 2.5 at row 4") != NULL);
    x.zero[4] = 2;
    x.l.bits = 5;
    CHECK(zf_gptq_layer_build(&x.l, "L", 32, 64, -1, ZF_GPTQ_V1, &g) == ZF_ERR_INPUT);
    CHECK(strstr(zf_last_error(), "2, 3, 4 or 8") != NULL);
}

static zf_status parse(const char *json, zf_gptq_config *c)
{
    cJSON *j = cJSON_Parse(json);
    zf_status s = zf_gptq_config_parse("config.json", j, c);
    cJSON_Delete(j);
    return s;
}

static void test_config(void)
{
    zf_gptq_config c;
    CHECK_OK(parse("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 128, \"sym\": true, \"desc_act\": true}", &c));
    CHECK(c.bits == 4 && c.group_size == 128 && c.sym && c.desc_act && c.format == ZF_GPTQ_V1);
    CHECK_OK(parse("{\"quant_method\": \"gptq\", \"bits\": 3, \"group_size\": -1, \"checkpoint_format\": \"gptq_v2\"}", &c));
    CHECK(c.bits == 3 && c.group_size == -1 && !c.sym && c.format == ZF_GPTQ_V2);
    CHECK(parse("{\"quant_method\": \"awq\", \"bits\": 4}", &c) == ZF_ERR_INPUT);
    CHECK(strstr(zf_last_error(), "quantization_config.quant_method") && strstr(zf_last_error(), "awq"));
    CHECK(parse("{\"quant_method\": \"gptq\", \"bits\": 5}", &c) == ZF_ERR_INPUT);
    CHECK(strstr(zf_last_error(), "quantization_config.bits") != NULL);
    CHECK(parse("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 0}", &c) == ZF_ERR_INPUT);
    CHECK(parse("{\"quant_method\": \"gptq\", \"bits\": 4, \"checkpoint_format\": \"marlin\"}", &c) == ZF_ERR_INPUT);
    CHECK(strstr(zf_last_error(), "checkpoint_format") != NULL);
    CHECK(parse("[1]", &c) == ZF_ERR_INPUT);
}

static void test_option_names(void)
{
    int64_t b = 0;
    CHECK(zf_export_size_parse("5GB", &b) && b == 5000000000LL);
    CHECK(zf_export_size_parse("100KB", &b) && b == 100000);
    CHECK(zf_export_size_parse("2GiB", &b) && b == 2147483648LL);
    CHECK(zf_export_size_parse("4096", &b) && b == 4096);
    CHECK(!zf_export_size_parse("5 GB", &b) && !zf_export_size_parse("GB", &b) && !zf_export_size_parse("-1MB", &b) &&
          !zf_export_size_parse("0", &b) && !zf_export_size_parse("5XB", &b));
    zf_gptq_format f;
    CHECK(zf_export_format_parse("gptq_v2", &f) && f == ZF_GPTQ_V2 && !strcmp(zf_export_format_name(f), "gptq_v2"));
    CHECK(zf_export_format_parse("gptq", &f) && f == ZF_GPTQ_V1 && !zf_export_format_parse("marlin", &f));
    zf_dtype t;
    CHECK(zf_export_dtype_parse("bfloat16", &t) && t == ZF_DT_BF16 && !strcmp(zf_export_dtype_name(t), "bfloat16"));
    CHECK(zf_export_dtype_parse("float32", &t) && t == ZF_DT_F32 && !zf_export_dtype_parse("fp16", &t));
}

int main(void)
{
    test_option_names();
    test_round_trips();
    test_zero_point_zero();
    test_refusals();
    test_config();
    return zt_finish("test_export_layer");
}
