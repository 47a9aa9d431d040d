# The matrix products of the Cython kernels: _gemm.h's packed-panel micro-kernel (C with GCC
# vector extensions), declared for Cython, with fused dispatchers that pick the float32 or
# float64 version. Each kernel packs a weight matrix once per call (`pack`) and then runs
# `gemm` on the packed form at every step, from inside its OpenMP region: no BLAS call, so no
# second thread pool.
from cython cimport floating
from libc.stdint cimport int64_t

cdef extern from "_gemm.h" nogil:
    Py_ssize_t fl_panel_width_f()
    Py_ssize_t fl_panel_width_d()
    Py_ssize_t fl_packed_length_f(Py_ssize_t k, Py_ssize_t n)
    Py_ssize_t fl_packed_length_d(Py_ssize_t k, Py_ssize_t n)
    void fl_pack_f(Py_ssize_t k, Py_ssize_t n, const float* b, Py_ssize_t brs, Py_ssize_t bcs,
                   float* out, Py_ssize_t panel_stride)
    void fl_pack_d(Py_ssize_t k, Py_ssize_t n, const double* b, Py_ssize_t brs,
                   Py_ssize_t bcs, double* out, Py_ssize_t panel_stride)
    void fl_gemm_f(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, Py_ssize_t ars,
                   Py_ssize_t acs, const float* packed, float* c, Py_ssize_t ldc,
                   int accumulate)
    void fl_gemm_d(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a,
                   Py_ssize_t ars, Py_ssize_t acs, const double* packed, double* c,
                   Py_ssize_t ldc, int accumulate)
    Py_ssize_t fl_copy_length_f()
    Py_ssize_t fl_copy_length_d()
    void fl_gemm_sums_f(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                        Py_ssize_t ars, Py_ssize_t acs, const int64_t* kmap,
                        const float* packed, float* c,
                        Py_ssize_t ldc, float* row_sums, float* work)
    void fl_gemm_sums_d(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a,
                        Py_ssize_t ars, Py_ssize_t acs, const int64_t* kmap,
                        const double* packed, double* c,
                        Py_ssize_t ldc, double* row_sums, double* work)
    void fl_gemm_groups_f(Py_ssize_t groups, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                          const float* a, Py_ssize_t ars, Py_ssize_t a_gs, const float* packed,
                          float* c, Py_ssize_t ldc, Py_ssize_t c_gs)
    void fl_gemm_groups_d(Py_ssize_t groups, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                          const double* a, Py_ssize_t ars, Py_ssize_t a_gs,
                          const double* packed, double* c, Py_ssize_t ldc, Py_ssize_t c_gs)
    void fl_gemm_backwards_f(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                             Py_ssize_t ars, const float* packed, float* c, Py_ssize_t ldc,
                             int accumulate)
    void fl_gemm_backwards_d(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a,
                             Py_ssize_t ars, const double* packed, double* c, Py_ssize_t ldc,
                             int accumulate)


cdef inline Py_ssize_t panel_width(floating* dtype_of) noexcept nogil:
    """Columns per packed panel for this element type (the pointer only selects the type)."""
    if floating is float:
        return fl_panel_width_f()
    else:
        return fl_panel_width_d()


cdef inline Py_ssize_t packed_length(floating* dtype_of, Py_ssize_t k,
                                     Py_ssize_t n) noexcept nogil:
    """Length of the packed form of a (k, n) matrix."""
    if floating is float:
        return fl_packed_length_f(k, n)
    else:
        return fl_packed_length_d(k, n)


cdef inline void pack(Py_ssize_t k, Py_ssize_t n, const floating* b, Py_ssize_t brs,
                      Py_ssize_t bcs, floating* out, Py_ssize_t panel_stride) noexcept nogil:
    """Pack rows [0, k) of B (element (q, j) at b[q*brs + j*bcs], n columns) into `out`, whose
    panels lie panel_stride apart (the packed matrix's full k times panel_width)."""
    if floating is float:
        fl_pack_f(k, n, b, brs, bcs, out, panel_stride)
    else:
        fl_pack_d(k, n, b, brs, bcs, out, panel_stride)


