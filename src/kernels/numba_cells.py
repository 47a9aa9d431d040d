"""The pointwise math of every cell for the Numba drivers (numba_recurrent_forward.py,
numba_recurrent_backward.py): the twin of _lstm_cell.pxd, _gru_cell.pxd and _rnn_cell.pxd.

Each function works on the `nb` active rows of one step (rows 0 .. nb-1 of its 2-D arguments,
which may have more rows; the others are not touched) and mirrors one function of
fastlstm.reference around the matrix products, which the drivers do. Cell codes and buffer
layouts are those of src/kernels/CONTRACT.md: gates rows are LSTM [i, f, g, o], GRU
[r, z, n, m], RNN h_t. H is the hidden size, Gs the saved gate width (4H, or H for the RNN).

Every loop is a plain pass over contiguous memory with the vectorisable activations of
numba_activations.py, so LLVM vectorises it. A new cell adds only its pointwise math here.
"""
import numpy as np
from numba import types
from numba.extending import overload

from ._jit import jit
from .numba_activations import one_minus, sigmoid, tanh_

#: cell codes (CONTRACT.md)
LSTM = 0
GRU_LINEAR_BEFORE_RESET = 1
GRU_RESET_BEFORE = 2
RNN_TANH = 3
RNN_RELU = 4


def zero_of(x):
    """0 in x's own float type; compiled per dtype inside Numba code only."""
    raise NotImplementedError("zero_of runs inside Numba-compiled code")


@overload(zero_of, inline="always")
def _zero_of_impl(x):
    if isinstance(x, types.Float):
        zero = np.float32(0.0) if x == types.float32 else 0.0

        def zero_of_impl(x):
            return zero

        return zero_of_impl
    return None


@jit
def gate_width(cell, H):
    """G, the rows of w_ih and w_hh: 4H (LSTM), 3H (GRU), H (RNN)."""
    if cell == LSTM:
        return 4 * H
    if cell == GRU_LINEAR_BEFORE_RESET or cell == GRU_RESET_BEFORE:
        return 3 * H
    return H


# --------------------------------------------------------------------------------------------
# LSTM


@jit
def lstm_forward_rows(g, bias, peep, c_prev, c_next, out, nb):
    """Mirrors reference.lstm.lstm_cell_forward after `a` (its products).

    g (>= nb, 4H) IN/OUT: x_t W_ih^T + h_{t-1} W_hh^T (no bias) on entry, [i, f, g, o] on
    return; bias (4H,) = b_ih + b_hh; peep (3, H) = [p_i, p_f, p_o] or (0, H) for none (i, f
    look at c_prev, o at the new c); c_prev (>= nb, H) IN; c_next (>= nb, H) OUT (another
    buffer); out (>= nb, H) OUT: o * tanh(c_t), which is h_t, or what the projection multiplies.
    """
    H = c_prev.shape[1]
    has_peep = peep.shape[0] > 0
    for b in range(nb):
        row = g[b]
        cp = c_prev[b]
        cn = c_next[b]
        hn = out[b]
        if has_peep:                                    # i, f look at c_{t-1}
            for j in range(H):
                row[j] = row[j] + peep[0, j] * cp[j]
                row[H + j] = row[H + j] + peep[1, j] * cp[j]
        for j in range(2 * H):                          # i, f
            row[j] = sigmoid(row[j] + bias[j])
        for j in range(2 * H, 3 * H):                   # g
            row[j] = tanh_(row[j] + bias[j])
        for j in range(H):
            cn[j] = row[H + j] * cp[j] + row[j] * row[2 * H + j]
        if has_peep:                                    # o looks at c_t
            for j in range(H):
                row[3 * H + j] = row[3 * H + j] + peep[2, j] * cn[j]
        for j in range(3 * H, 4 * H):                   # o
            row[j] = sigmoid(row[j] + bias[j])
        for j in range(H):                              # a loop of its own: it vectorises
            hn[j] = row[3 * H + j] * tanh_(cn[j])


