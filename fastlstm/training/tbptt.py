"""Truncated back-propagation through time (SPEC.md section 9).

A long sequence is cut into windows of k steps. The recurrent state carries from one window to
the next (the forward pass is the same as one long call), but the gradient does not: each
window is back-propagated on its own, from its own starting state, which counts as a constant.
Memory and time per update are then O(k) rather than O(T).

    hx = None
    for w in tbptt_windows(T, k):                  # [slice(0, k), slice(k, 2k), ...]
        lw = window_lengths(lengths, w)            # clip(lengths - start, 0, stop - start)
        out, hx_n, tape = model.forward(x[w], lengths=lw, hx=hx, return_state=True,
                                        return_tape=True)
        loss, dout = cross_entropy(out, labels[w], lengths=lw)
        dx, grads = model.backward(tape, dout)
        opt.step([grads["rnn"], grads["head"]])
        hx = detach_state(hx_n)                    # carry the state, not the gradient

(x[w] along the time axis: x[:, w] for a batch_first model.) run_windows does the forward half
of this loop for a layer, and is what the tests compare with one long call.
"""
import numbers

import numpy as np

from .._checks import check_lengths


def _int(name, value, low):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def tbptt_windows(T, k):
    """The windows of k steps that cover range(T), as slices: [slice(0, k), slice(k, 2k), ...];
    the last one is shorter when k does not divide T; [] for T = 0."""
    T = _int("T", T, 0)
    k = _int("k", k, 1)
    return [slice(start, min(start + k, T)) for start in range(0, T, k)]


def window_lengths(lengths, window):
    """The lengths (B,) of the rows inside `window` (a slice from tbptt_windows):
    clip(lengths − start, 0, stop − start). None stays None. A row that ended before the
    window gets 0 (the window leaves its state as it is)."""
    if lengths is None:
        return None
    lengths = np.asarray(lengths)
    return np.clip(lengths - window.start, 0, window.stop - window.start).astype(np.int64)


def detach_state(hx):
    """Copies of the state arrays to start the next window with: None stays None, an array is
    copied, a tuple (h, c) (the LSTM's) becomes a tuple of copies. The copies share nothing
    with the window that made them, so nothing can flow back into it."""
    if hx is None:
        return None
    if isinstance(hx, (tuple, list)):
        return tuple(detach_state(h) for h in hx)
    return np.array(hx, copy=True)


def run_windows(module, x, k, hx=None, lengths=None):
    """The forward pass of `module` (fastlstm.LSTM / GRU / RNN, unidirectional, reading
    forward) over x in windows of k steps, the state carried from window to window.

    x (T, B, I) ((B, T, I) with the module's batch_first, (T, I) unbatched); hx the initial
    state as module.forward takes it; lengths (B,) or None: window w runs with
    window_lengths(lengths, w). Returns (y, hx_n): y the windows' outputs concatenated on the
    time axis, shaped as module.forward's y, and the state after the last window. These equal
    one call module(x, hx, lengths) (to rounding); a bidirectional or reverse module, whose
    result depends on the steps after a window, is a ValueError.
    """
    if getattr(module, "bidirectional", False) or getattr(module, "reverse", False):
        raise ValueError("module: truncated BPTT needs a unidirectional module that reads "
                         "forward (bidirectional=False, reverse=False)")
    x = np.asarray(x)
    time_axis = 1 if (x.ndim == 3 and module.batch_first) else 0
    T = x.shape[time_axis] if x.ndim >= 2 else 0
    windows = tbptt_windows(T, k)
    if lengths is not None:
        B = 1 if x.ndim == 2 else x.shape[1 - time_axis]
        lengths = check_lengths(lengths, T, B, unbatched=x.ndim == 2)
    if not windows:                 # T = 0 (or a malformed x): one plain call says what it is
        return module.forward(x, hx, lengths)
    ys = []
    for w in windows:
        x_w = x[:, w] if time_axis == 1 else x[w]
        y_w, hx = module.forward(x_w, hx, window_lengths(lengths, w))
        ys.append(y_w)
        hx = detach_state(hx)
    return np.concatenate(ys, axis=time_axis), hx
