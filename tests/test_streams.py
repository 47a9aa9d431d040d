"""Streams (fastlstm/layers/stream.py, SPEC.md sections 7-8): m.stream(batch_size) steps a
unidirectional LSTM / GRU / RNN stack with the state carried between calls.

For every backend and dtype, over a sampled set of module configs (LSTM with and without
proj_size, GRU linear_before_reset True/False, RNN tanh/relu; 1-3 layers; bias on/off;
batch_first):
- single steps equal the whole-sequence call in eval mode (y, and s.state vs h_n / c_n):
  bitwise for the cython backend, within 1e-12 (float64) / 1e-5 (float32) otherwise;
- chunks of varied sizes (including T=0, chunks longer than the kernels' gate block, more
  distinct lengths than the stream keeps buffers for) mixed with single steps equal it too;
  outputs are new arrays (a later call does not overwrite them); non-contiguous, Fortran-order
  and read-only steps work; batch_size 1; larger sizes (multi-threaded cython chunks);
- reset(rows) mid-sequence restarts those rows only; reset() zeros everything;
- a stream holds a private copy of the weights (later load_state_dict / in-place parameter
  changes do not reach it);
- 8 threads, each with its own stream of one module, give the sequential results exactly;
- errors: bidirectional, batch_size, x's shape / ndim / dtype (the state unchanged after an
  error), reset rows; s.state returns copies.
"""
import threading

import numpy as np
import pytest

import fastlstm

BACKENDS = fastlstm.available_backends()
DTYPES = ("float32", "float64")
TOL = {"float32": 1e-5, "float64": 1e-12}
B, I, H, T = 3, 4, 5, 7

# (id, kind, options, num_layers, bias, batch_first): the sampled configs
CONFIGS = [
    ("lstm-L2", "lstm", {}, 2, True, False),
    ("lstm-proj-L3-nobias-bf", "lstm", {"proj_size": 3}, 3, False, True),
    ("lstm-proj-L1", "lstm", {"proj_size": 2}, 1, True, False),
    ("gru-lbr-L1-bf", "gru", {"linear_before_reset": True}, 1, True, True),
    ("gru-rb-L3", "gru", {"linear_before_reset": False}, 3, True, False),
    ("gru-rb-L2-nobias-bf", "gru", {"linear_before_reset": False}, 2, False, True),
    ("rnn-tanh-L2-nobias", "rnn", {"nonlinearity": "tanh"}, 2, False, False),
    ("rnn-relu-L3-bf", "rnn", {"nonlinearity": "relu"}, 3, True, True),
]
CLASSES = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}


def make_module(cfg, backend, dtype, seed=0):
    _, kind, opts, L, bias, bf = cfg
    m = CLASSES[kind](I, H, num_layers=L, bias=bias, batch_first=bf, dtype=dtype, seed=seed,
                      backend=backend, **opts)
    return m.eval()


def make_x(dtype, steps=T, batch=B, seed=1):
    """Time-major (steps, batch, I)."""
    return np.random.default_rng(seed).standard_normal((steps, batch, I)).astype(dtype)


def whole(m, x_tm):
    """The whole-sequence call on time-major x: y (T, B, H_out) time-major, states as a tuple."""
    x = np.ascontiguousarray(x_tm.transpose(1, 0, 2)) if m.batch_first else x_tm
    y, st = m(x)
    if m.batch_first:
        y = y.transpose(1, 0, 2)
    return y, (st if isinstance(st, tuple) else (st,))


def states(s):
    st = s.state
    return st if isinstance(st, tuple) else (st,)


def chunk_in(m, x_tm):
    return np.ascontiguousarray(x_tm.transpose(1, 0, 2)) if m.batch_first else x_tm


def chunk_out(m, y):
    return y.transpose(1, 0, 2) if m.batch_first else y


def check_equal(actual, expected, backend, dtype):
    if backend == "cython":
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=TOL[dtype], atol=TOL[dtype])


def cases():
    return [pytest.param(cfg, b, dt, id=f"{cfg[0]}-{b}-{dt}")
            for cfg in CONFIGS for b in BACKENDS for dt in DTYPES]


