"""Shared helpers of fastlstm's test suite.

- `numeric_grad`: central finite differences of a scalar function of one array.
- `assert_close` / `rel_err`: the one error measure used everywhere,
  max |actual - expected| / max |expected| (see `rel_err` for the all-zero case).
- `make_problem`: random inputs shaped like torch.nn.LSTM's, weights drawn from PyTorch's
  U(-1/sqrt(H), 1/sqrt(H)), and random output gradients dy, dh_n, dc_n. Always time-major
  (T, B, ...); `Problem.call_args` turns it into the caller's layout (batch_first, unbatched).
- `reference_result`: y, h_n, c_n and every gradient from fastlstm.reference, computed in float64
  whatever the problem's dtype (the yardstick for float32 backends too).
- `backend` fixture / `BACKEND_PARAMS`: every backend name fastlstm knows; the ones that do not
  load here are skipped (so a missing backend shows as a skip, never as a silent pass).
- `kernel_calls`: a context manager that records every kernel call the public API makes (the
  error tests check that no kernel runs before an argument error).
"""
import contextlib
import os
from dataclasses import dataclass, replace
from typing import Optional
from unittest import mock

import numpy as np
import pytest

import fastlstm
from fastlstm import _api, reference

#: every backend fastlstm knows (fastlstm._backends.BACKEND_NAMES); not all need to load here
ALL_BACKENDS = ("cython", "numba", "numpy")
DTYPES = (np.float32, np.float64)
#: max relative error against the float64 reference
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
#: the names of the gradient fields, in the order of fastlstm.Gradients
GRAD_NAMES = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")


def tol_for(dtype):
    return TOL[np.dtype(dtype)]


# --------------------------------------------------------------------------------------------
# the error measure


def rel_err(actual, expected):
    """max |actual - expected| / max |expected|, computed in float64.

    When `expected` is all zeros (or empty) the denominator is 1, so the measure becomes the
    absolute error: an all-zero expectation is only met by (nearly) all-zero results. Any NaN or
    inf in either array that does not sit at the same place with the same value gives inf.
    """
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != expected shape {b.shape}"
    if a.size == 0:
        return 0.0
    nonfinite = ~np.isfinite(a) | ~np.isfinite(b)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if np.any(nonfinite & ~same):
        return float("inf")
    finite = np.isfinite(a) & np.isfinite(b)
    if not finite.any():
        return 0.0
    diff = np.max(np.abs(a[finite] - b[finite]))
    scale = np.max(np.abs(b[finite]))
    return float(diff / (scale if scale > 0 else 1.0))


def assert_close(actual, expected, tol, name="array"):
    """Assert equal shapes and rel_err(actual, expected) <= tol (see rel_err)."""
    assert actual is not None, f"{name}: got None, expected an array"
    assert expected is not None, f"{name}: no expected array (error in the test itself)"
    assert np.shape(actual) == np.shape(expected), (
        f"{name}: shape {np.shape(actual)} != expected {np.shape(expected)}")
    err = rel_err(actual, expected)
    assert err <= tol, f"{name}: relative error {err:.3e} exceeds {tol:.1e}"


# --------------------------------------------------------------------------------------------
# problems


@dataclass
class Problem:
    """An LSTM problem in the canonical time-major layout; optional parts may be None."""

    x: np.ndarray                # (T, B, I)
    w_ih: np.ndarray             # (4H, I)
    w_hh: np.ndarray             # (4H, H)
    b_ih: Optional[np.ndarray]   # (4H,)
    b_hh: Optional[np.ndarray]   # (4H,)
    h0: Optional[np.ndarray]     # (B, H)
    c0: Optional[np.ndarray]     # (B, H)
    dy: Optional[np.ndarray]     # (T, B, H)
    dh_n: Optional[np.ndarray]   # (B, H)
    dc_n: Optional[np.ndarray]   # (B, H)

    @property
    def dims(self):
        T, B, I = self.x.shape
        return T, B, I, self.w_hh.shape[1]

    @property
    def dtype(self):
        return self.x.dtype

    def without(self, *names):
        """A copy of this problem with the named optional parts set to None."""
        return replace(self, **{n: None for n in names})

    def forward_args(self):
        """Positional arguments of forward / reference.lstm_forward, time-major."""
        return (self.x, self.w_ih, self.w_hh, self.b_ih, self.b_hh, self.h0, self.c0)

    def call_args(self, layout="time_major"):
        """(forward positional args, forward kwargs, (dy, dh_n, dc_n)) in the caller's layout.

        layout: "time_major" (T, B, I), "batch_first" (B, T, I) or "unbatched" (T, I)
        (needs B == 1).
        The arrays in the other layouts are fresh C-contiguous copies.
        """
        x, h0, c0, dy, dh_n, dc_n = self.x, self.h0, self.c0, self.dy, self.dh_n, self.dc_n
        kwargs = {}
        if layout == "batch_first":
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
            dy = None if dy is None else np.ascontiguousarray(dy.transpose(1, 0, 2))
            kwargs["batch_first"] = True
        elif layout == "unbatched":
            assert x.shape[1] == 1, "unbatched layout needs B == 1"
            x = x[:, 0, :].copy()
            h0, c0, dh_n, dc_n = (None if a is None else a[0].copy() for a in (h0, c0, dh_n, dc_n))
            dy = None if dy is None else dy[:, 0, :].copy()
        else:
            assert layout == "time_major", layout
        return (x, self.w_ih, self.w_hh, self.b_ih, self.b_hh, h0, c0), kwargs, (dy, dh_n, dc_n)


