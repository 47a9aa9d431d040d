"""Numba LSTM backward kernel. Mirrors fastlstm.reference.lstm_backward_steps and is the twin
of the Cython kernel lstm_backward.pyx: the same buffers and the same contract, but BLAS calls
(np.dot) for the products, and no scratch for transposes."""
import numpy as np

from ._jit import jit
from .numba_activations import one_minus, tanh_


@jit
def _gate_grads(gates, c_prev, c_t, dy, has_dy, dh, dc, dA):
    """The fused pointwise pass of one step; mirrors reference.lstm_cell_backward.

    gates (B, 4H) IN; c_prev, c_t (B, H) IN; dy (B, H) IN (ignored unless has_dy);
    dh (B, H) IN; dc (B, H) IN/OUT (dc_next in, dc * f out); dA (B, 4H) OUT.
    """
    B, H = dh.shape
    for b in range(B):
        for j in range(H):
            i = gates[b, j]
            f = gates[b, H + j]
            g = gates[b, 2 * H + j]
            o = gates[b, 3 * H + j]
            dh_t = dh[b, j]
            if has_dy:
                dh_t = dh_t + dy[b, j]
            tc = tanh_(c_t[b, j])
            dc_t = dc[b, j] + dh_t * o * one_minus(tc * tc)
            dA[b, j] = dc_t * g * i * one_minus(i)
            dA[b, H + j] = dc_t * c_prev[b, j] * f * one_minus(f)
            dA[b, 2 * H + j] = dc_t * i * one_minus(g * g)
            dA[b, 3 * H + j] = dh_t * tc * o * one_minus(o)
            dc[b, j] = dc_t * f


@jit
def _weight_grads(x2, h2, w_ih, dA2, dx2, dw_ih, dw_hh, db):
    """Mirrors reference.lstm_weight_grads, with TB = T*B rows.

    x2 (TB, I), h2 (TB, H) = h_0 ... h_{T-1}, w_ih (4H, I), dA2 (TB, 4H)  IN;
    dx2 (TB, I), dw_ih (4H, I), dw_hh (4H, H), db (4H,)  OUT.
    """
    np.dot(dA2, w_ih, dx2)
    np.dot(dA2.T, x2, dw_ih)
    np.dot(dA2.T, h2, dw_hh)
    db[:] = 0
    for r in range(dA2.shape[0]):
        for j in range(dA2.shape[1]):
            db[j] += dA2[r, j]


@jit
def lstm_backward(x, w_ih, w_hh, h, c, gates, dy, dh, dc, dA, dx, dw_ih, dw_hh, db):
    """Back-propagate through T >= 1 steps; buffers as in the Cython kernel lstm_backward.

    x (T, B, I), w_ih (4H, I), w_hh (4H, H), h, c (T+1, B, H), gates (T, B, 4H) IN;
    dy (T, B, H) or (0, B, H) IN; dh, dc (B, H) IN/OUT (dh_n, dc_n in; dh_0, dc_0 out);
    dA (T, B, 4H), dx (T, B, I), dw_ih (4H, I), dw_hh (4H, H), db (4H,) OUT.
    """
    T, B, I = x.shape
    H = dh.shape[1]
    has_dy = dy.shape[0] > 0
    for t in range(T - 1, -1, -1):
        _gate_grads(gates[t], c[t], c[t + 1], dy[t if has_dy else 0] if has_dy else dh,
                    has_dy, dh, dc, dA[t])
        np.dot(dA[t], w_hh, dh)
    _weight_grads(x.reshape(T * B, I), h[:T].reshape(T * B, H), w_ih,
                  dA.reshape(T * B, 4 * H), dx.reshape(T * B, I), dw_ih, dw_hh, db)
