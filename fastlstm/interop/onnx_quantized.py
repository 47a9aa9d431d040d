"""int8 LSTMs in and out of ONNX as ONNX Runtime's com.microsoft DynamicQuantizeLSTM.

    layers = fastlstm.from_onnx("model.int8.onnx")   # DynamicQuantizeLSTM nodes included
    layers["LSTM_l0_quant"].module                   # a Quantized "int8" LSTM
    q = m.quantize("int8"); q.to_onnx("q.onnx")      # one DynamicQuantizeLSTM node per layer

The operator (ONNX Runtime's contrib op, domain com.microsoft, version 1; CPU, float32): an
ONNX LSTM (gates i, o, f, c; B [D, 8H] = [Wb, Rb]; P [D, 3H] in order i, o, f; Y, Y_h, Y_c;
attributes direction, hidden_size, activations, clip, input_forget, no layout) whose W and R
are integer codes, transposed against the LSTM's:

    W [D, I, 4H], R [D, H, 4H]        int8 or uint8; column n of W[d] is gate row n
    W_scale, R_scale                  float32 [D] (per tensor, one per direction) or
                                      [D, 4H] (per channel: one per gate row)
    W_zero_point, R_zero_point        W's dtype, the shape of the scale
    W[d] stands for (W[d] - W_zero_point[d]) * W_scale[d] (per column for [D, 4H])

ONNX Runtime quantizes the activations (x_t, h_{t-1}) at run time per tensor, asymmetric
uint8, where fastlstm quantizes per row, symmetric int8 (SPEC.md section 8): the same weights
give outputs that agree to within the activations' quantization step, not bit for bit.

Import (`read_dynamic_quantize_lstm`, called by fastlstm.from_onnx): the codes of each gate row
are taken exactly into fastlstm's rows (codes (4H, K), one scale per row; a per-tensor scale is
repeated over the rows; gates reordered i, o, f, c -> i, f, g, o) wherever the code minus its
zero point lies in [-127, 127]: int8 with zero point 0 (what onnxruntime.quantization writes)
and uint8 with zero point 128 are exact. A value of -128 after the zero point (int8 code -128;
uint8 code 0 with zero point 128) is stored as -127 (that weight moves by one step); a row
with other zero points whose codes fall outside [-128, 127] is requantized symmetrically from
its dequantized weight (fastlstm.interop.torch_quantized.symmetric_rows). Refused, as for the
ONNX LSTM (fastlstm.interop.onnx_import): clip, input_forget=1, other activations,
run-time weights; and here also the attributes layout and output_sequence (not part of the
operator), scales or zero points that are not constants, of the wrong shape or dtype, negative
or non-finite scales, and dtype="float64" (the module is float32).

Export (`to_onnx`, what Quantized.to_onnx calls): the graph of fastlstm.interop.onnx_export
(the same inputs x, sequence_lens, h0, c0 and outputs y, h_n, c_n, torch's shapes and rules,
batch_first by Transposes), with layer l one DynamicQuantizeLSTM node "DynamicQuantizeLSTM_l{l}"
(direction forward, reverse or bidirectional) reading the initializers W_l{l}, R_l{l} (int8
codes, exactly the module's), W_scale_l{l}, R_scale_l{l} (float32 [D, 4H], the module's
per-row scales), W_zero_point_l{l}, R_zero_point_l{l} (int8 zeros), B_l{l} (absent for
bias=False) and P_l{l} (peepholes). Opsets: the default domain (>= 14) and com.microsoft 1.
What ONNX Runtime has no operator for is a ValueError: a GRU or an RNN (no quantized GRU / RNN
op), bfloat16 (no bfloat16 recurrent op), a projection LSTM (proj_size > 0).
Caveat of ONNX Runtime's kernels: on x86-64 CPUs with AVX2 but without VNNI, its u8 x s8
products (VPMADDUBSW) can saturate 16-bit pair sums for large codes; ONNX Runtime's
documentation describes this for every U8S8 model (its own quantizer's included).
"""
import os

import numpy as np

from .onnx_graph import ONNX_FROM_TORCH, TORCH_FROM_ONNX, import_onnx, onnx_to_torch_params, \
    reorder_blocks, torch_to_onnx_params

