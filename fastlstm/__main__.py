"""`python -m fastlstm`: check every backend against the NumPy reference and print a table.

`python -m fastlstm bench [...]` runs the benchmark against the peers (see `--help`).
`python -m fastlstm demo NAME [...]` runs a demonstration (twostep, adding, digits; see
`python -m fastlstm demo --help`).
"""
import argparse
import sys
import time

import numpy as np

from . import available_backends, backward, forward
from ._backends import unavailable_backends


def make_problem(T, B, I, H, dtype, seed=0):
    """Random inputs shaped like torch.nn.LSTM's, with weights in PyTorch's U(-1/sqrt(H), 1/sqrt(H))."""
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(H)

    def uniform(*shape):
        return rng.uniform(-k, k, size=shape).astype(dtype)

    return dict(
        x=rng.standard_normal((T, B, I)).astype(dtype),
        w_ih=uniform(4 * H, I), w_hh=uniform(4 * H, H), b_ih=uniform(4 * H), b_hh=uniform(4 * H),
        h0=rng.standard_normal((B, H)).astype(dtype), c0=rng.standard_normal((B, H)).astype(dtype),
    ), rng.standard_normal((T, B, H)).astype(dtype)


def _median_time(fn, min_time=0.2, max_repeats=200):
    fn()  # warm-up: JIT compilation, caches
    times = []
    start = time.perf_counter()
    while len(times) < max_repeats and (time.perf_counter() - start < min_time or len(times) < 3):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(b.dtype).tiny))


def check_table(T=100, B=16, I=128, H=256, dtypes=("float32", "float64"), out=sys.stdout):
    """Run forward and forward+backward with every backend; print error and speed vs numpy.

    Returns a list of rows (backend, dtype, max relative error, forward s, training s).
    """
    rows = []
    print(f"fastlstm check: T={T} B={B} I={I} H={H}; error = max |backend - numpy| / max |numpy| "
          "over y, h_n, c_n and every gradient; times are medians", file=out)
    for name, why in unavailable_backends().items():
        print(f"  backend {name} unavailable: {why}", file=out)
    header = (f"{'backend':8} {'dtype':8} {'max error':>10} {'forward ms':>11} {'vs numpy':>9} "
              f"{'train ms':>9} {'vs numpy':>9}")
    print(header, file=out)
    print("-" * len(header), file=out)
    for dtype in dtypes:
        args, dy = make_problem(T, B, I, H, np.dtype(dtype))
        results, times = {}, {}
        for name in ("numpy",) + tuple(b for b in available_backends() if b != "numpy"):
            def infer(name=name):
                return forward(**args, backend=name)

            def train(name=name):
                y, (h_n, c_n), tape = forward(**args, backend=name, return_tape=True)
                return (y, h_n, c_n), backward(tape, dy)

            (y, h_n, c_n), g = train()
            results[name] = [y, h_n, c_n, g.x, g.w_ih, g.w_hh, g.b_ih, g.h0, g.c0]
            times[name] = (_median_time(infer), _median_time(train))
            err = max(_rel_err(a, b) for a, b in zip(results[name], results["numpy"]))
            t_inf, t_train = times[name]
            print(f"{name:8} {dtype:8} {err:10.1e} {t_inf * 1e3:11.3f} "
                  f"{times['numpy'][0] / t_inf:8.1f}x {t_train * 1e3:9.3f} "
                  f"{times['numpy'][1] / t_train:8.1f}x", file=out, flush=True)
            rows.append((name, dtype, err, t_inf, t_train))
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":
        from .bench.cli import main as bench_main

        return bench_main(argv[1:])
    if argv and argv[0] == "demo":
        from .demos import main as demo_main

        return demo_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m fastlstm",
        description="Check every fastlstm backend against the NumPy reference and time it. "
                    "'python -m fastlstm bench --help' for the benchmark against the peers, "
                    "'python -m fastlstm demo --help' for the demonstrations.")
    parser.add_argument("--shape", type=int, nargs=4, metavar=("T", "B", "I", "H"),
                        default=(100, 16, 128, 256), help="problem size (default 100 16 128 256)")
    args = parser.parse_args(argv)
    check_table(*args.shape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
