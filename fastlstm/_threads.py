"""Thread control: `with fastlstm.threads(n): ...` limits fastlstm's kernels, the BLAS libraries
and OpenMP to n threads inside the block and restores everything on exit."""
import contextlib
import contextvars
import os

_threads = contextvars.ContextVar("fastlstm_threads", default=None)


def current_threads():
    """The thread count set by the innermost `threads(n)` block, else the number of CPUs."""
    n = _threads.get()
    return n if n is not None else (os.cpu_count() or 1)


@contextlib.contextmanager
def threads(n):
    """Run the block with at most n threads in fastlstm's kernels, BLAS and OpenMP.

    n: a positive int. Uses threadpoolctl for the BLAS and OpenMP libraries loaded in the
    process (NumPy's, SciPy's, the kernels'); nothing stays changed after the block.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    from threadpoolctl import threadpool_limits

    token = _threads.set(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        _threads.reset(token)
