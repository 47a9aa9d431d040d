"""Numba forward driver for every cell: the one time loop of src/kernels/CONTRACT.md.

Mirrors fastlstm.reference.sequence.sequence_forward (without reverse, which the Python layer
turns into loop order), with the cells' pointwise math from numba_cells.py; the twin of
recurrent_forward.pyx, but the whole batch runs as one group (lengths never increase over it,
so the active rows of step s are the prefix with lengths > s) and the matrix products are BLAS
calls. Each chunk of K steps starts with the input projection of its active rows (one product
for the steps that every row runs, then step by step on the running rows); then per step the
recurrent product(s) of the active rows and the cell's fused pointwise pass. Only active rows
are read or written; nothing is allocated in the time loop.

The products go through `gemm`: BLAS ?gemm through numba_xxgemm, the very entry point that
Numba's np.dot calls (SciPy's cython_blas), but with the leading dimensions and beta that
np.dot hides, so that a product can read or write a block of columns in place (the GRU's gate
blocks, gates rows of width Gs > G: np.dot would copy such views, or refuse them as `out`) and
accumulate (the LSTM's and RNN's recurrent product goes straight into gates, as in the Cython
driver). Transposed weights are views (w[:, :].T), read transposed by BLAS: no copy. The code
refers to the symbol by name, so it caches like np.dot.

Compile time: one compiled kernel per dtype serves every cell (cell is an int; absent parts
are empty arrays); `gemm` takes 'A'-layout views only, so it is compiled once per dtype; the
step is written inside the time loop rather than as a function of its own, because Numba
re-optimises the code of every callee at each level of calls it is linked into.
"""
import numpy as np
from numba import types

try:  # what np.dot checks before its first BLAS call: SciPy's BLAS is there, of Numba's width
    from numba.np.linalg import ensure_blas as _ensure_blas
except ImportError:  # pragma: no cover  (a Numba without it: numba_xxgemm checks for SciPy)
    _ensure_blas = None

from ._jit import jit
from .numba_cells import (GRU_LINEAR_BEFORE_RESET, GRU_RESET_BEFORE, LSTM, RNN_RELU,
                          gate_width, gru_forward_rows, gru_new_rows, gru_reset_rows,
                          lstm_forward_rows, rnn_forward_rows)

# int numba_xxgemm(char kind, char transa, char transb, Py_ssize_t m, n, k, void *alpha,
#                  void *a, Py_ssize_t lda, void *b, Py_ssize_t ldb, void *beta, void *c,
#                  Py_ssize_t ldc): column-major ?gemm (numba/_lapack.c)
_xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.int8, types.int8, types.int8, types.intp, types.intp, types.intp,
    types.voidptr, types.voidptr, types.intp, types.voidptr, types.intp, types.voidptr,
    types.voidptr, types.intp))

_N, _T, _S, _D = ord("n"), ord("t"), ord("s"), ord("d")
if _ensure_blas is not None:
    _ensure_blas()


@jit
def gemm_coefficients(dtype_of):
    """(one, zero): (1,) arrays holding 1 and 0 in dtype_of's dtype, the alpha and beta that
    `gemm` reads (views of one array allocated once per kernel call, before its loops)."""
    coef = np.empty(2, dtype_of.dtype)
    coef[0] = 1
    coef[1] = 0
    return coef[0:1], coef[1:2]


@jit
def _operand(a, it):
    """(transposed, ld) of a 2-D view with unit stride along its rows (row-major: False) or
    its columns (a transposed view: True), for the column-major BLAS."""
    r, c = a.shape
    s0 = a.strides[0] // it
    s1 = a.strides[1] // it
    if c == 1 or a.strides[1] == it:
        return False, max(s0, c, 1)
    if r == 1 or a.strides[0] == it:
        return True, max(s1, r, 1)
    raise ValueError("gemm: an operand has no unit stride")


