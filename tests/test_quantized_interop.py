"""int8 models in and out of torch and ONNX Runtime (fastlstm.interop.torch_quantized and
onnx_quantized): torch's dynamically quantized LSTM / GRU / cells, ONNX Runtime's
com.microsoft DynamicQuantizeLSTM (import and Quantized.to_onnx).

The weights are compared exactly (the integer codes and their per-row scales). The outputs
cannot be: torch and ONNX Runtime quantize the activations per tensor, asymmetric uint8, and
fastlstm per row, int8 with a zero point, so each output is compared within the quantization
step (max abs difference < 0.05, inputs ~ N(0, 1), H = 32..64), and fastlstm's distance to
the float model is checked to be of the order of the peer's own (at most twice it). On a CPU
without VNNI, where ONNX Runtime's int8 sums saturate, its models get 7-bit weights
(_seven_bit, reduce_range). The measured numbers are printed (pytest -s shows them).
"""
import warnings

import numpy as np
import pytest

import fastlstm
from fastlstm.bench.quantized import ort_int8_exact
from fastlstm.interop.torch_quantized import symmetric_rows
from fastlstm.layers.quantized import Quantized

#: max abs difference between a peer's int8 output and fastlstm's on the same int8 weights
TOL = 0.05
#: fastlstm's error against the float model, at most this times the peer's own
ORDER = 2.0


def _report(what, ours_vs_peer, peer_vs_float, ours_vs_float):
    print(f"\n{what}: |fastlstm - peer int8| {ours_vs_peer:.4f}; vs float: peer "
          f"{peer_vs_float:.4f}, fastlstm {ours_vs_float:.4f}")
    assert ours_vs_peer < TOL
    assert ours_vs_float <= ORDER * peer_vs_float


def _maxabs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ------------------------------------------------------------------------------- the codes

def test_symmetric_rows():
    values = np.array([[-128, 5, 127], [3, -127, 0], [100, -100, 2]], np.int8)
    codes, scale, changed = symmetric_rows(values, np.zeros(3), np.array([0.5, 0.25, 2.0]))
    assert codes.dtype == np.int8 and scale.dtype == np.float32
    np.testing.assert_array_equal(codes, [[-127, 5, 127], [3, -127, 0], [100, -100, 2]])
    np.testing.assert_array_equal(scale, [0.5, 0.25, 2.0])
    assert changed == 1
    # uint8 with zero point 128: code = value - 128, exact (0 -> -128 -> -127)
    u = (values.astype(np.int16) + 128).astype(np.uint8)
    codes_u, scale_u, _ = symmetric_rows(u, np.full(3, 128), np.array([0.5, 0.25, 2.0]))
    np.testing.assert_array_equal(codes_u, codes)
    # an asymmetric zero point that pushes codes out of range: that row is requantized
    v = np.array([[0, 200, 255], [10, 20, 30]], np.uint8)
    codes_a, scale_a, changed_a = symmetric_rows(v, np.array([0, 20]), np.array([0.1, 1.0]))
    np.testing.assert_array_equal(codes_a[1], [-10, 0, 10])
    assert scale_a[1] == 1.0
    w0 = np.array([0, 200, 255]) * 0.1
    np.testing.assert_allclose(scale_a[0], w0.max() / 127, rtol=1e-6)
    assert np.max(np.abs(codes_a[0] * scale_a[0] - w0)) <= scale_a[0] / 2 + 1e-6
    assert changed_a == 1


# ------------------------------------------------------------------------------- torch

def _torch():
    return pytest.importorskip("torch")


def _quantize_dynamic(torch, module, spec, dtype):
    """torch's quantize_dynamic of one module, its deprecation warnings silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", category=UserWarning,
                                message=r"torch\.quantize_per_tensor")
        return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(module), spec,
                                                      dtype=dtype)[0]


def _torch_float(torch, kind, H, seed, **options):
    """A float torch.nn.LSTM / GRU, torch's weights U(-1/sqrt(H), 1/sqrt(H))."""
    torch.manual_seed(seed)
    return getattr(torch.nn, kind)(16, H, **options).eval()


