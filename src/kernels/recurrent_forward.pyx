"""Cython forward driver for every cell: the one time loop (src/kernels/CONTRACT.md).

Mirrors fastlstm.reference.sequence.sequence_forward (without reverse, which the Python layer
turns into loop order) with the cells' pointwise math from _lstm_cell.pxd, _gru_cell.pxd and
_rnn_cell.pxd. First the weights are packed into panels for _gemm.h's micro-kernel (in
parallel, by panels). Then one of two decompositions, chosen by the rule in _layout.pxd
(column_threads):
- groups of rows: the rows of the batch, which never meet, are cut into one group per OpenMP
  thread and each thread runs the whole time loop on its group without the GIL and without
  waiting for the others: no barrier per step, so a thread that loses its core for a while
  (a loaded machine) delays only itself;
- the column split, for batches too small for that (below, column_step): the threads share
  every step, each owning a slice of the hidden units and its part of the weights, and meet
  at a barrier per step.
In the groups of rows (one thread: one group), a group of a large batch whose weights are
small runs its rows in blocks, each block's time loop to the end before the next, so that a
step's gates stay in L2 (block_rows). Each chunk of steps starts with the input projection of
the block's active rows at all its steps (one pass over the packed w_ih^T; with a single group
of several threads, shared between the threads when it is large); then per step the recurrent
product(s) and the cell's fused pointwise pass. Variable lengths: rows are sorted by length
inside each group (with the column split, over the whole batch), so the active rows of a step
are a prefix that only shrinks; finished rows cost nothing. No BLAS call, and nothing is
allocated here.
"""
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset
from cython.parallel cimport parallel, prange, threadid
cimport numpy as cnp

from ._gemm cimport aligned, gemm, gemm_groups, gemm_step, pack, packed_length, panel_width
from ._gru_cell cimport gru_forward_rows, gru_new_rows, gru_reset_rows
from ._layout cimport (GRU_LINEAR_BEFORE_RESET, GRU_RESET_BEFORE, LSTM, RNN_RELU, RNN_TANH,
                       PACKED_FOR_COLUMNS, PACKED_FOR_ROWS, column_threads, forward_scratch,
                       gate_blocks, gate_width,
                       lengths_problem, lengths_problem_at, recurrent_packed_length,
                       unit_chunks)
from ._fpmode cimport fl_flush_denormals, fl_fpmode, fl_restore_fpmode
from ._lstm_cell cimport lstm_forward_rows
from ._rnn_cell cimport rnn_forward_rows

# With one group of rows, a chunk's input projection is shared between the threads when it
# has at least this many multiply-adds (waking the other threads costs several microseconds).
DEF SHARED_PROJECTION_MACS = 1 << 21
# The weights are packed by all threads when they hold at least this many values.
DEF SHARED_PACKING_VALUES = 1 << 16
# A group's rows run in blocks (block_rows) when the weights take at most this many bytes and
# the rows' step data more than ROW_BLOCK_BYTES (a quarter of the smallest L2 of the x86-64
# CPUs measured here, Zen 3's 512 KiB), at least ROW_BLOCK_MIN rows to a block.
DEF ROW_BLOCK_WEIGHT_BYTES = 1 << 18
DEF ROW_BLOCK_BYTES = 1 << 17
DEF ROW_BLOCK_MIN = 16

cnp.import_array()   # ForwardPlan.run reads its arrays through NumPy's C API


cdef inline Py_ssize_t active_rows(const int64_t* lengths, Py_ssize_t b0, Py_ssize_t n,
                                   Py_ssize_t t) noexcept nogil:
    """How many of the n rows from b0 (lengths never increasing) are still running at step t:
    n on entry is an upper bound (the count at an earlier step)."""
    while n > 0 and lengths[b0 + n - 1] <= t:
        n -= 1
    return n


# The caller's layout of x and y, for a call whose rows run in another order (lengths,
# reverse: ForwardPlan.run's caller_x, y and perm). The kernel then moves each chunk's rows
# itself, on the thread that computes them and while they are in cache, instead of the
# Python layer copying whole arrays into and out of loop order (fastlstm/_loop_order.py
# gather and scatter, whose results these are). x or y NULL: that side is not mapped.
cdef struct RowMap:
    const void* x           # the caller's x (T, B, I): step t of caller row r at x + t*x_t + r*x_b
    void* y                 # the caller's y (T, B, Hout), the same with y_t, y_b
    const int64_t* perm     # loop row k is caller row perm[k]
    Py_ssize_t x_t, x_b, y_t, y_b   # strides, in elements (rows contiguous)
    bint reverse            # each row read (and written) from its last valid step down


cdef void gather_x(const RowMap* rmap, floating* x_loop, const int64_t* lengths, Py_ssize_t B,
                   Py_ssize_t I, Py_ssize_t t0, Py_ssize_t f0, Py_ssize_t f1,
                   bint zeros) noexcept nogil:
    """Rows f0 <= f < f1 of the chunk from step t0 of the loop-order x (f = s*B + b: loop row
    b at step t0 + s): the caller's row perm[b] at its step of loop step t0 + s, or, past the
    row's length, zeros (with `zeros`; else left as they are, for a projection that reads
    only running rows)."""
    cdef Py_ssize_t f, s, b, L
    cdef const floating* x = <const floating*>rmap.x
    for f in range(f0, f1):
        s = t0 + f // B
        b = f % B
        L = lengths[b]
        if s < L:
            memcpy(x_loop + (t0 * B + f) * I,
                   x + (L - 1 - s if rmap.reverse else s) * rmap.x_t + rmap.perm[b] * rmap.x_b,
                   I * sizeof(floating))
        elif zeros:
            memset(x_loop + (t0 * B + f) * I, 0, I * sizeof(floating))


cdef void scatter_y(const RowMap* rmap, const floating* h, const int64_t* lengths, Py_ssize_t B,
                    Py_ssize_t Hout, Py_ssize_t t0, Py_ssize_t t1, Py_ssize_t b0, Py_ssize_t b1,
                    Py_ssize_t j0, Py_ssize_t nj) noexcept nogil:
    """Columns j0 <= j < j0 + nj of the caller's y for loop rows b0 <= b < b1 at loop steps
    t0 <= s < t1: h[s + 1, b] at the row's caller step of loop step s while s < its length;
    past it, zeros at caller step s (so each (step, row) of y is written exactly once over
    steps 0..T-1)."""
    cdef Py_ssize_t s, b, L
    cdef floating* y = <floating*>rmap.y
    if nj <= 0:
        return
    for s in range(t0, t1):
        for b in range(b0, b1):
            L = lengths[b]
            if s < L:
                memcpy(y + (L - 1 - s if rmap.reverse else s) * rmap.y_t + rmap.perm[b] * rmap.y_b
                       + j0, h + ((s + 1) * B + b) * Hout + j0, nj * sizeof(floating))
            else:
                memset(y + s * rmap.y_t + rmap.perm[b] * rmap.y_b + j0, 0, nj * sizeof(floating))


