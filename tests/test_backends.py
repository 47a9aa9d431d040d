"""Every backend against the NumPy reference, float32 and float64, over many shapes.

Each check compares y, h_n, c_n, every gradient, the tape (h, c, gates) and the inference
output (no tape) with fastlstm.reference computed in float64: max relative error 1e-10 in
float64 and 1e-4 in float32 (see conftest.check_against_reference).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastlstm
from fastlstm import _api

from conftest import (ALL_BACKENDS, assert_close, check_against_reference, make_problem,
                      reference_result, require_backend, tol_for)

# (T, B, I, H)
SHAPES = [
    (1, 1, 1, 1),
    (1, 4, 3, 5),        # one step
    (5, 1, 3, 5),        # one row
    (6, 3, 7, 13),       # I != H, H not a multiple of 8
    (4, 2, 16, 8),
    (3, 5, 2, 9),
    (20, 64, 32, 48),    # inference projects the input in chunks of 256 // 64 = 4 steps
    (11, 50, 6, 7),      # chunks of 5 steps: 5 + 5 + 1
    (3, 300, 4, 5),      # B > _INFERENCE_CHUNK_ROWS: one step per chunk
    (3, 130, 8, 128),    # a wide batch: BLAS's threads split the per-step products
    (5, 1, 3, 70),       # one row, H > 64: products of several column blocks, K % 4 != 0
    (4, 2, 5, 33),       # two rows, 4H = 132 columns, H % 4 == 1
]


def _id(shape):
    return "T{}-B{}-I{}-H{}".format(*shape)


def test_shapes_cover_the_api_thresholds():
    """The shape list above still exercises the chunked paths of _api."""
    chunks = [max(1, _api._INFERENCE_CHUNK_ROWS // B) for T, B, I, H in SHAPES]
    assert any(T > 2 * k for (T, B, I, H), k in zip(SHAPES, chunks)), "no multi-chunk shape"
    assert any(T % k for (T, B, I, H), k in zip(SHAPES, chunks) if T > k), "no ragged last chunk"


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_backend_matches_reference(backend, dtype, shape):
    p = make_problem(*shape, dtype=dtype, seed=1)
    check_against_reference(p, backend)


@pytest.mark.parametrize("shape", [(7, 3, 5, 6), (20, 64, 32, 48)], ids=_id)
def test_backend_matches_reference_large_state(backend, dtype, shape):
    """Larger initial states and inputs drive the gates towards saturation."""
    p = make_problem(*shape, dtype=dtype, seed=2, state_scale=4.0)
    p.x *= 3
    check_against_reference(p, backend)


def test_backends_agree_with_each_other(dtype):
    """Every available backend gives the same numbers (pairwise, same tolerance)."""
    p = make_problem(9, 6, 5, 11, dtype=dtype, seed=4)
    results = {}
    for name in fastlstm.available_backends():
        y, (h_n, c_n), tape = fastlstm.forward(*p.forward_args(), backend=name, return_tape=True)
        g = fastlstm.backward(tape, p.dy, p.dh_n, p.dc_n)
        results[name] = [y, h_n, c_n, g.x, g.w_ih, g.w_hh, g.b_ih, g.b_hh, g.h0, g.c0]
    names = list(results)
    for other in names[1:]:
        for k, (a, b) in enumerate(zip(results[other], results[names[0]])):
            assert_close(a, b, tol_for(dtype), f"{other} vs {names[0]}, output {k}")


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(T=st.integers(1, 6), B=st.integers(1, 5), I=st.integers(1, 6), H=st.integers(1, 9),
       seed=st.integers(0, 2**16))
def test_backend_matches_reference_random_shapes(backend_name, dtype_name, T, B, I, H, seed):
    require_backend(backend_name)
    p = make_problem(T, B, I, H, dtype=np.dtype(dtype_name), seed=seed)
    check_against_reference(p, backend_name)


def test_tape_matches_reference_forward(backend, dtype):
    """The kernels' tape (h, c, gates) is what reference.lstm_forward returns, slot by slot."""
    p = make_problem(6, 4, 3, 5, dtype=dtype, seed=8)
    ref = reference_result(p)
    _, _, tape = fastlstm.forward(*p.forward_args(), backend=backend, return_tape=True)
    h, c, gates = ref.tape
    assert tape.h.shape == (7, 4, 5) and tape.c.shape == (7, 4, 5)
    assert tape.gates.shape == (6, 4, 20)
    assert tape.h.dtype == tape.c.dtype == tape.gates.dtype == dtype
    tol = tol_for(dtype)
    assert_close(tape.h, h, tol, "tape.h")
    assert_close(tape.c, c, tol, "tape.c")
    assert_close(tape.gates, gates, tol, "tape.gates")


