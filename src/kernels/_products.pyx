"""Matrix products for the Cython kernels, one thread's share at a time, with no BLAS call.

    abt: C (m, n) (+)= A (m, k) @ W (n, k)^T   dot products; W's rows are contiguous. Blocks of
         4 x 4 outputs keep 16 running sums in vector registers over k, so each loaded piece of
         A and W serves four products. For the input projection and the batched recurrent step.
    ab:  C (m, n) (+)= A (m, k) @ B (k, n)     row updates; B's rows are contiguous. For one or
         two rows of A (a single sequence), where dot products would spend their time summing
         vector lanes.
    transpose, row_sums: for the backward's weight gradients, which are then dot products of
         rows of dA^T with rows of x^T and h^T.
All arrays are row-major with the given leading dimensions. This module is compiled with
-fassociative-math (setup.py) so that the compiler may reorder the sums into vector lanes; it
holds no other arithmetic, so nothing else depends on that flag.
"""
from cython cimport floating

# Output columns accumulated per pass of `ab`: a local row that stays in L1.
DEF AB_BLOCK = 64
# Side of the square tiles that `transpose` copies, so both sides stay in L1.
DEF TILE = 32


cdef inline void block_4x4(Py_ssize_t k, const floating* a, Py_ssize_t lda, const floating* w,
                           Py_ssize_t ldw, floating* c, Py_ssize_t ldc,
                           bint accumulate) noexcept nogil:
    """C[0:4, 0:4] (+)= A[0:4, :k] @ W[0:4, :k]^T."""
    cdef floating s00 = 0, s01 = 0, s02 = 0, s03 = 0
    cdef floating s10 = 0, s11 = 0, s12 = 0, s13 = 0
    cdef floating s20 = 0, s21 = 0, s22 = 0, s23 = 0
    cdef floating s30 = 0, s31 = 0, s32 = 0, s33 = 0
    cdef const floating* a0 = a
    cdef const floating* a1 = a + lda
    cdef const floating* a2 = a + 2 * lda
    cdef const floating* a3 = a + 3 * lda
    cdef const floating* w0 = w
    cdef const floating* w1 = w + ldw
    cdef const floating* w2 = w + 2 * ldw
    cdef const floating* w3 = w + 3 * ldw
    cdef Py_ssize_t q
    for q in range(k):
        s00 += a0[q] * w0[q]
        s01 += a0[q] * w1[q]
        s02 += a0[q] * w2[q]
        s03 += a0[q] * w3[q]
        s10 += a1[q] * w0[q]
        s11 += a1[q] * w1[q]
        s12 += a1[q] * w2[q]
        s13 += a1[q] * w3[q]
        s20 += a2[q] * w0[q]
        s21 += a2[q] * w1[q]
        s22 += a2[q] * w2[q]
        s23 += a2[q] * w3[q]
        s30 += a3[q] * w0[q]
        s31 += a3[q] * w1[q]
        s32 += a3[q] * w2[q]
        s33 += a3[q] * w3[q]
    if accumulate:
        s00 += c[0]
        s01 += c[1]
        s02 += c[2]
        s03 += c[3]
        s10 += c[ldc]
        s11 += c[ldc + 1]
        s12 += c[ldc + 2]
        s13 += c[ldc + 3]
        s20 += c[2 * ldc]
        s21 += c[2 * ldc + 1]
        s22 += c[2 * ldc + 2]
        s23 += c[2 * ldc + 3]
        s30 += c[3 * ldc]
        s31 += c[3 * ldc + 1]
        s32 += c[3 * ldc + 2]
        s33 += c[3 * ldc + 3]
    c[0] = s00
    c[1] = s01
    c[2] = s02
    c[3] = s03
    c[ldc] = s10
    c[ldc + 1] = s11
    c[ldc + 2] = s12
    c[ldc + 3] = s13
    c[2 * ldc] = s20
    c[2 * ldc + 1] = s21
    c[2 * ldc + 2] = s22
    c[2 * ldc + 3] = s23
    c[3 * ldc] = s30
    c[3 * ldc + 1] = s31
    c[3 * ldc + 2] = s32
    c[3 * ldc + 3] = s33


