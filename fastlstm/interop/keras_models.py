"""Keras 3 recurrent layers as fastlstm modules: fastlstm.from_keras (SPEC.md sections 5, 8).

    layers = fastlstm.from_keras(obj, *, dtype="float32", backend="auto", config=None,
                                 allow_masking=False)        # [KerasRecurrent, ...]
    out = layers[0](x)                  # x (B, T, I): exactly what the Keras layer returns
    out = layers[0](x, initial_state=[h0, c0], lengths=None)
    layers[0].module                    # the fastlstm.LSTM / GRU / RNN (batch_first=True)

`obj` may be
- a Keras layer: LSTM, GRU (reset_after True or False), SimpleRNN, keras.layers.RNN around
  one LSTMCell / GRUCell / SimpleRNNCell, or a Bidirectional wrapper of one of them
  (merge_mode "concat");
- a Keras model (Sequential, functional, or a subclassed keras.Model): its recurrent layers
  in the order of `model.layers`, nested models included; other layers (Dense, Embedding,
  Dropout, ...) are skipped;
- the path (str or os.PathLike) of a `.keras` file, a `.weights.h5` file or a legacy `.h5`
  full-model file. Files are read with zipfile, json and h5py only: Keras need not be
  installed. A weights-only file takes its architecture from `config=` (a model config dict,
  or a .json / .keras file), or infers it from the shapes when that is unambiguous (see
  fastlstm.interop.keras_files for what is inferred and what is assumed).

The result is a list, in model order, with one KerasRecurrent per recurrent layer (also for
a single layer). Keras objects are recognised by their classes' modules: keras is never
imported by fastlstm.

Weights (SPEC.md section 5), Keras -> torch layout:
    LSTM       kernel (I, 4H) [i f c o] -> weight_ih (4H, I) = kernel.T;  recurrent_kernel
               (H, 4H) -> weight_hh = recurrent_kernel.T;  bias (4H) -> bias_ih, bias_hh = 0
    GRU        gate blocks z, r, h -> r, z, n (the first two swapped), then transposed;
               reset_after=True: bias (2, 3H) = [input bias, recurrent bias] -> bias_ih,
               bias_hh, linear_before_reset=True; reset_after=False: bias (3H) -> bias_ih,
               bias_hh = 0, linear_before_reset=False (n = tanh(x W_in + b_in + (r*h) W_hn))
    SimpleRNN  kernel.T, recurrent_kernel.T, bias -> bias_ih, bias_hh = 0;
               activation "tanh" or "relu" -> nonlinearity
    use_bias=False -> bias=False.  Bidirectional: the backward layer's weights under
    torch's *_reverse names (bidirectional=True).
    go_backwards=True -> the module runs reverse=True (fastlstm's own option: y[t] is the
    state after reading x[t..T-1]); Keras returns its outputs in processing order, which is
    the module's y flipped in time: KerasRecurrent does that flip.

Options and what happens to them:
    accepted, same numbers   return_sequences, return_state, go_backwards, use_bias,
                             unroll (Keras's loop unrolling: the same math), the
                             initializers, regularizers, constraints, unit_forget_bias,
                             seed (training only)
    accepted, inference      dropout, recurrent_dropout: Keras applies them only when called
                             with training=True; fastlstm computes Keras's inference result
    refused (ValueError)     stateful=True, time_major=True (Keras 2), an activation other
                             than tanh (LSTM, GRU) or tanh / relu (SimpleRNN), a
                             recurrent_activation other than sigmoid, a Bidirectional
                             merge_mode other than "concat", a forward layer with
                             go_backwards=True inside a Bidirectional, a backward_layer that
                             differs from the forward one (class, units, activations,
                             use_bias, reset_after), keras.layers.RNN over a custom or
                             stacked cell, ConvLSTM and other recurrent layers, subclasses of
                             the Keras recurrent classes (their call may differ), and a model
                             with masking (see below)
Each refusal names the layer and the option.

Masking: a Masking layer or an Embedding with mask_zero=True makes Keras skip the masked
steps, which a plain call does not. A model containing one is a ValueError unless
allow_masking=True; then call each layer with `lengths` (B,) = the number of unmasked steps of
each row, which reproduces Keras's masked result when every row's mask is a prefix
(right padding: mask[b, t] = t < lengths[b]). Masks with holes cannot be expressed.

dtype: the modules' dtype, "float32" (Keras's default) or "float64"; the weights are
converted. Mixed-precision policies are ignored (fastlstm computes in `dtype`).
backend: passed to the modules ("auto", "numpy", "cython", "numba").
"""
import os

