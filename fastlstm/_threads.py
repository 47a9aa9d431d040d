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


_OPENBLAS_SYMBOL_FORMS = [("openblas", ""), ("scipy_openblas", ""), ("scipy_openblas", "64_")]


def _openblas_thread_controls():
    """[(get_num_threads, set_num_threads)] for every OpenBLAS loaded in the process.

    Calls OpenBLAS directly (ctypes, on the libraries that threadpoolctl finds) rather than
    through threadpoolctl's limits: those give control of OpenBLAS to the thread that set a
    limit first, so another thread could not restore it. Builds name their symbols
    openblas_*, or scipy_openblas_* with an optional 64_ suffix (SciPy's and NumPy's wheels).
    """
    import ctypes

    from threadpoolctl import ThreadpoolController

    controls = []
    for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers:
        dll = ctypes.CDLL(lib.filepath, mode=getattr(os, "RTLD_NOLOAD", 0))
        for prefix, suffix in _OPENBLAS_SYMBOL_FORMS:
            get = getattr(dll, f"{prefix}_get_num_threads{suffix}", None)
            set_ = getattr(dll, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                break
        else:
            continue
        get.restype = ctypes.c_int
        set_.argtypes = [ctypes.c_int]
        set_.restype = None
        controls.append((get, set_))
    return controls


class _SingleThreadedBlas:
    """A context in which OpenBLAS runs on one thread, shared by concurrent callers.

    The Cython kernels run their own OpenMP threads; BLAS calls made next to them (the weight
    gradients after the backward loop) must not wake OpenBLAS's worker threads too: an idle
    worker keeps spinning for a while and starves the OpenMP threads of the next call (a
    training step at B=16 took 141 ms instead of 39 ms). The first caller to enter limits
    OpenBLAS to one thread and the last to leave restores the counts it found, so concurrent
    calls from several Python threads leave them as they were. Other BLAS libraries are left
    alone.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._controls = None
        self._saved = []

    def __enter__(self):
        with self._lock:
            if self._users == 0:
                if self._controls is None:
                    self._controls = _openblas_thread_controls()
                self._saved = [get() for get, _ in self._controls]
                for _, set_ in self._controls:
                    set_(1)
            self._users += 1
        return self

    def __exit__(self, *exc_info):
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for (_, set_), n in zip(self._controls, self._saved):
                    set_(n)
        return False


single_threaded_blas = _SingleThreadedBlas()
