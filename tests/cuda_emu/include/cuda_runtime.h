/* CUDA emulation for tests on machines without a GPU: the runtime API subset zfold uses, with device memory in
 * host pages that host code may not touch, synchronous streams, and (from C++) the kernel dialect. */
#ifndef ZF_CUDA_EMU_RUNTIME_H
#define ZF_CUDA_EMU_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "library_types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
} cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01

typedef struct zf_emu_stream *cudaStream_t;
typedef struct zf_emu_event *cudaEvent_t;

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor;
    int multiProcessorCount;
    int maxThreadsPerBlock;
    int warpSize;
};
typedef struct cudaDeviceProp cudaDeviceProp;

const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);

cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);

cudaError_t cudaMalloc(void **dev, size_t bytes);
cudaError_t cudaFree(void *dev);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemset(void *dev, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dev, int value, size_t bytes, cudaStream_t stream);

cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);

cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);

/* For the emulated libraries: fails the test with a message unless [p, p + bytes) lies in one live device
 * allocation (`what` names the argument); a no-op for bytes = 0. */
void zf_emu_check_device_range(const void *p, size_t bytes, const char *what);
/* Device memory is readable and writable between open and close (nesting allowed), inaccessible otherwise. */
void zf_emu_device_open(void);
void zf_emu_device_close(void);
/* Adds to the profile ZF_CUDA_EMU_PROFILE=1 prints at exit (no-op otherwise). */
void zf_emu_profile(const char *what, double seconds, uint64_t threads);
/* Names the library call now running (NULL when it returns), for messages and the profile. */
void zf_emu_set_call(const char *name);
/* Reports the failure (with the kernel and thread when inside one) and aborts: the emulator's sanitizer exit. */
void zf_emu_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#ifdef __cplusplus
}
#include "cuda_emu_device.h"
#endif

#endif
