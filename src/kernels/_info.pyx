"""Facts about how the Cython kernels were built, for fastlstm.show_config(), the sizes of
their scratch buffers, and two kinds of helpers of the Python layer: byte comparisons for
its packed-weight checks, and the row copies that put arrays in and out of loop order."""
cimport numpy as cnp
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memcmp, memcpy, memset

cnp.import_array()

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fastlstm_openmp(void) { return 1; }
    static int fastlstm_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fastlstm_openmp(void) { return 0; }
    static int fastlstm_omp_max_threads(void) { return 1; }
    #endif
    """
    int fastlstm_openmp()
    int fastlstm_omp_max_threads()


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fastlstm_openmp())


def openmp_max_threads():
    """OpenMP's default team size (1 without OpenMP)."""
    return fastlstm_omp_max_threads()



from cython cimport floating
from ._gemm cimport gemm as gemm_of, pack as pack_of, packed_length as packed_length_of
from ._gemm cimport panel_width as panel_width_of
from ._layout cimport backward_scratch, column_threads as column_threads_of, forward_scratch

cdef extern from "_gemm.h":
    int FL_VBYTES


def vector_bytes():
    """Width in bytes of the vectors the matrix-product micro-kernel was built for."""
    return FL_VBYTES


def panel_width(int itemsize):
    """Columns per packed panel of the micro-kernel, for 4-byte (float32) or 8-byte items."""
    cdef float f = 0
    cdef double d = 0
    if itemsize == 4:
        return panel_width_of(&f)
    return panel_width_of(&d)


def forward_scratch_length(int cell, Py_ssize_t I, Py_ssize_t Hout, Py_ssize_t H, Py_ssize_t P,
                           int itemsize):
    """Length of the `scratch` array recurrent_forward needs for `cell` (CONTRACT.md's code),
    input size I, output size Hout, hidden size H and projection size P (0 for none)."""
    cdef float f = 0
    cdef double d = 0
    if I < 1 or H < 1 or Hout < 1 or P < 0 or not 0 <= cell <= 4:
        raise ValueError("forward_scratch_length: needs 0 <= cell <= 4, I, Hout, H >= 1, "
                         f"P >= 0; got {cell}, {I}, {Hout}, {H}, {P}")
    if itemsize == 4:
        return forward_scratch(&f, cell, I, Hout, H, P)
    return forward_scratch(&d, cell, I, Hout, H, P)


def backward_scratch_length(int cell, Py_ssize_t TB, Py_ssize_t I, Py_ssize_t Hout,
                            Py_ssize_t H, Py_ssize_t P, int itemsize, Py_ssize_t threads=1,
                            Py_ssize_t column_rows=0):
    """Length of the `scratch` array recurrent_backward needs for `cell`, T*B = TB rows, the
    sizes as in forward_scratch_length and `threads` product threads. column_rows: B when the
    walk may take the column split (one group of rows and threads > 1: backward's columns=-1
    under the rule, or columns=1), whose per-thread buffers then come after the rest (about
    12 * B * H values more); 0 for the groups of rows only."""
    cdef float f = 0
    cdef double d = 0
    if (TB < 1 or I < 1 or H < 1 or Hout < 1 or P < 0 or threads < 1 or column_rows < 0
            or not 0 <= cell <= 4):
        raise ValueError("backward_scratch_length: needs 0 <= cell <= 4, TB, I, Hout, H, "
                         "threads >= 1, P, column_rows >= 0; got "
                         f"{cell}, {TB}, {I}, {Hout}, {H}, {P}, {threads}, {column_rows}")
    if itemsize == 4:
        return backward_scratch(&f, cell, TB, I, Hout, H, P, threads, column_rows)
    return backward_scratch(&d, cell, TB, I, Hout, H, P, threads, column_rows)


def column_threads(int cell, Py_ssize_t B, Py_ssize_t Hout, Py_ssize_t H, int itemsize,
                   int n_threads):
    """The team recurrent_forward's column split, and recurrent_backward's for its walk, use
    for B rows of `cell` (hidden size H, output size Hout) on n_threads threads, or 0 when
    its rule keeps the groups of batch rows (src/kernels/_layout.pxd). With a team the rows
    are one group (fastlstm._api arranges their lengths so)."""
    cdef float f = 0
    cdef double d = 0
    if itemsize == 4:
        return column_threads_of(&f, cell, B, Hout, H, n_threads)
    return column_threads_of(&d, cell, B, Hout, H, n_threads)


def same_bytes(a, b):
    """Whether a and b, two C-contiguous NumPy arrays, hold the same bytes (False when their
    byte counts differ): one memcmp, for the checks that packed weights still match the
    arrays they were made from (fastlstm/_functional_packs.py, fastlstm/layers/_packing.py)."""
    if not (isinstance(a, cnp.ndarray) and isinstance(b, cnp.ndarray)
            and cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_IS_C_CONTIGUOUS(b)):
        raise TypeError("same_bytes: two C-contiguous arrays expected")
    cdef size_t n = cnp.PyArray_NBYTES(a)
    if n != <size_t>cnp.PyArray_NBYTES(b):
        return False
    return n == 0 or memcmp(cnp.PyArray_DATA(a), cnp.PyArray_DATA(b), n) == 0


