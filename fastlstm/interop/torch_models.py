"""fastlstm <-> PyTorch: torch.nn.LSTM / GRU / RNN, their cells, and their state_dicts.

    m = fastlstm.from_torch(obj, *, dtype=None, backend="auto", seed=None, prefix="",
                            mode=None, input_size=None, hidden_size=None, num_layers=None,
                            bias=None, batch_first=None, dropout=None, bidirectional=None,
                            proj_size=None, nonlinearity=None)
    tm = m.to_torch()            # = fastlstm.interop.torch_models.to_torch(m)

What `obj` may be, and what comes back (a fastlstm.LSTM, GRU or RNN with a copy of the
weights; the parameters keep torch's names and layouts, SPEC.md section 5, so nothing is
reordered):

- torch.nn.LSTM / GRU / RNN (any options): the same configuration (input_size, hidden_size,
  num_layers, bias, batch_first, dropout, bidirectional, proj_size, nonlinearity) and the
  module's training / eval mode.
- torch.nn.LSTMCell / GRUCell / RNNCell: a one-layer, unidirectional module whose
  weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0 are the cell's weight_ih, weight_hh,
  bias_ih, bias_hh. The cell's step `h', c' = cell(x_t, (h, c))` with x_t (B, I), h, c (B, H)
  is one step of the module:
      y, (h_n, c_n) = m(x_t[None], (h[None], c[None]))    # y (1, B, H); h_n, c_n (1, B, H)
  (GRU, RNN: `y, h_n = m(x_t[None], h[None])`), or, with the state carried from call to call,
      s = m.stream(batch_size=B); h_1 = s.step(x_1); h_2 = s.step(x_2)   # (B, I) -> (B, H)
- a state_dict of either (a mapping of torch's names to tensors or NumPy arrays, e.g.
  `torch_module.state_dict()`, or one loaded with torch.load). The keys and shapes decide the
  kind and the sizes:
      weight_ih_l0 (G*H, I) gives input_size = I; weight_hh_l0 (G*H, H) gives hidden_size = H
      and G = 4 (LSTM), 3 (GRU) or 1 (RNN); a weight_hr_l0 (P, H) makes it an LSTM with
      proj_size = P (weight_hh_l0 is then (4H, P)); num_layers = 1 + the largest l in
      *_l{l}; bidirectional when *_reverse keys are there; bias when bias_* keys are there.
  A cell's keys (weight_ih, weight_hh, bias_ih, bias_hh) read as layer 0.
  What the weights cannot tell (nonlinearity of an RNN, batch_first, dropout) comes from the
  keyword arguments, else torch's defaults ("tanh", False, 0.0). `prefix="lstm."` takes the
  keys of one submodule out of a larger model's state_dict (the other keys are ignored).

The keyword arguments that describe the model (mode, input_size, hidden_size, num_layers,
bias, bidirectional, proj_size, and for a torch module also nonlinearity, batch_first and
dropout) are checks: one that contradicts what `obj` says is a ValueError naming the argument,
the value `obj` has and the one given. `mode` is "lstm", "gru", "rnn", or torch's "LSTM",
"GRU", "RNN_TANH", "RNN_RELU" (case-insensitive; "rnn_relu" also sets nonlinearity).

dtype: float32 and float64 weights keep their dtype; other float dtypes (float16, bfloat16)
are a TypeError unless dtype="float32" or "float64" asks for a conversion (which is exact:
both hold every float16 and bfloat16 value). All the weights of `obj` must share one dtype
unless `dtype` is given.

torch's dynamically quantized LSTM, GRU and cells (torch.ao.nn.quantized.dynamic, as
torch.ao.quantization.quantize_dynamic makes them) are read too: qint8 ones give a fastlstm
Quantized "int8" module with torch's integer codes, float16 ones a float32 module (see
fastlstm.interop.torch_quantized, which also says what dtype= and the checks do there).

Refused (`obj` named in the message): other torch modules (nn.Linear, nn.Sequential, a
scripted module, ...), statically quantized or quantizable RNNs (their weights are in a
layout of their own: convert the float model), the state_dict of a quantized module (packed
objects: pass the module), tensors off the CPU (move the model with .cpu() first), non-float,
sparse or quantized tensors, anything that is not a mapping, and in a state_dict a missing,
unexpected or wrongly shaped key. `obj` itself is never modified and the result shares no
memory with it.

Training-mode dropout uses fastlstm's own random numbers (seed=), not torch's: the same
weights give the same outputs in eval mode or with dropout = 0, not the same dropout masks.

to_torch(m) builds the torch.nn module back (same configuration, dtype, training mode and a
copy of the weights). torch.nn has no peepholes, no reverse-only stack and no reset-before
GRU: peepholes=True, reverse=True and linear_before_reset=False are a ValueError naming the
option.

torch is never imported by this module: a torch object can only exist once the caller has
imported torch, so `sys.modules` tells whether to look for one; to_torch imports it.
"""
import re
import sys
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from ..layers._params import param_shapes
from .._validate import check_float_dtype
from ..layers.modules import GRU, LSTM, RNN
from .torch_quantized import dynamic_quantized_class, from_dynamic_quantized

