"""Cython LSTM forward kernel. Mirrors fastlstm.reference.lstm_forward (SPEC.md section 1).

Gate order i, f, g, o. First w_ih^T and w_hh^T are packed into panels for _gemm.h's
micro-kernel (in parallel, by panels). Then the rows of the batch, which never meet, are cut
into one group per OpenMP thread and each thread runs the whole time loop on its group
without the GIL and without waiting for the others: no barrier per step, so a thread that
loses its core for a while (a loaded machine) delays only itself. Each chunk of steps starts
with the input projection of the group's rows at all its steps (one pass over the packed
w_ih^T; with a single group, shared between the threads when it is large); then per step the
product h_{t-1} W_hh^T and one fused pass for the gates, c and h. No BLAS call, so no second
thread pool competes with OpenMP's. Nothing is allocated here: the caller passes every buffer.
"""
from cython cimport floating
from cython.parallel cimport prange

from ._activations cimport sigmoid, tanh_
from ._gemm cimport (aligned, forward_scratch, gemm, gemm_groups, gemm_step, pack,
                     packed_length, panel_width)

# With one group of rows, a chunk's input projection is shared between the threads when it
# has at least this many multiply-adds (waking the other threads costs several microseconds).
DEF SHARED_PROJECTION_MACS = 1 << 21
# The weights are packed by all threads when they hold at least this many values.
DEF SHARED_PACKING_VALUES = 1 << 16


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
    cdef floating* cn
    cdef floating* hn
    for b in range(B):
        row = gates + b * 4 * H
        for j in range(2 * H):                      # i, f
            row[j] = sigmoid(row[j] + bias[j])
        for j in range(2 * H, 3 * H):               # g
            row[j] = tanh_(row[j] + bias[j])
        for j in range(3 * H, 4 * H):               # o
            row[j] = sigmoid(row[j] + bias[j])
        cn = c_next + b * H
        hn = h_next + b * H
        for j in range(H):
            cn[j] = row[H + j] * c_prev[b * H + j] + row[j] * row[2 * H + j]
        for j in range(H):                          # a loop of its own, so it vectorises
            hn[j] = row[3 * H + j] * tanh_(cn[j])


cdef void run_chunk(const floating* w_hh_pack, const floating* bias, floating* h, floating* c,
                    floating* gates, Py_ssize_t B, Py_ssize_t H, bint keep_c, Py_ssize_t t0,
                    Py_ssize_t k, Py_ssize_t b0, Py_ssize_t b1) noexcept nogil:
    """Steps t0 <= t < t0 + k for batch rows b0 <= b < b1 (buffers as in lstm_forward); step
    t works in gates[t - t0], which holds the input projection x_t W_ih^T of its rows."""
    cdef Py_ssize_t nb = b1 - b0, G = 4 * H
    cdef Py_ssize_t s, t
    cdef floating* g
    for s in range(k):
        t = t0 + s
        g = gates + (s * B + b0) * G
        # g (nb, 4H) += h_t (nb, H) @ w_hh^T
        gemm_step(t, nb, G, H, h + (t * B + b0) * H, H, w_hh_pack, g, G, True)
        gates_and_state(g, bias, c + ((t if keep_c else t % 2) * B + b0) * H,
                        c + ((t + 1 if keep_c else (t + 1) % 2) * B + b0) * H,
                        h + ((t + 1) * B + b0) * H, nb, H)


cdef void run_group(const floating* x, const floating* w_ih_pack,
                    const floating* w_hh_pack, const floating* bias, floating* h, floating* c,
                    floating* gates, Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                    Py_ssize_t K, bint keep_c, Py_ssize_t b0, Py_ssize_t b1) noexcept nogil:
    """The whole time loop for batch rows b0 <= b < b1, in chunks of K steps, each chunk
    starting with the input projection of the group's rows at all its steps (buffers as in
    lstm_forward)."""
    cdef Py_ssize_t t0 = 0, k, G = 4 * H
    while t0 < T:
        k = min(K, T - t0)
        # gates[s, b0:b1] (nb, 4H) = x[t0 + s, b0:b1] (nb, I) @ w_ih^T for s < k
        gemm_groups(k, b1 - b0, G, I, x + (t0 * B + b0) * I, I, B * I, w_ih_pack,
                    gates + b0 * G, G, B * G)
        run_chunk(w_hh_pack, bias, h, c, gates, B, H, keep_c, t0, k, b0, b1)
        t0 += K


