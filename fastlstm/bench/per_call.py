"""The per-call table of `python -m fastlstm bench`: the fixed cost of one call, on a problem so
small that the arithmetic hardly counts: an LSTM, T = 1, B = 1, I = 32, H = 64, float32, one
thread.

Rows (the weights of peers.make_problem(1, 1, 32, 64); fastlstm's rows on the cython backend,
else the first backend available):
    layer call    m(x, hx), m = fastlstm.LSTM(32, 64) in eval mode holding those weights;
                  x (1, 1, 32), hx = (h0, c0) each (1, 1, 64)
    forward       fastlstm.forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0), h0 and c0 (1, 64)
    stream step   s.step(x_t), s = m.stream(batch_size=1), x_t (1, 32), the state carried
    ort run       session.run of the one-step, one-node ONNX LSTM (peers.build_onnxruntime)
    torch call    torch.nn.LSTM(32, 64)(x, (h0, c0)) under no_grad (peers.build_torch)
Each row's output is checked first against fastlstm's NumPy reference (relative error 1e-4;
the stream's first step from its zero state against the reference from a zero state).

Timing: blocks of `calls` (default 1000) calls, one block of each row in turn
(timing.measure_rotation), until each row has had `repeats` blocks and min_time seconds; the
table reports the median over blocks of the microseconds per call, and for fastlstm's rows
time(ort run) / time(row): above 1 when fastlstm's call costs less than session.run.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import fastlstm

from . import peers
from .machine import OtherLoad, isa_info, machine_line
from .timing import DEFAULT_MIN_TIME, DEFAULT_REPEATS, measure_rotation

#: the problem (T, B, I, H)
SHAPE = (1, 1, 32, 64)
#: calls per timed block
CALLS = 1000
FASTLSTM_ROWS = ("layer call", "forward", "stream step")
ORT_ROW = "ort run"
TORCH_ROW = "torch call"


@dataclass
class PerCallRow:
    """One way of making the call: median seconds per call; vs_ort = time(ort run) /
    time(this row) for fastlstm's rows (None for the peers, or without onnxruntime)."""

    name: str
    what: str
    median_s: float
    max_rel_error: float
    vs_ort: Optional[float] = None

    def as_dict(self) -> Dict[str, object]:
        return {"row": self.name, "what": self.what, "median_s": self.median_s,
                "median_us": self.median_s * 1e6, "max_rel_error": self.max_rel_error,
                "vs_ort": self.vs_ort}


def _backend(contenders: Sequence[str]) -> Optional[str]:
    """cython when it is a contender, else the first fastlstm backend among them, else None."""
    backends = [n for n in contenders if n in fastlstm.available_backends()]
    return "cython" if "cython" in backends else (backends[0] if backends else None)


def _callers(problem: peers.Problem, contenders: Sequence[str]
             ) -> List[Tuple[str, str, Callable[[], object], np.ndarray, np.ndarray]]:
    """(name, what, call, y of its first call (T, B, H), the reference y) per row."""
    ref = peers.reference(problem).y
    out = []
    backend = _backend(contenders)
    if backend is not None:
        T, B, I, H = problem.shape
        m = fastlstm.LSTM(I, H, backend=backend).eval()
        m.load_state_dict({"weight_ih_l0": problem.w_ih, "weight_hh_l0": problem.w_hh,
                           "bias_ih_l0": problem.b_ih, "bias_hh_l0": problem.b_hh})
        x, hx = problem.x, (problem.h0[None], problem.c0[None])
        args = problem.forward_args()
        stream = m.stream(batch_size=1)
        zeros = np.zeros((B, H), np.float32)
        ref0 = fastlstm.forward(**dict(args, h0=zeros, c0=zeros), backend="numpy")[0]
        x_t = problem.x[0]
        out += [
            ("layer call", f"fastlstm.LSTM({I}, {H})(x, hx), {backend}",
             lambda: m(x, hx), m(x, hx)[0], ref),
            ("forward", f"fastlstm.forward(x, w_ih, ...), {backend}",
             lambda: fastlstm.forward(**args, backend=backend),
             fastlstm.forward(**args, backend=backend)[0], ref),
            ("stream step", f"m.stream(1).step(x_t), {backend}",
             lambda: stream.step(x_t), stream.step(x_t)[None], ref0),
        ]
    if "onnxruntime" in contenders:
        c = peers.build_onnxruntime(problem, threads=1)
        out.append((ORT_ROW, "onnxruntime session.run, 1 intra-op thread", c.infer,
                    c.y_of(c.infer()), ref))
    if "torch" in contenders:
        c = peers.build_torch(problem)
        out.append((TORCH_ROW, "torch.nn.LSTM(x, (h0, c0)), no_grad", c.infer,
                    c.y_of(c.infer()), ref))
    return out


