"""The main table of `python -m fastlstm bench`: every cell at every shape of the grid, every
contender, inference and training.

A case is a cell (LSTM, PyTorch's GRU, tanh RNN) at a shape (T, B, I, H), fully padded, plus
the variable-length cases: an LSTM whose B sequences have lengths drawn uniformly from
[T/10, T] (fastlstm's `lengths=`, torch's packed sequences, ONNX `sequence_lens`). For each
case and mode ("inference": one forward pass; "training": forward with a tape + backward with
every gradient), every contender of fastlstm.bench.peers runs the same float32 network. Before
anything is timed, each contender's y and gradients are checked against fastlstm's NumPy
reference (relative error 1e-4); a mismatch stops the run with an error.

Timing: each callable is warmed up (JIT compilation, caches), then repeated until both
min_time seconds and `repeats` calls are reached; the table reports the median. Before each
one the harness waits SETTLE_SECONDS, untimed, so that the threads the previous contender
left spinning (ONNX Runtime's pool, for 10-30 ms after its calls) do not take a core from it.

Output (format_report): a header (machine, versions, threads, git commit, date, the float32
matrix-product rate of this machine measured at the start of the run) and one table, with for
every shape x mode x contender: median ms, GFLOP/s, percent of the matrix-product rate, the
check's max relative error, and for fastlstm's backends the speed ratio against each peer
(time(peer) / time(backend): > 1 means fastlstm is faster). A variable-length case also
reports each fastlstm backend's time with lengths over its time on the same batch fully padded
(the two timed in alternation, measure_pair), beside sum(lengths) / (T*B). to_json gives all
of it as a dict, plot a bar chart.

    result = run_benchmark([(100, 1, 32, 64)], contenders=["cython", "onnxruntime"])
    print(format_report(result))
"""
import dataclasses
import datetime
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import fastlstm

from . import peers
from .machine import (DEFAULT_PEAK_SIZE, OtherLoad, git_commit, load_average, machine_info,
                      matmul_rate, versions)
from .timing import (DEFAULT_MIN_TIME, DEFAULT_REPEATS, DEFAULT_WARMUP, SETTLE_SECONDS,
                     Progress, Timing, measure, measure_pair)

#: the default grid of shapes (T, B, I, H)
DEFAULT_SHAPES = ((100, 1, 32, 64), (100, 1, 128, 128), (100, 1, 256, 256), (100, 1, 512, 512),
                  (100, 4, 256, 256), (100, 16, 128, 256), (50, 64, 256, 512),
                  (200, 32, 64, 128))
#: the shapes of the variable-length LSTM cases (lengths uniform in [T/10, T])
DEFAULT_LENGTHS_SHAPES = ((200, 32, 64, 128),)
DEFAULT_THREADS = 2
FLOPS_CONVENTION = ("inference = 2*T*B*G*H*(I+H) flops (the matrix products of the forward pass; "
                    "G = 4 LSTM, 3 GRU, 1 RNN; sum(lengths) in place of T*B with lengths); "
                    "training = 3x that (forward + backward ~ 2x forward)")


# ---------------------------------------------------------------------------------------------
# Shapes, flops, cases


def parse_shape(text: str) -> Tuple[int, int, int, int]:
    """'100x1x32x64' -> (100, 1, 32, 64) = (T, B, I, H); ValueError otherwise."""
    parts = text.strip().lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"shape {text!r}: expected TxBxIxH with positive integers, "
                         "e.g. 100x1x32x64")
    return shape


def shape_label(shape: Sequence[int]) -> str:
    """(T, B, I, H) -> 'TxBxIxH'."""
    return "x".join(str(int(n)) for n in shape)


def flops(shape: Sequence[int], mode: str, cell: str = "lstm",
          rows: Optional[int] = None) -> float:
    """Matrix-product flops of one call: 2*rows*G*H*(I+H) for inference (rows = T*B, or
    sum(lengths) when given; G the cell's gate blocks), 3x that for training."""
    T, B, I, H = shape
    rows = T * B if rows is None else rows
    forward = 2.0 * rows * peers.GATES[cell] * H * (I + H)
    return forward if mode == "inference" else 3.0 * forward


@dataclass(frozen=True)
class Case:
    """What one group of rows runs: a cell at a shape (T, B, I, H), with random lengths or
    fully padded."""

    cell: str
    shape: Tuple[int, int, int, int]
    lengths: bool = False

    @property
    def kind(self) -> str:
        """'lstm', 'gru', 'rnn', or 'lstm+len' (etc.) for a variable-length case."""
        return self.cell + ("+len" if self.lengths else "")

    @property
    def label(self) -> str:
        return f"{self.kind} {shape_label(self.shape)}"

    def problem(self) -> "peers.Problem":
        return peers.make_problem(*self.shape, cell=self.cell, lengths=self.lengths)