def lstm_forward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                 const floating[:, ::1] w_hh, const floating[::1] bias,
                 floating[:, :, ::1] h, floating[:, :, ::1] c, floating[:, :, ::1] gates,
                 floating[::1] scratch, int n_threads=1):
    """Run the LSTM over T >= 1 steps, B >= 1 rows, I >= 1 inputs, H >= 1 hidden units.

    x      (T, B, I)    IN
    w_ih   (4H, I)      IN
    w_hh   (4H, H)      IN
    bias   (4H,)        IN   b_ih + b_hh (zeros when there are none)
    h      (T+1, B, H)  IN/OUT  h[0] = h_0 on entry; h[1:] receives h_1 ... h_T
    c      (T+1, B, H) or (2, B, H)  IN/OUT  c[0] = c_0 on entry. With T+1 slots c[t] receives
                        c_t (training); with 2 slots step t reads c[t % 2] and writes
                        c[(t+1) % 2], so c_T ends in c[T % 2].
    gates  (K, B, 4H)   OUT/scratch  with K = T, gates[t-1] receives [i, f, g, o] of step t
                        (training); with K < T, scratch for the input projection of K steps.
    scratch (at least _info.forward_scratch_length(I, H, itemsize),)  for w_ih^T and w_hh^T
                        packed into panels, from its first 64-byte boundary on
    n_threads           OpenMP threads. With B >= 2 each takes a group of batch rows (at most
                        B groups) for the whole time loop; with one group they share each
                        chunk's input projection, and one of them runs the chunk's steps.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2]
    cdef Py_ssize_t H = h.shape[2], K = gates.shape[0], G = 4 * H
    cdef bint keep_c = c.shape[0] == T + 1
    cdef Py_ssize_t n_groups = min(n_threads, B)
    cdef Py_ssize_t group, p, NR, t0, k, part, r0, r1, n_parts
    cdef floating* w_ih_pack
    cdef floating* w_hh_pack
    if (T < 1 or B < 1 or I < 1 or H < 1 or K < 1 or K > T or n_threads < 1
            or w_ih.shape[0] != 4 * H or w_ih.shape[1] != I
            or w_hh.shape[0] != 4 * H or w_hh.shape[1] != H or bias.shape[0] != 4 * H
            or h.shape[0] != T + 1 or h.shape[1] != B
            or (c.shape[0] != 2 and c.shape[0] != T + 1) or c.shape[1] != B or c.shape[2] != H
            or gates.shape[1] != B or gates.shape[2] != 4 * H
            or scratch.shape[0] < forward_scratch(&gates[0, 0, 0], I, H)):
        raise ValueError("lstm_forward: inconsistent buffer shapes")
    NR = panel_width(&gates[0, 0, 0])
    w_ih_pack = aligned(&scratch[0])
    w_hh_pack = w_ih_pack + packed_length(&gates[0, 0, 0], I, G)
    with nogil:
        # w_ih^T (I, 4H) and w_hh^T (H, 4H) into panels of NR columns, a panel per work item
        n_parts = n_threads if (I + H) * G >= SHARED_PACKING_VALUES else 1
        for p in prange((G + NR - 1) // NR, num_threads=n_parts, schedule="static"):
            pack(I, min(NR, G - p * NR), &w_ih[0, 0] + p * NR * I, 1, I,
                 w_ih_pack + p * I * NR, I * NR)
            pack(H, min(NR, G - p * NR), &w_hh[0, 0] + p * NR * H, 1, H,
                 w_hh_pack + p * H * NR, H * NR)
        if n_groups > 1:  # a group of batch rows per thread, each on its own to the end
            for group in prange(n_groups, num_threads=n_groups, schedule="static"):
                run_group(&x[0, 0, 0], w_ih_pack, w_hh_pack, &bias[0], &h[0, 0, 0],
                          &c[0, 0, 0], &gates[0, 0, 0], T, B, I, H, K, keep_c,
                          group * B // n_groups, (group + 1) * B // n_groups)
        else:  # one group: all threads project a chunk's input, then one thread runs its steps
            t0 = 0
            while t0 < T:
                k = min(K, T - t0)
                n_parts = n_threads if k * B * I * G >= SHARED_PROJECTION_MACS else 1
                for part in prange(n_parts, num_threads=n_parts, schedule="static"):
                    r0 = part * k * B // n_parts
                    r1 = (part + 1) * k * B // n_parts
                    # gates[0:k] (k*B, 4H) = x[t0:t0+k] (k*B, I) @ w_ih^T, by blocks of rows
                    gemm(r1 - r0, G, I, &x[0, 0, 0] + (t0 * B + r0) * I, I, 1, w_ih_pack,
                         &gates[0, 0, 0] + r0 * G, G, False)
                run_chunk(w_hh_pack, &bias[0], &h[0, 0, 0], &c[0, 0, 0], &gates[0, 0, 0], B, H,
                          keep_c, t0, k, 0, B)
                t0 += k
