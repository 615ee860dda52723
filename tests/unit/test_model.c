/* Model configs: the three fixtures (sizes, parameter counts, tensor names against the checkpoints), groups and folds,
 * other llama-family types, and malformed configs refused naming the key. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/model.h"
#include "common/safetensors.h"
#include "common/model_internal.h"
#include "common/safetensors_internal.h"
#include "tests/testutil.h"

/* Every tensor the config implies exists in the checkpoint with the implied shape, and nothing else is there. */
static void check_names(const zf_model_config *c, const char *dir)
{
    zf_safetensors *st = NULL;
    CHECK_OK(zf_st_open(zt_fixture(dir), &st));
    if (!st) return;
    size_t expected = 0;
    char prefix[256], name[300];
#define EXPECT(nm, nd, d0, d1) do { \
        const zf_st_tensor *t_ = zf_st_find(st, nm); expected++; \
        CHECK_MSG(t_ && t_->ndim == (nd) && t_->shape[0] == (d0) && ((nd) == 1 || t_->shape[1] == (d1)), \
                  "%s: %s", dir, nm); } while (0)
    for (int64_t b = 0; b < c->n_layers; b++) {
        for (int l = 0; l < ZF_NLIN; l++) {
            if (!zf_lin_present(c, (zf_lin)l)) continue;
            zf_lin_tensor_prefix(c, b, (zf_lin)l, prefix, sizeof prefix);
            snprintf(name, sizeof name, "%s.weight", prefix);
            EXPECT(name, 2, zf_lin_out(c, (zf_lin)l), zf_lin_in(c, (zf_lin)l));
            if (zf_lin_has_bias(c, (zf_lin)l)) {
                snprintf(name, sizeof name, "%s.bias", prefix);
                EXPECT(name, 1, zf_lin_out(c, (zf_lin)l), 0);
            }
        }
        for (int k = 0; k < 2; k++) {
            zf_norm_tensor_prefix(c, b, k, prefix, sizeof prefix);
            snprintf(name, sizeof name, "%s.weight", prefix);
            EXPECT(name, 1, c->hidden, 0);
            if (c->norm_bias) {
                snprintf(name, sizeof name, "%s.bias", prefix);
                EXPECT(name, 1, c->hidden, 0);
            }
        }
    }
    EXPECT(zf_embed_tensor_name(c), 2, c->vocab, c->hidden);
    if (zf_pos_embed_tensor_name(c)) EXPECT(zf_pos_embed_tensor_name(c), 2, c->max_pos + c->opt_pos_offset, c->hidden);
    snprintf(name, sizeof name, "%s.weight", zf_final_norm_prefix(c));
    EXPECT(name, 1, c->hidden, 0);
    if (c->norm_bias) {
        snprintf(name, sizeof name, "%s.bias", zf_final_norm_prefix(c));
        EXPECT(name, 1, c->hidden, 0);
    }
    if (!c->tied_embeddings) EXPECT(zf_head_tensor_name(c), 2, c->vocab, c->hidden);
    else CHECK(strcmp(zf_head_tensor_name(c), zf_embed_tensor_name(c)) == 0);
#undef EXPECT
    CHECK_MSG(zf_st_count(st) == expected, "%s: %zu tensors in the file, the config implies %zu", dir,
              zf_st_count(st), expected);
    int64_t total = 0;
    for (size_t i = 0; i < zf_st_count(st); i++) total += zf_st_at(st, i)->numel;
    CHECK(total == zf_model_param_count(c));
    zf_st_close(st);
}

