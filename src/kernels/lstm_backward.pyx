"""Cython LSTM backward kernel. Mirrors fastlstm.reference.lstm_backward (SPEC.md section 1).

As in the forward kernel, each OpenMP thread takes one group of batch rows and walks
t = T ... 1 on it alone, without the GIL and without barriers: per step the fused pointwise
pass for the gate gradients (reference.lstm_cell_backward) and the product dA_t W_hh (see
_products.pyx). After the loop the input, weight and bias gradients are large products over
all steps at once (reference.lstm_weight_grads), shared out by blocks of rows: with dA, x and
h transposed into scratch, each is a set of long dot products. No BLAS call: no second thread
pool, and no BLAS setting is touched. Nothing is allocated here.
"""
from cython cimport floating
from cython.parallel cimport prange

from ._activations cimport tanh_
from ._products cimport ab, abt, row_sums, transpose

# Rows per work item of the products after the loop.
DEF ROWS_PER_ITEM = 64
# At most this many batch rows: dA_t W_hh updates rows of w_hh (`ab`) instead of taking dot
# products with rows of w_hh^T (`abt`).
DEF SMALL_BATCH = 2


cdef void gate_grads(const floating* gates, const floating* c_prev, const floating* c_t,
                     const floating* dy, const floating* dh, floating* dc, floating* dA,
                     Py_ssize_t B, Py_ssize_t H) noexcept nogil:
    """The fused pointwise pass of one step for B rows; mirrors reference.lstm_cell_backward.

    gates (B, 4H) IN [i, f, g, o];  c_prev, c_t (B, H) IN
    dy (B, H) IN or NULL;  dh (B, H) IN: dh_next from step t+1
    dc (B, H) IN/OUT: dc_next from step t+1 on entry, dc_next for step t-1 (dc * f) on return
    dA (B, 4H) OUT: gate pre-activation gradients [da_i, da_f, da_g, da_o]
    """
    cdef Py_ssize_t b, j, n
    cdef floating i, f, g, o, tc, dh_t, dc_t
    for b in range(B):
        for j in range(H):
            n = b * H + j
            i = gates[b * 4 * H + j]
            f = gates[b * 4 * H + H + j]
            g = gates[b * 4 * H + 2 * H + j]
            o = gates[b * 4 * H + 3 * H + j]
            dh_t = dh[n]
            if dy != NULL:
                dh_t = dh_t + dy[n]
            tc = tanh_(c_t[n])
            dc_t = dc[n] + dh_t * o * (1 - tc * tc)
            dA[b * 4 * H + j] = dc_t * g * i * (1 - i)
            dA[b * 4 * H + H + j] = dc_t * c_prev[n] * f * (1 - f)
            dA[b * 4 * H + 2 * H + j] = dc_t * i * (1 - g * g)
            dA[b * 4 * H + 3 * H + j] = dh_t * tc * o * (1 - o)
            dc[n] = dc_t * f


cdef void run_group(const floating* w_hh, const floating* w_hh_t, const floating* c,
                    const floating* gates, const floating* dy, floating* dh, floating* dc,
                    floating* dA, Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t b0,
                    Py_ssize_t b1) noexcept nogil:
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
        if nb <= SMALL_BATCH:
            ab(nb, H, G, dA_t, G, w_hh, H, dh + b0 * H, H, False)
        else:
            abt(nb, H, G, dA_t, G, w_hh_t, G, dh + b0 * H, H, False)
        t -= 1


