"""Helpers shared by fastlstm's ONNX import and export (imports onnx only inside functions).

- Gate layouts (SPEC.md section 5): ONNX stacks the LSTM gates as i, o, f, c (torch: i, f, g, o),
  the GRU gates as z, r, h (torch: r, z, n) and the peepholes as i, o, f (fastlstm: p_i, p_f,
  p_o); B is [Wb, Rb] on one axis. `onnx_to_torch_params` and `torch_to_onnx_params` convert
  one layer (both directions) between the two.
- Reading a model: `load_model` (a path, bytes or an onnx.ModelProto; a clear ValueError or
  TypeError for anything that is not a usable ONNX model), `Scope` (the names visible in one
  graph and the graphs around it, for nodes inside `If` / `Loop` / `Scan` bodies) and
  `ConstantFolder`, which tells whether a value is a constant (an initializer, or the output of
  nodes that read only constants: Constant, Unsqueeze, Concat, Slice, ... as exporters emit
  them) and computes it with onnx's own ReferenceEvaluator on the extracted nodes.
"""
import os

import numpy as np

#: ONNX kind (op_type) -> fastlstm kind, and gate blocks per weight matrix
KINDS = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}

#: for each fastlstm kind, the ONNX block that holds torch block k (torch order <- ONNX order)
#: LSTM: torch i, f, g, o <- ONNX i, o, f, c; GRU: torch r, z, n <- ONNX z, r, h
TORCH_FROM_ONNX = {"lstm": (0, 2, 3, 1), "gru": (1, 0, 2), "rnn": (0,)}
#: and the inverse: the torch block that holds ONNX block k
ONNX_FROM_TORCH = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}
#: peepholes: fastlstm rows p_i, p_f, p_o <-> ONNX P blocks i, o, f (its own inverse)
PEEPHOLE_ORDER = (0, 2, 1)

#: ops whose outputs are not a function of their inputs: never folded into constants
NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                    "Multinomial", "Bernoulli"}
#: ops that move or copy the data of their first input (a zero fill stays a zero fill)
DATA_MOVERS = {"Identity", "Cast", "CastLike", "Reshape", "Slice", "Squeeze", "Unsqueeze",
               "Transpose", "Expand", "Tile", "Flatten", "Gather", "GatherElements", "Split"}


def reorder_blocks(a, order):
    """The len(order) equal blocks of `a` along axis 0, in `order` (a new array)."""
    parts = np.split(np.asarray(a), len(order), axis=0)
    return np.concatenate([parts[k] for k in order], axis=0)


# ------------------------------------------------------------------------------ weight layouts


def onnx_to_torch_params(kind, W, R, B=None, P=None, layer=0):
    """One ONNX node's weights -> {torch state_dict key: array} for layer `layer`.

    W [D, G*H, I], R [D, G*H, H], B [D, 2*G*H] (or None: no bias keys), P [D, 3*H] (LSTM, or
    None: no peephole keys); D = 1 or 2 (direction 1 gets torch's "_reverse" suffix).
    Keys: weight_ih_l{layer}{sfx} (G*H, I), weight_hh (G*H, H), bias_ih, bias_hh (G*H,),
    weight_peephole (3, H) with rows p_i, p_f, p_o.
    """
    order = TORCH_FROM_ONNX[kind]
    D, GH = W.shape[0], W.shape[1]
    out = {}
    for d in range(D):
        sfx = f"l{layer}" + ("_reverse" if d == 1 else "")
        out[f"weight_ih_{sfx}"] = reorder_blocks(W[d], order)
        out[f"weight_hh_{sfx}"] = reorder_blocks(R[d], order)
        if B is not None:
            out[f"bias_ih_{sfx}"] = reorder_blocks(B[d, :GH], order)
            out[f"bias_hh_{sfx}"] = reorder_blocks(B[d, GH:], order)
        if P is not None:
            out[f"weight_peephole_{sfx}"] = reorder_blocks(P[d], PEEPHOLE_ORDER) \
                .reshape(3, -1)
    return out


