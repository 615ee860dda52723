/* `zfold synth CONFIG.json OUT_DIR --seed S`: a synthetic bf16 checkpoint (and token file) of a config's shapes. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/synth.h"
#include "coordinator/commands.h"

void zf_cmd_synth_help(void)
{
    printf("usage: zfold synth CONFIG.json OUT_DIR --seed S [--shard-size GB] [--tokens N]\n"
           "Writes a checkpoint of the shapes of a Hugging Face config.json (llama, mistral, qwen2 or pre-LN opt;\n"
           "CONFIG.json may also be the folder holding it) without downloading weights, so the pipeline can run at\n"
           "any size: OUT_DIR/config.json (a byte copy), the tensors in bf16 under the names transformers uses,\n"
           "filled in the Hub's order into model.safetensors, or model-NNNNN-of-MMMMM.safetensors files of at most\n"
           "--shard-size GB each (decimal, default %g; a larger tensor gets a file of its own) with\n"
           "model.safetensors.index.json. Memory stays a few MB whatever the model's size.\n"
           "Values depend on the seed, the tensor's name and the element's index only (not on the sharding):\n"
           "  linear weights, untied lm_head  N(0, %g²); in each, %g%% of the input columns (at least one) x%g\n"
           "  embeddings (OPT: positions too) N(0, %g²)\n"
           "  norm weights                    N(1, %g²); in each, %g%% of the channels (at least one) x%g\n"
           "  biases (linear, LayerNorm)      N(0, %g²)\n"
           "--tokens N also writes OUT_DIR/tokens.bin: N ids uniform in [0, vocab_size) in the llm.c format\n"
           "(uint16 when vocab_size <= 65536, else uint32), to calibrate on.\n"
           "Prints one line: parameters, shards, bytes, seconds. Exit status: 0 done, 1 failed (the message names\n"
           "the file; a file whose write failed is removed), 2 wrong command line.\n",
           ZF_SYNTH_SHARD_BYTES / 1e9, ZF_SYNTH_SIGMA_LINEAR, 100 * ZF_SYNTH_OUTLIER_COLS, ZF_SYNTH_OUTLIER_COL_SCALE,
           ZF_SYNTH_SIGMA_EMBED, ZF_SYNTH_SIGMA_NORM, 100 * ZF_SYNTH_OUTLIER_NORM, ZF_SYNTH_OUTLIER_NORM_SCALE,
           ZF_SYNTH_SIGMA_BIAS);
}

typedef struct {
    const char *config, *out;
    bool has_seed;
    zf_synth_opts o;
} synth_args;

/* A whole-string unsigned integer (decimal, or 0x hex); false after saying why when v is not one. */
static bool parse_u64(const char *opt, const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    *out = strtoull(v, &end, 0);
    if (end != v && !*end && !errno && v[0] != '-') return true;
    fprintf(stderr, "zfold synth: %s '%s': expected an integer in [0, 2^64)\n", opt, v);
    return false;
}

static bool parse_gb(const char *v, double *bytes)
{
    char *end;
    double x = strtod(v, &end);
    *bytes = x * 1e9;
    if (end != v && !*end && isfinite(x) && *bytes >= 1) return true;
    fprintf(stderr, "zfold synth: --shard-size '%s': expected a positive number of GB\n", v);
    return false;
}

static bool parse_args(int argc, char **argv, synth_args *a)
{
    memset(a, 0, sizeof *a);
    a->o.shard_bytes = ZF_SYNTH_SHARD_BYTES;
    uint64_t tokens = 0;
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (!strcmp(argv[i], "--seed") && has_value) {
            if (!parse_u64("--seed", argv[++i], &a->o.seed)) return false;
            a->has_seed = true;
        } else if (!strcmp(argv[i], "--shard-size") && has_value) {
            if (!parse_gb(argv[++i], &a->o.shard_bytes)) return false;
        } else if (!strcmp(argv[i], "--tokens") && has_value) {
            if (!parse_u64("--tokens", argv[++i], &tokens)) return false;
        } else if (argv[i][0] != '-' && !a->config) a->config = argv[i];
        else if (argv[i][0] != '-' && !a->out) a->out = argv[i];
        else {
            fprintf(stderr, "zfold synth: unexpected argument '%s'\n", argv[i]);
            return false;
        }
    }
    a->o.tokens = tokens > INT64_MAX ? INT64_MAX : (int64_t)tokens; /* too many either way: zf_synth_write says so */
    if (!a->config || !a->out || !a->has_seed) {
        fprintf(stderr, "zfold synth: CONFIG.json, OUT_DIR and --seed are required\n");
        return false;
    }
    return true;
}

int zf_cmd_synth(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            zf_cmd_synth_help();
            return ZF_EXIT_OK;
        }
    synth_args a;
    if (!parse_args(argc, argv, &a)) {
        zf_cmd_synth_help();
        return ZF_EXIT_USAGE;
    }
    /* a folder stands for the config.json in it */
    char path[4096];
    struct stat sb;
    bool dir = stat(a.config, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (snprintf(path, sizeof path, dir ? "%s/config.json" : "%s", a.config) >= (int)sizeof path) {
        fprintf(stderr, "zfold synth: path too long: %s\n", a.config);
        return ZF_EXIT_FAILURE;
    }
    double t0 = zf_now();
    zf_synth_result r;
    zf_status s = zf_synth_write(path, a.out, &a.o, &r);
    if (s != ZF_OK) {
        fprintf(stderr, "zfold synth: %s\n", zf_last_error());
        return zf_exit_code(s);
    }
    printf("zfold synth: %lld parameters, %d shard%s, %lld bytes, %.1f s -> %s%s\n", (long long)r.params, r.shards,
           r.shards > 1 ? "s" : "", (long long)r.bytes, zf_now() - t0, a.out, a.o.tokens ? " (with tokens.bin)" : "");
    return ZF_EXIT_OK;
}
