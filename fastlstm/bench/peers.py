"""The contenders of the benchmark: fastlstm's backends and its peers, built for one case.

A case is a cell ("lstm", "gru": PyTorch's linear-before-reset GRU, "rnn": tanh RNN), a shape
(T, B, I, H) and, optionally, per-row lengths. Every contender runs the same one-layer network
(SPEC.md sections 1-4) on the same float32 weights and inputs, made once by `make_problem`
(G = 4 gates for the LSTM, 3 for the GRU, 1 for the RNN):

    x (T, B, I)   w_ih (G*H, I)   w_hh (G*H, H)   b_ih, b_hh (G*H,)   h0 (B, H)
    c0 (B, H) (LSTM only)   dy (T, B, H)   lengths (B,) int64 or None

and offers
    infer()  one forward pass, returning y (T, B, H) in the contender's own type;
    train()  forward pass with a tape + backward pass with dy, returning every gradient
             (None when the contender cannot train, e.g. onnxruntime).

Contenders (see CONTENDERS):
    "numpy", "cython", "numba"  fastlstm.forward / gru_forward / rnn_forward and
                                fastlstm.backward with that backend (with `lengths=` when the
                                case has lengths)
    "torch"                     torch.nn.LSTM / GRU / RNN(I, H) holding the same weights; with
                                lengths, a packed sequence (pack_padded_sequence with
                                enforce_sorted=False, then pad_packed_sequence)
    "onnxruntime"               a one-node ONNX LSTM / GRU / RNN model (ONNX gate orders), with
                                sequence_lens when the case has lengths; inference only

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
#: the cells the benchmark runs, and their number of gate blocks G
CELLS = ("lstm", "gru", "rnn")
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


class PeerUnavailable(ImportError):
    """A contender's library (torch, onnx, onnxruntime, a fastlstm backend) is not usable here."""


class MismatchError(AssertionError):
    """A contender's output or gradient differs from the NumPy reference beyond tolerance."""


# ---------------------------------------------------------------------------------------------
# The problem and its reference


@dataclass
class Problem:
    """One benchmark problem: float32 arrays in PyTorch's layout (LSTM gates i, f, g, o; GRU
    gates r, z, n).

    x (T, B, I); w_ih (G*H, I); w_hh (G*H, H); b_ih, b_hh (G*H,); h0 (B, H); c0 (B, H) for
    the LSTM, None otherwise; dy (T, B, H) the output gradient used by training runs;
    lengths (B,) int64 (each in [1, T]) or None for a fully padded batch.
    """

    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray
    h0: np.ndarray
    c0: Optional[np.ndarray]
    dy: np.ndarray
    cell: str = "lstm"
    lengths: Optional[np.ndarray] = None

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        """(T, B, I, H)."""
        T, B, I = self.x.shape
        return T, B, I, self.w_hh.shape[1]

    @property
    def label(self) -> str:
        """'TxBxIxH', e.g. '100x1x32x64'."""
        return "x".join(map(str, self.shape))

    @property
    def grad_names(self) -> Tuple[str, ...]:
        """The gradients a training run returns: GRAD_NAMES without c0 for the GRU and RNN."""
        return GRAD_NAMES if self.cell == "lstm" else GRAD_NAMES[:-1]

    @property
    def work_rows(self) -> int:
        """Rows (step, sequence) that carry data: sum(lengths), or T*B when fully padded."""
        T, B = self.x.shape[:2]
        return int(np.sum(self.lengths)) if self.lengths is not None else T * B

    def fastlstm_function(self) -> Callable:
        """fastlstm.forward, gru_forward or rnn_forward, for this problem's cell."""
        return {"lstm": fastlstm.forward, "gru": fastlstm.gru_forward,
                "rnn": fastlstm.rnn_forward}[self.cell]

    def forward_args(self) -> Dict[str, np.ndarray]:
        """The keyword arguments of fastlstm_function(): x, w_ih, w_hh, b_ih, b_hh, h0, (c0,)
        (lengths when the problem has them)."""
        args = dict(x=self.x, w_ih=self.w_ih, w_hh=self.w_hh, b_ih=self.b_ih, b_hh=self.b_hh,
                    h0=self.h0)
        if self.cell == "lstm":
            args["c0"] = self.c0
        if self.lengths is not None:
            args["lengths"] = self.lengths
        return args


