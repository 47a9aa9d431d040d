"""fastlstm.from_torch / Module.to_torch (fastlstm/interop/torch_models.py) against torch itself.

- torch.nn.LSTM / GRU / RNN -> fastlstm over a sampled grid of options (mode x layers x
  bidirectional x proj_size x layout (time-major, batch_first, unbatched) x bias x hx x
  unsorted lengths vs torch's packed sequences), every backend, float32 and float64: the
  configuration, training mode and weights carry over exactly, outputs and final states equal
  torch's; to_torch(from_torch(tm)) has tm's configuration and weights and gives tm's outputs
  bit for bit; tm is left unchanged and shares no memory with the result.
- Cells: one step equals the torch cell's call, with and without a state, and a stream of
  steps equals repeated cell calls.
- state_dicts of modules and cells (tensors or arrays): kind and sizes inferred, outputs equal
  torch's; prefix= for a submodule's keys; agreeing keyword arguments are accepted.
- fastlstm -> to_torch: torch's outputs equal fastlstm's; round trip back.
- Errors: what to_torch refuses, half precision without dtype=, contradicting arguments, wrong
  objects, broken state_dicts: each names the argument (or obj and the key) and leaves the
  input unchanged. fastlstm imports and reads a NumPy state_dict without importing torch.
"""
import copy
import itertools
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastlstm
from conftest import assert_close
from fastlstm.interop.torch_models import from_torch, to_torch

torch = pytest.importorskip("torch")

BACKENDS = fastlstm.available_backends()
DTYPES = (np.float32, np.float64)
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}
TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
MODES = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")
KIND = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}
T, B, I, H, P = 6, 4, 3, 5, 2
CONFIG_ATTRS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                "bidirectional")


# --------------------------------------------------------------------------------------------
# helpers

def _torch_module(mode, dtype, seed=0, **kwargs):
    """A torch.nn.LSTM / GRU / RNN (mode as torch's RNNBase.mode) of input size I, hidden H."""
    torch.manual_seed(seed)
    if mode.startswith("RNN"):
        kwargs["nonlinearity"] = mode[4:].lower()
        mode = "RNN"
    return getattr(torch.nn, mode)(I, H, dtype=TORCH_DTYPES[np.dtype(dtype)], **kwargs)


def _torch_cell(mode, dtype, bias=True, seed=0):
    torch.manual_seed(seed)
    td = TORCH_DTYPES[np.dtype(dtype)]
    if mode.startswith("RNN"):
        return torch.nn.RNNCell(I, H, bias=bias, nonlinearity=mode[4:].lower(), dtype=td)
    return getattr(torch.nn, mode + "Cell")(I, H, bias=bias, dtype=td)


