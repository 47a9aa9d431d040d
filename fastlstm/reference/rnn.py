"""The plain RNN cell (SPEC.md section 3): h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),
act = tanh or relu. The step saves `gates` (B, H) = h' (the activation's output is all the
derivative needs)."""
import numpy as np

from ._math import affine

NONLINEARITIES = ("tanh", "relu")


def rnn_cell_forward(x_t, h_prev, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """One step. x_t (B, I), h_prev (B, H), w_ih (H, I), w_hh (H, H), b_ih, b_hh (H,) or None.
    Returns h_t (B, H) and gates (B, H) = h_t."""
    a = affine(x_t, w_ih, b_ih) + affine(h_prev, w_hh, b_hh)
    h_t = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
    return h_t, h_t.copy()


def rnn_cell_backward(dh, x_t, h_prev, gates, w_ih, w_hh, nonlinearity="tanh"):
    """Back-propagate one step: dh (B, H) reaching h_t. Returns (dx_t, dh_prev, grads) as the
    other cells do; relu's derivative at 0 is taken as 0 (as PyTorch)."""
    h_t = gates
    dA = dh * (1 - h_t**2) if nonlinearity == "tanh" else dh * (h_t > 0)
    grads = dict(w_ih=dA.T @ x_t, w_hh=dA.T @ h_prev, b_ih=dA.sum(0), b_hh=dA.sum(0), dA=dA)
    return dA @ w_ih, dA @ w_hh, grads
