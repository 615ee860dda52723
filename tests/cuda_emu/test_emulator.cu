/* The CUDA emulator's self-test: its kernel semantics and library results, and that each of its checks fires. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

/* ---- kernels ------------------------------------------------------------------------------------------------------ */

/* out[block] = the sum of the block's elements of in, by a tree in shared memory (power-of-two blocks, any shape). */
template <typename T> __global__ void block_sum(const T *in, T *out)
{
    __shared__ T part[1024];
    const unsigned n = blockDim.x * blockDim.y * blockDim.z;
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    part[t] = in[blockIdx.x * n + t];
    __syncthreads();
    for (unsigned s = n / 2; s > 0; s /= 2) {
        if (t < s) part[t] += part[t + s];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = part[0];
}

/* Every lane ends with its warp's sum, by butterfly shuffles. */
template <typename T> __global__ void warp_sum(const T *in, T *out)
{
    T v = in[threadIdx.x];
    for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
    out[threadIdx.x] = v;
}

__host__ __device__ static unsigned pack3(unsigned x, unsigned y, unsigned z) { return x | y << 8 | z << 16; }

/* Each thread records its block, thread, grid shape and block shape in its own four slots. */
__global__ void record_indices(unsigned *out)
{
    const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned *o = out + 4 * (block * blockDim.x * blockDim.y * blockDim.z + thread);
    o[0] = pack3(blockIdx.x, blockIdx.y, blockIdx.z);
    o[1] = pack3(threadIdx.x, threadIdx.y, threadIdx.z);
    o[2] = pack3(gridDim.x, gridDim.y, gridDim.z);
    o[3] = pack3(blockDim.x, blockDim.y, blockDim.z);
}

/* Threads from `live` on return at once; the others meet in __syncthreads and thread 0 sums what they stored. */
__global__ void sum_after_early_exit(const int *in, int live, int *out)
{
    __shared__ int s[1024];
    if ((int)threadIdx.x >= live) return;
    s[threadIdx.x] = in[threadIdx.x];
    __syncthreads();
    if (threadIdx.x != 0) return;
    int sum = 0;
    for (int i = 0; i < live; i++) sum += s[i];
    *out = sum;
}

/* Thread t writes s[t] and reads both neighbours with no barrier between, in two phases each after a barrier (a
 * block's threads first run in order, forwards, so only released threads can run backwards); stale[0] and stale[1]
 * count reads of the right and left neighbour that missed its write. */
__global__ void read_without_barrier(int base, int *stale)
{
    __shared__ int s[64];
    const unsigned t = threadIdx.x;
    for (int phase = 0; phase < 2; phase++) {
        __syncthreads();
        s[t] = base + phase;
        if (t + 1 < blockDim.x && s[t + 1] != base + phase) atomicAdd(&stale[0], 1);
        if (t > 0 && s[t - 1] != base + phase) atomicAdd(&stale[1], 1);
    }
}

/* out[t] = in[t], or -1 without an input. */
__global__ void copy_or_default(const float *in, float *out)
{
    out[threadIdx.x] = in ? in[threadIdx.x] : -1.0f;
}

/* One thread stores to p[i]: the others stay in bounds whatever i is. */
__global__ void write_at(float *p, unsigned i)
{
    if (blockIdx.x == 1 && threadIdx.x == 3) p[i] = 1.0f;
}

/* Even and odd threads wait in __syncthreads at different lines. */
__global__ void split_barriers(float *out)
{
    if (threadIdx.x % 2 == 0) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 0.0f;
}

/* Lanes 16-31 return; lanes 0-15 then shuffle with all 32 lanes in the mask. */
__global__ void shuffle_after_exit(float *out)
{
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

/* Lanes 0-15 wait in __syncthreads, lanes 16-31 in a full-warp shuffle: neither wait can complete. */
__global__ void barrier_against_shuffle(float *out)
{
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16) __syncthreads();
    else v = __shfl_xor_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}

/* ---- helpers ------------------------------------------------------------------------------------------------------ */

/* Why the running case failed, for its line. */
static char why[512];

__attribute__((format(printf, 1, 2))) static bool fail_because(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return false;
}

/* n elements of device memory, freed with the scope. */
template <typename T> struct device_buffer {
    T *p = nullptr;
    explicit device_buffer(size_t n) { cudaMalloc((void **)&p, n * sizeof(T)); }
    ~device_buffer() { cudaFree(p); }
    device_buffer(const device_buffer &) = delete;
    device_buffer &operator=(const device_buffer &) = delete;
};

template <typename T> static void upload(T *dev, const std::vector<T> &host)
{
    cudaMemcpy(dev, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
}

template <typename T> static std::vector<T> download(const T *dev, size_t n)
{
    std::vector<T> host(n);
    cudaMemcpy(host.data(), dev, n * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
}

/* 1, 2, ..., n: sums of these are exact in float. */
template <typename T> static std::vector<T> counting(size_t n)
{
    std::vector<T> v(n);
    for (size_t i = 0; i < n; i++) v[i] = (T)(i + 1);
    return v;
}

/* Uniform in [-1, 1), the same sequence on every run. */
static float next_uniform(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / (float)(1u << 23) - 1.0f;
}

/* ---- semantics that must hold ------------------------------------------------------------------------------------- */

/* block_sum over 4 blocks of the given shape (256 threads): each block's sum of its counting values. */
static bool block_sum_is_exact(dim3 block)
{
    const unsigned n = block.x * block.y * block.z, blocks = 4;
    device_buffer<float> in(blocks * n), out(blocks);
    upload(in.p, counting<float>(blocks * n));
    block_sum<float><<<blocks, block>>>(in.p, out.p);
    std::vector<float> got = download(out.p, blocks);
    for (unsigned b = 0; b < blocks; b++) {
        const double first = b * n + 1.0, last = (b + 1.0) * n, want = (first + last) * n / 2;
        if (got[b] != want) return fail_because("block %u: sum %.1f, want %.1f", b, got[b], want);
    }
    return true;
}

static bool block_sum_1d() { return block_sum_is_exact(dim3(256)); }
static bool block_sum_2d() { return block_sum_is_exact(dim3(32, 8)); }

static bool warp_sum_reaches_every_lane()
{
    device_buffer<float> in(64), out(64);
    upload(in.p, counting<float>(64));
    warp_sum<float><<<1, 64>>>(in.p, out.p);
    std::vector<float> got = download(out.p, 64);
    for (unsigned t = 0; t < 64; t++) {
        const float want = t < 32 ? 528.0f : 1552.0f; /* 1 + ... + 32 and 33 + ... + 64 */
        if (got[t] != want) return fail_because("lane %u of warp %u: %.1f, want %.1f", t % 32, t / 32, got[t], want);
    }
    return true;
}

static bool grid_3d_covers_every_thread()
{
    const dim3 grid(3, 2, 2), block(4, 2, 2);
    device_buffer<unsigned> out(4 * 12 * 16);
    record_indices<<<grid, block>>>(out.p);
    std::vector<unsigned> got = download(out.p, 4 * 12 * 16);
    size_t i = 0;
    for (unsigned bz = 0; bz < 2; bz++)
        for (unsigned by = 0; by < 2; by++)
            for (unsigned bx = 0; bx < 3; bx++)
                for (unsigned tz = 0; tz < 2; tz++)
                    for (unsigned ty = 0; ty < 2; ty++)
                        for (unsigned tx = 0; tx < 4; tx++, i += 4) {
                            const unsigned want[4] = {pack3(bx, by, bz), pack3(tx, ty, tz), pack3(3, 2, 2),
                                                      pack3(4, 2, 2)};
                            if (memcmp(&got[i], want, sizeof want) != 0)
                                return fail_because("block (%u,%u,%u) thread (%u,%u,%u): recorded %x %x %x %x", bx,
                                                    by, bz, tx, ty, tz, got[i], got[i + 1], got[i + 2], got[i + 3]);
                        }
    return true;
}

static bool early_exit_counts_as_arrived()
{
    device_buffer<int> in(256), out(1);
    upload(in.p, counting<int>(256));
    sum_after_early_exit<<<1, 256>>>(in.p, 200, out.p);
    const int got = download(out.p, 1)[0];
    return got == 20100 || fail_because("sum %d, want 20100", got);
}

/* Released threads run forwards and backwards in turn, so a missing barrier shows whichever neighbour is read. */
static bool missing_barrier_shows()
{
    device_buffer<int> stale(2);
    cudaMemset(stale.p, 0, 2 * sizeof(int));
    read_without_barrier<<<1, 64>>>(1, stale.p);
    std::vector<int> got = download(stale.p, 2);
    return (got[0] > 0 && got[1] > 0) ||
           fail_because("stale reads: %d of the right neighbour, %d of the left; both must be > 0", got[0], got[1]);
}

static bool null_pointer_argument_accepted()
{
    cudaStream_t stream;
    cudaStreamCreate(&stream);
    device_buffer<float> out(32);
    copy_or_default<<<1, 32, 0, stream>>>(NULL, out.p);
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
    std::vector<float> got = download(out.p, 32);
    for (unsigned t = 0; t < 32; t++)
        if (got[t] != -1.0f) return fail_because("thread %u wrote %g, want -1", t, got[t]);
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess || fail_because("cudaGetLastError: %s", cudaGetErrorName(e));
}

static bool memcpy_round_trip()
{
    const std::vector<int> sent = counting<int>(1000);
    device_buffer<int> a(1000), b(1000);
    upload(a.p, sent);
    if (cudaMemcpy(b.p, a.p, 1000 * sizeof(int), cudaMemcpyDeviceToDevice) != cudaSuccess)
        return fail_because("device to device copy failed");
    return download(b.p, 1000) == sent || fail_because("the data came back changed");
}

static bool mem_get_info_tracks_allocations()
{
    const size_t bytes = (1 << 20) + 3;
    size_t free0, free1, free2, total;
    cudaMemGetInfo(&free0, &total);
    void *p;
    cudaMalloc(&p, bytes);
    cudaMemGetInfo(&free1, &total);
    cudaFree(p);
    cudaMemGetInfo(&free2, &total);
    if (free0 - free1 != bytes) return fail_because("free fell by %zu for %zu bytes", free0 - free1, bytes);
    return free2 == free0 || fail_because("free is %zu after cudaFree, %zu before cudaMalloc", free2, free0);
}

static bool fresh_memory_is_nan()
{
    device_buffer<unsigned char> d(100);
    std::vector<unsigned char> got = download(d.p, 100);
    for (size_t i = 0; i < got.size(); i++)
        if (got[i] != 0xff) return fail_because("byte %zu is 0x%02x before any write, want 0xff", i, got[i]);
    float f;
    memcpy(&f, got.data(), sizeof f);
    return isnan(f) || fail_because("the fresh bytes do not read as NaN");
}

/* A launch with `grid` blocks of `block` threads must fail, run nothing and leave the error for one query. */
static bool launch_rejected(unsigned grid, unsigned block)
{
    device_buffer<float> out(32);
    cudaMemset(out.p, 0, 32 * sizeof(float));
    copy_or_default<<<grid, block>>>(NULL, out.p);
    const cudaError_t first = cudaGetLastError(), second = cudaGetLastError();
    if (first != cudaErrorInvalidConfiguration)
        return fail_because("grid %u, block %u: cudaGetLastError gave %s", grid, block, cudaGetErrorName(first));
    if (second != cudaSuccess) return fail_because("the second cudaGetLastError gave %s", cudaGetErrorName(second));
    return download(out.p, 1)[0] == 0.0f || fail_because("grid %u, block %u: the kernel ran", grid, block);
}

static bool zero_grid_rejected() { return launch_rejected(0, 32); }
static bool oversized_block_rejected() { return launch_rejected(1, 2048); }

/* Each case runs in a child of its own (see in_child): the limit is set before the emulator's first call. */
static bool memory_limit_from_env()
{
    setenv("ZF_CUDA_EMU_MEM", "1M", 1);
    size_t free_bytes, total;
    cudaMemGetInfo(&free_bytes, &total);
    if (total != (1u << 20)) return fail_because("cudaMemGetInfo total %zu, want 1 MiB", total);
    void *a, *b;
    if (cudaMalloc(&a, 768 << 10) != cudaSuccess) return fail_because("768 KiB of 1 MiB refused");
    if (cudaMalloc(&b, 512 << 10) != cudaErrorMemoryAllocation || b != NULL)
        return fail_because("768 + 512 KiB of 1 MiB accepted, or *dev not NULL on failure");
    if (cudaGetLastError() != cudaErrorMemoryAllocation) return fail_because("cudaGetLastError lost the failure");
    cudaFree(a);
    return cudaMalloc(&b, 512 << 10) == cudaSuccess || fail_because("512 KiB refused after the 768 KiB was freed");
}

static bool device_count_from_env()
{
    setenv("ZF_CUDA_EMU_DEVICES", "3", 1);
    int count = -1;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count != 3) return fail_because("%s, %d devices; want 3", cudaGetErrorName(e), count);
    return cudaSetDevice(3) == cudaErrorInvalidDevice || fail_because("cudaSetDevice(3) of 3 devices accepted");
}

static bool no_device_from_env()
{
    setenv("ZF_CUDA_EMU_DEVICES", "0", 1);
    int count = -1;
    const cudaError_t e = cudaGetDeviceCount(&count);
    return (e == cudaErrorNoDevice && count == 0) ||
           fail_because("%s, %d devices; want cudaErrorNoDevice, 0", cudaGetErrorName(e), count);
}

/* ---- cuBLAS and cuSOLVER ------------------------------------------------------------------------------------------ */

static bool sgemm_rejects_small_lda()
{
    device_buffer<float> m(16);
    cublasHandle_t h;
    cublasCreate(&h);
    const float one = 1.0f, zero = 0.0f;
    const cublasStatus_t s = cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, m.p, 3, m.p, 4, &zero, m.p, 4);
    cublasDestroy(h);
    return s == CUBLAS_STATUS_INVALID_VALUE || fail_because("lda 3 for 4 rows: status %d", (int)s);
}

/* C = Aᵀ·B with padded leading dimensions (the padding is NaN: reading it would show), against a double loop. */
struct gemm_problem {
    static constexpr int m = 37, n = 29, k = 53, lda = k + 3, ldb = k + 1, ldc = m + 2;
    std::vector<float> a, b;
    std::vector<double> want, scale; /* the exact product, and Σ|a·b| per element: the size of its rounding */

    gemm_problem() : a(lda * m, NAN), b(ldb * n, NAN), want(m * n), scale(m * n)
    {
        unsigned state = 12345;
        for (int i = 0; i < m; i++)
            for (int l = 0; l < k; l++) a[l + i * lda] = next_uniform(&state);
        for (int j = 0; j < n; j++)
            for (int l = 0; l < k; l++) b[l + j * ldb] = next_uniform(&state);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
                for (int l = 0; l < k; l++) {
                    const double p = (double)a[l + i * lda] * b[l + j * ldb];
                    want[i + j * m] += p;
                    scale[i + j * m] += fabs(p);
                }
    }

    /* C computed by cublasSgemm under the math mode, packed (ld = m); empty when the call fails. */
    std::vector<float> on_device(cublasMath_t math) const
    {
        device_buffer<float> da(a.size()), db(b.size()), dc(ldc * n);
        upload(da.p, a);
        upload(db.p, b);
        cublasHandle_t h;
        cublasCreate(&h);
        cublasSetMathMode(h, math);
        const float one = 1.0f, zero = 0.0f;
        const cublasStatus_t s =
            cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, da.p, lda, db.p, ldb, &zero, dc.p, ldc);
        cublasDestroy(h);
        if (s != CUBLAS_STATUS_SUCCESS) return {};
        std::vector<float> c = download(dc.p, ldc * n), packed(m * n);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) packed[i + j * m] = c[i + j * ldc];
        return packed;
    }

    /* The largest error of c relative to the rounding scale (NaN if c has one). */
    double error(const std::vector<float> &c) const
    {
        double worst = 0.0;
        for (size_t e = 0; e < want.size(); e++) {
            const double r = fabs(c[e] - want[e]) / scale[e];
            if (!(r <= worst)) worst = r;
        }
        return worst;
    }
};

