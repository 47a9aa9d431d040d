"""Subnormal numbers (src/kernels/_fpmode.h): the Cython kernels' threads compute in
flush-to-zero / denormals-are-zero mode, set and restored per thread.

- On subnormal-heavy data (inputs and states around 1e-39) the Cython forward and backward
  agree with the NumPy reference (which keeps subnormals) to within the flushed amounts.
- The flush is real: an RNN whose every product is subnormal gives exact zeros with the
  Cython backend, where the reference gives subnormal values.
- The caller's floating-point mode is left as it was after every kind of kernel call (forward
  on either decomposition, backward, a stream step): a subnormal product in NumPy afterwards
  is still subnormal, not zero.
Speed on such data is measured by the bench (bench/RESULTS.md), not asserted here.
"""
import numpy as np
import pytest

import fastlstm

from conftest import require_backend

TINY = np.float32(1e-39)     # subnormal in float32 (the smallest normal is 1.18e-38)


def _caller_keeps_subnormals():
    return np.float32(1e-30) * np.float32(1e-10) != 0


@pytest.fixture
def cython():
    require_backend("cython")
    assert _caller_keeps_subnormals(), "the test process itself flushes subnormals"
    return "cython"


def _problem(T, B, I, H, seed=0):
    rng = np.random.default_rng(seed)
    w = lambda *s: (0.3 * rng.standard_normal(s)).astype(np.float32)   # noqa: E731
    return dict(x=(TINY * rng.standard_normal((T, B, I))).astype(np.float32), w_ih=w(4 * H, I),
                w_hh=w(4 * H, H), b_ih=np.zeros(4 * H, np.float32),
                b_hh=np.zeros(4 * H, np.float32),
                h0=np.full((B, H), TINY, np.float32), c0=np.full((B, H), TINY, np.float32))


@pytest.mark.parametrize("shape", [(6, 3, 5, 7), (5, 1, 8, 256)], ids=["rows", "columns"])
def test_cython_subnormal_data_matches_the_reference(cython, shape):
    p = _problem(*shape)
    args = [p[k] for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")]
    dy = np.full((shape[0], shape[1], shape[3]), TINY, np.float32)
    results = {}
    for backend in ("cython", "numpy"):
        with fastlstm.threads(2):
            y, (h, c), tape = fastlstm.forward(*args, backend=backend, return_tape=True)
            g = fastlstm.backward(tape, dy)
        results[backend] = [y, h, c, g.x, g.w_ih, g.w_hh, g.h0, g.c0]
    assert np.mean(np.abs(results["numpy"][0]) < 1.18e-38) > 0.9   # the data is subnormal
    for a, b in zip(results["cython"], results["numpy"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-37)
    assert _caller_keeps_subnormals()


def test_cython_flushes_subnormal_products(cython):
    """x subnormal, w_ih the identity, no bias, relu: every pre-activation is a subnormal
    product; the Cython kernels read the subnormal inputs as zero."""
    T, B, H = 4, 2, 5
    x = np.full((T, B, H), TINY, np.float32)
    eye = np.eye(H, dtype=np.float32)
    ref, _ = fastlstm.rnn_forward(x, eye, 0 * eye, nonlinearity="relu", backend="numpy")
    got, _ = fastlstm.rnn_forward(x, eye, 0 * eye, nonlinearity="relu", backend="cython")
    assert np.all(ref > 0) and np.all(ref < 1.18e-38)
    assert np.all(got == 0)
    assert _caller_keeps_subnormals()


def test_cython_calls_leave_the_callers_mode(cython):
    p = _problem(5, 1, 8, 256)
    args = [p[k] for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")]
    for n_threads in (1, 2):
        with fastlstm.threads(n_threads):
            _, _, tape = fastlstm.forward(*args, backend="cython", return_tape=True)
            assert _caller_keeps_subnormals()
            fastlstm.backward(tape, np.ones((5, 1, 256), np.float32))
            assert _caller_keeps_subnormals()
    m = fastlstm.LSTM(8, 256, backend="cython").eval()
    for B in (1, 16):   # a split stream and one on groups of rows
        s = m.stream(batch_size=B)
        s.step(np.ones((B, 8), np.float32))
        assert _caller_keeps_subnormals()
        s.step(np.ones((3, B, 8), np.float32))
        assert _caller_keeps_subnormals()
