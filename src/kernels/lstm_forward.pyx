"""Cython LSTM forward kernel. Mirrors fastlstm.reference.lstm_forward (SPEC.md section 1).

Gate order i, f, g, o. The whole run is one OpenMP region without the GIL; its threads share
each piece of work by columns: the input projection of a chunk of steps (one product for all
its rows), then per step the product h_{t-1} W_hh^T and one fused pass for the gates, c and h
(see _products.pyx). No BLAS call runs inside the region, so no second thread pool competes
with OpenMP's. Nothing is allocated here: the caller passes every output and scratch buffer.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange

from ._activations cimport sigmoid, tanh_
from ._products cimport ab, abt

# Columns (gate outputs or hidden units) per work item shared out to the threads.
DEF COLUMNS_PER_ITEM = 64
# At most this many batch rows: the recurrent product updates rows of w_hh^T (`ab`) instead
# of taking dot products with rows of w_hh (`abt`).
DEF SMALL_BATCH = 2


cdef void gates_and_state(floating* gates, const floating* bias, const floating* c_prev,
                          floating* c_next, floating* h_next, Py_ssize_t B, Py_ssize_t H,
                          Py_ssize_t u0, Py_ssize_t u1) noexcept nogil:
    """The fused pointwise pass of one step for hidden units u0 <= u < u1 of every row.

    Mirrors reference.lstm_cell_forward after `a`.
    gates (B, 4H)  IN/OUT: pre-activations without bias on entry, [i, f, g, o] on return
    bias (4H,)     IN: b_ih + b_hh
    c_prev (B, H)  IN;  c_next (B, H) OUT (a different buffer);  h_next (B, H) OUT
    Each loop is a plain pass over contiguous memory, so the compiler vectorises it.
    """
    cdef Py_ssize_t b, j
    cdef floating* row
    cdef floating c
    for b in range(B):
        row = gates + b * 4 * H
        for j in range(u0, u1):                     # i
            row[j] = sigmoid(row[j] + bias[j])
        for j in range(H + u0, H + u1):             # f
            row[j] = sigmoid(row[j] + bias[j])
        for j in range(2 * H + u0, 2 * H + u1):     # g
            row[j] = tanh_(row[j] + bias[j])
        for j in range(3 * H + u0, 3 * H + u1):     # o
            row[j] = sigmoid(row[j] + bias[j])
        for j in range(u0, u1):
            c = row[H + j] * c_prev[b * H + j] + row[j] * row[2 * H + j]
            c_next[b * H + j] = c
            h_next[b * H + j] = row[3 * H + j] * tanh_(c)


def lstm_forward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                 const floating[:, ::1] w_hh, const floating[:, ::1] w_hh_t,
                 const floating[::1] bias, floating[:, :, ::1] h, floating[:, :, ::1] c,
                 floating[:, :, ::1] gates, int n_threads=1):
    """Run the LSTM over T >= 1 steps, B >= 1 rows, I >= 1 inputs, H >= 1 hidden units.

    x      (T, B, I)    IN
    w_ih   (4H, I)      IN
    w_hh   (4H, H)      IN
    w_hh_t (H, 4H)      IN   w_hh transposed (C-contiguous), for batches of 1 or 2 rows
    bias   (4H,)        IN   b_ih + b_hh (zeros when there are none)
    h      (T+1, B, H)  IN/OUT  h[0] = h_0 on entry; h[1:] receives h_1 ... h_T
    c      (T+1, B, H) or (2, B, H)  IN/OUT  c[0] = c_0 on entry. With T+1 slots c[t] receives
                        c_t (training); with 2 slots step t reads c[t % 2] and writes
                        c[(t+1) % 2], so c_T ends in c[T % 2].
    gates  (K, B, 4H)   OUT/scratch  with K = T, gates[t-1] receives [i, f, g, o] of step t
                        (training); with K < T, scratch for the input projection of K steps.
    n_threads           OpenMP threads; each step's work is split by columns between them.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t H = h.shape[2], K = gates.shape[0]
    cdef bint keep_c = c.shape[0] == T + 1
    cdef Py_ssize_t n_gate_items = (4 * H + COLUMNS_PER_ITEM - 1) // COLUMNS_PER_ITEM
    cdef Py_ssize_t n_unit_items = (H + COLUMNS_PER_ITEM - 1) // COLUMNS_PER_ITEM
    cdef Py_ssize_t t0, s, k, t, item, n0, n1
    if (T < 1 or B < 1 or I < 1 or H < 1 or K < 1 or K > T or n_threads < 1
            or w_ih.shape[0] != 4 * H or w_ih.shape[1] != I
            or w_hh.shape[0] != 4 * H or w_hh.shape[1] != H
            or w_hh_t.shape[0] != H or w_hh_t.shape[1] != 4 * H or bias.shape[0] != 4 * H
            or h.shape[0] != T + 1 or h.shape[1] != B
            or (c.shape[0] != 2 and c.shape[0] != T + 1) or c.shape[1] != B or c.shape[2] != H
            or gates.shape[1] != B or gates.shape[2] != 4 * H):
        raise ValueError("lstm_forward: inconsistent buffer shapes")
    with nogil, parallel(num_threads=n_threads):
        t0 = 0
        while t0 < T:                    # every thread walks the steps; work items are shared
            k = min(K, T - t0)
            # gates[0:k] (k*B, 4H) = x[t0:t0+k] (k*B, I) @ w_ih^T, by blocks of gate columns
            for item in prange(n_gate_items, schedule="static"):
                n0 = item * COLUMNS_PER_ITEM
                n1 = min(n0 + COLUMNS_PER_ITEM, 4 * H)
                abt(k * B, n1 - n0, I, &x[t0, 0, 0], I, &w_ih[n0, 0], I, &gates[0, 0, n0],
                    4 * H, False)
            for s in range(k):
                t = t0 + s
                # gates[s] (B, 4H) += h_t (B, H) @ w_hh^T, by blocks of gate columns
                for item in prange(n_gate_items, schedule="static"):
                    n0 = item * COLUMNS_PER_ITEM
                    n1 = min(n0 + COLUMNS_PER_ITEM, 4 * H)
                    if B <= SMALL_BATCH:
                        ab(B, n1 - n0, H, &h[t, 0, 0], H, &w_hh_t[0, n0], 4 * H,
                           &gates[s, 0, n0], 4 * H, True)
                    else:
                        abt(B, n1 - n0, H, &h[t, 0, 0], H, &w_hh[n0, 0], H, &gates[s, 0, n0],
                            4 * H, True)
                # gates, c and h, by blocks of hidden units
                for item in prange(n_unit_items, schedule="static"):
                    n0 = item * COLUMNS_PER_ITEM
                    n1 = min(n0 + COLUMNS_PER_ITEM, H)
                    gates_and_state(&gates[s, 0, 0], &bias[0],
                                    &c[t if keep_c else t % 2, 0, 0],
                                    &c[t + 1 if keep_c else (t + 1) % 2, 0, 0],
                                    &h[t + 1, 0, 0], B, H, n0, n1)
            t0 = t0 + k
