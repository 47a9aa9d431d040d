"""Reduced precision (int8, bfloat16): the reference math, the kernels' products against it
(int8 bit for bit on every path and level; bfloat16 to rounding), the Cython driver against
the reference for every cell and option, and the modules' calls, streams, state and errors.

Paths the CPU lacks (VNNI, AVX512_BF16, AVX_VNNI) are skipped, saying so; CI runs the cython
tests once per x86-64 level the machine has (FASTLSTM_ISA), so each level's plain path and,
where the CPU has them, its dot-product paths are tested there.
"""
import numpy as np
import pytest

import fastlstm
from fastlstm import _isa, _reduced
from fastlstm._backends import get_backend
from fastlstm.layers.quantized import Quantized
from fastlstm.reference import quantized as Q

PRECISIONS = ("int8", "bfloat16")
CODES = {"int8": 0, "bfloat16": 1}
#: (class, options) of every cell and LSTM variant
FAMILY = [
    (fastlstm.LSTM, {}),
    (fastlstm.LSTM, {"proj_size": 7}),
    (fastlstm.LSTM, {"peepholes": True}),
    (fastlstm.GRU, {}),
    (fastlstm.GRU, {"linear_before_reset": False}),
    (fastlstm.RNN, {}),
    (fastlstm.RNN, {"nonlinearity": "relu"}),
]
FAMILY_IDS = ["lstm", "lstm-proj", "lstm-peep", "gru", "gru-reset-before", "rnn-tanh",
              "rnn-relu"]


def _cython():
    try:
        return get_backend("cython")
    except ValueError:
        pytest.skip("the cython backend is not built")


def _dot_paths(precision):
    """[False] plus True when this build and CPU have the dot-product path of `precision`."""
    backend = _cython()
    return [False, True] if backend.dot_products()[precision] or (
        backend.reduced_module.dot_paths()[precision]
        and _cpu_has_dot(backend.level, precision)) else [False]


def _cpu_has_dot(level, precision):
    features = _isa.cpu_features()
    if precision == "bfloat16":
        return features.get("avx512_bf16", False)
    return features.get("avx512_vnni" if level == "x86-64-v4" else "avx_vnni", False)


# ------------------------------------------------------------------------------ reference


def test_quantize_rows_scales_codes_and_edge_rows():
    x = np.array([[0.5, -1.0, 0.25, 0.0], [0, 0, 0, 0], [3.0, np.nan, 1.0, 2.0],
                  [1e-30, -2e-30, 0, 0]], np.float32)
    codes, scale = Q.quantize_rows(x)
    assert codes.dtype == np.int8 and scale.dtype == np.float32
    np.testing.assert_array_equal(codes[0], [64, -127, 32, 0])   # rint(63.5) = 64 (even)
    assert scale[0] == np.float32(1.0) / np.float32(127)
    np.testing.assert_array_equal(codes[1], 0)
    assert scale[1] == 0
    np.testing.assert_array_equal(codes[2], 0)                    # a NaN row: scale NaN
    assert np.isnan(scale[2])
    np.testing.assert_array_equal(codes[3], [64, -127, 0, 0])     # tiny values keep their codes


def test_quantize_rows_round_trip_error_is_half_a_step():
    x = np.random.default_rng(0).standard_normal((50, 33)).astype(np.float32)
    codes, scale = Q.quantize_rows(x)
    assert codes.min() >= -127
    err = np.abs(codes * scale[:, None] - x)
    assert np.all(err <= scale[:, None] * (0.5 + 1e-5))
    assert np.all(np.abs(codes).max(axis=1) == 127)


