"""The contenders of the benchmark: fastlstm's backends and its peers, built for one shape.

Every contender runs the same one-layer LSTM (SPEC.md section 1) on the same float32 weights
and inputs, made once by `make_problem`:

    x (T, B, I)   w_ih (4H, I)   w_hh (4H, H)   b_ih, b_hh (4H,)   h0, c0 (B, H)   dy (T, B, H)

and offers
    infer()  one forward pass, returning y (T, B, H) in the contender's own type;
    train()  forward pass with a tape + backward pass with dy, returning every gradient
             (None when the contender cannot train, e.g. onnxruntime).

Contenders (see CONTENDERS):
    "numpy", "cython", "numba"  fastlstm.forward / fastlstm.backward with that backend
                                (whichever fastlstm.available_backends() returns)
    "torch"                     torch.nn.LSTM(I, H) holding the same weights
    "onnxruntime"               a one-node ONNX LSTM model (gate order i, o, f, c) run by
                                onnxruntime; inference only

torch, onnx and onnxruntime are optional and imported only when their contender is built;
building a contender whose library is missing raises PeerUnavailable (an ImportError).

`check_contender` compares a contender's y (and its gradients) with fastlstm's NumPy reference
and raises MismatchError beyond float32 tolerance: run it before timing anything.
"""
import contextlib
import importlib
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

import fastlstm

#: the peers fastlstm is compared with, in table order
PEERS = ("torch", "onnxruntime")
#: short names used in column headers ("vs torch", "vs ort")
SHORT_NAMES = {"torch": "torch", "onnxruntime": "ort"}
#: accepted spellings of contender names
ALIASES = {"ort": "onnxruntime", "pytorch": "torch"}
#: the gradients a training run returns, named like fastlstm.forward's arguments
GRAD_NAMES = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")
#: float32 tolerance: max |contender - reference| / max |reference|, per output
RTOL = 1e-4
MODES = ("inference", "training")


class PeerUnavailable(ImportError):
    """A contender's library (torch, onnx, onnxruntime, a fastlstm backend) is not usable here."""


class MismatchError(AssertionError):
    """A contender's output or gradient differs from the NumPy reference beyond tolerance."""


# ---------------------------------------------------------------------------------------------
# The problem and its reference


@dataclass
class Problem:
    """One benchmark problem: float32 arrays in PyTorch's layout (gate order i, f, g, o).

    x (T, B, I); w_ih (4H, I); w_hh (4H, H); b_ih, b_hh (4H,); h0, c0 (B, H);
    dy (T, B, H) the output gradient used by training runs.
    """

    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    dy: np.ndarray

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        """(T, B, I, H)."""
        T, B, I = self.x.shape
        return T, B, I, self.w_hh.shape[1]

    @property
    def label(self) -> str:
        """'TxBxIxH', e.g. '100x1x32x64'."""
        return "x".join(map(str, self.shape))

    def forward_args(self) -> Dict[str, np.ndarray]:
        """The keyword arguments of fastlstm.forward: x, w_ih, w_hh, b_ih, b_hh, h0, c0."""
        return dict(x=self.x, w_ih=self.w_ih, w_hh=self.w_hh, b_ih=self.b_ih, b_hh=self.b_hh,
                    h0=self.h0, c0=self.c0)