static bool sgemm_matches_double_loop()
{
    const gemm_problem g;
    const std::vector<float> c = g.on_device(CUBLAS_DEFAULT_MATH);
    if (c.empty()) return fail_because("cublasSgemm failed");
    const double err = g.error(c);
    return err <= 1e-5 || fail_because("relative error %.3g, over 1e-5", err);
}

/* TF32 keeps 10 of fp32's 23 mantissa bits: the result must differ from fp32's, by more than fp32's rounding (so
 * not only in the order of the sums), and stay within 2^-10 relative. */
static bool sgemm_tf32_is_tf32()
{
    const gemm_problem g;
    const std::vector<float> f32 = g.on_device(CUBLAS_DEFAULT_MATH), tf32 = g.on_device(CUBLAS_TF32_TENSOR_OP_MATH);
    if (tf32.empty()) return fail_because("cublasSgemm failed");
    if (tf32 == f32) return fail_because("bit-equal to the fp32 result");
    const double err = g.error(tf32);
    return (err > 1e-5 && err <= ldexp(1.0, -10)) ||
           fail_because("relative error %.3g, want it in (1e-5, 2^-10]", err);
}

/* The GPU rounds TF32 operands to nearest: 1 + 3·2^-12 (past half of TF32's 2^-10 step) times 1 gives 1 + 2^-10,
 * and -(1 + 2^-12) (below half) gives -1; truncation would give 1 and -1. */
