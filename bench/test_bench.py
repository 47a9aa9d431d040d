"""Benchmarks: every contender of fastlstm.bench.peers on every case x mode, grouped by case and
mode so that pytest-benchmark's table puts the contenders side by side.

Each benchmark first checks the contender's y (and gradients, for training) against fastlstm's
NumPy reference (float32, relative error 1e-4): a mismatch fails the test. The callable is
then warmed up (JIT compilation) and timed with benchmark.pedantic under the thread limit.
See bench/conftest.py for the options (--bench-quick for a smoke run).
"""
import math
import time

import pytest

from fastlstm.bench import grid, machine, peers

MIN_ROUNDS = 5


def test_contender(benchmark, bench_case, bench_problems, bench_settings):
    case, mode, name = bench_case
    problem, ref = bench_problems(case)
    threads = bench_settings["threads"]
    try:
        contender = peers.build(name, problem, threads)
    except peers.PeerUnavailable as exc:
        pytest.skip(str(exc))
    if not contender.can(mode):
        pytest.skip(f"{name}: {mode} not supported ({contender.note or 'inference only'})")
    fn = contender.callable_for(mode)

    with peers.threads_limited(threads):
        errors = peers.check_contender(contender, ref, modes=(mode,))  # also the JIT warm-up
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-7)
        rounds = max(MIN_ROUNDS, min(10_000, math.ceil(bench_settings["min_time"] / once)))
        benchmark.group = f"{case.label} {mode}"
        benchmark.extra_info.update(
            cell=case.cell, lengths=case.lengths, contender=name, version=contender.version,
            threads=threads, cpu=machine.cpu_model(), **machine.isa_info(),
            gflop=grid.flops(case.shape, mode, case.cell, problem.work_rows) / 1e9,
            max_rel_error=max(errors.values()))
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
