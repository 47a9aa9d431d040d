"""Layouts and optional arguments: batch_first, unbatched input, strided and Fortran-ordered
arrays, read-only arrays, nested lists, every combination of the optional biases, initial state
and output gradients. Every case runs on every backend, float32 and float64, and is compared
with the float64 reference (conftest.check_against_reference)."""
from dataclasses import replace

import numpy as np
import pytest

import fastlstm

from conftest import (GRAD_KIND, GRAD_NAMES, assert_close, check_against_reference,
                      make_problem, reference_result, run_fastlstm, to_layout, tol_for)


@pytest.mark.parametrize("shape", [(5, 3, 4, 6), (1, 2, 3, 5), (20, 64, 32, 48)])
def test_batch_first(backend, dtype, shape):
    check_against_reference(make_problem(*shape, dtype=dtype, seed=20), backend, "batch_first")


def test_batch_first_shapes(backend, dtype):
    p = make_problem(5, 3, 4, 6, dtype=dtype, seed=21)
    y, h_n, c_n, grads, tape = run_fastlstm(p, backend, "batch_first")
    assert y.shape == (3, 5, 6) and h_n.shape == (3, 6) and c_n.shape == (3, 6)
    assert grads["x"].shape == (3, 5, 4)
    assert tape.y_shape == (3, 5, 6) and tape.state_shape == (3, 6)


@pytest.mark.parametrize("shape", [(5, 1, 4, 6), (1, 1, 2, 3), (300, 1, 3, 5), (4, 1, 3, 70)])
def test_unbatched(backend, dtype, shape):
    check_against_reference(make_problem(*shape, dtype=dtype, seed=22), backend, "unbatched")


def test_unbatched_shapes(backend, dtype):
    p = make_problem(5, 1, 4, 6, dtype=dtype, seed=23)
    y, h_n, c_n, grads, tape = run_fastlstm(p, backend, "unbatched")
    assert y.shape == (5, 6) and h_n.shape == (6,) and c_n.shape == (6,)
    assert grads["x"].shape == (5, 4) and grads["h0"].shape == (6,) and grads["c0"].shape == (6,)
    assert grads["w_ih"].shape == (24, 4) and grads["w_hh"].shape == (24, 6)


def test_unbatched_equals_batch_of_one(backend, dtype):
    p = make_problem(6, 1, 3, 5, dtype=dtype, seed=24)
    y1, h1, c1, g1, _ = run_fastlstm(p, backend, "unbatched")
    y3, h3, c3, g3, _ = run_fastlstm(p, backend, "time_major")
    tol = tol_for(dtype)
    assert_close(y1, y3[:, 0], tol, "y")
    assert_close(h1, h3[0], tol, "h_n")
    assert_close(c1, c3[0], tol, "c_n")
    assert_close(g1["x"], g3["x"][:, 0], tol, "grad x")
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        assert_close(g1[name], g3[name], tol, f"grad {name}")
    assert_close(g1["h0"], g3["h0"][0], tol, "grad h0")


def _embed(arr, rng, step=2):
    """A strided (non-contiguous) view holding arr's values inside a larger random array."""
    big = rng.standard_normal(tuple(step * n + 1 for n in arr.shape)).astype(arr.dtype)
    view = big[tuple(slice(1, None, step) for _ in arr.shape)]
    view[...] = arr
    assert not view.flags.c_contiguous and not view.flags.f_contiguous
    return view


@pytest.mark.parametrize("layout", ["time_major", "batch_first", "unbatched"])
def test_strided_inputs(backend, dtype, layout):
    """Every forward argument a strided view; dy, dh_n, dc_n strided too."""
    p = make_problem(6, 1 if layout == "unbatched" else 4, 5, 7, dtype=dtype, seed=25)
    rng = np.random.default_rng(99)
    fargs, kwargs, (dy, dh_n, dc_n) = p.call_args(layout)
    strided = tuple(_embed(a, rng) for a in fargs)
    ref = reference_result(p)
    y, (h_n, c_n), tape = fastlstm.forward(*strided, **kwargs, backend=backend,
                                           return_tape=True)
    g = fastlstm.backward(tape, _embed(dy, rng), _embed(dh_n, rng), _embed(dc_n, rng))
    tol = tol_for(dtype)
    assert_close(y, to_layout(ref.y, "seq", layout), tol, "y")
    assert_close(h_n, to_layout(ref.h_n, "state", layout), tol, "h_n")
    assert_close(c_n, to_layout(ref.c_n, "state", layout), tol, "c_n")
    for name in GRAD_NAMES:
        expected = to_layout(ref.grads[name], GRAD_KIND[name], layout)
        assert_close(getattr(g, name), expected, tol, f"grad {name}")


def test_strided_x_time_slices(backend, dtype):
    """x as every other step and a column slice of a bigger sequence."""
    p = make_problem(5, 3, 4, 6, dtype=dtype, seed=26)
    big = np.zeros((10, 3, 9), dtype=dtype)
    big[::2, :, 2:6] = p.x
    args = (big[::2, :, 2:6],) + p.forward_args()[1:]
    check_against_reference(p, backend, args=args)