#: ONNX Runtime's domain and the version of its DynamicQuantizeLSTM
MS_DOMAIN = "com.microsoft"
MS_OPSET = 1
OP = "DynamicQuantizeLSTM"
DEFAULT_OPSET = 14


# --------------------------------------------------------------------------------------------
# import

def _integer_codes(reader, role, value, D, K, H):
    """W or R [D, K, 4H] int8 / uint8 -> (D, 4H, K) in ONNX's gate order."""
    if value.dtype not in (np.int8, np.uint8):
        raise reader.fail(f"input {role}: expected int8 or uint8 codes, got dtype "
                          f"{value.dtype}", TypeError)
    reader.check_shape(role, value, (D, K, 4 * H), f"[D, {'I' if role == 'W' else 'H'}, 4*H]")
    return value.transpose(0, 2, 1)


def _qparams(reader, role, codes_dtype, D, H):
    """The scale and zero point of W or R as (D, 4H) arrays (per tensor: repeated)."""
    scale = reader.constant(f"{role}_scale", required=True)
    zp = reader.constant(f"{role}_zero_point", required=True)
    if scale.dtype != np.float32:
        raise reader.fail(f"input {role}_scale: expected float32, got dtype {scale.dtype}",
                          TypeError)
    if zp.dtype != codes_dtype:
        raise reader.fail(f"input {role}_zero_point: expected {codes_dtype.name} (the dtype of "
                          f"{role}), got dtype {zp.dtype}", TypeError)
    for name, value in ((f"{role}_scale", scale), (f"{role}_zero_point", zp)):
        if value.shape not in ((D,), (D, 4 * H)):
            raise reader.fail(f"input {name}: expected shape [D] = ({D},) (per tensor) or "
                              f"[D, 4*H] = ({D}, {4 * H}) (per channel), got {value.shape}")
    if not np.all(np.isfinite(scale)) or np.any(scale < 0):
        raise reader.fail(f"input {role}_scale: expected finite scales >= 0")
    expand = (lambda a: np.repeat(a[:, None], 4 * H, axis=1) if a.ndim == 1 else a)  # noqa: E731
    return expand(scale), expand(zp.astype(np.int64))


def read_dynamic_quantize_lstm(reader):
    """The OnnxRecurrent of one DynamicQuantizeLSTM node (reader: onnx_import._NodeReader);
    its .module is a Quantized "int8" LSTM (see the module docstring)."""
    from ..layers.modules import LSTM
    from ..layers.quantized import Quantized
    from .torch_quantized import symmetric_rows

    if reader.dtype is not None and reader.dtype != np.float32:
        raise reader.fail(f"dtype={reader.dtype.name!r}: an int8 DynamicQuantizeLSTM node "
                          f"becomes a float32 module (pass dtype=None or 'float32')")
    for name in ("layout", "output_sequence"):   # the ONNX LSTM's, not this operator's
        if name in reader.attrs:
            raise reader.fail(f"attribute {name} is not part of the {OP} operator")
    direction, D, layout, hidden, _, _ = reader.attributes()
    if not reader.inputs[0]:
        raise reader.fail("input X is missing")
    W = reader.constant("W", required=True)
    R = reader.constant("R", required=True)
    if R.ndim != 3:
        raise reader.fail(f"input R: expected 3 dimensions [D, H, 4*H], got shape {R.shape}")
    H = hidden if hidden is not None else R.shape[1]
    if W.ndim != 3 or W.shape[1] < 1:
        raise reader.fail(f"input W: expected shape [D, I, 4*H] with I >= 1, got {W.shape}")
    I = W.shape[1]
    Wc = _integer_codes(reader, "W", W, D, I, H)
    Rc = _integer_codes(reader, "R", R, D, H, H)
    w_scale, w_zp = _qparams(reader, "W", W.dtype, D, H)
    r_scale, r_zp = _qparams(reader, "R", R.dtype, D, H)
    B = reader.constant("B")
    if B is not None:
        B = reader.float_array("B", B, np.float32)
        reader.check_shape("B", B, (D, 8 * H), "[D, 8*H]")
    P = reader.constant("P")
    if P is not None:
        P = reader.float_array("P", P, np.float32)
        reader.check_shape("P", P, (D, 3 * H), "[D, 3*H]")
    lens, states, runtime = reader.run_inputs(D, H, layout, np.float32, True)

    # torch's keys, layout and gate order; then the integer rows made symmetric per row
    params = onnx_to_torch_params("lstm", Wc, Rc, B, P)
    order = TORCH_FROM_ONNX["lstm"]
    for d in range(D):
        sfx = "l0" + ("_reverse" if d == 1 else "")
        for name, scale, zp in (("weight_ih", w_scale, w_zp), ("weight_hh", r_scale, r_zp)):
            key = f"{name}_{sfx}"
            codes, row_scale, _ = symmetric_rows(params[key], reorder_blocks(zp[d], order),
                                                 reorder_blocks(scale[d], order))
            params[key], params[key + "_scale"] = codes, row_scale
    float_module = LSTM(I, H, bias=B is not None, batch_first=layout == 1,
                        bidirectional=D == 2, reverse=direction == "reverse",
                        peepholes=P is not None, dtype=np.float32, backend=reader.backend)
    module = Quantized(float_module, "int8").load_state_dict(params)
    return reader.layer(module, direction, layout, lens, states, runtime)


