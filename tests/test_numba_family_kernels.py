"""The Numba kernels of every cell (src/kernels/numba_recurrent_forward.py,
numba_recurrent_backward.py, numba_cells.py), called directly with the buffers of
src/kernels/CONTRACT.md, against fastlstm.reference.sequence_forward / sequence_backward
(reverse=False, the same lengths) computed in float64.

Loop-order data, lengths never increasing over the batch (the Numba kernels run it as one
group), zeros and T among them. Every cell code (LSTM plain, with peepholes, with projection,
with both; GRU codes 1 and 2; RNN tanh and relu) in training (K = T gates, T+1 c slots; then
the backward) and in inference (2-slot c, K < T gates scratch), float32 and float64. The grid
is small: Numba compiles one forward and one backward per dtype, which is most of the time.
"""
import numpy as np
import pytest

from conftest import assert_close
from fastlstm._kernels import numba_recurrent_backward as nb_bwd
from fastlstm._kernels import numba_recurrent_forward as nb_fwd
from fastlstm.reference import sequence_backward, sequence_forward

TOL = {np.float32: 1e-4, np.float64: 1e-10}

# (name, reference cell, code, options, peepholes, projection P)
CELLS = [
    ("lstm", "lstm", 0, {}, False, 0),
    ("lstm-peep", "lstm", 0, {}, True, 0),
    ("lstm-proj", "lstm", 0, {}, False, 3),
    ("lstm-peep-proj", "lstm", 0, {}, True, 2),
    ("gru-linear-before-reset", "gru", 1, {"linear_before_reset": True}, False, 0),
    ("gru-reset-before", "gru", 2, {"linear_before_reset": False}, False, 0),
    ("rnn-tanh", "rnn", 3, {"nonlinearity": "tanh"}, False, 0),
    ("rnn-relu", "rnn", 4, {"nonlinearity": "relu"}, False, 0),
]

# (T, B, I, H, lengths (never increasing), K of the inference run)
SHAPES = {
    "ragged": (5, 4, 3, 5, [5, 3, 1, 0], 2),        # zeros and T; H not a multiple of 8
    "short": (6, 3, 7, 3, [4, 4, 0], 4),            # no row runs to T: the loop ends early
    "all-T": (3, 2, 2, 9, [3, 3], 1),
    "T1-B1": (1, 1, 4, 2, [1], 1),
    "empty": (2, 1, 3, 4, [0], 1),                  # no row runs at all
    "long": (40, 3, 2, 3, [40, 17, 0], 6),          # longer: chunks, rows ending mid-chunk
    "batch-9": (4, 9, 3, 6, [4, 4, 4, 3, 3, 2, 1, 1, 0], 2),  # walks of >= WALK_BLAS_ROWS rows
}


def gate_widths(code, H):
    """(G, Gs) of CONTRACT.md's table."""
    return {0: (4 * H, 4 * H), 1: (3 * H, 4 * H), 2: (3 * H, 4 * H)}.get(code, (H, H))


def make_case(cell, shape, dtype, seed=0):
    """Random parameters, states and output gradients: float64 arrays holding values exact in
    `dtype` (so the reference sees exactly the kernel's inputs)."""
    name, ref_cell, code, options, peep, P = cell
    T, B, I, H, lengths, K = SHAPES[shape]
    rng = np.random.default_rng([seed, code, P, int(peep), T, B, I, H,
                                 np.dtype(dtype).itemsize])
    G, _ = gate_widths(code, H)
    Hout = P if P else H
    k = 1 / np.sqrt(H)

    def r(*s, scale=1.0):
        return (scale * rng.standard_normal(s)).astype(dtype).astype(np.float64)

    def u(*s):
        return rng.uniform(-k, k, s).astype(dtype).astype(np.float64)

    params = dict(w_ih=u(G, I), w_hh=u(G, Hout), b_ih=u(G), b_hh=u(G))
    if P:
        params["w_hr"] = u(P, H)
    if peep:
        params["peepholes"] = u(3, H)
    lengths = np.array(lengths, dtype=np.int64)
    valid = (np.arange(T)[:, None] < lengths)[:, :, None]
    state0 = (r(B, Hout),) + ((r(B, H),) if ref_cell == "lstm" else ())
    d_state = (r(B, Hout),) + ((r(B, H),) if ref_cell == "lstm" else ())
    return dict(cell=cell, T=T, B=B, I=I, H=H, P=P, G=G, K=K, Hout=Hout, dtype=dtype,
                lengths=lengths, valid=valid, params=params, options=options,
                x=np.where(valid, r(T, B, I), 0), dy=np.where(valid, r(T, B, Hout), 0),
                state0=state0, d_state=d_state)