def test_negative_strides(backend, dtype):
    p = make_problem(5, 3, 4, 6, dtype=dtype, seed=27)
    rev = lambda a: a[::-1].copy()[::-1]  # noqa: E731  same values, negative stride
    args = tuple(rev(a) for a in p.forward_args())
    assert all(a.strides[0] < 0 for a in args)
    check_against_reference(p, backend, args=args)


def test_batch_first_transposed_view(backend, dtype):
    """batch_first x given as a transposed view of a time-major array (not C-contiguous)."""
    p = make_problem(5, 3, 4, 6, dtype=dtype, seed=28)
    x_bf = p.x.transpose(1, 0, 2)
    assert not x_bf.flags.c_contiguous
    y, (h_n, c_n) = fastlstm.forward(x_bf, *p.forward_args()[1:], batch_first=True,
                                     backend=backend)
    ref = reference_result(p)
    assert_close(y, ref.y.transpose(1, 0, 2), tol_for(dtype), "y")
    assert_close(c_n, ref.c_n, tol_for(dtype), "c_n")


def test_fortran_ordered_weights(backend, dtype):
    p = make_problem(6, 4, 5, 7, dtype=dtype, seed=29)
    x, w_ih, w_hh, b_ih, b_hh, h0, c0 = p.forward_args()
    w_ih_f, w_hh_f = np.asfortranarray(w_ih), np.asfortranarray(w_hh)
    h0_f, c0_f = np.asfortranarray(h0), np.asfortranarray(c0)
    assert not w_ih_f.flags.c_contiguous and not w_hh_f.flags.c_contiguous
    check_against_reference(p, backend, args=(np.asfortranarray(x), w_ih_f, w_hh_f, b_ih, b_hh,
                                              h0_f, c0_f))


def test_read_only_inputs(backend, dtype):
    """Read-only arrays (e.g. from a memory map or a torch tensor) are accepted."""
    p = make_problem(6, 4, 5, 7, dtype=dtype, seed=30)
    args = []
    for a in p.forward_args():
        a = a.copy()
        a.flags.writeable = False
        args.append(a)
    check_against_reference(p, backend, args=tuple(args))
    _, _, tape = fastlstm.forward(*args, backend=backend, return_tape=True)
    dy, dh_n, dc_n = (a.copy() for a in (p.dy, p.dh_n, p.dc_n))
    for a in (dy, dh_n, dc_n):
        a.flags.writeable = False
    g = fastlstm.backward(tape, dy, dh_n, dc_n)
    assert_close(g.x, reference_result(p).grads["x"], tol_for(dtype), "grad x")


def test_nested_lists_as_input(backend):
    """Nested Python lists are arrays of float64."""
    p = make_problem(3, 2, 3, 4, seed=31)
    lists = tuple(a.tolist() for a in p.forward_args())
    y, (h_n, c_n) = fastlstm.forward(*lists, backend=backend)
    ref = reference_result(p)
    assert y.dtype == np.float64
    assert_close(y, ref.y, 1e-10, "y")
    assert_close(c_n, ref.c_n, 1e-10, "c_n")


BIASES = {"both": (), "none": ("b_ih", "b_hh"), "only_b_ih": ("b_hh",), "only_b_hh": ("b_ih",)}
STATES = {"both": (), "none": ("h0", "c0"), "only_h0": ("c0",), "only_c0": ("h0",)}


@pytest.mark.parametrize("biases", list(BIASES))
@pytest.mark.parametrize("states", list(STATES))
def test_optional_biases_and_state(backend, dtype, biases, states):
    p = make_problem(5, 3, 4, 6, dtype=dtype, seed=32).without(*BIASES[biases], *STATES[states])
    check_against_reference(p, backend)


@pytest.mark.parametrize("layout", ["batch_first", "unbatched"])
@pytest.mark.parametrize("omit", [("b_ih",), ("b_hh", "h0", "c0")],
                         ids=["no_b_ih", "no_b_hh_state"])
def test_optional_arguments_in_other_layouts(backend, dtype, layout, omit):
    B = 1 if layout == "unbatched" else 3
    p = make_problem(5, B, 4, 6, dtype=dtype, seed=33).without(*omit)
    check_against_reference(p, backend, layout)


GRAD_INPUTS = {"all": (), "only_dy": ("dh_n", "dc_n"), "only_dh_n": ("dy", "dc_n"),
               "only_dc_n": ("dy", "dh_n"), "dy_and_dc_n": ("dh_n",)}


@pytest.mark.parametrize("which", list(GRAD_INPUTS))
def test_optional_output_gradients(backend, dtype, which):
    p = make_problem(5, 3, 4, 6, dtype=dtype, seed=34).without(*GRAD_INPUTS[which])
    check_against_reference(p, backend)


