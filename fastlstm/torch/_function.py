"""The bridge between torch tensors and fastlstm's stack forward / backward.

A call is described by a `StackCall` (everything that is not a tensor: the configuration of
the stack, the layout of the input, the lengths of a packed batch, the dropout generator).
`run_forward` runs it without autograd (inference: no tape is kept); `StackFunction` is the
torch.autograd.Function that runs it with a tape and back-propagates through fastlstm's
kernels.

Layouts of the input tensor x (D = 2 if bidirectional else 1, L = num_layers,
H_out = proj_size or hidden_size) and of the output y, as torch.nn returns it:

    "tbi"     x (T, B, I)             y (T, B, D*H_out)
    "bti"     x (B, T, I)             y (B, T, D*H_out)   (batch_first; a transposed view, as torch)
    "ti"      x (T, I)  (unbatched)   y (T, D*H_out)
    "packed"  x (N, I)  the data of a PackedSequence (N = sum of the lengths, time-major, rows
              sorted by length, longest first), y (N, D*H_out) the data of the output's.

States: h0, h_n (L*D, B, H_out) and c0, c_n (L*D, B, H) (LSTM); (L*D, H_out), (L*D, H)
unbatched; for a packed batch in its sorted row order (the module permutes them).

Tensors become NumPy arrays with `tensor.detach().numpy()` (no copy; any strides) and results
become tensors with `torch.from_numpy` (no copy). fastlstm's single-layer functions copy what
they keep on the tape (the input in loop order and the weights), so an optimizer step that
changes the parameters in place after the forward does not change what backward uses.
"""
import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .._threads import _threads as _threads_var
from ..layers._stack import StackTape, stack_backward, stack_forward

#: state_dict name without "_l{layer}{suffix}" -> field of fastlstm.Gradients
_GRAD_FIELDS = {"weight_ih": "w_ih", "weight_hh": "w_hh", "bias_ih": "b_ih", "bias_hh": "b_hh",
                "weight_hr": "w_hr"}


class StackConfig:
    """What fastlstm.layers._stack.stack_forward reads from its `cfg` argument, taken from a
    torch.nn.LSTM / GRU / RNN (mode, sizes, options, training flag)."""

    __slots__ = ("kind", "num_layers", "bidirectional", "reverse", "bias", "proj_size",
                 "hidden_size", "dropout", "training", "backend", "linear_before_reset",
                 "nonlinearity")

    def __init__(self, module, backend):
        mode = module.mode
        self.kind = "lstm" if mode == "LSTM" else ("gru" if mode == "GRU" else "rnn")
        self.nonlinearity = "relu" if mode == "RNN_RELU" else "tanh"
        self.linear_before_reset = True          # torch.nn.GRU's cell
        self.reverse = False
        self.num_layers = module.num_layers
        self.bidirectional = bool(module.bidirectional)
        self.bias = bool(module.bias)
        self.proj_size = int(getattr(module, "proj_size", 0))
        self.hidden_size = module.hidden_size
        self.dropout = float(module.dropout)
        self.training = bool(module.training)
        self.backend = backend


class StackCall:
    """The non-tensor arguments of one call.

    cfg: StackConfig; names: the parameter names, in the order the weight tensors are given;
    layout: "tbi", "bti", "ti" or "packed"; mask (T, B) bool and lengths (B,) int64 for
    "packed" (mask[t, b]: step t of sorted row b holds data; the packed rows are mask's True
    entries in C order), else None; T, B: the padded sizes for "packed"; dropout_rng: a
    numpy Generator for the dropout masks, or None for no dropout; threads: the kernels'
    thread count.
    """

    __slots__ = ("cfg", "names", "layout", "mask", "lengths", "T", "B", "dropout_rng",
                 "threads")

    def __init__(self, cfg, names, layout, mask=None, lengths=None, T=None, B=None,
                 dropout_rng=None, threads=None):
        self.cfg, self.names, self.layout = cfg, names, layout
        self.mask, self.lengths, self.T, self.B = mask, lengths, T, B
        self.dropout_rng, self.threads = dropout_rng, threads


class _ThreadScope:
    """Within the block, fastlstm's kernels use `n` threads unless a fastlstm.threads(...)
    block already chose a count (sets only fastlstm's context variable: no threadpoolctl
    call, so it costs nothing per call)."""

    __slots__ = ("n", "token")

    def __init__(self, n):
        self.n, self.token = n, None

    def __enter__(self):
        if self.n is not None and _threads_var.get() is None:
            self.token = _threads_var.set(self.n)

    def __exit__(self, *exc):
        if self.token is not None:
            _threads_var.reset(self.token)
            self.token = None


def as_array(t):
    """A CPU tensor as a NumPy array sharing its memory (None stays None)."""
    if t is None:
        return None
    t = t.detach()
    if t.is_neg():          # autograd may hand a lazily negated view (`-grad`)
        t = t.resolve_neg()
    return t.numpy()


def as_tensor(a):
    """A NumPy array as a tensor sharing its memory (None stays None)."""
    return None if a is None else torch.from_numpy(a)


