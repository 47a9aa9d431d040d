"""fastlstm.from_onnx and m.to_onnx against ONNX Runtime (float32, max relative error 1e-4).

- Models exported by torch.onnx.export (TorchScript exporter, dynamo=False): LSTM (2 layers, uni-
  and bidirectional), GRU, RNN (relu, bidirectional), a batch_first GRU, and an LSTM run on
  pack_padded_sequence (torch exports it: rows sorted by length with TopK, the node's
  sequence_lens a run-time value, rows restored with Gather). Every recurrent node is compared
  with ONNX Runtime's values at that node (its inputs and outputs exposed as graph outputs),
  and its weights with the torch module's.
- Hand-built graphs (onnx.helper): reset-before GRU, peepholes, reverse, layout=1 (ONNX Runtime
  refuses it: compared with ONNX Runtime on the equivalent layout-0 graph), weights behind
  Constant / Unsqueeze / Concat / Slice / Transpose / Reshape, nodes in If branches reading
  outer names, constant initial_h / initial_c / sequence_lens, run-time initial states, lengths
  with a 0 (ONNX Runtime's final state for it is 0; OnnxRecurrent gives 0 too).
- m.to_onnx run by ONNX Runtime equals the module, and from_onnx(to_onnx(m)) gives its weights.
- Errors: refused attributes, proj_size export, broken files, bad call arguments.
"""
import pathlib
import sys
import warnings

import numpy as np
import pytest

import fastlstm
from conftest import assert_close

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fastlstm.interop.onnx_export import to_onnx  # noqa: E402
from fastlstm.interop.onnx_layer import OnnxRecurrent  # noqa: E402

TOL = 1e-4
F32 = TensorProto.FLOAT
ROLES = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


# ------------------------------------------------------------------------------------ helpers


