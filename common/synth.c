/* Synthetic checkpoints: the tensor list of a config, counter-based seeded values, sharding, index and token file. */
#include "common/synth.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "common/dtype_internal.h"
#include "common/fsutil.h"
#include "common/safetensors.h"
#include "common/tokens.h"

/* Elements generated and written at a time: memory is two buffers of this many, whatever the tensor's size. */
#define CHUNK ((int64_t)1 << 20)
#define PATH_LEN 4096

typedef enum { SYN_LINEAR = 0, SYN_EMBED, SYN_NORM_W, SYN_BIAS } syn_kind;

typedef struct {
    char name[96];
    syn_kind kind;
    int ndim;
    int64_t shape[2];
    int shard;  /* the file it goes to, from 0 */
} syn_tensor;

typedef struct {
    syn_tensor *t;
    size_t n;
} syn_list;

/* ------------------------------------------------------------------------------------------------ */
/* the tensors, in the order of the Hugging Face modules' state_dict */

/* Pseudo-entries of a block's order after the linear layers: its two norms. */
#define ATTN_NORM ZF_NLIN
#define MLP_NORM (ZF_NLIN + 1)
static const int llama_block[] = {ZF_LIN_Q, ZF_LIN_K, ZF_LIN_V, ZF_LIN_O, ZF_LIN_GATE, ZF_LIN_UP, ZF_LIN_DOWN,
                                  ATTN_NORM, MLP_NORM};
/* OPTAttention creates k, v, q, out_proj; the decoder layer: self_attn, its norm, fc1, fc2, final_layer_norm. */
static const int opt_block[] = {ZF_LIN_K, ZF_LIN_V, ZF_LIN_Q, ZF_LIN_O, ATTN_NORM, ZF_LIN_UP, ZF_LIN_DOWN, MLP_NORM};

/* Appends prefix+suffix; d1 = 0 for a vector. */
static void push(syn_list *l, syn_kind kind, int64_t d0, int64_t d1, const char *prefix, const char *suffix)
{
    syn_tensor *t = &l->t[l->n++];
    snprintf(t->name, sizeof t->name, "%s%s", prefix, suffix);
    t->kind = kind;
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
}

static void push_norm(syn_list *l, const zf_model_config *c, const char *prefix)
{
    push(l, SYN_NORM_W, c->hidden, 0, prefix, ".weight");
    if (c->norm_bias) push(l, SYN_BIAS, c->hidden, 0, prefix, ".bias");
}

static void push_block(syn_list *l, const zf_model_config *c, int64_t b)
{
    const int *order = c->family == ZF_FAMILY_OPT ? opt_block : llama_block;
    size_t n = c->family == ZF_FAMILY_OPT ? sizeof opt_block / sizeof *opt_block
                                          : sizeof llama_block / sizeof *llama_block;
    char prefix[80];
    for (size_t i = 0; i < n; i++) {
        if (order[i] >= ZF_NLIN) {
            zf_norm_tensor_prefix(c, b, order[i] == MLP_NORM, prefix, sizeof prefix);
            push_norm(l, c, prefix);
            continue;
        }
        zf_lin lin = (zf_lin)order[i];
        zf_lin_tensor_prefix(c, b, lin, prefix, sizeof prefix);
        push(l, SYN_LINEAR, zf_lin_out(c, lin), zf_lin_in(c, lin), prefix, ".weight");
        if (zf_lin_has_bias(c, lin)) push(l, SYN_BIAS, zf_lin_out(c, lin), 0, prefix, ".bias");
    }
}

static zf_status list_tensors(const zf_model_config *c, syn_list *l)
{
    /* per block at most 7 linears with biases and 2 norms with biases; 6 model-level tensors */
    l->n = 0;
    l->t = zf_calloc((size_t)(c->n_layers * 18 + 6), sizeof *l->t, "tensor list");
    if (!l->t) return ZF_ERR_NOMEM;
    push(l, SYN_EMBED, c->vocab, c->hidden, zf_embed_tensor_name(c), "");
    if (c->family == ZF_FAMILY_OPT)
        push(l, SYN_EMBED, c->max_pos + c->opt_pos_offset, c->hidden, zf_pos_embed_tensor_name(c), "");
    for (int64_t b = 0; b < c->n_layers; b++) push_block(l, c, b);
    push_norm(l, c, zf_final_norm_prefix(c));
    if (!c->tied_embeddings) push(l, SYN_LINEAR, c->vocab, c->hidden, zf_head_tensor_name(c), "");
    return ZF_OK;
}