# --------------------------------------------------------------------------------------------
# equality with the whole-sequence call

@pytest.mark.parametrize("cfg,backend,dtype", cases())
def test_steps_equal_whole_sequence(cfg, backend, dtype):
    m = make_module(cfg, backend, dtype)
    x = make_x(dtype)
    y_ref, st_ref = whole(m, x)
    s = m.stream(batch_size=B)
    H_out = m.output_size
    ys = []
    for t in range(T):
        y_t = s.step(x[t])
        assert y_t.shape == (B, H_out) and y_t.dtype == np.dtype(dtype)
        ys.append(y_t)
    # earlier outputs are not overwritten by later steps (new arrays each call)
    check_equal(np.stack(ys), y_ref, backend, dtype)
    got = states(s)
    assert len(got) == len(st_ref)
    for a, e in zip(got, st_ref):
        assert a.shape == e.shape
        check_equal(a, e, backend, dtype)


@pytest.mark.parametrize("cfg,backend,dtype", cases())
def test_chunks_and_steps_equal_whole_sequence(cfg, backend, dtype):
    m = make_module(cfg, backend, dtype)
    sizes = [1, 3, 0, 2, "step", 1, 0, 3, "step", "step", 4, 2, 3]
    total = sum(1 if n == "step" else n for n in sizes)
    x = make_x(dtype, steps=total)
    y_ref, st_ref = whole(m, x)
    s = m.stream(batch_size=B)
    H_out = m.output_size
    outs, t = [], 0
    for n in sizes:
        if n == "step":
            y = s.step(x[t])
            assert y.shape == (B, H_out)
            outs.append(y[None])
            t += 1
            continue
        y = s.step(chunk_in(m, x[t:t + n]))
        assert y.shape == ((B, n, H_out) if m.batch_first else (n, B, H_out))
        assert y.dtype == np.dtype(dtype)
        outs.append(chunk_out(m, y))
        t += n
    # the outputs kept are intact after the later calls (chunks of the same length reuse
    # the stream's buffers)
    check_equal(np.concatenate(outs), y_ref, backend, dtype)
    for a, e in zip(states(s), st_ref):
        check_equal(a, e, backend, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_chunk_lengths(backend):
    """Chunks of 10 distinct lengths (more than the stream keeps buffers for), then repeated."""
    m = make_module(CONFIGS[1], backend, "float64")
    sizes = list(range(1, 11)) + [1, 5, 2]
    x = make_x("float64", steps=sum(sizes), seed=5)
    y_ref, st_ref = whole(m, x)
    s = m.stream(batch_size=B)
    outs, t = [], 0
    for n in sizes:
        outs.append(chunk_out(m, s.step(chunk_in(m, x[t:t + n]))))
        t += n
    check_equal(np.concatenate(outs), y_ref, backend, "float64")
    for a, e in zip(states(s), st_ref):
        check_equal(a, e, backend, "float64")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_step_and_batch_one(backend, dtype):
    m = make_module(CONFIGS[0], backend, dtype)
    x = make_x(dtype, seed=3)
    y_ref, st_ref = whole(m, x)
    # a non-contiguous (B, I) view: every other column of a wider array
    s = m.stream(batch_size=B)
    wide = np.zeros((T, B, 2 * I), dtype)
    wide[:, :, ::2] = x
    ys = [s.step(wide[t, :, ::2]) for t in range(T)]
    check_equal(np.stack(ys), y_ref, backend, dtype)
    # read-only steps, and steps from a misaligned buffer (the general path), with the same
    # results; the input is left as it was
    s = m.stream(batch_size=B)
    frozen = x.copy()
    frozen.flags.writeable = False
    raw = np.zeros(x.nbytes + 1, np.uint8)
    odd = raw[1:].view(dtype).reshape(x.shape)
    odd[...] = x
    ys = [s.step(frozen[t] if t % 2 else odd[t]) for t in range(T)]
    check_equal(np.stack(ys), y_ref, backend, dtype)
    np.testing.assert_array_equal(frozen, x)
    # batch_size 1, and the default batch_size is 1
    for s1 in (m.stream(batch_size=1), m.stream()):
        y1 = np.stack([s1.step(x[t, 1:2]) for t in range(T)])
        y1_ref, st1_ref = whole(m, np.ascontiguousarray(x[:, 1:2]))
        check_equal(y1, y1_ref, backend, dtype)
        for a, e in zip(states(s1), st1_ref):
            check_equal(a, e, backend, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", [1, 40])
def test_long_chunks_and_odd_layouts(batch, backend):
    """A chunk longer than the kernels' gate block (256 // B rows), then a Fortran-order step
    and a read-only step."""
    from fastlstm import _api

    dtype = "float64"
    for cfg in (CONFIGS[2], CONFIGS[4], CONFIGS[6]):
        m = make_module(cfg, backend, dtype)
        steps = max(3, 2 * _api._INFERENCE_CHUNK_ROWS // batch + 3)
        x = make_x(dtype, steps=steps, batch=batch, seed=7)
        y_ref, st_ref = whole(m, x)
        s = m.stream(batch_size=batch)
        ya = chunk_out(m, s.step(chunk_in(m, x[:steps - 2])))
        yb = s.step(np.asfortranarray(x[steps - 2]))
        xr = x[steps - 1].copy()
        xr.flags.writeable = False
        yc = s.step(xr)
        check_equal(np.concatenate([ya, yb[None], yc[None]]), y_ref, backend, dtype)
        for a, e in zip(states(s), st_ref):
            check_equal(a, e, backend, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_larger_sizes(backend, dtype):
    """Sizes where the cython kernels use several threads for a chunk."""
    for kind, opts in (("lstm", {"proj_size": 16}), ("gru", {}), ("rnn", {})):
        m = CLASSES[kind](64, 64, num_layers=2, seed=0, backend=backend, dtype=dtype,
                          **opts).eval()
        x = np.random.default_rng(0).standard_normal((40, 64, 64)).astype(dtype)
        y_ref, st_ref = m(x)
        s = m.stream(batch_size=64)
        y = np.concatenate([s.step(x[:17]), s.step(x[17])[None], s.step(x[18:])])
        check_equal(y, y_ref, backend, dtype)
        st_ref = st_ref if isinstance(st_ref, tuple) else (st_ref,)
        for a, e in zip(states(s), st_ref):
            check_equal(a, e, backend, dtype)


# --------------------------------------------------------------------------------------------
# reset

@pytest.mark.parametrize("cfg,backend,dtype", cases())
def test_reset_rows(cfg, backend, dtype):
    m = make_module(cfg, backend, dtype)
    x = make_x(dtype, seed=2)
    k = 3
    y_ref, st_ref = whole(m, x)              # rows 0 and 2 never reset
    y_new, st_new = whole(m, np.ascontiguousarray(x[k:]))   # row 1 restarts at step k
    s = m.stream(batch_size=B)
    ys = [s.step(x[t]) for t in range(k - 1)]
    ys.append(chunk_out(m, s.step(chunk_in(m, x[k - 1:k])))[0])
    s.reset(rows=[1])
    st = states(s)
    for a in st:
        assert not a[:, 1].any()
        assert a[:, [0, 2]].any()
    ys.append(s.step(x[k]))
    ys.extend(chunk_out(m, s.step(chunk_in(m, x[k + 1:]))))
    y = np.stack(ys)
    for r in (0, 2):
        check_equal(y[:, r], y_ref[:, r], backend, dtype)
    check_equal(y[:k, 1], y_ref[:k, 1], backend, dtype)
    check_equal(y[k:, 1], y_new[:, 1], backend, dtype)
    for a, e_old, e_new in zip(states(s), st_ref, st_new):
        check_equal(a[:, [0, 2]], e_old[:, [0, 2]], backend, dtype)
        check_equal(a[:, 1], e_new[:, 1], backend, dtype)

    # reset(): everything zero, and the stream starts over
    s.reset()
    for a in states(s):
        assert not a.any()
    y2 = np.stack([s.step(x[t]) for t in range(T)])
    check_equal(y2, y_ref, backend, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reset_row_forms(backend):
    m = make_module(CONFIGS[3], backend, "float64")
    x = make_x("float64", steps=2, seed=4)
    for rows, zeroed in ((np.array([0, 2]), [0, 2]), (2, [2]),
                         (np.array([], np.int64), []), ([], []), ((1,), [1])):
        s = m.stream(batch_size=B)
        s.step(x[0])
        before = s.state
        s.reset(rows=rows)
        after = s.state
        for r in range(B):
            if r in zeroed:
                assert not after[:, r].any()
            else:
                np.testing.assert_array_equal(after[:, r], before[:, r])


# --------------------------------------------------------------------------------------------
# a private copy of the weights

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[4], CONFIGS[7]], ids=lambda c: c[0])
def test_stream_unaffected_by_later_module_changes(cfg, backend):
    dtype = "float64"
    m = make_module(cfg, backend, dtype, seed=0)
    other = make_module(cfg, backend, dtype, seed=99)
    x = make_x(dtype)
    y_ref, st_ref = whole(m, x)
    original = m.state_dict()

    s1 = m.stream(batch_size=B)
    ys = [s1.step(x[0])]                # already stepping when the module changes
    m.load_state_dict(other.state_dict())
    s2 = m.stream(batch_size=B)         # made after the first change: the other weights
    ys.append(s1.step(x[1]))
    # then the module's own arrays changed in place, and through state_dict/load_state_dict
    for p in m.parameters():
        p[...] = 0.5
    d = m.state_dict()
    for k in d:
        d[k] = d[k] * 2 + 1
    m.load_state_dict(d)
    ys.extend(chunk_out(m, s1.step(chunk_in(m, x[2:]))))
    # s1 went on with the original weights throughout
    check_equal(np.stack(ys), y_ref, backend, dtype)
    for a, e in zip(states(s1), st_ref):
        check_equal(a, e, backend, dtype)
    assert not np.allclose(whole(m, x)[0], y_ref)   # the module did change
    m.load_state_dict(original)
    # s2 uses the weights of the moment it was made (the other module's)
    y_other, _ = whole(other, x)
    y2 = np.stack([s2.step(x[t]) for t in range(T)])
    check_equal(y2, y_other, backend, dtype)
    assert not np.allclose(y_other, y_ref)


# --------------------------------------------------------------------------------------------
# threads

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[5]], ids=lambda c: c[0])
def test_threads_each_with_own_stream(cfg, backend):
    dtype = "float64"
    m = make_module(cfg, backend, dtype)
    n_threads = 8
    xs = [make_x(dtype, steps=12, seed=100 + i) for i in range(n_threads)]
    plan = ["step", 3, "step", 0, 2, "step", 3, "step"]   # 12 steps

    def run(i, out, barrier=None):
        s = m.stream(batch_size=B)
        if barrier is not None:
            barrier.wait()
        ys, t = [], 0
        for rep in range(3):
            t = 0
            for n in plan:
                if n == "step":
                    ys.append(s.step(xs[i][t])[None])
                    t += 1
                else:
                    ys.append(chunk_out(m, s.step(chunk_in(m, xs[i][t:t + n]))))
                    t += n
            if rep == 1:
                s.reset(rows=[i % B])
        out[i] = (np.concatenate(ys), states(s))

    sequential = {}
    for i in range(n_threads):
        run(i, sequential)
    concurrent, errors = {}, []
    barrier = threading.Barrier(n_threads)

    def target(i):
        try:
            run(i, concurrent, barrier)
        except BaseException as exc:   # reported below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads)
    assert not errors, errors
    for i in range(n_threads):
        np.testing.assert_array_equal(concurrent[i][0], sequential[i][0])
        for a, e in zip(concurrent[i][1], sequential[i][1]):
            np.testing.assert_array_equal(a, e)
    # and the sequential run itself matches the whole sequence, stream by stream
    y_ref, _ = whole(m, xs[0])
    check_equal(sequential[0][0][:12], y_ref, backend, dtype)


# --------------------------------------------------------------------------------------------
# errors

@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_bidirectional_cannot_stream(kind):
    m = CLASSES[kind](I, H, num_layers=2, bidirectional=True, seed=0)
    with pytest.raises(ValueError, match="bidirectional"):
        m.stream(batch_size=2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_bad_batch_size(bad):
    m = fastlstm.LSTM(I, H, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        m.stream(batch_size=bad)


def test_numpy_integer_batch_size():
    m = fastlstm.GRU(I, H, seed=0)
    s = m.stream(batch_size=np.int64(2))
    assert s.step(np.zeros((2, I), np.float32)).shape == (2, H)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[3], CONFIGS[6]], ids=lambda c: c[0])
def test_bad_x(cfg, backend):
    dtype = "float32"
    m = make_module(cfg, backend, dtype)
    s = m.stream(batch_size=B)
    x = make_x(dtype)
    s.step(x[0])
    before = states(s)
    other = np.float64 if dtype == "float32" else np.float32
    bad = [
        (ValueError, np.zeros((B, I + 1), dtype)),
        (ValueError, np.zeros((B + 1, I), dtype)),
        (ValueError, np.zeros((B - 1, I), dtype)),
        (ValueError, np.zeros((I,), dtype)),
        (ValueError, np.zeros((2, B, I, 1), dtype)),
        (ValueError, np.zeros((), dtype)),
        (ValueError, np.zeros((2, B, I + 1), dtype)),     # a chunk with the wrong I
        (ValueError, np.zeros((2, B + 1, I), dtype)),     # a chunk with the wrong B
        (TypeError, np.zeros((B, I), other)),
        (TypeError, np.zeros((2, B, I), other)),
        (TypeError, np.zeros((B, I), np.int64)),
        (TypeError, np.zeros((B, I), np.dtype(dtype).newbyteorder())),   # byte-swapped
        (TypeError, "x"),
    ]
    if m.batch_first:
        bad.append((ValueError, np.zeros((2, B, I), dtype)))   # time-major given to batch_first
    for exc, arr in bad:
        with pytest.raises(exc, match="x"):
            s.step(arr)
    # nothing moved: the state is as before the errors, and the stream goes on correctly
    for a, e in zip(states(s), before):
        np.testing.assert_array_equal(a, e)
    ys = [s.step(x[1])[None]] + [chunk_out(m, s.step(chunk_in(m, x[2:])))]
    y_ref, st_ref = whole(m, x)
    check_equal(np.concatenate(ys), y_ref[1:], backend, dtype)
    for a, e in zip(states(s), st_ref):
        check_equal(a, e, backend, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_reset_rows(backend):
    m = make_module(CONFIGS[2], backend, "float64")
    s = m.stream(batch_size=B)
    s.step(make_x("float64")[0])
    before = states(s)
    for rows in ([B], [-1], [0, B + 5], B, -1):
        with pytest.raises(ValueError, match="rows"):
            s.reset(rows=rows)
    for rows in ([1.0], 1.5, np.array([0.0, 1.0]), [[0, 1]], ["a"]):
        with pytest.raises(TypeError, match="rows"):
            s.reset(rows=rows)
    for a, e in zip(states(s), before):   # the failed resets changed nothing
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[6]], ids=lambda c: c[0])
def test_state_returns_copies(cfg, backend):
    dtype = "float64"
    m = make_module(cfg, backend, dtype)
    x = make_x(dtype)
    y_ref, st_ref = whole(m, x)
    s = m.stream(batch_size=B)
    L, H_out = m.num_layers, m.output_size
    init = states(s)
    assert init[0].shape == (L, B, H_out)
    if m.kind == "lstm":
        assert isinstance(s.state, tuple) and init[1].shape == (L, B, H)
    else:
        assert isinstance(s.state, np.ndarray)
    assert all(not a.any() for a in init)
    for t in range(T):
        for a in states(s):
            a[...] = 123.0          # writing into the returned arrays changes nothing
        s.step(x[t])
    got = states(s)
    for a, e in zip(got, st_ref):
        check_equal(a, e, backend, dtype)
    got[0][...] = 0
    assert states(s)[0].any()
    assert states(s)[0] is not states(s)[0]
