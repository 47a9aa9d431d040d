"""Timing of the bench: median wall-clock times of callables, and the progress line.

    measure(fn)                      warm up, then time calls of fn one by one
    measure_pair(fn_a, fn_b)         the same for two callables, their calls alternating
    measure_rotation(fns, calls=n)   any number of callables, one block of n calls of each in
                                     turn, each block optionally inside its own context (a
                                     thread limit); a block gives one time per call
    settled(seconds)                 a context that first sleeps, untimed: the threads that
                                     the previous contender left spinning go quiet

Every function warms up first (JIT compilation, caches), then times until at least `repeats`
timings and at least `min_time` seconds are done; Timing.median is what the tables report.
"""
import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, List, Optional, Sequence, Tuple, Union

import numpy as np

DEFAULT_MIN_TIME = 0.3
DEFAULT_REPEATS = 5
DEFAULT_WARMUP = 1
#: the untimed wait before a contender's block when contenders take turns: ONNX Runtime's pool
#: threads (and OpenMP's) keep spinning for 10-30 ms after their calls, and on a machine with
#: as many cores as threads they took a core from the contender that followed
SETTLE_SECONDS = 0.03


@dataclass
class Timing:
    """Wall-clock times (seconds) of the timed calls of one callable, after the warm-up (for
    measure_rotation with calls > 1: seconds per call of each block)."""

    times: List[float]

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def best(self) -> float:
        return float(np.min(self.times))


def measure(fn: Callable[[], object], min_time: float = DEFAULT_MIN_TIME,
            repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP) -> Timing:
    """Call fn `warmup` times untimed (at least once: JIT compilation, caches), then time
    calls until at least `repeats` of them and at least `min_time` seconds are done."""
    for _ in range(max(1, int(warmup))):
        fn()
    times = []
    clock = time.perf_counter
    start = clock()
    while len(times) < repeats or clock() - start < min_time:
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return Timing(times)


def measure_pair(fn_a: Callable[[], object], fn_b: Callable[[], object],
                 min_time: float = DEFAULT_MIN_TIME, repeats: int = DEFAULT_REPEATS,
                 warmup: int = DEFAULT_WARMUP) -> Tuple[Timing, Timing]:
    """measure() for two callables at once, their calls alternating (a, b, a, b, ...), so that
    a shared machine's slow spells fall on both: their ratio is then far steadier than that
    of two separate measurements."""
    timing_a, timing_b = measure_rotation([fn_a, fn_b], min_time, repeats, warmup)
    return timing_a, timing_b


def measure_rotation(fns: Sequence[Callable[[], object]], min_time: float = DEFAULT_MIN_TIME,
                     repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP,
                     calls: Union[int, Sequence[int]] = 1,
                     contexts: Optional[Sequence[Callable[[], ContextManager]]] = None,
                     ) -> List[Timing]:
    """measure() for several callables, one block of each in turn (fns[0], fns[1], ...,
    fns[0], ...), until each has at least `repeats` blocks and `min_time` seconds have
    passed in all.

    calls: the calls per block, one int for all or one per callable; a block's time is
    recorded divided by its calls (seconds per call). contexts: None, or one factory per
    callable of a context manager (e.g. lambda: threads_limited(2)) entered around each of
    its blocks and around its warm-up; entering it is not timed, and with contexts each block
    starts with one untimed call (the first call after a change of thread count).
    Returns one Timing per callable, in the order of fns.
    """
    n = len(fns)
    if n == 0:
        return []
    calls = [int(calls)] * n if isinstance(calls, int) else [int(c) for c in calls]
    if len(calls) != n or min(calls, default=1) < 1:
        raise ValueError(f"calls: expected a positive int or {n} of them, got {calls}")
    first_call = contexts is not None
    contexts = [contextlib.nullcontext] * n if contexts is None else list(contexts)
    if len(contexts) != n:
        raise ValueError(f"contexts: expected {n} context factories, got {len(contexts)}")
    for fn, context in zip(fns, contexts):
        with context():
            for _ in range(max(1, int(warmup))):
                fn()
    times = [[] for _ in fns]
    clock = time.perf_counter
    start = clock()
    while min(len(t) for t in times) < repeats or clock() - start < min_time:
        for k in range(n):
            fn, block = fns[k], range(calls[k])
            with contexts[k]():
                if first_call:
                    fn()
                t0 = clock()
                for _ in block:
                    fn()
                times[k].append((clock() - t0) / calls[k])
    return [Timing(t) for t in times]


@contextlib.contextmanager
def settled(seconds: float = SETTLE_SECONDS):
    """A context entered after sleeping `seconds` (untimed in measure_rotation's contexts)."""
    if seconds > 0:
        time.sleep(seconds)
    yield


class Progress:
    """One self-overwriting progress line on a stream (stderr)."""

    def __init__(self, stream=None, enabled=True):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self._width = 0

    def update(self, text: str):
        if not self.enabled:
            return
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def done(self):
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