def make_problem(T, B, I, H, seed=0) -> Problem:
    """Random float32 inputs for shape (T, B, I, H); weights uniform in +-1/sqrt(H) like PyTorch."""
    for name, n in zip("TBIH", (T, B, I, H)):
        if int(n) < 1:
            raise ValueError(f"{name} must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(H)

    def uniform(*shape):
        return rng.uniform(-k, k, size=shape).astype(np.float32)

    def normal(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    return Problem(x=normal(T, B, I), w_ih=uniform(4 * H, I), w_hh=uniform(4 * H, H),
                   b_ih=uniform(4 * H), b_hh=uniform(4 * H), h0=normal(B, H), c0=normal(B, H),
                   dy=normal(T, B, H))


@dataclass
class Reference:
    """fastlstm's NumPy-backend results for a Problem: y (T, B, H) and {name: gradient}."""

    y: np.ndarray
    grads: Dict[str, np.ndarray]


def reference(problem: Problem) -> Reference:
    """Run fastlstm.forward/backward with backend="numpy" (float32): the yardstick of the checks."""
    y, _, tape = fastlstm.forward(**problem.forward_args(), backend="numpy", return_tape=True)
    g = fastlstm.backward(tape, problem.dy)
    return Reference(y=np.asarray(y), grads={n: np.asarray(getattr(g, n)) for n in GRAD_NAMES})


# ---------------------------------------------------------------------------------------------
# Contenders


@dataclass
class Contender:
    """One contender for one Problem.

    infer()  -> a result R; y_of(R) gives y (T, B, H) as float32 NumPy.
    train()  -> a result G; grads_of(G) gives {name: gradient} for names in GRAD_NAMES
                (each shaped like the Problem's array of that name). None: inference only.
    family: "fastlstm" for fastlstm's own backends, "peer" otherwise.
    """

    name: str
    family: str
    version: str
    infer: Callable[[], Any]
    y_of: Callable[[Any], np.ndarray]
    train: Optional[Callable[[], Any]] = None
    grads_of: Optional[Callable[[Any], Dict[str, np.ndarray]]] = None
    note: str = ""
    keepalive: Any = field(default=None, repr=False)  # objects the callables depend on

    @property
    def short_name(self) -> str:
        return SHORT_NAMES.get(self.name, self.name)

    def can(self, mode: str) -> bool:
        """Whether this contender runs `mode` ("inference" or "training")."""
        return mode == "inference" or self.train is not None

    def callable_for(self, mode: str) -> Callable[[], Any]:
        """infer for "inference", train for "training" (ValueError when it cannot train)."""
        if mode == "inference":
            return self.infer
        if mode == "training":
            if self.train is None:
                raise ValueError(f"{self.name}: no training callable (inference only)")
            return self.train
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")


def _import_optional(module_name: str, contender: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise PeerUnavailable(
            f"contender {contender!r} needs the Python package {module_name!r}, which failed "
            f"to import ({type(exc).__name__}: {exc}); install it, e.g. "
            f"`pip install 'fastlstm[bench]' torch`"
        ) from exc


def build_fastlstm(backend: str, problem: Problem, threads: int = 1) -> Contender:
    """fastlstm.forward / fastlstm.backward with `backend` ("numpy", "cython" or "numba").

    infer: forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, backend=backend) -> (y, (h_n, c_n)).
    train: forward(..., return_tape=True) then backward(tape, dy) -> Gradients (every field).
    `threads` is applied by threads_limited (BLAS/OpenMP pools), not here.
    """
    if backend not in fastlstm.available_backends():
        from ._backends import unavailable_backends

        why = unavailable_backends().get(backend, "unknown backend")
        raise PeerUnavailable(f"fastlstm backend {backend!r} is unavailable: {why}")
    args = problem.forward_args()
    dy = problem.dy

    def infer():
        return fastlstm.forward(**args, backend=backend)

    def train():
        _, _, tape = fastlstm.forward(**args, backend=backend, return_tape=True)
        return fastlstm.backward(tape, dy)

    return Contender(
        name=backend, family="fastlstm", version=fastlstm.__version__,
        infer=infer, y_of=lambda out: np.asarray(out[0]),
        train=train, grads_of=lambda g: {n: np.asarray(getattr(g, n)) for n in GRAD_NAMES},
    )


def build_torch(problem: Problem, threads: int = 1) -> Contender:
    """torch.nn.LSTM(I, H) (float32) with the Problem's weights; tensors made once, here.

    infer: under torch.no_grad(), lstm(x, (h0, c0)) -> (y (T, B, H), (h_n, c_n)).
    train: x, h0, c0 and every parameter require grad; their .grad is reset to None, then
           y = lstm(x, (h0, c0))[0]; y.backward(dy) -> the gradient tensors.
    torch.set_num_threads is applied by threads_limited, not here.
    """
    torch = _import_optional("torch", "torch")
    T, B, I, H = problem.shape
    lstm = torch.nn.LSTM(I, H).float()
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(problem.w_ih))
        lstm.weight_hh_l0.copy_(torch.from_numpy(problem.w_hh))
        lstm.bias_ih_l0.copy_(torch.from_numpy(problem.b_ih))
        lstm.bias_hh_l0.copy_(torch.from_numpy(problem.b_hh))
    x = torch.from_numpy(problem.x.copy()).requires_grad_(True)
    h0 = torch.from_numpy(problem.h0[None].copy()).requires_grad_(True)  # (1, B, H)
    c0 = torch.from_numpy(problem.c0[None].copy()).requires_grad_(True)
    dy = torch.from_numpy(problem.dy.copy())
    params = dict(w_ih=lstm.weight_ih_l0, w_hh=lstm.weight_hh_l0, b_ih=lstm.bias_ih_l0,
                  b_hh=lstm.bias_hh_l0)
    leaves = dict(x=x, h0=h0, c0=c0, **params)

    def infer():
        with torch.no_grad():
            return lstm(x, (h0, c0))

    def train():
        for t in leaves.values():
            t.grad = None
        y, _ = lstm(x, (h0, c0))
        y.backward(dy)
        return {n: t.grad for n, t in leaves.items()}

    def grads_of(g):
        out = {n: t.detach().numpy() for n, t in g.items()}
        out["h0"], out["c0"] = out["h0"][0], out["c0"][0]
        return out

    return Contender(
        name="torch", family="peer", version=torch.__version__,
        infer=infer, y_of=lambda out: out[0].detach().numpy(),
        train=train, grads_of=grads_of, keepalive=lstm,
    )


#: ONNX's LSTM gate order is i, o, f, c; PyTorch's i, f, g(=c), o. ONNX block k = PyTorch block
#: _ONNX_FROM_TORCH[k].
_ONNX_FROM_TORCH = (0, 3, 1, 2)
ONNX_OPSET = 14
ONNX_IR_VERSION = 8


def torch_to_onnx_gates(w: np.ndarray) -> np.ndarray:
    """Reorder the 4 gate blocks of w, (4H, n) or (4H,), from torch i,f,g,o to ONNX i,o,f,c."""
    blocks = np.split(np.asarray(w), 4, axis=0)
    return np.concatenate([blocks[k] for k in _ONNX_FROM_TORCH], axis=0)


def onnx_lstm_model(problem: Problem):
    """A one-node ONNX model (opset 14) of the Problem's LSTM; returns an onnx.ModelProto.

    Initializers: W [1, 4H, I], R [1, 4H, H], B [1, 8H] = [Wb, Rb], gates in ONNX order i, o, f, c.
    Inputs: X (T, B, I), initial_h and initial_c (1, B, H). Outputs: Y (T, 1, B, H),
    Y_h and Y_c (1, B, H).
    """
    onnx = _import_optional("onnx", "onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    T, B, I, H = problem.shape
    W = torch_to_onnx_gates(problem.w_ih)[None]
    R = torch_to_onnx_gates(problem.w_hh)[None]
    Bias = np.concatenate([torch_to_onnx_gates(problem.b_ih),
                           torch_to_onnx_gates(problem.b_hh)])[None]
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "initial_h", "initial_c"],
                            ["Y", "Y_h", "Y_c"], hidden_size=H, direction="forward")
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "fastlstm_bench_lstm",
        inputs=[helper.make_tensor_value_info("X", f32, [T, B, I]),
                helper.make_tensor_value_info("initial_h", f32, [1, B, H]),
                helper.make_tensor_value_info("initial_c", f32, [1, B, H])],
        outputs=[helper.make_tensor_value_info("Y", f32, [T, 1, B, H]),
                 helper.make_tensor_value_info("Y_h", f32, [1, B, H]),
                 helper.make_tensor_value_info("Y_c", f32, [1, B, H])],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(a, np.float32), name)
                     for a, name in ((W, "W"), (R, "R"), (Bias, "B"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name="fastlstm-bench")
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    return model


def build_onnxruntime(problem: Problem, threads: int = 1) -> Contender:
    """onnxruntime running onnx_lstm_model(problem) on the CPU; inference only (train is None).

    Session: intra_op_num_threads = threads, inter_op_num_threads = 1, sequential execution.
    infer: session.run(["Y"], {X, initial_h, initial_c}) -> [Y (T, 1, B, H)].
    """
    ort = _import_optional("onnxruntime", "onnxruntime")
    model = onnx_lstm_model(problem)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    feeds = {"X": np.ascontiguousarray(problem.x), "initial_h": problem.h0[None].copy(),
             "initial_c": problem.c0[None].copy()}

    def infer():
        return session.run(["Y"], feeds)

    return Contender(
        name="onnxruntime", family="peer", version=ort.__version__,
        infer=infer, y_of=lambda out: np.asarray(out[0])[:, 0],
        note="inference only", keepalive=session,
    )


def _fastlstm_builder(backend):
    def build(problem, threads=1):
        return build_fastlstm(backend, problem, threads)

    build.__doc__ = f"build_fastlstm({backend!r}, problem, threads)"
    return build


#: every contender the benchmark knows: name -> builder(problem, threads) -> Contender
CONTENDERS: Dict[str, Callable[..., Contender]] = {
    **{name: _fastlstm_builder(name) for name in ("cython", "numba", "numpy")},
    "torch": build_torch,
    "onnxruntime": build_onnxruntime,
}

_PEER_MODULES = {"torch": ("torch",), "onnxruntime": ("onnx", "onnxruntime")}


def canonical_name(name: str) -> str:
    """'ort' -> 'onnxruntime' etc.; ValueError for an unknown contender."""
    name = ALIASES.get(name.strip().lower(), name.strip().lower())
    if name not in CONTENDERS:
        raise ValueError(f"unknown contender {name!r}; known: {', '.join(CONTENDERS)}")
    return name


def peer_available(name: str) -> Tuple[bool, str]:
    """(True, "") when the peer's packages import here, else (False, why)."""
    for module_name in _PEER_MODULES[name]:
        try:
            importlib.import_module(module_name)
        except ImportError as exc:
            return False, f"{module_name}: {type(exc).__name__}: {exc}"
    return True, ""


def available_contenders() -> Tuple[str, ...]:
    """The contenders usable here: fastlstm.available_backends(), then the installed peers."""
    names = list(fastlstm.available_backends())
    names += [p for p in PEERS if peer_available(p)[0]]
    return tuple(names)


def build(name: str, problem: Problem, threads: int = 1) -> Contender:
    """Build contender `name` for `problem`; PeerUnavailable when its library is missing."""
    return CONTENDERS[canonical_name(name)](problem, threads)


# ---------------------------------------------------------------------------------------------
# Correctness


def rel_error(a, b) -> float:
    """max |a - b| / max |b| (inf on a shape mismatch or a non-finite value)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if b.size == 0:
        return 0.0
    err = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), np.finfo(np.float32).tiny))
    return err if np.isfinite(err) else float("inf")


def check_contender(contender: Contender, ref: Reference, modes=MODES, rtol: float = RTOL):
    """Compare the contender's y (inference) and gradients (training) with the NumPy reference.

    Runs infer() once (and train() once when "training" is in modes and it can train).
    Returns {"y": err, "grad w_ih": err, ...} (relative errors as in rel_error); raises
    MismatchError naming every output beyond rtol (a missing y or gradient counts as one).
    """
    errors, bad = {}, []
    if "inference" in modes:
        y = contender.y_of(contender.infer())
        errors["y"] = rel_error(y, ref.y)
        if np.shape(y) != ref.y.shape:
            bad.append(f"y has shape {np.shape(y)}, expected {ref.y.shape}")
    if "training" in modes and contender.can("training"):
        grads = contender.grads_of(contender.train())
        for name in GRAD_NAMES:
            if name not in grads:
                continue
            errors[f"grad {name}"] = rel_error(grads[name], ref.grads[name])
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            if name not in grads:
                bad.append(f"grad {name} missing")
    bad += [f"{k}: relative error {v:.2e}" for k, v in errors.items() if not v <= rtol]
    if bad:
        raise MismatchError(
            f"contender {contender.name!r} disagrees with fastlstm's NumPy reference beyond "
            f"float32 tolerance {rtol:g} (max |diff| / max |reference|): " + "; ".join(bad))
    return errors


# ---------------------------------------------------------------------------------------------
# Threads


@contextlib.contextmanager
def threads_limited(threads: int):
    """Limit every thread pool the contenders use to `threads`, restoring them afterwards.

    threadpoolctl caps the BLAS (OpenBLAS/MKL) and OpenMP pools that numpy, scipy, fastlstm's
    kernels and torch's libgomp use; fastlstm.threads(n), where this fastlstm has it, also caps
    the thread counts fastlstm's kernels pass explicitly (OpenMP num_threads=, which an OpenMP
    limit does not override); torch.set_num_threads is applied when torch is imported (import
    it, i.e. build the torch contender, before entering). fastlstm's Numba kernels call BLAS
    (covered) and use no Numba thread pool. onnxruntime takes its thread count from its
    session options (see build_onnxruntime).
    """
    from threadpoolctl import threadpool_limits

    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    torch = sys.modules.get("torch")
    with contextlib.ExitStack() as stack:
        stack.enter_context(threadpool_limits(limits=threads))
        fastlstm_threads = getattr(fastlstm, "threads", None)
        if callable(fastlstm_threads):
            stack.enter_context(fastlstm_threads(threads))
        if torch is not None:
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            stack.callback(torch.set_num_threads, before)
        yield