import numpy as np

from .keras_files import (RECURRENT_CLASSES, KerasFileError, LayerRecord,
                          read_keras_file)
from .onnx_graph import TORCH_FROM_ONNX, reorder_blocks

#: Keras cell classes that keras.layers.RNN(cell) may wrap, and the layer they equal
_CELL_CLASSES = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "SimpleRNN"}
#: gate blocks per kind
_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
#: the RNN-level keys of keras.layers.RNN's config (the rest are the cell's)
_RNN_KEYS = ("name", "return_sequences", "return_state", "go_backwards", "stateful",
             "unroll", "zero_output_for_mask", "time_major")
#: options (of _layer_options) that must agree between a Bidirectional's two layers
_SAME_IN_BOTH = ("kind", "units", "activation", "use_bias", "reset_after", "return_sequences",
                 "return_state")
_OPTIONS = ("dtype", "backend", "config", "allow_masking")


# ------------------------------------------------------------------------------ the wrapper


class KerasRecurrent:
    """One Keras recurrent layer, computed by a fastlstm module.

    Attributes:
        module: the fastlstm.LSTM / GRU / RNN (batch_first=True; bidirectional=True for a
            Bidirectional; reverse=True for go_backwards) holding Keras's weights in torch's
            layout (see the module docstring of fastlstm.interop.keras_models).
        name: the Keras layer's name.
        keras_class: "LSTM", "GRU", "SimpleRNN" or "Bidirectional".
        go_backwards, return_sequences, return_state: as the Keras layer's.
        zero_output_for_mask: Keras's, for calls with `lengths`.
        inferred: True when the architecture came from a weights-only file without config
            (options not stored in the weights took Keras's defaults).
    Any other attribute (state_dict, stream, to_onnx, hidden_size, ...) is the module's.
    """

    def __init__(self, module, *, name, keras_class, go_backwards=False,
                 return_sequences=False, return_state=False, zero_output_for_mask=False,
                 inferred=False):
        self.module = module
        self.name = name
        self.keras_class = keras_class
        self.go_backwards = bool(go_backwards)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.inferred = bool(inferred)

    def __getattr__(self, name):
        module = self.__dict__.get("module")
        if module is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return getattr(module, name)

    def __repr__(self):
        flags = "".join(f", {f}=True" for f in ("go_backwards", "return_sequences",
                                                 "return_state") if getattr(self, f))
        return (f"KerasRecurrent({self.name!r}, {self.keras_class}{flags}, "
                f"module={self.module!r})")

    @property
    def _is_lstm(self):
        return self.module.kind == "lstm"

    def _initial_state(self, initial_state, B):
        """Keras's initial_state list -> the module's hx: h0 (D, B, H) (and c0 for the LSTM).

        Keras order: [h, c] (LSTM) or [h] (GRU, SimpleRNN; a single array also accepted);
        for a Bidirectional the forward layer's states, then the backward layer's."""
        if initial_state is None:
            return None
        states = [initial_state] if isinstance(initial_state, np.ndarray) or \
            hasattr(initial_state, "shape") else list(initial_state)
        per_dir = 2 if self._is_lstm else 1
        D = self.module.num_directions
        if len(states) != per_dir * D:
            what = "[h, c]" if self._is_lstm else "[h]"
            raise ValueError(f"initial_state: layer {self.name!r} expects {per_dir * D} "
                             f"arrays ({what}{' for each direction' if D == 2 else ''}, "
                             f"each (B, {self.module.hidden_size})), got {len(states)}")
        arrs = []
        for i, s in enumerate(states):
            a = np.asarray(s.detach().cpu() if hasattr(s, "detach") else s)
            if a.dtype.kind not in "fiu":
                raise TypeError(f"initial_state[{i}]: expected a float array, got dtype "
                                f"{a.dtype}")
            a = a.astype(self.module.dtype, copy=False)
            if a.shape != (B, self.module.hidden_size):
                raise ValueError(f"initial_state[{i}]: expected shape (B, H) = "
                                 f"{(B, self.module.hidden_size)}, got {a.shape}")
            arrs.append(a)
        h0 = np.stack(arrs[0::per_dir])
        if self._is_lstm:
            return h0, np.stack(arrs[1::per_dir])
        return h0

    def __call__(self, x, initial_state=None, lengths=None):
        """What the Keras layer returns for x (B, T, I), as NumPy arrays of the module's dtype.

        x: (B, T, I), any float or integer array (converted to the module's dtype, as Keras
            casts its input).
        initial_state: None (zeros) or Keras's list of states, each (B, H): [h, c] for an
            LSTM, [h] for a GRU or SimpleRNN, forward states then backward states for a
            Bidirectional.
        lengths: None, or (B,) integers in [0, T]: Keras's result under a right-padded mask
            (mask[b, t] = t < lengths[b]), as a Masking layer or mask_zero=True gives.

        Returns: the output, (B, T, D*H) with return_sequences, else (B, D*H) (D = 2 for a
        Bidirectional, its two directions concatenated, forward first); with return_state a
        list [output, h, c] (LSTM), [output, h] (GRU, SimpleRNN), or for a Bidirectional
        [output, h_fw, c_fw, h_bw, c_bw] ([output, h_fw, h_bw]); each state (B, H).
        """
        if hasattr(x, "detach"):   # a torch tensor (Keras's torch backend)
            x = x.detach().cpu()
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"x: expected a float array, got dtype {x.dtype}")
        if x.ndim != 3:
            raise ValueError(f"x: expected shape (B, T, I) as Keras, got {x.shape}")
        x = x.astype(self.module.dtype, copy=False)
        B, T = x.shape[:2]
        hx = self._initial_state(initial_state, B)
        y, hx_n = self.module(x, hx, lengths)
        h_n, c_n = hx_n if self._is_lstm else (hx_n, None)
        valid = None if lengths is None else np.asarray(lengths).reshape(B) > 0
        bidirectional = self.module.bidirectional
        if self.return_sequences:
            if self.go_backwards:
                y = y[:, ::-1]
            elif lengths is not None and not self.zero_output_for_mask:
                H = self.module.hidden_size
                y = y.copy()
                _hold_last_output(y[..., :H], lengths)
            out = np.ascontiguousarray(y)
        else:
            out = np.concatenate(list(h_n), axis=-1) if bidirectional else h_n[0].copy()
            if valid is not None:   # Keras's last output of an all-masked row is 0, not h0
                out[~valid] = 0
        if not self.return_state:
            return out
        states = []
        for d in range(self.module.num_directions):
            states.append(h_n[d].copy())
            if c_n is not None:
                states.append(c_n[d].copy())
        return [out] + states


