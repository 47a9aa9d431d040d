"""Property-based fuzzing of the public API (hypothesis): valid calls match the reference,
invalid calls fail cleanly, before any kernel runs.

Every test draws a problem: shape (T 0..6, B 0..5, I 1..6, H 1..9, so empty sequences and
batches included), dtype, layout (time-major, batch_first, unbatched), the memory of each array
(C order, Fortran order, strided view, negative strides, read-only, nested list), and the options
(biases, h0 / c0, return_tape, dy / dh_n / dc_n); pytest parametrises the backend.

- Valid draws: fastlstm.forward / backward give what the NumPy backend gives on C-contiguous
  copies of the same arrays (max relative error 1e-10 in float64, 1e-4 in float32), with the
  shapes and dtypes the inputs imply; the inputs are unchanged and no output shares memory
  with them.
- Invalid draws: one argument of a valid call is corrupted (wrong shape or number of
  dimensions, a shape that disagrees with another argument, an int / complex / float16 / bool /
  object array, the other float dtype, not an array, a non-bool flag, an unknown backend, a
  non-tape for backward, a wrong dy / dh_n / dc_n). The call raises exactly TypeError (types,
  dtypes) or ValueError (shapes, backend names), the message starts with the argument's name
  and shows what was given, no kernel runs, and the inputs are unchanged.

Examples per test: FUZZ_EXAMPLES below (the whole file runs in a few seconds); set
FASTLSTM_FUZZ_EXAMPLES=N for N examples per test, drawn at random rather than from the fixed
seed the default run uses (a long fuzzing run: see TESTING.md).
"""
import contextlib
import os
import re
from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import fastlstm
from fastlstm import _api

from conftest import (ALL_BACKENDS, GRAD_NAMES, assert_close, make_problem, require_backend,
                      tol_for)

_LONG_RUN = int(os.environ.get("FASTLSTM_FUZZ_EXAMPLES", "0") or 0)
#: examples per test and backend in the default run
FUZZ_EXAMPLES = {"valid": 300, "invalid_forward": 300, "invalid_backward": 200}


def fuzz_settings(kind):
    return settings(
        max_examples=_LONG_RUN or FUZZ_EXAMPLES[kind],
        deadline=None,                 # the first Numba call compiles
        derandomize=not _LONG_RUN,     # the default run is the same every time
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


ARG_NAMES = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")
GRAD_IN_NAMES = ("dy", "dh_n", "dc_n")
LAYOUTS = ("time_major", "batch_first", "unbatched")
#: how an array is handed to fastlstm (see _in_memory)
MEMORY = ("C", "F", "strided", "reversed", "readonly", "list")
# and "transposed" for a batch_first x: a (B, T, I) view of a time-major array


# ---------------------------------------------------------------------------------- drawing


@dataclass
class Case:
    """One drawn call: the problem (time-major), its layout and the memory of each array."""

    p: object                       # conftest.Problem, optional parts already dropped
    layout: str
    return_tape: bool
    memory: dict = field(default_factory=dict)   # argument name -> one of MEMORY
    seed: int = 0

    @property
    def dtype(self):
        return self.p.dtype

    def canonical(self):
        """(forward args, kwargs, (dy, dh_n, dc_n)): fresh C-contiguous arrays."""
        return self.p.call_args(self.layout)

    def arguments(self):
        """The same arrays, each in the memory the case drew for it."""
        fargs, kwargs, gargs = self.canonical()
        rng = np.random.default_rng(self.seed)
        fargs = tuple(_in_memory(a, self.memory.get(n, "C"), rng)
                      for n, a in zip(ARG_NAMES, fargs))
        gargs = tuple(_in_memory(a, self.memory.get(n, "C"), rng)
                      for n, a in zip(GRAD_IN_NAMES, gargs))
        return fargs, kwargs, gargs


def _in_memory(arr, kind, rng):
    """arr's values in another memory layout (None stays None)."""
    if arr is None:
        return None
    if kind == "C":
        return arr.copy()
    if kind == "F":
        return np.asfortranarray(arr)
    if kind == "strided":  # every other element of a larger random array, along every axis
        big = rng.standard_normal(tuple(2 * n + 1 for n in arr.shape)).astype(arr.dtype)
        view = big[tuple(slice(1, None, 2) for _ in arr.shape)]
        view[...] = arr
        return view
    if kind == "reversed":  # negative strides along every axis
        index = tuple(slice(None, None, -1) for _ in arr.shape)
        return arr[index].copy()[index]
    if kind == "readonly":
        out = arr.copy()
        out.flags.writeable = False
        return out
    if kind == "list":  # (an empty array's list loses its shape: drawn for non-empty ones)
        return arr.tolist() if arr.size else arr.copy()
    if kind == "transposed":
        return np.ascontiguousarray(arr.transpose(1, 0, 2)).transpose(1, 0, 2)
    raise AssertionError(kind)


@st.composite
def cases(draw, require_tape=False):
    dtype = np.dtype(draw(st.sampled_from(["float32", "float64"])))
    layout = draw(st.sampled_from(LAYOUTS))
    T = draw(st.integers(0, 6))
    B = 1 if layout == "unbatched" else draw(st.integers(0, 5))
    I = draw(st.integers(1, 6))
    H = draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**16))
    p = make_problem(T, B, I, H, dtype=dtype, seed=seed)
    return_tape = True if require_tape else draw(st.booleans())
    dropped = [name for name in ("b_ih", "b_hh", "h0", "c0") + GRAD_IN_NAMES
               if not draw(st.booleans())]
    p = p.without(*dropped)
    # nested lists are float64 arrays: only for float64 calls
    memory_kinds = MEMORY if dtype == np.float64 else MEMORY[:-1]
    memory = {name: draw(st.sampled_from(memory_kinds)) for name in ARG_NAMES + GRAD_IN_NAMES}
    if layout == "batch_first" and draw(st.booleans()):
        memory["x"] = "transposed"
    case = Case(p=p, layout=layout, return_tape=return_tape, memory=memory, seed=seed)
    note(f"T={T} B={B} I={I} H={H} {dtype} {layout} return_tape={return_tape} "
         f"dropped={dropped} memory={memory}")
    return case


