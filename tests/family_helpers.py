"""Helpers for the tests of the cell family (LSTM and its variants, GRU, plain RNN) with
variable lengths and direction (SPEC.md sections 2, 3, 4, 7, 8).

- `VARIANTS`: every cell and option the public API offers, by name.
- `make_family_problem`: random inputs for one variant, time-major (T, B, ...), weights drawn as
  PyTorch initialises them, optional biases and initial states, random output gradients.
- `reference_family`: y, h_n, c_n and every gradient from fastlstm.reference.sequence_forward /
  sequence_backward in float64, whatever the problem's dtype (time-major).
- `api_args` / `api_forward` / `api_backward`: the same problem through fastlstm.forward,
  gru_forward or rnn_forward and fastlstm.backward, in any layout.
- `check_api_against_reference`: all of the above compared, plus inference == training, None
  gradients where they must be None, inputs unchanged and outputs not sharing their memory.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

import fastlstm
from fastlstm import reference

from conftest import assert_close, pytorch_uniform, to_layout, tol_for

#: the fields of fastlstm.Gradients, in order
FAMILY_GRAD_NAMES = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0", "w_hr", "peepholes")
#: how each gradient is laid out ("seq" (T, B, n), "state" (B, n), "param": as given)
FAMILY_GRAD_KIND = dict(x="seq", w_ih="param", w_hh="param", b_ih="param", b_hh="param",
                        h0="state", c0="state", w_hr="param", peepholes="param")
PARAM_NAMES = ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr", "peepholes")


@dataclass(frozen=True)
class Variant:
    """One cell with its options."""

    name: str
    kind: str                        # "lstm", "gru" or "rnn"
    peepholes: bool = False          # LSTM only
    proj: bool = False               # LSTM only: w_hr (P, H)
    linear_before_reset: bool = True  # GRU only
    nonlinearity: str = "tanh"       # RNN only

    @property
    def options(self):
        """The keyword options of reference.sequence_forward (and of the public function)."""
        if self.kind == "gru":
            return {"linear_before_reset": self.linear_before_reset}
        if self.kind == "rnn":
            return {"nonlinearity": self.nonlinearity}
        return {}

    @property
    def gate_blocks(self):
        return {"lstm": 4, "gru": 3, "rnn": 1}[self.kind]

    @property
    def is_lstm(self):
        return self.kind == "lstm"


VARIANTS = {v.name: v for v in (
    Variant("lstm", "lstm"),
    Variant("lstm_peep", "lstm", peepholes=True),
    Variant("lstm_proj", "lstm", proj=True),
    Variant("lstm_peep_proj", "lstm", peepholes=True, proj=True),
    Variant("gru", "gru", linear_before_reset=True),
    Variant("gru_reset_before", "gru", linear_before_reset=False),
    Variant("rnn_tanh", "rnn", nonlinearity="tanh"),
    Variant("rnn_relu", "rnn", nonlinearity="relu"),
)}


@dataclass
class FamilyProblem:
    """A problem for one variant, time-major; optional parts are None.

    params: w_ih (G, I), w_hh (G, H_out), b_ih, b_hh (G,), w_hr (P, H), peepholes (3, H), with
    G = gate_blocks * H; h0 (B, H_out), c0 (B, H) (LSTM); dy (T, B, H_out), dh_n (B, H_out),
    dc_n (B, H) (LSTM).
    """

    variant: Variant
    x: np.ndarray
    params: dict
    h0: Optional[np.ndarray]
    c0: Optional[np.ndarray]
    dy: Optional[np.ndarray]
    dh_n: Optional[np.ndarray]
    dc_n: Optional[np.ndarray]

    @property
    def dims(self):
        """(T, B, I, H, H_out)."""
        T, B, I = self.x.shape
        H = self.params["w_ih"].shape[0] // self.variant.gate_blocks
        return T, B, I, H, self.params["w_hh"].shape[1]

    @property
    def dtype(self):
        return self.x.dtype


def make_family_problem(variant, T, B, I, H, P=2, dtype=np.float64, seed=0, b_ih=True,
                        b_hh=True, h0=True, c0=True, dy=True, dh_n=True, dc_n=True):
    """A random problem: weights, biases, peepholes and w_hr U(-1/sqrt(H), 1/sqrt(H)) (PyTorch's
    init); x, h0, c0 and the output gradients standard normal. P is used with variant.proj only.
    The flags drop the optional parts (c0 and dc_n exist for the LSTM only)."""
    if isinstance(variant, str):
        variant = VARIANTS[variant]
    rng = np.random.default_rng([seed, T, B, I, H, P, len(variant.name)])
    dtype = np.dtype(dtype)
    G = variant.gate_blocks * H
    H_out = P if variant.proj else H

    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    def uniform(*shape):
        return pytorch_uniform(rng, H, shape, dtype)

    params = dict(w_ih=uniform(G, I), w_hh=uniform(G, H_out),
                  b_ih=uniform(G) if b_ih else None, b_hh=uniform(G) if b_hh else None,
                  w_hr=uniform(P, H) if variant.proj else None,
                  peepholes=uniform(3, H) if variant.peepholes else None)
    lstm = variant.is_lstm
    return FamilyProblem(
        variant=variant, x=normal(T, B, I), params=params,
        h0=normal(B, H_out) if h0 else None,
        c0=normal(B, H) if (c0 and lstm) else None,
        dy=normal(T, B, H_out) if dy else None,
        dh_n=normal(B, H_out) if dh_n else None,
        dc_n=normal(B, H) if (dc_n and lstm) else None,
    )


def _f64(a):
    return None if a is None else np.array(a, dtype=np.float64)


@dataclass
class Expected:
    """y (T, B, H_out), h_n (B, H_out), c_n (B, H) or None, grads {FAMILY_GRAD_NAMES: array or
    None}; float64, time-major."""

    y: np.ndarray
    h_n: np.ndarray
    c_n: Optional[np.ndarray]
    grads: dict


def reference_family(p: FamilyProblem, lengths=None, reverse=False):
    """Everything the public API computes for `p`, from the reference in float64."""
    v = p.variant
    T, B, I, H, H_out = p.dims
    params = {n: _f64(a) for n, a in p.params.items() if a is not None}
    h0 = np.zeros((B, H_out)) if p.h0 is None else _f64(p.h0)
    state0 = (h0, np.zeros((B, H)) if p.c0 is None else _f64(p.c0)) if v.is_lstm else (h0,)
    lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)
    y, state, tape = reference.sequence_forward(v.kind, params, _f64(p.x), state0, lengths,
                                                reverse, **v.options)
    d_state = (_f64(p.dh_n), _f64(p.dc_n)) if v.is_lstm else (_f64(p.dh_n),)
    g = reference.sequence_backward(tape, _f64(p.dy), d_state)
    grads = {n: g[n] for n in ("x", "w_ih", "w_hh", "h0", "w_hr", "peepholes")}
    grads["b_ih"] = g["b_ih"] if p.params["b_ih"] is not None else None
    grads["b_hh"] = g["b_hh"] if p.params["b_hh"] is not None else None
    grads["c0"] = g["c0"] if v.is_lstm else None
    return Expected(y=y, h_n=state[0], c_n=state[1] if v.is_lstm else None, grads=grads)


LAYOUTS = ("time_major", "batch_first", "unbatched")


def api_args(p: FamilyProblem, layout="time_major"):
    """(arrays, grad_args): the forward arrays {name: array or None} (x, w_ih, w_hh, b_ih, b_hh,
    h0, c0, w_hr, peepholes) and (dy, dh_n, dc_n) in the caller's layout (fresh copies where
    the layout differs from time-major)."""
    x, h0, c0, dy, dh_n, dc_n = p.x, p.h0, p.c0, p.dy, p.dh_n, p.dc_n
    if layout == "batch_first":
        x = np.ascontiguousarray(x.transpose(1, 0, 2))
        dy = None if dy is None else np.ascontiguousarray(dy.transpose(1, 0, 2))
    elif layout == "unbatched":
        assert x.shape[1] == 1, "unbatched layout needs B == 1"
        x = x[:, 0, :].copy()
        dy = None if dy is None else dy[:, 0, :].copy()
        h0, c0, dh_n, dc_n = (None if a is None else a[0].copy() for a in (h0, c0, dh_n, dc_n))
    else:
        assert layout == "time_major", layout
    arrays = dict(x=x, h0=h0, c0=c0, **p.params)
    return arrays, (dy, dh_n, dc_n)


def api_forward(variant, arrays, backend, layout="time_major", lengths=None, reverse=False,
                return_tape=True):
    """The public forward of `variant` on `arrays` (from api_args).
    Returns (y, h_n, c_n (None for GRU / RNN), tape (None without return_tape))."""
    a = arrays
    common = dict(lengths=lengths, reverse=reverse, batch_first=layout == "batch_first",
                  backend=backend, return_tape=return_tape)
    if variant.kind == "lstm":
        out = fastlstm.forward(a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["h0"],
                               a["c0"], w_hr=a["w_hr"], peepholes=a["peepholes"], **common)
        y, (h_n, c_n) = out[:2]
    else:
        fn = fastlstm.gru_forward if variant.kind == "gru" else fastlstm.rnn_forward
        out = fn(a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["h0"],
                 **variant.options, **common)
        (y, h_n), c_n = out[:2], None
    return y, h_n, c_n, (out[2] if return_tape else None)


def api_backward(variant, tape, grad_args):
    """fastlstm.backward -> {FAMILY_GRAD_NAMES: array or None}."""
    dy, dh_n, dc_n = grad_args
    if variant.is_lstm:
        g = fastlstm.backward(tape, dy, dh_n, dc_n)
    else:
        g = fastlstm.backward(tape, dy, dh_n)
    assert isinstance(g, fastlstm.Gradients)
    return {n: getattr(g, n) for n in FAMILY_GRAD_NAMES}


def lengths_as(lengths, how):
    """`lengths` (a tuple or None) as the caller hands it: "list", "tuple", "int32", "int64"."""
    if lengths is None:
        return None
    return {"list": list, "tuple": tuple,
            "int32": lambda v: np.array(v, dtype=np.int32),
            "int64": lambda v: np.array(v, dtype=np.int64)}[how](lengths)


def _inputs(arrays, grad_args, lengths):
    return [a for a in (*arrays.values(), *grad_args, lengths) if isinstance(a, np.ndarray)]


def _copy(a):
    return a.copy() if isinstance(a, np.ndarray) else a


def check_api_against_reference(p: FamilyProblem, backend, lengths=None, reverse=False,
                                layout="time_major", how="list", tol=None):
    """Run the public API on `p` (training forward + backward, then inference) and compare
    everything with reference_family in float64. Also: dtypes and None gradients as the
    contract says, inputs unchanged, outputs not sharing memory with any input."""
    v = p.variant
    tol = tol_for(p.dtype) if tol is None else tol
    ref = reference_family(p, lengths, reverse)
    arrays, grad_args = api_args(p, layout)
    lens = lengths_as(lengths, how)
    inputs = _inputs(arrays, grad_args, lens)
    copies = [a.copy() for a in inputs]
    saved_lens = _copy(lens)

    y, h_n, c_n, tape = api_forward(v, arrays, backend, layout, lens, reverse, True)
    assert tape.backend == backend
    grads = api_backward(v, tape, grad_args)
    y_inf, h_inf, c_inf, _ = api_forward(v, arrays, backend, layout, lens, reverse, False)

    outs = {"y": (y, ref.y, "seq"), "h_n": (h_n, ref.h_n, "state")}
    if v.is_lstm:
        outs["c_n"] = (c_n, ref.c_n, "state")
    else:
        assert c_n is None
    for name, (got, expected, kind) in outs.items():
        assert got.dtype == p.dtype, f"{name}: dtype {got.dtype} != {p.dtype}"
        assert_close(got, to_layout(expected, kind, layout), tol, name)
    for name in FAMILY_GRAD_NAMES:
        expected = to_layout(ref.grads[name], FAMILY_GRAD_KIND[name], layout)
        if expected is None:
            assert grads[name] is None, f"grad {name}: expected None, got an array"
            continue
        assert grads[name] is not None, f"grad {name}: got None"
        assert grads[name].dtype == p.dtype, f"grad {name}: dtype {grads[name].dtype}"
        assert_close(grads[name], expected, tol, f"grad {name}")

    # inference gives the training output
    assert_close(y_inf, y, tol, "inference y vs training y")
    assert_close(h_inf, h_n, tol, "inference h_n vs training h_n")
    if v.is_lstm:
        assert_close(c_inf, c_n, tol, "inference c_n vs training c_n")
    else:
        assert c_inf is None

    # inputs unchanged, outputs unaliased
    for k, (a, a0) in enumerate(zip(inputs, copies)):
        assert np.array_equal(a, a0), f"input {k} (shape {a.shape}) was modified"
    if not isinstance(lens, np.ndarray):
        assert lens == saved_lens, "lengths was modified"
    results = [("y", y), ("h_n", h_n), ("c_n", c_n), ("inference y", y_inf),
               ("inference h_n", h_inf), ("inference c_n", c_inf),
               *((f"grad {n}", g) for n, g in grads.items())]
    for name, out in results:
        if out is None:
            continue
        for k, a in enumerate(inputs):
            assert not np.shares_memory(out, a), f"{name} shares memory with input {k}"
    return ref, (y, h_n, c_n, grads, tape)