def session(model):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def float32(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def onnx_weights(op, D, H, I, rng, bias=True, peepholes=False):
    """Random W, R (, B, P) in ONNX's layout."""
    G = GATES[op] * H
    w = dict(W=float32(rng, D, G, I, scale=0.4), R=float32(rng, D, G, H, scale=0.4))
    if bias:
        w["B"] = float32(rng, D, 2 * G, scale=0.3)
    if peepholes:
        w["P"] = float32(rng, D, 3 * H, scale=0.3)
    return w


def one_node_model(op, H, const, runtime, name="rnn", opset=14, **attrs):
    """A model of one `op` node reading `const` ({role: array}, initializers) and `runtime`
    ({role: array}, graph inputs); outputs Y, Y_h (, Y_c). Returns (model, feed)."""
    values = {**const, **runtime}
    inputs = [r if r in values else "" for r in ROLES[:8 if op == "LSTM" else 6]]
    while not inputs[-1]:
        inputs.pop()
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, inputs, outputs, name=name, hidden_size=H, **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(r, TensorProto.INT32 if r == "sequence_lens" else F32,
                                       list(a.shape)) for r, a in runtime.items()],
        [helper.make_tensor_value_info(o, F32, None) for o in outputs],
        initializer=[numpy_helper.from_array(a, r) for r, a in const.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model, dict(runtime)


def assert_outputs(got, expected, names=("Y", "Y_h", "Y_c")):
    assert len(got) == len(expected)
    for g, e, n in zip(got, expected, names):
        assert g.dtype == np.float32
        assert_close(g, e, TOL, n)


def with_node_values(model, nodes):
    """`model` with the inputs and outputs of `nodes` (main-graph nodes) as graph outputs."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    have = {o.name for o in model.graph.output}
    for node in nodes:
        for i, name in enumerate(list(node.input) + list(node.output)):
            if name and name not in have:
                elem = TensorProto.INT32 if i == 4 and name in node.input else F32
                model.graph.output.append(helper.make_tensor_value_info(name, elem, None))
                have.add(name)
    return model


def export_torch(module, args, path, **kwargs):
    """torch.onnx.export with the TorchScript exporter (dynamo=False warns: deprecated; the
    tracer warns about the size checks of torch's RNN forward, the exporter about B != 1)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # the zero initial state is shaped from x (Shape -> ConstantOfShape): any B runs
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size",
                                category=UserWarning)
        torch.onnx.export(module, args, str(path), dynamo=False, **kwargs)
    return path


# ------------------------------------------------------------------------ torch's exporter


TORCH_CASES = {
    "lstm_2layers": ("LSTM", dict(num_layers=2)),
    "lstm_2layers_bidirectional": ("LSTM", dict(num_layers=2, bidirectional=True)),
    "gru": ("GRU", dict(num_layers=2)),
    "gru_batch_first": ("GRU", dict(batch_first=True, bidirectional=True)),
    "rnn_relu_bidirectional": ("RNN", dict(nonlinearity="relu", bidirectional=True)),
    "rnn_tanh_nobias": ("RNN", dict(bias=False)),
    "lstm_packed_bidirectional": ("LSTM", dict(bidirectional=True)),
    "gru_bidirectional_opset11": ("GRU", dict(bidirectional=True, num_layers=2)),
}
#: the opset asked of the exporter (its default otherwise: 20 for torch 2.13)
TORCH_OPSETS = {"gru_bidirectional_opset11": 11}
T_, B_, I_, H_ = 7, 4, 5, 6
PACKED_LENGTHS = (7, 2, 5, 3)


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory):
    """{case: (torch module, path of its ONNX file, feed)} for TORCH_CASES, exported once."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class Packed(torch.nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x, lengths):
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            y, hx = self.rnn(packed)
            return pad_packed_sequence(y, total_length=x.shape[0])[0], hx

    out = {}
    folder = tmp_path_factory.mktemp("torch_onnx")
    rng = np.random.default_rng(3)
    for case, (op, kw) in TORCH_CASES.items():
        torch.manual_seed(len(out))
        rnn = getattr(torch.nn, op)(I_, H_, **kw).eval()
        x = float32(rng, *((B_, T_, I_) if kw.get("batch_first") else (T_, B_, I_)))
        seq_axes = {0: "B", 1: "T"} if kw.get("batch_first") else {0: "T", 1: "B"}
        if "packed" in case:
            lengths = np.array(PACKED_LENGTHS, np.int64)
            module, args = Packed(rnn).eval(), (torch.from_numpy(x), torch.from_numpy(lengths))
            feed = dict(x=x, lengths=lengths)
            names = dict(input_names=["x", "lengths"],
                         dynamic_axes={"x": seq_axes, "lengths": {0: "B"}})
        else:
            module, args, feed = rnn, (torch.from_numpy(x),), dict(x=x)
            names = dict(input_names=["x"], dynamic_axes={"x": seq_axes})
        if case in TORCH_OPSETS:
            names["opset_version"] = TORCH_OPSETS[case]
        path = export_torch(module, args, folder / f"{case}.onnx", **names)
        out[case] = (rnn, path, feed)
    return out


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_torch_export_nodes_match_onnxruntime(case, torch_models, backend):
    rnn, path, feed = torch_models[case]
    op, kw = TORCH_CASES[case]
    layers = fastlstm.from_onnx(path, backend=backend)
    model = onnx.load(str(path))
    if case in TORCH_OPSETS:
        assert [o.version for o in model.opset_import if o.domain == ""] == [TORCH_OPSETS[case]]
    nodes = [n for n in model.graph.node if n.op_type == op]
    num_layers = kw.get("num_layers", 1)
    assert len(nodes) == num_layers and list(layers) == [n.name for n in nodes]
    values = dict(zip([o.name for o in with_node_values(model, nodes).graph.output],
                      session(with_node_values(model, nodes)).run(None, feed)))
    torch_sd = {k: v.detach().numpy() for k, v in rnn.state_dict().items()}
    D = 2 if kw.get("bidirectional") else 1
    for layer, (node, (name, lay)) in enumerate(zip(nodes, layers.items())):
        assert isinstance(lay, OnnxRecurrent) and lay.name == name == node.name
        assert lay.op_type == op and lay.layout == 0
        assert lay.direction == ("bidirectional" if D == 2 else "forward")
        assert isinstance(lay.module, getattr(fastlstm, op)) and lay.module.backend == backend
        assert lay.inputs == tuple(node.input) and lay.outputs == tuple(node.output)
        if op == "RNN":
            assert lay.nonlinearity == kw.get("nonlinearity", "tanh")
        if op == "GRU":
            assert lay.linear_before_reset     # torch's cell: linear_before_reset=1
        # the weights are torch's, in torch's layout
        sd = lay.state_dict()
        for key, value in sd.items():
            torch_key = key.replace("_l0", f"_l{layer}")
            np.testing.assert_array_equal(value, torch_sd[torch_key], err_msg=key)
        assert len(sd) == (4 if kw.get("bias", True) else 2) * D
        # torch's zero initial state (ConstantOfShape shaped from x) is recognised as zeros
        assert lay.initial_h is None and lay.initial_c is None
        packed = "packed" in case
        assert lay.runtime_inputs == (("sequence_lens",) if packed else ())
        # the node's outputs given ONNX Runtime's values of its inputs
        args = {"sequence_lens": values[node.input[4]]} if packed else {}
        got = lay(values[node.input[0]], **args)
        expected = [values[o] for o in node.output]
        assert_outputs(got, expected)
        if packed:
            lens = values[node.input[4]]
            assert sorted(lens.tolist()) == sorted(PACKED_LENGTHS)
            pad = np.arange(T_)[:, None] >= lens[None, :]
            assert np.all(got[0].transpose(0, 2, 1, 3)[pad] == 0)


def test_torch_export_chain_gives_torch_outputs(torch_models):
    """The nodes of a 2-layer bidirectional export, chained as the graph chains them, give the
    torch module's y, h_n, c_n."""
    import torch

    rnn, path, feed = torch_models["lstm_2layers_bidirectional"]
    layers = list(fastlstm.from_onnx(path).values())
    x = feed["x"]
    states = []
    for lay in layers:
        Y, Y_h, Y_c = lay(x)
        x = Y.transpose(0, 2, 1, 3).reshape(Y.shape[0], Y.shape[2], -1)
        states.append((Y_h, Y_c))
    with torch.no_grad():
        y, (h_n, c_n) = rnn(torch.from_numpy(feed["x"]))
    assert_close(x, y.numpy(), TOL, "y")
    assert_close(np.concatenate([s[0] for s in states]), h_n.numpy(), TOL, "h_n")
    assert_close(np.concatenate([s[1] for s in states]), c_n.numpy(), TOL, "c_n")


