"""Cython inference driver for reduced precision (int8, bfloat16): every cell, float32
activations, the products of _qgemm.h (src/kernels/CONTRACT.md, "Reduced precision").

Mirrors fastlstm.reference.sequence.sequence_forward with the weights of
fastlstm.reference.quantized (Int8Matrix, BFloat16Matrix) and the cells' pointwise math from
_lstm_cell.pxd, _gru_cell.pxd and _rnn_cell.pxd, as recurrent_forward.pyx does for float32:
only the products differ, so the pointwise passes are the same functions.

One decomposition, the column split of recurrent_forward.pyx (column_step) at every batch
size: the rows are one group (lengths never increase over the batch) and the team of threads
shares every step, thread k owning the hidden units of its chunks of 16 (one weight panel)
in every gate block, so it reads only its part of the packed weights, which stays in its
core's cache. Per chunk of steps the team quantizes the chunk's input rows (a share each),
meets at a barrier, then each thread projects its own columns. Per step each thread
quantizes h_{t-1} of the active rows for itself (every thread needs all of it; H values per
row), forms its columns of the recurrent product, runs the pointwise pass on its units, and
the team meets at a barrier that publishes h_t (a second one for the projection LSTM and the
reset-before GRU, whose second product reads a whole row). The integer sums are exact and
each output is formed by one thread in a fixed order, so the results are the same bits on
any number of threads. Nothing is allocated here, and the time loop never returns to Python.
"""
from libc.stdint cimport int8_t, int32_t, int64_t, uint16_t
from libc.string cimport memcpy
from cython.parallel cimport parallel, threadid
cimport numpy as cnp

from ._gru_cell cimport gru_forward_rows, gru_new_rows, gru_reset_rows
from ._layout cimport (GRU_LINEAR_BEFORE_RESET, GRU_RESET_BEFORE, LSTM, RNN_RELU, gate_blocks,
                       gate_width, lengths_problem)
from ._fpmode cimport fl_flush_denormals, fl_fpmode, fl_restore_fpmode
from ._lstm_cell cimport lstm_forward_rows
from ._rnn_cell cimport rnn_forward_rows

cdef extern from "_qgemm.h" nogil:
    int FL_QR
    int fl_q_dot_paths()
    void fl_q8_quantize(Py_ssize_t m, Py_ssize_t k, const float* x, Py_ssize_t ldx,
                        int8_t* q, Py_ssize_t ldq, float* scale, float* zero, int flip)
    void fl_bf16_round(Py_ssize_t m, Py_ssize_t k, const float* x, Py_ssize_t ldx,
                       void* q, Py_ssize_t ldq, int widen)
    void fl_q8_product(Py_ssize_t m, Py_ssize_t n, Py_ssize_t groups, const int8_t* x,
                       Py_ssize_t ldx, const float* xs, const float* xz, const int8_t* panels,
                       const float* ws, const int32_t* wsum, float* out, Py_ssize_t ldo,
                       int accumulate, int dot)
    void fl_bf16_product(Py_ssize_t m, Py_ssize_t n, Py_ssize_t pairs, const void* x,
                         Py_ssize_t ldx, const uint16_t* panels, float* out, Py_ssize_t ldo,
                         int accumulate, int dot)

from ._barrier cimport fl_barrier, fl_barrier_init, fl_barrier_wait, fl_team_size

cnp.import_array()   # run_steps and StepPlan read their arrays through NumPy's C API

#: precision codes
DEF INT8 = 0
DEF BFLOAT16 = 1
#: output rows per weight panel (_qgemm.h FL_QR)
PANEL_ROWS = 16


def dot_paths():
    """Which dot-product paths this build has: {"int8": bool, "bfloat16": bool} (vpdpbusd:
    AVX512_VNNI in the x86-64-v4 build, AVX_VNNI in v3; vdpbf16ps: AVX512_BF16, v4). The CPU
    must have the instructions too (fastlstm._reduced checks)."""
    cdef int paths = fl_q_dot_paths()
    return {"int8": bool(paths & 1), "bfloat16": bool(paths & 2)}