def make_cases(shapes: Sequence[Sequence[int]] = DEFAULT_SHAPES,
               cells: Sequence[str] = peers.CELLS,
               lengths_shapes: Sequence[Sequence[int]] = DEFAULT_LENGTHS_SHAPES) -> List[Case]:
    """Every cell at every shape (cell by cell), then the variable-length LSTM cases."""
    cases = [Case(cell, tuple(int(n) for n in s)) for cell in cells for s in shapes]
    cases += [Case("lstm", tuple(int(n) for n in s), True) for s in lengths_shapes]
    return cases


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Row:
    """One table row: one case x mode x contender. work_fraction: sum(lengths) / (T*B) (1 when
    fully padded); vs_padded: for a fastlstm backend with lengths, time(lengths) / time(the
    same backend on the same batch fully padded), from calls of the two that alternate
    (measure_pair; `timing` is then the lengths half)."""

    case: Case
    mode: str
    contender: str
    family: str
    version: str
    timing: Timing
    max_rel_error: float
    flops: float
    matmul_gflops: float
    speedup: Dict[str, float] = field(default_factory=dict)
    work_fraction: float = 1.0
    vs_padded: Optional[float] = None

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        return self.case.shape

    @property
    def gflops(self) -> float:
        return self.flops / self.timing.median / 1e9

    @property
    def pct_matmul(self) -> float:
        return 100.0 * self.gflops / self.matmul_gflops

    def as_dict(self) -> Dict[str, object]:
        T, B, I, H = self.shape
        return {"cell": self.case.cell, "lengths": self.case.lengths,
                "shape": shape_label(self.shape), "T": T, "B": B, "I": I, "H": H,
                "work_fraction": self.work_fraction, "vs_padded": self.vs_padded,
                "mode": self.mode, "contender": self.contender, "family": self.family,
                "version": self.version, "median_s": self.timing.median,
                "min_s": self.timing.best, "repeats": len(self.timing.times),
                "flops": self.flops, "gflops": self.gflops, "pct_matmul": self.pct_matmul,
                "max_rel_error": self.max_rel_error, "speedup": dict(self.speedup)}


