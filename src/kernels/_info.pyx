"""Facts about how the Cython kernels were built, for fastlstm.show_config(), the sizes of
their scratch buffers, and a byte comparison for the Python layer's packed-weight checks."""
cimport numpy as cnp
from libc.string cimport memcmp

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