def _hold_last_output(y, lengths):
    """In place, y (B, T, H): y[b, t] = y[b, lengths[b] - 1] for t >= lengths[b] (0 where
    lengths[b] = 0): Keras's masked output with zero_output_for_mask=False."""
    T = y.shape[1]
    for b, n in enumerate(np.asarray(lengths).reshape(-1)):
        n = int(n)
        if n < T:
            y[b, n:] = y[b, n - 1] if n > 0 else 0


# ------------------------------------------------------------------------------ live objects


def _keras_mro(obj):
    """The classes of obj's type that come from Keras (keras, or tf_keras for Keras 2)."""
    return [c for c in type(obj).__mro__
            if (getattr(c, "__module__", "") or "").split(".")[0] in ("keras", "tf_keras")]


def _is_keras_model(obj):
    return any(c.__name__ in ("Model", "Functional", "Sequential") for c in _keras_mro(obj))


def _class_name(layer):
    """The Keras class name of a live layer; a user subclass keeps its own name (and is
    refused if it is a recurrent layer)."""
    return type(layer).__name__


def _variable_to_numpy(v):
    """A Keras variable's value as a new ndarray (read through the backend's tensor: NumPy 2
    warns about Keras's own Variable.__array__)."""
    value = getattr(v, "value", v)
    if callable(value):   # tf_keras: value() is a method
        value = value()
    if hasattr(value, "detach"):   # torch
        return value.detach().cpu().numpy().copy()
    if hasattr(value, "numpy"):    # TensorFlow
        return np.array(value.numpy())
    return np.array(value)         # JAX, NumPy