# --------------------------------------------------------------------------------------------
# export

def to_onnx(module, path, *, lengths=False, initial_states=False, opset=DEFAULT_OPSET):
    """Write an int8 Quantized LSTM as DynamicQuantizeLSTM nodes (see the module docstring; the
    graph's inputs, outputs and options are fastlstm.interop.onnx_export.to_onnx's).

    path: a file path (str or os.PathLike): the model is saved there and the path is returned
        (as a str); None: nothing is written and the onnx.ModelProto is returned.
    lengths: True adds the graph input sequence_lens (B,) int32 (lengths in [0, T]).
    initial_states: True adds the graph inputs h0 and c0, (L*D, B, H); else zeros.
    opset: the ONNX opset of the default domain, >= 14.

    A GRU, an RNN, a bfloat16 module or a projection LSTM is a ValueError (ONNX Runtime has no
    operator for them); a module that is not a Quantized one, or an option of the wrong type,
    a TypeError.
    """
    from ..layers.quantized import Quantized

    if not isinstance(module, Quantized):
        raise TypeError(f"module: expected a fastlstm quantized module (m.quantize('int8')), "
                        f"got {type(module).__name__}")
    if module.precision != "int8":
        raise ValueError(f"precision: ONNX has no {module.precision} recurrent operator (ONNX "
                         f"Runtime's DynamicQuantizeLSTM is int8); export the float module, "
                         f"or an int8 one (m.quantize('int8'))")
    if module.kind != "lstm":
        name = "GRU" if module.kind == "gru" else "RNN"
        raise ValueError(f"kind: ONNX Runtime has no quantized {name} operator (only "
                         f"DynamicQuantizeLSTM); an int8 {name} cannot be written as ONNX: "
                         f"export the float module")
    if module.proj_size:
        raise ValueError(f"proj_size={module.proj_size}: DynamicQuantizeLSTM has no "
                         f"projection, so a projection LSTM cannot be written as ONNX")
    for name, flag in (("lengths", lengths), ("initial_states", initial_states)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name}: expected True or False, got {flag!r}")
    onnx = import_onnx("to_onnx")
    from onnx import TensorProto, helper, numpy_helper

    max_opset = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not DEFAULT_OPSET <= opset <= max_opset:
        raise ValueError(f"opset: expected an integer in [{DEFAULT_OPSET}, {max_opset}], "
                         f"got {opset!r}")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path or None, got {type(path).__name__}")

    L, D, H = module.num_layers, module.num_directions, module.hidden_size
    elem = TensorProto.FLOAT
    params = module.state_dict()
    order = ONNX_FROM_TORCH["lstm"]
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def add(op_type, inputs, outputs, name=None, **attrs):
        nodes.append(helper.make_node(op_type, inputs, outputs, name=name or outputs[0],
                                      **attrs))
        return outputs[0]

    batch_first = module.batch_first
    x_dims = ["batch_size", "seq_length", module.input_size] if batch_first \
        else ["seq_length", "batch_size", module.input_size]
    state_dims = [L * D, "batch_size", H]
    inputs = [helper.make_tensor_value_info("x", elem, x_dims)]
    if lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32,
                                                    ["batch_size"]))
    state_names = ("h0", "c0")
    if initial_states:
        inputs += [helper.make_tensor_value_info(n, elem, state_dims) for n in state_names]

    x = add("Transpose", ["x"], ["x_time_major"], perm=[1, 0, 2]) if batch_first else "x"
    if initial_states:
        const("state_axes", np.array([0], np.int64))
    const("y_shape", np.array([0, 0, -1], np.int64))
    finals = {"Y_h": [], "Y_c": []}
    for layer in range(L):
        W, R, Bias, P = torch_to_onnx_params("lstm", params, layer, D, module.bias,
                                             module.peepholes)
        sfxs = [f"l{layer}" + ("_reverse" if d == 1 else "") for d in range(D)]

        def scales(name):
            return np.stack([reorder_blocks(params[f"{name}_{s}_scale"], order)
                             for s in sfxs]).astype(np.float32)

        # W [D, 4H, I] -> [D, I, 4H]: column n of W[d] is ONNX gate row n
        node_inputs = [x, const(f"W_l{layer}", np.ascontiguousarray(W.transpose(0, 2, 1))),
                       const(f"R_l{layer}", np.ascontiguousarray(R.transpose(0, 2, 1))),
                       const(f"B_l{layer}", Bias) if Bias is not None else "",
                       "sequence_lens" if lengths else ""]
        if initial_states:    # rows [layer*D, (layer+1)*D) of h0 (c0)
            start = const(f"state_start_l{layer}", np.array([layer * D], np.int64))
            end = const(f"state_end_l{layer}", np.array([(layer + 1) * D], np.int64))
            for state, role in zip(state_names, ("initial_h", "initial_c")):
                node_inputs.append(add("Slice", [state, start, end, "state_axes"],
                                       [f"{role}_l{layer}"]))
        else:
            node_inputs += ["", ""]
        node_inputs.append(const(f"P_l{layer}", P) if P is not None else "")
        node_inputs += [const(f"W_scale_l{layer}", scales("weight_ih")),
                        const(f"W_zero_point_l{layer}", np.zeros((D, 4 * H), np.int8)),
                        const(f"R_scale_l{layer}", scales("weight_hh")),
                        const(f"R_zero_point_l{layer}", np.zeros((D, 4 * H), np.int8))]
        outs = [f"Y_l{layer}", f"Y_h_l{layer}", f"Y_c_l{layer}"]
        add(OP, node_inputs, outs, name=f"{OP}_l{layer}", domain=MS_DOMAIN, hidden_size=H,
            direction="bidirectional" if D == 2 else
            "reverse" if module.reverse else "forward")
        finals["Y_h"].append(outs[1])
        finals["Y_c"].append(outs[2])
        # Y [T, D, B, H] -> (T, B, D, H) -> (T, B, D*H)
        t = add("Transpose", [outs[0]], [f"Y_l{layer}_tbdh"], perm=[0, 2, 1, 3])
        last = layer == L - 1
        x = add("Reshape", [t, "y_shape"], ["y" if last and not batch_first else
                                            f"y_l{layer}"])
    if batch_first:
        add("Transpose", [x], ["y"], perm=[1, 0, 2])

    # final states (L*D, B, H); torch's rule for rows of length 0 (onnx_export's Where)
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
    outputs += [helper.make_tensor_value_info(n, elem, state_dims) for n in ("h_n", "c_n")]
    graph = helper.make_graph(nodes, "fastlstm_lstm_int8", inputs, outputs, initializer=inits)
    opsets = [helper.make_opsetid("", int(opset)), helper.make_opsetid(MS_DOMAIN, MS_OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="fastlstm",
                              ir_version=helper.find_min_ir_version_for(opsets[:1]),
                              doc_string=f"fastlstm {module!r} (torch semantics; ONNX "
                                         f"Runtime's com.microsoft.{OP})")
    onnx.checker.check_model(model, full_check=True)
    if path is None:
        return model
    path = os.fspath(path)
    onnx.save(model, path)
    return path