def run_benchmark(shapes: Sequence[Sequence[int]] = DEFAULT_SHAPES,
                  modes: Sequence[str] = peers.MODES,
                  contenders: Optional[Sequence[str]] = None,
                  threads: int = DEFAULT_THREADS, min_time: float = DEFAULT_MIN_TIME,
                  repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP,
                  peak_size: int = DEFAULT_PEAK_SIZE,
                  builders: Optional[Dict[str, Callable]] = None,
                  progress: Optional[Progress] = None,
                  cells: Sequence[str] = peers.CELLS,
                  lengths_shapes: Sequence[Sequence[int]] = DEFAULT_LENGTHS_SHAPES,
                  ) -> Dict[str, object]:
    """Check, then time, every contender on every case (make_cases(shapes, cells,
    lengths_shapes)) and mode.

    shapes: (T, B, I, H) tuples. contenders: names (default: peers.available_contenders()).
    builders: {name: builder(problem, threads) -> Contender} (default peers.CONTENDERS; a test
    can pass a deliberately wrong one). Raises peers.MismatchError before any timing when a
    contender disagrees with the NumPy reference.

    Returns {"meta": {...}, "rows": [Row, ...]}: the rows in table order (case, mode,
    fastlstm backends then peers), speedup (and vs_padded) filled for fastlstm's rows.
    """
    builders = dict(peers.CONTENDERS if builders is None else builders)
    load_start = load_average()
    other_load = OtherLoad()
    names = list(peers.available_contenders() if contenders is None else contenders)
    modes = [m for m in peers.MODES if m in modes]
    progress = progress or Progress(enabled=False)
    cases = make_cases(shapes, cells, lengths_shapes)
    padded_refs = {}

    def padded_ref(padded):
        key = (padded.cell, padded.shape)
        if key not in padded_refs:
            padded_refs[key] = peers.reference(padded)
        return padded_refs[key]

    # 1. build and check everything (this also compiles the JIT kernels)
    built = []  # (case, problem, {name: (contender, errors)})
    for k, case in enumerate(cases):
        problem = case.problem()
        progress.update(f"[check {k + 1}/{len(cases)}] {case.label} reference")
        ref = peers.reference(problem)
        per_name = {}
        for name in names:
            progress.update(f"[check {k + 1}/{len(cases)}] {case.label} {name}")
            contender = builders[name](problem, threads)
            with peers.threads_limited(threads):
                errors = peers.check_contender(contender, ref, modes)
            twin = None
            if case.lengths and contender.family == "fastlstm":
                # the same batch fully padded, timed against it (measure_pair)
                padded = dataclasses.replace(problem, lengths=None)
                twin = builders[name](padded, threads)
                with peers.threads_limited(threads):
                    peers.check_contender(twin, padded_ref(padded), modes)
            per_name[name] = (contender, errors, twin)
        built.append((case, problem, per_name))

    # 2. time: the matrix-product rate first, then every callable, under the same thread limit
    jobs = [(case, mode, name) for case, _, per_name in built for mode in modes
            for name in names if per_name[name][0].can(mode)]
    rows: List[Row] = []
    with peers.threads_limited(threads):
        progress.update(f"[time 0/{len(jobs)}] float32 matmul {peak_size}x{peak_size}")
        peak = matmul_rate(peak_size, min_time, repeats)
        for case, problem, per_name in built:
            T, B = case.shape[:2]
            for mode in modes:
                group = []
                for name in names:
                    contender, errors = per_name[name][:2]
                    if not contender.can(mode):
                        continue
                    progress.update(f"[time {len(rows) + 1}/{len(jobs)}] {case.label} "
                                    f"{mode} {name}")
                    padded_timing = None
                    time.sleep(SETTLE_SECONDS)
                    if case.lengths and contender.family == "fastlstm":
                        timing, padded_timing = measure_pair(
                            contender.callable_for(mode),
                            per_name[name][2].callable_for(mode), min_time, repeats, warmup)
                    else:
                        timing = measure(contender.callable_for(mode), min_time, repeats,
                                         warmup)
                    err_keys = ["y"] if mode == "inference" else [k for k in errors if k != "y"]
                    row = Row(case=case, mode=mode, contender=name, family=contender.family,
                              version=contender.version, timing=timing,
                              max_rel_error=max((errors[k] for k in err_keys if k in errors),
                                                default=0.0),
                              flops=flops(case.shape, mode, case.cell, problem.work_rows),
                              matmul_gflops=peak["gflops"],
                              work_fraction=problem.work_rows / (T * B))
                    if padded_timing is not None:
                        row.vs_padded = timing.median / padded_timing.median
                    group.append(row)
                    rows.append(row)
                peer_rows = [r for r in group if r.family != "fastlstm"]
                for r in group:
                    if r.family == "fastlstm":
                        r.speedup = {p.contender: p.timing.median / r.timing.median
                                     for p in peer_rows}
    progress.done()

    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(names),
        "git": git_commit(),
        "threads": threads,
        "thread_control": "threadpoolctl BLAS/OpenMP limits"
                          + (" + fastlstm.threads" if hasattr(fastlstm, "threads") else "")
                          + ", torch.set_num_threads, onnxruntime intra_op_num_threads "
                          "(inter_op 1, sequential)",
        "contenders": names,
        "modes": modes,
        "shapes": [shape_label(s) for s in shapes],
        "cells": list(cells),
        "lengths_shapes": [shape_label(s) for s in lengths_shapes],
        "lengths_rule": "lengths uniform in [max(1, T // 10), T] "
                        "(fastlstm.bench.peers.random_lengths)",
        "cases": [c.label for c in cases],
        "min_time_s": min_time, "min_repeats": repeats, "warmup_calls": max(1, warmup),
        "flops_convention": FLOPS_CONVENTION,
        "tolerance": peers.RTOL,
        "matmul": peak,
        "load_average_1min": {"start": load_start, "end": load_average()},
        "other_processes_cpus": other_load.cpus(),
    }
    return {"meta": meta, "rows": rows}


# ---------------------------------------------------------------------------------------------
# Output


