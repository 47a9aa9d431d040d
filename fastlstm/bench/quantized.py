"""The reduced-precision tables of `python -m fastlstm bench`: int8 and bfloat16 inference
(m.quantize, fastlstm/layers/quantized.py) against float32 and against the int8 LSTMs of ONNX
Runtime and PyTorch.

    python -m fastlstm bench --quantized               # the timing table (only the selected
    python -m fastlstm bench --quantized-accuracy      # reduced-precision tables run)
    python -m fastlstm bench --quantized --quantized-accuracy --no-demos --json q.json

The timing table (run_quantized, format_quantized). For each LSTM shape (T, B, I, H) of
--quantized-shapes (default DEFAULT_QUANTIZED_SHAPES) and each GRU shape of
--quantized-gru-shapes (default DEFAULT_QUANTIZED_GRU_SHAPES; PyTorch's GRU), on the weights and
inputs of peers.make_problem, whole-sequence inference at the run's thread count (--threads):
    fastlstm f32    the layer module (fastlstm.LSTM / GRU, eval, backend "cython")
    fastlstm int8   m.quantize("int8"), the same call
    fastlstm bf16   m.quantize("bfloat16")
    ort int8        onnxruntime.quantization.quantize_dynamic(peers.onnx_model(problem),
                    op_types_to_quantize=["LSTM"], weight_type=QInt8): the node becomes
                    com.microsoft.DynamicQuantizeLSTM. ONNX Runtime has no int8 GRU: "-".
    ort f32         the float model (peers.build_onnxruntime)
    torch int8      torch.ao.quantization.quantize_dynamic of torch.nn.LSTM / GRU with the same
                    weights ({nn.LSTM, nn.GRU}, dtype=torch.qint8)
    torch f32       torch.nn.LSTM / GRU (peers.build_torch)
Beside each time: max |y - y_f32| and that over max |y_f32|, y_f32 the fastlstm float32 output.
Speed-ups: time(fastlstm f32) / time(int8 or bf16), and time(ORT int8) / time(fastlstm int8),
time(torch int8) / time(fastlstm int8): > 1 means fastlstm's int8 is faster. The float32
contenders are first checked against fastlstm's NumPy reference (peers.check_contender).
All the contenders of a case take turns, one block of ~BLOCK_SECONDS of calls each
(timing.measure_rotation), so that a shared machine's slow spells fall on all of them; before
each block the harness waits timing.SETTLE_SECONDS and makes one call, both untimed, so that the
threads the previous contender left spinning (ONNX Runtime's pool, torch's OpenMP threads) do
not take a core from it. Peers that are not installed are skipped with a note.

The accuracy report (run_accuracy, format_accuracy): max abs and relative error of int8 and
bfloat16 against float32 at every shape of grid.DEFAULT_SHAPES (or --accuracy-shapes) for every
cell (ACCURACY_VARIANTS: LSTM, LSTM with a projection, both GRUs, both RNNs), random weights
as the bench's (peers.make_problem); ONNX Runtime's int8 LSTM and torch's dynamic int8 LSTM /
GRU on the same weights and inputs where they exist, and the ratio fastlstm int8 error / ORT
int8 error. Then (unless --no-demos) the digits demo's held-out accuracy and the adding demo's
test MSE with the trained model's LSTM quantized (fastlstm.demos.quantized), and (when the
silero-vad package is installed; --no-silero skips it) silero VAD's LSTM on real weights
(silero_accuracy).
"""
import contextlib
import importlib
import logging
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import fastlstm

from . import peers
from .grid import DEFAULT_SHAPES, DEFAULT_THREADS, shape_label
from .machine import OtherLoad, isa_info, machine_info, machine_line, versions
from .timing import (DEFAULT_MIN_TIME, DEFAULT_REPEATS, DEFAULT_WARMUP, SETTLE_SECONDS,
                     Progress, measure_rotation, settled)

#: the LSTM shapes (T, B, I, H) of the timing table
DEFAULT_QUANTIZED_SHAPES = ((100, 1, 256, 256), (100, 1, 512, 512), (50, 64, 256, 512))
#: the GRU shapes of the timing table
DEFAULT_QUANTIZED_GRU_SHAPES = ((100, 1, 512, 512),)
#: the contenders of the timing table, in table order
QUANTIZED_CONTENDERS = ("fastlstm f32", "fastlstm int8", "fastlstm bf16", "ort int8", "ort f32",
                        "torch int8", "torch f32")
#: which library each contender needs (None: fastlstm itself)
_NEEDS = {"ort int8": "onnxruntime", "ort f32": "onnxruntime", "torch int8": "torch",
          "torch f32": "torch"}
#: about how long one timed block of calls lasts
BLOCK_SECONDS = 0.01
#: the accuracy report's cells: name -> (cell, module options)
ACCURACY_VARIANTS = {
    "lstm": ("lstm", {}),
    "lstm+proj": ("lstm", {"proj_size": "H/2"}),
    "gru": ("gru", {"linear_before_reset": True}),
    "gru-rbr": ("gru", {"linear_before_reset": False}),
    "rnn-tanh": ("rnn", {"nonlinearity": "tanh"}),
    "rnn-relu": ("rnn", {"nonlinearity": "relu"}),
}
_ORT_QUANT_NOTE = ("onnxruntime.quantization.quantize_dynamic(op_types_to_quantize=['LSTM'], "
                   "weight_type=QInt8, per_channel=False): com.microsoft.DynamicQuantizeLSTM")
_ORT_SATURATES_NOTE = ("; this CPU has no VNNI: ONNX Runtime's AVX2 int8 kernel (vpmaddubsw) adds "
                       "two products of an activation and an 8-bit weight in int16, which "
                       "saturates (its error column)")
_TORCH_QUANT_NOTE = ("torch.ao.quantization.quantize_dynamic({nn.LSTM, nn.GRU}, "
                     "dtype=torch.qint8)")


# ---------------------------------------------------------------------------------------------
# Modules and contenders


def _backend() -> str:
    """"cython" where it is built, else "numpy" (then the times say little)."""
    return "cython" if "cython" in fastlstm.available_backends() else "numpy"


def dot_products() -> Optional[Dict[str, bool]]:
    """{"int8": bool, "bfloat16": bool}: whether the cython kernels use the dot-product
    instructions (vpdpbusd, vdpbf16ps; $FASTLSTM_DOT_PRODUCTS=0 turns them off); None without
    the cython backend."""
    if "cython" not in fastlstm.available_backends():
        return None
    from .._backends import get_backend

    return dict(get_backend("cython").dot_products())


