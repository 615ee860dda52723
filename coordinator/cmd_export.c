/* `zfold export RUN_DIR OUT_DIR`: a finished run as a Hugging Face GPTQ model folder. */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "coordinator/commands.h"
#include "coordinator/export.h"

void zf_cmd_export_help(void)
{
    printf("usage: zfold export RUN_DIR OUT_DIR [--format gptq|gptq_v2] [--dtype float16|bfloat16|float32]\n"
           "                    [--max-shard-size 5GB]\n"
           "Writes the finished run in RUN_DIR as a Hugging Face model folder that transformers (optimum +\n"
           "gptqmodel), vLLM (--quantization gptq) and GPTQModel load: config.json with quantization_config,\n"
           "quantize_config.json, model.safetensors (or model-0000K-of-0000N.safetensors with an index), the\n"
           "tokenizer and generation files of the source model. Z-FOLD's ζ is already folded: the layers are\n"
           "plain GPTQ layers and the norms carry ζ.\n"
           "  --format          gptq (default; qzeros hold zero − 1) or gptq_v2 (qzeros hold zero)\n"
           "  --dtype           scales, biases, norms, embeddings and head (default float16; float32 is exact)\n"
           "  --max-shard-size  largest safetensors file before the next one starts (default 5GB; KB, MB, GB, KiB, ...)\n"
           "The MLP's inner width is padded to a multiple of 32 and of the group size where it is not (exact; the\n"
           "exported intermediate_size/ffn_dim says so). OUT_DIR appears only when complete; an OUT_DIR holding\n"
           "the same export is kept. See docs/export.md.\n"
           "Exit codes: 0 done, 1 bad input or failed step, 2 usage.\n");
}

int zf_cmd_export(int argc, char **argv)
{
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    zf_export_opts o = {.format = ZF_GPTQ_V1, .dtype = ZF_DT_F16, .max_shard_bytes = 5000000000LL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--format")) ok = v && zf_export_format_parse(v, &o.format), i++;
        else if (!strcmp(a, "--dtype")) ok = v && zf_export_dtype_parse(v, &o.dtype), i++;
        else if (!strcmp(a, "--max-shard-size")) ok = v && zf_export_size_parse(v, &o.max_shard_bytes), i++;
        else if (a[0] != '-' && npos < 2) pos[npos++] = a;
        else {
            fprintf(stderr, "zfold export: unexpected argument '%s'\n", a);
            return ZF_EXIT_USAGE;
        }
        if (!ok) {
            fprintf(stderr, "zfold export: %s: expected %s, found '%s'\n", a,
                    !strcmp(a, "--format") ? "gptq or gptq_v2"
                    : !strcmp(a, "--dtype") ? "float16, bfloat16 or float32" : "a size such as 5GB or 500MB",
                    v ? v : "nothing");
            return ZF_EXIT_USAGE;
        }
    }
    if (npos != 2) {
        zf_cmd_export_help();
        return ZF_EXIT_USAGE;
    }
    zf_log_init(0, 1);
    zf_export_summary sum;
    zf_status s = zf_export_run(pos[0], pos[1], &o, &sum);
    if (s != ZF_OK) zf_log_error("%s", zf_last_error());
    return zf_exit_code(s);
}
