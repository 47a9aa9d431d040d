"""Thread control: `with fastlstm.threads(n): ...` limits fastlstm's kernels, the BLAS libraries
and OpenMP to n threads inside the block and restores everything on exit."""
import contextlib
import contextvars
import os

_threads = contextvars.ContextVar("fastlstm_threads", default=None)

# GNU OpenMP (the Cython kernels' threads) cannot start a team in a child forked from a process
# that had one: the child hangs at its first parallel region. So once this process may have
# run kernels on several threads, a child forked from it runs them on one (the parent is not
# affected; a child started by 'spawn' or 'forkserver' is a fresh process).
_team_may_exist = False
_forked_after_teams = False


def _after_fork_in_child():
    global _forked_after_teams
    _forked_after_teams = _forked_after_teams or _team_may_exist


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def current_threads():
    """The thread count set by the innermost `threads(n)` block, else the number of CPUs; 1 in
    a process forked after its parent may have run the kernels on several threads."""
    global _team_may_exist
    if _forked_after_teams:
        return 1
    n = _threads.get()
    n = n if n is not None else (os.cpu_count() or 1)
    if n > 1:
        _team_may_exist = True
    return n


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


_blas_controller = None


@contextlib.contextmanager
def blas_on_one_thread():
    """Run the block with the BLAS libraries loaded in the process on one thread.

    For the few products the Python layer forms with NumPy (a projection LSTM's dW_hr): the
    kernels OpenBLAS picks, and so how it rounds, can depend on its thread count, and
    fastlstm's results must not depend on fastlstm.threads. The threadpoolctl controller is
    made once (the libraries are NumPy's and SciPy's, loaded at import)."""
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController()
    with _blas_controller.limit(limits=1, user_api="blas"):
        yield
