"""The Cython forward's column split (src/kernels/recurrent_forward.pyx, column_step): for small
batches the threads share every step by slices of the hidden units.

- The kernel called directly, the split forced (columns=1) on 2 and 3 threads against the
  groups of rows on one thread: bit for bit the same h, c and saved gates, for every cell
  and option (projection, peepholes), float32 and float64, lengths, inference and training,
  hidden sizes that are and are not whole chunks of units.
- Through the API, at shapes where the rule picks the split: the same results bit for bit on
  1, 2 and 3 threads, forward and backward, and the NumPy reference to rounding.
- The rule (_info.column_threads) at the points it was fitted on.
- A loaded machine: busy processes on every core while the split runs; it still completes
  with the same results (its barrier yields the core after a bounded spin).
- Python threads running split calls at once.
- The backward walk's split (src/kernels/recurrent_backward.pyx, column_walk), forced
  (columns=1) on 1, 2 and 3 threads against the groups of rows on one thread: every gradient
  bit for bit, for every cell and option, float32 and float64, lengths, hidden sizes that are
  and are not whole chunks of units; a fuzz of drawn problems; through the API where the
  rule picks it, the same gradients on 1, 2 and 3 threads and the NumPy reference's to
  rounding; on a loaded machine; its refusals (columns=1 with several groups, too little
  scratch).
The test names say "cython", so CI's per-level runs (-k cython) run them at every level.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastlstm
from fastlstm import _api, _isa

from conftest import require_backend

LSTM, GRU_LBR, GRU_RB, RNN_TANH, RNN_RELU = range(5)
CELL_NAMES = {LSTM: "lstm", GRU_LBR: "gru-lbr", GRU_RB: "gru-rb", RNN_TANH: "rnn-tanh",
              RNN_RELU: "rnn-relu"}


@pytest.fixture(scope="module")
def kernels():
    require_backend("cython")
    return _isa.kernel_module("recurrent_forward"), _isa.kernel_module("_info")


def _gate_width(cell, H):
    return {LSTM: 4, GRU_LBR: 3, GRU_RB: 3}.get(cell, 1) * H


def _kernel_problem(cell, T, B, I, H, P, peep, lengths, dtype, train, seed=0):
    """The buffers of one forward call (CONTRACT.md), inputs random, outputs zeroed."""
    rng = np.random.default_rng([seed, cell, T, B, I, H, P])
    G, Gs, Hout = _gate_width(cell, H), (H if cell >= RNN_TANH else 4 * H), (P or H)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    for b, n in enumerate(lengths):
        x[n:, b] = 0
    bias = (0.1 * rng.standard_normal((2, G))).astype(dtype)
    if cell != GRU_LBR:
        bias[1] = 0
    h = np.zeros((T + 1, B, Hout), dtype)
    h[0] = rng.standard_normal((B, Hout))
    c = np.zeros(((T + 1 if train else 2) if cell == LSTM else 0, B, H), dtype)
    if cell == LSTM:
        c[0] = rng.standard_normal((B, H))
    return dict(
        x=x, w_ih=(0.3 * rng.standard_normal((G, I))).astype(dtype),
        w_hh=(0.3 * rng.standard_normal((G, Hout))).astype(dtype),
        w_hr=(0.3 * rng.standard_normal((P, H))).astype(dtype) if P else np.zeros((0, H), dtype),
        bias=bias,
        peep=(0.2 * rng.standard_normal((3, H))).astype(dtype) if peep else np.zeros((0, H), dtype),
        lengths=np.asarray(lengths, np.int64), h=h, c=c,
        gates=np.zeros((T if train else min(T, 3), B, Gs), dtype),
        work=np.zeros((B, 3 * H if cell in (GRU_LBR, GRU_RB) else (H if P else 0)), dtype))


def _run_kernel(kernels, cell, buffers, n_threads, columns):
    """One forward call on copies of `buffers`; returns the copies."""
    fwd, info = kernels
    b = {k: v.copy() for k, v in buffers.items()}
    I, H, P = b["x"].shape[2], b["w_hr"].shape[1], b["w_hr"].shape[0]
    scratch = np.empty(info.forward_scratch_length(cell, I, P or H, H, P, b["x"].dtype.itemsize),
                       b["x"].dtype)
    fwd.forward(cell, b["x"], b["w_ih"], b["w_hh"], b["w_hr"], b["bias"], b["peep"],
                b["lengths"], b["h"], b["c"], b["gates"], b["work"], scratch, n_threads, True,
                columns)
    return b


# (B, H, P, peepholes, lengths): H = 130 and 200 end in a part chunk at either panel width;
# 129 gives float64 (32-column panels) five chunks; B = 1 ... 4 with rows that end early
# (a length 0 row too)
KERNEL_CASES = [
    (1, 130, 0, False, [7]),
    (2, 129, 0, False, [7, 4]),
    (3, 200, 0, True, [7, 5, 0]),
    (4, 256, 0, False, [7, 7, 3, 1]),
    (1, 150, 70, False, [7]),
    (2, 300, 140, True, [6, 2]),
]


def _case_id(case):
    B, H, P, peep, _ = case
    return f"B{B}-H{H}" + (f"-P{P}" if P else "") + ("-peep" if peep else "")


@pytest.mark.parametrize("train", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("cell, case", [(cell, case) for cell in sorted(CELL_NAMES)
                                        for case in KERNEL_CASES
                                        if cell == LSTM or not (case[2] or case[3])],
                         ids=lambda v: CELL_NAMES[v] if isinstance(v, int) else _case_id(v))
def test_cython_column_split_is_bitwise_the_rows(kernels, cell, case, train, dtype):
    B, H, P, peep, lengths = case
    buffers = _kernel_problem(cell, 7, B, 17, H, P, peep, lengths, dtype, train)
    want = _run_kernel(kernels, cell, buffers, 1, 0)
    for n_threads in (2, 3):
        got = _run_kernel(kernels, cell, buffers, n_threads, 1)
        for name in ("h", "c") + (("gates",) if train else ()):
            assert np.array_equal(got[name], want[name]), (
                f"{name} differs on {n_threads} threads (max {np.abs(got[name] - want[name]).max()})")
    assert np.abs(want["h"][1:]).max() > 0   # the problem did run


def test_cython_column_rule(kernels):
    """The rule at points of its fit (float32, 2 threads): the split for a few rows of a
    large enough product, the groups of rows otherwise."""
    _, info = kernels
    nr = info.panel_width(4)

    def team(cell, B, H, threads=2, itemsize=4, P=0):
        return info.column_threads(cell, B, P or H, H, itemsize, threads)

    assert team(LSTM, 1, 512) == 2
    assert team(LSTM, 1, 512, threads=3) == 3
    assert team(LSTM, 1, 512, threads=1) == 0
    assert team(LSTM, 64, 512) == 0                  # rows enough for every thread
    assert team(LSTM, 1, nr) == 0                    # one chunk of units: nothing to split
    H = -(-182 // nr) * nr                           # whole chunks, a product big enough
    assert team(LSTM, 1, H, threads=H // nr + 5) == H // nr   # at most one thread per chunk
    assert team(RNN_TANH, 1, 128) == 0               # 16K multiply-adds a block: too few
    assert team(LSTM, 1, 128) == 0                   # the same per gate block
    assert team(RNN_TANH, 2, 256) == 2 and team(RNN_TANH, 4, 256) == 0
    assert team(GRU_LBR, 2, 256) == 2 and team(GRU_LBR, 4, 256) == 0
    # rows per thread allowed grow with the weights' bytes (512 KiB each)
    assert team(LSTM, 4, 256) == 2 and team(LSTM, 8, 256) == 0         # 1 MiB of w_hh
    assert team(LSTM, 16, 512) == 2 and team(LSTM, 32, 512) == 0       # 4 MiB
    assert team(LSTM, 8, 256, itemsize=8) == 2                         # float64: 2 MiB


def _family_call(cell, p, backend, n_threads, lengths=None, reverse=False, return_tape=False):
    kw = dict(lengths=lengths, reverse=reverse, backend=backend, return_tape=return_tape)
    with fastlstm.threads(n_threads):
        if cell == LSTM:
            return fastlstm.forward(p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"],
                                    p["c0"], w_hr=p.get("w_hr"), peepholes=p.get("peep"), **kw)
        if cell in (GRU_LBR, GRU_RB):
            return fastlstm.gru_forward(p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                        p["h0"], linear_before_reset=cell == GRU_LBR, **kw)
        return fastlstm.rnn_forward(p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"],
                                    nonlinearity="tanh" if cell == RNN_TANH else "relu", **kw)


def _family_problem(cell, T, B, I, H, dtype, P=0, peep=False, seed=3):
    rng = np.random.default_rng([seed, cell, T, B, H])
    G, Hout, k = _gate_width(cell, H), P or H, 1 / np.sqrt(H)

    def u(*shape):
        return rng.uniform(-k, k, shape).astype(dtype)

    p = dict(x=rng.standard_normal((T, B, I)).astype(dtype), w_ih=u(G, I), w_hh=u(G, Hout),
             b_ih=u(G), b_hh=u(G), h0=rng.standard_normal((B, Hout)).astype(dtype))
    if cell == LSTM:
        p["c0"] = rng.standard_normal((B, H)).astype(dtype)
        if P:
            p["w_hr"] = u(P, H)
        if peep:
            p["peep"] = u(3, H)
    return p


def _flatten(result):
    out = []
    for item in result:
        if isinstance(item, tuple):
            out.extend(item)
        elif isinstance(item, np.ndarray):
            out.append(item)
    return out


def _grads(g):
    """The gradients that are not None, as a list."""
    names = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0", "w_hr", "peepholes")
    return [getattr(g, n) for n in names if getattr(g, n) is not None]


# (cell, B, H, P, peepholes, lengths, reverse): the rule picks the split at 2 threads for all
API_CASES = [
    (LSTM, 1, 256, 0, False, None, False),
    (LSTM, 3, 256, 0, True, [9, 4, 6], True),
    (LSTM, 2, 256, 128, False, [9, 5], False),
    (GRU_LBR, 2, 256, 0, False, [9, 0], False),
    (GRU_RB, 1, 256, 0, False, None, True),
    (RNN_TANH, 2, 512, 0, False, [3, 9], False),
    (RNN_RELU, 1, 512, 0, False, None, False),
]


@pytest.mark.parametrize("case", API_CASES,
                         ids=lambda c: f"{CELL_NAMES[c[0]]}-B{c[1]}-H{c[2]}"
                         + (f"-P{c[3]}" if c[3] else "") + ("-peep" if c[4] else "")
                         + ("-lengths" if c[5] else "") + ("-reverse" if c[6] else ""))
def test_cython_column_split_through_the_api(kernels, case):
    cell, B, H, P, peep, lengths, reverse = case
    _, info = kernels
    dtype, T = np.float32, 9
    assert info.column_threads(cell, B, P or H, H, 4, 2) == 2, "the rule no longer picks it"
    with fastlstm.threads(2):   # and the API gives the call more than one thread
        assert _api._kernel_threads(T, B, 20, _gate_width(cell, H), P or H) == 2
    p = _family_problem(cell, T, B, 20, H, dtype, P, peep)
    lengths = None if lengths is None else np.asarray(lengths)
    one = _family_call(cell, p, "cython", 1, lengths, reverse, return_tape=True)
    rng = np.random.default_rng(5)
    dy = rng.standard_normal(one[0].shape).astype(dtype)
    want = _flatten(one[:2]) + _grads(fastlstm.backward(one[2], dy))
    for n_threads in (2, 3):
        res = _family_call(cell, p, "cython", n_threads, lengths, reverse, return_tape=True)
        got = _flatten(res[:2]) + _grads(fastlstm.backward(res[2], dy))
        assert len(got) == len(want)
        for k, (a, b) in enumerate(zip(got, want)):
            assert np.array_equal(a, b), f"output {k} differs on {n_threads} threads"
        inference = _flatten(_family_call(cell, p, "cython", n_threads, lengths, reverse))
        for k, (a, b) in enumerate(zip(inference, want)):
            assert np.array_equal(a, b), f"inference output {k} differs on {n_threads} threads"
    ref = _flatten(_family_call(cell, p, "numpy", 1, lengths, reverse))
    for a, b in zip(want, ref):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_cython_column_split_on_a_loaded_machine(kernels, busy_cores):
    p = _family_problem(LSTM, 60, 1, 32, 256, np.float32)
    want = _flatten(_family_call(LSTM, p, "cython", 1))
    for n_threads in (2, 3):
        for _ in range(3):
            got = _flatten(_family_call(LSTM, p, "cython", n_threads))
            for a, b in zip(got, want):
                assert np.array_equal(a, b)


def test_cython_column_split_from_python_threads(kernels):
    """Four Python threads, each running split calls on its own problem (its own team and
    barrier), give the sequential results bit for bit."""
    problems = [_family_problem(cell, 20, 1 + k % 2, 16, 256, np.float32, seed=k)
                for k, cell in enumerate((LSTM, GRU_LBR, GRU_RB, RNN_TANH))]
    cells = (LSTM, GRU_LBR, GRU_RB, RNN_TANH)
    want = [_flatten(_family_call(c, p, "cython", 2)) for c, p in zip(cells, problems)]
    start = threading.Barrier(len(cells))

    def work(k):
        start.wait()
        return [_flatten(_family_call(cells[k], problems[k], "cython", 2)) for _ in range(4)]

    with ThreadPoolExecutor(max_workers=len(cells)) as pool:
        results = list(pool.map(work, range(len(cells))))
    for k, runs in enumerate(results):
        for got in runs:
            for a, b in zip(got, want[k]):
                assert np.array_equal(a, b), f"thread {k}"


_LONG_RUN = int(os.environ.get("FASTLSTM_FUZZ_EXAMPLES", "0") or 0)


@settings(max_examples=_LONG_RUN or 150, deadline=None, derandomize=not _LONG_RUN,
          database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_cython_column_split_fuzz(kernels, data):
    """Drawn problems (cell, options, dtype, B 1..5, at least two chunks of units, lengths,
    inference or training, 2..4 threads): the split equals the rows bit for bit.
    FASTLSTM_FUZZ_EXAMPLES=N draws N at random (the sanitizer run uses it too)."""
    _, info = kernels
    cell = data.draw(st.sampled_from(sorted(CELL_NAMES)), "cell")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), "dtype")
    nr = info.panel_width(np.dtype(dtype).itemsize)
    H = data.draw(st.integers(nr + 1, 3 * nr), "H")
    B = data.draw(st.integers(1, 5), "B")
    T = data.draw(st.integers(1, 6), "T")
    P = data.draw(st.sampled_from([0, 0, max(1, H // 3), H + 5]), "P") if cell == LSTM else 0
    peep = cell == LSTM and data.draw(st.booleans(), "peep")
    lengths = sorted(data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B), "lengths"),
                     reverse=True)
    train = data.draw(st.booleans(), "train")
    n_threads = data.draw(st.integers(2, 4), "threads")
    buffers = _kernel_problem(cell, T, B, data.draw(st.integers(1, 9), "I"), H, P, peep,
                              lengths, dtype, train)
    want = _run_kernel(kernels, cell, buffers, 1, 0)
    got = _run_kernel(kernels, cell, buffers, n_threads, 1)
    for name in ("h", "c") + (("gates",) if train else ()):
        assert np.array_equal(got[name], want[name]), name


# (kind, options, B, I, H, layers): streams whose weights are packed for the split and whose
# single steps share the threads (H large enough for stream.STEP_SPLIT_MACS), and one below
STREAM_CASES = [
    ("lstm", {}, 1, 24, 256, 2),
    ("lstm", {"proj_size": 130}, 2, 24, 256, 1),
    ("gru", {"linear_before_reset": True}, 1, 24, 256, 1),
    ("gru", {"linear_before_reset": False}, 2, 24, 256, 1),
    ("rnn", {"nonlinearity": "relu"}, 1, 24, 512, 1),
    ("gru", {"linear_before_reset": True}, 1, 24, 190, 1),   # split packing, 1-thread steps
]


@pytest.mark.parametrize("case", STREAM_CASES,
                         ids=lambda c: f"{c[0]}-B{c[2]}-H{c[4]}-L{c[5]}"
                         + "".join(f"-{k}{v}" for k, v in c[1].items()))
def test_cython_column_split_streams(kernels, case):
    """Single steps and chunks of a split stream, on 1, 2 and 3 threads, equal the whole
    sequence bit for bit."""
    from fastlstm.layers import stream as stream_module

    kind, opts, B, I, H, L = case
    cls = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}[kind]
    m = cls(I, H, num_layers=L, seed=4, backend="cython", **opts).eval()
    x = np.random.default_rng(6).standard_normal((8, B, I)).astype(np.float32)
    with fastlstm.threads(2):
        y_ref, st_ref = m(x)
        s = m.stream(batch_size=B)
    assert s._columns == 1, "the rule no longer packs this stream for the split"
    G = {"lstm": 4, "gru": 3, "rnn": 1}[kind] * H
    assert s._step_split == (G * (opts.get("proj_size") or H) >= stream_module.STEP_SPLIT_MACS)
    for n_threads in (1, 2, 3):
        s.reset()
        with fastlstm.threads(n_threads):
            ys = [s.step(x[t])[None] for t in range(3)] + [s.step(x[3:6]), s.step(x[6])[None],
                                                           s.step(x[7:8])]
        assert np.array_equal(np.concatenate(ys), y_ref), f"{n_threads} threads"
        got = s.state if isinstance(s.state, tuple) else (s.state,)
        want = st_ref if isinstance(st_ref, tuple) else (st_ref,)
        for a, b in zip(got, want):
            assert np.array_equal(a, b)


def test_cython_scratch_packed_for_the_other_decomposition(kernels):
    """Reusing packed weights (pack_weights=False) under the other decomposition is refused,
    not run on a wrong packing."""
    buffers = _kernel_problem(LSTM, 3, 1, 5, 130, 0, False, [3], np.float32, False)
    fwd, info = kernels
    scratch = np.empty(info.forward_scratch_length(LSTM, 5, 130, 130, 0, 4), np.float32)
    args = [buffers[k] for k in ("x", "w_ih", "w_hh", "w_hr", "bias", "peep", "lengths", "h",
                                 "c", "gates", "work")]
    fwd.forward(LSTM, *args, scratch, 2, True, 1)
    with pytest.raises(ValueError, match="packed for the other decomposition"):
        fwd.forward(LSTM, *args, scratch, 2, False, 0)
    fwd.forward(LSTM, *args, scratch, 2, False, 1)   # the same one: fine


# ---------------------------------------------------------------------------------------------
# The backward walk's column split (src/kernels/recurrent_backward.pyx, column_walk)

@pytest.fixture(scope="module")
def backward_kernel():
    require_backend("cython")
    return _isa.kernel_module("recurrent_backward")


def _backward_problem(kernels, cell, T, B, I, H, P, peep, lengths, dtype, seed=0):
    """A training forward (groups of rows, one thread) and the inputs of its backward: the
    forward's buffers, dy (zeros past each row's length), dh_n and dc_n."""
    buffers = _run_kernel(kernels, cell, _kernel_problem(cell, T, B, I, H, P, peep, lengths,
                                                         dtype, True, seed), 1, 0)
    rng = np.random.default_rng([seed, 7, cell, T, B, H, P])
    Hout = P or H
    dy = rng.standard_normal((T, B, Hout)).astype(dtype)
    for b, n in enumerate(lengths):
        dy[n:, b] = 0
    buffers["dy"] = dy
    buffers["dh"] = rng.standard_normal((B, Hout)).astype(dtype)
    buffers["dc"] = (rng.standard_normal((B, H)) if cell == LSTM
                     else np.zeros((B, 0))).astype(dtype)
    return buffers


BACKWARD_OUTPUTS = ("dh", "dc", "dA", "dhp", "dx", "dw_ih", "dw_hh", "db_ih", "db_hh")


def _run_backward(kernels, backward_kernel, cell, p, n_threads, columns, n_groups=1,
                  column_rows=None):
    """One backward kernel call on problem p (outputs and scratch start as NaN, so anything
    left unwritten shows); returns the outputs {name: array} (dh, dc: dh_0, dc_0)."""
    _, info = kernels
    x = p["x"]
    T, B, I = x.shape
    H, P = p["w_hr"].shape[1], p["w_hr"].shape[0]
    G, Gs, dtype = _gate_width(cell, H), p["gates"].shape[2], x.dtype

    def nan(*shape):
        return np.full(shape, np.nan, dtype)

    out = dict(dh=p["dh"].copy(), dc=p["dc"].copy(), dA=nan(T, B, Gs),
               dhp=nan(T if P else 0, B, P), dx=nan(T, B, I), dw_ih=nan(G, I),
               dw_hh=nan(G, P or H), db_ih=nan(G), db_hh=nan(G))
    if column_rows is None:
        column_rows = B if columns else 0
    scratch = nan(info.backward_scratch_length(cell, T * B, I, P or H, H, P, dtype.itemsize,
                                               n_threads, column_rows))
    backward_kernel.backward(cell, x, p["w_ih"], p["w_hh"], p["w_hr"], p["peep"], p["lengths"],
                             p["h"], p["c"], p["gates"], p["dy"],
                             *[out[k] for k in BACKWARD_OUTPUTS], nan(B, H), scratch, n_groups,
                             n_threads, columns)
    return out


def _assert_same_backward(got, want, what):
    for name in BACKWARD_OUTPUTS:
        assert np.array_equal(got[name], want[name]), (
            f"{name} differs {what} (max {np.nanmax(np.abs(got[name] - want[name]), initial=0)})")


# KERNEL_CASES and whole chunks for a projection with peepholes (H = 256, P = 128 at every
# panel width) and for three rows that all last
BACKWARD_CASES = KERNEL_CASES + [(1, 256, 128, True, [7]), (3, 192, 0, False, [7, 7, 7])]


@pytest.mark.parametrize("cell, case", [(cell, case) for cell in sorted(CELL_NAMES)
                                        for case in BACKWARD_CASES
                                        if cell == LSTM or not (case[2] or case[3])],
                         ids=lambda v: CELL_NAMES[v] if isinstance(v, int) else _case_id(v))
def test_cython_backward_column_split_is_bitwise_the_rows(kernels, backward_kernel, cell, case,
                                                          dtype):
    """The walk's split forced (columns=1) on 1, 2 and 3 threads against the groups of rows on
    one thread: every gradient bit for bit (dA, dhp, dx, dw_ih, dw_hh, db_ih, db_hh, dh_0,
    dc_0), for every cell, projection, peepholes, lengths (rows that join late, a length 0
    row), hidden sizes that are and are not whole chunks of units."""
    B, H, P, peep, lengths = case
    p = _backward_problem(kernels, cell, 7, B, 17, H, P, peep, lengths, dtype)
    want = _run_backward(kernels, backward_kernel, cell, p, 1, 0)
    for n_threads in (1, 2, 3):
        got = _run_backward(kernels, backward_kernel, cell, p, n_threads, 1)
        _assert_same_backward(got, want, f"on {n_threads} threads")
    assert np.abs(want["dw_hh"]).max() > 0 and np.abs(want["dA"]).max() > 0   # it did run


def test_cython_backward_column_split_refusals(kernels, backward_kernel):
    """The split runs the rows as one group, from a scratch with room for its buffers: else
    ValueError (not a run on too little memory). The rule's choice (columns=-1) needs that
    room too."""
    p = _backward_problem(kernels, LSTM, 3, 2, 5, 256, 0, False, [3, 2], np.float32)
    with pytest.raises(ValueError, match="n_groups=1"):
        _run_backward(kernels, backward_kernel, LSTM, p, 2, 1, n_groups=2)
    with pytest.raises(ValueError, match="column_rows"):
        _run_backward(kernels, backward_kernel, LSTM, p, 2, 1, column_rows=0)
    _, info = kernels
    assert info.column_threads(LSTM, 2, 256, 256, 4, 2) == 2
    with pytest.raises(ValueError, match="column_rows"):
        _run_backward(kernels, backward_kernel, LSTM, p, 2, -1, column_rows=0)
    want = _run_backward(kernels, backward_kernel, LSTM, p, 1, 0)
    _assert_same_backward(_run_backward(kernels, backward_kernel, LSTM, p, 2, -1, column_rows=2),
                          want, "with the rule's split")
    # with two groups of rows the rule keeps them (and needs no more scratch)
    _assert_same_backward(_run_backward(kernels, backward_kernel, LSTM, p, 2, -1, n_groups=2,
                                        column_rows=0), want, "on two groups")


@settings(max_examples=_LONG_RUN or 100, deadline=None, derandomize=not _LONG_RUN,
          database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_cython_backward_column_split_fuzz(kernels, backward_kernel, data):
    """Drawn problems (cell, options, dtype, B 1..5, at least two chunks of units, lengths,
    dy or none, 1..4 threads): the walk's split equals the groups of rows bit for bit.
    FASTLSTM_FUZZ_EXAMPLES=N draws N at random (the sanitizer run uses it too)."""
    _, info = kernels
    cell = data.draw(st.sampled_from(sorted(CELL_NAMES)), "cell")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), "dtype")
    nr = info.panel_width(np.dtype(dtype).itemsize)
    H = data.draw(st.integers(nr + 1, 3 * nr), "H")
    B = data.draw(st.integers(1, 5), "B")
    T = data.draw(st.integers(1, 6), "T")
    P = data.draw(st.sampled_from([0, 0, max(1, H // 3), H + 5]), "P") if cell == LSTM else 0
    peep = cell == LSTM and data.draw(st.booleans(), "peep")
    lengths = sorted(data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B), "lengths"),
                     reverse=True)
    n_threads = data.draw(st.integers(1, 4), "threads")
    p = _backward_problem(kernels, cell, T, B, data.draw(st.integers(1, 9), "I"), H, P, peep,
                          lengths, dtype)
    if data.draw(st.booleans(), "no dy"):
        p["dy"] = np.zeros((0, B, P or H), dtype)
    want = _run_backward(kernels, backward_kernel, cell, p, 1, 0)
    _assert_same_backward(_run_backward(kernels, backward_kernel, cell, p, n_threads, 1), want,
                          f"on {n_threads} threads")


@pytest.mark.parametrize("case", API_CASES,
                         ids=lambda c: f"{CELL_NAMES[c[0]]}-B{c[1]}-H{c[2]}"
                         + (f"-P{c[3]}" if c[3] else "") + ("-peep" if c[4] else "")
                         + ("-lengths" if c[5] else "") + ("-reverse" if c[6] else ""))
def test_cython_backward_column_split_through_the_api(kernels, case, dtype):
    """fastlstm.forward(..., return_tape=True) then fastlstm.backward at shapes where the rule
    picks the split (one group of rows, so the walk takes it too): every gradient the same bit
    for bit on 1, 2 and 3 threads, and the NumPy reference's to rounding."""
    cell, B, H, P, peep, lengths, reverse = case
    _, info = kernels
    T = 9
    assert info.column_threads(cell, B, P or H, H, np.dtype(dtype).itemsize, 2) == 2, \
        "the rule no longer picks it"
    p = _family_problem(cell, T, B, 20, H, dtype, P, peep)
    lengths = None if lengths is None else np.asarray(lengths)
    dy = np.random.default_rng(5).standard_normal((T, B, P or H)).astype(dtype)
    dh_n = np.random.default_rng(6).standard_normal((B, P or H)).astype(dtype)

    def grads(backend, n_threads):
        with fastlstm.threads(n_threads):
            tape = _family_call(cell, p, backend, n_threads, lengths, reverse, True)[-1]
            if backend == "cython" and n_threads > 1:
                assert tape.n_groups == 1
            return _grads(fastlstm.backward(tape, dy, dh_n))

    want = grads("cython", 1)
    for n_threads in (2, 3):
        got = grads("cython", n_threads)
        assert len(got) == len(want)
        for k, (a, b) in enumerate(zip(got, want)):
            assert np.array_equal(a, b), f"gradient {k} differs on {n_threads} threads"
    ref = grads("numpy", 1)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    assert len(ref) == len(want)
    for a, b in zip(want, ref):
        np.testing.assert_allclose(a, b, **tol)


def test_cython_backward_column_split_on_a_loaded_machine(kernels, busy_cores):
    """Training (forward and backward, both on the split) with busy processes on every core:
    it completes, with the one-thread gradients bit for bit."""
    p = _family_problem(LSTM, 60, 1, 32, 256, np.float32)
    dy = np.random.default_rng(8).standard_normal((60, 1, 256)).astype(np.float32)

    def train(n_threads):
        with fastlstm.threads(n_threads):
            y, _, tape = _family_call(LSTM, p, "cython", n_threads, return_tape=True)
            return [y] + _grads(fastlstm.backward(tape, dy))

    want = train(1)
    for n_threads in (2, 3):
        for _ in range(3):
            for a, b in zip(train(n_threads), want):
                assert np.array_equal(a, b)
