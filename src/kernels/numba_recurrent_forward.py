"""Numba forward driver for every cell: the one time loop of src/kernels/CONTRACT.md.

Mirrors fastlstm.reference.sequence.sequence_forward (without reverse, which the Python layer
turns into loop order), with the cells' pointwise math from numba_cells.py; the twin of
recurrent_forward.pyx. The batch is one group of rows (lengths never increase over it, so the
active rows of step s are the prefix with lengths > s). Large calls are shared by a team of
threads (numba_team.py), in the Cython driver's two decompositions (forward_team): the column
split, for few rows, where thread k owns whole chunks of hidden units with every gate column
of them and a barrier publishes h_t at every step; or, for more rows, groups of rows that each
thread runs through the whole loop alone. team_size() and by_rows() are the rules. Each chunk
of K steps starts with the input projection of the thread's gate columns and rows (one product
for the steps that every row runs, then step by step on the running rows); then per step the
recurrent product(s) of the active rows and the cell's fused pointwise pass. Only active rows
are read or written; nothing is allocated in the time loop.

Every product is numba_panels.panel_product, on panels of the weights that the caller keeps
(layer_panels: made once per layer, or here for one call): every output is one chain of
multiply-adds over k (two, for a step of one row), whatever the tile or thread it falls to:
the column split gives the same results bit for bit on any number of threads, one thread
included. Groups of rows may differ from it by rounding (a group of one running row). No
BLAS: its worker threads spin for a while after each call, and beside a team on two cores
they starved it (numba_recurrent_backward.py).

Compile time: one compiled kernel per dtype serves every cell (cell is an int; absent parts
are empty arrays).
"""
import numpy as np

from ._jit import jit, jit_inline
from .numba_panels import PANEL, pack_panels, panel_product
from .numba_cells import (GRU_LINEAR_BEFORE_RESET, GRU_RESET_BEFORE, LSTM, RNN_RELU,
                          gate_width, gru_forward_rows, gru_new_rows, gru_reset_rows,
                          lstm_forward_rows, rnn_forward_rows, unowned)
from .numba_team import barrier, run_team

#: units per chunk of the column split: a multiple of numba_panels.PANEL, and 64 bytes of
#: float32 (a cache line: threads that write next to each other share as few lines as can be)
UNIT_CHUNK = 16
#: the column split's rule (team_size): multiply-adds of one step's recurrent product at least
#: this, and of the whole call at least COLUMN_MIN_CALL_MACS (a team costs a pool hand-off of
#: tens of microseconds per call and a barrier of 1-2 us per step)
COLUMN_MIN_STEP_MACS = 1 << 16
COLUMN_MIN_CALL_MACS = 1 << 22
#: by_rows: the bytes of w_hh per row of a thread's share under the column split (as the
#: Cython rule's COLUMN_ROW_BYTES)
ROW_GROUP_BYTES = 512 * 1024


@jit
def active_rows(lengths, n, t):
    """How many rows (lengths never increasing) still run at step t: n on entry is an upper
    bound (the count at an earlier step)."""
    while n > 0 and lengths[n - 1] <= t:
        n -= 1
    return n


@jit
def check_lengths(lengths, T):
    """lengths within [0, T] and never increasing (the batch is one group)."""
    for b in range(lengths.shape[0]):
        if lengths[b] < 0 or lengths[b] > T:
            raise ValueError("a length outside [0, T]")
        if b > 0 and lengths[b] > lengths[b - 1]:
            raise ValueError("lengths increase over the batch (the Numba kernels run it as "
                             "one group)")


@jit
def _check_shapes(cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work):
    """Raises ValueError unless the buffers' shapes and the lengths fit one forward call."""
    T, B, I = x.shape
    Hout = h.shape[2]
    P, H = w_hr.shape
    K, _, Gs = gates.shape
    G = gate_width(cell, H)
    W = work.shape[1]
    if (T < 1 or B < 1 or I < 1 or H < 1 or K < 1 or K > T or cell < LSTM or cell > RNN_RELU
            or Hout != (P if P > 0 else H) or (P > 0 and cell != LSTM)
            or w_ih.shape[0] != G or w_ih.shape[1] != I
            or w_hh.shape[0] != G or w_hh.shape[1] != Hout
            or bias.shape[0] != 2 or bias.shape[1] != G
            or (peep.shape[0] != 0 and (cell != LSTM or peep.shape[0] != 3))
            or peep.shape[1] != H or lengths.shape[0] != B
            or h.shape[0] != T + 1 or h.shape[1] != B
            or (cell == LSTM and ((c.shape[0] != 2 and c.shape[0] != T + 1)
                                  or c.shape[1] != B or c.shape[2] != H))
            or gates.shape[1] != B or Gs != (H if cell > GRU_RESET_BEFORE else 4 * H)
            or work.shape[0] != B
            or ((cell == GRU_LINEAR_BEFORE_RESET or cell == GRU_RESET_BEFORE) and W < 3 * H)
            or (P > 0 and W < H)):
        raise ValueError("numba recurrent forward: inconsistent buffer shapes")
    check_lengths(lengths, T)