def _live_weights(layer, where):
    try:
        return [_variable_to_numpy(v) for v in layer.weights]
    except Exception as exc:
        raise ValueError(f"{where}: cannot read the weights ({type(exc).__name__}: "
                         f"{exc})") from None


def _attribute_config(layer):
    """A recurrent layer's config read from its attributes, for layers whose get_config()
    fails (e.g. a lambda activation): the keys _layer_options reads."""
    if type(layer).__name__ == "Bidirectional":
        return {"name": layer.name, "merge_mode": getattr(layer, "merge_mode", None),
                "layer": {"class_name": type(layer.forward_layer).__name__,
                          "config": _attribute_config(layer.forward_layer)},
                "backward_layer": {"class_name": type(layer.backward_layer).__name__,
                                   "config": _attribute_config(layer.backward_layer)}}
    cell = getattr(layer, "cell", layer)
    cfg = {"name": getattr(layer, "name", "?")}
    for key in ("units", "use_bias", "reset_after"):
        if hasattr(cell, key):
            cfg[key] = getattr(cell, key)
    for key in ("activation", "recurrent_activation"):
        if hasattr(cell, key):
            fn = getattr(cell, key)
            cfg[key] = getattr(fn, "__name__", repr(fn))
    for key in ("go_backwards", "return_sequences", "return_state", "stateful", "unroll",
                "zero_output_for_mask"):
        if hasattr(layer, key):
            cfg[key] = getattr(layer, key)
    if type(layer).__name__ == "RNN":
        cfg = {k: v for k, v in cfg.items() if k in _RNN_KEYS}
        cfg["cell"] = {"class_name": type(cell).__name__, "config": _attribute_config(cell)}
    return cfg


def _live_record(layer, parent=""):
    """A LayerRecord for a live Keras layer (or nested model)."""
    name = getattr(layer, "name", type(layer).__name__)
    where = f"{parent}/{name}" if parent else str(name)
    known = type(layer).__name__ in RECURRENT_CLASSES + ("Bidirectional",) and \
        type(layer).__module__.split(".")[0] in ("keras", "tf_keras")
    try:
        config = layer.get_config()
    except Exception:   # e.g. a lambda activation cannot be serialized
        config = _attribute_config(layer) if known else {}
    if not isinstance(config, dict):
        config = {}
    config.setdefault("name", name)
    rec = LayerRecord(_class_name(layer), config, where=where)
    if _is_keras_model(layer) and isinstance(getattr(layer, "layers", None), list):
        rec.children = [_live_record(sub, where) for sub in layer.layers]
        return rec
    if known and rec.class_name in RECURRENT_CLASSES:
        rec.weights = _live_weights(layer, where)
    elif known and rec.class_name == "Bidirectional":
        rec.weights = {"forward": _live_weights(layer.forward_layer, where + " (forward)"),
                       "backward": _live_weights(layer.backward_layer, where + " (backward)")}
    return rec


# ------------------------------------------------------------------------------ checks


