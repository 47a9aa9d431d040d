"""`python -m fastlstm bench`: time fastlstm's backends against torch and onnxruntime.

A case is a cell (LSTM, PyTorch's GRU, tanh RNN) at a shape (T, B, I, H), fully padded, plus
the variable-length cases: an LSTM whose B sequences have lengths drawn uniformly from
[T/10, T] (fastlstm's `lengths=`, torch's packed sequences, ONNX `sequence_lens`). For each
case and mode ("inference": one forward pass; "training": forward with a tape + backward with
every gradient), every contender of fastlstm._peers runs the same float32 network. Before
anything is timed, each contender's y and gradients are checked against fastlstm's NumPy
reference (relative error 1e-4); a mismatch stops the run with an error.

Timing: each callable is warmed up (JIT compilation, caches), then repeated until both
--min-time seconds and --repeats calls are reached; the table reports the median.

Output: a header (machine, versions, threads, git commit, date, the float32 matrix-product rate
of this machine measured at the start of the run) and one table, with for every shape x mode x
contender: median ms, GFLOP/s, percent of the matrix-product rate, the check's max relative
error, and for fastlstm's backends the speed ratio against each peer (time(peer) /
time(backend): > 1 means fastlstm is faster). A variable-length case also reports each
fastlstm backend's time with lengths over its time on the same batch fully padded (the two
timed in alternation, measure_pair), beside sum(lengths) / (T*B). --json FILE writes
all of it, --plot FILE.png a bar chart.

    python -m fastlstm bench
    python -m fastlstm bench --shapes 100x1x32x64 100x16x128x256 --threads 1 --json out.json
    python -m fastlstm bench --cells gru --lengths-shapes
    python -m fastlstm bench --shapes 100x1x32x64 --stream-sizes 64

After the main table come the stream table (fastlstm._bench_streams: one step of a one-layer
LSTM and GRU at B=1 with the state carried) and the layer-stack table (fastlstm._bench_stacks:
a 2-layer bidirectional LSTM and a 2-layer GRU), against torch and onnxruntime, then the
two training-loop tables (when torch is a contender; --no-training skips them):
fastlstm._bench_torch_train (one epoch of a PyTorch loop training a 2-layer LSTM, with
fastlstm.torch.LSTM against torch.nn.LSTM) and fastlstm._bench_fit (fastlstm.fit against the
equivalent PyTorch loop on the adding problem).
"""
import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

import fastlstm

from . import _bench_stacks, _bench_streams, _peers

#: the default grid of shapes (T, B, I, H)
DEFAULT_SHAPES = ((100, 1, 32, 64), (100, 1, 128, 128), (100, 16, 128, 256),
                  (50, 64, 256, 512), (200, 32, 64, 128))
#: the shapes of the variable-length LSTM cases (lengths uniform in [T/10, T])
DEFAULT_LENGTHS_SHAPES = ((200, 32, 64, 128),)
DEFAULT_THREADS = 2
DEFAULT_MIN_TIME = 0.3
DEFAULT_REPEATS = 5
DEFAULT_WARMUP = 1
DEFAULT_PEAK_SIZE = 2048
FLOPS_CONVENTION = ("inference = 2*T*B*G*H*(I+H) flops (the matrix products of the forward pass; "
                    "G = 4 LSTM, 3 GRU, 1 RNN; sum(lengths) in place of T*B with lengths); "
                    "training = 3x that (forward + backward ~ 2x forward)")


# ---------------------------------------------------------------------------------------------
# Shapes, flops, timing


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
    forward = 2.0 * rows * _peers.GATES[cell] * H * (I + H)
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

    def problem(self) -> "_peers.Problem":
        return _peers.make_problem(*self.shape, cell=self.cell, lengths=self.lengths)