# ---------------------------------------------------------------------------------- helpers


def _snapshot(arrays):
    """Copies of the array arguments (lists and None kept as they are)."""
    return [a.copy() if isinstance(a, np.ndarray) else a for a in arrays]


def _assert_unchanged(arrays, copies, what):
    for k, (a, a0) in enumerate(zip(arrays, copies)):
        if isinstance(a, np.ndarray):
            nan_ok = a.dtype.kind in "fc"
            assert np.array_equal(a, a0, equal_nan=nan_ok), f"{what} argument {k} was modified"
        else:
            assert a == a0, f"{what} argument {k} was modified"


@contextlib.contextmanager
def kernel_calls():
    """Records every kernel call (forward or backward) that fastlstm's API makes."""
    calls = []
    real_get_backend = _api.get_backend

    class Recorder:
        def __init__(self, kernel):
            self._kernel = kernel
            self.name = kernel.name
            self.groups = kernel.groups

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


def _run(case, backend, fargs, kwargs, gargs):
    """forward (and backward with the tape): y, h_n, c_n and the gradients (or None)."""
    out = fastlstm.forward(*fargs, **kwargs, backend=backend, return_tape=case.return_tape)
    y, (h_n, c_n) = out[:2]
    grads = None
    if case.return_tape:
        tape = out[2]
        assert tape.backend == backend
        g = fastlstm.backward(tape, *gargs)
        grads = {name: getattr(g, name) for name in GRAD_NAMES}
    return y, h_n, c_n, grads


