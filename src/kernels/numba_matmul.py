"""The matrix products of the Numba backward driver, written in Numba: the twin of _gemm.h's
gemm (numba_recurrent_backward.py; the forward's are numba_panels.py's, on packed weights).

    out[:nb, :N] = a[:nb, :K] @ w[:N, :K]^T        (accumulate: out[:nb, :N] += ...)

w is read in its natural layout, rows of K contiguous values: the backward's w_hh^T, w_hr^T,
w_ih^T as copies (transposed) and the transposes of dA, x, h_prev it forms after the walk.
Each output is a dot product over K, vectorised by LLVM (the loop may be reassociated:
'reassoc' and 'contract' only, so NaN and inf still propagate); a tile of 3 rows of `a` by 4 rows of `w` reads 7 vectors for 12 multiply-adds (the last one or
two rows: tiles of 1 x 4 and 2 x 4). The rows of w are taken in blocks of at most BLOCK_BYTES,
so that a block stays in the core's L2 while every row of `a` passes over it.

Why not BLAS: for a few rows, ?gemm packs all of w at every call (OpenBLAS's sgemm_incopy was
65% of an LSTM's time at B=1, H=512), and its worker threads keep spinning after each call,
which starved the Numba team (numba_recurrent_backward.py). The product of a block does not
depend on how many blocks there are, so results do not depend on the block size either.
"""
import numpy as np

from ._jit import jit, jit_reassociating
from .numba_cells import row_slice, zero_of

#: the most bytes of w one block of rows holds (L2 of every supported core is >= 512 KiB)
BLOCK_BYTES = 1 << 17
#: the tiles' width (4 columns): a product that starts at a multiple of it puts every output
#: in the same tile position, so that how the columns are shared out (blocks of rows of w, a
#: team's slices of units) does not change the results
TILE_ALIGN = 4
#: products with K above this are summed in slices of K_SLICE values (rows_product)
K_SLICE_ABOVE = 2048
K_SLICE = 512


@jit_reassociating
def _store(out, b, j, s, accumulate):
    """out[b, j] = s, or += s."""
    if accumulate:
        out[b, j] += s
    else:
        out[b, j] = s


@jit_reassociating
def _three_rows(a, ac, w, wc, out, oc, K, b, j0, j1, accumulate):
    """Rows b .. b+2 and columns j0 <= j < j1 of the product (rows_product): tiles of 3 x 4
    outputs (7 vector loads for 12 multiply-adds: the fastest tile measured, 3 x 3 and 2 x 4
    were 5-15% slower, 4 x 2 and 2 x 2 more), LLVM vectorising each dot product."""
    a0 = row_slice(a, b, ac, K)
    a1 = row_slice(a, b + 1, ac, K)
    a2 = row_slice(a, b + 2, ac, K)
    j = j0
    while j + 4 <= j1:
        w0, w1, w2, w3 = (row_slice(w, j, wc, K), row_slice(w, j + 1, wc, K),
                          row_slice(w, j + 2, wc, K), row_slice(w, j + 3, wc, K))
        s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero_of(a0[0])
        s20 = s21 = s22 = s23 = s00
        for k in range(K):
            x0 = a0[k]
            x1 = a1[k]
            x2 = a2[k]
            v0 = w0[k]
            v1 = w1[k]
            v2 = w2[k]
            v3 = w3[k]
            s00 += x0 * v0
            s01 += x0 * v1
            s02 += x0 * v2
            s03 += x0 * v3
            s10 += x1 * v0
            s11 += x1 * v1
            s12 += x1 * v2
            s13 += x1 * v3
            s20 += x2 * v0
            s21 += x2 * v1
            s22 += x2 * v2
            s23 += x2 * v3
        _store(out, b, oc + j, s00, accumulate)
        _store(out, b, oc + j + 1, s01, accumulate)
        _store(out, b, oc + j + 2, s02, accumulate)
        _store(out, b, oc + j + 3, s03, accumulate)
        _store(out, b + 1, oc + j, s10, accumulate)
        _store(out, b + 1, oc + j + 1, s11, accumulate)
        _store(out, b + 1, oc + j + 2, s12, accumulate)
        _store(out, b + 1, oc + j + 3, s13, accumulate)
        _store(out, b + 2, oc + j, s20, accumulate)
        _store(out, b + 2, oc + j + 1, s21, accumulate)
        _store(out, b + 2, oc + j + 2, s22, accumulate)
        _store(out, b + 2, oc + j + 3, s23, accumulate)
        j += 4
    while j < j1:
        w0 = row_slice(w, j, wc, K)
        s0 = s1 = s2 = zero_of(a0[0])
        for k in range(K):
            v = w0[k]
            s0 += a0[k] * v
            s1 += a1[k] * v
            s2 += a2[k] * v
        _store(out, b, oc + j, s0, accumulate)
        _store(out, b + 1, oc + j, s1, accumulate)
        _store(out, b + 2, oc + j, s2, accumulate)
        j += 1