@pytest.mark.parametrize("shape", [(1, 3, 2, 4), (20, 64, 32, 48), (9, 300, 3, 5)], ids=_id)
def test_inference_equals_training(backend, dtype, shape):
    p = make_problem(*shape, dtype=dtype, seed=9)
    y_t, (h_t, c_t), _ = fastlstm.forward(*p.forward_args(), backend=backend, return_tape=True)
    y_i, (h_i, c_i) = fastlstm.forward(*p.forward_args(), backend=backend)
    for name, a, b in (("y", y_i, y_t), ("h_n", h_i, h_t), ("c_n", c_i, c_t)):
        assert a.dtype == dtype and a.shape == b.shape
        assert_close(a, b, tol_for(dtype), name)


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 8, 9])
def test_inference_final_cell_state_every_length(backend, dtype, T):
    """c_n of inference (which may keep fewer cell-state slots than training) for odd and even
    lengths and lengths around the chunk size, against the reference."""
    B = 64  # 256 // 64 = 4 steps per inference chunk
    p = make_problem(T, B, 3, 6, dtype=dtype, seed=10)
    ref = reference_result(p)
    y, (h_n, c_n) = fastlstm.forward(*p.forward_args(), backend=backend)
    tol = tol_for(dtype)
    assert_close(y, ref.y, tol, "y")
    assert_close(h_n, ref.h_n, tol, "h_n")
    assert_close(c_n, ref.c_n, tol, "c_n")


def test_repeated_calls_are_deterministic(backend, dtype):
    p = make_problem(5, 7, 4, 6, dtype=dtype, seed=12)
    out = []
    for _ in range(2):
        y, (h_n, c_n), tape = fastlstm.forward(*p.forward_args(), backend=backend,
                                               return_tape=True)
        g = fastlstm.backward(tape, p.dy, p.dh_n, p.dc_n)
        out.append([y, h_n, c_n, g.x, g.w_ih, g.w_hh, g.b_ih, g.h0, g.c0])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_gate_activations_sweep(backend, dtype):
    """sigmoid and tanh of the kernels over a sweep of pre-activations, extremes, +-inf and NaN.

    One step from c0 = 0 with I = H = 1, w_ih = 1 and w_hh = 0: every gate's pre-activation is x,
    so tape.gates = [sigmoid(x), sigmoid(x), tanh(x), sigmoid(x)] row by row.
    """
    from scipy.special import expit

    sweep = np.concatenate([
        np.linspace(-30, 30, 1201),
        [0.0, -0.0, 1e-8, -1e-8, 1e-30, 87.5, -87.5, 88.5, -88.5, 100, -100, 700, -700,
         710, -710, 1e4, -1e4, 1e30, -1e30, np.inf, -np.inf, np.nan],
    ]).astype(dtype)
    x = sweep.reshape(1, -1, 1)
    w_ih = np.ones((4, 1), dtype)
    w_hh = np.zeros((4, 1), dtype)
    y, (h_n, c_n), tape = fastlstm.forward(x, w_ih, w_hh, backend=backend, return_tape=True)
    a = sweep.astype(np.float64)
    s, t = expit(a), np.tanh(a)
    # a few units in the last place of 1: much tighter than the suite's end-to-end tolerance
    tol = 1e-6 if dtype == np.float32 else 1e-12
    i, f, g, o = (tape.gates[0, :, k] for k in range(4))
    for name, got, want in (("i", i, s), ("f", f, s), ("g", g, t), ("o", o, s)):
        assert_close(got, want, tol, f"gate {name}")
    finite = np.isfinite(a)
    assert np.all((s[finite] >= 0) & (s[finite] <= 1))
    assert np.all((i[finite] >= 0) & (i[finite] <= 1)), "sigmoid outside [0, 1]"
    assert np.all(np.abs(g[finite]) <= 1), "tanh outside [-1, 1]"
    c_ref = s * t
    assert_close(c_n[:, 0], c_ref, tol, "c_1 = i * g")
    assert_close(h_n[:, 0], s * np.tanh(c_ref), tol, "h_1 = o * tanh(c_1)")


@pytest.mark.parametrize("n", [1, 3])
def test_thread_count_does_not_change_results(backend, dtype, n):
    """Under `fastlstm.threads(n)` a wide batch gives the reference's numbers, and the block
    leaves the default thread count as it was."""
    threads = getattr(fastlstm, "threads", None)
    if threads is None:
        pytest.skip("fastlstm.threads not in this version")
    from fastlstm import _threads

    before = _threads.current_threads()
    p = make_problem(3, 130, 8, 128, dtype=dtype, seed=13)
    with threads(n):
        assert _threads.current_threads() == n
        ref, tape = check_against_reference(p, backend)
    assert _threads.current_threads() == before