def _torch_run(tm, x, hx, lengths):
    """tm's outputs as NumPy arrays: y, h_n, c_n (None for GRU / RNN); lengths via a packed
    sequence (enforce_sorted=False). torch's warning (once per process) that oneDNN has no
    projection LSTM is about torch's own kernels: it is ignored."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        xt = torch.from_numpy(x)
        if hx is not None:
            hx = tuple(map(torch.from_numpy, hx)) if isinstance(hx, tuple) \
                else torch.from_numpy(hx)
        if lengths is None:
            y, states = tm(xt, hx)
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                xt, torch.as_tensor(lengths), batch_first=tm.batch_first, enforce_sorted=False)
            y, states = tm(packed, hx)
            y, _ = torch.nn.utils.rnn.pad_packed_sequence(
                y, batch_first=tm.batch_first, total_length=x.shape[1 if tm.batch_first else 0])
    h_n, c_n = states if isinstance(states, tuple) else (states, None)
    return y.numpy(), h_n.numpy(), None if c_n is None else c_n.numpy()


def _fastlstm_run(m, x, hx, lengths):
    y, states = m(x, hx, lengths)
    h_n, c_n = states if m.kind == "lstm" else (states, None)
    return y, h_n, c_n


def _inputs(tm, layout, with_hx, with_lengths, dtype, seed):
    """x, hx (None, h or (h, c)) and lengths (None or unsorted, one row of length T)."""
    rng = np.random.default_rng(seed)
    D = 2 if tm.bidirectional else 1
    H_out = getattr(tm, "proj_size", 0) or tm.hidden_size
    shape = {"time": (T, B, I), "batch_first": (B, T, I), "unbatched": (T, I)}[layout]
    x = rng.standard_normal(shape).astype(dtype)
    hx = None
    if with_hx:
        lead = (tm.num_layers * D,) if layout == "unbatched" else (tm.num_layers * D, B)
        hx = rng.standard_normal(lead + (H_out,)).astype(dtype)
        if tm.mode == "LSTM":
            hx = (hx, rng.standard_normal(lead + (tm.hidden_size,)).astype(dtype))
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[rng.integers(B)] = T
        if list(lengths) == sorted(lengths, reverse=True):
            lengths = lengths[::-1].copy()
    return x, hx, lengths


def _assert_outputs(got, expected, dtype):
    for name, g, e in zip(("y", "h_n", "c_n"), got, expected):
        if e is None:
            assert g is None, name
            continue
        assert g.dtype == np.dtype(dtype), f"{name}: dtype {g.dtype}"
        assert_close(g, e, TOL[np.dtype(dtype)], name)


def _snapshot(obj):
    """A deep copy of a torch module's or a mapping's tensors / arrays, to check obj is
    unchanged afterwards (see _assert_unchanged)."""
    if isinstance(obj, torch.nn.Module):
        return {k: v.detach().clone() for k, v in obj.state_dict().items()}, obj.training
    return {k: (v.clone() if isinstance(v, torch.Tensor) else np.array(v, copy=True))
            for k, v in obj.items()}, None


def _assert_unchanged(obj, snap):
    values, training = snap
    now = obj.state_dict() if isinstance(obj, torch.nn.Module) else obj
    assert list(now.keys()) == list(values.keys())
    for k, v in values.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(now[k], v), k
            assert now[k].dtype == v.dtype, k
        else:
            assert np.array_equal(now[k], v) and now[k].dtype == v.dtype, k
    if training is not None:
        assert obj.training == training


def _assert_same_weights(m, tensors):
    """m's state_dict equals `tensors` (a torch state_dict) key for key, value for value."""
    sd = m.state_dict()
    assert list(sd) == list(tensors)
    for k, t in tensors.items():
        assert sd[k].dtype == m.dtype
        np.testing.assert_array_equal(sd[k], t.detach().to(torch.float64).numpy(), err_msg=k)


def _assert_same_config(m, tm):
    for a in CONFIG_ATTRS:
        assert getattr(m, a) == getattr(tm, a), a
    assert m.proj_size == getattr(tm, "proj_size", 0)
    assert m.kind == KIND[tm.mode]
    if tm.mode.startswith("RNN"):
        assert m.nonlinearity == tm.nonlinearity
    assert m.training == tm.training


# --------------------------------------------------------------------------------------------
# torch modules: the sampled grid

def _sample_cases(mode, n, seed):
    """n option sets for `mode`: one fixed hard one, the rest a seeded sample of the grid
    (layers, bidirectional, proj_size, layout, bias, hx given, lengths given)."""
    grid = list(itertools.product(
        (1, 2, 3), (False, True), (0, P) if mode == "LSTM" else (0,),
        ("time", "batch_first", "unbatched"), (True, False), (False, True), (False, True)))
    fixed = (3, True, P if mode == "LSTM" else 0, "batch_first", False, True, True)
    rng = np.random.default_rng(seed)
    cases = [fixed] + [grid[i] for i in rng.choice(len(grid), size=n - 1, replace=False)]
    # torch packs batched inputs only: an unbatched case has no lengths
    return [c[:6] + (c[6] and c[3] != "unbatched",) for c in cases]


def _case_id(mode, c):
    L, bi, proj, layout, bias, hx, lengths = c
    return (f"{mode}-L{L}{'-bi' if bi else ''}{f'-p{proj}' if proj else ''}-{layout}"
            f"{'' if bias else '-nobias'}{'-hx' if hx else ''}{'-lengths' if lengths else ''}")


