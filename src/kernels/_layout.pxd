# Cell codes (src/kernels/CONTRACT.md) and the scratch each Cython driver carves its packed
# matrices from, for a cell and its sizes. The drivers and _info.pyx (which tells the Python
# layer the lengths) share these definitions.
from cython cimport floating
from libc.stdint cimport int64_t

from ._gemm cimport copy_length, packed_length, panel_width

cdef enum:
    LSTM = 0
    GRU_LINEAR_BEFORE_RESET = 1
    GRU_RESET_BEFORE = 2
    RNN_TANH = 3
    RNN_RELU = 4


cdef inline Py_ssize_t gate_width(int cell, Py_ssize_t H) noexcept nogil:
    """G: rows of w_ih and w_hh."""
    if cell == LSTM:
        return 4 * H
    if cell == GRU_LINEAR_BEFORE_RESET or cell == GRU_RESET_BEFORE:
        return 3 * H
    return H


cdef inline Py_ssize_t padded_columns(floating* dtype_of, Py_ssize_t n) noexcept nogil:
    """n rounded up to whole panels."""
    cdef Py_ssize_t nr = panel_width(dtype_of)
    return (n + nr - 1) // nr * nr


cdef enum:
    PACKED_FOR_ROWS = 1       # w_hh^T in panels of G columns (the groups of rows)
    PACKED_FOR_COLUMNS = 2    # block by block (the column split)


cdef inline Py_ssize_t gate_blocks(int cell) noexcept nogil:
    """Blocks of H gate rows in w_hh: 4 (LSTM), 3 (GRU), 1 (RNN)."""
    if cell == LSTM:
        return 4
    if cell == GRU_LINEAR_BEFORE_RESET or cell == GRU_RESET_BEFORE:
        return 3
    return 1


cdef inline Py_ssize_t recurrent_packed_length(floating* dtype_of, int cell, Py_ssize_t Hout,
                                               Py_ssize_t H) noexcept nogil:
    """Values of the packed w_hh^T (Hout, G): enough for the plain packing (G columns in
    panels) and for the column split's, where each block of H gate columns starts a panel of
    its own (so that a slice of hidden units is a run of whole panels in every block)."""
    return gate_blocks(cell) * padded_columns(dtype_of, H) * Hout


# The column split (recurrent_forward.pyx, forward's `columns`; the backward walk's too,
# recurrent_backward.pyx, backward's `columns`): the rule that picks it over the groups of
# batch rows. The split pays a barrier per step and one product call per gate
# block; it saves each thread the weights of the other slices (w_hh is read whole at every
# step by every group of rows, and once it outgrows a core's cache that read sets the pace)
# and gives B < n_threads rows work for every thread. So it is taken when each gate block's
# recurrent product (H x Hout) has at least COLUMN_MIN_MACS multiply-adds per row and step,
# and the rows per thread are at most max(1, bytes of w_hh / COLUMN_ROW_BYTES). Fitted on an
# Intel Xeon (AVX-512, 2 MiB L2 per core, 2 threads) over LSTM, both GRUs and the tanh RNN at
# H = 64 ... 512, B = 1 ... 16 (bench/column_split.py; bench/RESULTS.md, "column split").
cdef enum:
    COLUMN_MIN_MACS = 32768
    COLUMN_ROW_BYTES = 524288


cdef inline Py_ssize_t unit_chunks(floating* dtype_of, Py_ssize_t H) noexcept nogil:
    """The column split deals the hidden units out in chunks of one panel width."""
    cdef Py_ssize_t nr = panel_width(dtype_of)
    return (H + nr - 1) // nr