def test_quantize_activations_codes_zero_points_and_edge_rows():
    x = np.array([[0.5, -1.0, 0.25, 0.0], [0, 0, 0, 0], [3.0, np.nan, 1.0, 2.0],
                  [2.0, 0.0, 0.5, 1.0], [-2.0, 2.0, 1.0, 0.0], [-1.0, -4.0, 0, 0]], np.float32)
    codes, scale, zero = Q.quantize_activations(x)
    assert codes.dtype == np.int8 and scale.dtype == zero.dtype == np.float32
    # row 0: [-1, 0.5] over 254 steps: step 1.5 / 254, zero rint(-127 + 254 / 1.5) = 42
    assert scale[0] == np.float32(1.5) / np.float32(254) and zero[0] == 42
    np.testing.assert_array_equal(codes[0], [127, -127, 84, 42])   # 0 is exactly the code 42
    np.testing.assert_array_equal(codes[1], 0)                       # zeros: scale 0, zero 0
    assert scale[1] == 0 and zero[1] == 0
    np.testing.assert_array_equal(codes[2], 0)                       # NaN: scale NaN, zero 0
    assert np.isnan(scale[2]) and zero[2] == 0
    # non-negative: [0, 2] uses every code from -127 (0) to 127 (2)
    assert zero[3] == -127
    np.testing.assert_array_equal(codes[3], [127, -127, -63, 0])     # rint(63.5) = 64 (even)
    # symmetric about 0: the symmetric code (zero point 0, max / 127)
    assert zero[4] == 0 and scale[4] == np.float32(2.0) / np.float32(127)
    np.testing.assert_array_equal(codes[4], [-127, 127, 64, 0])
    assert zero[5] == 127                                            # non-positive: 0 at 127


def test_quantize_activations_round_trip_error_is_half_a_step():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal((50, 33)),
                        np.maximum(rng.standard_normal((50, 33)), 0)]).astype(np.float32)
    codes, scale, zero = Q.quantize_activations(x)
    assert codes.min() >= -127 and np.all(np.abs(zero) <= 127)
    err = np.abs((codes - zero[:, None]) * scale[:, None] - x)
    assert np.all(err <= scale[:, None] * (0.5 + 1e-4))
    # post-ReLU rows use the whole range: twice as fine as a symmetric code's max / 127
    _, sym = Q.quantize_rows(x[50:])
    np.testing.assert_allclose(scale[50:], sym / 2, rtol=1e-6)


def test_bfloat16_rounds_to_nearest_even():
    one = np.float32(1.0)
    ulp = np.float32(2.0 ** -7)   # bfloat16's step at 1
    values = np.array([one, one + ulp / 2, one + ulp * 1.5, one + ulp / 2 + ulp / 1024,
                       -one - ulp / 2, np.inf, -np.inf, np.nan, np.finfo(np.float32).max, 0.0],
                      np.float32)
    got = Q.from_bfloat16(Q.to_bfloat16(values))
    expected = [1.0, 1.0, 1.0 + 2 * ulp, 1.0 + ulp, -1.0, np.inf, -np.inf, np.nan,
                np.inf, 0.0]   # float32's largest rounds up past bfloat16's: infinity
    np.testing.assert_array_equal(got[:7], np.array(expected[:7], np.float32))
    assert np.isnan(got[7])
    assert got[8] == np.inf
    assert got[9] == 0


def test_bfloat16_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal(10_000).astype(np.float32) * 100
    ours = Q.round_to_bfloat16(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_int8_product_is_the_integer_sum_scaled():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 70)).astype(np.float32)
    w = rng.standard_normal((9, 70)).astype(np.float32)
    x[3] = np.maximum(x[3], 0)                                       # a post-ReLU row
    W = Q.Int8Matrix.quantize(w)
    xq, xs, xz = Q.quantize_activations(x)
    # no rounding anywhere: sum_k (x_q - z_x) W_q
    exact = (xq.astype(np.int64) - xz.astype(np.int64)[:, None]) @ W.codes.T.astype(np.int64)
    expected = exact.astype(np.float32) * (xs[:, None] * W.scale[None, :])
    np.testing.assert_array_equal(W.product(x), expected)
    # and it approximates the float product within the two quantization steps
    bound = (np.abs(x).sum(1)[:, None] * W.scale[None, :] / 2
             + xs[:, None] / 2 * np.abs(w).sum(1)[None, :]) * 1.01 + 1e-6
    assert np.all(np.abs(W.product(x) - x @ w.T) <= bound)


