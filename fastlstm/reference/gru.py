"""The GRU cell (SPEC.md section 2): gate order r, z, n, in both variants.

linear_before_reset=True (PyTorch):   n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
linear_before_reset=False (Keras reset_after=False, ONNX's default):
                                      n = tanh(x W_in^T + b_in + (r * h) W_hn^T + b_hn)
h' = (1 - z) * n + z * h

The step saves `gates` (B, 4H) = [r, z, n, m] with m the n gate's recurrent input:
m = h W_hn^T + b_hn (linear before reset) or m = r * h (reset before).
"""
import numpy as np

from ._math import affine, row_blocks, sigmoid, split_gates

GATES = 3


def gru_cell_forward(x_t, h_prev, w_ih, w_hh, b_ih=None, b_hh=None, linear_before_reset=True):
    """One GRU step.

    x_t (B, I), h_prev (B, H), w_ih (3H, I), w_hh (3H, H), b_ih, b_hh (3H,) or None.
    Returns h_t (B, H) and gates (B, 4H) = [r, z, n, m].
    """
    gi_r, gi_z, gi_n = split_gates(affine(x_t, w_ih, b_ih), GATES)
    w_hr, w_hz, w_hn = row_blocks(w_hh, GATES)          # each (H, H)
    b_hr, b_hz, b_hn = (None,) * 3 if b_hh is None else split_gates(b_hh, GATES)
    r = sigmoid(gi_r + affine(h_prev, w_hr, b_hr))
    z = sigmoid(gi_z + affine(h_prev, w_hz, b_hz))
    if linear_before_reset:
        m = affine(h_prev, w_hn, b_hn)
        n = np.tanh(gi_n + r * m)
    else:
        m = r * h_prev
        n = np.tanh(gi_n + affine(m, w_hn, b_hn))
    h_t = (1 - z) * n + z * h_prev
    return h_t, np.concatenate([r, z, n, m], axis=-1)


def gru_cell_backward(dh, x_t, h_prev, gates, w_ih, w_hh, linear_before_reset=True):
    """Back-propagate one GRU step.

    dh (B, H): the whole gradient reaching h_t; the rest as in gru_cell_forward.
    Returns (dx_t (B, I), dh_prev (B, H), grads): grads holds this step's w_ih, w_hh, b_ih, b_hh
    and dA (B, 3H), the gradient of the input-side pre-activations [r, z, n].
    """
    r, z, n, m = split_gates(gates, 4)
    w_hn = w_hh[2 * w_hh.shape[1]:]
    da_n = dh * (1 - z) * (1 - n**2)
    da_z = dh * (h_prev - n) * z * (1 - z)
    dh_prev = dh * z
    if linear_before_reset:
        dm = da_n * r                  # gradient of m = h W_hn^T + b_hn
        da_r = da_n * m * r * (1 - r)
        d_rec = np.concatenate([da_r, da_z, dm], axis=-1)   # gradient of h W_hh^T + b_hh
        dh_prev = dh_prev + d_rec @ w_hh
        dw_hh = d_rec.T @ h_prev
        db_hh = d_rec.sum(0)
    else:
        dm = da_n @ w_hn               # gradient of m = r * h
        da_r = dm * h_prev * r * (1 - r)
        d_rz = np.concatenate([da_r, da_z], axis=-1)
        dh_prev = dh_prev + dm * r + d_rz @ w_hh[:2 * w_hh.shape[1]]
        dw_hh = np.concatenate([d_rz.T @ h_prev, da_n.T @ m])
        db_hh = np.concatenate([d_rz.sum(0), da_n.sum(0)])
    dA = np.concatenate([da_r, da_z, da_n], axis=-1)
    grads = dict(w_ih=dA.T @ x_t, w_hh=dw_hh, b_ih=dA.sum(0), b_hh=db_hh, dA=dA)
    return dA @ w_ih, dh_prev, grads