def pytorch_uniform(rng, H, shape, dtype):
    k = 1.0 / np.sqrt(H)
    return rng.uniform(-k, k, size=shape).astype(dtype)


def make_problem(T, B, I, H, dtype=np.float64, seed=0, state_scale=1.0):
    """A random problem: x, h0, c0, dy, dh_n, dc_n standard normal (h0, c0 times state_scale),
    weights and biases U(-1/sqrt(H), 1/sqrt(H)) as PyTorch initialises nn.LSTM."""
    rng = np.random.default_rng([seed, T, B, I, H])

    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    return Problem(
        x=normal(T, B, I),
        w_ih=pytorch_uniform(rng, H, (4 * H, I), dtype),
        w_hh=pytorch_uniform(rng, H, (4 * H, H), dtype),
        b_ih=pytorch_uniform(rng, H, (4 * H,), dtype),
        b_hh=pytorch_uniform(rng, H, (4 * H,), dtype),
        h0=(state_scale * normal(B, H)).astype(dtype),
        c0=(state_scale * normal(B, H)).astype(dtype),
        dy=normal(T, B, H),
        dh_n=normal(B, H),
        dc_n=normal(B, H),
    )


@dataclass
class Result:
    """y, h_n, c_n and the gradients (dict keyed by GRAD_NAMES), in time-major layout."""

    y: np.ndarray
    h_n: np.ndarray
    c_n: np.ndarray
    grads: dict
    tape: tuple = None  # (h, c, gates) from reference.lstm_forward


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def reference_result(p: Problem):
    """Everything fastlstm computes, from fastlstm.reference in float64 (time-major layout)."""
    T, B, I, H = p.dims
    x, w_ih, w_hh, b_ih, b_hh, h0, c0 = map(_f64, p.forward_args())
    h, c, gates = reference.lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    dx, dw_ih, dw_hh, db, dh0, dc0 = reference.lstm_backward(
        x, w_ih, w_hh, h, c, gates, _f64(p.dy), _f64(p.dh_n), _f64(p.dc_n))
    grads = dict(x=dx, w_ih=dw_ih, w_hh=dw_hh,
                 b_ih=db if p.b_ih is not None else None,
                 b_hh=db if p.b_hh is not None else None,
                 h0=dh0, c0=dc0)
    return Result(y=h[1:], h_n=h[-1], c_n=c[-1], grads=grads, tape=(h, c, gates))


def to_layout(arr, kind, layout):
    """A time-major result array -> the caller's layout.

    kind: "seq" (T, B, n), "state" (B, n) or "param" (weights and biases: the same everywhere).
    """
    if arr is None or kind == "param":
        return arr
    if layout == "batch_first" and kind == "seq":
        return arr.transpose(1, 0, 2)
    if layout == "unbatched":
        return arr[:, 0, :] if kind == "seq" else arr[0]
    return arr


GRAD_KIND = dict(x="seq", w_ih="param", w_hh="param", b_ih="param", b_hh="param",
                 h0="state", c0="state")


def run_fastlstm(p: Problem, backend, layout="time_major", args=None):
    """fastlstm.forward (training, with tape) + backward on `p` in `layout`.

    `args` overrides the positional forward arguments (e.g. strided or Fortran-ordered copies).
    Returns (y, h_n, c_n, grads, tape), all in the caller's layout.
    """
    fargs, kwargs, (dy, dh_n, dc_n) = p.call_args(layout)
    if args is not None:
        fargs = args
    y, (h_n, c_n), tape = fastlstm.forward(*fargs, **kwargs, backend=backend, return_tape=True)
    g = fastlstm.backward(tape, dy, dh_n, dc_n)
    return y, h_n, c_n, {n: getattr(g, n) for n in GRAD_NAMES}, tape


