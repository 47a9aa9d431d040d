"""What runs on the Dask workers besides the math: the thread count of a task, the copy of a
model that travels to them, and the holder that carries it.

Threads. Dask runs `nthreads` tasks at once in each worker process, and its nanny starts the
worker with OMP_NUM_THREADS=1 (and MKL_NUM_THREADS, OPENBLAS_NUM_THREADS): one thread per
task, so that the tasks together use the worker's share of the CPUs. Every task of
fastlstm.dask runs its kernels under task_threads():

    in a distributed worker   OMP_NUM_THREADS when set (the nanny's 1), else the worker's
                              CPUs (fastlstm._threads.usable_cpus()) // its nthreads, at least 1
    elsewhere                 in the calling thread (scheduler="synchronous") fastlstm's
                              default (fastlstm._threads.default_threads()); in a pool thread
                              (Dask's local threaded scheduler, which runs one task per CPU) 1

set as fastlstm's own limit for the task's thread only (a context variable; the kernels take
their thread count as an argument), nothing global changed. The BLAS libraries (NumPy's, used
by the heads' small products) are left to Dask's settings of the worker's environment.

The copy. What travels is a deep copy of the model, in inference mode for predictions, so
that the caller's model is never changed. (Copies of fastlstm layers carry no packed weights,
which would sit at the wrong offset in the copy's memory: fastlstm/layers/_packing.py.)
"""
import contextlib
import copy
import pickle
import threading

from .. import _threads

#: how many models this process has unpickled from a _Shipped holder (the tests read it on
#: the workers: a model reaches each worker once per call, not with every chunk)
_LOADS = {"count": 0}


def _worker_nthreads():
    """The running distributed worker's nthreads, or None outside one."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    state = getattr(worker, "state", None)
    n = getattr(state, "nthreads", None) or getattr(worker, "nthreads", None)
    return int(n) if n else 1


def threads_for_task():
    """fastlstm's thread count for a task running here (see the module docstring)."""
    nthreads = _worker_nthreads()
    if nthreads is not None:
        omp = _threads._omp_num_threads()
        return omp if omp is not None else max(1, _threads.usable_cpus() // nthreads)
    if threading.current_thread() is threading.main_thread():
        return _threads.default_threads()
    return 1


@contextlib.contextmanager
def task_threads():
    """Run the block with fastlstm's kernels on threads_for_task() threads (this thread
    only; restored on exit). Yields the count."""
    n = threads_for_task()
    token = _threads._threads.set(n)
    try:
        yield n
    finally:
        _threads._threads.reset(token)


# --------------------------------------------------------------------------------------------
# the copy that travels


def portable_copy(obj, eval_mode=True):
    """A deep copy of obj (a model, an estimator, or a tuple of a model and its optimizer), in
    inference mode when eval_mode (where the copy has eval()): the caller's object is never
    changed. (A copy of a stack carries no packed weights: fastlstm/layers/_packing.py.)"""
    clone = copy.deepcopy(obj)
    if eval_mode and callable(getattr(clone, "eval", None)):
        clone.eval()
    return clone


class _Shipped:
    """A model on its way to the workers, with what to do with a chunk: holder(x, lengths)
    -> the chunk's result. One holder is one key of the graph: every chunk's task depends on
    it, so each worker receives it once (from the scheduler, or from a peer that has it), and
    a worker that dies gets it again from the graph.

    It travels as the portable copy pickled once on the client (`blob`, see dumps), unpickled
    on first use in each process (counted in _LOADS); the live model a worker has used (and
    packed its weights for) is never what is sent on to a peer.

    Dask's active memory manager (on by default) may drop a worker's idle copy of the holder
    while a peer holds one; when a task moved back to that worker later needs it, the worker
    fetches it again and loads the model a second time. (The tests that count the loads run
    their schedulers without it.)"""

    def __init__(self, fn, model, options, token):
        self.fn, self.options, self.token = fn, options, token
        self.blob = dumps(portable_copy(model))
        self._model, self._lock = None, threading.Lock()

    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    model = pickle.loads(self.blob)
                    _LOADS["count"] += 1
                    self._model = model
        return self._model

    def __call__(self, x, lengths):
        with task_threads():
            return self.fn(self.model(), x, lengths, **self.options)

    def __getstate__(self):
        return {"fn": self.fn, "options": self.options, "token": self.token,
                "blob": self.blob}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._model, self._lock = None, threading.Lock()

    def __dask_tokenize__(self):
        return ("fastlstm.dask._Shipped", self.token)


def dumps(obj):
    """obj pickled for the workers with cloudpickle (which Dask uses): classes defined in
    __main__ or a notebook (a custom model) travel by value; everything else by reference."""
    import cloudpickle

    return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def load_count():
    """How many models this process has unpickled from holders (client.run in the tests)."""
    return _LOADS["count"]
