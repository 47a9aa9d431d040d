"""The transposes of the Numba backward driver (numba_recurrent_backward.py): dA of the rows
that ran, as the left side of the weight gradients' products (numba_panels.panel_product_k).
"""
from ._jit import jit


#: the side of the square tiles of transpose_rows
TRANSPOSE_TILE = 32


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