cdef void step(int cell, const floating* w_hh_pack, const floating* w_n_pack,
               const floating* w_hr_pack, const floating* bias, const floating* peep,
               floating* h, floating* c, floating* g, floating* work, Py_ssize_t t,
               Py_ssize_t m, Py_ssize_t B, Py_ssize_t H, Py_ssize_t Hout, Py_ssize_t P,
               bint keep_c, Py_ssize_t b0) noexcept nogil:
    """Step t for the m active rows from b0: g (m, Gs) holds their x_t W_ih^T; h, c, work as in
    forward (whole buffers)."""
    cdef Py_ssize_t G = gate_width(cell, H)
    cdef floating* h_prev = h + (t * B + b0) * Hout
    cdef floating* h_next = h + ((t + 1) * B + b0) * Hout
    cdef floating* rec = work + b0 * 3 * H
    if cell == LSTM:
        # g (m, 4H) += h_t (m, Hout) @ w_hh^T
        gemm_step(t, m, G, Hout, h_prev, Hout, w_hh_pack, g, G, True)
        lstm_forward_rows(g, bias, peep, c + ((t if keep_c else t % 2) * B + b0) * H,
                          c + ((t + 1 if keep_c else (t + 1) % 2) * B + b0) * H,
                          work + b0 * H if P else h_next, m, H, H)
        if P:   # h_next (m, P) = (o * tanh(c)) (m, H) @ w_hr^T
            gemm(m, P, H, work + b0 * H, H, 1, w_hr_pack, h_next, P, False)
    elif cell == GRU_LINEAR_BEFORE_RESET:
        gemm_step(t, m, G, H, h_prev, H, w_hh_pack, rec, 3 * H, False)
        gru_forward_rows(g, rec, bias, bias + G, h_prev, h_next, m, H, H, H)
    elif cell == GRU_RESET_BEFORE:
        gemm_step(t, m, 2 * H, H, h_prev, H, w_hh_pack, rec, 3 * H, False)
        gru_reset_rows(g, rec, bias, h_prev, m, H, H, H)
        # rec[:, 2H:3H] = (r * h) (m, H) @ w_hn^T
        gemm(m, H, H, g + 3 * H, 4 * H, 1, w_n_pack, rec + 2 * H, 3 * H, False)
        gru_new_rows(g, rec, bias, h_prev, h_next, m, H, H, H)
    else:
        gemm_step(t, m, G, H, h_prev, H, w_hh_pack, g, G, True)
        rnn_forward_rows(g, bias, h_next, cell == RNN_RELU, m, H, H)


cdef void run_chunk(int cell, const floating* w_hh_pack, const floating* w_n_pack,
                    const floating* w_hr_pack, const floating* bias, const floating* peep,
                    const int64_t* lengths, floating* h, floating* c, floating* gates,
                    floating* work, Py_ssize_t B, Py_ssize_t H, Py_ssize_t Hout, Py_ssize_t P,
                    Py_ssize_t Gs, bint keep_c, Py_ssize_t t0, Py_ssize_t k, Py_ssize_t b0,
                    Py_ssize_t b1) noexcept nogil:
    """Steps t0 <= t < t0 + k for the rows b0 <= b < b1 that are still running; step t works in
    gates[t - t0], which holds the input projection of its rows."""
    cdef Py_ssize_t s, m = b1 - b0
    for s in range(k):
        m = active_rows(lengths, b0, m, t0 + s)
        if m == 0:
            return
        step(cell, w_hh_pack, w_n_pack, w_hr_pack, bias, peep, h, c, gates + (s * B + b0) * Gs,
             work, t0 + s, m, B, H, Hout, P, keep_c, b0)


cdef void project(const floating* x, const floating* w_ih_pack, const int64_t* lengths,
                  floating* gates, Py_ssize_t B, Py_ssize_t I, Py_ssize_t G, Py_ssize_t Gs,
                  Py_ssize_t t0, Py_ssize_t k, Py_ssize_t b0, Py_ssize_t b1) noexcept nogil:
    """gates[s, b] (G of Gs columns) = x[t0 + s, b] @ w_ih^T for the rows b0 <= b < b1 still
    running at step t0 + s, s < k: one pass over w_ih's panels for each run of steps with the
    same running rows (one run when every row lasts through the chunk; with lengths, a run
    ends where a row does)."""
    cdef Py_ssize_t s = 0, end, m = b1 - b0
    while s < k:
        m = active_rows(lengths, b0, m, t0 + s)
        if m == 0:
            return
        end = min(k, lengths[b0 + m - 1] - t0)   # the shortest running row's last step + 1
        gemm_groups(end - s, m, G, I, x + ((t0 + s) * B + b0) * I, I, B * I, w_ih_pack,
                    gates + (s * B + b0) * Gs, Gs, B * Gs)
        s = end