cdef inline void block_1x4(Py_ssize_t k, const floating* a, const floating* w, Py_ssize_t ldw,
                           floating* c, bint accumulate) noexcept nogil:
    """C[0, 0:4] (+)= A[0, :k] @ W[0:4, :k]^T."""
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef const floating* w1 = w + ldw
    cdef const floating* w2 = w + 2 * ldw
    cdef const floating* w3 = w + 3 * ldw
    cdef Py_ssize_t q
    for q in range(k):
        s0 += a[q] * w[q]
        s1 += a[q] * w1[q]
        s2 += a[q] * w2[q]
        s3 += a[q] * w3[q]
    if accumulate:
        s0 += c[0]
        s1 += c[1]
        s2 += c[2]
        s3 += c[3]
    c[0] = s0
    c[1] = s1
    c[2] = s2
    c[3] = s3


cdef inline void dot_1x1(Py_ssize_t k, const floating* a, const floating* w, floating* c,
                         bint accumulate) noexcept nogil:
    """C[0, 0] (+)= A[0, :k] . W[0, :k]."""
    cdef floating s = 0
    cdef Py_ssize_t q
    for q in range(k):
        s += a[q] * w[q]
    c[0] = s + c[0] if accumulate else s


cdef inline void abt_impl(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                     Py_ssize_t lda, const floating* w, Py_ssize_t ldw, floating* c,
                     Py_ssize_t ldc, bint accumulate) noexcept nogil:
    cdef Py_ssize_t m4 = m - m % 4, n4 = n - n % 4
    cdef Py_ssize_t r, j
    for j in range(0, n4, 4):      # W's rows outside: four of them stay in L1 over all of A
        for r in range(0, m4, 4):
            block_4x4(k, a + r * lda, lda, w + j * ldw, ldw, c + r * ldc + j, ldc, accumulate)
        for r in range(m4, m):
            block_1x4(k, a + r * lda, w + j * ldw, ldw, c + r * ldc + j, accumulate)
    for j in range(n4, n):
        for r in range(m):
            dot_1x1(k, a + r * lda, w + j * ldw, c + r * ldc + j, accumulate)


cdef inline void ab_full_block(Py_ssize_t k, const floating* a, const floating* b,
                               Py_ssize_t ldb, floating* c, bint accumulate) noexcept nogil:
    """c[0:AB_BLOCK] (+)= a (k,) @ B[:, 0:AB_BLOCK]: `ab` for one row and one whole block, with
    constant loop bounds so that the accumulator can live in vector registers."""
    cdef floating acc[AB_BLOCK]
    cdef floating a0, a1, a2, a3
    cdef const floating *b0
    cdef Py_ssize_t j, q = 0
    for j in range(AB_BLOCK):
        acc[j] = c[j] if accumulate else 0
    while q + 4 <= k:
        a0 = a[q]
        a1 = a[q + 1]
        a2 = a[q + 2]
        a3 = a[q + 3]
        b0 = b + q * ldb
        for j in range(AB_BLOCK):
            acc[j] += a0 * b0[j] + a1 * b0[ldb + j] + a2 * b0[2 * ldb + j] + a3 * b0[3 * ldb + j]
        q += 4
    while q < k:
        a0 = a[q]
        b0 = b + q * ldb
        for j in range(AB_BLOCK):
            acc[j] += a0 * b0[j]
        q += 1
    for j in range(AB_BLOCK):
        c[j] = acc[j]