def all_same(values, copies):
    """Whether every array in the tuple `values` is C-contiguous with the dtype, shape and
    bytes of the array at the same place in the tuple `copies` (C-contiguous arrays), and is
    None where that is None: same_bytes over a layer's weights in one call
    (fastlstm/_functional_packs.py)."""
    cdef Py_ssize_t k, d, n = len(copies)
    cdef size_t size
    if len(values) != n:
        return False
    for k in range(n):
        value, kept = values[k], copies[k]
        if kept is None:
            if value is not None:
                return False
            continue
        if not isinstance(value, cnp.ndarray) or not cnp.PyArray_IS_C_CONTIGUOUS(value):
            return False
        if not isinstance(kept, cnp.ndarray) or not cnp.PyArray_IS_C_CONTIGUOUS(kept):
            raise TypeError("all_same: copies: C-contiguous arrays expected")
        if cnp.PyArray_NDIM(value) != cnp.PyArray_NDIM(kept) \
                or cnp.PyArray_TYPE(value) != cnp.PyArray_TYPE(kept):
            return False
        for d in range(cnp.PyArray_NDIM(value)):
            if cnp.PyArray_DIMS(value)[d] != cnp.PyArray_DIMS(kept)[d]:
                return False
        size = cnp.PyArray_NBYTES(kept)
        if size and memcmp(cnp.PyArray_DATA(value), cnp.PyArray_DATA(kept), size) != 0:
            return False
    return True


def copy_rows(src, const int64_t[::1] index, dst, int n_threads=1):
    """dst[j] = src[index[j]] for every row j of dst, and zeros where index[j] == -1: src
    (R, n) and dst (J, n) C-contiguous, of one dtype, index (J,) int64 in [-1, R). The
    gathers and scatters of fastlstm/_loop_order.py (loop order and back, zeros past each
    row's length) in one pass, shared by n_threads threads (no OpenMP region for one). A
    wrong array is a TypeError, an index out of range a ValueError (nothing written)."""
    if not (isinstance(src, cnp.ndarray) and isinstance(dst, cnp.ndarray)
            and cnp.PyArray_IS_C_CONTIGUOUS(src) and cnp.PyArray_IS_C_CONTIGUOUS(dst)
            and cnp.PyArray_NDIM(src) == 2 and cnp.PyArray_NDIM(dst) == 2
            and cnp.PyArray_TYPE(src) == cnp.PyArray_TYPE(dst)
            and cnp.PyArray_ISWRITEABLE(dst)):
        raise TypeError("copy_rows: src and dst: C-contiguous 2-d arrays of one dtype expected "
                        "(dst writable)")
    cdef cnp.npy_intp* ss = cnp.PyArray_DIMS(src)
    cdef cnp.npy_intp* ds = cnp.PyArray_DIMS(dst)
    if ss[1] != ds[1] or index.shape[0] != ds[0]:
        raise ValueError(f"copy_rows: expected dst ({index.shape[0]}, {ss[1]}), got "
                         f"({ds[0]}, {ds[1]})")
    cdef Py_ssize_t R = ss[0], J = ds[0], j, bad = -1
    cdef size_t row = <size_t>ds[1] * cnp.PyArray_ITEMSIZE(dst)
    cdef char* sp = <char*>cnp.PyArray_DATA(src)
    cdef char* dp = <char*>cnp.PyArray_DATA(dst)
    with nogil:
        for j in range(J):
            if index[j] < -1 or index[j] >= R:
                bad = j
                break
        if bad < 0 and row > 0:
            if n_threads > 1:
                for j in prange(J, num_threads=n_threads, schedule="static"):
                    copy_row(dp + j * row, sp, index[j], row)
            else:
                for j in range(J):
                    copy_row(dp + j * row, sp, index[j], row)
    if bad >= 0:
        raise ValueError(f"copy_rows: index[{bad}] = {index[bad]} outside [-1, {R})")


cdef inline void copy_row(char* out, const char* src, int64_t i, size_t row) noexcept nogil:
    if i < 0:
        memset(out, 0, row)
    else:
        memcpy(out, src + i * row, row)


def matmul(const floating[:, ::1] a, const floating[:, ::1] b, floating[:, ::1] c,
           bint accumulate=False):
    """c (m, n) (+)= a (m, k) @ b (k, n) through the kernels' micro-kernel (_gemm.h: b packed
    into panels, then the blocks), as every product of the drivers runs: for tests, so that
    each block shape (rows, and vectors of a panel that hold columns) can be checked alone.
    Every array C-contiguous, of one float dtype; shapes checked (ValueError)."""
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = b.shape[1]
    if b.shape[0] != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError(f"matmul: a (m, k), b (k, n), c (m, n) expected, got a "
                         f"({m}, {k}), b ({b.shape[0]}, {n}), c ({c.shape[0]}, {c.shape[1]})")
    if m == 0 or n == 0:
        return
    import numpy as np
    cdef Py_ssize_t NR = panel_width_of(&c[0, 0])
    packed = np.zeros(max(1, packed_length_of(&c[0, 0], k, n)),
                      np.float32 if floating is float else np.float64)
    cdef floating[::1] p = packed
    cdef const floating* a_data = &a[0, 0] if k else &c[0, 0]   # not read when k = 0
    with nogil:
        if k:
            pack_of(k, n, &b[0, 0], n, 1, &p[0], k * NR)
        gemm_of(m, n, k, a_data, k, 1, &p[0], &c[0, 0], n, accumulate)
