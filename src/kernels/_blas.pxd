# Row-major matrix products on top of scipy.linalg.cython_blas (column-major Fortran BLAS),
# written once for float32 and float64 with Cython's `floating` fused type.
# A row-major (m, n) matrix is a column-major (n, m) one, so each row-major product
# C = A op B becomes the column-major product C^T = op(B)^T A^T: swap the operands.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void gemm_nn(int m, int n, int k, floating alpha,
                         const floating* a, int lda, const floating* b, int ldb,
                         floating beta, floating* c, int ldc) noexcept nogil:
    """C (m, n) = alpha * A (m, k) @ B (k, n) + beta * C; row-major, leading dims lda, ldb, ldc."""
    cdef char no_trans = b'N'
    if floating is float:
        sgemm(&no_trans, &no_trans, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&no_trans, &no_trans, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)


cdef inline void gemm_tn(int m, int n, int k, floating alpha,
                         const floating* a, int lda, const floating* b, int ldb,
                         floating beta, floating* c, int ldc) noexcept nogil:
    """C (m, n) = alpha * A (k, m)^T @ B (k, n) + beta * C; row-major, leading dims lda, ldb, ldc."""
    cdef char no_trans = b'N'
    cdef char trans = b'T'
    if floating is float:
        sgemm(&no_trans, &trans, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&no_trans, &trans, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)