def _activation_name(value):
    """Keras's serialized activation ("tanh", or a dict naming a function) -> its name."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        inner = value.get("config")
        if isinstance(inner, str):
            return inner
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            return inner["name"]
        if isinstance(value.get("class_name"), str) and value["class_name"] != "function":
            return value["class_name"]
    return repr(value)


def _looks_recurrent(class_name, config):
    """True for layers that run over time (so that skipping them would be wrong)."""
    if any(k in class_name for k in ("LSTM", "GRU", "RNN")):
        return True
    if not isinstance(config, dict):
        return False
    if any(k in config for k in ("cell", "return_sequences", "go_backwards")):
        return True
    inner = config.get("layer")
    return isinstance(inner, dict) and _looks_recurrent(str(inner.get("class_name", "")),
                                                        inner.get("config", {}))


def _refuse(where, name, cls, message):
    raise ValueError(f"{where}: layer {name!r} ({cls}): {message}")


def _normalize(entry_class, config, where):
    """(kind, config) of a recurrent layer: kind "LSTM" / "GRU" / "SimpleRNN"; for
    keras.layers.RNN(cell) the cell's config merged with the RNN's options."""
    name = config.get("name", "?")
    if entry_class in _GATES:
        return entry_class, config
    if entry_class == "RNN":
        cell = config.get("cell")
        cell_class = cell.get("class_name") if isinstance(cell, dict) else None
        if cell_class not in _CELL_CLASSES or not isinstance(cell.get("config"), dict):
            _refuse(where, name, "RNN", f"cell {cell_class or type(cell).__name__!r} is not "
                    f"supported; fastlstm computes RNN(cell) for one LSTMCell, GRUCell or "
                    f"SimpleRNNCell only")
        merged = dict(cell["config"])
        merged.update({k: config[k] for k in _RNN_KEYS if k in config})
        return _CELL_CLASSES[cell_class], merged
    _refuse(where, name, entry_class, "not a recurrent layer fastlstm computes (LSTM, GRU, "
            "SimpleRNN, RNN(LSTMCell/GRUCell/SimpleRNNCell), Bidirectional of one of these)")


def _layer_options(kind, config, where):
    """Checked options of one LSTM / GRU / SimpleRNN config -> dict (see the module doc)."""
    name = config.get("name", "?")
    units = config.get("units")
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        _refuse(where, name, kind, f"units: expected a positive integer, got {units!r}")
    for opt in ("stateful", "time_major"):
        if config.get(opt):
            _refuse(where, name, kind, f"{opt}=True is not supported by fastlstm "
                    f"(use {opt}=False)")
    activation = _activation_name(config.get("activation", "tanh"))
    allowed = ("tanh", "relu") if kind == "SimpleRNN" else ("tanh",)
    if activation not in allowed:
        _refuse(where, name, kind, f"activation={activation!r} is not supported (expected "
                f"{' or '.join(map(repr, allowed))})")
    if kind != "SimpleRNN":
        rec_act = _activation_name(config.get("recurrent_activation", "sigmoid"))
        if rec_act != "sigmoid":
            _refuse(where, name, kind, f"recurrent_activation={rec_act!r} is not supported "
                    f"(expected 'sigmoid')")
    opts = dict(kind=kind, name=name, units=units, activation=activation,
                use_bias=bool(config.get("use_bias", True)),
                reset_after=bool(config.get("reset_after", True)),
                go_backwards=bool(config.get("go_backwards", False)),
                return_sequences=bool(config.get("return_sequences", False)),
                return_state=bool(config.get("return_state", False)),
                zero_output_for_mask=bool(config.get("zero_output_for_mask", False)))
    return opts


def _check_weights(opts, weights, where, direction=""):
    """[kernel, recurrent_kernel, bias] checked against opts -> (kernel, rec, bias or None)."""
    kind, H, name = opts["kind"], opts["units"], opts["name"]
    label = f"{kind}{', ' + direction if direction else ''}"
    if not isinstance(weights, list) or not weights:
        _refuse(where, name, label, "no weights (a layer that was never built? call it on an "
                "input, or load its weights, first)")
    n = 3 if opts["use_bias"] else 2
    if len(weights) != n:
        _refuse(where, name, label, f"expected {n} weight arrays (kernel, recurrent_kernel"
                f"{', bias' if n == 3 else ''}; use_bias={opts['use_bias']}), got "
                f"{len(weights)} with shapes {[np.shape(w) for w in weights]}")
    G = _GATES[kind]
    kernel, rec = weights[0], weights[1]
    if kernel.ndim != 2 or kernel.shape[1] != G * H or kernel.shape[0] < 1:
        _refuse(where, name, label, f"kernel: expected shape (input_size, {G} * units) = "
                f"(I, {G * H}), got {kernel.shape}")
    if rec.shape != (H, G * H):
        _refuse(where, name, label, f"recurrent_kernel: expected shape (units, {G} * units) "
                f"= {(H, G * H)}, got {rec.shape}")
    bias = None
    if n == 3:
        bias = weights[2]
        expected = (2, 3 * H) if kind == "GRU" and opts["reset_after"] else (G * H,)
        if bias.shape != expected:
            extra = f" (reset_after={opts['reset_after']})" if kind == "GRU" else ""
            _refuse(where, name, label, f"bias: expected shape {expected}{extra}, got "
                    f"{bias.shape}")
    return kernel, rec, bias


def _zrh_to_rzn(a):
    """Rows in Keras's GRU block order z, r, h (ONNX's too) -> torch's r, z, n (axis 0)."""
    return reorder_blocks(a, TORCH_FROM_ONNX["gru"])


