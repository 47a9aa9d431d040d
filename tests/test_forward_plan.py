"""The Cython forward's ForwardPlan (src/kernels/recurrent_forward.pyx): a layer's weights
packed once, then run() on the per-call buffers.

- run() equals forward() (which packs at every call) bit for bit, for every cell and option,
  float32 and float64, inference and training, both decompositions and 1, 2, 3 threads;
  a plan run again, or on other buffers, gives the same as a fresh forward.
- Its refusals: every wrong array (type, dtype, dimensions, layout, read-only output) a
  TypeError naming it, wrong shapes and lengths a ValueError; nothing written on refusal.
- The packing is the plan's own: w_ih, w_hh (and w_hr) written after the plan was made do
  not change its runs (bias and peepholes are read at each run; the callers never write
  any of them: a PackedLayer's arrays are private and never changed).
The test names say "cython", so CI's per-level runs (-k cython) run them at every level.
"""
import numpy as np
import pytest

from fastlstm import _isa

from conftest import require_backend
from test_column_split import (CELL_NAMES, KERNEL_CASES, LSTM, _case_id, _kernel_problem,
                               _run_kernel)


@pytest.fixture(scope="module")
def kernels():
    require_backend("cython")
    return _isa.kernel_module("recurrent_forward"), _isa.kernel_module("_info")


def _plan(kernels, cell, b, columns, n_threads=1):
    fwd, info = kernels
    I, H, P = b["x"].shape[2], b["w_hr"].shape[1], b["w_hr"].shape[0]
    scratch = np.empty(info.forward_scratch_length(cell, I, P or H, H, P, b["x"].dtype.itemsize),
                       b["x"].dtype)
    return fwd.ForwardPlan(cell, b["w_ih"], b["w_hh"], b["w_hr"], b["bias"], b["peep"],
                           scratch, columns, n_threads)


def _run_plan(plan, buffers, n_threads):
    b = {k: v.copy() for k, v in buffers.items()}
    plan.run(b["x"], b["lengths"], b["h"], b["c"], b["gates"], b["work"], n_threads)
    return b


