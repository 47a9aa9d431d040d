"""Cython LSTM forward kernel. Mirrors fastlstm.reference.lstm_forward (SPEC.md section 1).

Gate order i, f, g, o. The rows of a batch never meet, so the batch is cut into one group of
rows per OpenMP thread and each thread runs the whole time loop on its group without the GIL
and without waiting for the others: no barrier per step, so a thread that loses its core for a
while (a loaded machine) delays only itself. Per step: the input projection of the group's rows
(for a single group, of a chunk of steps at once), the product h_{t-1} W_hh^T, and one fused
pass for the gates, c and h. The products are _products.pyx's, not BLAS, so no second thread
pool competes with OpenMP's. Nothing is allocated here: the caller passes every buffer.
"""
from cython cimport floating
from cython.parallel cimport prange

from ._activations cimport sigmoid, tanh_
from ._products cimport ab, abt

# At most this many batch rows: the recurrent product updates rows of w_hh^T (`ab`) instead
# of taking dot products with rows of w_hh (`abt`).
DEF SMALL_BATCH = 2


cdef void gates_and_state(floating* gates, const floating* bias, const floating* c_prev,
                          floating* c_next, floating* h_next, Py_ssize_t B,
                          Py_ssize_t H) noexcept nogil:
    """The fused pointwise pass of one step for B rows; mirrors reference.lstm_cell_forward
    after `a`.

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
        for j in range(2 * H):                      # i, f
            row[j] = sigmoid(row[j] + bias[j])
        for j in range(2 * H, 3 * H):               # g
            row[j] = tanh_(row[j] + bias[j])
        for j in range(3 * H, 4 * H):               # o
            row[j] = sigmoid(row[j] + bias[j])
        for j in range(H):
            c = row[H + j] * c_prev[b * H + j] + row[j] * row[2 * H + j]
            c_next[b * H + j] = c
            h_next[b * H + j] = row[3 * H + j] * tanh_(c)


cdef void run_group(const floating* x, const floating* w_ih, const floating* w_hh,
                    const floating* w_hh_t, const floating* bias, floating* h, floating* c,
                    floating* gates, Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                    Py_ssize_t K, bint keep_c, Py_ssize_t b0, Py_ssize_t b1) noexcept nogil:
    """The whole time loop for batch rows b0 <= b < b1 (buffers as in lstm_forward)."""
    cdef Py_ssize_t nb = b1 - b0, G = 4 * H
    cdef Py_ssize_t t0 = 0, k, s, t
    cdef floating* g
    while t0 < T:
        k = min(K, T - t0)
        if nb == B:  # all rows: gates[0:k] (k*B, 4H) = x[t0:t0+k] (k*B, I) @ w_ih^T at once
            abt(k * B, G, I, x + t0 * B * I, I, w_ih, I, gates, G, False)
        for s in range(k):
            t = t0 + s
            g = gates + (s * B + b0) * G
            if nb < B:  # this group's rows of the step: g (nb, 4H) = x_t (nb, I) @ w_ih^T
                abt(nb, G, I, x + (t * B + b0) * I, I, w_ih, I, g, G, False)
            # g (nb, 4H) += h_t (nb, H) @ w_hh^T
            if nb <= SMALL_BATCH:
                ab(nb, G, H, h + (t * B + b0) * H, H, w_hh_t, G, g, G, True)
            else:
                abt(nb, G, H, h + (t * B + b0) * H, H, w_hh, H, g, G, True)
            gates_and_state(g, bias, c + ((t if keep_c else t % 2) * B + b0) * H,
                            c + ((t + 1 if keep_c else (t + 1) % 2) * B + b0) * H,
                            h + ((t + 1) * B + b0) * H, nb, H)
        t0 += k


def lstm_forward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                 const floating[:, ::1] w_hh, const floating[:, ::1] w_hh_t,
                 const floating[::1] bias, floating[:, :, ::1] h, floating[:, :, ::1] c,
                 floating[:, :, ::1] gates, int n_threads=1):
    """Run the LSTM over T >= 1 steps, B >= 1 rows, I >= 1 inputs, H >= 1 hidden units.

    x      (T, B, I)    IN
    w_ih   (4H, I)      IN
    w_hh   (4H, H)      IN
    w_hh_t (H, 4H)      IN   w_hh transposed (C-contiguous), for groups of 1 or 2 rows
    bias   (4H,)        IN   b_ih + b_hh (zeros when there are none)
    h      (T+1, B, H)  IN/OUT  h[0] = h_0 on entry; h[1:] receives h_1 ... h_T
    c      (T+1, B, H) or (2, B, H)  IN/OUT  c[0] = c_0 on entry. With T+1 slots c[t] receives
                        c_t (training); with 2 slots step t reads c[t % 2] and writes
                        c[(t+1) % 2], so c_T ends in c[T % 2].
    gates  (K, B, 4H)   OUT/scratch  with K = T, gates[t-1] receives [i, f, g, o] of step t
                        (training); with K < T, scratch for the input projection of K steps.
    n_threads           OpenMP threads, at most B: one group of batch rows each.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t H = h.shape[2], K = gates.shape[0]
    cdef bint keep_c = c.shape[0] == T + 1
    cdef Py_ssize_t group
    if (T < 1 or B < 1 or I < 1 or H < 1 or K < 1 or K > T or n_threads < 1 or n_threads > B
            or w_ih.shape[0] != 4 * H or w_ih.shape[1] != I
            or w_hh.shape[0] != 4 * H or w_hh.shape[1] != H
            or w_hh_t.shape[0] != H or w_hh_t.shape[1] != 4 * H or bias.shape[0] != 4 * H
            or h.shape[0] != T + 1 or h.shape[1] != B
            or (c.shape[0] != 2 and c.shape[0] != T + 1) or c.shape[1] != B or c.shape[2] != H
            or gates.shape[1] != B or gates.shape[2] != 4 * H):
        raise ValueError("lstm_forward: inconsistent buffer shapes")
    for group in prange(n_threads, num_threads=n_threads, schedule="static", nogil=True):
        run_group(&x[0, 0, 0], &w_ih[0, 0], &w_hh[0, 0], &w_hh_t[0, 0], &bias[0], &h[0, 0, 0],
                  &c[0, 0, 0], &gates[0, 0, 0], T, B, I, H, K, keep_c,
                  group * B // n_threads, (group + 1) * B // n_threads)
