"""OnnxRecurrent: one ONNX LSTM / GRU / RNN node, run by a fastlstm layer with the node's own
inputs and outputs (what fastlstm.from_onnx returns for each node).

ONNX shapes (D = 2 for direction="bidirectional", else 1; H = hidden_size):

    layout 0: X [T, B, I], Y [T, D, B, H], initial_h / initial_c / Y_h / Y_c [D, B, H]
    layout 1: X [B, T, I], Y [B, T, D, H], initial_h / initial_c / Y_h / Y_c [B, D, H]
    sequence_lens [B] integers in [0, T]

fastlstm's module (`.module`) keeps torch's layout instead: y (T, B, D*H) (or (B, T, D*H) with
batch_first=True, which layout 1 maps to) and states (D, B, H) whatever the layout.

The one place where ONNX Runtime and PyTorch disagree: a row of sequence_lens 0 ends with a
final state (Y_h, Y_c) of 0 in ONNX Runtime (every op and direction), and with its initial
state in PyTorch and fastlstm's modules. OnnxRecurrent reproduces ONNX Runtime (0), so that a
model gives what ONNX Runtime gives; `.module` keeps PyTorch's rule.
"""
import numpy as np

from .._checks import check_lengths
from .._validate import as_float_array


class OnnxRecurrent:
    """One LSTM / GRU / RNN node of an ONNX model, computed by `module` (a fastlstm LSTM, GRU
    or RNN of one layer holding the node's weights in torch's layout).

    Attributes:
        module: the fastlstm.LSTM / GRU / RNN (num_layers=1; bidirectional for direction
            "bidirectional", reverse=True for "reverse", batch_first=True for layout 1,
            peepholes=True when the node has P, bias=False when it has no B); for a
            DynamicQuantizeLSTM node the int8 Quantized LSTM (fastlstm.layers.quantized).
        name, op_type ("LSTM", "GRU", "RNN" or "DynamicQuantizeLSTM"), direction, layout
            (0 or 1).
        inputs, outputs: the node's input and output value names (tuples, "" for an
            omitted optional input).
        sequence_lens: the node's constant sequence_lens as an int array (B,), or None.
        initial_h, initial_c: the node's constant initial states in the node's layout
            ([D, B, H] or [B, D, H]), or None for zeros (the input absent, a constant of
            zeros, or a zero fill such as torch's ConstantOfShape shaped from X).
        runtime_inputs: the optional inputs ("sequence_lens", "initial_h", "initial_c") the
            node reads from run-time values that fastlstm cannot know (graph inputs or
            values computed from them, other than zero fills): pass them to the call.
    Anything else (state_dict, stream, to_onnx, hidden_size, ...) is the module's.
    """

    def __init__(self, module, *, name, op_type, direction, layout, inputs, outputs,
                 sequence_lens=None, initial_h=None, initial_c=None, runtime_inputs=()):
        self.module = module
        self.name = name
        self.op_type = op_type
        self.direction = direction
        self.layout = layout
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.sequence_lens = sequence_lens
        self.initial_h = initial_h
        self.initial_c = initial_c
        self.runtime_inputs = tuple(runtime_inputs)

    def __getattr__(self, name):
        module = self.__dict__.get("module")
        if module is None:
            raise AttributeError(name)
        return getattr(module, name)

    def __repr__(self):
        return (f"OnnxRecurrent(name={self.name!r}, op_type={self.op_type!r}, "
                f"direction={self.direction!r}, layout={self.layout}, module={self.module!r})")

    # ------------------------------------------------------------------ arguments
    def _pick(self, role, given, constant):
        """The caller's value, else the node's constant; a run-time input is required."""
        if given is not None:
            return given
        if role in self.runtime_inputs:
            raise ValueError(f"{role}: node {self.name!r} ({self.op_type}) reads {role} from "
                             f"the run-time value {self._input_name(role)!r}; pass {role}=")
        return constant

    def _input_name(self, role):
        index = {"sequence_lens": 4, "initial_h": 5, "initial_c": 6}[role]
        return self.inputs[index] if index < len(self.inputs) else ""

    def _state(self, role, value, B):
        """An initial state in the node's layout -> (D, B, n) for the module, or None."""
        if value is None:
            return None
        m = self.module
        arr = as_float_array(role, value, m.dtype)
        D, H = m.num_directions, m.hidden_size
        expected = (D, B, H) if self.layout == 0 else (B, D, H)
        if arr.shape != expected:
            spelled = "[D, B, H]" if self.layout == 0 else "[B, D, H]"
            raise ValueError(f"{role}: expected shape {spelled} = {expected} (layout "
                             f"{self.layout}), got {arr.shape}")
        return arr if self.layout == 0 else np.ascontiguousarray(arr.transpose(1, 0, 2))

    @staticmethod
    def _lengths(value, T, B):
        return check_lengths(value, T, B, False, name="sequence_lens")

    # ------------------------------------------------------------------ the node
    def __call__(self, X, sequence_lens=None, initial_h=None, initial_c=None):
        """The node's outputs, as the ONNX operator defines them.

        X: [T, B, I] (layout 0) or [B, T, I] (layout 1), of the module's dtype.
        sequence_lens: [B] integers in [0, T]; initial_h, initial_c: [D, B, H] (layout 0) or
        [B, D, H] (layout 1). None: the node's constant (see the attributes), or zeros and
        full lengths where the node has none; a run-time input of the node (runtime_inputs)
        must be given. A value given here replaces the node's constant.

        Returns (Y, Y_h, Y_c) for the LSTM, (Y, Y_h) otherwise: Y [T, D, B, H] (layout 0) or
        [B, T, D, H] (layout 1), 0 past each row's length; Y_h, Y_c [D, B, H] or [B, D, H],
        each row's state after its last valid step, and 0 for a row of length 0 (as ONNX
        Runtime; see the module docstring).
        """
        m = self.module
        if not isinstance(X, np.ndarray):
            X = as_float_array("X", X)
        if X.ndim != 3:
            spelled = "[T, B, I]" if self.layout == 0 else "[B, T, I]"
            raise ValueError(f"X: expected 3 dimensions {spelled} (layout {self.layout}), "
                             f"got shape {X.shape}")
        T, B = X.shape[:2] if self.layout == 0 else X.shape[1::-1]
        lengths = self._lengths(self._pick("sequence_lens", sequence_lens,
                                           self.sequence_lens), T, B)
        h0 = self._state("initial_h", self._pick("initial_h", initial_h, self.initial_h), B)
        is_lstm = self.op_type in ("LSTM", "DynamicQuantizeLSTM")
        if is_lstm:
            c0 = self._state("initial_c", self._pick("initial_c", initial_c,
                                                      self.initial_c), B)
            hx = None if h0 is None and c0 is None else (h0, c0)
        elif initial_c is not None:
            raise ValueError(f"initial_c: node {self.name!r} is a {self.op_type}, which has "
                             f"no cell state")
        else:
            hx = h0
        y, states = m(X, hx, lengths)
        states = states if is_lstm else (states,)

        D, H = m.num_directions, m.hidden_size
        if self.layout == 0:     # y (T, B, D*H) -> Y [T, D, B, H]
            Y = np.ascontiguousarray(y.reshape(T, B, D, H).transpose(0, 2, 1, 3))
        else:                    # y (B, T, D*H) -> Y [B, T, D, H]
            Y = y.reshape(B, T, D, H)
        outs = [Y]
        for s in states:         # (D, B, H)
            if lengths is not None:
                s[:, lengths == 0] = 0
            outs.append(s if self.layout == 0 else np.ascontiguousarray(s.transpose(1, 0, 2)))
        return tuple(outs)