@pytest.mark.parametrize("train", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("cell, case", [(cell, case) for cell in sorted(CELL_NAMES)
                                        for case in KERNEL_CASES[::2] + KERNEL_CASES[4:5]
                                        if cell == LSTM or not (case[2] or case[3])],
                         ids=lambda v: CELL_NAMES[v] if isinstance(v, int) else _case_id(v))
def test_cython_plan_equals_forward(kernels, cell, case, train, dtype):
    B, H, P, peep, lengths = case
    buffers = _kernel_problem(cell, 7, B, 17, H, P, peep, lengths, dtype, train)
    for columns, threads in ((0, (1, 2)), (1, (1, 2, 3))):
        for n_threads in threads:
            want = _run_kernel(kernels, cell, buffers, n_threads, columns)
            plan = _plan(kernels, cell, buffers, columns, n_threads)
            assert plan.columns == columns
            for _ in range(2):   # the plan reused
                got = _run_plan(plan, buffers, n_threads)
                for name in ("h", "c") + (("gates",) if train else ()):
                    assert np.array_equal(got[name], want[name]), (
                        f"{name} differs (columns={columns}, {n_threads} threads)")
    assert np.abs(want["h"][1:]).max() > 0   # the problem did run


def test_cython_plan_keeps_its_weights(kernels):
    """Other inputs on one plan; and the plan's packing is its own: it does not follow
    later writes to the packed weight arrays (the callers make a new plan when weights
    change)."""
    buffers = _kernel_problem(LSTM, 6, 2, 5, 40, 0, True, [6, 3], np.float32, False)
    plan = _plan(kernels, LSTM, buffers, 0)
    first = _run_plan(plan, buffers, 1)
    other = dict(buffers, x=np.ascontiguousarray(buffers["x"][::-1]))
    got = _run_plan(plan, other, 1)
    assert np.array_equal(got["h"], _run_kernel(kernels, LSTM, other, 1, 0)["h"])
    assert not np.array_equal(got["h"], first["h"])
    weights = {k: buffers[k].copy() for k in ("w_ih", "w_hh")}
    plan = _plan(kernels, LSTM, dict(buffers, **weights), 0)
    for w in weights.values():
        w *= 2
    assert np.array_equal(_run_plan(plan, buffers, 1)["h"], first["h"])


def _refused(plan, b, error, match, **changes):
    args = dict(b, **changes)
    before = {k: args[k].copy() for k in ("h", "c", "gates", "work")
              if isinstance(args[k], np.ndarray)}
    with pytest.raises(error, match=match):
        plan.run(args["x"], args["lengths"], args["h"], args["c"], args["gates"], args["work"],
                 args.get("n_threads", 1))
    for k, v in before.items():
        assert np.array_equal(args[k], v), f"{k} written by a refused call"


def test_cython_plan_refusals(kernels):
    fwd, info = kernels
    cell, T, B, I, H = LSTM, 5, 2, 4, 8
    b = _kernel_problem(cell, T, B, I, H, 0, False, [5, 5], np.float32, False)
    plan = _plan(kernels, cell, b, 0)
    _refused(plan, b, TypeError, r"x: expected a C-contiguous 3-d float32 array, got a float64",
             x=b["x"].astype(np.float64))
    _refused(plan, b, TypeError, "x: .*not C-contiguous",
             x=np.asfortranarray(b["x"]))
    _refused(plan, b, TypeError, "x: .*got list", x=b["x"].tolist())
    _refused(plan, b, TypeError, "lengths: expected a C-contiguous 1-d int64 array",
             lengths=b["lengths"].astype(np.int32))
    ro = b["h"].copy()
    ro.flags.writeable = False
    _refused(plan, b, TypeError, "h: expected a C-contiguous writable .*read-only", h=ro)
    _refused(plan, b, TypeError, "work: expected .*2-d", work=np.zeros((B, 0, 1), np.float32))
    _refused(plan, b, ValueError, "ForwardPlan.run: inconsistent buffer shapes",
             x=np.zeros((T, B, I + 1), np.float32))
    _refused(plan, b, ValueError, "ForwardPlan.run: inconsistent buffer shapes",
             h=np.zeros((T, B, H), np.float32))
    _refused(plan, b, ValueError, "ForwardPlan.run: a length outside",
             lengths=np.array([T + 1, 1], np.int64))
    _refused(plan, b, ValueError, "ForwardPlan.run: lengths increase",
             lengths=np.array([3, 5], np.int64), n_threads=1)
    scratch = np.empty(info.forward_scratch_length(cell, I, H, H, 0, 4), np.float32)
    w = (b["w_ih"], b["w_hh"], b["w_hr"], b["bias"], b["peep"])
    with pytest.raises(ValueError, match="columns 0 or 1 expected, got 2"):
        fwd.ForwardPlan(cell, *w, scratch, 2)
    with pytest.raises(ValueError, match="unknown cell 7"):
        fwd.ForwardPlan(7, *w, scratch, 0)
    with pytest.raises(ValueError, match="n_threads: expected at least 1, got 0"):
        fwd.ForwardPlan(cell, *w, scratch, 0, 0)
    with pytest.raises(TypeError, match="scratch: expected a float32 or float64 array, got int64"):
        fwd.ForwardPlan(cell, *w, np.zeros(scratch.size, np.int64), 0)
    with pytest.raises(TypeError, match="w_hh: expected a C-contiguous 2-d float32 array"):
        fwd.ForwardPlan(cell, w[0], w[1].astype(np.float64), *w[2:], scratch, 0)
    with pytest.raises(ValueError, match="inconsistent weight shapes"):
        fwd.ForwardPlan(cell, w[0][:-1].copy(), *w[1:], scratch, 0)
    with pytest.raises(ValueError, match="inconsistent weight shapes"):
        fwd.ForwardPlan(cell, *w, scratch[:-1].copy(), 0)
    with pytest.raises(ValueError, match="inconsistent weight shapes"):   # peepholes, a GRU
        fwd.ForwardPlan(1, np.zeros((3 * H, I), np.float32), np.zeros((3 * H, H), np.float32),
                        w[2], np.zeros((2, 3 * H), np.float32), np.zeros((3, H), np.float32),
                        scratch, 0)
