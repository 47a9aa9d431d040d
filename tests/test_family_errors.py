"""Wrong arguments of the family's public functions: each raises TypeError or ValueError whose
message starts with the argument's name, before any kernel runs (every kernel call is
recorded), leaving the inputs unchanged.

Forward: bad lengths (negative, > T, wrong shape, floats, bools, a string, None inside),
a wrong w_hr, a w_hh that does not fit w_hr, wrong peepholes, an unknown nonlinearity, a
non-bool reverse / linear_before_reset. Backward: dc_n for a GRU / RNN tape, a wrong-shaped dy
for a GRU tape.
"""
import re

import numpy as np
import pytest

import fastlstm

from conftest import kernel_calls
from family_helpers import api_args, make_family_problem

T, B, I, H, P = 5, 3, 2, 4, 3


def _call(name, arrays, backend, **kwargs):
    """The public forward of variant `name` (lstm, gru, rnn kinds) with `arrays` (api_args)."""
    a = arrays
    if name.startswith("lstm"):
        return fastlstm.forward(a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["h0"],
                                a["c0"], w_hr=a["w_hr"], peepholes=a["peepholes"],
                                backend=backend, **kwargs)
    fn = fastlstm.gru_forward if name.startswith("gru") else fastlstm.rnn_forward
    return fn(a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["h0"], backend=backend,
              **kwargs)


def _snapshot(values):
    return [v.copy() if isinstance(v, np.ndarray) else v for v in values]


def _assert_unchanged(values, copies):
    for k, (v, v0) in enumerate(zip(values, copies)):
        if isinstance(v, np.ndarray):
            assert np.array_equal(v, v0), f"argument {k} was modified"
        else:
            assert v == v0, f"argument {k} was modified"


def _check_rejected(name, arrays, backend, arg, errors=(TypeError, ValueError), layout=None,
                    **kwargs):
    """The call raises one of `errors`, its message starting with `arg` (a name, or a tuple of
    names any of which may start it); no kernel runs and no input changes."""
    values = list(arrays.values()) + list(kwargs.values())
    copies = _snapshot(values)
    with kernel_calls() as calls, pytest.raises(errors) as exc_info:
        _call(name, arrays, backend, batch_first=layout == "batch_first", **kwargs)
    assert type(exc_info.value) in (TypeError, ValueError)
    msg = str(exc_info.value)
    names = "|".join(map(re.escape, (arg,) if isinstance(arg, str) else arg))
    assert re.match(rf"^(?:{names}):", msg), f"message does not start with {arg!r}: {msg!r}"
    assert calls == [], f"a kernel ran before the error: {calls}"
    _assert_unchanged(values, copies)
    return exc_info.value


def _arrays(name, dtype=np.float64, layout="time_major", b=B):
    p = make_family_problem(name, T, b, I, H, P, dtype, seed=9)
    return api_args(p, layout)[0]