def check_against_reference(p: Problem, backend, layout="time_major", args=None, tol=None):
    """Run fastlstm on `p` (training and inference) and compare everything with the reference."""
    tol = tol_for(p.dtype) if tol is None else tol
    ref = reference_result(p)
    y, h_n, c_n, grads, tape = run_fastlstm(p, backend, layout, args)
    assert tape.backend == backend
    for name, got in (("y", y), ("h_n", h_n), ("c_n", c_n)):
        assert got.dtype == p.dtype, f"{name}: dtype {got.dtype} != {p.dtype}"
    assert_close(y, to_layout(ref.y, "seq", layout), tol, "y")
    assert_close(h_n, to_layout(ref.h_n, "state", layout), tol, "h_n")
    assert_close(c_n, to_layout(ref.c_n, "state", layout), tol, "c_n")
    for name in GRAD_NAMES:
        expected = to_layout(ref.grads[name], GRAD_KIND[name], layout)
        if expected is None:
            assert grads[name] is None, f"grad {name}: expected None (bias not given)"
            continue
        assert grads[name].dtype == p.dtype, f"grad {name}: dtype {grads[name].dtype}"
        assert_close(grads[name], expected, tol, f"grad {name}")

    # the tape holds what reference.lstm_forward computes (time-major, whatever the layout)
    h, c, gates = ref.tape
    assert_close(tape.h, h, tol, "tape.h")
    assert_close(tape.c, c, tol, "tape.c")
    assert_close(tape.gates, gates, tol, "tape.gates")

    # inference (no tape) gives the training output
    fargs, kwargs, _ = p.call_args(layout)
    if args is not None:
        fargs = args
    y_inf, (h_inf, c_inf) = fastlstm.forward(*fargs, **kwargs, backend=backend)
    assert_close(y_inf, y, tol, "inference y vs training y")
    assert_close(h_inf, h_n, tol, "inference h_n vs training h_n")
    assert_close(c_inf, c_n, tol, "inference c_n vs training c_n")
    return ref, tape


# --------------------------------------------------------------------------------------------
# kernel calls


@contextlib.contextmanager
def kernel_calls():
    """Records every kernel call (forward or backward) that fastlstm's API makes.

    Yields a list that gets "forward" or "backward" appended at each kernel call made inside the
    `with` block. The backend that fastlstm._api.get_backend returns is wrapped: its name and
    groups(...) are passed on unchanged, forward / backward are recorded, then run.
    Any other attribute is deliberately absent, so a new kernel entry point fails loudly here
    instead of running unrecorded.

    A context manager rather than a pytest fixture: the hypothesis tests need a fresh record
    for every example (a function-scoped fixture is shared by all examples of a test), and
    helpers call it outside any test's signature.
    """
    calls = []
    real_get_backend = _api.get_backend

    class Recorder:
        def __init__(self, kernel):
            self._kernel = kernel
            self.name = kernel.name

        def groups(self, *args):
            return self._kernel.groups(*args)

        def forward(self, *args):
            calls.append("forward")
            return self._kernel.forward(*args)

        def backward(self, *args):
            calls.append("backward")
            return self._kernel.backward(*args)

    def recording_get_backend(name="auto"):
        return Recorder(real_get_backend(name))

    with mock.patch.object(_api, "get_backend", recording_get_backend):
        yield calls


# --------------------------------------------------------------------------------------------
# fixtures


def require_backend(name):
    """pytest.skip unless backend `name` loads here."""
    if name not in fastlstm.available_backends():
        from fastlstm._backends import unavailable_backends

        pytest.skip(f"backend {name!r} unavailable: {unavailable_backends().get(name, '?')}")
    return name


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Every backend fastlstm knows; skipped where it does not load."""
    return require_backend(request.param)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch):
    """Tests pick their backend explicitly; a FASTLSTM_BACKEND in the caller's environment must
    not change what backend="auto" means inside the tests that set it themselves."""
    monkeypatch.delenv("FASTLSTM_BACKEND", raising=False)


def numeric_grad(f, arr, eps=1e-6, entries=None):
    """Central differences of the scalar f() with respect to arr (changed in place, restored):
    an array like arr, filled at `entries` (flat indices; all when None), NaN elsewhere."""
    g = np.full(arr.shape, np.nan)
    flat = arr.reshape(-1)   # a view: arr is C-contiguous in these tests
    for i in range(arr.size) if entries is None else entries:
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        g.reshape(-1)[i] = (up - down) / (2 * eps)
    return g


@pytest.fixture
def busy_cores():
    """A busy process per CPU (plus one) for the duration of the test (the teams' barriers
    must complete on a loaded machine)."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range((os.cpu_count() or 1) + 1)]
    yield len(procs)
    for proc in procs:
        proc.kill()
        proc.wait()


def run_in_forked_child(target, *args, timeout=120):
    """target(queue, *args) in a child started by multiprocessing's "fork"; returns what it put
    on the queue, after checking that the child exited cleanly (a hang fails after timeout)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(queue,) + args)
    child.start()
    try:
        got = queue.get(timeout=timeout)
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    return got
