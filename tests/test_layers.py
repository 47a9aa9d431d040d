"""fastlstm.LSTM / GRU / RNN (fastlstm.layers): stacks of layers and directions as torch.nn.

- Parity with torch.nn.LSTM / GRU / RNN (float64 autograd as the yardstick) over a sampled grid
  of options (layers 1-3, bidirectional, proj_size, batch_first, unbatched, bias, hx, unsorted
  lengths with a 0-length row, which dy/dhx are given), every dtype and backend: outputs, final
  states and every gradient (dx, dhx, each parameter), the torch module's state_dict loaded as
  tensors. Rows of length 0 (torch cannot pack them) are checked on their own: y = 0,
  h_n = h0, dx = 0, dh0 = dh_n, and they change no parameter gradient.
- state_dict: torch's key order, copies, round trip, errors leaving the module unchanged.
- Constructor errors; eval() = dropout 0; training dropout checked by finite differences with
  the same mask.
"""
import itertools

import numpy as np
import pytest

import fastlstm
from conftest import assert_close

torch = pytest.importorskip("torch")

BACKENDS = fastlstm.available_backends()
DTYPES = (np.float32, np.float64)
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}
KINDS = ("lstm", "gru", "rnn")
CLASSES = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}
TORCH_CLASSES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


# --------------------------------------------------------------------------------------------
# the sampled grid

def _sample_cases(kind, n, seed):
    """n option sets for `kind`: a few fixed hard ones, the rest a seeded sample of the grid."""
    grid = list(itertools.product(
        (1, 2, 3),                                  # num_layers
        (False, True),                              # bidirectional
        (0, 2) if kind == "lstm" else (0,),         # proj_size
        ("time", "batch_first", "unbatched"),       # layout
        (True, False),                              # bias
        (True, False),                              # hx given
        ("none", "unsorted", "with_zero"),          # lengths
        ("both", "dy", "dhx"),                      # which output gradients are given
    ))
    fixed = [(3, True, 2 if kind == "lstm" else 0, "batch_first", False, True, "with_zero",
              "both"),
             (2, True, 0, "time", True, False, "unsorted", "dy"),
             (1, False, 0, "unbatched", True, True, "none", "dhx")]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(grid), size=n - len(fixed), replace=False)
    cases = fixed + [grid[i] for i in picks]
    # an unbatched input has no lengths here (its one row is checked by the batched cases)
    return [c if c[3] != "unbatched" else c[:6] + ("none",) + c[7:] for c in cases]


def _case_id(c):
    L, bi, proj, layout, bias, hx, lengths, grads = c
    return (f"L{L}{'-bi' if bi else ''}{f'-p{proj}' if proj else ''}-{layout}"
            f"{'' if bias else '-nobias'}{'-hx' if hx else ''}-len_{lengths}-g_{grads}")


CASES = [(kind, c) for i, kind in enumerate(KINDS) for c in _sample_cases(kind, 10, 100 + i)]


def _torch_module(kind, I, H, L, bias, bi, proj):
    cls = getattr(torch.nn, TORCH_CLASSES[kind])
    kwargs = dict(num_layers=L, bias=bias, bidirectional=bi)
    if proj:
        kwargs["proj_size"] = proj
    torch.manual_seed(0)
    tm = cls(I, H, **kwargs).double()
    with torch.no_grad():   # weights exactly representable in float32: one yardstick for both
        for p in tm.parameters():
            p.copy_(p.float().double() * 2.0)   # a bit larger than torch's init: livelier gates
    return tm