static int64_t numel(const syn_tensor *t) { return t->ndim == 2 ? t->shape[0] * t->shape[1] : t->shape[0]; }

/* ------------------------------------------------------------------------------------------------ */
/* values: element i of a tensor depends on (seed, name, i) only, so sharding and chunking cannot change it */

/* The ctr-th output of splitmix64 started at key. */
static inline uint64_t mix(uint64_t key, uint64_t ctr)
{
    uint64_t z = key + (ctr + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t stream_key(const char *name, uint64_t seed) { return XXH64(name, strlen(name), seed); }

/* Standard normals 2p and 2p+1 of stream key: Box–Muller on two 24-bit uniforms of one draw. u1 is in (0, 1],
 * so the radius is finite (at most 5.8). */
static void gauss_pair(uint64_t key, uint64_t p, float z[2])
{
    uint64_t h = mix(key, p);
    float u1 = (float)((h >> 40) + 1) * 0x1p-24f, u2 = (float)((h >> 16) & 0xffffff) * 0x1p-24f;
    float r = sqrtf(-2.0f * logf(u1)), a = 6.28318531f * u2;
    z[0] = r * cosf(a);
    z[1] = r * sinf(a);
}

/* Standard normals [first, first + n) of stream key into z. */
static void gauss_range(uint64_t key, int64_t first, int64_t n, float *z)
{
    for (int64_t i = first & ~(int64_t)1; i < first + n; i += 2) {
        float g[2];
        gauss_pair(key, (uint64_t)i >> 1, g);
        if (i >= first) z[i - first] = g[0];
        if (i + 1 < first + n) z[i + 1 - first] = g[1];
    }
}

/* The outlier channels of t among its last dimension (NULL when its kind has none): a fraction of them, at
 * least one, drawn from a stream of their own. */
static zf_status outliers(const syn_tensor *t, uint64_t key, unsigned char **hot)
{
    *hot = NULL;
    double frac = t->kind == SYN_LINEAR ? ZF_SYNTH_OUTLIER_COLS : t->kind == SYN_NORM_W ? ZF_SYNTH_OUTLIER_NORM : 0;
    if (frac == 0) return ZF_OK;
    uint64_t cols = (uint64_t)t->shape[t->ndim - 1];
    int64_t k = llround(frac * (double)cols);
    if (k < 1) k = 1;
    unsigned char *m = zf_calloc(cols, 1, "outlier channels");
    if (!m) return ZF_ERR_NOMEM;
    uint64_t hkey = key ^ 0x6f75746c69657273ull; /* "outliers" */
    for (uint64_t c = 0; k > 0; c++) {
        uint64_t j = ((mix(hkey, c) >> 32) * cols) >> 32;
        if (!m[j]) {
            m[j] = 1;
            k--;
        }
    }
    *hot = m;
    return ZF_OK;
}

/* Elements [first, first + n) of t as bf16 (z: n floats of scratch). */
static void values(const syn_tensor *t, uint64_t key, const unsigned char *hot, int64_t first, int64_t n, float *z,
                   uint16_t *dst)
{
    static const float mean[] = {[SYN_LINEAR] = 0, [SYN_EMBED] = 0, [SYN_NORM_W] = 1, [SYN_BIAS] = 0};
    static const float sigma[] = {[SYN_LINEAR] = ZF_SYNTH_SIGMA_LINEAR, [SYN_EMBED] = ZF_SYNTH_SIGMA_EMBED,
                                  [SYN_NORM_W] = ZF_SYNTH_SIGMA_NORM, [SYN_BIAS] = ZF_SYNTH_SIGMA_BIAS};
    float scale = t->kind == SYN_LINEAR ? (float)ZF_SYNTH_OUTLIER_COL_SCALE : (float)ZF_SYNTH_OUTLIER_NORM_SCALE;
    int64_t cols = t->shape[t->ndim - 1], j = first % cols;
    gauss_range(key, first, n, z);
    for (int64_t i = 0; i < n; i++) {
        float v = mean[t->kind] + sigma[t->kind] * z[i];
        if (hot && hot[j]) v *= scale;
        dst[i] = zf_f32_to_bf16(v);
        if (++j == cols) j = 0;
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* files */

typedef struct {
    const char *dir;
    uint64_t seed;
    float *z;       /* CHUNK floats */
    uint16_t *bf;   /* CHUNK bf16 */
} syn_writer;

static zf_status join(char *buf, const char *dir, const char *name)
{
    if (snprintf(buf, PATH_LEN, "%s/%s", dir, name) >= PATH_LEN) return zf_fail(ZF_ERR_INPUT, "path too long: %s", dir);
    return ZF_OK;
}

static void shard_name(int k, int nshards, char *buf, size_t len)
{
    if (nshards == 1) snprintf(buf, len, "model.safetensors");
    else snprintf(buf, len, "model-%05d-of-%05d.safetensors", k + 1, nshards);
}

/* Fills files in order: a tensor goes to the next file when it would take this one past max_bytes. */
static int plan_shards(syn_list *l, double max_bytes)
{
    int k = 0;
    double bytes = 0;
    for (size_t i = 0; i < l->n; i++) {
        double b = 2.0 * (double)numel(&l->t[i]);
        if (bytes > 0 && bytes + b > max_bytes) {
            k++;
            bytes = 0;
        }
        l->t[i].shard = k;
        bytes += b;
    }
    return k + 1;
}

static zf_status write_tensor(const syn_writer *w, zf_st_stream *st, const syn_tensor *t)
{
    uint64_t key = stream_key(t->name, w->seed);
    unsigned char *hot;
    ZF_TRY(outliers(t, key, &hot));
    zf_status s = ZF_OK;
    for (int64_t i = 0, n = numel(t); i < n && s == ZF_OK; i += CHUNK) {
        int64_t m = n - i < CHUNK ? n - i : CHUNK;
        values(t, key, hot, i, m, w->z, w->bf);
        s = zf_st_stream_write(st, w->bf, (size_t)m * 2);
    }
    free(hot);
    return s;
}

/* Tensors [0, n) of t, all of one shard, into file name. */
static zf_status write_shard(const syn_writer *w, const char *name, const syn_tensor *t, size_t n)
{
    static const char *const meta[] = {"format", "pt", NULL};
    char path[PATH_LEN];
    ZF_TRY(join(path, w->dir, name));
    zf_st_spec *specs = zf_calloc(n, sizeof *specs, "tensor specs");
    if (!specs) return ZF_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        specs[i] = (zf_st_spec){.name = t[i].name, .dtype = ZF_DT_BF16, .ndim = t[i].ndim,
                                .shape = {t[i].shape[0], t[i].shape[1]}};
    zf_st_stream *st;
    zf_status s = zf_st_stream_open(path, specs, n, meta, &st);
    free(specs);
    ZF_TRY(s);
    for (size_t i = 0; i < n && s == ZF_OK; i++) s = write_tensor(w, st, &t[i]);
    return zf_st_stream_close(st, s);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const syn_tensor *const *)a)->name, (*(const syn_tensor *const *)b)->name);
}

/* model.safetensors.index.json as transformers writes it: indent 2, weight_map sorted by name. */
static zf_status write_index(const syn_writer *w, const syn_list *l, int nshards, int64_t total)
{
    const syn_tensor **sorted = zf_calloc(l->n, sizeof *sorted, "index entries");
    if (!sorted) return ZF_ERR_NOMEM;
    for (size_t i = 0; i < l->n; i++) sorted[i] = &l->t[i];
    qsort(sorted, l->n, sizeof *sorted, cmp_name);
    char path[PATH_LEN], line[256], file[64];
    zf_atomic_file a;
    zf_status s = join(path, w->dir, "model.safetensors.index.json");
    if (s == ZF_OK && zf_atomic_begin(&a, path) == ZF_OK) {
        int len = snprintf(line, sizeof line, "{\n  \"metadata\": {\n    \"total_size\": %lld\n  },\n"
                           "  \"weight_map\": {\n", (long long)total);
        zf_atomic_write(&a, line, (size_t)len);
        for (size_t i = 0; i < l->n; i++) {
            shard_name(sorted[i]->shard, nshards, file, sizeof file);
            len = snprintf(line, sizeof line, "    \"%s\": \"%s\"%s\n", sorted[i]->name, file, i + 1 < l->n ? "," : "");
            zf_atomic_write(&a, line, (size_t)len);
        }
        zf_atomic_write(&a, "  }\n}\n", 6);
    }
    if (s == ZF_OK) s = zf_atomic_commit(&a);
    free(sorted);
    return s;
}

/* count ids uniform in [0, vocab) in the llm.c format: uint16 when they fit, else uint32. */
static zf_status write_tokens(const syn_writer *w, int64_t count, int64_t vocab)
{
    if (count > INT32_MAX) return zf_fail(ZF_ERR_INPUT, "--tokens %lld: at most %d fit a token file's header",
                                          (long long)count, INT32_MAX);
    if (vocab > INT32_MAX) return zf_fail(ZF_ERR_INPUT, "vocab_size %lld: token ids would not fit int32", (long long)vocab);
    int wide = vocab > 65536;
    int32_t hdr[256] = {wide ? ZF_TOKENS_MAGIC_U32 : ZF_TOKENS_MAGIC_U16, wide ? 7 : 1, (int32_t)count};
    unsigned char *raw = (unsigned char *)w->z; /* CHUNK floats: room for CHUNK uint32 */
    uint64_t key = stream_key("tokens.bin", w->seed);
    char path[PATH_LEN];
    zf_atomic_file a;
    ZF_TRY(join(path, w->dir, "tokens.bin"));
    if (zf_atomic_begin(&a, path) != ZF_OK) return a.status;
    zf_atomic_write(&a, hdr, sizeof hdr); /* little-endian host (dtype.c) */
    for (int64_t i = 0; i < count && a.status == ZF_OK; i += CHUNK) {
        int64_t m = count - i < CHUNK ? count - i : CHUNK;
        for (int64_t k = 0; k < m; k++) {
            uint32_t id = (uint32_t)(((mix(key, (uint64_t)(i + k)) >> 32) * (uint64_t)vocab) >> 32);
            if (wide) memcpy(raw + 4 * k, &id, 4);
            else {
                uint16_t v = (uint16_t)id;
                memcpy(raw + 2 * k, &v, 2);
            }
        }
        zf_atomic_write(&a, raw, (size_t)m * (wide ? 4 : 2));
    }
    return zf_atomic_commit(&a);
}

/* A file of an earlier run that would shadow this one (an index over a single file, or the reverse). */
static zf_status remove_stale(const char *dir, const char *name)
{
    char path[PATH_LEN];
    ZF_TRY(join(path, dir, name));
    if (unlink(path) != 0 && errno != ENOENT)
        return zf_fail(ZF_ERR_IO, "%s: cannot remove this earlier file: %s", path, strerror(errno));
    return ZF_OK;
}

/* Writes every shard, then the index when there are several (so it never names a missing file). */
static zf_status write_weights(const syn_writer *w, syn_list *l, double shard_bytes, zf_synth_result *r)
{
    r->shards = plan_shards(l, shard_bytes);
    ZF_TRY(remove_stale(w->dir, r->shards > 1 ? "model.safetensors" : "model.safetensors.index.json"));
    char name[64];
    for (size_t i = 0, j; i < l->n; i = j) {
        for (j = i; j < l->n && l->t[j].shard == l->t[i].shard; j++) r->params += numel(&l->t[j]);
        shard_name(l->t[i].shard, r->shards, name, sizeof name);
        ZF_TRY(write_shard(w, name, &l->t[i], j - i));
    }
    r->bytes = 2 * r->params;
    return r->shards > 1 ? write_index(w, l, r->shards, r->bytes) : ZF_OK;
}

/* out_dir, created when missing, must take new files. */
static zf_status prepare_dir(const char *dir)
{
    ZF_TRY(zf_mkdirs(dir));
    if (access(dir, W_OK) != 0)
        return zf_fail(ZF_ERR_IO, "%s: output folder is not writable: %s", dir, strerror(errno));
    return ZF_OK;
}

zf_status zf_synth_write(const char *config_path, const char *out_dir, const zf_synth_opts *o, zf_synth_result *r)
{
    memset(r, 0, sizeof *r);
    zf_model_config c;
    ZF_TRY(zf_model_config_read_file(config_path, &c));
    char *text = NULL, path[PATH_LEN];
    syn_list l = {0};
    syn_writer w = {.dir = out_dir, .seed = o->seed};
    zf_status s = zf_read_small_file(config_path, 16u << 20, "a config.json", &text);
    if (s == ZF_OK) s = prepare_dir(out_dir);
    if (s == ZF_OK) s = join(path, out_dir, "config.json");
    if (s == ZF_OK) s = zf_write_file_atomic(path, text, strlen(text));
    if (s == ZF_OK) s = list_tensors(&c, &l);
    if (s == ZF_OK) {
        w.z = zf_malloc((size_t)CHUNK * sizeof *w.z, "value scratch");
        w.bf = zf_malloc((size_t)CHUNK * sizeof *w.bf, "bf16 values");
        if (!w.z || !w.bf) s = ZF_ERR_NOMEM;
    }
    if (s == ZF_OK) s = write_weights(&w, &l, o->shard_bytes, r);
    if (s == ZF_OK) ZF_ASSERT(r->params == zf_model_param_count(&c));
    if (s == ZF_OK && o->tokens > 0) s = write_tokens(&w, o->tokens, c.vocab);
    free(w.z);
    free(w.bf);
    free(l.t);
    free(text);
    return s;
}