static void test_fixtures(void)
{
    zf_model_config c;
    CHECK_OK(zf_model_config_read(zt_fixture("stories260k"), &c));
    CHECK(c.family == ZF_FAMILY_LLAMA && strcmp(c.model_type, "llama") == 0);
    CHECK(c.hidden == 64 && c.n_layers == 5 && c.n_heads == 8 && c.n_kv_heads == 4 && c.head_dim == 8);
    CHECK(c.intermediate == 172 && c.vocab == 512 && c.max_pos == 512);
    CHECK(c.norm_eps == 1e-5 && c.rope_theta == 10000.0 && c.tied_embeddings);
    CHECK(!c.attn_bias && !c.o_bias && !c.mlp_bias && !c.norm_bias && c.opt_pos_offset == 0);
    CHECK(zf_model_param_count(&c) == 260032);
    CHECK(strcmp(zf_head_tensor_name(&c), "model.embed_tokens.weight") == 0);
    CHECK(zf_pos_embed_tensor_name(&c) == NULL);
    char buf[256];
    zf_lin_tensor_prefix(&c, 3, ZF_LIN_Q, buf, sizeof buf);
    CHECK(strcmp(buf, "model.layers.3.self_attn.q_proj") == 0);
    zf_lin_tensor_prefix(&c, 0, ZF_LIN_GATE, buf, sizeof buf);
    CHECK(strcmp(buf, "model.layers.0.mlp.gate_proj") == 0);
    zf_norm_tensor_prefix(&c, 3, 0, buf, sizeof buf);
    CHECK(strcmp(buf, "model.layers.3.input_layernorm") == 0);
    zf_norm_tensor_prefix(&c, 4, 1, buf, sizeof buf);
    CHECK(strcmp(buf, "model.layers.4.post_attention_layernorm") == 0);
    CHECK(strcmp(zf_final_norm_prefix(&c), "model.norm") == 0);
    CHECK(zf_lin_out(&c, ZF_LIN_K) == 32 && zf_lin_in(&c, ZF_LIN_O) == 64 && zf_lin_in(&c, ZF_LIN_DOWN) == 172);
    zf_lin m[3];
    CHECK(zf_group_members(&c, ZF_GROUP_QKV, m) == 3 && m[0] == ZF_LIN_Q && m[1] == ZF_LIN_K && m[2] == ZF_LIN_V);
    CHECK(zf_group_members(&c, ZF_GROUP_MLP_IN, m) == 2 && m[0] == ZF_LIN_GATE && m[1] == ZF_LIN_UP);
    CHECK(zf_group_members(&c, ZF_GROUP_O, m) == 1 && m[0] == ZF_LIN_O);
    CHECK(zf_group_members(&c, ZF_GROUP_MLP_OUT, m) == 1 && m[0] == ZF_LIN_DOWN);
    CHECK(zf_group_in(&c, ZF_GROUP_MLP_OUT) == 172 && zf_group_in(&c, ZF_GROUP_O) == 64);
    CHECK(zf_group_fold(&c, ZF_GROUP_QKV) == ZF_FOLD_ATTN_NORM && zf_group_fold(&c, ZF_GROUP_O) == ZF_FOLD_V_ROWS);
    CHECK(zf_group_fold(&c, ZF_GROUP_MLP_IN) == ZF_FOLD_MLP_NORM);
    CHECK(zf_group_fold(&c, ZF_GROUP_MLP_OUT) == ZF_FOLD_UP_ROWS);
    for (int l = 0; l < ZF_NLIN; l++) {
        CHECK(zf_lin_present(&c, (zf_lin)l));
        /* every member of a linear's group lists it */
        int n = zf_group_members(&c, zf_lin_group((zf_lin)l), m), found = 0;
        for (int k = 0; k < n; k++) found |= m[k] == (zf_lin)l;
        CHECK(found);
        CHECK(zf_lin_in(&c, (zf_lin)l) == zf_group_in(&c, zf_lin_group((zf_lin)l)));
    }
    CHECK(strcmp(zf_group_name(ZF_GROUP_MLP_IN), "mlp_in") == 0);
    check_names(&c, "stories260k");

    CHECK_OK(zf_model_config_read(zt_fixture("llama-mini"), &c));
    CHECK(c.hidden == 256 && c.n_layers == 4 && c.n_heads == 8 && c.n_kv_heads == 4 && c.head_dim == 32);
    CHECK(c.intermediate == 688 && !c.tied_embeddings);
    CHECK(zf_model_param_count(&c) == 3164416);
    CHECK(strcmp(zf_head_tensor_name(&c), "lm_head.weight") == 0);
    check_names(&c, "llama-mini");

    CHECK_OK(zf_model_config_read(zt_fixture("opt-mini"), &c));
    CHECK(c.family == ZF_FAMILY_OPT && strcmp(c.model_type, "opt") == 0);
    CHECK(c.hidden == 256 && c.n_layers == 4 && c.n_heads == 4 && c.n_kv_heads == 4 && c.head_dim == 64);
    CHECK(c.intermediate == 1024 && c.vocab == 512 && c.max_pos == 512 && c.opt_pos_offset == 2);
    CHECK(c.tied_embeddings && c.attn_bias && c.o_bias && c.mlp_bias && c.norm_bias && c.norm_eps == 1e-5);
    CHECK(zf_model_param_count(&c) == 3422208);
    CHECK(!zf_lin_present(&c, ZF_LIN_GATE) && !zf_lin_has_bias(&c, ZF_LIN_GATE));
    zf_lin_tensor_prefix(&c, 2, ZF_LIN_O, buf, sizeof buf);
    CHECK(strcmp(buf, "model.decoder.layers.2.self_attn.out_proj") == 0);
    zf_lin_tensor_prefix(&c, 1, ZF_LIN_UP, buf, sizeof buf);
    CHECK(strcmp(buf, "model.decoder.layers.1.fc1") == 0);
    zf_lin_tensor_prefix(&c, 1, ZF_LIN_DOWN, buf, sizeof buf);
    CHECK(strcmp(buf, "model.decoder.layers.1.fc2") == 0);
    zf_norm_tensor_prefix(&c, 0, 0, buf, sizeof buf);
    CHECK(strcmp(buf, "model.decoder.layers.0.self_attn_layer_norm") == 0);
    zf_norm_tensor_prefix(&c, 0, 1, buf, sizeof buf);
    CHECK(strcmp(buf, "model.decoder.layers.0.final_layer_norm") == 0);
    CHECK(strcmp(zf_pos_embed_tensor_name(&c), "model.decoder.embed_positions.weight") == 0);
    CHECK(strcmp(zf_head_tensor_name(&c), "model.decoder.embed_tokens.weight") == 0);
    CHECK(zf_group_members(&c, ZF_GROUP_MLP_IN, m) == 1 && m[0] == ZF_LIN_UP);
    CHECK(zf_group_fold(&c, ZF_GROUP_MLP_OUT) == ZF_FOLD_UP_ROWS);
    CHECK(strcmp(zf_lin_short_name(&c, ZF_LIN_UP), "fc1") == 0);
    check_names(&c, "opt-mini");
}

