"""Does each backend release the GIL? Time N calls in one thread against the same N calls split
over two threads, with BLAS on one thread per caller (fastlstm.threads(1)).

    python scripts/overlap.py                      # every backend, default shape
    python scripts/overlap.py --shape 100 32 128 256 --calls 16 --dtype float32

speed-up = (time in one thread) / (time in two threads); on a machine with two free cores,
2.00 means the two threads ran fully in parallel (the kernels hold the GIL for none of their
time) and 1.00 that they were serialised. overlap = speed-up - 1 is the share of the second
thread's work done in parallel. Every call's results are checked against the sequential ones.
Each figure is the best of --repeats runs. Figures of record are in TESTING.md.
"""
import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fastlstm  # noqa: E402


def make_inputs(T, B, I, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    weights = [rng.uniform(-k, k, shape).astype(dtype)
               for shape in ((4 * H, I), (4 * H, H), (4 * H,), (4 * H,))]
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    return (x, *weights), dy


def call(mode, backend, args, dy):
    """One call: 'inference' (forward only) or 'training' (forward with tape + backward)."""
    if mode == "inference":
        y, (h_n, c_n) = fastlstm.forward(*args, backend=backend)
        return [y, h_n, c_n]
    y, (h_n, c_n), tape = fastlstm.forward(*args, backend=backend, return_tape=True)
    g = fastlstm.backward(tape, dy)
    return [y, h_n, c_n, g.x, g.w_ih, g.w_hh, g.b_ih]


def measure(mode, backend, args, dy, calls, repeats):
    """(seconds in one thread, seconds in two threads), best of `repeats`; checks results."""
    expected = call(mode, backend, args, dy)  # also compiles Numba's kernels
    one = two = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            call(mode, backend, args, dy)
        one = min(one, time.perf_counter() - start)

        barrier = threading.Barrier(2)

        def half(_):
            barrier.wait()
            return [call(mode, backend, args, dy) for _ in range(calls // 2)]

        with ThreadPoolExecutor(max_workers=2) as pool:
            start = time.perf_counter()
            runs = list(pool.map(half, range(2)))
            two = min(two, time.perf_counter() - start)
        for run in runs:
            for got in run:
                for a, b in zip(got, expected):
                    if not np.array_equal(a, b):
                        raise AssertionError(f"{backend} {mode}: a threaded result differs")
    return one, two


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=4, default=(100, 32, 128, 256),
                        metavar=("T", "B", "I", "H"))
    parser.add_argument("--calls", type=int, default=16, help="calls per measurement (even)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--backends", nargs="*", default=None)
    opts = parser.parse_args(argv)
    backends = opts.backends or list(fastlstm.available_backends())
    args, dy = make_inputs(*opts.shape, np.dtype(opts.dtype))

    T, B, I, H = opts.shape
    print(f"T={T} B={B} I={I} H={H} {opts.dtype}; {opts.calls} calls in 1 thread vs "
          f"{opts.calls // 2} in each of 2 threads; BLAS threads per caller: 1; "
          f"CPUs: {os.cpu_count()}; best of {opts.repeats}")
    print(f"{'backend':8} {'mode':10} {'1 thread':>10} {'2 threads':>10} {'speed-up':>9} "
          f"{'overlap':>8}")
    with fastlstm.threads(1):
        for backend in backends:
            for mode in ("inference", "training"):
                one, two = measure(mode, backend, args, dy, opts.calls, opts.repeats)
                speedup = one / two
                print(f"{backend:8} {mode:10} {one * 1e3:8.1f}ms {two * 1e3:8.1f}ms "
                      f"{speedup:8.2f}x {speedup - 1:8.0%}")


if __name__ == "__main__":
    main()