def _torch_params(opts, kernel, rec, bias, suffix):
    """state_dict entries (torch names with `suffix`) for one direction."""
    w_ih, w_hh = kernel.T, rec.T
    b_ih = b_hh = None
    if bias is not None:
        if opts["kind"] == "GRU" and opts["reset_after"]:
            b_ih, b_hh = bias[0], bias[1]
        else:
            b_ih, b_hh = bias, np.zeros_like(bias)
    if opts["kind"] == "GRU":
        w_ih, w_hh = _zrh_to_rzn(w_ih), _zrh_to_rzn(w_hh)
        if bias is not None:
            b_ih, b_hh = _zrh_to_rzn(b_ih), _zrh_to_rzn(b_hh)
    out = {f"weight_ih_l0{suffix}": w_ih, f"weight_hh_l0{suffix}": w_hh}
    if bias is not None:
        out[f"bias_ih_l0{suffix}"] = b_ih
        out[f"bias_hh_l0{suffix}"] = b_hh
    return out


def _build_module(opts, input_size, params, *, bidirectional, dtype, backend):
    from ..layers.modules import GRU, LSTM, RNN

    common = dict(batch_first=True, bidirectional=bidirectional, dtype=dtype, seed=0,
                  backend=backend)
    if not bidirectional:
        common["reverse"] = opts["go_backwards"]
    H, bias = opts["units"], opts["use_bias"]
    if opts["kind"] == "LSTM":
        module = LSTM(input_size, H, bias=bias, **common)
    elif opts["kind"] == "GRU":
        module = GRU(input_size, H, bias=bias, linear_before_reset=opts["reset_after"],
                     **common)
    else:
        module = RNN(input_size, H, nonlinearity=opts["activation"], bias=bias, **common)
    module.load_state_dict(params)
    return module.eval()


def _sub_entry(config, key, where, name):
    entry = config.get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) \
            or not isinstance(entry.get("config"), dict):
        _refuse(where, name, "Bidirectional", f"{key}: expected a serialized recurrent "
                f"layer, got {entry!r:.100}")
    return entry["class_name"], entry["config"]


