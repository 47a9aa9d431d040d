"""Numba LSTM backward kernel. Mirrors fastlstm.reference.lstm_backward_steps and is the twin
of the Cython kernel lstm_backward.pyx (same arguments, same contract)."""
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
def lstm_backward(w_hh, c, gates, dy, dh, dc, dA):
    """Back-propagate through T >= 1 steps; arguments as in the Cython kernel lstm_backward.

    w_hh (4H, H) IN; c (T+1, B, H) IN; gates (T, B, 4H) IN; dy (T, B, H) or (0, B, H) IN;
    dh, dc (B, H) IN/OUT (dh_n, dc_n in; dh_0, dc_0 out); dA (T, B, 4H) OUT.
    """
    T = gates.shape[0]
    has_dy = dy.shape[0] > 0
    for t in range(T - 1, -1, -1):
        _gate_grads(gates[t], c[t], c[t + 1], dy[t if has_dy else 0] if has_dy else dh,
                    has_dy, dh, dc, dA[t])
        np.dot(dA[t], w_hh, dh)
