"""Numba LSTM forward kernel. Mirrors fastlstm.reference.lstm_forward and is the twin of the
Cython kernel lstm_forward.pyx (same arguments, same contract)."""
import numpy as np

from ._jit import jit


@jit
def _gates_and_state(gates, bias, c_prev, c_next, h_next):
    """The fused pointwise pass of one step; mirrors reference.lstm_cell_forward after `a`.

    gates (B, 4H) IN/OUT: pre-activations without bias on entry, [i, f, g, o] on return;
    bias (4H,); c_prev (B, H) IN; c_next (B, H) OUT (may be c_prev); h_next (B, H) OUT.
    """
    B, H = c_prev.shape
    for b in range(B):
        row = gates[b]
        for j in range(H):
            i = 1.0 / (1.0 + np.exp(-(row[j] + bias[j])))
            f = 1.0 / (1.0 + np.exp(-(row[H + j] + bias[H + j])))
            g = np.tanh(row[2 * H + j] + bias[2 * H + j])
            o = 1.0 / (1.0 + np.exp(-(row[3 * H + j] + bias[3 * H + j])))
            row[j] = i
            row[H + j] = f
            row[2 * H + j] = g
            row[3 * H + j] = o
            c = f * c_prev[b, j] + i * g
            c_next[b, j] = c
            h_next[b, j] = o * np.tanh(c)


@jit
def lstm_forward(x, w_ih_t, w_hh_t, bias, h, c, gates, rec):
    """Run the LSTM over T >= 1 steps, B >= 1 rows, I >= 1 inputs, H >= 1 hidden units.

    x      (T, B, I)    IN
    w_ih_t (I, 4H)      IN   w_ih transposed (any contiguous layout, e.g. w_ih.T)
    w_hh_t (H, 4H)      IN   w_hh transposed
    bias   (4H,)        IN   b_ih + b_hh
    h      (T+1, B, H)  IN/OUT  h[0] = h_0 on entry; h[1:] receives h_1 ... h_T
    c      (T+1, B, H) or (1, B, H)  IN/OUT  as in the Cython kernel
    gates  (K, B, 4H)   OUT/scratch  as in the Cython kernel
    rec    (B, 4H)      scratch  for the recurrent product h_{t-1} W_hh^T
    """
    T, B, I = x.shape
    K = gates.shape[0]
    H = h.shape[2]
    x2 = x.reshape(T * B, I)
    gates2 = gates.reshape(K * B, 4 * H)
    keep_c = c.shape[0] > 1
    t0 = 0
    while t0 < T:
        k = min(K, T - t0)
        np.dot(x2[t0 * B:(t0 + k) * B], w_ih_t, gates2[:k * B])
        for s in range(k):
            t = t0 + s
            np.dot(h[t], w_hh_t, rec)
            gates[s] += rec
            _gates_and_state(gates[s], bias, c[t if keep_c else 0], c[t + 1 if keep_c else 0],
                             h[t + 1])
        t0 += k