CASES = [(mode, c) for i, mode in enumerate(MODES) for c in _sample_cases(mode, 7, 10 + i)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("mode,case", CASES, ids=[_case_id(m, c) for m, c in CASES])
def test_torch_module_round_trip(mode, case, dtype, backend):
    L, bi, proj, layout, bias, with_hx, with_lengths = case
    kwargs = dict(num_layers=L, bidirectional=bi, bias=bias, batch_first=layout == "batch_first",
                  dropout=0.25 if L > 1 else 0.0)
    if proj:
        kwargs["proj_size"] = proj
    tm = _torch_module(mode, dtype, seed=L, **kwargs)
    if L > 1:
        tm.eval()   # dropout off; the one-layer modules stay in training mode
    snap = _snapshot(tm)

    m = from_torch(tm, backend=backend)
    assert isinstance(m, {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU,
                          "rnn": fastlstm.RNN}[KIND[mode]])
    assert m.dtype == np.dtype(dtype) and m.backend == backend
    _assert_same_config(m, tm)
    _assert_same_weights(m, tm.state_dict())
    for k, p in tm.named_parameters():
        assert not np.shares_memory(getattr(m, k), p.detach().numpy()), k

    x, hx, lengths = _inputs(tm, layout, with_hx, with_lengths, dtype, seed=L)
    expected = _torch_run(tm, x, hx, lengths)
    _assert_outputs(_fastlstm_run(m, x, hx, lengths), expected, dtype)
    _assert_unchanged(tm, snap)

    # back to torch: the same module again, the same outputs bit for bit
    tm2 = to_torch(m)
    assert type(tm2) is type(tm)
    for a in CONFIG_ATTRS + ("mode", "proj_size", "nonlinearity", "training"):
        assert getattr(tm2, a, None) == getattr(tm, a, None), a
    sd, sd2 = tm.state_dict(), tm2.state_dict()
    assert list(sd2) == list(sd)
    assert all(torch.equal(sd2[k], sd[k]) and sd2[k].dtype == sd[k].dtype for k in sd)
    for got, exp in zip(_torch_run(tm2, x, hx, lengths), expected):
        assert (got is None and exp is None) or np.array_equal(got, exp)


# --------------------------------------------------------------------------------------------
# cells

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("bias", (True, False), ids=["bias", "nobias"])
@pytest.mark.parametrize("mode", MODES)
def test_torch_cell_one_step(mode, bias, dtype, backend):
    cell = _torch_cell(mode, dtype, bias)
    snap = _snapshot(cell)
    m = from_torch(cell, backend=backend)
    assert m.kind == KIND[mode] and m.num_layers == 1 and not m.bidirectional
    assert (m.input_size, m.hidden_size, m.bias, m.training) == (I, H, bias, True)
    if mode.startswith("RNN"):
        assert m.nonlinearity == cell.nonlinearity
    renamed = {k + "_l0": v for k, v in cell.state_dict().items()}
    _assert_same_weights(m, renamed)

    rng = np.random.default_rng(1)
    xs = rng.standard_normal((3, B, I)).astype(dtype)
    h = rng.standard_normal((B, H)).astype(dtype)
    c = rng.standard_normal((B, H)).astype(dtype)
    tol = TOL[np.dtype(dtype)]
    with torch.no_grad():
        for state in (None, (h, c) if mode == "LSTM" else h):   # without, then with a state
            if state is None:
                expected = cell(torch.from_numpy(xs[0]))
                y, states = m(xs[0][None])
            elif mode == "LSTM":
                expected = cell(torch.from_numpy(xs[0]), (torch.from_numpy(h),
                                                          torch.from_numpy(c)))
                y, states = m(xs[0][None], (h[None], c[None]))
            else:
                expected = cell(torch.from_numpy(xs[0]), torch.from_numpy(h))
                y, states = m(xs[0][None], h[None])
            h_exp, c_exp = expected if mode == "LSTM" else (expected, None)
            h_n, c_n = states if mode == "LSTM" else (states, None)
            assert y.shape == (1, B, H)
            assert_close(y[0], h_exp.numpy(), tol, "y")
            assert_close(h_n[0], h_exp.numpy(), tol, "h_n")
            if mode == "LSTM":
                assert_close(c_n[0], c_exp.numpy(), tol, "c_n")

        # a stream of steps = the cell called step after step
        s = m.stream(batch_size=B)
        state = None
        for x_t in xs:
            state = cell(torch.from_numpy(x_t), state)
            h_exp = state[0] if mode == "LSTM" else state
            assert_close(s.step(x_t), h_exp.numpy(), tol, "stream step")
    _assert_unchanged(cell, snap)


# --------------------------------------------------------------------------------------------
# state_dicts

SD_CASES = [  # mode, torch kwargs, keyword arguments from_torch needs, values as arrays?
    ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=P), {}, False),
    ("LSTM", dict(), dict(batch_first=True), True),
    ("GRU", dict(num_layers=3, bias=False), {}, True),
    ("RNN_RELU", dict(bidirectional=True), dict(nonlinearity="relu"), False),
    ("RNN_RELU", dict(num_layers=2), dict(mode="RNN_RELU"), True),
    ("RNN_TANH", dict(num_layers=2, bidirectional=True, bias=False), {}, True),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("mode,tkw,kw,as_arrays", SD_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(SD_CASES)])