/* Writes <tmp>/<name>/config.json and returns the folder. */
static const char *write_config(const char *name, const char *json)
{
    static char dir[4][1024];
    static int slot;
    char *d = dir[slot++ % 4];
    snprintf(d, 1024, "%s/%s", zt_tmpdir(), name);
    mkdir(d, 0755);
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", d);
    FILE *f = fopen(path, "w");
    fputs(json, f);
    fclose(f);
    return d;
}

#define LLAMA_BASE "\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 8, " \
                   "\"intermediate_size\": 96, \"vocab_size\": 100"
#define OPT_BASE "\"model_type\": \"opt\", \"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, " \
                 "\"ffn_dim\": 128, \"vocab_size\": 100, \"max_position_embeddings\": 32"

static void expect_bad(const char *name, const char *json, const char *key, const char *n2)
{
    const char *d = write_config(name, json);
    zf_model_config c;
    zf_clear_error();
    zf_status s = zf_model_config_read(d, &c);
    const char *m = zf_last_error();
    if (getenv("ZT_VERBOSE")) printf("  refused: %s\n", m);
    CHECK_MSG(s == ZF_ERR_INPUT, "%s: status %s: %s", name, zf_status_name(s), m);
    CHECK_MSG(strstr(m, name) && strstr(m, "config.json"), "%s: message does not name the file: %s", name, m);
    if (key) CHECK_MSG(strstr(m, key) != NULL, "%s: message lacks '%s': %s", name, key, m);
    if (n2) CHECK_MSG(strstr(m, n2) != NULL, "%s: message lacks '%s': %s", name, n2, m);
}

