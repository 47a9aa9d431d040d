# The GRU cell's pointwise math for the Cython drivers, for the m active rows of one step.
# Mirrors fastlstm.reference.gru.gru_cell_forward / gru_cell_backward around the products.
# gates rows are (4H) = [r, z, n, m] as the reference saves them.
from cython cimport floating

from ._activations cimport sigmoid, tanh_


cdef inline void gru_forward_rows(floating* gates, const floating* rec, const floating* bias0,
                                  const floating* bias1, const floating* h_prev,
                                  floating* h_next, Py_ssize_t m, Py_ssize_t n, Py_ssize_t H,
                                  Py_ssize_t ld_h) noexcept nogil:
    """Linear before reset. gates (m, 4H) IN/OUT: x W_ih^T in [0, 3H) on entry, [r, z, n, m]
    on return; rec (m, 3H) IN: h W_hh^T; bias0 (3H,) the input side (b_ir + b_hr, b_iz + b_hz,
    b_in), bias1 (3H,) whose n block is b_hn; h_prev, h_next (m, H) with row stride ld_h.
    Only the first n <= H units of each block are computed (the column split's slice: every
    pointer advanced to its first unit, strides unchanged); likewise below."""
    cdef Py_ssize_t b, j
    cdef floating* row
    cdef const floating* rr
    cdef const floating* hp
    cdef floating* hn
    cdef floating one = 1
    for b in range(m):
        row = gates + b * 4 * H
        rr = rec + b * 3 * H
        hp = h_prev + b * ld_h
        hn = h_next + b * ld_h
        for j in range(n):                                  # r
            row[j] = sigmoid(row[j] + rr[j] + bias0[j])
        for j in range(H, H + n):                           # z
            row[j] = sigmoid(row[j] + rr[j] + bias0[j])
        for j in range(n):                                  # m = h W_hn^T + b_hn
            row[3 * H + j] = rr[2 * H + j] + bias1[2 * H + j]
        for j in range(n):
            row[2 * H + j] = tanh_(row[2 * H + j] + bias0[2 * H + j] + row[j] * row[3 * H + j])
        for j in range(n):
            hn[j] = (one - row[H + j]) * row[2 * H + j] + row[H + j] * hp[j]


cdef inline void gru_reset_rows(floating* gates, const floating* rec, const floating* bias0,
                                const floating* h_prev, Py_ssize_t m, Py_ssize_t n,
                                Py_ssize_t H, Py_ssize_t ld_h) noexcept nogil:
    """Reset before the product, first phase. gates (m, 4H) IN/OUT: x W_ih^T in [0, 3H); r, z
    written to [0, 2H) and m = r * h_prev to [3H, 4H); rec (m, 3H) IN: h W_hr^T, h W_hz^T in
    [0, 2H); bias0 (3H,) = b_ih + b_hh."""
    cdef Py_ssize_t b, j
    cdef floating* row
    cdef const floating* hp
    for b in range(m):
        row = gates + b * 4 * H
        hp = h_prev + b * ld_h
        for j in range(n):
            row[j] = sigmoid(row[j] + rec[b * 3 * H + j] + bias0[j])
        for j in range(H, H + n):
            row[j] = sigmoid(row[j] + rec[b * 3 * H + j] + bias0[j])
        for j in range(n):
            row[3 * H + j] = row[j] * hp[j]


cdef inline void gru_new_rows(floating* gates, const floating* rec, const floating* bias0,
                              const floating* h_prev, floating* h_next, Py_ssize_t m,
                              Py_ssize_t n, Py_ssize_t H, Py_ssize_t ld_h) noexcept nogil:
    """Reset before the product, second phase: rec's [2H, 3H) holds (r * h) W_hn^T;
    n = tanh(x W_in^T + that + b_in + b_hn) into gates [2H, 3H); h_next = (1 - z) n + z h_prev."""
    cdef Py_ssize_t b, j
    cdef floating* row
    cdef floating one = 1
    for b in range(m):
        row = gates + b * 4 * H
        for j in range(n):
            row[2 * H + j] = tanh_(row[2 * H + j] + rec[b * 3 * H + 2 * H + j] + bias0[2 * H + j])
        for j in range(n):
            h_next[b * ld_h + j] = ((one - row[H + j]) * row[2 * H + j]
                                    + row[H + j] * h_prev[b * ld_h + j])


cdef inline void gru_backward_rows(const floating* gates, const floating* h_prev, floating* dh,
                                   floating* dA, bint linear_before_reset, Py_ssize_t m,
                                   Py_ssize_t H) noexcept nogil:
    """The part of a GRU step's backward before its products. gates (m, 4H) IN [r, z, n, m];
    h_prev (m, H) IN; dh (m, H) IN/OUT: the whole gradient reaching h_t on entry, its direct
    part dh * z on return; dA (m, 4H) OUT: da_z, da_n, and for linear before reset da_r and
    dm = da_n * r; for reset before, dm = da_n (da_r needs the product (da_n W_hn), see
    gru_reset_backward_rows)."""
    cdef Py_ssize_t b, j
    cdef const floating* row
    cdef floating* da
    cdef floating r, z, n, dh_t, da_n
    cdef floating one = 1
    for b in range(m):
        row = gates + b * 4 * H
        da = dA + b * 4 * H
        for j in range(H):
            r = row[j]
            z = row[H + j]
            n = row[2 * H + j]
            dh_t = dh[b * H + j]
            da_n = dh_t * (one - z) * (one - n * n)
            da[H + j] = dh_t * (h_prev[b * H + j] - n) * z * (one - z)
            da[2 * H + j] = da_n
            if linear_before_reset:
                da[j] = da_n * row[3 * H + j] * r * (one - r)
                da[3 * H + j] = da_n * r
            else:
                da[3 * H + j] = da_n
            dh[b * H + j] = dh_t * z


cdef inline void gru_reset_backward_rows(const floating* gates, const floating* h_prev,
                                         const floating* dm, floating* dh, floating* dA,
                                         Py_ssize_t m, Py_ssize_t H) noexcept nogil:
    """Reset before, after the product dm = da_n W_hn (m, H): da_r into dA [0, H) and the
    gradient through m = r * h added to dh."""
    cdef Py_ssize_t b, j
    cdef floating r
    cdef floating one = 1
    for b in range(m):
        for j in range(H):
            r = gates[b * 4 * H + j]
            dA[b * 4 * H + j] = dm[b * H + j] * h_prev[b * H + j] * r * (one - r)
            dh[b * H + j] = dh[b * H + j] + dm[b * H + j] * r
