# The LSTM cell's pointwise math for the Cython drivers (recurrent_forward.pyx,
# recurrent_backward.pyx), for the m active rows of one step. Mirrors
# fastlstm.reference.lstm.lstm_cell_forward / lstm_cell_backward after (before) the products.
# Each loop is a plain pass over contiguous memory, so the compiler vectorises it.
from cython cimport floating

from ._activations cimport sigmoid, tanh_


cdef inline void lstm_forward_rows(floating* gates, const floating* bias, const floating* peep,
                                   const floating* c_prev, floating* c_next, floating* out,
                                   Py_ssize_t m, Py_ssize_t n, Py_ssize_t H) noexcept nogil:
    """gates (m, 4H) IN/OUT: pre-activations without bias on entry, [i, f, g, o] on return;
    bias (4H,); peep (3, H) [p_i, p_f, p_o] or NULL; c_prev (m, H) IN; c_next (m, H) OUT (another
    buffer); out (m, H) OUT: o * tanh(c_next) (h itself, or what the projection multiplies).
    Only the first n <= H units of each block are computed: the column split passes every
    pointer advanced to its first unit u0 (rows and blocks keep their strides 4H and H)."""
    cdef Py_ssize_t b, j
    cdef floating* row
    cdef floating* cn
    cdef floating* hn
    cdef const floating* cp
    for b in range(m):
        row = gates + b * 4 * H
        cn = c_next + b * H
        hn = out + b * H
        cp = c_prev + b * H
        if peep == NULL:
            for j in range(n):                          # i, f
                row[j] = sigmoid(row[j] + bias[j])
            for j in range(H, H + n):
                row[j] = sigmoid(row[j] + bias[j])
            for j in range(2 * H, 2 * H + n):           # g
                row[j] = tanh_(row[j] + bias[j])
            for j in range(3 * H, 3 * H + n):           # o
                row[j] = sigmoid(row[j] + bias[j])
            for j in range(n):
                cn[j] = row[H + j] * cp[j] + row[j] * row[2 * H + j]
        else:                                           # i, f look at c_prev, o at c_next
            for j in range(n):
                row[j] = sigmoid(row[j] + bias[j] + peep[j] * cp[j])
            for j in range(H, H + n):
                row[j] = sigmoid(row[j] + bias[j] + peep[j] * cp[j - H])
            for j in range(2 * H, 2 * H + n):
                row[j] = tanh_(row[j] + bias[j])
            for j in range(n):
                cn[j] = row[H + j] * cp[j] + row[j] * row[2 * H + j]
            for j in range(n):
                row[3 * H + j] = sigmoid(row[3 * H + j] + bias[3 * H + j] + peep[2 * H + j] * cn[j])
        for j in range(n):                              # a loop of its own, so it vectorises
            hn[j] = row[3 * H + j] * tanh_(cn[j])


cdef inline void _gate_grads(const floating* gate, floating* da, floating* dc_b,
                             const floating* cp_b, floating dh_t, bint peeped, floating p_o,
                             Py_ssize_t j, Py_ssize_t H) noexcept nogil:
    """Column j of one row of lstm_backward_rows: on entry da[3H + j] holds tanh(c_t) and
    dc_b[j] dc_next; p_o is the output peephole, read only when peeped (a constant at each
    call, so the branch goes away when inlined)."""
    cdef floating i = gate[j], f = gate[H + j], g = gate[2 * H + j], o = gate[3 * H + j]
    cdef floating tc = da[3 * H + j], one = 1
    cdef floating da_o = dh_t * tc * o * (one - o)
    cdef floating dc_t = dc_b[j] + dh_t * o * (one - tc * tc)
    if peeped:
        dc_t = dc_t + da_o * p_o
    da[j] = dc_t * g * i * (one - i)
    da[H + j] = dc_t * cp_b[j] * f * (one - f)
    da[2 * H + j] = dc_t * i * (one - g * g)
    da[3 * H + j] = da_o
    dc_b[j] = dc_t * f


cdef inline void lstm_backward_rows(const floating* gates, const floating* peep,
                                    const floating* c_prev, const floating* c_t,
                                    const floating* dh, floating* dc, floating* dA,
                                    Py_ssize_t m, Py_ssize_t H) noexcept nogil:
    """gates (m, 4H) IN [i, f, g, o]; peep (3, H) or NULL; c_prev, c_t (m, H) IN;
    dh (m, H) IN: the whole gradient reaching o * tanh(c_t); dc (m, H) IN/OUT: dc_next from step
    t+1 on entry, the gradient reaching c_{t-1} on return; dA (m, 4H) OUT [da_i, da_f, da_g, da_o]."""
    cdef Py_ssize_t b, j
    cdef const floating* gate
    cdef floating* da
    cdef floating* dc_b
    cdef const floating* cp_b
    for b in range(m):
        gate = gates + b * 4 * H
        da = dA + b * 4 * H
        dc_b = dc + b * H
        cp_b = c_prev + b * H
        for j in range(H):
            da[3 * H + j] = tanh_(c_t[b * H + j])
        # Two copies of the loop, so that neither holds a branch on peep: GCC turns a load
        # under `if peep != NULL` into a masked vector load, which on NULL (no peepholes)
        # costs a microcode assist per vector (most of the backward's time on AMD Zen 3).
        if peep == NULL:
            for j in range(H):
                _gate_grads(gate, da, dc_b, cp_b, dh[b * H + j], False, 0, j, H)
        else:
            for j in range(H):
                _gate_grads(gate, da, dc_b, cp_b, dh[b * H + j], True, peep[2 * H + j], j,
                            H)
        if peep != NULL:
            for j in range(H):
                dc_b[j] = dc_b[j] + da[j] * peep[j] + da[H + j] * peep[H + j]