def make_cases(shapes: Sequence[Sequence[int]] = DEFAULT_SHAPES,
               cells: Sequence[str] = _peers.CELLS,
               lengths_shapes: Sequence[Sequence[int]] = DEFAULT_LENGTHS_SHAPES) -> List[Case]:
    """Every cell at every shape (cell by cell), then the variable-length LSTM cases."""
    cases = [Case(cell, tuple(int(n) for n in s)) for cell in cells for s in shapes]
    cases += [Case("lstm", tuple(int(n) for n in s), True) for s in lengths_shapes]
    return cases


@dataclass
class Timing:
    """Wall-clock times (seconds) of the timed calls of one callable, after the warm-up."""

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
    for _ in range(max(1, int(warmup))):
        fn_a()
        fn_b()
    times_a, times_b = [], []
    clock = time.perf_counter
    start = clock()
    while len(times_a) < repeats or clock() - start < min_time:
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            t0 = clock()
            fn()
            times.append(clock() - t0)
    return Timing(times_a), Timing(times_b)


def matmul_rate(size: int = DEFAULT_PEAK_SIZE, min_time: float = DEFAULT_MIN_TIME,
                repeats: int = DEFAULT_REPEATS) -> Dict[str, float]:
    """This machine's float32 matrix-product rate: median time of a (size, size) @ (size, size)
    numpy matmul, under the caller's thread limits. Returns {size, median_s, gflops}."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    timing = measure(lambda: np.matmul(a, b, out=out), min_time, repeats)
    return {"size": size, "median_s": timing.median,
            "gflops": 2.0 * size ** 3 / timing.median / 1e9}


# ---------------------------------------------------------------------------------------------
# Environment facts for the header


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def isa_info() -> Dict[str, object]:
    """{cpu_isa: the highest x86-64 level this CPU runs, cython_isa: the level of the Cython
    kernels in use (fastlstm._isa; $FASTLSTM_ISA forces it)}; None where not built."""
    from . import _isa

    try:
        return {"cpu_isa": _isa.cpu_levels()[-1] if _isa.cpu_levels() else "none",
                "cython_isa": _isa.chosen_level()}
    except ImportError:
        return {"cpu_isa": None, "cython_isa": None}


def isa_label() -> str:
    """isa_info() as text: "CPU x86-64-v4, cython kernels x86-64-v3"."""
    info = isa_info()
    return f"CPU {info['cpu_isa'] or 'level unknown'}, cython kernels " \
           f"{info['cython_isa'] or 'not built'}"


def machine_info() -> Dict[str, object]:
    """{cpu, logical_cpus, usable_cpus, platform, cpu_isa, cython_isa}."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "platform": platform.platform(), **isa_info()}


def versions(contenders: Sequence[str]) -> Dict[str, str]:
    """Versions of python, fastlstm, numpy and of the peers among `contenders` (imported)."""
    out = {"python": platform.python_version(), "fastlstm": fastlstm.__version__,
           "numpy": np.__version__}
    for name in ("torch", "onnxruntime", "onnx"):
        peer = "onnxruntime" if name == "onnx" else name
        if peer in contenders and name in sys.modules:
            out[name] = getattr(sys.modules[name], "__version__", "?")
    return out