@jit
def lstm_backward_rows(g, peep, c_prev, c_t, dh, dc, dA, nb):
    """Mirrors reference.lstm.lstm_cell_backward between its products (after dh @ w_hr,
    before dA @ w_hh).

    g (>= nb, 4H) IN: [i, f, g, o]; peep (3, H) or (0, H); c_prev, c_t (>= nb, H) IN;
    dh (>= nb, H) IN: the whole gradient reaching o * tanh(c_t); dc (>= nb, H) IN/OUT: the
    gradient reaching c_t from step t+1 on entry, the one reaching c_{t-1} on return;
    dA (>= nb, 4H) OUT: [da_i, da_f, da_g, da_o].
    """
    H = c_t.shape[1]
    has_peep = peep.shape[0] > 0
    for b in range(nb):
        gate = g[b]
        da = dA[b]
        dcb = dc[b]
        cp = c_prev[b]
        ct = c_t[b]
        dhb = dh[b]
        for j in range(H):                              # tanh(c_t), parked in da_o's place
            da[3 * H + j] = tanh_(ct[j])
        for j in range(H):
            i = gate[j]
            f = gate[H + j]
            gg = gate[2 * H + j]
            o = gate[3 * H + j]
            tc = da[3 * H + j]
            dh_t = dhb[j]
            da_o = dh_t * tc * o * one_minus(o)
            dc_t = dcb[j] + dh_t * o * one_minus(tc * tc)
            if has_peep:
                dc_t = dc_t + da_o * peep[2, j]
            da[j] = dc_t * gg * i * one_minus(i)
            da[H + j] = dc_t * cp[j] * f * one_minus(f)
            da[2 * H + j] = dc_t * i * one_minus(gg * gg)
            da[3 * H + j] = da_o
            dcb[j] = dc_t * f
        if has_peep:
            for j in range(H):
                dcb[j] = dcb[j] + da[j] * peep[0, j] + da[H + j] * peep[1, j]


# --------------------------------------------------------------------------------------------
# GRU


@jit
def gru_forward_rows(g, rec, bias0, bias1, h_prev, h_next, nb):
    """Linear before reset (code 1); mirrors reference.gru.gru_cell_forward with
    linear_before_reset=True after its products.

    g (>= nb, 4H) IN/OUT: x_t W_ih^T in [0, 3H) on entry, [r, z, n, m] on return;
    rec (>= nb, >= 3H) IN: h_{t-1} W_hh^T in [0, 3H); bias0 (3H,) = [b_ir + b_hr, b_iz + b_hz,
    b_in]; bias1 (3H,) whose n block is b_hn; h_prev (>= nb, H) IN; h_next (>= nb, H) OUT.
    """
    H = h_prev.shape[1]
    for b in range(nb):
        row = g[b]
        rr = rec[b]
        hp = h_prev[b]
        hn = h_next[b]
        for j in range(2 * H):                          # r, z
            row[j] = sigmoid(row[j] + rr[j] + bias0[j])
        for j in range(H):                              # m = h W_hn^T + b_hn
            row[3 * H + j] = rr[2 * H + j] + bias1[2 * H + j]
        for j in range(H):                              # n
            row[2 * H + j] = tanh_(row[2 * H + j] + bias0[2 * H + j] + row[j] * row[3 * H + j])
        for j in range(H):
            hn[j] = one_minus(row[H + j]) * row[2 * H + j] + row[H + j] * hp[j]


@jit
def gru_reset_rows(g, rec, bias0, h_prev, nb):
    """Reset before the product (code 2), first part; mirrors reference.gru.gru_cell_forward
    with linear_before_reset=False up to m = r * h.

    g (>= nb, 4H) IN/OUT: x_t W_ih^T in [0, 3H) on entry; r, z written to [0, 2H) and
    m = r * h_{t-1} to [3H, 4H); rec (>= nb, >= 2H) IN: h_{t-1} [W_hr; W_hz]^T in [0, 2H);
    bias0 (3H,) = b_ih + b_hh; h_prev (>= nb, H) IN.
    """
    H = h_prev.shape[1]
    for b in range(nb):
        row = g[b]
        rr = rec[b]
        hp = h_prev[b]
        for j in range(2 * H):
            row[j] = sigmoid(row[j] + rr[j] + bias0[j])
        for j in range(H):
            row[3 * H + j] = row[j] * hp[j]


