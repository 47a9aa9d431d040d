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


cdef extern from "_gemm.h":
    Py_ssize_t fl_panel_width_f()
    Py_ssize_t fl_panel_width_d()
    Py_ssize_t fl_packed_length_f(Py_ssize_t k, Py_ssize_t n)
    Py_ssize_t fl_packed_length_d(Py_ssize_t k, Py_ssize_t n)
    int FL_VBYTES


def vector_bytes():
    """Width in bytes of the vectors the matrix-product micro-kernel was built for."""
    return FL_VBYTES


def panel_width(itemsize):
    """Columns per packed panel of the micro-kernel, for 4-byte (float32) or 8-byte items."""
    return fl_panel_width_f() if itemsize == 4 else fl_panel_width_d()


def packed_length(k, n, itemsize):
    """Length of the packed form of a (k, n) matrix: the size of a kernel's packing scratch."""
    if k < 0 or n < 0:
        raise ValueError(f"packed_length: k and n must be >= 0, got {k}, {n}")
    return fl_packed_length_f(k, n) if itemsize == 4 else fl_packed_length_d(k, n)
