"""The NumPy reference LSTM: clean, minimal, written to be read.

This module is the yardstick for every other backend. It follows ../shared/SPEC.md section 1
line by line (PyTorch convention, gate order i, f, g, o) and favours clarity over speed: the
time loop is a plain Python loop over `lstm_cell_forward` / `lstm_cell_backward`.

Shapes: T time steps, B batch, I input size, H hidden size. All functions work on the
canonical time-major layout; the public API in `fastlstm._api` handles batch_first and
unbatched input.

The forward pass returns the *tape*: every hidden and cell state and every gate activation,
which is exactly what the backward pass needs:

    h      (T+1, B, H)   h[0] = h_0, h[t] = h_t; the output y is h[1:]
    c      (T+1, B, H)   c[0] = c_0, c[t] = c_t
    gates  (T, B, 4H)    gates[t-1] = [i, f, g, o] of step t (activations, not pre-activations)
"""
import numpy as np
from scipy.special import expit as sigmoid


def split_gates(a):
    """Split a stacked (..., 4H) array into its four (..., H) blocks, in order i, f, g, o."""
    return np.split(a, 4, axis=-1)


def lstm_cell_forward(x_t, h_prev, c_prev, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step.

    x_t (B, I), h_prev (B, H), c_prev (B, H), w_ih (4H, I), w_hh (4H, H), b_ih, b_hh (4H,) or None.
    Returns h_t (B, H), c_t (B, H) and gates (B, 4H) = [i, f, g, o].
    """
    a = x_t @ w_ih.T + h_prev @ w_hh.T
    if b_ih is not None:
        a = a + b_ih
    if b_hh is not None:
        a = a + b_hh
    a_i, a_f, a_g, a_o = split_gates(a)
    i = sigmoid(a_i)
    f = sigmoid(a_f)
    g = np.tanh(a_g)
    o = sigmoid(a_o)
    c_t = f * c_prev + i * g
    h_t = o * np.tanh(c_t)
    return h_t, c_t, np.concatenate([i, f, g, o], axis=-1)


def lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None):
    """Run the LSTM over a whole sequence.

    x (T, B, I), w_ih (4H, I), w_hh (4H, H), b_ih, b_hh (4H,) or None, h0, c0 (B, H) or None
    (zeros). Returns the tape (h, c, gates): h (T+1, B, H), c (T+1, B, H), gates (T, B, 4H).
    The output sequence is h[1:], the final state (h[-1], c[-1]).
    """
    T, B, _ = x.shape
    H = w_hh.shape[1]
    h = np.zeros((T + 1, B, H), dtype=x.dtype)
    c = np.zeros((T + 1, B, H), dtype=x.dtype)
    gates = np.zeros((T, B, 4 * H), dtype=x.dtype)
    if h0 is not None:
        h[0] = h0
    if c0 is not None:
        c[0] = c0
    for t in range(T):
        h[t + 1], c[t + 1], gates[t] = lstm_cell_forward(x[t], h[t], c[t], w_ih, w_hh, b_ih, b_hh)
    return h, c, gates


def lstm_cell_backward(dh, dc_next, c_prev, c_t, gates_t):
    """Back-propagate one step through the gates (SPEC.md section 1, "Backward").

    dh (B, H): gradient reaching h_t (dy_t + dh_next); dc_next (B, H): gradient reaching c_t
    from step t+1; c_prev, c_t (B, H); gates_t (B, 4H) = [i, f, g, o] of this step.
    Returns dA_t (B, 4H), the gradient of the gate pre-activations, and dc (B, H), the whole
    gradient reaching c_t. The caller forms dh_next = dA_t W_hh and dc_next = dc * f.
    """
    i, f, g, o = split_gates(gates_t)
    tc = np.tanh(c_t)
    do = dh * tc
    dc = dc_next + dh * o * (1 - tc**2)
    di = dc * g
    dg = dc * i
    df = dc * c_prev
    da_i = di * i * (1 - i)
    da_f = df * f * (1 - f)
    da_g = dg * (1 - g**2)
    da_o = do * o * (1 - o)
    return np.concatenate([da_i, da_f, da_g, da_o], axis=-1), dc


def lstm_backward_steps(w_hh, c, gates, dy=None, dh_n=None, dc_n=None):
    """The sequential part of back-propagation through time.

    w_hh (4H, H); c (T+1, B, H) and gates (T, B, 4H) from `lstm_forward`; dy (T, B, H),
    dh_n, dc_n (B, H), each None for zeros.
    Returns dA (T, B, 4H), the gate pre-activation gradients of every step, and dh0, dc0 (B, H).
    """
    T = gates.shape[0]
    dh_next = np.zeros_like(c[0]) if dh_n is None else np.array(dh_n, dtype=c.dtype)
    dc_next = np.zeros_like(c[0]) if dc_n is None else np.array(dc_n, dtype=c.dtype)
    dA = np.zeros_like(gates)
    for t in range(T - 1, -1, -1):
        dh = dh_next if dy is None else dy[t] + dh_next
        dA[t], dc = lstm_cell_backward(dh, dc_next, c[t], c[t + 1], gates[t])
        f = split_gates(gates[t])[1]
        dh_next = dA[t] @ w_hh
        dc_next = dc * f
    return dA, dh_next, dc_next


def lstm_weight_grads(x, h, w_ih, dA):
    """The parts of the gradient that are sums over all steps: one matrix product each.

    x (T, B, I), h (T+1, B, H) from `lstm_forward`, w_ih (4H, I), dA (T, B, 4H).
    Returns dx (T, B, I), dw_ih (4H, I), dw_hh (4H, H), db (4H,) (db_ih = db_hh = db).
    """
    T, B, I = x.shape
    H = h.shape[2]
    dA2 = dA.reshape(T * B, 4 * H)
    dx = (dA2 @ w_ih).reshape(T, B, I)
    dw_ih = dA2.T @ x.reshape(T * B, I)
    dw_hh = dA2.T @ h[:-1].reshape(T * B, H)
    db = dA2.sum(axis=0)
    return dx, dw_ih, dw_hh, db


def lstm_backward(x, w_ih, w_hh, h, c, gates, dy=None, dh_n=None, dc_n=None):
    """Every gradient of the LSTM: dx, dw_ih, dw_hh, db, dh0, dc0 (shapes as the inputs).

    x (T, B, I), w_ih (4H, I), w_hh (4H, H); h, c, gates: the tape from `lstm_forward`;
    dy (T, B, H), dh_n, dc_n (B, H) or None for zeros. db is the gradient of b_ih and of b_hh.
    """
    dA, dh0, dc0 = lstm_backward_steps(w_hh, c, gates, dy, dh_n, dc_n)
    dx, dw_ih, dw_hh, db = lstm_weight_grads(x, h, w_ih, dA)
    return dx, dw_ih, dw_hh, db, dh0, dc0