def test_reference_cells_take_reduced_weights():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    h = rng.standard_normal((4, 8)).astype(np.float32) * 0.5
    w_ih = rng.standard_normal((24, 6)).astype(np.float32) * 0.3
    w_hh = rng.standard_normal((24, 8)).astype(np.float32) * 0.3
    for precision in PRECISIONS:
        M = Q.MATRICES[precision]
        for lbr in (True, False):
            h_f, _ = fastlstm.reference.gru_cell_forward(x, h, w_ih, w_hh,
                                                         linear_before_reset=lbr)
            h_q, _ = fastlstm.reference.gru_cell_forward(x, h, M.quantize(w_ih),
                                                         M.quantize(w_hh),
                                                         linear_before_reset=lbr)
            assert 0 < np.abs(h_q - h_f).max() < 0.05


# ------------------------------------------------------------------------------ kernels


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (1, 5, 3), (1, 64, 20), (3, 4, 16), (5, 33, 40),
                                   (9, 40, 130), (13, 256, 100), (17, 512, 64)])
def test_cython_product_against_reference(precision, m, k, n):
    """int8: the same bits as the reference on every path; bfloat16: to rounding."""
    module = _cython().reduced_module
    rng = np.random.default_rng(m * 1000 + k + n)
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[0, 0] = 0 if m > 1 else x[0, 0]
    W = Q.MATRICES[precision].quantize(rng.standard_normal((n, k)).astype(np.float32))
    expected = W.product(x)
    for dot in _dot_paths(precision):
        out = np.full((m, n), 7.0, np.float32)
        module.product(CODES[precision], dot, x, *_reduced.pack(W, 1), out)
        if precision == "int8":
            np.testing.assert_array_equal(out, expected, err_msg=f"dot={dot}")
        else:
            scale = np.abs(Q.round_to_bfloat16(x)) @ np.abs(W.dequantized()).T
            assert np.all(np.abs(out - expected) <= 1e-6 * k * scale + 1e-30), f"dot={dot}"
        acc = np.ones((m, n), np.float32)   # accumulate: adds to what out holds
        module.product(CODES[precision], dot, x, *_reduced.pack(W, 1), acc, True)
        np.testing.assert_allclose(acc, out + 1, rtol=1e-6, atol=1e-6)


def test_cython_int8_zero_points_of_edge_rows_match_the_reference():
    """Rows whose zero point is at either end, 0, or undefined (zeros, a span past FLT_MAX),
    over a k that leaves vector tails: the kernels' codes, zero points and sums give the
    reference's bits on every path."""
    module = _cython().reduced_module
    rng = np.random.default_rng(11)
    k = 37
    x = rng.standard_normal((8, k)).astype(np.float32)
    x[0] = np.abs(x[0])                      # non-negative: zero point -127
    x[1] = -np.abs(x[1])                     # non-positive: 127
    x[2] = 0                                 # zeros
    x[3, :] = 0
    x[3, [2, 30]] = [-2.5, 2.5]              # symmetric: zero point 0
    x[4, :2] = [3e38, -3e38]                 # hi - lo overflows to infinity
    x[5] *= 1e-30                            # tiny values
    x[6] = np.maximum(x[6], 0) * 40          # post-ReLU, large
    W = Q.Int8Matrix.quantize(rng.standard_normal((20, k)).astype(np.float32))
    expected = W.product(x)
    _, _, zero = Q.quantize_activations(x)
    assert zero[0] == -127 and zero[1] == 127 and zero[2] == 0 and zero[3] == 0
    for dot in _dot_paths("int8"):
        out = np.zeros((8, 20), np.float32)
        module.product(0, dot, x, *_reduced.pack(W, 1), out)
        np.testing.assert_array_equal(out, expected, err_msg=f"dot={dot}")


def test_cython_int8_product_nan_row_gives_nan():
    module = _cython().reduced_module
    x = np.ones((2, 8), np.float32)
    x[1, 3] = np.nan
    W = Q.Int8Matrix.quantize(np.ones((5, 8), np.float32))
    for dot in _dot_paths("int8"):
        out = np.zeros((2, 5), np.float32)
        module.product(0, dot, x, *_reduced.pack(W, 1), out)
        assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))


