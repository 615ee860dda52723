/* Model description from a Hugging Face config.json: family, sizes, each block's linear layers, input groups and folds. */
#ifndef ZF_MODEL_H
#define ZF_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"

typedef enum { ZF_FAMILY_LLAMA = 0, ZF_FAMILY_OPT } zf_family;

/* The linear layers of one block, in execution order. OPT uses UP for fc1 and DOWN for fc2 (no GATE). */
typedef enum {
    ZF_LIN_Q = 0, ZF_LIN_K, ZF_LIN_V, ZF_LIN_O, ZF_LIN_GATE, ZF_LIN_UP, ZF_LIN_DOWN, ZF_NLIN
} zf_lin;

/* Groups of linear layers that read the same input (and so share one Hessian and one ζ). */
typedef enum {
    ZF_GROUP_QKV = 0,   /* reads the attention norm's output */
    ZF_GROUP_O,         /* reads the attention mix (softmax(QKᵀ)V) */
    ZF_GROUP_MLP_IN,    /* gate/up (llama) or fc1 (opt): reads the MLP norm's output */
    ZF_GROUP_MLP_OUT,   /* down (llama) or fc2 (opt): reads the activation */
    ZF_NGROUP
} zf_group;

/* Where a group's ζ is folded. */
typedef enum {
    ZF_FOLD_NONE = 0,
    ZF_FOLD_ATTN_NORM,  /* into the attention norm's γ (and β) */
    ZF_FOLD_MLP_NORM,   /* into the MLP norm's γ (and β) */
    ZF_FOLD_V_ROWS,     /* into V's output rows (and bias): O ← V through the attention mix */
    ZF_FOLD_UP_ROWS,    /* into up's / fc1's output rows (and bias): SwiGLU is linear in up; ReLU needs ζ > 0 */
} zf_fold_target;

typedef struct {
    zf_family family;
    char model_type[32];
    int64_t hidden;          /* d */
    int64_t n_layers;
    int64_t n_heads;
    int64_t n_kv_heads;
    int64_t head_dim;
    int64_t intermediate;    /* llama intermediate_size; opt ffn_dim */
    int64_t vocab;
    int64_t max_pos;
    double norm_eps;         /* rms_norm_eps (llama) or 1e-5 (opt) */
    double rope_theta;
    bool tied_embeddings;
    bool attn_bias;          /* q/k/v (and for opt o) biases */
    bool o_bias;
    bool mlp_bias;
    bool norm_bias;          /* LayerNorm (opt) has β */
    int opt_pos_offset;      /* 2 for OPT learned positions */
    bool gptq;               /* a GPTQ checkpoint (quantization_config): its layers are dequantized on load */
} zf_model_config;

/* Reads <dir>/config.json. Unsupported models (OPT post-LN, word_embed_proj_dim != hidden_size,
 * rope_scaling, non-silu llama activations, ...) are refused with a message naming the field. */
zf_status zf_model_config_read(const char *dir, zf_model_config *out);
/* The same from a config file's own path (which names it in messages). */
zf_status zf_model_config_read_file(const char *path, zf_model_config *out);

bool zf_lin_present(const zf_model_config *c, zf_lin l);
/* Output and input sizes of linear l. */
int64_t zf_lin_out(const zf_model_config *c, zf_lin l);
int64_t zf_lin_in(const zf_model_config *c, zf_lin l);
bool zf_lin_has_bias(const zf_model_config *c, zf_lin l);
/* Short name ("q_proj", "fc1", ...) and full tensor name prefix for block b ("model.layers.3.self_attn.q_proj"). */
const char *zf_lin_short_name(const zf_model_config *c, zf_lin l);
void zf_lin_tensor_prefix(const zf_model_config *c, int64_t block, zf_lin l, char *buf, int len);
/* Tensor names of the two norms of block b (which = 0 attention norm, 1 MLP norm) and the model-level tensors. */
void zf_norm_tensor_prefix(const zf_model_config *c, int64_t block, int which, char *buf, int len);
const char *zf_embed_tensor_name(const zf_model_config *c);
const char *zf_pos_embed_tensor_name(const zf_model_config *c);  /* NULL for llama */
const char *zf_final_norm_prefix(const zf_model_config *c);
const char *zf_head_tensor_name(const zf_model_config *c);        /* embeddings' name when tied */
/* Where group g's ζ is folded; ZF_FOLD_NONE when not foldable. */
zf_fold_target zf_group_fold(const zf_model_config *c, zf_group g);
/* Members of group g in execution order; returns the count. */
int zf_group_members(const zf_model_config *c, zf_group g, zf_lin out[3]);
int64_t zf_group_in(const zf_model_config *c, zf_group g);
/* A group's output rows: its members' stacked. */
int64_t zf_group_out(const zf_model_config *c, zf_group g);
const char *zf_group_name(zf_group g);
/* Parameter count of the whole model implied by the config. */
int64_t zf_model_param_count(const zf_model_config *c);

#endif
