# The plain RNN cell's pointwise math for the Cython drivers, for the m active rows of one
# step. Mirrors fastlstm.reference.rnn.rnn_cell_forward / rnn_cell_backward.
from cython cimport floating

from ._activations cimport tanh_


cdef inline void rnn_forward_rows(floating* gates, const floating* bias, floating* h_next,
                                  bint relu, Py_ssize_t m, Py_ssize_t n,
                                  Py_ssize_t H) noexcept nogil:
    """gates (m, H) IN/OUT: x W_ih^T + h W_hh^T on entry, h_t on return; bias (H,) =
    b_ih + b_hh; h_next (m, H) OUT: h_t. Only the first n <= H units are computed (the column
    split's slice: every pointer advanced to its first unit, row strides H)."""
    cdef Py_ssize_t b, j
    cdef floating a
    cdef floating zero = 0
    cdef floating* row
    cdef floating* hn
    for b in range(m):
        row = gates + b * H
        hn = h_next + b * H
        if relu:
            for j in range(n):
                a = row[j] + bias[j]
                a = zero if a < zero else a         # NaN stays NaN, as np.maximum
                row[j] = a
                hn[j] = a
        else:
            for j in range(n):
                a = tanh_(row[j] + bias[j])
                row[j] = a
                hn[j] = a


cdef inline void rnn_backward_rows(const floating* gates, const floating* dh, floating* dA,
                                   bint relu, Py_ssize_t m, Py_ssize_t H) noexcept nogil:
    """gates (m, H) IN: h_t; dh (m, H) IN: the whole gradient reaching h_t; dA (m, H) OUT."""
    cdef Py_ssize_t j
    cdef floating one = 1
    cdef floating zero = 0
    if relu:
        for j in range(m * H):
            dA[j] = dh[j] * (one if gates[j] > zero else zero)
    else:
        for j in range(m * H):
            dA[j] = dh[j] * (one - gates[j] * gates[j])
