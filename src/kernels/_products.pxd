# Matrix products for the recurrent kernels' time loops, for one thread's block of columns.
# Built as their own module (_products.pyx) with reassociation allowed, so that the compiler
# vectorises the dot products; called per step from inside the kernels' OpenMP regions, where
# a BLAS call would bring its own thread pool.

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
