"""Loop order (fastlstm/_loop_order.py) and an inference call's kept buffers
(fastlstm/_spare_buffers.py).

- gather and scatter with the Cython kernels' one-pass row copy (_info.copy_rows, on 1 and
  2 threads) equal NumPy's moves exactly, for drawn shapes, lengths (zeros included),
  directions, groups, dtypes and input layouts; scatter undoes gather; copy_rows' refusals.
- The kept block: a call with lengths (or reverse) gives the same as the first call every
  time, and nothing it returns shares memory with the block; a large call keeps none; a
  copy or pickle of a module does not carry it; two threads on one layer get their own.
- The Python layer's row copies run on several (OpenMP) threads only for the backend whose
  kernels use those threads (the Cython one): their spinning would take the Numba team's
  cores.
"""
import copy
import pickle
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastlstm
from fastlstm import _spare_buffers
from fastlstm._backends import copy_rows_function
from fastlstm._loop_order import arrange

from conftest import require_backend


def _copier(n_threads):
    require_backend("cython")
    copy_rows = copy_rows_function()
    return lambda src, index, dst: copy_rows(src, index, dst, n_threads)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_cython_row_copies_equal_numpy(data):
    T = data.draw(st.integers(1, 9), label="T")
    B = data.draw(st.integers(1, 7), label="B")
    n = data.draw(st.integers(1, 6), label="n")
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B)), np.int64)
    reverse = data.draw(st.booleans(), label="reverse")
    n_groups = data.draw(st.integers(1, 3), label="n_groups")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    batch_first = data.draw(st.booleans(), label="batch_first view")
    order = arrange(T, B, lengths, reverse, n_groups)
    rng = np.random.default_rng(T * 100 + B)
    if batch_first:   # a time-major view of a batch-first array: not C-contiguous
        a = rng.standard_normal((B, T, n)).astype(dtype).transpose(1, 0, 2)
    else:
        a = rng.standard_normal((T, B, n)).astype(dtype)
    want = order.gather(a)
    back = order.scatter(want)
    for threads in (1, 2):
        copier = _copier(threads)
        got = order.gather(a, copy_rows=copier)
        assert got.flags.c_contiguous and got.dtype == dtype
        np.testing.assert_array_equal(got, want)
        into = np.full(a.shape, np.nan, dtype)
        assert order.gather(a, into, copier) is into or order.identity
        np.testing.assert_array_equal(order.gather(a, into, copier), want)
        np.testing.assert_array_equal(order.scatter(want, copier), back)
    valid = np.arange(T)[:, None] < lengths[None, :]
    np.testing.assert_array_equal(back, np.where(valid[:, :, None], a, 0))


def test_cython_copy_rows_refusals():
    require_backend("cython")
    copy_rows = copy_rows_function()
    src, dst = np.ones((3, 4)), np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"index\[1\] = 3 outside \[-1, 3\)"):
        copy_rows(src, np.array([0, 3], np.int64), dst)
    with pytest.raises(ValueError, match=r"index\[0\] = -2"):
        copy_rows(src, np.array([-2, 0], np.int64), dst)
    assert not dst.any()   # nothing written
    with pytest.raises(ValueError, match=r"expected dst \(3, 4\)"):
        copy_rows(src, np.zeros(3, np.int64), dst)
    with pytest.raises(TypeError, match="one dtype"):
        copy_rows(src, np.zeros(2, np.int64), dst.astype(np.float32))
    with pytest.raises(TypeError, match="C-contiguous"):
        copy_rows(np.ones((4, 3)).T, np.zeros(2, np.int64), dst)
    ro = dst.copy()
    ro.flags.writeable = False
    with pytest.raises(TypeError, match="writable"):
        copy_rows(src, np.zeros(2, np.int64), ro)
    copy_rows(src * np.arange(3)[:, None], np.array([2, -1], np.int64), dst)
    np.testing.assert_array_equal(dst, [[2] * 4, [0] * 4])


