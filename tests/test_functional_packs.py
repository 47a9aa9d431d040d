"""The functional API's packed weights (fastlstm/_functional_packs.py): fastlstm.forward,
gru_forward and rnn_forward keep a few PackedLayers across calls, and never serve stale ones.

- A repeated call reuses the entry (the same PackedLayer), and gives the bits of a call
  made with the cache emptied first, for every cell and option and every backend.
- Every way the weights can change is seen: each argument written in place (one value, a
  sign flip of a zero, a NaN's payload), an argument given or left out, a new array in place
  of an old one, the same values in new arrays; a call after the change equals one with
  fresh copies of the new weights.
- What is not kept: weights that are not C-contiguous and layers past MAX_LAYER_BYTES; at
  most MAX_ENTRIES entries and MAX_TOTAL_BYTES of weights; nothing returned shares memory
  with an entry; the tape of a training call keeps the weights it ran even when the arrays
  are then written.
- same_bytes and all_same, the Cython comparisons, against the NumPy ones.
"""
import numpy as np
import pytest

import fastlstm
from fastlstm import _functional_packs
from fastlstm._backends import all_same_function, same_bytes_function

I, H, T, B, P = 5, 7, 4, 3, 4


@pytest.fixture(autouse=True)
def empty_cache():
    _functional_packs.clear()
    yield
    _functional_packs.clear()


def _problem(kind, seed=0, dtype=np.float32, **opts):
    rng = np.random.default_rng(seed)
    G = {"lstm": 4, "gru": 3, "rnn": 1}[kind] * H
    Hout = P if opts.get("proj") else H
    w = dict(w_ih=rng.standard_normal((G, I)), w_hh=rng.standard_normal((G, Hout)),
             b_ih=rng.standard_normal(G), b_hh=rng.standard_normal(G))
    if opts.get("proj"):
        w["w_hr"] = rng.standard_normal((P, H))
    if opts.get("peep"):
        w["peepholes"] = rng.standard_normal((3, H))
    w = {k: (0.4 * v).astype(dtype) for k, v in w.items()}
    x = rng.standard_normal((T, B, I)).astype(dtype)
    return x, w


def _call(kind, x, w, backend="auto", flags=None, **extra):
    f = {"lstm": fastlstm.forward, "gru": fastlstm.gru_forward, "rnn": fastlstm.rnn_forward}
    out = f[kind](x, **w, backend=backend, **(flags or {}), **extra)
    return out


def _arrays(out):
    y, state = out[0], out[1]
    return [y] + (list(state) if isinstance(state, tuple) else [state])


def _fresh(kind, x, w, backend="auto", flags=None):
    """The call with the cache emptied and copies of the weights: what a first call gives."""
    _functional_packs.clear()
    out = _arrays(_call(kind, x, {k: None if v is None else v.copy() for k, v in w.items()}, backend, flags))
    _functional_packs.clear()
    return out


def _same(got, want):
    for a, b in zip(got, want):
        assert np.array_equal(a, b, equal_nan=True)


def _entries():
    return [entry[0] for entry in _functional_packs._entries.values()]


