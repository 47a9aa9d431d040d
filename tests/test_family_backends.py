"""Every backend and dtype against the float64 reference through the public API, for the whole
family: fastlstm.forward (LSTM, peepholes, projection), gru_forward (both variants),
rnn_forward (tanh, relu), with return_tape=True then fastlstm.backward.

Each case compares y, h_n, c_n and every gradient (conftest.TOL), checks that inference
(return_tape=False) gives the training output, that gradients of inputs not given are None,
that the inputs are unchanged and that no output shares memory with an input. The cases are a
curated sample (reverse, lengths unsorted with 0 and T, all T, projection, peepholes,
batch_first, unbatched, biases and initial states present or not, a larger shape, T=1 / B=1),
not a cartesian product. Plus multi-threaded calls with lengths (fastlstm.threads(2)).
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest

import fastlstm
from fastlstm import _api

from conftest import assert_close, tol_for
from family_helpers import (FAMILY_GRAD_NAMES, VARIANTS, api_args, api_backward, api_forward,
                            check_api_against_reference, make_family_problem, reference_family)


@dataclass(frozen=True)
class Case:
    variant: str
    T: int
    B: int
    I: int
    H: int
    P: int = 3
    lengths: Optional[tuple] = None
    reverse: bool = False
    layout: str = "time_major"
    b_ih: bool = True
    b_hh: bool = True
    states: bool = True          # h0 (and c0) given
    grads_in: str = "all"        # "all", "no_dy" (dh_n, dc_n only), "dy_only"
    how: str = "list"            # how lengths is handed over (family_helpers.lengths_as)
    seed: int = 0

    @property
    def id(self):
        parts = [self.variant, f"T{self.T}B{self.B}I{self.I}H{self.H}"]
        if self.variant.endswith("proj"):
            parts.append(f"P{self.P}")
        if self.lengths is not None:
            parts.append("len" + "-".join(map(str, self.lengths)) + f"({self.how})")
        parts += [n for n, on in (("rev", self.reverse), ("noih", not self.b_ih),
                                  ("nohh", not self.b_hh), ("nostate", not self.states)) if on]
        if self.layout != "time_major":
            parts.append(self.layout)
        if self.grads_in != "all":
            parts.append(self.grads_in)
        return "-".join(parts)

    def problem(self, dtype):
        return make_family_problem(
            self.variant, self.T, self.B, self.I, self.H, self.P, dtype, self.seed,
            b_ih=self.b_ih, b_hh=self.b_hh, h0=self.states, c0=self.states,
            dy=self.grads_in != "no_dy", dh_n=self.grads_in != "dy_only",
            dc_n=self.grads_in != "dy_only")


L5 = (3, 0, 5, 2)         # B=4, T=5: unsorted, with 0 and T
L6 = (4, 6, 0, 1, 6)      # B=5, T=6
CASES = [
    # LSTM
    Case("lstm", 5, 4, 3, 4),
    Case("lstm", 5, 4, 3, 4, reverse=True),
    Case("lstm", 5, 4, 3, 4, lengths=L5),
    Case("lstm", 5, 4, 3, 4, lengths=L5, reverse=True, how="int32"),
    Case("lstm", 5, 3, 3, 4, lengths=(5, 5, 5), reverse=True, how="int64"),
    Case("lstm", 5, 3, 3, 4, lengths=(5, 5, 5)),
    Case("lstm", 6, 5, 2, 3, lengths=L6, reverse=True, layout="batch_first", how="tuple"),
    Case("lstm", 6, 1, 3, 4, lengths=(4,), reverse=True, layout="unbatched", how="int64"),
    Case("lstm", 6, 1, 3, 4, layout="unbatched"),
    Case("lstm", 6, 1, 3, 4, lengths=(0,), layout="unbatched"),
    Case("lstm", 5, 4, 3, 4, lengths=L5, b_ih=False, b_hh=False, states=False),
    Case("lstm", 5, 4, 3, 4, lengths=L5, reverse=True, b_hh=False),
    Case("lstm", 5, 4, 3, 4, lengths=L5, b_ih=False, grads_in="no_dy"),
    Case("lstm", 5, 4, 3, 4, lengths=L5, reverse=True, grads_in="dy_only"),
    Case("lstm_peep", 5, 4, 3, 4, lengths=L5),
    Case("lstm_peep", 6, 5, 2, 3, reverse=True, layout="batch_first"),
    Case("lstm_peep", 6, 5, 2, 3, lengths=L6, reverse=True, states=False, how="int32"),
    Case("lstm_proj", 5, 4, 3, 5, P=3, lengths=L5),
    Case("lstm_proj", 5, 4, 3, 5, P=2, reverse=True, b_ih=False),
    Case("lstm_proj", 6, 1, 3, 5, P=2, lengths=(3,), reverse=True, layout="unbatched"),
    Case("lstm_peep_proj", 6, 5, 2, 4, P=3, lengths=L6, reverse=True, layout="batch_first",
         states=False),
    Case("lstm_peep_proj", 5, 4, 3, 4, P=5, lengths=L5, b_hh=False, grads_in="no_dy"),
    # GRU, linear before reset (torch)
    Case("gru", 5, 4, 3, 4),
    Case("gru", 5, 4, 3, 4, lengths=L5, reverse=True),
    Case("gru", 5, 4, 3, 4, lengths=L5, b_ih=False, how="int32"),   # b_hh only: b_hn inside r*()
    Case("gru", 5, 4, 3, 4, lengths=L5, reverse=True, b_hh=False),
    Case("gru", 6, 5, 2, 3, lengths=(6, 6, 6, 6, 6), layout="batch_first", states=False),
    Case("gru", 6, 1, 3, 4, lengths=(0,), reverse=True, layout="unbatched", how="int64"),
    Case("gru", 6, 1, 3, 4, reverse=True, layout="unbatched", b_ih=False, b_hh=False),
    # GRU, reset before the product (Keras reset_after=False, ONNX default)
    Case("gru_reset_before", 5, 4, 3, 4),
    Case("gru_reset_before", 5, 4, 3, 4, lengths=L5, reverse=True, b_ih=False),
    Case("gru_reset_before", 6, 5, 2, 3, lengths=L6, layout="batch_first", b_ih=False,
         b_hh=False),
    Case("gru_reset_before", 6, 1, 3, 4, lengths=(6,), reverse=True, layout="unbatched"),
    Case("gru_reset_before", 5, 4, 3, 4, lengths=L5, b_hh=False, grads_in="no_dy"),
    # plain RNN
    Case("rnn_tanh", 5, 4, 3, 4, lengths=L5),
    Case("rnn_tanh", 6, 5, 2, 3, lengths=L6, reverse=True, layout="batch_first", b_hh=False),
    Case("rnn_tanh", 6, 1, 3, 4, reverse=True, layout="unbatched", states=False),
    Case("rnn_relu", 5, 4, 3, 4, reverse=True),
    Case("rnn_relu", 5, 4, 3, 4, lengths=L5, reverse=True, b_ih=False, how="int32"),
    Case("rnn_relu", 6, 1, 3, 4, lengths=(2,), layout="unbatched", b_ih=False, b_hh=False),
    # larger: B >= 8, H around 70, T around 20, lengths
    Case("lstm", 20, 9, 16, 70, lengths=(20, 7, 0, 13, 20, 1, 19, 5, 11), reverse=True),
    Case("lstm_peep_proj", 20, 8, 12, 70, P=33, lengths=(3, 20, 0, 18, 9, 20, 14, 1)),
    Case("gru", 20, 10, 12, 70, lengths=(20, 3, 17, 0, 20, 8, 1, 12, 19, 6), reverse=True,
         layout="batch_first", how="int32"),
    Case("gru_reset_before", 18, 8, 10, 66, lengths=(18, 0, 9, 2, 18, 11, 5, 17)),
    Case("rnn_tanh", 20, 8, 12, 70, lengths=(4, 20, 13, 0, 20, 7, 1, 16), reverse=True),
    # T = 1, B = 1
    Case("lstm", 1, 1, 2, 3),
    Case("lstm_peep_proj", 1, 1, 2, 3, P=2, lengths=(1,), reverse=True),
    Case("gru", 1, 1, 2, 3, lengths=(0,)),
    Case("gru_reset_before", 1, 1, 2, 3, reverse=True, layout="batch_first"),
    Case("rnn_relu", 1, 1, 2, 3, lengths=(1,), layout="unbatched"),
    Case("rnn_tanh", 1, 3, 2, 3, lengths=(1, 0, 1), reverse=True),
    # T = 0
    Case("lstm_peep_proj", 0, 2, 3, 4, P=2, lengths=(0, 0), reverse=True),
    Case("gru_reset_before", 0, 3, 3, 4),
    # T > the rows inference projects at once (fastlstm._api._INFERENCE_CHUNK_ROWS / B)
    Case("lstm_peep_proj", 70, 8, 4, 12, P=5, lengths=(70, 0, 33, 64, 1, 70, 31, 32),
         reverse=True),
    Case("gru_reset_before", 70, 8, 4, 12, lengths=(32, 70, 0, 65, 70, 2, 33, 31)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_family_matches_reference(case, backend, dtype):
    p = case.problem(dtype)
    check_api_against_reference(p, backend, case.lengths, case.reverse, case.layout, case.how)


@pytest.mark.parametrize("name", ["lstm_peep_proj", "gru", "gru_reset_before", "rnn_relu"])
def test_tape_is_private_and_reusable(name, backend, dtype):
    """backward twice on one tape (with lengths and reverse) gives identical gradients, also
    after the caller overwrote its inputs, the forward's outputs and the first gradients."""
    lengths = [3, 0, 5, 2]
    p = make_family_problem(name, 5, 4, 3, 4, 3, dtype, seed=4)
    arrays, grad_args = api_args(p)
    y, h_n, c_n, tape = api_forward(p.variant, arrays, backend, lengths=lengths, reverse=True)
    first = api_backward(p.variant, tape, grad_args)
    saved = {n: None if g is None else g.copy() for n, g in first.items()}
    for a in (*arrays.values(), y, h_n, c_n, *first.values()):
        if a is not None:
            a[...] = 7
    second = api_backward(p.variant, tape, grad_args)
    for n, g in saved.items():
        if g is None:
            assert second[n] is None
        else:
            np.testing.assert_array_equal(second[n], g, err_msg=f"grad {n}")


