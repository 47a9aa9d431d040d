"""The stream table of `python -m fastlstm bench`: the time of one step of a one-layer model,
B = 1, T = 1, one thread, float32, with the state carried from call to call.

Contenders for each cell ("lstm", "gru") and size I = H:
    fastlstm backends   m.stream(batch_size=1).step(x_t) of fastlstm.LSTM / GRU (eval)
    torch               torch.nn.LSTM / GRU under no_grad, the state passed back in
    onnxruntime         session.run of a one-node, one-step model, the outputs Y_h (and Y_c)
                        fed back as initial_h (and initial_c)
Before timing, each contender runs 5 steps from a zero state and its outputs are checked
against the whole-sequence call of fastlstm's NumPy backend (relative error 1e-4).
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import numpy as np

import fastlstm

from . import peers
from .timing import measure

DEFAULT_SIZES = (64, 128)
STREAM_CELLS = ("lstm", "gru")
CHECK_STEPS = 5


@dataclass
class StreamRow:
    """One contender's step time for one cell and size."""

    cell: str
    size: int
    contender: str
    median_s: float
    max_rel_error: float
    speedup: Dict[str, float]

    def as_dict(self):
        return {"cell": self.cell, "I": self.size, "H": self.size, "B": 1, "T": 1,
                "contender": self.contender, "median_s": self.median_s,
                "max_rel_error": self.max_rel_error, "speedup": dict(self.speedup)}


def fill_speedups(group):
    """For each fastlstm row of `group` (rows of one case: .contender, .median_s, .speedup),
    speedup = {peer: time(peer) / time(row)} over the peers' rows of the group."""
    peer_rows = [r for r in group if r.contender in peers.PEERS]
    for r in group:
        if r.contender not in peers.PEERS:
            r.speedup = {p.contender: p.median_s / r.median_s for p in peer_rows}


def _module(cell, size, backend):
    """A one-layer fastlstm module (eval mode), seeded."""
    cls = fastlstm.LSTM if cell == "lstm" else fastlstm.GRU
    return cls(size, size, seed=0, backend=backend).eval()


def _fastlstm_stepper(m):
    s = m.stream(batch_size=1)
    return s.step


def _torch_stepper(m):
    torch = peers.import_optional("torch", "torch")
    mod = (torch.nn.LSTM if m.kind == "lstm" else torch.nn.GRU)(m.input_size, m.hidden_size)
    mod.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    H = m.hidden_size
    state = [(torch.zeros(1, 1, H), torch.zeros(1, 1, H)) if m.kind == "lstm"
             else torch.zeros(1, 1, H)]

    def step(x_t):
        with torch.no_grad():
            y, state[0] = mod(torch.from_numpy(x_t[None]), state[0])
        return y[0].numpy()

    step.keepalive = mod
    return step


def _ort_stepper(m):
    p = m.state_dict()
    H = m.hidden_size
    problem = peers.Problem(
        x=np.zeros((1, 1, m.input_size), np.float32), w_ih=p["weight_ih_l0"],
        w_hh=p["weight_hh_l0"], b_ih=p["bias_ih_l0"], b_hh=p["bias_hh_l0"],
        h0=np.zeros((1, H), np.float32),
        c0=np.zeros((1, H), np.float32) if m.kind == "lstm" else None,
        dy=np.zeros((1, 1, H), np.float32), cell=m.kind)
    session = peers.ort_session(peers.onnx_model(problem), threads=1)
    lstm = m.kind == "lstm"
    outputs = ["Y", "Y_h", "Y_c"] if lstm else ["Y", "Y_h"]
    feeds = {"initial_h": np.zeros((1, 1, H), np.float32)}
    if lstm:
        feeds["initial_c"] = np.zeros((1, 1, H), np.float32)

    def step(x_t):
        feeds["X"] = x_t[None]
        out = session.run(outputs, feeds)
        feeds["initial_h"] = out[1]
        if lstm:
            feeds["initial_c"] = out[2]
        return out[0][0, 0]

    step.keepalive = session
    return step


def _steppers(m, names) -> Dict[str, Callable]:
    out = {}
    for name in names:
        if name in fastlstm.available_backends():
            out[name] = _fastlstm_stepper(_module(m.kind, m.input_size, name))
        elif name == "torch":
            out[name] = _torch_stepper(m)
        elif name == "onnxruntime":
            out[name] = _ort_stepper(m)
    return out


def run_streams(contenders: Sequence[str], sizes: Sequence[int] = DEFAULT_SIZES,
                cells: Sequence[str] = STREAM_CELLS, min_time: float = 0.3,
                repeats: int = 5) -> List[StreamRow]:
    """Check, then time one step of every contender for every cell and size, under one
    thread. Raises peers.MismatchError when a contender's first steps disagree with the
    reference."""
    rows = []
    rng = np.random.default_rng(3)
    with peers.threads_limited(1):
        for cell in cells:
            for size in sizes:
                m = _module(cell, size, "numpy")
                xs = rng.standard_normal((CHECK_STEPS, 1, size)).astype(np.float32)
                ref = m(xs)[0]
                steppers = _steppers(m, contenders)
                errors = {}
                for name, step in steppers.items():
                    got = np.stack([step(xs[t]) for t in range(CHECK_STEPS)])
                    errors[name] = peers.rel_error(got.reshape(ref.shape), ref)
                    if not errors[name] <= peers.RTOL:
                        raise peers.MismatchError(
                            f"stream contender {name!r} ({cell}, I=H={size}) disagrees with "
                            f"the reference: relative error {errors[name]:.2e}")
                x_t = xs[0]
                group = []
                for name, step in steppers.items():
                    timing = measure(lambda: step(x_t), min_time, repeats, warmup=50)
                    group.append(StreamRow(cell, size, name, timing.median, errors[name], {}))
                fill_speedups(group)
                rows += group
    return rows


def format_streams(rows: Sequence[StreamRow]) -> str:
    """The stream table as text."""
    peer_names = [p for p in peers.PEERS if any(r.contender == p for r in rows)]
    head = (f"{'cell':<6} {'I=H':>5} {'contender':<12} {'median us':>10} {'max err':>8}"
            + "".join(f" {'vs ' + peers.SHORT_NAMES[p]:>9}" for p in peer_names))
    lines = ["", "stream steps: one step per call (B=1, T=1), one thread, float32, the state "
                 "carried between calls (onnxruntime: its outputs fed back as the next "
                 "initial state); time(PEER) / time(fastlstm) in the vs columns",
             "", head, "-" * len(head)]
    previous = None
    for r in rows:
        if previous is not None and (r.cell, r.size) != previous:
            lines.append("")
        previous = (r.cell, r.size)
        cells = "".join(f" {r.speedup[p]:8.2f}x" if p in r.speedup else f" {'':>9}"
                        for p in peer_names)
        lines.append(f"{r.cell:<6} {r.size:>5} {r.contender:<12} {r.median_s * 1e6:10.2f} "
                     f"{r.max_rel_error:8.1e}{cells}".rstrip())
    return "\n".join(lines)
