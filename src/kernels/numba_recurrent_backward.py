"""Numba backward driver for every cell: the one walk back through time of
src/kernels/CONTRACT.md.

Mirrors fastlstm.reference.sequence.sequence_backward with the cells' pointwise math from
numba_cells.py; the twin of recurrent_backward.pyx. The batch is one group of rows; a large call
is shared by a team of threads (numba_team.py) in the two decompositions of the forward, by
its rule (numba_recurrent_forward.by_rows):

- the column split, for few rows: every thread walks every row, doing the pointwise pass of
  its units (share: chunks of 16, every gate of them) and its columns of the product to
  h_{s-1} (of H_out: its units, or its share of the projection's outputs). A barrier
  publishes dA before the products, which read all of it (and, for a projection LSTM, dh
  before the product by W_hr; for the reset-before GRU, da_r before the last product). Each
  thread's pointwise pass reads only the columns of dh it wrote itself. The walk gives the
  same bits on any number of threads.
- groups of rows: each thread walks its rows (share_rows_by_lengths: blocks with equal shares
  of the steps) back through time alone, with no barrier.

The walk goes s = T-1 ... 0 over the running rows, a prefix that grows as s goes down (a row
joins at its last valid step, so its dh_n and dc_n enter there); per step the output gradient
dy is added, then the cell's pointwise pass for the gate gradients and the product(s) that
carry the gradient to h_{s-1}. Rows that do not run at step s get zeros in dA (and dhp).
After the walk, a barrier; the input, weight and bias gradients are then products over the
rows that ran, all steps at once (the padded rows, whose dA is zero, are left out):
dx = dA_in W_ih (zeros for the padded rows; skipped when dx is (0, B, I)), dw_ih = dA_in^T x,
dw_hh = dA_rec^T h_prev (the GRU's n block: dm, against m for code 2), shared by the team by
rows of dx and by gate rows of dW.

No BLAS: every product is numba_panels.panel_product_k, on panels of the weights themselves
(pack_transposed, made per call) and of x, h_prev (and m) that the team packs after the walk
(pack_rows), against dA and its transpose (numba_transpose.transpose_rows). BLAS's own worker
threads keep spinning for a while after each call, and two of them beside a team on two cores
starved its next forward (a training step at 100x4x256x256 took 84 ms for its forward instead
of 4.4). Nothing is allocated in the walk.
"""
import numpy as np

from ._jit import jit
from .numba_cells import (GRU_LINEAR_BEFORE_RESET, GRU_RESET_BEFORE, LSTM, RNN_RELU,
                          gate_width, gru_backward_rows, gru_reset_backward_rows,
                          lstm_backward_rows, rnn_backward_rows, unowned, zero_of)
from .numba_panels import PANEL, aligned_empty, pack_rows, pack_transposed, panel_product_k
from .numba_transpose import transpose_rows
from .numba_recurrent_forward import (active_rows, by_rows as rows_rule, check_buffers,
                                      check_lengths, share, share_rows,
                                      share_rows_by_lengths, team_size)
from .numba_team import barrier, run_team


@jit
def _check_shapes(cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA, dhp,
                  dx, dw_ih, dw_hh, db_ih, db_hh, work, hh_p, hr_p, ih_p, dA_t_all, x_p,
                  h_p, m_p, valid):
    """Raises ValueError unless the buffers' shapes and the lengths fit one backward call."""
    T, B, Gs = gates.shape
    I = x.shape[2]
    Hout = h.shape[2]
    P, H = w_hr.shape
    G = gate_width(cell, H)
    has_dy = dy.shape[0] > 0
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
            or (dx.shape[0] != T and dx.shape[0] != 0) or dx.shape[1] != B
            or dx.shape[2] != I
            or dw_ih.shape[0] != G or dw_ih.shape[1] != I
            or dw_hh.shape[0] != G or dw_hh.shape[1] != Hout
            or db_ih.shape[0] != G or db_hh.shape[0] != G
            or (has_dy and (dy.shape[0] != T or dy.shape[1] != B or dy.shape[2] != Hout))
            or work.shape[0] != B
            or ((cell == GRU_RESET_BEFORE or P > 0) and work.shape[1] < H)
            or not _panels_of(hh_p, Hout, G) or not _panels_of(hr_p, H, P)
            or not _panels_of(ih_p, I, G)
            or dA_t_all.shape[0] != Gs or dA_t_all.shape[1] != T * B
            or not _panels_of(x_p, I, T * B) or not _panels_of(h_p, Hout, T * B)
            or not _panels_of(m_p, H if cell == GRU_RESET_BEFORE else 0, T * B)
            or valid.shape[0] > T * B):
        raise ValueError("numba recurrent backward: inconsistent buffer shapes")
    check_lengths(lengths, T)


