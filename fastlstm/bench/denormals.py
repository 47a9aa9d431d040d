"""The denormals table of `python -m fastlstm bench`: each contender on subnormal-heavy data
against the same network on normal data, LSTM, float32, inference and training.

The subnormal problem is the normal one (peers.make_problem) with x, h0 and c0 scaled by
1e-39 and no biases: every input, state, product and gate pre-activation is then a
subnormal float32 (below 1.18e-38), all through the sequence. On CPUs that handle those in
microcode (Intel's, notably) such data can slow arithmetic down 10-100x; fastlstm's Cython
kernels compute in flush-to-zero / denormals-are-zero mode (src/kernels/_fpmode.h).

Each contender is checked on the normal problem against the NumPy reference (as the main
table does); on the subnormal one its results are not compared, since flushing them to zero
is the point. The two problems are timed in alternation (timing.measure_rotation); reported:
the median time of each, and their ratio time(subnormal) / time(normal).
"""
import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from . import peers
from .machine import OtherLoad, isa_info, machine_line
from .timing import DEFAULT_MIN_TIME, DEFAULT_REPEATS, DEFAULT_WARMUP, Progress, measure_rotation

#: the shape (T, B, I, H) of the table: the main grid's mid-sized batch
SHAPE = (100, 16, 128, 256)
#: the scale that makes standard-normal data subnormal in float32
TINY = 1e-39


@dataclass
class DenormalRow:
    """One contender and mode: median seconds per call on normal and on subnormal data."""

    contender: str
    mode: str
    normal_s: float
    subnormal_s: float

    @property
    def ratio(self) -> float:
        return self.subnormal_s / self.normal_s

    def as_dict(self) -> Dict[str, object]:
        return {"contender": self.contender, "mode": self.mode, "normal_s": self.normal_s,
                "subnormal_s": self.subnormal_s, "ratio": self.ratio}


def subnormal_problem(problem: peers.Problem) -> peers.Problem:
    """`problem` with x, h0, c0 (and dy) scaled to subnormal values and zero biases."""
    def tiny(a):
        return None if a is None else (a * np.float32(TINY)).astype(np.float32)

    zeros = np.zeros_like(problem.b_ih)
    return dataclasses.replace(problem, x=tiny(problem.x), h0=tiny(problem.h0),
                               c0=tiny(problem.c0), dy=tiny(problem.dy), b_ih=zeros,
                               b_hh=zeros.copy())


def run_denormals(contenders: Sequence[str], threads: int, shape: Tuple[int, ...] = SHAPE,
                  min_time: float = DEFAULT_MIN_TIME, repeats: int = DEFAULT_REPEATS,
                  warmup: int = DEFAULT_WARMUP, progress: Progress = None
                  ) -> Dict[str, object]:
    """Check on normal data, then time on normal and subnormal data, every contender
    (peers.CONTENDERS names) in both modes it can run, on `threads` threads. Returns
    {"meta": {...}, "rows": [DenormalRow, ...]}; raises peers.MismatchError when a
    contender disagrees with the NumPy reference on the normal problem."""
    progress = progress or Progress(enabled=False)
    other_load = OtherLoad()
    normal = peers.make_problem(*shape)
    tiny = subnormal_problem(normal)
    ref = peers.reference(normal)
    rows: List[DenormalRow] = []
    with peers.threads_limited(threads):
        for name in contenders:
            progress.update(f"[denormals] {name}")
            a = peers.CONTENDERS[name](normal, threads)
            b = peers.CONTENDERS[name](tiny, threads)
            peers.check_contender(a, ref)
            for mode in peers.MODES:
                if not a.can(mode):
                    continue
                t_a, t_b = measure_rotation([a.callable_for(mode), b.callable_for(mode)],
                                            2 * min_time, repeats, warmup)
                rows.append(DenormalRow(name, mode, t_a.median, t_b.median))
    progress.done()
    meta = {"shape": "x".join(map(str, shape)), "cell": "lstm", "dtype": "float32",
            "threads": threads, "scale": TINY, "machine": machine_line(), **isa_info(),
            "other_processes_cpus": other_load.cpus()}
    return {"meta": meta, "rows": rows}


def to_json(result: Dict[str, object]) -> Dict[str, object]:
    return {"meta": result["meta"], "rows": [r.as_dict() for r in result["rows"]]}


def format_denormals(result: Dict[str, object]) -> str:
    """The denormals table as text."""
    meta, rows = result["meta"], result["rows"]
    head = f"{'contender':<12} {'mode':<10} {'normal ms':>10} {'subnormal ms':>13} {'ratio':>7}"
    lines = ["", f"denormals: LSTM {meta['shape']} float32, {meta['threads']} threads; x, h0, c0 "
                 f"x {meta['scale']:g} and no biases, so every value is subnormal; ratio = "
                 "time(subnormal) / time(normal)", meta["machine"], "", head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.contender:<12} {r.mode:<10} {r.normal_s * 1e3:10.3f} "
                     f"{r.subnormal_s * 1e3:13.3f} {r.ratio:6.2f}x")
    return "\n".join(lines)