cdef inline void ab_impl(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                    Py_ssize_t lda, const floating* b, Py_ssize_t ldb, floating* c,
                    Py_ssize_t ldc, bint accumulate) noexcept nogil:
    cdef Py_ssize_t r, q, j, j0, nb
    cdef floating a0, a1, a2, a3
    cdef const floating *b0
    cdef const floating *b1
    cdef const floating *b2
    cdef const floating *b3
    cdef floating acc[AB_BLOCK]
    for r in range(m):
        j0 = 0
        while j0 + AB_BLOCK <= n:
            ab_full_block(k, a + r * lda, b + j0, ldb, c + r * ldc + j0, accumulate)
            j0 += AB_BLOCK
        while j0 < n:
            nb = n - j0
            for j in range(nb):
                acc[j] = c[r * ldc + j0 + j] if accumulate else 0
            q = 0
            while q + 4 <= k:  # four rows of B per pass: a quarter of the accumulator traffic
                a0 = a[r * lda + q]
                a1 = a[r * lda + q + 1]
                a2 = a[r * lda + q + 2]
                a3 = a[r * lda + q + 3]
                b0 = b + q * ldb + j0
                b1 = b0 + ldb
                b2 = b1 + ldb
                b3 = b2 + ldb
                for j in range(nb):
                    acc[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j]
                q += 4
            while q < k:
                a0 = a[r * lda + q]
                b0 = b + q * ldb + j0
                for j in range(nb):
                    acc[j] += a0 * b0[j]
                q += 1
            for j in range(nb):
                c[r * ldc + j0 + j] = acc[j]
            j0 += nb


cdef void abt_f(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, Py_ssize_t lda,
                const float* w, Py_ssize_t ldw, float* c, Py_ssize_t ldc,
                bint accumulate) noexcept nogil:
    abt_impl(m, n, k, a, lda, w, ldw, c, ldc, accumulate)


cdef void abt_d(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a, Py_ssize_t lda,
                const double* w, Py_ssize_t ldw, double* c, Py_ssize_t ldc,
                bint accumulate) noexcept nogil:
    abt_impl(m, n, k, a, lda, w, ldw, c, ldc, accumulate)


cdef void ab_f(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, Py_ssize_t lda,
               const float* b, Py_ssize_t ldb, float* c, Py_ssize_t ldc,
               bint accumulate) noexcept nogil:
    ab_impl(m, n, k, a, lda, b, ldb, c, ldc, accumulate)


cdef void ab_d(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a, Py_ssize_t lda,
               const double* b, Py_ssize_t ldb, double* c, Py_ssize_t ldc,
               bint accumulate) noexcept nogil:
    ab_impl(m, n, k, a, lda, b, ldb, c, ldc, accumulate)


cdef inline void transpose_impl(Py_ssize_t m, Py_ssize_t n, const floating* a, Py_ssize_t lda,
                                floating* out, Py_ssize_t ldo) noexcept nogil:
    """out (n, m) = A (m, n)^T, tile by tile."""
    cdef Py_ssize_t i0, j0, i, j
    for i0 in range(0, m, TILE):
        for j0 in range(0, n, TILE):
            for j in range(j0, min(j0 + TILE, n)):
                for i in range(i0, min(i0 + TILE, m)):
                    out[j * ldo + i] = a[i * lda + j]


cdef inline void row_sums_impl(Py_ssize_t m, Py_ssize_t k, const floating* a, Py_ssize_t lda,
                               floating* out) noexcept nogil:
    """out (m,) = A (m, k) summed over each row."""
    cdef Py_ssize_t r, q
    cdef floating s
    for r in range(m):
        s = 0
        for q in range(k):
            s += a[r * lda + q]
        out[r] = s


cdef void transpose_f(Py_ssize_t m, Py_ssize_t n, const float* a, Py_ssize_t lda, float* out,
                      Py_ssize_t ldo) noexcept nogil:
    transpose_impl(m, n, a, lda, out, ldo)


cdef void transpose_d(Py_ssize_t m, Py_ssize_t n, const double* a, Py_ssize_t lda,
                      double* out, Py_ssize_t ldo) noexcept nogil:
    transpose_impl(m, n, a, lda, out, ldo)


cdef void row_sums_f(Py_ssize_t m, Py_ssize_t k, const float* a, Py_ssize_t lda,
                     float* out) noexcept nogil:
    row_sums_impl(m, k, a, lda, out)


cdef void row_sums_d(Py_ssize_t m, Py_ssize_t k, const double* a, Py_ssize_t lda,
                     double* out) noexcept nogil:
    row_sums_impl(m, k, a, lda, out)