# ------------------------------------------------------------------------ hand-built graphs

T, B, I, H = 6, 5, 3, 4
LENGTHS = np.array([6, 0, 3, 1, 6], np.int32)      # unsorted, with 0 and T


def node_case(op, direction="forward", *, bias=True, peepholes=False, lengths=False,
              states=None, const_states=False, seed=0, **attrs):
    """(model, feed) of one node with random weights (initializers), X [T, B, I] a graph input,
    sequence_lens (lengths=True) and initial states (states="h" or "hc") as graph inputs, or
    as initializers with const_states=True (sequence_lens too)."""
    rng = np.random.default_rng([seed, len(op), len(direction)])
    D = 2 if direction == "bidirectional" else 1
    const = onnx_weights(op, D, H, I, rng, bias, peepholes)
    extra = {}
    if lengths:
        extra["sequence_lens"] = LENGTHS
    for s in states or "":
        extra["initial_" + s] = float32(rng, D, B, H)
    runtime = {"X": float32(rng, T, B, I)}
    (const if const_states else runtime).update(extra)
    return one_node_model(op, H, const, runtime, direction=direction, **attrs)


NODE_CASES = {
    "gru_reset_before": ("GRU", dict(direction="bidirectional", linear_before_reset=0)),
    "gru_reset_before_lengths_reverse": ("GRU", dict(direction="reverse", lengths=True,
                                                     states="h", linear_before_reset=0)),
    "gru_linear_before_reset": ("GRU", dict(linear_before_reset=1, lengths=True, states="h")),
    "lstm_peepholes": ("LSTM", dict(peepholes=True, states="hc")),
    "lstm_peepholes_bidirectional_lengths": ("LSTM", dict(direction="bidirectional",
                                                          peepholes=True, lengths=True,
                                                          states="hc")),
    "lstm_reverse": ("LSTM", dict(direction="reverse")),
    "lstm_reverse_lengths_nobias": ("LSTM", dict(direction="reverse", lengths=True,
                                                 states="hc", bias=False)),
    "rnn_reverse_relu": ("RNN", dict(direction="reverse", activations=["Relu"])),
    "rnn_bidirectional_lengths": ("RNN", dict(direction="bidirectional", lengths=True,
                                              states="h", activations=["Tanh", "Tanh"])),
    "lstm_const_states_lengths": ("LSTM", dict(direction="bidirectional", lengths=True,
                                               states="hc", const_states=True)),
    "gru_const_states_lengths": ("GRU", dict(lengths=True, states="h", const_states=True)),
    "rnn_const_states_lengths": ("RNN", dict(direction="reverse", lengths=True, states="h",
                                             const_states=True)),
}


@pytest.mark.parametrize("case", list(NODE_CASES))
def test_hand_built_node_matches_onnxruntime(case, backend):
    op, kw = NODE_CASES[case]
    model, feed = node_case(op, **kw)
    expected = session(model).run(None, feed)
    (lay,) = fastlstm.from_onnx(model, backend=backend).values()
    assert lay.name == "rnn" and lay.op_type == op and lay.direction == kw.get("direction",
                                                                                "forward")
    m = lay.module
    assert m.reverse == (kw.get("direction") == "reverse")
    assert m.bidirectional == (kw.get("direction") == "bidirectional")
    assert m.bias == kw.get("bias", True)
    if op == "LSTM":
        assert m.peepholes == kw.get("peepholes", False)
    if op == "GRU":
        assert m.linear_before_reset == bool(kw.get("linear_before_reset", 0))  # default 0
    if op == "RNN":
        assert m.nonlinearity == kw.get("activations", ["Tanh"])[0].lower()
    runtime = [r for r in ("sequence_lens", "initial_h", "initial_c") if r in feed]
    assert lay.runtime_inputs == tuple(runtime)
    if kw.get("const_states"):
        np.testing.assert_array_equal(lay.sequence_lens, LENGTHS)
        assert lay.initial_h is not None and lay.initial_h.shape == (m.num_directions, B, H)
        assert (lay.initial_c is not None) == (op == "LSTM")
    got = lay(**{k: v for k, v in feed.items()})
    assert_outputs(got, expected)
    if kw.get("lengths"):     # ONNX Runtime: a row of length 0 ends at state 0; so do we
        for state in got[1:]:
            assert np.all(state[:, LENGTHS == 0] == 0)
        pad = np.arange(T)[:, None] >= LENGTHS[None, :]              # (T, B)
        assert np.all(got[0].transpose(0, 2, 1, 3)[pad] == 0)