def lstm_backward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih_t,
                  const floating[:, ::1] w_hh, const floating[:, ::1] w_hh_t,
                  const floating[:, :, ::1] h,
                  const floating[:, :, ::1] c, const floating[:, :, ::1] gates,
                  const floating[:, :, ::1] dy, floating[:, ::1] dh, floating[:, ::1] dc,
                  floating[:, :, ::1] dA, floating[:, :, ::1] dx, floating[:, ::1] dw_ih,
                  floating[:, ::1] dw_hh, floating[::1] db, floating[:, ::1] dA_t,
                  floating[:, ::1] x_t, floating[:, ::1] h_t, int n_threads=1,
                  int n_product_threads=1):
    """Back-propagate through T >= 1 steps of B >= 1 rows, I >= 1 inputs, H >= 1 hidden units.

    x      (T, B, I)    IN   the forward input
    w_ih_t (I, 4H)      IN   w_ih transposed (C-contiguous)
    w_hh   (4H, H)      IN
    w_hh_t (H, 4H)      IN   w_hh transposed (C-contiguous), for groups of more than 2 rows
    h      (T+1, B, H)  IN   hidden states from the forward tape, h[0] = h_0
    c      (T+1, B, H)  IN   cell states from the forward tape, c[0] = c_0
    gates  (T, B, 4H)   IN   gate activations from the forward tape
    dy     (T, B, H)    IN   output gradients, or (0, B, H) for none
    dh     (B, H)       IN/OUT  dh_n on entry, dh_0 on return
    dc     (B, H)       IN/OUT  dc_n on entry, dc_0 on return
    dA     (T, B, 4H)   OUT  gate pre-activation gradients of every step
    dx (T, B, I), dw_ih (4H, I), dw_hh (4H, H), db (4H,)  OUT  (db is for b_ih and b_hh alike)
    dA_t (4H, T*B), x_t (I, T*B), h_t (H, T*B)  scratch  for dA, x and h_0 ... h_{T-1} transposed
    n_threads           OpenMP threads for the walk, at most B: one group of batch rows each.
    n_product_threads   OpenMP threads for the products after the walk.
    """
    cdef Py_ssize_t T = gates.shape[0], B = gates.shape[1], H = dh.shape[1], I = x.shape[2]
    cdef bint has_dy = dy.shape[0] > 0
    cdef Py_ssize_t TB = T * B, G = 4 * H
    cdef Py_ssize_t group, item, r0, r1
    if (T < 1 or B < 1 or H < 1 or I < 1 or n_threads < 1 or n_threads > B
            or n_product_threads < 1
            or w_hh.shape[0] != 4 * H or w_hh.shape[1] != H
            or w_hh_t.shape[0] != H or w_hh_t.shape[1] != 4 * H
            or w_ih_t.shape[0] != I or w_ih_t.shape[1] != 4 * H
            or dA_t.shape[0] != 4 * H or dA_t.shape[1] != TB or x_t.shape[0] != I
            or x_t.shape[1] != TB or h_t.shape[0] != H or h_t.shape[1] != TB
            or x.shape[0] != T or x.shape[1] != B
            or h.shape[0] != T + 1 or h.shape[1] != B or h.shape[2] != H
            or c.shape[0] != T + 1 or c.shape[1] != B or c.shape[2] != H
            or gates.shape[2] != 4 * H or dh.shape[0] != B or dc.shape[0] != B
            or dc.shape[1] != H or dA.shape[0] != T or dA.shape[1] != B or dA.shape[2] != 4 * H
            or dx.shape[0] != T or dx.shape[1] != B or dx.shape[2] != I
            or dw_ih.shape[0] != 4 * H or dw_ih.shape[1] != I
            or dw_hh.shape[0] != 4 * H or dw_hh.shape[1] != H or db.shape[0] != 4 * H
            or (has_dy and (dy.shape[0] != T or dy.shape[1] != B or dy.shape[2] != H))):
        raise ValueError("lstm_backward: inconsistent buffer shapes")
    with nogil:
        for group in prange(n_threads, num_threads=n_threads, schedule="static"):
            run_group(&w_hh[0, 0], &w_hh_t[0, 0], &c[0, 0, 0], &gates[0, 0, 0],
                      &dy[0, 0, 0] if has_dy else NULL, &dh[0, 0], &dc[0, 0], &dA[0, 0, 0],
                      T, B, H, group * B // n_threads, (group + 1) * B // n_threads)
        # transposes: dA (TB, 4H), x (TB, I), h_0 ... h_{T-1} (TB, H), by blocks of rows
        for item in prange((TB + ROWS_PER_ITEM - 1) // ROWS_PER_ITEM,
                           num_threads=n_product_threads, schedule="static"):
            r0 = item * ROWS_PER_ITEM
            r1 = min(r0 + ROWS_PER_ITEM, TB)
            transpose(r1 - r0, G, &dA[0, 0, 0] + r0 * G, G, &dA_t[0, r0], TB)
            transpose(r1 - r0, I, &x[0, 0, 0] + r0 * I, I, &x_t[0, r0], TB)
            transpose(r1 - r0, H, &h[0, 0, 0] + r0 * H, H, &h_t[0, r0], TB)
        # dw_ih = dA^T x, dw_hh = dA^T h_{t-1}, db = the column sums of dA, by blocks of gates
        for item in prange((G + ROWS_PER_ITEM - 1) // ROWS_PER_ITEM,
                           num_threads=n_product_threads, schedule="static"):
            r0 = item * ROWS_PER_ITEM
            r1 = min(r0 + ROWS_PER_ITEM, G)
            abt(r1 - r0, I, TB, &dA_t[r0, 0], TB, &x_t[0, 0], TB, &dw_ih[r0, 0], I, False)
            abt(r1 - r0, H, TB, &dA_t[r0, 0], TB, &h_t[0, 0], TB, &dw_hh[r0, 0], H, False)
            row_sums(r1 - r0, TB, &dA_t[r0, 0], TB, &db[r0])
        # dx = dA w_ih, by blocks of rows
        for item in prange((TB + ROWS_PER_ITEM - 1) // ROWS_PER_ITEM,
                           num_threads=n_product_threads, schedule="static"):
            r0 = item * ROWS_PER_ITEM
            r1 = min(r0 + ROWS_PER_ITEM, TB)
            abt(r1 - r0, I, G, &dA[0, 0, 0] + r0 * G, G, &w_ih_t[0, 0], G,
                &dx[0, 0, 0] + r0 * I, I, False)