_CLASSES = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
_A = {"lstm": "an LSTM", "gru": "a GRU", "rnn": "an RNN"}
#: torch's RNNBase.mode (and fastlstm's kinds), lower-cased -> (kind, nonlinearity or None)
_MODES = {"lstm": ("lstm", None), "gru": ("gru", None), "rnn": ("rnn", None),
          "rnn_tanh": ("rnn", "tanh"), "rnn_relu": ("rnn", "relu")}
#: the gates per kind, G in weight_hh's (G*H, H_out)
_GATES = {4: "lstm", 3: "gru", 1: "rnn"}
#: a module's state_dict key: name, layer, direction suffix
_KEY = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?")
_CELL_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
#: what the weights decide (the rest, _BEHAVIOUR, only a torch module or cell can tell)
_SHAPE_ARGS = ("input_size", "hidden_size", "num_layers", "bias", "bidirectional", "proj_size")
_BEHAVIOUR = {"nonlinearity": "tanh", "batch_first": False, "dropout": 0.0}


class _Source:
    """What `obj` says about the model: kind, facts {constructor argument: value} (the
    shape arguments always, the _BEHAVIOUR ones when obj knows them), weights
    OrderedDict {torch's module key: ndarray} (still in obj's dtype, see _as_array),
    dtypes {key: obj's dtype name}, training (bool, or None when obj has no mode) and a
    description for messages."""

    def __init__(self, what, kind, facts, weights, dtypes, training):
        self.what, self.kind, self.facts = what, kind, facts
        self.weights, self.dtypes, self.training = weights, dtypes, training


# --------------------------------------------------------------------------------------------
# from_torch

def from_torch(obj, *, dtype=None, backend="auto", seed=None, prefix="", mode=None,
               input_size=None, hidden_size=None, num_layers=None, bias=None,
               batch_first=None, dropout=None, bidirectional=None, proj_size=None,
               nonlinearity=None):
    """A fastlstm.LSTM / GRU / RNN from a torch.nn.LSTM / GRU / RNN, an nn.LSTMCell /
    GRUCell / RNNCell, or a state_dict of either (see the module docstring for each case).

    obj: the torch module, cell or mapping {torch's key: tensor or array}.
    dtype: None (keep obj's float32 / float64) or "float32" / "float64" (convert).
    backend, seed: passed to the fastlstm constructor (seed: its dropout masks).
    prefix: for a state_dict only: take the keys that start with it, stripped of it.
    mode ... nonlinearity: checks against what obj says; for a state_dict, nonlinearity,
        batch_first and dropout also fill in what its weights cannot tell.

    Returns the fastlstm module, in obj's training / eval mode (a new module's training mode
    for a state_dict). Weights: new arrays of the chosen dtype, shaped as in obj. For torch's
    dynamically quantized modules: a Quantized "int8" module (qint8) or a float module
    (float16), see fastlstm.interop.torch_quantized.
    """
    given = dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
                 bias=bias, bidirectional=bidirectional, proj_size=proj_size,
                 nonlinearity=nonlinearity, batch_first=batch_first, dropout=dropout)
    if not isinstance(prefix, str):
        raise TypeError(f"prefix: expected a string, got {type(prefix).__name__}")
    want_dtype = None if dtype is None else check_float_dtype(dtype)
    mode_kind, mode_nonlinearity = _parse_mode(mode)

    if dynamic_quantized_class(obj) is not None:
        return from_dynamic_quantized(obj, dtype=want_dtype, backend=backend, seed=seed,
                                      prefix=prefix, given=given, mode=mode,
                                      mode_kind=mode_kind,
                                      mode_nonlinearity=mode_nonlinearity)
    src = _read_source(obj, prefix)
    args = _resolve(src, given, mode, mode_kind, mode_nonlinearity)
    out_dtype = want_dtype if want_dtype is not None else _source_dtype(src)

    cls = _CLASSES[src.kind]
    if src.kind != "lstm":
        args.pop("proj_size")
    if src.kind != "rnn":
        args.pop("nonlinearity")
    m = cls(**args, dtype=out_dtype, seed=seed, backend=backend)
    m.load_state_dict(src.weights)   # checked again, copied and converted to out_dtype
    if src.training is not None:
        m.train(src.training)
    return m