def _convert(rec, dtype, backend):
    """A recurrent LayerRecord -> KerasRecurrent (every check before any module is built)."""
    where, cfg = rec.where, rec.config
    name = cfg.get("name", "?")
    if rec.class_name == "Bidirectional":
        merge_mode = cfg.get("merge_mode", "concat")
        if merge_mode != "concat":
            _refuse(where, name, "Bidirectional", f"merge_mode={merge_mode!r} is not "
                    f"supported (expected 'concat')")
        fw_class, fw_cfg = _sub_entry(cfg, "layer", where, name)
        fw_kind, fw_cfg = _normalize(fw_class, fw_cfg, where)
        fw = _layer_options(fw_kind, fw_cfg, where)
        if "backward_layer" in cfg and cfg["backward_layer"] is not None:
            bw_class, bw_cfg = _sub_entry(cfg, "backward_layer", where, name)
            bw_kind, bw_cfg = _normalize(bw_class, bw_cfg, where)
            bw = _layer_options(bw_kind, bw_cfg, where)
        else:   # Keras 2 omits backward_layer when it is the forward layer's copy
            bw = dict(fw, go_backwards=not fw["go_backwards"])
        if fw["go_backwards"] or not bw["go_backwards"]:
            _refuse(where, name, "Bidirectional", f"go_backwards: expected False for the "
                    f"forward layer and True for the backward layer, got "
                    f"{fw['go_backwards']} and {bw['go_backwards']}")
        diff = [k for k in _SAME_IN_BOTH if fw[k] != bw[k]
                and not (k == "reset_after" and fw["kind"] != "GRU")]
        if diff:
            _refuse(where, name, "Bidirectional", "backward_layer differs from the forward "
                    "layer in " + ", ".join(f"{k} ({fw[k]!r} vs {bw[k]!r})" for k in diff)
                    + "; fastlstm runs both directions with one configuration")
        if not isinstance(rec.weights, dict):
            _refuse(where, name, "Bidirectional", "no weights found")
        _raise_weights_error(rec)
        k_f, r_f, b_f = _check_weights(fw, rec.weights.get("forward"), where, "forward")
        k_b, r_b, b_b = _check_weights(bw, rec.weights.get("backward"), where, "backward")
        if k_f.shape != k_b.shape:
            _refuse(where, name, "Bidirectional", f"the forward kernel {k_f.shape} and the "
                    f"backward kernel {k_b.shape} differ in shape")
        params = {**_torch_params(fw, k_f, r_f, b_f, ""),
                  **_torch_params(bw, k_b, r_b, b_b, "_reverse")}
        module = _build_module(fw, k_f.shape[0], params, bidirectional=True, dtype=dtype,
                               backend=backend)
        return KerasRecurrent(module, name=name, keras_class="Bidirectional",
                              return_sequences=fw["return_sequences"],
                              return_state=fw["return_state"],
                              zero_output_for_mask=fw["zero_output_for_mask"],
                              inferred=rec.inferred)

    kind, ncfg = _normalize(rec.class_name, cfg, where)
    opts = _layer_options(kind, ncfg, where)
    _raise_weights_error(rec)
    kernel, rec_k, bias = _check_weights(opts, rec.weights, where)
    module = _build_module(opts, kernel.shape[0], _torch_params(opts, kernel, rec_k, bias, ""),
                           bidirectional=False, dtype=dtype, backend=backend)
    return KerasRecurrent(module, name=name, keras_class=kind,
                          go_backwards=opts["go_backwards"],
                          return_sequences=opts["return_sequences"],
                          return_state=opts["return_state"],
                          zero_output_for_mask=opts["zero_output_for_mask"],
                          inferred=rec.inferred)


def _raise_weights_error(rec):
    error = rec.extra.get("weights_error")
    if error is not None:
        raise error


# ------------------------------------------------------------------------------ models


def _flatten(records):
    for rec in records:
        if rec.children is not None:
            yield from _flatten(rec.children)
        else:
            yield rec


def _masking_layers(records):
    out = []
    for rec in _flatten(records):
        cfg = rec.config if isinstance(rec.config, dict) else {}
        if rec.class_name == "Masking" or (rec.class_name == "Embedding"
                                           and cfg.get("mask_zero")):
            out.append(f"{cfg.get('name', '?')} ({rec.class_name})")
    return out


def _check_options(options):
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"from_keras: unexpected keyword argument(s) {unknown}; expected "
                        f"{', '.join(_OPTIONS)}")
    dtype = options.get("dtype", "float32")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    backend = options.get("backend", "auto")
    from .._backends import available_backends

    if not isinstance(backend, str) or backend not in ("auto",) + available_backends():
        raise ValueError(f"backend: unknown or unavailable backend {backend!r}; available: "
                         f"{', '.join(map(repr, available_backends()))} or 'auto'")
    allow_masking = options.get("allow_masking", False)
    if not isinstance(allow_masking, (bool, np.bool_)):
        raise TypeError(f"allow_masking: expected True or False, got {allow_masking!r}")
    return dt, backend, bool(allow_masking), options.get("config")