def git_commit() -> Optional[str]:
    """`git describe --always --dirty` of the checkout holding fastlstm, or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        res = subprocess.run(["git", "-C", here, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() or None


class OtherLoad:
    """CPU time used by other processes while we run: (busy CPU time of the whole machine
    from /proc/stat) - (this process's CPU time), per second of wall time. None off Linux."""

    def __init__(self):
        self._start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal ...
        busy = sum(fields[:8]) - fields[3] - (fields[4] if len(fields) > 4 else 0)
        mine = os.times()
        return (busy / os.sysconf("SC_CLK_TCK"), mine.user + mine.system, time.monotonic())

    def cpus(self) -> Optional[float]:
        """Average number of CPUs kept busy by other processes since construction."""
        end = self._sample()
        if self._start is None or end is None or end[2] - self._start[2] <= 0:
            return None
        other = (end[0] - self._start[0]) - (end[1] - self._start[1])
        return round(max(0.0, other) / (end[2] - self._start[2]), 2)


def _load_average() -> Optional[float]:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------------------------------------
# The run


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
                  modes: Sequence[str] = _peers.MODES,
                  contenders: Optional[Sequence[str]] = None,
                  threads: int = DEFAULT_THREADS, min_time: float = DEFAULT_MIN_TIME,
                  repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP,
                  peak_size: int = DEFAULT_PEAK_SIZE,
                  builders: Optional[Dict[str, Callable]] = None,
                  progress: Optional[Progress] = None,
                  cells: Sequence[str] = _peers.CELLS,
                  lengths_shapes: Sequence[Sequence[int]] = DEFAULT_LENGTHS_SHAPES,
                  ) -> Dict[str, object]:
    """Check, then time, every contender on every case (make_cases(shapes, cells,
    lengths_shapes)) and mode.

    shapes: (T, B, I, H) tuples. contenders: names (default: _peers.available_contenders()).
    builders: {name: builder(problem, threads) -> Contender} (default _peers.CONTENDERS; a test
    can pass a deliberately wrong one). Raises _peers.MismatchError before any timing when a
    contender disagrees with the NumPy reference.

    Returns {"meta": {...}, "rows": [Row, ...]}: the rows in table order (case, mode,
    fastlstm backends then peers), speedup (and vs_padded) filled for fastlstm's rows.
    """
    builders = dict(_peers.CONTENDERS if builders is None else builders)
    load_start = _load_average()
    other_load = OtherLoad()
    names = list(_peers.available_contenders() if contenders is None else contenders)
    modes = [m for m in _peers.MODES if m in modes]
    progress = progress or Progress(enabled=False)
    cases = make_cases(shapes, cells, lengths_shapes)
    padded_refs = {}

    def padded_ref(padded):
        key = (padded.cell, padded.shape)
        if key not in padded_refs:
            padded_refs[key] = _peers.reference(padded)
        return padded_refs[key]

    # 1. build and check everything (this also compiles the JIT kernels)
    built = []  # (case, problem, {name: (contender, errors)})
    for k, case in enumerate(cases):
        problem = case.problem()
        progress.update(f"[check {k + 1}/{len(cases)}] {case.label} reference")
        ref = _peers.reference(problem)
        per_name = {}
        for name in names:
            progress.update(f"[check {k + 1}/{len(cases)}] {case.label} {name}")
            contender = builders[name](problem, threads)
            with _peers.threads_limited(threads):
                errors = _peers.check_contender(contender, ref, modes)
            twin = None
            if case.lengths and contender.family == "fastlstm":
                # the same batch fully padded, timed against it (measure_pair)
                padded = dataclasses.replace(problem, lengths=None)
                twin = builders[name](padded, threads)
                with _peers.threads_limited(threads):
                    _peers.check_contender(twin, padded_ref(padded), modes)
            per_name[name] = (contender, errors, twin)
        built.append((case, problem, per_name))

    # 2. time: the matrix-product rate first, then every callable, under the same thread limit
    jobs = [(case, mode, name) for case, _, per_name in built for mode in modes
            for name in names if per_name[name][0].can(mode)]
    rows: List[Row] = []
    with _peers.threads_limited(threads):
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
                peers = [r for r in group if r.family != "fastlstm"]
                for r in group:
                    if r.family == "fastlstm":
                        r.speedup = {p.contender: p.timing.median / r.timing.median
                                     for p in peers}
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
        "lengths_rule": "lengths uniform in [max(1, T // 10), T] (fastlstm._peers.random_lengths)",
        "cases": [c.label for c in cases],
        "min_time_s": min_time, "min_repeats": repeats, "warmup_calls": max(1, warmup),
        "flops_convention": FLOPS_CONVENTION,
        "tolerance": _peers.RTOL,
        "matmul": peak,
        "load_average_1min": {"start": load_start, "end": _load_average()},
        "other_processes_cpus": other_load.cpus(),
    }
    return {"meta": meta, "rows": rows}