CASES = {
    "lstm": ("lstm", {}, {}),
    "lstm-proj-peep": ("lstm", dict(proj=True, peep=True), {}),
    "gru-lbr": ("gru", {}, {}),
    "gru-rb": ("gru", {}, dict(linear_before_reset=False)),
    "rnn-relu": ("rnn", {}, dict(nonlinearity="relu")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reuse_gives_the_same_bits(case, backend):
    kind, opts, flags = CASES[case]
    x, w = _problem(kind, **opts)
    want = _fresh(kind, x, w, backend, flags)
    first = _arrays(_call(kind, x, w, backend, flags))
    (packed,) = _entries()
    for _ in range(2):
        _same(_arrays(_call(kind, x, w, backend, flags)), want)
        assert _entries() == [packed]   # found and kept, not packed again
    _same(first, want)
    lengths = np.array([T, 2, 1])
    for reverse in (False, True):   # other calls on the same entry
        extra = dict(lengths=lengths, reverse=reverse)
        got = _arrays(_call(kind, x, w, backend, flags, **extra))
        _functional_packs.clear()
        _same(got, _arrays(_call(kind, x, {k: None if v is None else v.copy() for k, v in w.items()}, backend, flags,
                                 **extra)))


WRITES = {
    "one value": lambda a: a.reshape(-1).__setitem__(0, a.reshape(-1)[0] + 1),
    "zero's sign": lambda a: a.reshape(-1).__setitem__(-1, -0.0),
    "nan payload": lambda a: a.reshape(-1).view(np.uint32).__setitem__(
        1, a.reshape(-1).view(np.uint32)[1] ^ 1),
}


@pytest.mark.parametrize("write", sorted(WRITES))
@pytest.mark.parametrize("name", ["w_ih", "w_hh", "b_ih", "b_hh", "w_hr", "peepholes"])
def test_in_place_writes_are_seen(name, write):
    x, w = _problem("lstm", proj=True, peep=True)
    if write == "zero's sign":
        w[name].reshape(-1)[-1] = 0.0
    if write == "nan payload":
        w[name].reshape(-1)[1] = np.nan
    _call("lstm", x, w)
    (before,) = _entries()
    WRITES[write](w[name])
    got = _arrays(_call("lstm", x, w))
    assert before not in _entries(), "the entry was served after its weights changed"
    _same(got, _fresh("lstm", x, w))


@pytest.mark.parametrize("backend_name", fastlstm.available_backends())
def test_changed_weights_change_the_result(backend_name):
    """For each backend: a value written in place changes the call (as a fresh one)."""
    x, w = _problem("gru")
    before = _arrays(_call("gru", x, w, backend_name))
    w["w_hh"] *= 0.5
    after = _arrays(_call("gru", x, w, backend_name))
    assert not np.array_equal(after[0], before[0])
    _same(after, _fresh("gru", x, w, backend_name))


def test_arguments_given_or_left_out():
    x, w = _problem("lstm", peep=True)
    calls = [dict(w), {k: v for k, v in w.items() if k != "b_hh"},
             {k: v for k, v in w.items() if k != "peepholes"}, dict(w, b_ih=None)]
    results = [_arrays(_call("lstm", x, c)) for c in calls]
    for c, got in zip(calls, results):
        _same(got, _fresh("lstm", x, c))
    assert not np.array_equal(results[0][0], results[1][0])
    assert not np.array_equal(results[0][0], results[2][0])


def test_new_arrays():
    """New arrays of new values (whatever their ids) and of the same values."""
    x, w = _problem("rnn")
    _call("rnn", x, w)
    for seed in (1, 2, 3):   # the old arrays dropped, new ones made: ids may be reused
        _, w = _problem("rnn", seed=seed)
        _same(_arrays(_call("rnn", x, w)), _fresh("rnn", x, w))
    copies = {k: None if v is None else v.copy() for k, v in w.items()}
    _same(_arrays(_call("rnn", x, copies)), _arrays(_call("rnn", x, w)))
    x64, w64 = x.astype(np.float64), {k: v.astype(np.float64) for k, v in w.items()}
    want64, want32 = _fresh("rnn", x64, w64), _fresh("rnn", x, w)
    _same(_arrays(_call("rnn", x64, w64)), want64)   # a float64 entry beside the float32 one
    _same(_arrays(_call("rnn", x, w)), want32)
    _same(_arrays(_call("rnn", x64, w64)), want64)
    assert {p.dtype for p in _entries()} == {np.dtype(np.float32), np.dtype(np.float64)}


def test_what_is_not_kept():
    x, w = _problem("lstm")
    fortran = dict(w, w_ih=np.asfortranarray(w["w_ih"]))
    _same(_arrays(_call("lstm", x, fortran)), _fresh("lstm", x, w))
    strided = dict(w, w_hh=np.repeat(w["w_hh"], 2, axis=1)[:, ::2])
    _same(_arrays(_call("lstm", x, strided)), _fresh("lstm", x, w))
    assert _entries() == []
    big = 1 + int(np.sqrt(_functional_packs.MAX_LAYER_BYTES / 16))   # 4 H^2 floats: > max
    rng = np.random.default_rng(0)
    wb = dict(w_ih=rng.standard_normal((4 * big, 1)).astype(np.float32) * 0.1,
              w_hh=rng.standard_normal((4 * big, big)).astype(np.float32) * 0.1)
    _call("lstm", np.ones((1, 1, 1), np.float32), wb)
    assert _entries() == []
    for seed in range(_functional_packs.MAX_ENTRIES + 3):
        _call("lstm", x, _problem("lstm", seed=seed)[1])
    assert len(_entries()) == _functional_packs.MAX_ENTRIES
    # layers of 3/8 of the total bound each: the third drops the oldest two (with the small
    # ones before them); the entries never hold more than the bound
    H = int(np.sqrt(_functional_packs.MAX_TOTAL_BYTES * 3 / 8 / 16))
    assert 16 * H * H <= _functional_packs.MAX_LAYER_BYTES
    ones = np.ones((1, 1, 1), np.float32)
    layers = [dict(w_ih=np.full((4 * H, 1), 0.01 * k, np.float32),
                   w_hh=np.full((4 * H, H), 0.001 * k, np.float32)) for k in range(1, 4)]
    for wk in layers:
        _call("lstm", ones, wk)
        assert _functional_packs.kept_bytes() <= _functional_packs.MAX_TOTAL_BYTES
    assert len(_entries()) == 2
    assert _functional_packs.kept_bytes() == sum(a.nbytes for wk in layers[1:]
                                                 for a in wk.values())
    _same(_arrays(_call("lstm", ones, layers[2])), _fresh("lstm", ones, layers[2]))


def test_nothing_shares_an_entry():
    x, w = _problem("lstm", proj=True, peep=True)
    out = _arrays(_call("lstm", x, w))
    (packed,) = _entries()
    kept = [getattr(packed, name) for name in ("w_ih", "w_hh", "w_hr", "peep", "bias")]
    kept += [a for a in next(iter(_functional_packs._entries.values()))[1] if a is not None]
    for a in out:
        assert not any(np.shares_memory(a, k) for k in kept)
    for name, value in w.items():
        assert not any(np.shares_memory(value, k) for k in kept), name
    for a in out:
        a[...] = 7   # the caller's outputs written: the next call is unchanged
    _same(_arrays(_call("lstm", x, w)), _fresh("lstm", x, w))


def test_a_tape_keeps_its_weights(backend):
    x, w = _problem("lstm", proj=True)
    y, _, tape = _call("lstm", x, w, backend, return_tape=True)
    dy = np.ones_like(y)
    want = fastlstm.backward(tape, dy)
    w_old = {k: None if v is None else v.copy() for k, v in w.items()}
    for v in w.values():
        v *= 3   # written after the call: the tape ran (and differentiates) the old weights
    _call("lstm", x, w, backend)
    got = fastlstm.backward(tape, dy)
    for name in ("x", "w_ih", "w_hh", "b_ih", "w_hr"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    _functional_packs.clear()
    _, _, fresh = _call("lstm", x, w_old, backend, return_tape=True)
    np.testing.assert_array_equal(fastlstm.backward(fresh, dy).w_hh, want.w_hh)


def test_same_bytes():
    same = same_bytes_function()
    rng = np.random.default_rng(0)
    for a in (rng.standard_normal((3, 4)).astype(np.float32), np.zeros(0),
              np.array([0.0, np.nan]), rng.standard_normal(5)):
        b = a.copy()
        for f in (same, _functional_packs.numpy_same_bytes):
            assert f(a, b)
            assert not f(a, np.zeros(a.size + 1, a.dtype))
            if a.size:
                c = b.copy()
                c.reshape(-1).view(np.uint8)[-1] ^= 1
                assert not f(a, c)
    zero = np.array([0.0])
    assert not same(zero, -zero) and not _functional_packs.numpy_same_bytes(zero, -zero)
    if same is not _functional_packs.numpy_same_bytes:
        with pytest.raises(TypeError, match="two C-contiguous arrays expected"):
            same(np.zeros((3, 4))[:, ::2], np.zeros((3, 2)))


def test_all_same():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5)
    copies = (a.copy(), None, b.copy())
    flipped = b.copy()
    flipped.view(np.uint8)[3] ^= 4
    cases = [
        ((a, None, b), True),
        ((a.copy(), None, b.copy()), True),
        ((a, b, b), False),                      # given where the copy is None
        ((a, None, None), False),                # left out
        ((a, None, flipped), False),             # one bit
        ((a.reshape(4, 3), None, b), False),     # same bytes, other shape
        ((a.view(np.int32), None, b), False),    # same bytes, other dtype
        ((np.asfortranarray(a), None, b), False),
        ((a.tolist(), None, b), False),
        ((a, None), False),
    ]
    for f in {all_same_function(), _functional_packs.numpy_all_same}:
        for values, want in cases:
            assert f(values, copies) is want, values
