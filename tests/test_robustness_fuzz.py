"""Property-based fuzzing of the public API (hypothesis), over the whole recurrent family:
valid calls match the NumPy backend, invalid calls fail cleanly, before any kernel runs.

Every test draws a problem: the cell (family_helpers.VARIANTS: LSTM with or without peepholes
and a projection w_hr (P < H), GRU with linear_before_reset True or False, RNN tanh or relu),
its shape (T 0..6, B 0..5, I 1..6, H 1..9, so empty sequences and batches included), dtype,
layout (time-major, batch_first, unbatched), the memory of each array (C order, Fortran order,
strided view, negative strides, read-only, nested list) and the options (biases, h0 / c0,
lengths (unsorted, 0 and T drawn often; list, tuple, int32 / int64 array, strided, reversed,
read-only, a scalar when unbatched), reverse, return_tape, dy / dh_n / dc_n); pytest
parametrises the backend. GRU and RNN have no c0 / c_n / dc_n.

- Valid draws: the public forward (fastlstm.forward, gru_forward, rnn_forward) and backward give
  what the NumPy backend gives on C-contiguous copies of the same arrays (max relative error
  1e-10 in float64, 1e-4 in float32; absolute below a magnitude of 0.1: see SCALE_FLOOR),
  with the shapes and dtypes the inputs imply (None for the gradients of absent inputs); the
  inputs are unchanged, no output shares memory with them, and the kernels run exactly as the
  call implies (recorded).
- Invalid draws: one argument of a valid call is corrupted (wrong shape or number of
  dimensions, a shape that disagrees with another argument, an int / complex / float16 / bool /
  object array, the other float dtype, not an array, a non-bool flag (batch_first,
  return_tape, reverse, linear_before_reset), an unknown backend, an unknown nonlinearity,
  lengths negative / > T / of a wrong shape / of floats or bools, a wrong w_hr or peepholes,
  a non-tape for backward, a wrong dy / dh_n / dc_n, any dc_n for a GRU / RNN tape). The call
  raises exactly TypeError (types, dtypes) or ValueError (shapes, values, names), the message
  starts with the argument's name (or with the argument it disagrees with) and shows what was
  given, no kernel runs, and the inputs are unchanged.

Examples per test: FUZZ_EXAMPLES below (the whole file runs in about 20 s); set
FASTLSTM_FUZZ_EXAMPLES=N for N examples per test, drawn at random rather than from the fixed
seed the default run uses (a long fuzzing run: see TESTING.md).
"""
import copy
import os
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

import fastlstm

from conftest import ALL_BACKENDS, assert_close, kernel_calls, require_backend, tol_for
from family_helpers import (FAMILY_GRAD_NAMES, VARIANTS, api_args, api_backward, api_forward,
                            lengths_as, make_family_problem)

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


#: the forward arrays, in the order the public functions check them (api_args' keys)
ARG_NAMES = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0", "w_hr", "peepholes")
GRAD_IN_NAMES = ("dy", "dh_n", "dc_n")
#: every cell and option: lstm, lstm_peep, lstm_proj, lstm_peep_proj, gru, gru_reset_before,
#: rnn_tanh, rnn_relu
VARIANT_NAMES = tuple(VARIANTS)
LAYOUTS = ("time_major", "batch_first", "unbatched")
#: how an array is handed to fastlstm (see _in_memory)
MEMORY = ("C", "F", "strided", "reversed", "readonly", "list")
# and "transposed" for a batch_first x: a (B, T, I) view of a time-major array
#: how lengths is handed to fastlstm (see _lengths_in); and "scalar" when unbatched
LENGTHS_FORMS = ("list", "tuple", "int32", "int64", "strided", "reversed", "readonly")


# ---------------------------------------------------------------------------------- drawing


