"""Thread control: `with fastlstm.threads(n): ...` limits fastlstm's kernels, the BLAS libraries
and OpenMP to n threads inside the block and restores everything on exit."""
import contextlib
import contextvars
import os
import threading

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


class _SingleThreadedBlas:
    """A context in which the BLAS libraries run on one thread, shared by concurrent callers.

    The Cython kernels run their own OpenMP threads; BLAS calls made next to them (the weight
    gradients after the backward loop) must not wake BLAS's worker threads too: an idle
    OpenBLAS worker keeps spinning for a while and starves the OpenMP threads of the next call.
    The first caller to enter limits BLAS to one thread and the last to leave restores it, so
    concurrent calls from several Python threads leave the limit as they found it.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._controller = None
        self._restore = None

    def __enter__(self):
        with self._lock:
            if self._users == 0:
                if self._controller is None:
                    from threadpoolctl import ThreadpoolController

                    self._controller = ThreadpoolController()
                self._restore = self._controller.limit(limits=1, user_api="blas")
            self._users += 1
        return self

    def __exit__(self, *exc_info):
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._restore.restore_original_limits()
                self._restore = None
        return False


single_threaded_blas = _SingleThreadedBlas()
