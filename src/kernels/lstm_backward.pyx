"""Cython LSTM backward kernel. Mirrors fastlstm.reference.lstm_backward (SPEC.md section 1).

As in the forward kernel, each OpenMP thread takes one group of batch rows and walks
t = T ... 1 on it alone, without the GIL and without barriers: per step the fused pointwise
pass for the gate gradients (reference.lstm_cell_backward) and the product dA_t W_hh, with
w_hh packed for _gemm.h's micro-kernel before the walk. After the walk the input, weight and
bias gradients are large products over all steps at once (reference.lstm_weight_grads),
shared out by blocks of rows: dx = dA w_ih, and [dw_ih | dw_hh] = dA^T [x | h] with
db = the column sums of dA from the same read of dA (x, h and w_ih packed first). No BLAS call: no second thread pool, and no BLAS
setting is touched. Nothing is allocated here.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid

from ._activations cimport tanh_
from ._gemm cimport (aligned, backward_scratch, copy_length, gemm, gemm_step, gemm_sums,
                     pack, packed_length, padded_columns, panel_width)

# Rows per work item of the products after the walk (a multiple of the micro-kernel's 6).
DEF ROWS_PER_ITEM = 96


cdef void gate_grads(const floating* gates, const floating* c_prev, const floating* c_t,
                     const floating* dy, floating* dh, floating* dc, floating* dA,
                     Py_ssize_t B, Py_ssize_t H) noexcept nogil:
    """The fused pointwise pass of one step for B rows; mirrors reference.lstm_cell_backward.

    gates (B, 4H) IN [i, f, g, o];  c_prev, c_t (B, H) IN;  dy (B, H) IN or NULL
    dh (B, H) IN/OUT: dh_next from step t+1 on entry, dh_next + dy on return
    dc (B, H) IN/OUT: dc_next from step t+1 on entry, dc_next for step t-1 (dc * f) on return
    dA (B, 4H) OUT: gate pre-activation gradients [da_i, da_f, da_g, da_o]
    Per row a few plain loops (dh += dy; tanh(c_t) into the da_o slot; the rest), each simple
    enough for the compiler to vectorise.
    """
    cdef Py_ssize_t b, j
    cdef const floating* gate
    cdef floating* da
    cdef floating* dh_b
    cdef floating* dc_b
    cdef const floating* cp_b
    cdef floating i, f, g, o, tc, dh_t, dc_t
    cdef floating one = 1
    for b in range(B):
        gate = gates + b * 4 * H
        da = dA + b * 4 * H
        dh_b = dh + b * H
        dc_b = dc + b * H
        cp_b = c_prev + b * H
        if dy != NULL:
            for j in range(H):
                dh_b[j] += dy[b * H + j]
        for j in range(H):
            da[3 * H + j] = tanh_(c_t[b * H + j])
        for j in range(H):
            i = gate[j]
            f = gate[H + j]
            g = gate[2 * H + j]
            o = gate[3 * H + j]
            tc = da[3 * H + j]
            dh_t = dh_b[j]
            dc_t = dc_b[j] + dh_t * o * (one - tc * tc)
            da[j] = dc_t * g * i * (one - i)
            da[H + j] = dc_t * cp_b[j] * f * (one - f)
            da[2 * H + j] = dc_t * i * (one - g * g)
            da[3 * H + j] = dh_t * tc * o * (one - o)
            dc_b[j] = dc_t * f


cdef void run_group(const floating* w_hh_pack, const floating* c, const floating* gates,
                    const floating* dy, floating* dh, floating* dc, floating* dA, Py_ssize_t T,
                    Py_ssize_t B, Py_ssize_t H, Py_ssize_t b0, Py_ssize_t b1) noexcept nogil:
    """The whole backward walk for batch rows b0 <= b < b1 (buffers as in lstm_backward;
    dy is NULL when there is none)."""
    cdef Py_ssize_t nb = b1 - b0, G = 4 * H
    cdef Py_ssize_t t = T - 1
    cdef floating* dA_t
    while t >= 0:
        dA_t = dA + (t * B + b0) * G
        gate_grads(gates + (t * B + b0) * G, c + (t * B + b0) * H, c + ((t + 1) * B + b0) * H,
                   dy + (t * B + b0) * H if dy != NULL else NULL, dh + b0 * H, dc + b0 * H,
                   dA_t, nb, H)
        # dh (nb, H) = dA_t (nb, 4H) @ w_hh (4H, H)
        gemm_step(t, nb, H, G, dA_t, G, w_hh_pack, dh + b0 * H, H, False)
        t -= 1


def lstm_backward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                  const floating[:, ::1] w_hh, const floating[:, :, ::1] h,
                  const floating[:, :, ::1] c, const floating[:, :, ::1] gates,
                  const floating[:, :, ::1] dy, floating[:, ::1] dh, floating[:, ::1] dc,
                  floating[:, :, ::1] dA, floating[:, :, ::1] dx, floating[:, ::1] dw_ih,
                  floating[:, ::1] dw_hh, floating[::1] db, floating[::1] scratch,
                  int n_threads=1, int n_product_threads=1):
    """Back-propagate through T >= 1 steps of B >= 1 rows, I >= 1 inputs, H >= 1 hidden units.

    x      (T, B, I)    IN   the forward input
    w_ih   (4H, I)      IN
    w_hh   (4H, H)      IN
    h      (T+1, B, H)  IN   hidden states from the forward tape, h[0] = h_0
    c      (T+1, B, H)  IN   cell states from the forward tape, c[0] = c_0
    gates  (T, B, 4H)   IN   gate activations from the forward tape
    dy     (T, B, H)    IN   output gradients, or (0, B, H) for none
    dh     (B, H)       IN/OUT  dh_n on entry, dh_0 on return
    dc     (B, H)       IN/OUT  dc_n on entry, dc_0 on return
    dA     (T, B, 4H)   OUT  gate pre-activation gradients of every step
    dx (T, B, I), dw_ih (4H, I), dw_hh (4H, H), db (4H,)  OUT  (db is for b_ih and b_hh alike)
    scratch (at least _info.backward_scratch_length(T*B, I, H, itemsize, n_product_threads),)
                        from its first 64-byte boundary on: w_ih and w_hh packed into panels,
                        [x | h_0 ... h_{T-1}] packed with x's columns padded to Ip = I rounded
                        up to whole panels, [dw_ih | padding | dw_hh] (4H, Ip + H) as one
                        product gives them, and a work buffer per product thread
    n_threads           OpenMP threads for the walk, at most B: one group of batch rows each.
    n_product_threads   OpenMP threads for the packing and the products after the walk.
    """
    cdef Py_ssize_t T = gates.shape[0], B = gates.shape[1], H = dh.shape[1], I = x.shape[2]
    cdef bint has_dy = dy.shape[0] > 0
    cdef Py_ssize_t TB = T * B, G = 4 * H
    cdef Py_ssize_t group, item, r0, r1, r, j
    cdef Py_ssize_t NR = panel_width(&dA[0, 0, 0])
    cdef Py_ssize_t Ip = padded_columns(&dA[0, 0, 0], I)
    cdef floating* w_ih_pack
    cdef floating* w_hh_pack
    cdef floating* xh_pack
    cdef floating* dw
    cdef floating* work
    if (T < 1 or B < 1 or H < 1 or I < 1 or n_threads < 1 or n_threads > B
            or n_product_threads < 1
            or w_hh.shape[0] != 4 * H or w_hh.shape[1] != H
            or w_ih.shape[0] != 4 * H or w_ih.shape[1] != I
            or x.shape[0] != T or x.shape[1] != B
            or h.shape[0] != T + 1 or h.shape[1] != B or h.shape[2] != H
            or c.shape[0] != T + 1 or c.shape[1] != B or c.shape[2] != H
            or gates.shape[2] != 4 * H or dh.shape[0] != B or dc.shape[0] != B
            or dc.shape[1] != H or dA.shape[0] != T or dA.shape[1] != B or dA.shape[2] != 4 * H
            or dx.shape[0] != T or dx.shape[1] != B or dx.shape[2] != I
            or dw_ih.shape[0] != 4 * H or dw_ih.shape[1] != I
            or dw_hh.shape[0] != 4 * H or dw_hh.shape[1] != H or db.shape[0] != 4 * H
            or (has_dy and (dy.shape[0] != T or dy.shape[1] != B or dy.shape[2] != H))
            or scratch.shape[0] < backward_scratch(&dA[0, 0, 0], TB, I, H, n_product_threads)):
        raise ValueError("lstm_backward: inconsistent buffer shapes")
    w_ih_pack = aligned(&scratch[0])
    w_hh_pack = w_ih_pack + packed_length(&dA[0, 0, 0], G, I)
    xh_pack = w_hh_pack + packed_length(&dA[0, 0, 0], G, H)
    dw = xh_pack + packed_length(&dA[0, 0, 0], TB, Ip + H)
    work = dw + G * (Ip + H)
    with nogil:
        # w_hh (4H, H) and w_ih (4H, I) packed, by blocks of rows
        for item in prange((G + ROWS_PER_ITEM - 1) // ROWS_PER_ITEM,
                           num_threads=n_product_threads, schedule="static"):
            r0 = item * ROWS_PER_ITEM
            r1 = min(r0 + ROWS_PER_ITEM, G)
            pack(r1 - r0, H, &w_hh[r0, 0], H, 1, w_hh_pack + r0 * NR, G * NR)
            pack(r1 - r0, I, &w_ih[r0, 0], I, 1, w_ih_pack + r0 * NR, G * NR)
        for group in prange(n_threads, num_threads=n_threads, schedule="static"):
            run_group(w_hh_pack, &c[0, 0, 0], &gates[0, 0, 0],
                      &dy[0, 0, 0] if has_dy else NULL, &dh[0, 0], &dc[0, 0], &dA[0, 0, 0],
                      T, B, H, group * B // n_threads, (group + 1) * B // n_threads)
        # [x | h_0 ... h_{T-1}] (TB, Ip + H) packed (x's panels first, then h's); dx = dA w_ih;
        # by blocks of rows
        for item in prange((TB + ROWS_PER_ITEM - 1) // ROWS_PER_ITEM,
                           num_threads=n_product_threads, schedule="static"):
            r0 = item * ROWS_PER_ITEM
            r1 = min(r0 + ROWS_PER_ITEM, TB)
            pack(r1 - r0, I, &x[0, 0, 0] + r0 * I, I, 1, xh_pack + r0 * NR, TB * NR)
            pack(r1 - r0, H, &h[0, 0, 0] + r0 * H, H, 1, xh_pack + Ip * TB + r0 * NR,
                 TB * NR)
            gemm(r1 - r0, I, G, &dA[0, 0, 0] + r0 * G, G, 1, w_ih_pack,
                 &dx[0, 0, 0] + r0 * I, I, False)
        # [dw_ih | dw_hh] = dA^T [x | h_{t-1}] and db = the column sums of dA, from one read of
        # dA; by blocks of gate rows
        for item in prange((G + ROWS_PER_ITEM - 1) // ROWS_PER_ITEM,
                           num_threads=n_product_threads, schedule="static"):
            r0 = item * ROWS_PER_ITEM
            r1 = min(r0 + ROWS_PER_ITEM, G)
            gemm_sums(r1 - r0, Ip + H, TB, &dA[0, 0, 0] + r0, 1, G, xh_pack, dw + r0 * (Ip + H),
                      Ip + H, &db[r0], work + threadid() * copy_length(&dA[0, 0, 0]))
            for r in range(r0, r1):
                for j in range(I):
                    dw_ih[r, j] = dw[r * (Ip + H) + j]
                for j in range(H):
                    dw_hh[r, j] = dw[r * (Ip + H) + Ip + j]