@dataclass
class Case:
    """One drawn call: the problem (time-major), its layout, options and the memory of each
    array."""

    p: object                       # family_helpers.FamilyProblem, optional parts dropped
    layout: str
    return_tape: bool
    lengths: Optional[tuple] = None  # (B,) ints in [0, T] ((1,) unbatched), or None
    lengths_form: str = "int64"     # one of LENGTHS_FORMS or "scalar"
    reverse: bool = False
    memory: dict = field(default_factory=dict)   # argument name -> one of MEMORY
    seed: int = 0

    @property
    def variant(self):
        return self.p.variant

    @property
    def dtype(self):
        return self.p.dtype

    def canonical(self):
        """(arrays {ARG_NAMES: array or None}, options {lengths, reverse}, (dy, dh_n, dc_n)):
        fresh C-contiguous arrays, lengths an int64 array (or None)."""
        arrays, gargs = api_args(self.p, self.layout)
        arrays = {n: _copy(arrays[n]) for n in ARG_NAMES}
        lengths = None if self.lengths is None else np.array(self.lengths, dtype=np.int64)
        return arrays, dict(lengths=lengths, reverse=self.reverse), tuple(map(_copy, gargs))

    def arguments(self):
        """The same arrays, each in the memory the case drew for it, and lengths in its form."""
        arrays, options, gargs = self.canonical()
        rng = np.random.default_rng(self.seed)
        arrays = {n: _in_memory(a, self.memory.get(n, "C"), rng) for n, a in arrays.items()}
        gargs = tuple(_in_memory(a, self.memory.get(n, "C"), rng)
                      for n, a in zip(GRAD_IN_NAMES, gargs))
        options["lengths"] = _lengths_in(self.lengths, self.lengths_form, rng)
        return arrays, options, gargs


def _copy(arr):
    return None if arr is None else arr.copy()


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


def _lengths_in(lengths, form, rng):
    """lengths (a tuple or None) as the caller hands it (see LENGTHS_FORMS)."""
    if lengths is None:
        return None
    if form == "scalar":  # unbatched only: a plain int
        (n,) = lengths
        return n
    if form in ("strided", "reversed", "readonly"):
        return _in_memory(np.array(lengths, dtype=np.int64), form, rng)
    return lengths_as(lengths, form)


@st.composite
def cases(draw, require_tape=False, variants=VARIANT_NAMES):
    # the cell, then its options (more even than one draw among the variants)
    kind = draw(st.sampled_from([k for k in ("lstm", "gru", "rnn")
                                 if any(VARIANTS[n].kind == k for n in variants)]))
    variant = draw(st.sampled_from([VARIANTS[n] for n in variants if VARIANTS[n].kind == kind]))
    dtype = np.dtype(draw(st.sampled_from(["float32", "float64"])))
    layout = draw(st.sampled_from(LAYOUTS))
    T = draw(st.integers(0, 6))
    B = 1 if layout == "unbatched" else draw(st.integers(0, 5))
    I = draw(st.integers(1, 6))
    H = draw(st.integers(2 if variant.proj else 1, 9))
    P = draw(st.integers(1, H - 1)) if variant.proj else 1   # (P is used with proj only)
    seed = draw(st.integers(0, 2**16))
    return_tape = True if require_tape else draw(st.booleans())
    optional = ["b_ih", "b_hh", "h0", "dy", "dh_n"] + (["c0", "dc_n"] if variant.is_lstm else [])
    dropped = [name for name in optional if not draw(st.booleans())]
    p = make_family_problem(variant, T, B, I, H, P, dtype, seed,
                            **{name: False for name in dropped})
    lengths, lengths_form = None, "int64"
    if draw(st.booleans()):
        n = 1 if layout == "unbatched" else B
        # any order; 0 and T (the edges) drawn more often than the values between them
        value = st.sampled_from([0, T] * 2 + list(range(T + 1)))
        lengths = tuple(draw(st.lists(value, min_size=n, max_size=n)))
        forms = LENGTHS_FORMS + (("scalar",) if layout == "unbatched" else ())
        lengths_form = draw(st.sampled_from(forms))
    reverse = draw(st.booleans())
    # nested lists are float64 arrays: only for float64 calls
    memory_kinds = MEMORY if dtype == np.float64 else MEMORY[:-1]
    present = dict(p.params, x=p.x, h0=p.h0, c0=p.c0, dy=p.dy, dh_n=p.dh_n, dc_n=p.dc_n)
    memory = {name: draw(st.sampled_from(memory_kinds)) for name in ARG_NAMES + GRAD_IN_NAMES
              if present[name] is not None}
    if layout == "batch_first" and draw(st.booleans()):
        memory["x"] = "transposed"
    case = Case(p=p, layout=layout, return_tape=return_tape, lengths=lengths,
                lengths_form=lengths_form, reverse=reverse, memory=memory, seed=seed)
    note(f"{variant.name} T={T} B={B} I={I} H={H}{f' P={P}' if variant.proj else ''} {dtype} "
         f"{layout} lengths={lengths} ({lengths_form}) reverse={reverse} "
         f"return_tape={return_tape} dropped={dropped} memory={memory}")
    return case


