"""Numba backward driver for every cell: the one walk back through time of
src/kernels/CONTRACT.md.

Mirrors fastlstm.reference.sequence.sequence_backward with the cells' pointwise math from
numba_cells.py; the twin of recurrent_backward.pyx, with the whole batch as one group, on one
thread. The walk's products of few rows are numba_matmul.rows_product on copies of w_hh^T and
w_hr^T (rows of contiguous values, the layout it reads), of WALK_BLAS_ROWS rows or more BLAS
calls (numba_matmul.gemm, on BLAS's threads), as are the products over all steps after it. The walk goes s = T-1 ... 0 over the running
rows, a prefix that grows as s goes down (a row joins at its last valid step, so its dh_n and
dc_n enter there); per step the output gradient dy is added, then the cell's pointwise pass
for the gate gradients and the product(s) that carry the gradient to h_{s-1}. Rows that do not
run at step s get zeros in dA (and dhp). After the walk, the input, weight and bias gradients
are products over all T*B rows at once (padded rows are zeros): dx = dA_in W_ih,
dw_ih = dA_in^T x, dw_hh = dA_rec^T h_prev (the GRU's n block: dm, against m for code 2).
Nothing is allocated in the walk. As in the forward driver, the step is written inside the
walk (one level of calls less for Numba to re-optimise).
"""
import numpy as np

from ._jit import jit
from .numba_cells import (GRU_LINEAR_BEFORE_RESET, GRU_RESET_BEFORE, LSTM, RNN_RELU,
                          gate_width, gru_backward_rows, gru_reset_backward_rows,
                          lstm_backward_rows, rnn_backward_rows)
from .numba_matmul import gemm, gemm_coefficients, rows_product, transposed
from .numba_recurrent_forward import check_buffers, check_lengths


#: the walk's products of at least this many rows are BLAS calls (on the BLAS library's
#: threads; it packs w for them all), fewer rows numba_matmul.rows_product (no packing)
WALK_BLAS_ROWS = 8


@jit
def _walk_product(a, ac, K, w, w_t, r0, out, nb, accumulate, one, zero):
    """out[:nb, :N] (+)= a[:nb, ac:ac+K] @ w[r0:r0+K]: w (R, N) as an 'A' view, w_t = w^T
    (N, R) C-contiguous, its copy; one, zero: gemm_coefficients."""
    if nb >= WALK_BLAS_ROWS:
        gemm(a[:nb, ac:ac + K], w[r0:r0 + K, :], out[:nb, :w.shape[1]], one,
             one if accumulate else zero)
    else:
        rows_product(a, ac, w_t, r0, out, r0 - r0, nb, K, accumulate)