TORCH_CASES = [   # kind, H, per-channel weights, options
    ("LSTM", 32, False, dict(num_layers=2, bidirectional=True)),
    ("LSTM", 64, True, dict(batch_first=True)),
    ("GRU", 32, True, dict(num_layers=2, bidirectional=True)),
    ("GRU", 64, False, dict(batch_first=True)),
]


@pytest.mark.parametrize("kind,H,per_channel,options", TORCH_CASES,
                         ids=[f"{c[0]}-H{c[1]}-{'channel' if c[2] else 'tensor'}"
                              for c in TORCH_CASES])
def test_torch_int8(kind, H, per_channel, options):
    torch = _torch()
    tf = _torch_float(torch, kind, H, seed=H, **options)
    cls = getattr(torch.nn, kind)
    spec = {cls: torch.ao.quantization.per_channel_dynamic_qconfig} if per_channel else {cls}
    tq = _quantize_dynamic(torch, tf, spec, torch.qint8)
    q = fastlstm.from_torch(tq)
    assert isinstance(q, Quantized) and q.precision == "int8" and q.kind == kind.lower()
    for name in ("input_size", "hidden_size", "num_layers", "bidirectional", "batch_first"):
        assert getattr(q, name) == getattr(tq, name), name

    # the weights: torch's codes exactly (-128 -> -127), one scale per row, float biases
    sd = q.state_dict()
    for key, w in tq.get_weight().items():
        codes = w.int_repr().numpy()
        np.testing.assert_array_equal(sd[key], np.maximum(codes, -127))
        if per_channel:
            scale = w.q_per_channel_scales().numpy()
        else:
            scale = np.full(codes.shape[0], w.q_scale())
        np.testing.assert_array_equal(sd[key + "_scale"], scale.astype(np.float32))
    for key, b in tq.get_bias().items():
        np.testing.assert_array_equal(sd[key], b.detach().numpy())

    T, B = 20, 4
    shape = (B, T, 16) if tq.batch_first else (T, B, 16)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    with torch.no_grad():
        y_float = tf(x)[0].numpy()
        y_torch, s_torch = tq(x)
    y, s = q(x.numpy())
    _report(f"torch {kind} H={H} {'per-channel' if per_channel else 'per-tensor'}",
            _maxabs(y, y_torch), _maxabs(y_torch, y_float), _maxabs(y, y_float))
    states = zip(s, s_torch) if kind == "LSTM" else [(s, s_torch)]
    for ours, theirs in states:
        assert _maxabs(ours, theirs.numpy()) < TOL


def test_torch_float16():
    torch = _torch()
    tf = _torch_float(torch, "LSTM", 32, seed=3, num_layers=2)
    tq = _quantize_dynamic(torch, tf, {torch.nn.LSTM}, torch.float16)
    m = fastlstm.from_torch(tq)
    assert type(m) is fastlstm.LSTM and m.dtype == np.float32 and m.num_layers == 2
    for key, value in m.state_dict().items():   # float16 weights, float32 biases
        expected = getattr(tf, key).detach()
        if key.startswith("weight"):
            expected = expected.half().float()
        np.testing.assert_array_equal(value, expected.numpy())
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((10, 3, 16))
                         .astype(np.float32))
    with torch.no_grad():
        y_torch = tq(x)[0].numpy()
    assert _maxabs(m(x.numpy())[0], y_torch) < 1e-5
    assert fastlstm.from_torch(tq, dtype="float64").dtype == np.float64