@pytest.mark.parametrize("layout", ["time_major", "batch_first", "unbatched"])
def test_no_output_gradients_give_zeros(backend, dtype, layout):
    B = 1 if layout == "unbatched" else 3
    p = make_problem(4, B, 3, 5, dtype=dtype, seed=35)
    fargs, kwargs, _ = p.call_args(layout)
    _, _, tape = fastlstm.forward(*fargs, **kwargs, backend=backend, return_tape=True)
    g = fastlstm.backward(tape)
    for name, arg in zip(GRAD_NAMES, fargs):
        grad = getattr(g, name)
        assert grad.shape == arg.shape and grad.dtype == dtype, name
        assert not np.any(grad), f"grad {name} is not zero"


def test_state_none_gradient_equals_zero_state(backend, dtype):
    """g.h0 and g.c0 come back when h0 and c0 were None: the gradient at the zero state."""
    p = make_problem(5, 3, 4, 6, dtype=dtype, seed=36)
    zeros = np.zeros_like(p.h0)
    args_none = p.forward_args()[:5]
    _, _, tape_none = fastlstm.forward(*args_none, backend=backend, return_tape=True)
    _, _, tape_zero = fastlstm.forward(*args_none, zeros, zeros, backend=backend,
                                       return_tape=True)
    g_none = fastlstm.backward(tape_none, p.dy, p.dh_n, p.dc_n)
    g_zero = fastlstm.backward(tape_zero, p.dy, p.dh_n, p.dc_n)
    for name in GRAD_NAMES:
        assert_close(getattr(g_none, name), getattr(g_zero, name), tol_for(dtype), name)
    assert g_none.h0.shape == (3, 6) and g_none.c0.shape == (3, 6)
    assert np.any(g_none.h0) and np.any(g_none.c0)


def test_bias_gradients_none_when_not_given(backend, dtype):
    p = make_problem(4, 2, 3, 5, dtype=dtype, seed=37)
    for b_ih, b_hh in ((None, None), (p.b_ih, None), (None, p.b_hh), (p.b_ih, p.b_hh)):
        _, _, tape = fastlstm.forward(p.x, p.w_ih, p.w_hh, b_ih, b_hh, backend=backend,
                                      return_tape=True)
        g = fastlstm.backward(tape, p.dy)
        assert (g.b_ih is None) == (b_ih is None)
        assert (g.b_hh is None) == (b_hh is None)
        for grad in (g.b_ih, g.b_hh):
            if grad is not None:
                assert grad.shape == (20,) and grad.dtype == dtype and np.any(grad)


def test_tape_can_be_reused(backend, dtype):
    """backward can run several times on one tape, with different output gradients."""
    p = make_problem(5, 3, 4, 6, dtype=dtype, seed=38)
    _, _, tape = fastlstm.forward(*p.forward_args(), backend=backend, return_tape=True)
    g1 = fastlstm.backward(tape, p.dy, p.dh_n, p.dc_n)
    g2 = fastlstm.backward(tape, 2 * p.dy)
    g3 = fastlstm.backward(tape, p.dy, p.dh_n, p.dc_n)
    for name in GRAD_NAMES:
        np.testing.assert_array_equal(getattr(g1, name), getattr(g3, name), err_msg=name)
    ref2 = reference_result(replace(p, dy=2 * p.dy, dh_n=None, dc_n=None))
    for name in GRAD_NAMES:
        assert_close(getattr(g2, name), ref2.grads[name], tol_for(dtype), name)


def test_saturated_gates(backend, dtype):
    """Huge pre-activations saturate the gates without producing NaN or inf."""
    p = make_problem(6, 4, 3, 5, dtype=dtype, seed=39)
    p.x *= 200
    p.h0 *= 50
    p.c0 *= 50
    ref, _ = check_against_reference(p, backend)
    y, (h_n, c_n), tape = fastlstm.forward(*p.forward_args(), backend=backend, return_tape=True)
    g = fastlstm.backward(tape, p.dy, p.dh_n, p.dc_n)
    for a in (y, h_n, c_n, tape.gates, *(getattr(g, n) for n in GRAD_NAMES)):
        assert np.all(np.isfinite(a))
    assert np.max(np.abs(tape.gates)) == pytest.approx(1, abs=1e-6)


def test_nan_propagates(backend, dtype):
    """A NaN in x reaches the outputs exactly where the reference puts it."""
    p = make_problem(4, 3, 2, 5, dtype=dtype, seed=40)
    p.x[1, 2, 0] = np.nan
    ref = reference_result(p)
    y, (h_n, c_n) = fastlstm.forward(*p.forward_args(), backend=backend)
    assert np.isnan(y).any() and not np.isnan(y[0]).any()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref.y))
    tol = tol_for(dtype)
    assert_close(y, ref.y, tol, "y")  # NaN at the same places, the rest close
    assert_close(h_n, ref.h_n, tol, "h_n")
    assert_close(c_n, ref.c_n, tol, "c_n")