def torch_to_onnx_params(kind, params, layer, D, bias, peepholes):
    """Layer `layer` of a stack's params (torch keys) -> (W, R, B, P) in ONNX layout:
    W [D, G*H, I], R [D, G*H, H], B [D, 2*G*H] or None (bias=False), P [D, 3*H] or None."""
    order = ONNX_FROM_TORCH[kind]
    sfxs = [f"l{layer}" + ("_reverse" if d == 1 else "") for d in range(D)]
    W = np.stack([reorder_blocks(params[f"weight_ih_{s}"], order) for s in sfxs])
    R = np.stack([reorder_blocks(params[f"weight_hh_{s}"], order) for s in sfxs])
    B = P = None
    if bias:
        B = np.stack([np.concatenate([reorder_blocks(params[f"bias_ih_{s}"], order),
                                      reorder_blocks(params[f"bias_hh_{s}"], order)])
                      for s in sfxs])
    if peepholes:
        P = np.stack([reorder_blocks(params[f"weight_peephole_{s}"], PEEPHOLE_ORDER).ravel()
                      for s in sfxs])
    return W, R, B, P


# ------------------------------------------------------------------------------ reading models


def import_onnx(caller):
    """The onnx package, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"{caller} needs the onnx package: pip install onnx (or fastlstm's "
                          f"extra: pip install 'fastlstm[onnx]')") from exc
    return onnx


def load_model(path_or_model):
    """(onnx.ModelProto, source) from a path (str or os.PathLike), serialized bytes or a
    ModelProto; `source` names it in error messages (the path, "<bytes>" or "<ModelProto>").

    A missing file is FileNotFoundError; anything that does not parse as an ONNX model (garbage,
    a truncated file), has no graph or no nodes, or declares no standard ONNX opset is a
    ValueError naming the source; any other type of argument a TypeError.
    """
    onnx = import_onnx("fastlstm.from_onnx")

    if isinstance(path_or_model, onnx.ModelProto):
        model, source = path_or_model, "<ModelProto>"
    elif isinstance(path_or_model, (bytes, bytearray, memoryview)):
        source = "<bytes>"
        try:
            model = onnx.load_from_string(bytes(path_or_model))
        except Exception as exc:
            raise ValueError(f"{source}: not a valid ONNX model ({type(exc).__name__}: "
                             f"{exc})") from exc
    elif isinstance(path_or_model, (str, os.PathLike)):
        source = os.fspath(path_or_model)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"{source}: no such file")
        try:
            model = onnx.load(source)
        except Exception as exc:   # protobuf DecodeError, missing external data, ...
            raise ValueError(f"{source}: not a valid ONNX model ({type(exc).__name__}: "
                             f"{exc})") from exc
    else:
        raise TypeError(f"path_or_model: expected a file path, bytes or an onnx.ModelProto, "
                        f"got {type(path_or_model).__name__}")
    if not isinstance(model, onnx.ModelProto) or not model.HasField("graph") \
            or len(model.graph.node) == 0:
        raise ValueError(f"{source}: not a valid ONNX model (no graph, or a graph without "
                         f"nodes: truncated or not an ONNX file?)")
    if not any(op.domain in ("", "ai.onnx") for op in model.opset_import):
        raise ValueError(f"{source}: not a valid ONNX model (it declares no standard ONNX "
                         f"opset: truncated or not an ONNX file?)")
    return model, source


class Scope:
    """The names one graph defines (initializers, graph inputs, node outputs), with the scope
    of the graph around it (`parent`, None for the main graph): a node inside an `If` branch
    may read any name of the graphs that enclose it."""

    def __init__(self, graph, parent=None):
        self.graph = graph
        self.parent = parent
        self.initializers = {t.name: t for t in graph.initializer}
        # an input that also has an initializer (older exporters list every weight as an
        # input) keeps the initializer as its value: a constant
        self.inputs = {v.name for v in graph.input} - set(self.initializers)
        self.producers = {}
        for node in graph.node:
            for name in node.output:
                if name:
                    self.producers[name] = node

    def find(self, name):
        """("initializer", TensorProto, scope), ("node", NodeProto, scope), ("input", None,
        scope) for a run-time graph input, or None when no enclosing graph defines `name`."""
        scope = self
        while scope is not None:
            if name in scope.initializers:
                return "initializer", scope.initializers[name], scope
            if name in scope.producers:
                return "node", scope.producers[name], scope
            if name in scope.inputs:
                return "input", None, scope
            scope = scope.parent
        return None


def walk_nodes(graph, scope=None):
    """Yield (node, scope) for every node of `graph` and of the graphs inside its nodes'
    attributes (If branches, Loop and Scan bodies), depth first, in graph order: a node's
    subgraphs come right after the node itself, in the order of its attributes."""
    import onnx

    scope = Scope(graph, scope)
    for node in graph.node:
        yield node, scope
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from walk_nodes(attr.g, scope)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from walk_nodes(g, scope)


class MissingValue(LookupError):
    """A name that no enclosing graph defines (a missing initializer)."""


class ConstantFolder:
    """Constant values of one model, computed with onnx.reference.ReferenceEvaluator."""

    def __init__(self, model):
        self.model = model

    def _collect(self, name, scope, nodes, inits, seen):
        """Add what computes `name` to `nodes` (in an order that computes it) and `inits`;
        False when it depends on a run-time value. Raises MissingValue for an unknown name."""
        import onnx

        found = scope.find(name)
        if found is None:
            raise MissingValue(name)
        what, obj, owner = found
        if what == "initializer":
            inits[name] = obj
            return True
        if what == "input":
            return False
        node = obj
        if id(node) in seen:
            return True
        if node.op_type in NONDETERMINISTIC or node.domain not in ("", "ai.onnx") or any(
                a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                for a in node.attribute):
            return False
        for inp in node.input:
            if inp and not self._collect(inp, owner, nodes, inits, seen):
                return False
        seen.add(id(node))
        nodes.append(node)
        return True

    def is_constant(self, name, scope):
        """Whether `name` is a constant (MissingValue if no graph defines it)."""
        return self._collect(name, scope, [], {}, set())

    def evaluate(self, name, scope):
        """The value of the constant `name` as a NumPy array (an initializer directly, a
        computed value by running its nodes in onnx's ReferenceEvaluator)."""
        from onnx import helper, numpy_helper
        from onnx.reference import ReferenceEvaluator

        nodes, inits = [], {}
        if not self._collect(name, scope, nodes, inits, set()):
            raise ValueError(f"{name!r} is not a constant")
        if not nodes:
            return numpy_helper.to_array(inits[name])
        graph = helper.make_graph(nodes, "fastlstm_constant", [],
                                  [helper.make_empty_tensor_value_info(name)],
                                  initializer=list(inits.values()))
        sub = helper.make_model(graph, opset_imports=list(self.model.opset_import),
                                ir_version=self.model.ir_version)
        sub.functions.extend(self.model.functions)
        (value,) = ReferenceEvaluator(sub).run(None, {})
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{name!r} evaluates to a {type(value).__name__}, not a tensor")
        return value

    def is_zero_fill(self, name, scope):
        """Whether the run-time value `name` is all zeros whatever the graph's inputs: a
        ConstantOfShape with value 0 (its default), moved or broadcast by Expand, Slice,
        Reshape, Unsqueeze, Transpose, Cast, ... or concatenated with other zero fills, or a
        constant of zeros. This is how exporters write "zero initial state of the input's
        batch size" (torch: ConstantOfShape of a shape computed from X)."""
        from onnx import numpy_helper

        try:
            if self.is_constant(name, scope):
                value = self.evaluate(name, scope)
                return value.size > 0 and not np.any(value)
        except MissingValue:
            return False
        found = scope.find(name)
        if found is None or found[0] != "node":
            return False
        node, owner = found[1], found[2]
        if node.op_type == "ConstantOfShape":
            for attr in node.attribute:
                if attr.name == "value":
                    return not np.any(numpy_helper.to_array(attr.t))
            return True     # the default value is a float32 0
        if node.op_type in DATA_MOVERS and node.input and node.input[0]:
            return self.is_zero_fill(node.input[0], owner)
        if node.op_type == "Concat":
            return all(i and self.is_zero_fill(i, owner) for i in node.input)
        return False
