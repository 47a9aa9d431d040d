"""The public layer classes fastlstm.LSTM, GRU and RNN (SPEC.md section 8), as torch.nn's.

    m = fastlstm.LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                      dropout=0.0, bidirectional=False, proj_size=0, *, peepholes=False,
                      reverse=False, dtype="float32", seed=None, backend="auto")
    y, (h_n, c_n) = m(x, hx=None, lengths=None)            # GRU, RNN: y, h_n
    y, hx, tape = m.forward(x, hx, lengths, return_tape=True)
    dx, dhx, grads = m.backward(tape, dy=None, dhx=None)   # grads keyed like state_dict()
    _, dhx, grads = m.backward(tape, dy, input_grad=False)  # dx not computed (None)

Shapes (D = 2 if bidirectional else 1, L = num_layers, H_out = proj_size or hidden_size):
    x (T, B, I), (B, T, I) with batch_first, or (T, I) unbatched
    y (T, B, D*H_out), (B, T, D*H_out) with batch_first, or (T, D*H_out) unbatched
    h0, h_n (L*D, B, H_out); c0, c_n (L*D, B, H) (LSTM); (L*D, H_out), (L*D, H) unbatched.
    batch_first applies to x and y only, never to the states (as torch).
Parameters are NumPy arrays of `dtype` under torch's state_dict names and gate layouts.

Two options beyond torch.nn, for models that come from ONNX (fastlstm.from_onnx) and go back
to it (m.to_onnx): peepholes=True (LSTM) adds weight_peephole_l{l}{sfx} (3, H), rows p_i, p_f,
p_o (SPEC.md section 4); reverse=True runs every layer of a unidirectional stack from each
row's last valid step down to step 0 (ONNX direction="reverse"; fastlstm.forward's reverse).
torch.nn has neither: m.to_torch() refuses them.
"""
import numbers
from collections import OrderedDict

import numpy as np

from .._backends import available_backends
from .._checks import check_lengths, check_nonlinearity, check_x
from .._validate import (as_float_array, check_flag, check_float_dtype, check_positive_int,
                         check_shape)
from ._packing import PackCache
from ._params import check_state_dict, init_params, param_shapes
from ._stack import StackTape, stack_backward, stack_forward

#: state_dict name (without _l{layer}{suffix}) -> field of fastlstm.Gradients
_GRAD_FIELDS = {"weight_ih": "w_ih", "weight_hh": "w_hh", "bias_ih": "b_ih", "bias_hh": "b_hh",
                "weight_hr": "w_hr", "weight_peephole": "peepholes"}


#: how the errors spell a stack's state shapes: (cell state, unbatched) -> shape
_STATE_SHAPES_SPELLED = {(False, False): "(L*D, B, H_out)", (True, False): "(L*D, B, H)",
                         (False, True): "(L*D, H_out)", (True, True): "(L*D, H)"}


