# The per-step matrix product of the recurrent kernels: a BLAS call for a real batch, and for a
# batch of one or two rows a blocked matrix-vector loop, which costs less than the BLAS call.
from cython cimport floating

from _blas cimport gemm_nn

# At most this many rows: the loop, not BLAS.
DEF SMALL_ROWS = 2
# Outputs per block of the loop: a local accumulator that stays in L1 (or registers).
DEF BLOCK = 64


cdef inline void matmul(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                        const floating* b, floating beta, floating* c) noexcept nogil:
    """C (m, n) = A (m, k) @ B (k, n) + beta * C, all row-major and contiguous; beta is 0 or 1."""
    cdef Py_ssize_t r, q, j, j0, nb
    cdef floating a0, a1, a2, a3
    cdef const floating *b0
    cdef const floating *b1
    cdef const floating *b2
    cdef const floating *b3
    cdef floating acc[BLOCK]
    if m > SMALL_ROWS:
        gemm_nn(<int>m, <int>n, <int>k, 1, a, <int>k, b, <int>n, beta, c, <int>n)
        return
    for r in range(m):
        j0 = 0
        while j0 < n:
            nb = min(BLOCK, n - j0)
            for j in range(nb):
                acc[j] = c[r * n + j0 + j] if beta != 0 else 0
            q = 0
            while q + 4 <= k:  # four rows of B per pass: a quarter of the accumulator traffic
                a0 = a[r * k + q]
                a1 = a[r * k + q + 1]
                a2 = a[r * k + q + 2]
                a3 = a[r * k + q + 3]
                b0 = b + q * n + j0
                b1 = b0 + n
                b2 = b1 + n
                b3 = b2 + n
                for j in range(nb):
                    acc[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j]
                q += 4
            while q < k:
                a0 = a[r * k + q]
                b0 = b + q * n + j0
                for j in range(nb):
                    acc[j] += a0 * b0[j]
                q += 1
            for j in range(nb):
                c[r * n + j0 + j] = acc[j]
            j0 += nb
