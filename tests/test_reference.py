"""The NumPy reference (fastlstm.reference) on its own: its forward against a plain scalar
transcription of SPEC.md section 1, and every gradient against central finite differences.

The finite-difference checks also run through the public fastlstm.forward / fastlstm.backward
with every backend, so the API's gradients are tied to the loss itself, not only to the reference.
"""
import math

import numpy as np
import pytest

import fastlstm
from fastlstm import reference

from conftest import GRAD_NAMES, assert_close, make_problem, rel_err

FD_STEP = 1e-6
FD_TOL = 1e-6
PARAM_NAMES = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")


def _loss_reference(params, dy, dh_n, dc_n):
    """L = sum(y * dy) + sum(h_n * dh_n) + sum(c_n * dc_n) from reference.lstm_forward."""
    h, c, _ = reference.lstm_forward(*(params[n] for n in PARAM_NAMES))
    return float(np.sum(h[1:] * dy) + np.sum(h[-1] * dh_n) + np.sum(c[-1] * dc_n))


def _loss_api(backend):
    def loss(params, dy, dh_n, dc_n):
        y, (h_n, c_n) = fastlstm.forward(*(params[n] for n in PARAM_NAMES), backend=backend)
        return float(np.sum(y * dy) + np.sum(h_n * dh_n) + np.sum(c_n * dc_n))
    return loss


def _finite_difference_grads(loss, params, dy, dh_n, dc_n, step=FD_STEP):
    """Central differences of `loss` with respect to every element of every parameter."""
    grads = {}
    for name in PARAM_NAMES:
        value = params[name]
        g = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            orig = value[idx]
            value[idx] = orig + step
            plus = loss(params, dy, dh_n, dc_n)
            value[idx] = orig - step
            minus = loss(params, dy, dh_n, dc_n)
            value[idx] = orig
            g[idx] = (plus - minus) / (2 * step)
        grads[name] = g
    return grads


def _fd_problem():
    p = make_problem(T=3, B=2, I=3, H=4, dtype=np.float64, seed=11)
    params = {n: getattr(p, n).copy() for n in PARAM_NAMES}
    return p, params


def test_reference_gradients_match_finite_differences():
    p, params = _fd_problem()
    h, c, gates = reference.lstm_forward(*p.forward_args())
    dx, dw_ih, dw_hh, db, dh0, dc0 = reference.lstm_backward(
        p.x, p.w_ih, p.w_hh, h, c, gates, p.dy, p.dh_n, p.dc_n)
    analytic = dict(x=dx, w_ih=dw_ih, w_hh=dw_hh, b_ih=db, b_hh=db, h0=dh0, c0=dc0)
    fd = _finite_difference_grads(_loss_reference, params, p.dy, p.dh_n, p.dc_n)
    for name in PARAM_NAMES:
        assert np.all(fd[name] != 0), f"{name}: a zero finite difference; the check would be weak"
        assert_close(analytic[name], fd[name], FD_TOL, f"d{name}")


def test_api_gradients_match_finite_differences(backend):
    """fastlstm.forward/backward (float64) against central differences of the API's own loss."""
    p, params = _fd_problem()
    _, _, tape = fastlstm.forward(*p.forward_args(), backend=backend, return_tape=True)
    g = fastlstm.backward(tape, p.dy, p.dh_n, p.dc_n)
    fd = _finite_difference_grads(_loss_api(backend), params, p.dy, p.dh_n, p.dc_n)
    for name in GRAD_NAMES:
        assert_close(getattr(g, name), fd[name], FD_TOL, f"d{name} ({backend})")


def test_fd_check_detects_a_wrong_gradient():
    """The finite-difference comparison is sharp enough to see a small error in one element."""
    p, params = _fd_problem()
    h, c, gates = reference.lstm_forward(*p.forward_args())
    dw_hh = reference.lstm_backward(p.x, p.w_ih, p.w_hh, h, c, gates, p.dy, p.dh_n, p.dc_n)[2]
    fd = _finite_difference_grads(_loss_reference, params, p.dy, p.dh_n, p.dc_n)
    wrong = dw_hh.copy()
    wrong[3, 1] *= 1 + 1e-4
    assert rel_err(dw_hh, fd["w_hh"]) < FD_TOL
    assert rel_err(wrong, fd["w_hh"]) > FD_TOL


def _scalar_lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
    """SPEC.md section 1 written out element by element with `math`, no NumPy arithmetic."""
    T, B, I = x.shape
    H = w_hh.shape[1]
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    h = [[float(h0[b][j]) for j in range(H)] for b in range(B)]
    c = [[float(c0[b][j]) for j in range(H)] for b in range(B)]
    ys = []
    for t in range(T):
        new_h, new_c = [], []
        for b in range(B):
            a = []
            for k in range(4 * H):
                s = float(b_ih[k]) + float(b_hh[k])
                s += sum(float(x[t][b][i]) * float(w_ih[k][i]) for i in range(I))
                s += sum(h[b][j] * float(w_hh[k][j]) for j in range(H))
                a.append(s)
            hb, cb = [], []
            for j in range(H):
                i_g, f_g = sig(a[j]), sig(a[H + j])
                g_g, o_g = math.tanh(a[2 * H + j]), sig(a[3 * H + j])
                cj = f_g * c[b][j] + i_g * g_g
                cb.append(cj)
                hb.append(o_g * math.tanh(cj))
            new_h.append(hb)
            new_c.append(cb)
        h, c = new_h, new_c
        ys.append(h)
    return np.array(ys).reshape(T, B, H), np.array(h), np.array(c)


