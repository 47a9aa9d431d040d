"""The LSTM cell (SPEC.md sections 1 and 4): gate order i, f, g, o, optional peepholes
(p_i, p_f, p_o) and optional projection w_hr (PyTorch `proj_size`).

The state is (h, c): h (B, H_out) with H_out = P when projected, else H; c (B, H).
The step saves `gates` (B, 4H) = [i, f, g, o] (activations), which with the states is all the
backward step needs.
"""
import numpy as np

from ._math import affine, sigmoid, split_gates

#: stacked gate blocks per weight matrix
GATES = 4


def lstm_cell_forward(x_t, h_prev, c_prev, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None,
                      peepholes=None):
    """One LSTM step.

    x_t (B, I), h_prev (B, H_out), c_prev (B, H), w_ih (4H, I), w_hh (4H, H_out),
    b_ih, b_hh (4H,) or None, w_hr (P, H) or None, peepholes (3, H) = [p_i, p_f, p_o] or None.
    Returns h_t (B, H_out), c_t (B, H) and gates (B, 4H) = [i, f, g, o].
    """
    a = affine(x_t, w_ih, b_ih) + affine(h_prev, w_hh, b_hh)
    a_i, a_f, a_g, a_o = split_gates(a, GATES)
    if peepholes is not None:
        p_i, p_f, p_o = peepholes
        a_i = a_i + p_i * c_prev
        a_f = a_f + p_f * c_prev
    i = sigmoid(a_i)
    f = sigmoid(a_f)
    g = np.tanh(a_g)
    c_t = f * c_prev + i * g
    if peepholes is not None:
        a_o = a_o + p_o * c_t          # the output gate looks at the new cell state
    o = sigmoid(a_o)
    h_t = o * np.tanh(c_t)
    if w_hr is not None:
        h_t = affine(h_t, w_hr)
    return h_t, c_t, np.concatenate([i, f, g, o], axis=-1)


def lstm_cell_backward(dh, dc, x_t, h_prev, c_prev, c_t, gates, w_ih, w_hh, w_hr=None,
                       peepholes=None):
    """Back-propagate one LSTM step (SPEC.md section 1, "Backward", and section 4).

    dh (B, H_out): the whole gradient reaching h_t; dc (B, H): the gradient reaching c_t from
    step t+1; the other arguments as in lstm_cell_forward, gates from it.
    Returns (dx_t (B, I), dh_prev (B, H_out), dc_prev (B, H), grads), grads a dict of this
    step's contribution to w_ih, w_hh, b (the gradient of b_ih and of b_hh), w_hr, peepholes
    (None where unused), and dA (B, 4H), the gate pre-activation gradients.
    """
    i, f, g, o = split_gates(gates, GATES)
    tc = np.tanh(c_t)
    grads = {"w_hr": None, "peepholes": None}
    if w_hr is not None:
        grads["w_hr"] = dh.T @ (o * tc)
        dh = dh @ w_hr                 # gradient reaching o * tanh(c_t)
    da_o = dh * tc * o * (1 - o)
    dc = dc + dh * o * (1 - tc**2)
    if peepholes is not None:
        dc = dc + da_o * peepholes[2]
    da_i = dc * g * i * (1 - i)
    da_f = dc * c_prev * f * (1 - f)
    da_g = dc * i * (1 - g**2)
    dA = np.concatenate([da_i, da_f, da_g, da_o], axis=-1)
    dc_prev = dc * f
    if peepholes is not None:
        dc_prev = dc_prev + da_i * peepholes[0] + da_f * peepholes[1]
        grads["peepholes"] = np.stack([(da_i * c_prev).sum(0), (da_f * c_prev).sum(0),
                                       (da_o * c_t).sum(0)])
    grads.update(w_ih=dA.T @ x_t, w_hh=dA.T @ h_prev, b_ih=dA.sum(0), b_hh=dA.sum(0), dA=dA)
    return dA @ w_ih, dA @ w_hh, dc_prev, grads