static void test_other_types(void)
{
    zf_model_config c;
    /* Qwen2: q/k/v biases without the key, no o bias; untied by default. */
    const char *d = write_config("qwen2", "{\"model_type\": \"qwen2\", " LLAMA_BASE ", \"num_key_value_heads\": 2}");
    CHECK_OK(zf_model_config_read(d, &c));
    CHECK(c.attn_bias && !c.o_bias && !c.mlp_bias && !c.tied_embeddings && c.n_kv_heads == 2 && c.head_dim == 8);
    CHECK(zf_lin_has_bias(&c, ZF_LIN_Q) && zf_lin_has_bias(&c, ZF_LIN_V) && !zf_lin_has_bias(&c, ZF_LIN_O));
    /* embed 6400 + head 6400 + final 64 + 2 × (q 4096+64, k 1024+16, v 1024+16, o 4096, 3 × 6144, norms 128) */
    CHECK(zf_model_param_count(&c) == 6400 * 2 + 64 + 2 * (4160 + 1040 + 1040 + 4096 + 3 * 6144 + 128));
    /* Llama defaults: kv heads = heads, rope_theta 10000, untied, no bias, head_dim = hidden / heads. */
    d = write_config("llama_defaults", "{\"model_type\": \"llama\", " LLAMA_BASE ", \"head_dim\": null}");
    CHECK_OK(zf_model_config_read(d, &c));
    CHECK(c.n_kv_heads == 8 && c.head_dim == 8 && c.rope_theta == 10000.0 && !c.tied_embeddings && !c.attn_bias);
    /* Llama attention_bias covers o_proj; mlp_bias; explicit head_dim not hidden/heads. */
    d = write_config("llama_bias", "{\"model_type\": \"llama\", " LLAMA_BASE ", \"attention_bias\": true, "
                     "\"mlp_bias\": true, \"head_dim\": 16, \"rope_theta\": 500000.0, \"rope_scaling\": null}");
    CHECK_OK(zf_model_config_read(d, &c));
    CHECK(c.attn_bias && c.o_bias && c.mlp_bias && c.head_dim == 16 && c.rope_theta == 500000.0);
    CHECK(zf_lin_out(&c, ZF_LIN_Q) == 128 && zf_lin_in(&c, ZF_LIN_O) == 128 && zf_group_in(&c, ZF_GROUP_O) == 128);
    d = write_config("mistral", "{\"model_type\": \"mistral\", " LLAMA_BASE ", \"num_key_value_heads\": 4, "
                     "\"sliding_window\": null, \"hidden_act\": \"silu\"}");
    CHECK_OK(zf_model_config_read(d, &c));
    CHECK(c.family == ZF_FAMILY_LLAMA && c.n_kv_heads == 4 && !c.attn_bias);
    /* OPT defaults: biases on, tied, no bias when enable_bias is false (LayerNorm keeps β). */
    d = write_config("opt_nobias", "{" OPT_BASE ", \"enable_bias\": false, \"tie_word_embeddings\": false}");
    CHECK_OK(zf_model_config_read(d, &c));
    CHECK(!c.attn_bias && !c.o_bias && !c.mlp_bias && c.norm_bias && !c.tied_embeddings);
    CHECK(zf_model_param_count(&c) == 6400 * 2 + 34 * 64 + 128 + 2 * (4 * 4096 + 2 * 8192 + 256));
}

