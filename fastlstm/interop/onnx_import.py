"""fastlstm.from_onnx: every LSTM, GRU and RNN node of an ONNX model as a fastlstm layer.

    layers = fastlstm.from_onnx("model.onnx")      # or an onnx.ModelProto, or bytes
    node = layers["/lstm/LSTM"]                    # an OnnxRecurrent (fastlstm.interop.onnx_layer)
    Y, Y_h, Y_c = node(X)                          # exactly the ONNX node's outputs
    node.module                                    # the fastlstm.LSTM, torch's layout

What maps (ONNX layouts in SPEC.md section 5):
    direction forward / reverse / bidirectional -> reverse=True / bidirectional=True
    layout 0 / 1 -> batch_first False / True;  hidden_size;  GRU linear_before_reset 0 / 1
    W, R, B (absent: bias=False), P (LSTM peepholes, reordered i, o, f -> i, f, o)
    RNN activations ["Tanh"] (default) / ["Relu"] -> nonlinearity "tanh" / "relu"
    sequence_lens, initial_h, initial_c: constants are kept on the layer
What is refused (ValueError naming the node and the attribute): clip, input_forget=1, any
other activations, activation_alpha / activation_beta, unknown attributes.

ONNX Runtime's com.microsoft DynamicQuantizeLSTM nodes (what
onnxruntime.quantization.quantize_dynamic writes for an LSTM) are read too, as int8 modules
(fastlstm.layers.quantized.Quantized) with the node's integer codes: see
fastlstm.interop.onnx_quantized for the layout and what is exact.

Weights (W, R, B, P) must be constants: initializers, or values computed from initializers and
Constant nodes only (Unsqueeze, Concat, Slice, Reshape, Transpose, ... as exporters emit them,
also inside If branches and reading names of the enclosing graphs). They are computed with
onnx's ReferenceEvaluator on the extracted nodes. sequence_lens, initial_h and initial_c may
be constants (kept on the layer), zero fills (a ConstantOfShape of 0, possibly reshaped,
sliced or expanded, as torch's exporter writes the zero initial state shaped from the input:
treated as zeros), or other run-time values (listed in the layer's runtime_inputs: the
caller passes them).

Node names: a node's own name; an unnamed node gets "{op_type}_{k}", k counting the unnamed
recurrent nodes of that op type in the order the model lists them (the main graph in order,
each node's subgraphs right after it); a name already taken gets "_2", "_3", ... appended.
"""
import numpy as np

from .onnx_graph import GATES, KINDS, ConstantFolder, MissingValue, load_model, \
    onnx_to_torch_params, walk_nodes
from .onnx_layer import OnnxRecurrent

#: input positions of the recurrent ops (the last four: DynamicQuantizeLSTM only)
_ROLES = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P", "W_scale",
          "W_zero_point", "R_scale", "R_zero_point")
#: ONNX Runtime's quantized recurrent ops: op_type -> (domain, kind); read by onnx_quantized
CONTRIB_KINDS = {"DynamicQuantizeLSTM": ("com.microsoft", "lstm")}
_DIRECTIONS = ("forward", "reverse", "bidirectional")
#: each op's activations in ONNX's default (one direction)
_DEFAULT_ACTIVATIONS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh"),
                        "RNN": ("tanh",), "DynamicQuantizeLSTM": ("sigmoid", "tanh", "tanh")}
_KNOWN_ATTRIBUTES = {"activation_alpha", "activation_beta", "activations", "clip", "direction",
                     "hidden_size", "layout", "output_sequence"}
_OP_ATTRIBUTES = {"LSTM": {"input_forget"}, "GRU": {"linear_before_reset"}, "RNN": set(),
                  "DynamicQuantizeLSTM": {"input_forget"}}


