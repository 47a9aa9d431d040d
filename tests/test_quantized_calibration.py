"""Calibrated int8 rounding, m.quantize("int8", calibration=x): the reference's choice of
codes (reference.quantized.calibrated_codes) against plain rounding, the Gram matrices of the
inputs each weight meets (fastlstm.layers._calibration), and the modules made with it."""
import numpy as np
import pytest

import fastlstm
from fastlstm.layers._calibration import input_grams
from fastlstm.layers.quantized import ReducedPrecisionWarning
from fastlstm.reference import quantized as Q

pytestmark = pytest.mark.filterwarnings("ignore", category=ReducedPrecisionWarning)


def _correlated_inputs(rng, n, k):
    """(n, k) float32 inputs with correlated, partly zero features (as post-ReLU ones)."""
    mix = rng.standard_normal((k, k)) / np.sqrt(k)
    return np.maximum(rng.standard_normal((n, k)) @ mix + 0.3, 0).astype(np.float32)


def _product_error(w, matrix, z):
    return float(np.linalg.norm(z.astype(np.float64) @ (w - matrix.dequantized()).T))


def test_calibrated_codes_cut_the_product_error_with_the_same_scales():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((48, 40)).astype(np.float32)
    z = _correlated_inputs(rng, 400, 40)
    plain = Q.Int8Matrix.quantize(w)
    cal = Q.Int8Matrix.quantize(w, z.T.astype(np.float64) @ z)
    np.testing.assert_array_equal(cal.scale, plain.scale)
    assert cal.codes.dtype == np.int8 and cal.codes.min() >= -127 and cal.codes.max() <= 127
    assert not np.array_equal(cal.codes, plain.codes)
    # on the calibration inputs (0.66x here), and on new inputs of the same kind (0.80x)
    held_out = _correlated_inputs(np.random.default_rng(1), 400, 40)
    assert _product_error(w, cal, z) < 0.75 * _product_error(w, plain, z)
    assert _product_error(w, cal, held_out) < 0.9 * _product_error(w, plain, held_out)


def test_a_diagonal_gram_and_unseen_inputs_round_as_without_calibration():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((16, 12)).astype(np.float32)
    plain = Q.Int8Matrix.quantize(w).codes
    diagonal = np.diag(rng.uniform(0.5, 2.0, 12))
    np.testing.assert_array_equal(Q.calibrated_codes(w, diagonal)[0], plain)
    # inputs 3 and 7 never seen: their columns keep plain rounding, whatever the others do
    z = _correlated_inputs(rng, 100, 12)
    z[:, [3, 7]] = 0
    codes = Q.calibrated_codes(w, z.T.astype(np.float64) @ z)[0]
    np.testing.assert_array_equal(codes[:, [3, 7]], plain[:, [3, 7]])
    assert not np.array_equal(codes, plain)


def test_a_zero_row_stays_zero():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 8)).astype(np.float32)
    w[2] = 0
    z = _correlated_inputs(rng, 50, 8)
    codes, scale = Q.calibrated_codes(w, z.T.astype(np.float64) @ z)
    assert scale[2] == 0 and not codes[2].any()


