/* CUDA emulation: cuBLAS (GEMM, SYRK, TRSM, GemmEx with fp16/bf16 operands and TF32) and cuSOLVER (POTRF, TRTRI) over OpenBLAS and LAPACK, with cuBLAS's argument checks. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cusolverDn.h>

#include <cblas.h>
#include <lapacke.h>
#include <stdint.h>
#include <string.h>

#include <vector>

struct zf_emu_cublas {
    cudaStream_t stream;
    cublasMath_t math;
    cublasPointerMode_t pointer_mode;
};

struct zf_emu_cusolver {
    cudaStream_t stream;
};

struct zf_emu_cusolver_params {
    int unused;
};

namespace {

/* The library call in messages, and device memory open for its duration. */
struct device_call {
    explicit device_call(const char *name)
    {
        zf_emu_set_call(name);
        zf_emu_device_open();
    }
    ~device_call()
    {
        zf_emu_device_close();
        zf_emu_set_call(NULL);
    }
};

/* A column-major rows × cols operand with leading dimension ld must lie in one device allocation. */
void check_matrix(const void *p, int64_t rows, int64_t cols, int64_t ld, size_t elem, const char *what)
{
    if (rows <= 0 || cols <= 0) return;
    zf_emu_check_device_range(p, (size_t)((cols - 1) * ld + rows) * elem, what);
}

int64_t max1(int64_t v) { return v > 1 ? v : 1; }

/* TF32 keeps 10 of fp32's 23 mantissa bits, rounded to nearest with ties away from zero (cvt.rna.tf32.f32):
 * cuBLAS on an H100 gave TF32 errors as small as fp16 operands' and 8x below truncation's. */
float to_tf32(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & ~0x1fffu;
    memcpy(&v, &u, sizeof v);
    return v;
}

bool half_type(cudaDataType t) { return t == CUDA_R_16F || t == CUDA_R_16BF; }

size_t type_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : t == CUDA_R_64F ? 8 : half_type(t) ? 2 : 0; }

/* The operand as packed fp32 (ld = rows), widened from half types and rounded to TF32 when asked. */
std::vector<float> packed_f32(const void *p, cudaDataType t, int64_t rows, int64_t cols, int64_t ld, bool tf32)
{
    std::vector<float> out((size_t)(rows * cols));
    for (int64_t c = 0; c < cols; c++)
        for (int64_t r = 0; r < rows; r++) {
            int64_t i = c * ld + r;
            float v;
            if (t == CUDA_R_16F) v = __half2float(((const __half *)p)[i]);
            else if (t == CUDA_R_16BF) v = __bfloat162float(((const __nv_bfloat16 *)p)[i]);
            else v = ((const float *)p)[i];
            out[(size_t)(c * rows + r)] = tf32 ? to_tf32(v) : v;
        }
    return out;
}

template <typename T> T scalar(const cublasHandle_t h, const T *p, const char *what)
{
    if (h->pointer_mode == CUBLAS_POINTER_MODE_DEVICE) zf_emu_check_device_range(p, sizeof *p, what);
    return *p;
}

CBLAS_TRANSPOSE cblas_op(cublasOperation_t op) { return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans; }