def test_module_keeps_torch_rule_for_length_zero_rows():
    """.module follows torch (the initial state); the wrapper ONNX Runtime (0)."""
    model, feed = node_case("LSTM", lengths=True, states="hc")
    (lay,) = fastlstm.from_onnx(model).values()
    _, Y_h, Y_c = lay(**feed)
    _, (h_n, c_n) = lay.module(feed["X"], (feed["initial_h"], feed["initial_c"]), LENGTHS)
    empty = LENGTHS == 0
    np.testing.assert_array_equal(h_n[:, empty], feed["initial_h"][:, empty])
    np.testing.assert_array_equal(c_n[:, empty], feed["initial_c"][:, empty])
    assert np.all(Y_h[:, empty] == 0) and np.all(Y_c[:, empty] == 0)
    assert np.any(feed["initial_h"][:, empty] != 0)
    np.testing.assert_array_equal(Y_h[:, ~empty], h_n[:, ~empty])


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_layout_1_matches_onnxruntime_on_layout_0(op, backend):
    """ONNX Runtime refuses layout=1: the layout-1 node is compared with ONNX Runtime on the
    same node in layout 0, inputs and outputs transposed."""
    rng = np.random.default_rng(11)
    const = onnx_weights(op, 2, H, I, rng, peepholes=op == "LSTM")
    x = float32(rng, T, B, I)
    states = {r: float32(rng, 2, B, H) for r in ("initial_h", "initial_c")[:1 + (op == "LSTM")]}
    attrs = dict(direction="bidirectional")
    if op == "GRU":
        attrs["linear_before_reset"] = 0
    runtime0 = dict(X=x, sequence_lens=LENGTHS, **states)
    model0, _ = one_node_model(op, H, const, runtime0, **attrs)
    expected = session(model0).run(None, runtime0)
    runtime1 = {k: (v if k == "sequence_lens" else np.ascontiguousarray(v.transpose(1, 0, 2)))
                for k, v in runtime0.items()}
    model1, _ = one_node_model(op, H, const, runtime1, layout=1, **attrs)
    with pytest.raises(Exception, match="layout"):
        session(model1)
    (lay,) = fastlstm.from_onnx(model1, backend=backend).values()
    assert lay.layout == 1 and lay.module.batch_first
    got = lay(**runtime1)
    assert got[0].shape == (B, T, 2, H)
    assert_outputs(got, [expected[0].transpose(2, 0, 1, 3)]
                   + [e.transpose(1, 0, 2) for e in expected[1:]])