def _torch_run(tm, kind, x, h0, c0, lengths, dy, dh_n, dc_n):
    """torch float64 forward + autograd, time-major, over the rows with length >= 1.

    Returns y, h_n, c_n, dx, dh0, dc0, {param name: grad} (NumPy float64)."""
    x_t = torch.tensor(x, requires_grad=True)
    h0_t = torch.tensor(h0, requires_grad=True)
    c0_t = torch.tensor(c0, requires_grad=True) if kind == "lstm" else None
    hx = (h0_t, c0_t) if kind == "lstm" else h0_t
    tm.zero_grad()
    if lengths is None:
        y, out_states = tm(x_t, hx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x_t, torch.tensor(lengths), enforce_sorted=False)
        y_p, out_states = tm(packed, hx)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y_p, total_length=x.shape[0])
    h_n, c_n = out_states if kind == "lstm" else (out_states, None)
    loss = (y * torch.tensor(dy)).sum() + (h_n * torch.tensor(dh_n)).sum()
    if kind == "lstm":
        loss = loss + (c_n * torch.tensor(dc_n)).sum()
    loss.backward()
    np_ = lambda t: None if t is None else t.detach().numpy().copy()   # noqa: E731
    grads = {k: np_(p.grad) for k, p in tm.named_parameters()}
    return (np_(y), np_(h_n), np_(c_n), np_(x_t.grad), np_(h0_t.grad),
            np_(c0_t.grad) if kind == "lstm" else None, grads)


def _lengths_for(mode, B, T, rng):
    if mode == "none":
        return None
    lengths = rng.integers(1, T + 1, size=B)
    lengths[rng.integers(B)] = T
    if mode == "with_zero":
        lengths[rng.integers(B)] = 0
    if sorted(lengths, reverse=True) == list(lengths):   # make sure they are unsorted
        lengths = lengths[::-1].copy()
    return lengths


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind,case", CASES, ids=[f"{k}-{_case_id(c)}" for k, c in CASES])
def test_parity_with_torch(kind, case, dtype, backend):
    L, bi, proj, layout, bias, hx_given, len_mode, grads_given = case
    T, B, I, H = 5, 4, 3, 4
    D = 2 if bi else 1
    H_out = proj or H
    rng = np.random.default_rng(7)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32).astype(np.float64)  # noqa
    unbatched = layout == "unbatched"
    Bt = 1 if unbatched else B
    x = f32(T, Bt, I)
    h0 = f32(L * D, Bt, H_out) if hx_given else np.zeros((L * D, Bt, H_out))
    c0 = f32(L * D, Bt, H) if hx_given else np.zeros((L * D, Bt, H))
    dy = f32(T, Bt, D * H_out) if grads_given != "dhx" else np.zeros((T, Bt, D * H_out))
    dh_n = f32(L * D, Bt, H_out) if grads_given != "dy" else np.zeros((L * D, Bt, H_out))
    dc_n = f32(L * D, Bt, H) if grads_given != "dy" else np.zeros((L * D, Bt, H))
    lengths = _lengths_for(len_mode, Bt, T, rng)

    tm = _torch_module(kind, I, H, L, bias, bi, proj)
    m = CLASSES[kind](I, H, L, bias=bias, batch_first=layout == "batch_first",
                      bidirectional=bi, dtype=dtype, backend=backend,
                      **({"proj_size": proj} if proj else {}))
    m.load_state_dict(tm.state_dict())   # torch tensors directly

    # --- fastlstm, in the case's layout
    def lay(a):   # time-major (T, B, n) -> the caller's layout
        a = a.astype(dtype)
        if unbatched:
            return a[:, 0]
        return a.transpose(1, 0, 2).copy() if layout == "batch_first" else a

    def unlay(a):  # caller's layout -> time-major
        if unbatched:
            return a[:, None]
        return a.transpose(1, 0, 2) if layout == "batch_first" else a

    st = (lambda a: a[:, 0].astype(dtype)) if unbatched else (lambda a: a.astype(dtype))
    hx = None
    if hx_given:
        hx = (st(h0), st(c0)) if kind == "lstm" else st(h0)
    y, out, tape = m.forward(lay(x), hx, lengths=lengths, return_tape=True)
    h_n, c_n = out if kind == "lstm" else (out, None)
    dhx = None
    if grads_given != "dy":
        dhx = (st(dh_n), st(dc_n)) if kind == "lstm" else st(dh_n)
    dx, dhx0, grads = m.backward(tape, lay(dy) if grads_given != "dhx" else None, dhx)
    dh0, dc0 = dhx0 if kind == "lstm" else (dhx0, None)
    for arr in (y, h_n, dx, dh0, *grads.values()):
        assert arr.dtype == dtype
    y, dx = unlay(y), unlay(dx)
    if unbatched:
        h_n, dh0 = h_n[:, None], dh0[:, None]
        c_n = None if c_n is None else c_n[:, None]
        dc0 = None if dc0 is None else dc0[:, None]

    # --- torch on the rows that have at least one step
    rows = np.arange(Bt) if lengths is None else np.flatnonzero(lengths > 0)
    t_y, t_hn, t_cn, t_dx, t_dh0, t_dc0, t_grads = _torch_run(
        tm, kind, x[:, rows], h0[:, rows], c0[:, rows],
        None if lengths is None else lengths[rows], dy[:, rows], dh_n[:, rows], dc_n[:, rows])
    tol = TOL[np.dtype(dtype)]
    assert_close(y[:, rows], t_y, tol, "y")
    assert_close(h_n[:, rows], t_hn, tol, "h_n")
    assert_close(dx[:, rows], t_dx, tol, "dx")
    assert_close(dh0[:, rows], t_dh0, tol, "dh0")
    if kind == "lstm":
        assert_close(c_n[:, rows], t_cn, tol, "c_n")
        assert_close(dc0[:, rows], t_dc0, tol, "dc0")
    assert list(grads) == list(t_grads)
    for key, g in grads.items():
        assert_close(g, t_grads[key], tol, f"grad {key}")
    if lengths is not None:   # padded steps are zeros
        for b in rows:
            assert not y[lengths[b]:, b].any() and not dx[lengths[b]:, b].any()
    # --- rows of length 0: y = 0, h_n = h0 (c_n = c0), dx = 0, dh0 = dh_n (dc0 = dc_n)
    zero = np.setdiff1d(np.arange(Bt), rows)
    if zero.size:
        assert not y[:, zero].any() and not dx[:, zero].any()
        np.testing.assert_array_equal(h_n[:, zero], st(h0)[:, zero])
        np.testing.assert_array_equal(dh0[:, zero], st(dh_n)[:, zero])
        if kind == "lstm":
            np.testing.assert_array_equal(c_n[:, zero], st(c0)[:, zero])
            np.testing.assert_array_equal(dc0[:, zero], st(dc_n)[:, zero])

    # the call without a tape gives the same outputs
    y2, _ = m(lay(x), hx, lengths)
    np.testing.assert_array_equal(unlay(y2), y)