def _parse_mode(mode):
    """mode -> (kind or None, nonlinearity or None)."""
    if mode is None:
        return None, None
    if not isinstance(mode, str) or mode.lower() not in _MODES:
        raise ValueError(f"mode: expected one of 'lstm', 'gru', 'rnn', 'rnn_tanh', 'rnn_relu' "
                         f"(torch's 'LSTM', 'GRU', 'RNN_TANH', 'RNN_RELU'), got {mode!r}")
    return _MODES[mode.lower()]


def _read_source(obj, prefix):
    """Dispatch on what obj is; never imports torch (see the module docstring)."""
    torch = sys.modules.get("torch")
    if isinstance(obj, (LSTM, GRU, RNN)):
        raise TypeError(f"obj: already a fastlstm {type(obj).__name__}; from_torch takes a "
                        f"torch module or a state_dict (obj.state_dict() works too)")
    if torch is not None and isinstance(obj, torch.nn.Module):
        if prefix:
            raise ValueError(f"prefix: only for a state_dict, got prefix={prefix!r} with a "
                             f"{_type_name(obj)}")
        return _read_module(obj, torch)
    if torch is not None and isinstance(obj, torch.Tensor):
        raise TypeError("obj: expected a torch.nn.LSTM / GRU / RNN, a cell or a state_dict, "
                        "got a tensor")
    if isinstance(obj, Mapping):
        return _read_state_dict(obj, prefix, torch)
    raise TypeError(f"obj: expected a torch.nn.LSTM / GRU / RNN, an LSTMCell / GRUCell / "
                    f"RNNCell or a state_dict (a mapping of names to tensors or arrays), got "
                    f"{_type_name(obj)}")


def _type_name(obj):
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__name__


def _read_module(obj, torch):
    """A torch.nn.RNNBase (LSTM, GRU, RNN) or one of the three cells."""
    name = _type_name(obj)
    if ".quantized" in name or ".quantizable" in name:
        raise TypeError(f"obj: a quantized torch module ({name}) keeps its weights packed or "
                        f"in a layout of its own; convert the float model before "
                        f"quantization instead (from_torch reads torch's dynamically "
                        f"quantized LSTM, GRU and cells, torch.ao.nn.quantized.dynamic)")
    nn = torch.nn
    if isinstance(obj, nn.RNNBase):
        if not isinstance(obj.mode, str) or obj.mode.lower() not in _MODES:
            raise ValueError(f"obj: a {name} with an unknown mode {obj.mode!r}")
        kind, nonlinearity = _MODES[obj.mode.lower()]
        facts = dict(input_size=obj.input_size, hidden_size=obj.hidden_size,
                     num_layers=obj.num_layers, bias=obj.bias,
                     bidirectional=obj.bidirectional, proj_size=getattr(obj, "proj_size", 0),
                     nonlinearity=nonlinearity, batch_first=obj.batch_first,
                     dropout=float(obj.dropout))
        keys = {k: k for k in _expected_shapes(kind, facts)}
        what = f"torch.nn.{_NAMES[kind]}"
    elif isinstance(obj, (nn.LSTMCell, nn.GRUCell, nn.RNNCell)):
        kind = ("lstm" if isinstance(obj, nn.LSTMCell) else
                "gru" if isinstance(obj, nn.GRUCell) else "rnn")
        facts = dict(input_size=obj.input_size, hidden_size=obj.hidden_size, num_layers=1,
                     bias=obj.bias, bidirectional=False, proj_size=0,
                     nonlinearity=getattr(obj, "nonlinearity", None) if kind == "rnn"
                     else None)
        keys = {f"{k}_l0": k for k in _CELL_KEYS if obj.bias or k.startswith("weight")}
        what = f"torch.nn.{_NAMES[kind]}Cell"
    else:
        raise TypeError(f"obj: expected a torch.nn.LSTM / GRU / RNN or an LSTMCell / GRUCell "
                        f"/ RNNCell, got {name}")
    weights, dtypes = OrderedDict(), {}
    for key, attr in keys.items():
        try:
            value = getattr(obj, attr)   # parametrized weights (weight_norm, ...) computed
        except AttributeError:
            raise ValueError(f"obj: the {name} has no parameter {attr!r}") from None
        weights[key], dtypes[key] = _as_array(f"obj.{attr}", value, torch)
    src = _Source(what, kind, facts, weights, dtypes, bool(obj.training))
    _check_shapes(src)
    return src


