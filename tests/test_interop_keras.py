"""fastlstm.from_keras against Keras 3 itself (torch backend): layers, models, files.

- Round trips: every supported layer kind and option, built in Keras with random weights
  (biases included), converted with from_keras for every fastlstm backend, must return what
  the Keras layer returns for the same input (float32, relative error < 1e-4).
- Files: a model with nested and wrapped recurrent layers saved as .keras, .weights.h5 and
  legacy .h5, read back with Keras importable, and with Keras blocked (in this process with
  sys.modules["keras"] = None, and in a fresh interpreter that never imports it).
- Refusals: each option fastlstm cannot compute, and broken files, with the message checked.
"""
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

import fastlstm  # noqa: E402
from fastlstm.interop.keras_models import KerasRecurrent  # noqa: E402

from conftest import assert_close  # noqa: E402

#: Keras's Variable.__array__ (used by its own get_weights / set_weights) predates NumPy 2
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

if keras.backend.backend() != "torch":   # pragma: no cover - set above unless overridden
    pytest.skip("these tests run Keras on its torch backend", allow_module_level=True)

L = keras.layers
TOL = 1e-4
B, T, I = 3, 7, 5


def _np(value):
    """A Keras output (tensor, or list/tuple of tensors) as an ndarray or list of them."""
    if isinstance(value, (list, tuple)):
        return [_np(v) for v in value]
    return keras.ops.convert_to_numpy(value)


def _randomize(layer, rng):
    """Replace every weight (biases too: Keras starts them at 0 or 1) by U(-0.5, 0.5)."""
    layer.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32)
                       for w in layer.get_weights()])


def _assert_outputs(got, expected, name="output"):
    if isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), \
            f"{name}: expected a list of {len(expected)} arrays, got {type(got).__name__}"
        for i, (g, e) in enumerate(zip(got, expected)):
            _assert_outputs(g, e, f"{name}[{i}]")
        return
    assert isinstance(got, np.ndarray) and got.dtype == np.float32, \
        f"{name}: expected a float32 ndarray, got {type(got).__name__}"
    assert_close(got, expected, TOL, name)


# ----------------------------------------------------------------------------- single layers

#: name -> a factory of the Keras layer; each is one row of the "what maps" table
LAYER_CASES = {
    "lstm_last": lambda: L.LSTM(4),
    "lstm_seq_state": lambda: L.LSTM(4, return_sequences=True, return_state=True),
    "lstm_go_backwards": lambda: L.LSTM(4, go_backwards=True, return_sequences=True,
                                        return_state=True),
    "lstm_no_bias": lambda: L.LSTM(4, use_bias=False, return_sequences=True),
    "lstm_dropout_unroll": lambda: L.LSTM(4, dropout=0.5, recurrent_dropout=0.3, unroll=True,
                                          return_sequences=True),
    "gru_reset_after": lambda: L.GRU(4, return_sequences=True, return_state=True),
    "gru_reset_before": lambda: L.GRU(4, reset_after=False, return_sequences=True,
                                      return_state=True),
    "gru_go_backwards_last": lambda: L.GRU(4, go_backwards=True, return_state=True),
    "gru_no_bias": lambda: L.GRU(4, use_bias=False),
    "simple_rnn_tanh": lambda: L.SimpleRNN(4, return_sequences=True, return_state=True),
    "simple_rnn_relu": lambda: L.SimpleRNN(4, activation="relu", return_sequences=True),
    "rnn_of_gru_cell": lambda: L.RNN(L.GRUCell(3, reset_after=False), return_sequences=True),
    "bi_lstm": lambda: L.Bidirectional(L.LSTM(4, return_sequences=True, return_state=True)),
    "bi_gru_reset_before_last": lambda: L.Bidirectional(L.GRU(3, reset_after=False)),
    "bi_simple_rnn_state": lambda: L.Bidirectional(L.SimpleRNN(3, activation="relu",
                                                               return_state=True)),
}