def test_state_dict_inferred(mode, tkw, kw, as_arrays, dtype, backend):
    tm = _torch_module(mode, dtype, seed=3, batch_first=kw.get("batch_first", False), **tkw)
    sd = tm.state_dict()
    if as_arrays:
        sd = {k: v.numpy().copy() for k, v in sd.items()}
    snap = _snapshot(sd)
    m = from_torch(sd, backend=backend, **kw)
    tm.train()   # a state_dict gives a module in training mode, as a new torch module is
    _assert_same_config(m, tm)
    _assert_same_weights(m, tm.state_dict())
    _assert_unchanged(sd, snap)

    layout = "batch_first" if tm.batch_first else "time"
    x, hx, lengths = _inputs(tm, layout, True, True, dtype, seed=4)
    _assert_outputs(_fastlstm_run(m, x, hx, lengths), _torch_run(tm, x, hx, lengths), dtype)

    # the module owns its weights: changing the input afterwards changes nothing
    key = next(iter(sd))
    before = m.state_dict()[key].copy()
    if as_arrays:
        sd[key] += 1
    else:
        with torch.no_grad():
            sd[key] += 1
    np.testing.assert_array_equal(m.state_dict()[key], before)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("mode", MODES)
def test_cell_state_dict_inferred(mode, dtype, backend):
    cell = _torch_cell(mode, dtype, bias=mode != "GRU", seed=5)
    kw = dict(nonlinearity="relu") if mode == "RNN_RELU" else {}
    m = from_torch(cell.state_dict(), backend=backend, **kw)
    assert (m.kind, m.num_layers, m.input_size, m.hidden_size, m.bias) == \
        (KIND[mode], 1, I, H, mode != "GRU")
    _assert_same_weights(m, {k + "_l0": v for k, v in cell.state_dict().items()})
    x = np.random.default_rng(6).standard_normal((B, I)).astype(dtype)
    with torch.no_grad():
        out = cell(torch.from_numpy(x))
    h_exp = out[0] if mode == "LSTM" else out
    assert_close(m(x[None])[0][0], h_exp.numpy(), TOL[np.dtype(dtype)], "y")


def test_state_dict_prefix_and_agreeing_arguments():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(2, I)
            self.rnn = torch.nn.LSTM(I, H, num_layers=2, proj_size=P, batch_first=True)
            self.head = torch.nn.Linear(P, 1)

    model = Model()
    sd = model.state_dict()
    with pytest.raises(ValueError, match=r"obj: unexpected key 'embed.weight'"):
        from_torch(sd)
    with pytest.raises(ValueError, match=r"prefix='rnn\.'"):   # the hint
        from_torch({k: v for k, v in sd.items() if k.startswith("rnn.")})
    m = from_torch(sd, prefix="rnn.", batch_first=True)
    model.rnn.train()
    _assert_same_config(m, model.rnn)
    _assert_same_weights(m, model.rnn.state_dict())
    # arguments that agree with the weights are accepted, in either spelling of the mode
    m2 = from_torch(sd, prefix="rnn.", mode="lstm", input_size=I, hidden_size=H, num_layers=2,
                    bias=True, bidirectional=False, proj_size=P, batch_first=True,
                    dropout=0.0, dtype="float64")
    assert m2.dtype == np.float64 and m2.batch_first and m2.num_layers == 2
    m3 = from_torch(model.rnn, mode="LSTM", hidden_size=H, batch_first=True, dropout=0)
    _assert_same_weights(m3, model.rnn.state_dict())


# --------------------------------------------------------------------------------------------
# fastlstm -> torch