static bool tf32_rounds_to_nearest()
{
    const float in[2] = {1.0f + 3.0f * ldexpf(1.0f, -12), -(1.0f + ldexpf(1.0f, -12))}, one = 1.0f, zero = 0.0f;
    device_buffer<float> da(2), db(1), dc(2);
    upload(da.p, std::vector<float>(in, in + 2));
    upload(db.p, std::vector<float>{1.0f});
    cublasHandle_t h;
    cublasCreate(&h);
    cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH);
    const cublasStatus_t s = cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 1, &one, da.p, 2, db.p, 1, &zero, dc.p, 2);
    cublasDestroy(h);
    if (s != CUBLAS_STATUS_SUCCESS) return fail_because("cublasSgemm failed");
    const std::vector<float> c = download(dc.p, 2);
    const float want[2] = {1.0f + ldexpf(1.0f, -10), -1.0f};
    return (c[0] == want[0] && c[1] == want[1]) ||
           fail_because("got %.9g and %.9g, want %.9g and %.9g", c[0], c[1], want[0], want[1]);
}

static bool potrf_reports_non_positive_definite()
{
    /* column-major; the leading 2×2 minor is 1 - 4 < 0 */
    const std::vector<double> a = {1, 2, 0, 2, 1, 0, 0, 0, 1};
    device_buffer<double> da(9);
    device_buffer<int> info(1);
    upload(da.p, a);
    cusolverDnHandle_t h;
    cusolverDnParams_t params;
    cusolverDnCreate(&h);
    cusolverDnCreateParams(&params);
    size_t dev_bytes = 0, host_bytes = 0;
    cusolverDnXpotrf_bufferSize(h, params, CUBLAS_FILL_MODE_LOWER, 3, CUDA_R_64F, da.p, 3, CUDA_R_64F, &dev_bytes,
                                &host_bytes);
    device_buffer<char> work(dev_bytes);
    const cusolverStatus_t s = cusolverDnXpotrf(h, params, CUBLAS_FILL_MODE_LOWER, 3, CUDA_R_64F, da.p, 3, CUDA_R_64F,
                                                work.p, dev_bytes, NULL, host_bytes, info.p);
    cusolverDnDestroyParams(params);
    cusolverDnDestroy(h);
    if (s != CUSOLVER_STATUS_SUCCESS) return fail_because("status %d", (int)s);
    const int got = download(info.p, 1)[0];
    return got == 2 || fail_because("info %d, want 2 (the order of the first minor that is not positive)", got);
}