@pytest.mark.parametrize("n_threads", [2, 3])
@pytest.mark.parametrize("cell", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("T, B, I, H", [(4, 7, 5, 13), (64, 1, 128, 64)])
def test_cython_kernels_threads_match_one_thread(dtype, n_threads, cell, T, B, I, H):
    """The Cython drivers give each OpenMP thread a group of batch rows (7 rows: groups of 3
    and 4, or 2, 2 and 3), or with a single row share the packing and the input projection
    between threads (64 x 1 x 128 x 64 is large enough for both), and share the products after
    the backward walk by blocks of rows; every output element is the same sum in the same
    order however the work is split, so the results equal the single-threaded run bit for
    bit, forward and backward, for every cell (CONTRACT.md's codes). A scratch array one value
    short is refused, and so are lengths past T or increasing inside a group (both drivers)."""
    if "cython" not in fastlstm.available_backends():
        pytest.skip("cython backend not built")
    from fastlstm._isa import kernel_module

    forward_scratch_length = kernel_module("_info").forward_scratch_length
    backward_scratch_length = kernel_module("_info").backward_scratch_length
    forward = kernel_module("recurrent_forward").forward
    backward = kernel_module("recurrent_backward").backward

    rng = np.random.default_rng(5)
    G = {0: 4, 1: 3, 2: 3}.get(cell, 1) * H
    Gs = H if cell > 2 else 4 * H
    x = rng.standard_normal((T, B, I)).astype(dtype)
    w_ih = (rng.standard_normal((G, I)) * 0.3).astype(dtype)
    w_hh = (rng.standard_normal((G, H)) * 0.3).astype(dtype)
    w_hr = np.zeros((0, H), dtype)
    peep = (rng.standard_normal((3, H)) * 0.3).astype(dtype) if cell == 0 else np.zeros((0, H), dtype)
    bias = rng.standard_normal((2, G)).astype(dtype)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    lengths = np.full(B, T, np.int64)
    itemsize = np.dtype(dtype).itemsize
    results = []
    for n in (1, n_threads):
        h = np.zeros((T + 1, B, H), dtype)
        c = np.zeros((T + 1, B, H) if cell == 0 else (0, B, H), dtype)
        h[0] = h0
        gates = np.empty((T, B, Gs), dtype)
        work = np.empty((B, 3 * H if cell in (1, 2) else 0), dtype)
        forward(cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work,
                np.empty(forward_scratch_length(cell, I, H, H, 0, itemsize), dtype), n)
        dh, dc = np.zeros((B, H), dtype), np.ones((B, H if cell == 0 else 0), dtype)
        grads = [np.empty((T, B, Gs), dtype), np.zeros((0, B, 0), dtype),
                 np.empty((T, B, I), dtype), np.empty((G, I), dtype), np.empty((G, H), dtype),
                 np.empty(G, dtype), np.empty(G, dtype)]
        scratch = np.empty(backward_scratch_length(cell, T * B, I, H, H, 0, itemsize, n), dtype)
        backward(cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, *grads,
                 np.empty((B, H), dtype), scratch, min(n, B), n)
        results.append([h, c, gates, dh, dc] + grads)
    for single, threaded in zip(*results):
        np.testing.assert_array_equal(threaded, single)
    short = np.empty(forward_scratch_length(cell, I, H, H, 0, itemsize) - 1, dtype)
    with pytest.raises(ValueError, match="inconsistent buffer shapes"):
        forward(cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work, short, 1)
    short = np.empty(backward_scratch_length(cell, T * B, I, H, H, 0, itemsize, 1) - 1, dtype)
    with pytest.raises(ValueError, match="inconsistent buffer shapes"):
        backward(cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, *grads,
                 np.empty((B, H), dtype), short, 1, 1)
    unsorted = lengths.copy()
    if B > 1:
        unsorted[0] = T - 1   # longer rows after shorter ones in one group: refused
        with pytest.raises(ValueError, match="lengths increase"):
            forward(cell, x, w_ih, w_hh, w_hr, bias, peep, unsorted, h, c, gates, work,
                    np.empty(forward_scratch_length(cell, I, H, H, 0, itemsize), dtype), 1)
        with pytest.raises(ValueError, match="recurrent_backward: lengths increase"):
            backward(cell, x, w_ih, w_hh, w_hr, peep, unsorted, h, c, gates, dy, dh, dc, *grads,
                     np.empty((B, H), dtype), scratch, 1, 1)
    too_long = lengths.copy()
    too_long[-1] = T + 1   # a length past T: refused by both drivers
    with pytest.raises(ValueError, match="recurrent_forward: a length outside"):
        forward(cell, x, w_ih, w_hh, w_hr, bias, peep, too_long, h, c, gates, work,
                np.empty(forward_scratch_length(cell, I, H, H, 0, itemsize), dtype), 1)
    with pytest.raises(ValueError, match="recurrent_backward: a length outside"):
        backward(cell, x, w_ih, w_hh, w_hr, peep, too_long, h, c, gates, dy, dh, dc, *grads,
                 np.empty((B, H), dtype), scratch, 1, 1)