TO_TORCH_CASES = [  # the fastlstm module (given dtype= and backend=), layout, lengths given
    (lambda **kw: fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P,
                                batch_first=True, dropout=0.3, seed=1, **kw).eval(),
     "batch_first", True),
    (lambda **kw: fastlstm.LSTM(I, H, seed=2, **kw), "unbatched", False),
    (lambda **kw: fastlstm.GRU(I, H, dropout=0.3, seed=3, **kw), "time", True),  # one layer
    (lambda **kw: fastlstm.GRU(I, H, num_layers=2, bidirectional=True, bias=False, seed=4,
                               **kw), "time", False),
    (lambda **kw: fastlstm.RNN(I, H, num_layers=3, nonlinearity="relu", bias=False, seed=5,
                               **kw), "time", True),
    (lambda **kw: fastlstm.RNN(I, H, bidirectional=True, batch_first=True, seed=6, **kw),
     "batch_first", False),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("i", range(len(TO_TORCH_CASES)))
def test_fastlstm_to_torch(i, dtype, backend):
    make, layout, with_lengths = TO_TORCH_CASES[i]
    m = make(dtype=dtype, backend=backend)
    before = m.state_dict()
    tm = m.to_torch()
    assert isinstance(tm, getattr(torch.nn, {"lstm": "LSTM", "gru": "GRU",
                                              "rnn": "RNN"}[m.kind]))
    assert all(p.dtype == TORCH_DTYPES[m.dtype] for p in tm.parameters())
    _assert_same_config(m, tm)     # dropout 0.3 on one layer included, without torch's warning
    _assert_same_weights(m, tm.state_dict())
    for k, p in tm.named_parameters():
        assert not np.shares_memory(getattr(m, k), p.detach().numpy()), k

    x, hx, lengths = _inputs(tm, layout, True, with_lengths, dtype, seed=i)
    _assert_outputs(_torch_run(tm, x, hx, lengths), _fastlstm_run(m, x, hx, lengths), dtype)
    assert all(np.array_equal(v, before[k]) for k, v in m.state_dict().items())

    back = from_torch(tm, backend=backend)
    assert repr(back) == repr(m) and back.training == m.training
    assert all(np.array_equal(v, before[k]) for k, v in back.state_dict().items())


# --------------------------------------------------------------------------------------------
# dtypes

@pytest.mark.parametrize("half", ("float16", "bfloat16"))
def test_half_precision_needs_dtype(half):
    tm = _torch_module("LSTM", np.float32, num_layers=2).to(getattr(torch, half))
    snap = _snapshot(tm)
    for obj in (tm, tm.state_dict()):
        with pytest.raises(TypeError, match=rf"obj: weights of dtype {half}.*dtype="):
            from_torch(obj)
    _assert_unchanged(tm, snap)
    # the same weights widened (exactly) in torch give torch's float32 outputs
    ref = copy.deepcopy(tm).float()
    x, hx, _ = _inputs(ref, "time", True, False, np.float32, seed=7)
    expected = _torch_run(ref, x, hx, None)
    for dtype in ("float32", "float64"):
        m = from_torch(tm, dtype=dtype)
        assert m.dtype == np.dtype(dtype)
        _assert_same_weights(m, tm.state_dict())
        got = _fastlstm_run(m, x.astype(dtype), tuple(a.astype(dtype) for a in hx), None)
        _assert_outputs([a.astype(np.float32) for a in got], expected, np.float32)
    _assert_unchanged(tm, snap)


def test_mixed_and_wrong_dtypes():
    sd = _torch_module("GRU", np.float32).state_dict()
    sd["bias_hh_l0"] = sd["bias_hh_l0"].double()
    with pytest.raises(TypeError, match=r"obj: weights of mixed dtypes.*dtype="):
        from_torch(sd)
    assert from_torch(sd, dtype="float64").dtype == np.float64
    with pytest.raises(TypeError, match="dtype"):
        from_torch(sd, dtype="int32")
    with pytest.raises(TypeError, match="dtype"):
        from_torch(sd, dtype="float16")
    sd["weight_ih_l0"] = torch.ones(3 * H, I, dtype=torch.int64)
    with pytest.raises(TypeError, match=r"obj\['weight_ih_l0'\].*int64"):
        from_torch(sd, dtype="float64")
    sd["weight_ih_l0"] = np.full((3 * H, I), "a")
    with pytest.raises(TypeError, match=r"obj\['weight_ih_l0'\]"):
        from_torch(sd, dtype="float64")


# --------------------------------------------------------------------------------------------
# errors