cdef inline Py_ssize_t row_stride(int precision, Py_ssize_t k) noexcept nogil:
    """Values per quantized row of k values: k rounded up to a group (4 int8, 2 bfloat16)."""
    return (k + 3) // 4 * 4 if precision == INT8 else (k + 1) // 2 * 2


cdef inline Py_ssize_t activation_bytes(int precision) noexcept nogil:
    """Bytes per quantized activation value in `act`: int8 1; bfloat16 4 (room for the plain
    path's widened values; the dot path's bit patterns take 2)."""
    return 1 if precision == INT8 else 4


def activation_scratch_bytes(int precision, Py_ssize_t K, Py_ssize_t B, Py_ssize_t I,
                             Py_ssize_t Hout, Py_ssize_t H, int team):
    """Bytes of `act` that forward needs: the quantized input rows of a chunk (K * B rows of
    I values and their scales), then per thread the quantized rows (B of max(Hout, H) values,
    and scales) of its products' other inputs; each part from a 64-byte boundary."""
    cdef Py_ssize_t asz = activation_bytes(precision)
    cdef Py_ssize_t x_part = (K * B * (row_stride(precision, I) * asz + 8) + 63) // 64 * 64
    cdef Py_ssize_t ldh = row_stride(precision, max(Hout, H))
    cdef Py_ssize_t thread_part = (B * (ldh * asz + 8) + 63) // 64 * 64
    return x_part + team * thread_part + 64


cdef struct Weights:
    # one weight matrix packed (_qgemm.h): panels, and for int8 the rows' scales and code sums
    const char* panels
    const float* scale
    const int32_t* sums
    Py_ssize_t k          # values per row (the product's inner size)


cdef struct Quantized:
    # one thread's quantized activations: rows of ld values of `size` bytes (int8 codes;
    # bfloat16 bit patterns, or for the plain path bfloat16 values widened to float32), scales
    # and (int8) zero points, one of each per row
    char* codes
    float* scale
    float* zero
    Py_ssize_t ld
    Py_ssize_t size


cdef inline void quantize(int precision, int dot, Py_ssize_t m, Py_ssize_t k, const float* x,
                          Py_ssize_t ldx, Quantized* q, Py_ssize_t row0) noexcept nogil:
    """Rows row0 .. row0 + m - 1 of q = x (m, k) (rows of stride ldx) quantized (int8 for the
    dot path: as unsigned codes + 128)."""
    if precision == INT8:
        fl_q8_quantize(m, k, x, ldx, <int8_t*>q.codes + row0 * q.ld, q.ld, q.scale + row0,
                       q.zero + row0, dot)
    else:
        fl_bf16_round(m, k, x, ldx, q.codes + row0 * q.ld * q.size, q.ld, not dot)


cdef inline void product_of(int precision, int dot, Py_ssize_t m, Py_ssize_t n,
                         const Quantized* q, Py_ssize_t row0, const Weights* w,
                         Py_ssize_t panel0, float* out, Py_ssize_t ldo,
                         bint accumulate) noexcept nogil:
    """out (m, n) (+)= q's rows row0 .. row0 + m - 1 @ the n weight rows from panel panel0 on."""
    cdef Py_ssize_t groups
    if precision == INT8:
        groups = (w.k + 3) // 4
        fl_q8_product(m, n, groups, <const int8_t*>q.codes + row0 * q.ld, q.ld,
                      q.scale + row0, q.zero + row0,
                      <const int8_t*>w.panels + panel0 * groups * 64,
                      w.scale + panel0 * FL_QR, w.sums + panel0 * FL_QR, out, ldo, accumulate,
                      dot)
    else:
        groups = (w.k + 1) // 2
        fl_bf16_product(m, n, groups, q.codes + row0 * q.ld * q.size, q.ld,
                        <const uint16_t*>w.panels + panel0 * groups * 32, out, ldo, accumulate,
                        dot)