def _to_time_major(call, a):
    """An input-like array in the call's layout -> (T, B, n), a view unless packed."""
    if call.layout == "tbi":
        return a
    if call.layout == "bti":
        return a.transpose(1, 0, 2)
    if call.layout == "ti":
        return a[:, None, :]
    out = np.zeros((call.T, call.B, a.shape[-1]), dtype=a.dtype)
    out[call.mask] = a
    return out


def _from_time_major(call, a):
    """(T, B, n) -> the call's layout (a view, or the packed rows)."""
    if call.layout == "tbi":
        return a
    if call.layout == "bti":
        return a.transpose(1, 0, 2)
    if call.layout == "ti":
        return a[:, 0, :]
    return a[call.mask]


def _states_in(call, h0, c0):
    """The initial states as (L*D, B, n) arrays (or None)."""
    if call.layout == "ti":
        return (None if h0 is None else h0[:, None, :]), (None if c0 is None else c0[:, None, :])
    return h0, c0


def _states_out(call, a):
    return a if a is None or call.layout != "ti" else a[:, 0, :]


def _forward_arrays(call, x, h0, c0, weights, return_tape):
    """Run fastlstm's stack. x, h0, c0 (or None), weights: NumPy arrays as described in the
    module docstring. Returns y, h_n, c_n (None unless LSTM) in the call's layout, and the
    StackTape (None without return_tape)."""
    cfg = call.cfg
    params = dict(zip(call.names, weights))
    x_tm = _to_time_major(call, x)
    h0, c0 = _states_in(call, h0, c0)
    with _ThreadScope(call.threads):
        y, h_n, c_n, (tapes, masks, parallel) = stack_forward(
            cfg, params, x_tm, h0, c0, call.lengths, call.dropout_rng, return_tape)
    tape = None
    if return_tape:
        T, B, _ = x_tm.shape
        tape = StackTape(kind=cfg.kind, tapes=tapes, masks=masks, batch_first=False,
                         unbatched=False, x_shape=x_tm.shape, T=T, B=B, H=cfg.hidden_size,
                         H_out=cfg.proj_size or cfg.hidden_size, num_layers=cfg.num_layers,
                         D=2 if cfg.bidirectional else 1, dtype=x_tm.dtype, parallel=parallel)
    return (_from_time_major(call, y), _states_out(call, h_n), _states_out(call, c_n), tape)


def run_forward(call, x, h0, c0, weights):
    """Inference (no autograd, no tape): tensors in, tensors out (y, h_n, c_n or None)."""
    y, h_n, c_n, _ = _forward_arrays(call, as_array(x), as_array(h0), as_array(c0),
                                     [as_array(w) for w in weights], False)
    return as_tensor(y), as_tensor(h_n), as_tensor(c_n)


class StackFunction(torch.autograd.Function):
    """y, h_n, c_n = StackFunction.apply(call, x, h0, c0, *weights).

    call: StackCall; x: the input in call.layout; h0, c0: the initial states (None for
    zeros; c0 None unless LSTM); weights: the parameter tensors in the order of call.names.
    c_n is None for the GRU and RNN. Forward keeps fastlstm's tape; backward runs fastlstm's
    backward once and returns the gradients of x, h0, c0 and every weight. Backward is not
    itself differentiable (double backward is an error), and torch.func transforms are not
    supported (torch raises its own error).
    """

    @staticmethod
    def forward(ctx, call, x, h0, c0, *weights):
        y, h_n, c_n, tape = _forward_arrays(call, as_array(x), as_array(h0), as_array(c0),
                                            [as_array(w) for w in weights], True)
        ctx.call, ctx.tape = call, tape
        ctx.set_materialize_grads(False)     # unused outputs give None, not zeros
        return as_tensor(y), as_tensor(h_n), as_tensor(c_n)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n, dc_n):
        call, tape = ctx.call, ctx.tape
        n_weights = len(call.names)
        if dy is None and dh_n is None and dc_n is None:
            return (None,) * (4 + n_weights)
        dy_tm = None if dy is None else _to_time_major(call, as_array(dy))
        dh, dc = _states_in(call, as_array(dh_n), as_array(dc_n))
        needs = ctx.needs_input_grad   # (call, x, h0, c0, *weights)
        with _ThreadScope(call.threads):   # dx only when x needs it (its product skipped)
            dx, dh0, dc0, layer_grads = stack_backward(tape, dy_tm, dh, dc, bool(needs[1]))
        D = tape.D
        grads = []
        for name, need in zip(call.names, needs[4:]):
            if not need:               # a frozen parameter
                grads.append(None)
                continue
            base, rest = name.rsplit("_l", 1)
            layer = int(rest.split("_")[0])
            d = 1 if rest.endswith("_reverse") else 0
            grads.append(as_tensor(getattr(layer_grads[layer * D + d], _GRAD_FIELDS[base])))
        dx_t = as_tensor(_from_time_major(call, dx)) if needs[1] else None
        dh0_t = as_tensor(_states_out(call, dh0)) if needs[2] else None
        dc0_t = as_tensor(_states_out(call, dc0)) if needs[3] and dc0 is not None else None
        return (None, dx_t, dh0_t, dc0_t, *grads)
