/* Model description from config.json (llama/mistral/qwen2 and pre-LN OPT): sizes, tensor names, groups and folds. */
#include "common/model.h"
#include "common/model_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "common/fsutil.h"
#include "common/json_kind.h"
#include "common/model_gptq.h"

/* config.json files are a few kB; refuse anything absurd before reading it. */
#define CONFIG_MAX_BYTES (16 * 1024 * 1024)

/* Optional keys set to null count as absent (transformers writes e.g. "head_dim": null). */
static const cJSON *get_key(const cJSON *root, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* A positive integer; def < 0 means the key is required. */
static zf_status get_pos_int(const char *path, const cJSON *root, const char *key, int64_t def, int64_t *out)
{
    const cJSON *v = get_key(root, key);
    if (!v) {
        if (def < 0) return zf_fail(ZF_ERR_INPUT, "%s: key '%s' is missing (expected a positive integer)", path, key);
        *out = def;
        return ZF_OK;
    }
    if (!cJSON_IsNumber(v))
        return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a positive integer, found %s", path, key, zf_json_kind(v));
    double d = v->valuedouble;
    if (d != floor(d) || fabs(d) > 9007199254740992.0)
        return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a positive integer, found %g", path, key, d);
    if (d <= 0) return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a positive integer, found %.0f", path, key, d);
    *out = (int64_t)d;
    return ZF_OK;
}

static zf_status get_pos_double(const char *path, const cJSON *root, const char *key, double def, double *out)
{
    const cJSON *v = get_key(root, key);
    if (!v) {
        *out = def;
        return ZF_OK;
    }
    if (!cJSON_IsNumber(v))
        return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a positive number, found %s", path, key, zf_json_kind(v));
    if (!(v->valuedouble > 0) || !isfinite(v->valuedouble))
        return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected a positive number, found %g", path, key, v->valuedouble);
    *out = v->valuedouble;
    return ZF_OK;
}

static zf_status get_bool(const char *path, const cJSON *root, const char *key, bool def, bool *out)
{
    const cJSON *v = get_key(root, key);
    if (!v) {
        *out = def;
        return ZF_OK;
    }
    if (!cJSON_IsBool(v))
        return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected true or false, found %s", path, key, zf_json_kind(v));
    *out = cJSON_IsTrue(v);
    return ZF_OK;
}

/* A string key that must equal `want` when present. */
static zf_status require_string(const char *path, const cJSON *root, const char *key, const char *want,
                                const char *why)
{
    const cJSON *v = get_key(root, key);
    if (!v) return ZF_OK;
    if (!cJSON_IsString(v))
        return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected the string \"%s\", found %s", path, key, want, zf_json_kind(v));
    if (strcmp(v->valuestring, want) != 0)
        return zf_fail(ZF_ERR_INPUT, "%s: key '%s': expected \"%s\", found \"%.60s\" (%s)", path, key, want,
                       v->valuestring, why);
    return ZF_OK;
}