@pytest.mark.parametrize("with_lengths", [False, True], ids=["reverse", "lengths"])
def test_kept_block(backend, with_lengths):
    """A bidirectional stack: its reverse direction runs in another order even without
    lengths."""
    T, B, I, H = 12, 5, 3, 8
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = np.array([12, 3, 0, 7, 12]) if with_lengths else None
    m = fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, backend=backend, seed=1).eval()
    want = m(x, lengths=lengths)
    for _ in range(3):
        y, (h_n, c_n) = m(x, lengths=lengths)
        for a, b in zip((y, h_n, c_n), (want[0],) + want[1]):
            np.testing.assert_array_equal(a, b)
    blocks = []
    for name in dir(m):
        cache = getattr(m, name, None)
        if hasattr(cache, "entries"):
            blocks += [b for entry in cache.entries.values() for b in entry[1].spare]
    assert blocks, "no layer kept a block"
    for a in (y, h_n, c_n):
        assert not any(np.shares_memory(a, b) for b in blocks)
    y[...] = 0   # the caller's output written: the next call is unchanged
    np.testing.assert_array_equal(m(x, lengths=lengths)[0], want[0])
    # a copy starts without blocks and gives the same
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        np.testing.assert_array_equal(other(x, lengths=lengths)[0], want[0])


def test_functional_forward_keeps_no_result_in_its_block():
    rng = np.random.default_rng(2)
    T, B, I, H = 9, 4, 3, 5
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w = dict(w_ih=rng.standard_normal((4 * H, I)).astype(np.float32),
             w_hh=rng.standard_normal((4 * H, H)).astype(np.float32))
    lengths = np.array([9, 2, 5, 0])
    first = fastlstm.forward(x, **w, lengths=lengths, reverse=True)
    second = fastlstm.forward(x, **w, lengths=lengths, reverse=True)
    np.testing.assert_array_equal(first[0], second[0])
    assert not np.shares_memory(first[0], second[0])
    np.testing.assert_array_equal(first[1][0], second[1][0])


def test_block_bounds():
    spare = _spare_buffers.Spare()
    block, (a, b) = _spare_buffers.carve(spare, np.float32, ((3, 5), (2, 7)))
    assert a.shape == (3, 5) and b.shape == (2, 7) and not np.shares_memory(a, b)
    assert a.flags.c_contiguous and b.flags.c_contiguous
    _spare_buffers.give_back(spare, block)
    assert list(spare) == [block]
    again, (c,) = _spare_buffers.carve(spare, np.float32, ((4, 4),))
    assert again is block and not spare           # taken: a second caller makes its own
    other, _ = _spare_buffers.carve(spare, np.float32, ((4, 4),))
    assert other is not block
    _spare_buffers.give_back(spare, block)
    _spare_buffers.give_back(spare, other)         # one kept at most
    assert list(spare) == [block]
    _, _ = _spare_buffers.carve(spare, np.float64, ((4, 4),))   # another dtype: a new block
    big, _ = _spare_buffers.carve(spare, np.float32, ((_spare_buffers.MAX_BYTES // 4 + 1,),))
    _spare_buffers.give_back(spare, big)
    assert not spare                               # too large to keep
    assert pickle.loads(pickle.dumps(spare)) == [] and copy.copy(_spare_buffers.Spare([1])) == []


def test_two_threads_on_one_layer(backend):
    T, B, I, H = 30, 6, 4, 16
    rng = np.random.default_rng(3)
    m = fastlstm.GRU(I, H, backend=backend, seed=2).eval()
    xs = [rng.standard_normal((T, B, I)).astype(np.float32) for _ in range(4)]
    lengths = np.array([30, 1, 17, 30, 0, 9])
    want = [m(x, lengths=lengths)[0] for x in xs]
    got = {}

    def run(k):
        for _ in range(20):
            got[k] = m(xs[k], lengths=lengths)[0]
            if not np.array_equal(got[k], want[k]):
                return

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("backend", ["cython", "numba", "numpy"])
def test_row_copies_share_threads_only_with_openmp_kernels(backend, monkeypatch):
    """_api._row_copier: the copy gets n_threads threads for a large array with the Cython
    backend, one with the others (and one for a small array)."""
    require_backend("cython")
    require_backend(backend)
    from fastlstm import _api
    from fastlstm._backends import get_backend

    seen = []
    monkeypatch.setattr(_api, "copy_rows_function",
                        lambda: lambda src, index, dst, threads: seen.append(threads))
    kernel = get_backend(backend)
    _api._row_copier(kernel, 2, _api._PARALLEL_COPY_VALUES)(None, None, None)
    _api._row_copier(kernel, 2, _api._PARALLEL_COPY_VALUES - 1)(None, None, None)
    assert seen == [2 if backend == "cython" else 1, 1]