@jit_reassociating
def _two_rows(a, ac, w, wc, out, oc, K, b, j0, j1, accumulate):
    """Rows b, b+1 and columns j0 <= j < j1 of the product (rows_product): tiles of 2 x 4
    outputs."""
    a0 = row_slice(a, b, ac, K)
    a1 = row_slice(a, b + 1, ac, K)
    j = j0
    while j + 4 <= j1:
        w0, w1, w2, w3 = (row_slice(w, j, wc, K), row_slice(w, j + 1, wc, K),
                          row_slice(w, j + 2, wc, K), row_slice(w, j + 3, wc, K))
        s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero_of(a0[0])
        for k in range(K):
            x0 = a0[k]
            x1 = a1[k]
            s00 += x0 * w0[k]
            s01 += x0 * w1[k]
            s02 += x0 * w2[k]
            s03 += x0 * w3[k]
            s10 += x1 * w0[k]
            s11 += x1 * w1[k]
            s12 += x1 * w2[k]
            s13 += x1 * w3[k]
        _store(out, b, oc + j, s00, accumulate)
        _store(out, b, oc + j + 1, s01, accumulate)
        _store(out, b, oc + j + 2, s02, accumulate)
        _store(out, b, oc + j + 3, s03, accumulate)
        _store(out, b + 1, oc + j, s10, accumulate)
        _store(out, b + 1, oc + j + 1, s11, accumulate)
        _store(out, b + 1, oc + j + 2, s12, accumulate)
        _store(out, b + 1, oc + j + 3, s13, accumulate)
        j += 4
    while j < j1:
        w0 = row_slice(w, j, wc, K)
        s0 = s1 = zero_of(a0[0])
        for k in range(K):
            s0 += a0[k] * w0[k]
            s1 += a1[k] * w0[k]
        _store(out, b, oc + j, s0, accumulate)
        _store(out, b + 1, oc + j, s1, accumulate)
        j += 1


@jit_reassociating
def _one_row(a, ac, w, wc, out, oc, K, b, j0, j1, accumulate):
    """Row b and columns j0 <= j < j1 of the product (rows_product): tiles of 1 x 4 outputs."""
    a0 = row_slice(a, b, ac, K)
    j = j0
    while j + 4 <= j1:
        w0, w1, w2, w3 = (row_slice(w, j, wc, K), row_slice(w, j + 1, wc, K),
                          row_slice(w, j + 2, wc, K), row_slice(w, j + 3, wc, K))
        s0 = s1 = s2 = s3 = zero_of(a0[0])
        for k in range(K):
            x0 = a0[k]
            s0 += x0 * w0[k]
            s1 += x0 * w1[k]
            s2 += x0 * w2[k]
            s3 += x0 * w3[k]
        _store(out, b, oc + j, s0, accumulate)
        _store(out, b, oc + j + 1, s1, accumulate)
        _store(out, b, oc + j + 2, s2, accumulate)
        _store(out, b, oc + j + 3, s3, accumulate)
        j += 4
    while j < j1:
        w0 = row_slice(w, j, wc, K)
        s0 = zero_of(a0[0])
        for k in range(K):
            s0 += a0[k] * w0[k]
        _store(out, b, oc + j, s0, accumulate)
        j += 1