@pytest.mark.parametrize("cell", ["LSTMCell", "GRUCell", "RNNCell"])
def test_torch_int8_cells(cell):
    torch = _torch()
    torch.manual_seed(5)
    options = dict(nonlinearity="relu") if cell == "RNNCell" else {}
    tf = getattr(torch.nn, cell)(16, 32, **options)
    tq = _quantize_dynamic(torch, tf, {getattr(torch.nn, cell)}, torch.qint8)
    q = fastlstm.from_torch(tq)
    assert isinstance(q, Quantized) and q.num_layers == 1
    if cell == "RNNCell":
        assert q.nonlinearity == "relu"
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 16)).astype(np.float32)
    h = rng.standard_normal((4, 32)).astype(np.float32)
    c = rng.standard_normal((4, 32)).astype(np.float32)
    tx, th, tc = map(torch.from_numpy, (x, h, c))
    with torch.no_grad():
        if cell == "LSTMCell":
            ref, ref_f = tq(tx, (th, tc))[0], tf(tx, (th, tc))[0]
            y = q(x[None], (h[None], c[None]))[0][0]
        else:
            ref, ref_f = tq(tx, th), tf(tx, th)
            y = q(x[None], h[None])[0][0]
    _report(f"torch {cell}", _maxabs(y, ref), _maxabs(ref, ref_f), _maxabs(y, ref_f))


def test_torch_refused():
    torch = _torch()
    tq = _quantize_dynamic(torch, torch.nn.LSTM(4, 8), {torch.nn.LSTM}, torch.qint8)
    with pytest.raises(ValueError, match=r"^dtype: a qint8 .*float32"):
        fastlstm.from_torch(tq, dtype="float64")
    with pytest.raises(ValueError, match=r"^prefix: only for a state_dict"):
        fastlstm.from_torch(tq, prefix="lstm.")
    with pytest.raises(ValueError, match=r"^mode: .* is an LSTM, got mode='gru'"):
        fastlstm.from_torch(tq, mode="gru")
    with pytest.raises(ValueError, match=r"^hidden_size: .*hidden_size=8, got hidden_size=9"):
        fastlstm.from_torch(tq, hidden_size=9)
    with pytest.raises(ValueError, match=r"_all_weight_values.*pass the quantized module"):
        fastlstm.from_torch(torch.nn.Sequential(tq).state_dict(), prefix="0.")
    qd = torch.ao.nn.quantized.dynamic
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning,
                                message=r"torch\.quantize_per_tensor")
        no_bias = qd.LSTM(4, 8, bias=False)
        quint8 = qd.GRU(4, 8, dtype=torch.quint8)
    with pytest.raises(ValueError, match=r"^obj: a .*dynamic\.LSTM with bias=False"):
        fastlstm.from_torch(no_bias)
    with pytest.raises(TypeError, match=r"^obj: .*GRU with weights of dtype torch\.quint8"):
        fastlstm.from_torch(quint8)
    with pytest.raises(TypeError, match=r"^obj: a quantized torch module"):
        fastlstm.from_torch(torch.ao.nn.quantized.LSTM(4, 8))   # static: still refused


# ------------------------------------------------------------------------------- ONNX

def _onnx():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxruntime.quantization")
    return onnx, ort


def _seven_bit(q):
    """q (an int8 module) with every weight's codes halved and rounded (|code| <= 64) and
    its scales doubled: the weights that ONNX Runtime's kernel without VNNI multiplies
    exactly (bench.quantized.ort_int8_exact: with 8-bit weights its int16 pairs saturate,
    0.18-0.58 off the float model in these tests on a Zen 3)."""
    sd = q.state_dict()
    for key in list(sd):
        if key + "_scale" in sd:
            sd[key] = np.round(sd[key] / 2.0).astype(np.int8)
            sd[key + "_scale"] = (sd[key + "_scale"] * 2.0).astype(np.float32)
    return q.load_state_dict(sd)


def _session(ort, path_or_model):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    data = path_or_model if isinstance(path_or_model, str) \
        else path_or_model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _float_lstm(H, seed, scale=2.0, **options):
    """A fastlstm float LSTM, weights U(-2/sqrt(H), 2/sqrt(H)); random peepholes."""
    m = fastlstm.LSTM(16, H, seed=seed, **options)
    rng = np.random.default_rng(seed)
    sd = {k: (v * scale if "peephole" not in k else
              rng.uniform(-0.5, 0.5, v.shape)).astype(np.float32)
          for k, v in m.state_dict().items()}
    return m.load_state_dict(sd).eval()


