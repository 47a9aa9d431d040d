"""The public entry points: fastlstm.forward and fastlstm.backward.

This layer checks arguments, turns them into the kernels' canonical time-major, C-contiguous
layout, allocates every output and scratch buffer, and hands them to the chosen backend.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ._backends import get_backend
from ._threads import current_threads
from ._validate import as_float_array, check_flag, check_shape, optional_array

# Inference projects the input of at most this many rows (steps x batch) per matrix product,
# so it keeps O(B*H) scratch instead of a (T, B, 4H) buffer.
_INFERENCE_CHUNK_ROWS = 256
# A call of fewer multiply-adds than this runs on one thread: starting the others costs more.
_MIN_WORK_FOR_THREADS = 1 << 20


@dataclass(frozen=True)
class Gradients:
    """The gradients from fastlstm.backward, each shaped like the matching input of forward.

    b_ih (b_hh) is None when forward was given no b_ih (b_hh); h0 and c0 are the gradients with respect
    to the initial state (zeros when forward was given none), shaped (B, H), or (H,) unbatched.
    """

    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: Optional[np.ndarray]
    b_hh: Optional[np.ndarray]
    h0: np.ndarray
    c0: np.ndarray


class Tape:
    """What fastlstm.backward needs from a forward call; made by forward(..., return_tape=True).

    Holds private copies of x (T, B, I), w_ih (4H, I), w_hh (4H, H), and the states and gate
    activations: h (T+1, B, H), c (T+1, B, H), gates (T, B, 4H). Use it as often as you like.
    """

    __slots__ = ("x", "w_ih", "w_hh", "h", "c", "gates", "has_b_ih", "has_b_hh", "batch_first",
                 "unbatched", "backend")

    def __init__(self, x, w_ih, w_hh, h, c, gates, has_b_ih, has_b_hh, batch_first, unbatched,
                 backend):
        self.x, self.w_ih, self.w_hh = x, w_ih, w_hh
        self.h, self.c, self.gates = h, c, gates
        self.has_b_ih, self.has_b_hh = has_b_ih, has_b_hh
        self.batch_first, self.unbatched = batch_first, unbatched
        self.backend = backend

    @property
    def dtype(self):
        return self.x.dtype

    @property
    def y_shape(self):
        """The shape of forward's output y, in the caller's layout."""
        T, B, _ = self.x.shape
        H = self.h.shape[2]
        if self.unbatched:
            return (T, H)
        return (B, T, H) if self.batch_first else (T, B, H)

    @property
    def state_shape(self):
        """The shape of h_n and c_n, in the caller's layout."""
        B, H = self.h.shape[1:]
        return (H,) if self.unbatched else (B, H)

    def __repr__(self):
        T, B, I = self.x.shape
        return (f"<fastlstm.Tape T={T} B={B} I={I} H={self.h.shape[2]} dtype={self.dtype} "
                f"backend={self.backend!r}>")


def _to_time_major(arr, batch_first, unbatched):
    """Caller's layout -> (T, B, n) C-contiguous (a view when that is possible)."""
    if unbatched:
        arr = arr[:, None, :]
    elif batch_first:
        arr = arr.transpose(1, 0, 2)
    return np.ascontiguousarray(arr)


def _from_time_major(arr, batch_first, unbatched):
    """(T, B, n) -> caller's layout, C-contiguous."""
    if unbatched:
        return arr[:, 0, :]
    if batch_first:
        return np.ascontiguousarray(arr.transpose(1, 0, 2))
    return arr


def _kernel_threads(T, B, I, H):
    """OpenMP threads for the compiled kernels: the current limit (fastlstm.threads), or one
    for a small call. (Time loops use at most B of them: one group of batch rows each.)"""
    if T * B * 4 * H * (I + H) < _MIN_WORK_FOR_THREADS:
        return 1
    return max(1, current_threads())


