"""Numba LSTM forward kernel. Mirrors fastlstm.reference.lstm_forward and is the twin of the
Cython kernel lstm_forward.pyx: the same buffers and the same contract (the caller allocates,
nothing is allocated in the time loop), but the matrix products are BLAS calls (np.dot) on the
transposed weights, and the batch runs as one group."""
import numpy as np

from ._jit import jit
from .numba_activations import sigmoid, tanh_


@jit
def _gates_and_state(gates, rec, bias, c_prev, c_next, h_next):
    """The fused pointwise pass of one step; mirrors reference.lstm_cell_forward after `a`.

    gates (B, 4H) IN/OUT: input projection x_t W_ih^T on entry, [i, f, g, o] on return;
    rec (B, 4H) IN: the recurrent product h_{t-1} W_hh^T; bias (4H,); c_prev (B, H) IN; c_next (B, H) OUT (a different buffer); h_next (B, H) OUT.
    Each loop is a plain pass over contiguous memory, so LLVM vectorises it.
    """
    B, H = c_prev.shape
    for b in range(B):
        row = gates[b]
        rec_row = rec[b]
        for j in range(2 * H):              # i, f
            row[j] = sigmoid(row[j] + rec_row[j] + bias[j])
        for j in range(2 * H, 3 * H):       # g
            row[j] = tanh_(row[j] + rec_row[j] + bias[j])
        for j in range(3 * H, 4 * H):       # o
            row[j] = sigmoid(row[j] + rec_row[j] + bias[j])
        for j in range(H):
            c = row[H + j] * c_prev[b, j] + row[j] * row[2 * H + j]
            c_next[b, j] = c
            h_next[b, j] = row[3 * H + j] * tanh_(c)


@jit
def lstm_forward(x, w_ih_t, w_hh_t, bias, h, c, gates, rec):
    """Run the LSTM over T >= 1 steps, B >= 1 rows, I >= 1 inputs, H >= 1 hidden units.

    x      (T, B, I)    IN
    w_ih_t (I, 4H)      IN   w_ih transposed (any contiguous layout, e.g. w_ih.T)
    w_hh_t (H, 4H)      IN   w_hh transposed
    bias   (4H,)        IN   b_ih + b_hh
    h      (T+1, B, H)  IN/OUT  h[0] = h_0 on entry; h[1:] receives h_1 ... h_T
    c      (T+1, B, H) or (2, B, H)  IN/OUT  as in the Cython kernel
    gates  (K, B, 4H)   OUT/scratch  as in the Cython kernel
    rec    (B, 4H)      scratch  for the recurrent product h_{t-1} W_hh^T
    """
    T, B, I = x.shape
    K = gates.shape[0]
    H = h.shape[2]
    x2 = x.reshape(T * B, I)
    gates2 = gates.reshape(K * B, 4 * H)
    keep_c = c.shape[0] == T + 1
    t0 = 0
    while t0 < T:
        k = min(K, T - t0)
        np.dot(x2[t0 * B:(t0 + k) * B], w_ih_t, gates2[:k * B])
        for s in range(k):
            t = t0 + s
            np.dot(h[t], w_hh_t, rec)
            _gates_and_state(gates[s], rec, bias, c[t if keep_c else t % 2],
                             c[t + 1 if keep_c else (t + 1) % 2], h[t + 1])
        t0 += k