/* ---- faults the emulator must stop (each body runs in a child, which must abort) ---------------------------------- */

static void kernel_writes_past_the_end()
{
    float *d;
    cudaMalloc((void **)&d, 64 * sizeof(float));
    write_at<<<2, 32>>>(d, 64);
}

static void host_reads_device_memory()
{
    float *d;
    cudaMalloc((void **)&d, 64);
    volatile float v = *(volatile float *)d;
    (void)v;
}

static void kernel_gets_host_pointer()
{
    static float host[32];
    copy_or_default<<<1, 32>>>(NULL, host);
}

static void threads_in_different_barriers()
{
    device_buffer<float> out(64);
    split_barriers<<<1, 64>>>(out.p);
}

static void shuffle_names_exited_lanes()
{
    device_buffer<float> out(32);
    shuffle_after_exit<<<1, 32>>>(out.p);
}

static void barrier_and_shuffle_deadlock()
{
    device_buffer<float> out(32);
    barrier_against_shuffle<<<1, 32>>>(out.p);
}

static void memcpy_overruns_allocation()
{
    device_buffer<char> d(64);
    const std::vector<char> host(65);
    cudaMemcpy(d.p, host.data(), host.size(), cudaMemcpyHostToDevice);
}

static void free_inside_allocation()
{
    char *d;
    cudaMalloc((void **)&d, 64);
    cudaFree(d + 16);
}

