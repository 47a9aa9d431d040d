"""The NumPy reference: clean, minimal, written to be read. The yardstick for every backend.

One file per cell, each a forward step and a backward step written line by line from
../shared/SPEC.md: lstm.py (section 1, peepholes and projection of section 4), gru.py
(section 2, both variants), rnn.py (section 3). sequence.py is the one time loop, with
variable lengths and direction (section 7). All of it works on the time-major layout
(T, B, ...); the public API (fastlstm._api) handles batch_first and unbatched input.

The functions below keep the single-layer LSTM's original interface (arrays in, arrays out):

    h      (T+1, B, H)   h[0] = h_0, h[t] = h_t; the output y is h[1:]
    c      (T+1, B, H)   c[0] = c_0, c[t] = c_t
    gates  (T, B, 4H)    gates[t-1] = [i, f, g, o] of step t (activations)
"""
import numpy as np

from ._math import sigmoid
from ._math import split_gates as _split
from .gru import gru_cell_backward, gru_cell_forward
from .lstm import lstm_cell_backward, lstm_cell_forward
from .rnn import NONLINEARITIES, rnn_cell_backward, rnn_cell_forward
from .sequence import CELLS, SequenceTape, reverse_padded, sequence_backward, sequence_forward


def split_gates(a, n=4):
    """Split a stacked (..., n*H) array into its n blocks (default 4: i, f, g, o)."""
    return _split(a, n)


def lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None):
    """Run the LSTM over x (T, B, I) from h0, c0 (B, H) (None: zeros).
    Returns the tape (h, c, gates): h, c (T+1, B, H), gates (T, B, 4H)."""
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


def lstm_backward(x, w_ih, w_hh, h, c, gates, dy=None, dh_n=None, dc_n=None):
    """Every gradient of lstm_forward: dx, dw_ih, dw_hh, db, dh0, dc0 (shapes as the inputs;
    db is the gradient of b_ih and of b_hh). dy (T, B, H), dh_n, dc_n (B, H) or None."""
    T = x.shape[0]
    dh_next = np.zeros_like(h[0]) if dh_n is None else np.array(dh_n, dtype=x.dtype)
    dc_next = np.zeros_like(c[0]) if dc_n is None else np.array(dc_n, dtype=x.dtype)
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db = np.zeros(w_hh.shape[0], dtype=x.dtype)
    for t in range(T - 1, -1, -1):
        dh = dh_next if dy is None else dy[t] + dh_next
        dx[t], dh_next, dc_next, g = lstm_cell_backward(dh, dc_next, x[t], h[t], c[t], c[t + 1],
                                                        gates[t], w_ih, w_hh)
        dw_ih += g["w_ih"]
        dw_hh += g["w_hh"]
        db += g["b_ih"]
    return dx, dw_ih, dw_hh, db, dh_next, dc_next


__all__ = ["CELLS", "NONLINEARITIES", "SequenceTape", "gru_cell_backward", "gru_cell_forward",
           "lstm_backward", "lstm_cell_backward", "lstm_cell_forward", "lstm_forward",
           "reverse_padded", "rnn_cell_backward", "rnn_cell_forward", "sequence_backward",
           "sequence_forward", "sigmoid", "split_gates"]
