"""The Cython kernels moving an inference call's rows into and out of loop order themselves
(ForwardPlan.run's caller_x, y, perm and reverse; src/kernels/CONTRACT.md).

- run() with the rows moved gives what fastlstm/_loop_order.py's gather, a plain run and its
  scatter give, bit for bit: y (every element, zeros past each length included), h and c, for
  every cell and option, float32 and float64, lengths (a 0 and a full one among them) and
  reverse, both decompositions and 1-3 threads, chunks of several steps and of one, the
  one-group projection shared between threads, and caller arrays with batch_first strides.
- Its refusals: perm missing, of the wrong type or shape, or not a permutation; caller_x or y
  of the wrong dtype, shape or layout, y read-only: a TypeError or ValueError naming it, and
  nothing written.
- The public API takes that path for the cython backend (the Python copies are not called)
  and gives the same bits as the Python copies.
The test names say "cython", so CI's per-level runs (-k cython) run them at every level.
"""
import numpy as np
import pytest

import fastlstm
from fastlstm import _isa
from fastlstm._backends import CythonBackend
from fastlstm._loop_order import LoopOrder, arrange

from conftest import require_backend
from test_column_split import CELL_NAMES, LSTM, _kernel_problem
from test_forward_plan import _plan


@pytest.fixture(scope="module")
def kernels():
    require_backend("cython")
    return _isa.kernel_module("recurrent_forward"), _isa.kernel_module("_info")


def _caller_problem(cell, T, B, I, H, P, peep, lengths, dtype, K, seed=0):
    """A kernel problem (test_column_split's) whose x is the caller's, time order, rows in
    the caller's order (lengths: the caller's, any order); gates hold K steps."""
    b = _kernel_problem(cell, T, B, I, H, P, peep, [T] * B, dtype, False, seed)
    rng = np.random.default_rng(seed + 1)
    b["x"] = rng.standard_normal((T, B, I)).astype(dtype)   # past the lengths too: never read
    b["lengths"] = np.asarray(lengths, np.int64)
    b["gates"] = np.zeros((K, B, b["gates"].shape[2]), dtype)
    return b


def _both_ways(kernels, cell, b, columns, n_threads, reverse, batch_first=False):
    """(y, h, c) from the Python copies around plain runs, and from the kernel moving the rows."""
    T, B, _ = b["x"].shape
    order = arrange(T, B, b["lengths"], reverse, 1 if columns else min(n_threads, B))
    plan = _plan(kernels, cell, b, columns, n_threads)
    h0 = b["h"][0] if order.perm is None else b["h"][0][order.perm]
    c = b["c"].copy()
    if cell == LSTM:
        c[0] = c[0] if order.perm is None else c[0][order.perm]
    h = b["h"].copy()
    h[0] = h0
    want = dict(h=h, c=c.copy(), gates=b["gates"].copy(), work=b["work"].copy())
    plan.run(order.gather(b["x"]), order.lengths, want["h"], want["c"], want["gates"],
             want["work"], n_threads)
    want_y = order.scatter(want["h"][1:])

    got = dict(h=h.copy(), c=c.copy(), gates=b["gates"].copy(), work=b["work"].copy())
    caller_x = b["x"]
    if batch_first:   # (T, B, n) views of (B, T, n) arrays
        caller_x = np.ascontiguousarray(caller_x.transpose(1, 0, 2)).transpose(1, 0, 2)
        y = np.full((B, T, want_y.shape[2]), np.nan, want_y.dtype).transpose(1, 0, 2)
    else:
        y = np.full(want_y.shape, np.nan, want_y.dtype)   # every element must be written
    perm = order.perm if order.perm is not None else np.arange(B, dtype=np.int64)
    x_buffer = np.full(caller_x.shape, np.nan, caller_x.dtype)
    plan.run(x_buffer, order.lengths, got["h"], got["c"], got["gates"], got["work"], n_threads,
             caller_x, y, perm, reverse)
    return (want_y, want["h"], want["c"]), (y, got["h"], got["c"])


