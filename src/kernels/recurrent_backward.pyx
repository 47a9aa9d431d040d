"""Cython backward driver for every cell: the one walk back through time (CONTRACT.md).

Mirrors fastlstm.reference.sequence.sequence_backward with the cells' pointwise math from
_lstm_cell.pxd, _gru_cell.pxd and _rnn_cell.pxd. The weights are packed for _gemm.h's
micro-kernel first. The walk t = T-1 ... 0 has the forward driver's two decompositions, chosen
by the same rule (_layout.pxd, column_threads):
- groups of rows: each OpenMP thread takes one group of batch rows and walks it alone, without
  the GIL and without barriers (run_group): per step the cell's pointwise pass for the gate
  gradients and the product(s) that carry the gradient to h_{t-1};
- the column split, for a batch that is one group (below, column_walk): the threads share
  every step, each owning a slice of the hidden units, and meet at one or two barriers per
  step.
A row joins the walk at its last valid step (rows are sorted by length inside each group, so
the running rows are a prefix that grows as t goes down). After the walk the input, weight and
bias gradients are large products over all steps at once, over the rows that hold data only
(padded steps cost nothing there either), shared out between the threads by blocks of rows
(whatever the walk's decomposition): dx = dA w_ih, and [dw_ih | dw_hh] = dA^T [x | h_prev]
by blocks of gate rows, with the bias gradients as the column sums of dA from the same read
(the GRU's n block apart: its recurrent gradient is dm, and the reset-before GRU's recurrent
input is m = r * h_prev). No BLAS call; nothing is allocated.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from ._fpmode cimport fl_flush_denormals, fl_fpmode, fl_restore_fpmode
from ._gemm cimport (aligned, copy_length, gemm, gemm_step, gemm_sums, pack, packed_length,
                     panel_width)
from ._gru_cell cimport gru_backward_rows, gru_reset_backward_rows
from ._layout cimport (COLUMN_ROW_VALUES, COLUMN_UNIT_VALUES, GRU_LINEAR_BEFORE_RESET,
                       GRU_RESET_BEFORE, LSTM, RNN_RELU, backward_scratch, column_threads,
                       gate_width, lengths_problem, padded_columns, unit_chunks)
from ._lstm_cell cimport lstm_backward_rows
from ._rnn_cell cimport rnn_backward_rows

# Rows per work item of the products after the walk (a multiple of the micro-kernel's 6).
DEF ROWS_PER_ITEM = 96


cdef void step_back(int cell, const floating* w_hh_pack, const floating* w_n_pack,
                    const floating* w_hr_pack, const floating* peep, const floating* h,
                    const floating* c, const floating* gates, floating* dh, floating* dc,
                    floating* dA_t, floating* dhp_t, floating* work, Py_ssize_t t, Py_ssize_t m,
                    Py_ssize_t B, Py_ssize_t H, Py_ssize_t Hout, Py_ssize_t P,
                    Py_ssize_t b0) noexcept nogil:
    """Step t for the m running rows from b0: dh (m, Hout) holds the whole gradient reaching
    h_t on entry and the gradient reaching h_{t-1} on return; dA_t, dhp_t their rows of
    step t; h, c, gates, dc, work whole buffers."""
    cdef Py_ssize_t G = gate_width(cell, H), Gs = 4 * H
    cdef const floating* g = gates + (t * B + b0) * (H if cell > GRU_RESET_BEFORE else Gs)
    cdef const floating* h_prev = h + (t * B + b0) * Hout
    cdef floating* own = work + b0 * H
    if cell == LSTM:
        if P:   # the gradient reaching o * tanh(c_t) (m, H) = dh (m, P) @ w_hr
            memcpy(dhp_t, dh, m * P * sizeof(floating))
            gemm(m, H, P, dh, P, 1, w_hr_pack, own, H, False)
        lstm_backward_rows(g, peep, c + (t * B + b0) * H, c + ((t + 1) * B + b0) * H,
                           own if P else dh, dc + b0 * H, dA_t, m, H)
        # dh (m, Hout) = dA_t (m, 4H) @ w_hh (4H, Hout)
        gemm_step(t, m, Hout, G, dA_t, G, w_hh_pack, dh, Hout, False)
    elif cell == GRU_LINEAR_BEFORE_RESET:
        gru_backward_rows(g, h_prev, dh, dA_t, True, m, H)
        gemm(m, H, 2 * H, dA_t, Gs, 1, w_hh_pack, dh, H, True)     # [da_r, da_z] @ w_hh[:2H]
        gemm(m, H, H, dA_t + 3 * H, Gs, 1, w_n_pack, dh, H, True)  # dm @ w_hn
    elif cell == GRU_RESET_BEFORE:
        gru_backward_rows(g, h_prev, dh, dA_t, False, m, H)
        gemm(m, H, H, dA_t + 2 * H, Gs, 1, w_n_pack, own, H, False)  # da_n @ w_hn: d(r * h)
        gru_reset_backward_rows(g, h_prev, own, dh, dA_t, m, H)
        gemm(m, H, 2 * H, dA_t, Gs, 1, w_hh_pack, dh, H, True)
    else:
        rnn_backward_rows(g, dh, dA_t, cell == RNN_RELU, m, H)
        gemm_step(t, m, H, H, dA_t, H, w_hh_pack, dh, H, False)


cdef void run_group(int cell, const floating* w_hh_pack, const floating* w_n_pack,
                    const floating* w_hr_pack, const floating* peep, const int64_t* lengths,
                    const floating* h, const floating* c, const floating* gates,
                    const floating* dy, floating* dh, floating* dc, floating* dA,
                    floating* dhp, floating* work, Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                    Py_ssize_t Hout, Py_ssize_t P, Py_ssize_t Gs, Py_ssize_t b0,
                    Py_ssize_t b1) noexcept nogil:
    """The whole backward walk for batch rows b0 <= b < b1 (dy NULL when there is none), this
    thread in flush-to-zero mode (_fpmode.h)."""
    cdef Py_ssize_t nb = b1 - b0, m = 0, t = T - 1, j
    cdef floating* dA_t
    cdef floating* dh_g = dh + b0 * Hout
    cdef fl_fpmode mode = fl_flush_denormals()
    while t >= 0:
        while m < nb and lengths[b0 + m] > t:      # rows whose last valid step is t join
            m += 1
        dA_t = dA + (t * B + b0) * Gs
        memset(dA_t + m * Gs, 0, (nb - m) * Gs * sizeof(floating))
        if P:
            memset(dhp + (t * B + b0 + m) * P, 0, (nb - m) * P * sizeof(floating))
        if m > 0:
            if dy != NULL:
                for j in range(m * Hout):
                    dh_g[j] += dy[(t * B + b0) * Hout + j]
            step_back(cell, w_hh_pack, w_n_pack, w_hr_pack, peep, h, c, gates, dh_g, dc, dA_t,
                      dhp + (t * B + b0) * P if P else NULL, work, t, m, B, H, Hout, P, b0)
        t -= 1
    fl_restore_fpmode(mode)


# ---------------------------------------------------------------------------------------------
# The column split of the walk: for a batch that is one group of rows (the forward's split, or
# a single row), the threads share each step. Thread k of the team owns the hidden units
# u0 <= j < u0 + n, dealt out in chunks of one panel width as in the forward, and with them
# every gate column of those units. At each step it runs the cell's pointwise backward on its
# units, writing their gate gradients into dA_t; the team meets at a barrier (_barrier.h) that
# publishes the whole dA_t; then the thread forms its columns of the product that carries the
# gradient to h_{t-1}, dh[:, units] = dA_t @ w_hh[:, units] (summed over all G gate rows, in
# the order the groups of rows sum them; its columns are a run of whole panels of the packed
# w_hh, which stays in its core's cache from step to step: the walk's packing of w_hh (G, Hout)
# as a right-hand factor is in panels of Hout columns, so it serves both decompositions), and
# adds dy_{t-1} to them at the next step. dA_t has a slot of its own per step and each
# thread's dh and dc columns are its own, so one barrier per step suffices for the LSTM, the
# linear-before-reset GRU and the RNN.
# Two for the reset-before GRU (d(r * h) = da_n @ w_hn needs every unit's da_n before the reset
# gate's gradient) and for the projection LSTM (the gradient reaching o * tanh(c), dh @ w_hr,
# needs all P columns of dh, which the threads share by chunks of P columns there).
# Each element is computed by the same operations in the same order as in the groups of rows,
# so the results are bit for bit those of any thread count.
#
# The cells' pointwise backward functions work on whole blocks of H units (their loops run over
# H and their blocks lie H apart), so each thread hands them its n units as blocks of n: it
# copies its units' gate values and states of the step into buffers of its own (n columns per
# block) and copies the gate gradients back into dA_t. Its dh and dc columns live in those
# buffers for the whole walk (dh's not for the projection LSTM, whose dh the threads share).

from ._barrier cimport fl_barrier, fl_barrier_init, fl_barrier_wait, fl_team_size


cdef inline void take_units(const floating* src, Py_ssize_t ld, Py_ssize_t blocks, Py_ssize_t H,
                            floating* dst, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """dst (rows, blocks * n) = n units of each of `blocks` blocks of H columns of src's rows
    (row stride ld; src advanced to the first unit)."""
    cdef Py_ssize_t b, q
    for b in range(rows):
        for q in range(blocks):
            memcpy(dst + (b * blocks + q) * n, src + b * ld + q * H, n * sizeof(floating))


cdef inline void put_units(const floating* src, Py_ssize_t q0, Py_ssize_t q1, Py_ssize_t blocks,
                           floating* dst, Py_ssize_t ld, Py_ssize_t H, Py_ssize_t rows,
                           Py_ssize_t n) noexcept nogil:
    """take_units' inverse for blocks q0 <= q < q1: src (rows, blocks * n) back into dst's rows
    (row stride ld; dst advanced to the first unit)."""
    cdef Py_ssize_t b, q
    for b in range(rows):
        for q in range(q0, q1):
            memcpy(dst + b * ld + q * H, src + (b * blocks + q) * n, n * sizeof(floating))


cdef void column_step_back(int cell, const floating* w_hh_pack, const floating* w_n_pack,
                           const floating* w_hr_pack, const floating* peep_k,
                           const floating* h, const floating* c, const floating* gates,
                           const floating* dy, floating* dh, floating* dA_t, floating* dhp_t,
                           floating* mine, Py_ssize_t t, Py_ssize_t m, Py_ssize_t B,
                           Py_ssize_t H, Py_ssize_t Hout, Py_ssize_t P, Py_ssize_t u0,
                           Py_ssize_t n, Py_ssize_t p0, Py_ssize_t pn, fl_barrier* bar,
                           int team, unsigned* seen) noexcept nogil:
    """Step t for the m running rows (from row 0), this thread's share: units u0 <= j < u0 + n
    and, for a projection LSTM, dh's columns p0 <= j < p0 + pn (pn may be 0). `mine` holds the
    thread's buffers (column_walk); dy is NULL when there is none; dA_t (m, Gs), dhp_t (m, P)
    the step's rows; dh (B, P) the shared dh of a projection LSTM (else not read: the thread's
    dh columns are in `mine`); h, c, gates whole buffers."""
    cdef Py_ssize_t G = gate_width(cell, H)
    cdef Py_ssize_t Gs = H if cell > GRU_RESET_BEFORE else 4 * H
    cdef const floating* g_t = gates + t * B * Gs
    cdef floating* g_k = mine                    # (m, 4n) the units' gate values of step t
    cdef floating* da_k = g_k + 4 * B * n        # (m, 4n) their gate gradients
    cdef floating* s0_k = da_k + 4 * B * n       # (m, n) c_{t-1} (LSTM), h_{t-1} (GRU)
    cdef floating* s1_k = s0_k + B * n           # (m, n) c_t (LSTM), d(r * h) (GRU code 2)
    cdef floating* dh_k = s1_k + B * n           # (B, n) dh's columns, or the gradient
                                                 # reaching o * tanh(c) (projection LSTM)
    cdef floating* dc_k = dh_k + B * n           # (B, n) dc's columns (LSTM)
    cdef Py_ssize_t b, j
    if P:   # dh (m, P) += dy_t by chunks of columns, then the o * tanh(c) side for the units
        for b in range(m):
            if dy != NULL:
                for j in range(pn):
                    dh[b * P + p0 + j] += dy[(t * B + b) * P + p0 + j]
            memcpy(dhp_t + b * P + p0, dh + b * P + p0, pn * sizeof(floating))
        fl_barrier_wait(bar, team, seen)         # dh (m, P) complete
        # dh_k (m, n) = dh (m, P) @ w_hr[:, u0:u0+n]
        gemm(m, n, P, dh, P, 1, w_hr_pack + u0 * P, dh_k, n, False)
    elif dy != NULL:
        for b in range(m):
            for j in range(n):
                dh_k[b * n + j] += dy[(t * B + b) * Hout + u0 + j]
    if cell == LSTM:
        take_units(g_t + u0, Gs, 4, H, g_k, m, n)
        take_units(c + t * B * H + u0, H, 1, H, s0_k, m, n)
        take_units(c + (t + 1) * B * H + u0, H, 1, H, s1_k, m, n)
        lstm_backward_rows(g_k, peep_k, s0_k, s1_k, dh_k, dc_k, da_k, m, n)
        put_units(da_k, 0, 4, 4, dA_t + u0, Gs, H, m, n)
        fl_barrier_wait(bar, team, seen)         # dA_t complete
        if P:   # dh[:, p0:p0+pn] (m, pn) = dA_t (m, 4H) @ w_hh[:, p0:p0+pn]
            if pn:
                gemm_step(t, m, pn, G, dA_t, G, w_hh_pack + p0 * G, dh + p0, P, False)
        else:   # dh_k (m, n) = dA_t (m, 4H) @ w_hh[:, u0:u0+n]
            gemm_step(t, m, n, G, dA_t, G, w_hh_pack + u0 * G, dh_k, n, False)
    elif cell == GRU_LINEAR_BEFORE_RESET or cell == GRU_RESET_BEFORE:
        take_units(g_t + u0, Gs, 4, H, g_k, m, n)
        take_units(h + t * B * Hout + u0, Hout, 1, H, s0_k, m, n)
        gru_backward_rows(g_k, s0_k, dh_k, da_k, cell == GRU_LINEAR_BEFORE_RESET, m, n)
        if cell == GRU_LINEAR_BEFORE_RESET:
            put_units(da_k, 0, 4, 4, dA_t + u0, Gs, H, m, n)
            fl_barrier_wait(bar, team, seen)     # dA_t complete
        else:
            put_units(da_k, 1, 4, 4, dA_t + u0, Gs, H, m, n)   # da_z, da_n, dm
            fl_barrier_wait(bar, team, seen)     # da_n (m, H) complete
            # s1_k (m, n) = da_n (m, H) @ w_hn[:, u0:u0+n]: d(r * h) of the units
            gemm(m, n, H, dA_t + 2 * H, Gs, 1, w_n_pack + u0 * H, s1_k, n, False)
            gru_reset_backward_rows(g_k, s0_k, s1_k, dh_k, da_k, m, n)
            put_units(da_k, 0, 1, 4, dA_t + u0, Gs, H, m, n)   # da_r
            fl_barrier_wait(bar, team, seen)     # dA_t complete
        # dh_k (m, n) += [da_r, da_z] (m, 2H) @ w_hh[:2H, u0:u0+n] (+ dm @ w_hn[:, u0:u0+n])
        gemm(m, n, 2 * H, dA_t, Gs, 1, w_hh_pack + u0 * 2 * H, dh_k, n, True)
        if cell == GRU_LINEAR_BEFORE_RESET:
            gemm(m, n, H, dA_t + 3 * H, Gs, 1, w_n_pack + u0 * H, dh_k, n, True)
    else:   # one row at a time: the RNN's pointwise pass runs along the row's n units
        for b in range(m):
            rnn_backward_rows(g_t + b * H + u0, dh_k + b * n, dA_t + b * H + u0,
                              cell == RNN_RELU, 1, n)
        fl_barrier_wait(bar, team, seen)         # dA_t complete
        # dh_k (m, n) = dA_t (m, H) @ w_hh[:, u0:u0+n]
        gemm_step(t, m, n, H, dA_t, H, w_hh_pack + u0 * H, dh_k, n, False)


cdef void column_walk(int cell, const floating* w_hh_pack, const floating* w_n_pack,
                      const floating* w_hr_pack, const floating* peep, const int64_t* lengths,
                      const floating* h, const floating* c, const floating* gates,
                      const floating* dy, floating* dh, floating* dc, floating* dA,
                      floating* dhp, floating* own, Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                      Py_ssize_t Hout, Py_ssize_t P, Py_ssize_t Gs, fl_barrier* bar, int tid,
                      int team) noexcept nogil:
    """The whole backward walk, this thread's share (thread tid of a team of `team`): the rows
    are one group (lengths never increase over the batch). own: the team's buffers
    (_layout.pxd, column_backward_scratch), of which this thread's n units take
    n * (COLUMN_ROW_VALUES * B + COLUMN_UNIT_VALUES) values from u0's share on: [gate values
    (B, 4n) | gate gradients (B, 4n) | two states (B, n) each | dh (B, n) | dc (B, n) |
    peepholes (3, n)]. The thread in flush-to-zero mode (_fpmode.h)."""
    cdef Py_ssize_t chunks = unit_chunks(dA, H)
    cdef Py_ssize_t NR = panel_width(dA)
    cdef Py_ssize_t c0 = tid * chunks // team, c1 = (tid + 1) * chunks // team
    cdef Py_ssize_t u0 = min(c0 * NR, H), n = min(c1 * NR, H) - u0
    cdef Py_ssize_t p_chunks = (P + NR - 1) // NR
    cdef Py_ssize_t p0 = min(tid * p_chunks // team * NR, P)
    cdef Py_ssize_t pn = min((tid + 1) * p_chunks // team * NR, P) - p0
    cdef floating* mine = own + u0 * (COLUMN_ROW_VALUES * B + COLUMN_UNIT_VALUES)
    cdef floating* dh_k = mine + 10 * B * n
    cdef floating* dc_k = dh_k + B * n
    cdef floating* peep_k = dc_k + B * n
    cdef Py_ssize_t t = T - 1, m = 0
    cdef unsigned seen = 0
    cdef fl_fpmode mode = fl_flush_denormals()
    if cell == LSTM:
        take_units(dc + u0, H, 1, H, dc_k, B, n)
        if peep != NULL:
            take_units(peep + u0, H, 1, H, peep_k, 3, n)
    if not P:
        take_units(dh + u0, Hout, 1, H, dh_k, B, n)
    while t >= 0:
        while m < B and lengths[m] > t:          # rows whose last valid step is t join
            m += 1
        if tid == 0:   # the rows not running yet (no thread writes them at this step)
            memset(dA + (t * B + m) * Gs, 0, (B - m) * Gs * sizeof(floating))
            if P:
                memset(dhp + (t * B + m) * P, 0, (B - m) * P * sizeof(floating))
        if m > 0:
            column_step_back(cell, w_hh_pack, w_n_pack, w_hr_pack,
                             peep_k if peep != NULL else NULL, h, c, gates, dy, dh,
                             dA + t * B * Gs, dhp + t * B * P if P else NULL, mine, t, m, B, H,
                             Hout, P, u0, n, p0, pn, bar, team, &seen)
        t -= 1
    # the rows that ran: their dh_0 and dc_0 columns back into dh and dc
    if cell == LSTM:
        put_units(dc_k, 0, 1, 1, dc + u0, H, H, m, n)
    if not P:
        put_units(dh_k, 0, 1, 1, dh + u0, Hout, H, m, n)
    fl_restore_fpmode(mode)


cdef void pack_block(const floating* w, Py_ssize_t rows, Py_ssize_t cols, floating* out,
                     int n_threads) noexcept nogil:
    """w (rows, cols) row-major packed as the right-hand factor of a product (k = rows), by
    blocks of rows."""
    cdef Py_ssize_t item, r0, r1, NR = panel_width(out)
    for item in prange((rows + ROWS_PER_ITEM - 1) // ROWS_PER_ITEM, num_threads=n_threads,
                       schedule="static"):
        r0 = item * ROWS_PER_ITEM
        r1 = min(r0 + ROWS_PER_ITEM, rows)
        pack(r1 - r0, cols, w + r0 * cols, cols, 1, out + r0 * NR, rows * NR)


cdef void weight_rows(const floating* dA, const int64_t* kmap, const floating* xh_pack,
                      floating* dw, floating* db_ih, floating* db_hh, floating* work,
                      Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t K, Py_ssize_t Gs, Py_ssize_t I,
                      Py_ssize_t Ip, Py_ssize_t Hout, Py_ssize_t rec_shift,
                      Py_ssize_t rec_panels) noexcept nogil:
    """Rows r0 <= r < r1 of [dw_ih | dw_hh] (ldw = Ip + Hout; the input side's I columns of
    its Ip) and of db_ih, db_hh, summed over the K rows of dA that kmap names (all of them,
    in order, when kmap is NULL) and the K packed rows of xh_pack. rec_shift < 0: one product
    dA[:, r0:r1]^T [x | h_prev]; else the input side from dA's columns r and the recurrent
    side from columns r + rec_shift, against the packed block that starts rec_panels columns
    into xh_pack."""
    cdef Py_ssize_t ldw = Ip + Hout, r
    cdef fl_fpmode mode = fl_flush_denormals()
    if rec_shift < 0:
        gemm_sums(r1 - r0, ldw, K, dA + r0, 1, Gs, kmap, xh_pack, dw + r0 * ldw, ldw,
                  db_ih + r0, work)
        for r in range(r0, r1):
            db_hh[r] = db_ih[r]
    else:
        gemm_sums(r1 - r0, I, K, dA + r0, 1, Gs, kmap, xh_pack, dw + r0 * ldw, ldw,
                  db_ih + r0, work)
        gemm_sums(r1 - r0, Hout, K, dA + r0 + rec_shift, 1, Gs, kmap, xh_pack + rec_panels * K,
                  dw + r0 * ldw + Ip, ldw, db_hh + r0, work)
    fl_restore_fpmode(mode)


cdef Py_ssize_t map_rows(const int64_t* lengths, Py_ssize_t T, Py_ssize_t B,
                         Py_ssize_t n_groups, int64_t* kmap) noexcept nogil:
    """kmap[j] = t*B + b for the rows (t, b) with t < lengths[b], in order of t then b (each
    group's running rows are a prefix of it); returns their count K."""
    cdef Py_ssize_t t, g, b, j = 0
    for t in range(T):
        for g in range(n_groups):
            b = g * B // n_groups
            while b < (g + 1) * B // n_groups and lengths[b] > t:
                kmap[j] = t * B + b
                j += 1
                b += 1
    return j


cdef void pack_and_dx(int cell, const floating* x, const floating* h, const floating* gates,
                      const floating* dA, const floating* w_ih_pack, floating* dx,
                      floating* xh_pack, const int64_t* kmap, Py_ssize_t j0, Py_ssize_t j1,
                      Py_ssize_t K, Py_ssize_t I, Py_ssize_t Hout, Py_ssize_t H, Py_ssize_t G,
                      Py_ssize_t Gs, Py_ssize_t Ip, Py_ssize_t Hp) noexcept nogil:
    """For the mapped rows j0 <= j < j1 (rows j themselves when kmap is NULL): pack
    [x | h_prev | m] into row j of xh_pack (K rows), and dx = dA w_ih (not when dx is NULL);
    by runs of rows that lie next to each other."""
    cdef Py_ssize_t j = j0, e, r, n
    cdef Py_ssize_t NR = panel_width(xh_pack)
    cdef fl_fpmode mode = fl_flush_denormals()
    while j < j1:
        e = j1
        if kmap != NULL:
            e = j + 1
            while e < j1 and kmap[e] == kmap[e - 1] + 1:
                e += 1
        r = kmap[j] if kmap != NULL else j
        n = e - j
        pack(n, I, x + r * I, I, 1, xh_pack + j * NR, K * NR)
        pack(n, Hout, h + r * Hout, Hout, 1, xh_pack + Ip * K + j * NR, K * NR)
        if cell == GRU_RESET_BEFORE:
            pack(n, H, gates + r * Gs + 3 * H, Gs, 1, xh_pack + (Ip + Hp) * K + j * NR, K * NR)
        if dx != NULL:
            gemm(n, I, G, dA + r * Gs, Gs, 1, w_ih_pack, dx + r * I, I, False)
        j = e
    fl_restore_fpmode(mode)


def backward(int cell, const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
             const floating[:, ::1] w_hh, const floating[:, ::1] w_hr,
             const floating[:, ::1] peep, const int64_t[::1] lengths,
             const floating[:, :, ::1] h, const floating[:, :, ::1] c,
             const floating[:, :, ::1] gates, const floating[:, :, ::1] dy,
             floating[:, ::1] dh, floating[:, ::1] dc, floating[:, :, ::1] dA,
             floating[:, :, ::1] dhp, floating[:, :, ::1] dx, floating[:, ::1] dw_ih,
             floating[:, ::1] dw_hh, floating[::1] db_ih, floating[::1] db_hh,
             floating[:, ::1] work, floating[::1] scratch, int n_groups=1,
             int n_product_threads=1, int columns=-1):
    """Back-propagate `cell` through T >= 1 steps of B >= 1 rows; buffers as in CONTRACT.md.

    scratch (at least _info.backward_scratch_length(cell, T*B, I, Hout, H, P, itemsize,
                        n_product_threads, column_rows),) from its first 64-byte boundary on;
                        column_rows = B when the walk takes the column split (else 0)
    n_groups            groups of batch rows of the walk (the forward's grouping, which the
                        rows' order was arranged for), one OpenMP thread each; at most B
    n_product_threads   OpenMP threads for the packing and the products after the walk, and
                        for the walk's column split
    columns             -1: with n_groups = 1, the column split when _layout.column_threads'
                        rule picks it for n_product_threads threads (the forward's rule, so a
                        training call whose forward ran the split runs it here too); 0: never;
                        1: always, on min(n_product_threads, chunks of units) threads (one
                        thread included; tests), which needs n_groups = 1 (else ValueError).
                        The split needs the larger scratch (column_rows = B; else ValueError);
                        it does not use `work`.
    """
    cdef Py_ssize_t T = gates.shape[0], B = gates.shape[1], I = x.shape[2]
    cdef Py_ssize_t Hout = h.shape[2], H = w_hr.shape[1], P = w_hr.shape[0]
    cdef Py_ssize_t G = gate_width(cell, H), Gs = gates.shape[2], TB = T * B
    cdef bint has_dy = dy.shape[0] > 0
    cdef bint has_dx = dx.shape[0] > 0
    cdef bint gru = cell == GRU_LINEAR_BEFORE_RESET or cell == GRU_RESET_BEFORE
    cdef Py_ssize_t group, item, r0, r1, r, j, n_fused, K, t
    cdef int64_t* kmap
    cdef const char* problem
    cdef Py_ssize_t NR = panel_width(&dA[0, 0, 0])
    cdef Py_ssize_t Ip = padded_columns(&dA[0, 0, 0], I)
    cdef Py_ssize_t Hp = padded_columns(&dA[0, 0, 0], Hout)
    cdef Py_ssize_t xh_cols = Ip + Hp + (H if cell == GRU_RESET_BEFORE else 0)
    cdef floating* w_ih_pack
    cdef floating* w_hh_pack
    cdef floating* w_n_pack
    cdef floating* w_hr_pack
    cdef floating* xh_pack
    cdef floating* dw
    cdef floating* buf
    cdef floating* own
    cdef const floating* peep_p = NULL
    cdef int team = 0
    cdef fl_barrier bar
    fl_barrier_init(&bar)
    if columns < 0:
        if n_groups == 1 and n_product_threads > 1:
            team = column_threads(&dA[0, 0, 0], cell, B, Hout, H, n_product_threads)
    elif columns > 0:
        team = <int>max(1, min(<Py_ssize_t>n_product_threads, unit_chunks(&dA[0, 0, 0], H)))
    if (T < 1 or B < 1 or H < 1 or I < 1 or n_groups < 1 or n_groups > B
            or n_product_threads < 1 or cell < 0 or cell > RNN_RELU
            or Hout != (P if P else H) or (P and cell != LSTM)
            or Gs != (H if cell > GRU_RESET_BEFORE else 4 * H)
            or w_ih.shape[0] != G or w_ih.shape[1] != I
            or w_hh.shape[0] != G or w_hh.shape[1] != Hout
            or (peep.shape[0] != 0 and (cell != LSTM or peep.shape[0] != 3 or peep.shape[1] != H))
            or lengths.shape[0] != B or x.shape[0] != T or x.shape[1] != B
            or h.shape[0] != T + 1 or h.shape[1] != B
            or (cell == LSTM and (c.shape[0] != T + 1 or c.shape[1] != B or c.shape[2] != H
                                  or dc.shape[0] != B or dc.shape[1] != H))
            or dh.shape[0] != B or dh.shape[1] != Hout
            or dA.shape[0] != T or dA.shape[1] != B or dA.shape[2] != Gs
            or (P and (dhp.shape[0] != T or dhp.shape[1] != B or dhp.shape[2] != P))
            or (has_dx and dx.shape[0] != T) or dx.shape[1] != B or dx.shape[2] != I
            or dw_ih.shape[0] != G or dw_ih.shape[1] != I
            or dw_hh.shape[0] != G or dw_hh.shape[1] != Hout
            or db_ih.shape[0] != G or db_hh.shape[0] != G
            or (has_dy and (dy.shape[0] != T or dy.shape[1] != B or dy.shape[2] != Hout))
            or work.shape[0] != B or work.shape[1] != H
            or scratch.shape[0] < backward_scratch(&dA[0, 0, 0], cell, TB, I, Hout, H, P,
                                                   n_product_threads, 0)):
        raise ValueError("recurrent_backward: inconsistent buffer shapes")
    if team and n_groups != 1:
        raise ValueError("recurrent_backward: the column split runs the rows as one group "
                         f"(columns=1 needs n_groups=1, got {n_groups})")
    if team and scratch.shape[0] < backward_scratch(&dA[0, 0, 0], cell, TB, I, Hout, H, P,
                                                    n_product_threads, B):
        raise ValueError("recurrent_backward: scratch too short for the column split's "
                         "buffers (backward_scratch_length(..., column_rows=B))")
    problem = lengths_problem(lengths, T, n_groups)
    if problem != NULL:
        raise ValueError("recurrent_backward: " + problem.decode())
    if peep.shape[0]:
        peep_p = &peep[0, 0]
    w_ih_pack = aligned(&scratch[0])
    w_hh_pack = w_ih_pack + packed_length(&dA[0, 0, 0], G, I)
    w_n_pack = w_hh_pack + packed_length(&dA[0, 0, 0], G, Hout)
    w_hr_pack = w_n_pack + packed_length(&dA[0, 0, 0], H, Hout)
    xh_pack = w_hr_pack + packed_length(&dA[0, 0, 0], P, H)
    dw = xh_pack + packed_length(&dA[0, 0, 0], TB, xh_cols)
    buf = dw + G * (Ip + Hout)
    kmap = <int64_t*>((<size_t>(buf + n_product_threads * copy_length(&dA[0, 0, 0])) + 7)
                      & ~(<size_t>7))
    own = aligned(<floating*>(kmap + TB))   # the column split's buffers (column_rows = B)
    n_fused = 2 * H if gru else G
    # x's columns padded to whole panels: at least half of them zeros
    cdef bint narrow_input = 2 * I <= Ip
    with nogil:
        pack_block(&w_ih[0, 0], G, I, w_ih_pack, n_product_threads)
        if gru:   # the r, z block (2H, H) and the n block (H, H) apart
            pack_block(&w_hh[0, 0], 2 * H, Hout, w_hh_pack, n_product_threads)
            pack_block(&w_hh[0, 0] + 2 * H * Hout, H, Hout, w_n_pack, n_product_threads)
        else:
            pack_block(&w_hh[0, 0], G, Hout, w_hh_pack, n_product_threads)
        if P:
            pack_block(&w_hr[0, 0], P, H, w_hr_pack, 1)
        if team:   # the column split: every thread in every step
            with parallel(num_threads=team):
                column_walk(cell, w_hh_pack, w_n_pack, w_hr_pack, peep_p, &lengths[0],
                            &h[0, 0, 0], &c[0, 0, 0] if cell == LSTM else NULL,
                            &gates[0, 0, 0], &dy[0, 0, 0] if has_dy else NULL, &dh[0, 0],
                            &dc[0, 0] if cell == LSTM else NULL, &dA[0, 0, 0],
                            &dhp[0, 0, 0] if P else NULL, own, T, B, H, Hout, P, Gs, &bar,
                            threadid(), fl_team_size())
        else:      # a group of batch rows per thread, each on its own to the end
            for group in prange(n_groups, num_threads=n_groups, schedule="static"):
                run_group(cell, w_hh_pack, w_n_pack, w_hr_pack, peep_p, &lengths[0],
                          &h[0, 0, 0], &c[0, 0, 0] if cell == LSTM else NULL, &gates[0, 0, 0],
                          &dy[0, 0, 0] if has_dy else NULL, &dh[0, 0],
                          &dc[0, 0] if cell == LSTM else NULL, &dA[0, 0, 0],
                          &dhp[0, 0, 0] if P else NULL, &work[0, 0], T, B, H, Hout, P, Gs,
                          group * B // n_groups, (group + 1) * B // n_groups)
        # The products below sum over the K rows that hold data (t < length), which kmap
        # lists (NULL when that is every row); dx is zero on the others.
        K = map_rows(&lengths[0], T, B, n_groups, kmap)
        if K < TB and has_dx:
            for t in range(T):
                for r in range(B):
                    if lengths[r] <= t:
                        memset(&dx[t, r, 0], 0, I * sizeof(floating))
        if K == TB:
            kmap = NULL
        # [x | h_prev | m] (K, xh_cols) packed; dx = dA w_ih (unless dx is (0, B, I)); by
        # blocks of rows
        for item in prange((K + ROWS_PER_ITEM - 1) // ROWS_PER_ITEM,
                           num_threads=n_product_threads, schedule="static"):
            r0 = item * ROWS_PER_ITEM
            pack_and_dx(cell, &x[0, 0, 0], &h[0, 0, 0], &gates[0, 0, 0], &dA[0, 0, 0],
                        w_ih_pack, &dx[0, 0, 0] if has_dx else NULL, xh_pack, kmap, r0,
                        min(r0 + ROWS_PER_ITEM, K), K, I, Hout, H, G, Gs, Ip, Hp)
        # [dw_ih | dw_hh] and the bias gradients, by blocks of gate rows: one product where the
        # input and recurrent sides share dA's columns and h_prev (or, for an input much
        # narrower than its padded panels, two: x's zero columns would cost as much as real
        # ones) ...
        for item in prange((n_fused + ROWS_PER_ITEM - 1) // ROWS_PER_ITEM,
                           num_threads=n_product_threads, schedule="static"):
            r0 = item * ROWS_PER_ITEM
            weight_rows(&dA[0, 0, 0], kmap, xh_pack, dw, &db_ih[0], &db_hh[0],
                        buf + threadid() * copy_length(&dA[0, 0, 0]), r0,
                        min(r0 + ROWS_PER_ITEM, n_fused), K, Gs, I, Ip, Hout,
                        0 if narrow_input else -1, Ip)
        # ... and the GRU's n block apart: recurrent gradient dm (dA's slot 3), input h_prev
        # or m = r * h_prev
        if gru:
            for item in prange((H + ROWS_PER_ITEM - 1) // ROWS_PER_ITEM,
                               num_threads=n_product_threads, schedule="static"):
                r0 = 2 * H + item * ROWS_PER_ITEM
                weight_rows(&dA[0, 0, 0], kmap, xh_pack, dw, &db_ih[0], &db_hh[0],
                            buf + threadid() * copy_length(&dA[0, 0, 0]), r0,
                            min(r0 + ROWS_PER_ITEM, 3 * H), K, Gs, I, Ip, Hout, H,
                            Ip + Hp if cell == GRU_RESET_BEFORE else Ip)
        for r in prange(G, num_threads=n_product_threads, schedule="static"):
            for j in range(I):
                dw_ih[r, j] = dw[r * (Ip + Hout) + j]
            for j in range(Hout):
                dw_hh[r, j] = dw[r * (Ip + Hout) + Ip + j]
