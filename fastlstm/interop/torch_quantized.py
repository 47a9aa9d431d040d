"""fastlstm.from_torch for torch's dynamically quantized recurrent modules.

    tq = torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.GRU}, dtype=torch.qint8)
    q = fastlstm.from_torch(tq.lstm)      # a fastlstm.layers.quantized.Quantized, int8
    y, (h_n, c_n) = q(x)                  # as tq.lstm(x), to within the quantization step

What `obj` may be (torch.ao.nn.quantized.dynamic, which torch.nn.quantized.dynamic re-exports):

- LSTM, GRU (any num_layers, bidirectional, batch_first, dropout), and the cells LSTMCell,
  GRUCell, RNNCell (tanh or relu) as one-layer modules (torch_models' cell rule: weight_ih_l0
  is the cell's weight_ih, ...).
- dtype=torch.qint8 (quantize_dynamic's default): the result is a Quantized "int8" module of the
  same kind and configuration, in eval mode (a quantized module is inference-only). Its
  weights are torch's integer codes, taken exactly, with one scale per output row: torch's
  per-tensor scale repeated over the rows, or its per-channel scales (channel axis 0). Gate
  order and layout are torch's, which are fastlstm's (SPEC.md section 5). The biases are
  float32, as in torch. Where torch's weight cannot be stored as symmetric int8 codes as it
  is (see `symmetric_rows`): a code of -128 (torch's symmetric qint8 observer maps the most
  negative weight of a tensor or channel, w = -max|W|, to -128, since its scale is
  max|W| / 127.5) is stored as -127, moving that one weight by one step toward zero; a
  nonzero zero point is subtracted, exactly when every code stays in [-127, 127], and
  otherwise the row is requantized symmetrically from torch's dequantized weight (per-row
  scale max|row| / 127); per-channel scales on axis 1 (per input column) are requantized
  the same way, row by row.
- dtype=torch.float16: torch stores the weights as float16 and computes with float32
  activations and sums; the result is a plain float32 fastlstm.LSTM / GRU / RNN holding
  those float16 values (exactly; dtype="float64" gives a float64 module), in obj's training
  mode.

How close the results are: the weights are the same numbers, but the activations are not
quantized the same way. torch (fbgemm) quantizes x_t and h_{t-1} per tensor, asymmetric
uint8 (with a reduced range of 7 bits), fastlstm per row, int8 with a zero point
(reference/quantized.py), so the outputs agree to within the activations' quantization step; each is about as far
from the float model as the other (tests/test_quantized_interop.py measures both).

The keyword arguments of from_torch are checks here as for a float module (mode, input_size,
... a ValueError when they contradict obj); prefix is refused (a module, not a state_dict).
dtype: None or "float32" for an int8 module (it computes in float32; "float64" is a
ValueError), None ("float32"), "float32" or "float64" for a float16 one. Refused: an LSTM or
GRU module with bias=False (torch's quantized_lstm / quantized_gru refuse to run without
biases, and the biases the module holds are not ones it uses), weights of any other dtype
(quint8, ...), and the state_dict of a quantized module (its values are packed objects: pass
the module itself).

torch is never imported here: obj is a torch object, so torch is already loaded.
"""
import sys
from collections import OrderedDict

import numpy as np

from ..reference.quantized import QMAX, quantize_rows

#: torch.ao.nn.quantized.dynamic class name -> (fastlstm kind, is a cell)
_CLASSES = {"LSTM": ("lstm", False), "GRU": ("gru", False), "LSTMCell": ("lstm", True),
            "GRUCell": ("gru", True), "RNNCell": ("rnn", True)}
_MODULE = "torch.ao.nn.quantized.dynamic"


def dynamic_quantized_class(obj):
    """The class name ("LSTM", "GRU", "LSTMCell", "GRUCell", "RNNCell") when obj is one of
    torch's dynamically quantized recurrent modules, else None (never imports torch)."""
    qd = sys.modules.get(_MODULE)
    if qd is None:
        return None
    for name in _CLASSES:
        cls = getattr(qd, name, None)
        if isinstance(cls, type) and isinstance(obj, cls):
            return name
    return None