def random_lengths(T: int, B: int, seed: int = 0) -> np.ndarray:
    """B lengths drawn uniformly from [max(1, T // 10), T] (int64): T=200 gives U[20, 200]."""
    rng = np.random.default_rng(seed + 1)
    return rng.integers(max(1, T // 10), T, size=B, endpoint=True).astype(np.int64)


def make_problem(T, B, I, H, seed=0, cell="lstm", lengths=False) -> Problem:
    """Random float32 inputs for shape (T, B, I, H) and `cell` ("lstm", "gru" or "rnn");
    weights uniform in +-1/sqrt(H) like PyTorch. lengths=True draws random_lengths(T, B)."""
    for name, n in zip("TBIH", (T, B, I, H)):
        if int(n) < 1:
            raise ValueError(f"{name} must be at least 1, got {n}")
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {CELLS}, got {cell!r}")
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(H)
    G = GATES[cell] * H

    def uniform(*shape):
        return rng.uniform(-k, k, size=shape).astype(np.float32)

    def normal(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x, w_ih, w_hh = normal(T, B, I), uniform(G, I), uniform(G, H)
    b_ih, b_hh, h0, c0 = uniform(G), uniform(G), normal(B, H), normal(B, H)
    return Problem(x=x, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, h0=h0,
                   c0=c0 if cell == "lstm" else None, dy=normal(T, B, H), cell=cell,
                   lengths=random_lengths(T, B, seed) if lengths else None)


@dataclass
class Reference:
    """fastlstm's NumPy-backend results for a Problem: y (T, B, H) and {name: gradient}."""

    y: np.ndarray
    grads: Dict[str, np.ndarray]


def reference(problem: Problem) -> Reference:
    """Run fastlstm with backend="numpy" (float32) forward and backward: the yardstick of the
    checks."""
    y, _, tape = problem.fastlstm_function()(**problem.forward_args(), backend="numpy",
                                             return_tape=True)
    g = fastlstm.backward(tape, problem.dy)
    return Reference(y=np.asarray(y),
                     grads={n: np.asarray(getattr(g, n)) for n in problem.grad_names})


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


def import_optional(module_name: str, contender: str):
    """importlib.import_module(module_name), or PeerUnavailable naming `contender`."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise PeerUnavailable(
            f"contender {contender!r} needs the Python package {module_name!r}, which failed "
            f"to import ({type(exc).__name__}: {exc}); install it, e.g. "
            f"`pip install 'fastlstm[bench]' torch`"
        ) from exc


def build_fastlstm(backend: str, problem: Problem, threads: int = 1) -> Contender:
    """fastlstm's function for the problem's cell with `backend` ("numpy", "cython", "numba").

    infer: forward(x, w_ih, w_hh, b_ih, b_hh, h0[, c0][, lengths], backend=backend)
           -> (y, state).
    train: forward(..., return_tape=True) then backward(tape, dy) -> Gradients (every field).
    `threads` is applied by threads_limited (BLAS/OpenMP pools), not here.
    """
    if backend not in fastlstm.available_backends():
        from .._backends import unavailable_backends

        why = unavailable_backends().get(backend, "unknown backend")
        raise PeerUnavailable(f"fastlstm backend {backend!r} is unavailable: {why}")
    run = problem.fastlstm_function()
    args = problem.forward_args()
    dy = problem.dy
    names = problem.grad_names

    def infer():
        return run(**args, backend=backend)

    def train():
        _, _, tape = run(**args, backend=backend, return_tape=True)
        return fastlstm.backward(tape, dy)

    return Contender(
        name=backend, family="fastlstm", version=fastlstm.__version__,
        infer=infer, y_of=lambda out: np.asarray(out[0]),
        train=train, grads_of=lambda g: {n: np.asarray(getattr(g, n)) for n in names},
    )


def build_torch(problem: Problem, threads: int = 1) -> Contender:
    """torch.nn.LSTM / GRU / RNN(I, H) (float32) with the Problem's weights; tensors made once.

    infer: under torch.no_grad(), module(x, state) -> (y (T, B, H), state_n).
    train: x, the initial state and every parameter require grad; their .grad is reset to
           None, then y = module(x, state)[0]; y.backward(dy) -> the gradient tensors.
    With lengths, x goes in as pack_padded_sequence(x, lengths, enforce_sorted=False) and y
    comes out through pad_packed_sequence(..., total_length=T) (zeros past each length).
    torch.set_num_threads is applied by threads_limited, not here.
    """
    torch = import_optional("torch", "torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    T, B, I, H = problem.shape
    module_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
    module = module_class[problem.cell](I, H).float()
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(problem.w_ih))
        module.weight_hh_l0.copy_(torch.from_numpy(problem.w_hh))
        module.bias_ih_l0.copy_(torch.from_numpy(problem.b_ih))
        module.bias_hh_l0.copy_(torch.from_numpy(problem.b_hh))
    x = torch.from_numpy(problem.x.copy()).requires_grad_(True)
    h0 = torch.from_numpy(problem.h0[None].copy()).requires_grad_(True)  # (1, B, H)
    leaves = dict(x=x, h0=h0, w_ih=module.weight_ih_l0, w_hh=module.weight_hh_l0,
                  b_ih=module.bias_ih_l0, b_hh=module.bias_hh_l0)
    state = h0
    if problem.cell == "lstm":
        c0 = torch.from_numpy(problem.c0[None].copy()).requires_grad_(True)
        leaves["c0"] = c0
        state = (h0, c0)
    dy = torch.from_numpy(problem.dy.copy())
    lengths = None if problem.lengths is None else torch.from_numpy(problem.lengths.copy())

    def run():
        if lengths is None:
            return module(x, state)[0]
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        return pad_packed_sequence(module(packed, state)[0], total_length=T)[0]

    def infer():
        with torch.no_grad():
            return run()

    def train():
        for t in leaves.values():
            t.grad = None
        run().backward(dy)
        return {n: t.grad for n, t in leaves.items()}

    def grads_of(g):
        out = {n: t.detach().numpy() for n, t in g.items()}
        for n in ("h0", "c0"):
            if n in out:
                out[n] = out[n][0]
        return out

    return Contender(
        name="torch", family="peer", version=torch.__version__,
        infer=infer, y_of=lambda y: y.detach().numpy(),
        train=train, grads_of=grads_of, keepalive=module,
    )


_ONNX_OP = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
ONNX_OPSET = 14
ONNX_IR_VERSION = 8


def torch_to_onnx_gates(w: np.ndarray, cell: str = "lstm") -> np.ndarray:
    """Reorder the gate blocks of w, (G*H, n) or (G*H,), from PyTorch's order to ONNX's
    (LSTM i, o, f, c; GRU z, r, h; fastlstm.interop.onnx_graph holds the tables)."""
    from ..interop.onnx_graph import ONNX_FROM_TORCH, reorder_blocks

    return reorder_blocks(w, ONNX_FROM_TORCH[cell])


def onnx_model(problem: Problem):
    """A one-node ONNX model (opset 14) of the Problem's cell; returns an onnx.ModelProto.

    Initializers: W [1, G*H, I], R [1, G*H, H], B [1, 2*G*H] = [Wb, Rb], gates in ONNX order
    (the GRU node has linear_before_reset=1, PyTorch's GRU). Inputs: X (T, B, I),
    sequence_lens (B,) int32 when the problem has lengths, initial_h (1, B, H), and for the
    LSTM initial_c (1, B, H). Outputs: Y (T, 1, B, H), Y_h (1, B, H) (and Y_c for the LSTM).
    """
    onnx = import_optional("onnx", "onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    T, B, I, H = problem.shape
    cell = problem.cell
    W = torch_to_onnx_gates(problem.w_ih, cell)[None]
    R = torch_to_onnx_gates(problem.w_hh, cell)[None]
    Bias = np.concatenate([torch_to_onnx_gates(problem.b_ih, cell),
                           torch_to_onnx_gates(problem.b_hh, cell)])[None]
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("X", f32, [T, B, I]),
              helper.make_tensor_value_info("initial_h", f32, [1, B, H])]
    outputs = [helper.make_tensor_value_info("Y", f32, [T, 1, B, H]),
               helper.make_tensor_value_info("Y_h", f32, [1, B, H])]
    node_in = ["X", "W", "R", "B", "", "initial_h"]
    if problem.lengths is not None:
        node_in[4] = "sequence_lens"
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [B]))
    node_out = ["Y", "Y_h"]
    attrs = dict(hidden_size=H, direction="forward")
    if cell == "lstm":
        node_in.append("initial_c")
        node_out.append("Y_c")
        inputs.append(helper.make_tensor_value_info("initial_c", f32, [1, B, H]))
        outputs.append(helper.make_tensor_value_info("Y_c", f32, [1, B, H]))
    if cell == "gru":
        attrs["linear_before_reset"] = 1
    node = helper.make_node(_ONNX_OP[cell], node_in, node_out, **attrs)
    graph = helper.make_graph(
        [node], f"fastlstm_bench_{cell}", inputs=inputs, outputs=outputs,
        initializer=[numpy_helper.from_array(np.ascontiguousarray(a, np.float32), name)
                     for a, name in ((W, "W"), (R, "R"), (Bias, "B"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name="fastlstm-bench")
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    return model


def ort_session(model, threads: int = 1):
    """An onnxruntime.InferenceSession of `model` (an onnx.ModelProto) on the CPU, as every
    table of the bench makes them: intra_op_num_threads = threads (the session's own thread
    pool: one session per thread count), inter_op_num_threads = 1, sequential execution,
    every graph optimisation, warnings silenced."""
    ort = import_optional("onnxruntime", "onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def build_onnxruntime(problem: Problem, threads: int = 1) -> Contender:
    """onnxruntime running onnx_model(problem) on the CPU; inference only (train is None).

    Session: ort_session(model, threads) (intra_op_num_threads = threads, sequential).
    infer: session.run(["Y"], {X, initial_h[, initial_c][, sequence_lens]}) -> [Y (T, 1, B, H)].
    """
    ort = import_optional("onnxruntime", "onnxruntime")
    session = ort_session(onnx_model(problem), threads)
    feeds = {"X": np.ascontiguousarray(problem.x), "initial_h": problem.h0[None].copy()}
    if problem.cell == "lstm":
        feeds["initial_c"] = problem.c0[None].copy()
    if problem.lengths is not None:
        feeds["sequence_lens"] = problem.lengths.astype(np.int32)

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
        for name, expected in ref.grads.items():
            if name in grads:
                errors[f"grad {name}"] = rel_error(grads[name], expected)
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