def format_report(result: Dict[str, object], skipped: Optional[Dict[str, str]] = None) -> str:
    """The header lines and the table of a run_benchmark result, as text."""
    meta, rows = result["meta"], result["rows"]
    m = meta["machine"]
    peer_names = [n for n in meta["contenders"] if n in peers.PEERS]
    lines = [
        f"fastlstm bench, {meta['date']}",
        f"machine:  {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable), "
        f"{m['platform']}",
        f"isa:      CPU {m.get('cpu_isa') or 'level unknown'}; cython kernels built for "
        f"{m.get('cython_isa') or '(not built)'} (FASTLSTM_ISA forces a level)",
        "versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"git:      {meta['git'] or 'unknown'}",
        f"threads:  {meta['threads']} for everyone ({meta['thread_control']})",
        f"matmul:   float32 {meta['matmul']['size']}^2 @ {meta['matmul']['size']}^2 numpy "
        f"matmul = {meta['matmul']['gflops']:.1f} GFLOP/s (median, same threads): the "
        "'% mm' column's 100%",
        f"flops:    {meta['flops_convention']}; GFLOP/s = flops / median time",
        f"timing:   median of >= {meta['min_repeats']} calls and >= {meta['min_time_s']:g} s "
        f"after {meta['warmup_calls']} warm-up call(s); float32",
        f"checked:  y and every gradient vs fastlstm's NumPy reference, max |diff|/max |ref| "
        f"<= {meta['tolerance']:g} ('max err')",
        "vs PEER:  time(PEER) / time(fastlstm backend); > 1 means fastlstm is faster",
    ]
    load = meta.get("load_average_1min", {})
    other = meta.get("other_processes_cpus")
    if other is not None or load.get("start") is not None:
        parts = []
        if other is not None:
            parts.append(f"other processes kept {other:.2f} CPUs busy on average during the run")
        if load.get("start") is not None:
            parts.append(f"1-min load average {load['start']:.2f} at the start")
        line = "load:     " + "; ".join(parts)
        if other is not None and other > 0.1:
            line += ("\n          WARNING: the machine was shared during the run; timings "
                     "(multi-threaded ones most) are unreliable")
        lines.append(line)
    for name, why in (skipped or {}).items():
        lines.append(f"skipped:  {name} ({why})")
    vs_cols = [f"vs {peers.SHORT_NAMES.get(p, p)}" for p in peer_names]
    head = (f"{'cell':<8} {'shape TxBxIxH':<16} {'mode':<9} {'contender':<11} {'median ms':>10} "
            f"{'GFLOP/s':>8} {'% mm':>6} {'max err':>8}" + "".join(f" {c:>9}" for c in vs_cols))
    lines += ["", head, "-" * len(head)]
    previous = None
    for r in rows:
        key = (r.case, r.mode)
        if previous is not None and key != previous:
            lines.append("")
        previous = key
        cells = []
        for p in peer_names:
            if r.family != "fastlstm":
                cells.append("")
            elif p in r.speedup:
                cells.append(f"{r.speedup[p]:.2f}x")
            else:
                cells.append("n/a")
        lines.append(
            f"{r.case.kind:<8} {shape_label(r.shape):<16} {r.mode:<9} {r.contender:<11} "
            f"{r.timing.median * 1e3:10.3f} {r.gflops:8.2f} {r.pct_matmul:5.1f}% "
            f"{r.max_rel_error:8.1e}" + "".join(f" {c:>9}" for c in cells).rstrip())
    lines += _lengths_summary(rows)
    return "\n".join(lines)


def _lengths_summary(rows: Sequence[Row]) -> List[str]:
    """Lines saying, for each variable-length case, sum(lengths) / (T*B) and each fastlstm
    backend's time with lengths / time fully padded (the vs_padded of its rows)."""
    lines = []
    for r in rows:
        if r.vs_padded is None:
            continue
        if not lines:
            lines = ["", "variable lengths: time with lengths / time of the same backend on the "
                         "same batch fully padded (calls alternating), against the work "
                         "sum(lengths) / (T*B)"]
        lines.append(f"  {r.case.label} {r.mode:<9} {r.contender:<7} "
                     f"time ratio {r.vs_padded:.3f}, work {r.work_fraction:.3f}: "
                     f"{r.vs_padded / r.work_fraction:.2f}x the work ratio")
    return lines


def to_json(result: Dict[str, object], skipped: Optional[Dict[str, str]] = None) -> Dict:
    """A JSON-ready dict: {"meta": {...}, "rows": [{...}, ...], "skipped": {name: why}}."""
    return {"meta": result["meta"], "rows": [r.as_dict() for r in result["rows"]],
            "skipped": dict(skipped or {})}


def plot(result: Dict[str, object], path: str):
    """Bar chart of GFLOP/s per shape, one panel per mode, one bar per contender."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta, rows = result["meta"], result["rows"]
    modes, names = meta["modes"], meta["contenders"]
    shapes = list(dict.fromkeys(r.case.label for r in rows))  # the cases, in table order
    fig, axes = plt.subplots(len(modes), 1, figsize=(max(6, 1.6 * len(shapes) + 2),
                                                     3.6 * len(modes)), squeeze=False)
    width = 0.8 / max(1, len(names))
    for ax, mode in zip(axes[:, 0], modes):
        for j, name in enumerate(names):
            vals = {r.case.label: r.gflops for r in rows
                    if r.mode == mode and r.contender == name}
            xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(shapes))]
            ax.bar(xs, [vals.get(s, 0.0) for s in shapes], width, label=name)
        ax.axhline(meta["matmul"]["gflops"], color="k", ls="--", lw=0.8)
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels(shapes, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("GFLOP/s")
        ax.set_title(f"{mode}; dashed: float32 matmul {meta['matmul']['gflops']:.0f} GFLOP/s; "
                     f"{meta['threads']} thread(s)", fontsize=9)
        ax.legend(fontsize=8, ncol=len(names))
    axes[-1, 0].set_xlabel("cell and shape TxBxIxH")
    fig.suptitle(f"fastlstm bench: {meta['machine']['cpu']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