# ---------------------------------------------------------------------------------- helpers


def _snapshot(values):
    """Copies of the arguments: arrays and (nested) lists copied, anything else kept as it is."""
    return [a.copy() if isinstance(a, np.ndarray)
            else copy.deepcopy(a) if isinstance(a, (list, tuple)) else a for a in values]


def _assert_unchanged(values, copies, what):
    for k, (a, a0) in enumerate(zip(values, copies)):
        if isinstance(a, np.ndarray):
            nan_ok = a.dtype.kind in "fc"
            assert np.array_equal(a, a0, equal_nan=nan_ok), f"{what} argument {k} was modified"
        else:
            assert a == a0, f"{what} argument {k} was modified"


#: below this magnitude a compared array's error is measured absolutely (as if its largest
#: value were SCALE_FLOOR). A result that cancels to a tiny value carries the rounding error of
#: the O(1) terms it sums: e.g. in float32 dh0 = 1.8e-5 of an LSTM with P = 1 and one row of
#: length T (the others 0), where the backends differ by 4e-9 (2e-4 relative) and each is as
#: far from the float64 reference.
SCALE_FLOOR = 0.1


def _assert_matches(got, want, dtype, name):
    """assert_close with the file's tolerance (tol_for), absolute below SCALE_FLOOR."""
    tol = tol_for(dtype)
    scale = float(np.max(np.abs(want))) if np.size(want) else 0.0
    if 0 < scale < SCALE_FLOOR:
        tol *= SCALE_FLOOR / scale
    assert_close(got, want, tol, name)


def _forward(variant, arrays, **kwargs):
    """The public forward of `variant` on `arrays` (ARG_NAMES: array, or any corrupted value),
    every keyword passed as given (a GRU / RNN takes no c0, w_hr, peepholes)."""
    a = arrays
    if variant.is_lstm:
        return fastlstm.forward(a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["h0"],
                                a["c0"], w_hr=a["w_hr"], peepholes=a["peepholes"], **kwargs)
    fn = fastlstm.gru_forward if variant.kind == "gru" else fastlstm.rnn_forward
    return fn(a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["h0"], **kwargs)


def _run(case, backend, arrays, options, gargs):
    """forward (and backward with the tape): y, h_n, c_n (None for GRU / RNN) and the
    gradients {FAMILY_GRAD_NAMES: array or None} (None without the tape)."""
    y, h_n, c_n, tape = api_forward(case.variant, arrays, backend, case.layout,
                                    options["lengths"], options["reverse"], case.return_tape)
    grads = None
    if case.return_tape:
        assert tape.backend == backend
        grads = api_backward(case.variant, tape, gargs)
    return y, h_n, c_n, grads


# ---------------------------------------------------------------------------------- valid


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@fuzz_settings("valid")
@given(case=cases())
# float32 cancellation (see SCALE_FLOOR): failed by 2e-4 relative before the floor
@example(case=Case(p=make_family_problem("lstm_peep_proj", 5, 5, 6, 8, 1, np.float32, seed=6,
                                         dh_n=False, dc_n=False),
                   layout="time_major", return_tape=True, lengths=(5, 0, 0, 0, 0),
                   lengths_form="list"))