def _run_nodes(nodes, x):
    """The stack's y (T, B, D*H), h_n, c_n from from_onnx's layers in order (layout 0)."""
    hs, cs = [], []
    for node in nodes.values():
        Y, Y_h, Y_c = node(x)
        x = np.ascontiguousarray(Y.transpose(0, 2, 1, 3)).reshape(Y.shape[0], Y.shape[2], -1)
        hs.append(Y_h)
        cs.append(Y_c)
    return x, np.concatenate(hs), np.concatenate(cs)


ORT_CASES = [   # H, per-channel weights, options
    (32, False, dict(num_layers=2, bidirectional=True)),
    (64, True, dict()),
    (48, True, dict(reverse=True, peepholes=True)),
]


@pytest.mark.parametrize("H,per_channel,options", ORT_CASES,
                         ids=[f"H{c[0]}-{'channel' if c[1] else 'tensor'}" for c in ORT_CASES])
def test_onnx_import_ort_quantized(tmp_path, H, per_channel, options):
    onnx, ort = _onnx()
    from onnx import numpy_helper
    from onnxruntime.quantization import quantize_dynamic

    m = _float_lstm(H, seed=H, **options)
    f_path, q_path = str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx")
    m.to_onnx(f_path)
    exact = ort_int8_exact()
    quantize_dynamic(f_path, q_path, op_types_to_quantize=["LSTM"], per_channel=per_channel,
                     reduce_range=not exact)   # 7-bit weights where ORT's sums saturate
    model = onnx.load(q_path)
    qnodes = [n for n in model.graph.node if n.op_type == "DynamicQuantizeLSTM"]
    assert len(qnodes) == m.num_layers
    nodes = fastlstm.from_onnx(model)
    assert list(nodes) == [n.name for n in qnodes]

    # the codes: ORT's W [D, I, 4H] (gates i, o, f, c) are the module's rows (i, f, g, o)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    order = (0, 2, 3, 1)
    for node, layer in zip(qnodes, nodes.values()):
        q = layer.module
        assert isinstance(q, Quantized) and q.reverse == m.reverse
        sd = q.state_dict()
        for d, sfx in enumerate(("", "_reverse")[:m.num_directions]):
            for name, w_in, s_in in (("weight_ih", 1, 8), ("weight_hh", 2, 10)):
                codes = inits[node.input[w_in]][d].T
                scale = np.broadcast_to(inits[node.input[s_in]][d], (4 * H,))
                rows = np.concatenate([np.split(codes, 4)[k] for k in order])
                np.testing.assert_array_equal(sd[f"{name}_l0{sfx}"], rows)
                np.testing.assert_array_equal(
                    sd[f"{name}_l0{sfx}_scale"],
                    np.concatenate([np.split(scale, 4)[k] for k in order]))
        if per_channel and exact:   # ORT's per-channel int8 is fastlstm's own quantization
            own = _float_lstm(H, seed=H, **options).quantize("int8").state_dict()
            if m.num_layers == 1:
                for key, value in sd.items():
                    np.testing.assert_array_equal(value, own[key])

    x = np.random.default_rng(4).standard_normal((20, 4, 16)).astype(np.float32)
    y_float = _session(ort, f_path).run(None, {"x": x})[0]
    y_ort, h_ort, c_ort = _session(ort, q_path).run(None, {"x": x})
    y, h, c = _run_nodes(nodes, x)
    _report(f"ORT DynamicQuantizeLSTM H={H} {'per-channel' if per_channel else 'per-tensor'}",
            _maxabs(y, y_ort), _maxabs(y_ort, y_float), _maxabs(y, y_float))
    assert _maxabs(h, h_ort) < TOL and _maxabs(c, c_ort) < TOL