# --------------------------------------------------------------------------------------------
# integer codes -> fastlstm's symmetric int8

def symmetric_rows(values, zero_point, scale):
    """One quantized weight as fastlstm's int8 rows (fastlstm.reference.quantized).

    values: (N, K) integer codes (int8 or uint8), standing for (values - zero_point) * scale.
    zero_point, scale: (N,) per row (a per-tensor value repeated).
    Returns (codes (N, K) int8 in [-127, 127], scale (N,) float32, changed) where `changed`
    counts the rows that are not exact: a row whose codes values - zero_point all lie in
    [-127, 127] is kept exactly (its scale as float32); a code of -128 becomes -127 (that one
    weight moves by one step toward zero); a row with codes beyond [-128, 127] (an asymmetric
    zero point) is requantized symmetrically from its dequantized weight (scale max|row|/127).
    """
    values = np.asarray(values)
    if values.ndim != 2 or values.dtype.kind not in "iu":
        raise ValueError(f"expected (N, K) integer codes, got dtype {values.dtype} and shape "
                         f"{values.shape}")
    zp = np.asarray(zero_point, np.int64).reshape(-1)
    sc = np.asarray(scale, np.float64).reshape(-1)
    codes = values.astype(np.int64) - zp[:, None]
    out_scale = sc.astype(np.float32)
    wide = np.any((codes < -QMAX - 1) | (codes > QMAX), axis=1)
    clipped = np.any(codes == -QMAX - 1, axis=1) & ~wide
    if np.any(wide):
        dequantized = (codes[wide] * sc[wide, None]).astype(np.float32)
        codes[wide], out_scale[wide] = quantize_rows(dequantized)
    codes = np.maximum(codes, -QMAX)
    return codes.astype(np.int8), out_scale, int(np.count_nonzero(wide | clipped))


def _torch_int8(where, qweight, torch):
    """(codes (N, K) int8, scale (N,) float32) of torch's quantized weight (N, K)."""
    if not isinstance(qweight, torch.Tensor) or not qweight.is_quantized \
            or qweight.dtype != torch.qint8 or qweight.dim() != 2:
        raise TypeError(f"{where}: expected a 2-D qint8 quantized tensor, got "
                        f"{getattr(qweight, 'dtype', type(qweight).__name__)}")
    N = qweight.shape[0]
    scheme = qweight.qscheme()
    values = qweight.int_repr().numpy()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        zp = np.full(N, qweight.q_zero_point(), np.int64)
        scale = np.full(N, qweight.q_scale(), np.float64)
    elif scheme in (torch.per_channel_affine, torch.per_channel_symmetric,
                    torch.per_channel_affine_float_qparams):
        scales = qweight.q_per_channel_scales().double().numpy()
        zps = qweight.q_per_channel_zero_points().numpy()
        if qweight.q_per_channel_axis() != 0 or np.any(zps != np.rint(zps)):
            # scales per input column (or float zero points): no row form; requantize
            codes, scale = quantize_rows(qweight.dequantize().numpy().astype(np.float32))
            return codes, scale
        zp, scale = zps.astype(np.int64), scales
    else:
        raise TypeError(f"{where}: unsupported quantization scheme {scheme}")
    codes, scale, _ = symmetric_rows(values, zp, scale)
    return codes, scale


def _float_array(where, t, torch):
    if not isinstance(t, torch.Tensor) or t.is_quantized or not t.is_floating_point():
        raise TypeError(f"{where}: expected a float tensor, got "
                        f"{getattr(t, 'dtype', type(t).__name__)}")
    return t.detach().to(torch.float32).cpu().numpy().copy()


# --------------------------------------------------------------------------------------------
# from_torch