# ---------------------------------------------------------------------------------- valid


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@fuzz_settings("valid")
@given(case=cases())
def test_valid_calls_match_reference(backend, case):
    """Any valid call gives the NumPy backend's numbers on C-contiguous copies of its arrays."""
    require_backend(backend)
    T, B, I, H = case.p.dims
    dtype = case.dtype
    fargs, kwargs, gargs = case.arguments()
    f_copies, g_copies = _snapshot(fargs), _snapshot(gargs)

    y, h_n, c_n, grads = _run(case, backend, fargs, kwargs, gargs)
    ref = _run(case, "numpy", *case.canonical())

    # shapes and dtypes as the inputs imply
    y_shape = {"time_major": (T, B, H), "batch_first": (B, T, H), "unbatched": (T, H)}
    state_shape = (H,) if case.layout == "unbatched" else (B, H)
    assert y.shape == y_shape[case.layout] and y.dtype == dtype
    assert h_n.shape == c_n.shape == state_shape
    assert h_n.dtype == c_n.dtype == dtype
    tol = tol_for(dtype)
    for name, got, want in zip(("y", "h_n", "c_n"), (y, h_n, c_n), ref[:3]):
        assert_close(got, want, tol, name)
    if case.return_tape:
        x_shape = np.shape(fargs[0])
        expected_shapes = dict(x=x_shape, w_ih=(4 * H, I), w_hh=(4 * H, H), b_ih=(4 * H,),
                               b_hh=(4 * H,), h0=state_shape, c0=state_shape)
        for name in GRAD_NAMES:
            got, want = grads[name], ref[3][name]
            if name in ("b_ih", "b_hh") and getattr(case.p, name) is None:
                assert got is None and want is None, f"grad {name}: expected None"
                continue
            assert got.shape == expected_shapes[name] and got.dtype == dtype, name
            assert_close(got, want, tol, f"grad {name}")

    # the inputs are unchanged and no output shares memory with them
    _assert_unchanged(fargs, f_copies, "forward")
    _assert_unchanged(gargs, g_copies, "backward")
    outputs = [y, h_n, c_n] + ([a for a in grads.values() if a is not None] if grads else [])
    for out in outputs:
        for arr in list(fargs) + list(gargs):
            if isinstance(arr, np.ndarray):
                assert not np.shares_memory(out, arr), "an output shares memory with an input"


# ---------------------------------------------------------------------------------- invalid

BAD_DTYPES = ("int8", "int32", "int64", "uint16", "bool", "float16", "complex64",
              "complex128", "object")


@dataclass
class Corruption:
    """A corrupted argument and the error it must raise."""

    target: str                 # the argument that was corrupted
    value: object               # its new value
    error: type                 # TypeError or ValueError
    names: tuple                # the message starts with one of these argument names
    shows: tuple = ()           # strings the message must contain (the given shape or dtype)
    why: str = ""


def _other_float(dtype):
    return np.dtype(np.float32 if dtype == np.float64 else np.float64)


def _wrong_shape(draw, shape):
    """A shape that differs from `shape` in one axis (sizes 0 .. n+3)."""
    axis = draw(st.integers(0, len(shape) - 1))
    size = draw(st.integers(0, shape[axis] + 3).filter(lambda n: n != shape[axis]))
    return shape[:axis] + (size,) + shape[axis + 1:], axis


def _wrong_ndim(draw, arr):
    """arr with one axis more, or flattened / a scalar (never a valid number of axes)."""
    options = ["more"]
    if arr.ndim > 1:
        options.append("flat")
    if arr.ndim != 0:
        options.append("scalar")
    how = draw(st.sampled_from(options))
    if how == "more":
        return arr[None] if arr.ndim != 2 else arr[None, None]  # 2 -> 4 axes, 1 -> 2, 3 -> 4
    if how == "flat":
        return arr.reshape(-1)
    return np.array(1.0, dtype=arr.dtype)


def _not_an_array(draw, required):
    choices = ["a string", {"x": 1}, [[1.0, 2.0], [3.0]], object()]
    if required:
        choices.append(None)
    return draw(st.sampled_from(choices))


def _shape_text(shape):
    return str(tuple(shape))


