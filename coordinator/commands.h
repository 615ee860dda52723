/* The table of zfold subcommands and the job plumbing they share. */
#ifndef ZF_COMMANDS_H
#define ZF_COMMANDS_H

#include <stdbool.h>

#include "common/status.h"
#include "coordinator/comm.h"
#include "coordinator/config.h"
#include "coordinator/exit_codes.h"

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*help)(void);
} zf_command;

const zf_command *zf_command_find(const char *name);
int zf_command_help(const char *name);

int zf_cmd_layer(int argc, char **argv);
void zf_cmd_layer_help(void);
int zf_cmd_quantize(int argc, char **argv);
/* One quantization run (MPI already initialized): plan, quantize or resume, write shards, evaluate, report. */
zf_status zf_quantize_job(const zf_job_config *cfg, const char *config_path, bool restart, bool dry_run,
                          bool eval_only);
/* MPI start of a job command (quantize, eval, sweep): ZF_EXIT_OK, or the exit code after printing why not. */
int zf_job_start(int *argc, char ***argv, zf_comm *comm);
/* Ends a job command that failed alike on every rank before its work (a config error): rank 0 prints the
 * message; returns ZF_EXIT_FAILURE. */
int zf_job_end_early(const zf_comm *comm);
int zf_cmd_eval(int argc, char **argv);
void zf_cmd_eval_help(void);
int zf_cmd_plan(int argc, char **argv);
void zf_cmd_plan_help(void);
int zf_cmd_sweep(int argc, char **argv);
void zf_cmd_sweep_help(void);
void zf_cmd_quantize_help(void);
int zf_cmd_inspect(int argc, char **argv);
void zf_cmd_inspect_help(void);
int zf_cmd_compare(int argc, char **argv);
void zf_cmd_compare_help(void);
int zf_cmd_export(int argc, char **argv);
void zf_cmd_export_help(void);
int zf_cmd_synth(int argc, char **argv);
void zf_cmd_synth_help(void);
int zf_cmd_tokenize(int argc, char **argv);
void zf_cmd_tokenize_help(void);
/* calibration.text and eval.texts tokenized with the model's tokenizer into <output>/tokens/ (rank 0 writes them;
 * every rank gets their paths in calibration.file and eval.files). */
zf_status zf_job_prepare_texts(zf_job_config *cfg, int64_t calib_seq, bool lead);

#endif