def from_dynamic_quantized(obj, *, dtype, backend, seed, prefix, given, mode, mode_kind,
                           mode_nonlinearity):
    """fastlstm.from_torch(obj) for one of torch's dynamically quantized recurrent modules
    (see the module docstring). The arguments are from_torch's, already parsed: dtype None or
    a NumPy dtype, given {argument: value or None}, mode as given with its parsed kind and
    nonlinearity."""
    from ..layers.modules import GRU, LSTM, RNN
    from ..layers.quantized import Quantized
    from .torch_models import _Source, _check_shapes, _resolve, _type_name

    torch = sys.modules["torch"]
    name = dynamic_quantized_class(obj)
    kind, is_cell = _CLASSES[name]
    what = f"{_MODULE}.{name}"
    if prefix:
        raise ValueError(f"prefix: only for a state_dict, got prefix={prefix!r} with a "
                         f"{_type_name(obj)}")
    wdtype = obj.weight_dtype if is_cell else obj.dtype
    if wdtype not in (torch.qint8, torch.float16):
        raise TypeError(f"obj: a {what} with weights of dtype {wdtype}; fastlstm reads "
                        f"torch.qint8 and torch.float16 dynamic quantization")
    int8 = wdtype == torch.qint8
    if int8 and dtype is not None and dtype != np.float32:
        raise ValueError(f"dtype: a qint8 {what} becomes an int8 fastlstm module, which "
                         f"computes in float32; got dtype={dtype.name!r} (pass None or "
                         f"'float32')")
    if is_cell:
        facts = dict(input_size=obj.input_size, hidden_size=obj.hidden_size, num_layers=1,
                     bias=bool(obj.bias), bidirectional=False, proj_size=0,
                     nonlinearity=getattr(obj, "nonlinearity", None) if kind == "rnn"
                     else None)
    else:
        if not obj.bias:
            raise ValueError(f"obj: a {what} with bias=False: torch's quantized "
                             f"{'LSTM' if kind == 'lstm' else 'GRU'} cannot run without "
                             f"biases (and the ones the module holds are not used); quantize "
                             f"a model with bias=True")
        facts = dict(input_size=obj.input_size, hidden_size=obj.hidden_size,
                     num_layers=obj.num_layers, bias=True, bidirectional=obj.bidirectional,
                     proj_size=0, nonlinearity=None, batch_first=obj.batch_first,
                     dropout=float(obj.dropout))
    try:
        weights, biases = obj.get_weight(), obj.get_bias()
    except Exception as exc:   # a module whose packed parameters were never set
        raise ValueError(f"obj: could not unpack the weights of the {what} "
                         f"({type(exc).__name__}: {exc})") from exc
    key = (lambda k: f"{k}_l0") if is_cell else (lambda k: k)  # noqa: E731

    state = OrderedDict()
    for k, w in weights.items():
        where = f"obj.get_weight()[{k!r}]"
        if int8:
            state[key(k)], state[key(k) + "_scale"] = _torch_int8(where, w, torch)
        else:
            state[key(k)] = _float_array(where, w, torch)
    for k, b in biases.items():
        if b is not None and facts["bias"]:
            state[key(k)] = _float_array(f"obj.get_bias()[{k!r}]", b, torch)

    shaped = OrderedDict((k, v) for k, v in state.items() if not k.endswith("_scale"))
    src = _Source(what, kind, facts, shaped, {k: "float32" for k in shaped}, None)
    _check_shapes(src, cell=is_cell)
    args = _resolve(src, given, mode, mode_kind, mode_nonlinearity)
    args.pop("proj_size")
    if kind != "rnn":
        args.pop("nonlinearity")
    cls = {"lstm": LSTM, "gru": GRU, "rnn": RNN}[kind]
    if not int8:
        m = cls(**args, dtype=np.float32 if dtype is None else dtype, seed=seed,
                backend=backend)
        m.load_state_dict(shaped)
        return m.train(bool(obj.training))
    m = cls(**args, dtype=np.float32, seed=seed, backend=backend)
    return Quantized(m, "int8").load_state_dict(state)
