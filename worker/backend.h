/* The compute backend of a rank: Hessian accumulation, block forward with capture, and layer quantization on the CPU or one CUDA device. */
/* Host pointers in and out; Hessian accumulators live where the backend computes (device memory on CUDA). The
 * algorithms are written once over each backend's table of primitives (worker/backend_impl.h). */
#ifndef ZF_BACKEND_H
#define ZF_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "common/model.h"
#include "common/status.h"
#include "worker/block.h"
#include "worker/qresult.h"
#include "worker/quant_opts.h"

typedef enum { ZF_BACKEND_CPU = 0, ZF_BACKEND_CUDA } zf_backend_kind;

/* Weights as the forward reads them on the device: fp32 as loaded, or rounded to bf16/fp16 (GEMMs then
 * accumulate in fp32). The CPU backend always computes in fp32. */
typedef enum { ZF_FWD_FP32 = 0, ZF_FWD_BF16, ZF_FWD_FP16 } zf_forward_dtype;

typedef struct {
    zf_backend_kind kind;
    int device;                   /* CUDA device ordinal; -1 on the CPU */
    bool tf32;                    /* fp32 GEMMs may use TF32 tensor cores (CUDA only, off unless asked) */
    zf_forward_dtype fwd_dtype;
} zf_backend_opts;

typedef struct zf_backend zf_backend;

/* What a backend can do, asked instead of its kind. */
typedef enum {
    ZF_CAP_DEVICE_SUMS = 1u << 0,  /* Hessian sums live in device memory (reductions go over the GPU communicator) */
    ZF_CAP_HOST_MEMORY = 1u << 1,  /* backend memory is host memory: the host kernels may run on the data directly */
} zf_backend_cap;

typedef struct {
    zf_backend_kind kind;
    int device;
    char name[160];               /* "cpu" or "cuda:0 NVIDIA H100 80GB HBM3 (sm_90)" */
    int64_t mem_total, mem_free;  /* device memory in bytes; 0 on the CPU */
} zf_backend_info;

/* CUDA: fails with ZF_ERR_INPUT when zfold was built without CUDA or no device is visible, naming which. */
zf_status zf_backend_open(const zf_backend_opts *o, zf_backend **out);
void zf_backend_close(zf_backend *be);
void zf_backend_get_info(const zf_backend *be, zf_backend_info *info);
const char *zf_backend_kind_name(zf_backend_kind k);
/* zf_backend_cap flags. */
unsigned zf_backend_caps(const zf_backend *be);
/* Whether this build has the CUDA backend and how many devices it sees (0 without CUDA or without a device, and
 * then *why, if why is not NULL, says which). */
int zf_backend_cuda_devices(const char **why);

/* A Hessian accumulator Σ x xᵀ over tokens; sum is backend memory (device memory on CUDA), [dim, dim], with at
 * least the upper triangle valid until finalize. Collective reductions sum `sum` element-wise across ranks.
 * Or, on a host-memory backend, the captured inputs themselves (zf_bhess_init_inputs): fewer bytes than the sums
 * when a rank sees fewer tokens than dim·(sum bytes)/4; their Gram matrix is formed panel by panel at the
 * reduction (zf_hessian_panel). */
typedef struct {
    zf_backend *be;
    int64_t dim;
    int64_t ntokens;
    bool fp64;
    void *sum;                    /* float or double [dim, dim]; NULL with inputs */
    float *inputs;                /* [capacity, dim] host, the first ntokens rows captured */
    int64_t capacity;
} zf_bhess;

zf_status zf_bhess_init(zf_backend *be, zf_bhess *h, int64_t dim, bool fp64);
/* Room for capacity tokens' inputs (host-memory backends only); fp64 says how the panels are reduced. */
zf_status zf_bhess_init_inputs(zf_backend *be, zf_bhess *h, int64_t dim, int64_t capacity, bool fp64);
void zf_bhess_free(zf_bhess *h);
/* Writes H = 2/N · Σ x xᵀ as a full symmetric fp32 matrix on the host; N = h->ntokens (0 gives zeros). */
zf_status zf_bhess_finalize(zf_bhess *h, float *H);

/* Forwards nwin windows of seq tokens through block w, in place on x [nwin·seq, d] (host), each window an
 * independent sequence at positions 0..seq-1. For each group g with hess[g] != NULL the inputs of that group
 * are added to hess[g] (hess may be NULL). Windows go through one at a time so that sums do not depend on how
 * many windows a rank holds. */
zf_status zf_backend_block_forward(zf_backend *be, const zf_model_config *c, const zf_block_weights *w, float *x,
                                   int64_t nwin, int64_t seq, zf_bhess *const hess[ZF_NGROUP]);

