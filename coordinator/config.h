/* The job configuration: one table of keys (type, default, allowed values, reach, doc) drives parsing, output, docs
 * and which keys matter to a run. */
#ifndef ZF_CONFIG_H
#define ZF_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/status.h"
#include "worker/quant.h"

#define ZF_PATH_MAX 1024
#define ZF_MAX_EVAL_FILES 8

enum { ZF_SCHEDULE_SEQUENTIAL = 0, ZF_SCHEDULE_PARALLEL };
/* export.format and export.dtype, in the order of their names */
enum { ZF_EXPORT_FORMAT_GPTQ = 0, ZF_EXPORT_FORMAT_GPTQ_V2 };
enum { ZF_EXPORT_DTYPE_FLOAT16 = 0, ZF_EXPORT_DTYPE_BFLOAT16, ZF_EXPORT_DTYPE_FLOAT32 };
/* hessian_capture: where a rank keeps what it captures for a Hessian */
enum { ZF_CAPTURE_AUTO = 0, ZF_CAPTURE_SUMS, ZF_CAPTURE_INPUTS };

typedef struct {
    char model[ZF_PATH_MAX];
    char output[ZF_PATH_MAX];
    zf_quant_opts quant;
    int schedule;               /* ZF_SCHEDULE_* */
    bool true_sequential;
    bool hessian_fp64;
    bool hessian_reduce_fp32;   /* fp64 partial sums sent in fp32 */
    int hessian_capture;        /* zf_capture: a rank's inputs or their sums */
    bool split_rows;            /* sequential, more ranks than groups: teams of ranks split each group's rows */
    char calib_file[ZF_PATH_MAX];
    char calib_text[ZF_PATH_MAX];  /* "[preset:]text", tokenized into calib_file when the job starts */
    bool calib_in_order;           /* not a key: the calibration file holds the windows back to back (C4 preset) */
    int64_t calib_windows;
    int64_t calib_seq_len;
    int calib_bf16;                /* activations between blocks kept in bf16 (calibration.activations) */
    int64_t seed;
    char calib_cache[ZF_PATH_MAX]; /* "" = no Hessian cache */
    char eval_files[ZF_MAX_EVAL_FILES][ZF_PATH_MAX];
    int n_eval_files;
    char eval_texts[ZF_MAX_EVAL_FILES][ZF_PATH_MAX]; /* "[preset:]text", tokenized into eval files at job start */
    int n_eval_texts;
    int64_t eval_seq_len;
    int64_t eval_max_windows;   /* 0: every window */
    int64_t eval_chunk;         /* windows per forward chunk; 0 = from eval_memory_gib */
    double eval_memory_gib;     /* host memory for one evaluation chunk */
    bool eval_fp;               /* also evaluate the full-precision model */
    bool eval_unfolded;         /* also evaluate the unfolded fake-quantized model (a check of the folding) */
    int64_t threads;            /* 0: OpenBLAS/OpenMP defaults */
    int backend;                /* zf_backend_kind */
    bool gpu_tf32;
    int gpu_forward_dtype;      /* zf_forward_dtype */
    double gpu_comm_timeout;    /* seconds */
    char export_folder[ZF_PATH_MAX]; /* "" = no export at the end of a run */
    int export_format;          /* ZF_EXPORT_FORMAT_* */
    int export_dtype;           /* ZF_EXPORT_DTYPE_* */
    double export_max_shard_gb; /* 10⁹ bytes */
} zf_job_config;

/* A key given a list of values in a sweep config. */
#define ZF_SWEEP_MAX_DIMS 8
#define ZF_SWEEP_MAX_VALUES 32
typedef struct {
    char key[64];
    char where[ZF_PATH_MAX + 64]; /* "file:line:col" of the list */
    int nvalues;
    char values[ZF_SWEEP_MAX_VALUES][128];
} zf_sweep_dim;

typedef struct {
    int ndims;
    zf_sweep_dim dims[ZF_SWEEP_MAX_DIMS];
} zf_sweep;

void zf_config_defaults(zf_job_config *c);
/* The list a path-list key fills (eval.files or eval.texts): its entries and count. */
void zf_config_path_list(zf_job_config *c, size_t offset, char (**items)[ZF_PATH_MAX], int **count);
/* Parses a YAML file; errors name the file, line and column, the key and what was expected. */
zf_status zf_config_load(const char *path, zf_job_config *c);
/* Defaults, then the file, then the "key=value" overrides in order. Without sweep, a list value is an error
 * unless an override picks one value, and the result is validated; with sweep, lists become sweep dimensions
 * (validate each point yourself). */
zf_status zf_config_read(const char *path, const char *const *sets, int nsets, zf_job_config *c, zf_sweep *sweep);

/* The most --set overrides one command line may give. */
#define ZF_MAX_SETS 64
/* If argv[i] is "--set KEY=VALUE" or "--set=KEY=VALUE", appends the assignment to sets (at most ZF_MAX_SETS) and
 * returns how many arguments it took (2 or 1); 0 when argv[i] is not one (or the list is full, or the value has no
 * "key=": then said on stderr), which the caller treats as a usage error. */
int zf_config_take_set(int argc, char **argv, int i, const char **sets, int *nsets);
/* Applies one "key=value" override (dotted keys, e.g. calibration.windows=32). */
zf_status zf_config_set(zf_job_config *c, const char *assignment);
/* Checks required keys and combinations. */
zf_status zf_config_validate(const zf_job_config *c);
/* Writes the effective configuration as YAML (every key, defaults filled in). */
void zf_config_write_yaml(const zf_job_config *c, FILE *f);
/* Writes the Markdown table of every key (docs/config.md is generated from it). */
void zf_config_write_docs(FILE *f);

/* The methods (ZF_AFFECTS bits) whose quantized result depends on the key: 0 for keys that change only where the run
 * goes, how fast it runs or what is measured after it; every method for a key not in the table. */
unsigned zf_config_key_affects(const char *key);
/* Whether the key matters to a run of method m: false only for keys that change other methods' results alone. */
bool zf_config_key_applies(const char *key, zf_method m);
/* Whether a and b are the same run: the same method and equal in every key that applies to it. */
bool zf_config_same_run(const zf_job_config *a, const zf_job_config *b);

#endif