def test_valid_calls_match_reference(backend, case):
    """Any valid call gives the NumPy backend's numbers on C-contiguous copies of its arrays."""
    require_backend(backend)
    v = case.variant
    T, B, I, H, H_out = case.p.dims
    dtype = case.dtype
    arrays, options, gargs = case.arguments()
    inputs = list(arrays.values()) + [options["lengths"]]
    f_copies, g_copies = _snapshot(inputs), _snapshot(gargs)

    with kernel_calls() as calls:
        y, h_n, c_n, grads = _run(case, backend, arrays, options, gargs)
    ref = _run(case, "numpy", *case.canonical())
    kernels = ["forward", "backward"] if case.return_tape else ["forward"]
    assert calls == (kernels if T and B else []), f"kernel calls {calls}"

    # shapes and dtypes as the inputs imply
    unbatched = case.layout == "unbatched"
    y_shape = {"time_major": (T, B, H_out), "batch_first": (B, T, H_out),
               "unbatched": (T, H_out)}
    state_shape = (H_out,) if unbatched else (B, H_out)
    cell_shape = (H,) if unbatched else (B, H)
    assert y.shape == y_shape[case.layout] and y.dtype == dtype
    assert h_n.shape == state_shape and h_n.dtype == dtype
    outputs = [("y", y, ref[0]), ("h_n", h_n, ref[1])]
    if v.is_lstm:
        assert c_n.shape == cell_shape and c_n.dtype == dtype
        outputs.append(("c_n", c_n, ref[2]))
    else:
        assert c_n is None and ref[2] is None, "a GRU / RNN has no c_n"
    for name, got, want in outputs:
        _assert_matches(got, want, dtype, name)
    if case.return_tape:
        expected_shapes = dict(x=np.shape(arrays["x"]), h0=state_shape, c0=cell_shape,
                               **{n: np.shape(a) for n, a in case.p.params.items()})
        present = dict(case.p.params, c0=True if v.is_lstm else None, x=True, h0=True)
        for name in FAMILY_GRAD_NAMES:
            got, want = grads[name], ref[3][name]
            if present[name] is None:  # an absent bias, w_hr, peepholes; c0 of a GRU / RNN
                assert got is None and want is None, f"grad {name}: expected None"
                continue
            assert got.shape == expected_shapes[name] and got.dtype == dtype, name
            _assert_matches(got, want, dtype, f"grad {name}")

    # the inputs are unchanged and no output shares memory with them
    _assert_unchanged(inputs, f_copies, "forward")
    _assert_unchanged(gargs, g_copies, "backward")
    results = [a for a in (y, h_n, c_n, *(grads.values() if grads else ())) if a is not None]
    for out in results:
        for arr in inputs + list(gargs):
            if isinstance(arr, np.ndarray):
                assert not np.shares_memory(out, arr), "an output shares memory with an input"


# ---------------------------------------------------------------------------------- invalid

BAD_DTYPES = ("int8", "int32", "int64", "uint16", "bool", "float16", "complex64",
              "complex128", "object")
#: what an array corruption does to its target
ARRAY_KINDS = ("dtype", "mixed_float", "shape", "ndim", "not_array")
#: what forward_corruptions corrupts: an array kind (any present array), w_hr / peepholes
#: (an array kind on that array), or another argument
FORWARD_KINDS = ARRAY_KINDS + ("flag", "backend", "w_hr", "peepholes", "nonlinearity") + (
    "lengths",) * 3   # (lengths has the most ways to be wrong: drawn three times as often)
#: the variants a kind needs (the others: any variant)
KIND_VARIANTS = {
    "w_hr": tuple(n for n, v in VARIANTS.items() if v.proj),
    "peepholes": tuple(n for n, v in VARIANTS.items() if v.peepholes),
    "nonlinearity": tuple(n for n, v in VARIANTS.items() if v.kind == "rnn"),
}


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


def _lengths_corruption(draw, case):
    """lengths negative, above T, of a wrong shape, of floats or of bools."""
    T, B = case.p.dims[:2]
    n = 1 if case.layout == "unbatched" else B
    valid = list(case.lengths) if case.lengths is not None else [T] * n
    # (an empty float list is an empty lengths: fine for B == 0)
    kind = draw(st.sampled_from(["negative", "above_T", "shape", "float", "bool"] if n
                                else ["shape"]))
    if kind in ("negative", "above_T"):
        k = draw(st.integers(0, n - 1))
        bad = draw(st.integers(-2**31, -1) if kind == "negative" else st.integers(T + 1, 2**31 - 1))
        valid[k] = bad
        value = lengths_as(tuple(valid), draw(st.sampled_from(["list", "tuple", "int32",
                                                               "int64"])))
        return Corruption("lengths", value, ValueError, ("lengths",), (f"[0, {T}]", str(bad)),
                          f"lengths={value!r}")
    if kind == "float":
        value = np.array(valid, dtype=draw(st.sampled_from(["float32", "float64"])))
        if draw(st.booleans()):
            value = value.tolist()   # a list of floats: float64
        return Corruption("lengths", value, TypeError, ("lengths",),
                          (str(np.asarray(value).dtype),), f"lengths={value!r}")
    if kind == "bool":
        value = np.array([bool(v % 2) for v in valid])
        if draw(st.booleans()):
            value = value.tolist()
        return Corruption("lengths", value, TypeError, ("lengths",), ("bool",),
                          f"lengths={value!r}")
    # kind == "shape": another number of entries, two axes, or a scalar (fine unbatched only)
    how = draw(st.sampled_from(["count", "row", "column"] + ([] if n == 1 and case.layout ==
                                                              "unbatched" else ["scalar"])))
    entries = st.integers(0, T)
    if how == "count":
        m = draw(st.integers(0, n + 3).filter(lambda m: m != n))
        value = draw(st.lists(entries, min_size=m, max_size=m))
        if draw(st.booleans()):
            value = np.array(value, dtype=np.int64)
    elif how == "scalar":
        value = draw(entries)
    else:
        arr = np.array(valid, dtype=np.int64)
        value = arr[None, :] if how == "row" else arr[:, None]
    return Corruption("lengths", value, ValueError, ("lengths",),
                      (_shape_text(np.shape(value)), _shape_text((n,))), f"lengths={value!r}")