/* ---- the driver --------------------------------------------------------------------------------------------------- */

struct child_result {
    int status;      /* as waitpid gives it */
    std::string err; /* what it wrote to stderr */
};

/* Runs body in a forked child with stderr captured: a case the emulator aborts, and the environment a case sets,
 * stay in the child, and the parent makes no CUDA call of its own. A hang ends in SIGALRM and fails its case. */
template <typename F> static child_result in_child(F body)
{
    FILE *err = tmpfile();
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(fileno(err), STDERR_FILENO);
        const struct rlimit no_core = {0, 0}; /* the aborts are expected: no core files */
        setrlimit(RLIMIT_CORE, &no_core);
        alarm(20);
        body();
        _exit(0);
    }
    child_result r = {-1, ""};
    waitpid(pid, &r.status, 0);
    rewind(err);
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, err)) > 0) r.err.append(buf, got);
    fclose(err);
    return r;
}

static std::string describe(const child_result &r)
{
    std::string s = WIFSIGNALED(r.status) ? std::string("killed by ") + strsignal(WTERMSIG(r.status))
                    : WIFEXITED(r.status) ? "exit status " + std::to_string(WEXITSTATUS(r.status))
                                          : "status " + std::to_string(r.status);
    return s + "; stderr: " + (r.err.empty() ? "(empty)" : r.err);
}