@pytest.mark.parametrize("make,option", [
    (lambda: fastlstm.LSTM(I, H, peepholes=True), "peepholes"),
    (lambda: fastlstm.LSTM(I, H, num_layers=2, reverse=True), "reverse"),
    (lambda: fastlstm.RNN(I, H, reverse=True), "reverse"),
    (lambda: fastlstm.GRU(I, H, linear_before_reset=False), "linear_before_reset"),
], ids=["peepholes", "reverse-lstm", "reverse-rnn", "gru-reset-before"])
def test_to_torch_refuses_what_torch_lacks(make, option):
    m = make()
    before = m.state_dict()
    with pytest.raises(ValueError, match=rf"^{option}: "):
        m.to_torch()
    with pytest.raises(ValueError, match=rf"^{option}: "):
        to_torch(m)
    assert all(np.array_equal(v, before[k]) for k, v in m.state_dict().items())


@pytest.mark.parametrize("obj", [None, 3, "lstm.pt", [1, 2], np.zeros((4, 3))],
                         ids=["None", "int", "str", "list", "ndarray"])
def test_to_torch_wrong_object(obj):
    with pytest.raises(TypeError, match=r"^m: expected a fastlstm"):
        to_torch(obj)


LSTM_KW = dict(num_layers=2, bidirectional=True, proj_size=P, dropout=0.5)
CONTRADICTIONS = [   # (argument, value), against an nn.LSTM(I, H, **LSTM_KW) or its state_dict
    ("input_size", I + 1), ("hidden_size", H + 1), ("num_layers", 3), ("bias", False),
    ("bias", 1), ("bidirectional", False), ("proj_size", 0), ("proj_size", P + 1),
    ("mode", "gru"), ("mode", "RNN_TANH"), ("nonlinearity", "tanh"),
]


@pytest.mark.parametrize("source", ("module", "state_dict"))
@pytest.mark.parametrize("name,value", CONTRADICTIONS,
                         ids=[f"{n}={v!r}" for n, v in CONTRADICTIONS])
def test_contradicting_arguments(name, value, source):
    tm = _torch_module("LSTM", np.float32, **LSTM_KW)
    obj = tm if source == "module" else tm.state_dict()
    snap = _snapshot(obj)
    with pytest.raises(ValueError, match=rf"^{name}: .*{name}={value!r}") as info:
        from_torch(obj, **{name: value})
    if name not in ("mode", "nonlinearity"):   # the message gives what obj has
        assert f"{name}={getattr(tm, name)!r}" in str(info.value)
    _assert_unchanged(obj, snap)


@pytest.mark.parametrize("name,value,expected", [
    ("batch_first", True, False), ("dropout", 0.25, 0.5), ("nonlinearity", "relu", "tanh"),
    ("mode", "rnn_relu", "tanh"),
])
def test_contradicting_module_options(name, value, expected):
    """What only a module knows (batch_first, dropout, nonlinearity) is checked too."""
    mode = "RNN_TANH" if name in ("nonlinearity", "mode") else "LSTM"
    tm = _torch_module(mode, np.float64, num_layers=2, dropout=0.5)
    shown = "nonlinearity" if name == "mode" else name
    with pytest.raises(ValueError, match=rf"^{shown}: .*{expected!r}"):
        from_torch(tm, **{name: value})
    # a state_dict cannot tell them: there they are taken as given
    m = from_torch(tm.state_dict(), **{name: value})
    assert getattr(m, shown) == (value if name != "mode" else "relu")


def test_invalid_options():
    sd = _torch_module("RNN_TANH", np.float32).state_dict()
    with pytest.raises(ValueError, match="^mode: "):
        from_torch(sd, mode="transformer")
    with pytest.raises(ValueError, match="^nonlinearity: "):
        from_torch(sd, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="^nonlinearity: "):
        from_torch(sd, mode="rnn_relu", nonlinearity="tanh")
    with pytest.raises(TypeError, match="^batch_first: "):
        from_torch(sd, batch_first="yes")
    with pytest.raises(ValueError, match="^dropout: "):
        from_torch(sd, dropout=1.5)
    with pytest.raises(ValueError, match="^backend: "):
        from_torch(sd, backend="cuda")
    with pytest.raises(TypeError, match="^prefix: "):
        from_torch(sd, prefix=3)
    with pytest.raises(TypeError, match="unexpected keyword"):
        from_torch(sd, linear_before_reset=False)


