"""Forward and backward through a stack of layers and directions (torch.nn semantics, SPEC.md
section 7), calling the single-layer functions once per layer and direction.

Shapes, time-major inside (the caller's layout is restored by the modules):
    x (T, B, I); y (T, B, D * H_out), the directions concatenated on the last axis, forward
    first; h0, h_n (L * D, B, H_out) and c0, c_n (L * D, B, H), index layer * D + direction.
Layer l > 0 reads layer l - 1's y, times the dropout mask of layer l - 1 when one was drawn.
"""
import contextvars
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import _api
from .._backends import get_backend
from .._threads import _threads as _threads_var
from .._threads import current_threads
from ._params import direction_suffixes


class StackTape:
    """What StackBase.backward needs from one forward call (made with return_tape=True).

    tapes[l][d]: the single-layer fastlstm.Tape of layer l, direction d; masks[l]: the
    inverted-dropout mask (T, B, D * H_out) applied to layer l's output (None: no dropout);
    plus the caller's layout (batch_first, unbatched) and the shapes of x and the states.
    """

    __slots__ = ("kind", "tapes", "masks", "batch_first", "unbatched", "x_shape", "T", "B",
                 "H", "H_out", "num_layers", "D", "dtype", "parallel")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields[name])

    def __repr__(self):
        return (f"<fastlstm.layers tape {self.kind} layers={self.num_layers} D={self.D} "
                f"T={self.T} B={self.B} dtype={self.dtype}>")


def _directions_in_parallel(cfg, x_shape, D):
    """Whether the two directions of each layer run at once on two threads: a bidirectional
    stack on the cython backend (its kernels release the GIL and take their thread count as
    an argument), with at least two threads allowed and enough work to pay for a thread."""
    if D != 2 or current_threads() < 2 or get_backend(cfg.backend).name != "cython":
        return False
    T, B, I = x_shape
    H = cfg.hidden_size
    return T * B * 4 * H * (I + H) >= _api._MIN_WORK_FOR_THREADS