@jit
def _panels_of(panels, n, depth):
    """Whether panels (4-D) has the shape of pack_transposed of a (depth, n) array."""
    return (panels.shape[0] == 1 and panels.shape[1] == (n + PANEL - 1) // PANEL
            and panels.shape[2] == depth and panels.shape[3] == PANEL)


@jit
def _input_gradient(dA2, ih_p, dx2, lengths, r0, r1, B):
    """dx rows r0 <= r < r1 of the T*B (r = t*B + b): dA_in W_ih for the rows that run at their
    step (b < the step's count of running rows, a prefix as lengths never increase), one
    product per run of such rows (across steps where every row runs, so that a padded batch
    is one product); zeros for the others (their dA is zero)."""
    zero = np.intp(0)
    put = zero != 0
    G = ih_p.shape[2]
    I = dx2.shape[1]
    r = r0
    while r < r1:
        s = r       # the end of the run of running rows that starts at r
        while s < r1:
            t = s // B
            end = min(r1, (t + 1) * B)
            run_end = max(s, min(end, t * B + active_rows(lengths, B, t)))
            if run_end < end:
                s = run_end
                break
            s = end
        if s > r:
            panel_product_k(dA2[r:s], zero, ih_p, zero, zero, I, zero, G, dx2[r:s], zero, s - r,
                            put)
        if s < r1:  # the padded rows from s to the end of its step
            end = min(r1, (s // B + 1) * B)
            for q in range(s, end):
                for i in range(I):
                    dx2[q, i] = 0
            r = end
        else:
            r = s


@jit
def backward_team(cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA, dhp,
                  dx, dw_ih, dw_hh, db_ih, db_hh, work, hh_p, hr_p, ih_p, dA_t_all, x_p,
                  h_p, m_p, valid, by_rows, tid, team, sync):
    """The backward for thread tid of a team of `team` (1: the whole call on one thread), its
    shapes checked (_check_shapes): the walk (by_rows: of the rows of
    share_rows_by_lengths(lengths, tid, team); else of every row, for the units of
    share(H, tid, team), the module docstring's column split); a barrier; its columns of the
    transpose dA^T and panels of x, h_prev (m) of the rows that run (valid), and its rows of
    dx; a barrier; its gate rows of dw_ih, dw_hh, db_ih, db_hh, products over the V running
    rows only (the padded ones add zeros).

    hh_p, hr_p, ih_p: the panels of w_hh, w_hr, w_ih themselves (pack_transposed: the right
    sides of dA W_hh, dh W_hr, dA W_ih); dA_t_all (Gs, T*B) and the panels x_p, h_p, m_p
    (pack_transposed's shape for (T*B, I), (T*B, Hout), (T*B, H or 0)): scratch (the first V
    columns, or depths, used); valid (V,) intp: the rows t*B + b of the steps that run
    (b < lengths count at t), in increasing order.
    """
    # views that hold no reference (numba_cells.unowned; the caller holds the arrays): the
    # slices and calls of every step leave the reference counts alone (atomics)
    x, w_hr, peep, lengths = unowned(x), unowned(w_hr), unowned(peep), unowned(lengths)
    h, c, gates, dy, dh, dc = (unowned(h), unowned(c), unowned(gates), unowned(dy), unowned(dh),
                               unowned(dc))
    dA, dhp, dx = unowned(dA), unowned(dhp), unowned(dx)
    dw_ih, dw_hh = unowned(dw_ih), unowned(dw_hh)
    db_ih, db_hh, work, valid = unowned(db_ih), unowned(db_hh), unowned(work), unowned(valid)
    hh_p, hr_p, ih_p = unowned(hh_p), unowned(hr_p), unowned(ih_p)
    dA_t_all, x_p, h_p, m_p = unowned(dA_t_all), unowned(x_p), unowned(h_p), unowned(m_p)
    T, B, Gs = gates.shape
    Hout = h.shape[2]
    P, H = w_hr.shape
    G = gate_width(cell, H)
    I = x.shape[2]
    TB = T * B
    has_dy = dy.shape[0] > 0
    gru = cell == GRU_LINEAR_BEFORE_RESET or cell == GRU_RESET_BEFORE
    linear_before_reset = cell == GRU_LINEAR_BEFORE_RESET
    zero = np.intp(0)           # constants as variables (numba_recurrent_forward.forward_team)
    add, put = zero == 0, zero != 0
    if by_rows:     # this thread's rows, every unit; no barrier in the walk
        b0, n_rows = share_rows_by_lengths(lengths, tid, team)
        u0, n, p0, pn, meet = 0, H, 0, P, 1
    else:           # every row; this thread's units (and outputs of W_hr), a barrier per phase
        b0, n_rows = 0, B
        u0, n = share(H, tid, team)
        p0, pn = share(P, tid, team)
        meet = team
    q0, qn = (p0, pn) if P > 0 else (u0, n)     # this thread's columns of dh (of H_out)
    b1 = b0 + n_rows
    lens = lengths[b0:b1]
    dh_g = dh[b0:b1]
    dc_g = dc[b0:b1]
    work_g = work[b0:b1]
    pq, pu = q0 // PANEL, u0 // PANEL     # the panels of this thread's columns of dh, of H
    n_slots = Gs // H
    # the walk
    nb = 0
    for t in range(T - 1, -1, -1):
        while nb < n_rows and lens[nb] > t:    # rows whose last valid step is t join
            nb += 1
        for b in range(b0 + nb, b1):
            for q in range(n_slots):
                for j in range(u0, u0 + n):
                    dA[t, b, q * H + j] = 0
            for j in range(p0, p0 + pn):
                dhp[t, b, j] = 0
        if nb == 0:
            continue
        if has_dy:
            for b in range(nb):
                for j in range(q0, q0 + qn):
                    dh_g[b, j] += dy[t, b0 + b, j]
        # the cell's pointwise pass and the product(s) to h_{t-1}: dh (rows < nb) holds the
        # whole gradient reaching h_t, then the one reaching h_{t-1}. Under the column split
        # each thread's pointwise pass reads the columns of dh it wrote itself (its units), and
        # a barrier publishes dA before the products, which read all of it.
        g = gates[t][b0:b1]
        dA_t = dA[t][b0:b1]
        if cell == LSTM:
            c_prev = c[t][b0:b1]
            c_t = c[t + 1][b0:b1]
            if P > 0:
                for b in range(nb):
                    for j in range(p0, p0 + pn):
                        dhp[t, b0 + b, j] = dh_g[b, j]
                barrier(sync, meet)     # every column of dh
                # the gradient reaching o * tanh(c_t) (nb, H) = dh (nb, P) @ W_hr
                if n > 0:
                    panel_product_k(dh_g, zero, hr_p, zero, pu, n, zero, P, work_g, u0, nb, put)
                lstm_backward_rows(g, peep, c_prev, c_t, work_g, dc_g, dA_t, nb, u0, n)
            else:
                lstm_backward_rows(g, peep, c_prev, c_t, dh_g, dc_g, dA_t, nb, u0, n)
            barrier(sync, meet)
            if qn > 0:
                # dh = dA W_hh
                panel_product_k(dA_t, zero, hh_p, zero, pq, qn, zero, G, dh_g, q0, nb, put)
        elif gru:
            h_prev = h[t][b0:b1]
            # dh = dh * z
            gru_backward_rows(g, h_prev, dh_g, dA_t, linear_before_reset, nb, u0, n)
            barrier(sync, meet)
            if linear_before_reset:
                # dh += dm @ W_hn (and [da_r, da_z] @ W_hh[:2H] below)
                if qn > 0:
                    panel_product_k(dA_t, 3 * H, hh_p, zero, pq, qn, 2 * H, H, dh_g, q0, nb,
                                    add)
            else:
                # work = da_n @ W_hn: the gradient of m = r * h; then da_r, and dh += dm * r
                if n > 0:
                    panel_product_k(dA_t, 2 * H, hh_p, zero, pu, n, 2 * H, H, work_g, u0, nb,
                                    put)
                gru_reset_backward_rows(g, h_prev, work_g, dh_g, dA_t, nb, u0, n)
                barrier(sync, meet)     # da_r
            if qn > 0:
                panel_product_k(dA_t, zero, hh_p, zero, pq, qn, zero, 2 * H, dh_g, q0, nb, add)
        else:
            rnn_backward_rows(g, dh_g, dA_t, cell == RNN_RELU, nb, u0, n)
            barrier(sync, meet)
            if qn > 0:
                # dh = dA W_hh
                panel_product_k(dA_t, zero, hh_p, zero, pq, qn, zero, H, dh_g, q0, nb, put)
    barrier(sync, team)
    # this thread's columns v of the V running rows: the transposes; its rows r of the T*B:
    # dx = dA_in W_ih
    V = valid.shape[0]
    v0, nv = share_rows(V, tid, team)
    dA2 = dA.reshape(TB, Gs)
    transpose_rows(dA2, valid, v0, v0 + nv, zero, Gs, dA_t_all)
    pack_rows(x.reshape(TB, I), valid, v0, v0 + nv, zero, I, x_p)
    pack_rows(h.reshape((T + 1) * B, Hout), valid, v0, v0 + nv, zero, Hout, h_p)
    if cell == GRU_RESET_BEFORE:
        pack_rows(gates.reshape(TB, Gs), valid, v0, v0 + nv, 3 * H, H, m_p)
    if dx.shape[0] > 0:   # (0, B, I): no input gradient wanted
        r0, nr = share_rows(TB, tid, team)
        _input_gradient(dA2, ih_p, dx.reshape(TB, I), lengths, r0, r0 + nr, B)
    barrier(sync, team)
    # this thread's gate rows: dw_ih = dA_in^T x, dw_hh = dA_rec^T h_prev (the GRU's n block:
    # dm (slot 3) against h_prev, or m for code 2), and the bias gradients, column sums of dA
    g0, ng = share_rows(G, tid, team)
    if ng > 0:
        panel_product_k(dA_t_all[g0:g0 + ng], zero, x_p, zero, zero, I, zero, V,
                        dw_ih[g0:g0 + ng], zero, ng, put)
    for r in range(g0, g0 + ng):
        s = zero_of(dA_t_all[r, 0])
        for k in range(V):
            s += dA_t_all[r, k]
        db_ih[r] = s
        db_hh[r] = s
    if not gru:
        if ng > 0:
            panel_product_k(dA_t_all[g0:g0 + ng], zero, h_p, zero, zero, Hout, zero, V,
                            dw_hh[g0:g0 + ng], zero, ng, put)
        return
    # the GRU: the r, z rows as above; the n block from dA's slot 3 (dm)
    r1 = min(g0 + ng, 2 * H)
    if r1 > g0:
        panel_product_k(dA_t_all[g0:r1], zero, h_p, zero, zero, Hout, zero, V, dw_hh[g0:r1],
                        zero, r1 - g0, put)
    n0 = max(g0, 2 * H)
    if g0 + ng > n0:
        panel_product_k(dA_t_all[n0 + H:g0 + ng + H], zero,
                        m_p if cell == GRU_RESET_BEFORE else h_p, zero, zero, Hout, zero, V,
                        dw_hh[n0:g0 + ng], zero, g0 + ng - n0, put)
    for r in range(n0, g0 + ng):
        s = zero_of(dA_t_all[r, 0])
        for k in range(V):
            s += dA_t_all[r + H, k]
        db_hh[r] = s


def _rows_panels(n, depth, dtype):
    """Scratch for pack_rows: the panels of `depth` rows of n values."""
    return aligned_empty((1, -(-n // PANEL), depth, PANEL), dtype)


def running_rows(lengths, T):
    """The rows t*B + b (intp, increasing) of the steps that run: lengths[b] > t."""
    lengths = np.asarray(lengths)
    return np.flatnonzero(np.arange(T)[:, None] < lengths[None, :]).astype(np.intp)


def backward(cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA, dhp, dx,
             dw_ih, dw_hh, db_ih, db_hh, work, n_threads=1, team=None, rows=None):
    """Back-propagate `cell` (codes as in forward) through T >= 1 steps of B >= 1 rows;
    buffers as in src/kernels/CONTRACT.md (the batch is one group of rows). n_threads: at
    most this many threads share the call (numba_recurrent_forward.team_size), the walk by
    groups of rows or by the column split as the forward's rule (by_rows) says; team, rows:
    that many threads, and groups of rows (True) or the column split (False), instead (the
    tests force each decomposition with them).

    x, w_ih, w_hh, w_hr, peep, lengths  IN as in forward; h (T+1, B, Hout), c (T+1, B, H)
    (LSTM; else (0, B, H)), gates (T, B, Gs)  IN: the tape; dy (T, B, Hout) or (0, B, Hout) IN;
    dh (B, Hout), dc (B, H) (LSTM; else (0, H))  IN/OUT: dh_n, dc_n in, dh_0, dc_0 out;
    dA (T, B, Gs), dhp (T, B, P) or (0, B, P), dx (T, B, I) or (0, B, I) (no input gradient
    wanted), dw_ih (G, I), dw_hh (G, Hout),
    db_ih, db_hh (G,)  OUT; work (B, W) scratch (W >= H for the GRU code 2 and a projection
    LSTM). Made here: the weights' panels (numba_panels.pack_transposed), the scratch for
    the transpose of dA and the panels of x, h_prev (and m) after the walk (about
    T*B * (Gs + I + Hout (+ H)) values), and the list of the rows that run (running_rows).
    """
    check_buffers("numba recurrent backward",
                  (x, w_ih, w_hh, w_hr, peep, h, c, gates, dy, dh, dc, dA, dhp, dx, dw_ih, dw_hh,
                   db_ih, db_hh, work),
                  (dh, dc, dA, dhp, dx, dw_ih, dw_hh, db_ih, db_hh, work), lengths)
    cell = int(cell)
    T, B, Gs = gates.shape
    I, Hout, H = x.shape[2], h.shape[2], w_hr.shape[1]
    dt = x.dtype
    args = (cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA, dhp, dx,
            dw_ih, dw_hh, db_ih, db_hh, work, pack_transposed(w_hh), pack_transposed(w_hr),
            pack_transposed(w_ih), np.empty((Gs, T * B), dt), _rows_panels(I, T * B, dt),
            _rows_panels(Hout, T * B, dt),
            _rows_panels(H if cell == GRU_RESET_BEFORE else 0, T * B, dt),
            running_rows(lengths, T))
    _check_shapes(*args)
    if team is None:
        team = team_size(n_threads, T, B, cell, H, Hout)
    elif int(team) < 1:
        raise ValueError(f"numba recurrent backward: team must be >= 1, got {team}")
    team = int(team)
    if rows is None:
        rows = team == 1 or rows_rule(team, B, cell, H, Hout, dt.itemsize)
    run_team(backward_team, args + (bool(rows),), team)
