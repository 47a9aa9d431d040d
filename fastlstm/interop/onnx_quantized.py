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
uint8, where fastlstm quantizes per row, int8 with a zero point (reference/quantized.py): the
same weights give outputs that agree to within the activations' quantization step, not bit for bit.

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

import numpy as np

from .onnx_export import DEFAULT_OPSET, check_options, write_graph
from .onnx_graph import ONNX_FROM_TORCH, TORCH_FROM_ONNX, onnx_to_torch_params, reorder_blocks

#: ONNX Runtime's domain and the version of its DynamicQuantizeLSTM
MS_DOMAIN = "com.microsoft"
MS_OPSET = 1
OP = "DynamicQuantizeLSTM"


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
    check_options(path, lengths, initial_states, opset)
    order = ONNX_FROM_TORCH["lstm"]
    D, H = module.num_directions, module.hidden_size

    def node(layer, inputs, add):
        """One DynamicQuantizeLSTM node: the LSTM's inputs with W, R transposed to
        [D, K, 4H] (column n of W[d] is ONNX gate row n), then P, the scales and zero
        points."""
        const, params = inputs["const"], inputs["params"]
        sfxs = [f"l{layer}" + ("_reverse" if d == 1 else "") for d in range(D)]

        def scales(name):
            return np.stack([reorder_blocks(params[f"{name}_{s}_scale"], order)
                             for s in sfxs]).astype(np.float32)

        node_inputs = [inputs["x"],
                       const(f"W_l{layer}", np.ascontiguousarray(inputs["W"].transpose(0, 2, 1))),
                       const(f"R_l{layer}", np.ascontiguousarray(inputs["R"].transpose(0, 2, 1))),
                       inputs["B"], inputs["sequence_lens"], *inputs["states"], inputs["P"],
                       const(f"W_scale_l{layer}", scales("weight_ih")),
                       const(f"W_zero_point_l{layer}", np.zeros((D, 4 * H), np.int8)),
                       const(f"R_scale_l{layer}", scales("weight_hh")),
                       const(f"R_zero_point_l{layer}", np.zeros((D, 4 * H), np.int8))]
        outs = [f"Y_l{layer}", f"Y_h_l{layer}", f"Y_c_l{layer}"]
        add(OP, node_inputs, outs, name=f"{OP}_l{layer}", domain=MS_DOMAIN, hidden_size=H,
            direction=inputs["direction"])
        return outs

    return write_graph(module, path, node, lengths=lengths, initial_states=initial_states,
                       opset=opset, graph_name="fastlstm_lstm_int8",
                       doc=f"fastlstm {module!r} (torch semantics; ONNX Runtime's "
                           f"com.microsoft.{OP})", extra_opsets=((MS_DOMAIN, MS_OPSET),))
