/* The table of zfold subcommands. */
#include "coordinator/commands.h"

#include <stdio.h>
#include <string.h>

static const zf_command commands[] = {
    {"quantize", "quantize a model and report perplexity", zf_cmd_quantize, zf_cmd_quantize_help},
    {"eval", "perplexity of a finished run (or the full-precision model)", zf_cmd_eval, zf_cmd_eval_help},
    {"sweep", "one run per point of the listed values, then a summary table and plot", zf_cmd_sweep, zf_cmd_sweep_help},
    {"layer", "quantize one weight matrix from a safetensors file", zf_cmd_layer, zf_cmd_layer_help},
    {"inspect", "show the state of a run directory (blocks, checksums, ΔL, perplexity)", zf_cmd_inspect,
     zf_cmd_inspect_help},
    {"plan", "memory per rank and time per block predicted for a config, before anything runs", zf_cmd_plan,
     zf_cmd_plan_help},
    {"compare", "agreement of codes and perplexity between two runs", zf_cmd_compare, zf_cmd_compare_help},
    {"export", "a finished run as a Hugging Face GPTQ model folder (transformers, vLLM, GPTQModel)", zf_cmd_export,
     zf_cmd_export_help},
    {"synth", "a synthetic bf16 checkpoint of a config.json's shapes (seeded values, sharded like the Hub)",
     zf_cmd_synth, zf_cmd_synth_help},
    {"tokenize", "text (files, JSON Lines) to a token file with the model's own tokenizer, or back", zf_cmd_tokenize,
     zf_cmd_tokenize_help},
};

const zf_command *zf_command_find(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(commands[i].name, name)) return &commands[i];
    return NULL;
}

int zf_command_help(const char *name)
{
    const zf_command *c = zf_command_find(name);
    if (!c) {
        fprintf(stderr, "zfold: no command '%s'\n", name);
        return ZF_EXIT_USAGE;
    }
    c->help();
    return ZF_EXIT_OK;
}