def test_input_grams_are_the_layer_inputs_over_valid_steps():
    """Layer 0's input gram over x's valid steps; the last layer's h_{t-1} grams from the
    stack's outputs, each row's last step in its direction's order left out."""
    rng = np.random.default_rng(4)
    m = fastlstm.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True, seed=0).eval()
    x = rng.standard_normal((4, 7, 3)).astype(np.float32)
    lengths = np.array([7, 2, 0, 5])
    grams = input_grams(m, x, lengths)
    assert sorted(grams) == sorted(k for k in m.state_dict() if k.startswith("weight_"))
    valid = np.arange(7)[None, :] < lengths[:, None]                     # (B, T)
    z = x[valid].astype(np.float64)
    np.testing.assert_allclose(grams["weight_ih_l0"], z.T @ z, rtol=1e-12)
    y, _ = m(x, lengths=lengths)
    steps = np.arange(7)[None, :]
    fwd = y[..., :5][valid & (steps != lengths[:, None] - 1)].astype(np.float64)
    rev = y[..., 5:][valid & (steps != 0)].astype(np.float64)
    np.testing.assert_allclose(grams["weight_hh_l1"], fwd.T @ fwd, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(grams["weight_hh_l1_reverse"], rev.T @ rev, rtol=1e-6,
                               atol=1e-9)
    assert grams["weight_ih_l1"].shape == (10, 10)


FAMILY = [(fastlstm.LSTM, {}), (fastlstm.LSTM, {"peepholes": True}), (fastlstm.GRU, {}),
          (fastlstm.GRU, {"linear_before_reset": False}), (fastlstm.RNN, {}),
          (fastlstm.LSTM, {"num_layers": 2, "bidirectional": True})]


@pytest.mark.parametrize("cls,options", FAMILY,
                         ids=["lstm", "lstm-peep", "gru", "gru-reset-before", "rnn",
                              "lstm-2-layers-bi"])
def test_calibrated_module_is_closer_to_float32_on_inputs_like_its_data(cls, options):
    rng = np.random.default_rng(5)
    m = cls(16, 48, batch_first=True, seed=1, **options).eval()
    before = {k: v.copy() for k, v in m.state_dict().items()}
    calib = _correlated_inputs(rng, 24 * 40, 16).reshape(24, 40, 16)
    held_out = _correlated_inputs(np.random.default_rng(6), 24 * 40, 16).reshape(24, 40, 16)
    plain = m.quantize("int8")
    cal = m.quantize("int8", calibration=calib, calibration_lengths=rng.integers(1, 41, 24))
    for x in (calib, held_out):
        y = m(x)[0]
        mse = [float(np.mean((q(x)[0] - y) ** 2)) for q in (plain, cal)]
        assert mse[1] < mse[0]
    # the float module untouched; the format and the kernels as without calibration
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    sd = cal.state_dict()
    assert list(sd) == list(plain.state_dict())
    again = m.quantize("int8").load_state_dict(sd)
    np.testing.assert_array_equal(again(held_out)[0], cal(held_out)[0])
    ref = m.quantize("int8", calibration=calib)
    ref.backend = "numpy"
    np.testing.assert_allclose(m.quantize("int8", calibration=calib)(held_out[:3])[0],
                               ref(held_out[:3])[0], atol=2e-3)


def test_calibration_from_unbatched_data_and_the_stream():
    rng = np.random.default_rng(7)
    m = fastlstm.GRU(6, 64, seed=2).eval()
    x = _correlated_inputs(rng, 30, 6)                                    # (T, I) unbatched
    q = m.quantize("int8", calibration=x)
    assert not np.array_equal(q.state_dict()["weight_hh_l0"],
                              m.quantize("int8").state_dict()["weight_hh_l0"])
    s = q.stream(1)
    steps = np.stack([s.step(x[t:t + 1]) for t in range(30)])
    np.testing.assert_array_equal(steps[:, 0], q(x)[0])


@pytest.mark.parametrize("kwargs,error,words", [
    ({"precision": "bfloat16", "calibration": np.ones((5, 2, 4), np.float32)}, ValueError,
     "calibration"),
    ({"precision": "int8", "calibration_lengths": [3, 3]}, ValueError, "calibration_lengths"),
    ({"precision": "int8", "calibration": np.ones((5, 2, 3), np.float32)}, ValueError,
     "calibration"),
    ({"precision": "int8", "calibration": np.ones(5, np.float32)}, ValueError, "calibration"),
    ({"precision": "int8", "calibration": np.full((5, 2, 4), np.nan, np.float32)}, ValueError,
     "calibration"),
    ({"precision": "int8", "calibration": "data"}, TypeError, "calibration"),
    ({"precision": "int8", "calibration": np.ones((5, 2, 4), np.float32),
      "calibration_lengths": [6, 1]}, ValueError, "calibration_lengths"),
    ({"precision": "int8", "calibration": np.ones((5, 2, 4), np.float32), "proj_size": 3},
     ValueError, "projection"),
])
def test_calibration_errors_name_the_argument(kwargs, error, words):
    m = fastlstm.LSTM(4, 64, seed=0, proj_size=kwargs.pop("proj_size", 0))
    with pytest.raises(error, match=words):
        m.quantize(**kwargs)