def test_weights_from_constant_subgraphs():
    """W, R, B, P computed by Constant / Unsqueeze / Slice / Transpose / Concat / Reshape
    nodes (as exporters emit them) are evaluated (onnx's ReferenceEvaluator)."""
    rng = np.random.default_rng(5)
    w = onnx_weights("LSTM", 1, H, I, rng, peepholes=True)
    x = float32(rng, T, B, I)

    def c(name, array):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(
            np.asarray(array), name))

    big_rt = np.concatenate([w["R"].transpose(0, 2, 1), float32(rng, 1, H, 3)], axis=2)
    inits = [numpy_helper.from_array(big_rt, "R_big_t"),
             numpy_helper.from_array(w["P"].reshape(-1), "P_flat")]
    G = 4 * H
    nodes = [
        c("W2d", w["W"][0]), c("axes0", np.array([0], np.int64)),
        helper.make_node("Unsqueeze", ["W2d", "axes0"], ["W"]),
        c("starts", np.array([0], np.int64)), c("ends", np.array([G], np.int64)),
        c("axes2", np.array([2], np.int64)),
        helper.make_node("Slice", ["R_big_t", "starts", "ends", "axes2"], ["R_t"]),
        helper.make_node("Transpose", ["R_t"], ["R"], perm=[0, 2, 1]),
        c("Wb", w["B"][:, :G]), c("Rb", w["B"][:, G:]),
        helper.make_node("Concat", ["Wb", "Rb"], ["B"], axis=1),
        c("p_shape", np.array([1, -1], np.int64)),
        helper.make_node("Reshape", ["P_flat", "p_shape"], ["P"]),
        helper.make_node("LSTM", ["X", "W", "R", "B", "", "", "", "P"], ["Y", "Y_h", "Y_c"],
                         name="lstm", hidden_size=H),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", F32, [T, B, I])],
                              [helper.make_tensor_value_info(n, F32, None)
                               for n in ("Y", "Y_h", "Y_c")], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    expected = session(model).run(None, dict(X=x))
    lay = fastlstm.from_onnx(model)["lstm"]
    assert_outputs(lay(x), expected)
    ref, _ = one_node_model("LSTM", H, w, dict(X=x))
    sd = fastlstm.from_onnx(ref)["rnn"].state_dict()
    for key, value in lay.state_dict().items():
        np.testing.assert_array_equal(value, sd[key], err_msg=key)


def test_nodes_inside_if_branches(backend):
    """An LSTM in the then-branch (W an outer initializer, B computed in the outer graph, R a
    Constant + Unsqueeze inside the branch) and an unnamed GRU in the else-branch (its weights
    initializers of the branch)."""
    rng = np.random.default_rng(9)
    lw = onnx_weights("LSTM", 1, H, I, rng)
    gw = onnx_weights("GRU", 1, H, I, rng)
    x = float32(rng, T, B, I)
    G = 4 * H
    outer_inits = [numpy_helper.from_array(lw["W"], "W_outer"),
                   numpy_helper.from_array(lw["B"][:, :G], "Wb"),
                   numpy_helper.from_array(lw["B"][:, G:], "Rb")]
    then_nodes = [
        helper.make_node("Constant", [], ["R2d"], value=numpy_helper.from_array(lw["R"][0])),
        helper.make_node("Constant", [], ["ax"], value=numpy_helper.from_array(
            np.array([0], np.int64))),
        helper.make_node("Unsqueeze", ["R2d", "ax"], ["R_then"]),
        helper.make_node("LSTM", ["X", "W_outer", "R_then", "B_outer"],
                         ["Y_then", "Y_h_then", "Y_c_then"], name="branch_lstm",
                         hidden_size=H),
    ]
    then_graph = helper.make_graph(then_nodes, "then", [],
                                   [helper.make_tensor_value_info("Y_h_then", F32, None)])
    else_graph = helper.make_graph(
        [helper.make_node("GRU", ["X", "W_else", "R_else", "B_else"], ["Y_else", "Y_h_else"],
                          hidden_size=H)], "else", [],
        [helper.make_tensor_value_info("Y_h_else", F32, None)],
        initializer=[numpy_helper.from_array(gw[k], k + "_else") for k in ("W", "R", "B")])
    nodes = [helper.make_node("Concat", ["Wb", "Rb"], ["B_outer"], axis=1),
             helper.make_node("If", ["cond"], ["out"], then_branch=then_graph,
                              else_branch=else_graph)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", F32, [T, B, I]),
                     helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", F32, None)], initializer=outer_inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    sess = session(model)
    layers = fastlstm.from_onnx(model, backend=backend)
    # the If's subgraphs in the order of its attributes (onnx.helper sorts them by name)
    assert [a.name for a in model.graph.node[1].attribute] == ["else_branch", "then_branch"]
    assert list(layers) == ["GRU_0", "branch_lstm"]
    assert layers["GRU_0"].outputs == ("Y_else", "Y_h_else")
    for cond, name in ((True, "branch_lstm"), (False, "GRU_0")):
        (expected,) = sess.run(None, dict(X=x, cond=np.array(cond)))
        assert_close(layers[name](x)[1], expected, TOL, name)


def test_runtime_initial_state_must_be_given():
    model, feed = node_case("GRU", states="h")
    (lay,) = fastlstm.from_onnx(model).values()
    assert lay.runtime_inputs == ("initial_h",) and lay.initial_h is None
    with pytest.raises(ValueError, match=r"initial_h.*node 'rnn'.*'initial_h'.*pass initial_h"):
        lay(feed["X"])
    assert_outputs(lay(**feed), session(model).run(None, feed))


def test_unnamed_and_duplicate_node_names():
    rng = np.random.default_rng(1)
    x_info = helper.make_tensor_value_info("X", F32, [T, B, I])
    nodes, inits, outs = [], [], []
    for k, (op, name) in enumerate([("GRU", ""), ("LSTM", "dup"), ("GRU", "dup"),
                                    ("RNN", ""), ("GRU", ""), ("RNN", "GRU_1")]):
        for role, value in onnx_weights(op, 1, H, I, rng).items():
            inits.append(numpy_helper.from_array(value, f"{role}{k}"))
        nodes.append(helper.make_node(op, ["X", f"W{k}", f"R{k}", f"B{k}"], [f"Y{k}"],
                                      name=name, hidden_size=H))
        outs.append(helper.make_tensor_value_info(f"Y{k}", F32, None))
    model = helper.make_model(helper.make_graph(nodes, "g", [x_info], outs, initializer=inits),
                              opset_imports=[helper.make_opsetid("", 14)])
    layers = fastlstm.from_onnx(model)
    assert list(layers) == ["GRU_0", "dup", "dup_2", "RNN_0", "GRU_1_", "GRU_1"]
    assert [lay.outputs[0] for lay in layers.values()] == [f"Y{k}" for k in range(6)]
    x = float32(rng, T, B, I)
    for k, node in enumerate(model.graph.node):    # ONNX Runtime wants distinct names
        node.name = f"n{k}"
    expected = session(model).run(None, dict(X=x))
    for lay, e in zip(layers.values(), expected):
        assert_close(lay(x)[0], e, TOL, lay.name)


def test_wrapper_delegates_to_module(tmp_path):
    model, feed = node_case("LSTM", peepholes=True, direction="reverse")
    lay = fastlstm.from_onnx(model)["rnn"]
    assert lay.hidden_size == H and lay.input_size == I and lay.peepholes
    assert set(lay.state_dict()) == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                     "bias_hh_l0", "weight_peephole_l0"}
    # peepholes reordered from ONNX's i, o, f to p_i, p_f, p_o
    P = numpy_helper.to_array(model.graph.initializer[-1]).reshape(3, H)
    np.testing.assert_array_equal(lay.weight_peephole_l0, P[[0, 2, 1]])
    path = lay.to_onnx(tmp_path / "again.onnx")
    again = fastlstm.from_onnx(path)["LSTM_l0"]
    assert_outputs(again(feed["X"]), lay(feed["X"]))
    with pytest.raises(AttributeError):
        lay.no_such_attribute  # noqa: B018
    assert "OnnxRecurrent(name='rnn', op_type='LSTM'" in repr(lay)


# ------------------------------------------------------------------------------ to_onnx


EXPORT_CASES = {
    "lstm_stack_bidirectional": (fastlstm.LSTM, dict(num_layers=2, bidirectional=True)),
    "lstm_peepholes_reverse_batch_first": (fastlstm.LSTM, dict(num_layers=2, peepholes=True,
                                                               reverse=True,
                                                               batch_first=True)),
    "gru_reset_before_stack": (fastlstm.GRU, dict(num_layers=3, linear_before_reset=False)),
    "gru_bidirectional_nobias": (fastlstm.GRU, dict(bidirectional=True, bias=False)),
    "rnn_relu_stack": (fastlstm.RNN, dict(num_layers=2, nonlinearity="relu")),
    "rnn_tanh_reverse_batch_first": (fastlstm.RNN, dict(reverse=True, batch_first=True)),
}


def export_inputs(m, rng, lengths, initial_states):
    """(fastlstm call args, ORT feed) for module m."""
    x = float32(rng, *((B, T, I) if m.batch_first else (T, B, I)))
    feed, hx, lens = dict(x=x), None, None
    if lengths:
        lens = LENGTHS
        feed["sequence_lens"] = LENGTHS
    if initial_states:
        shape = (m.num_layers * m.num_directions, B, H)
        hx = tuple(float32(rng, *shape) for _ in range(1 + (m.kind == "lstm")))
        feed.update(zip(("h0", "c0"), hx))
        hx = hx if m.kind == "lstm" else hx[0]
    return (x, hx, lens), feed


@pytest.mark.parametrize("inputs", ["plain", "lengths", "lengths_states"])
@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_to_onnx_matches_module(case, inputs, tmp_path, backend):
    cls, kw = EXPORT_CASES[case]
    m = cls(I, H, seed=7, backend=backend, **kw).eval()
    options = dict(lengths=inputs != "plain", initial_states=inputs == "lengths_states")
    path = m.to_onnx(tmp_path / "m.onnx", **options)
    assert path == str(tmp_path / "m.onnx")
    model = onnx.load(path)
    rnn_nodes = [n for n in model.graph.node if n.op_type in GATES]
    assert [n.op_type for n in rnn_nodes] == [cls.__name__] * m.num_layers
    for n in rnn_nodes:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["direction"] == (b"bidirectional" if m.bidirectional else
                                      b"reverse" if m.reverse else b"forward")
        assert attrs.get("layout", 0) == 0 and attrs["hidden_size"] == H
        assert (len(n.input) > 7 and n.input[7] != "") == m.peepholes
        assert (len(n.input) > 3 and n.input[3] != "") == m.bias
        if cls is fastlstm.GRU:
            assert attrs["linear_before_reset"] == int(m.linear_before_reset)
        if cls is fastlstm.RNN and m.nonlinearity == "relu":
            assert attrs["activations"] == [b"Relu"] * m.num_directions
    assert [i.name for i in model.graph.input] == ["x"] + (
        ["sequence_lens"] if options["lengths"] else []) + (
        ["h0", "c0"][:1 + (m.kind == "lstm")] if options["initial_states"] else [])

    rng = np.random.default_rng(2)
    args, feed = export_inputs(m, rng, **options)
    expected = session(model).run(None, feed)
    y, hx = m(*args)
    got = (y,) + (hx if m.kind == "lstm" else (hx,))
    assert_outputs(got, expected, ("y", "h_n", "c_n"))
    # a second batch size and length through the same file (dynamic T and B)
    x2 = float32(rng, *((2, 3, I) if m.batch_first else (3, 2, I)))
    feed2 = {k: v[:, :2] for k, v in feed.items() if k in ("h0", "c0")}
    if options["lengths"]:
        feed2["sequence_lens"] = np.array([3, 0], np.int32)
    (y2, *_) = session(model).run(None, dict(x=x2, **feed2))
    assert y2.shape == ((2, 3, m.num_directions * H) if m.batch_first else
                        (3, 2, m.num_directions * H))

    # round trip: from_onnx(to_onnx(m)) holds the module's weights, layer by layer
    layers = fastlstm.from_onnx(path)
    assert list(layers) == [f"{cls.__name__}_l{k}" for k in range(m.num_layers)]
    sd = m.state_dict()
    for k, lay in enumerate(layers.values()):
        assert lay.module.bidirectional == m.bidirectional and lay.module.reverse == m.reverse
        assert set(lay.runtime_inputs) == (
            ({"sequence_lens"} if options["lengths"] else set())
            | ({"initial_h", "initial_c"} if options["initial_states"] and m.kind == "lstm"
               else {"initial_h"} if options["initial_states"] else set()))
        for key, value in lay.state_dict().items():
            np.testing.assert_array_equal(value, sd[key.replace("_l0", f"_l{k}")],
                                          err_msg=key)
        assert len(lay.state_dict()) * m.num_layers == len(sd)


def test_to_onnx_returns_model_and_float64():
    m = fastlstm.GRU(I, H, bidirectional=True, dtype="float64", seed=1)
    model = to_onnx(m, None)
    assert isinstance(model, onnx.ModelProto)
    assert model.opset_import[0].version == 14
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE
    (lay,) = fastlstm.from_onnx(model).values()
    assert lay.dtype == np.float64
    for key, value in lay.state_dict().items():
        assert value.dtype == np.float64
        np.testing.assert_array_equal(value, m.state_dict()[key])
    (lay32,) = fastlstm.from_onnx(model, dtype="float32").values()
    assert lay32.dtype == np.float32
    assert to_onnx(m, None, opset=18).opset_import[0].version == 18


def test_from_onnx_of_exported_model_is_the_module():
    """The wrappers of an exported 2-layer bidirectional LSTM, chained, give the module's y."""
    m = fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=4).eval()
    x = float32(np.random.default_rng(0), T, B, I)
    y_m, (h_m, c_m) = m(x)
    h = x
    hs, cs = [], []
    for lay in fastlstm.from_onnx(to_onnx(m, None)).values():
        Y, Y_h, Y_c = lay(h)
        h = Y.transpose(0, 2, 1, 3).reshape(T, B, -1)
        hs.append(Y_h)
        cs.append(Y_c)
    assert_close(h, y_m, TOL, "y")
    assert_close(np.concatenate(hs), h_m, TOL, "h_n")
    assert_close(np.concatenate(cs), c_m, TOL, "c_n")


