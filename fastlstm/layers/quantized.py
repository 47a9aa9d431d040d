"""Reduced-precision inference modules: m.quantize("int8") and m.quantize("bfloat16") (SPEC.md
section 8, "Reduced precision"; the math: fastlstm/reference/quantized.py).

    q = m.quantize("int8")            # or "bfloat16": a new module; m is left as it is
    q = m.quantize("int8", calibration=x)   # int8 codes picked for inputs like x (below)
    y, hx_n = q(x, hx=None, lengths=None)   # as m(x, hx, lengths) in eval mode
    s = q.stream(batch_size=1)        # step by step, equal to whole-sequence calls
    q.state_dict()                    # the quantized weights (below); q.load_state_dict(d)

Every weight matrix (weight_ih, weight_hh, weight_hr) is quantized; biases and peepholes stay
float32, and so does everything between the products (the gates' pointwise math, c, h).
state_dict() keys are the float module's, with these values:
    int8:      weight_*_l{l}{sfx}        (N, K) int8 codes in [-127, 127]
               weight_*_l{l}{sfx}_scale  (N,) float32, one per row: W ~ codes * scale[:, None]
    bfloat16:  weight_*_l{l}{sfx}        (N, K) uint16, the bfloat16 bit patterns
    bias_*, weight_peephole_*            float32, as the float module's
With calibration data (x in m's input layout, calibration_lengths (B,) or None), m runs on
it first and each int8 matrix's codes are chosen to keep its products close to float32's on
the inputs it met there (reference.quantized.calibrated_codes, GPTQ's rounding): the same
scales, format, kernels and state_dict (fastlstm/layers/_calibration.py). A projection LSTM
is refused (its W_hr's inputs are not observed).
The module is float32 and inference-only: no training mode, tape, backward or parameters().
Backends: "cython" (src/kernels/recurrent_quantized.pyx) and "numpy" (the reference); the
numba backend has no reduced-precision kernels (ValueError at the call).
"""
import warnings
from collections import OrderedDict

import numpy as np

from .. import _reduced
from .._validate import check_flag
from ..reference.quantized import MATRICES, QMAX, BFloat16Matrix, Int8Matrix
from ._calibration import input_grams
from ._packing import cell_code
from ._params import direction_suffixes
from .modules import _StackBase

#: the precisions m.quantize takes
PRECISIONS = ("int8", "bfloat16")
#: below this hidden size the per-call and per-step costs outweigh the cheaper products
#: (measured: LSTM, B=1, T=100 on an AMD EPYC (Zen 5): int8 0.88x float32 at H=32, 1.3x at 64)
MIN_GAINFUL_HIDDEN = 64


class ReducedPrecisionWarning(UserWarning):
    """m.quantize(...) made a module that is not expected to be faster than float32 here: the
    message says why (fastlstm.layers.quantized.speed_caveat)."""


def speed_caveat(module, precision):
    """Why a `precision` module of `module` would not be faster than its float32 one on this
    machine, or None. The rule (measured, bench/RESULTS.md "Reduced precision"):
    - the numpy backend runs the reference, never fast;
    - hidden_size < MIN_GAINFUL_HIDDEN: the fixed costs of a call and a step dominate;
    - without the dot-product instructions (AVX512_BF16 for bfloat16; AVX512_VNNI or AVX_VNNI
      for int8) the plain paths win only where the weights' memory traffic sets the pace:
      bfloat16 at batch sizes 1 to 2, int8 at small batches, and on AVX2 CPUs at large H.
    """
    from .._backends import get_backend

    backend = get_backend(module.backend)
    if backend.name != "cython":
        return (f"the {backend.name} backend has no fast {precision} kernels (numpy runs the "
                f"reference); use backend='cython'")
    if module.hidden_size < MIN_GAINFUL_HIDDEN:
        return (f"hidden_size = {module.hidden_size} < {MIN_GAINFUL_HIDDEN}: a call's and a "
                f"step's fixed costs outweigh the cheaper products")
    if not backend.dot_products()[precision]:
        what = "AVX512_BF16" if precision == "bfloat16" else "AVX512_VNNI / AVX_VNNI"
        where = ("batch sizes 1 and 2" if precision == "bfloat16" else
                 "small batches (on AVX2 CPUs also large ones at hidden_size >= 256)")
        return (f"{backend.level} without {what} here (or $FASTLSTM_DOT_PRODUCTS=0): the "
                f"{precision} products take the plain path, faster than float32 only at "
                f"{where}")
    return None