THREAD_CASES = [
    ("lstm", 30, 16, 32, 64, False),
    ("lstm", 30, 16, 32, 64, True),
    ("lstm_peep_proj", 30, 15, 32, 64, True),
    ("gru", 30, 13, 32, 64, True),
    ("gru_reset_before", 30, 16, 32, 64, False),
    ("rnn_tanh", 40, 16, 64, 64, True),
]


@pytest.mark.parametrize("name, T, B, I, H, reverse", THREAD_CASES,
                         ids=[f"{c[0]}-B{c[2]}-{'rev' if c[5] else 'fwd'}" for c in THREAD_CASES])
def test_threads_with_lengths(name, T, B, I, H, reverse, backend):
    """Two threads on a problem large enough to use them, with unsorted lengths (0 and T among
    them): the kernels' per-group arrangement of rows gives the reference's numbers."""
    dtype = np.dtype(np.float32)
    p = make_family_problem(name, T, B, I, H, 24, dtype, seed=5)
    rng = np.random.default_rng(6)
    lengths = rng.integers(0, T + 1, size=B)
    lengths[[1, B - 2]] = 0, T
    _, _, _, _, H_out = p.dims
    G = p.variant.gate_blocks * H
    with fastlstm.threads(2):
        assert _api._kernel_threads(T, B, I, G, H_out) == 2, "problem too small for threads"
        check_api_against_reference(p, backend, tuple(int(n) for n in lengths), reverse,
                                    how="int64")