@pytest.mark.parametrize("T,B,I,H", [(1, 1, 1, 1), (2, 1, 1, 1), (3, 2, 3, 2)])
def test_reference_forward_matches_scalar_formula(T, B, I, H):
    p = make_problem(T, B, I, H, seed=3)
    y, h_n, c_n = _scalar_lstm(*p.forward_args())
    h, c, gates = reference.lstm_forward(*p.forward_args())
    assert_close(h[1:], y, 1e-13, "y")
    assert_close(h[-1], h_n, 1e-13, "h_n")
    assert_close(c[-1], c_n, 1e-13, "c_n")
    assert_close(h[0], p.h0, 0, "h[0] is h0")
    assert_close(c[0], p.c0, 0, "c[0] is c0")
    # gate activations in order i, f, g, o: sigmoids in (0, 1), tanh in (-1, 1)
    i, f, g, o = reference.split_gates(gates)
    for name, s in (("i", i), ("f", f), ("o", o)):
        assert np.all((s > 0) & (s < 1)), name
    assert np.all(np.abs(g) < 1)


def test_reference_one_unit_worked_example():
    """A two-step sequence through one LSTM unit, values worked out by hand (SPEC.md section 6)."""
    x = np.array([[[1.0]], [[2.0]]])
    w_ih = np.array([[0.5], [0.25], [1.0], [-0.5]])     # i, f, g, o
    w_hh = np.array([[1.0], [-1.0], [0.5], [2.0]])
    b = np.array([0.0, 1.0, 0.0, 0.0])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    # step 1 from h0 = c0 = 0
    c1 = sig(0.5) * math.tanh(1.0) + sig(1.25) * 0.0
    h1 = sig(-0.5) * math.tanh(c1)
    # step 2
    i2, f2 = sig(1.0 + h1), sig(0.5 + 1.0 - h1)
    g2, o2 = math.tanh(2.0 + 0.5 * h1), sig(-1.0 + 2.0 * h1)
    c2 = f2 * c1 + i2 * g2
    h2 = o2 * math.tanh(c2)
    h, c, _ = reference.lstm_forward(x, w_ih, w_hh, b, None)
    np.testing.assert_allclose(h[1:, 0, 0], [h1, h2], rtol=1e-14)
    np.testing.assert_allclose(c[1:, 0, 0], [c1, c2], rtol=1e-14)


def test_reference_none_means_zeros():
    """None for the biases, h0, c0, dy, dh_n, dc_n means zeros."""
    p = make_problem(4, 3, 2, 5, seed=5)
    z_state = np.zeros_like(p.h0)
    z_bias = np.zeros_like(p.b_ih)
    a = reference.lstm_forward(p.x, p.w_ih, p.w_hh)
    b = reference.lstm_forward(p.x, p.w_ih, p.w_hh, z_bias, z_bias, z_state, z_state)
    for u, v in zip(a, b):
        assert_close(u, v, 0)
    h, c, gates = a
    ga = reference.lstm_backward(p.x, p.w_ih, p.w_hh, h, c, gates)
    gb = reference.lstm_backward(p.x, p.w_ih, p.w_hh, h, c, gates, np.zeros_like(h[1:]),
                                 z_state, z_state)
    for u, v in zip(ga, gb):
        assert_close(u, v, 0)
        assert not np.any(u), "no output gradient: every gradient is zero"


def test_reference_biases_add():
    """b_ih and b_hh enter only as their sum."""
    p = make_problem(3, 2, 3, 4, seed=6)
    a = reference.lstm_forward(p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh, p.h0, p.c0)
    b = reference.lstm_forward(p.x, p.w_ih, p.w_hh, p.b_ih + p.b_hh, None, p.h0, p.c0)
    for u, v in zip(a, b):
        assert_close(u, v, 1e-15)


def test_reference_keeps_dtype(dtype):
    p = make_problem(3, 2, 3, 4, dtype=dtype, seed=7)
    h, c, gates = reference.lstm_forward(*p.forward_args())
    assert h.dtype == c.dtype == gates.dtype == dtype
    assert h.shape == (4, 2, 4) and c.shape == (4, 2, 4) and gates.shape == (3, 2, 16)
    grads = reference.lstm_backward(p.x, p.w_ih, p.w_hh, h, c, gates, p.dy, p.dh_n, p.dc_n)
    for g, shape in zip(grads, [(3, 2, 3), (16, 3), (16, 4), (16,), (2, 4), (2, 4)]):
        assert g.dtype == dtype and g.shape == shape


def test_error_measure_can_fail():
    """The one error measure of the suite rejects what it must reject."""
    a = np.linspace(-1, 1, 50)
    assert rel_err(a, a) == 0
    assert rel_err(a * (1 + 1e-9), a) < 1e-8
    assert rel_err(a + 1e-3, a) > 1e-4
    b = a.copy()
    b[7] = np.nan
    assert rel_err(b, a) == np.inf
    assert rel_err(b, b) == 0
    assert rel_err(np.full(3, 1e-3), np.zeros(3)) == pytest.approx(1e-3)
    with pytest.raises(AssertionError):
        assert_close(a + 1e-3, a, 1e-4)
    with pytest.raises(AssertionError):
        assert_close(a[:-1], a, 1.0)  # shape mismatch never passes
    with pytest.raises(AssertionError):
        assert_close(None, a, 1.0)