static int failures;

static void report(const char *name, bool ok, const std::string &detail)
{
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", name, ok ? "" : ": ", ok ? "" : detail.c_str());
    failures += !ok;
}

struct check {
    const char *name;
    bool (*run)();
};

struct fatal_check {
    const char *name;
    void (*run)();
    const char *phrase; /* in the emulator's message */
};

static const check checks[] = {
    {"block reduction over 256 threads is exact", block_sum_1d},
    {"block reduction over dim3(32, 8) is exact", block_sum_2d},
    {"warp shuffle reduction reaches every lane", warp_sum_reaches_every_lane},
    {"3-D grid and block indices cover every thread", grid_3d_covers_every_thread},
    {"threads that return count as arrived at __syncthreads", early_exit_counts_as_arrived},
    {"a read without a barrier misses the write in both directions", missing_barrier_shows},
    {"NULL pointer argument is accepted", null_pointer_argument_accepted},
    {"cudaMemcpy round trip keeps the data", memcpy_round_trip},
    {"cudaMemGetInfo follows cudaMalloc and cudaFree", mem_get_info_tracks_allocations},
    {"fresh device memory reads as NaN", fresh_memory_is_nan},
    {"zero grid is cudaErrorInvalidConfiguration", zero_grid_rejected},
    {"2048 threads per block is cudaErrorInvalidConfiguration", oversized_block_rejected},
    {"ZF_CUDA_EMU_MEM=1M limits cudaMalloc", memory_limit_from_env},
    {"ZF_CUDA_EMU_DEVICES=3 gives 3 devices", device_count_from_env},
    {"ZF_CUDA_EMU_DEVICES=0 gives cudaErrorNoDevice", no_device_from_env},
    {"cublasSgemm rejects lda < rows", sgemm_rejects_small_lda},
    {"cublasSgemm matches a double loop within 1e-5", sgemm_matches_double_loop},
    {"cublasSgemm under TF32 loses precision, within 2^-10", sgemm_tf32_is_tf32},
    {"TF32 rounds its operands to nearest", tf32_rounds_to_nearest},
    {"cusolverDnXpotrf sets info for a non-positive-definite matrix", potrf_reports_non_positive_definite},
};