# ------------------------------------------------------------------------------ errors


REFUSED = [
    ("LSTM", dict(clip=3.0), "clip"),
    ("GRU", dict(clip=1.0), "clip"),
    ("LSTM", dict(input_forget=1), "input_forget"),
    ("LSTM", dict(activations=["Sigmoid", "Tanh", "Relu"]), "activations"),
    ("GRU", dict(activations=["HardSigmoid", "Tanh"]), "activations"),
    ("RNN", dict(activations=["Sigmoid"]), "activations"),
    ("RNN", dict(direction="bidirectional", activations=["Relu", "Tanh"]), "activations"),
    ("LSTM", dict(activations=["Sigmoid", "Tanh", "Tanh"], activation_alpha=[0.5]),
     "activation_alpha"),
    ("RNN", dict(activation_beta=[0.5]), "activation_beta"),
    ("GRU", dict(linear_before_reset=2), "linear_before_reset"),
    ("LSTM", dict(direction="sideways"), "direction"),
    ("GRU", dict(layout=2), "layout"),
    ("LSTM", dict(frobnicate=1), "frobnicate"),
]


@pytest.mark.parametrize("op, attrs, attribute", REFUSED,
                         ids=[f"{op}-{a}-{'-'.join(map(str, kw.values()))}"[:60]
                              for op, kw, a in REFUSED])
