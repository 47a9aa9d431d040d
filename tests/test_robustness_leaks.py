"""No leaks: memory stays flat over thousands of forward + backward calls, on every backend.

Each iteration makes a training call (forward with tape + backward) on one of four problems in
turn (float64 time-major, float32 batch_first, float32 unbatched, an empty sequence), an
inference call, and two calls that fail validation (a ValueError from forward, a TypeError from
backward). After a warm-up (Numba compiles, caches fill), three measures:

- resident memory (RSS, /proc/self/statm) over N_CALLS iterations grows by less than
  RSS_BOUND = 10 MB: a leak averaging 3.5 KB per iteration fails (3000 iterations), whatever
  leaks it, C code included. One training call of the float64 problem allocates about 75 KB
  (tape 25 KB, dA 16 KB, gradients, outputs and private copies of the inputs 34 KB); leaking
  those every fourth iteration would add 56 MB.
- tracemalloc (Python objects and NumPy's buffers, which NumPy reports to it), after
  TRACED_CALLS traced iterations of warm-up (the interpreter's caches and free lists grow
  by some 15 KB and stop), grows by less than 32 KB over TRACED_CALLS more: a leak of 110
  bytes per iteration fails, so any array or Python object kept alive per call.
- the number of objects the garbage collector tracks grows by less than 50 over TRACED_CALLS
  iterations, and no call leaves uncollectable garbage.
"""
import gc
import os
import tracemalloc

import numpy as np
import pytest

import fastlstm

from conftest import make_problem

#: iterations measured by RSS; the NumPy backend runs none of our compiled code and is ~10x
#: slower per call, so it gets fewer. FASTLSTM_LEAK_CALLS=N: N for every backend (a long run)
N_CALLS = {"cython": 3000, "numba": 3000, "numpy": 1000}
if os.environ.get("FASTLSTM_LEAK_CALLS"):
    N_CALLS = dict.fromkeys(N_CALLS, int(os.environ["FASTLSTM_LEAK_CALLS"]))
TRACED_CALLS = 300
WARMUP = 50
RSS_BOUND = 10 * 2**20
TRACED_BOUND = 32 * 2**10
OBJECT_BOUND = 50


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _iteration_factory(backend):
    problems = [
        (make_problem(8, 4, 8, 16, dtype=np.float64, seed=100), "time_major"),
        (make_problem(8, 4, 8, 16, dtype=np.float32, seed=101), "batch_first"),
        (make_problem(6, 1, 3, 5, dtype=np.float32, seed=102), "unbatched"),
        (make_problem(0, 3, 4, 5, dtype=np.float64, seed=103), "time_major"),
    ]
    calls = [p.call_args(layout) for p, layout in problems]
    p64 = problems[0][0]
    bad_w_ih = np.ones((4 * 16, 9))

    def iteration(k):
        fargs, kwargs, grads_in = calls[k % len(calls)]
        y, (h_n, c_n), tape = fastlstm.forward(*fargs, **kwargs, backend=backend,
                                               return_tape=True)
        g = fastlstm.backward(tape, *grads_in)
        assert g.x.shape == np.shape(fargs[0])
        fastlstm.forward(*p64.forward_args(), backend=backend)
        with pytest.raises(ValueError):
            fastlstm.forward(p64.x, bad_w_ih, p64.w_hh, backend=backend)
        with pytest.raises(TypeError):
            fastlstm.backward(tape, dy=np.ones(y.shape, np.int64))

    return iteration


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux's /proc")
def test_rss_flat_over_many_calls(backend, record_property):
    iteration = _iteration_factory(backend)
    for k in range(WARMUP):
        iteration(k)
    gc.collect()
    before = _rss()
    for k in range(N_CALLS[backend]):
        iteration(k)
    gc.collect()
    growth = _rss() - before
    record_property(f"rss_growth_bytes_{backend}", growth)
    print(f"[{backend}] RSS growth over {N_CALLS[backend]} iterations: {growth / 2**10:.0f} KiB")
    assert growth < RSS_BOUND, (
        f"RSS grew by {growth / 2**20:.1f} MB over {N_CALLS[backend]} iterations")


def test_traced_memory_and_objects_flat(backend, record_property):
    iteration = _iteration_factory(backend)
    for k in range(WARMUP):
        iteration(k)
    gc.collect()
    objects_before = len(gc.get_objects())
    tracemalloc.start()
    try:
        for k in range(TRACED_CALLS):  # until the caches and free lists stop growing
            iteration(k)
        gc.collect()
        traced_before, _ = tracemalloc.get_traced_memory()
        for k in range(TRACED_CALLS):
            iteration(k)
        gc.collect()
        traced_growth = tracemalloc.get_traced_memory()[0] - traced_before
    finally:
        tracemalloc.stop()
    gc.collect()
    object_growth = len(gc.get_objects()) - objects_before
    record_property(f"traced_growth_bytes_{backend}", traced_growth)
    print(f"[{backend}] over {TRACED_CALLS} iterations: traced memory {traced_growth:+d} B, "
          f"gc-tracked objects {object_growth:+d}")
    assert traced_growth < TRACED_BOUND, f"traced memory grew by {traced_growth} B"
    assert object_growth < OBJECT_BOUND, f"{object_growth} more objects tracked by gc"
    assert gc.garbage == [], "uncollectable garbage"