class _StackBase:
    """A stack of num_layers layers, each one or two directions (torch.nn.RNNBase)."""

    kind = None            # "lstm", "gru" or "rnn"
    linear_before_reset = True
    nonlinearity = "tanh"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, *, peepholes=False,
                 reverse=False, dtype="float32", seed=None, backend="auto"):
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.bias = check_flag("bias", bias)
        self.batch_first = check_flag("batch_first", batch_first)
        self.bidirectional = check_flag("bidirectional", bidirectional)
        if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, numbers.Real) \
                or not 0 <= dropout < 1:
            raise ValueError(f"dropout: expected a number in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        if isinstance(proj_size, (bool, np.bool_)) or not isinstance(proj_size, numbers.Integral) \
                or proj_size < 0:
            raise ValueError(f"proj_size: expected an integer >= 0, got {proj_size!r}")
        if proj_size and self.kind != "lstm":
            raise ValueError(f"proj_size: only the LSTM has a projection, got {proj_size!r}")
        if proj_size >= self.hidden_size:
            raise ValueError(f"proj_size: expected proj_size < hidden_size = "
                             f"{self.hidden_size}, got {proj_size!r}")
        self.proj_size = int(proj_size)
        self.peepholes = check_flag("peepholes", peepholes)
        if self.peepholes and self.kind != "lstm":
            raise ValueError("peepholes: only the LSTM has peepholes, got True")
        self.reverse = check_flag("reverse", reverse)
        if self.reverse and self.bidirectional:
            raise ValueError("reverse: a bidirectional stack already runs both directions; "
                             "reverse=True is for unidirectional stacks, got "
                             "bidirectional=True")
        self.dtype = check_float_dtype(dtype)
        if not isinstance(backend, str) or backend not in ("auto",) + available_backends():
            raise ValueError(f"backend: unknown or unavailable backend {backend!r}; available: "
                             f"{', '.join(map(repr, available_backends()))} or 'auto'")
        self.backend = backend
        try:
            self._rng = np.random.default_rng(seed)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"seed: expected None or a non-negative integer, got {seed!r}") \
                from exc
        self.training = True
        self._shapes = param_shapes(self.kind, self.input_size, self.hidden_size,
                                    self.num_layers, self.bias, self.bidirectional,
                                    self.proj_size, self.peepholes)
        self._params = init_params(self._shapes, self.hidden_size, self.dtype, self._rng)
        # packed weights kept across calls (fastlstm/layers/_packing.py): the generation is
        # bumped by every path that replaces or hands out the parameter arrays; _exposed:
        # they have been handed out, so calls also compare them with the packed copies
        self._generation = 0
        self._exposed = False
        self._packs = PackCache()

    # ---------------------------------------------------------------- parameters and modes
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """H_out: proj_size if proj_size > 0 else hidden_size (y has D * H_out features)."""
        return self.proj_size or self.hidden_size

    def __getattr__(self, name):   # m.weight_ih_l0 etc., as torch (read-only views)
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            view = params[name].view()
            view.flags.writeable = False
            return view
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def state_dict(self):
        """OrderedDict {torch's key: a copy of the parameter}, in torch's key order."""
        return OrderedDict((k, v.copy()) for k, v in self._params.items())

    def load_state_dict(self, state_dict):
        """Load parameters (NumPy arrays or torch tensors, torch's names and layouts, no
        reordering), converted to the module's dtype. Checks every key first: a missing or
        unexpected key is a KeyError, a wrong shape a ValueError, a non-float value a
        TypeError; the module is unchanged on error. Returns self."""
        self._params = check_state_dict(state_dict, self._shapes, self.dtype)
        self._generation += 1
        self._exposed = False    # new arrays: nobody else holds them
        self._packs.clear()
        return self

    def parameters(self):
        """The parameter arrays (the module's own, not copies), in state_dict order."""
        self._hand_out()
        return list(self._params.values())

    def named_parameters(self):
        """OrderedDict {state_dict key: the module's own parameter array} (not copies: an
        optimizer updates them in place)."""
        self._hand_out()
        return OrderedDict(self._params)

    def _hand_out(self):
        """The caller gets the module's own arrays and may write them at any time: the
        packed weights are remade, and checked against the arrays at every call from now on
        (fastlstm/layers/_packing.py)."""
        self._generation += 1
        self._exposed = True

    def _packed_layer(self, layer, sfx):
        """The PackedLayer of one layer and direction (stack_forward asks for it)."""
        return self._packs.layer(self, layer, sfx)

    def stream(self, batch_size=1):
        """A Stream (fastlstm.layers.stream): step-by-step inference from a private copy of
        the current weights, the state held between calls. Bidirectional stacks cannot
        stream (ValueError)."""
        from .stream import Stream

        return Stream(self, batch_size)

    def quantize(self, precision, calibration=None, calibration_lengths=None):
        """A new inference-only module at reduced precision, "int8" or "bfloat16", called as
        this one in eval mode (fastlstm.layers.quantized; the math: SPEC.md section 8 and
        fastlstm/reference/quantized.py). int8 with calibration (an input x in this module's
        layout, and its lengths or None): the codes are chosen for the inputs the weights
        meet on it (calibrated rounding). This module is left as it is."""
        from .quantized import quantize

        return quantize(self, precision, calibration, calibration_lengths)

    def to_torch(self):
        """The torch.nn.LSTM / GRU / RNN with this module's configuration and a copy of its
        weights (fastlstm.interop; imports torch). Options torch.nn lacks (peepholes,
        reverse, a reset-before GRU) are a ValueError."""
        from ..interop.torch_models import to_torch

        return to_torch(self)

    def to_onnx(self, path, **options):
        """Write this module as standard ONNX LSTM / GRU / RNN nodes to `path` (a chain of
        nodes for a stack, one bidirectional node per layer; lengths as sequence_lens);
        see fastlstm.interop.onnx_export.to_onnx for the options. A projection LSTM
        (proj_size > 0), which ONNX cannot express, is a ValueError. Imports onnx."""
        from ..interop.onnx_export import to_onnx

        return to_onnx(self, path, **options)

    def train(self, mode=True):
        """Training mode (the default): dropout between layers when dropout > 0."""
        self.training = check_flag("mode", mode)
        return self

    def eval(self):
        """Inference mode: no dropout."""
        return self.train(False)

    def __repr__(self):
        extra = ""
        if self.num_layers != 1:
            extra += f", num_layers={self.num_layers}"
        if not self.bias:
            extra += ", bias=False"
        if self.batch_first:
            extra += ", batch_first=True"
        if self.dropout:
            extra += f", dropout={self.dropout}"
        if self.bidirectional:
            extra += ", bidirectional=True"
        if self.proj_size:
            extra += f", proj_size={self.proj_size}"
        if self.peepholes:
            extra += ", peepholes=True"
        if self.reverse:
            extra += ", reverse=True"
        if self.kind == "rnn" and self.nonlinearity != "tanh":
            extra += f", nonlinearity={self.nonlinearity!r}"
        if self.kind == "gru" and not self.linear_before_reset:
            extra += ", linear_before_reset=False"
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, "
                f"dtype={self.dtype.name})")

    # ---------------------------------------------------------------- argument checks
    def _check_states(self, value, names, B, unbatched):
        """(h, c) for the LSTM, or (h,): each None or checked, as (L*D, B, n) arrays."""
        out = []
        LD = self.num_layers * self.num_directions
        for name, cell, v in zip(names, (False, True), value):
            if v is None:
                out.append(None)
                continue
            arr = as_float_array(name, v, self.dtype)
            n = self.hidden_size if cell else self.output_size
            check_shape(name, arr, (LD, n) if unbatched else (LD, B, n),
                        _STATE_SHAPES_SPELLED[cell, unbatched])
            out.append(arr[:, None, :] if unbatched else arr)
        return out

    def _split_hx(self, hx, names):
        """hx -> (h, c) for the LSTM (a tuple of two), (h, None) otherwise."""
        if self.kind != "lstm":
            return hx, None
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"{names}: expected None or a tuple ({names}[0], {names}[1]) for "
                            f"the LSTM, got {type(hx).__name__}")
        return hx[0], hx[1]

    # ---------------------------------------------------------------- forward and backward
    def __call__(self, x, hx=None, lengths=None):
        """y, (h_n, c_n) for the LSTM; y, h_n for the GRU and RNN (see forward)."""
        return self.forward(x, hx, lengths)

    def forward(self, x, hx=None, lengths=None, return_tape=False):
        """Run the stack over x. x (T, B, I) ((B, T, I) batch_first, (T, I) unbatched), of the
        module's dtype; hx: the initial states, None for zeros, for the LSTM a tuple (h0, c0),
        h0 (L*D, B, H_out), c0 (L*D, B, H) ((L*D, n) unbatched); lengths (B,) integers in
        [0, T] as in fastlstm.forward.

        Returns y, hx_n: y (T, B, D*H_out) in x's layout, hx_n = (h_n, c_n) for the LSTM, h_n
        otherwise, shaped like hx; with return_tape=True also the tape for backward.
        In training mode with dropout > 0 each layer's output but the last is multiplied by an
        inverted-dropout mask drawn from the module's Generator (kept in the tape).
        """
        return_tape = check_flag("return_tape", return_tape)
        x, unbatched, (T, B, I) = check_x(x, self.batch_first)
        if x.dtype != self.dtype:
            raise TypeError(f"x: dtype {x.dtype} differs from the module's dtype "
                            f"{self.dtype}; convert x or build the module with dtype={x.dtype}")
        if I != self.input_size:
            raise ValueError(f"x: expected input size (last axis) input_size = "
                             f"{self.input_size}, got shape {x.shape}")
        h0, c0 = self._split_hx(hx, "hx")
        names = ("hx[0] (h0)", "hx[1] (c0)") if self.kind == "lstm" else ("hx",)
        h0, c0 = (self._check_states((h0, c0), names, B, unbatched) + [None])[:2]
        lengths = check_lengths(lengths, T, B, unbatched)
        if unbatched:
            x_tm = x[:, None, :]
        else:
            x_tm = x.transpose(1, 0, 2) if self.batch_first else x
        use_dropout = self.training and self.dropout > 0 and self.num_layers > 1
        y, h_n, c_n, (tapes, masks, parallel) = stack_forward(
            self, self._params, x_tm, h0, c0, lengths, self._rng if use_dropout else None,
            return_tape)
        if unbatched:
            y, h_n = y[:, 0, :], h_n[:, 0, :]
            c_n = None if c_n is None else c_n[:, 0, :]
        elif self.batch_first:
            y = np.ascontiguousarray(y.transpose(1, 0, 2))
        hx_n = (h_n, c_n) if self.kind == "lstm" else h_n
        if not return_tape:
            return y, hx_n
        tape = StackTape(kind=self.kind, tapes=tapes, masks=masks, batch_first=self.batch_first,
                         unbatched=unbatched, x_shape=x.shape, T=T, B=B, H=self.hidden_size,
                         H_out=self.output_size, num_layers=self.num_layers,
                         D=self.num_directions, dtype=self.dtype, parallel=parallel)
        return y, hx_n, tape

    def backward(self, tape, dy=None, dhx=None, *, input_grad=True):
        """Back-propagate through the forward call that made `tape` (with the weights and
        dropout masks of that call).

        dy: like forward's y; dhx: like its hx_n (for the LSTM a tuple (dh_n, dc_n), either may
        be None); None means zeros; input_grad=False: dx is not computed (None), which saves
        the first layer's input product. Returns dx (like x), dhx0 (the gradient with respect to
        the initial states, like hx; for the LSTM a tuple (dh0, dc0); given even when forward
        had hx=None) and grads: OrderedDict {state_dict key: gradient}.
        """
        if not isinstance(tape, StackTape) or tape.kind != self.kind:
            raise TypeError(f"tape: expected the tape from {type(self).__name__}.forward(..., "
                            f"return_tape=True), got {type(tape).__name__}")
        if tape.num_layers != self.num_layers or tape.D != self.num_directions \
                or tape.H != self.hidden_size or tape.H_out != self.output_size:
            raise ValueError("tape: made by a module of another configuration")
        T, B, unbatched = tape.T, tape.B, tape.unbatched
        DH = tape.D * tape.H_out
        if dy is not None:
            dy = as_float_array("dy", dy, self.dtype)
            if unbatched:
                check_shape("dy", dy, (T, DH), "(T, D*H_out)")
                dy = dy[:, None, :]
            elif tape.batch_first:
                check_shape("dy", dy, (B, T, DH), "(B, T, D*H_out)")
                dy = dy.transpose(1, 0, 2)
            else:
                check_shape("dy", dy, (T, B, DH), "(T, B, D*H_out)")
        dh_n, dc_n = self._split_hx(dhx, "dhx")
        names = ("dhx[0] (dh_n)", "dhx[1] (dc_n)") if self.kind == "lstm" else ("dhx",)
        dh_n, dc_n = (self._check_states((dh_n, dc_n), names, B, unbatched) + [None])[:2]

        input_grad = check_flag("input_grad", input_grad)
        dx, dh0, dc0, layer_grads = stack_backward(tape, dy, dh_n, dc_n, input_grad)
        if unbatched:
            dx = None if dx is None else dx[:, 0, :]
            dh0 = dh0[:, 0, :]
            dc0 = None if dc0 is None else dc0[:, 0, :]
        elif tape.batch_first and dx is not None:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        grads = OrderedDict()
        for key in self._shapes:
            base, rest = key.rsplit("_l", 1)
            layer = int(rest.split("_")[0])
            d = 1 if rest.endswith("_reverse") else 0
            g = layer_grads[layer * self.num_directions + d]
            grads[key] = getattr(g, _GRAD_FIELDS[base])
        return dx, ((dh0, dc0) if self.kind == "lstm" else dh0), grads


class LSTM(_StackBase):
    """A stack of LSTM layers as torch.nn.LSTM (gate order i, f, g, o; proj_size as torch).

    Arguments and shapes: see the module docstring. Returns y, (h_n, c_n).
    """

    kind = "lstm"


class GRU(_StackBase):
    """A stack of GRU layers as torch.nn.GRU (gate order r, z, n).

    linear_before_reset=True is torch's cell; False is the reset-before GRU of Keras
    (reset_after=False) and ONNX's default. No proj_size. Returns y, h_n.
    """

    kind = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, linear_before_reset=True,
                 reverse=False, dtype="float32", seed=None, backend="auto"):
        self.linear_before_reset = check_flag("linear_before_reset", linear_before_reset)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, reverse=reverse, dtype=dtype, seed=seed,
                         backend=backend)


class RNN(_StackBase):
    """A stack of plain RNN layers as torch.nn.RNN, h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)
    with act = nonlinearity ("tanh" or "relu"). No proj_size. Returns y, h_n."""

    kind = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *, reverse=False,
                 dtype="float32", seed=None, backend="auto"):
        self.nonlinearity = check_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, reverse=reverse, dtype=dtype, seed=seed,
                         backend=backend)


__all__ = ["LSTM", "GRU", "RNN"]