def _env() -> Dict[str, Optional[str]]:
    return {k: os.environ.get(k) for k in ("FASTLSTM_ISA", "FASTLSTM_DOT_PRODUCTS")}


def _proj(H: int) -> int:
    return max(1, H // 2)


def module_weights(problem: "peers.Problem", options: Optional[Dict] = None, seed: int = 0):
    """(state_dict, hx) of a one-layer fastlstm module holding the problem's weights, with
    `options` of ACCURACY_VARIANTS; for a projection (proj_size "H/2") w_hh (4H, P) and
    w_hr (P, H) are drawn like the others (uniform in +-1/sqrt(H)) and h0 is the problem's
    first P columns."""
    options = options or {}
    state = {"weight_ih_l0": problem.w_ih, "weight_hh_l0": problem.w_hh,
             "bias_ih_l0": problem.b_ih, "bias_hh_l0": problem.b_hh}
    h0 = problem.h0
    if options.get("proj_size"):
        T, B, I, H = problem.shape
        P = _proj(H)
        rng = np.random.default_rng([seed, 7])
        k = 1.0 / np.sqrt(H)
        state["weight_hh_l0"] = rng.uniform(-k, k, (4 * H, P)).astype(np.float32)
        state["weight_hr_l0"] = rng.uniform(-k, k, (P, H)).astype(np.float32)
        h0 = np.ascontiguousarray(problem.h0[:, :P])
    hx = (h0[None], problem.c0[None]) if problem.cell == "lstm" else h0[None]
    return state, hx


def make_module(problem: "peers.Problem", options: Optional[Dict] = None, backend=None,
                seed: int = 0):
    """(module, hx): the fastlstm.LSTM / GRU / RNN (eval mode, float32, `backend`, default
    cython where built) with the problem's weights (module_weights), and its initial state."""
    options = dict(options or {})
    T, B, I, H = problem.shape
    state, hx = module_weights(problem, options, seed)
    if options.get("proj_size"):
        options["proj_size"] = _proj(H)
    cls = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}[problem.cell]
    module = cls(I, H, backend=backend or _backend(), **options).eval()
    module.load_state_dict(state)
    return module, hx


def quantized(module, precision: str, **options):
    """module.quantize(precision, **options) without its ReducedPrecisionWarning: the bench's
    header says which products take the plain paths (_dot_label), once, where the warning
    came once per module (every warnings.catch_warnings, the ONNX quantizer's among them,
    makes Python forget the warnings it has shown)."""
    from ..layers.quantized import ReducedPrecisionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReducedPrecisionWarning)
        return module.quantize(precision, **options)


def build_fastlstm_module(problem, precision: Optional[str] = None, threads: int = 1,
                          module=None, hx=None) -> "peers.Contender":
    """The layer module on the problem (precision None: float32; "int8" / "bfloat16":
    module.quantize(precision)); infer: module(x, hx) -> (y, hx_n)."""
    if module is None:
        module, hx = make_module(problem)
    layer = module if precision is None else quantized(module, precision)
    x = np.ascontiguousarray(problem.x)

    def infer():
        return layer(x, hx)

    name = {None: "fastlstm f32", "int8": "fastlstm int8", "bfloat16": "fastlstm bf16"}
    return peers.Contender(name=name[precision], family="fastlstm", version=fastlstm.__version__,
                           infer=infer, y_of=lambda out: np.asarray(out[0]), keepalive=layer)