def _read_state_dict(obj, prefix, torch):
    """A mapping of torch's keys (a module's or a cell's) -> _Source, sizes inferred."""
    items = list(obj.items())
    if prefix:
        items = [(k[len(prefix):], v) for k, v in items
                 if isinstance(k, str) and k.startswith(prefix)]
        if not items:
            raise ValueError(f"prefix: no key of obj starts with {prefix!r}; keys: "
                             f"{_short(list(obj.keys()))}")
    if not items:
        raise ValueError("obj: an empty state_dict")
    keys = [k for k, _ in items]
    for k in keys:
        if not isinstance(k, str) or not (k in _CELL_KEYS or _KEY.fullmatch(k)):
            raise ValueError(f"obj: unexpected key {k!r} in the state_dict; expected torch's "
                             f"names (weight_ih_l0, bias_hh_l1_reverse, weight_hr_l0, ... or "
                             f"a cell's weight_ih, ...){_prefix_hint(k)}")
    is_cell = any(k in _CELL_KEYS for k in keys)
    if is_cell and not all(k in _CELL_KEYS for k in keys):
        other = next(k for k in keys if k not in _CELL_KEYS)
        raise ValueError(f"obj: unexpected key {other!r} next to a cell's keys "
                         f"{[k for k in keys if k in _CELL_KEYS]}")
    weights, dtypes = OrderedDict(), {}
    for k, v in items:
        key = f"{k}_l0" if is_cell else k
        weights[key], dtypes[key] = _as_array(f"obj[{prefix + k!r}]", v, torch)

    facts, kind = _infer(weights, is_cell)
    what = "state_dict of a torch.nn." + _NAMES[kind] + ("Cell" if is_cell else "")
    src = _Source(what, kind, facts, weights, dtypes, None)
    _check_shapes(src, cell=is_cell)
    return src