#: the configuration a quantized module copies from its float module
_CONFIG = ("kind", "linear_before_reset", "nonlinearity", "input_size", "hidden_size",
           "num_layers", "bias", "batch_first", "dropout", "bidirectional", "proj_size",
           "peepholes", "reverse", "backend", "_shapes")


def _is_matrix_key(key):
    return key.startswith(("weight_ih", "weight_hh", "weight_hr"))


class Quantized(_StackBase):
    """An LSTM, GRU or RNN stack at reduced precision, made by module.quantize(precision).
    Called as the float module in eval mode (see the module docstring)."""

    def __init__(self, module, precision, calibration=None, calibration_lengths=None):
        if not isinstance(module, _StackBase) or isinstance(module, Quantized):
            raise TypeError(f"module: expected a fastlstm.LSTM, GRU or RNN, got "
                            f"{type(module).__name__}")
        if not isinstance(precision, str) or precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {', '.join(map(repr, PRECISIONS))}, "
                             f"got {precision!r}")
        if module.dtype != np.float32:
            raise ValueError(f"quantize: reduced precision runs float32 activations; the module "
                             f"is {module.dtype.name}: quantize a float32 module (load its "
                             f"state_dict into one built with dtype='float32')")
        grams = {}
        if calibration is not None:
            if precision != "int8":
                raise ValueError(f"calibration: calibrated rounding is for int8; {precision} "
                                 f"rounds each weight to the nearest value")
            if module.proj_size:
                raise ValueError("calibration: not for a projection LSTM (proj_size > 0): "
                                 "the inputs of its weight_hr are not observed, and "
                                 "calibrating the other matrices alone made some outputs "
                                 "worse; quantize it without calibration")
            grams = input_grams(module, calibration, calibration_lengths)
        elif calibration_lengths is not None:
            raise ValueError("calibration_lengths: given without calibration data")
        for name in _CONFIG:
            setattr(self, name, getattr(module, name))
        self.precision = precision
        self.dtype = np.dtype(np.float32)
        self.training = False
        self._rng = None
        params = OrderedDict()
        for key, value in module._params.items():
            if _is_matrix_key(key):
                if not np.all(np.isfinite(value)):
                    raise ValueError(f"quantize: {key} holds NaN or infinite values")
                w = value.astype(np.float32)
                params[key] = (Int8Matrix.quantize(w, grams.get(key)) if precision == "int8"
                               else MATRICES[precision].quantize(w))
            else:
                params[key] = value.astype(np.float32, copy=True)
        self._set_params(params)
        caveat = speed_caveat(self, precision)
        if caveat is not None:
            warnings.warn(f"quantize({precision!r}): not expected to be faster than float32: "
                          f"{caveat}", ReducedPrecisionWarning, stacklevel=4)

    # ---------------------------------------------------------------- parameters
    def _set_params(self, params):
        """params: {state_dict key: reference.quantized weight, or float32 array}; makes the
        kernels' layers (fastlstm._reduced.ReducedLayer) once."""
        self._params = params
        self._layers = {}
        get = params.get
        for layer in range(self.num_layers):
            for sfx in direction_suffixes(self.bidirectional):
                name = f"_l{layer}{sfx}"
                self._layers[(layer, sfx)] = _reduced.ReducedLayer(
                    cell_code(self), self.precision, params["weight_ih" + name],
                    params["weight_hh" + name], get("bias_ih" + name), get("bias_hh" + name),
                    get("weight_hr" + name), get("weight_peephole" + name))

    def _packed_layer(self, layer, sfx):
        return self._layers[(layer, sfx)]

    def state_dict(self):
        """OrderedDict of copies, in the float module's key order (module docstring)."""
        out = OrderedDict()
        for key, value in self._params.items():
            if isinstance(value, Int8Matrix):
                out[key] = value.codes.copy()
                out[key + "_scale"] = value.scale.copy()
            elif isinstance(value, BFloat16Matrix):
                out[key] = value.bits.copy()
            else:
                out[key] = value.copy()
        return out

    def _expected_keys(self):
        keys = OrderedDict()
        for key, shape in self._shapes.items():
            keys[key] = shape
            if _is_matrix_key(key) and self.precision == "int8":
                keys[key + "_scale"] = shape[:1]
        return keys

    def load_state_dict(self, state_dict):
        """Load quantized weights in state_dict()'s format (every key checked first: a missing
        or unexpected key is a KeyError, a wrong shape or a code of -128 a ValueError, a wrong
        dtype a TypeError; the module is unchanged on error). Returns self."""
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"state_dict: expected a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        expected = self._expected_keys()
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in expected]
        if missing or unexpected:
            raise KeyError(f"state_dict: missing key(s) {missing}, unexpected key(s) "
                           f"{unexpected}; expected keys {list(expected)}")
        arrays = {}
        for key, shape in expected.items():
            value = state_dict[key]
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            arr = np.asarray(value)
            if arr.shape != tuple(shape):
                raise ValueError(f"state_dict[{key!r}]: expected shape {tuple(shape)}, got "
                                 f"{arr.shape}")
            arrays[key] = arr
        params = OrderedDict()
        for key in self._shapes:
            arr = arrays[key]
            if _is_matrix_key(key) and self.precision == "int8":
                if arr.dtype != np.int8:
                    raise TypeError(f"state_dict[{key!r}]: expected int8 codes, got dtype "
                                    f"{arr.dtype}")
                if arr.size and arr.min() < -QMAX:
                    raise ValueError(f"state_dict[{key!r}]: codes must lie in [-127, 127] "
                                     f"(symmetric int8), got {arr.min()}")
                scale = arrays[key + "_scale"]
                if scale.dtype.kind != "f" or not np.all(np.isfinite(scale)) \
                        or np.any(scale < 0):
                    raise ValueError(f"state_dict[{key + '_scale'!r}]: expected finite float "
                                     f"scales >= 0")
                params[key] = Int8Matrix(arr, scale.astype(np.float32))
            elif _is_matrix_key(key):
                if arr.dtype != np.uint16:
                    raise TypeError(f"state_dict[{key!r}]: expected uint16 (bfloat16 bit "
                                    f"patterns), got dtype {arr.dtype}")
                params[key] = BFloat16Matrix(arr)
            else:
                if arr.dtype.kind != "f":
                    raise TypeError(f"state_dict[{key!r}]: expected a float array, got dtype "
                                    f"{arr.dtype}")
                params[key] = np.array(arr, dtype=np.float32, order="C", copy=True)
        self._set_params(params)
        return self

    def parameters(self):
        raise TypeError("parameters: a quantized module is inference-only (no trainable "
                        "parameters); train the float module, then quantize it")

    named_parameters = parameters

    def quantize(self, precision):
        raise TypeError("quantize: this module is already quantized; quantize the float module")

    # ---------------------------------------------------------------- modes and calls
    def train(self, mode=True):
        if check_flag("mode", mode):
            raise ValueError("train: a quantized module is inference-only; train the float "
                             "module, then quantize it")
        return self

    def forward(self, x, hx=None, lengths=None, return_tape=False):
        """y, hx_n as the float module's forward in eval mode (no tape: inference only)."""
        if check_flag("return_tape", return_tape):
            raise ValueError("return_tape: a quantized module is inference-only (no backward)")
        return super().forward(x, hx, lengths)

    def backward(self, tape, dy=None, dhx=None):
        raise TypeError("backward: a quantized module is inference-only")

    def stream(self, batch_size=1):
        """A stream (fastlstm.layers.stream.Stream's calls) over these quantized weights."""
        from .stream import ReducedStream

        return ReducedStream(self, batch_size)

    def to_torch(self):
        raise ValueError("to_torch: a quantized module has no torch.nn equivalent here; "
                         "export the float module")

    def to_onnx(self, path, **options):
        """Write this int8 LSTM as ONNX Runtime's com.microsoft DynamicQuantizeLSTM nodes (one
        per layer, its codes and per-row scales as they are); the options (lengths,
        initial_states, opset) and the graph are fastlstm.interop.onnx_quantized.to_onnx's.
        A GRU, an RNN, a bfloat16 module or a projection LSTM, which ONNX cannot express, is
        a ValueError. Imports onnx."""
        from ..interop.onnx_quantized import to_onnx

        return to_onnx(self, path, **options)

    def __getattr__(self, name):   # q.weight_ih_l0: the reference.quantized weight
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __repr__(self):
        base = super().__repr__()
        name = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[self.kind]
        return f"Quantized{name}{base[base.index('('):-1]}, precision={self.precision!r})"


def quantize(module, precision, calibration=None, calibration_lengths=None):
    """The Quantized module of `module` at `precision` ("int8" or "bfloat16"), int8's codes
    calibrated on `calibration` when given (fastlstm.layers._calibration)."""
    return Quantized(module, precision, calibration, calibration_lengths)
