"""Inference keeps no (T, B, 4H) scratch: its peak extra memory is O(B*H) beyond the output."""
import tracemalloc

import numpy as np
import pytest

import fastlstm
from fastlstm import _api

from conftest import ALL_BACKENDS


@pytest.mark.parametrize("backend", [b for b in ALL_BACKENDS if b != "numpy"])
@pytest.mark.parametrize("B", [1, 4])
def test_inference_scratch_is_independent_of_sequence_length(backend, B):
    if backend not in fastlstm.available_backends():
        pytest.skip(f"backend {backend!r} unavailable")
    T, I, H = 5000, 8, 32
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I))
    w_ih = rng.standard_normal((4 * H, I)) * 0.1
    w_hh = rng.standard_normal((4 * H, H)) * 0.1
    fastlstm.forward(x, w_ih, w_hh, backend=backend)  # warm-up: JIT, caches
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        y, (h_n, c_n) = fastlstm.forward(x, w_ih, w_hh, backend=backend)
        peak = tracemalloc.get_traced_memory()[1] - base
        del y, h_n, c_n
        # the same measure sees the (T, B, 4H) gates that training keeps for backward
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        kept = fastlstm.forward(x, w_ih, w_hh, backend=backend, return_tape=True)
        training_peak = tracemalloc.get_traced_memory()[1] - base
        del kept
    finally:
        tracemalloc.stop()
    itemsize = x.dtype.itemsize
    output = (T + 1) * B * H * itemsize + 2 * B * H * itemsize  # y's buffer (slot 0: h0), h_n, c_n
    chunk_rows = max(_api._INFERENCE_CHUNK_ROWS, B)
    # scratch allowed: a chunk of gate rows, two cell states, the bias, w_ih^T and w_hh^T
    # packed in panels (Cython: up to 64 padding columns, 64 bytes of alignment each), a row
    # of recurrent products (Numba), and 4 KiB of small Python objects
    packed = (I + H) * (4 * H + 64) * itemsize + 2 * 64
    bound = (chunk_rows * 4 * H + 2 * B * H + 4 * H + B * 4 * H) * itemsize + packed + 4096
    full_gates = T * B * 4 * H * itemsize
    assert peak - output <= bound, (peak - output, bound)
    assert bound < full_gates / 10
    assert training_peak > full_gates
