/* CUDA emulation: the kernel dialect in C++ (qualifiers, built-in indices, barriers, warp shuffles, rounding
 * intrinsics) and the launch that kernel<<<grid, block, smem, stream>>>(args) is rewritten into. */
#ifndef ZF_CUDA_EMU_DEVICE_H
#define ZF_CUDA_EMU_DEVICE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
/* Blocks run one after another, so one static copy per function is each block's shared memory. */
#define __shared__ static
#define __restrict__ __restrict

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

/* Set by the scheduler for the thread it runs. */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

extern "C" {
void zf_emu_syncthreads(const char *file, int line);
/* Exchanges `bytes` of *v within the warp; returns when every lane in mask has arrived. */
void zf_emu_shfl_xor(unsigned mask, void *v, size_t bytes, int lane_mask, int width, const char *file, int line);
}

#define __syncthreads() zf_emu_syncthreads(__FILE__, __LINE__)
#define __shfl_xor_sync(mask, v, lane_mask, ...) zf_emu_shfl_xor_value((mask), (v), (lane_mask), __FILE__, __LINE__)

template <typename T>
static inline T zf_emu_shfl_xor_value(unsigned mask, T v, int lane_mask, const char *file, int line)
{
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffles move up to 8 bytes");
    zf_emu_shfl_xor(mask, &v, sizeof v, lane_mask, 32, file, line);
    return v;
}

/* One thread runs at a time: read-modify-write needs no lock. */
template <typename T> static inline T atomicMin(T *p, T v)
{
    T old = *p;
    if (v < old) *p = v;
    return old;
}
template <typename T> static inline T atomicAdd(T *p, T v)
{
    T old = *p;
    *p = old + v;
    return old;
}

/* Correctly rounded single operations: the build turns FMA contraction off, so plain operators are exactly these. */
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }

namespace zf_emu {

struct launch_config {
    dim3 grid, block;
    size_t shared_bytes;
    void *stream;
    launch_config(dim3 g, dim3 b, size_t s = 0, void *st = nullptr) : grid(g), block(b), shared_bytes(s), stream(st) {}
};

extern "C" void zf_emu_run_grid(const char *kernel, const launch_config *cfg, void (*thread_body)(void *), void *ctx);
extern "C" void zf_emu_check_kernel_pointer(const char *kernel, int arg, const void *p);

template <typename T> void check_argument(const char *kernel, int arg, const T &v)
{
    if constexpr (std::is_pointer<T>::value) zf_emu_check_kernel_pointer(kernel, arg, (const void *)v);
}

template <typename... P> struct launch {
    void (*kernel)(P...);
    const char *name;
    launch_config cfg;

    /* Parameters of the kernel's own types: arguments convert as in a call (NULL included). */
    void operator()(P... args) const
    {
        std::tuple<P...> params(args...);
        check_arguments(params, std::index_sequence_for<P...>{});
        struct body {
            void (*kernel)(P...);
            std::tuple<P...> *params;
            static void run(void *self)
            {
                body *b = static_cast<body *>(self);
                std::apply(b->kernel, *b->params); /* every thread gets its own copies of the parameters */
            }
        } b{kernel, &params};
        zf_emu_run_grid(name, &cfg, &body::run, &b);
    }

  private:
    template <size_t... I> void check_arguments(const std::tuple<P...> &t, std::index_sequence<I...>) const
    {
        (check_argument(name, (int)I, std::get<I>(t)), ...);
    }
};

template <typename... P> launch<P...> make_launch(void (*kernel)(P...), const char *name, launch_config cfg)
{
    return launch<P...>{kernel, name, cfg};
}

} /* namespace zf_emu */

#endif
