# Matrix products for the recurrent kernels, one thread's share at a time (see _products.pyx).
# Built as their own module (_products.pyx) with reassociation allowed, so that the compiler
# vectorises the dot products; called per step from inside the kernels' OpenMP regions, where
# a BLAS call would bring its own thread pool. `abt` and `ab` pick the float32 or float64 one.
from cython cimport floating

cdef void abt_f(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, Py_ssize_t lda,
                const float* w, Py_ssize_t ldw, float* c, Py_ssize_t ldc,
                bint accumulate) noexcept nogil
cdef void abt_d(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a, Py_ssize_t lda,
                const double* w, Py_ssize_t ldw, double* c, Py_ssize_t ldc,
                bint accumulate) noexcept nogil
cdef void ab_f(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, Py_ssize_t lda,
               const float* b, Py_ssize_t ldb, float* c, Py_ssize_t ldc,
               bint accumulate) noexcept nogil
cdef void ab_d(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a, Py_ssize_t lda,
               const double* b, Py_ssize_t ldb, double* c, Py_ssize_t ldc,
               bint accumulate) noexcept nogil

cdef void transpose_f(Py_ssize_t m, Py_ssize_t n, const float* a, Py_ssize_t lda, float* out,
                      Py_ssize_t ldo) noexcept nogil
cdef void transpose_d(Py_ssize_t m, Py_ssize_t n, const double* a, Py_ssize_t lda,
                      double* out, Py_ssize_t ldo) noexcept nogil
cdef void row_sums_f(Py_ssize_t m, Py_ssize_t k, const float* a, Py_ssize_t lda,
                     float* out) noexcept nogil
cdef void row_sums_d(Py_ssize_t m, Py_ssize_t k, const double* a, Py_ssize_t lda,
                     double* out) noexcept nogil


cdef inline void abt(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                     Py_ssize_t lda, const floating* w, Py_ssize_t ldw, floating* c,
                     Py_ssize_t ldc, bint accumulate) noexcept nogil:
    """C (m, n) (+)= A (m, k) @ W (n, k)^T, row-major: dot products with W's rows."""
    if floating is float:
        abt_f(m, n, k, a, lda, w, ldw, c, ldc, accumulate)
    else:
        abt_d(m, n, k, a, lda, w, ldw, c, ldc, accumulate)


cdef inline void ab(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                    Py_ssize_t lda, const floating* b, Py_ssize_t ldb, floating* c,
                    Py_ssize_t ldc, bint accumulate) noexcept nogil:
    """C (m, n) (+)= A (m, k) @ B (k, n), row-major: updates with B's rows (for m of 1 or 2)."""
    if floating is float:
        ab_f(m, n, k, a, lda, b, ldb, c, ldc, accumulate)
    else:
        ab_d(m, n, k, a, lda, b, ldb, c, ldc, accumulate)


cdef inline void transpose(Py_ssize_t m, Py_ssize_t n, const floating* a, Py_ssize_t lda,
                           floating* out, Py_ssize_t ldo) noexcept nogil:
    """out (n, m) = A (m, n)^T, row-major."""
    if floating is float:
        transpose_f(m, n, a, lda, out, ldo)
    else:
        transpose_d(m, n, a, lda, out, ldo)


cdef inline void row_sums(Py_ssize_t m, Py_ssize_t k, const floating* a, Py_ssize_t lda,
                          floating* out) noexcept nogil:
    """out (m,) = the sums of the rows of A (m, k)."""
    if floating is float:
        row_sums_f(m, k, a, lda, out)
    else:
        row_sums_d(m, k, a, lda, out)