class _NodeReader:
    """Reads one recurrent node: its attributes, its constant inputs, its module."""

    def __init__(self, node, scope, name, folder, source, dtype, backend):
        from onnx import helper

        self.node, self.scope, self.name, self.folder = node, scope, name, folder
        self.op = node.op_type
        self.where = f"{source}: node {name!r} ({self.op})"
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self.inputs = list(node.input) + [""] * (len(_ROLES) - len(node.input))
        self.dtype = dtype
        self.backend = backend

    def fail(self, message, exc=ValueError):
        return exc(f"{self.where}: {message}")

    # ------------------------------------------------------------------ attributes
    def attributes(self):
        """(direction, D, layout, hidden_size or None, linear_before_reset, nonlinearity)."""
        a, op = self.attrs, self.op
        unknown = sorted(set(a) - _KNOWN_ATTRIBUTES - _OP_ATTRIBUTES[op])
        if unknown:
            raise self.fail(f"attribute {unknown[0]} is not part of the ONNX {op} operator "
                            f"that fastlstm reads")
        if "clip" in a:
            raise self.fail(f"attribute clip={a['clip']} is not supported (fastlstm does not "
                            f"clip the gates' inputs)")
        if int(a.get("input_forget", 0)) != 0:
            raise self.fail(f"attribute input_forget={a['input_forget']} is not supported "
                            f"(fastlstm computes input_forget=0)")
        for key in ("activation_alpha", "activation_beta"):
            if a.get(key):
                raise self.fail(f"attribute {key}={list(a[key])} is not supported (fastlstm "
                                f"computes the default activations only)")
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else str(direction)
        if direction not in _DIRECTIONS:
            raise self.fail(f"attribute direction={direction!r}: expected one of "
                            f"{', '.join(_DIRECTIONS)}")
        D = 2 if direction == "bidirectional" else 1
        layout = int(a.get("layout", 0))
        if layout not in (0, 1):
            raise self.fail(f"attribute layout={layout}: expected 0 or 1")
        lbr = int(a.get("linear_before_reset", 0))
        if lbr not in (0, 1):
            raise self.fail(f"attribute linear_before_reset={lbr}: expected 0 or 1")
        hidden = a.get("hidden_size")
        if hidden is not None and int(hidden) < 1:
            raise self.fail(f"attribute hidden_size={hidden}: expected a positive integer")
        return direction, D, layout, None if hidden is None else int(hidden), bool(lbr), \
            self._nonlinearity(D)

    def _nonlinearity(self, D):
        """RNN: "tanh" or "relu"; the others: None (after checking the default activations)."""
        raw = self.attrs.get("activations")
        if not raw:
            return "tanh" if self.op == "RNN" else None
        acts = tuple(x.decode() if isinstance(x, bytes) else str(x) for x in raw)
        lower = tuple(x.lower() for x in acts)
        default = _DEFAULT_ACTIVATIONS[self.op]
        k = len(default)
        refused = self.fail(f"attribute activations={list(acts)} is not supported (fastlstm "
                            + ("computes Tanh or Relu, the same in both directions)"
                               if self.op == "RNN" else
                               f"computes the default {[x.title() for x in default]} only)"))
        if len(lower) not in (k, k * D):
            raise refused
        if self.op == "RNN":
            if len(set(lower)) != 1 or lower[0] not in ("tanh", "relu"):
                raise refused
            return lower[0]
        if lower != default * (len(lower) // k):
            raise refused
        return None

    # ------------------------------------------------------------------ inputs
    def constant(self, role, required=False):
        """The value of input `role` if it is a constant, else None (absent or run-time; for
        a required input both are errors, as is a name that no graph defines)."""
        name = self.inputs[_ROLES.index(role)]
        if not name:
            if required:
                raise self.fail(f"input {role} is missing")
            return None
        try:
            constant = self.folder.is_constant(name, self.scope)
        except MissingValue as exc:
            raise self.fail(f"input {role} ({name!r}) is neither an initializer nor the "
                            f"output of a node (missing initializer {exc.args[0]!r}?)") \
                from None
        if not constant:
            if required:
                raise self.fail(f"input {role} ({name!r}) is a run-time value; fastlstm "
                                f"needs the weights as constants (initializers or values "
                                f"computed from them)")
            return None
        try:
            return self.folder.evaluate(name, self.scope)
        except Exception as exc:   # external data not loaded, a broken constant subgraph
            raise self.fail(f"input {role} ({name!r}) could not be computed "
                            f"({type(exc).__name__}: {exc})") from exc

    def is_runtime(self, role):
        """Whether optional input `role` is given by a run-time value other than a zero fill."""
        name = self.inputs[_ROLES.index(role)]
        if not name:
            return False
        try:
            if self.folder.is_constant(name, self.scope):
                return False
        except MissingValue:
            raise self.fail(f"input {role} ({name!r}) is neither a graph input, an "
                            f"initializer nor the output of a node") from None
        return not self.folder.is_zero_fill(name, self.scope)

    def float_array(self, role, value, dtype):
        if value.dtype.kind != "f":
            raise self.fail(f"input {role}: expected a float tensor, got dtype {value.dtype}",
                            TypeError)
        if dtype is None:
            if value.dtype not in (np.float32, np.float64):
                raise self.fail(f"input {role}: dtype {value.dtype} is not float32 or "
                                f"float64; pass dtype='float32' to convert", TypeError)
            return value
        return value.astype(dtype)

    def check_shape(self, role, value, expected, spelled):
        if value.shape != expected:
            raise self.fail(f"input {role}: expected shape {spelled} = {expected}, got "
                            f"{value.shape}")

    # ------------------------------------------------------------------ the layer
    def read(self):
        if self.op in CONTRIB_KINDS:
            from .onnx_quantized import read_dynamic_quantize_lstm

            return read_dynamic_quantize_lstm(self)
        from ..layers.modules import GRU, LSTM, RNN

        op, kind = self.op, KINDS[self.op]
        direction, D, layout, hidden, lbr, nonlinearity = self.attributes()
        if not self.inputs[0]:
            raise self.fail("input X is missing")
        G = GATES[kind]
        W = self.constant("W", required=True)
        R = self.constant("R", required=True)
        if R.ndim != 3:
            raise self.fail(f"input R: expected 3 dimensions [D, {G}*H, H], got shape "
                            f"{R.shape}")
        H = hidden if hidden is not None else R.shape[2]
        if H < 1:
            raise self.fail(f"input R: hidden size must be at least 1, got shape {R.shape}")
        W = self.float_array("W", W, self.dtype)
        dtype = W.dtype
        if W.ndim != 3 or W.shape[:2] != (D, G * H) or W.shape[2] < 1:
            raise self.fail(f"input W: expected shape [D, {G}*H, I] = ({D}, {G * H}, I) with "
                            f"I >= 1 (direction={direction}, hidden_size={H}), got "
                            f"{W.shape}")
        I = W.shape[2]
        R = self.float_array("R", R, dtype)
        self.check_shape("R", R, (D, G * H, H), f"[D, {G}*H, H]")
        B = self.constant("B")
        if B is not None:
            B = self.float_array("B", B, dtype)
            self.check_shape("B", B, (D, 2 * G * H), f"[D, {2 * G}*H]")
        P = self.constant("P") if op == "LSTM" else None
        if P is not None:
            P = self.float_array("P", P, dtype)
            self.check_shape("P", P, (D, 3 * H), "[D, 3*H]")
        lens, states, runtime = self.run_inputs(D, H, layout, dtype, op == "LSTM")

        options = dict(bias=B is not None, batch_first=layout == 1,
                       bidirectional=D == 2, reverse=direction == "reverse",
                       dtype=dtype, backend=self.backend)
        if op == "LSTM":
            module = LSTM(I, H, peepholes=P is not None, **options)
        elif op == "GRU":
            module = GRU(I, H, linear_before_reset=lbr, **options)
        else:
            module = RNN(I, H, nonlinearity=nonlinearity, **options)
        module.load_state_dict(onnx_to_torch_params(kind, W, R, B, P))
        module.eval()
        return self.layer(module, direction, layout, lens, states, runtime)

    def run_inputs(self, D, H, layout, dtype, has_cell):
        """(sequence_lens or None, {"initial_h": value or None[, "initial_c": ...]},
        runtime_inputs) of the node: its constant optional inputs (checked; zeros are None)
        and the names of those it reads from run-time values."""
        runtime = [r for r in ("sequence_lens", "initial_h", "initial_c")
                   if (r != "initial_c" or has_cell) and self.is_runtime(r)]
        lens = self.constant("sequence_lens")
        if lens is not None:
            if lens.dtype.kind not in "iu" or lens.ndim != 1:
                raise self.fail(f"input sequence_lens: expected a 1-D integer tensor, got "
                                f"dtype {lens.dtype} and shape {lens.shape}")
            if lens.size and lens.min() < 0:
                raise self.fail(f"input sequence_lens: negative length {lens.min()}")
        states = {}
        for role in ("initial_h", "initial_c") if has_cell else ("initial_h",):
            value = self.constant(role)
            if value is not None:
                value = self.float_array(role, value, dtype)
                d_and_h = None if value.ndim != 3 else \
                    (value.shape[0], value.shape[2]) if layout == 0 else value.shape[1:]
                if d_and_h != (D, H):
                    spelled = "[D, B, H]" if layout == 0 else "[B, D, H]"
                    raise self.fail(f"input {role}: expected shape {spelled} with D = {D}, "
                                    f"H = {H} (layout {layout}), got {value.shape}")
                if not np.any(value):
                    value = None    # zeros: the same as no initial state
            states[role] = value
        return lens, states, runtime

    def layer(self, module, direction, layout, lens, states, runtime):
        """The OnnxRecurrent of this node, computed by `module`."""
        return OnnxRecurrent(module, name=self.name, op_type=self.op, direction=direction,
                             layout=layout, inputs=self.node.input, outputs=self.node.output,
                             sequence_lens=lens, initial_h=states["initial_h"],
                             initial_c=states.get("initial_c"), runtime_inputs=runtime)


def _node_names(found):
    """The names of the recurrent nodes `found` (a list of NodeProto), in order: see the
    module docstring."""
    taken = {n.name for n in found if n.name}
    counters, names, used = {}, [], set()
    for node in found:
        if node.name:
            base = node.name
        else:
            k = counters.get(node.op_type, 0)
            counters[node.op_type] = k + 1
            base = f"{node.op_type}_{k}"
            while base in taken:
                base += "_"
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        names.append(name)
    return names


def from_onnx(path_or_model, *, dtype=None, backend="auto"):
    """Every LSTM, GRU and RNN node of an ONNX model (in its main graph and in subgraphs such as
    If branches) as a fastlstm layer, and every com.microsoft DynamicQuantizeLSTM node as an
    int8 fastlstm module (fastlstm.interop.onnx_quantized).

    path_or_model: a file path, the serialized bytes, or an onnx.ModelProto.
    dtype: None keeps the weights' dtype (float32 or float64); "float32" / "float64" converts
        (needed for float16 weights). A DynamicQuantizeLSTM node computes in float32:
        dtype="float64" is a ValueError there.
    backend: the fastlstm backend of every layer ("auto", "numpy", "cython", "numba").

    Returns {node name: OnnxRecurrent} in the model's order (see onnx_layer.OnnxRecurrent:
    calling it gives the node's Y, Y_h (, Y_c); its .module is the fastlstm LSTM / GRU / RNN
    with the weights in torch's layout). Node names: see the module docstring. A model without
    recurrent nodes gives {}.

    Errors: FileNotFoundError for a missing file; ValueError for a file that is not a usable
    ONNX model (garbage, truncated), a missing weight initializer, weights of the wrong shape,
    run-time weights, or an attribute fastlstm does not compute (clip, input_forget=1,
    activations other than the defaults and RNN's Relu, activation_alpha / activation_beta);
    TypeError for non-float weights. Each message names the file and the node.
    """
    if dtype is not None:
        dt = np.dtype(dtype) if isinstance(dtype, (str, type, np.dtype)) else None
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype: expected None, 'float32' or 'float64', got {dtype!r}")
        dtype = dt
    model, source = load_model(path_or_model)
    folder = ConstantFolder(model)
    found = [(node, scope) for node, scope in walk_nodes(model.graph)
             if (node.op_type in KINDS and node.domain in ("", "ai.onnx"))
             or (node.op_type in CONTRIB_KINDS
                 and node.domain == CONTRIB_KINDS[node.op_type][0])]
    names = _node_names([node for node, _ in found])
    return {name: _NodeReader(node, scope, name, folder, source, dtype, backend).read()
            for name, (node, scope) in zip(names, found)}