def from_keras(obj, **options):
    """The recurrent layers of a Keras layer, model or model file, as KerasRecurrent objects.

    obj: a Keras LSTM / GRU / SimpleRNN / RNN(cell) / Bidirectional layer, a Keras model, or
        the path (str or os.PathLike) of a .keras, .weights.h5 or legacy .h5 file.
    options (keywords only):
        dtype="float32": the modules' dtype ("float32" or "float64").
        backend="auto": the modules' backend.
        config=None: the architecture of a weights-only file (a model config dict, or the path
            of a .json / .keras file); only with a weights-only path.
        allow_masking=False: convert a model that contains masking (see the module doc).

    Returns a list of KerasRecurrent, in model order (one element for a single layer); each
    is called like the Keras layer, layer(x) with x (B, T, I). A ValueError names the layer
    and option that fastlstm cannot compute; a file that is not what it claims is a
    ValueError naming the path; anything else is a TypeError naming `obj`.
    """
    dtype, backend, allow_masking, config = _check_options(options)
    if isinstance(obj, (str, os.PathLike)):
        records = read_keras_file(obj, config=config)
        source = os.fspath(obj)
    else:
        if config is not None:
            raise TypeError("config: only for a weights-only file path; a Keras object "
                            "carries its own config")
        if not _keras_mro(obj):
            raise TypeError(f"obj: expected a Keras layer or model, or the path of a .keras "
                            f".weights.h5 or .h5 file, got {type(obj).__name__}")
        if _is_keras_model(obj):
            if not isinstance(getattr(obj, "layers", None), list):
                raise TypeError(f"obj: Keras model {type(obj).__name__} has no layer list")
            records = [_live_record(layer) for layer in obj.layers]
        else:
            rec = _live_record(obj)
            cls = rec.class_name
            if cls not in RECURRENT_CLASSES + ("Bidirectional",) \
                    and not _looks_recurrent(cls, rec.config):
                raise TypeError(f"obj: expected a Keras LSTM, GRU, SimpleRNN, RNN or "
                                f"Bidirectional layer or a Keras model, got "
                                f"{type(obj).__module__}.{type(obj).__name__}")
            records = [rec]
        source = f"Keras {type(obj).__name__} {getattr(obj, 'name', '')!r}"

    masking = _masking_layers(records)
    if masking and not allow_masking:
        raise ValueError(f"{source}: the model masks its input ({', '.join(masking)}), which "
                         f"changes Keras's results; pass allow_masking=True and call each "
                         f"layer with lengths= (the number of unmasked steps of each row; "
                         f"right-padded masks only)")
    recurrent = []
    for rec in _flatten(records):
        name = rec.config.get("name", "?") if isinstance(rec.config, dict) else "?"
        if rec.class_name in RECURRENT_CLASSES + ("Bidirectional",):
            if rec.weights is None and "weights_error" not in rec.extra:
                _refuse(rec.where, name, rec.class_name, "a subclass of a Keras recurrent "
                        "layer is not supported (its call may differ)")
            recurrent.append(_convert(rec, dtype, backend))
        elif _looks_recurrent(rec.class_name, rec.config):
            _refuse(rec.where, name, rec.class_name, "a recurrent layer fastlstm does not "
                    "compute (supported: LSTM, GRU, SimpleRNN, RNN(LSTMCell/GRUCell/"
                    "SimpleRNNCell), Bidirectional(concat) of one of these)")
    if not recurrent:
        raise ValueError(f"{source}: no recurrent layer (LSTM, GRU, SimpleRNN, "
                         f"Bidirectional) found")
    return recurrent


__all__ = ["KerasRecurrent", "KerasFileError", "from_keras"]