def test_reference_helper_sees_wrong_results():
    """Guard: the comparison fails when the API's output is off (here: one bias dropped)."""
    p = make_family_problem("gru", 5, 4, 3, 4, dtype=np.float64)
    ref = reference_family(p, [3, 0, 5, 2], True)
    q = make_family_problem("gru", 5, 4, 3, 4, dtype=np.float64)
    q.params["b_hh"][:] = 0
    arrays, _ = api_args(q)
    y, *_ = api_forward(q.variant, arrays, "numpy", lengths=[3, 0, 5, 2], reverse=True)
    with pytest.raises(AssertionError):
        assert_close(y, ref.y, tol_for(np.float64), "y")


def _backward(variant, tape, grad_args, **kwargs):
    dy, dh_n, dc_n = grad_args
    g = (fastlstm.backward(tape, dy, dh_n, dc_n, **kwargs) if variant.is_lstm
         else fastlstm.backward(tape, dy, dh_n, **kwargs))
    return {n: getattr(g, n) for n in FAMILY_GRAD_NAMES}


# (name, T, B, I, H, threads): one thread; two threads by groups of rows; two threads on one
# row (the column split of the walk)
INPUT_GRAD_CASES = [(name, 6, 5, 3, 4, 1) for name in VARIANTS] + [
    ("lstm", 30, 16, 32, 64, 2),
    ("gru_reset_before", 30, 16, 32, 64, 2),
    ("lstm_peep_proj", 20, 1, 16, 256, 2),
    ("gru", 20, 1, 16, 256, 2),
    ("rnn_relu", 20, 1, 16, 256, 2),
]


