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