/* cuBLAS's INVALID_VALUE rules for C = α·op(A)·op(B) + β·C, then the operands' memory. */
cublasStatus_t check_gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *A, int lda,
                          size_t asize, const void *B, int ldb, size_t bsize, const void *C, int ldc, size_t csize)
{
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    const int64_t ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
    const int64_t br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
    if (lda < max1(ar) || ldb < max1(br) || ldc < max1(m)) return CUBLAS_STATUS_INVALID_VALUE;
    check_matrix(A, ar, ac, lda, asize, "GEMM operand A");
    check_matrix(B, br, bc, ldb, bsize, "GEMM operand B");
    check_matrix(C, m, n, ldc, csize, "GEMM result C");
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t check_syrk(cublasFillMode_t uplo, cublasOperation_t trans, int n, int k, const void *A, int lda,
                          const void *C, int ldc, size_t elem)
{
    if ((uplo != CUBLAS_FILL_MODE_LOWER && uplo != CUBLAS_FILL_MODE_UPPER) ||
        (trans != CUBLAS_OP_N && trans != CUBLAS_OP_T) || n < 0 || k < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    const int64_t ar = trans == CUBLAS_OP_N ? n : k, ac = trans == CUBLAS_OP_N ? k : n;
    if (lda < max1(ar) || ldc < max1(n)) return CUBLAS_STATUS_INVALID_VALUE;
    check_matrix(A, ar, ac, lda, elem, "SYRK operand A");
    check_matrix(C, n, n, ldc, elem, "SYRK result C");
    return CUBLAS_STATUS_SUCCESS;
}

} /* namespace */

extern "C" {

cublasStatus_t cublasCreate(cublasHandle_t *handle)
{
    *handle = new zf_emu_cublas{NULL, CUBLAS_DEFAULT_MATH, CUBLAS_POINTER_MODE_HOST};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle)
{
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream)
{
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t *mode)
{
    *mode = handle->math;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode(cublasHandle_t handle, cublasPointerMode_t mode)
{
    handle->pointer_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetPointerMode(cublasHandle_t handle, cublasPointerMode_t *mode)
{
    *mode = handle->pointer_mode;
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "the operation completed successfully";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    }
    return "unknown error";
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc)
{
    device_call call("cublasSgemm");
    cublasStatus_t s = check_gemm(ta, tb, m, n, k, A, lda, 4, B, ldb, 4, C, ldc, 4);
    if (s != CUBLAS_STATUS_SUCCESS || m == 0 || n == 0) return s;
    const float a = scalar(h, alpha, "alpha"), b = scalar(h, beta, "beta");
    if (h->math == CUBLAS_TF32_TENSOR_OP_MATH) {
        const int64_t ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
        const int64_t br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
        std::vector<float> a32 = packed_f32(A, CUDA_R_32F, ar, ac, lda, true);
        std::vector<float> b32 = packed_f32(B, CUDA_R_32F, br, bc, ldb, true);
        cblas_sgemm(CblasColMajor, cblas_op(ta), cblas_op(tb), m, n, k, a, a32.data(), (int)max1(ar), b32.data(),
                    (int)max1(br), b, C, ldc);
    } else {
        cblas_sgemm(CblasColMajor, cblas_op(ta), cblas_op(tb), m, n, k, a, A, lda, B, ldb, b, C, ldc);
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSsyrk(cublasHandle_t h, cublasFillMode_t uplo, cublasOperation_t trans, int n, int k,
                           const float *alpha, const float *A, int lda, const float *beta, float *C, int ldc)
{
    device_call call("cublasSsyrk");
    cublasStatus_t s = check_syrk(uplo, trans, n, k, A, lda, C, ldc, 4);
    if (s != CUBLAS_STATUS_SUCCESS || n == 0) return s;
    const float a = scalar(h, alpha, "alpha"), b = scalar(h, beta, "beta");
    const CBLAS_UPLO u = uplo == CUBLAS_FILL_MODE_UPPER ? CblasUpper : CblasLower;
    if (h->math == CUBLAS_TF32_TENSOR_OP_MATH) {
        const int64_t ar = trans == CUBLAS_OP_N ? n : k, ac = trans == CUBLAS_OP_N ? k : n;
        std::vector<float> a32 = packed_f32(A, CUDA_R_32F, ar, ac, lda, true);
        cblas_ssyrk(CblasColMajor, u, cblas_op(trans), n, k, a, a32.data(), (int)max1(ar), b, C, ldc);
    } else {
        cblas_ssyrk(CblasColMajor, u, cblas_op(trans), n, k, a, A, lda, b, C, ldc);
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasStrsm(cublasHandle_t h, cublasSideMode_t side, cublasFillMode_t uplo, cublasOperation_t trans,
                           cublasDiagType_t diag, int m, int n, const float *alpha, const float *A, int lda, float *B,
                           int ldb)
{
    device_call call("cublasStrsm");
    const int64_t k = side == CUBLAS_SIDE_LEFT ? m : n;
    if ((side != CUBLAS_SIDE_LEFT && side != CUBLAS_SIDE_RIGHT) ||
        (uplo != CUBLAS_FILL_MODE_LOWER && uplo != CUBLAS_FILL_MODE_UPPER) ||
        (trans != CUBLAS_OP_N && trans != CUBLAS_OP_T) || (diag != CUBLAS_DIAG_NON_UNIT && diag != CUBLAS_DIAG_UNIT) ||
        m < 0 || n < 0 || lda < max1(k) || ldb < max1(m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    check_matrix(A, k, k, lda, 4, "TRSM triangle A");
    check_matrix(B, m, n, ldb, 4, "TRSM right-hand side B");
    cblas_strsm(CblasColMajor, side == CUBLAS_SIDE_LEFT ? CblasLeft : CblasRight,
                uplo == CUBLAS_FILL_MODE_UPPER ? CblasUpper : CblasLower, cblas_op(trans),
                diag == CUBLAS_DIAG_UNIT ? CblasUnit : CblasNonUnit, m, n, scalar(h, alpha, "alpha"), A, lda, B, ldb);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDsyrk(cublasHandle_t h, cublasFillMode_t uplo, cublasOperation_t trans, int n, int k,
                           const double *alpha, const double *A, int lda, const double *beta, double *C, int ldc)
{
    device_call call("cublasDsyrk");
    cublasStatus_t s = check_syrk(uplo, trans, n, k, A, lda, C, ldc, 8);
    if (s != CUBLAS_STATUS_SUCCESS || n == 0) return s;
    cblas_dsyrk(CblasColMajor, uplo == CUBLAS_FILL_MODE_UPPER ? CblasUpper : CblasLower, cblas_op(trans), n, k,
                scalar(h, alpha, "alpha"), A, lda, scalar(h, beta, "beta"), C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t)
{
    device_call call("cublasGemmEx");
    /* the combinations zfold uses: fp32, fp16 or bf16 operands (both alike), fp32 results and accumulation */
    const bool f32_compute = compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_FAST_TF32 ||
                             compute == CUBLAS_COMPUTE_32F_PEDANTIC;
    if (Atype != Btype || Ctype != CUDA_R_32F || !f32_compute || !(Atype == CUDA_R_32F || half_type(Atype)))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (compute == CUBLAS_COMPUTE_32F_FAST_TF32 && Atype != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    cublasStatus_t s = check_gemm(ta, tb, m, n, k, A, lda, type_size(Atype), B, ldb, type_size(Btype), C, ldc, 4);
    if (s != CUBLAS_STATUS_SUCCESS || m == 0 || n == 0) return s;
    const float a = scalar(h, (const float *)alpha, "alpha"), b = scalar(h, (const float *)beta, "beta");
    /* TF32 where the compute type asks for it, or plain fp32 compute under the TF32 math mode */
    const bool tf32 = Atype == CUDA_R_32F && (compute == CUBLAS_COMPUTE_32F_FAST_TF32 ||
                                              (compute == CUBLAS_COMPUTE_32F && h->math == CUBLAS_TF32_TENSOR_OP_MATH));
    const int64_t ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
    const int64_t br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
    std::vector<float> a32 = packed_f32(A, Atype, ar, ac, lda, tf32);
    std::vector<float> b32 = packed_f32(B, Btype, br, bc, ldb, tf32);
    cblas_sgemm(CblasColMajor, cblas_op(ta), cblas_op(tb), m, n, k, a, a32.data(), (int)max1(ar), b32.data(),
                (int)max1(br), b, (float *)C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- cuSOLVER ---------------------------------------------------------------------------------------------------- */

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t *handle)
{
    *handle = new zf_emu_cusolver{NULL};
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t handle)
{
    delete handle;
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t handle, cudaStream_t stream)
{
    handle->stream = stream;
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t *params)
{
    *params = new zf_emu_cusolver_params{0};
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t params)
{
    delete params;
    return CUSOLVER_STATUS_SUCCESS;
}

} /* extern "C" */

namespace {

/* Device workspace the emulated factorizations ask for: none is used, but callers must pass what they were told. */
size_t solver_workspace(int64_t n) { return (size_t)(n > 0 ? n : 1) * 4; }

bool solver_args_ok(cublasFillMode_t uplo, int64_t n, cudaDataType t, int64_t lda)
{
    return (uplo == CUBLAS_FILL_MODE_UPPER || uplo == CUBLAS_FILL_MODE_LOWER) && n >= 0 && lda >= max1(n) &&
           (t == CUDA_R_32F || t == CUDA_R_64F);
}

void check_solver_buffers(int64_t n, void *dev, size_t dev_bytes, int *info)
{
    if (dev_bytes < solver_workspace(n))
        zf_emu_fatal("device workspace of %zu bytes, fewer than the %zu the size query gave", dev_bytes,
                     solver_workspace(n));
    zf_emu_check_device_range(dev, dev_bytes, "device workspace");
    zf_emu_check_device_range(info, sizeof *info, "info");
}

} /* namespace */

extern "C" {

cusolverStatus_t cusolverDnXpotrf_bufferSize(cusolverDnHandle_t, cusolverDnParams_t, cublasFillMode_t uplo, int64_t n,
                                             cudaDataType dataTypeA, const void *, int64_t lda,
                                             cudaDataType computeType, size_t *dev_bytes, size_t *host_bytes)
{
    if (!solver_args_ok(uplo, n, dataTypeA, lda) || computeType != dataTypeA) return CUSOLVER_STATUS_INVALID_VALUE;
    *dev_bytes = solver_workspace(n);
    *host_bytes = 0;
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXpotrf(cusolverDnHandle_t, cusolverDnParams_t, cublasFillMode_t uplo, int64_t n,
                                  cudaDataType dataTypeA, void *A, int64_t lda, cudaDataType computeType, void *dev,
                                  size_t dev_bytes, void *, size_t, int *info)
{
    device_call call("cusolverDnXpotrf");
    if (!solver_args_ok(uplo, n, dataTypeA, lda) || computeType != dataTypeA) return CUSOLVER_STATUS_INVALID_VALUE;
    check_solver_buffers(n, dev, dev_bytes, info);
    check_matrix(A, n, n, lda, type_size(dataTypeA), "POTRF matrix A");
    const char u = uplo == CUBLAS_FILL_MODE_UPPER ? 'U' : 'L';
    /* the _work forms: no NaN scan of the input, as on the device */
    *info = n == 0 ? 0
            : dataTypeA == CUDA_R_32F ? (int)LAPACKE_spotrf_work(LAPACK_COL_MAJOR, u, n, (float *)A, lda)
                                      : (int)LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, u, n, (double *)A, lda);
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXpotrs(cusolverDnHandle_t, cusolverDnParams_t, cublasFillMode_t uplo, int64_t n,
                                  int64_t nrhs, cudaDataType dataTypeA, const void *A, int64_t lda,
                                  cudaDataType dataTypeB, void *B, int64_t ldb, int *info)
{
    device_call call("cusolverDnXpotrs");
    if (!solver_args_ok(uplo, n, dataTypeA, lda) || dataTypeB != dataTypeA || nrhs < 0 || ldb < max1(n))
        return CUSOLVER_STATUS_INVALID_VALUE;
    zf_emu_check_device_range(info, sizeof *info, "info");
    check_matrix(A, n, n, lda, type_size(dataTypeA), "POTRS factor A");
    check_matrix(B, n, nrhs, ldb, type_size(dataTypeB), "POTRS right-hand sides B");
    const char u = uplo == CUBLAS_FILL_MODE_UPPER ? 'U' : 'L';
    *info = n == 0 || nrhs == 0 ? 0
            : dataTypeA == CUDA_R_32F
                ? (int)LAPACKE_spotrs_work(LAPACK_COL_MAJOR, u, n, nrhs, (const float *)A, lda, (float *)B, ldb)
                : (int)LAPACKE_dpotrs_work(LAPACK_COL_MAJOR, u, n, nrhs, (const double *)A, lda, (double *)B, ldb);
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXtrtri_bufferSize(cusolverDnHandle_t, cublasFillMode_t uplo, cublasDiagType_t diag,
                                             int64_t n, cudaDataType dataTypeA, void *, int64_t lda,
                                             size_t *dev_bytes, size_t *host_bytes)
{
    if (!solver_args_ok(uplo, n, dataTypeA, lda) || (diag != CUBLAS_DIAG_NON_UNIT && diag != CUBLAS_DIAG_UNIT))
        return CUSOLVER_STATUS_INVALID_VALUE;
    *dev_bytes = solver_workspace(n);
    *host_bytes = 0;
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXtrtri(cusolverDnHandle_t, cublasFillMode_t uplo, cublasDiagType_t diag, int64_t n,
                                  cudaDataType dataTypeA, void *A, int64_t lda, void *dev, size_t dev_bytes, void *,
                                  size_t, int *info)
{
    device_call call("cusolverDnXtrtri");
    if (!solver_args_ok(uplo, n, dataTypeA, lda) || (diag != CUBLAS_DIAG_NON_UNIT && diag != CUBLAS_DIAG_UNIT))
        return CUSOLVER_STATUS_INVALID_VALUE;
    check_solver_buffers(n, dev, dev_bytes, info);
    check_matrix(A, n, n, lda, type_size(dataTypeA), "TRTRI matrix A");
    const char u = uplo == CUBLAS_FILL_MODE_UPPER ? 'U' : 'L', d = diag == CUBLAS_DIAG_UNIT ? 'U' : 'N';
    *info = n == 0 ? 0
            : dataTypeA == CUDA_R_32F ? (int)LAPACKE_strtri_work(LAPACK_COL_MAJOR, u, d, n, (float *)A, lda)
                                      : (int)LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, u, d, n, (double *)A, lda);
    return CUSOLVER_STATUS_SUCCESS;
}

} /* extern "C" */
