"""The Cython kernels' matrix-product micro-kernel (src/kernels/_gemm.h), alone, through
_info.matmul: the packing of b into panels, then the blocks, as every product of the drivers
runs.

- a @ b (and c + a @ b) against NumPy in float64, for every block shape: 1 ... 13 rows (each
  row count of a block, the 7-9 rows cut in two, the one- and two-row wide blocks over 2, 3
  and 4 whole panels) and column
  counts around each vector and panel edge (a panel whose last vectors hold no columns
  computes only the vectors that do; a partial vector works on a copy), k short and longer
  than one pass.
- Each element is one running sum over k in order: the leading columns (and rows) of a
  product do not change, bit for bit, with the columns (rows) around them.
The test names say "cython", so CI's per-level runs (-k cython) run them at every level.
"""
import numpy as np
import pytest

from fastlstm import _isa

from conftest import require_backend


@pytest.fixture(scope="module")
def info():
    require_backend("cython")
    return _isa.kernel_module("_info")


def _column_counts(lanes, nr):
    counts = {1, 2, lanes - 1, lanes, lanes + 1, 2 * lanes, 3 * lanes - 1, nr - 1, nr, nr + 1,
              nr + lanes, nr + 2 * lanes + 3, 2 * nr, 2 * nr + 3, 3 * nr, 4 * nr, 4 * nr + 1}
    return sorted(n for n in counts if n >= 1)


def _product(info, a, b, c0=None):
    c = np.zeros((a.shape[0], b.shape[1]), a.dtype) if c0 is None else c0.copy()
    info.matmul(a, b, c, c0 is not None)
    return c


@pytest.mark.parametrize("k", [1, 7, 400])
def test_cython_microkernel_every_block_shape(info, dtype, k):
    itemsize = np.dtype(dtype).itemsize
    lanes, nr = info.vector_bytes() // itemsize, info.panel_width(itemsize)
    rng = np.random.default_rng([k, itemsize])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    b_all = rng.standard_normal((k, 4 * nr + 1)).astype(dtype)
    a_all = rng.standard_normal((13, k)).astype(dtype)
    full = _product(info, a_all, b_all)
    for m in range(1, 14):
        a = np.ascontiguousarray(a_all[:m])
        for n in _column_counts(lanes, nr):
            b = np.ascontiguousarray(b_all[:, :n])
            c = _product(info, a, b)
            want = a.astype(np.float64) @ b.astype(np.float64)
            scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
            assert np.all(np.abs(c - want) <= tol * scale + tol), (m, n, k)
            # the same running sums as inside the widest, tallest product
            assert np.array_equal(c, full[:m, :n]), f"m={m}, n={n}, k={k}"
            c0 = rng.standard_normal((m, n)).astype(dtype)
            c1 = _product(info, a, b, c0)
            assert np.all(np.abs(c1 - (c0 + want)) <= tol * (scale + np.abs(c0)) + tol)


def test_cython_microkernel_refusals(info):
    a, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"matmul: a \(m, k\), b \(k, n\), c \(m, n\) expected"):
        info.matmul(a, b, np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="matmul"):
        info.matmul(a, np.ones((4, 4), np.float32), np.zeros((2, 4), np.float32))
    c = np.full((2, 4), 7, np.float32)
    info.matmul(np.ones((2, 0), np.float32), np.ones((0, 4), np.float32), c)   # k = 0
    assert not c.any()
