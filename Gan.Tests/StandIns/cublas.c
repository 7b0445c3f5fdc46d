/* A stand-in for libcublas.so.12 (the tests build it with cc): the five entry points the ILGPU
 * backend binds, computed with naive loops on host pointers, with cuBLAS's documented
 * column-major semantics (cuBLAS Library User Guide, cublas<t>gemm and
 * cublas<t>gemmStridedBatched):
 *   C = alpha op(A) op(B) + beta C, op(A) m x k, op(B) k x n, C m x n, all column-major;
 *   element (i, j) of a matrix X with leading dimension ld is X[i + j ld];
 *   op N: A is m x k (lda >= max(1, m)); op T or C: A is k x m (lda >= max(1, k)); B likewise
 *   with k x n / n x k (ldb >= max(1, k) / max(1, n)); ldc >= max(1, m);
 *   beta == 0: C is not read (it may hold NaN);
 *   batch i reads A + i strideA, B + i strideB and writes C + i strideC.
 * Invalid arguments give CUBLAS_STATUS_INVALID_VALUE (7) as cuBLAS does. The counters and the
 * status overrides below are for the tests. */
#include <stdlib.h>

typedef struct standin_context { int magic; void *stream; } *cublasHandle_t;

enum { SUCCESS = 0, NOT_INITIALIZED = 1, INVALID_VALUE = 7 };
enum { OP_N = 0, OP_T = 1, OP_C = 2 };
#define MAGIC 0x5eed

int standin_create_status = 0; /* cublasCreate_v2 returns this when not 0 */
int standin_gemm_status = 0;   /* every gemm returns this when not 0 */
int standin_wrong_by = 0;      /* added to every element a gemm writes (a broken library) */
int standin_sgemm_calls = 0;
int standin_batched_calls = 0;
int standin_handles = 0;       /* handles alive */

int cublasCreate_v2(cublasHandle_t *handle)
{
    if (standin_create_status != 0) return standin_create_status;
    if (handle == NULL) return INVALID_VALUE;
    *handle = malloc(sizeof(struct standin_context));
    (*handle)->magic = MAGIC;
    (*handle)->stream = NULL;
    standin_handles++;
    return SUCCESS;
}

int cublasDestroy_v2(cublasHandle_t handle)
{
    if (handle == NULL || handle->magic != MAGIC) return NOT_INITIALIZED;
    handle->magic = 0;
    free(handle);
    standin_handles--;
    return SUCCESS;
}

int cublasSetStream_v2(cublasHandle_t handle, void *stream)
{
    if (handle == NULL || handle->magic != MAGIC) return NOT_INITIALIZED;
    handle->stream = stream;
    return SUCCESS;
}

static int at_least_one(int x) { return x < 1 ? 1 : x; }

static int check(cublasHandle_t handle, int transa, int transb, int m, int n, int k, int lda, int ldb, int ldc)
{
    if (handle == NULL || handle->magic != MAGIC) return NOT_INITIALIZED;
    if (transa < OP_N || transa > OP_C || transb < OP_N || transb > OP_C) return INVALID_VALUE;
    if (m < 0 || n < 0 || k < 0) return INVALID_VALUE;
    if (lda < at_least_one(transa == OP_N ? m : k)) return INVALID_VALUE;
    if (ldb < at_least_one(transb == OP_N ? k : n)) return INVALID_VALUE;
    if (ldc < at_least_one(m)) return INVALID_VALUE;
    return standin_gemm_status;
}

static void gemm(int transa, int transb, int m, int n, int k, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++)
        {
            float s = 0.0f;
            for (int p = 0; p < k; p++)
            {
                float a = transa == OP_N ? A[i + (long)p * lda] : A[p + (long)i * lda];
                float b = transb == OP_N ? B[p + (long)j * ldb] : B[j + (long)p * ldb];
                s += a * b;
            }
            float *c = &C[i + (long)j * ldc];
            *c = (beta == 0.0f ? alpha * s : alpha * s + beta * *c) + (float)standin_wrong_by;
        }
}

int cublasSgemm_v2(cublasHandle_t handle, int transa, int transb, int m, int n, int k,
                   const float *alpha, const float *A, int lda, const float *B, int ldb,
                   const float *beta, float *C, int ldc)
{
    int status = check(handle, transa, transb, m, n, k, lda, ldb, ldc);
    if (status != SUCCESS) return status;
    standin_sgemm_calls++;
    gemm(transa, transb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
    return SUCCESS;
}

int cublasSgemmStridedBatched(cublasHandle_t handle, int transa, int transb, int m, int n, int k,
                              const float *alpha, const float *A, int lda, long long strideA,
                              const float *B, int ldb, long long strideB, const float *beta,
                              float *C, int ldc, long long strideC, int batchCount)
{
    int status = check(handle, transa, transb, m, n, k, lda, ldb, ldc);
    if (status != SUCCESS) return status;
    if (batchCount < 0) return INVALID_VALUE;
    standin_batched_calls++;
    for (int i = 0; i < batchCount; i++)
        gemm(transa, transb, m, n, k, *alpha, A + i * strideA, lda, B + i * strideB, ldb, *beta,
             C + i * strideC, ldc);
    return SUCCESS;
}