def _infer(weights, is_cell):
    """(facts, kind) from the keys and the shapes of layer 0 (SPEC.md section 5)."""
    def get(key, ndim):
        if key not in weights:
            shown = key[:-3] if is_cell else key
            raise ValueError(f"obj: the state_dict is missing key {shown!r}; keys: "
                             f"{_short(list(weights))}")
        arr = weights[key]
        if arr.ndim != ndim:
            raise ValueError(f"obj[{key!r}]: expected a {ndim}-D array, got shape {arr.shape}")
        return arr.shape

    parsed = [_KEY.fullmatch(k).groups() for k in weights]
    num_layers = 1 + max(int(layer) for _, layer, _ in parsed)
    has_proj = any(name == "weight_hr" for name, _, _ in parsed)
    rows, cols = get("weight_hh_l0", 2)
    if has_proj:
        P, H = get("weight_hr_l0", 2)
        if cols != P or rows != 4 * H:
            raise ValueError(f"obj['weight_hh_l0']: with weight_hr_l0 of shape ({P}, {H}) "
                             f"(an LSTM, proj_size = {P}) expected shape (4*H, P) = "
                             f"({4 * H}, {P}), got {(rows, cols)}")
        kind = "lstm"
    else:
        P, H = 0, cols
        if H == 0 or rows % H or rows // H not in _GATES:
            raise ValueError(f"obj['weight_hh_l0']: expected shape (G*H, H) with G = 4 (LSTM), "
                             f"3 (GRU) or 1 (RNN), got {(rows, cols)}")
        kind = _GATES[rows // H]
    input_size = get("weight_ih_l0", 2)[1]
    facts = dict(input_size=input_size, hidden_size=H, num_layers=num_layers,
                 bias=any(name.startswith("bias") for name, _, _ in parsed),
                 bidirectional=any(sfx for _, _, sfx in parsed), proj_size=P)
    return facts, kind


def _expected_shapes(kind, facts):
    return param_shapes(kind, facts["input_size"], facts["hidden_size"], facts["num_layers"],
                        facts["bias"], facts["bidirectional"], facts["proj_size"])


def _check_shapes(src, cell=False):
    """Every key the configuration needs is there, with its shape, and no other."""
    shapes = _expected_shapes(src.kind, src.facts)
    shown = (lambda k: k[:-3]) if cell else (lambda k: k)   # noqa: E731  (a cell's own names)
    missing = [shown(k) for k in shapes if k not in src.weights]
    unexpected = [shown(k) for k in src.weights if k not in shapes]
    if missing or unexpected:
        parts = ([f"missing key(s) {missing}"] if missing else []) + \
            ([f"unexpected key(s) {unexpected}"] if unexpected else [])
        raise ValueError(f"obj: the {src.what} ({_describe(src)}) has {'; '.join(parts)}")
    for key, shape in shapes.items():
        if src.weights[key].shape != tuple(shape):
            raise ValueError(f"obj[{shown(key)!r}]: expected shape {tuple(shape)} for "
                             f"{_describe(src)}, got {src.weights[key].shape}")


def _describe(src):
    f = src.facts
    text = (f"{_NAMES[src.kind]} input_size={f['input_size']}, hidden_size={f['hidden_size']}, "
            f"num_layers={f['num_layers']}, bias={f['bias']}, "
            f"bidirectional={f['bidirectional']}")
    return text + (f", proj_size={f['proj_size']}" if f["proj_size"] else "")


def _as_array(where, value, torch):
    """(ndarray, dtype name) of one weight, without copying when possible.

    A torch tensor must be dense, not quantized, on the CPU and of a float dtype; bfloat16 and
    the other dtypes NumPy lacks are widened to float32 (exactly). The dtype name is the
    original one (for _source_dtype)."""
    if torch is not None and isinstance(value, torch.Tensor):
        if value.device.type != "cpu":
            raise ValueError(f"{where}: a tensor on device '{value.device}'; fastlstm runs on "
                             f"the CPU: move the model there first (.cpu())")
        if value.is_quantized:
            raise TypeError(f"{where}: a quantized tensor ({value.dtype}); expected float "
                            f"weights")
        if value.layout != torch.strided:
            raise TypeError(f"{where}: a {value.layout} tensor; expected a dense one")
        if not value.is_floating_point():
            raise TypeError(f"{where}: expected float weights, got dtype {value.dtype}")
        name = str(value.dtype).replace("torch.", "")
        t = value.detach().resolve_conj().resolve_neg()
        if t.dtype not in (torch.float16, torch.float32, torch.float64):
            t = t.to(torch.float32)
        return t.numpy(), name
    try:
        arr = np.asarray(value)
    except Exception as exc:   # ragged lists, objects NumPy cannot convert
        raise TypeError(f"{where}: expected a float array, got {type(value).__name__}") \
            from exc
    if arr.dtype.kind != "f":
        raise TypeError(f"{where}: expected float weights, got dtype {arr.dtype}")
    return arr, arr.dtype.name


def _source_dtype(src):
    """obj's dtype when it is float32 or float64 for every weight; else a TypeError."""
    names = sorted(set(src.dtypes.values()))
    if len(names) == 1 and names[0] in ("float32", "float64"):
        return np.dtype(names[0])
    what = f"dtype {names[0]}" if len(names) == 1 else f"mixed dtypes {names}"
    raise TypeError(f"obj: weights of {what}; fastlstm computes in float32 or float64: pass "
                    f"dtype='float32' or dtype='float64' to convert them")


def _resolve(src, given, mode, mode_kind, mode_nonlinearity):
    """The constructor arguments: src's facts, checked against the given ones (not None);
    the _BEHAVIOUR ones src does not know from `given`, else torch's defaults."""
    if mode_kind is not None and mode_kind != src.kind:
        raise ValueError(f"mode: the {src.what} is {_A[src.kind]}, got mode={mode!r}")
    if mode_nonlinearity is not None:
        if given["nonlinearity"] is not None and given["nonlinearity"] != mode_nonlinearity:
            raise ValueError(f"nonlinearity: mode={mode!r} says {mode_nonlinearity!r}, got "
                             f"nonlinearity={given['nonlinearity']!r}")
        given = dict(given, nonlinearity=mode_nonlinearity)
    if src.kind != "rnn" and given["nonlinearity"] is not None:
        raise ValueError(f"nonlinearity: only an RNN has one; the {src.what} is "
                         f"{_A[src.kind]}, got nonlinearity={given['nonlinearity']!r}")
    args = {}
    for name in _SHAPE_ARGS + tuple(_BEHAVIOUR):
        fact = src.facts.get(name)
        value = given[name]
        if fact is not None:
            if value is not None and (value != fact
                                      or isinstance(value, bool) != isinstance(fact, bool)):
                raise ValueError(f"{name}: the {src.what} has {name}={fact!r}, got "
                                 f"{name}={value!r}")
            args[name] = fact
        else:
            args[name] = _BEHAVIOUR[name] if value is None else value
    return args


def _prefix_hint(key):
    if isinstance(key, str) and "_all_weight_values." in key:
        return (" (the state_dict of a dynamically quantized module holds packed objects: "
                "pass the quantized module itself)")
    if isinstance(key, str) and key.startswith("parametrizations."):
        return (" (the state_dict of a parametrized module: pass the module itself, whose "
                "weights are computed)")
    if isinstance(key, str) and "." in key:
        head, tail = key.rsplit(".", 1)
        if tail in _CELL_KEYS or _KEY.fullmatch(tail):
            return f" (a larger model's state_dict? pass prefix={head + '.'!r})"
    return ""


def _short(keys, n=8):
    return repr(keys) if len(keys) <= n else repr(keys[:n])[:-1] + f", ... ({len(keys)} keys)]"


# --------------------------------------------------------------------------------------------
# to_torch

def to_torch(m):
    """The torch.nn.LSTM / GRU / RNN equal to the fastlstm module m: the same input_size,
    hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size,
    nonlinearity, dtype (torch.float32 / float64) and training mode, and a copy of the weights
    (torch's names and shapes are fastlstm's, see fastlstm.layers._params).

    Options torch.nn lacks are a ValueError naming them: peepholes=True, reverse=True, and a
    GRU with linear_before_reset=False. Imports torch.
    """
    if not isinstance(m, (LSTM, GRU, RNN)):
        raise TypeError(f"m: expected a fastlstm.LSTM, GRU or RNN, got {_type_name(m)}")
    if m.peepholes:
        raise ValueError("peepholes: torch.nn.LSTM has no peepholes; a model with "
                         "peepholes=True cannot be exported to torch")
    if m.reverse:
        raise ValueError("reverse: torch.nn has no reverse-only stack (only bidirectional); "
                         "a model with reverse=True cannot be exported to torch")
    if m.kind == "gru" and not m.linear_before_reset:
        raise ValueError("linear_before_reset: torch.nn.GRU applies the reset gate after the "
                         "recurrent product (linear_before_reset=True); a GRU with "
                         "linear_before_reset=False cannot be exported to torch")
    try:
        import torch
    except ImportError as exc:
        raise ImportError("to_torch needs PyTorch: install its CPU build, e.g. pip install "
                          "torch --index-url https://download.pytorch.org/whl/cpu") from exc

    kwargs = dict(num_layers=m.num_layers, bias=m.bias, batch_first=m.batch_first,
                  bidirectional=m.bidirectional,
                  dtype=torch.float32 if m.dtype == np.float32 else torch.float64)
    if m.kind == "lstm":
        kwargs["proj_size"] = m.proj_size
    if m.kind == "rnn":
        kwargs["nonlinearity"] = m.nonlinearity
    # torch warns about dropout > 0 on a single layer (where it does nothing, in torch as in
    # fastlstm); the value is set after construction so that it carries over without a warning
    tm = getattr(torch.nn, _NAMES[m.kind])(m.input_size, m.hidden_size, **kwargs)
    tm.dropout = m.dropout
    tm.load_state_dict(OrderedDict((k, torch.from_numpy(v)) for k, v in m.state_dict().items()))
    tm.train(m.training)
    return tm


__all__ = ["from_torch", "to_torch"]