def test_cython_dot_paths_report(capsys):
    backend = _cython()
    built = backend.reduced_module.dot_paths()
    with capsys.disabled():
        print(f"\n[{backend.level}] dot-product paths built: {built}; used here: "
              f"{backend.dot_products()}")
    for precision in PRECISIONS:
        if not (built[precision] and _cpu_has_dot(backend.level, precision)):
            pytest.skip(f"{precision}: this build or CPU has no dot-product path "
                        f"({backend.level}); the plain path is tested instead")


# ------------------------------------------------------------------------------ modules


def _module(cls, options, I=5, H=20, layers=1, **extra):
    return cls(I, H, num_layers=layers, seed=11, **options, **extra).eval()


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cls,options", FAMILY, ids=FAMILY_IDS)
def test_cython_module_against_reference(cls, options, precision):
    """The Cython driver against the reference on the same quantized weights: lengths (with
    a zero), reverse, two layers; and close to the float module."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 4, 5)).astype(np.float32)
    lengths = [9, 3, 0, 6]
    for extra in ({"num_layers": 2}, {"reverse": True}):
        m = cls(5, 20, seed=3, **options, **extra).eval()
        q = m.quantize(precision)
        ref = m.quantize(precision)
        ref.backend = "numpy"
        y_c, hx_c = q(x, lengths=lengths)
        y_r, hx_r = ref(x, lengths=lengths)
        y_f, _ = m(x, lengths=lengths)
        # the same math; only float rounding (pointwise functions) differs, which may move
        # an activation code by one step now and then
        assert np.abs(y_c - y_r).max() < 2e-3
        for a, b in zip(np.atleast_1d(hx_c) if cls is not fastlstm.LSTM else hx_c,
                        np.atleast_1d(hx_r) if cls is not fastlstm.LSTM else hx_r):
            assert np.abs(a - b).max() < 2e-3
        assert np.abs(y_c - y_f).max() < 0.05
        np.testing.assert_array_equal(y_c[3:, 1], 0)   # past row 1's length
        np.testing.assert_array_equal(y_c[:, 2], 0)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cls,options", FAMILY, ids=FAMILY_IDS)
def test_cython_threads_give_the_same_bits(cls, options, precision):
    m = cls(48, 96, seed=2, **options).eval()
    q = m.quantize(precision)
    x = np.random.default_rng(6).standard_normal((30, 3, 48)).astype(np.float32)
    with fastlstm.threads(1):
        one = q(x, lengths=[30, 17, 29])
    with fastlstm.threads(2):
        two = q(x, lengths=[30, 17, 29])
    np.testing.assert_array_equal(one[0], two[0])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_cython_large_batch_chunks_and_dot_paths_agree(monkeypatch, precision):
    """Inference chunks of steps (K < T) and every path of this build: int8 gives the same
    bits on the plain and the dot-product path; bfloat16 agrees to rounding."""
    m = fastlstm.LSTM(24, 40, seed=4).eval()
    q = m.quantize(precision)
    x = np.random.default_rng(7).standard_normal((40, 33, 24)).astype(np.float32)
    outs = []
    for dot in _dot_paths(precision):
        monkeypatch.setenv("FASTLSTM_DOT_PRODUCTS", "1" if dot else "0")
        outs.append(q(x)[0])
    if len(outs) == 2:
        if precision == "int8":
            np.testing.assert_array_equal(outs[0], outs[1])
        else:
            assert np.abs(outs[0] - outs[1]).max() < 1e-3
    ref = m.quantize(precision)
    ref.backend = "numpy"
    assert np.abs(outs[0] - ref(x)[0]).max() < 2e-3


@pytest.mark.parametrize("precision", PRECISIONS)
def test_layouts_states_and_bidirectional(precision):
    m = fastlstm.LSTM(5, 12, num_layers=2, bidirectional=True, batch_first=True, seed=1).eval()
    q = m.quantize(precision)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 7, 5)).astype(np.float32)
    h0 = rng.standard_normal((4, 3, 12)).astype(np.float32) * 0.3
    c0 = rng.standard_normal((4, 3, 12)).astype(np.float32) * 0.3
    y, (h, c) = q(x, (h0, c0))
    y_f, (h_f, c_f) = m(x, (h0, c0))
    assert y.shape == y_f.shape == (3, 7, 24) and h.shape == (4, 3, 12) and c.shape == c_f.shape
    assert np.abs(y - y_f).max() < 0.05 and np.abs(c - c_f).max() < 0.05
    y1, _ = q(x[0], (h0[:, 0], c0[:, 0]))          # unbatched
    np.testing.assert_allclose(y1, y[0], atol=1e-6)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cls,options", FAMILY[:1] + FAMILY[3:4] + FAMILY[5:6],
                         ids=["lstm", "gru", "rnn"])
def test_stream_equals_whole_sequence(cls, options, precision):
    m = cls(6, 16, num_layers=2, seed=9, **options).eval()
    q = m.quantize(precision)
    x = np.random.default_rng(9).standard_normal((10, 2, 6)).astype(np.float32)
    y, _ = q(x)
    s = q.stream(batch_size=2)
    steps = [s.step(x[t]) for t in range(4)] + list(s.step(x[4:]))
    np.testing.assert_allclose(np.stack(steps), y, atol=1e-6)
    s.reset()
    np.testing.assert_allclose(s.step(x[0]), y[0], atol=1e-6)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_stream_steps_of_any_layout_and_bad_steps(precision):
    """A step from a strided, a read-only or a misaligned x gives what a C-contiguous one
    does (the general path); a wrong dtype, byte order or shape is refused naming x, with the
    state left as it was."""
    m = fastlstm.GRU(6, 16, num_layers=2, seed=4).eval()
    q = m.quantize(precision)
    x = np.random.default_rng(4).standard_normal((6, 2, 6)).astype(np.float32)
    y, _ = q(x)
    s = q.stream(batch_size=2)
    wide = np.zeros((6, 2, 12), np.float32)
    wide[:, :, ::2] = x
    frozen = x.copy()
    frozen.flags.writeable = False
    odd = np.zeros(x.nbytes + 1, np.uint8)[1:].view(np.float32).reshape(x.shape)
    odd[...] = x
    steps = [s.step(a[t]) for t, a in enumerate((wide[:, :, ::2], frozen, odd, x, x, x))]
    np.testing.assert_allclose(np.stack(steps), y, atol=1e-6)
    s.reset()
    s.step(x[0])
    before = s.state.copy()   # a GRU's h (layers, B, H)
    for exc, bad in [(TypeError, x[1].astype(np.float64)),
                     (TypeError, x[1].astype(np.dtype(np.float32).newbyteorder())),
                     (ValueError, np.zeros((3, 6), np.float32)),
                     (ValueError, np.zeros((2, 7), np.float32))]:
        with pytest.raises(exc, match="x"):
            s.step(bad)
    np.testing.assert_array_equal(s.state, before)
    np.testing.assert_allclose(s.step(x[1]), y[1], atol=1e-6)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_state_dict_round_trip(precision):
    m = fastlstm.LSTM(5, 16, proj_size=4, seed=2).eval()
    q = m.quantize(precision)
    d = q.state_dict()
    if precision == "int8":
        assert d["weight_ih_l0"].dtype == np.int8 and d["weight_ih_l0_scale"].shape == (64,)
    else:
        assert d["weight_hh_l0"].dtype == np.uint16
    assert d["bias_ih_l0"].dtype == np.float32
    other = fastlstm.LSTM(5, 16, proj_size=4, seed=99).eval().quantize(precision)
    x = np.random.default_rng(1).standard_normal((6, 2, 5)).astype(np.float32)
    assert not np.array_equal(other(x)[0], q(x)[0])
    other.load_state_dict(d)
    np.testing.assert_array_equal(other(x)[0], q(x)[0])
    d["weight_ih_l0"][...] = 0   # a copy: the module is unchanged
    np.testing.assert_array_equal(other(x)[0], q(x)[0])


def test_quantize_leaves_the_float_module_alone():
    m = fastlstm.GRU(4, 8, seed=0).eval()
    before = m.state_dict()
    m.quantize("int8")
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_errors():
    m = fastlstm.LSTM(4, 8, seed=0)
    with pytest.raises(ValueError, match="precision"):
        m.quantize("int4")
    with pytest.raises(ValueError, match="float32"):
        fastlstm.LSTM(4, 8, dtype="float64").quantize("int8")
    q = m.quantize("int8")
    x = np.zeros((3, 1, 4), np.float32)
    with pytest.raises(ValueError, match="inference-only"):
        q.train()
    with pytest.raises(ValueError, match="return_tape"):
        q.forward(x, return_tape=True)
    with pytest.raises(TypeError, match="inference-only"):
        q.backward(None)
    with pytest.raises(TypeError, match="inference-only"):
        q.parameters()
    with pytest.raises(TypeError, match="dtype"):
        q(x.astype(np.float64))
    with pytest.raises(ValueError, match="input size"):
        q(np.zeros((3, 1, 5), np.float32))
    d = q.state_dict()
    bad = dict(d, weight_ih_l0=d["weight_ih_l0"].astype(np.int16))
    with pytest.raises(TypeError, match="int8"):
        q.load_state_dict(bad)
    bad = dict(d, weight_ih_l0=np.full_like(d["weight_ih_l0"], -128))
    with pytest.raises(ValueError, match="-127, 127"):
        q.load_state_dict(bad)
    with pytest.raises(KeyError, match="weight_hh_l0_scale"):
        q.load_state_dict({k: v for k, v in d.items() if k != "weight_hh_l0_scale"})
    with pytest.raises(ValueError, match="bidirectional"):
        fastlstm.LSTM(4, 8, bidirectional=True).quantize("bfloat16").stream()
    nan = fastlstm.LSTM(4, 8, seed=0)
    nan.load_state_dict(dict(nan.state_dict(), weight_hh_l0=np.full((32, 8), np.nan)))
    with pytest.raises(ValueError, match="NaN"):
        nan.quantize("int8")
    with pytest.raises(TypeError, match="module"):
        Quantized(object(), "int8")


def test_numba_backend_refuses_reduced_precision():
    try:
        get_backend("numba")
    except ValueError:
        pytest.skip("the numba backend is not available")
    m = fastlstm.LSTM(4, 8, seed=0, backend="numba").eval()
    q = m.quantize("int8")
    with pytest.raises(ValueError, match="numba"):
        q(np.zeros((2, 1, 4), np.float32))


def test_repr_names_precision():
    q = fastlstm.GRU(4, 8, linear_before_reset=False).quantize("bfloat16")
    assert repr(q) == ("QuantizedGRU(4, 8, linear_before_reset=False, dtype=float32, "
                       "precision='bfloat16')")


def test_quantize_says_when_it_will_not_be_faster(monkeypatch):
    from fastlstm.layers.quantized import ReducedPrecisionWarning, speed_caveat

    with pytest.warns(ReducedPrecisionWarning, match="hidden_size = 16 < 64"):
        fastlstm.LSTM(8, 16).quantize("int8")
    with pytest.warns(ReducedPrecisionWarning, match="numpy backend"):
        fastlstm.GRU(8, 128, backend="numpy").quantize("bfloat16")
    _cython()
    monkeypatch.setenv("FASTLSTM_DOT_PRODUCTS", "0")
    with pytest.warns(ReducedPrecisionWarning, match="plain path"):
        fastlstm.LSTM(8, 128).quantize("bfloat16")
    monkeypatch.delenv("FASTLSTM_DOT_PRODUCTS")
    m = fastlstm.LSTM(8, 128)
    for precision in PRECISIONS:
        if _cython().dot_products()[precision]:
            assert speed_caveat(m, precision) is None


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cls,options", [FAMILY[1], FAMILY[4]], ids=["lstm-proj",
                                                                      "gru-reset-before"])
def test_cython_stream_steps_on_two_threads(cls, options, precision):
    """Single steps through the step plans (shared by two threads at this size) and chunks
    through the driver, mixed, equal to one whole call."""
    m = cls(32, 256, seed=4, **options).eval()
    q = m.quantize(precision)
    x = np.random.default_rng(10).standard_normal((7, 3, 32)).astype(np.float32)
    with fastlstm.threads(2):
        y, _ = q(x)
        s = q.stream(batch_size=3)
        got = [s.step(x[0]), s.step(x[1])] + list(s.step(x[2:5])) + [s.step(x[5]),
                                                                        s.step(x[6])]
    np.testing.assert_array_equal(np.stack(got), y)