# (T, B, I, H, P, peepholes, lengths, K): K < T gives several chunks, K = 1 one step each
# (the split's few-rows projection); the last case's single group of rows projects each
# chunk on all threads (CONTRACT.md)
CASES = [
    (7, 4, 17, 130, 0, False, [3, 7, 0, 5], 3),
    (7, 3, 17, 200, 0, True, [7, 1, 6], 7),
    (6, 2, 9, 150, 70, True, [2, 6], 1),
    (5, 1, 8, 129, 0, False, [4], 2),
    (40, 1, 64, 256, 0, False, [29], 40),
]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell, case", [(cell, case) for cell in sorted(CELL_NAMES)
                                        for case in CASES
                                        if cell == LSTM or not (case[4] or case[5])],
                         ids=lambda v: CELL_NAMES[v] if isinstance(v, int)
                         else f"T{v[0]}-B{v[1]}-H{v[3]}" + (f"-P{v[4]}" if v[4] else "")
                         + f"-K{v[7]}")
def test_cython_moved_rows_equal_the_copies(kernels, cell, case, reverse, dtype):
    T, B, I, H, P, peep, lengths, K = case
    b = _caller_problem(cell, T, B, I, H, P, peep, lengths, dtype, K)
    for columns, threads in ((0, (1, 2)), (1, (1, 2, 3))):
        for n_threads in threads:
            for batch_first in (False, True):
                want, got = _both_ways(kernels, cell, b, columns, n_threads, reverse,
                                       batch_first)
                for name, w, g in zip(("y", "h", "c"), want, got):
                    assert np.array_equal(w, g), (
                        f"{name} differs (columns={columns}, {n_threads} threads, "
                        f"batch_first={batch_first})")
    assert np.abs(want[0]).max() > 0   # the problem did run


def test_cython_moved_rows_full_lengths_reverse(kernels):
    """Every row at full length, reversed: no permutation (perm the identity), a flip."""
    b = _caller_problem(LSTM, 6, 3, 5, 40, 0, False, [6, 6, 6], np.float32, 2)
    want, got = _both_ways(kernels, LSTM, b, 0, 2, True)
    for w, g in zip(want, got):
        assert np.array_equal(w, g)


def _refused(plan, b, error, match, **changes):
    T, B, _ = b["x"].shape
    args = dict(x=np.zeros_like(b["x"]), caller_x=b["x"], y=np.zeros((T, B, b["h"].shape[2]),
                b["x"].dtype), perm=np.arange(B, dtype=np.int64), reverse=False)
    args.update(changes)
    outs = {k: b[k].copy() for k in ("h", "c", "gates", "work")}
    before = {k: v.copy() for k, v in outs.items()}
    y_before = None if not isinstance(args["y"], np.ndarray) else args["y"].copy()
    with pytest.raises(error, match=match):
        plan.run(args["x"], b["lengths"], outs["h"], outs["c"], outs["gates"], outs["work"], 1,
                 args["caller_x"], args["y"], args["perm"], args["reverse"])
    for k, v in before.items():
        assert np.array_equal(outs[k], v), f"{k} written by a refused call"
    if y_before is not None:
        assert np.array_equal(args["y"], y_before), "y written by a refused call"