@jit
def share(n, tid, team):
    """(first, count) of thread tid's slice of n units: whole chunks of UNIT_CHUNK (a multiple
    of numba_panels.PANEL: every thread's slice starts at a panel)."""
    chunks = (n + UNIT_CHUNK - 1) // UNIT_CHUNK
    first = min(n, tid * chunks // team * UNIT_CHUNK)
    last = min(n, (tid + 1) * chunks // team * UNIT_CHUNK)
    return first, last - first


@jit
def share_rows(B, tid, team):
    """(first, count) of thread tid's rows of B: contiguous blocks, as even as can be."""
    first = tid * B // team
    return first, (tid + 1) * B // team - first


@jit
def share_rows_by_lengths(lengths, tid, team):
    """(first, count) of thread tid's rows of a group (lengths never increasing): contiguous
    blocks holding about equal shares of the steps to run (sum of lengths), so that the
    longest rows, which come first, are not all one thread's; share_rows when every length
    is 0."""
    B = lengths.shape[0]
    total = 0
    for b in range(B):
        total += lengths[b]
    if total == 0:
        return share_rows(B, tid, team)
    first = B if tid > 0 else 0
    last = B
    run = 0
    for b in range(B):
        # row b starts thread k's block when the steps before it reach k / team of the total
        if tid > 0 and first == B and run * team >= tid * total:
            first = b
        if last == B and run * team >= (tid + 1) * total:
            last = b
        run += lengths[b]
    if tid == team - 1:
        last = B
    return first, max(0, last - first)


@jit
def _project(x, p_ih, gates, s0, s1, t0, b0, nb, H, n_blocks, u0, n):
    """gates[s0:s1] = x[t0+s0 : t0+s1] @ W_ih^T for the gate columns of units u0 <= u < u0+n
    of each of the n_blocks gate blocks, rows b0 .. b0+nb-1 of every step; p_ih: W_ih's panels
    (pack_panels)."""
    I = x.shape[2]
    B = x.shape[1]
    if s1 <= s0 or n <= 0 or nb <= 0:
        return
    p0 = u0 // PANEL
    if b0 == 0 and nb == B:     # every row: the steps as one product
        x2 = x.reshape(x.shape[0] * B, I)[(t0 + s0) * B:(t0 + s1) * B]
        g2 = gates.reshape(gates.shape[0] * B, gates.shape[2])[s0 * B:s1 * B]
        for q in range(n_blocks):
            panel_product(x2, 0, p_ih, q, p0, n, g2, q * H + u0, (s1 - s0) * B, False)
    else:
        for s in range(s0, s1):
            for q in range(n_blocks):
                panel_product(x[t0 + s][b0:b0 + nb], 0, p_ih, q, p0, n, gates[s][b0:b0 + nb],
                              q * H + u0, nb, False)


@jit_inline
def _recurrent(a, ac, panels, q0, out, oc, nb, H, n_blocks, u0, n, accumulate):
    """out[:nb, oc + q*H + u] (+)= a[:nb, ac:ac+K] @ w[(q0+q)*H + u]^T for the gate blocks
    q < n_blocks and the units u0 <= u < u0 + n, w's panels given (pack_panels, K their
    depth): one thread's columns of a recurrent product."""
    if n <= 0:
        return
    if n == H and H % PANEL == 0:   # every unit and no padding: the blocks' panels follow one
        # another as their outputs do, so they are one product (the same sums, fewer calls)
        n_panels = panels.shape[1]
        run = panels.reshape(1, panels.shape[0] * n_panels, panels.shape[2], PANEL)
        panel_product(a, ac, run, 0, q0 * n_panels, n_blocks * H, out, oc, nb, accumulate)
        return
    for q in range(n_blocks):
        panel_product(a, ac, panels, q0 + q, u0 // PANEL, n, out, oc + q * H + u0, nb,
                      accumulate)


@jit
def forward_team(cell, x, p_ih, p_hh, p_hr, w_hr, bias, peep, lengths, h, c, gates, work,
                 by_rows, tid, team, sync):
    """The time loop for thread tid of a team of `team` (1: the whole call on one thread), its
    shapes checked (_check_shapes), in one of two decompositions; p_ih, p_hh, p_hr: the panels
    of w_ih, w_hh and w_hr (pack_panels; w_hr's only for its shape, (P, H) or (0, H)):

    - by_rows False, the column split: thread tid owns the hidden units of share(H, tid, team),
      with every gate column of them. It projects their inputs, computes their columns of the
      recurrent product and their pointwise update, and writes their part of c_t and h_t; a
      barrier publishes h_t before the next step (and, for the reset-before GRU, m = r * h_{t-1}
      before its second product; for a projection LSTM o * tanh(c_t) before the W_hr product,
      whose outputs are shared out the same way).
    - by_rows True, groups of rows: thread tid runs the rows of
      share_rows_by_lengths(lengths, tid, team) through the whole loop alone (every unit, no
      barrier): for larger batches, where the split's exchange of h_t between the cores at
      every step costs more than it saves.
    """
    # the arrays as views that hold no reference (numba_cells.unowned; the caller holds them):
    # the slices and calls of every step then leave their reference counts alone (atomics)
    x, p_ih, p_hh, p_hr = unowned(x), unowned(p_ih), unowned(p_hh), unowned(p_hr)
    w_hr, bias, peep, lengths = unowned(w_hr), unowned(bias), unowned(peep), unowned(lengths)
    h, c, gates, work = unowned(h), unowned(c), unowned(gates), unowned(work)
    T, B, I = x.shape
    P, H = w_hr.shape
    K = gates.shape[0]
    keep_c = c.shape[0] == T + 1
    if by_rows:
        b0, n_rows = share_rows_by_lengths(lengths, tid, team)
        u0, n, p0, pn, meet = 0, H, 0, P, 1
    else:
        b0, n_rows = 0, B
        u0, n = share(H, tid, team)
        p0, pn = share(P, tid, team)
        meet = team        # the barrier's team
    b1 = b0 + n_rows
    lens = lengths[b0:b1]
    n_blocks = 4 if cell == LSTM else (3 if cell <= GRU_RESET_BEFORE else 1)
    # the constants passed to the products as variables: Numba compiles a function once per
    # combination of the literal constants it is called with, and each version re-optimises
    # the tiles under it (a cold first call took 3x as long)
    zero = np.intp(0)
    two, three, four = zero + 2, zero + 3, zero + 4
    one_block = zero + 1
    add, put = zero == 0, zero != 0
    t0 = 0
    while n_rows > 0 and t0 < T and lens[0] > t0:
        k = min(K, T - t0)
        # input projection of the chunk: one product for the steps that every row runs,
        # then step by step on the running rows
        full = min(k, max(0, lens[n_rows - 1] - t0))
        _project(x, p_ih, gates, zero, full, t0, b0, n_rows, H, n_blocks, u0, n)
        nb = n_rows
        for s in range(full, k):
            nb = active_rows(lens, nb, t0 + s)
            if nb == 0:
                break
            _project(x, p_ih, gates, s, s + 1, t0, b0, nb, H, n_blocks, u0, n)
        # the steps: the recurrent product(s) of the active rows, the cell's pointwise pass
        nb = n_rows
        for s in range(k):
            t = t0 + s
            nb = active_rows(lens, nb, t)
            if nb == 0:
                break
            g = gates[s][b0:b1]
            h_prev = h[t][b0:b1]
            h_next = h[t + 1][b0:b1]
            rec = work[b0:b1]
            if cell == LSTM:
                _recurrent(h_prev, zero, p_hh, zero, g, zero, nb, H, four, u0, n, add)
                c_prev = (c[t] if keep_c else c[t % 2])[b0:b1]
                c_next = (c[t + 1] if keep_c else c[(t + 1) % 2])[b0:b1]
                if P > 0:   # h = (o * tanh(c)) W_hr^T
                    lstm_forward_rows(g, bias[0], peep, c_prev, c_next, rec, nb, u0, n)
                    barrier(sync, meet)
                    if pn > 0:
                        panel_product(rec, zero, p_hr, zero, p0 // PANEL, pn, h_next, p0, nb, put)
                else:
                    lstm_forward_rows(g, bias[0], peep, c_prev, c_next, h_next, nb, u0, n)
            elif cell == GRU_LINEAR_BEFORE_RESET:
                _recurrent(h_prev, zero, p_hh, zero, rec, zero, nb, H, three, u0, n, put)
                gru_forward_rows(g, rec, bias[0], bias[1], h_prev, h_next, nb, u0, n)
            elif cell == GRU_RESET_BEFORE:
                _recurrent(h_prev, zero, p_hh, zero, rec, zero, nb, H, two, u0, n, put)  # r, z
                gru_reset_rows(g, rec, bias[0], h_prev, nb, u0, n)
                barrier(sync, meet)
                # rec[:, 2H:3H] = m (= r * h, gates slot 3; every unit's) @ W_hn^T
                _recurrent(g, 3 * H, p_hh, two, rec, 2 * H, nb, H, one_block, u0, n, put)
                gru_new_rows(g, rec, bias[0], h_prev, h_next, nb, u0, n)
            else:
                _recurrent(h_prev, zero, p_hh, zero, g, zero, nb, H, one_block, u0, n, add)
                rnn_forward_rows(g, bias[0], h_next, cell == RNN_RELU, nb, u0, n)
            barrier(sync, meet)
        t0 += k


def check_buffers(name, arrays, outputs, lengths):
    """The buffers' dtypes and memory, which the compiled kernels rely on (shapes are checked
    inside them): one float dtype (float32 or float64), C-contiguous, outputs writeable;
    lengths int64. Raises TypeError or ValueError naming the kernel."""
    dtype = getattr(arrays[0], "dtype", None)
    if dtype != np.float32 and dtype != np.float64:
        raise TypeError(f"{name}: float32 or float64 buffers expected, got {dtype}")
    for a in arrays:
        if not isinstance(a, np.ndarray) or a.dtype != dtype:
            raise TypeError(f"{name}: every buffer must be a {dtype} ndarray")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: every buffer must be C-contiguous")
    for a in outputs:
        if not a.flags.writeable:
            raise ValueError(f"{name}: an output buffer is read-only")
    if (not isinstance(lengths, np.ndarray) or lengths.dtype != np.int64
            or not lengths.flags.c_contiguous):
        raise TypeError(f"{name}: lengths must be a C-contiguous int64 array")


def team_size(n_threads, T, B, cell, H, Hout):
    """Threads for a call of T steps of B rows (1: one thread), on at most n_threads: only
    where one step's recurrent product (B * G * Hout multiply-adds) and the whole call are
    large enough to pay for the hand-off to the team and, under the column split, its barriers
    (COLUMN_MIN_STEP_MACS, COLUMN_MIN_CALL_MACS); no more than the batch has rows or the layer
    chunks of units."""
    G = gate_width(int(cell), H)
    step_macs = B * G * Hout
    team = min(int(n_threads), max(B, (H + UNIT_CHUNK - 1) // UNIT_CHUNK))
    if team < 2 or step_macs < COLUMN_MIN_STEP_MACS or T * step_macs < COLUMN_MIN_CALL_MACS:
        return 1
    return team


def by_rows(team, B, cell, H, Hout, itemsize):
    """Whether a team of `team` shares the call by groups of rows rather than by the column
    split: when each thread would have more rows than max(1, bytes of w_hh / ROW_GROUP_BYTES)
    (the Cython rule, _layout.pxd column_threads), or the layer has fewer chunks of units than
    the team has threads. The split exchanges h_t between the cores at every step (B x H_out
    values), which for many rows costs more than reading w_hh (at B=32, H=128 the split ran
    1.1-1.3x one thread, groups of rows 1.6x)."""
    rows_per_thread = max(1, gate_width(int(cell), H) * Hout * itemsize // ROW_GROUP_BYTES)
    return B > team * rows_per_thread or (H + UNIT_CHUNK - 1) // UNIT_CHUNK < team


class LayerPanels:
    """The panels of one layer's weights, as layer_panels makes them (only): arrays (p_ih,
    p_hh, p_hr), and source, the (w_ih, w_hh, w_hr) they were made from. forward takes them
    without checking their shapes when it is given these very arrays (fastlstm._api.
    PackedLayer's, which are never changed after they are made)."""

    __slots__ = ("arrays", "source")

    def __init__(self, arrays, source):
        self.arrays, self.source = arrays, source


def layer_panels(cell, w_ih, w_hh, w_hr):
    """LayerPanels of w_ih, w_hh (one gate block per block of H rows) and w_hr (one block),
    numba_panels.pack_panels, which forward_team's products read. Made once per layer and
    kept (fastlstm._backends.NumbaBackend keeps them in the PackedLayer)."""
    n_blocks = w_ih.shape[0] // w_hr.shape[1]
    return LayerPanels((pack_panels(w_ih, n_blocks), pack_panels(w_hh, n_blocks),
                        pack_panels(w_hr, 1)), (w_ih, w_hh, w_hr))


def _checked_panels(panels, cell, x, w_ih, w_hh, w_hr):
    """panels' arrays, after a check that they have layer_panels(cell, w_ih, w_hh, w_hr)'s
    shapes, x's dtype and C order (a product must not raise inside the team: run_team) unless
    they were made from these very weights; raises ValueError."""
    if (isinstance(panels, LayerPanels) and panels.source[0] is w_ih
            and panels.source[1] is w_hh and panels.source[2] is w_hr):
        return panels.arrays
    arrays = panels.arrays if isinstance(panels, LayerPanels) else panels
    P, H = w_hr.shape
    n_blocks = gate_width(cell, H) // H
    shapes = ((n_blocks, -(-H // PANEL), w_ih.shape[1], PANEL),
              (n_blocks, -(-H // PANEL), w_hh.shape[1], PANEL), (1, -(-P // PANEL), H, PANEL))
    if (not isinstance(arrays, tuple) or len(arrays) != 3
            or any(not isinstance(p, np.ndarray) or p.shape != shape or p.dtype != x.dtype
                   or not p.flags.c_contiguous for p, shape in zip(arrays, shapes))):
        raise ValueError("numba recurrent forward: panels are not layer_panels(cell, w_ih, "
                         "w_hh, w_hr) of these weights")
    return arrays


def forward(cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work, n_threads=1,
            team=None, rows=None, panels=None):
    """Run `cell` (0 LSTM, 1 GRU linear before reset, 2 GRU reset before, 3 RNN tanh,
    4 RNN relu) over T >= 1 steps of B >= 1 rows; buffers as in src/kernels/CONTRACT.md
    (the batch is one group, so lengths never increase over it); n_threads: at most this many
    threads share the call (team_size, by_rows); team, rows: that many threads, and groups of
    rows (True) or the column split (False), instead of the rules' choice (the tests force
    each decomposition with them); panels: layer_panels(cell, w_ih, w_hh, w_hr) (or its
    arrays), kept by the caller, or None to pack them here.

    x (T, B, I), w_ih (G, I), w_hh (G, Hout), w_hr (P, H) or (0, H), bias (2, G),
    peep (3, H) or (0, H), lengths (B,) int64  IN;
    h (T+1, B, Hout), c (T+1, B, H) or (2, B, H) (LSTM; else (0, B, H))  IN/OUT;
    gates (K, B, Gs)  OUT (K = T) / scratch (K < T); work (B, W) scratch (W >= 3H for the
    GRU, >= H for a projection LSTM).
    """
    check_buffers("numba recurrent forward", (x, w_ih, w_hh, w_hr, bias, peep, h, c, gates, work),
                  (h, c, gates, work), lengths)
    cell = int(cell)
    _check_shapes(cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work)
    panels = (layer_panels(cell, w_ih, w_hh, w_hr).arrays if panels is None
              else _checked_panels(panels, cell, x, w_ih, w_hh, w_hr))
    T, B = x.shape[0], x.shape[1]
    H, Hout = w_hr.shape[1], h.shape[2]
    if team is None:
        team = team_size(n_threads, T, B, cell, H, Hout)
    elif int(team) < 1:
        raise ValueError(f"numba recurrent forward: team must be >= 1, got {team}")
    team = int(team)
    if rows is None:
        rows = team > 1 and by_rows(team, B, cell, H, Hout, x.dtype.itemsize)
    if rows:
        team = min(team, B)
    run_team(forward_team, (cell, x, *panels, w_hr, bias, peep, lengths, h, c, gates, work,
                            bool(rows)), team)