/* zf_token_nll on the backend: final norm, head and log-softmax of x [nwin·seq, d] (host), nll [nwin·(seq-1)]
 * (host) in double. */
zf_status zf_backend_token_nll(zf_backend *be, const zf_model_config *c, const zf_model_globals *g, const float *x,
                               const int32_t *tokens, int64_t nwin, int64_t seq, double *nll);

/* zf_quantize on the backend: same inputs, outputs and errors. On CUDA a unit that does not fit in device
 * memory fails with ZF_ERR_NOMEM naming the bytes needed and free. */
zf_status zf_backend_quantize(zf_backend *be, const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols,
                              const float *H, const zf_zeta_tie *tie, zf_qresult *out);

/* A layer's rows quantized by a team of processes, each its own rows with the full H: element-wise sums over the
 * team in place, and the team's worst status; both are collective over the team. */
typedef struct {
    zf_status (*sum)(void *ctx, double *v, int64_t n);
    zf_status (*agree)(void *ctx, zf_status local);
    void *ctx;
} zf_row_team;

/* Quantizes a group: the concatenated rows W [rows, cols] of nmembers layers (member i has member_rows[i] rows,
 * summing to rows) once, as zf_backend_quantize, and per member, on the backend: dl[i] = ΔL of its rows of out->deq
 * against its rows of W (OPTQ and Z-FOLD: from the column loop's errors; other methods: by the quadratic form,
 * with o->delta_loss_rtn only), and with o->delta_loss_rtn dl_rtn[i] = ΔL of min-max RTN of that member alone
 * (same bits, symmetry and groups); a figure not measured is NaN. out->dl and out->dl_rtn are left 0. Without H
 * every figure is 0.
 * With a team (NULL: alone), W holds this process's rows of the layer (a member may have 0 of them): ζ, the ALS
 * decisions, the damping and dl/dl_rtn are the whole layer's, the same on every member; the codes and grids are
 * this process's rows. Once the team has agreed on its start, a failure leaves the others inside a team
 * collective: the caller ends the job. */
zf_status zf_backend_quantize_group(zf_backend *be, const zf_quant_opts *o, const float *W, int64_t rows, int64_t cols,
                                    const float *H, const zf_zeta_tie *tie, int nmembers, const int64_t *member_rows,
                                    const zf_row_team *team, zf_qresult *out, double *dl, double *dl_rtn);

/* Device bytes the backend held at most at once beyond what it held at the last reset (or when it opened), through
 * its own allocations; reset starts a new count. 0 on the CPU, -1 when the count was lost. The GPU tests check
 * the estimates below with it. */
int64_t zf_backend_peak_bytes(zf_backend *be, bool reset);

/* CUDA buffers the estimates below count: 16-bit weights are converted through a staging buffer of at most
 * ZF_CUDA_STAGING_FLOATS floats, and fp64 Hessian adds convert tokens through a scratch of about
 * ZF_CUDA_HESS_F64_SCRATCH_BYTES that lives as long as the backend. */
#define ZF_CUDA_STAGING_FLOATS ((int64_t)1 << 24)
#define ZF_CUDA_HESS_F64_SCRATCH_BYTES ((int64_t)64 << 20)
/* The CUDA quantization streams row chunks of about ZF_CUDA_QCHUNK_FLOATS (256 to ZF_CUDA_QCHUNK_MAX rows). */
#define ZF_CUDA_QCHUNK_FLOATS ((int64_t)1 << 26)
#define ZF_CUDA_QCHUNK_MAX 65535

/* Device memory a CUDA rank holds besides its units: the context and the cuBLAS/cuSOLVER workspaces (an
 * allowance), and the fp64 Hessian scratch. */
int64_t zf_backend_cuda_fixed_bytes(bool hessian_fp64);
/* Bytes of backend memory a unit needs: forward of one window through a block, and one group's quantization. */
int64_t zf_backend_forward_bytes(const zf_model_config *c, int64_t seq, zf_forward_dtype dt);
/* One [rows, cols] layer's quantization with options o (with H unless hessian is false): exactly what the CUDA
 * backend checks against the free memory before it starts. */
int64_t zf_backend_quantize_bytes(const zf_quant_opts *o, int64_t rows, int64_t cols, bool hessian);
/* Bytes of backend memory zf_backend_token_nll needs: the head and final norm, and one window's logits. */
int64_t zf_backend_nll_bytes(const zf_model_config *c, int64_t seq, zf_forward_dtype dt);

#endif