static void test_malformed(void)
{
    expect_bad("missing_key", "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2, "
               "\"num_attention_heads\": 8, \"vocab_size\": 100}", "'intermediate_size'", "missing");
    expect_bad("wrong_type", "{\"model_type\": \"llama\", " LLAMA_BASE ", \"num_key_value_heads\": \"4\"}",
               "'num_key_value_heads'", "a string");
    expect_bad("wrong_type2", "{\"model_type\": \"llama\", " LLAMA_BASE ", \"tie_word_embeddings\": 1}",
               "'tie_word_embeddings'", "a number");
    expect_bad("fraction", "{\"model_type\": \"llama\", " LLAMA_BASE ", \"num_key_value_heads\": 2.5}",
               "'num_key_value_heads'", "2.5");
    expect_bad("nonpositive", "{\"model_type\": \"llama\", \"hidden_size\": 0, \"num_hidden_layers\": 2, "
               "\"num_attention_heads\": 8, \"intermediate_size\": 96, \"vocab_size\": 100}", "'hidden_size'", "0");
    expect_bad("neg_eps", "{\"model_type\": \"llama\", " LLAMA_BASE ", \"rms_norm_eps\": -1}", "'rms_norm_eps'",
               "positive");
    expect_bad("not_divisible", "{\"model_type\": \"llama\", \"hidden_size\": 60, \"num_hidden_layers\": 2, "
               "\"num_attention_heads\": 8, \"intermediate_size\": 96, \"vocab_size\": 100}", "'hidden_size'",
               "num_attention_heads");
    expect_bad("kv_not_divisible", "{\"model_type\": \"llama\", " LLAMA_BASE ", \"num_key_value_heads\": 3}",
               "'num_key_value_heads'", "8");
    expect_bad("rope_scaling", "{\"model_type\": \"llama\", " LLAMA_BASE ", \"rope_scaling\": {\"type\": \"linear\", "
               "\"factor\": 2.0}}", "'rope_scaling'", "unsupported");
    expect_bad("gelu", "{\"model_type\": \"llama\", " LLAMA_BASE ", \"hidden_act\": \"gelu\"}", "'hidden_act'", "gelu");
    expect_bad("unknown_type", "{\"model_type\": \"gpt2\", " LLAMA_BASE "}", "'model_type'", "gpt2");
    expect_bad("no_type", "{" LLAMA_BASE "}", "'model_type'", "missing");
    expect_bad("not_json", "{\"model_type\": \"llama\", ", "JSON", NULL);
    expect_bad("not_object", "[1, 2]", "object", NULL);
    expect_bad("opt_post_ln", "{" OPT_BASE ", \"do_layer_norm_before\": false}", "'do_layer_norm_before'",
               "not supported");
    expect_bad("opt_proj", "{" OPT_BASE ", \"word_embed_proj_dim\": 32}", "'word_embed_proj_dim'", "32");
    expect_bad("opt_act", "{" OPT_BASE ", \"activation_function\": \"gelu\"}", "'activation_function'", "relu");
    expect_bad("opt_affine", "{" OPT_BASE ", \"layer_norm_elementwise_affine\": false}",
               "'layer_norm_elementwise_affine'", NULL);
    expect_bad("opt_missing_ffn", "{\"model_type\": \"opt\", \"hidden_size\": 64, \"num_hidden_layers\": 2, "
               "\"num_attention_heads\": 4, \"vocab_size\": 100}", "'ffn_dim'", "missing");
    expect_bad("opt_heads", "{\"model_type\": \"opt\", \"hidden_size\": 64, \"num_hidden_layers\": 2, "
               "\"num_attention_heads\": 5, \"ffn_dim\": 128, \"vocab_size\": 100}", "'hidden_size'", "5");
    /* No config.json at all. */
    char d[1100];
    snprintf(d, sizeof d, "%s/no_config", zt_tmpdir());
    mkdir(d, 0755);
    zf_model_config c;
    zf_status s = zf_model_config_read(d, &c);
    CHECK(s == ZF_ERR_INPUT && strstr(zf_last_error(), "no_config/config.json"));
}

int main(void)
{
    test_fixtures();
    test_other_types();
    test_malformed();
    return zt_finish("test_model");
}
