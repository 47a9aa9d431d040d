"""Thread safety: concurrent forward and backward calls, each thread on its own inputs, give
bitwise the results of the same calls made one after another; and the kernels release the GIL.

- 8 threads (concurrent.futures.ThreadPoolExecutor) start together on a barrier; each runs
  forward (training and inference) and backward several times on its own problem (shapes,
  dtypes and layouts differ between threads), on every backend, and on all backends at once.
- The GIL: the same calls in one thread, then split over two threads started together (under
  fastlstm.threads(1), one core each). The test asserts that the two threads' results are the
  sequential ones, and records the speed-up (pytest's record_property, shown with --junitxml;
  printed with -s) without asserting it: timings on a shared CI machine are noise.
  scripts/overlap.py measures it with more calls and prints a table (figures in TESTING.md).
"""
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import fastlstm

from conftest import GRAD_NAMES, make_problem, require_backend, run_in_forked_child

N_THREADS = 8
#: calls per thread, each checked; FASTLSTM_STRESS_REPEATS=N for a longer stress run
REPEATS = int(os.environ.get("FASTLSTM_STRESS_REPEATS", "6") or 6)


def _problems(n, seed):
    """n different problems: shapes, dtypes and layouts vary from one to the next."""
    shapes = [(7, 5, 6, 9), (30, 24, 32, 64), (5, 1, 4, 7), (20, 64, 16, 48), (3, 2, 3, 33),
              (16, 4, 5, 6), (4, 0, 3, 5), (0, 3, 2, 4)]  # T, B, I, H; empty ones too
    out = []
    for k in range(n):
        T, B, I, H = shapes[k % len(shapes)]
        layout = ("time_major", "batch_first", "unbatched")[k % 3]
        if layout == "unbatched":
            B = 1
        dtype = (np.float32, np.float64)[k % 2]
        out.append((make_problem(T, B, I, H, dtype=dtype, seed=seed + k), layout))
    return out


def _work(p, layout, backend):
    """Everything one thread computes: inference, training forward, backward (copies)."""
    fargs, kwargs, grads_in = p.call_args(layout)
    y_inf, (h_inf, c_inf) = fastlstm.forward(*fargs, **kwargs, backend=backend)
    y, (h_n, c_n), tape = fastlstm.forward(*fargs, **kwargs, backend=backend, return_tape=True)
    g = fastlstm.backward(tape, *grads_in)
    return [y_inf, h_inf, c_inf, y, h_n, c_n] + [getattr(g, n) for n in GRAD_NAMES]


def _assert_identical(got, want, what):
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        if b is None:
            assert a is None, f"{what}: output {k}"
            continue
        assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: output {k}"
        assert np.array_equal(a, b), f"{what}: output {k} differs from the sequential call"


def _stress(jobs):
    """Run jobs [(problem, layout, backend)] sequentially, then in N_THREADS threads at once
    (REPEATS times each, started together), and compare bitwise."""
    expected = [_work(p, layout, backend) for p, layout, backend in jobs]
    barrier = threading.Barrier(len(jobs))

    def thread(k):
        p, layout, backend = jobs[k]
        barrier.wait()
        return [_work(p, layout, backend) for _ in range(REPEATS)]

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(thread, range(len(jobs))))
    for k, runs in enumerate(results):
        for r, got in enumerate(runs):
            _assert_identical(got, expected[k], f"thread {k} ({jobs[k][2]}), call {r}")


def test_eight_threads_one_backend(backend):
    jobs = [(p, layout, backend) for p, layout in _problems(N_THREADS, seed=80)]
    _stress(jobs)


def test_eight_threads_all_backends_at_once():
    """The three backends side by side in one pool: no shared state between them either."""
    names = [require_backend(b) for b in fastlstm.available_backends()]
    jobs = [(p, layout, names[k % len(names)])
            for k, (p, layout) in enumerate(_problems(N_THREADS, seed=90))]
    _stress(jobs)


def test_threads_share_one_tape():
    """Several threads back-propagating through the same tape at once (backward only reads
    it) get the sequential gradients."""
    p = make_problem(10, 6, 5, 8, seed=95)
    names = list(fastlstm.available_backends())
    tapes = {b: fastlstm.forward(*p.forward_args(), backend=b, return_tape=True)[2]
             for b in names}
    scales = [0.5 * (k + 1) for k in range(N_THREADS)]

    def grads(backend, s):
        g = fastlstm.backward(tapes[backend], s * p.dy, p.dh_n, s * p.dc_n)
        return [getattr(g, n) for n in GRAD_NAMES]

    expected = {(b, s): grads(b, s) for b in names for s in scales}
    barrier = threading.Barrier(N_THREADS)

    def thread(k):
        barrier.wait()
        b = names[k % len(names)]
        return b, scales[k], [grads(b, scales[k]) for _ in range(REPEATS)]

    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        for b, s, runs in pool.map(thread, range(N_THREADS)):
            for got in runs:
                _assert_identical(got, expected[(b, s)], f"{b}, scale {s}")


# ------------------------------------------------------------------------------------ GIL


def two_thread_speedup(backend, n_calls=8, shape=(40, 16, 64, 128)):
    """(speed-up, results): n_calls forward+backward calls in one thread, then the same calls
    split over two threads; speed-up = time in one thread / time in two (2: the two threads
    ran fully in parallel; 1: the GIL serialised them).

    Under fastlstm.threads(1), so that BLAS keeps to one core per calling thread. Returns the
    results of every call made in the two threads, for checking.
    """
    p = make_problem(*shape, dtype=np.float64, seed=99)
    _work(p, "time_major", backend)  # compile / warm up
    with fastlstm.threads(1):
        start = time.perf_counter()
        for _ in range(n_calls):
            _work(p, "time_major", backend)
        one = time.perf_counter() - start

        barrier = threading.Barrier(2)

        def half(_):
            barrier.wait()
            return [_work(p, "time_major", backend) for _ in range(n_calls // 2)]

        with ThreadPoolExecutor(max_workers=2) as pool:
            start = time.perf_counter()
            runs = list(pool.map(half, range(2)))
            two = time.perf_counter() - start
    return one / two, [r for run in runs for r in run], _work(p, "time_major", backend)


def test_kernels_release_the_gil(backend, record_property):
    """Correctness only: calls made in two threads at once give the sequential results. The
    two-thread speed-up is recorded, not asserted (see the module docstring)."""
    speedup, results, expected = two_thread_speedup(backend)
    assert len(results) == 8
    for k, got in enumerate(results):
        _assert_identical(got, expected, f"call {k} of two threads")
    record_property(f"two_thread_speedup_{backend}", round(speedup, 2))
    print(f"[{backend}] two threads: {speedup:.2f}x the speed of one (2.00x: no GIL contention)")


def _forked_child(queue, model, x):
    with fastlstm.threads(2):
        y, _ = model(x)
    queue.put(y)


def test_a_child_forked_after_threaded_kernels_runs(backend):
    """GNU OpenMP cannot start threads in a child forked from a process that had some (the
    child would hang at its first parallel region): the kernels run on one thread there
    (fastlstm._threads), and give the parent's results."""
    import sys

    if sys.platform != "linux":
        import pytest

        pytest.skip("fork is the default start method on Linux only")
    model = fastlstm.LSTM(64, 256, seed=0, backend=backend)
    x = np.random.default_rng(0).standard_normal((20, 2, 64)).astype(np.float32)
    with fastlstm.threads(2):
        want, _ = model(x)   # the kernels' threads exist in this process now
    got = run_in_forked_child(_forked_child, model, x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