@st.composite
def forward_corruptions(draw, case):
    fargs, kwargs, _ = case.canonical()
    args = dict(zip(ARG_NAMES, fargs))
    present = [n for n in ARG_NAMES if args[n] is not None]
    dtype = case.dtype
    kinds = ["dtype", "mixed_float", "shape", "ndim", "not_array", "flag", "backend"]
    kind = draw(st.sampled_from(kinds))
    if kind == "flag":
        flag = draw(st.sampled_from(["batch_first", "return_tape"]))
        value = draw(st.sampled_from([0, 1, 1.0, "yes", "", None, np.int64(1), [True]]))
        return Corruption(flag, value, TypeError, (flag,), (), f"{flag}={value!r}")
    if kind == "backend":
        valid = set(fastlstm.available_backends()) | {"auto"}
        value = draw(st.one_of(
            st.text(max_size=8).filter(lambda s: s not in valid),
            st.sampled_from(["Cython", "NUMPY", " numpy", "numpy ", "torch", b"numpy", 0, None,
                             1.5, ("numpy",)])))
        return Corruption("backend", value, ValueError, ("backend",), (), f"backend={value!r}")

    target = draw(st.sampled_from(present))
    arr = args[target]
    if kind == "dtype":
        bad = np.dtype(draw(st.sampled_from(BAD_DTYPES)))
        return Corruption(target, arr.astype(bad), TypeError, (target,), (str(bad),),
                          f"{target} as {bad}")
    if kind == "mixed_float":
        other = _other_float(dtype)
        # x sets the call's dtype: a different x makes the next array (w_hh) the odd one out
        names = ("x", "w_hh") if target == "x" else (target,)
        return Corruption(target, arr.astype(other), TypeError, names, (str(other),),
                          f"{target} as {other}")
    if kind == "not_array":
        value = _not_an_array(draw, target in ("x", "w_ih", "w_hh"))
        return Corruption(target, value, TypeError, (target,), (), f"{target}={value!r}")
    if kind == "ndim":
        value = _wrong_ndim(draw, arr)
        return Corruption(target, value, ValueError, (target,), (_shape_text(value.shape),),
                          f"{target} with shape {value.shape}")

    # kind == "shape": one axis of one array disagrees with the others
    if target == "x":
        # x's T can be anything; its I must match w_ih, its B must match h0 / c0
        axes = {"time_major": {"B": 1, "I": 2}, "batch_first": {"B": 0, "I": 2},
                "unbatched": {"I": 1}}[case.layout]
        states = [n for n in ("h0", "c0") if args[n] is not None]
        axis_name = draw(st.sampled_from(["I", "B"] if states and "B" in axes else ["I"]))
        axis = axes[axis_name]
        size = draw(st.integers(0, arr.shape[axis] + 3).filter(lambda n: n != arr.shape[axis]))
        shape = arr.shape[:axis] + (size,) + arr.shape[axis + 1:]
        value = np.ones(shape, dtype)
        if axis_name == "I":
            names = ("x",) if size == 0 else ("w_ih",)
            shows = (_shape_text(shape),) if size == 0 else (_shape_text(args["w_ih"].shape),)
        else:
            names = (states[0],)
            shows = (_shape_text(args[states[0]].shape),)
        return Corruption("x", value, ValueError, names, shows, f"x with shape {shape}")
    shape, _ = _wrong_shape(draw, arr.shape)
    value = np.ones(shape, dtype)
    shows = (_shape_text(shape),)
    if target != "w_hh":
        shows += (_shape_text(arr.shape),)  # and the expected shape
    return Corruption(target, value, ValueError, (target,), shows, f"{target} shape {shape}")


def _check_error(exc_info, corruption):
    err = exc_info.value
    assert type(err) is corruption.error, (
        f"{corruption.why}: raised {type(err).__name__}, expected {corruption.error.__name__}")
    msg = str(err)
    names = "|".join(re.escape(n) for n in corruption.names)
    assert re.match(rf"^\$?(?:{names})\b", msg), (
        f"{corruption.why}: message does not start with {corruption.names}: {msg!r}")
    for text in corruption.shows:
        assert text in msg, f"{corruption.why}: {text!r} not in message {msg!r}"


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@fuzz_settings("invalid_forward")
@given(data=st.data())
def test_invalid_forward_raises_before_any_kernel(backend, data):
    """One corrupted forward argument: TypeError or ValueError naming it, no kernel call."""
    require_backend(backend)
    case = data.draw(cases())
    corruption = data.draw(forward_corruptions(case))
    note(corruption.why)
    fargs, kwargs, _ = case.canonical()
    args = dict(zip(ARG_NAMES, fargs))
    kwargs = dict(kwargs, backend=backend, return_tape=case.return_tape)
    if corruption.target in args:
        args[corruption.target] = corruption.value
    else:
        kwargs[corruption.target] = corruption.value
    values = [args[n] for n in ARG_NAMES]
    copies = _snapshot(values)

    with kernel_calls() as calls, pytest.raises((TypeError, ValueError)) as exc_info:
        fastlstm.forward(*values, **kwargs)
    _check_error(exc_info, corruption)
    assert calls == [], f"{corruption.why}: a kernel ran before the error ({calls})"
    _assert_unchanged(values, copies, "forward")