@jit
def _backward(cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA, dhp, dx,
              dw_ih, dw_hh, db_ih, db_hh, work, w_hh_t, w_hr_t):
    """`backward` once its buffers' dtypes and memory are checked; checks the shapes."""
    T, B, Gs = gates.shape
    I = x.shape[2]
    Hout = h.shape[2]
    P, H = w_hr.shape
    G = gate_width(cell, H)
    has_dy = dy.shape[0] > 0
    gru = cell == GRU_LINEAR_BEFORE_RESET or cell == GRU_RESET_BEFORE
    linear_before_reset = cell == GRU_LINEAR_BEFORE_RESET
    if (T < 1 or B < 1 or H < 1 or I < 1 or cell < LSTM or cell > RNN_RELU
            or Hout != (P if P > 0 else H) or (P > 0 and cell != LSTM)
            or Gs != (H if cell > GRU_RESET_BEFORE else 4 * H)
            or w_ih.shape[0] != G or w_ih.shape[1] != I
            or w_hh.shape[0] != G or w_hh.shape[1] != Hout
            or (peep.shape[0] != 0 and (cell != LSTM or peep.shape[0] != 3))
            or peep.shape[1] != H or lengths.shape[0] != B
            or x.shape[0] != T or x.shape[1] != B
            or h.shape[0] != T + 1 or h.shape[1] != B
            or (cell == LSTM and (c.shape[0] != T + 1 or c.shape[1] != B or c.shape[2] != H
                                  or dc.shape[0] != B or dc.shape[1] != H))
            or dh.shape[0] != B or dh.shape[1] != Hout
            or dA.shape[0] != T or dA.shape[1] != B or dA.shape[2] != Gs
            or (P > 0 and (dhp.shape[0] != T or dhp.shape[1] != B or dhp.shape[2] != P))
            or dx.shape[0] != T or dx.shape[1] != B or dx.shape[2] != I
            or dw_ih.shape[0] != G or dw_ih.shape[1] != I
            or dw_hh.shape[0] != G or dw_hh.shape[1] != Hout
            or db_ih.shape[0] != G or db_hh.shape[0] != G
            or (has_dy and (dy.shape[0] != T or dy.shape[1] != B or dy.shape[2] != Hout))
            or work.shape[0] != B
            or ((cell == GRU_RESET_BEFORE or P > 0) and work.shape[1] < H)
            or w_hh_t.shape[0] != Hout or w_hh_t.shape[1] != G
            or w_hr_t.shape[0] != H or w_hr_t.shape[1] != P):
        raise ValueError("numba recurrent backward: inconsistent buffer shapes")
    check_lengths(lengths, T)
    one, zero_ = gemm_coefficients(x)
    zero = np.intp(0)           # constants as variables (numba_recurrent_forward.forward_team)
    add, put = zero == 0, zero != 0
    w_hh_a = w_hh[:, :]         # 'A' views: one compiled gemm
    w_hr_a = w_hr[:, :]
    # the walk
    nb = 0
    for t in range(T - 1, -1, -1):
        while nb < B and lengths[nb] > t:      # rows whose last valid step is t join
            nb += 1
        for b in range(nb, B):
            for j in range(Gs):
                dA[t, b, j] = 0
            for j in range(P):
                dhp[t, b, j] = 0
        if nb == 0:
            continue
        if has_dy:
            for b in range(nb):
                for j in range(Hout):
                    dh[b, j] += dy[t, b, j]
        # the cell's pointwise pass and the product(s) to h_{t-1}: dh (rows < nb) holds the
        # whole gradient reaching h_t, then the one reaching h_{t-1}
        g = gates[t]
        dA_t = dA[t]
        if cell == LSTM:
            if P > 0:
                for b in range(nb):
                    for j in range(Hout):
                        dhp[t, b, j] = dh[b, j]
                # the gradient reaching o * tanh(c_t) (nb, H) = dh (nb, P) @ W_hr
                _walk_product(dh, zero, P, w_hr_a, w_hr_t, zero, work, nb, put, one, zero_)
                lstm_backward_rows(g, peep, c[t], c[t + 1], work, dc, dA_t, nb)
            else:
                lstm_backward_rows(g, peep, c[t], c[t + 1], dh, dc, dA_t, nb)
            _walk_product(dA_t, zero, G, w_hh_a, w_hh_t, zero, dh, nb, put, one, zero_)  # dA W_hh
        elif gru:
            gru_backward_rows(g, h[t], dh, dA_t, linear_before_reset, nb)  # dh = dh * z
            if linear_before_reset:
                # dh += dm @ W_hn (and [da_r, da_z] @ W_hh[:2H] below)
                _walk_product(dA_t, 3 * H, H, w_hh_a, w_hh_t, 2 * H, dh, nb, add, one, zero_)
            else:
                # work = da_n @ W_hn: the gradient of m = r * h; then da_r, and dh += dm * r
                _walk_product(dA_t, 2 * H, H, w_hh_a, w_hh_t, 2 * H, work, nb, put, one, zero_)
                gru_reset_backward_rows(g, h[t], work, dh, dA_t, nb)
            _walk_product(dA_t, zero, 2 * H, w_hh_a, w_hh_t, zero, dh, nb, add, one, zero_)
        else:
            rnn_backward_rows(g, dh, dA_t, cell == RNN_RELU, nb)
            _walk_product(dA_t, zero, H, w_hh_a, w_hh_t, zero, dh, nb, put, one, zero_)  # dA W_hh
    # the products over all steps; dA_in = dA[..., :G]; dA_rec = dA_in, except for the GRU's
    # n block: dm (slot 3), whose input is h_prev (code 1) or m (gates slot 3, code 2)
    TB = T * B
    dA2 = dA.reshape(TB, Gs)
    x2 = x.reshape(TB, I)[:, :]
    h2 = h[:T].reshape(TB, Hout)[:, :]
    gemm(dA2[:, :G], w_ih[:, :], dx.reshape(TB, I)[:, :], one, zero_)   # dx = dA_in W_ih
    gemm(dA2[:, :G].T, x2, dw_ih[:, :], one, zero_)                      # dw_ih = dA_in^T x
    for j in range(G):
        db_ih[j] = 0
    for r in range(TB):
        row = dA2[r]
        for j in range(G):
            db_ih[j] += row[j]
    if gru:
        gemm(dA2[:, :2 * H].T, h2, dw_hh[:2 * H, :], one, zero_)
        if cell == GRU_RESET_BEFORE:
            m2 = gates.reshape(TB, Gs)[:, 3 * H:4 * H]
            gemm(dA2[:, 3 * H:4 * H].T, m2, dw_hh[2 * H:3 * H, :], one, zero_)
        else:
            gemm(dA2[:, 3 * H:4 * H].T, h2, dw_hh[2 * H:3 * H, :], one, zero_)
        for j in range(2 * H):
            db_hh[j] = db_ih[j]
        for j in range(2 * H, 3 * H):
            db_hh[j] = 0
        for r in range(TB):
            row = dA2[r]
            for j in range(H):
                db_hh[2 * H + j] += row[3 * H + j]
    else:
        gemm(dA2[:, :].T, h2, dw_hh[:, :], one, zero_)                   # dA^T h_prev
        for j in range(G):
            db_hh[j] = db_ih[j]