@pytest.mark.parametrize("name, T, B, I, H, threads", INPUT_GRAD_CASES,
                         ids=[f"{c[0]}-{c[1]}x{c[2]}x{c[3]}x{c[4]}-t{c[5]}"
                              for c in INPUT_GRAD_CASES])
def test_backward_without_input_gradient(name, T, B, I, H, threads, backend, dtype):
    """backward(..., input_grad=False) skips the input's gradient (x is None) and gives every
    other gradient bit for bit as the full backward, with lengths (0 and T among them) and
    reverse, on one thread and on two."""
    p = make_family_problem(name, T, B, I, H, 3, dtype, seed=8)
    arrays, grad_args = api_args(p)
    lengths = [T] if B == 1 else [min(T, max(0, (3 * b) % (T + 2))) for b in range(B)]
    if B > 2:
        lengths[1], lengths[2] = 0, T
    with fastlstm.threads(threads):
        for reverse in (False, True):
            _, _, _, tape = api_forward(p.variant, arrays, backend, lengths=lengths,
                                        reverse=reverse)
            full = _backward(p.variant, tape, grad_args)
            part = _backward(p.variant, tape, grad_args, input_grad=False)
            assert full["x"] is not None and part["x"] is None
            for n in FAMILY_GRAD_NAMES[1:]:
                if full[n] is None:
                    assert part[n] is None, n
                else:
                    np.testing.assert_array_equal(part[n], full[n], err_msg=f"grad {n}")


def test_backward_input_grad_must_be_a_flag():
    p = make_family_problem("lstm", 3, 2, 3, 4, dtype=np.float32)
    arrays, grad_args = api_args(p)
    _, _, _, tape = api_forward(p.variant, arrays, "numpy")
    with pytest.raises(TypeError, match="input_grad"):
        fastlstm.backward(tape, *grad_args, input_grad=1)
