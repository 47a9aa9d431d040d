"""The one place that holds the Numba JIT options of fastlstm's kernels."""
import numba

# cache=True: compiled code is kept on disk (next to the sources, or in numba's user cache
# when that is not writable). nogil=True: the kernels release the GIL. fastmath is left off so
# that NaN and inf propagate exactly as in the NumPy reference. error_model="numpy": a float
# division by zero gives inf or NaN as in NumPy instead of raising, which keeps the division
# branch-free so loops vectorise (the twin of Cython's cdivision).
JIT_OPTIONS = dict(nogil=True, cache=True, error_model="numpy")


def jit(func):
    """Compile `func` with fastlstm's JIT options (lazily, per argument types)."""
    return numba.njit(**JIT_OPTIONS)(func)


def jit_inline(func):
    """Compile `func` with fastlstm's JIT options, inlined into its callers at Numba's IR level
    (small helpers called in hot loops with array arguments: a call increments and decrements
    the arrays' reference counts, atomics that the threads of a team contend for)."""
    return numba.njit(inline="always", **JIT_OPTIONS)(func)