cdef inline int column_threads(floating* dtype_of, int cell, Py_ssize_t B, Py_ssize_t Hout,
                               Py_ssize_t H, int n_threads) noexcept nogil:
    """The team the column split would use for B rows on n_threads threads (at most one per
    chunk of units), or 0 when the rule above keeps the groups of rows."""
    cdef Py_ssize_t team = min(<Py_ssize_t>n_threads, unit_chunks(dtype_of, H))
    cdef Py_ssize_t w_hh_bytes = gate_width(cell, H) * Hout * <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t rows_per_thread = max(1, w_hh_bytes // COLUMN_ROW_BYTES)
    if team < 2 or H * Hout < COLUMN_MIN_MACS or B > rows_per_thread * n_threads:
        return 0
    return <int>team


cdef inline Py_ssize_t forward_scratch(floating* dtype_of, int cell, Py_ssize_t I,
                                       Py_ssize_t Hout, Py_ssize_t H,
                                       Py_ssize_t P) noexcept nogil:
    """Values of scratch the forward driver needs: w_ih^T (I, G) packed, w_hh^T packed
    (recurrent_packed_length; the reset-before GRU: its r, z block and its n block (Hout, H)
    apart), w_hr^T (H, P) packed, 64 bytes spare, and last the layout mark: which packing of
    w_hh the scratch holds (PACKED_FOR_ROWS or PACKED_FOR_COLUMNS), so that a call that
    reuses it (pack_weights=False) can check that it matches."""
    cdef Py_ssize_t G = gate_width(cell, H)
    return (packed_length(dtype_of, I, G) + packed_length(dtype_of, Hout, 2 * H)
            + recurrent_packed_length(dtype_of, cell, Hout, H) + packed_length(dtype_of, H, P)
            + 64 // sizeof(floating) + 1)


cdef inline Py_ssize_t xh_columns(floating* dtype_of, int cell, Py_ssize_t I,
                                  Py_ssize_t Hout, Py_ssize_t H) noexcept nogil:
    """Columns of the packed [x | h_prev | m] of the backward's weight-gradient product: x's
    padded to whole panels, h's (padded too), and for the reset-before GRU m = r * h_prev."""
    cdef Py_ssize_t n = padded_columns(dtype_of, I) + padded_columns(dtype_of, Hout)
    if cell == GRU_RESET_BEFORE:
        n += H
    return n


# The backward's column split (recurrent_backward.pyx, column_walk) keeps, per thread, its
# units' share of each step in buffers of its own: for every one of its n units and each of
# the B rows, 4 gate values and 4 gate gradients (the cell's pointwise backward works on whole
# blocks of H units, so it is given the thread's units as blocks of n), and c_{t-1}, c_t (or
# h_{t-1} and the GRU's dm), dh and dc; and 3 peephole weights per unit.
cdef enum:
    COLUMN_ROW_VALUES = 12    # per unit and row
    COLUMN_UNIT_VALUES = 3    # per unit


cdef inline Py_ssize_t column_backward_scratch(floating* dtype_of, Py_ssize_t B,
                                               Py_ssize_t H) noexcept nogil:
    """Values of the backward column split's per-thread buffers for B rows and H units (all
    threads together: each thread's n units take n * (COLUMN_ROW_VALUES * B +
    COLUMN_UNIT_VALUES) values), and 64 bytes to put them on a 64-byte boundary."""
    return H * (COLUMN_ROW_VALUES * B + COLUMN_UNIT_VALUES) + 64 // sizeof(floating)


cdef inline Py_ssize_t backward_scratch(floating* dtype_of, int cell, Py_ssize_t TB,
                                        Py_ssize_t I, Py_ssize_t Hout, Py_ssize_t H,
                                        Py_ssize_t P, Py_ssize_t threads,
                                        Py_ssize_t column_rows) noexcept nogil:
    """Values of scratch the backward driver needs with `threads` product threads: w_ih (G, I)
    packed, w_hh (G, Hout) packed (and its n block apart for the GRU), w_hr (P, H) packed,
    [x | h_prev | m] (TB rows) packed, [dw_ih | dw_hh] (G, Ip + Hout), a gemm_sums work buffer
    per thread, the map of the TB rows that hold data (TB int64 values, on an 8-byte
    boundary), 64 bytes spare, and with column_rows = B > 0 (a walk that may take the column
    split) column_backward_scratch for B rows."""
    cdef Py_ssize_t G = gate_width(cell, H)
    return (packed_length(dtype_of, G, I) + packed_length(dtype_of, G, Hout)
            + packed_length(dtype_of, H, Hout) + packed_length(dtype_of, P, H)
            + packed_length(dtype_of, TB, xh_columns(dtype_of, cell, I, Hout, H))
            + G * (padded_columns(dtype_of, I) + Hout) + threads * copy_length(dtype_of)
            + (TB * 8 + 8) // sizeof(floating) + 64 // sizeof(floating)
            + (column_backward_scratch(dtype_of, column_rows, H) if column_rows > 0 else 0))


cdef inline const char* lengths_problem(const int64_t[::1] lengths, Py_ssize_t T,
                                        Py_ssize_t n_groups) noexcept:
    """NULL when every length is in [0, T] and the lengths never increase inside each of the
    n_groups groups of rows (group g: rows g*B//n_groups to (g+1)*B//n_groups), as
    CONTRACT.md asks; else what is wrong, for the driver's ValueError."""
    if lengths.shape[0] == 0:
        return NULL
    return lengths_problem_at(&lengths[0], lengths.shape[0], T, n_groups)


cdef inline const char* lengths_problem_at(const int64_t* lengths, Py_ssize_t B, Py_ssize_t T,
                                           Py_ssize_t n_groups) noexcept:
    """lengths_problem for the B lengths at `lengths`."""
    cdef Py_ssize_t g, r
    for r in range(B):
        if lengths[r] < 0 or lengths[r] > T:
            return "a length outside [0, T]"
    for g in range(n_groups):
        for r in range(g * B // n_groups + 1, (g + 1) * B // n_groups):
            if lengths[r] > lengths[r - 1]:
                return "lengths increase inside a group of rows"
    return NULL