@jit
def gemm(a, b, c, alpha, beta):
    """c = alpha a @ b + beta c, one BLAS ?gemm call.

    a (m, k), b (k, n): 2-D views with unit stride along their rows or their columns (a
    transposed view: BLAS reads it transposed, no copy); c (m, n) with unit stride along its
    rows; any leading dimensions (blocks of columns of a wider buffer included). alpha, beta:
    (1,) arrays (gemm_coefficients). Row-major c = a b is column-major c^T = b^T a^T.
    To keep one compiled gemm per dtype, callers pass 'A'-layout views (x[r0:r1, :],
    w[:, :].T, ...).
    """
    m, n = c.shape
    k = a.shape[1]
    if a.shape[0] != m or b.shape[0] != k or b.shape[1] != n:
        raise ValueError("gemm: incompatible shapes")
    if m == 0 or n == 0:
        return
    if k == 0:
        if beta[0] == 0:
            for i in range(m):
                for j in range(n):
                    c[i, j] = 0
        return
    it = c.itemsize
    trans_a, lda = _operand(a, it)
    trans_b, ldb = _operand(b, it)
    trans_c, ldc = _operand(c, it)
    if trans_c:
        raise ValueError("gemm: c must have unit stride along its rows")
    status = _xxgemm(np.int8(_S if it == 4 else _D), np.int8(_T if trans_b else _N),
                     np.int8(_T if trans_a else _N), n, m, k, alpha.ctypes, b.ctypes, ldb,
                     a.ctypes, lda, beta.ctypes, c.ctypes, ldc)
    if status != 0:
        raise RuntimeError("gemm: the BLAS call failed")


@jit
def active_rows(lengths, n, t):
    """How many rows (lengths never increasing) still run at step t: n on entry is an upper
    bound (the count at an earlier step)."""
    while n > 0 and lengths[n - 1] <= t:
        n -= 1
    return n


@jit
def check_lengths(lengths, T):
    """lengths within [0, T] and never increasing (the batch is one group)."""
    for b in range(lengths.shape[0]):
        if lengths[b] < 0 or lengths[b] > T:
            raise ValueError("a length outside [0, T]")
        if b > 0 and lengths[b] > lengths[b - 1]:
            raise ValueError("lengths increase over the batch (the Numba kernels run it as "
                             "one group)")


@jit
def _forward(cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work):
    """`forward` once its buffers' dtypes and memory are checked; checks the shapes."""
    T, B, I = x.shape
    Hout = h.shape[2]
    P, H = w_hr.shape
    K, _, Gs = gates.shape
    G = gate_width(cell, H)
    W = work.shape[1]
    if (T < 1 or B < 1 or I < 1 or H < 1 or K < 1 or K > T or cell < LSTM or cell > RNN_RELU
            or Hout != (P if P > 0 else H) or (P > 0 and cell != LSTM)
            or w_ih.shape[0] != G or w_ih.shape[1] != I
            or w_hh.shape[0] != G or w_hh.shape[1] != Hout
            or bias.shape[0] != 2 or bias.shape[1] != G
            or (peep.shape[0] != 0 and (cell != LSTM or peep.shape[0] != 3))
            or peep.shape[1] != H or lengths.shape[0] != B
            or h.shape[0] != T + 1 or h.shape[1] != B
            or (cell == LSTM and ((c.shape[0] != 2 and c.shape[0] != T + 1)
                                  or c.shape[1] != B or c.shape[2] != H))
            or gates.shape[1] != B or Gs != (H if cell > GRU_RESET_BEFORE else 4 * H)
            or work.shape[0] != B
            or ((cell == GRU_LINEAR_BEFORE_RESET or cell == GRU_RESET_BEFORE) and W < 3 * H)
            or (P > 0 and W < H)):
        raise ValueError("numba recurrent forward: inconsistent buffer shapes")
    check_lengths(lengths, T)
    keep_c = c.shape[0] == T + 1
    one, zero = gemm_coefficients(x)
    x2 = x.reshape(T * B, I)
    gates2 = gates.reshape(K * B, Gs)
    w_ih_t = w_ih[:, :].T
    w_hh_t = w_hh[:, :].T
    w_hr_t = w_hr[:, :].T
    t0 = 0
    while t0 < T and lengths[0] > t0:
        k = min(K, T - t0)
        # input projection: gates[s] (active rows, [0, G)) = x[t0 + s] @ W_ih^T; one product
        # for the steps that every row runs, then step by step on the running rows
        full = min(k, max(0, lengths[B - 1] - t0))
        if full > 0:
            gemm(x2[t0 * B:(t0 + full) * B, :], w_ih_t, gates2[:full * B, :G], one, zero)
        nb = B
        for s in range(full, k):
            nb = active_rows(lengths, nb, t0 + s)
            if nb == 0:
                break
            gemm(x[t0 + s, :nb, :], w_ih_t, gates[s, :nb, :G], one, zero)
        # the steps: the recurrent product(s) of the active rows, the cell's pointwise pass
        nb = B
        for s in range(k):
            t = t0 + s
            nb = active_rows(lengths, nb, t)
            if nb == 0:
                break
            g = gates[s]
            h_prev = h[t, :nb, :]
            if cell == LSTM:
                gemm(h_prev, w_hh_t, g[:nb, :], one, one)                 # g += h W_hh^T
                c_prev = c[t] if keep_c else c[t % 2]
                c_next = c[t + 1] if keep_c else c[(t + 1) % 2]
                if P > 0:   # h = (o * tanh(c)) W_hr^T
                    lstm_forward_rows(g, bias[0], peep, c_prev, c_next, work, nb)
                    gemm(work[:nb, :H], w_hr_t, h[t + 1, :nb, :], one, zero)
                else:
                    lstm_forward_rows(g, bias[0], peep, c_prev, c_next, h[t + 1], nb)
            elif cell == GRU_LINEAR_BEFORE_RESET:
                gemm(h_prev, w_hh_t, work[:nb, :G], one, zero)            # rec = h W_hh^T
                gru_forward_rows(g, work, bias[0], bias[1], h[t], h[t + 1], nb)
            elif cell == GRU_RESET_BEFORE:
                gemm(h_prev, w_hh_t[:, :2 * H], work[:nb, :2 * H], one, zero)  # h W_h{r,z}^T
                gru_reset_rows(g, work, bias[0], h[t], nb)
                # rec[:, 2H:3H] = m (= r * h, gates slot 3) @ W_hn^T
                gemm(g[:nb, 3 * H:4 * H], w_hh_t[:, 2 * H:3 * H], work[:nb, 2 * H:3 * H], one,
                     zero)
                gru_new_rows(g, work, bias[0], h[t], h[t + 1], nb)
            else:
                gemm(h_prev, w_hh_t, g[:nb, :], one, one)                 # g += h W_hh^T
                rnn_forward_rows(g, bias[0], h[t + 1], cell == RNN_RELU, nb)
        t0 += k