cdef inline Py_ssize_t active_rows(const int64_t* lengths, Py_ssize_t n,
                                   Py_ssize_t t) noexcept nogil:
    """How many of the first n rows (lengths never increasing) still run at step t."""
    while n > 0 and lengths[n - 1] <= t:
        n -= 1
    return n


cdef void quantized_step(int cell, int precision, int dot, const Weights* w_hh,
                         const Weights* w_hr, const float* bias, const float* peep, float* h,
                         float* c, float* g, float* work, Quantized* mine, Py_ssize_t t,
                         Py_ssize_t m, Py_ssize_t B, Py_ssize_t H, Py_ssize_t Hout,
                         Py_ssize_t P, Py_ssize_t chunks, Py_ssize_t c0, Py_ssize_t u0,
                         Py_ssize_t n, Py_ssize_t p0, Py_ssize_t pn, fl_barrier* bar,
                         int team, unsigned* seen) noexcept nogil:
    """Step t for the m active rows, this thread's share: units u0 <= j < u0 + n (chunk c0 on)
    and, for a projection LSTM, output columns p0 <= j < p0 + pn. g (m, Gs) holds x_t W_ih^T
    (this thread's columns). Mirrors recurrent_forward.pyx column_step."""
    cdef Py_ssize_t G = gate_width(cell, H)
    cdef Py_ssize_t Gs = H if cell > GRU_RESET_BEFORE else 4 * H
    cdef Py_ssize_t q
    cdef float* h_prev = h + t * B * Hout
    cdef float* h_next = h + (t + 1) * B * Hout
    cdef float* c_prev
    cdef float* c_next
    if n:
        quantize(precision, dot, m, Hout, h_prev, Hout, mine, 0)
    if cell == LSTM:
        c_prev = c + (t % 2) * B * H
        c_next = c + ((t + 1) % 2) * B * H
        if n:
            for q in range(4):
                product_of(precision, dot, m, n, mine, 0, w_hh, q * chunks + c0, g + q * H + u0,
                        Gs, True)
            lstm_forward_rows(g + u0, bias + u0, peep + u0 if peep != NULL else NULL,
                              c_prev + u0, c_next + u0, (work if P else h_next) + u0, m, n, H)
        if P:   # h_next (m, P) = (o * tanh(c)) (m, H) @ w_hr^T, once all of it is in
            fl_barrier_wait(bar, team, seen)
            if pn:
                quantize(precision, dot, m, H, work, H, mine, 0)
                product_of(precision, dot, m, pn, mine, 0, w_hr, p0 // FL_QR, h_next + p0, P,
                        False)
    elif cell == GRU_LINEAR_BEFORE_RESET:
        if n:
            for q in range(3):
                product_of(precision, dot, m, n, mine, 0, w_hh, q * chunks + c0,
                        work + q * H + u0, 3 * H, False)
            gru_forward_rows(g + u0, work + u0, bias + u0, bias + G + u0, h_prev + u0,
                             h_next + u0, m, n, H, H)
    elif cell == GRU_RESET_BEFORE:
        if n:
            for q in range(2):
                product_of(precision, dot, m, n, mine, 0, w_hh, q * chunks + c0,
                        work + q * H + u0, 3 * H, False)
            gru_reset_rows(g + u0, work + u0, bias + u0, h_prev + u0, m, n, H, H)
        fl_barrier_wait(bar, team, seen)   # m = r * h_prev of every unit, in g[:, 3H:4H]
        if n:
            quantize(precision, dot, m, H, g + 3 * H, 4 * H, mine, 0)
            product_of(precision, dot, m, n, mine, 0, w_hh, 2 * chunks + c0, work + 2 * H + u0,
                    3 * H, False)
            gru_new_rows(g + u0, work + u0, bias + u0, h_prev + u0, h_next + u0, m, n, H, H)
    else:
        if n:
            product_of(precision, dot, m, n, mine, 0, w_hh, c0, g + u0, Gs, True)
            rnn_forward_rows(g + u0, bias + u0, h_next + u0, cell == RNN_RELU, m, n, H)
    fl_barrier_wait(bar, team, seen)       # h_t (and c_t) complete