def _quantized_lstm():
    """A statically quantized LSTM: still refused (the dynamic ones import, see
    tests/test_quantized_interop.py)."""
    with warnings.catch_warnings():   # torch deprecates its quantized tensor constructors
        warnings.simplefilter("ignore")
        return torch.ao.nn.quantized.LSTM(I, H)


WRONG_OBJECTS = [
    ("None", lambda: None, TypeError, r"^obj: expected .* got NoneType"),
    ("int", lambda: 3, TypeError, r"^obj: expected .* got int"),
    ("str", lambda: "model.pt", TypeError, r"^obj: expected .* got str"),
    ("list", lambda: [torch.ones(2)], TypeError, r"^obj: expected .* got list"),
    ("ndarray", lambda: np.zeros((4, 3)), TypeError, r"^obj: expected .*ndarray"),
    ("tensor", lambda: torch.ones(4, 3), TypeError, r"^obj: .*got a tensor"),
    ("linear", lambda: torch.nn.Linear(3, 4), TypeError, r"^obj: expected .*Linear"),
    ("sequential", lambda: torch.nn.Sequential(torch.nn.LSTM(I, H)), TypeError,
     r"^obj: expected .*Sequential"),
    ("packed-sequence", lambda: torch.nn.utils.rnn.pack_padded_sequence(
        torch.ones(3, 2, I), torch.tensor([3, 2])), TypeError, r"^obj: expected"),
    ("fastlstm", lambda: fastlstm.GRU(I, H), TypeError, r"^obj: already a fastlstm GRU"),
    ("quantized", _quantized_lstm, TypeError, r"^obj: a quantized torch module"),
    ("quantizable", lambda: torch.ao.nn.quantizable.LSTM(I, H), TypeError,
     r"^obj: a quantized torch module"),
    ("meta-device", lambda: torch.nn.LSTM(I, H, device="meta"), ValueError,
     r"^obj\.weight_ih_l0: a tensor on device 'meta'"),
    ("meta-state_dict", lambda: torch.nn.GRUCell(I, H, device="meta").state_dict(),
     ValueError, r"^obj\['weight_ih'\]: a tensor on device 'meta'"),
    ("sparse", lambda: {"weight_ih": torch.eye(H, I).to_sparse(), "weight_hh": torch.eye(H)},
     TypeError, r"^obj\['weight_ih'\]: a torch\.sparse_coo tensor"),
]


@pytest.mark.parametrize("make,exc,match", [w[1:] for w in WRONG_OBJECTS],
                         ids=[w[0] for w in WRONG_OBJECTS])
def test_wrong_objects(make, exc, match):
    obj = make()
    with pytest.raises(exc, match=match):
        from_torch(obj)


def _lstm_sd(**changes):
    """A 2-layer bidirectional LSTM's state_dict as NumPy arrays, with keys changed (a value
    of None deletes the key)."""
    sd = {k: v.numpy().copy() for k, v in
          _torch_module("LSTM", np.float32, num_layers=2, bidirectional=True)
          .state_dict().items()}
    for k, v in changes.items():
        if v is None:
            del sd[k]
        else:
            sd[k] = v
    return sd


