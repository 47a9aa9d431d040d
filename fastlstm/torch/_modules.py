"""fastlstm.torch.LSTM, GRU and RNN: torch.nn.LSTM / GRU / RNN whose forward and backward run
in fastlstm's kernels.

Each class subclasses its torch.nn twin, so the constructor (arguments, defaults, `device` and
`dtype`, argument errors), the parameters (nn.Parameter, torch's names, shapes and
U(-1/sqrt(H), 1/sqrt(H)) initialisation, drawn from torch's generator exactly as torch.nn
draws them), state_dict, repr, `isinstance(m, torch.nn.LSTM)` and everything else but
`forward` are torch.nn's own. Only `forward` changes:

    output, (h_n, c_n) = lstm(input, hx=None)      # hx = (h_0, c_0)
    output, h_n = gru(input, hx=None)              # and rnn(input, hx=None)

with torch.nn's shapes (D = 2 if bidirectional else 1, L = num_layers, H_out = proj_size or
hidden_size): input (T, B, I), (B, T, I) with batch_first, (T, I) unbatched, or a
PackedSequence; output (T, B, D*H_out), (B, T, D*H_out), (T, D*H_out) or a PackedSequence;
h_0, h_n (L*D, B, H_out), c_0, c_n (L*D, B, H) ((L*D, H_out), (L*D, H) unbatched).

What runs in fastlstm: CPU tensors of dtype float32 or float64 (input, states and weights
of one dtype), outside autocast. Anything else (another device, float16 / bfloat16, autocast)
runs torch.nn's own forward when `module.torch_fallback` is True (the default) and is a
RuntimeError naming the reason when it is False. Under torch.no_grad / inference_mode, or when
no input, state or weight requires grad, the forward keeps no tape.

Dropout (training mode, dropout > 0, num_layers > 1) uses fastlstm's masks, drawn from a
NumPy generator seeded from torch's global generator (so torch.manual_seed makes them
reproducible) but not the masks torch.nn draws: with dropout = 0 or in eval mode the results
are torch.nn's (to floating-point rounding).

The kernels run on torch.get_num_threads() threads, unless the call is inside a
`fastlstm.threads(n)` block.
"""
import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ._function import StackCall, StackConfig, StackFunction, run_forward

_FLOATS = (torch.float32, torch.float64)


def _autocast_on():
    check = getattr(torch._C, "_is_any_autocast_enabled", None)
    return bool(check()) if check is not None else torch.is_autocast_enabled()


def _unsupported(data, states, weights):
    """Why fastlstm cannot run these tensors (a short phrase), or None when it can."""
    dtype = data.dtype
    for t in (data, *states, *weights):
        if t is None:
            continue
        if t.layout != torch.strided:
            return f"a tensor of layout {t.layout}"
        if t.device.type != "cpu":
            return f"a tensor on device {t.device}"
        if t.dtype not in _FLOATS:
            return f"dtype {t.dtype}"
        if t.dtype != dtype:
            return f"tensors of dtypes {dtype} and {t.dtype} in one call"
    if _autocast_on():
        return "autocast enabled"
    return None