@st.composite
def backward_corruptions(draw, case, y, h_n):
    _, _, gargs = case.canonical()
    grads = dict(zip(GRAD_IN_NAMES, gargs))
    expected = {"dy": y.shape, "dh_n": h_n.shape, "dc_n": h_n.shape}
    kind = draw(st.sampled_from(["tape", "dtype", "mixed_float", "shape", "ndim", "not_array"]))
    if kind == "tape":
        value = draw(st.sampled_from(["forward_result", "tape_arrays", "y", None, {"x": 1}]))
        return Corruption("tape", value, TypeError, ("tape",), (), f"tape={value!r}")
    target = draw(st.sampled_from(GRAD_IN_NAMES))
    arr = grads[target]
    if arr is None:
        arr = np.zeros(expected[target], case.dtype)
    if kind == "dtype":
        bad = np.dtype(draw(st.sampled_from(BAD_DTYPES)))
        return Corruption(target, arr.astype(bad), TypeError, (target,), (str(bad),),
                          f"{target} as {bad}")
    if kind == "mixed_float":
        other = _other_float(case.dtype)
        return Corruption(target, arr.astype(other), TypeError, (target,), (str(other),),
                          f"{target} as {other}")
    if kind == "not_array":
        value = _not_an_array(draw, required=False)
        return Corruption(target, value, TypeError, (target,), (), f"{target}={value!r}")
    if kind == "ndim":
        value = _wrong_ndim(draw, arr)
        return Corruption(target, value, ValueError, (target,),
                          (_shape_text(value.shape), _shape_text(expected[target])),
                          f"{target} with shape {value.shape}")
    if target == "dy" and case.layout != "unbatched" and draw(st.booleans()):
        # dy in the other layout (time-major for batch_first, batch-first for time-major)
        shape = arr.shape[1::-1] + arr.shape[2:]
        if shape == arr.shape:
            shape = (arr.shape[0] + 1,) + arr.shape[1:]
    else:
        shape, _ = _wrong_shape(draw, arr.shape)
    return Corruption(target, np.ones(shape, case.dtype), ValueError, (target,),
                      (_shape_text(shape), _shape_text(expected[target])),
                      f"{target} shape {shape}")


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@fuzz_settings("invalid_backward")
@given(data=st.data())
def test_invalid_backward_raises_before_any_kernel(backend, data):
    """One corrupted backward argument (tape, dy, dh_n, dc_n): the right error, no kernel call."""
    require_backend(backend)
    case = data.draw(cases(require_tape=True))
    fargs, kwargs, gargs = case.canonical()
    y, (h_n, c_n), tape = fastlstm.forward(*fargs, **kwargs, backend=backend, return_tape=True)
    corruption = data.draw(backward_corruptions(case, y, h_n))
    note(corruption.why)
    grads = dict(zip(GRAD_IN_NAMES, gargs))
    if corruption.target == "tape":
        stand_ins = {"forward_result": (y, (h_n, c_n)), "y": y,
                     "tape_arrays": (tape.h, tape.c, tape.gates)}
        value = corruption.value
        tape = stand_ins[value] if isinstance(value, str) else value
    else:
        grads[corruption.target] = corruption.value
    values = [grads[n] for n in GRAD_IN_NAMES]
    copies = _snapshot(values)

    with kernel_calls() as calls, pytest.raises((TypeError, ValueError)) as exc_info:
        fastlstm.backward(tape, *values)
    _check_error(exc_info, corruption)
    assert calls == [], f"{corruption.why}: a kernel ran before the error ({calls})"
    _assert_unchanged(values, copies, "backward")