def test_refused_attributes(op, attrs, attribute):
    attrs = dict(attrs)
    direction = attrs.pop("direction", "forward")
    D = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(0)
    model, _ = one_node_model(op, H, onnx_weights(op, D, H, I, rng),
                              dict(X=float32(rng, T, B, I)), name="the_node",
                              direction=direction, **attrs)
    with pytest.raises(ValueError, match=rf"node 'the_node' \({op}\).*attribute {attribute}"):
        fastlstm.from_onnx(model)


def test_supported_default_attributes_are_accepted():
    """Default activations written out, input_forget=0 and the old output_sequence pass."""
    rng = np.random.default_rng(0)
    x = float32(rng, T, B, I)
    w = onnx_weights("LSTM", 2, H, I, rng)
    model, _ = one_node_model("LSTM", H, w, dict(X=x), direction="bidirectional",
                              input_forget=0, activations=["Sigmoid", "Tanh", "Tanh"] * 2)
    assert_outputs(fastlstm.from_onnx(model)["rnn"](x), session(model).run(None, dict(X=x)))


def test_proj_size_export_is_refused(tmp_path):
    m = fastlstm.LSTM(I, H, proj_size=2)
    with pytest.raises(ValueError, match="proj_size=2"):
        m.to_onnx(tmp_path / "p.onnx")
    assert not (tmp_path / "p.onnx").exists()
    with pytest.raises(ValueError, match="opset"):
        fastlstm.GRU(I, H).to_onnx(tmp_path / "g.onnx", opset=13)
    with pytest.raises(TypeError, match="lengths"):
        fastlstm.GRU(I, H).to_onnx(tmp_path / "g.onnx", lengths="yes")


@pytest.fixture
def good_file(tmp_path):
    return fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=0).to_onnx(
        tmp_path / "good.onnx", lengths=True, initial_states=True)


