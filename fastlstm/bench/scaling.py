"""The threads table of `python -m fastlstm bench`: what a second thread gives each contender
on whole-sequence inference of a batch of one.

For each B = 1 shape (T, 1, I, H) of the grid and each cell (LSTM, PyTorch's GRU, tanh RNN),
float32, the time of one call at 1 thread and at 2 threads of:
    cython          fastlstm.forward / gru_forward / rnn_forward with backend="cython",
                    under fastlstm.threads(n)
    onnxruntime     the one-node ONNX model of peers.onnx_model, one session per thread count
                    (intra_op_num_threads = n)
    torch           torch.nn.LSTM / GRU / RNN under torch.set_num_threads(n)
(peers.threads_limited(n) sets all of these, and the BLAS and OpenMP pools), and each one's
ratio time(1 thread) / time(2 threads): above 1 when the second thread helps.

Every contender is checked at each thread count against fastlstm's NumPy reference
(relative error 1e-4) before anything is timed. Then the (contender, thread count) pairs of a
case take turns, one block of calls of each inside its own thread limit
(timing.measure_rotation; a block lasts about BLOCK_SECONDS), until each pair has had
`repeats` blocks and min_time seconds: the machine's slow spells fall on all of them alike.
Before the first block of each contender in a round the harness waits SETTLE_SECONDS
(untimed): ONNX Runtime's pool threads keep spinning for 10-30 ms after its calls, and in the
next blocks they took a core from the contender that followed (fastlstm's LSTM at B=1,
H=256 on 2 threads: 0.94 ms a call instead of 0.48, on a 2-core AMD EPYC).
The table reports the median time per call of each pair.
"""
import contextlib
import math
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from . import peers
from .grid import DEFAULT_SHAPES, shape_label
from .machine import OtherLoad, isa_info, machine_line
from .timing import (DEFAULT_MIN_TIME, DEFAULT_REPEATS, SETTLE_SECONDS, Progress, measure_rotation,
                     settled)

#: the contenders of the table, in table order (those of the run's contenders)
SCALING_CONTENDERS = ("cython", "onnxruntime", "torch")
#: the thread counts compared; the ratio is time(first) / time(last)
THREAD_COUNTS = (1, 2)
#: about how long one timed block of calls lasts
BLOCK_SECONDS = 0.01


def batch_of_one(shapes: Sequence[Sequence[int]]) -> List[Tuple[int, int, int, int]]:
    """The shapes (T, B, I, H) with B = 1, in order, without repeats."""
    return list(dict.fromkeys(tuple(int(n) for n in s) for s in shapes if int(s[1]) == 1))


#: the default shapes: the B = 1 shapes of the grid
DEFAULT_SCALING_SHAPES = tuple(batch_of_one(DEFAULT_SHAPES))


@dataclass
class ScalingRow:
    """One contender on one case: median seconds per call at each thread count."""

    cell: str
    shape: Tuple[int, int, int, int]
    contender: str
    median_s: Dict[int, float]
    max_rel_error: float

    @property
    def ratio(self) -> float:
        """time(fewest threads) / time(most threads), the first and last of median_s."""
        counts = list(self.median_s)
        return self.median_s[counts[0]] / self.median_s[counts[-1]]

    def as_dict(self) -> Dict[str, object]:
        T, B, I, H = self.shape
        return {"cell": self.cell, "shape": shape_label(self.shape), "T": T, "B": B, "I": I,
                "H": H, "contender": self.contender,
                "median_s": {str(n): t for n, t in self.median_s.items()},
                "ratio": self.ratio, "max_rel_error": self.max_rel_error}


def _time_once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return max(time.perf_counter() - t0, 1e-7)


@contextlib.contextmanager
def _settled_threads(n: int, settle: float):
    """peers.threads_limited(n), entered after sleeping `settle` seconds (other contenders'
    spinning threads go quiet meanwhile)."""
    with settled(settle), peers.threads_limited(n):
        yield