# ---------------------------------------------------------------------------------------------
# Output


def format_report(result: Dict[str, object], skipped: Optional[Dict[str, str]] = None) -> str:
    """The header lines and the table of a run_benchmark result, as text."""
    meta, rows = result["meta"], result["rows"]
    m = meta["machine"]
    peers = [n for n in meta["contenders"] if n in _peers.PEERS]
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
    vs_cols = [f"vs {_peers.SHORT_NAMES.get(p, p)}" for p in peers]
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
        for p in peers:
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


# ---------------------------------------------------------------------------------------------
# Command line


def _split_list(values: Sequence[str]) -> List[str]:
    """['a,b', 'c'] -> ['a', 'b', 'c']."""
    return [v for item in values for v in item.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastlstm bench",
        description="Time fastlstm's backends against torch.nn.LSTM / GRU / RNN and "
                    "onnxruntime's LSTM / GRU / RNN operators on the same float32 weights and "
                    "inputs (padded batches, and LSTM batches with lengths), after checking "
                    "every contender against fastlstm's NumPy reference.",
        epilog="Example: python -m fastlstm bench --shapes 100x1x32x64,100x16x128x256 "
               "--threads 1 --json bench.json")
    parser.add_argument("--shapes", nargs="+", metavar="TxBxIxH",
                        default=[shape_label(s) for s in DEFAULT_SHAPES],
                        help="shapes, space- or comma-separated (default: "
                             + " ".join(shape_label(s) for s in DEFAULT_SHAPES) + ")")
    parser.add_argument("--cells", nargs="+", default=list(_peers.CELLS),
                        help="cells to run at every shape, any of " + ", ".join(_peers.CELLS)
                             + " (default: all)")
    parser.add_argument("--lengths-shapes", nargs="*", metavar="TxBxIxH",
                        default=[shape_label(s) for s in DEFAULT_LENGTHS_SHAPES],
                        help="shapes of the variable-length LSTM cases, lengths uniform in "
                             "[T/10, T]; give none to skip them (default: "
                             + " ".join(shape_label(s) for s in DEFAULT_LENGTHS_SHAPES) + ")")
    parser.add_argument("--stream-sizes", nargs="*", type=int,
                        default=list(_bench_streams.DEFAULT_SIZES), metavar="N",
                        help="I = H of the stream table (one step, B=1, one thread, LSTM and "
                             "GRU); give none to skip it (default: "
                             + " ".join(map(str, _bench_streams.DEFAULT_SIZES)) + ")")
    parser.add_argument("--no-stacks", action="store_true",
                        help="skip the layer-stack table (a 2-layer bidirectional LSTM and a "
                             "2-layer GRU at 100x16x128x256)")
    parser.add_argument("--no-training", action="store_true",
                        help="skip the training-loop tables (fastlstm.torch.LSTM against "
                             "torch.nn.LSTM in a PyTorch loop; fastlstm.fit against a PyTorch "
                             "loop on the adding problem); they need torch")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="threads for everyone: BLAS/OpenMP pools (threadpoolctl), "
                             "torch.set_num_threads, onnxruntime intra-op (default %(default)s)")
    parser.add_argument("--modes", nargs="+", default=list(_peers.MODES),
                        help="inference and/or training (default: both)")
    parser.add_argument("--contenders", nargs="+", default=None,
                        help="any of " + ", ".join(_peers.CONTENDERS)
                             + " ('ort' = onnxruntime; default: all installed)")
    parser.add_argument("--min-time", type=float, default=DEFAULT_MIN_TIME,
                        help="time each callable for at least this many seconds "
                             "(default %(default)s)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help="and for at least this many calls (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help="untimed calls before timing, at least 1 (default %(default)s)")
    parser.add_argument("--peak-size", type=int, default=DEFAULT_PEAK_SIZE,
                        help="n of the n x n float32 matmul that measures the machine's rate "
                             "(default %(default)s)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also draw a bar chart (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress line on stderr")
    return parser


def main(argv=None) -> int:
    """Entry point of `python -m fastlstm bench ARGS`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))

    try:
        shapes = [parse_shape(s) for s in _split_list(args.shapes)]
        lengths_shapes = [parse_shape(s) for s in _split_list(args.lengths_shapes)]
    except ValueError as exc:
        parser.error(str(exc))
    cells = _split_list(args.cells)
    for c in cells:
        if c not in _peers.CELLS:
            parser.error(f"--cells: unknown cell {c!r}; choose from {', '.join(_peers.CELLS)}")
    modes = _split_list(args.modes)
    for m in modes:
        if m not in _peers.MODES:
            parser.error(f"--modes: unknown mode {m!r}; choose from {', '.join(_peers.MODES)}")
    if args.threads < 1 or args.repeats < 1 or args.min_time < 0 or args.peak_size < 1:
        parser.error("--threads, --repeats and --peak-size must be positive, --min-time >= 0")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib, which is not installed "
                         "(pip install matplotlib); run again without --plot")

    skipped = {}
    if args.contenders is None:
        from ._backends import unavailable_backends

        contenders = list(fastlstm.available_backends())
        skipped.update(unavailable_backends())
        for peer in _peers.PEERS:
            ok, why = _peers.peer_available(peer)
            if ok:
                contenders.append(peer)
            else:
                skipped[peer] = f"not installed: {why}"
    else:
        try:
            contenders = list(dict.fromkeys(_peers.canonical_name(n)
                                            for n in _split_list(args.contenders)))
        except ValueError as exc:
            parser.error(f"--contenders: {exc}")
        available = set(_peers.available_contenders())
        missing = [n for n in contenders if n not in available]
        if missing:
            parser.error(f"--contenders: not available here: {', '.join(missing)} "
                         f"(available: {', '.join(sorted(available))})")

    try:
        result = run_benchmark(shapes, modes, contenders, threads=args.threads,
                               min_time=args.min_time, repeats=args.repeats,
                               warmup=args.warmup, peak_size=args.peak_size,
                               progress=Progress(enabled=not args.no_progress),
                               cells=cells, lengths_shapes=lengths_shapes)
    except _peers.MismatchError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1

    print(format_report(result, skipped), flush=True)
    streams = []
    if args.stream_sizes:
        if any(n < 1 for n in args.stream_sizes):
            parser.error("--stream-sizes: expected positive integers")
        try:
            streams = _bench_streams.run_streams(contenders, args.stream_sizes,
                                                 min_time=args.min_time, repeats=args.repeats)
        except _peers.MismatchError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 1
        print(_bench_streams.format_streams(streams), flush=True)
    stacks = []
    if not args.no_stacks:
        try:
            stacks = _bench_stacks.run_stacks(contenders, args.threads, min_time=args.min_time,
                                              repeats=args.repeats)
        except _peers.MismatchError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 1
        print(_bench_stacks.format_stacks(stacks, args.threads), flush=True)
    training = {}
    if not args.no_training and "torch" in contenders:
        from . import _bench_fit, _bench_torch_train

        training["torch_loop"] = _bench_torch_train.run(threads=args.threads,
                                                        repeats=args.repeats)
        print("\n" + _bench_torch_train.format(training["torch_loop"]), flush=True)
        training["fit"] = _bench_fit.run(threads=args.threads, repeats=args.repeats)
        print("\n" + _bench_fit.format(training["fit"]), flush=True)
    if args.json:
        data = to_json(result, skipped)
        data["streams"] = [r.as_dict() for r in streams]
        data["stacks"] = [r.as_dict() for r in stacks]
        data["training"] = training
        with open(args.json, "w") as f:
            json.dump(data, f, indent=2)
        print(f"\nwrote {args.json}")
    if args.plot:
        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