class _FastlstmForward:
    """The forward shared by the three classes (mixed in before the torch.nn class)."""

    #: inputs fastlstm cannot run (not CPU, not float32/float64, autocast): True runs
    #: torch.nn's forward for them, False raises a RuntimeError
    torch_fallback = True
    #: fastlstm's backend: "auto", "cython", "numba" or "numpy"
    fastlstm_backend = "auto"

    def forward(self, input, hx=None):
        """torch.nn's forward (see the module docstring), computed by fastlstm."""
        self._update_flat_weights()
        packed = isinstance(input, PackedSequence)
        data = input.data if packed else input
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"{type(self).__name__}: expected input to be a torch.Tensor or "
                            f"a PackedSequence, got {type(data).__name__}")
        is_lstm = self.mode == "LSTM"
        if is_lstm and hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"LSTM: expected hx to be None or a tuple (h_0, c_0), got "
                            f"{type(hx).__name__}")
        states = (tuple(hx) if is_lstm else (hx,)) if hx is not None else ()
        weights = self._flat_weights
        reason = _unsupported(data, states, weights)
        if reason is not None:
            if self.torch_fallback:
                return super().forward(input, hx)
            raise RuntimeError(
                f"fastlstm.torch.{type(self).__name__} runs CPU tensors of dtype float32 or "
                f"float64 only, got {reason}; move the model and its inputs to the CPU "
                f"(.cpu(), .float()), or set module.torch_fallback = True to run such inputs "
                f"with torch.nn's implementation")
        if packed:
            return self._forward_packed(input, hx, weights)
        return self._forward_padded(input, hx, weights)

    # ------------------------------------------------------------------------------------
    def _forward_padded(self, input, hx, weights):
        name = type(self).__name__
        is_lstm = self.mode == "LSTM"
        if input.dim() not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D "
                             f"tensor instead")
        batched = input.dim() == 3
        if hx is not None:
            hs = hx if is_lstm else (hx,)
            want = 3 if batched else 2
            if any(h.dim() != want for h in hs):
                got = ", ".join(f"{h.dim()}-D" for h in hs)
                raise RuntimeError(f"For {'batched 3-D' if batched else 'unbatched 2-D'} "
                                   f"input, hx{' and cx' if is_lstm else ''} should also be "
                                   f"{want}-D but got ({got}) tensor{'s' if is_lstm else ''}")
        # torch's own size checks (input_size, the states' shapes), on (T, B, .) views
        checked = input if batched else input.unsqueeze(0 if self.batch_first else 1)
        if hx is None:
            self.check_input(checked, None)
        else:
            hx_checked = hx if batched else (
                tuple(h.unsqueeze(1) for h in hx) if is_lstm else hx.unsqueeze(1))
            self.check_forward_args(checked, hx_checked, None)
        layout = ("bti" if self.batch_first else "tbi") if batched else "ti"
        call = self._make_call(layout)
        y, h_n, c_n = self._run(call, input, hx, weights)
        return y, ((h_n, c_n) if is_lstm else h_n)

    def _forward_packed(self, input, hx, weights):
        data, batch_sizes, sorted_indices, unsorted_indices = input
        is_lstm = self.mode == "LSTM"
        self.check_input(data, batch_sizes)
        if hx is not None:
            self.check_forward_args(data, hx, batch_sizes)
            hx = self.permute_hidden(hx, sorted_indices)
        sizes = batch_sizes.numpy()                       # (T,), decreasing
        T, B = len(sizes), int(sizes[0]) if len(sizes) else 0
        mask = np.arange(B)[None, :] < sizes[:, None]     # (T, B): step t of sorted row b
        lengths = mask.sum(axis=0)
        call = self._make_call("packed", mask=mask, lengths=lengths, T=T, B=B)
        y, h_n, c_n = self._run(call, data, hx, weights)
        hidden = self.permute_hidden((h_n, c_n) if is_lstm else h_n, unsorted_indices)
        return PackedSequence(y, batch_sizes, sorted_indices, unsorted_indices), hidden

    def _make_call(self, layout, **packed):
        dropout_rng = None
        if self.training and self.dropout > 0 and self.num_layers > 1:
            seed = int(torch.randint(0, 2 ** 62, (), dtype=torch.int64).item())
            dropout_rng = np.random.default_rng(seed)
        return StackCall(StackConfig(self, self.fastlstm_backend), self._flat_weights_names,
                         layout, dropout_rng=dropout_rng, threads=torch.get_num_threads(),
                         **packed)

    @staticmethod
    def _run(call, x, hx, weights):
        """y, h_n, c_n (None unless LSTM): through the autograd Function when a gradient is
        wanted, else straight to fastlstm without a tape."""
        if hx is None:
            h0 = c0 = None
        elif call.cfg.kind == "lstm":
            h0, c0 = hx
        else:
            h0, c0 = hx, None
        if torch.is_grad_enabled() and any(
                t is not None and t.requires_grad for t in (x, h0, c0, *weights)):
            return StackFunction.apply(call, x, h0, c0, *weights)
        return run_forward(call, x, h0, c0, weights)


class LSTM(_FastlstmForward, nn.LSTM):
    """torch.nn.LSTM (same constructor, parameters and results) computed by fastlstm.

    LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, proj_size=0, device=None, dtype=None);
    output, (h_n, c_n) = lstm(input, (h_0, c_0)) with the shapes of the module docstring.
    """


class GRU(_FastlstmForward, nn.GRU):
    """torch.nn.GRU (same constructor, parameters and results) computed by fastlstm.

    GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, device=None, dtype=None); output, h_n = gru(input, h_0).
    """


class RNN(_FastlstmForward, nn.RNN):
    """torch.nn.RNN (same constructor, parameters and results) computed by fastlstm.

    RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None);
    output, h_n = rnn(input, h_0).
    """


#: torch.nn class -> its fastlstm.torch twin
TWINS = {nn.LSTM: LSTM, nn.GRU: GRU, nn.RNN: RNN}