def _quantized_model(tmp_path, H=32, per_channel=False, **options):
    from onnxruntime.quantization import quantize_dynamic

    onnx, _ = _onnx()
    f_path, q_path = str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx")
    _float_lstm(H, seed=7, **options).to_onnx(f_path)
    quantize_dynamic(f_path, q_path, op_types_to_quantize=["LSTM"], per_channel=per_channel)
    return onnx.load(q_path)


def _replace(model, name, array):
    from onnx import numpy_helper

    for t in model.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(np.asarray(array), name))
            return
    raise KeyError(name)


def _initializer(model, name):
    from onnx import numpy_helper

    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


@pytest.mark.parametrize("per_channel", [False, True], ids=["tensor", "channel"])
def test_onnx_import_uint8(tmp_path, per_channel):
    """uint8 codes with zero point 128 (ONNX Runtime's U8U8 form) are the int8 codes + 128."""
    onnx, ort = _onnx()
    model = _quantized_model(tmp_path, per_channel=per_channel, bidirectional=True)
    int8_module = next(iter(fastlstm.from_onnx(model).values())).module
    node = next(n for n in model.graph.node if n.op_type == "DynamicQuantizeLSTM")
    for w_in, zp_in in ((1, 9), (2, 11)):
        codes = _initializer(model, node.input[w_in])
        _replace(model, node.input[w_in], (codes.astype(np.int16) + 128).astype(np.uint8))
        zp = _initializer(model, node.input[zp_in])
        _replace(model, node.input[zp_in], np.full(zp.shape, 128, np.uint8))
    layer = next(iter(fastlstm.from_onnx(model).values()))
    for key, value in int8_module.state_dict().items():
        np.testing.assert_array_equal(layer.module.state_dict()[key], value)
    x = np.random.default_rng(5).standard_normal((12, 3, 16)).astype(np.float32)
    y_ort = _session(ort, model).run(None, {"x": x})[0]
    y = layer(x)[0]
    assert _maxabs(y.transpose(0, 2, 1, 3).reshape(12, 3, -1), y_ort) < TOL


def test_onnx_import_refused(tmp_path):
    onnx, _ = _onnx()
    from onnx import helper

    model = _quantized_model(tmp_path)
    with pytest.raises(ValueError, match=r"DynamicQuantizeLSTM\): dtype='float64'"):
        fastlstm.from_onnx(model, dtype="float64")
    node = next(n for n in model.graph.node if n.op_type == "DynamicQuantizeLSTM")

    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    _replace(bad, node.input[8], np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"input W_scale: expected shape \[D\]"):
        fastlstm.from_onnx(bad)
    bad.CopyFrom(model)
    _replace(bad, node.input[10], -np.ones(1, np.float32))
    with pytest.raises(ValueError, match=r"input R_scale: expected finite scales >= 0"):
        fastlstm.from_onnx(bad)
    bad.CopyFrom(model)
    _replace(bad, node.input[1], _initializer(model, node.input[1]).astype(np.float32))
    with pytest.raises(TypeError, match=r"input W: expected int8 or uint8 codes"):
        fastlstm.from_onnx(bad)
    bad.CopyFrom(model)
    _replace(bad, node.input[9], np.zeros(1, np.uint8))
    with pytest.raises(TypeError, match=r"input W_zero_point: expected int8"):
        fastlstm.from_onnx(bad)
    bad.CopyFrom(model)
    qnode = next(n for n in bad.graph.node if n.op_type == "DynamicQuantizeLSTM")
    qnode.attribute.append(helper.make_attribute("clip", 3.0))
    with pytest.raises(ValueError, match=r"attribute clip=3.0 is not supported"):
        fastlstm.from_onnx(bad)
    bad.CopyFrom(model)
    qnode = next(n for n in bad.graph.node if n.op_type == "DynamicQuantizeLSTM")
    qnode.attribute.append(helper.make_attribute("layout", 1))
    with pytest.raises(ValueError, match=r"attribute layout is not part of the Dynamic"):
        fastlstm.from_onnx(bad)