@st.composite
def forward_corruptions(draw, case, kind):
    arrays, options, _ = case.canonical()
    v = case.variant
    dtype = case.dtype
    if kind == "flag":
        flags = ["batch_first", "return_tape", "reverse"]
        if v.kind == "gru":
            flags.append("linear_before_reset")
        flag = draw(st.sampled_from(flags))
        value = draw(st.sampled_from([0, 1, 1.0, "yes", "", None, np.int64(1), [True]]))
        return Corruption(flag, value, TypeError, (flag,), (), f"{flag}={value!r}")
    if kind == "backend":
        valid = set(fastlstm.available_backends()) | {"auto"}
        value = draw(st.one_of(
            st.text(max_size=8).filter(lambda s: s not in valid),
            st.sampled_from(["Cython", "NUMPY", " numpy", "numpy ", "torch", b"numpy", 0, None,
                             1.5, ("numpy",)])))
        return Corruption("backend", value, ValueError, ("backend",), (), f"backend={value!r}")
    if kind == "nonlinearity":
        value = draw(st.one_of(
            st.text(max_size=8).filter(lambda s: s not in ("tanh", "relu")),
            st.sampled_from(["sigmoid", "TANH", "Relu", " tanh", "relu ", "", b"tanh", None, 0,
                             ["tanh"], ("relu",)])))
        return Corruption("nonlinearity", value, ValueError, ("nonlinearity",), (repr(value),),
                          f"nonlinearity={value!r}")
    if kind == "lengths":
        return _lengths_corruption(draw, case)

    if kind in ("w_hr", "peepholes"):
        target, kind = kind, draw(st.sampled_from(ARRAY_KINDS))
    else:
        target = draw(st.sampled_from([n for n in ARG_NAMES if arrays[n] is not None]))
    arr = arrays[target]
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
        # (None is a valid w_hr, only its w_hh would not fit: not drawn here)
        value = _not_an_array(draw, target in ("x", "w_ih", "w_hh"))
        return Corruption(target, value, TypeError, (target,), (), f"{target}={value!r}")
    if kind == "ndim":
        value = _wrong_ndim(draw, arr)
        return Corruption(target, value, ValueError, (target,), (_shape_text(value.shape),),
                          f"{target} with shape {value.shape}")

    # kind == "shape": one axis of one array disagrees with the others
    if target == "x":
        # x's T can be anything; its I must match w_ih, its B must match h0 / c0 / lengths
        axes = {"time_major": {"B": 1, "I": 2}, "batch_first": {"B": 0, "I": 2},
                "unbatched": {"I": 1}}[case.layout]
        rows = [n for n in ("h0", "c0") if arrays[n] is not None]   # in the order checked
        if options["lengths"] is not None:
            rows.append("lengths")
        axis_name = draw(st.sampled_from(["I", "B"] if rows and "B" in axes else ["I"]))
        axis = axes[axis_name]
        size = draw(st.integers(0, arr.shape[axis] + 3).filter(lambda n: n != arr.shape[axis]))
        shape = arr.shape[:axis] + (size,) + arr.shape[axis + 1:]
        value = np.ones(shape, dtype)
        if axis_name == "I":
            names = ("x",) if size == 0 else ("w_ih",)
            shows = (_shape_text(shape),) if size == 0 else (_shape_text(arrays["w_ih"].shape),)
        else:
            fixed = options["lengths"] if rows[0] == "lengths" else arrays[rows[0]]
            names, shows = (rows[0],), (_shape_text(fixed.shape),)
        return Corruption("x", value, ValueError, names, shows, f"x with shape {shape}")
    shape, _ = _wrong_shape(draw, arr.shape)
    value = np.ones(shape, dtype)
    why = f"{target} shape {shape}"
    if target == "w_hr" and min(shape) > 0:
        # a w_hr of another (P, H) is fine in itself: the w_hh it was given no longer fits
        return Corruption(target, value, ValueError, ("w_hh",),
                          ("w_hr.shape", _shape_text(arrays["w_hh"].shape)), why)
    shows = (_shape_text(shape),)
    if target not in ("w_hh", "w_hr"):
        shows += (_shape_text(arr.shape),)  # and the expected shape
    return Corruption(target, value, ValueError, (target,), shows, why)


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
    kind = data.draw(st.sampled_from(FORWARD_KINDS))
    case = data.draw(cases(variants=KIND_VARIANTS.get(kind, VARIANT_NAMES)))
    corruption = data.draw(forward_corruptions(case, kind))
    note(corruption.why)
    arrays, options, _ = case.canonical()
    kwargs = dict(options, **case.variant.options, batch_first=case.layout == "batch_first",
                  backend=backend, return_tape=case.return_tape)
    if corruption.target in arrays:
        arrays[corruption.target] = corruption.value
    else:
        kwargs[corruption.target] = corruption.value
    values = list(arrays.values()) + [kwargs["lengths"]]
    copies = _snapshot(values)

    with kernel_calls() as calls, pytest.raises((TypeError, ValueError)) as exc_info:
        _forward(case.variant, arrays, **kwargs)
    _check_error(exc_info, corruption)
    assert calls == [], f"{corruption.why}: a kernel ran before the error ({calls})"
    _assert_unchanged(values, copies, "forward")


