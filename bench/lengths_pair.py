"""Variable lengths against the padded batch, in one process, calls alternating: the bench's
lengths case (an LSTM at T=200, B=32, I=64, H=128, lengths uniform in [20, 200],
`peers.make_problem(..., lengths=True)`) through fastlstm.forward with the cython backend,
each call of the padded batch followed by one with lengths, in rounds of `--calls` pairs.
Prints each round's medians, time(lengths) / time(padded) over the work fraction
sum(lengths) / (T*B) (issue 17's target: at most 1.15), and the kernel's share of each call
(CythonBackend.forward timed inside).

    python bench/lengths_pair.py                   # 2 threads, 3 rounds of 100 pairs
    python bench/lengths_pair.py --threads 1 --rounds 5
"""
import argparse
import time

import numpy as np

import fastlstm
from fastlstm._backends import CythonBackend
from fastlstm.bench import peers
from fastlstm.bench.machine import cpu_model, isa_label


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    problem = peers.make_problem(200, 32, 64, 128, lengths=True)
    work = problem.work_rows / (200 * 32)
    with_lengths = problem.forward_args()
    padded = {k: v for k, v in with_lengths.items() if k != "lengths"}
    kernel_times = []
    forward = CythonBackend.forward

    def timed_forward(self, *a, **k):   # the kernel's share of a call
        t0 = time.perf_counter()
        forward(self, *a, **k)
        kernel_times.append(time.perf_counter() - t0)

    CythonBackend.forward = timed_forward
    print(f"{cpu_model()}, {isa_label()}, {args.threads} thread(s); work fraction {work:.3f}")
    with fastlstm.threads(args.threads):
        for _ in range(args.rounds):
            times, kernels = ([], []), ([], [])
            for _ in range(args.calls):
                for k, call_args in enumerate((padded, with_lengths)):
                    kernel_times.clear()
                    t0 = time.perf_counter()
                    fastlstm.forward(**call_args, backend="cython")
                    times[k].append(time.perf_counter() - t0)
                    kernels[k].append(sum(kernel_times))
            a, b = (np.median(t) * 1e3 for t in times)
            ka, kb = (np.median(t) * 1e3 for t in kernels)
            print(f"padded {a:.3f} ms (kernel {ka:.3f}), lengths {b:.3f} ms (kernel {kb:.3f}): "
                  f"{b / a / work:.3f}x the work ratio (kernel alone {kb / ka / work:.3f}x)")


if __name__ == "__main__":
    main()
