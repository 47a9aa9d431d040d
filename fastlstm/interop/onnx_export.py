"""m.to_onnx(path): a fastlstm LSTM / GRU / RNN stack as standard ONNX LSTM / GRU / RNN nodes.

    m.to_onnx("model.onnx")                                    # returns "model.onnx"
    m.to_onnx("model.onnx", lengths=True, initial_states=True)
    model = fastlstm.interop.onnx_export.to_onnx(m, None)      # the onnx.ModelProto, no file

The model computes what m(x, hx, lengths) computes in eval mode (no dropout), with torch's
shapes (D = 2 if bidirectional else 1, L = num_layers, H = hidden_size):

    inputs   x              (T, B, I), or (B, T, I) when m.batch_first; T and B dynamic
             sequence_lens  (B,) int32                  only with lengths=True
             h0             (L*D, B, H)                 only with initial_states=True
             c0             (L*D, B, H)  (LSTM)         only with initial_states=True
    outputs  y              (T, B, D*H), or (B, T, D*H) when m.batch_first
             h_n            (L*D, B, H)
             c_n            (L*D, B, H)  (LSTM)

The graph: layer l is one node "{LSTM|GRU|RNN}_l{l}" (layout 0, direction "forward",
"reverse" for reverse=True, or "bidirectional") with initializers W_l{l}, R_l{l}, B_l{l} (absent
for bias=False) and P_l{l} (peepholes), reading h0 / c0 through a Slice of rows
[l*D, (l+1)*D); its Y [T, D, B, H] goes through Transpose (perm 0, 2, 1, 3) and Reshape
(0, 0, -1) to (T, B, D*H), the next layer's X. The Y_h (Y_c) of the layers are concatenated.
batch_first adds a Transpose before the first node and after the last (ONNX Runtime refuses
layout=1). The GRU writes linear_before_reset (1: torch's cell; 0: the reset-before GRU), the
relu RNN activations=["Relu"]. ONNX Runtime gives a row of length 0 a final state of 0 where
torch keeps its initial state; with lengths=True and initial_states=True a Where node puts the
initial state back, so the model keeps torch's rule everywhere.

Opset 14 by default: the first with the layout attribute (LSTM-14, GRU-14, RNN-14) and
Reshape's allowzero; any later opset that onnx knows may be asked for. float64 modules are
written as float64 graphs (valid ONNX; ONNX Runtime's CPU LSTM / GRU / RNN run float32 only).
A projection LSTM (proj_size > 0) cannot be written: ValueError.
"""
import os

import numpy as np

from .onnx_graph import import_onnx, torch_to_onnx_params

DEFAULT_OPSET = 14
_OPS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def to_onnx(module, path, *, lengths=False, initial_states=False, opset=DEFAULT_OPSET):
    """Write `module` (fastlstm.LSTM / GRU / RNN) as an ONNX model (see the module docstring
    for the graph, its inputs and outputs).

    path: a file path (str or os.PathLike): the model is saved there and the path is returned
        (as a str); None: nothing is written and the onnx.ModelProto is returned.
    lengths: True adds the graph input sequence_lens (B,) int32 (lengths in [0, T]).
    initial_states: True adds the graph inputs h0 (and c0 for the LSTM), (L*D, B, H);
        without them the states start at zero.
    opset: the ONNX opset of the default domain, >= 14.

    A proj_size > 0 LSTM is a ValueError (ONNX's LSTM has no projection); a module that is not
    a fastlstm LSTM / GRU / RNN, or an option of the wrong type, a TypeError.
    """
    from ..layers.modules import _StackBase

    if not isinstance(module, _StackBase):
        raise TypeError(f"module: expected a fastlstm LSTM, GRU or RNN, got "
                        f"{type(module).__name__}")
    check_options(path, lengths, initial_states, opset)
    if module.proj_size:
        raise ValueError(f"proj_size={module.proj_size}: ONNX's LSTM has no projection, so a "
                         f"projection LSTM cannot be written as ONNX")
    kind, op = module.kind, _OPS[module.kind]

    def node(layer, inputs, add):
        """The standard ONNX node of one layer: inputs X, W, R, B, sequence_lens, initial_h,
        (initial_c,) P, trailing omitted ones dropped."""
        const = inputs["const"]
        node_inputs = [inputs["x"], const(f"W_l{layer}", inputs["W"]),
                       const(f"R_l{layer}", inputs["R"]), inputs["B"],
                       inputs["sequence_lens"]] + inputs["states"]
        if inputs["P"]:
            node_inputs.append(inputs["P"])
        while not node_inputs[-1]:
            node_inputs.pop()
        attrs = dict(hidden_size=module.hidden_size, direction=inputs["direction"])
        if kind == "gru":
            attrs["linear_before_reset"] = int(module.linear_before_reset)
        if kind == "rnn" and module.nonlinearity == "relu":
            attrs["activations"] = ["Relu"] * module.num_directions
        outs = [f"Y_l{layer}", f"Y_h_l{layer}"] + ([f"Y_c_l{layer}"] if kind == "lstm" else [])
        add(op, node_inputs, outs, name=f"{op}_l{layer}", **attrs)
        return outs

    return write_graph(module, path, node, lengths=lengths, initial_states=initial_states,
                       opset=opset, graph_name=f"fastlstm_{kind}",
                       doc=f"fastlstm {module!r} (torch semantics, eval mode)")


def check_options(path, lengths, initial_states, opset):
    """The checks of to_onnx's options (TypeError or ValueError naming the option)."""
    onnx = import_onnx("to_onnx")
    for name, flag in (("lengths", lengths), ("initial_states", initial_states)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name}: expected True or False, got {flag!r}")
    max_opset = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not DEFAULT_OPSET <= opset <= max_opset:
        raise ValueError(f"opset: expected an integer in [{DEFAULT_OPSET}, {max_opset}], "
                         f"got {opset!r}")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path or None, got {type(path).__name__}")