@contextlib.contextmanager
def _quiet_quantizer():
    """Silence onnxruntime.quantization's "consider pre-processing" warning and torch.ao's
    deprecation warnings."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def ort_int8_exact() -> bool:
    """Whether ONNX Runtime's int8 products are exact sums on this CPU: with AVX512_VNNI or
    AVX_VNNI (vpdpbusd), or off x86. Its x86 kernel without them (vpmaddubsw) adds two
    products of an unsigned activation and a signed 8-bit weight in int16, which saturates
    (0.12-0.58 off the float model at H = 8..64 on a Zen 3); with 7-bit weights (|code| <= 64,
    quantize_dynamic's reduce_range) a pair is at most 2 * 255 * 64 = 32640 and fits."""
    from .. import _isa

    features = _isa.cpu_features()
    if not features:
        return True
    return bool((features.get("avx512_vnni") and features.get("os_avx512"))
                or features.get("avx_vnni"))


def ort_int8_model(model):
    """quantize_dynamic of an onnx.ModelProto's LSTM nodes (_ORT_QUANT_NOTE); returns the
    quantized onnx.ModelProto, or None when no node was quantized (a GRU or RNN: ONNX Runtime
    has no int8 GRU / RNN)."""
    onnx = peers.import_optional("onnx", "onnxruntime")
    peers.import_optional("onnxruntime", "onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp, _quiet_quantizer():
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        quantize_dynamic(src, dst, op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8)
        quantized = onnx.load(dst)
    if not any(n.op_type == "DynamicQuantizeLSTM" for n in quantized.graph.node):
        return None
    return quantized


def build_ort_int8(problem, threads: int = 1) -> Optional["peers.Contender"]:
    """ONNX Runtime's DynamicQuantizeLSTM on ort_int8_model(peers.onnx_model(problem)), or None
    for a cell it cannot quantize."""
    ort = peers.import_optional("onnxruntime", "onnxruntime")
    quantized = ort_int8_model(peers.onnx_model(problem))
    if quantized is None:
        return None
    session = peers.ort_session(quantized, threads)
    feeds = {"X": np.ascontiguousarray(problem.x), "initial_h": problem.h0[None].copy()}
    if problem.cell == "lstm":
        feeds["initial_c"] = problem.c0[None].copy()

    def infer():
        return session.run(["Y"], feeds)

    return peers.Contender(name="ort int8", family="peer", version=ort.__version__,
                           infer=infer, y_of=lambda out: np.asarray(out[0])[:, 0],
                           note=_ORT_QUANT_NOTE + ("" if ort_int8_exact()
                                                   else _ORT_SATURATES_NOTE),
                           keepalive=session)


def torch_int8_module(module):
    """torch.ao.quantization.quantize_dynamic of a torch.nn.LSTM / GRU (_TORCH_QUANT_NOTE).
    quantize_dynamic swaps the children of the module it gets, never that module itself, so
    the recurrent module goes in inside a wrapper; returns the swapped recurrent module."""
    torch = peers.import_optional("torch", "torch")

    class Holder(torch.nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

    with _quiet_quantizer():
        held = torch.ao.quantization.quantize_dynamic(
            Holder(module), {torch.nn.LSTM, torch.nn.GRU}, dtype=torch.qint8)
    if type(held.rnn) is type(module):
        raise peers.PeerUnavailable(f"torch int8: quantize_dynamic left the "
                                    f"{type(module).__name__} in float")
    return held.rnn


def _torch_float_module(problem, options=None, seed=0):
    """torch.nn.LSTM / GRU / RNN with the weights of make_module(problem, options)."""
    torch = peers.import_optional("torch", "torch")
    T, B, I, H = problem.shape
    options = dict(options or {})
    if options.get("proj_size"):
        options["proj_size"] = _proj(H)
    if problem.cell == "gru" and not options.pop("linear_before_reset", True):
        raise peers.PeerUnavailable("torch has no reset-before GRU")
    options.pop("linear_before_reset", None)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[problem.cell]
    module = cls(I, H, **options).float()
    state, hx = module_weights(problem, options, seed)
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
    if isinstance(hx, tuple):
        return module, tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in hx)
    return module, torch.from_numpy(np.ascontiguousarray(hx))


def build_torch_int8(problem, threads: int = 1, options=None) -> "peers.Contender":
    """torch's dynamic int8 LSTM / GRU (torch_int8_module) with the problem's weights;
    infer: under torch.no_grad(), module(x, state)."""
    torch = peers.import_optional("torch", "torch")
    module, state = _torch_float_module(problem, options)
    quantized = torch_int8_module(module)
    x = torch.from_numpy(np.ascontiguousarray(problem.x))

    def infer():
        with torch.no_grad():
            return quantized(x, state)[0]

    return peers.Contender(name="torch int8", family="peer", version=torch.__version__,
                           infer=infer, y_of=lambda y: y.detach().numpy(),
                           note=f"{_TORCH_QUANT_NOTE}, engine "
                                f"{torch.backends.quantized.engine}", keepalive=quantized)


def _renamed(contender, name):
    contender.name = name
    return contender


def available_peers() -> Tuple[List[str], Dict[str, str]]:
    """(the peer libraries usable here among "onnxruntime", "torch", {name: why not})."""
    ok, skipped = [], {}
    for peer in peers.PEERS:
        usable, why = peers.peer_available(peer)
        if usable and peer == "onnxruntime":
            try:
                importlib.import_module("onnxruntime.quantization")
            except ImportError as exc:
                usable, why = False, f"onnxruntime.quantization: {type(exc).__name__}: {exc}"
        if usable:
            ok.append(peer)
        else:
            skipped[peer] = f"not installed: {why}"
    return ok, skipped


# ---------------------------------------------------------------------------------------------
# Errors


def errors(y, y_ref) -> Tuple[float, float]:
    """(max |y - y_ref|, that / max |y_ref|) in float64; (inf, inf) on a shape mismatch."""
    y, y_ref = np.asarray(y, np.float64), np.asarray(y_ref, np.float64)
    if y.shape != y_ref.shape:
        return float("inf"), float("inf")
    if y.size == 0:
        return 0.0, 0.0
    abs_err = float(np.max(np.abs(y - y_ref)))
    top = float(np.max(np.abs(y_ref)))
    return abs_err, abs_err / max(top, float(np.finfo(np.float32).tiny))


# ---------------------------------------------------------------------------------------------
# The timing table


@dataclass
class QuantRow:
    """One contender on one case: the median seconds per call (None: the contender does not
    exist for this cell, e.g. ORT int8 GRU) and the errors of its y against fastlstm f32."""

    cell: str
    shape: Tuple[int, int, int, int]
    contender: str
    median_s: Optional[float]
    max_abs_error: Optional[float]
    max_rel_error: Optional[float]
    note: str = ""

    def as_dict(self) -> Dict[str, object]:
        T, B, I, H = self.shape
        return {"cell": self.cell, "shape": shape_label(self.shape), "T": T, "B": B, "I": I,
                "H": H, "contender": self.contender, "median_s": self.median_s,
                "max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error,
                "note": self.note}


def _time_once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return max(time.perf_counter() - t0, 1e-7)


def _case_contenders(problem, threads, peer_names):
    """{contender name: Contender or None (not for this cell)} in QUANTIZED_CONTENDERS order,
    for the peers among peer_names."""
    module, hx = make_module(problem)
    out = {"fastlstm f32": build_fastlstm_module(problem, None, threads, module, hx),
           "fastlstm int8": build_fastlstm_module(problem, "int8", threads, module, hx),
           "fastlstm bf16": build_fastlstm_module(problem, "bfloat16", threads, module, hx)}
    if "onnxruntime" in peer_names:
        out["ort int8"] = build_ort_int8(problem, threads)
        out["ort f32"] = _renamed(peers.build_onnxruntime(problem, threads), "ort f32")
    if "torch" in peer_names:
        out["torch int8"] = build_torch_int8(problem, threads)
        out["torch f32"] = _renamed(peers.build_torch(problem, threads), "torch f32")
    return {n: out[n] for n in QUANTIZED_CONTENDERS if n in out}


def speedups(rows: Sequence[QuantRow]) -> Dict[str, Optional[float]]:
    """The speed-ups of one case's rows: int8_vs_f32, bf16_vs_f32 (time(fastlstm f32) /
    time(it)), int8_vs_ort_int8, int8_vs_torch_int8 (time(peer int8) / time(fastlstm int8));
    None where a time is missing."""
    t = {r.contender: r.median_s for r in rows}

    def ratio(num, den):
        a, b = t.get(num), t.get(den)
        return None if a is None or b is None else a / b

    return {"int8_vs_f32": ratio("fastlstm f32", "fastlstm int8"),
            "bf16_vs_f32": ratio("fastlstm f32", "fastlstm bf16"),
            "int8_vs_ort_int8": ratio("ort int8", "fastlstm int8"),
            "int8_vs_torch_int8": ratio("torch int8", "fastlstm int8")}


def run_quantized(shapes: Sequence[Sequence[int]] = DEFAULT_QUANTIZED_SHAPES,
                  gru_shapes: Sequence[Sequence[int]] = DEFAULT_QUANTIZED_GRU_SHAPES,
                  threads: int = DEFAULT_THREADS, min_time: float = DEFAULT_MIN_TIME,
                  repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP,
                  peers_to_run: Optional[Sequence[str]] = None,
                  progress: Optional[Progress] = None) -> Dict[str, object]:
    """Check, then time, every contender (QUANTIZED_CONTENDERS; peers among peers_to_run,
    default those installed) on the LSTM at `shapes` and the GRU at `gru_shapes`, under
    peers.threads_limited(threads). min_time: seconds per contender and case.

    Returns {"meta": {...}, "rows": [QuantRow, ...], "speedups": [{cell, shape, ...}]}.
    Raises peers.MismatchError when a float32 contender disagrees with the NumPy reference.
    """
    progress = progress or Progress(enabled=False)
    installed, skipped = available_peers()
    peer_names = installed if peers_to_run is None else [p for p in installed
                                                         if p in peers_to_run]
    if "torch" in peer_names:
        peers.import_optional("torch", "torch")   # before threads_limited, which then sets it
    other_load = OtherLoad()
    cases = [("lstm", tuple(int(n) for n in s)) for s in shapes]
    cases += [("gru", tuple(int(n) for n in s)) for s in gru_shapes]
    rows: List[QuantRow] = []
    summary = []
    notes = {}
    with peers.threads_limited(threads):
        for k, (cell, shape) in enumerate(cases):
            label = f"[quantized {k + 1}/{len(cases)}] {cell} {shape_label(shape)}"
            progress.update(label + " building")
            problem = peers.make_problem(*shape, cell=cell)
            ref = peers.reference(problem)
            built = _case_contenders(problem, threads, peer_names)
            for c in built.values():   # the float32 ones must be right before any timing
                if c is not None and (c.name.endswith("f32")):
                    peers.check_contender(c, ref, ("inference",))
            y32 = built["fastlstm f32"].y_of(built["fastlstm f32"].infer())
            fns, calls, names, errs = [], [], [], {}
            for name, c in built.items():
                if c is None:
                    continue
                errs[name] = errors(c.y_of(c.infer()), y32)
                if c.note and "int8" in name:
                    notes[name] = c.note
                for _ in range(max(0, int(warmup) - 1)):
                    c.infer()
                fns.append(c.infer)
                calls.append(max(1, math.ceil(BLOCK_SECONDS / _time_once(c.infer))))
                names.append(name)
            progress.update(label + " timing")
            timings = dict(zip(names, measure_rotation(fns, min_time * len(fns), repeats,
                                                       warmup=1, calls=calls,
                                                       contexts=[settled] * len(fns))))
            case_rows = []
            for name in built:
                if name in timings:
                    row = QuantRow(cell, shape, name, timings[name].median, *errs[name])
                else:
                    row = QuantRow(cell, shape, name, None, None, None,
                                   note=f"ONNX Runtime has no int8 {cell.upper()}")
                case_rows.append(row)
            rows += case_rows
            summary.append({"cell": cell, "shape": shape_label(shape),
                            **speedups(case_rows)})
    progress.done()
    for peer in peers.PEERS:
        if peer not in peer_names and peer not in skipped:
            skipped[peer] = "not selected (--contenders)"
    meta = {"threads": threads, "backend": _backend(), "dot_products": dot_products(),
            "env": _env(), "machine": machine_info(), "machine_line": machine_line(),
            **isa_info(), "versions": versions(peer_names), "contenders":
            [n for n in QUANTIZED_CONTENDERS if _NEEDS.get(n) in (None, *peer_names)],
            "notes": notes, "skipped": skipped,
            "lstm_shapes": [shape_label(s) for s in shapes],
            "gru_shapes": [shape_label(s) for s in gru_shapes],
            "min_time_s": min_time, "min_repeats": repeats, "block_s": BLOCK_SECONDS,
            "settle_s": SETTLE_SECONDS,
            "errors": "max |y - y_f32| and max |y - y_f32| / max |y_f32|, y_f32 = fastlstm "
                      "float32's output on the same weights and inputs",
            "other_processes_cpus": other_load.cpus()}
    return {"meta": meta, "rows": rows, "speedups": summary}


def to_json(result: Dict[str, object]) -> Dict[str, object]:
    """run_quantized's result as JSON-ready data."""
    return {"meta": result["meta"], "rows": [r.as_dict() for r in result["rows"]],
            "speedups": list(result["speedups"])}


def _x(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _dot_label(dot: Optional[Dict[str, bool]]) -> str:
    if dot is None:
        return "dot-product paths: none (no cython backend)"
    return (f"dot-product paths: int8 vpdpbusd {'yes' if dot.get('int8') else 'no'}, bfloat16 "
            f"vdpbf16ps {'yes' if dot.get('bfloat16') else 'no'} "
            f"($FASTLSTM_DOT_PRODUCTS=0 turns them off)")


def format_quantized(result: Dict[str, object]) -> str:
    """The timing table as text."""
    meta, rows = result["meta"], result["rows"]
    other = meta.get("other_processes_cpus")
    head = (f"{'cell':<5} {'shape TxBxIxH':<15} {'contender':<14} {'median ms':>10} "
            f"{'max abs err':>11} {'max rel err':>11} {'vs f32':>7} {'vs ort i8':>9} "
            f"{'vs torch i8':>11}")
    lines = ["", f"reduced precision: whole-sequence inference, {meta['threads']} thread(s), "
                 f"fastlstm {meta['backend']} layer modules at float32, int8 and bfloat16 "
                 f"(m.quantize) against ONNX Runtime and torch int8 and float32 on the same "
                 f"weights and inputs (calls in blocks of ~{meta['block_s'] * 1e3:g} ms, all of "
                 f"a case taking turns, each block after an untimed pause of "
                 f"{meta.get('settle_s', 0) * 1e3:g} ms and call; medians)",
             meta["machine_line"] + ("" if other is None else
                                     f"; other processes kept {other:.2f} CPUs busy"),
             _dot_label(meta["dot_products"]),
             "errors: of y against fastlstm float32's y; rel = max abs err / max |y_f32|",
             "vs f32 = time(fastlstm f32) / time(row); vs ort i8, vs torch i8 = time(peer "
             "int8) / time(fastlstm int8): > 1 means fastlstm is faster"]
    for name, note in meta.get("notes", {}).items():
        lines.append(f"{name}: {note}")
    for name, why in meta.get("skipped", {}).items():
        lines.append(f"skipped: {name} ({why})")
    lines += ["", head, "-" * len(head)]
    ups = {(s["cell"], s["shape"]): s for s in result["speedups"]}
    previous = None
    for r in rows:
        key = (r.cell, shape_label(r.shape))
        if previous is not None and key != previous:
            lines.append("")
        previous = key
        s = ups[key]
        vs = {"fastlstm int8": (_x(s["int8_vs_f32"]), _x(s["int8_vs_ort_int8"]),
                                _x(s["int8_vs_torch_int8"])),
              "fastlstm bf16": (_x(s["bf16_vs_f32"]), "", "")}.get(r.contender, ("", "", ""))
        if r.median_s is None:
            lines.append(f"{r.cell:<5} {key[1]:<15} {r.contender:<14} {'-':>10} {'-':>11} "
                         f"{'-':>11}   ({r.note})")
            continue
        lines.append((f"{r.cell:<5} {key[1]:<15} {r.contender:<14} {r.median_s * 1e3:10.3f} "
                      f"{r.max_abs_error:11.2e} {r.max_rel_error:11.2e} {vs[0]:>7} {vs[1]:>9} "
                      f"{vs[2]:>11}").rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The accuracy report


def _peer_int8_error(kind, problem, options, y32, peer_names):
    """max abs error of ONNX Runtime's ("ort") or torch's int8 layer against y32, or None where
    that peer has no int8 layer for the variant (or is not installed)."""
    try:
        if kind == "ort":
            if "onnxruntime" not in peer_names or options or problem.cell != "lstm":
                return None   # ORT quantizes plain LSTMs only (ONNX has no projection)
            c = build_ort_int8(problem)
        else:
            if "torch" not in peer_names or problem.cell == "rnn" or options.get("proj_size") \
                    or not options.get("linear_before_reset", True):
                return None   # torch's dynamic int8: LSTM (no projection) and its own GRU
            c = build_torch_int8(problem, options=options)
    except peers.PeerUnavailable:
        return None
    if c is None:
        return None
    return errors(c.y_of(c.infer()), y32)[0]


@dataclass
class AccuracyRow:
    """One variant at one shape: errors of int8 and bfloat16 (and the peers' int8) against
    float32; None where a peer has no int8 layer for it."""

    variant: str
    shape: Tuple[int, int, int, int]
    int8_abs: float
    int8_rel: float
    bf16_abs: float
    bf16_rel: float
    ort_int8_abs: Optional[float] = None
    torch_int8_abs: Optional[float] = None

    @property
    def vs_ort(self) -> Optional[float]:
        """fastlstm int8 error / ORT int8 error (< 1: fastlstm's int8 is closer to float32)."""
        if self.ort_int8_abs is None or self.ort_int8_abs == 0:
            return None
        return self.int8_abs / self.ort_int8_abs

    @property
    def vs_torch(self) -> Optional[float]:
        if self.torch_int8_abs is None or self.torch_int8_abs == 0:
            return None
        return self.int8_abs / self.torch_int8_abs

    def as_dict(self) -> Dict[str, object]:
        return {"variant": self.variant, "shape": shape_label(self.shape),
                "int8_max_abs_error": self.int8_abs, "int8_max_rel_error": self.int8_rel,
                "bf16_max_abs_error": self.bf16_abs, "bf16_max_rel_error": self.bf16_rel,
                "ort_int8_max_abs_error": self.ort_int8_abs,
                "torch_int8_max_abs_error": self.torch_int8_abs,
                "int8_error_vs_ort_int8": self.vs_ort,
                "int8_error_vs_torch_int8": self.vs_torch}


def accuracy_rows(shapes: Sequence[Sequence[int]] = DEFAULT_SHAPES,
                  variants: Sequence[str] = tuple(ACCURACY_VARIANTS),
                  peer_names: Optional[Sequence[str]] = None,
                  progress: Optional[Progress] = None) -> List[AccuracyRow]:
    """An AccuracyRow per variant (ACCURACY_VARIANTS) and shape, on peers.make_problem's weights
    and inputs (seed 0); peer_names: the peers to run (default: those installed)."""
    progress = progress or Progress(enabled=False)
    if peer_names is None:
        peer_names = available_peers()[0]
    rows = []
    for name in variants:
        cell, options = ACCURACY_VARIANTS[name]
        for shape in shapes:
            shape = tuple(int(n) for n in shape)
            progress.update(f"[accuracy] {name} {shape_label(shape)}")
            problem = peers.make_problem(*shape, cell=cell)
            module, hx = make_module(problem, options)
            x = problem.x
            y32 = module(x, hx)[0]
            e8 = errors(quantized(module, "int8")(x, hx)[0], y32)
            e16 = errors(quantized(module, "bfloat16")(x, hx)[0], y32)
            rows.append(AccuracyRow(name, shape, *e8, *e16,
                                    _peer_int8_error("ort", problem, options, y32, peer_names),
                                    _peer_int8_error("torch", problem, options, y32,
                                                     peer_names)))
    progress.done()
    return rows


def demo_accuracy(progress=None) -> Dict[str, object]:
    """The digits and adding demos trained as their run() does, then evaluated with the LSTM
    at float32, int8 and bfloat16 (fastlstm.demos.quantized); a part whose library is missing
    (scikit-learn for digits) is {"skipped": why}."""
    from ..demos import quantized as demo_q

    out = {}
    for name, fn in (("digits", demo_q.digits_accuracy), ("adding", demo_q.adding_accuracy)):
        if progress is not None:
            progress.update(f"[accuracy] training the {name} demo")
        try:
            out[name] = fn()
        except ImportError as exc:
            out[name] = {"skipped": str(exc)}
    if progress is not None:
        progress.done()
    return out


SILERO_SEQUENCE_MODEL = "silero_vad_16k_sequence.onnx"
SILERO_MAIN_MODEL = "silero_vad.onnx"


def synthetic_audio(seconds: float = 4.0, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A few tones (220, 450, 1300 Hz) on for 0.6 s of every second, plus white noise: float32
    samples in about [-0.6, 0.6]."""
    t = np.arange(int(seconds * rate)) / rate
    tones = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 450 * t + 1.0)
             + 0.1 * np.sin(2 * np.pi * 1300 * t)) * ((t % 1.0) < 0.6)
    noise = 0.02 * np.random.default_rng(seed).standard_normal(t.size)
    return (tones + noise).astype(np.float32)


def calibration_audio(seconds: float = 8.0, rate: int = 16000, seed: int = 1) -> np.ndarray:
    """Another clip for calibrating int8 (never the one scored): other tones (180, 330, 600,
    2100 Hz), each switched on and off on its own period, plus noise of another seed; float32
    samples in about [-0.7, 0.7]."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    signal = np.zeros_like(t)
    for freq, amp, period, on in ((180, 0.25, 1.3, 0.5), (600, 0.15, 1.3, 0.7),
                                  (2100, 0.08, 0.9, 0.4), (330, 0.2, 1.7, 0.3)):
        gate = ((t + rng.uniform(0, 1)) % period) < on
        signal += amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) * gate
    return (signal + 0.03 * rng.standard_normal(t.size)).astype(np.float32)


def _lstm_input(session, audio, H):
    """(probabilities, the LSTM's input x (chunks, 1, I), its output) of silero's sequence
    model (session, with the LSTM's input and output added as outputs) on `audio`."""
    width = session.get_inputs()[0].shape[1]        # 576: 64 samples of context + 512
    context, step = 64, width - 64
    n = audio.size // step
    padded = np.concatenate([np.zeros(context, np.float32), audio])
    chunks = np.stack([padded[k * step:k * step + width] for k in range(n)])
    zeros = np.zeros((1, 1, H), np.float32)
    probs, _, _, x, y_ort = session.run(None, {"input": chunks, "h": zeros, "c": zeros})
    return probs, x, y_ort


def silero_capture(seconds: float = 4.0, threads: int = 1) -> Dict[str, object]:
    """silero VAD's 16 kHz sequence model run in onnxruntime on `seconds` of synthetic_audio,
    with its LSTM node's input and output captured (silero_accuracy's first half). Returns
    {"out": the report's facts so far, "module": the node's fastlstm module (eval), "x"
    (chunks, 1, 128) float32, "h0", "c0" (1, 1, 128) zeros, "probs", "y_ort", "session",
    "seq_path", "y_name", "chunks", "step"}, or {"skipped": why} without silero-vad, onnx or
    onnxruntime."""
    try:
        import importlib.resources as resources

        importlib.import_module("silero_vad")
        onnx = importlib.import_module("onnx")
        importlib.import_module("onnxruntime")
    except ImportError as exc:
        return {"skipped": f"needs silero-vad, onnx and onnxruntime "
                           f"(pip install silero-vad): {type(exc).__name__}: {exc}"}
    from onnx import helper

    data = resources.files("silero_vad") / "data"
    main_path, seq_path = str(data / SILERO_MAIN_MODEL), str(data / SILERO_SEQUENCE_MODEL)
    out = {"package_version": _dist_version("silero-vad")}
    if not os.path.exists(seq_path):
        return {"skipped": f"{SILERO_SEQUENCE_MODEL} is not in this silero-vad", "out": out}
    if os.path.exists(main_path):
        main_nodes = fastlstm.from_onnx(main_path)
        out["main_model_lstm_nodes"] = {k: repr(v.module) for k, v in main_nodes.items()}
    else:
        main_nodes = {}
    nodes = fastlstm.from_onnx(seq_path, backend=_backend())
    if len(nodes) != 1:
        return {"skipped": f"{SILERO_SEQUENCE_MODEL}: expected one LSTM node, found "
                           f"{list(nodes)}", "out": out}
    node_name, node = next(iter(nodes.items()))
    module = node.module.eval()
    same = [k for k, v in main_nodes.items()
            if all(np.array_equal(a, b) for a, b in zip(v.module.state_dict().values(),
                                                        module.state_dict().values()))]
    out["sequence_model_node"] = node_name
    out["module"] = repr(module)
    out["same_weights_as"] = same

    model = onnx.load(seq_path)
    lstm = [n for n in model.graph.node if n.op_type == "LSTM"][0]
    x_name, y_name = lstm.input[0], lstm.output[0]
    for name in (x_name, y_name):
        model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                                None))
    session = peers.ort_session(model, threads)
    step = session.get_inputs()[0].shape[1] - 64
    H = module.hidden_size
    h0 = np.zeros((1, 1, H), np.float32)
    c0 = np.zeros((1, 1, H), np.float32)
    probs, x, y_ort = _lstm_input(session, synthetic_audio(seconds), H)
    return {"out": out, "module": module, "x": x, "h0": h0, "c0": c0, "probs": probs,
            "y_ort": y_ort, "session": session, "seq_path": seq_path, "y_name": y_name,
            "chunks": x.shape[0], "step": step}


def silero_accuracy(seconds: float = 4.0, threads: int = 1) -> Dict[str, object]:
    """silero VAD's LSTM (real weights) at int8 and bfloat16 against float32.

    The silero-vad package ships silero_vad.onnx (v5: its two LSTM nodes per sample rate sit
    inside If branches, run one 512-sample chunk per call) and silero_vad_16k_sequence.onnx,
    the 16 kHz network over a whole sequence of chunks with one top-level LSTM node (the same
    weights as the 16 kHz branch of silero_vad.onnx; checked here). The sequence model is run
    in onnxruntime on synthetic_audio with the LSTM's input and output added as graph outputs;
    fastlstm.from_onnx loads the node; its module and the module quantized run on the captured
    input. Also: the speech probabilities from the rest of the network fed with each output
    (onnx.utils.extract_model from the LSTM's output), and ONNX Runtime's int8 LSTM of the same
    node (ort_int8_model), and "int8 weights only": the float32 module with its weights
    rounded as int8 rounds them (_int8_weights_only), which tells the weights' share of int8's
    error from the activations'. Returns a dict ({"skipped": why} without silero-vad, onnx or
    onnxruntime)."""
    cap = silero_capture(seconds, threads)
    if "skipped" in cap:
        return {**cap.get("out", {}), "skipped": cap["skipped"]}
    import onnx
    import onnxruntime as ort

    out, module, x, h0, c0 = (cap[k] for k in ("out", "module", "x", "h0", "c0"))
    probs, y_ort, session, seq_path, y_name = (cap[k] for k in ("probs", "y_ort", "session",
                                                                 "seq_path", "y_name"))
    n, step = cap["chunks"], cap["step"]
    y32 = module(x, (h0, c0))[0]
    out.update(seconds=seconds, chunks=n, samples_per_chunk=step,
               lstm_input_shape=list(x.shape), lstm_input_max_abs=float(np.abs(x).max()),
               lstm_output_max_abs=float(np.abs(y32).max()),
               fastlstm_f32_vs_ort_f32=errors(y32, y_ort[:, 0])[0])

    with tempfile.TemporaryDirectory() as tmp:   # the network after the LSTM
        tail_path = os.path.join(tmp, "tail.onnx")
        onnx.utils.extract_model(seq_path, tail_path, [y_name], [session.get_outputs()[0].name])
        tail = ort.InferenceSession(tail_path, providers=["CPUExecutionProvider"])

    def speech(y):
        return tail.run(None, {y_name: np.ascontiguousarray(y[:, None], np.float32)})[0]

    p32 = speech(y32)
    out["speech_prob_range"] = [float(p32.min()), float(p32.max())]
    out["tail_vs_full_model"] = float(np.abs(p32 - probs).max())
    results = {}
    for precision in ("int8", "bfloat16"):
        y = quantized(module, precision)(x, (h0, c0))[0]
        abs_err, rel_err = errors(y, y32)
        results[precision] = {"max_abs_error": abs_err, "max_rel_error": rel_err,
                              **_speech_diff(speech(y), p32)}
    # int8 with codes calibrated on another clip (calibration_audio), scored on this one
    _, x_cal, _ = _lstm_input(session, calibration_audio(), module.hidden_size)
    y = quantized(module, "int8", calibration=x_cal)(x, (h0, c0))[0]
    abs_err, rel_err = errors(y, y32)
    results["int8 calibrated"] = {"max_abs_error": abs_err, "max_rel_error": rel_err,
                                  **_speech_diff(speech(y), p32)}
    out["calibration"] = (f"{x_cal.shape[0]} chunks of calibration_audio() (other tones and "
                          f"noise than the scored clip)")
    # where int8's error comes from: the int8 weights alone (codes * scales, the same rounding
    # as quantize("int8")) with float32 activations and products
    abs_err, rel_err = errors(_int8_weights_only(module)(x, (h0, c0))[0], y32)
    results["int8 weights only"] = {"max_abs_error": abs_err, "max_rel_error": rel_err}
    abs_err, rel_err = errors(_int8_weights_only(module, x_cal)(x, (h0, c0))[0], y32)
    results["int8 calibrated weights only"] = {"max_abs_error": abs_err,
                                               "max_rel_error": rel_err}
    try:
        problem = peers.Problem(x=x, w_ih=module.weight_ih_l0, w_hh=module.weight_hh_l0,
                                b_ih=module.bias_ih_l0, b_hh=module.bias_hh_l0, h0=h0[0],
                                c0=c0[0], dy=np.zeros_like(y32), cell="lstm")
        c = build_ort_int8(problem, threads)
        y = c.y_of(c.infer())
        abs_err, rel_err = errors(y, y32)
        results["ort int8"] = {"max_abs_error": abs_err, "max_rel_error": rel_err,
                               **_speech_diff(speech(y), p32)}
    except ImportError as exc:   # peers.PeerUnavailable, or no onnxruntime.quantization
        results["ort int8"] = {"skipped": str(exc)}
    out["results"] = results
    if "ort int8" in results and "max_abs_error" in results["ort int8"]:
        out["int8_error_vs_ort_int8"] = (results["int8"]["max_abs_error"]
                                         / results["ort int8"]["max_abs_error"])
    return out


def _int8_weights_only(module, calibration=None):
    """A float32 copy of the one-layer LSTM `module` whose weight_ih_l0 and weight_hh_l0 are
    their int8 versions dequantized (fastlstm.reference.quantized.Int8Matrix: one symmetric
    scale per gate row, as quantize("int8"), or quantize("int8", calibration=calibration)):
    the error of the weights alone, with the activations, products and gates in float32."""
    import copy

    from ..layers._calibration import input_grams
    from ..reference.quantized import Int8Matrix

    grams = {} if calibration is None else input_grams(module, calibration)
    twin = copy.deepcopy(module)
    state = twin.state_dict()
    for name in ("weight_ih_l0", "weight_hh_l0"):
        state[name] = Int8Matrix.quantize(state[name], grams.get(name)).dequantized()
    twin.load_state_dict(state)
    return twin


#: silero's usual speech threshold, for counting the chunks whose decision changes
SPEECH_THRESHOLD = 0.5


def _speech_diff(p, p32) -> Dict[str, object]:
    return {"speech_prob_max_abs_diff": float(np.abs(p - p32).max()),
            "decisions_changed": int(np.sum((p >= SPEECH_THRESHOLD) != (p32 >= SPEECH_THRESHOLD)))}


def _dist_version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def run_accuracy(shapes: Sequence[Sequence[int]] = DEFAULT_SHAPES,
                 variants: Sequence[str] = tuple(ACCURACY_VARIANTS), demos: bool = True,
                 silero: bool = True, threads: int = DEFAULT_THREADS,
                 peers_to_run: Optional[Sequence[str]] = None,
                 progress: Optional[Progress] = None) -> Dict[str, object]:
    """The accuracy report: accuracy_rows (peers among peers_to_run, default those
    installed), then demo_accuracy (demos=True) and silero_accuracy (silero=True), under
    peers.threads_limited(threads). Returns {"meta", "rows", "demos", "silero"} ("demos" /
    "silero" None when not run)."""
    started = time.perf_counter()
    peer_names, skipped = available_peers()
    if peers_to_run is not None:
        peer_names = [p for p in peer_names if p in peers_to_run]
    if "torch" in peer_names:
        peers.import_optional("torch", "torch")   # before threads_limited, which then sets it
    with peers.threads_limited(threads):
        rows = accuracy_rows(shapes, variants, peer_names, progress)
        demo = demo_accuracy(progress) if demos else None
        sil = silero_accuracy(threads=threads) if silero else None
    meta = {"threads": threads, "backend": _backend(), "dot_products": dot_products(),
            "env": _env(), "machine": machine_info(), "machine_line": machine_line(),
            **isa_info(), "versions": versions(peer_names), "skipped": skipped,
            "shapes": [shape_label(s) for s in shapes], "variants": list(variants),
            "proj_size": "hidden_size // 2",
            "weights": "peers.make_problem: weights uniform in +-1/sqrt(H), x, h0, c0 "
                       "standard normal (seed 0)",
            "errors": "max |y - y_f32| (abs) and that / max |y_f32| (rel), y_f32 = the same "
                      "fastlstm module at float32",
            "ort_int8": _ORT_QUANT_NOTE, "torch_int8": _TORCH_QUANT_NOTE,
            "seconds": None}
    meta["seconds"] = time.perf_counter() - started
    return {"meta": meta, "rows": rows, "demos": demo, "silero": sil}


def accuracy_to_json(result: Dict[str, object]) -> Dict[str, object]:
    """run_accuracy's result as JSON-ready data."""
    return {"meta": result["meta"], "rows": [r.as_dict() for r in result["rows"]],
            "demos": result["demos"], "silero": result["silero"]}


def _e(v: Optional[float], width: int = 9) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:{width}.2e}"


def _r(v: Optional[float], width: int = 8) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:{width}.2f}"


