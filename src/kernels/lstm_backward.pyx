"""Cython LSTM backward kernel. Mirrors fastlstm.reference.lstm_backward_steps (SPEC.md section 1).

Walks t = T ... 1 without the GIL: per step one fused pointwise pass for the gate gradients and
one dA_t W_hh product. The weight, input and bias gradients are left to large matrix products
after the loop (fastlstm.reference.lstm_weight_grads). Nothing is allocated here.
"""
from cython cimport floating
from cython.parallel cimport prange

from _activations cimport tanh_
from _matmul cimport matmul


cdef void gate_grads(const floating* gates, const floating* c_prev, const floating* c_t,
                     const floating* dy, const floating* dh, floating* dc, floating* dA,
                     Py_ssize_t B, Py_ssize_t H, int n_threads) noexcept nogil:
    """The fused pointwise pass of one step; mirrors reference.lstm_cell_backward.

    gates (B, 4H) IN [i, f, g, o];  c_prev, c_t (B, H) IN
    dy (B, H) IN or NULL;  dh (B, H) IN: dh_next from step t+1
    dc (B, H) IN/OUT: dc_next from step t+1 on entry, dc_next for step t-1 (dc * f) on return
    dA (B, 4H) OUT: gate pre-activation gradients [da_i, da_f, da_g, da_o]
    """
    cdef Py_ssize_t b, j, n
    cdef floating i, f, g, o, tc, dh_t, dc_t
    for b in prange(B, num_threads=n_threads, schedule="static"):
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


def lstm_backward(const floating[:, ::1] w_hh, const floating[:, :, ::1] c,
                  const floating[:, :, ::1] gates, const floating[:, :, ::1] dy,
                  floating[:, ::1] dh, floating[:, ::1] dc, floating[:, :, ::1] dA,
                  int n_threads=1):
    """Back-propagate through T >= 1 steps of B >= 1 rows and H >= 1 hidden units.

    w_hh   (4H, H)      IN
    c      (T+1, B, H)  IN   cell states from the forward tape, c[0] = c_0
    gates  (T, B, 4H)   IN   gate activations from the forward tape
    dy     (T, B, H)    IN   output gradients, or (0, B, H) for none
    dh     (B, H)       IN/OUT  dh_n on entry, dh_0 on return
    dc     (B, H)       IN/OUT  dc_n on entry, dc_0 on return
    dA     (T, B, 4H)   OUT  gate pre-activation gradients of every step
    n_threads           OpenMP threads for the pointwise pass (over batch rows).
    """
    cdef Py_ssize_t T = gates.shape[0], B = gates.shape[1], H = dh.shape[1]
    cdef bint has_dy = dy.shape[0] > 0
    cdef Py_ssize_t t
    if (T < 1 or B < 1 or H < 1 or w_hh.shape[0] != 4 * H or w_hh.shape[1] != H
            or c.shape[0] != T + 1 or c.shape[1] != B or c.shape[2] != H
            or gates.shape[2] != 4 * H or dh.shape[0] != B or dc.shape[0] != B
            or dc.shape[1] != H or dA.shape[0] != T or dA.shape[1] != B or dA.shape[2] != 4 * H
            or (has_dy and (dy.shape[0] != T or dy.shape[1] != B or dy.shape[2] != H))):
        raise ValueError("lstm_backward: inconsistent buffer shapes")
    with nogil:
        for t in range(T - 1, -1, -1):
            gate_grads(&gates[t, 0, 0], &c[t, 0, 0], &c[t + 1, 0, 0],
                       &dy[t, 0, 0] if has_dy else NULL, &dh[0, 0], &dc[0, 0], &dA[t, 0, 0],
                       B, H, n_threads)
            # dh (B, H) = dA_t (B, 4H) @ w_hh (4H, H)
            matmul(B, H, 4 * H, &dA[t, 0, 0], &w_hh[0, 0], 0, &dh[0, 0])