def run_scaling(contenders: Sequence[str],
                shapes: Sequence[Sequence[int]] = DEFAULT_SCALING_SHAPES,
                cells: Sequence[str] = peers.CELLS, min_time: float = DEFAULT_MIN_TIME,
                repeats: int = DEFAULT_REPEATS, thread_counts: Sequence[int] = THREAD_COUNTS,
                progress: Optional[Progress] = None) -> Dict[str, object]:
    """Check, then time, each contender of SCALING_CONTENDERS among `contenders` at each
    thread count, on each cell at each shape (T, B, I, H) (the table is meant for B = 1, but
    any shape runs). min_time: seconds per (contender, thread count) and case.

    Returns {"meta": {...}, "rows": [ScalingRow, ...]} (rows case by case, contenders in
    SCALING_CONTENDERS order). Raises peers.MismatchError before timing a case when a
    contender disagrees with the NumPy reference.
    """
    names = [n for n in SCALING_CONTENDERS if n in contenders]
    thread_counts = tuple(int(n) for n in thread_counts)
    progress = progress or Progress(enabled=False)
    other_load = OtherLoad()
    rows = []
    cases = [(cell, tuple(int(n) for n in s)) for s in shapes for cell in cells]
    for k, (cell, shape) in enumerate(cases):
        label = f"[threads {k + 1}/{len(cases)}] {cell} {shape_label(shape)}"
        progress.update(label)
        problem = peers.make_problem(*shape, cell=cell)
        ref = peers.reference(problem)
        fns, calls, contexts, errors = [], [], [], {}
        for name in names:
            for n in thread_counts:
                contender = peers.build(name, problem, n)
                with peers.threads_limited(n):
                    err = peers.check_contender(contender, ref, ("inference",))["y"]
                    once = _time_once(contender.infer)
                errors[name] = max(errors.get(name, 0.0), err)
                fns.append(contender.infer)
                calls.append(max(1, math.ceil(BLOCK_SECONDS / once)))
                contexts.append(lambda n=n, first=n == thread_counts[0]:
                                _settled_threads(n, SETTLE_SECONDS if first else 0.0))
        progress.update(label + " timing")
        timings = iter(measure_rotation(fns, min_time * len(fns), repeats, calls=calls,
                                        contexts=contexts))
        for name in names:
            medians = {n: next(timings).median for n in thread_counts}
            rows.append(ScalingRow(cell, shape, name, medians, errors[name]))
    progress.done()
    meta = {"threads": list(thread_counts), "contenders": names, "cells": list(cells),
            "shapes": [shape_label(s) for s in shapes], "min_time_s": min_time,
            "min_repeats": repeats, "block_s": BLOCK_SECONDS, "settle_s": SETTLE_SECONDS,
            "machine": machine_line(),
            **isa_info(), "other_processes_cpus": other_load.cpus()}
    return {"meta": meta, "rows": rows}


def to_json(result: Dict[str, object]) -> Dict[str, object]:
    """run_scaling's result as JSON-ready data: {"meta": {...}, "rows": [{...}, ...]}."""
    return {"meta": result["meta"], "rows": [r.as_dict() for r in result["rows"]]}


def format_scaling(result: Dict[str, object]) -> str:
    """The threads table as text."""
    meta, rows = result["meta"], result["rows"]
    a, b = meta["threads"][0], meta["threads"][-1]
    other = meta.get("other_processes_cpus")
    head = (f"{'cell':<6} {'shape TxBxIxH':<16} {'contender':<12} {f'{a} thr ms':>10} "
            f"{f'{b} thr ms':>10} {f'{a}/{b} ratio':>10} {'max err':>8}")
    lines = ["", f"threads: whole-sequence inference, float32, each contender at {a} and {b} "
                 f"thread(s) (calls in blocks of ~{meta['block_s'] * 1e3:g} ms, all of a case "
                 f"taking turns; medians); ratio = time({a}) / time({b}): > 1 when the extra "
                 "threads help",
             meta["machine"] + ("" if other is None else
                                f"; other processes kept {other:.2f} CPUs busy"),
             "", head, "-" * len(head)]
    previous = None
    for r in rows:
        if previous is not None and (r.cell, r.shape) != previous:
            lines.append("")
        previous = (r.cell, r.shape)
        lines.append(f"{r.cell:<6} {shape_label(r.shape):<16} {r.contender:<12} "
                     f"{r.median_s[a] * 1e3:10.3f} {r.median_s[b] * 1e3:10.3f} "
                     f"{r.ratio:9.2f}x {r.max_rel_error:8.1e}")
    return "\n".join(lines)