static zf_status parse_llama(const char *path, const cJSON *root, zf_model_config *c)
{
    bool qwen2 = strcmp(c->model_type, "qwen2") == 0, mistral = strcmp(c->model_type, "mistral") == 0;
    c->family = ZF_FAMILY_LLAMA;
    ZF_TRY(get_pos_int(path, root, "hidden_size", -1, &c->hidden));
    ZF_TRY(get_pos_int(path, root, "num_hidden_layers", -1, &c->n_layers));
    ZF_TRY(get_pos_int(path, root, "num_attention_heads", -1, &c->n_heads));
    ZF_TRY(get_pos_int(path, root, "num_key_value_heads", c->n_heads, &c->n_kv_heads));
    ZF_TRY(get_pos_int(path, root, "intermediate_size", -1, &c->intermediate));
    ZF_TRY(get_pos_int(path, root, "vocab_size", -1, &c->vocab));
    /* transformers' defaults per config class. */
    ZF_TRY(get_pos_int(path, root, "max_position_embeddings", qwen2 ? 32768 : mistral ? 131072 : 2048, &c->max_pos));
    ZF_TRY(get_pos_double(path, root, "rms_norm_eps", 1e-6, &c->norm_eps));
    ZF_TRY(get_pos_double(path, root, "rope_theta", 10000.0, &c->rope_theta));
    ZF_TRY(get_bool(path, root, "tie_word_embeddings", false, &c->tied_embeddings));
    if (!get_key(root, "head_dim") && c->hidden % c->n_heads != 0)
        return zf_fail(ZF_ERR_INPUT, "%s: key 'hidden_size' = %lld: expected a multiple of num_attention_heads = %lld",
                       path, (long long)c->hidden, (long long)c->n_heads);
    ZF_TRY(get_pos_int(path, root, "head_dim", c->hidden / c->n_heads, &c->head_dim));
    bool ab;
    ZF_TRY(get_bool(path, root, "attention_bias", qwen2, &ab));
    c->attn_bias = ab;
    c->o_bias = qwen2 ? false : ab; /* Qwen2: q/k/v biases only; llama's attention_bias covers o_proj too */
    ZF_TRY(get_bool(path, root, "mlp_bias", false, &c->mlp_bias));
    c->norm_bias = false;
    c->opt_pos_offset = 0;
    ZF_TRY(require_string(path, root, "hidden_act", "silu", "only SwiGLU with silu is supported"));
    const cJSON *rs = get_key(root, "rope_scaling");
    if (rs)
        return zf_fail(ZF_ERR_INPUT, "%s: key 'rope_scaling': expected null or absent, found %s (RoPE scaling is "
                       "unsupported)", path, zf_json_kind(rs));
    return ZF_OK;
}

static zf_status parse_opt(const char *path, const cJSON *root, zf_model_config *c)
{
    c->family = ZF_FAMILY_OPT;
    ZF_TRY(get_pos_int(path, root, "hidden_size", -1, &c->hidden));
    ZF_TRY(get_pos_int(path, root, "num_hidden_layers", -1, &c->n_layers));
    ZF_TRY(get_pos_int(path, root, "num_attention_heads", -1, &c->n_heads));
    ZF_TRY(get_pos_int(path, root, "ffn_dim", -1, &c->intermediate));
    ZF_TRY(get_pos_int(path, root, "vocab_size", -1, &c->vocab));
    ZF_TRY(get_pos_int(path, root, "max_position_embeddings", 2048, &c->max_pos));
    if (c->hidden % c->n_heads != 0)
        return zf_fail(ZF_ERR_INPUT, "%s: key 'hidden_size' = %lld: expected a multiple of num_attention_heads = %lld",
                       path, (long long)c->hidden, (long long)c->n_heads);
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->hidden / c->n_heads;
    bool pre_ln, affine, remove_final;
    ZF_TRY(get_bool(path, root, "do_layer_norm_before", true, &pre_ln));
    if (!pre_ln)
        return zf_fail(ZF_ERR_INPUT, "%s: key 'do_layer_norm_before': expected true, found false (post-LayerNorm OPT "
                       "such as OPT-350M is not supported yet)", path);
    int64_t proj;
    ZF_TRY(get_pos_int(path, root, "word_embed_proj_dim", c->hidden, &proj));
    if (proj != c->hidden)
        return zf_fail(ZF_ERR_INPUT, "%s: key 'word_embed_proj_dim': expected %lld (= hidden_size), found %lld "
                       "(projected embeddings are not supported)", path, (long long)c->hidden, (long long)proj);
    ZF_TRY(require_string(path, root, "activation_function", "relu", "only ReLU OPT models are supported"));
    ZF_TRY(get_bool(path, root, "layer_norm_elementwise_affine", true, &affine));
    if (!affine)
        return zf_fail(ZF_ERR_INPUT, "%s: key 'layer_norm_elementwise_affine': expected true, found false (LayerNorm "
                       "without γ/β is not supported)", path);
    ZF_TRY(get_bool(path, root, "_remove_final_layer_norm", false, &remove_final));
    if (remove_final)
        return zf_fail(ZF_ERR_INPUT, "%s: key '_remove_final_layer_norm': expected false, found true (not supported)",
                       path);
    bool bias;
    ZF_TRY(get_bool(path, root, "enable_bias", true, &bias));
    c->attn_bias = c->o_bias = c->mlp_bias = bias;
    c->norm_bias = true; /* nn.LayerNorm with elementwise_affine always has β */
    ZF_TRY(get_bool(path, root, "tie_word_embeddings", true, &c->tied_embeddings));
    c->norm_eps = 1e-5;
    c->rope_theta = 0;
    c->opt_pos_offset = 2;
    return ZF_OK;
}