def backward(cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA, dhp, dx,
             dw_ih, dw_hh, db_ih, db_hh, work):
    """Back-propagate `cell` (codes as in forward) through T >= 1 steps of B >= 1 rows;
    buffers as in src/kernels/CONTRACT.md (without n_threads: the batch is one group).

    x, w_ih, w_hh, w_hr, peep, lengths  IN as in forward; h (T+1, B, Hout), c (T+1, B, H)
    (LSTM; else (0, B, H)), gates (T, B, Gs)  IN: the tape; dy (T, B, Hout) or (0, B, Hout) IN;
    dh (B, Hout), dc (B, H) (LSTM; else (0, H))  IN/OUT: dh_n, dc_n in, dh_0, dc_0 out;
    dA (T, B, Gs), dhp (T, B, P) or (0, B, P), dx (T, B, I), dw_ih (G, I), dw_hh (G, Hout),
    db_ih, db_hh (G,)  OUT; work (B, W) scratch (W >= H for the GRU code 2 and a projection
    LSTM). The walk's products read w_hh^T (Hout, G) and w_hr^T (H, P), copies made here.
    """
    check_buffers("numba recurrent backward",
                  (x, w_ih, w_hh, w_hr, peep, h, c, gates, dy, dh, dc, dA, dhp, dx, dw_ih, dw_hh,
                   db_ih, db_hh, work),
                  (dh, dc, dA, dhp, dx, dw_ih, dw_hh, db_ih, db_hh, work), lengths)
    _backward(int(cell), x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA, dhp,
              dx, dw_ih, dw_hh, db_ih, db_hh, work, transposed(w_hh), transposed(w_hr))