@jit_reassociating
def rows_product(a, ac, w, wc, out, oc, nb, K, accumulate):
    """out[:nb, oc:oc+N] (+)= a[:nb, ac:ac+K] @ w[:N, wc:wc+K]^T, N = w.shape[0].

    a, w, out: C-contiguous 2-D arrays (row blocks of a C array, such as w_hh[2H:3H], are
    C-contiguous too); the blocks of columns are given by their first column, so that every
    row is a contiguous vector to LLVM (a view of columns would have an unknown stride). The
    output block must not overlap the operands' blocks.
    """
    # the callers pass constants (0, True, ...), which Numba types as literals: re-typed here,
    # so that the tiles compile once per dtype rather than once per combination of constants
    ac, wc, oc, nb, K = np.intp(ac), np.intp(wc), np.intp(oc), np.intp(nb), np.intp(K)
    accumulate = accumulate != 0
    N = w.shape[0]
    if (ac < 0 or wc < 0 or oc < 0 or K < 0 or ac + K > a.shape[1] or wc + K > w.shape[1]
            or oc + N > out.shape[1] or a.shape[0] < nb or out.shape[0] < nb):
        raise ValueError("rows_product: incompatible shapes")
    if nb <= 0 or N == 0:
        return
    # a long K (the backward's weight gradients, K = T*B) is summed in slices of K_SLICE,
    # each added to the outputs: a block of w's rows is then a slice of them, which stays in
    # the L2 while the rows of a pass over it
    kc = K if K <= K_SLICE_ABOVE else np.intp(K_SLICE)
    rows = BLOCK_BYTES // max(1, kc * w.itemsize)
    rows = max(TILE_ALIGN, rows - rows % TILE_ALIGN)
    for j0 in range(0, N, rows):
        j1 = min(j0 + rows, N)
        for k0 in range(0, max(K, 1), max(kc, 1)):
            kn = min(kc, K - k0)
            acc = accumulate or k0 > 0
            b = ac - ac                 # 0, typed as a variable (not the literal 0)
            while b + 3 <= nb:
                _three_rows(a, ac + k0, w, wc + k0, out, oc, kn, b, j0, j1, acc)
                b += 3
            if nb - b == 2:
                _two_rows(a, ac + k0, w, wc + k0, out, oc, kn, b, j0, j1, acc)
            elif nb - b == 1:
                _one_row(a, ac + k0, w, wc + k0, out, oc, kn, b, j0, j1, acc)


#: the side of the square tiles of transposed()
TRANSPOSE_TILE = 32
#: transposed() leaves arrays of fewer values than this to NumPy
TRANSPOSE_NUMPY_BELOW = 1 << 16


@jit
def transpose_rows(a, rows, v0, v1, c0, n, out):
    """out[j, v] = a[rows[v], c0 + j] for v0 <= v < v1, j < n (a (R, >= c0+n), rows (V,) of
    row indices into a, increasing, out (n, >= V)), in tiles of TRANSPOSE_TILE x
    TRANSPOSE_TILE: a tile's reads and writes stay in a few cache lines (element by element,
    each write fell in another row of out: 3.5x slower). Where rows are v itself (every row
    of a) the index is not read."""
    dense = rows.shape[0] == 0 or rows[rows.shape[0] - 1] == rows.shape[0] - 1
    for vb in range(v0, v1, TRANSPOSE_TILE):
        ve = min(vb + TRANSPOSE_TILE, v1)
        for jb in range(0, n, TRANSPOSE_TILE):
            je = min(jb + TRANSPOSE_TILE, n)
            if dense:
                for j in range(jb, je):
                    for v in range(vb, ve):
                        out[j, v] = a[v, c0 + j]
            else:
                for j in range(jb, je):
                    for v in range(vb, ve):
                        out[j, v] = a[rows[v], c0 + j]


def transposed(w):
    """w^T (w a 2-D array) as a C-contiguous copy: the layout rows_product reads for a product
    by w itself (the backward's dA @ w_hh). Made in tiles (transpose_rows): NumPy's copy of
    w.T took 2.7 ms for a 2048 x 512 float32 w_hh, the tiles 0.84. Small ones (fewer than
    TRANSPOSE_NUMPY_BELOW values) are NumPy's copy, which costs less to call."""
    if w.size < TRANSPOSE_NUMPY_BELOW:
        return np.ascontiguousarray(w.T)
    R, C = w.shape
    out = np.empty((C, R), dtype=w.dtype)
    transpose_rows(np.ascontiguousarray(w), np.arange(R, dtype=np.intp), 0, R, 0, C, out)
    return out
