"""A group of rows of a large batch with small weights runs its rows in blocks, each block's
time loop to the end before the next (src/kernels/recurrent_forward.pyx, block_rows): the
results are the reference's, and the same bits as the rows computed alone and as any thread
count (rows never meet). The test names say "cython", so CI's per-level runs take them."""
import numpy as np
import pytest

import fastlstm
from fastlstm import _isa

from conftest import require_backend

FAMILY = [
    (fastlstm.LSTM, {}), (fastlstm.LSTM, {"proj_size": 7}), (fastlstm.LSTM, {"peepholes": True}),
    (fastlstm.GRU, {}), (fastlstm.GRU, {"linear_before_reset": False}), (fastlstm.RNN, {}),
    (fastlstm.RNN, {"nonlinearity": "relu"}),
]
IDS = ["lstm", "lstm-proj", "lstm-peep", "gru", "gru-reset-before", "rnn-tanh", "rnn-relu"]
CELL_CODES = {"lstm": 0, "gru": 1, "gru-reset-before": 2, "rnn-tanh": 3, "rnn-relu": 4}
T, B, I, H = 5, 1500, 5, 16


def _module(cls, options, backend, dtype, reverse):
    return cls(I, H, seed=3, dtype=dtype, backend=backend, reverse=reverse, **options).eval()


def test_cython_row_blocks_rule():
    require_backend("cython")
    fwd = _isa.kernel_module("recurrent_forward")
    per_row = (4 * H + H + H + I) * 4
    n = fwd.row_block(0, I, H, H, 0, 4, B)
    assert n < B and n % 16 == 0 and n * per_row <= 1 << 17 < (n + 16) * per_row
    assert fwd.row_block(0, I, H, H, 0, 4, 100) == 100             # fits: one block
    assert fwd.row_block(0, 512, 512, 512, 0, 4, B) == B           # weights too large
    assert fwd.row_block(3, I, H, H, 0, 8, B) < B                  # float64 RNN


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cls,options", FAMILY, ids=IDS)
def test_cython_row_blocks_equal_reference_and_rows_alone(cls, options, dtype):
    require_backend("cython")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    lengths = rng.integers(0, T + 1, B)
    for reverse, lens in ((False, None), (True, lengths)):
        ref_module = _module(cls, options, "numpy", dtype, reverse)
        module = _module(cls, options, "cython", dtype, reverse)
        y_ref = ref_module(x, lengths=lens)[0]
        runs = []
        for n in (1, 2, 3):
            with fastlstm.threads(n):
                runs.append(module(x, lengths=lens)[0])
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(runs[0], y_ref, rtol=tol, atol=tol)
        for other in runs[1:]:
            np.testing.assert_array_equal(other, runs[0])
        with fastlstm.threads(1):   # the rows of one block, and a few rows, alone
            for r0, r1 in ((0, 40), (700, 1500)):
                part = module(x[:, r0:r1], lengths=None if lens is None else lens[r0:r1])[0]
                np.testing.assert_array_equal(part, runs[0][:, r0:r1])