def write_graph(module, path, node, *, lengths, initial_states, opset, graph_name, doc,
                extra_opsets=()):
    """The graph of the module docstring for a stack (float or quantized), its recurrent
    node of each layer made by node(layer, inputs, add) -> its [Y, Y_h(, Y_c)] names, where
    inputs = {"x": the layer's input, "W", "R": ONNX's arrays (W [D, G*H, I], R [D, G*H, H],
    for the node to write with const), "B", "sequence_lens", "P": names ("" when absent),
    "states": [initial_h(, initial_c)] names ("" when absent), "direction", "const":
    const(name, array) -> name (an initializer), "params": the module's state_dict()} and
    add(op_type, inputs, outputs, name=None, **attrs) appends a node (attrs may hold domain).
    extra_opsets: (domain, version) pairs beside the default domain's opset."""
    onnx = import_onnx("to_onnx")
    from onnx import TensorProto, helper, numpy_helper

    kind = module.kind
    L, D, H = module.num_layers, module.num_directions, module.hidden_size
    lstm = kind == "lstm"
    elem = TensorProto.FLOAT if module.dtype == np.float32 else TensorProto.DOUBLE
    params = module.state_dict()
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def add(op_type, inputs, outputs, name=None, **attrs):
        nodes.append(helper.make_node(op_type, inputs, outputs, name=name or outputs[0],
                                      **attrs))
        return outputs[0]

    # graph inputs
    batch_first = module.batch_first
    x_dims = ["batch_size", "seq_length", module.input_size] if batch_first \
        else ["seq_length", "batch_size", module.input_size]
    state_dims = [L * D, "batch_size", H]
    inputs = [helper.make_tensor_value_info("x", elem, x_dims)]
    if lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32,
                                                    ["batch_size"]))
    state_names = ("h0", "c0") if lstm else ("h0",)
    if initial_states:
        inputs += [helper.make_tensor_value_info(n, elem, state_dims) for n in state_names]

    x = add("Transpose", ["x"], ["x_time_major"], perm=[1, 0, 2]) if batch_first else "x"
    if initial_states:
        const("state_axes", np.array([0], np.int64))
    const("y_shape", np.array([0, 0, -1], np.int64))
    finals = {n: [] for n in ("Y_h", "Y_c")}
    direction = "bidirectional" if D == 2 else "reverse" if module.reverse else "forward"
    for layer in range(L):
        W, R, Bias, P = torch_to_onnx_params(kind, params, layer, D, module.bias,
                                             module.peepholes)
        states = []
        if initial_states:    # rows [layer*D, (layer+1)*D) of h0 (c0)
            start = const(f"state_start_l{layer}", np.array([layer * D], np.int64))
            end = const(f"state_end_l{layer}", np.array([(layer + 1) * D], np.int64))
            for state, role in zip(state_names, ("initial_h", "initial_c")):
                states.append(add("Slice", [state, start, end, "state_axes"],
                                  [f"{role}_l{layer}"]))
        else:
            states = [""] * len(state_names)
        outs = node(layer, {
            "x": x, "W": W, "R": R, "B": const(f"B_l{layer}", Bias) if Bias is not None else "",
            "sequence_lens": "sequence_lens" if lengths else "", "states": states,
            "P": const(f"P_l{layer}", P) if P is not None else "", "direction": direction,
            "const": const, "params": params}, add)
        finals["Y_h"].append(outs[1])
        if lstm:
            finals["Y_c"].append(outs[2])
        # Y [T, D, B, H] -> (T, B, D, H) -> (T, B, D*H)
        t = add("Transpose", [outs[0]], [f"Y_l{layer}_tbdh"], perm=[0, 2, 1, 3])
        last = layer == L - 1
        x = add("Reshape", [t, "y_shape"], ["y" if last and not batch_first else
                                            f"y_l{layer}"])
    if batch_first:
        add("Transpose", [x], ["y"], perm=[1, 0, 2])

    # final states: h_n (L*D, B, H); torch's rule for rows of length 0 when it matters
    fix = lengths and initial_states
    if fix:
        const("zero_length", np.array(0, np.int32))
        const("mask_shape", np.array([1, -1, 1], np.int64))
        add("Equal", ["sequence_lens", "zero_length"], ["empty_rows"])
        add("Reshape", ["empty_rows", "mask_shape"], ["empty_rows_1b1"])
    for parts, state, out in zip(finals.values(), state_names, ("h_n", "c_n")):
        stacked = add("Concat", parts, [f"{out}_ort" if fix else out], axis=0)
        if fix:
            add("Where", ["empty_rows_1b1", state, stacked], [out])

    outputs = [helper.make_tensor_value_info(
        "y", elem, (["batch_size", "seq_length"] if batch_first
                    else ["seq_length", "batch_size"]) + [D * H])]
    outputs += [helper.make_tensor_value_info(n, elem, state_dims)
                for n in (("h_n", "c_n") if lstm else ("h_n",))]
    graph = helper.make_graph(nodes, graph_name, inputs, outputs, initializer=inits)
    opsets = [helper.make_opsetid("", int(opset))]
    opsets += [helper.make_opsetid(domain, version) for domain, version in extra_opsets]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="fastlstm",
                              ir_version=helper.find_min_ir_version_for(opsets[:1]),
                              doc_string=doc)
    onnx.checker.check_model(model, full_check=True)
    if path is None:
        return model
    path = os.fspath(path)
    onnx.save(model, path)
    return path