# --------------------------------------------------------------------------------------------
# state_dict

def _module_pair(kind):
    kw = dict(num_layers=2, bidirectional=True)
    if kind == "lstm":
        kw["proj_size"] = 2
    return CLASSES[kind](3, 4, seed=1, **kw), getattr(torch.nn, TORCH_CLASSES[kind])(3, 4, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["time", "batch_first", "unbatched"])
@pytest.mark.parametrize("kind", KINDS)
def test_backward_without_input_gradient(kind, layout, backend):
    """m.backward(..., input_grad=False): dx is None, the initial states' and the parameters'
    gradients are bit for bit those of the full backward (3 layers, bidirectional, dropout in
    training mode: the tape's masks)."""
    m = CLASSES[kind](3, 5, num_layers=3, bidirectional=True, dropout=0.3, seed=2,
                      batch_first=layout == "batch_first", backend=backend)
    rng = np.random.default_rng(3)
    shape = {"time": (6, 2, 3), "batch_first": (2, 6, 3), "unbatched": (6, 3)}[layout]
    x = rng.standard_normal(shape).astype(np.float32)
    y, _, tape = m.forward(x, return_tape=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dhx, grads = m.backward(tape, dy)
    none, dhx_part, grads_part = m.backward(tape, dy, input_grad=False)
    assert dx.shape == x.shape and none is None
    for a, b in zip(dhx if kind == "lstm" else (dhx,),
                    dhx_part if kind == "lstm" else (dhx_part,)):
        np.testing.assert_array_equal(b, a)
    assert list(grads_part) == list(grads)
    for key, g in grads.items():
        np.testing.assert_array_equal(grads_part[key], g, err_msg=key)


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_keys_order_shapes_and_init(kind):
    m, tm = _module_pair(kind)
    sd, tsd = m.state_dict(), tm.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        assert sd[k].shape == tuple(tsd[k].shape) and sd[k].dtype == np.float32
    values = np.concatenate([v.ravel() for v in sd.values()])   # U(-1/sqrt(4), 1/sqrt(4))
    assert np.abs(values).max() <= 0.5 and values.min() < -0.45 and values.max() > 0.45
    assert abs(values.mean()) < 0.05
    again = CLASSES[kind](3, 4, seed=1, num_layers=2, bidirectional=True,
                          **({"proj_size": 2} if kind == "lstm" else {}))
    for k, v in again.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    nobias = CLASSES[kind](3, 4, bias=False)
    assert list(nobias.state_dict()) == list(getattr(torch.nn, TORCH_CLASSES[kind])(
        3, 4, bias=False).state_dict())


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip_and_copies(kind):
    m, _ = _module_pair(kind)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    y_before = m(x)[0]
    sd = m.state_dict()
    for v in sd.values():
        v[...] = 0    # a copy: the module does not see it
    np.testing.assert_array_equal(m(x)[0], y_before)
    other = CLASSES[kind](3, 4, num_layers=2, bidirectional=True, seed=2,
                          **({"proj_size": 2} if kind == "lstm" else {}))
    src = m.state_dict()
    other.load_state_dict(src)
    for v in src.values():
        v[...] = 0    # load copies too
    np.testing.assert_array_equal(other(x)[0], y_before)
    # float64 arrays into a float32 module are converted
    m64 = CLASSES[kind](3, 4, num_layers=2, bidirectional=True, dtype="float64",
                        **({"proj_size": 2} if kind == "lstm" else {}))
    m64.load_state_dict(m.state_dict())
    assert all(v.dtype == np.float64 for v in m64.state_dict().values())
    assert_close(m64(x.astype(np.float64))[0], y_before, 1e-5)


def _expect_unchanged(m, d, exc, *fragments):
    before = m.state_dict()
    with pytest.raises(exc) as info:
        m.load_state_dict(d)
    for fragment in fragments:
        assert fragment in str(info.value)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("kind", KINDS)
def test_load_state_dict_errors(kind):
    m, tm = _module_pair(kind)
    good = {k: v * 0 + 1 for k, v in m.state_dict().items()}
    missing = dict(good)
    del missing["weight_hh_l1_reverse"]
    _expect_unchanged(m, missing, KeyError, "missing", "weight_hh_l1_reverse")
    extra = dict(good, weight_ih_l2=good["weight_ih_l1"])
    _expect_unchanged(m, extra, KeyError, "unexpected", "weight_ih_l2")
    bad_shape = dict(good, bias_hh_l0=np.ones(7, np.float32))
    exp = str(good["bias_hh_l0"].shape)
    _expect_unchanged(m, bad_shape, ValueError, "bias_hh_l0", exp, "(7,)")
    bad_type = dict(good, weight_ih_l0=good["weight_ih_l0"].astype(np.int64))
    _expect_unchanged(m, bad_type, TypeError, "weight_ih_l0", "int64")
    torch_bad = dict(tm.state_dict())
    torch_bad["weight_hh_l0"] = torch.zeros(3, 3)
    _expect_unchanged(m, torch_bad, ValueError, "weight_hh_l0", "(3, 3)")
    _expect_unchanged(m, [1, 2], TypeError, "state_dict")


# --------------------------------------------------------------------------------------------
# constructor and call errors

@pytest.mark.parametrize("cls,args,kwargs,exc,name", [
    (fastlstm.LSTM, (0, 4), {}, ValueError, "input_size"),
    (fastlstm.LSTM, (3, 2.5), {}, ValueError, "hidden_size"),
    (fastlstm.GRU, (3, 4, 0), {}, ValueError, "num_layers"),
    (fastlstm.RNN, (3, 4, 1, True), {}, ValueError, "nonlinearity"),
    (fastlstm.LSTM, (3, 4, True), {}, ValueError, "num_layers"),
    (fastlstm.LSTM, (3, 4), {"num_layers": -1}, ValueError, "num_layers"),
    (fastlstm.LSTM, (3, 4), {"dropout": 1.0}, ValueError, "dropout"),
    (fastlstm.GRU, (3, 4), {"dropout": -0.1}, ValueError, "dropout"),
    (fastlstm.LSTM, (3, 4), {"proj_size": 4}, ValueError, "proj_size"),
    (fastlstm.LSTM, (3, 4), {"proj_size": -1}, ValueError, "proj_size"),
    (fastlstm.GRU, (3, 4), {"proj_size": 2}, TypeError, "proj_size"),
    (fastlstm.RNN, (3, 4), {"nonlinearity": "sigmoid"}, ValueError, "nonlinearity"),
    (fastlstm.LSTM, (3, 4), {"bidirectional": "yes"}, TypeError, "bidirectional"),
    (fastlstm.LSTM, (3, 4), {"dtype": "int32"}, TypeError, "dtype"),
    (fastlstm.LSTM, (3, 4), {"backend": "cuda"}, ValueError, "backend"),
    (fastlstm.LSTM, (3, 4), {"seed": "x"}, TypeError, "seed"),
])
def test_constructor_errors(cls, args, kwargs, exc, name):
    with pytest.raises(exc, match=name):
        cls(*args, **kwargs)


def test_call_errors():
    m = fastlstm.LSTM(3, 4, num_layers=2)
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(TypeError, match="dtype"):
        m(x.astype(np.float64))
    with pytest.raises(ValueError, match="input_size"):
        m(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(TypeError, match="hx"):
        m(x, np.zeros((2, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"hx\[1\]"):
        m(x, (np.zeros((2, 2, 4), np.float32), np.zeros((1, 2, 4), np.float32)))
    with pytest.raises(ValueError, match="lengths"):
        m(x, lengths=[6, 1])
    y, _, tape = m.forward(x, return_tape=True)
    with pytest.raises(ValueError, match="dy"):
        m.backward(tape, np.zeros((5, 2, 3), np.float32))
    with pytest.raises(TypeError, match="tape"):
        fastlstm.GRU(3, 4, num_layers=2).backward(tape)


# --------------------------------------------------------------------------------------------
# dropout

@pytest.mark.parametrize("kind", KINDS)
def test_eval_is_dropout_free(kind):
    m = CLASSES[kind](3, 4, num_layers=3, dropout=0.5, bidirectional=True, seed=3)
    ref = CLASSES[kind](3, 4, num_layers=3, bidirectional=True).load_state_dict(m.state_dict())
    x = np.random.default_rng(1).standard_normal((6, 2, 3)).astype(np.float32)
    assert m.training
    y_train1, y_train2 = m(x)[0], m(x)[0]
    assert not np.array_equal(y_train1, y_train2)   # a new mask each call
    m.eval()
    y_eval = m(x)[0]
    np.testing.assert_array_equal(y_eval, m(x)[0])
    np.testing.assert_array_equal(y_eval, ref(x)[0])
    assert not np.array_equal(y_eval, y_train1)
    m.train()
    assert m.training
    # the same seed draws the same masks
    a = CLASSES[kind](3, 4, num_layers=3, dropout=0.5, bidirectional=True, seed=3)
    np.testing.assert_array_equal(a(x)[0], y_train1)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_gradients_by_finite_differences(kind):
    """Training mode with dropout: every gradient against central differences of
    L = sum(y dy) + sum(h_n dh_n) (+ sum(c_n dc_n)), the mask held fixed (same Generator state)."""
    L, I, H, T, B = 3, 2, 2, 3, 2
    m = CLASSES[kind](I, H, num_layers=L, dropout=0.4, bidirectional=True, dtype="float64",
                      seed=5, backend="numpy")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((T, B, I))
    lengths = np.array([2, 3])
    sd = m.state_dict()
    hx_shape = (L * 2, B, H)
    h0 = rng.standard_normal(hx_shape)
    c0 = rng.standard_normal(hx_shape)
    hx = (h0, c0) if kind == "lstm" else h0
    dy = rng.standard_normal((T, B, 2 * H))
    dh = rng.standard_normal(hx_shape)
    dc = rng.standard_normal(hx_shape)
    state = m._rng.bit_generator.state

    def loss(x_, hx_, params):
        m._rng.bit_generator.state = state     # the same masks every time
        m.load_state_dict(params)
        y, out = m(x_, hx_, lengths)
        if kind == "lstm":
            return (y * dy).sum() + (out[0] * dh).sum() + (out[1] * dc).sum()
        return (y * dy).sum() + (out * dh).sum()

    m._rng.bit_generator.state = state
    y, out, tape = m.forward(x, hx, lengths, return_tape=True)
    masks = [mk for mk in tape.masks if mk is not None]
    assert len(masks) == L - 1 and all((mk == 0).any() for mk in masks)
    dx, dhx0, grads = m.backward(tape, dy, (dh, dc) if kind == "lstm" else dh)
    eps = 1e-6

    def numeric(get, set_):
        base = get().copy()
        g = np.zeros_like(base)
        for i in np.ndindex(base.shape):
            vals = []
            for s in (eps, -eps):
                arr = base.copy()
                arr[i] += s
                vals.append(set_(arr))
            g[i] = (vals[0] - vals[1]) / (2 * eps)
        return g

    assert_close(dx, numeric(lambda: x, lambda a: loss(a, hx, sd)), 1e-7, "dx")
    if kind == "lstm":
        assert_close(dhx0[0], numeric(lambda: h0, lambda a: loss(x, (a, c0), sd)), 1e-7, "dh0")
        assert_close(dhx0[1], numeric(lambda: c0, lambda a: loss(x, (h0, a), sd)), 1e-7, "dc0")
    else:
        assert_close(dhx0, numeric(lambda: h0, lambda a: loss(x, a, sd)), 1e-7, "dh0")
    for key in sd:
        num = numeric(lambda: sd[key], lambda a: loss(x, hx, dict(sd, **{key: a})))
        assert_close(grads[key], num, 1e-7, f"grad {key}")


def test_bidirectional_directions_run_in_parallel():
    """A bidirectional cython stack large enough runs its two directions on two threads at
    once (one kernel thread each): the same numbers, bit for bit, as one direction after the
    other on one thread, forward and backward, and the NumPy backend's to 1e-10."""
    if "cython" not in fastlstm.available_backends():
        pytest.skip("cython backend not built")
    from fastlstm.layers import _stack

    T, B, I, H = 40, 8, 32, 64
    rng = np.random.default_rng(11)
    x = rng.standard_normal((T, B, I))
    results = {}
    for label, backend, n in (("parallel", "cython", 2), ("sequential", "cython", 1),
                              ("reference", "numpy", 1)):
        m = fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, dtype="float64", seed=3,
                          backend=backend)
        with fastlstm.threads(n):
            assert _stack._directions_in_parallel(m, x.shape, 2) == (label == "parallel")
            y, (h_n, c_n), tape = m.forward(x, lengths=[40, 3, 17, 0, 40, 25, 9, 31],
                                            return_tape=True)
            dx, (dh0, dc0), grads = m.backward(tape, np.ones_like(y))
        results[label] = [y, h_n, c_n, dx, dh0, dc0] + list(grads.values())
    for a, b in zip(results["parallel"], results["sequential"]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(results["parallel"], results["reference"]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * max(1.0, np.abs(b).max()))
