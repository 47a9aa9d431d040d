"""Thread control: `with fastlstm.threads(n): ...` limits fastlstm's kernels, the BLAS libraries
and OpenMP to n threads inside the block and restores everything on exit.

Outside such a block the kernels use default_threads(): OMP_NUM_THREADS when it is set to a
positive integer (the first entry of a list such as "4,2"), else the number of CPUs this
process may run on (os.sched_getaffinity: a `taskset` or a container's cpuset counts, not the
machine's CPUs), else os.cpu_count(). Both are read at every call, so a process started with
OMP_NUM_THREADS=1 (as Dask's nanny starts its workers, and as many job schedulers do) runs
the kernels on one thread per call and does not oversubscribe the CPUs it shares."""
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


def _omp_num_threads():
    """OMP_NUM_THREADS as a positive int (its first entry: "4,2" -> 4), or None when it is
    unset, empty or not a positive integer."""
    value = os.environ.get("OMP_NUM_THREADS")
    if not value:
        return None
    first = value.split(",", 1)[0].strip()
    try:
        n = int(first)
    except ValueError:
        return None
    return n if n > 0 else None


def usable_cpus():
    """The number of CPUs this process may run on: its CPU affinity (os.sched_getaffinity)
    where the OS has one, else os.cpu_count(); at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads():
    """The kernels' thread count outside any `threads(n)` block: OMP_NUM_THREADS when set to
    a positive integer, else usable_cpus() (see the module docstring)."""
    n = _omp_num_threads()
    return n if n is not None else usable_cpus()


def current_threads():
    """The thread count set by the innermost `threads(n)` block, else default_threads(); 1 in
    a process forked after its parent may have run the kernels on several threads."""
    global _team_may_exist
    if _forked_after_teams:
        return 1
    n = _threads.get()
    n = n if n is not None else default_threads()
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