cdef void quantized_loop(int cell, int precision, int dot, const float* x,
                         const Weights* w_ih, const Weights* w_hh, const Weights* w_hr,
                         const float* bias, const float* peep, const int64_t* lengths,
                         float* h, float* c, float* gates, float* work, Quantized* xq,
                         Quantized* mine, Py_ssize_t T, Py_ssize_t B, Py_ssize_t I,
                         Py_ssize_t H, Py_ssize_t Hout, Py_ssize_t P, Py_ssize_t K,
                         fl_barrier* bar, int tid, int team) noexcept nogil:
    """The whole time loop, thread tid's share of a team of `team`, in chunks of K steps (the
    thread in flush-to-zero mode, _fpmode.h)."""
    cdef Py_ssize_t chunks = (H + FL_QR - 1) // FL_QR
    cdef Py_ssize_t c0 = tid * chunks // team, c1 = (tid + 1) * chunks // team
    cdef Py_ssize_t u0 = min(c0 * FL_QR, H), n = min(c1 * FL_QR, H) - u0
    cdef Py_ssize_t p_chunks = (P + FL_QR - 1) // FL_QR
    cdef Py_ssize_t p0 = min(tid * p_chunks // team * FL_QR, P)
    cdef Py_ssize_t pn = min((tid + 1) * p_chunks // team * FL_QR, P) - p0
    cdef Py_ssize_t Gs = H if cell > GRU_RESET_BEFORE else 4 * H
    cdef Py_ssize_t blocks = gate_blocks(cell)
    cdef Py_ssize_t t0 = 0, k, s, end, r, r0, r1, m, rows, q
    cdef unsigned seen = 0
    cdef fl_fpmode mode = fl_flush_denormals()
    while t0 < T and lengths[0] > t0:
        k = min(K, T - t0)
        # the chunk's running input rows quantized, a share of the rows each
        r0 = tid * k * B // team
        r1 = (tid + 1) * k * B // team
        for r in range(r0, r1):
            if lengths[r % B] > t0 + r // B:
                quantize(precision, dot, 1, I, x + (t0 * B + r) * I, I, xq, r)
        fl_barrier_wait(bar, team, &seen)
        # this thread's columns of gates[0:k] = x W_ih^T: one product per run of steps in which
        # every row runs (their rows are contiguous), else per step over its running rows
        s = 0
        m = B
        while s < k and n:
            m = active_rows(lengths, m, t0 + s)
            if m == 0:
                break
            if m == B:
                end = min(k, lengths[B - 1] - t0)
                rows = (end - s) * B
            else:
                end = s + 1
                rows = m
            for q in range(blocks):
                product_of(precision, dot, rows, n, xq, s * B, w_ih, q * chunks + c0,
                        gates + s * B * Gs + q * H + u0, Gs, False)
            s = end
        m = B
        for s in range(k):
            m = active_rows(lengths, m, t0 + s)
            if m == 0:   # every row has ended (so the while loop ends too)
                break
            quantized_step(cell, precision, dot, w_hh, w_hr, bias, peep, h, c,
                           gates + s * B * Gs, work, mine, t0 + s, m, B, H, Hout, P, chunks,
                           c0, u0, n, p0, pn, bar, team, &seen)
        t0 += K
    fl_restore_fpmode(mode)


cdef Weights weights_of(const unsigned char[::1] panels, const float[::1] scale,
                        const int32_t[::1] sums, Py_ssize_t k):
    cdef Weights w
    w.panels = <const char*>&panels[0] if panels.shape[0] else NULL
    w.scale = &scale[0] if scale.shape[0] else NULL
    w.sums = &sums[0] if sums.shape[0] else NULL
    w.k = k
    return w


def forward(int cell, int precision, bint dot, const float[:, :, ::1] x,
            const unsigned char[::1] ih_panels, const float[::1] ih_scale,
            const int32_t[::1] ih_sums, const unsigned char[::1] hh_panels,
            const float[::1] hh_scale, const int32_t[::1] hh_sums,
            const unsigned char[::1] hr_panels, const float[::1] hr_scale,
            const int32_t[::1] hr_sums, const float[:, ::1] bias, const float[:, ::1] peep,
            const int64_t[::1] lengths, float[:, :, ::1] h, float[:, :, ::1] c,
            float[:, :, ::1] gates, float[:, ::1] work, unsigned char[::1] act,
            Py_ssize_t H, Py_ssize_t P, int n_threads=1):
    """Run `cell` over T >= 1 steps of B >= 1 rows at reduced precision (inference).

    precision   0 int8, 1 bfloat16; dot: use the dot-product instructions (dot_paths(); the
                caller checks that the CPU has them)
    x (T, B, I), bias (2, G), peep (3, H) or (0, H), lengths (B,), h (T+1, B, Hout),
    c (2, B, H) (LSTM; else (0, B, H)), gates (K, B, Gs), work (B, W): as CONTRACT.md's
                forward (inference: two slots of c, K-step chunks of gates; lengths never
                increase over the batch)
    *_panels, *_scale, *_sums   w_ih (G, I), w_hh (G, Hout), w_hr (P, H) packed as _qgemm.h
                says, by gate blocks of H rows (fastlstm/_reduced.py); int8: the rows' scales
                and code sums (padded like the panels); bfloat16: empty
    act         activation scratch (activation_scratch_bytes(precision, K, B, I, Hout, H,
                team) bytes, team = min(n_threads, chunks of 16 units))
    n_threads   threads of the team (the column split)
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t Hout = h.shape[2], K = gates.shape[0], Gs = gates.shape[2]
    cdef Py_ssize_t G = gate_width(cell, H)
    cdef Py_ssize_t chunks = (H + FL_QR - 1) // FL_QR
    cdef int team = <int>max(1, min(<Py_ssize_t>n_threads, chunks))
    cdef Py_ssize_t isz = 1 if precision == INT8 else 2
    cdef Py_ssize_t work_width = (3 * H if cell == GRU_LINEAR_BEFORE_RESET or cell == GRU_RESET_BEFORE
                                  else (H if P else 0))
    cdef Py_ssize_t ih_bytes = gate_blocks(cell) * chunks * FL_QR * row_stride(precision, I) * isz
    cdef Py_ssize_t hh_bytes = gate_blocks(cell) * chunks * FL_QR * row_stride(precision, Hout) * isz
    cdef Py_ssize_t hr_bytes = (P + FL_QR - 1) // FL_QR * FL_QR * row_stride(precision, H) * isz
    cdef Py_ssize_t scales = gate_blocks(cell) * chunks * FL_QR if precision == INT8 else 0
    cdef Py_ssize_t hr_scales = (P + FL_QR - 1) // FL_QR * FL_QR if precision == INT8 else 0
    if (T < 1 or B < 1 or I < 1 or H < 1 or K < 1 or K > T or n_threads < 1 or cell < 0
            or cell > RNN_RELU or precision < INT8 or precision > BFLOAT16
            or (dot and not (fl_q_dot_paths() >> precision) & 1)
            or Hout != (P if P else H) or (P and cell != LSTM)
            or ih_panels.shape[0] != ih_bytes or hh_panels.shape[0] != hh_bytes
            or hr_panels.shape[0] != hr_bytes
            or ih_scale.shape[0] != scales or ih_sums.shape[0] != scales
            or hh_scale.shape[0] != scales or hh_sums.shape[0] != scales
            or hr_scale.shape[0] != hr_scales or hr_sums.shape[0] != hr_scales
            or bias.shape[0] != 2 or bias.shape[1] != G
            or (peep.shape[0] != 0 and (cell != LSTM or peep.shape[0] != 3 or peep.shape[1] != H))
            or lengths.shape[0] != B or h.shape[0] != T + 1 or h.shape[1] != B
            or (cell == LSTM and (c.shape[0] != 2 or c.shape[1] != B or c.shape[2] != H))
            or gates.shape[1] != B or Gs != (H if cell > GRU_RESET_BEFORE else 4 * H)
            or work.shape[0] != B or (work_width and work.shape[1] != work_width)
            or act.shape[0] < activation_scratch_bytes(precision, K, B, I, Hout, H, team)):
        raise ValueError("recurrent_quantized: inconsistent buffer shapes")
    problem = lengths_problem(lengths, T, 1)
    if problem != NULL:
        raise ValueError("recurrent_quantized: " + problem.decode())
    cdef Weights w_ih = weights_of(ih_panels, ih_scale, ih_sums, I)
    cdef Weights w_hh = weights_of(hh_panels, hh_scale, hh_sums, Hout)
    cdef Weights w_hr = weights_of(hr_panels, hr_scale, hr_sums, H)
    cdef const float* peep_p = &peep[0, 0] if peep.shape[0] else NULL
    cdef float* c_p = &c[0, 0, 0] if cell == LSTM else NULL
    cdef float* work_p = &work[0, 0] if work.shape[1] else NULL
    with nogil:
        run(cell, precision, dot, &x[0, 0, 0], &w_ih, &w_hh, &w_hr, &bias[0, 0], peep_p,
            &lengths[0], &h[0, 0, 0], c_p, &gates[0, 0, 0], work_p, <char*>&act[0], T, B, I,
            H, Hout, P, K, team)


cdef void run(int cell, int precision, int dot, const float* x, const Weights* w_ih,
              const Weights* w_hh, const Weights* w_hr, const float* bias, const float* peep,
              const int64_t* lengths, float* h, float* c, float* gates, float* work,
              char* act, Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
              Py_ssize_t Hout, Py_ssize_t P, Py_ssize_t K, int team) noexcept nogil:
    """forward's time loop on checked buffers: act carved as activation_scratch_bytes says
    (the chunk's input rows, then one part per thread), the team started when team > 1."""
    cdef char* base = act + (64 - (<size_t>act) % 64) % 64
    cdef Quantized xq
    cdef Py_ssize_t asz = activation_bytes(precision)
    xq.ld = row_stride(precision, I)
    xq.size = 1 if precision == INT8 else (2 if dot else 4)
    xq.codes = base
    xq.scale = <float*>(base + K * B * xq.ld * asz)
    xq.zero = xq.scale + K * B
    cdef Py_ssize_t x_part = (K * B * (xq.ld * asz + 8) + 63) // 64 * 64
    cdef Py_ssize_t ldh = row_stride(precision, max(Hout, H))
    cdef Py_ssize_t thread_part = (B * (ldh * asz + 8) + 63) // 64 * 64
    cdef fl_barrier bar
    fl_barrier_init(&bar)
    cdef Quantized mine
    cdef int tid
    if team == 1:
        mine.ld = ldh
        mine.size = xq.size
        mine.codes = base + x_part
        mine.scale = <float*>(mine.codes + B * ldh * asz)
        mine.zero = mine.scale + B
        quantized_loop(cell, precision, dot, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c,
                       gates, work, &xq, &mine, T, B, I, H, Hout, P, K, &bar, 0, 1)
    else:
        with parallel(num_threads=team):
            tid = threadid()
            mine.ld = ldh
            mine.size = xq.size
            mine.codes = base + x_part + tid * thread_part
            mine.scale = <float*>(mine.codes + B * ldh * asz)
            mine.zero = mine.scale + B
            quantized_loop(cell, precision, dot, x, w_ih, w_hh, w_hr, bias, peep, lengths, h,
                           c, gates, work, &xq, &mine, T, B, I, H, Hout, P, K, &bar, tid,
                           fl_team_size())


cdef class StepPlan:
    """A prepared one-step call of forward for B rows (a stream's single steps): the arrays of
    forward for T = 1, with h (2, B, Hout) and c (2, B, H) (LSTM; else (0, B, H)) holding the
    carried state in slot 0, checked once here; step(x, y) then costs one call and no
    allocation. The arrays are kept alive by the plan; the caller must not resize them."""

    cdef object keep
    cdef Weights w_ih, w_hh, w_hr
    cdef int cell, precision, dot
    cdef Py_ssize_t B, n_in, H, Hout, P, chunks   # n_in: I (complex.h takes the name I)
    cdef float* bias
    cdef float* peep
    cdef float* h
    cdef float* c
    cdef float* gates
    cdef float* work
    cdef char* act
    cdef int64_t* lengths

    def __init__(self, int cell, int precision, bint dot, x_like, ih_panels, ih_scale,
                 ih_sums, hh_panels, hh_scale, hh_sums, hr_panels, hr_scale, hr_sums, bias,
                 peep, h, c, gates, work, act, Py_ssize_t H, Py_ssize_t P, int n_threads):
        """x_like (1, B, I) float32: the step's input shape (forward checks every shape here,
        on a step of zeros that leaves h and c as they were); act sized for n_threads, the
        most threads step may take."""
        import numpy as np

        state_h, state_c = np.array(h, copy=True), np.array(c, copy=True)
        lengths = np.ones(h.shape[1], np.int64)
        forward(cell, precision, dot, x_like, ih_panels, ih_scale, ih_sums, hh_panels,
                hh_scale, hh_sums, hr_panels, hr_scale, hr_sums, bias, peep, lengths, h, c,
                gates, work, act, H, P, n_threads)
        h[...] = state_h
        c[...] = state_c
        if h.shape[0] != 2 or gates.shape[0] != 1 or x_like.shape[0] != 1:
            raise ValueError("StepPlan: h (2, B, Hout), gates (1, B, Gs), x (1, B, I) expected")
        self.keep = (ih_panels, ih_scale, ih_sums, hh_panels, hh_scale, hh_sums, hr_panels,
                     hr_scale, hr_sums, bias, peep, h, c, gates, work, act, lengths)
        self.w_ih = weights_of(ih_panels, ih_scale, ih_sums, x_like.shape[2])
        self.w_hh = weights_of(hh_panels, hh_scale, hh_sums, h.shape[2])
        self.w_hr = weights_of(hr_panels, hr_scale, hr_sums, H)
        self.cell, self.precision, self.dot = cell, precision, dot
        self.B, self.n_in, self.H = h.shape[1], x_like.shape[2], H
        self.Hout, self.P = h.shape[2], P
        self.chunks = max(1, min(n_threads, (H + FL_QR - 1) // FL_QR))
        self.bias = <float*><size_t>bias.ctypes.data
        self.peep = <float*><size_t>peep.ctypes.data if peep.shape[0] else NULL
        self.h = <float*><size_t>h.ctypes.data
        self.c = <float*><size_t>c.ctypes.data if cell == LSTM else NULL
        self.gates = <float*><size_t>gates.ctypes.data
        self.work = <float*><size_t>work.ctypes.data if work.size else NULL
        self.act = <char*><size_t>act.ctypes.data
        self.lengths = <int64_t*><size_t>lengths.ctypes.data

    def step(self, x, y, int n_threads=1):
        """x (B, I) -> y (B, Hout) (C-contiguous, aligned, native-order float32 arrays; y
        writable: else a ValueError), the state moving on; n_threads: at most the plan's."""
        if not self._takes(x, self.n_in, False) or not self._takes(y, self.Hout, True):
            raise ValueError(f"StepPlan.step: x ({self.B}, {self.n_in}) and y ({self.B}, "
                             f"{self.Hout}) expected: C-contiguous, aligned, native-order "
                             f"float32 arrays, y writable")
        self._step(<cnp.ndarray>x, <cnp.ndarray>y, n_threads)

    cdef bint _takes(self, object a, Py_ssize_t n, bint writable):
        """Whether `a` is a (B, n) float32 array step() can read (and write, when asked) in
        place: C-contiguous, aligned, native byte order."""
        if not isinstance(a, cnp.ndarray):
            return False
        cdef cnp.ndarray arr = <cnp.ndarray>a
        return (cnp.PyArray_TYPE(arr) == cnp.NPY_FLOAT32 and cnp.PyArray_NDIM(arr) == 2
                and cnp.PyArray_DIMS(arr)[0] == self.B and cnp.PyArray_DIMS(arr)[1] == n
                and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISBEHAVED_RO(arr)
                and (not writable or cnp.PyArray_ISWRITEABLE(arr)))

    cdef void _step(self, cnp.ndarray x, cnp.ndarray y, int n_threads):
        """step() on arrays _takes has accepted."""
        cdef Py_ssize_t B = self.B, n = B * self.Hout
        cdef int team = <int>max(1, min(n_threads, self.chunks))
        cdef const float* xp = <const float*>cnp.PyArray_DATA(x)
        cdef float* yp = <float*>cnp.PyArray_DATA(y)
        with nogil:
            run(self.cell, self.precision, self.dot, xp, &self.w_ih, &self.w_hh,
                &self.w_hr, self.bias, self.peep, self.lengths, self.h, self.c, self.gates,
                self.work, self.act, 1, B, self.n_in, self.H, self.Hout, self.P, 1, team)
            memcpy(self.h, self.h + n, n * sizeof(float))   # slot 1 -> slot 0: the state
            memcpy(yp, self.h, n * sizeof(float))
            if self.c != NULL:
                memcpy(self.c, self.c + B * self.H, B * self.H * sizeof(float))


include "fastlstm/_kernels/_step_stack.pxi"   # run_steps: one step through the layers


def product(int precision, bint dot, const float[:, ::1] x, const unsigned char[::1] panels,
            const float[::1] scale, const int32_t[::1] sums, float[:, ::1] out,
            bint accumulate=False):
    """out (m, n) (+)= x (m, k) quantized as the driver does, @ W^T, W (n, k) packed as one block
    (fastlstm._reduced.pack(matrix, 1)): the driver's two steps for one product, for tests.
    int8: the same float32 operations as reference.quantized.Int8Matrix.product, so the same
    bits on every path; bfloat16: BFloat16Matrix.product to rounding."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1], n = out.shape[1]
    cdef Py_ssize_t panels_n = (n + FL_QR - 1) // FL_QR
    cdef Py_ssize_t isz = 1 if precision == INT8 else 2
    if (precision < INT8 or precision > BFLOAT16 or out.shape[0] != m or m < 1 or k < 1
            or n < 1 or (dot and not (fl_q_dot_paths() >> precision) & 1)
            or panels.shape[0] != panels_n * FL_QR * row_stride(precision, k) * isz
            or (precision == INT8 and (scale.shape[0] != panels_n * FL_QR
                                       or sums.shape[0] != panels_n * FL_QR))):
        raise ValueError("recurrent_quantized.product: inconsistent shapes")
    cdef Weights w = weights_of(panels, scale, sums, k)
    cdef Quantized q
    q.ld = row_stride(precision, k)
    q.size = 1 if precision == INT8 else (2 if dot else 4)
    buf = bytearray(m * (q.ld * 4 + 8) + 64)
    cdef unsigned char[::1] view = buf
    q.codes = <char*>&view[0]
    q.scale = <float*>(q.codes + m * q.ld * 4)
    q.zero = q.scale + m
    with nogil:
        quantize(precision, dot, m, k, &x[0, 0], k, &q, 0)
        product_of(precision, dot, m, n, &q, 0, &w, 0, &out[0, 0], n, accumulate)
