"""A team of threads for the Numba drivers' column split: the twin of _barrier.h and of the
OpenMP team that recurrent_forward.pyx's column_loop runs on.

Why not Numba's own parallel=True: its threading layers are either not fork-safe (GNU OpenMP:
a process forked after one parallel region is terminated at once, which kills every
multiprocessing child that forks from a parent that ran fastlstm) or not thread-safe
(workqueue: two Python threads calling at once abort the process), and TBB is rarely
installed where Numba can load it. So the team is plain Python threads running one nogil
compiled function each, kept in a pool that a forked child starts afresh, and the threads meet
at a barrier made of atomics (LLVM atomicrmw / atomic load, seq_cst) that spins a bounded
number of times and then yields the core (sched_yield), so that a loaded machine does not
stall.

    sync = new_barrier()                 # (4,) int64: arrivals, generation
    barrier(sync, team)                  # in compiled code: wait for the whole team
    run_team(kernel, args, team)         # kernel(*args, tid, team, sync) on team threads
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import jit

#: spins before a waiting thread starts yielding its core (as _barrier.h)
SPINS_BEFORE_YIELD = 4000

_sched_yield = types.ExternalFunction("sched_yield", types.intc())


def _int64_element(arr, idx):
    return (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1
            and isinstance(idx, types.Integer))


@intrinsic
def atomic_add(typingctx, arr, idx, value):
    """arr[idx] += value atomically (seq_cst); returns the old value. arr: 1-D int64."""
    if not _int64_element(arr, idx) or not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]])
        v = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, v, "seq_cst")

    return types.int64(arr, idx, value), codegen


@intrinsic
def atomic_load(typingctx, arr, idx):
    """arr[idx] read atomically (seq_cst). arr: 1-D int64."""
    if not _int64_element(arr, idx):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]])
        return builder.load_atomic(ptr, "seq_cst", 8)

    return types.int64(arr, idx), codegen


@jit
def barrier(sync, team):
    """Wait until all `team` threads have arrived. sync (>= 2,) int64: [arrivals, generation],
    zero at the start of a team's run. The last to arrive resets the count and advances the
    generation, which releases the others; every write before the barrier is visible after
    it (seq_cst atomics)."""
    if team <= 1:
        return
    generation = atomic_load(sync, 1)
    if atomic_add(sync, 0, 1) == team - 1:
        atomic_add(sync, 0, -team)
        atomic_add(sync, 1, 1)
    else:
        spins = 0
        while atomic_load(sync, 1) == generation:
            spins += 1
            if spins > SPINS_BEFORE_YIELD:
                _sched_yield()


def new_barrier():
    """The state of one team run's barrier: (4,) int64 zeros (two used, padded)."""
    return np.zeros(4, np.int64)


_pool = None
_pool_size = 0
_pool_lock = threading.Lock()


def _forget_pool():
    """In a forked child: the parent's worker threads do not exist there."""
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _workers(n):
    """A pool of at least n worker threads (made once, grown when a call needs more)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < n:
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="fastlstm-numba")
            _pool_size = n
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def run_team(kernel, args, team):
    """kernel(*args, tid, team, sync) for tid = 0 .. team-1, tid 0 on the calling thread and
    the others on pool threads, all meeting at barrier(sync, team). The kernel must not raise
    once it has started (its inputs are checked before): a thread that left early would keep
    the others waiting at the barrier. Two calls at once from two Python threads share the
    pool: the second one's helpers start when the first one's are done (its caller waits at
    the barrier, yielding its core, meanwhile)."""
    sync = new_barrier()
    if team <= 1:
        kernel(*args, 0, 1, sync)
        return
    pool = _workers(team - 1)
    futures = [pool.submit(kernel, *args, tid, team, sync) for tid in range(1, team)]
    kernel(*args, 0, team, sync)
    for future in futures:
        future.result()