def _each_direction(D, run, parallel):
    """[run(0), ..., run(D-1)]. With parallel, direction 1 runs on a second thread while this
    one runs direction 0, each with half of the current thread limit for its kernels."""
    if not parallel:
        return [run(d) for d in range(D)]
    n = max(1, current_threads() // 2)

    def with_threads(d):
        token = _threads_var.set(n)
        try:
            return run(d)
        finally:
            _threads_var.reset(token)

    with ThreadPoolExecutor(max_workers=1) as pool:
        other = pool.submit(contextvars.copy_context().run, with_threads, 1)
        first = with_threads(0)
        return [first, other.result()]


def _layer_params(params, layer, sfx):
    """The weight arguments of the single-layer functions for one layer and direction of a
    stack's parameters (torch's state_dict names): w_ih, w_hh, b_ih, b_hh, w_hr, peepholes,
    None for what the stack does not have."""
    get, name = params.get, f"_l{layer}{sfx}"
    return dict(w_ih=params["weight_ih" + name], w_hh=params["weight_hh" + name],
                b_ih=get("bias_ih" + name), b_hh=get("bias_hh" + name),
                w_hr=get("weight_hr" + name), peepholes=get("weight_peephole" + name))


def stack_forward(cfg, params, x, h0, c0, lengths, dropout_rng, return_tape, observe=None):
    """x (T, B, I); h0 (L*D, B, H_out) or None; c0 (L*D, B, H) or None (LSTM).

    cfg: the module (kind, num_layers, bidirectional, reverse, bias, proj_size, hidden_size,
    dropout, training, backend, and the cell options). dropout_rng: the Generator that draws dropout
    masks, or None for no dropout. Returns y (T, B, D*H_out), h_n, c_n (None unless LSTM), and
    the list of per-layer tapes and masks (None without return_tape). observe: None, or a
    function called as observe(layer, sfx, reverse, inp (T, B, I_l), y_d (T, B, H_out)) after
    each layer and direction (its input and its outputs, before dropout).
    """
    kind, L = cfg.kind, cfg.num_layers
    sfxs = direction_suffixes(cfg.bidirectional)
    D = len(sfxs)
    T, B, _ = x.shape
    H_out = cfg.proj_size or cfg.hidden_size
    dtype = x.dtype
    # one layer and direction: its final states are h_n and c_n as they come
    h_n = np.empty((L * D, B, H_out), dtype=dtype) if L * D > 1 else None
    c_n = np.empty((L * D, B, cfg.hidden_size), dtype=dtype) \
        if kind == "lstm" and L * D > 1 else None
    finals = []
    tapes, masks = [], []
    inp = x
    parallel = _directions_in_parallel(cfg, x.shape, D)
    # a fastlstm module keeps its packed weights across calls (fastlstm/layers/_packing.py);
    # fastlstm.torch's configurations do not (their weights are torch's, changed by torch)
    packed_layer = getattr(cfg, "_packed_layer", None)
    kernel = get_backend(cfg.backend) if packed_layer is not None else None
    for layer in range(L):
        def run(d, layer=layer, inp=inp):
            idx = layer * D + d
            reverse = (d == 1) != cfg.reverse
            hi = None if h0 is None else h0[idx]
            ci = None if c0 is None else c0[idx]
            if packed_layer is not None:
                y_d, hn, cn, tape = _api.run_layer(packed_layer(layer, sfxs[d]), inp, hi, ci,
                                                   lengths, reverse, kernel, return_tape)
                return y_d, hn, cn, tape
            p = _layer_params(params, layer, sfxs[d])
            common = dict(lengths=lengths, reverse=reverse, backend=cfg.backend,
                          return_tape=return_tape)
            if kind == "lstm":
                res = _api.forward(inp, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], hi, ci,
                                   w_hr=p["w_hr"], peepholes=p["peepholes"], **common)
                y_d, (hn, cn) = res[:2]
            elif kind == "gru":
                res = _api.gru_forward(inp, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], hi,
                                       linear_before_reset=cfg.linear_before_reset, **common)
                (y_d, hn), cn = res[:2], None
            else:
                res = _api.rnn_forward(inp, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], hi,
                                       nonlinearity=cfg.nonlinearity, **common)
                (y_d, hn), cn = res[:2], None
            return y_d, hn, cn, (res[-1] if return_tape else None)

        results = _each_direction(D, run, parallel)
        if observe is not None:
            for d, r in enumerate(results):
                observe(layer, sfxs[d], (d == 1) != cfg.reverse, inp, r[0])
        outs = [r[0] for r in results]
        layer_tapes = [r[3] for r in results]
        for d, r in enumerate(results):
            if h_n is None:
                finals = r[1:3]
            else:
                h_n[layer * D + d] = r[1]
                if c_n is not None:
                    c_n[layer * D + d] = r[2]
        y = outs[0] if D == 1 else np.concatenate(outs, axis=2)
        mask = None
        if dropout_rng is not None and layer < L - 1:
            keep = 1.0 - cfg.dropout
            mask = (dropout_rng.random(y.shape) < keep).astype(dtype) / dtype.type(keep)
            y = y * mask
        tapes.append(layer_tapes)
        masks.append(mask)
        inp = y
    if h_n is None:   # one layer and direction
        h_n = finals[0][None]
        c_n = None if kind != "lstm" else finals[1][None]
    return inp, h_n, c_n, (tapes, masks, parallel)


def stack_backward(tape, dy, dh_n, dc_n, input_grad=True):
    """dy (T, B, D*H_out) or None; dh_n (L*D, B, H_out) or None; dc_n (L*D, B, H) or None.

    Returns dx (T, B, I) (None with input_grad=False: the first layer skips it), dh0
    (L*D, B, H_out), dc0 (L*D, B, H) (None unless LSTM) and the list over layers and
    directions of fastlstm.Gradients (layer-major, direction inner).
    """
    L, D, H_out = tape.num_layers, tape.D, tape.H_out
    dtype, B = tape.dtype, tape.B
    dh0 = np.empty((L * D, B, H_out), dtype=dtype)
    dc0 = np.empty((L * D, B, tape.H), dtype=dtype) if tape.kind == "lstm" else None
    grads = [None] * (L * D)
    d_out = dy   # the gradient with respect to layer `layer`'s output (after its dropout)
    for layer in reversed(range(L)):
        if d_out is not None and tape.masks[layer] is not None:
            d_out = d_out * tape.masks[layer]
        def run_back(d, layer=layer, d_out=d_out):
            idx = layer * D + d
            dy_d = None if d_out is None else d_out[..., d * H_out:(d + 1) * H_out]
            return _api.backward(tape.tapes[layer][d], dy_d,
                                 None if dh_n is None else dh_n[idx],
                                 None if dc_n is None or tape.kind != "lstm" else dc_n[idx],
                                 input_grad=input_grad or layer > 0)

        d_in = None
        for d, g in enumerate(_each_direction(D, run_back, tape.parallel)):
            idx = layer * D + d
            grads[idx] = g
            dh0[idx] = g.h0
            if dc0 is not None:
                dc0[idx] = g.c0
            if g.x is not None:
                d_in = g.x if d_in is None else d_in + g.x
        d_out = d_in
    return d_out, dh0, dc0, grads
