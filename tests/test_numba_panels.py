"""The Numba products on panels (src/kernels/numba_panels.py) against NumPy in float64:
pack_panels' layout, panel_product for every tile (rows 1 .. 13 cover the 6-row tiles of
AVX-512 hosts, the 3-, 2- and 1-row tiles that every host runs, and the one-row tiles of two
chains), blocks whose last panel is partial (masked loads and stores), odd and even depths,
accumulate or not, offsets into larger arrays, both dtypes; nothing outside the output block
is written; NaN and inf propagate; every output is the same sum in whichever tile it falls;
bad shapes raise; the forward driver refuses panels that are not its weights'; the
backward's packings (pack_transposed, pack_rows) and its deep products (from a row k0 of the
panels, in slices above K_SLICE_ABOVE); and the 3-row tiles of hosts without AVX-512, with
Numba's code made for AVX2 and for SSE4.2 in a child process."""
import numpy as np
import pytest

from fastlstm._kernels import numba_panels as npn
from fastlstm._kernels import numba_recurrent_forward as nb_fwd

TOL = {np.float32: 2e-5, np.float64: 1e-12}


def test_pack_panels_layout():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3 * 21, 5))        # 3 blocks of H = 21: panels of 16 and 5
    p = npn.pack_panels(w, 3)
    assert p.shape == (3, 2, 5, npn.PANEL) and p.flags.c_contiguous
    for q in range(3):
        for u in range(21):
            np.testing.assert_array_equal(p[q, u // 16, :, u % 16], w[q * 21 + u])
    np.testing.assert_array_equal(p[:, 1, :, 5:], 0.0)       # the padding


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_panels_start_on_a_vector_boundary(dtype):
    """Every panel array starts on a VECTOR_BYTES boundary, whatever NumPy's allocator gives
    (several sizes, so that some land off a boundary), and holds the same numbers as the
    plain definition."""
    rng = np.random.default_rng(1)
    for G, K, blocks in ((3 * 64, 64, 3), (4 * 17, 3, 4), (5, 9, 1), (48, 1, 1)):
        w = rng.standard_normal((G, K)).astype(dtype)
        for panels in (npn.pack_panels(w, blocks), npn.pack_transposed(w.T.copy()),
                       npn.aligned_empty((blocks, 2, K, npn.PANEL), dtype)):
            assert panels.ctypes.data % npn.VECTOR_BYTES == 0 and panels.flags.c_contiguous
            assert panels.dtype == dtype
        H = G // blocks
        n = -(-H // npn.PANEL)
        padded = np.zeros((blocks, n * npn.PANEL, K), dtype)
        padded[:, :H] = w.reshape(blocks, H, K)
        want = padded.reshape(blocks, n, npn.PANEL, K).transpose(0, 1, 3, 2)
        np.testing.assert_array_equal(npn.pack_panels(w, blocks), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nb", [1, 2, 3, 4, 5, 6, 7, 8, 12, 13])
def test_panel_product_against_numpy(dtype, nb):
    rng = np.random.default_rng(nb)
    for K in (1, 2, 7, 64):
        for H, p0 in ((5, 0), (16, 0), (33, 0), (64, 0), (70, 1), (100, 2)):
            w = rng.standard_normal((2 * H, K)).astype(dtype)
            panels = npn.pack_panels(w, 2)
            a = rng.standard_normal((nb + 1, K + 3)).astype(dtype)
            width = H - p0 * npn.PANEL
            for q in (0, 1):
                for accumulate in (False, True):
                    out = rng.standard_normal((nb + 2, width + 9)).astype(dtype)
                    before = out.copy()
                    npn.panel_product(a, 2, panels, q, p0, width, out, 4, nb, accumulate)
                    cols = slice(q * H + p0 * npn.PANEL, (q + 1) * H)
                    want = a[:nb, 2:2 + K].astype(np.float64) @ w[cols].T.astype(np.float64)
                    if accumulate:
                        want += before[:nb, 4:4 + width]
                    np.testing.assert_allclose(out[:nb, 4:4 + width], want,
                                               rtol=TOL[dtype], atol=TOL[dtype] * 10)
                    rest = out.copy()
                    rest[:nb, 4:4 + width] = before[:nb, 4:4 + width]
                    np.testing.assert_array_equal(rest, before)   # nothing else written


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_do_not_depend_on_the_tile(dtype):
    """Each output is one chain of multiply-adds over k in order (two for one row: even and
    odd k), whatever its tile: row b of a 13-row product equals the same row in a product of
    other rows, a product of one row equals itself with fewer panels, and a column equals
    itself computed with fewer panels."""
    rng = np.random.default_rng(1)
    K, H = 37, 80
    w = rng.standard_normal((H, K)).astype(dtype)
    panels = npn.pack_panels(w, 1)
    a = rng.standard_normal((13, K)).astype(dtype)
    full = np.zeros((13, H), dtype)
    npn.panel_product(a, 0, panels, 0, 0, H, full, 0, 13, False)
    for b0, nb in ((0, 2), (3, 3), (5, 6), (7, 4)):
        part = np.zeros((nb, H), dtype)
        npn.panel_product(a[b0:b0 + nb], 0, panels, 0, 0, H, part, 0, nb, False)
        np.testing.assert_array_equal(part, full[b0:b0 + nb])
    one = np.zeros((1, H), dtype)
    npn.panel_product(a[4:5], 0, panels, 0, 0, H, one, 0, 1, False)
    np.testing.assert_allclose(one, full[4:5], rtol=TOL[dtype], atol=TOL[dtype] * 10)
    for p0 in (1, 2, 4):
        part = np.zeros((13, H - p0 * npn.PANEL), dtype)
        npn.panel_product(a, 0, panels, 0, p0, H - p0 * npn.PANEL, part, 0, 13, False)
        np.testing.assert_array_equal(part, full[:, p0 * npn.PANEL:])
        part = np.zeros((1, H - p0 * npn.PANEL), dtype)
        npn.panel_product(a[4:5], 0, panels, 0, p0, H - p0 * npn.PANEL, part, 0, 1, False)
        np.testing.assert_array_equal(part, one[:, p0 * npn.PANEL:])


def test_nan_and_inf_propagate():
    w = np.ones((32, 8), np.float32)
    w[3, 2] = np.nan
    w[20, 5] = np.inf
    panels = npn.pack_panels(w, 1)
    for nb in (1, 3, 6):
        out = np.zeros((nb, 32), np.float32)
        npn.panel_product(np.ones((nb, 8), np.float32), 0, panels, 0, 0, 32, out, 0, nb, False)
        assert np.isnan(out[:, 3]).all() and np.isposinf(out[:, 20]).all()
        assert (np.delete(out, [3, 20], axis=1) == 8).all()


def test_bad_shapes_raise():
    panels = npn.pack_panels(np.ones((32, 4), np.float32), 2)   # 2 blocks of 16
    a, out = np.ones((2, 4), np.float32), np.zeros((2, 16), np.float32)
    for args in ((a, 0, panels, 2, 0, 16, out, 0, 2, False),     # no block 2
                 (a, 0, panels, 0, 0, 17, out, 0, 2, False),     # past the block
                 (a, 1, panels, 0, 0, 16, out, 0, 2, False),     # a too narrow
                 (a, 0, panels, 0, 0, 16, out, 1, 2, False),     # out too narrow
                 (a, 0, panels, 0, 0, 16, out, 0, 3, False)):    # too few rows
        with pytest.raises(ValueError, match="panel_product"):
            npn.panel_product(*args)


def test_forward_refuses_panels_of_other_weights():
    rng = np.random.default_rng(2)
    T, B, I, H = 3, 2, 4, 5
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w_ih = rng.standard_normal((4 * H, I)).astype(np.float32)
    w_hh = rng.standard_normal((4 * H, H)).astype(np.float32)
    w_hr, peep = np.zeros((0, H), np.float32), np.zeros((0, H), np.float32)
    bias = np.zeros((2, 4 * H), np.float32)
    lengths = np.full(B, T, np.int64)

    def buffers():
        return (np.zeros((T + 1, B, H), np.float32), np.zeros((T + 1, B, H), np.float32),
                np.zeros((T, B, 4 * H), np.float32), np.zeros((B, 0), np.float32))

    good = nb_fwd.layer_panels(0, w_ih, w_hh, w_hr)
    h, c, gates, work = buffers()
    nb_fwd.forward(0, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work,
                   panels=good)
    h2, c2, gates2, work2 = buffers()
    nb_fwd.forward(0, x, w_ih, w_hh, w_hr, bias, peep, lengths, h2, c2, gates2, work2)
    np.testing.assert_array_equal(h, h2)
    arrays = good.arrays
    h3, c3, gates3, work3 = buffers()
    nb_fwd.forward(0, x, w_ih, w_hh, w_hr, bias, peep, lengths, h3, c3, gates3, work3,
                   panels=arrays)                               # the arrays, checked
    np.testing.assert_array_equal(h, h3)
    bad = ((arrays[1], arrays[0], arrays[2]), (arrays[0].astype(np.float64), *arrays[1:]),
           arrays[:2], nb_fwd.layer_panels(0, w_ih[:, :3].copy(), w_hh, w_hr))  # others'
    for panels in bad:
        with pytest.raises(ValueError, match="panels"):
            nb_fwd.forward(0, x, w_ih, w_hh, w_hr, bias, peep, lengths, *buffers(),
                           panels=panels)


def test_pack_transposed_and_pack_rows():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((7, 21)).astype(np.float32)
    np.testing.assert_array_equal(npn.pack_transposed(w), npn.pack_panels(w.T, 1))
    src = rng.standard_normal((9, 30)).astype(np.float32)
    for rows in (np.arange(9, dtype=np.intp), np.array([0, 2, 3, 7], np.intp)):
        panels = np.full((1, 2, rows.size + 1, npn.PANEL), np.nan, np.float32)
        npn.pack_rows(src, rows, 0, rows.size, 4, 20, panels)
        want = np.zeros((rows.size, 32), np.float32)
        want[:, :20] = src[rows, 4:24]
        np.testing.assert_array_equal(panels[0, :, :rows.size].transpose(1, 0, 2)
                                      .reshape(rows.size, 32), want)
        assert np.isnan(panels[0, :, rows.size]).all()          # past v1: untouched


@pytest.mark.parametrize("nb", [1, 4, 7])
def test_deep_products_in_slices(nb):
    """panel_product_k from row k0 of the panels, and K above K_SLICE_ABOVE (summed in slices
    of K_SLICE, the sums stored and taken up again), against NumPy."""
    rng = np.random.default_rng(nb)
    depth, H = npn.K_SLICE_ABOVE + 300, 40
    w = rng.standard_normal((H, depth)).astype(np.float32)
    panels = npn.pack_panels(w, 1)
    a = rng.standard_normal((nb, depth)).astype(np.float32)
    for k0, K in ((0, depth), (5, npn.K_SLICE_ABOVE + 1), (100, 50)):
        out = np.zeros((nb, H), np.float32)
        npn.panel_product_k(a, 0, panels, 0, 0, H, k0, K, out, 0, nb, False)
        want = a[:, :K].astype(np.float64) @ w[:, k0:k0 + K].T.astype(np.float64)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)


def test_the_tiles_of_hosts_without_avx512():
    """Where Numba targets a CPU without AVX-512 (here: its code made for Haswell's AVX2, or
    x86-64-v2's SSE4.2, whatever the host) the main tile has 3 rows, and the products still
    equal NumPy's. Run in a child process: Numba's target is fixed at its import."""
    import os
    import subprocess
    import sys
    code = (
        "import numpy as np\n"
        "from fastlstm._kernels import numba_panels as npn\n"
        "assert npn.TILE_ROWS == 3, npn.TILE_ROWS\n"
        "rng = np.random.default_rng(0)\n"
        "w = rng.standard_normal((70, 33)).astype(np.float32)\n"
        "panels = npn.pack_panels(w, 1)\n"
        "for nb in (1, 2, 3, 5, 7, 13):\n"
        "    a = rng.standard_normal((nb, 33)).astype(np.float32)\n"
        "    out = np.zeros((nb, 70), np.float32)\n"
        "    npn.panel_product(a, 0, panels, 0, 0, 70, out, 0, nb, False)\n"
        "    np.testing.assert_allclose(out, a.astype(np.float64) @ w.T, rtol=1e-4, "
        "atol=1e-4)\n")
    features = {"haswell": "+64bit,+avx,+avx2,+bmi,+bmi2,+cx16,+f16c,+fma,+lzcnt,+movbe,"
                           "+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave",
                "x86-64-v2": "+64bit,+cx16,+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3"}
    for cpu, flags in features.items():
        env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES=flags)
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, (cpu, run.stderr[-2000:])


@pytest.mark.parametrize("nb", [1, 4])
def test_the_blocks_as_one_product(nb):
    """numba_recurrent_forward._recurrent over every unit of H (a multiple of PANEL) runs the
    gate blocks as one product: the same bits as block by block (what each thread of the
    column split does)."""
    rng = np.random.default_rng(nb)
    H, K, n_blocks = 32, 20, 3
    panels = npn.pack_panels(rng.standard_normal((n_blocks * H, K)).astype(np.float32),
                             n_blocks)
    a = rng.standard_normal((nb, K)).astype(np.float32)
    one = np.zeros((nb, n_blocks * H), np.float32)
    nb_fwd._recurrent(a, 0, panels, 0, one, 0, nb, H, n_blocks, 0, H, False)
    by_block = np.zeros_like(one)
    for q in range(n_blocks):
        for u0 in (0, 16):
            npn.panel_product(a, 0, panels, q, u0 // 16, 16, by_block, q * H + u0, nb, False)
    np.testing.assert_array_equal(one, by_block)