def format_accuracy(result: Dict[str, object]) -> str:
    """The accuracy report as text."""
    meta, rows = result["meta"], result["rows"]
    head = (f"{'cell':<10} {'shape TxBxIxH':<16} {'int8 abs':>9} {'int8 rel':>9} "
            f"{'bf16 abs':>9} {'bf16 rel':>9} {'ort i8 abs':>10} {'i8/ort':>7} "
            f"{'torch i8 abs':>12} {'i8/torch':>8}")
    lines = ["", "reduced-precision accuracy: y of int8 and bfloat16 modules against the same "
                 "module at float32 (abs = max |y - y_f32|, rel = abs / max |y_f32|); peers' "
                 "int8 on the same weights and inputs where they have one; i8/ort, i8/torch = "
                 "fastlstm int8 abs error / the peer's (< 1: fastlstm closer to float32)",
             meta["machine_line"], _dot_label(meta["dot_products"]),
             f"weights: {meta['weights']}; lstm+proj: proj_size = H // 2; gru = PyTorch's "
             f"(linear_before_reset), gru-rbr = reset-before",
             f"ort int8: {meta['ort_int8']}", f"torch int8: {meta['torch_int8']}"]
    for name, why in meta.get("skipped", {}).items():
        lines.append(f"skipped: {name} ({why})")
    lines += ["", head, "-" * len(head)]
    previous = None
    for r in rows:
        if previous is not None and r.variant != previous:
            lines.append("")
        previous = r.variant
        lines.append((f"{r.variant:<10} {shape_label(r.shape):<16} {_e(r.int8_abs)} "
                      f"{_e(r.int8_rel)} {_e(r.bf16_abs)} {_e(r.bf16_rel)} "
                      f"{_e(r.ort_int8_abs, 10)} {_r(r.vs_ort, 7)} {_e(r.torch_int8_abs, 12)} "
                      f"{_r(r.vs_torch)}").rstrip())
    demos = result.get("demos")
    if demos is not None:
        lines += ["", "demos, trained as `python -m fastlstm demo NAME` trains them, then "
                      "evaluated with the LSTM quantized (fastlstm.demos.quantized):"]
        for name, d in demos.items():
            if "skipped" in d:
                lines.append(f"  {name}: skipped ({d['skipped']})")
                continue
            metric = d["metric"]
            vals = ", ".join(f"{p} {d['results'][p]:{'.2%' if metric == 'accuracy' else '.5f'}}"
                             for p in d["results"])
            extra = ""
            if "agreement" in d:
                extra = "; same class as float32: " + ", ".join(
                    f"{p} {v:.2%}" for p, v in d["agreement"].items())
            if "max_abs_output_diff" in d:
                extra = "; max |output - float32 output|: " + ", ".join(
                    f"{p} {v:.1e}" for p, v in d["max_abs_output_diff"].items())
            lines.append(f"  {name}: held-out {metric} ({d['n_test']} samples): {vals}{extra} "
                         f"(trained in {d['train_seconds']:.1f} s)")
    sil = result.get("silero")
    if sil is not None:
        lines += ["", "silero VAD (real weights):"]
        if "skipped" in sil and "results" not in sil:
            lines.append(f"  skipped: {sil['skipped']}")
        else:
            nodes = sil.get("main_model_lstm_nodes", {})
            lines.append(f"  silero-vad {sil['package_version']}: {SILERO_MAIN_MODEL} has "
                         f"{len(nodes)} LSTM node(s) inside If branches (fastlstm.from_onnx "
                         f"loads them all); {SILERO_SEQUENCE_MODEL}'s node "
                         f"{sil['sequence_model_node']!r}, {sil['module']}, has the weights of "
                         f"{', '.join(sil['same_weights_as']) or 'none of them'}")
            lines.append(f"  input: {sil['seconds']:g} s of synthetic 16 kHz audio (tones + "
                         f"noise) = {sil['chunks']} chunks of {sil['samples_per_chunk']} "
                         f"samples; the LSTM's input captured from onnxruntime, "
                         f"{tuple(sil['lstm_input_shape'])}, max |x| "
                         f"{sil['lstm_input_max_abs']:.2f}; max |y_f32| "
                         f"{sil['lstm_output_max_abs']:.3f}; fastlstm f32 vs ORT f32 "
                         f"{sil['fastlstm_f32_vs_ort_f32']:.1e}")
            if "calibration" in sil:
                lines.append(f"  int8 calibrated: quantize('int8', calibration=...) on "
                             f"{sil['calibration']}")
            for name, res in sil["results"].items():
                if "skipped" in res:
                    lines.append(f"  {name:<15} skipped ({res['skipped']})")
                    continue
                line = (f"  {name:<15} max abs err {res['max_abs_error']:.2e}, rel "
                        f"{res['max_rel_error']:.2e}")
                if "speech_prob_max_abs_diff" in res:
                    line += (f"; speech probability max abs diff "
                             f"{res['speech_prob_max_abs_diff']:.2e}, "
                             f"{res['decisions_changed']} of {sil['chunks']} speech decisions "
                             f"(p >= {SPEECH_THRESHOLD:g}) changed")
                else:
                    line += " (int8 weights, float32 activations and products)"
                lines.append(line)
            if sil.get("int8_error_vs_ort_int8") is not None:
                lines.append(f"  fastlstm int8 error / ORT int8 error: "
                             f"{sil['int8_error_vs_ort_int8']:.2f}")
    return "\n".join(lines)
