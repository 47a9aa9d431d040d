"""Facts about how the Cython kernels were built, for fastlstm.show_config()."""

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



from ._gemm cimport backward_scratch, forward_scratch, panel_width as panel_width_of

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


def forward_scratch_length(Py_ssize_t I, Py_ssize_t H, int itemsize):
    """Length of the `scratch` array lstm_forward needs for input size I and hidden size H."""
    cdef float f = 0
    cdef double d = 0
    if I < 1 or H < 1:
        raise ValueError(f"forward_scratch_length: I and H must be >= 1, got {I}, {H}")
    if itemsize == 4:
        return forward_scratch(&f, I, H)
    return forward_scratch(&d, I, H)


def backward_scratch_length(Py_ssize_t TB, Py_ssize_t I, Py_ssize_t H, int itemsize,
                            Py_ssize_t threads=1):
    """Length of the `scratch` array lstm_backward needs for T*B = TB rows, input size I,
    hidden size H and `threads` product threads."""
    cdef float f = 0
    cdef double d = 0
    if TB < 1 or I < 1 or H < 1 or threads < 1:
        raise ValueError("backward_scratch_length: TB, I, H and threads must be >= 1, got "
                         f"{TB}, {I}, {H}, {threads}")
    if itemsize == 4:
        return backward_scratch(&f, TB, I, H, threads)
    return backward_scratch(&d, TB, I, H, threads)