def kernel_params(case):
    """w_ih, w_hh, w_hr, bias (folded as CONTRACT.md says), peep in the kernel's dtype."""
    p, dt, H, code = case["params"], case["dtype"], case["H"], case["cell"][2]
    bias = np.zeros((2, case["G"]))
    if code == 1:   # GRU linear before reset: b_hn stays on the recurrent side
        bias[0, :2 * H] = p["b_ih"][:2 * H] + p["b_hh"][:2 * H]
        bias[0, 2 * H:] = p["b_ih"][2 * H:]
        bias[1, 2 * H:] = p["b_hh"][2 * H:]
    else:
        bias[0] = p["b_ih"] + p["b_hh"]
    w_hr = p.get("w_hr", np.zeros((0, H)))
    peep = p.get("peepholes", np.zeros((0, H)))
    return tuple(np.ascontiguousarray(a, dtype=dt)
                 for a in (p["w_ih"], p["w_hh"], w_hr, bias, peep))


def run_forward(case, training, fill=0.0, fill_x=None, team=None, rows=None):
    """The forward kernel on fresh buffers; `fill` goes where the contract promises zeros
    (padding of h, gates, c; of x too unless fill_x is given) to show that the kernel neither
    reads nor writes there. team, rows: the team and its decomposition forced (None: the
    kernel's rules)."""
    T, B, H, Hout, dt = (case[k] for k in ("T", "B", "H", "Hout", "dtype"))
    code = case["cell"][2]
    G, Gs = gate_widths(code, H)
    valid = case["valid"]
    w_ih, w_hh, w_hr, bias, peep = kernel_params(case)
    x = np.where(valid, case["x"], fill if fill_x is None else fill_x).astype(dt)
    K = T if training else case["K"]
    h = np.full((T + 1, B, Hout), fill, dt)
    h[0] = case["state0"][0]
    if code == 0:
        c = np.full((T + 1 if training else 2, B, H), fill, dt)
        c[0] = case["state0"][1]
    else:
        c = np.zeros((0, B, H), dt)
    gates = np.full((K, B, Gs), fill if training else np.nan, dt)
    W = 3 * H if code in (1, 2) else (H if case["P"] else 0)
    work = np.full((B, W), np.nan, dt)
    nb_fwd.forward(code, x, w_ih, w_hh, w_hr, bias, peep, case["lengths"], h, c, gates, work,
                   team=team, rows=rows)
    return dict(x=x, w_ih=w_ih, w_hh=w_hh, w_hr=w_hr, peep=peep, h=h, c=c, gates=gates)


def reference(case):
    """The reference's y, final state, tape and gradients in float64."""
    name, ref_cell, code, options, peep, P = case["cell"]
    y, state_n, tape = sequence_forward(ref_cell, case["params"], case["x"], case["state0"],
                                        case["lengths"], reverse=False, **options)
    grads = sequence_backward(tape, case["dy"], case["d_state"])
    return y, state_n, tape, grads