def test_garbage_and_truncated_files(tmp_path, good_file):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not an ONNX model\x00\xff" * 20)
    with pytest.raises(ValueError, match=r"garbage\.onnx: not a valid ONNX model"):
        fastlstm.from_onnx(garbage)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.onnx: not a valid ONNX model"):
        fastlstm.from_onnx(empty)
    data = pathlib.Path(good_file).read_bytes()
    truncated = tmp_path / "truncated.onnx"
    for cut in (10, len(data) // 4, len(data) // 2, 3 * len(data) // 4, len(data) - 3):
        truncated.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"truncated\.onnx: not a valid ONNX model"):
            fastlstm.from_onnx(truncated)
    with pytest.raises(ValueError, match=r"<bytes>: not a valid ONNX model"):
        fastlstm.from_onnx(data[: len(data) // 2])
    assert len(fastlstm.from_onnx(data)) == 2
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        fastlstm.from_onnx(tmp_path / "missing.onnx")
    with pytest.raises(TypeError, match="path_or_model"):
        fastlstm.from_onnx(42)
    with pytest.raises(TypeError, match="dtype"):
        fastlstm.from_onnx(good_file, dtype="int32")


def test_missing_initializer(tmp_path, good_file):
    model = onnx.load(good_file)
    kept = [t for t in model.graph.initializer if t.name != "R_l1"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    path = tmp_path / "missing_init.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match=r"missing_init\.onnx: node 'LSTM_l1' \(LSTM\): input R "
                                         r"\('R_l1'\).*missing initializer"):
        fastlstm.from_onnx(path)


@pytest.mark.parametrize("what", ["W_rows", "R_ndim", "B_size", "P_size", "state_H",
                                  "hidden_size", "int_weights", "runtime_W"])
def test_wrong_weights(what):
    rng = np.random.default_rng(0)
    w = onnx_weights("LSTM", 1, H, I, rng, peepholes=True)
    runtime = dict(X=float32(rng, T, B, I))
    attrs = {}
    exc, match = ValueError, None
    if what == "W_rows":
        w["W"], match = w["W"][:, :-1], r"input W: expected shape"
    elif what == "R_ndim":
        w["R"], match = w["R"][0], r"input R: expected 3 dimensions"
    elif what == "B_size":
        w["B"], match = w["B"][:, :-2], r"input B: expected shape \[D, 8\*H\]"
    elif what == "P_size":
        w["P"], match = w["P"][:, :H], r"input P: expected shape \[D, 3\*H\]"
    elif what == "state_H":
        w["initial_h"], match = float32(rng, 1, B, H + 1), r"input initial_h: expected shape"
    elif what == "hidden_size":
        attrs["hidden_size"], match = H + 1, r"input W: expected shape"
    elif what == "int_weights":
        w["R"], exc, match = w["R"].astype(np.int32), TypeError, r"input R: expected a float"
    else:
        runtime["W"] = w.pop("W")
        match = r"input W \('W'\) is a run-time value"
    model, _ = one_node_model("LSTM", attrs.pop("hidden_size", H), w, runtime, name="n")
    with pytest.raises(exc, match=r"<ModelProto>: node 'n' \(LSTM\): " + match):
        fastlstm.from_onnx(model)


def test_bad_call_arguments():
    model, feed = node_case("LSTM", direction="bidirectional", lengths=True, states="hc")
    (lay,) = fastlstm.from_onnx(model).values()
    with pytest.raises(ValueError, match=r"sequence_lens.*pass sequence_lens"):
        lay(feed["X"], initial_h=feed["initial_h"], initial_c=feed["initial_c"])
    with pytest.raises(ValueError, match=r"X: expected 3 dimensions \[T, B, I\]"):
        lay(feed["X"][0], **{k: v for k, v in feed.items() if k != "X"})
    bad = dict(feed, initial_h=feed["initial_h"][:1])
    with pytest.raises(ValueError, match=r"initial_h: expected shape \[D, B, H\] = \(2, 5, 4\)"):
        lay(**bad)
    bad = dict(feed, sequence_lens=np.array([7, 1, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"sequence_lens: each length must be in \[0, T\]"):
        lay(**bad)
    bad = dict(feed, sequence_lens=np.ones(5, np.float32))
    with pytest.raises(TypeError, match=r"sequence_lens: expected integers"):
        lay(**bad)
    gru_model, gru_feed = node_case("GRU")
    with pytest.raises(ValueError, match=r"initial_c: node 'rnn' is a GRU"):
        fastlstm.from_onnx(gru_model)["rnn"](gru_feed["X"], initial_c=np.zeros((1, B, H)))


def test_broken_constant_subgraph_and_float16_weights():
    rng = np.random.default_rng(0)
    w = onnx_weights("GRU", 1, H, I, rng)
    x = float32(rng, T, B, I)
    # W = Reshape(W_flat, a shape its size does not fit): the evaluator fails, clearly
    nodes = [helper.make_node("Reshape", ["W_flat", "W_shape"], ["W"]),
             helper.make_node("GRU", ["X", "W", "R"], ["Y"], name="g", hidden_size=H)]
    inits = [numpy_helper.from_array(w["W"].ravel(), "W_flat"),
             numpy_helper.from_array(np.array([1, 5, -1], np.int64), "W_shape"),
             numpy_helper.from_array(w["R"], "R")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", F32, [T, B, I])],
                              [helper.make_tensor_value_info("Y", F32, None)],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    with pytest.raises(ValueError, match=r"node 'g' \(GRU\): input W \('W'\) could not be "
                                         r"computed"):
        fastlstm.from_onnx(model)
    # float16 weights: refused unless a float dtype is asked for
    half = {k: v.astype(np.float16) for k, v in w.items()}
    model, _ = one_node_model("GRU", H, half, {"X": x.astype(np.float16)}, name="g")
    with pytest.raises(TypeError, match=r"input W: dtype float16 .*dtype='float32'"):
        fastlstm.from_onnx(model)
    lay = fastlstm.from_onnx(model, dtype="float32")["g"]
    expected = fastlstm.from_onnx(one_node_model("GRU", H, {k: v.astype(np.float32)
                                                             for k, v in half.items()},
                                                 {"X": x})[0])["rnn"]
    assert lay.dtype == np.float32
    assert_outputs(lay(x), expected(x))


def test_model_without_recurrent_nodes():
    graph = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", F32, [2])],
                              [helper.make_tensor_value_info("Y", F32, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    assert fastlstm.from_onnx(model) == {}
    assert fastlstm.from_onnx(model.SerializeToString()) == {}


def test_without_onnx_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)   # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r"fastlstm.from_onnx needs the onnx package"):
        fastlstm.from_onnx(tmp_path / "model.onnx")
    with pytest.raises(ImportError, match=r"to_onnx needs the onnx package: pip install onnx"):
        fastlstm.GRU(3, 4).to_onnx(tmp_path / "model.onnx")