BROKEN = [   # (id, state_dict, prefix, message)
    ("missing-bias", lambda: _lstm_sd(bias_hh_l1=None), "",
     r"^obj: .*missing key\(s\) \['bias_hh_l1'\]"),
    ("missing-reverse", lambda: _lstm_sd(weight_ih_l1_reverse=None), "",
     r"^obj: .*missing key\(s\) \['weight_ih_l1_reverse'\]"),
    ("missing-weight_hh_l0", lambda: _lstm_sd(weight_hh_l0=None), "",
     r"^obj: the state_dict is missing key 'weight_hh_l0'"),
    ("missing-layer", lambda: {k: v for k, v in _lstm_sd().items() if "_l1" not in k} |
     {"weight_ih_l2": np.zeros((4 * H, 2 * H), np.float32)}, "",
     r"^obj: .*missing key\(s\) \['weight_ih_l1', 'weight_hh_l1'"),
    ("wrong-shape", lambda: _lstm_sd(weight_ih_l1=np.zeros((4 * H, H), np.float32)), "",
     rf"^obj\['weight_ih_l1'\]: expected shape \({4 * H}, {2 * H}\).*got \({4 * H}, {H}\)"),
    ("wrong-bias-shape", lambda: _lstm_sd(bias_ih_l0_reverse=np.zeros(3 * H, np.float32)),
     "", r"^obj\['bias_ih_l0_reverse'\]: expected shape \(20,\)"),
    ("weight_hh-not-gates", lambda: _lstm_sd(weight_hh_l0=np.zeros((2 * H, H), np.float32)),
     "", r"^obj\['weight_hh_l0'\]: expected shape \(G\*H, H\)"),
    ("weight_hh-1d", lambda: _lstm_sd(weight_hh_l0=np.zeros(4 * H, np.float32)), "",
     r"^obj\['weight_hh_l0'\]: expected a 2-D array"),
    ("proj-mismatch", lambda: _lstm_sd(weight_hr_l0=np.zeros((P, H + 1), np.float32)), "",
     r"^obj\['weight_hh_l0'\]: with weight_hr_l0"),
    ("unexpected-key", lambda: _lstm_sd(running_mean=np.zeros(3)), "",
     r"^obj: unexpected key 'running_mean'"),
    ("non-str-key", lambda: {0: np.zeros((4, 3))}, "", r"^obj: unexpected key 0"),
    ("cell-and-module", lambda: {"weight_ih": np.zeros((H, I)), "weight_hh": np.zeros((H, H)),
                                 "weight_ih_l0": np.zeros((H, I))}, "",
     r"^obj: unexpected key 'weight_ih_l0' next to a cell's keys"),
    ("cell-missing", lambda: {"weight_ih": np.zeros((3 * H, I)), "bias_ih": np.zeros(3 * H)},
     "", r"^obj: the state_dict is missing key 'weight_hh'"),
    ("cell-bias-missing", lambda: {"weight_ih": np.zeros((H, I)), "weight_hh": np.zeros((H, H)),
                                   "bias_ih": np.zeros(H)}, "",
     r"^obj: .*missing key\(s\) \['bias_hh'\]"),
    ("empty", lambda: {}, "", r"^obj: an empty state_dict"),
    ("prefix-matches-nothing", lambda: _lstm_sd(), "encoder.",
     r"^prefix: no key of obj starts with 'encoder\.'"),
]


@pytest.mark.parametrize("make,prefix,match", [b[1:] for b in BROKEN],
                         ids=[b[0] for b in BROKEN])
def test_broken_state_dicts(make, prefix, match):
    sd = make()
    snap = _snapshot(sd)
    with pytest.raises(ValueError, match=match):
        from_torch(sd, prefix=prefix)
    _assert_unchanged(sd, snap)


def test_parametrized_module():
    """A parametrized weight (torch.nn.utils.parametrize) is read as the module computes it."""
    class Double(torch.nn.Module):
        def forward(self, w):
            return 2 * w

    tm = _torch_module("GRU", np.float64, num_layers=2)
    torch.nn.utils.parametrize.register_parametrization(tm, "weight_hh_l1", Double())
    m = from_torch(tm)
    np.testing.assert_array_equal(m.weight_hh_l1, tm.weight_hh_l1.detach().numpy())
    x, hx, lengths = _inputs(tm, "time", True, True, np.float64, seed=8)
    _assert_outputs(_fastlstm_run(m, x, hx, lengths), _torch_run(tm, x, hx, lengths),
                    np.float64)
    with pytest.raises(ValueError, match=r"^obj: unexpected key 'parametrizations\..*the "
                                         r"module itself"):
        from_torch(tm.state_dict())


def test_prefix_with_a_module():
    with pytest.raises(ValueError, match="^prefix: only for a state_dict"):
        from_torch(torch.nn.GRU(I, H), prefix="rnn.")


def test_no_torch_import():
    """fastlstm, its interop package and from_torch on NumPy arrays never import torch."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None   # any 'import torch' now raises ImportError\n"
        "import numpy as np\n"
        "import fastlstm\n"
        "import fastlstm.interop.torch_models\n"
        "sd = {'weight_ih_l0': np.zeros((12, 3)), 'weight_hh_l0': np.zeros((12, 4))}\n"
        "m = fastlstm.from_torch(sd)\n"
        "assert (m.kind, m.input_size, m.hidden_size, m.dtype) == ('gru', 3, 4, np.float64)\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_to_torch_without_torch_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)   # import torch now raises ImportError
    with pytest.raises(ImportError, match=r"to_torch needs PyTorch: install its CPU build"):
        fastlstm.LSTM(3, 4).to_torch()