# ------------------------------------------------------------------------------- export

EXPORT_CASES = [   # H, module options, to_onnx options
    (32, dict(num_layers=2, bidirectional=True), dict()),
    (64, dict(batch_first=True), dict(lengths=True, initial_states=True)),
    (48, dict(reverse=True, peepholes=True, bias=False), dict(lengths=True)),
]


@pytest.mark.parametrize("H,options,export", EXPORT_CASES,
                         ids=["stack-bidirectional", "batch_first-lengths-states",
                              "reverse-peepholes-nobias"])
def test_export(tmp_path, H, options, export):
    onnx, ort = _onnx()
    m = _float_lstm(H, seed=H + 1, **options)
    q = m.quantize("int8")
    if not ort_int8_exact():
        q = _seven_bit(q)
    path = str(tmp_path / "q.onnx")
    assert q.to_onnx(path, **export) == path
    model = onnx.load(path)
    ops = [n.op_type for n in model.graph.node if n.domain == "com.microsoft"]
    assert ops == ["DynamicQuantizeLSTM"] * m.num_layers

    rng = np.random.default_rng(6)
    T, B, L, D = 15, 5, m.num_layers, m.num_directions
    x = rng.standard_normal((B, T, 16) if m.batch_first else (T, B, 16)).astype(np.float32)
    feed, args = {"x": x}, [x, None, None]
    if export.get("lengths"):
        feed["sequence_lens"] = args[2] = np.array([15, 0, 7, 1, 11], np.int32)
    if export.get("initial_states"):
        h0 = (0.5 * rng.standard_normal((L * D, B, H))).astype(np.float32)
        c0 = (0.5 * rng.standard_normal((L * D, B, H))).astype(np.float32)
        feed.update(h0=h0, c0=c0)
        args[1] = (h0, c0)
    y_ort, h_ort, c_ort = _session(ort, path).run(None, feed)
    y, (h, c) = q(*args)
    y_float = m(*args)[0]
    _report(f"to_onnx H={H} {options} {export}", _maxabs(y, y_ort), _maxabs(y_ort, y_float),
            _maxabs(y, y_float))
    assert _maxabs(h, h_ort) < TOL and _maxabs(c, c_ort) < TOL

    # back through from_onnx: the same codes and scales, node by node
    back = fastlstm.from_onnx(path)
    sd = q.state_dict()
    for layer, node in enumerate(back.values()):
        for key, value in node.module.state_dict().items():
            np.testing.assert_array_equal(value, sd[key.replace("_l0", f"_l{layer}")])


def test_export_refused(tmp_path):
    _onnx()
    path = str(tmp_path / "q.onnx")
    with pytest.raises(ValueError, match=r"^kind: ONNX Runtime has no quantized GRU"):
        fastlstm.GRU(4, 8).quantize("int8").to_onnx(path)
    with pytest.raises(ValueError, match=r"^kind: ONNX Runtime has no quantized RNN"):
        fastlstm.RNN(4, 8).quantize("int8").to_onnx(path)
    with pytest.raises(ValueError, match=r"^precision: ONNX has no bfloat16"):
        fastlstm.LSTM(4, 8).quantize("bfloat16").to_onnx(path)
    with pytest.raises(ValueError, match=r"^proj_size=3: DynamicQuantizeLSTM has no proj"):
        fastlstm.LSTM(4, 8, proj_size=3).quantize("int8").to_onnx(path)
    q = fastlstm.LSTM(4, 8).quantize("int8")
    with pytest.raises(TypeError, match=r"^lengths: expected True or False"):
        q.to_onnx(path, lengths=1)
    with pytest.raises(ValueError, match=r"^opset: expected an integer in \[14, "):
        q.to_onnx(path, opset=13)
    with pytest.raises(TypeError, match=r"^path: expected a file path or None"):
        q.to_onnx(3)
