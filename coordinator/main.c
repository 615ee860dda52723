/* zfold command line: dispatches to the subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "coordinator/commands.h"
#include "coordinator/config.h"

static void usage(FILE *f)
{
    fprintf(f,
            "zfold %s: Z-FOLD / OPTQ / RTN post-training quantization of LLaMA-family and OPT models\n"
            "usage: zfold COMMAND [options]\n"
            "  quantize CONFIG.yaml   quantize a model and report perplexity\n"
            "  eval CONFIG.yaml       perplexity of the finished run of a config\n"
            "  sweep CONFIG.yaml      one run per point of the listed values (bits: [2, 3, 4]), then a summary\n"
            "  plan CONFIG.yaml       memory per rank and time per block predicted before anything runs\n"
            "  synth CONFIG.json OUT  a synthetic bf16 checkpoint of a config's shapes, for runs at scale\n"
            "  tokenize TEXT... -o F  text (files, JSON Lines) to a token file with the model's tokenizer (--decode)\n"
            "  layer [options]        quantize one weight matrix from a safetensors file\n"
            "  inspect RUN_DIR        show the state of a run (blocks done, checksums, ΔL, perplexity)\n"
            "  compare RUN_A RUN_B    agreement of integer codes and perplexity between two runs\n"
            "  help COMMAND           options of a command (help config: every config key)\n"
            "  --version\n",
            ZF_VERSION);
}

/* OpenMP threads that spin while OpenBLAS works take its cores (measured: blocks 1.5-2x slower). The policy is
 * read when the runtime loads, so a process started without one sets it and runs itself again, once. */
static void passive_openmp_wait(char **argv)
{
    if (getenv("OMP_WAIT_POLICY")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on with the default policy */
}

int main(int argc, char **argv)
{
    passive_openmp_wait(argv);
    if (argc < 2) {
        usage(stderr);
        return ZF_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("zfold %s (git %s)\n", ZF_VERSION, ZF_GIT_REV);
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "help")) {
        if (argc < 3) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[2], "config")) {
            zf_config_write_docs(stdout);
            return 0;
        }
        return zf_command_help(argv[2]);
    }
    const zf_command *c = zf_command_find(cmd);
    if (!c) {
        fprintf(stderr, "zfold: unknown command '%s'\n", cmd);
        usage(stderr);
        return ZF_EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}