cdef inline void gemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                      Py_ssize_t ars, Py_ssize_t acs, const floating* packed, floating* c,
                      Py_ssize_t ldc, bint accumulate) noexcept nogil:
    """C (m, n) (+)= A (m, k) @ B (k, n): A's element (r, q) at a[r*ars + q*acs], B packed
    whole by `pack` (panel_stride = k * panel_width), C row-major with leading dimension ldc."""
    if floating is float:
        fl_gemm_f(m, n, k, a, ars, acs, packed, c, ldc, accumulate)
    else:
        fl_gemm_d(m, n, k, a, ars, acs, packed, c, ldc, accumulate)


cdef inline void gemm_step(Py_ssize_t t, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                           const floating* a, Py_ssize_t ars, const floating* packed,
                           floating* c, Py_ssize_t ldc, bint accumulate) noexcept nogil:
    """`gemm` with A read along its rows, for step t of a time loop: on odd steps B's panels
    are visited last to first, so the ones the previous step used last are still in cache.
    The same arithmetic either way."""
    if t % 2 == 0:
        gemm(m, n, k, a, ars, 1, packed, c, ldc, accumulate)
    elif floating is float:
        fl_gemm_backwards_f(m, n, k, a, ars, packed, c, ldc, accumulate)
    else:
        fl_gemm_backwards_d(m, n, k, a, ars, packed, c, ldc, accumulate)


cdef inline Py_ssize_t copy_length(floating* dtype_of) noexcept nogil:
    """Values of the work buffer each concurrent caller of `gemm_sums` needs."""
    if floating is float:
        return fl_copy_length_f()
    else:
        return fl_copy_length_d()


cdef inline void gemm_sums(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                           Py_ssize_t ars, Py_ssize_t acs, const int64_t* kmap,
                           const floating* packed, floating* c, Py_ssize_t ldc,
                           floating* row_sums, floating* work) noexcept nogil:
    """C (m, n) = A (m, k) @ B (k, n) as `gemm` does, and row_sums (m,) = the sums of A's rows,
    from the same read of A; `work` (copy_length values, the caller's own) holds copies of
    blocks of an A stored along its columns. kmap: NULL, or k column indices of A (step q of
    k reads A's column kmap[q]), so that A's empty columns can be skipped."""
    if floating is float:
        fl_gemm_sums_f(m, n, k, a, ars, acs, kmap, packed, c, ldc, row_sums, work)
    else:
        fl_gemm_sums_d(m, n, k, a, ars, acs, kmap, packed, c, ldc, row_sums, work)


cdef inline void gemm_groups(Py_ssize_t groups, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                             const floating* a, Py_ssize_t ars, Py_ssize_t a_gs,
                             const floating* packed, floating* c, Py_ssize_t ldc,
                             Py_ssize_t c_gs) noexcept nogil:
    """C = A @ B (overwritten) for `groups` groups of m rows of A, read along their rows: group
    g's rows at a + g*a_gs, its results at c + g*c_gs. One pass over each panel of B serves
    every group (e.g. a group of batch rows at several steps)."""
    if floating is float:
        fl_gemm_groups_f(groups, m, n, k, a, ars, a_gs, packed, c, ldc, c_gs)
    else:
        fl_gemm_groups_d(groups, m, n, k, a, ars, a_gs, packed, c, ldc, c_gs)


cdef inline floating* aligned(floating* scratch) noexcept nogil:
    """The first 64-byte boundary at or after `scratch` (at most 64 bytes on): kernels carve
    their packed buffers from a scratch array with that much to spare, so that the micro-
    kernel's vector loads of panels never straddle cache lines."""
    return <floating*>((<size_t>scratch + 63) & ~(<size_t>63))
