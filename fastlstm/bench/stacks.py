"""The stacked-model table of `python -m fastlstm bench`: whole layer stacks against torch.nn
and ONNX Runtime, float32, the run's thread count.

Models (STACKS): a 2-layer bidirectional LSTM and a 2-layer GRU at T=100, B=16, I=128,
H=256. Contenders:
    fastlstm backends   fastlstm.LSTM / GRU (eval: no dropout), inference m(x); training
                        m.forward(x, return_tape=True) then m.backward(tape, dy)
    torch               torch.nn.LSTM / GRU with the same state_dict; training: autograd
    onnxruntime         the stack exported by m.to_onnx (per layer one LSTM / GRU node, its
                        (T, D, B, H) output turned into (T, B, D*H) for the next layer by a
                        Transpose and a Reshape); inference only
Each contender's y (and, in training, its weight gradients) is checked against fastlstm's
NumPy backend before timing (relative error 1e-4).
"""
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

import fastlstm

from . import peers
from .streams import fill_speedups
from .timing import measure

#: (name, cell, num_layers, bidirectional, (T, B, I, H))
STACKS = (("lstm 2-layer bidir", "lstm", 2, True, (100, 16, 128, 256)),
          ("gru 2-layer", "gru", 2, False, (100, 16, 128, 256)))


@dataclass
class StackRow:
    model: str
    shape: tuple
    mode: str
    contender: str
    median_s: float
    max_rel_error: float
    speedup: Dict[str, float]

    def as_dict(self):
        return {"model": self.model, "shape": "x".join(map(str, self.shape)), "mode": self.mode,
                "contender": self.contender, "median_s": self.median_s,
                "max_rel_error": self.max_rel_error, "speedup": dict(self.speedup)}


def _module(cell, L, bidir, I, H, backend):
    cls = fastlstm.LSTM if cell == "lstm" else fastlstm.GRU
    return cls(I, H, num_layers=L, bidirectional=bidir, seed=0, backend=backend).eval()


def _fastlstm(m, x, dy):
    def infer():
        return m(x)[0]

    def train():
        y, _, tape = m.forward(x, return_tape=True)
        return m.backward(tape, dy)[2]

    return infer, train, lambda y: y, lambda g: dict(g)


def _torch(m, x, dy):
    torch = peers.import_optional("torch", "torch")
    mod = (torch.nn.LSTM if m.kind == "lstm" else torch.nn.GRU)(
        m.input_size, m.hidden_size, num_layers=m.num_layers, bidirectional=m.bidirectional)
    mod.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in m.state_dict().items()})
    xt, dyt = torch.from_numpy(x.copy()), torch.from_numpy(dy.copy())
    params = dict(mod.named_parameters())

    def infer():
        with torch.no_grad():
            return mod(xt)[0]

    def train():
        for p in params.values():
            p.grad = None
        mod(xt)[0].backward(dyt)
        return {k: p.grad for k, p in params.items()}

    return (infer, train, lambda y: y.numpy(),
            lambda g: {k: v.numpy() for k, v in g.items()})


def _onnxruntime(m, x, dy, threads):
    model = m.to_onnx(None)   # the ModelProto: one node per layer (fastlstm.interop)
    session = peers.ort_session(model, threads)

    def infer():
        return session.run(["y"], {"x": x})[0]

    return infer, None, lambda y: y, None


def run_stacks(contenders: Sequence[str], threads: int, min_time: float = 0.3,
               repeats: int = 5, stacks=STACKS) -> List[StackRow]:
    """Check, then time, every contender on every stacked model, inference and training."""
    rows = []
    for model, cell, L, bidir, (T, B, I, H) in stacks:
        rng = np.random.default_rng(5)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        dy = rng.standard_normal((T, B, (2 if bidir else 1) * H)).astype(np.float32)
        ref_m = _module(cell, L, bidir, I, H, "numpy")
        ref_y = ref_m(x)[0]
        y, _, tape = ref_m.forward(x, return_tape=True)
        ref_g = ref_m.backward(tape, dy)[2]
        built = {}
        with peers.threads_limited(threads):
            for name in contenders:
                if name in fastlstm.available_backends():
                    built[name] = _fastlstm(_module(cell, L, bidir, I, H, name), x, dy)
                elif name == "torch":
                    built[name] = _torch(ref_m, x, dy)
                elif name == "onnxruntime":
                    built[name] = _onnxruntime(ref_m, x, dy, threads)
            errors = {}
            for name, (infer, train, y_of, g_of) in built.items():
                err = {"inference": peers.rel_error(y_of(infer()), ref_y)}
                if train is not None:
                    g = g_of(train())
                    err["training"] = max(peers.rel_error(g[k], ref_g[k]) for k in ref_g)
                bad = {k: v for k, v in err.items() if not v <= peers.RTOL}
                if bad:
                    raise peers.MismatchError(f"stack contender {name!r} ({model}) disagrees "
                                               f"with the reference: {bad}")
                errors[name] = err
            for mode in peers.MODES:
                group = []
                for name, (infer, train, _, _) in built.items():
                    fn = infer if mode == "inference" else train
                    if fn is None:
                        continue
                    timing = measure(fn, min_time, repeats)
                    group.append(StackRow(model, (T, B, I, H), mode, name, timing.median,
                                          errors[name][mode], {}))
                fill_speedups(group)
                rows += group
    return rows


def format_stacks(rows: Sequence[StackRow], threads: int) -> str:
    """The stacked-model table as text."""
    peer_names = [p for p in peers.PEERS if any(r.contender == p for r in rows)]
    head = (f"{'model':<20} {'shape TxBxIxH':<16} {'mode':<9} {'contender':<12} "
            f"{'median ms':>10} {'max err':>8}"
            + "".join(f" {'vs ' + peers.SHORT_NAMES[p]:>9}" for p in peer_names))
    lines = ["", f"layer stacks: fastlstm.LSTM / GRU against torch.nn and an ONNX Runtime graph "
                 f"of the same stack, float32, {threads} thread(s); time(PEER) / time(fastlstm)",
             "", head, "-" * len(head)]
    previous = None
    for r in rows:
        if previous is not None and (r.model, r.mode) != previous:
            lines.append("")
        previous = (r.model, r.mode)
        cells = "".join(f" {r.speedup[p]:8.2f}x" if p in r.speedup else
                        (f" {'n/a':>9}" if r.contender not in peers.PEERS else f" {'':>9}")
                        for p in peer_names)
        lines.append(f"{r.model:<20} {'x'.join(map(str, r.shape)):<16} {r.mode:<9} "
                     f"{r.contender:<12} {r.median_s * 1e3:10.3f} {r.max_rel_error:8.1e}"
                     f"{cells}".rstrip())
    return "\n".join(lines)