def check_buffers(name, arrays, outputs, lengths):
    """The buffers' dtypes and memory, which the compiled kernels rely on (shapes are checked
    inside them): one float dtype (float32 or float64), C-contiguous, outputs writeable;
    lengths int64. Raises TypeError or ValueError naming the kernel."""
    dtype = getattr(arrays[0], "dtype", None)
    if dtype != np.float32 and dtype != np.float64:
        raise TypeError(f"{name}: float32 or float64 buffers expected, got {dtype}")
    for a in arrays:
        if not isinstance(a, np.ndarray) or a.dtype != dtype:
            raise TypeError(f"{name}: every buffer must be a {dtype} ndarray")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: every buffer must be C-contiguous")
    for a in outputs:
        if not a.flags.writeable:
            raise ValueError(f"{name}: an output buffer is read-only")
    if (not isinstance(lengths, np.ndarray) or lengths.dtype != np.int64
            or not lengths.flags.c_contiguous):
        raise TypeError(f"{name}: lengths must be a C-contiguous int64 array")


def forward(cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work):
    """Run `cell` (0 LSTM, 1 GRU linear before reset, 2 GRU reset before, 3 RNN tanh,
    4 RNN relu) over T >= 1 steps of B >= 1 rows; buffers as in src/kernels/CONTRACT.md
    (without n_threads: the batch is one group, so lengths never increase over it).

    x (T, B, I), w_ih (G, I), w_hh (G, Hout), w_hr (P, H) or (0, H), bias (2, G),
    peep (3, H) or (0, H), lengths (B,) int64  IN;
    h (T+1, B, Hout), c (T+1, B, H) or (2, B, H) (LSTM; else (0, B, H))  IN/OUT;
    gates (K, B, Gs)  OUT (K = T) / scratch (K < T); work (B, W) scratch (W >= 3H for the
    GRU, >= H for a projection LSTM).
    """
    check_buffers("numba recurrent forward", (x, w_ih, w_hh, w_hr, bias, peep, h, c, gates, work),
                  (h, c, gates, work), lengths)
    _forward(int(cell), x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work)