@pytest.fixture(scope="module")
def keras_layers():
    """name -> (built Keras layer with random weights, x, Keras's output for x, the same with
    an initial state: (initial_state, output))."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    out = {}
    for name, make in LAYER_CASES.items():
        layer = make()
        layer(x)
        if isinstance(layer, L.Bidirectional):
            _randomize(layer.forward_layer, rng)
            _randomize(layer.backward_layer, rng)
            H = layer.forward_layer.units
            n_states = 4 if isinstance(layer.forward_layer, L.LSTM) else 2
        else:
            _randomize(layer, rng)
            H = layer.cell.units
            n_states = 2 if isinstance(layer, L.LSTM) else 1
        states = [rng.standard_normal((B, H)).astype(np.float32) for _ in range(n_states)]
        out[name] = (layer, x, _np(layer(x)), (states, _np(layer(x, initial_state=states))))
    return out


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_matches_keras(keras_layers, case, backend):
    layer, x, expected, _ = keras_layers[case]
    converted = fastlstm.from_keras(layer, backend=backend)
    assert isinstance(converted, list) and len(converted) == 1
    (k,) = converted
    assert isinstance(k, KerasRecurrent) and k.name == layer.name
    assert k.module.backend == backend and k.module.batch_first
    assert k.module.dtype == np.float32 and not k.module.training
    assert k.return_sequences == layer.return_sequences
    assert k.return_state == layer.return_state
    assert k.go_backwards == getattr(layer, "go_backwards", False)
    _assert_outputs(k(x), expected)
    # float64 input is cast to the module's dtype, as Keras casts it
    _assert_outputs(k(x.astype(np.float64)), expected)


@pytest.mark.parametrize("case", ["lstm_seq_state", "gru_reset_before", "simple_rnn_tanh",
                                  "bi_lstm", "bi_simple_rnn_state", "lstm_go_backwards"])
def test_initial_state_matches_keras(keras_layers, case):
    layer, x, _, (states, expected) = keras_layers[case]
    (k,) = fastlstm.from_keras(layer, backend="numpy")
    _assert_outputs(k(x, initial_state=states), expected)


def test_module_layout_and_delegation(keras_layers):
    """The module holds Keras's weights in torch's layout, and attribute access falls
    through to it."""
    layer = keras_layers["gru_reset_after"][0]
    kernel, rec, bias = layer.get_weights()   # (I, 3H) z r h, (H, 3H), (2, 3H)
    (k,) = fastlstm.from_keras(layer)
    H = layer.cell.units
    sd = k.state_dict()   # delegated to k.module
    assert list(sd) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    np.testing.assert_array_equal(sd["weight_ih_l0"][:H], kernel[:, H:2 * H].T)   # r
    np.testing.assert_array_equal(sd["weight_ih_l0"][H:2 * H], kernel[:, :H].T)   # z
    np.testing.assert_array_equal(sd["weight_hh_l0"][2 * H:], rec[:, 2 * H:].T)   # n
    np.testing.assert_array_equal(sd["bias_hh_l0"][:H], bias[1, H:2 * H])
    assert k.hidden_size == H and k.module.linear_before_reset
    assert k.keras_class == "GRU" and "gru" in repr(k).lower()
    lstm = keras_layers["lstm_go_backwards"][0]
    (kl,) = fastlstm.from_keras(lstm)
    assert kl.module.reverse   # go_backwards runs the module backward in time
    np.testing.assert_array_equal(kl.bias_ih_l0, lstm.get_weights()[2])
    np.testing.assert_array_equal(kl.bias_hh_l0, 0)
    with pytest.raises(AttributeError, match="no_such_thing"):
        kl.no_such_thing


def test_float64_modules(keras_layers):
    layer, x, expected, _ = keras_layers["bi_lstm"]
    (k,) = fastlstm.from_keras(layer, dtype="float64")
    assert k.module.dtype == np.float64
    out = k(x)
    assert out[0].dtype == np.float64
    for got, exp in zip(out, expected):
        assert_close(got, exp, TOL)


# ----------------------------------------------------------------------------- masking


@pytest.mark.parametrize("make", [
    lambda: L.LSTM(4, return_sequences=True, return_state=True),
    lambda: L.GRU(4, go_backwards=True, return_sequences=True, return_state=True),
    lambda: L.SimpleRNN(4, go_backwards=True),
    lambda: L.Bidirectional(L.LSTM(3, return_sequences=True, return_state=True)),
    lambda: L.Bidirectional(L.GRU(3)),
], ids=["lstm", "gru_backwards", "rnn_backwards_last", "bi_lstm", "bi_gru_last"])
def test_masking_refused_then_lengths_match_keras(make):
    rng = np.random.default_rng(3)
    lengths = np.array([T, 3, 0])
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    for b, n in enumerate(lengths):
        x[b, n:] = 0.0
    inp = keras.Input((T, I))
    model = keras.Model(inp, make()(L.Masking(0.0)(inp)))
    expected = _np(model(x))
    with pytest.raises(ValueError, match=r"masks its input .*Masking.*allow_masking=True"):
        fastlstm.from_keras(model)
    (k,) = fastlstm.from_keras(model, allow_masking=True)
    _assert_outputs(k(x, lengths=lengths), expected)


@pytest.mark.parametrize("make, n_states", [
    (lambda: L.LSTM(4, return_state=True), 2),
    (lambda: L.GRU(4, go_backwards=True, return_sequences=True, return_state=True), 1),
    (lambda: L.Bidirectional(L.SimpleRNN(3, return_state=True)), 2),
], ids=["lstm_last", "gru_backwards", "bi_rnn_last"])
def test_lengths_with_initial_state_match_keras(make, n_states):
    """A row with no valid step keeps its initial state, and its last output is 0."""
    rng = np.random.default_rng(4)
    lengths = np.array([0, T, 2])
    mask = np.arange(T)[None, :] < lengths[:, None]
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    layer = make()
    layer(x)
    for sub in ([layer.forward_layer, layer.backward_layer]
                if isinstance(layer, L.Bidirectional) else [layer]):
        _randomize(sub, rng)
    H = (layer.forward_layer if isinstance(layer, L.Bidirectional) else layer).cell.units
    states = [rng.standard_normal((B, H)).astype(np.float32) for _ in range(n_states)]
    expected = _np(layer(x, mask=mask, initial_state=states))
    (k,) = fastlstm.from_keras(layer)
    _assert_outputs(k(x, initial_state=states, lengths=lengths), expected)


def test_mask_zero_embedding_refused():
    inp = keras.Input((T,), dtype="int32")
    model = keras.Model(inp, L.LSTM(2)(L.Embedding(10, 4, mask_zero=True)(inp)))
    with pytest.raises(ValueError, match=r"embedding.*\(Embedding\).*allow_masking"):
        fastlstm.from_keras(model)


# ----------------------------------------------------------------------------- a model


def _build_model(rng):
    """Input -> LSTM(seq) -> Dropout -> nested Sequential[GRU(reset_before, seq), Dense,
    LSTM(go_backwards, seq)] -> Bidirectional(SimpleRNN relu) -> Dense.
    Returns (model, the recurrent layers in order, a model giving the last recurrent
    output)."""
    inner = keras.Sequential([L.GRU(4, reset_after=False, return_sequences=True, name="mid"),
                              L.Dense(4, activation="tanh"),
                              L.LSTM(3, go_backwards=True, return_sequences=True,
                                     name="enc_back")], name="inner")
    inp = keras.Input((T, I))
    first = L.LSTM(6, return_sequences=True, name="first")
    bi = L.Bidirectional(L.SimpleRNN(2, activation="relu"), name="bi")
    features = bi(inner(L.Dropout(0.5)(first(inp))))
    model = keras.Model(inp, L.Dense(2)(features))
    for layer in (first, inner.layers[0], inner.layers[2], bi.forward_layer,
                  bi.backward_layer):
        _randomize(layer, rng)
    return model, keras.Model(inp, features)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """The model of _build_model saved in every format, with x and Keras's last recurrent
    output (the skipped Dense layers are Keras's only)."""
    rng = np.random.default_rng(20)
    model, features = _build_model(rng)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    expected = _np(features(x))
    d = tmp_path_factory.mktemp("keras_files")
    paths = {"keras": d / "model.keras", "weights": d / "model.weights.h5",
             "legacy": d / "model.h5", "json": d / "model.json"}
    model.save(paths["keras"])
    model.save_weights(paths["weights"])
    model.save(paths["legacy"])
    paths["json"].write_text(model.to_json())
    return dict(model=model, x=x, expected=expected, paths=paths,
                config=model.get_config(), names=["first", "mid", "enc_back", "bi"])


def _check_model_layers(layers, saved):
    """The converted layers of _build_model's model: names, kinds, and Keras's output."""
    assert [k.name for k in layers] == saved["names"]
    assert [k.keras_class for k in layers] == ["LSTM", "GRU", "LSTM", "Bidirectional"]
    assert [k.go_backwards for k in layers] == [False, False, True, False]
    assert not layers[1].module.linear_before_reset
    assert layers[3].module.nonlinearity == "relu" and layers[3].module.bidirectional
    model = saved["model"]
    inner = model.get_layer("inner")
    W, b = inner.layers[1].get_weights()   # the nested Dense, applied by hand
    h = layers[0](saved["x"])
    h = layers[1](h)
    h = np.tanh(h @ W + b)
    h = layers[2](h)
    out = layers[3](h)
    _assert_outputs(out, saved["expected"])


def test_model_object(saved_model, backend):
    layers = fastlstm.from_keras(saved_model["model"], backend=backend)
    assert all(k.module.backend == backend for k in layers)
    _check_model_layers(layers, saved_model)


@pytest.mark.parametrize("fmt", ["keras", "legacy"])
def test_model_files(saved_model, fmt, backend):
    layers = fastlstm.from_keras(saved_model["paths"][fmt], backend=backend)
    _check_model_layers(layers, saved_model)


@pytest.mark.parametrize("config", ["dict", "json", "keras", "serialized"])
def test_weights_file_with_config(saved_model, config):
    cfg = {"dict": saved_model["config"], "json": saved_model["paths"]["json"],
           "keras": str(saved_model["paths"]["keras"]),
           "serialized": json.loads(saved_model["paths"]["json"].read_text())}[config]
    layers = fastlstm.from_keras(saved_model["paths"]["weights"], config=cfg)
    _check_model_layers(layers, saved_model)


def test_weights_file_without_config_is_ambiguous(saved_model):
    with pytest.raises(ValueError, match=r"does not store the order.*pass config="):
        fastlstm.from_keras(saved_model["paths"]["weights"])


def test_legacy_weights_only_file(saved_model, tmp_path):
    """Keras 2's save_weights("w.h5") layout (layer groups at the root, "layer_names",
    weight names ending in ":0"), made from the legacy file: needs config=."""
    path = tmp_path / "keras2.h5"
    with h5py.File(saved_model["paths"]["legacy"], "r") as src, h5py.File(path, "w") as out:
        weights = src["model_weights"]
        for key, value in weights.attrs.items():
            out.attrs[key] = value
        for layer in weights:
            group = out.create_group(layer)
            names = [n.decode() if isinstance(n, bytes) else str(n)
                     for n in weights[layer].attrs["weight_names"]]
            group.attrs["weight_names"] = np.array([(n + ":0").encode() for n in names])
            for n in names:
                group[n + ":0"] = weights[layer][n][()]
    with pytest.raises(ValueError, match=r"keras2\.h5: a legacy weights-only file; pass "
                                         r"config="):
        fastlstm.from_keras(path)
    _check_model_layers(fastlstm.from_keras(path, config=saved_model["config"]), saved_model)


def test_bidirectional_forward_go_backwards_refused(saved_model):
    """Keras refuses to build it, but a config can say it: a clear error, not wrong
    numbers."""
    cfg = json.loads(saved_model["paths"]["json"].read_text())
    (bi,) = [e for e in cfg["config"]["layers"] if e["config"]["name"] == "bi"]
    bi["config"]["layer"]["config"]["go_backwards"] = True
    bi["config"]["backward_layer"]["config"]["go_backwards"] = False
    with pytest.raises(ValueError, match=r"layers/bidirectional: layer 'bi' \(Bidirectional\): "
                                         r"go_backwards: expected False for the forward"):
        fastlstm.from_keras(saved_model["paths"]["weights"], config=cfg)


def test_files_without_keras(saved_model, monkeypatch):
    """With `import keras` failing, every file reads the same (nothing imports Keras)."""
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(ImportError):
        import keras as _  # noqa: F401
    paths = saved_model["paths"]
    _check_model_layers(fastlstm.from_keras(paths["keras"]), saved_model)
    _check_model_layers(fastlstm.from_keras(os.fspath(paths["legacy"])), saved_model)
    _check_model_layers(fastlstm.from_keras(paths["weights"], config=paths["json"]),
                        saved_model)


def test_files_in_a_process_without_keras(saved_model, tmp_path):
    """A fresh interpreter that cannot import keras reads the three files to the same
    numbers as this one (and never has keras in sys.modules)."""
    paths = saved_model["paths"]
    script = textwrap.dedent(f"""
        import sys
        sys.modules["keras"] = None
        import numpy as np
        import fastlstm
        x = np.load({str(tmp_path / "x.npy")!r})
        for tag, path, kw in [("keras", {str(paths["keras"])!r}, {{}}),
                              ("legacy", {str(paths["legacy"])!r}, {{}}),
                              ("weights", {str(paths["weights"])!r},
                               {{"config": {str(paths["json"])!r}}})]:
            layers = fastlstm.from_keras(path, backend="numpy", **kw)
            np.save({str(tmp_path)!r} + "/" + tag + ".npy", layers[0](x))
        assert not any(m == "keras" or m.startswith("keras.") for m in sys.modules
                       if sys.modules[m] is not None), "keras was imported"
        print("ok")
    """)
    np.save(tmp_path / "x.npy", saved_model["x"])
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
    (first,) = fastlstm.from_keras(saved_model["model"].get_layer("first"), backend="numpy")
    expected = first(saved_model["x"])
    for tag in ("keras", "legacy", "weights"):
        assert_close(np.load(tmp_path / f"{tag}.npy"), expected, TOL, tag)


def test_weights_file_inferred(tmp_path):
    """A weights-only file without config: one class in one container is unambiguous
    (lstm, lstm_1 in model order); options not in the weights take Keras's defaults."""
    rng = np.random.default_rng(5)
    model = keras.Sequential([keras.Input((T, I)), L.LSTM(4, return_sequences=True,
                                                          name="enc"),
                              L.LSTM(3, use_bias=False, name="dec")])
    for layer in model.layers:
        _randomize(layer, rng)
    path = tmp_path / "two.weights.h5"
    model.save_weights(path)
    layers = fastlstm.from_keras(path)
    assert [k.name for k in layers] == ["enc", "dec"]
    assert all(k.inferred and not k.return_sequences for k in layers)
    assert layers[1].module.bias is False and layers[1].module.input_size == 4
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    layers[0].return_sequences = True   # not stored in a weights file: set by the caller
    _assert_outputs(layers[1](layers[0](x)), _np(model(x)))

    bi = keras.Sequential([keras.Input((T, I)), L.Bidirectional(L.GRU(3, reset_after=False))])
    _randomize(bi.layers[0].forward_layer, rng)
    _randomize(bi.layers[0].backward_layer, rng)
    bi.save_weights(tmp_path / "bi.weights.h5")
    (k,) = fastlstm.from_keras(tmp_path / "bi.weights.h5")
    assert k.keras_class == "Bidirectional" and not k.module.linear_before_reset
    _assert_outputs(k(x), _np(bi(x)))


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("make, match", [
    (lambda: L.LSTM(4, stateful=True), r"'lstm\w*' \(LSTM\): stateful=True"),
    (lambda: L.LSTM(4, activation="relu"), r"\(LSTM\): activation='relu'"),
    (lambda: L.GRU(4, recurrent_activation="hard_sigmoid"),
     r"\(GRU\): recurrent_activation='hard_sigmoid'"),
    (lambda: L.SimpleRNN(4, activation="sigmoid"), r"\(SimpleRNN\): activation='sigmoid'"),
    (lambda: L.LSTM(4, activation=lambda v: v), r"\(LSTM\): activation="),
    (lambda: L.Bidirectional(L.LSTM(4), merge_mode="sum"), r"merge_mode='sum'"),
    (lambda: L.Bidirectional(L.LSTM(4), merge_mode=None), r"merge_mode=None"),
    (lambda: L.Bidirectional(L.LSTM(4), backward_layer=L.LSTM(3, go_backwards=True)),
     r"backward_layer differs .*units \(4 vs 3\)"),
    (lambda: L.Bidirectional(L.LSTM(4), backward_layer=L.GRU(4, go_backwards=True)),
     r"backward_layer differs .*kind \('LSTM' vs 'GRU'\)"),
    (lambda: L.RNN(L.StackedRNNCells([L.LSTMCell(2), L.LSTMCell(2)])),
     r"cell 'StackedRNNCells' is not supported"),
    (lambda: L.LSTM(4), r"no weights \(a layer that was never built"),
], ids=["stateful", "lstm_relu", "hard_sigmoid", "rnn_sigmoid", "custom_activation",
        "merge_sum", "merge_none", "backward_units", "backward_class",
        "stacked_cells", "unbuilt"])
def test_refused_layer_options(make, match):
    with pytest.raises(ValueError, match=match):
        fastlstm.from_keras(make())


def test_refused_other_recurrent_layers():
    class MyLSTM(L.LSTM):
        pass

    layer = MyLSTM(3)
    layer(np.zeros((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(MyLSTM\): a recurrent layer fastlstm does not"):
        fastlstm.from_keras(layer)
    inp = keras.Input((T, 4, 4, 1))
    model = keras.Model(inp, L.ConvLSTM2D(2, 3)(inp))
    with pytest.raises(ValueError, match=r"\(ConvLSTM2D\): a recurrent layer fastlstm"):
        fastlstm.from_keras(model)


def test_refused_objects_and_options(keras_layers):
    layer = keras_layers["lstm_last"][0]
    with pytest.raises(TypeError, match=r"obj: expected a Keras layer or model"):
        fastlstm.from_keras(np.zeros(3))
    with pytest.raises(TypeError, match=r"obj: expected a Keras LSTM, GRU"):
        fastlstm.from_keras(L.Dense(3))
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['units'\]"):
        fastlstm.from_keras(layer, units=3)
    with pytest.raises(TypeError, match=r"dtype: expected 'float32' or 'float64'"):
        fastlstm.from_keras(layer, dtype="float16")
    with pytest.raises(ValueError, match=r"backend: unknown or unavailable"):
        fastlstm.from_keras(layer, backend="cuda")
    with pytest.raises(TypeError, match=r"config: only for a weights-only file"):
        fastlstm.from_keras(layer, config={})
    inp = keras.Input((T, I))
    with pytest.raises(ValueError, match=r"no recurrent layer"):
        fastlstm.from_keras(keras.Model(inp, L.Dense(2)(inp)))
    (k,) = fastlstm.from_keras(layer)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, T, I\)"):
        k(np.zeros((T, I), np.float32))
    with pytest.raises(ValueError, match=r"initial_state: layer 'lstm\w*' expects 2 arrays"):
        k(np.zeros((B, T, I), np.float32), initial_state=[np.zeros((B, 4), np.float32)])
    with pytest.raises(ValueError, match=r"initial_state\[1\]: expected shape"):
        k(np.zeros((B, T, I), np.float32),
          initial_state=[np.zeros((B, 4), np.float32), np.zeros((B, 5), np.float32)])


# ----------------------------------------------------------------------------- broken files


def _rewrite_keras(src, dst, config=None, weights=None, drop=()):
    """A copy of the .keras file `src` with config.json / model.weights.h5 replaced or
    dropped."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            data = zin.read(name)
            if name == "config.json" and config is not None:
                data = config if isinstance(config, bytes) else json.dumps(config).encode()
            if name == "model.weights.h5" and weights is not None:
                data = weights
            zout.writestr(name, data)
    return dst


def _edited_weights(src_keras, tmp_path, edit):
    """model.weights.h5 of src_keras, changed by edit(h5py.File), as bytes."""
    h5 = tmp_path / "w.h5"
    with zipfile.ZipFile(src_keras) as z:
        h5.write_bytes(z.read("model.weights.h5"))
    with h5py.File(h5, "r+") as f:
        edit(f)
    return h5.read_bytes()


def _edited_config(src_keras, edit):
    with zipfile.ZipFile(src_keras) as z:
        cfg = json.loads(z.read("config.json"))
    edit(cfg)
    return cfg


def _layer_cfg(cfg, name):
    for entry in cfg["config"]["layers"]:
        if entry["config"].get("name") == name:
            return entry["config"]
    raise KeyError(name)


def test_broken_keras_files(saved_model, tmp_path):
    src = saved_model["paths"]["keras"]
    data = src.read_bytes()
    cases = []
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    cases.append((truncated, r"truncated\.keras: not a \.keras file \(not a readable zip"))
    text = tmp_path / "text.keras"
    text.write_text("hello, I am not a zip")
    cases.append((text, r"text\.keras: not a \.keras file"))
    cases.append((_rewrite_keras(src, tmp_path / "noconfig.keras", drop=("config.json",)),
                  r"noconfig\.keras: not a \.keras file \(the archive has no config\.json"))
    cases.append((_rewrite_keras(src, tmp_path / "noweights.keras",
                                 drop=("model.weights.h5",)),
                  r"the archive has no model\.weights\.h5"))
    cases.append((_rewrite_keras(src, tmp_path / "badjson.keras", config=b"{not json"),
                  r"badjson\.keras: config\.json is not valid JSON"))
    cases.append((_rewrite_keras(src, tmp_path / "badh5.keras", weights=b"\0" * 100),
                  r"badh5\.keras: model\.weights\.h5: not a readable HDF5 file"))

    def drop_first(f):
        del f["layers/lstm"]

    cases.append((_rewrite_keras(src, tmp_path / "missing.keras",
                                 weights=_edited_weights(src, tmp_path, drop_first)),
                  r"missing\.keras: model\.weights\.h5: layers/lstm/cell/vars: missing"))

    def wrong_shape(f):
        del f["layers/lstm/cell/vars/1"]
        f["layers/lstm/cell/vars/1"] = np.zeros((5, 24), np.float32)

    cases.append((_rewrite_keras(src, tmp_path / "shape.keras",
                                 weights=_edited_weights(src, tmp_path, wrong_shape)),
                  r"layer 'first' \(LSTM\): recurrent_kernel: expected shape .* = "
                  r"\(6, 24\), got \(5, 24\)"))

    def stateful(cfg):
        _layer_cfg(cfg, "first")["stateful"] = True

    cases.append((_rewrite_keras(src, tmp_path / "stateful.keras",
                                 config=_edited_config(src, stateful)),
                  r"layers/lstm: layer 'first' \(LSTM\): stateful=True"))

    def not_a_model(cfg):
        cfg["config"] = {"no": "layers"}

    cases.append((_rewrite_keras(src, tmp_path / "nomodel.keras",
                                 config=_edited_config(src, not_a_model)),
                  r"not a Keras model config"))
    for path, match in cases:
        with pytest.raises(ValueError, match=match):
            fastlstm.from_keras(path)


def test_broken_h5_and_paths(saved_model, tmp_path):
    paths = saved_model["paths"]
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(paths["legacy"].read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"truncated\.h5: not a readable HDF5 file"):
        fastlstm.from_keras(truncated)
    text = tmp_path / "text.weights.h5"
    text.write_text("weights")
    with pytest.raises(ValueError, match=r"text\.weights\.h5: not a readable HDF5 file"):
        fastlstm.from_keras(text)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"empty\.h5: not a Keras file"):
        fastlstm.from_keras(empty)
    other = tmp_path / "model.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match=r"model\.txt: unknown extension"):
        fastlstm.from_keras(other)
    with pytest.raises(FileNotFoundError, match=r"nothere\.keras: no such file"):
        fastlstm.from_keras(tmp_path / "nothere.keras")
    with pytest.raises(ValueError, match=r"config: a \.keras file holds its own config"):
        fastlstm.from_keras(paths["keras"], config=saved_model["config"])
    with pytest.raises(TypeError, match=r"config: expected a model config dict"):
        fastlstm.from_keras(paths["weights"], config=3)
    with pytest.raises(ValueError, match=r"config: expected a \.json or \.keras file"):
        fastlstm.from_keras(paths["weights"], config=str(paths["legacy"]))
    # weights of another model: the config's recurrent layers are not in the file
    other_cfg = keras.Sequential([keras.Input((T, I)), L.GRU(2)]).get_config()
    with pytest.raises(ValueError, match=r"layers/gru/cell/vars: missing"):
        fastlstm.from_keras(paths["weights"], config=other_cfg)
    # a legacy file whose listed weight is gone
    broken = tmp_path / "broken.h5"
    broken.write_bytes(paths["legacy"].read_bytes())
    with h5py.File(broken, "r+") as f:
        del f["model_weights/first/first/lstm_cell/kernel"]
    with pytest.raises(ValueError, match=r"broken\.h5: model_weights/first: weight "
                                         r"'first/lstm_cell/kernel' is listed but cannot"):
        fastlstm.from_keras(broken)
