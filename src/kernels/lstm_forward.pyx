"""Cython LSTM forward kernel. Mirrors fastlstm.reference.lstm_forward (SPEC.md section 1).

Gate order i, f, g, o. The input projection of a chunk of steps is one matrix product; the
time loop runs without the GIL: per step one h W_hh^T product and one fused pass for the gates,
c and h. Nothing is allocated here: the caller passes every output and scratch buffer.
"""
from cython cimport floating
from cython.parallel cimport prange

from _activations cimport sigmoid, tanh_
from _blas cimport gemm_nt
from _matmul cimport matmul

cdef void gates_and_state(floating* gates, const floating* bias, const floating* c_prev,
                          floating* c_next, floating* h_next, Py_ssize_t B, Py_ssize_t H,
                          int n_threads) noexcept nogil:
    """The fused pointwise pass of one step; mirrors reference.lstm_cell_forward after `a`.

    gates (B, 4H)  IN/OUT: pre-activations without bias on entry, [i, f, g, o] on return
    bias (4H,)     IN: b_ih + b_hh
    c_prev (B, H)  IN;  c_next (B, H) OUT (a different buffer);  h_next (B, H) OUT
    Each loop is a plain pass over contiguous memory, so the compiler vectorises it.
    """
    cdef Py_ssize_t b, j
    cdef floating* row
    cdef floating c
    for b in prange(B, num_threads=n_threads, schedule="static"):
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


def lstm_forward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                 const floating[:, ::1] w_hh_t, const floating[::1] bias,
                 floating[:, :, ::1] h, floating[:, :, ::1] c, floating[:, :, ::1] gates,
                 int n_threads=1):
    """Run the LSTM over T >= 1 steps, B >= 1 rows, I >= 1 inputs, H >= 1 hidden units.

    x      (T, B, I)    IN
    w_ih   (4H, I)      IN
    w_hh_t (H, 4H)      IN   w_hh transposed (C-contiguous)
    bias   (4H,)        IN   b_ih + b_hh (zeros when there are none)
    h      (T+1, B, H)  IN/OUT  h[0] = h_0 on entry; h[1:] receives h_1 ... h_T
    c      (T+1, B, H) or (2, B, H)  IN/OUT  c[0] = c_0 on entry. With T+1 slots c[t] receives
                        c_t (training); with 2 slots step t reads c[t % 2] and writes
                        c[(t+1) % 2], so c_T ends in c[T % 2].
    gates  (K, B, 4H)   OUT/scratch  with K = T, gates[t-1] receives [i, f, g, o] of step t
                        (training); with K < T, scratch for the input projection of K steps.
    n_threads           OpenMP threads for the pointwise pass (over batch rows).
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t H = h.shape[2], K = gates.shape[0]
    cdef bint keep_c = c.shape[0] == T + 1
    cdef Py_ssize_t t0, s, k, t
    if (T < 1 or B < 1 or I < 1 or H < 1 or K < 1 or K > T
            or w_ih.shape[0] != 4 * H or w_ih.shape[1] != I
            or w_hh_t.shape[0] != H or w_hh_t.shape[1] != 4 * H or bias.shape[0] != 4 * H
            or h.shape[0] != T + 1 or h.shape[1] != B
            or (c.shape[0] != 2 and c.shape[0] != T + 1) or c.shape[1] != B or c.shape[2] != H
            or gates.shape[1] != B or gates.shape[2] != 4 * H):
        raise ValueError("lstm_forward: inconsistent buffer shapes")
    t0 = 0
    with nogil:
        while t0 < T:
            k = min(K, T - t0)
            # gates[0:k] (k*B, 4H) = x[t0:t0+k] (k*B, I) @ w_ih^T
            gemm_nt(<int>(k * B), <int>(4 * H), <int>I, 1, &x[t0, 0, 0], <int>I,
                    &w_ih[0, 0], <int>I, 0, &gates[0, 0, 0], <int>(4 * H))
            for s in range(k):
                t = t0 + s
                # gates[s] (B, 4H) += h_t (B, H) @ w_hh^T
                matmul(B, 4 * H, H, &h[t, 0, 0], &w_hh_t[0, 0], 1, &gates[s, 0, 0])
                gates_and_state(&gates[s, 0, 0], &bias[0],
                                &c[t if keep_c else t % 2, 0, 0],
                                &c[t + 1 if keep_c else (t + 1) % 2, 0, 0],
                                &h[t + 1, 0, 0], B, H, n_threads)
            t0 += k