zf_status zf_model_config_read(const char *dir, zf_model_config *out)
{
    memset(out, 0, sizeof *out);
    size_t plen = strlen(dir) + 16;
    char *path = zf_malloc(plen, "config path");
    if (!path) return ZF_ERR_NOMEM;
    snprintf(path, plen, "%s/config.json", dir);
    zf_status s = zf_model_config_read_file(path, out);
    free(path);
    return s;
}

zf_status zf_model_config_read_file(const char *path, zf_model_config *out)
{
    memset(out, 0, sizeof *out);
    char *text = NULL;
    cJSON *root = NULL;
    zf_status s = zf_read_small_file(path, CONFIG_MAX_BYTES, "a config.json", &text);
    if (s != ZF_OK) goto done;
    root = cJSON_Parse(text);
    if (!root) {
        char why[128];
        s = zf_fail(ZF_ERR_INPUT, "%s: expected JSON, found %s", path, zf_json_syntax_error(text, why, sizeof why));
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        s = zf_fail(ZF_ERR_INPUT, "%s: expected a JSON object, found %s", path, zf_json_kind(root));
        goto done;
    }
    const cJSON *mt = get_key(root, "model_type");
    if (!cJSON_IsString(mt)) {
        s = zf_fail(ZF_ERR_INPUT, "%s: key 'model_type': expected a string (llama, mistral, qwen2 or opt), found %s",
                    path, zf_json_kind(mt));
        goto done;
    }
    if (strlen(mt->valuestring) >= sizeof out->model_type) {
        s = zf_fail(ZF_ERR_INPUT, "%s: key 'model_type': unsupported model type \"%.40s...\" (expected llama, mistral, "
                    "qwen2 or opt)", path, mt->valuestring);
        goto done;
    }
    strcpy(out->model_type, mt->valuestring);
    if (!strcmp(mt->valuestring, "llama") || !strcmp(mt->valuestring, "mistral") || !strcmp(mt->valuestring, "qwen2")) {
        s = parse_llama(path, root, out);
    } else if (!strcmp(mt->valuestring, "opt")) {
        s = parse_opt(path, root, out);
    } else {
        s = zf_fail(ZF_ERR_INPUT, "%s: key 'model_type': unsupported model type \"%s\" (expected llama, mistral, qwen2 "
                    "or opt)", path, mt->valuestring);
    }
    const cJSON *qc = get_key(root, "quantization_config");
    zf_gptq_config gptq;
    if (s == ZF_OK && qc && (s = zf_gptq_config_parse(path, qc, &gptq)) == ZF_OK) out->gptq = true;
    if (s == ZF_OK && out->n_heads % out->n_kv_heads != 0)
        s = zf_fail(ZF_ERR_INPUT, "%s: key 'num_key_value_heads' = %lld: expected a divisor of num_attention_heads = %lld",
                    path, (long long)out->n_kv_heads, (long long)out->n_heads);
done:
    cJSON_Delete(root);
    free(text);
    return s;
}

bool zf_lin_present(const zf_model_config *c, zf_lin l)
{
    ZF_ASSERT((unsigned)l < ZF_NLIN);
    return !(c->family == ZF_FAMILY_OPT && l == ZF_LIN_GATE);
}