BAD_LENGTHS = [
    ("negative", [3, -1, 2], ValueError),
    ("above_T", [3, T + 1, 2], ValueError),
    ("too_short", [3, 2], ValueError),
    ("too_long", [3, 2, 1, 0], ValueError),
    ("2d", np.array([[3, 2, 1]]), ValueError),
    ("column", np.array([[3], [2], [1]]), ValueError),
    ("scalar", 3, ValueError),
    ("float_array", np.array([3.0, 2.0, 1.0]), TypeError),
    ("float_list", [3.0, 2.0, 1.0], TypeError),
    ("float_integral", np.array([5.0, 5.0, 5.0]), TypeError),
    ("bool_array", np.array([True, False, True]), TypeError),
    ("bool_list", [True, True, True], TypeError),
    ("string", "abc", TypeError),
    ("string_list", ["3", "2", "1"], TypeError),
    ("none_inside", [3, None, 1], TypeError),
    ("complex", np.array([3, 2, 1], dtype=complex), TypeError),
]
FAMILY = ["lstm", "lstm_peep_proj", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu"]


@pytest.mark.parametrize("bad, value, error", BAD_LENGTHS, ids=[b[0] for b in BAD_LENGTHS])
@pytest.mark.parametrize("name", FAMILY)
def test_bad_lengths(name, bad, value, error, backend):
    for reverse in (False, True):
        _check_rejected(name, _arrays(name), backend, "lengths", error, lengths=value,
                        reverse=reverse, return_tape=True)


@pytest.mark.parametrize("value, error", [
    ([3, 2], ValueError), (np.array([T + 1]), ValueError), (np.array([-1]), ValueError),
    (np.array([2.0]), TypeError), ([True], TypeError), (np.array([[2]]), ValueError),
], ids=["two", "above_T", "negative", "float", "bool", "2d"])
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh"])
def test_bad_lengths_unbatched(name, value, error, backend):
    arrays = _arrays(name, layout="unbatched", b=1)
    _check_rejected(name, arrays, backend, "lengths", error, lengths=value)


def test_bad_lengths_batch_first(backend):
    """With batch_first, B is x's first axis: a lengths of T entries (T != B) is wrong."""
    arrays = _arrays("gru", layout="batch_first")
    _check_rejected("gru", arrays, backend, "lengths", ValueError, layout="batch_first",
                    lengths=[1] * T)


@pytest.mark.parametrize("bad_w_hr", [
    np.zeros((P,)), np.zeros((0, H)), np.zeros((P, 0)), np.zeros((1, P, H)),
], ids=["1d", "P0", "H0", "3d"])
def test_bad_w_hr_shape(bad_w_hr, backend):
    arrays = _arrays("lstm_peep_proj")
    arrays["w_hr"] = bad_w_hr
    _check_rejected("lstm", arrays, backend, "w_hr", ValueError)


def test_w_hr_of_other_hidden_size(backend):
    """w_hr (P, H') with H' != H: either w_hr or a weight it disagrees with is named."""
    arrays = _arrays("lstm_peep_proj")
    arrays["w_hr"] = np.zeros((P, H + 1))
    _check_rejected("lstm", arrays, backend, ("w_hr", "w_hh", "w_ih", "peepholes"), ValueError)


@pytest.mark.parametrize("bad_w_hh", [(4 * H, H), (4 * H, P + 1), (3 * H, P), (4 * H,)],
                         ids=["4HxH", "4HxP+1", "3HxP", "1d"])
def test_w_hh_not_fitting_w_hr(bad_w_hh, backend):
    arrays = _arrays("lstm_proj")
    arrays["w_hh"] = np.zeros(bad_w_hh)
    _check_rejected("lstm", arrays, backend, "w_hh", ValueError)


def test_w_hr_with_wrong_w_hh_in_float32(backend):
    arrays = _arrays("lstm_proj", dtype=np.float32)
    arrays["w_hh"] = np.zeros((4 * H, H), np.float32)
    _check_rejected("lstm", arrays, backend, "w_hh", ValueError)


@pytest.mark.parametrize("bad_peep", [(4, H), (3, H + 1), (3 * H,), (3, 1), (H, 3)],
                         ids=["4xH", "3xH+1", "flat", "3x1", "Hx3"])
@pytest.mark.parametrize("name", ["lstm_peep", "lstm_peep_proj"])
def test_bad_peepholes_shape(name, bad_peep, backend):
    arrays = _arrays(name)
    arrays["peepholes"] = np.zeros(bad_peep)
    _check_rejected("lstm", arrays, backend, "peepholes", ValueError)


def test_peepholes_of_other_dtype(backend):
    arrays = _arrays("lstm_peep")
    arrays["peepholes"] = arrays["peepholes"].astype(np.float32)
    _check_rejected("lstm", arrays, backend, "peepholes", TypeError)


@pytest.mark.parametrize("bad", ["sigmoid", None, 3, "TANH", "", b"tanh", ["tanh"]],
                         ids=["sigmoid", "None", "int", "upper", "empty", "bytes", "list"])
def test_unknown_nonlinearity(bad, backend):
    _check_rejected("rnn", _arrays("rnn_tanh"), backend, "nonlinearity", ValueError,
                    nonlinearity=bad)


@pytest.mark.parametrize("bad", [1, 0, "yes", None, 1.0, np.array([True])],
                         ids=["1", "0", "str", "None", "float", "array"])
@pytest.mark.parametrize("name, flag", [("lstm", "reverse"), ("gru", "reverse"),
                                        ("rnn_tanh", "reverse"),
                                        ("gru", "linear_before_reset")])
def test_non_bool_flags(name, flag, bad, backend):
    _check_rejected(name, _arrays(name), backend, flag, TypeError, **{flag: bad},
                    lengths=[3, 0, 5])


@pytest.mark.parametrize("name", ["gru", "gru_reset_before", "rnn_tanh", "rnn_relu"])
def test_backward_rejects_dc_n_without_cell_state(name, backend):
    p = make_family_problem(name, T, B, I, H, P, np.float64, seed=10)
    arrays, (dy, dh_n, _) = api_args(p)
    *_, tape = _call(name, arrays, backend, lengths=[3, 0, 5], return_tape=True)
    dc_n = np.ones((B, H))
    copies = _snapshot([dy, dh_n, dc_n])
    with kernel_calls() as calls, pytest.raises(ValueError) as exc_info:
        fastlstm.backward(tape, dy, dh_n, dc_n)
    assert str(exc_info.value).startswith("dc_n"), str(exc_info.value)
    assert calls == []
    _assert_unchanged([dy, dh_n, dc_n], copies)
    # the tape is still good
    g = fastlstm.backward(tape, dy, dh_n)
    assert g.c0 is None


@pytest.mark.parametrize("layout, bad_shape", [
    ("time_major", (T, B, H + 1)), ("time_major", (T + 1, B, H)), ("time_major", (B, T, H)),
    ("time_major", (T, B, 3 * H)), ("batch_first", (T, B, H)), ("time_major", (T, H)),
], ids=["H+1", "T+1", "batch_first_dy", "gates_wide", "time_major_dy", "2d"])
@pytest.mark.parametrize("name", ["gru", "gru_reset_before"])
def test_backward_rejects_wrong_dy_for_gru(name, layout, bad_shape, backend):
    p = make_family_problem(name, T, B, I, H, P, np.float64, seed=11)
    arrays, (_, dh_n, _) = api_args(p, layout)
    *_, tape = _call(name, arrays, backend, lengths=[3, 0, 5], reverse=True,
                     batch_first=layout == "batch_first", return_tape=True)
    dy = np.ones(bad_shape)
    with kernel_calls() as calls, pytest.raises(ValueError) as exc_info:
        fastlstm.backward(tape, dy, dh_n)
    assert str(exc_info.value).startswith("dy"), str(exc_info.value)
    assert calls == []
    assert np.all(dy == 1)


def test_recorder_sees_kernel_calls(backend):
    """Guard: the recorder does record the kernels of a valid call (and passes groups on)."""
    arrays = _arrays("gru")
    with kernel_calls() as calls:
        *_, tape = _call("gru", arrays, backend, lengths=[3, 0, 5], reverse=True,
                         return_tape=True)
        fastlstm.backward(tape, np.ones((T, B, H)))
    assert calls == ["forward", "backward"]