@jit
def gru_new_rows(g, rec, bias0, h_prev, h_next, nb):
    """Reset before the product (code 2), second part: n and h_t.

    g (>= nb, 4H) IN/OUT: as gru_reset_rows left it; n written to [2H, 3H);
    rec (>= nb, >= 3H) IN: (r * h_{t-1}) W_hn^T in [2H, 3H); bias0 (3H,) = b_ih + b_hh;
    h_prev (>= nb, H) IN; h_next (>= nb, H) OUT: (1 - z) n + z h_{t-1}.
    """
    H = h_prev.shape[1]
    for b in range(nb):
        row = g[b]
        rr = rec[b]
        hp = h_prev[b]
        hn = h_next[b]
        for j in range(H):
            row[2 * H + j] = tanh_(row[2 * H + j] + rr[2 * H + j] + bias0[2 * H + j])
        for j in range(H):
            hn[j] = one_minus(row[H + j]) * row[2 * H + j] + row[H + j] * hp[j]


@jit
def gru_backward_rows(g, h_prev, dh, dA, linear_before_reset, nb):
    """Mirrors reference.gru.gru_cell_backward before its products.

    g (>= nb, 4H) IN: [r, z, n, m]; h_prev (>= nb, H) IN; dh (>= nb, H) IN/OUT: the whole
    gradient reaching h_t on entry, its direct part dh * z on return; dA (>= nb, 4H) OUT:
    da_z, da_n, and for linear before reset da_r and dm = da_n * r; for reset before,
    dm = da_n (da_r needs the product da_n W_hn: gru_reset_backward_rows).
    """
    H = h_prev.shape[1]
    for b in range(nb):
        row = g[b]
        da = dA[b]
        hp = h_prev[b]
        dhb = dh[b]
        for j in range(H):
            r = row[j]
            z = row[H + j]
            n = row[2 * H + j]
            dh_t = dhb[j]
            da_n = dh_t * one_minus(z) * one_minus(n * n)
            da[H + j] = dh_t * (hp[j] - n) * z * one_minus(z)
            da[2 * H + j] = da_n
            if linear_before_reset:
                da[j] = da_n * row[3 * H + j] * r * one_minus(r)
                da[3 * H + j] = da_n * r
            else:
                da[3 * H + j] = da_n
            dhb[j] = dh_t * z


@jit
def gru_reset_backward_rows(g, h_prev, dm, dh, dA, nb):
    """Reset before the product (code 2), after the product dm = da_n W_hn (the gradient of
    m = r * h_{t-1}); mirrors the rest of reference.gru.gru_cell_backward's else branch.

    g (>= nb, 4H) IN; h_prev (>= nb, H) IN; dm (>= nb, H) IN; dh (>= nb, H) IN/OUT: dm * r
    added; dA (>= nb, 4H) OUT: da_r into [0, H).
    """
    H = h_prev.shape[1]
    for b in range(nb):
        row = g[b]
        da = dA[b]
        hp = h_prev[b]
        dmb = dm[b]
        dhb = dh[b]
        for j in range(H):
            r = row[j]
            da[j] = dmb[j] * hp[j] * r * one_minus(r)
            dhb[j] = dhb[j] + dmb[j] * r


# --------------------------------------------------------------------------------------------
# RNN


@jit
def rnn_forward_rows(g, bias, h_next, relu, nb):
    """Mirrors reference.rnn.rnn_cell_forward after its products.

    g (>= nb, H) IN/OUT: x_t W_ih^T + h_{t-1} W_hh^T on entry, h_t on return; bias (H,) =
    b_ih + b_hh; h_next (>= nb, H) OUT: h_t; relu: relu (code 4) or tanh (code 3).
    """
    H = h_next.shape[1]
    for b in range(nb):
        row = g[b]
        hn = h_next[b]
        if relu:
            for j in range(H):
                a = row[j] + bias[j]
                zero = zero_of(a)
                a = zero if a < zero else a             # a select: NaN stays NaN (np.maximum)
                row[j] = a
                hn[j] = a
        else:
            for j in range(H):
                a = tanh_(row[j] + bias[j])
                row[j] = a
                hn[j] = a


@jit
def rnn_backward_rows(g, dh, dA, relu, nb):
    """Mirrors reference.rnn.rnn_cell_backward before its products (relu's derivative at 0
    is 0).

    g (>= nb, H) IN: h_t; dh (>= nb, H) IN: the whole gradient reaching h_t; dA (>= nb, H) OUT.
    """
    H = dh.shape[1]
    for b in range(nb):
        row = g[b]
        da = dA[b]
        dhb = dh[b]
        if relu:
            for j in range(H):
                zero = zero_of(row[j])
                da[j] = dhb[j] * (one_minus(zero) if row[j] > zero else zero)
        else:
            for j in range(H):
                da[j] = dhb[j] * one_minus(row[j] * row[j])