def _check_forward_args(x, w_ih, w_hh, b_ih, b_hh, h0, c0, batch_first):
    """Check every forward argument; return them as arrays and the sizes (T, B, I, H)."""
    x = as_float_array("x", x)
    dtype = x.dtype
    if x.ndim not in (2, 3):
        raise ValueError(
            "x: expected 3 dimensions (T, B, I), (B, T, I) with batch_first, or 2 (T, I) "
            f"unbatched; got shape {x.shape}"
        )
    unbatched = x.ndim == 2
    if unbatched:
        (T, I), B = x.shape, 1
    elif batch_first:
        B, T, I = x.shape
    else:
        T, B, I = x.shape
    if I < 1:
        raise ValueError(f"x: input size must be at least 1, got shape {x.shape}")
    w_hh = as_float_array("w_hh", w_hh, dtype)
    if w_hh.ndim != 2 or w_hh.shape[1] < 1 or w_hh.shape[0] != 4 * w_hh.shape[1]:
        raise ValueError(f"w_hh: expected shape (4*H, H) with H >= 1, got {w_hh.shape}")
    H = w_hh.shape[1]
    w_ih = as_float_array("w_ih", w_ih, dtype)
    check_shape("w_ih", w_ih, (4 * H, I), "(4*H, I)")
    b_ih = optional_array("b_ih", b_ih, dtype, (4 * H,), "(4*H,)")
    b_hh = optional_array("b_hh", b_hh, dtype, (4 * H,), "(4*H,)")
    state_shape, state_what = ((H,), "(H,)") if unbatched else ((B, H), "(B, H)")
    h0 = optional_array("h0", h0, dtype, state_shape, state_what)
    c0 = optional_array("c0", c0, dtype, state_shape, state_what)
    return x, w_ih, w_hh, b_ih, b_hh, h0, c0, unbatched, (T, B, I, H)


def forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, *, batch_first=False,
            backend="auto", return_tape=False):
    """Run a one-layer LSTM over a sequence, as torch.nn.LSTM does (gate order i, f, g, o).

    x: (T, B, I), or (B, T, I) with batch_first=True, or (T, I) unbatched; float32 or float64.
    w_ih (4H, I), w_hh (4H, H), b_ih, b_hh (4H,) or None; h0, c0 (B, H) ((H,) unbatched) or
    None for zeros. backend: "auto" (the fastest available, or $FASTLSTM_BACKEND), "cython",
    "numba" or "numpy".

    Returns y, (h_n, c_n): y (T, B, H) (or (B, T, H), or (T, H)), h_n and c_n (B, H) (or (H,)).
    With return_tape=True, returns y, (h_n, c_n), tape; pass the tape to fastlstm.backward.
    Inputs are never modified and outputs never share memory with them.
    """
    batch_first = check_flag("batch_first", batch_first)
    return_tape = check_flag("return_tape", return_tape)
    x, w_ih, w_hh, b_ih, b_hh, h0, c0, unbatched, (T, B, I, H) = _check_forward_args(
        x, w_ih, w_hh, b_ih, b_hh, h0, c0, batch_first)
    kernel = get_backend(backend)
    dtype = x.dtype

    x_tm = _to_time_major(x, batch_first, unbatched)
    w_ih_c = np.ascontiguousarray(w_ih)
    w_hh_c = np.ascontiguousarray(w_hh)
    if b_ih is not None and b_hh is not None:
        bias = b_ih + b_hh           # a new array: the kernels only read it
    elif b_ih is not None or b_hh is not None:
        bias = np.array(b_ih if b_ih is not None else b_hh, dtype=dtype)
    else:
        bias = np.zeros(4 * H, dtype=dtype)

    h = np.empty((T + 1, B, H), dtype=dtype)
    c = np.empty((T + 1 if return_tape else 2, B, H), dtype=dtype)
    h[0] = 0 if h0 is None else h0.reshape(B, H)
    c[0] = 0 if c0 is None else c0.reshape(B, H)
    chunk = T if return_tape else min(T, max(1, _INFERENCE_CHUNK_ROWS // max(B, 1)))
    gates = np.empty((chunk, B, 4 * H), dtype=dtype)
    if T > 0 and B > 0:
        kernel.forward(x_tm, w_ih_c, w_hh_c, bias, h, c, gates, _kernel_threads(T, B, I, H))

    state_shape = (H,) if unbatched else (B, H)
    h_n = h[T].reshape(state_shape).copy()
    c_n = c[T if return_tape else T % 2].reshape(state_shape).copy()
    if not return_tape:
        return _from_time_major(h[1:], batch_first, unbatched), (h_n, c_n)

    y = _from_time_major(h[1:].copy(), batch_first, unbatched)
    tape = Tape(
        x=x_tm.copy() if np.may_share_memory(x_tm, x) else x_tm,
        w_ih=w_ih_c.copy() if np.may_share_memory(w_ih_c, w_ih) else w_ih_c,
        w_hh=w_hh_c.copy() if np.may_share_memory(w_hh_c, w_hh) else w_hh_c,
        h=h, c=c, gates=gates, has_b_ih=b_ih is not None, has_b_hh=b_hh is not None,
        batch_first=batch_first, unbatched=unbatched, backend=kernel.name,
    )
    return y, (h_n, c_n), tape


def backward(tape, dy=None, dh_n=None, dc_n=None):
    """Back-propagate through the forward call that made `tape`.

    dy is shaped like forward's y, dh_n and dc_n like h_n and c_n; each None means zeros.
    Returns Gradients with fields x, w_ih, w_hh, b_ih, b_hh, h0, c0, shaped like forward's
    inputs (b_ih or b_hh is None when forward was not given it). Runs on the tape's backend.
    """
    if not isinstance(tape, Tape):
        raise TypeError(
            "tape: expected the Tape from fastlstm.forward(..., return_tape=True), "
            f"got {type(tape).__name__}"
        )
    dtype = tape.dtype
    T, B, I = tape.x.shape
    H = tape.h.shape[2]
    layout = "(T, H)" if tape.unbatched else ("(B, T, H)" if tape.batch_first else "(T, B, H)")
    state_what = "(H,)" if tape.unbatched else "(B, H)"
    dy = optional_array("dy", dy, dtype, tape.y_shape, layout)
    dh_n = optional_array("dh_n", dh_n, dtype, tape.state_shape, state_what)
    dc_n = optional_array("dc_n", dc_n, dtype, tape.state_shape, state_what)

    dy_tm = (np.empty((0, B, H), dtype=dtype) if dy is None
             else _to_time_major(dy, tape.batch_first, tape.unbatched))
    # private C-ordered copies: the kernels update them in place (any layout of dh_n is fine)
    dh = np.zeros((B, H), dtype) if dh_n is None else np.array(dh_n, dtype, order="C")
    dc = np.zeros((B, H), dtype) if dc_n is None else np.array(dc_n, dtype, order="C")
    dh, dc = dh.reshape(B, H), dc.reshape(B, H)
    dA = np.empty((T, B, 4 * H), dtype=dtype)
    dx = np.empty((T, B, I), dtype=dtype)
    dw_ih = np.empty((4 * H, I), dtype=dtype)
    dw_hh = np.empty((4 * H, H), dtype=dtype)
    db = np.empty(4 * H, dtype=dtype)
    if T > 0 and B > 0:
        kernel = get_backend(tape.backend)
        kernel.backward(tape.x, tape.w_ih, tape.w_hh, tape.h, tape.c, tape.gates, dy_tm, dh, dc,
                        dA, dx, dw_ih, dw_hh, db, _kernel_threads(T, B, I, H))
    else:  # no step: nothing flows to the weights or the input
        for grad in (dx, dw_ih, dw_hh, db):
            grad.fill(0)

    state_shape = tape.state_shape
    return Gradients(
        x=_from_time_major(dx, tape.batch_first, tape.unbatched),
        w_ih=dw_ih,
        w_hh=dw_hh,
        b_ih=db if tape.has_b_ih else None,
        b_hh=db.copy() if tape.has_b_hh else None,
        h0=dh.reshape(state_shape),
        c0=dc.reshape(state_shape),
    )