zf_group zf_lin_group(zf_lin l)
{
    switch (l) {
    case ZF_LIN_Q: case ZF_LIN_K: case ZF_LIN_V: return ZF_GROUP_QKV;
    case ZF_LIN_O: return ZF_GROUP_O;
    case ZF_LIN_GATE: case ZF_LIN_UP: return ZF_GROUP_MLP_IN;
    case ZF_LIN_DOWN: return ZF_GROUP_MLP_OUT;
    default: ZF_PANIC("bad linear %d", (int)l);
    }
}

int64_t zf_lin_out(const zf_model_config *c, zf_lin l)
{
    switch (l) {
    case ZF_LIN_Q: return c->n_heads * c->head_dim;
    case ZF_LIN_K: case ZF_LIN_V: return c->n_kv_heads * c->head_dim;
    case ZF_LIN_O: case ZF_LIN_DOWN: return c->hidden;
    case ZF_LIN_GATE: case ZF_LIN_UP: return c->intermediate;
    default: ZF_PANIC("bad linear %d", (int)l);
    }
}

int64_t zf_lin_in(const zf_model_config *c, zf_lin l)
{
    switch (l) {
    case ZF_LIN_Q: case ZF_LIN_K: case ZF_LIN_V: case ZF_LIN_GATE: case ZF_LIN_UP: return c->hidden;
    case ZF_LIN_O: return c->n_heads * c->head_dim;
    case ZF_LIN_DOWN: return c->intermediate;
    default: ZF_PANIC("bad linear %d", (int)l);
    }
}

bool zf_lin_has_bias(const zf_model_config *c, zf_lin l)
{
    if (!zf_lin_present(c, l)) return false;
    switch (l) {
    case ZF_LIN_Q: case ZF_LIN_K: case ZF_LIN_V: return c->attn_bias;
    case ZF_LIN_O: return c->o_bias;
    default: return c->mlp_bias;
    }
}

const char *zf_lin_short_name(const zf_model_config *c, zf_lin l)
{
    static const char *llama[ZF_NLIN] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    static const char *opt[ZF_NLIN] = {"q_proj", "k_proj", "v_proj", "out_proj", "(none)", "fc1", "fc2"};
    ZF_ASSERT((unsigned)l < ZF_NLIN);
    return c->family == ZF_FAMILY_OPT ? opt[l] : llama[l];
}

void zf_lin_tensor_prefix(const zf_model_config *c, int64_t block, zf_lin l, char *buf, int len)
{
    const char *name = zf_lin_short_name(c, l);
    if (c->family == ZF_FAMILY_OPT)
        snprintf(buf, (size_t)len, "model.decoder.layers.%lld.%s%s", (long long)block,
                 zf_lin_group(l) == ZF_GROUP_QKV || l == ZF_LIN_O ? "self_attn." : "", name);
    else
        snprintf(buf, (size_t)len, "model.layers.%lld.%s.%s", (long long)block,
                 zf_lin_group(l) == ZF_GROUP_QKV || l == ZF_LIN_O ? "self_attn" : "mlp", name);
}

void zf_norm_tensor_prefix(const zf_model_config *c, int64_t block, int which, char *buf, int len)
{
    ZF_ASSERT(which == 0 || which == 1);
    if (c->family == ZF_FAMILY_OPT)
        snprintf(buf, (size_t)len, "model.decoder.layers.%lld.%s", (long long)block,
                 which ? "final_layer_norm" : "self_attn_layer_norm");
    else
        snprintf(buf, (size_t)len, "model.layers.%lld.%s", (long long)block,
                 which ? "post_attention_layernorm" : "input_layernorm");
}

const char *zf_embed_tensor_name(const zf_model_config *c)
{
    return c->family == ZF_FAMILY_OPT ? "model.decoder.embed_tokens.weight" : "model.embed_tokens.weight";
}

