"""The NumPy reference alone, for every cell of the family (SPEC.md sections 2, 3, 4, 7).

- Every gradient of reference.sequence_backward (x, w_ih, w_hh, b_ih, b_hh, w_hr, peepholes,
  h0, c0) against central finite differences of L = sum(y dy) + sum(h_n dh_n) (+ sum(c_n dc_n))
  in float64, for each cell and option, with and without lengths (unsorted, 0 and T among them),
  forward and reverse.
- Lengths: y past each row's length is exactly 0; a length-0 row's final state is exactly
  (h0, c0); reverse with lengths is each row run alone over its own flipped valid part.
- reverse_padded applied twice is the identity.
"""
import numpy as np
import pytest

from fastlstm import reference

from conftest import assert_close, numeric_grad
from family_helpers import VARIANTS, make_family_problem

#: tiny shapes: every entry of every array is perturbed
T, B, I, H, P = 3, 3, 2, 3, 2
FD_EPS = 1e-6
FD_TOL = 1e-6
LENGTHS = {"full": None, "unsorted": (2, 0, 3), "unsorted2": (1, 3, 0)}


def _setup(name, seed=0, t=T, b=B):
    """(variant, params, x, state0, dy, d_state) in float64 with every optional part present."""
    p = make_family_problem(name, t, b, I, H, P, np.float64, seed)
    v = p.variant
    params = {k: a for k, a in p.params.items() if a is not None}
    state0 = (p.h0, p.c0) if v.is_lstm else (p.h0,)
    d_state = (p.dh_n, p.dc_n) if v.is_lstm else (p.dh_n,)
    return v, params, p.x, state0, p.dy, d_state


def _loss(v, params, x, state0, lengths, reverse, dy, d_state):
    y, state, _ = reference.sequence_forward(v.kind, params, x, state0, lengths, reverse,
                                             **v.options)
    return float(np.sum(y * dy) + sum(np.sum(s * d) for s, d in zip(state, d_state)))


def _numeric_grad(f, a):
    """Central differences of f() with respect to every entry of `a` (perturbed in place)."""
    return numeric_grad(f, a, eps=FD_EPS)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", list(LENGTHS.values()), ids=list(LENGTHS))
@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradients_match_finite_differences(name, lengths, reverse):
    v, params, x, state0, dy, d_state = _setup(name)
    lens = None if lengths is None else np.array(lengths)
    _, _, tape = reference.sequence_forward(v.kind, params, x, state0, lens, reverse,
                                            **v.options)
    grads = reference.sequence_backward(tape, dy, d_state)

    # parameters the variant does not use have no gradient; c0 only for the LSTM
    for n in ("w_hr", "peepholes"):
        if n not in params:
            assert grads[n] is None, f"grad {n} should be None for {name}"
    assert ("c0" in grads) == v.is_lstm

    def f():
        return _loss(v, params, x, state0, lens, reverse, dy, d_state)

    wrt = {"x": x, **params, "h0": state0[0]}
    if v.is_lstm:
        wrt["c0"] = state0[1]
    expected_names = {"x", "w_ih", "w_hh", "b_ih", "b_hh", "h0"} | set(params)
    assert expected_names <= set(wrt)
    for n, a in wrt.items():
        numeric = _numeric_grad(f, a)
        assert grads[n].shape == a.shape, f"grad {n}: shape {grads[n].shape} != {a.shape}"
        assert_close(grads[n], numeric, FD_TOL, f"grad {n}")
    if lengths is not None:
        # padded positions of x reach nothing
        pad = np.arange(T)[:, None] >= np.array(lengths)
        assert np.all(grads["x"][pad] == 0)


def test_finite_differences_see_every_gradient():
    """Guard of the test above: a wrong gradient (one entry off) is caught."""
    v, params, x, state0, dy, d_state = _setup("lstm_peep_proj")
    _, _, tape = reference.sequence_forward(v.kind, params, x, state0, None, False)
    grads = reference.sequence_backward(tape, dy, d_state)
    numeric = _numeric_grad(lambda: _loss(v, params, x, state0, None, False, dy, d_state),
                            params["peepholes"])
    assert_close(grads["peepholes"], numeric, FD_TOL, "peepholes")
    wrong = grads["peepholes"].copy()
    wrong[1, 2] += 1e-3 * np.abs(wrong).max()
    with pytest.raises(AssertionError):
        assert_close(wrong, numeric, FD_TOL, "peepholes")


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_padding_is_zero_and_empty_rows_keep_initial_state(name, reverse):
    lengths = np.array([3, 0, 5, 1, 0, 4])
    v, params, x, state0, _, _ = _setup(name, seed=1, t=5, b=6)
    y, state, _ = reference.sequence_forward(v.kind, params, x, state0, lengths, reverse,
                                             **v.options)
    pad = np.arange(5)[:, None] >= lengths
    assert np.all(y[pad] == 0), "y past a row's length must be exactly 0"
    # the final state is the output at the row's last step read
    for b, n in enumerate(lengths):
        if n:
            np.testing.assert_array_equal(state[0][b], y[0 if reverse else n - 1, b])
    for s, s0 in zip(state, state0):
        np.testing.assert_array_equal(s[lengths == 0], s0[lengths == 0])
        assert not np.allclose(s[lengths > 0], s0[lengths > 0])


@pytest.mark.parametrize("name", list(VARIANTS))
def test_reverse_with_lengths_is_each_row_alone_flipped(name):
    lengths = np.array([3, 0, 5, 1, 4])
    v, params, x, state0, _, _ = _setup(name, seed=2, t=5, b=5)
    y, state, _ = reference.sequence_forward(v.kind, params, x, state0, lengths, True,
                                             **v.options)
    for b, n in enumerate(lengths):
        row_x = x[:n, b:b + 1][::-1].copy()           # the row's valid part, flipped
        row_state0 = tuple(s[b:b + 1] for s in state0)
        y_row, state_row, _ = reference.sequence_forward(v.kind, params, row_x, row_state0,
                                                         None, False, **v.options)
        assert_close(y[:n, b], y_row[::-1, 0], 1e-14, f"y of row {b}")
        assert np.all(y[n:, b] == 0)
        for k, (s, s_row) in enumerate(zip(state, state_row)):
            assert_close(s[b], s_row[0], 1e-14, f"final state {k} of row {b}")
    # and it is not a flip of the padded array
    y_flip, _, _ = reference.sequence_forward(v.kind, params, x[::-1].copy(), state0, None,
                                              False, **v.options)
    assert not np.allclose(y[:, 0], y_flip[::-1, 0])


def test_reverse_padded_twice_is_identity():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 5, 3))
    lengths = np.array([6, 0, 3, 1, 4])
    once = reference.reverse_padded(a, lengths)
    assert not np.array_equal(once, a)
    np.testing.assert_array_equal(once[:3, 2], a[:3, 2][::-1])
    np.testing.assert_array_equal(once[3:, 2], a[3:, 2])      # padding unchanged
    np.testing.assert_array_equal(once[:, 1], a[:, 1])        # length 0: unchanged
    np.testing.assert_array_equal(reference.reverse_padded(once, lengths), a)
    np.testing.assert_array_equal(reference.reverse_padded(a, np.zeros(5, int)), a)