cdef inline Py_ssize_t block_rows(int cell, Py_ssize_t I, Py_ssize_t H, Py_ssize_t Hout,
                                   Py_ssize_t P, Py_ssize_t Gs, Py_ssize_t itemsize,
                                   Py_ssize_t rows) noexcept nogil:
    """How many rows of a group run their time loop together (run_group): all of them, unless
    the weights fit ROW_BLOCK_WEIGHT_BYTES and the rows' step data (their gates, h, c and x
    rows) would not fit ROW_BLOCK_BYTES; then blocks of rows whose step data fits, so that a
    step's gates stay in the core's L2 instead of streaming through L3 (a batch of 2000 at
    H = 64: 2 MB of gates a step)."""
    cdef Py_ssize_t G = gate_width(cell, H)
    cdef Py_ssize_t weights = (G * (I + Hout) + P * H) * itemsize
    cdef Py_ssize_t per_row = (Gs + Hout + H + I) * itemsize
    if weights > ROW_BLOCK_WEIGHT_BYTES or rows * per_row <= ROW_BLOCK_BYTES:
        return rows
    return max(ROW_BLOCK_MIN, ROW_BLOCK_BYTES // per_row // 16 * 16)


def row_block(int cell, Py_ssize_t I, Py_ssize_t H, Py_ssize_t Hout, Py_ssize_t P,
              Py_ssize_t itemsize, Py_ssize_t rows):
    """block_rows for a group of `rows` rows of a layer (tests): the rows run together."""
    return block_rows(cell, I, H, Hout, P, 4 * H if cell < RNN_TANH else H, itemsize, rows)


cdef void run_group(int cell, const floating* x, const floating* w_ih_pack,
                    const floating* w_hh_pack, const floating* w_n_pack,
                    const floating* w_hr_pack, const floating* bias, const floating* peep,
                    const int64_t* lengths, floating* h, floating* c, floating* gates,
                    floating* work, Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                    Py_ssize_t Hout, Py_ssize_t P, Py_ssize_t Gs, Py_ssize_t K, bint keep_c,
                    Py_ssize_t b0, Py_ssize_t b1, const RowMap* rmap) noexcept nogil:
    """The whole time loop for batch rows b0 <= b < b1, in blocks of block_rows rows (each
    block to the end before the next: rows never meet, and a block of rows sorted by length is
    still sorted) and chunks of K steps (this thread in flush-to-zero mode, _fpmode.h); with a
    row map, each chunk's rows of x gathered before its projection and its outputs scattered
    after its steps."""
    cdef Py_ssize_t t0, k, s, r0 = b0, r1
    cdef Py_ssize_t n = block_rows(cell, I, H, Hout, P, Gs, sizeof(floating), b1 - b0)
    cdef fl_fpmode mode = fl_flush_denormals()
    while r0 < b1:
        r1 = min(b1, r0 + n)
        t0 = 0
        while t0 < T and lengths[r0] > t0:
            k = min(K, T - t0)
            if rmap.x != NULL:
                for s in range(k):
                    gather_x(rmap, <floating*>x, lengths, B, I, t0, s * B + r0, s * B + r1,
                             False)
            project(x, w_ih_pack, lengths, gates, B, I, gate_width(cell, H), Gs, t0, k, r0, r1)
            run_chunk(cell, w_hh_pack, w_n_pack, w_hr_pack, bias, peep, lengths, h, c, gates,
                      work, B, H, Hout, P, Gs, keep_c, t0, k, r0, r1)
            if rmap.y != NULL:
                scatter_y(rmap, h, lengths, B, Hout, t0, t0 + k, r0, r1, 0, Hout)
            t0 += K
        if rmap.y != NULL:   # the steps after the block's last row ended: zeros
            scatter_y(rmap, h, lengths, B, Hout, t0, T, r0, r1, 0, Hout)
        r0 = r1
    fl_restore_fpmode(mode)


# ---------------------------------------------------------------------------------------------
# The column split: for a batch too small to give every thread rows of its own, the threads
# share each step. Thread k of the team owns a slice of the hidden units, u0 <= j < u1, dealt
# out in chunks of one panel width, and with them every gate column of those units: at each
# step it forms its columns of the recurrent product (a run of whole panels in each gate block
# of the block-wise packing, so it reads only its part of w_hh, which stays in its core's
# cache from step to step), runs the cell's pointwise pass on its units, and writes its slice
# of h_t; then the team meets at a barrier (_barrier.h) that publishes h_t. Each element is
# computed by the same operations in the same order as in the groups of rows, so the results
# are bit for bit those of any thread count. The input projection of a chunk of steps stays
# one product, its rows shared by the team.

from ._barrier cimport fl_barrier, fl_barrier_init, fl_barrier_wait, fl_team_size


cdef void column_step(int cell, const floating* w_hh_pack, const floating* w_n_pack,
                      const floating* w_hr_pack, const floating* bias, const floating* peep,
                      floating* h, floating* c, floating* g, floating* work, Py_ssize_t t,
                      Py_ssize_t m, Py_ssize_t B, Py_ssize_t H, Py_ssize_t Hout, Py_ssize_t P,
                      bint keep_c, Py_ssize_t c0, Py_ssize_t u0, Py_ssize_t n, Py_ssize_t p0,
                      Py_ssize_t pn, fl_barrier* bar, int team,
                      unsigned* seen) noexcept nogil:
    """Step t for the m active rows (from row 0), this thread's share: units u0 <= j < u0 + n
    (chunk c0 on, n may be 0) and, for a projection LSTM, the output columns p0 <= j < p0 + pn.
    g (m, Gs) holds x_t W_ih^T. Meets the team at one barrier, at two for the cells whose step
    has a second product over all units (the projection LSTM, the reset-before GRU)."""
    cdef Py_ssize_t G = gate_width(cell, H)
    cdef Py_ssize_t Gs = H if cell > GRU_RESET_BEFORE else 4 * H
    cdef Py_ssize_t NR = panel_width(g)
    cdef Py_ssize_t chunks = unit_chunks(g, H), q
    cdef floating* h_prev = h + t * B * Hout
    cdef floating* h_next = h + (t + 1) * B * Hout
    cdef floating* c_prev
    cdef floating* c_next
    # block q's units from u0 on: panels (q * chunks + c0) on of the block-wise packing
    cdef Py_ssize_t panel = Hout * NR
    if cell == LSTM:
        c_prev = c + (t if keep_c else t % 2) * B * H
        c_next = c + (t + 1 if keep_c else (t + 1) % 2) * B * H
        if n:
            for q in range(4):
                gemm_step(t, m, n, Hout, h_prev, Hout, w_hh_pack + (q * chunks + c0) * panel,
                          g + q * H + u0, Gs, True)
            lstm_forward_rows(g + u0, bias + u0, peep + u0 if peep != NULL else NULL,
                              c_prev + u0, c_next + u0, (work if P else h_next) + u0, m, n, H)
        if P:   # h_next (m, P) = (o * tanh(c)) (m, H) @ w_hr^T, by columns once all of it is in
            fl_barrier_wait(bar, team, seen)
            if pn:
                gemm(m, pn, H, work, H, 1, w_hr_pack + p0 * H, h_next + p0, P, False)
    elif cell == GRU_LINEAR_BEFORE_RESET:
        if n:
            for q in range(3):
                gemm_step(t, m, n, H, h_prev, H, w_hh_pack + (q * chunks + c0) * panel,
                          work + q * H + u0, 3 * H, False)
            gru_forward_rows(g + u0, work + u0, bias + u0, bias + G + u0, h_prev + u0,
                             h_next + u0, m, n, H, H)
    elif cell == GRU_RESET_BEFORE:
        if n:
            for q in range(2):
                gemm_step(t, m, n, H, h_prev, H, w_hh_pack + (q * chunks + c0) * panel,
                          work + q * H + u0, 3 * H, False)
            gru_reset_rows(g + u0, work + u0, bias + u0, h_prev + u0, m, n, H, H)
        fl_barrier_wait(bar, team, seen)   # m = r * h_prev of every unit, in g[:, 3H:4H]
        if n:
            gemm(m, n, H, g + 3 * H, 4 * H, 1, w_n_pack + c0 * panel, work + 2 * H + u0, 3 * H,
                 False)
            gru_new_rows(g + u0, work + u0, bias + u0, h_prev + u0, h_next + u0, m, n, H, H)
    else:
        if n:
            gemm_step(t, m, n, H, h_prev, H, w_hh_pack + c0 * panel, g + u0, Gs, True)
            rnn_forward_rows(g + u0, bias + u0, h_next + u0, cell == RNN_RELU, m, n, H)
    fl_barrier_wait(bar, team, seen)       # h_t (and c_t) complete


cdef void column_loop(int cell, const floating* x, const floating* w_ih_pack,
                      const floating* w_hh_pack, const floating* w_n_pack,
                      const floating* w_hr_pack, const floating* bias, const floating* peep,
                      const int64_t* lengths, floating* h, floating* c, floating* gates,
                      floating* work, Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                      Py_ssize_t Hout, Py_ssize_t P, Py_ssize_t Gs, Py_ssize_t K, bint keep_c,
                      fl_barrier* bar, int tid, int team, const RowMap* rmap) noexcept nogil:
    """The whole time loop, this thread's share (thread tid of a team of `team`): the rows
    are one group (lengths never increase over the batch), in chunks of K steps; the thread
    in flush-to-zero mode (_fpmode.h). With a row map, each thread gathers the rows of x it
    projects, and scatters the columns of y it computed (its units, or its projection
    outputs)."""
    cdef Py_ssize_t chunks = unit_chunks(gates, H)
    cdef Py_ssize_t NR = panel_width(gates)
    cdef Py_ssize_t c0 = tid * chunks // team, c1 = (tid + 1) * chunks // team
    cdef Py_ssize_t u0 = min(c0 * NR, H), n = min(c1 * NR, H) - u0
    cdef Py_ssize_t p_chunks = (P + NR - 1) // NR
    cdef Py_ssize_t p0 = min(tid * p_chunks // team * NR, P)
    cdef Py_ssize_t pn = min((tid + 1) * p_chunks // team * NR, P) - p0
    cdef Py_ssize_t G = gate_width(cell, H)
    cdef Py_ssize_t g_panels = (G + NR - 1) // NR
    cdef Py_ssize_t t0 = 0, k, s, r0, r1, m
    cdef unsigned seen = 0
    cdef fl_fpmode mode = fl_flush_denormals()
    while t0 < T and lengths[0] > t0:
        k = min(K, T - t0)
        # gates[0:k] (k*B, G of Gs) = x[t0:t0+k] (k*B, I) @ w_ih^T: a share of the rows each,
        # or with few rows (a stream's step) a share of w_ih's panels
        if k * B >= 2 * team:
            r0 = tid * k * B // team
            r1 = (tid + 1) * k * B // team
            if rmap.x != NULL:
                gather_x(rmap, <floating*>x, lengths, B, I, t0, r0, r1, True)
            if r1 > r0:
                gemm(r1 - r0, G, I, x + (t0 * B + r0) * I, I, 1, w_ih_pack, gates + r0 * Gs,
                     Gs, False)
        else:
            if rmap.x != NULL:   # every thread reads every row: one gathers them, all wait
                if tid == 0:
                    gather_x(rmap, <floating*>x, lengths, B, I, t0, 0, k * B, True)
                fl_barrier_wait(bar, team, &seen)
            r0 = tid * g_panels // team * NR
            r1 = min((tid + 1) * g_panels // team * NR, G)
            if r1 > r0:
                gemm(k * B, r1 - r0, I, x + t0 * B * I, I, 1, w_ih_pack + r0 * I,
                     gates + r0, Gs, False)
        fl_barrier_wait(bar, team, &seen)
        m = B
        for s in range(k):
            m = active_rows(lengths, 0, m, t0 + s)
            if m == 0:   # every row has ended (so the while loop ends too)
                break
            column_step(cell, w_hh_pack, w_n_pack, w_hr_pack, bias, peep, h, c,
                        gates + s * B * Gs, work, t0 + s, m, B, H, Hout, P, keep_c, c0, u0, n,
                        p0, pn, bar, team, &seen)
        if rmap.y != NULL:   # this thread's columns of h (written by it alone)
            scatter_y(rmap, h, lengths, B, Hout, t0, t0 + k, 0, B, p0 if P else u0,
                      pn if P else n)
        t0 += K
    if rmap.y != NULL:   # the steps after every row ended: zeros
        scatter_y(rmap, h, lengths, B, Hout, t0, T, 0, B, p0 if P else u0, pn if P else n)
    fl_restore_fpmode(mode)


cdef void projection_part(Py_ssize_t G, Py_ssize_t I, const floating* x,
                          const floating* w_ih_pack, floating* gates, Py_ssize_t Gs,
                          Py_ssize_t rows) noexcept nogil:
    """gates (rows, G of Gs) = x (rows, I) @ w_ih^T, on a thread in flush-to-zero mode."""
    cdef fl_fpmode mode = fl_flush_denormals()
    gemm(rows, G, I, x, I, 1, w_ih_pack, gates, Gs, False)
    fl_restore_fpmode(mode)


cdef void pack_rows(const floating* w, Py_ssize_t rows, Py_ssize_t cols, floating* out,
                    int n_threads) noexcept nogil:
    """w (rows, cols) row-major -> w^T (cols, rows) packed into panels, a panel per work item."""
    cdef Py_ssize_t p, NR = panel_width(out)
    cdef Py_ssize_t panels = (rows + NR - 1) // NR
    if n_threads == 1:   # no OpenMP region (entering one costs even for a single thread)
        pack(cols, rows, w, 1, cols, out, cols * NR)
        return
    for p in prange(panels, num_threads=n_threads, schedule="static"):
        pack(cols, min(NR, rows - p * NR), w + p * NR * cols, 1, cols, out + p * cols * NR,
             cols * NR)


cdef void pack_blocks(const floating* w, Py_ssize_t blocks, Py_ssize_t H, Py_ssize_t cols,
                      floating* out, int n_threads) noexcept nogil:
    """w (blocks * H, cols) -> w^T packed block by block: each block of H rows starts a panel
    of its own (the column split's packing; a single block is the plain packing)."""
    cdef Py_ssize_t q, NR = panel_width(out)
    cdef Py_ssize_t block = (H + NR - 1) // NR * NR * cols
    for q in range(blocks):
        pack_rows(w + q * H * cols, H, cols, out + q * block, n_threads)


# Where a scratch buffer holds the packed weights (forward_scratch's parts, in order).
cdef struct Packed:
    void* w_ih
    void* w_hh
    void* w_n
    void* w_hr


cdef Packed packed_parts(floating* scratch, int cell, Py_ssize_t I, Py_ssize_t H,
                         Py_ssize_t Hout) noexcept nogil:
    """The parts of a forward scratch buffer, from its first 64-byte boundary on."""
    cdef Packed parts
    cdef floating* w_ih_pack = aligned(scratch)
    cdef floating* w_hh_pack = w_ih_pack + packed_length(scratch, I, gate_width(cell, H))
    cdef floating* w_n_pack = w_hh_pack + recurrent_packed_length(scratch, cell, Hout, H)
    parts.w_ih, parts.w_hh, parts.w_n = w_ih_pack, w_hh_pack, w_n_pack
    parts.w_hr = w_n_pack + packed_length(scratch, Hout, 2 * H)
    return parts


cdef void pack_layer(int cell, const floating* w_ih, const floating* w_hh,
                     const floating* w_hr, Packed parts, Py_ssize_t I, Py_ssize_t H,
                     Py_ssize_t Hout, Py_ssize_t P, bint columns,
                     int n_threads) noexcept nogil:
    """Pack one layer's weights into `parts` for the column split (columns) or the groups of
    rows, on n_threads threads when they are many values."""
    cdef Py_ssize_t G = gate_width(cell, H)
    cdef int packers = n_threads if (I + Hout) * G >= SHARED_PACKING_VALUES else 1
    cdef floating* w_hh_pack = <floating*>parts.w_hh
    pack_rows(w_ih, G, I, <floating*>parts.w_ih, packers)
    if cell == GRU_RESET_BEFORE:   # its r, z block and its n block apart
        if columns:
            pack_blocks(w_hh, 2, H, Hout, w_hh_pack, packers)
        else:
            pack_rows(w_hh, 2 * H, Hout, w_hh_pack, packers)
        pack_rows(w_hh + 2 * H * Hout, H, Hout, <floating*>parts.w_n, packers)
    elif columns:
        pack_blocks(w_hh, gate_blocks(cell), H, Hout, w_hh_pack, packers)
    else:
        pack_rows(w_hh, G, Hout, w_hh_pack, packers)
    if P:
        pack_rows(w_hr, P, H, <floating*>parts.w_hr, 1)


cdef void run_layer(int cell, const floating* x, Packed parts, const floating* bias,
                    const floating* peep, const int64_t* lengths, floating* h, floating* c,
                    floating* gates, floating* work, Py_ssize_t T, Py_ssize_t B, Py_ssize_t I,
                    Py_ssize_t H, Py_ssize_t Hout, Py_ssize_t P, Py_ssize_t Gs, Py_ssize_t K,
                    bint keep_c, int team, int n_threads, const RowMap* rmap) noexcept nogil:
    """The time loop on packed weights, in one of forward()'s decompositions: the column split
    on `team` threads (team > 0), else min(n_threads, B) groups of rows. c: NULL unless LSTM;
    work: NULL when it has no columns. rmap: where the caller's x and y lie when the kernel
    moves the rows into and out of loop order (x is then the loop-order buffer it fills),
    its x and y NULL when it does not. Sets flush-to-zero mode for this thread (and each
    team thread sets its own) and restores it."""
    cdef Py_ssize_t G = gate_width(cell, H)
    cdef Py_ssize_t n_groups = 1 if team else min(<Py_ssize_t>n_threads, B)
    cdef Py_ssize_t group, t0, k, part, r0, r1, n_parts
    cdef const floating* w_ih_pack = <floating*>parts.w_ih
    cdef const floating* w_hh_pack = <floating*>parts.w_hh
    cdef const floating* w_n_pack = <floating*>parts.w_n
    cdef const floating* w_hr_pack = <floating*>parts.w_hr
    cdef fl_barrier bar
    fl_barrier_init(&bar)
    cdef fl_fpmode mode = fl_flush_denormals()   # this thread's arithmetic below (run_chunk)
    if team:   # the column split: every thread in every step
        with parallel(num_threads=team):
            column_loop(cell, x, w_ih_pack, w_hh_pack, w_n_pack, w_hr_pack, bias, peep,
                        lengths, h, c, gates, work, T, B, I, H, Hout, P, Gs, K, keep_c, &bar,
                        threadid(), fl_team_size(), rmap)
    elif n_groups > 1:  # a group of batch rows per thread, each on its own to the end
        for group in prange(n_groups, num_threads=n_groups, schedule="static"):
            run_group(cell, x, w_ih_pack, w_hh_pack, w_n_pack, w_hr_pack, bias, peep, lengths,
                      h, c, gates, work, T, B, I, H, Hout, P, Gs, K, keep_c,
                      group * B // n_groups, (group + 1) * B // n_groups, rmap)
    elif n_threads == 1:   # one thread, one group (its rows in blocks: run_group)
        run_group(cell, x, w_ih_pack, w_hh_pack, w_n_pack, w_hr_pack, bias, peep, lengths, h,
                  c, gates, work, T, B, I, H, Hout, P, Gs, K, keep_c, 0, B, rmap)
    else:  # one group: all threads project a chunk's input, then one thread runs its steps
        t0 = 0
        while t0 < T and lengths[0] > t0:
            k = min(K, T - t0)
            n_parts = n_threads if k * B * I * G >= SHARED_PROJECTION_MACS else 1
            if n_parts == 1:   # no OpenMP region; only the rows still running (lengths)
                if rmap.x != NULL:
                    gather_x(rmap, <floating*>x, lengths, B, I, t0, 0, k * B, False)
                project(x, w_ih_pack, lengths, gates, B, I, G, Gs, t0, k, 0, B)
            else:
                for part in prange(n_parts, num_threads=n_parts, schedule="static"):
                    r0 = part * k * B // n_parts
                    r1 = (part + 1) * k * B // n_parts
                    if rmap.x != NULL:
                        gather_x(rmap, <floating*>x, lengths, B, I, t0, r0, r1, True)
                    # gates[0:k] (k*B, G of Gs) = x[t0:t0+k] (k*B, I) @ w_ih^T, by rows
                    projection_part(G, I, x + (t0 * B + r0) * I, w_ih_pack, gates + r0 * Gs,
                                    Gs, r1 - r0)
            run_chunk(cell, w_hh_pack, w_n_pack, w_hr_pack, bias, peep, lengths, h, c, gates,
                      work, B, H, Hout, P, Gs, keep_c, t0, k, 0, B)
            if rmap.y != NULL:
                scatter_y(rmap, h, lengths, B, Hout, t0, t0 + k, 0, B, 0, Hout)
            t0 += k
        if rmap.y != NULL:   # the steps after every row ended: zeros
            scatter_y(rmap, h, lengths, B, Hout, t0, T, 0, B, 0, Hout)
    fl_restore_fpmode(mode)


cdef const char* buffers_problem(int cell, Py_ssize_t T, Py_ssize_t B, Py_ssize_t I,
                                 Py_ssize_t H, Py_ssize_t Hout, Py_ssize_t P,
                                 Py_ssize_t n_lengths, Py_ssize_t h0, Py_ssize_t h1,
                                 Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t c2, Py_ssize_t K,
                                 Py_ssize_t g1, Py_ssize_t Gs, Py_ssize_t work0,
                                 Py_ssize_t work1, int n_threads) noexcept:
    """NULL when the per-call buffers fit a layer of these sizes (CONTRACT.md): lengths (B,),
    h (T+1, B, Hout), c (2 or T+1, B, H) (LSTM), gates (K, B, Gs), work (B, work width);
    else what is wrong."""
    cdef Py_ssize_t work_width = (3 * H if cell == GRU_LINEAR_BEFORE_RESET
                                  or cell == GRU_RESET_BEFORE else (H if P else 0))
    if (T < 1 or B < 1 or I < 1 or H < 1 or K < 1 or K > T or n_threads < 1 or cell < 0
            or cell > RNN_RELU or Hout != (P if P else H) or (P and cell != LSTM)
            or n_lengths != B or h0 != T + 1 or h1 != B
            or (cell == LSTM and ((c0 != 2 and c0 != T + 1) or c1 != B or c2 != H))
            or g1 != B or Gs != (H if cell > GRU_RESET_BEFORE else 4 * H)
            or work0 != B or (work_width and work1 != work_width)):
        return "inconsistent buffer shapes"
    return NULL


def forward(int cell, const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
            const floating[:, ::1] w_hh, const floating[:, ::1] w_hr,
            const floating[:, ::1] bias, const floating[:, ::1] peep,
            const int64_t[::1] lengths, floating[:, :, ::1] h, floating[:, :, ::1] c,
            floating[:, :, ::1] gates, floating[:, ::1] work, floating[::1] scratch,
            int n_threads=1, bint pack_weights=True, int columns=-1):
    """Run `cell` over T >= 1 steps of B >= 1 rows; buffers as in src/kernels/CONTRACT.md.

    scratch (at least _info.forward_scratch_length(cell, I, Hout, H, P, itemsize),)  for the
                        packed weights, from its first 64-byte boundary on
    n_threads           OpenMP threads, in one of two decompositions:
                        groups of rows: with B >= 2 each thread takes a group of batch rows (at
                        most B groups) for the whole time loop; with one group they share each
                        chunk's input projection, and one of them runs the chunk's steps.
                        The column split (above column_step): the rows are one group, and
                        the threads share every step by slices of the hidden units.
    pack_weights        False: scratch already holds these weights packed by an earlier call
                        with the same cell, sizes and decomposition (a stream's steps), so
                        packing is skipped.
    columns             -1: the column split when _layout.column_threads' rule picks it (see
                        _info.column_threads); 0: never; 1: always, on min(n_threads, chunks
                        of units) threads (one thread included: a stream whose weights are
                        packed for the split; tests). With the split, lengths never increase
                        over the whole batch (one group). With pack_weights=False the
                        decomposition must be the one scratch was packed for (its layout
                        mark says which; else ValueError).
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t Hout = h.shape[2], H = w_hr.shape[1], P = w_hr.shape[0]
    cdef Py_ssize_t K = gates.shape[0], Gs = gates.shape[2]
    cdef Py_ssize_t G = gate_width(cell, H)
    cdef bint keep_c = c.shape[0] == T + 1
    cdef int team
    if columns < 0:
        team = column_threads(&gates[0, 0, 0], cell, B, Hout, H, n_threads)
    elif columns == 0:
        team = 0
    else:
        team = <int>max(1, min(<Py_ssize_t>n_threads, unit_chunks(&gates[0, 0, 0], H)))
    cdef Py_ssize_t n_groups = 1 if team else min(n_threads, B)
    cdef const char* problem = buffers_problem(
        cell, T, B, I, H, Hout, P, lengths.shape[0], h.shape[0], h.shape[1], c.shape[0],
        c.shape[1], c.shape[2], K, gates.shape[1], Gs, work.shape[0], work.shape[1], n_threads)
    if (problem != NULL or w_ih.shape[0] != G or w_ih.shape[1] != I
            or w_hh.shape[0] != G or w_hh.shape[1] != Hout
            or bias.shape[0] != 2 or bias.shape[1] != G
            or (peep.shape[0] != 0 and (cell != LSTM or peep.shape[0] != 3 or peep.shape[1] != H))
            or scratch.shape[0] < forward_scratch(&gates[0, 0, 0], cell, I, Hout, H, P)):
        raise ValueError("recurrent_forward: inconsistent buffer shapes")
    problem = lengths_problem(lengths, T, n_groups)
    if problem != NULL:
        raise ValueError("recurrent_forward: " + problem.decode())
    cdef Py_ssize_t mark = forward_scratch(&gates[0, 0, 0], cell, I, Hout, H, P) - 1
    cdef floating layout = PACKED_FOR_COLUMNS if team else PACKED_FOR_ROWS
    if pack_weights:
        scratch[mark] = layout
    elif scratch[mark] != layout:
        raise ValueError("recurrent_forward: scratch holds weights packed for the other "
                         "decomposition (pack_weights=False needs the columns= of the call "
                         "that packed them)")
    cdef const floating* peep_p = &peep[0, 0] if peep.shape[0] else NULL
    cdef Packed parts = packed_parts(&scratch[0], cell, I, H, Hout)
    cdef RowMap no_map
    memset(&no_map, 0, sizeof(RowMap))
    with nogil:
        if pack_weights:
            pack_layer(cell, &w_ih[0, 0], &w_hh[0, 0], &w_hr[0, 0] if P else NULL, parts, I, H,
                       Hout, P, team > 0, n_threads)
        run_layer(cell, &x[0, 0, 0], parts, &bias[0, 0], peep_p, &lengths[0], &h[0, 0, 0],
                  &c[0, 0, 0] if cell == LSTM else NULL, &gates[0, 0, 0],
                  &work[0, 0] if work.shape[1] else NULL, T, B, I, H, Hout, P, Gs, K, keep_c,
                  team, n_threads, &no_map)


cdef class ForwardPlan:
    """One layer's forward with its weights packed once, at construction, for one
    decomposition: run() then checks only the per-call buffers and runs forward()'s time loop
    (pack_weights=False), without re-reading the weight arguments. A layer stack keeps one
    per layer, direction and decomposition (fastlstm._api.PackedLayer, through
    fastlstm._backends.CythonBackend.forward). The arrays must not change while the plan
    lives (it keeps them alive).

    w_ih (G, I), w_hh (G, Hout), w_hr (P, H) or (0, H), bias (2, G), peep (3, H) or (0, H),
    scratch (at least forward_scratch_length(...),): C-contiguous, one float dtype.
    columns: 1 packs for the column split (run() then uses min(n_threads, chunks of units)
    threads, one included), 0 for the groups of rows (min(n_threads, B) groups). n_threads:
    the threads that pack the weights (when they are many values)."""

    cdef object keep
    cdef bint is_double
    cdef int cell, split, chunks
    cdef Py_ssize_t n_in, H, Hout, P   # n_in: I (NumPy's complex.h takes the name I)
    cdef size_t bias, peep, scratch

    def __init__(self, int cell, w_ih, w_hh, w_hr, bias, peep, scratch, int columns,
                 int n_threads=1):
        if columns not in (0, 1):
            raise ValueError(f"ForwardPlan: columns 0 or 1 expected, got {columns}")
        if cell < 0 or cell > RNN_RELU:
            raise ValueError(f"ForwardPlan: unknown cell {cell}")
        if not isinstance(scratch, cnp.ndarray) or cnp.PyArray_TYPE(scratch) not in (
                cnp.NPY_FLOAT32, cnp.NPY_FLOAT64):
            raise TypeError("ForwardPlan: scratch: expected a float32 or float64 array, got "
                            + (str(scratch.dtype) if isinstance(scratch, cnp.ndarray)
                               else type(scratch).__name__))
        if n_threads < 1:
            raise ValueError(f"ForwardPlan: n_threads: expected at least 1, got {n_threads}")
        cdef int typenum = cnp.PyArray_TYPE(scratch)
        cdef char* ih = array_data(w_ih, "w_ih", typenum, 2, False)
        cdef char* hh = array_data(w_hh, "w_hh", typenum, 2, False)
        cdef char* hr = array_data(w_hr, "w_hr", typenum, 2, False)
        array_data(bias, "bias", typenum, 2, False)
        array_data(peep, "peep", typenum, 2, False)
        cdef char* sp = array_data(scratch, "scratch", typenum, 1, True)
        cdef Py_ssize_t H = w_hr.shape[1], P = w_hr.shape[0], Hout = w_hh.shape[1]
        cdef Py_ssize_t I = w_ih.shape[1], G = gate_width(cell, H)
        cdef float f = 0
        cdef double d = 0
        cdef bint is_double = typenum == cnp.NPY_FLOAT64
        cdef Py_ssize_t needed = (forward_scratch(&d, cell, I, Hout, H, P) if is_double
                                  else forward_scratch(&f, cell, I, Hout, H, P))
        if (H < 1 or I < 1 or Hout != (P if P else H) or (P and cell != LSTM)
                or w_ih.shape[0] != G or w_hh.shape[0] != G
                or bias.shape[0] != 2 or bias.shape[1] != G
                or (peep.shape[0] != 0 and (cell != LSTM or peep.shape[0] != 3
                                            or peep.shape[1] != H))
                or scratch.shape[0] < needed):
            raise ValueError("ForwardPlan: inconsistent weight shapes")
        self.keep = (w_ih, w_hh, w_hr, bias, peep, scratch)
        self.is_double = is_double
        self.cell, self.split = cell, columns
        self.n_in, self.H, self.Hout, self.P = I, H, Hout, P
        self.bias, self.scratch = bias.ctypes.data, scratch.ctypes.data
        self.peep = peep.ctypes.data if peep.shape[0] else 0
        self.chunks = unit_chunks(&d, H) if is_double else unit_chunks(&f, H)
        cdef int layout = PACKED_FOR_COLUMNS if columns else PACKED_FOR_ROWS
        if is_double:   # the layout mark, as forward(pack_weights=True) writes it
            (<double*>sp)[needed - 1] = layout
            with nogil:
                pack_layer(cell, <double*>ih, <double*>hh, <double*>hr if P else NULL,
                           packed_parts(<double*>sp, cell, I, H, Hout), I, H, Hout, P,
                           columns, n_threads)
        else:
            (<float*>sp)[needed - 1] = layout
            with nogil:
                pack_layer(cell, <float*>ih, <float*>hh, <float*>hr if P else NULL,
                           packed_parts(<float*>sp, cell, I, H, Hout), I, H, Hout, P,
                           columns, n_threads)

    @property
    def columns(self):
        """1: packed for the column split; 0: for the groups of rows."""
        return self.split

    def run(self, x, lengths, h, c, gates, work, int n_threads=1, caller_x=None, y=None,
            perm=None, bint reverse=False):
        """forward(cell, x, ..., lengths, h, c, gates, work, scratch, n_threads,
        pack_weights=False, columns) on the plan's packed weights: x (T, B, I), lengths (B,)
        int64, h (T+1, B, Hout), c (2 or T+1, B, H) (LSTM; (0, B, H) otherwise), gates
        (K, B, Gs), work (B, work width), all C-contiguous, of the plan's dtype; h, c, gates
        and work writable. A wrong array is a TypeError, wrong shapes a ValueError.

        The rows moved by the kernel (inference in another order, CONTRACT.md): perm (B,)
        int64, a permutation (loop row k is caller row perm[k]), with
        caller_x (T, B, I): the caller's x in time order; x is then a writable buffer that
                 the kernel fills with loop-order rows chunk by chunk (what
                 fastlstm._loop_order's gather gives; past a row's length, zeros or left as
                 they are);
        y (T, B, Hout): writable, receives what scatter(h[1:]) gives: each row's outputs in
                 time order, zeros past its length (every element written);
        reverse: rows read and written from their last valid step down.
        caller_x and y of the plan's dtype, each row (last axis) contiguous, any other
        strides (a batch_first view)."""
        cdef int typenum = cnp.NPY_FLOAT64 if self.is_double else cnp.NPY_FLOAT32
        cdef RowMap rmap
        memset(&rmap, 0, sizeof(RowMap))
        cdef char* xp = array_data(x, "x", typenum, 3, caller_x is not None)
        cdef char* lp = array_data(lengths, "lengths", cnp.NPY_INT64, 1, False)
        cdef char* hp = array_data(h, "h", typenum, 3, True)
        cdef char* cp = array_data(c, "c", typenum, 3, True)
        cdef char* gp = array_data(gates, "gates", typenum, 3, True)
        cdef char* wp = array_data(work, "work", typenum, 2, True)
        cdef cnp.npy_intp* xs = cnp.PyArray_DIMS(x)
        cdef cnp.npy_intp* hs = cnp.PyArray_DIMS(h)
        cdef cnp.npy_intp* cs = cnp.PyArray_DIMS(c)
        cdef cnp.npy_intp* gs = cnp.PyArray_DIMS(gates)
        cdef cnp.npy_intp* ws = cnp.PyArray_DIMS(work)
        cdef Py_ssize_t T = xs[0], B = xs[1]
        cdef int team = max(1, min(n_threads, self.chunks)) if self.split else 0
        cdef const char* problem = buffers_problem(
            self.cell, T, B, xs[2], self.H, self.Hout, self.P, cnp.PyArray_DIMS(lengths)[0],
            hs[0], hs[1], cs[0], cs[1], cs[2], gs[0], gs[1], gs[2], ws[0], ws[1], n_threads)
        if problem == NULL and (xs[2] != self.n_in or hs[2] != self.Hout):
            problem = "inconsistent buffer shapes"
        if problem == NULL:
            problem = lengths_problem_at(<int64_t*>lp, B, T, 1 if team else min(n_threads, B))
        if problem != NULL:
            raise ValueError("ForwardPlan.run: " + problem.decode())
        if caller_x is not None or y is not None:
            row_map(&rmap, caller_x, y, perm, reverse, typenum, T, B, self.n_in, self.Hout)
        elif perm is not None:
            raise ValueError("ForwardPlan.run: perm needs caller_x or y")
        if self.cell != LSTM:
            cp = NULL
        if ws[1] == 0:
            wp = NULL
        if self.is_double:
            with nogil:
                self._run(<double*>xp, <int64_t*>lp, <double*>hp, <double*>cp, <double*>gp,
                          <double*>wp, T, B, gs[0], gs[2], cs[0] == T + 1, team, n_threads,
                          &rmap)
        else:
            with nogil:
                self._run(<float*>xp, <int64_t*>lp, <float*>hp, <float*>cp, <float*>gp,
                          <float*>wp, T, B, gs[0], gs[2], cs[0] == T + 1, team, n_threads,
                          &rmap)

    cdef void _run(self, const floating* x, const int64_t* lengths, floating* h, floating* c,
                   floating* gates, floating* work, Py_ssize_t T, Py_ssize_t B, Py_ssize_t K,
                   Py_ssize_t Gs, bint keep_c, int team, int n_threads,
                   const RowMap* rmap) noexcept nogil:
        cdef Packed parts = packed_parts(<floating*>self.scratch, self.cell, self.n_in, self.H,
                                         self.Hout)
        run_layer(self.cell, x, parts, <floating*>self.bias, <floating*>self.peep, lengths, h, c,
                  gates, work, T, B, self.n_in, self.H, self.Hout, self.P, Gs, K, keep_c, team,
                  n_threads, rmap)


cdef int row_map(RowMap* rmap, caller_x, y, perm, bint reverse, int typenum, Py_ssize_t T,
                 Py_ssize_t B, Py_ssize_t I, Py_ssize_t Hout) except -1:
    """Fill rmap for ForwardPlan.run from its caller_x, y (either may be None), perm and
    reverse, checking each: a TypeError or ValueError naming the argument."""
    cdef const int64_t* order = <const int64_t*>array_data(perm, "perm", cnp.NPY_INT64, 1,
                                                           False)
    cdef Py_ssize_t k, r
    if cnp.PyArray_DIMS(perm)[0] != B:
        raise ValueError(f"ForwardPlan.run: perm: expected shape ({B},), got {perm.shape}")
    seen = bytearray(B)
    for k in range(B):
        r = order[k]
        if r < 0 or r >= B or seen[r]:
            raise ValueError(f"ForwardPlan.run: perm: expected a permutation of 0..{B - 1}, "
                             f"got {perm!r}")
        seen[r] = 1
    rmap.perm, rmap.reverse = order, reverse
    if caller_x is not None:
        rmap.x = strided_rows(caller_x, "caller_x", typenum, T, B, I, False, &rmap.x_t,
                              &rmap.x_b)
    if y is not None:
        rmap.y = strided_rows(y, "y", typenum, T, B, Hout, True, &rmap.y_t, &rmap.y_b)
    return 0


cdef char* strided_rows(object a, str name, int typenum, Py_ssize_t T, Py_ssize_t B,
                        Py_ssize_t n, bint writable, Py_ssize_t* t_stride,
                        Py_ssize_t* b_stride) except NULL:
    """The data of `a`, a (T, B, n) ndarray of type `typenum` (writable when asked) whose
    rows along the last axis are contiguous, and its first two strides in elements; else a
    TypeError or ValueError naming `name`."""
    cdef Py_ssize_t item = 8 if typenum == cnp.NPY_FLOAT64 else 4
    wanted = "float64" if typenum == cnp.NPY_FLOAT64 else "float32"
    if not isinstance(a, cnp.ndarray) or cnp.PyArray_TYPE(a) != typenum \
            or cnp.PyArray_NDIM(a) != 3 or (writable and not cnp.PyArray_ISWRITEABLE(a)):
        got = (f"a {a.dtype} array of {a.ndim} dimensions"
               + ("" if a.flags.writeable else ", read-only")
               if isinstance(a, cnp.ndarray) else type(a).__name__)
        raise TypeError(f"ForwardPlan.run: {name}: expected a 3-d{' writable' if writable else ''}"
                        f" {wanted} array, got {got}")
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp* strides = cnp.PyArray_STRIDES(a)
    if dims[0] != T or dims[1] != B or dims[2] != n:
        raise ValueError(f"ForwardPlan.run: {name}: expected shape ({T}, {B}, {n}), got "
                         f"{a.shape}")
    if (n > 1 and strides[2] != item) or strides[0] % item or strides[1] % item:
        raise ValueError(f"ForwardPlan.run: {name}: expected rows contiguous along the last "
                         f"axis, got strides {a.strides}")
    t_stride[0], b_stride[0] = strides[0] // item, strides[1] // item
    return <char*>cnp.PyArray_DATA(a)


cdef char* array_data(object a, str name, int typenum, int ndim, bint writable) except NULL:
    """The data of `a`, a C-contiguous ndarray of `ndim` dimensions and type `typenum`
    (writable when asked); else a TypeError naming `name`, what was expected and what came."""
    if not isinstance(a, cnp.ndarray) or cnp.PyArray_TYPE(a) != typenum \
            or cnp.PyArray_NDIM(a) != ndim or not cnp.PyArray_IS_C_CONTIGUOUS(a) \
            or (writable and not cnp.PyArray_ISWRITEABLE(a)):
        wanted = {cnp.NPY_FLOAT32: "float32", cnp.NPY_FLOAT64: "float64"}.get(typenum, "int64")
        got = type(a).__name__
        if isinstance(a, cnp.ndarray):
            got = (f"a {a.dtype} array of shape {a.shape}"
                   + ("" if cnp.PyArray_IS_C_CONTIGUOUS(a) else ", not C-contiguous")
                   + ("" if cnp.PyArray_ISWRITEABLE(a) else ", read-only"))
        raise TypeError(f"ForwardPlan: {name}: expected a C-contiguous"
                        f"{' writable' if writable else ''} {ndim}-d {wanted} array, got {got}")
    return <char*>cnp.PyArray_DATA(a)


# ---------------------------------------------------------------------------------------------
# One step with the weights already packed: the stream's path (fastlstm/layers/stream.py)


cdef void one_step(int cell, const floating* x, const floating* w_ih_pack,
                   const floating* w_hh_pack, const floating* w_n_pack,
                   const floating* w_hr_pack, const floating* bias, const floating* peep,
                   floating* h, floating* c, floating* gates, floating* work, floating* y,
                   Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t Hout, Py_ssize_t P,
                   Py_ssize_t Gs) noexcept nogil:
    """x (B, I) -> y (B, Hout) for every row from the state h[0] (B, Hout) (and c[0], LSTM),
    which then moves on: step 0 of run_chunk on one chunk of one step, then the new state
    copied into slot 0 (h, c: 2 slots each; move_state). In flush-to-zero mode (_fpmode.h)."""
    cdef fl_fpmode mode = fl_flush_denormals()
    gemm(B, gate_width(cell, H), I, x, I, 1, w_ih_pack, gates, Gs, False)
    step(cell, w_hh_pack, w_n_pack, w_hr_pack, bias, peep, h, c, gates, work, 0, B, B, H, Hout,
         P, False, 0)
    fl_restore_fpmode(mode)
    move_state(cell, h, c, y, B, H, Hout)


cdef inline void move_state(int cell, floating* h, floating* c, floating* y, Py_ssize_t B,
                            Py_ssize_t H, Py_ssize_t Hout) noexcept nogil:
    """After one step from slot 0: y (B, Hout) and slot 0 of h (and c, LSTM) get slot 1."""
    memcpy(y, h + B * Hout, B * Hout * sizeof(floating))
    memcpy(h, h + B * Hout, B * Hout * sizeof(floating))
    if cell == LSTM:
        memcpy(c, c + B * H, B * H * sizeof(floating))


cdef Py_ssize_t _packed(bint is_double, Py_ssize_t k, Py_ssize_t n) noexcept:
    """packed_length for the dtype named by is_double."""
    cdef float f = 0
    cdef double d = 0
    return packed_length(&d, k, n) if is_double else packed_length(&f, k, n)


cdef void columns_one_step(int cell, const floating* x, const floating* w_ih_pack,
                           const floating* w_hh_pack, const floating* w_n_pack,
                           const floating* w_hr_pack, const floating* bias,
                           const floating* peep, const int64_t* lengths, floating* h,
                           floating* c, floating* gates, floating* work, floating* y,
                           Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t Hout,
                           Py_ssize_t P, Py_ssize_t Gs, int team) noexcept nogil:
    """one_step for weights packed for the column split: column_loop over one step on `team`
    threads (the input projection shared by panels), then the state moved into slot 0."""
    cdef fl_barrier bar
    fl_barrier_init(&bar)
    cdef RowMap no_map
    memset(&no_map, 0, sizeof(RowMap))
    if team > 1:
        with parallel(num_threads=team):
            column_loop(cell, x, w_ih_pack, w_hh_pack, w_n_pack, w_hr_pack, bias, peep, lengths,
                        h, c, gates, work, 1, B, I, H, Hout, P, Gs, 1, False, &bar, threadid(),
                        fl_team_size(), &no_map)
    else:
        column_loop(cell, x, w_ih_pack, w_hh_pack, w_n_pack, w_hr_pack, bias, peep, lengths, h,
                    c, gates, work, 1, B, I, H, Hout, P, Gs, 1, False, &bar, 0, 1, &no_map)
    move_state(cell, h, c, y, B, H, Hout)


cdef Py_ssize_t _recurrent_packed(bint is_double, int cell, Py_ssize_t Hout,
                                  Py_ssize_t H) noexcept:
    """recurrent_packed_length for the dtype named by is_double."""
    cdef float f = 0
    cdef double d = 0
    if is_double:
        return recurrent_packed_length(&d, cell, Hout, H)
    return recurrent_packed_length(&f, cell, Hout, H)


cdef class StepPlan:
    """A prepared one-step forward call of `cell` for B rows: the buffers of forward() for
    T = 1 (h (2, B, Hout) and c (2, B, H) hold the carried state in slot 0), with the weights
    packed into `scratch` once, here. step(x, y) then costs one call, no allocation and no
    packing. Arrays must be C-contiguous, of one dtype, and are kept alive by the plan.
    columns=1 packs the weights for the column split, whose steps can then share the threads
    (step's n_threads); columns=0 runs every step on the calling thread."""

    cdef object keep
    cdef bint is_double
    cdef int cell, columns, chunks
    cdef Py_ssize_t B, n_in, H, Hout, P, Gs   # n_in: I (NumPy's complex.h takes the name I)
    cdef size_t w_ih_pack, w_hh_pack, w_n_pack, w_hr_pack, bias, peep, h, c, gates, work
    cdef size_t lengths

    def __init__(self, int cell, x_like, w_ih, w_hh, w_hr, bias, peep, h, c, gates, work,
                 scratch, int columns=0):
        """x_like (1, B, I): any array of the step's input shape and dtype (checked by the
        forward call made here, which packs the weights and runs one step on zeros, leaving
        h and c as they were). columns: 0 or 1, as forward's."""
        import numpy as np

        arrays = (w_ih, w_hh, w_hr, bias, peep, h, c, gates, work, scratch)
        if any(not isinstance(a, np.ndarray) or not a.flags.c_contiguous
               or a.dtype != h.dtype for a in arrays + (x_like,)):
            raise TypeError("StepPlan: C-contiguous arrays of one dtype expected")
        if h.shape[0] != 2 or gates.shape[0] != 1 or x_like.shape[0] != 1:
            raise ValueError("StepPlan: h (2, B, Hout), gates (1, B, Gs), x (1, B, I) expected")
        if columns not in (0, 1):
            raise ValueError(f"StepPlan: columns 0 or 1 expected, got {columns}")
        state_h, state_c = h.copy(), c.copy()
        lengths = np.ones(h.shape[1], np.int64)
        # forward() checks every shape and packs the weights into scratch
        forward(cell, x_like, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work,
                scratch, 1, True, columns)
        h[...] = state_h
        c[...] = state_c
        self.keep = arrays + (lengths,)
        self.columns = columns
        self.lengths = lengths.ctypes.data
        self.is_double = h.dtype == np.float64
        self.cell = cell
        self.B, self.n_in, self.Hout = h.shape[1], x_like.shape[2], h.shape[2]
        self.H, self.P, self.Gs = w_hr.shape[1], w_hr.shape[0], gates.shape[2]
        cdef size_t itemsize = h.dtype.itemsize
        cdef size_t base = (<size_t>scratch.ctypes.data + 63) & ~(<size_t>63)   # aligned()
        cdef Py_ssize_t G = gate_width(cell, self.H)
        self.w_ih_pack = base
        self.w_hh_pack = base + itemsize * _packed(self.is_double, self.n_in, G)
        self.w_n_pack = self.w_hh_pack + itemsize * _recurrent_packed(self.is_double, cell,
                                                                      self.Hout, self.H)
        self.w_hr_pack = self.w_n_pack + itemsize * _packed(self.is_double, self.Hout, 2 * self.H)
        self.bias = bias.ctypes.data
        self.peep = peep.ctypes.data if peep.shape[0] else 0
        self.h, self.c = h.ctypes.data, c.ctypes.data if c.size else 0
        self.gates, self.work = gates.ctypes.data, work.ctypes.data if work.size else 0
        cdef float f = 0
        cdef double d = 0
        self.chunks = unit_chunks(&d, self.H) if self.is_double else unit_chunks(&f, self.H)

    def step(self, x, y, int n_threads=1):
        """x (B, I) -> y (B, Hout) (both C-contiguous, aligned and in native byte order, of
        the plan's dtype; y writable: else a ValueError), the state moving on.
        n_threads: with columns=1, the step shares min(n_threads, chunks of units) threads."""
        if not self._takes(x, self.n_in, False) or not self._takes(y, self.Hout, True):
            raise ValueError("StepPlan.step: x (B, I) and y (B, Hout) expected: C-contiguous, "
                             "aligned, native-order arrays of the plan's dtype, y writable")
        self._step(<cnp.ndarray>x, <cnp.ndarray>y, n_threads)

    cdef bint _takes(self, object a, Py_ssize_t n, bint writable):
        """Whether `a` is a (B, n) array step() can read (and write, when asked) in place:
        C-contiguous, aligned, native byte order, the plan's dtype."""
        if not isinstance(a, cnp.ndarray):
            return False
        cdef cnp.ndarray arr = <cnp.ndarray>a
        return (cnp.PyArray_TYPE(arr) == (cnp.NPY_FLOAT64 if self.is_double else
                                          cnp.NPY_FLOAT32)
                and cnp.PyArray_NDIM(arr) == 2 and cnp.PyArray_DIMS(arr)[0] == self.B
                and cnp.PyArray_DIMS(arr)[1] == n and cnp.PyArray_IS_C_CONTIGUOUS(arr)
                and cnp.PyArray_ISBEHAVED_RO(arr)
                and (not writable or cnp.PyArray_ISWRITEABLE(arr)))

    cdef void _step(self, cnp.ndarray x, cnp.ndarray y, int n_threads):
        """step() on arrays _takes has accepted."""
        cdef int team = max(1, min(n_threads, self.chunks)) if self.columns else 0
        cdef void* xp = cnp.PyArray_DATA(x)
        cdef void* yp = cnp.PyArray_DATA(y)
        if self.is_double:
            with nogil:
                self._run(<double*>xp, <double*>yp, team)
        else:
            with nogil:
                self._run(<float*>xp, <float*>yp, team)

    cdef void _run(self, const floating* x, floating* y, int team) noexcept nogil:
        """One step on the plan's buffers (their dtype is x's): on `team` threads of the
        column split, or with team 0 on this thread (the plain packing)."""
        if team:
            columns_one_step(self.cell, x, <floating*>self.w_ih_pack,
                             <floating*>self.w_hh_pack, <floating*>self.w_n_pack,
                             <floating*>self.w_hr_pack, <floating*>self.bias,
                             <floating*>self.peep, <int64_t*>self.lengths, <floating*>self.h,
                             <floating*>self.c, <floating*>self.gates, <floating*>self.work, y,
                             self.B, self.n_in, self.H, self.Hout, self.P, self.Gs, team)
        else:
            one_step(self.cell, x, <floating*>self.w_ih_pack, <floating*>self.w_hh_pack,
                     <floating*>self.w_n_pack, <floating*>self.w_hr_pack,
                     <floating*>self.bias, <floating*>self.peep, <floating*>self.h,
                     <floating*>self.c, <floating*>self.gates, <floating*>self.work, y,
                     self.B, self.n_in, self.H, self.Hout, self.P, self.Gs)


include "fastlstm/_kernels/_step_stack.pxi"   # run_steps: one step through the layers