const char *zf_pos_embed_tensor_name(const zf_model_config *c)
{
    return c->family == ZF_FAMILY_OPT ? "model.decoder.embed_positions.weight" : NULL;
}

const char *zf_final_norm_prefix(const zf_model_config *c)
{
    return c->family == ZF_FAMILY_OPT ? "model.decoder.final_layer_norm" : "model.norm";
}

const char *zf_head_tensor_name(const zf_model_config *c)
{
    return c->tied_embeddings ? zf_embed_tensor_name(c) : "lm_head.weight";
}

zf_fold_target zf_group_fold(const zf_model_config *c, zf_group g)
{
    switch (g) {
    case ZF_GROUP_QKV: return ZF_FOLD_ATTN_NORM;
    case ZF_GROUP_O: return ZF_FOLD_V_ROWS;         /* the attention mix is linear in V (GQA needs tied ζ) */
    case ZF_GROUP_MLP_IN: return ZF_FOLD_MLP_NORM;
    case ZF_GROUP_MLP_OUT: return ZF_FOLD_UP_ROWS;  /* SwiGLU is linear in up; OPT's ReLU only for ζ > 0 */
    default: return ZF_FOLD_NONE;
    }
}

int zf_group_members(const zf_model_config *c, zf_group g, zf_lin out[3])
{
    switch (g) {
    case ZF_GROUP_QKV: out[0] = ZF_LIN_Q; out[1] = ZF_LIN_K; out[2] = ZF_LIN_V; return 3;
    case ZF_GROUP_O: out[0] = ZF_LIN_O; return 1;
    case ZF_GROUP_MLP_IN:
        if (c->family == ZF_FAMILY_OPT) {
            out[0] = ZF_LIN_UP;
            return 1;
        }
        out[0] = ZF_LIN_GATE; out[1] = ZF_LIN_UP; return 2;
    case ZF_GROUP_MLP_OUT: out[0] = ZF_LIN_DOWN; return 1;
    default: ZF_PANIC("bad group %d", (int)g);
    }
}

int64_t zf_group_in(const zf_model_config *c, zf_group g)
{
    switch (g) {
    case ZF_GROUP_QKV: case ZF_GROUP_MLP_IN: return c->hidden;
    case ZF_GROUP_O: return c->n_heads * c->head_dim;
    case ZF_GROUP_MLP_OUT: return c->intermediate;
    default: ZF_PANIC("bad group %d", (int)g);
    }
}

int64_t zf_group_out(const zf_model_config *c, zf_group g)
{
    zf_lin mem[3];
    int nm = zf_group_members(c, g, mem);
    int64_t rows = 0;
    for (int i = 0; i < nm; i++) rows += zf_lin_out(c, mem[i]);
    return rows;
}

const char *zf_group_name(zf_group g)
{
    switch (g) {
    case ZF_GROUP_QKV: return "qkv";
    case ZF_GROUP_O: return "o";
    case ZF_GROUP_MLP_IN: return "mlp_in";
    case ZF_GROUP_MLP_OUT: return "mlp_out";
    default: return "?";
    }
}

int64_t zf_model_param_count(const zf_model_config *c)
{
    int64_t d = c->hidden, n = c->vocab * d;
    if (c->family == ZF_FAMILY_OPT) n += (c->max_pos + c->opt_pos_offset) * d;
    int64_t per_norm = c->norm_bias ? 2 * d : d;
    int64_t blk = 2 * per_norm;
    for (int l = 0; l < ZF_NLIN; l++) {
        if (!zf_lin_present(c, (zf_lin)l)) continue;
        blk += zf_lin_out(c, (zf_lin)l) * zf_lin_in(c, (zf_lin)l);
        if (zf_lin_has_bias(c, (zf_lin)l)) blk += zf_lin_out(c, (zf_lin)l);
    }
    n += c->n_layers * blk + per_norm;
    if (!c->tied_embeddings) n += c->vocab * d;
    return n;
}