static const fatal_check fatal[] = {
    {"kernel write one past the end", kernel_writes_past_the_end,
     "kernel write_at, block (1,0,0) thread (3,0,0): invalid access to 0 bytes past the end"},
    {"host read of device memory", host_reads_device_memory, "host code touched device memory"},
    {"host pointer passed to a kernel", kernel_gets_host_pointer, "is not device memory"},
    {"threads in different __syncthreads", threads_in_different_barriers, "threads wait in different __syncthreads"},
    {"full-mask shuffle after lanes returned", shuffle_names_exited_lanes, "a lane in the shuffle's mask has exited"},
    {"half a warp in __syncthreads, half in a shuffle", barrier_and_shuffle_deadlock, "deadlock: no thread can go on"},
    {"cudaMemcpy past the end of an allocation", memcpy_overruns_allocation, "is not inside one device allocation"},
    {"cudaFree inside an allocation", free_inside_allocation, "not the start of a live device allocation"},
};

/* Passes when the child exits 0; a failing case writes why to stderr and exits 1. */
static void run_check(const check &c)
{
    const child_result r = in_child([&] {
        if (!c.run()) {
            fputs(why, stderr);
            _exit(1);
        }
    });
    const bool ok = WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0;
    report(c.name, ok, WIFEXITED(r.status) && WEXITSTATUS(r.status) == 1 ? r.err : describe(r));
}

/* Passes when the child dies of SIGABRT having printed the phrase. */
static void run_fatal(const fatal_check &c)
{
    const child_result r = in_child(c.run);
    const bool ok = WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT && r.err.find(c.phrase) != std::string::npos;
    report(c.name, ok, std::string("want SIGABRT and \"") + c.phrase + "\", got " + describe(r));
}

int main()
{
    for (const check &c : checks) run_check(c);
    for (const fatal_check &c : fatal) run_fatal(c);
    printf("%d failure%s\n", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
