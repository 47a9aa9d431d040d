"""Where the Cython forward's column split pays: its time against the groups of rows, per cell,
batch size and hidden size, and what its rule (src/kernels/_layout.pxd, column_threads)
picks.

For each case (T = 100, I = H, float32, whole-sequence inference) the forward kernel is
called directly on prepared buffers, its weights packed once per decomposition, in three
ways: one thread; two threads on groups of rows (columns=0); two threads on the column split
(columns=1). Each way is timed in two rounds of `--reps` calls, one after the other, and
keeps its better round's median. Ratios: rows/cols = time(2 threads, rows) / time(2 threads,
split) (> 1: the split is faster), 1thr/cols = time(1 thread) / time(split). `rule` is the
team the rule gives (0: the groups of rows).

    python bench/column_split.py                          # LSTM, B 1-16, H 64-512
    python bench/column_split.py --cells 0 1 2 3 --batches 1 2 4 8 --hidden 128 256 512
"""
import argparse
import time

import numpy as np

from fastlstm import _isa
from fastlstm.bench.machine import cpu_model, isa_label

CELL_NAMES = {0: "lstm", 1: "gru", 2: "gru-rb", 3: "rnn-tanh", 4: "rnn-relu"}


def setup(fwd, info, cell, T, B, I, H):
    """A forward call on prepared buffers: call(n_threads, columns)."""
    G = {0: 4, 1: 3, 2: 3}.get(cell, 1) * H
    Gs = H if cell > 2 else 4 * H
    rng = np.random.default_rng(0)
    f32 = np.float32
    x = rng.standard_normal((T, B, I)).astype(f32)
    w_ih = (rng.standard_normal((G, I)) * 0.05).astype(f32)
    w_hh = (rng.standard_normal((G, H)) * 0.05).astype(f32)
    w_hr, peep, bias = np.zeros((0, H), f32), np.zeros((0, H), f32), np.zeros((2, G), f32)
    h = np.zeros((T + 1, B, H), f32)
    c = np.zeros((2 if cell == 0 else 0, B, H), f32)
    gates = np.zeros((min(T, max(1, 256 // B)), B, Gs), f32)
    work = np.zeros((B, 3 * H if cell in (1, 2) else 0), f32)
    # one scratch per decomposition, packed by its first call and then reused, as a layer's
    # packs are (packing at every call, as this script did, favoured the split at small H,
    # whose packing the two threads share)
    scratch = {columns: np.empty(info.forward_scratch_length(cell, I, H, H, 0, 4), f32)
               for columns in (0, 1)}
    packed = set()
    lengths = np.full(B, T, np.int64)

    def call(n_threads, columns):
        fwd.forward(cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work,
                    scratch[columns], n_threads, columns not in packed, columns)
        packed.add(columns)
    return call


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args(argv)
    fwd = _isa.kernel_module("recurrent_forward")
    info = _isa.kernel_module("_info")
    print(f"column split: T={args.steps}, I=H, float32, inference; {cpu_model()}; {isa_label()}")
    print(f"{'cell':<9} {'B':>3} {'H':>4} {'1 thr ms':>9} {'2 rows ms':>10} {'2 cols ms':>10} "
          f"{'rows/cols':>9} {'1thr/cols':>9} {'rule':>5}")
    for cell in args.cells:
        for B in args.batches:
            for H in args.hidden:
                call = setup(fwd, info, cell, args.steps, B, H, H)
                ways = [lambda: call(1, 0), lambda: call(2, 0), lambda: call(2, 1)]
                for way in ways:
                    way()
                best = [min(median_ms(w, args.reps), median_ms(w, args.reps)) for w in ways]
                one, rows, cols = best
                rule = info.column_threads(cell, B, H, H, 4, 2)
                print(f"{CELL_NAMES[cell]:<9} {B:3d} {H:4d} {one:9.3f} {rows:10.3f} {cols:10.3f} "
                      f"{rows / cols:9.2f} {one / cols:9.2f} {rule:5d}", flush=True)


if __name__ == "__main__":
    main()