def run_per_call(contenders: Sequence[str], min_time: float = DEFAULT_MIN_TIME,
                 repeats: int = DEFAULT_REPEATS, calls: int = CALLS,
                 shape: Tuple[int, int, int, int] = SHAPE) -> Dict[str, object]:
    """Check, then time, every row whose contender is among `contenders` (a fastlstm backend
    for the fastlstm rows, "onnxruntime", "torch"), under one thread. min_time: seconds per
    row. Returns {"meta": {...}, "rows": [PerCallRow, ...]}; raises peers.MismatchError when
    a row disagrees with the NumPy reference."""
    other_load = OtherLoad()
    problem = peers.make_problem(*shape)
    with peers.threads_limited(1):
        callers = _callers(problem, contenders)
        for name, _, _, y, ref in callers:
            err = peers.rel_error(y, ref)
            if not err <= peers.RTOL:
                raise peers.MismatchError(f"per-call row {name!r} disagrees with fastlstm's "
                                          f"NumPy reference: relative error {err:.2e}")
        timings = measure_rotation([c[2] for c in callers], min_time * len(callers), repeats,
                                   warmup=10, calls=calls)
    rows = [PerCallRow(name, what, t.median, peers.rel_error(y, ref))
            for (name, what, _, y, ref), t in zip(callers, timings)]
    ort = [r for r in rows if r.name == ORT_ROW]
    for r in rows:
        if ort and r.name in FASTLSTM_ROWS:
            r.vs_ort = ort[0].median_s / r.median_s
    meta = {"shape": "x".join(map(str, shape)), "cell": "lstm", "dtype": "float32",
            "threads": 1, "calls_per_block": calls, "min_time_s": min_time,
            "min_repeats": repeats, "backend": _backend(contenders), "machine": machine_line(),
            **isa_info(), "other_processes_cpus": other_load.cpus()}
    return {"meta": meta, "rows": rows}


def to_json(result: Dict[str, object]) -> Dict[str, object]:
    """run_per_call's result as JSON-ready data: {"meta": {...}, "rows": [{...}, ...]}."""
    return {"meta": result["meta"], "rows": [r.as_dict() for r in result["rows"]]}


def format_per_call(result: Dict[str, object]) -> str:
    """The per-call table as text."""
    meta, rows = result["meta"], result["rows"]
    T, B, I, H = meta["shape"].split("x")
    other = meta.get("other_processes_cpus")
    head = f"{'row':<12} {'median us':>10} {'vs ort':>8} {'max err':>8}  what"
    lines = ["", f"per call: the fixed cost of one call, LSTM T={T} B={B} I={I} H={H}, float32, "
                 f"one thread (median over blocks of {meta['calls_per_block']} calls, the rows "
                 "taking turns); vs ort = time(ort run) / time(row): > 1 when fastlstm's call "
                 "costs less than session.run",
             meta["machine"] + ("" if other is None else
                                f"; other processes kept {other:.2f} CPUs busy"),
             "", head, "-" * len(head)]
    for r in rows:
        vs = "" if r.vs_ort is None else f"{r.vs_ort:.2f}x"
        lines.append(f"{r.name:<12} {r.median_s * 1e6:10.2f} {vs:>8} {r.max_rel_error:8.1e}  "
                     f"{r.what}")
    return "\n".join(lines)