@st.composite
def backward_corruptions(draw, case, y, h_n):
    _, _, gargs = case.canonical()
    grads = dict(zip(GRAD_IN_NAMES, gargs))
    T, B, I, H, H_out = case.p.dims
    cell_shape = (H,) if case.layout == "unbatched" else (B, H)
    expected = {"dy": y.shape, "dh_n": h_n.shape, "dc_n": cell_shape}
    kind = draw(st.sampled_from(["tape", "dtype", "mixed_float", "shape", "ndim", "not_array"]))
    if kind == "tape":
        value = draw(st.sampled_from(["forward_result", "tape_arrays", "y", None, {"x": 1}]))
        return Corruption("tape", value, TypeError, ("tape",), (), f"tape={value!r}")
    target = draw(st.sampled_from(GRAD_IN_NAMES))
    arr = grads[target]
    if arr is None:
        arr = np.zeros(expected[target], case.dtype)
    corruption = _grad_corruption(draw, case, kind, target, arr, expected[target])
    if target == "dc_n" and not case.variant.is_lstm:
        # a GRU / RNN has no cell state: any dc_n is wrong, a fitting (B, H) array included
        if draw(st.booleans()):
            corruption.value, corruption.why = arr, f"dc_n of shape {arr.shape}"
        corruption.error, corruption.shows = ValueError, ("no cell state",)
        corruption.why += f" for a {case.variant.kind}"
    return corruption


def _grad_corruption(draw, case, kind, target, arr, expected):
    """dy, dh_n or dc_n (arr: a valid one) corrupted by `kind` (an array kind)."""
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
                          (_shape_text(value.shape), _shape_text(expected)),
                          f"{target} with shape {value.shape}")
    if target == "dy" and case.layout != "unbatched" and draw(st.booleans()):
        # dy in the other layout (time-major for batch_first, batch-first for time-major)
        shape = arr.shape[1::-1] + arr.shape[2:]
        if shape == arr.shape:
            shape = (arr.shape[0] + 1,) + arr.shape[1:]
    else:
        shape, _ = _wrong_shape(draw, arr.shape)
    return Corruption(target, np.ones(shape, case.dtype), ValueError, (target,),
                      (_shape_text(shape), _shape_text(expected)),
                      f"{target} shape {shape}")


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@fuzz_settings("invalid_backward")
@given(data=st.data())
def test_invalid_backward_raises_before_any_kernel(backend, data):
    """One corrupted backward argument (tape, dy, dh_n, dc_n): the right error, no kernel call."""
    require_backend(backend)
    case = data.draw(cases(require_tape=True))
    arrays, options, gargs = case.canonical()
    y, h_n, c_n, tape = api_forward(case.variant, arrays, backend, case.layout,
                                    options["lengths"], options["reverse"], True)
    corruption = data.draw(backward_corruptions(case, y, h_n))
    note(corruption.why)
    grads = dict(zip(GRAD_IN_NAMES, gargs))
    if corruption.target == "tape":
        state = (h_n, c_n) if case.variant.is_lstm else h_n
        stand_ins = {"forward_result": (y, state), "y": y,
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
