"""A fully connected layer, as torch.nn.Linear, with its backward pass.

    head = Linear(in_features, out_features, bias=True, *, dtype="float32", seed=None)
    y = head(x)                                   # x (..., in) -> y (..., out)
    y, tape = head.forward(x, return_tape=True)
    dx, grads = head.backward(tape, dy)           # grads: OrderedDict {"weight", "bias"}

The math (N = the number of rows, all leading axes of x flattened):

    y  = x Wᵀ + b                  W (out, in), b (out,), x (N, in), y (N, out)
    dx = dy W                      (N, in)
    dW = dyᵀ x                     (out, in)   summed over the N rows
    db = Σ_rows dy                 (out,)

Weights are drawn as torch.nn.Linear draws them: W and b from U(-1/sqrt(in), 1/sqrt(in)).
The parameters are NumPy arrays under torch's state_dict names ("weight", "bias"), so a
trained torch.nn.Linear loads as it is.
"""
from collections import OrderedDict

import numpy as np

from .._validate import as_float_array, check_flag, check_float_dtype, check_positive_int
from ..layers._params import check_state_dict


class LinearTape:
    """What Linear.backward needs from one forward call: the input x (the caller's array, not a
    copy: do not modify it in place before backward) and the weight used (the module's own
    array: run backward before an optimizer step changes it)."""

    __slots__ = ("x", "weight", "has_bias", "out_features")

    def __init__(self, x, weight, has_bias, out_features):
        self.x = x
        self.weight = weight
        self.has_bias = has_bias
        self.out_features = out_features

    def __repr__(self):
        return f"<fastlstm Linear tape x{self.x.shape} -> out {self.out_features}>"


class Linear:
    """y = x Wᵀ + b over the last axis of x, as torch.nn.Linear.

    Arguments: in_features, out_features (positive ints), bias (add b, default True),
    dtype ("float32" or "float64": the parameters' dtype; x must have it too), seed (None or an
    int: the numpy Generator that draws the initial weights).

    Parameters: weight (out_features, in_features), bias (out_features,) (absent with
    bias=False, as in torch's state_dict).
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype="float32", seed=None):
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self.has_bias = check_flag("bias", bias)
        self.dtype = check_float_dtype(dtype)
        try:
            rng = np.random.default_rng(seed)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"seed: expected None or a non-negative integer, got {seed!r}") \
                from exc
        self.training = True
        bound = 1.0 / np.sqrt(self.in_features)     # torch: kaiming_uniform_(a=sqrt(5))
        self._params = OrderedDict()
        self._params["weight"] = rng.uniform(
            -bound, bound, size=self._shapes()["weight"]).astype(self.dtype)
        if self.has_bias:
            self._params["bias"] = rng.uniform(-bound, bound,
                                               size=(self.out_features,)).astype(self.dtype)

    def _shapes(self):
        shapes = OrderedDict(weight=(self.out_features, self.in_features))
        if self.has_bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    # ---------------------------------------------------------------- parameters and modes
    @property
    def weight(self):
        """W (out_features, in_features): the module's own array."""
        return self._params["weight"]

    @property
    def bias(self):
        """b (out_features,): the module's own array, or None with bias=False."""
        return self._params.get("bias")

    def state_dict(self):
        """OrderedDict {"weight": copy of W, "bias": copy of b} (no "bias" with bias=False)."""
        return OrderedDict((k, v.copy()) for k, v in self._params.items())

    def load_state_dict(self, state_dict):
        """Load "weight" and "bias" (NumPy arrays or torch tensors), converted to the module's
        dtype. A missing or unexpected key is a KeyError, a wrong shape a ValueError, a value
        that is not a float array a TypeError, each naming the key; on error nothing changes.
        Returns self."""
        self._params = check_state_dict(state_dict, self._shapes(), self.dtype)
        return self

    def parameters(self):
        """[W, b]: the module's own arrays (an optimizer updates them in place)."""
        return list(self._params.values())

    def named_parameters(self):
        """OrderedDict {"weight": W, "bias": b}: the module's own arrays, not copies."""
        return OrderedDict(self._params)

    def train(self, mode=True):
        """No effect (a Linear layer behaves the same in training and inference); returns
        self, so that a model's train() / eval() can call it on every part."""
        self.training = check_flag("mode", mode)
        return self

    def eval(self):
        """No effect (see train); returns self."""
        return self.train(False)

    def __repr__(self):
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.has_bias}, dtype={self.dtype.name})")

    # ---------------------------------------------------------------- forward and backward
    def __call__(self, x):
        """y = x Wᵀ + b; see forward."""
        return self.forward(x)

    def forward(self, x, return_tape=False):
        """x (..., in_features) of the module's dtype -> y (..., out_features), a new array;
        with return_tape=True also the tape for backward. A wrong dtype is a TypeError, a
        wrong last axis a ValueError, both naming x."""
        return_tape = check_flag("return_tape", return_tape)
        x = as_float_array("x", x)
        if x.dtype != self.dtype:
            raise TypeError(f"x: dtype {x.dtype} differs from the module's dtype {self.dtype}; "
                            f"convert x or build the Linear with dtype={x.dtype}")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected shape (..., in_features) = (..., "
                             f"{self.in_features}), got {x.shape}")
        W = self._params["weight"]
        y = x @ W.T                                   # (..., out)
        if self.has_bias:
            y += self._params["bias"]
        if not return_tape:
            return y
        return y, LinearTape(x, W, self.has_bias, self.out_features)

    def backward(self, tape, dy):
        """dy (..., out_features), shaped like forward's y -> (dx, grads).

        dx (..., in_features) like x; grads OrderedDict {"weight": dW (out, in),
        "bias": db (out,)} (no "bias" with bias=False), keyed like state_dict().
        """
        if not isinstance(tape, LinearTape):
            raise TypeError(f"tape: expected the tape from Linear.forward(..., "
                            f"return_tape=True), got {type(tape).__name__}")
        if tape.weight.shape != (self.out_features, self.in_features) \
                or tape.has_bias != self.has_bias:
            raise ValueError("tape: made by a Linear of another configuration")
        dy = as_float_array("dy", dy, self.dtype)
        expected = tape.x.shape[:-1] + (self.out_features,)
        if dy.shape != expected:
            raise ValueError(f"dy: expected shape (..., out_features) = {expected} (like y), "
                             f"got {dy.shape}")
        x2 = tape.x.reshape(-1, self.in_features)     # (N, in)
        dy2 = dy.reshape(-1, self.out_features)       # (N, out)
        dx = dy @ tape.weight                          # (..., in)
        grads = OrderedDict()
        grads["weight"] = dy2.T @ x2                   # (out, in)
        if self.has_bias:
            grads["bias"] = dy2.sum(axis=0)            # (out,)
        return dx, grads