def masked(a, valid):
    return np.where(valid, a, 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("cell", CELLS, ids=[c[0] for c in CELLS])
def test_training_forward_and_backward(cell, shape, dtype):
    case = make_case(cell, shape, dtype)
    tol = TOL[dtype]
    T, B, H, P, Hout, G = (case[k] for k in ("T", "B", "H", "P", "Hout", "G"))
    code = cell[2]
    valid, lengths = case["valid"], case["lengths"]
    y, state_n, tape, grads = reference(case)
    out = run_forward(case, training=True)
    h, c, gates = out["h"], out["c"], out["gates"]

    # forward: h[s+1] is y[s] (zeros past each row's length), gates and c of the valid steps
    assert_close(h[0], case["state0"][0], 0, "h[0]")
    assert_close(h[1:], y, tol, "h")
    assert_close(gates, masked(tape.gates, valid), tol, "gates")
    assert_close(h[lengths, np.arange(B)], state_n[0], tol, "h_n")
    if code == 0:
        c_ref = np.stack([s[1] for s in tape.states[1:]])
        assert_close(c[1:], masked(c_ref, valid), tol, "c")
        assert_close(c[lengths, np.arange(B)], state_n[1], tol, "c_n")

    # backward on the kernel's own tape, buffers as CONTRACT.md says; dA and dhp start as NaN
    # to show that the kernel writes all of them (zeros past each row's length)
    dt = dtype
    dy = case["dy"].astype(dt)
    dh = case["d_state"][0].astype(dt)
    dc = case["d_state"][1].astype(dt) if code == 0 else np.zeros((0, H), dt)
    _, Gs = gate_widths(code, H)
    dA = np.full((T, B, Gs), np.nan, dt)
    dhp = np.full((T, B, P), np.nan, dt) if P else np.zeros((0, B, 0), dt)
    dx = np.full((T, B, case["I"]), np.nan, dt)
    dw_ih = np.full((G, case["I"]), np.nan, dt)
    dw_hh = np.full((G, Hout), np.nan, dt)
    db_ih = np.full(G, np.nan, dt)
    db_hh = np.full(G, np.nan, dt)
    work = np.full((B, H), np.nan, dt)
    nb_bwd.backward(code, out["x"], out["w_ih"], out["w_hh"], out["w_hr"], out["peep"], lengths,
                    h, c, gates, dy, dh, dc, dA, dhp, dx, dw_ih, dw_hh, db_ih, db_hh, work)

    assert not np.any(masked(dA, ~valid)), "dA is not zero past each row's length"
    assert_close(dx, grads["x"], tol, "dx")
    assert_close(dw_ih, grads["w_ih"], tol, "dw_ih")
    assert_close(dw_hh, grads["w_hh"], tol, "dw_hh")
    assert_close(db_ih, grads["b_ih"], tol, "db_ih")
    assert_close(db_hh, grads["b_hh"], tol, "db_hh")
    assert_close(dh, grads["h0"], tol, "dh_0")
    if code == 0:
        assert_close(dc, grads["c0"], tol, "dc_0")
        c64, dA64 = c.astype(np.float64), dA.astype(np.float64)
        if P:   # the Python layer's products: dW_hr = dhp^T (o * tanh(c))
            assert not np.any(masked(dhp, ~valid)), "dhp is not zero past each row's length"
            o_tc = gates[..., 3 * H:].astype(np.float64) * np.tanh(c64[1:])
            dw_hr = dhp.astype(np.float64).reshape(-1, P).T @ o_tc.reshape(-1, H)
            assert_close(dw_hr, grads["w_hr"], tol, "dw_hr")
        if cell[4]:   # peepholes: dp_i, dp_f against c_{t-1}, dp_o against c_t
            dp = np.stack([(dA64[..., :H] * c64[:-1]).sum((0, 1)),
                           (dA64[..., H:2 * H] * c64[:-1]).sum((0, 1)),
                           (dA64[..., 3 * H:] * c64[1:]).sum((0, 1))])
            assert_close(dp, grads["peepholes"], tol, "d peepholes")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", ["ragged", "short", "T1-B1"])
@pytest.mark.parametrize("cell", CELLS, ids=[c[0] for c in CELLS])
def test_inference_two_slot_c_and_chunked_gates(cell, shape, dtype):
    """K < T gates scratch and 2-slot c: h as in training, row b's final c in
    c[lengths[b] % 2]; the padding (here NaN instead of zeros) is never read or written."""
    case = make_case(cell, shape, dtype, seed=1)
    tol = TOL[dtype]
    B, code, valid, lengths = case["B"], cell[2], case["valid"], case["lengths"]
    y, state_n, tape, _ = reference(case)
    out = run_forward(case, training=False, fill=np.nan)
    h = out["h"]
    assert_close(h[1:][np.broadcast_to(valid, h[1:].shape)],
                 y[np.broadcast_to(valid, y.shape)], tol, "h (valid steps)")
    assert np.isnan(h[1:][~np.broadcast_to(valid, h[1:].shape)]).all(), "padding of h touched"
    assert_close(h[lengths, np.arange(B)], state_n[0], tol, "h_n")
    if code == 0:
        assert_close(out["c"][lengths % 2, np.arange(B)], state_n[1], tol, "c_n")


@pytest.mark.parametrize("cell", CELLS[:1] + CELLS[4:6], ids=["lstm", "gru1", "gru2"])
def test_training_padding_untouched(cell):
    """In training the kernel writes gates, h, c only at valid steps: NaN where the contract
    promises zeros (padding of h, c, gates) stays NaN, the padding of x (here 1, so that its
    projection would show in the padding of gates) is not read, and the valid values are
    unchanged."""
    case = make_case(cell, "ragged", np.float64, seed=2)
    code, valid = cell[2], case["valid"]
    clean = run_forward(case, training=True)
    dirty = run_forward(case, training=True, fill=np.nan, fill_x=1.0)
    pad = ~np.broadcast_to(valid, clean["gates"].shape)
    assert np.isnan(dirty["gates"][pad]).all(), "padding of gates touched"
    assert_close(np.where(pad, 0, dirty["gates"]), clean["gates"], 0, "gates")
    hpad = ~np.broadcast_to(valid, clean["h"][1:].shape)
    assert np.isnan(dirty["h"][1:][hpad]).all(), "padding of h touched"
    assert_close(np.where(hpad, 0, dirty["h"][1:]), clean["h"][1:], 0, "h")
    if code == 0:
        cpad = ~np.broadcast_to(valid, clean["c"][1:].shape)
        assert np.isnan(dirty["c"][1:][cpad]).all(), "padding of c touched"


def test_rejects_inconsistent_buffers():
    case = make_case(CELLS[0], "ragged", np.float64)
    out = run_forward(case, training=True)
    args = (0, out["x"], out["w_ih"], out["w_hh"], out["w_hr"], kernel_params(case)[3],
            out["peep"], case["lengths"], out["h"], out["c"], out["gates"],
            np.zeros((case["B"], 0)))
    with pytest.raises(ValueError, match="inconsistent buffer shapes"):
        nb_fwd.forward(1, *args[1:])                          # LSTM buffers for a GRU
    with pytest.raises(ValueError, match="lengths increase"):
        nb_fwd.forward(*args[:7], case["lengths"][::-1].copy(), *args[8:])
    with pytest.raises(TypeError):
        nb_fwd.forward(*args[:1], out["x"].astype(np.float32), *args[2:])


def test_no_allocation_in_the_time_loop():
    """Numba's allocation count per call does not grow with T: the argument wrappers and one
    small array before the loops, nothing per step (NRT statistics)."""
    from numba.core.runtime import _nrt_python, rtsys
    if not hasattr(_nrt_python, "memsys_enable_stats"):
        pytest.skip("this Numba cannot switch its allocation statistics on")
    was_enabled = _nrt_python.memsys_stats_enabled()
    _nrt_python.memsys_enable_stats()
    try:
        counts = []
        for shape in ("ragged", "long"):
            for cell in CELLS:
                case = make_case(cell, shape, np.float64)
                per_call = []
                for _ in range(2):   # the first call may compile
                    before = rtsys.get_allocation_stats()
                    out = run_forward(case, training=True)
                    mid = rtsys.get_allocation_stats()
                    T, B, H, P = case["T"], case["B"], case["H"], case["P"]
                    dt, Gs = np.float64, gate_widths(cell[2], H)[1]
                    dc = (np.ones((B, H)) if cell[2] == 0 else np.zeros((0, H)))
                    nb_bwd.backward(cell[2], out["x"], out["w_ih"], out["w_hh"], out["w_hr"],
                                    out["peep"], case["lengths"], out["h"], out["c"],
                                    out["gates"], np.zeros((0, B, case["Hout"])),
                                    np.ones((B, case["Hout"])), dc, np.empty((T, B, Gs)),
                                    np.empty((T, B, P)) if P else np.zeros((0, B, 0), dt),
                                    np.empty(out["x"].shape), np.empty(out["w_ih"].shape),
                                    np.empty(out["w_hh"].shape), np.empty(case["G"]),
                                    np.empty(case["G"]), np.empty((B, H)))
                    after = rtsys.get_allocation_stats()
                    per_call.append((mid.alloc - before.alloc, after.alloc - mid.alloc))
                counts.append(per_call[-1])
        assert len(set(counts)) == 1, f"allocations per (forward, backward) call: {counts}"
    finally:
        if not was_enabled:
            _nrt_python.memsys_disable_stats()


# The column split (numba_recurrent_forward.forward_team on a numba_team team of threads):
# every cell on teams of 1, 2 and 3 threads, at a hidden size of several chunks of units that
# is not a whole number of them (so that each thread's slice and the last, short one are
# exercised) and with a projection wider than one chunk.
TEAM_SHAPES = {
    "team-ragged": (7, 3, 5, 37, [7, 4, 0], 3),     # 3 chunks of units, the last short
    "team-B1": (5, 1, 4, 40, [5], 5),
    "team-B5": (6, 5, 3, 29, [6, 6, 5, 2, 1], 6),   # tiles of 3 rows and of 2
}
SHAPES.update(TEAM_SHAPES)
TEAM_CELLS = CELLS + [("lstm-peep-wide-proj", "lstm", 0, {}, True, 21)]


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", list(TEAM_SHAPES))
@pytest.mark.parametrize("cell", TEAM_CELLS, ids=[c[0] for c in TEAM_CELLS])
def test_column_split_teams(cell, shape, dtype, training):
    """The column split on teams of 2 and 3 threads gives bit for bit what one thread gives;
    groups of rows on 2 and 3 threads give it to rounding; all of them the reference."""
    case = make_case(cell, shape, dtype, seed=3)
    B = case["B"]
    y, state_n, tape, _ = reference(case)
    keys = ("h", "c", "gates") if training else ("h", "c")
    one = run_forward(case, training=training, team=1)
    valid = np.broadcast_to(case["valid"], one["h"][1:].shape)
    for team in (2, 3):
        split = run_forward(case, training=training, team=team, rows=False)
        for key in keys:
            np.testing.assert_array_equal(split[key], one[key], err_msg=f"{key}, team {team}")
        rows = run_forward(case, training=training, team=team, rows=True)
        for key in keys:
            assert_close(rows[key], one[key], TOL[dtype], f"{key}, rows on {team}")
        for out in (split, rows):
            assert_close(out["h"][1:][valid], y[valid], TOL[dtype], "h (valid steps)")
            assert_close(out["h"][case["lengths"], np.arange(B)], state_n[0], TOL[dtype], "h_n")


def test_column_split_rule():
    """team_size: one thread for small steps or calls; by_rows: the split for few rows per
    thread (as many as w_hh has 512 KiB, at least one), groups of rows beyond."""
    assert nb_fwd.team_size(2, 100, 1, 0, 64, 64) == 1            # 16K multiply-adds a step
    assert nb_fwd.team_size(2, 100, 1, 0, 256, 256) == 2
    assert nb_fwd.team_size(1, 100, 1, 0, 512, 512) == 1
    assert nb_fwd.team_size(8, 100, 1, 0, 20, 20) == 1            # 6.4K a step
    assert nb_fwd.team_size(2, 1, 1, 0, 512, 512) == 1            # one step: not worth a team
    assert not nb_fwd.by_rows(2, 1, 0, 256, 256, 4)               # B=1: the split
    assert not nb_fwd.by_rows(2, 4, 0, 256, 256, 4)               # w_hh 1 MiB: 2 rows a thread
    assert nb_fwd.by_rows(2, 6, 0, 256, 256, 4)
    assert nb_fwd.by_rows(2, 32, 0, 128, 128, 4)
    assert nb_fwd.by_rows(3, 2, 0, 20, 20, 4)                     # two chunks for three threads


@pytest.mark.parametrize("lengths", [[7, 4, 0], [9, 9, 9, 9, 9], [200, 1, 1, 1], [0, 0],
                                     [5], [6, 6, 5, 2, 1], list(range(40, 0, -1))])
def test_share_rows_by_lengths(lengths):
    """The walk's blocks of rows: contiguous, in order, covering the batch once on every team
    size (threads beyond the rows get none); each block's steps within one row's length of an
    equal share; share_rows when every length is 0."""
    lengths = np.array(lengths, dtype=np.int64)
    B, total = lengths.size, int(lengths.sum())
    for team in (1, 2, 3, 4, 7):
        blocks = [nb_fwd.share_rows_by_lengths(lengths, tid, team) for tid in range(team)]
        assert blocks[0][0] == 0, blocks
        for (f0, n0), (f1, _) in zip(blocks, blocks[1:]):
            assert n0 >= 0 and f0 + n0 == f1, blocks
        assert sum(n for _, n in blocks) == B, blocks
        if total == 0:
            assert blocks == [nb_fwd.share_rows(B, tid, team) for tid in range(team)]
            continue
        longest = int(lengths.max())
        for first, n in blocks:
            steps = int(lengths[first:first + n].sum())
            assert steps <= total / team + longest, (team, blocks)


@pytest.mark.parametrize("shape", [(3, 5), (300, 250), (97, 1031)])
def test_transposes(shape):
    """numba_transpose.transpose_rows with an index of some rows and with every row, against
    NumPy."""
    from fastlstm._kernels import numba_transpose as nb_tr

    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    R, C = shape
    for rows in (np.flatnonzero(np.arange(R) % 3 != 1).astype(np.intp), np.arange(R)):
        out = np.full((C - 1, R), np.nan, np.float32)
        nb_tr.transpose_rows(a, rows, 0, rows.size, 1, C - 1, out)
        np.testing.assert_array_equal(out[:, :rows.size], a[rows, 1:].T)


def test_running_rows():
    """running_rows: the rows t*B + b with lengths[b] > t, increasing; every row when the
    batch is padded to T."""
    got = nb_bwd.running_rows(np.array([3, 1, 0], dtype=np.int64), 3)
    np.testing.assert_array_equal(got, [0, 1, 3, 6])
    assert got.dtype == np.intp
    np.testing.assert_array_equal(nb_bwd.running_rows(np.full(4, 5, np.int64), 5), np.arange(20))


def run_backward(case, out, team, rows=None):
    """The backward kernel on the forward's tape `out`, its team (and decomposition) forced;
    the gradients."""
    T, B, H, P, Hout, G, dt = (case[k] for k in ("T", "B", "H", "P", "Hout", "G", "dtype"))
    code = case["cell"][2]
    _, Gs = gate_widths(code, H)
    dh = case["d_state"][0].astype(dt)
    dc = case["d_state"][1].astype(dt) if code == 0 else np.zeros((0, H), dt)
    grads = dict(dA=np.full((T, B, Gs), np.nan, dt),
                 dhp=np.full((T, B, P), np.nan, dt) if P else np.zeros((0, B, 0), dt),
                 dx=np.full((T, B, case["I"]), np.nan, dt),
                 dw_ih=np.full((G, case["I"]), np.nan, dt), dw_hh=np.full((G, Hout), np.nan, dt),
                 db_ih=np.full(G, np.nan, dt), db_hh=np.full(G, np.nan, dt))
    nb_bwd.backward(code, out["x"], out["w_ih"], out["w_hh"], out["w_hr"], out["peep"],
                    case["lengths"], out["h"], out["c"], out["gates"], case["dy"].astype(dt),
                    dh, dc, grads["dA"], grads["dhp"], grads["dx"], grads["dw_ih"],
                    grads["dw_hh"], grads["db_ih"], grads["db_hh"], np.full((B, H), np.nan, dt),
                    team=team, rows=rows)
    return dict(grads, dh=dh, dc=dc)


#: the walk's outputs, and the products after it (shared out by rows of dx and of dW, whose
#: tiles of 1-3 rows fall differently on other team sizes: equal to rounding)
WALK_KEYS = ("dA", "dhp", "dh", "dc")
PRODUCT_KEYS = ("dx", "dw_ih", "dw_hh", "db_ih", "db_hh")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", list(TEAM_SHAPES))
@pytest.mark.parametrize("cell", TEAM_CELLS, ids=[c[0] for c in TEAM_CELLS])
def test_backward_column_split(cell, shape, dtype):
    """The backward's walk under the column split (each thread its units' pointwise pass and
    its columns of dh, barriers between the phases) on teams of 2 and 3 threads: the walk's
    outputs (dA, dhp, dh_0, dc_0) bit for bit what one thread gives (its walk by rows), the
    products after it to rounding; all of them the reference's."""
    case = make_case(cell, shape, dtype, seed=5)
    _, _, _, grads = reference(case)
    out = run_forward(case, training=True)
    one = run_backward(case, out, 1)
    for team in (2, 3):
        split = run_backward(case, out, team, rows=False)
        for key in WALK_KEYS:
            np.testing.assert_array_equal(split[key], one[key], err_msg=f"{key}, team {team}")
        for key in PRODUCT_KEYS:
            assert_close(split[key], one[key], TOL[dtype], f"{key}, team {team}")
    tol = TOL[dtype]
    for key, ref in (("dx", "x"), ("dw_ih", "w_ih"), ("dw_hh", "w_hh"), ("dh", "h0")):
        assert_close(split[key], grads[ref], tol, f"{key}, column split")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", ["team-ragged", "team-B5", "batch-9", "T1-B1"])
@pytest.mark.parametrize("cell", TEAM_CELLS, ids=[c[0] for c in TEAM_CELLS])
def test_backward_teams(cell, shape, dtype):
    """The backward on teams of 1-3 threads (the walk by groups of rows, then the products
    shared by rows of dx and gate rows of dW): the reference's gradients to rounding, dA zero
    past each row's length, and teams larger than the batch (threads without rows)."""
    case = make_case(cell, shape, dtype, seed=4)
    tol, code, valid = TOL[dtype], cell[2], case["valid"]
    _, _, _, grads = reference(case)
    out = run_forward(case, training=True)
    for team in (1, 2, 3):
        got = run_backward(case, out, team)
        assert not np.any(masked(got["dA"], ~valid)), f"dA past the lengths, team {team}"
        for key, ref in (("dx", "x"), ("dw_ih", "w_ih"), ("dw_hh", "w_hh"), ("db_ih", "b_ih"),
                         ("db_hh", "b_hh"), ("dh", "h0")):
            assert_close(got[key], grads[ref], tol, f"{key}, team {team}")
        if code == 0:
            assert_close(got["dc"], grads["c0"], tol, f"dc_0, team {team}")