def test_cython_moved_rows_refusals(kernels):
    T, B, I, H = 5, 3, 4, 8
    b = _caller_problem(LSTM, T, B, I, H, 0, False, [5, 3, 1], np.float32, 2)
    plan = _plan(kernels, LSTM, b, 0)
    _refused(plan, b, ValueError, r"perm: expected a permutation of 0..2",
             perm=np.array([0, 0, 1], np.int64))
    _refused(plan, b, ValueError, r"perm: expected a permutation",
             perm=np.array([0, 1, 3], np.int64))
    _refused(plan, b, ValueError, r"perm: expected a permutation",
             perm=np.array([0, -1, 1], np.int64))
    _refused(plan, b, ValueError, r"perm: expected shape \(3,\), got \(2,\)",
             perm=np.array([0, 1], np.int64))
    _refused(plan, b, TypeError, "perm: expected a C-contiguous 1-d int64 array",
             perm=np.array([0, 1, 2], np.int32))
    _refused(plan, b, TypeError, "perm: .*got NoneType", perm=None)
    _refused(plan, b, ValueError, "perm needs caller_x or y", caller_x=None, y=None)
    _refused(plan, b, TypeError, "caller_x: expected a 3-d float32 array, got a float64",
             caller_x=b["x"].astype(np.float64))
    _refused(plan, b, ValueError, r"caller_x: expected shape \(5, 3, 4\)",
             caller_x=b["x"][:, :2])
    _refused(plan, b, ValueError, "caller_x: expected rows contiguous",
             caller_x=np.asfortranarray(b["x"]))
    read_only = np.zeros((T, B, H), np.float32)
    read_only.flags.writeable = False
    _refused(plan, b, TypeError, "y: expected a 3-d writable float32 array, got .*read-only",
             y=read_only)
    _refused(plan, b, ValueError, r"y: expected shape \(5, 3, 8\)",
             y=np.zeros((T, B, H + 1), np.float32))
    _refused(plan, b, TypeError, "y: .*got list", y=[[[0.0]]])
    x_read_only = np.zeros_like(b["x"])
    x_read_only.flags.writeable = False
    _refused(plan, b, TypeError, "x: expected a C-contiguous writable", x=x_read_only)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cython_api_moves_rows_in_the_kernel(kind, monkeypatch):
    """fastlstm.forward / gru_forward / rnn_forward with lengths, reverse and batch_first:
    the cython backend does not call the Python copies, and gives their bits."""
    require_backend("cython")
    rng = np.random.default_rng(3)
    T, B, I, H = 9, 5, 6, 16
    G = {"lstm": 4, "gru": 3, "rnn": 1}[kind] * H
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    w_ih = (0.3 * rng.standard_normal((G, I))).astype(np.float32)
    w_hh = (0.3 * rng.standard_normal((G, H))).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    lengths = np.array([9, 2, 0, 7, 9])
    function = {"lstm": fastlstm.forward, "gru": fastlstm.gru_forward,
                "rnn": fastlstm.rnn_forward}[kind]
    for reverse in (False, True):
        for batch_first in (False, True):
            xi = x if batch_first else np.ascontiguousarray(x.transpose(1, 0, 2))
            args = (xi, w_ih, w_hh, None, None, h0)

            def call():
                return function(*args, lengths=lengths, reverse=reverse,
                                batch_first=batch_first, backend="cython")

            monkeypatch.setattr(CythonBackend, "moves_rows", False)
            want = call()
            monkeypatch.setattr(CythonBackend, "moves_rows", True)
            with monkeypatch.context() as m:
                for name in ("gather", "scatter"):
                    m.setattr(LoopOrder, name, _not_called)
                got = call()
            flat_want, flat_got = _flatten(want), _flatten(got)
            assert len(flat_want) == len(flat_got) >= 2
            for w, g in zip(flat_want, flat_got):
                assert np.array_equal(w, g), f"reverse={reverse}, batch_first={batch_first}"
            y = flat_got[0]
            assert y.flags.c_contiguous and y.shape == xi.shape[:2] + (H,)
            if not batch_first:
                assert not np.any(y[2:, 1]) and not np.any(y[:, 2])   # zeros past lengths


def _not_called(*args, **kwargs):
    raise AssertionError("the Python copy was called")


def _flatten(result):
    out = []
    for r in result:
        out.extend(_flatten(r) if isinstance(r, tuple) else [r])
    return out
