"""The public entry points: fastlstm.forward (LSTM), gru_forward, rnn_forward and backward.

This layer checks arguments, turns them into the kernels' canonical layout (time-major,
C-contiguous, loop order: see _loop_order.py), allocates every output and scratch buffer,
folds the biases, and hands them to the chosen backend under one contract for every cell
(src/kernels/CONTRACT.md). Afterwards it puts the results back in the caller's layout.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import _functional_packs, _spare_buffers
from ._backends import all_same_function, copy_rows_function, get_backend
from ._checks import (GATE_BLOCKS, check_flag, check_lengths, check_nonlinearity, check_state,
                      check_weights, check_x)
from ._loop_order import arrange
from ._threads import blas_on_one_thread, current_threads
from ._validate import optional_array

# Inference projects the input of at most this many rows (steps x batch) per matrix product,
# so it keeps O(B*H) scratch instead of a (T, B, 4H) buffer.
_INFERENCE_CHUNK_ROWS = 256
#: values from which the copies into and out of loop order use every thread of the call
_PARALLEL_COPY_VALUES = 1 << 16
# A call of fewer multiply-adds than this runs on one thread: starting the others costs more.
_MIN_WORK_FOR_THREADS = 1 << 20

#: kernel cell codes (CONTRACT.md)
LSTM, GRU_LINEAR_BEFORE_RESET, GRU_RESET_BEFORE, RNN_TANH, RNN_RELU = range(5)
_KIND_OF_CELL = ("lstm", "gru", "gru", "rnn", "rnn")


class PackedLayer:
    """One layer's weights in the kernels' form, made once and reused for as long as they are
    valid (a layer stack keeps one per layer and direction and decides that: fastlstm/layers/
    _packing.py). Its arrays are never changed after it is made, so a tape may hold them.

    w_ih (G, I), w_hh (G, H_out), w_hr (P, H) or (0, H), peep (3, H) or (0, H): C-contiguous
    private copies; bias (2, G): folded as CONTRACT.md says; has_b_ih, has_b_hh: whether the
    layer has them; scratch: {decomposition (0 groups of rows, 1 the column split): the
    Cython kernels' ForwardPlan, the weights packed for it; "numba": the Numba kernels' panels
    of them}, each made by the first call that needs it (then only read); spare: the buffers of an inference call in loop order, kept
    for the next (fastlstm/_spare_buffers.py; never part of a result).
    """

    __slots__ = ("cell", "w_ih", "w_hh", "w_hr", "peep", "bias", "has_b_ih", "has_b_hh",
                 "scratch", "dtype", "spare")
    #: None: float weights (fastlstm._reduced.ReducedLayer has "int8" or "bfloat16")
    precision = None

    def __init__(self, cell, w_ih, w_hh, b_ih, b_hh, w_hr, peepholes, dtype):
        G, H = w_ih.shape[0], w_hh.shape[0] // GATE_BLOCKS[_KIND_OF_CELL[cell]]
        self.cell = cell
        self.w_ih = np.array(w_ih, dtype=dtype, order="C")
        self.w_hh = np.array(w_hh, dtype=dtype, order="C")
        self.w_hr = (np.zeros((0, H), dtype) if w_hr is None
                     else np.array(w_hr, dtype=dtype, order="C"))
        self.peep = (np.zeros((0, H), dtype) if peepholes is None
                     else np.array(peepholes, dtype=dtype, order="C"))
        self.bias = _fold_biases(cell, b_ih, b_hh, G, np.dtype(dtype))
        self.has_b_ih, self.has_b_hh = b_ih is not None, b_hh is not None
        self.scratch = {}
        self.dtype = np.dtype(dtype)
        self.spare = _spare_buffers.Spare()   # an inference call's buffers, kept for the next


@dataclass(frozen=True)
class Gradients:
    """The gradients from fastlstm.backward, each shaped like the matching input of forward.

    b_ih (b_hh) is None when forward was given no b_ih (b_hh); h0 (and c0 for the LSTM) are the
    gradients with respect to the initial state (zeros when forward was given none), shaped
    (B, H_out) ((H_out,) unbatched). c0 is None for the GRU and RNN; w_hr and peepholes are
    None unless the LSTM used them.
    """

    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: Optional[np.ndarray]
    b_hh: Optional[np.ndarray]
    h0: np.ndarray
    c0: Optional[np.ndarray] = None
    w_hr: Optional[np.ndarray] = None
    peepholes: Optional[np.ndarray] = None


class Tape:
    """What fastlstm.backward needs from a forward call; made by forward(..., return_tape=True).

    Holds private copies of x (T, B, I) and the weights, and the states and saved gate values
    in loop order (CONTRACT.md): h (T+1, B, H_out), c (T+1, B, H) (LSTM; (0, B, H) otherwise),
    gates (T, B, Gs). Use it as often as you like.
    """

    __slots__ = ("cell", "x", "w_ih", "w_hh", "w_hr", "peep", "h", "c", "gates", "order",
                 "n_groups", "has_b_ih", "has_b_hh", "batch_first", "unbatched", "backend")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields[name])

    @property
    def kind(self):
        """"lstm", "gru" or "rnn"."""
        return "lstm" if self.cell == LSTM else ("gru" if self.cell < RNN_TANH else "rnn")

    @property
    def dtype(self):
        return self.x.dtype

    @property
    def y_shape(self):
        """The shape of forward's output y, in the caller's layout."""
        T, B, _ = self.x.shape
        H_out = self.h.shape[2]
        if self.unbatched:
            return (T, H_out)
        return (B, T, H_out) if self.batch_first else (T, B, H_out)

    @property
    def state_shape(self):
        """The shape of h_n, in the caller's layout."""
        B, H_out = self.h.shape[1:]
        return (H_out,) if self.unbatched else (B, H_out)

    @property
    def cell_state_shape(self):
        """The shape of c_n (LSTM), in the caller's layout."""
        B, H = self.c.shape[1:]
        return (H,) if self.unbatched else (B, H)

    def __repr__(self):
        T, B, I = self.x.shape
        H = self.w_hh.shape[0] // GATE_BLOCKS[self.kind]
        P = f" P={self.w_hr.shape[0]}" if self.w_hr.shape[0] else ""
        return (f"<fastlstm.Tape T={T} B={B} I={I} H={H}{P} cell={self.kind} "
                f"dtype={self.dtype} backend={self.backend!r}>")


def _to_time_major(arr, batch_first, unbatched):
    """Caller's layout -> (T, B, n) (a view when that is possible)."""
    if unbatched:
        return arr[:, None, :]
    if batch_first:
        return arr.transpose(1, 0, 2)
    return arr


def _from_time_major(arr, batch_first, unbatched):
    """(T, B, n) -> caller's layout, C-contiguous."""
    if unbatched:
        return arr[:, 0, :]
    if batch_first:
        return np.ascontiguousarray(arr.transpose(1, 0, 2))
    return arr


def _kernel_threads(T, B, I, G, H_out):
    """OpenMP threads for the compiled kernels: the current limit (fastlstm.threads), or one
    for a small call. (Time loops use at most B of them: one group of batch rows each.)"""
    if T * B * G * (I + H_out) < _MIN_WORK_FOR_THREADS:
        return 1
    return max(1, current_threads())


def _fold_biases(cell, b_ih, b_hh, G, dtype):
    """bias (2, G) as CONTRACT.md folds it for `cell` (a new array: the kernels only read it)."""
    bias = np.empty((2, G), dtype=dtype)
    bias[1] = 0
    if b_ih is None and b_hh is None:
        bias[0] = 0
    elif b_hh is None or b_ih is None:
        bias[0] = b_ih if b_hh is None else b_hh
    else:
        np.add(b_ih, b_hh, out=bias[0])
    if b_hh is not None and cell == GRU_LINEAR_BEFORE_RESET:
        # b_hn stays inside r * (h W_hn^T + b_hn)
        H = G // 3
        bias[0, 2 * H:] = 0 if b_ih is None else b_ih[2 * H:]
        bias[1, 2 * H:] = b_hh[2 * H:]
    return bias


def _private(arr, source):
    """`arr` (a C-contiguous form of `source`), copied if it shares memory with `source`."""
    arr = np.ascontiguousarray(arr)
    return arr.copy() if np.may_share_memory(arr, source) else arr


def _run(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr, peepholes, lengths, reverse,
         batch_first, backend, return_tape):
    """The functional API's forward of every cell: checks every argument, then runs
    run_layer on the weights' PackedLayer (kept across calls by fastlstm._functional_packs
    while the arrays hold the same values). Returns (y, h_n, c_n or None, tape or None).
    (The layer stacks and streams call run_layer on their own PackedLayers.)"""
    kind = _KIND_OF_CELL[cell]
    x, unbatched, (T, B, I) = check_x(x, batch_first)
    dtype = x.dtype
    w_ih, w_hh, b_ih, b_hh, w_hr, peepholes, H, H_out = check_weights(
        kind, x, w_ih, w_hh, b_ih, b_hh, I, w_hr, peepholes)
    h0 = check_state("h0", h0, dtype, B, H_out, unbatched,
                     "H_out" if w_hr is not None else "H")
    if cell == LSTM:
        c0 = check_state("c0", c0, dtype, B, H, unbatched)
    lengths = check_lengths(lengths, T, B, unbatched)
    kernel = get_backend(backend)
    packed = _functional_packs.packed_layer(cell, dtype, w_ih, w_hh, b_ih, b_hh, w_hr,
                                            peepholes, all_same_function(), PackedLayer)
    if unbatched:   # states (n,) -> (1, n)
        h0 = None if h0 is None else h0.reshape(B, H_out)
        c0 = None if c0 is None else c0.reshape(B, H)
    return run_layer(packed, _to_time_major(x, batch_first, unbatched), h0, c0, lengths,
                     reverse, kernel, return_tape, batch_first, unbatched, x)


def run_layer(packed, x, h0, c0, lengths, reverse, kernel, return_tape, batch_first=False,
              unbatched=False, caller_x=None):
    """One layer's forward on checked arguments: packed, a PackedLayer (or ReducedLayer);
    x (T, B, I) time-major, of the layer's dtype; h0 (B, H_out), c0 (B, H) (LSTM) or None;
    lengths (B,) int64 or None; kernel: the backend object. y comes back in the caller's
    layout (batch_first, unbatched: of caller_x, the array x is a view of, which the tape
    must not share). Returns (y, h_n, c_n or None, tape or None), h_n (B, H_out) and c_n
    (B, H), or (H_out,) and (H,) unbatched."""
    cell = packed.cell
    T, B, I = x.shape
    dtype = packed.dtype
    w_ih, w_hh, w_hr = packed.w_ih, packed.w_hh, packed.w_hr
    if w_ih.shape[1] != I or x.dtype != dtype:
        raise ValueError(f"x: expected input size {w_ih.shape[1]} and dtype {dtype} (the "
                         f"layer's), got shape {x.shape}, {x.dtype}")
    lstm = cell == LSTM
    H, H_out, G = w_hr.shape[1], w_hh.shape[1], w_ih.shape[0]
    Gs = 4 * H if cell < RNN_TANH else H
    n_threads = _kernel_threads(T, B, I, G, H_out)
    # reduced precision: one group of rows (its driver shares every step, at any batch)
    n_groups = 1 if packed.precision else kernel.groups(n_threads, B, cell, H, H_out, dtype)
    order = arrange(T, B, lengths, reverse, n_groups)
    chunk = T if return_tape else min(T, max(1, _INFERENCE_CHUNK_ROWS // max(B, 1)))
    # inference in another order: x_loop, h and gates are the call's own (y, h_n and c_n
    # are copied from them), so they come from the layer's kept block (_spare_buffers)
    block = moved = None
    copy_rows = (None if order.identity
                 else _row_copier(kernel, n_threads, T * B * max(I, H_out)))
    if not return_tape and not order.identity and T > 0 and B > 0:
        block, (x_loop, h, gates) = _spare_buffers.carve(
            packed.spare, dtype, ((T, B, I), (T + 1, B, H_out), (chunk, B, Gs)))
        if (getattr(kernel, "moves_rows", False) and not packed.precision
                and (I == 1 or x.strides[2] == dtype.itemsize)):
            # the kernel gathers x's rows and scatters y's, chunk by chunk (CONTRACT.md)
            y_caller = np.empty((B, T, H_out) if batch_first else (T, B, H_out), dtype)
            moved = (x, y_caller.transpose(1, 0, 2) if batch_first else y_caller,
                    order.perm if order.perm is not None else np.arange(B, dtype=np.int64),
                    order.reverse)
        else:
            x_loop = order.gather(x, x_loop, copy_rows)
    else:
        x_loop = order.gather(x, copy_rows=copy_rows)
        # With a tape, padded entries stay zero (CONTRACT.md: the backward and the peephole
        # and projection gradients read whole arrays); without one nothing reads them
        # (scatter writes zeros past each length), so they need not be cleared.
        alloc = np.zeros if order.padded and return_tape else np.empty
        h = alloc((T + 1, B, H_out), dtype=dtype)
        gates = alloc((chunk, B, Gs), dtype=dtype)
    h[0] = 0 if h0 is None else (h0 if order.perm is None else h0[order.perm])
    if lstm:
        c = (np.zeros if order.padded and return_tape else np.empty)(
            (T + 1 if return_tape else 2, B, H), dtype=dtype)
        c[0] = 0 if c0 is None else (c0 if order.perm is None else c0[order.perm])
    else:
        c = np.zeros((0, B, H), dtype=dtype)
    work = np.empty((B, 3 * H if GRU_LINEAR_BEFORE_RESET <= cell <= GRU_RESET_BEFORE
                     else (H if w_hr.shape[0] else 0)), dtype=dtype)
    if T > 0 and B > 0:
        if moved is None:
            kernel.forward(cell, x_loop, w_ih, w_hh, w_hr, packed.bias, packed.peep,
                           order.lengths, h, c, gates, work, n_threads, packed)
        else:
            kernel.forward(cell, x_loop, w_ih, w_hh, w_hr, packed.bias, packed.peep,
                           order.lengths, h, c, gates, work, n_threads, packed, moved)

    # final states: row k's state after its last valid step
    c_n = None
    if order.identity:   # every row ends at step T
        h_n = h[T].copy()
        if lstm:
            c_n = c[T if return_tape else T % 2].copy()
    else:
        rows = np.arange(B)
        h_n = order.rows_from_loop(h[order.lengths, rows])
        if lstm:
            c_n = order.rows_from_loop(c[order.lengths if return_tape else order.lengths % 2,
                                         rows])
    if unbatched:
        h_n = h_n.reshape(H_out)
        if lstm:
            c_n = c_n.reshape(H)
    y_tm = order.scatter(h[1:], copy_rows) if moved is None else moved[1]
    if return_tape and y_tm.base is h:
        y_tm = y_tm.copy()
    if block is not None:   # y, h_n, c_n are copies: the block may serve the next call
        _spare_buffers.give_back(packed.spare, block)
    y = _from_time_major(y_tm, batch_first, unbatched)
    if not return_tape:
        return y, h_n, c_n, None
    # the packed layer's arrays are private and never changed: the tape holds them as they are
    tape = Tape(
        cell=cell, x=_private(x_loop, x if caller_x is None else caller_x), w_ih=w_ih,
        w_hh=w_hh, w_hr=w_hr, peep=packed.peep, h=h, c=c, gates=gates, order=order,
        n_groups=n_groups, has_b_ih=packed.has_b_ih, has_b_hh=packed.has_b_hh,
        batch_first=batch_first, unbatched=unbatched, backend=kernel.name,
    )
    return y, h_n, c_n, tape


def _row_copier(kernel, n_threads, values):
    """copy_rows(src, index, dst) for fastlstm/_loop_order.py: the Cython kernels' one-pass
    row copy, on n_threads threads when the arrays hold at least _PARALLEL_COPY_VALUES
    values and the backend `kernel` runs on the same OpenMP threads (uses_openmp), else one;
    None where the kernels do not load (NumPy then moves the rows). OpenMP's threads spin
    for a while after a parallel copy: beside the Numba team on two cores they took its
    second core (a Numba call with lengths at T=200, B=32, H=128 ran 7.5 ms instead of 3.8)."""
    copy = copy_rows_function()
    if copy is None:
        return None
    shared = getattr(kernel, "uses_openmp", False)
    threads = n_threads if shared and values >= _PARALLEL_COPY_VALUES else 1
    return lambda src, index, dst: copy(src, index, dst, threads)


def _flags(reverse, batch_first, return_tape):
    """The three flags of every single-layer function, checked (the common all-False call
    first)."""
    if reverse is False and batch_first is False and return_tape is False:
        return False, False, False
    return (check_flag("reverse", reverse), check_flag("batch_first", batch_first),
            check_flag("return_tape", return_tape))


def forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, *, w_hr=None,
            peepholes=None, lengths=None, reverse=False, batch_first=False, backend="auto",
            return_tape=False):
    """Run a one-layer LSTM over a sequence, as torch.nn.LSTM does (gate order i, f, g, o).

    x: (T, B, I), or (B, T, I) with batch_first=True, or (T, I) unbatched; float32 or float64.
    w_ih (4H, I), w_hh (4H, H) ((4H, P) with w_hr), b_ih, b_hh (4H,) or None; h0 (B, H_out),
    c0 (B, H) ((H_out,), (H,) unbatched) or None for zeros. w_hr (P, H): projection (torch's
    proj_size), H_out = P. peepholes (3, H): [p_i, p_f, p_o]. lengths (B,) integers in
    [0, T]: row b reads its first lengths[b] steps, outputs past them are 0 and its final
    state is the state after them. reverse: each row runs from its last valid step down.
    backend: "auto" (the fastest available, or $FASTLSTM_BACKEND), "cython", "numba", "numpy".

    Returns y, (h_n, c_n): y (T, B, H_out) (or (B, T, H_out), or (T, H_out)), h_n (B, H_out),
    c_n (B, H). With return_tape=True, returns y, (h_n, c_n), tape for fastlstm.backward.
    Inputs are never modified and outputs never share memory with them.
    """
    reverse, batch_first, return_tape = _flags(reverse, batch_first, return_tape)
    y, h_n, c_n, tape = _run(LSTM, x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr, peepholes, lengths,
                             reverse, batch_first, backend, return_tape)
    return (y, (h_n, c_n), tape) if return_tape else (y, (h_n, c_n))


def gru_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *, linear_before_reset=True,
                lengths=None, reverse=False, batch_first=False, backend="auto",
                return_tape=False):
    """Run a one-layer GRU over a sequence (gate order r, z, n; SPEC.md section 2).

    linear_before_reset=True is torch.nn.GRU's n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn));
    False is the Keras reset_after=False / ONNX default n = tanh(x W_in^T + b_in +
    (r * h) W_hn^T + b_hn). x as in forward; w_ih (3H, I), w_hh (3H, H), b_ih, b_hh (3H,);
    h0 (B, H). lengths, reverse, batch_first, backend, return_tape as in forward.
    Returns y, h_n (and the tape with return_tape=True).
    """
    linear_before_reset = check_flag("linear_before_reset", linear_before_reset)
    reverse, batch_first, return_tape = _flags(reverse, batch_first, return_tape)
    cell = GRU_LINEAR_BEFORE_RESET if linear_before_reset else GRU_RESET_BEFORE
    y, h_n, _, tape = _run(cell, x, w_ih, w_hh, b_ih, b_hh, h0, None, None, None, lengths,
                           reverse, batch_first, backend, return_tape)
    return (y, h_n, tape) if return_tape else (y, h_n)


def rnn_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *, nonlinearity="tanh",
                lengths=None, reverse=False, batch_first=False, backend="auto",
                return_tape=False):
    """Run a one-layer plain RNN, h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh) (SPEC.md
    section 3), act = "tanh" or "relu". w_ih (H, I), w_hh (H, H), b_ih, b_hh (H,); the rest as
    in forward. Returns y, h_n (and the tape with return_tape=True)."""
    nonlinearity = check_nonlinearity(nonlinearity)
    reverse, batch_first, return_tape = _flags(reverse, batch_first, return_tape)
    cell = RNN_TANH if nonlinearity == "tanh" else RNN_RELU
    y, h_n, _, tape = _run(cell, x, w_ih, w_hh, b_ih, b_hh, h0, None, None, None, lengths,
                           reverse, batch_first, backend, return_tape)
    return (y, h_n, tape) if return_tape else (y, h_n)


def backward(tape, dy=None, dh_n=None, dc_n=None, *, input_grad=True):
    """Back-propagate through the forward call (LSTM, GRU or RNN) that made `tape`.

    dy is shaped like forward's y, dh_n like h_n, dc_n like c_n (LSTM only); each None means
    zeros (dy past a row's length is ignored). Returns Gradients with fields x, w_ih, w_hh,
    b_ih, b_hh, h0, c0, w_hr, peepholes shaped like forward's inputs (None where forward had
    no such input). input_grad=False: the gradient with respect to x is not computed (one
    product over all steps saved; Gradients.x is None), as for a model's input in training.
    Runs on the tape's backend.
    """
    if not isinstance(tape, Tape):
        raise TypeError(
            "tape: expected the Tape from fastlstm.forward, gru_forward or rnn_forward "
            f"(..., return_tape=True), got {type(tape).__name__}"
        )
    input_grad = check_flag("input_grad", input_grad)
    dtype = tape.dtype
    T, B, I = tape.x.shape
    H_out = tape.h.shape[2]
    H = tape.w_hh.shape[0] // GATE_BLOCKS[tape.kind]
    is_lstm = tape.cell == LSTM
    layout = ("(T, H_out)" if tape.unbatched
              else ("(B, T, H_out)" if tape.batch_first else "(T, B, H_out)"))
    rows_what = "(H_out,)" if tape.unbatched else "(B, H_out)"
    dy = optional_array("dy", dy, dtype, tape.y_shape, layout)
    dh_n = optional_array("dh_n", dh_n, dtype, tape.state_shape, rows_what)
    if not is_lstm and dc_n is not None:
        raise ValueError(f"dc_n: a {tape.kind.upper()} has no cell state; expected None")
    if is_lstm:
        dc_n = optional_array("dc_n", dc_n, dtype, tape.cell_state_shape,
                              "(H,)" if tape.unbatched else "(B, H)")

    order = tape.order
    n_threads = _kernel_threads(T, B, I, tape.w_ih.shape[0], H_out)
    kernel = get_backend(tape.backend)
    copy_rows = (None if order.identity
                 else _row_copier(kernel, n_threads, T * B * max(I, H_out)))
    dy_loop = (np.zeros((0, B, H_out), dtype=dtype) if dy is None
               else order.gather(_to_time_major(dy, tape.batch_first, tape.unbatched),
                                 copy_rows=copy_rows))
    # private C-ordered copies in loop order: the kernels update them in place
    dh = (np.zeros((B, H_out), dtype) if dh_n is None
          else np.array(order.rows_to_loop(np.asarray(dh_n).reshape(B, H_out)), order="C"))
    dc = np.zeros((B, H if is_lstm else 0), dtype)
    if dc_n is not None:
        dc = np.array(order.rows_to_loop(np.asarray(dc_n).reshape(B, H)), order="C")
    G = tape.w_ih.shape[0]
    Gs = tape.gates.shape[2]
    P = tape.w_hr.shape[0]
    dA = np.empty((T, B, Gs), dtype=dtype)
    dhp = np.empty((T if P else 0, B, P), dtype=dtype)
    dx = np.empty((T if input_grad else 0, B, I), dtype=dtype)
    dw_ih = np.empty_like(tape.w_ih)
    dw_hh = np.empty_like(tape.w_hh)
    db_ih = np.empty(G, dtype=dtype)
    db_hh = np.empty(G, dtype=dtype)
    work = np.empty((B, H), dtype=dtype)
    extra = None
    if T > 0 and B > 0:
        extra = kernel.backward(tape.cell, tape.x, tape.w_ih, tape.w_hh, tape.w_hr, tape.peep,
                                order.lengths, tape.h, tape.c, tape.gates, dy_loop, dh, dc, dA,
                                dhp, dx, dw_ih, dw_hh, db_ih, db_hh, work,
                                tape.n_groups, n_threads)
    else:  # no step: nothing flows to the weights or the input
        for grad in (dA, dhp, dx, dw_ih, dw_hh, db_ih, db_hh):
            grad.fill(0)

    dw_hr = dpeep = None
    if P:
        if extra is not None:
            dw_hr = extra["w_hr"]
        else:  # dW_hr = sum over steps of dh_t^T (o * tanh(c_t))
            o_tc = tape.gates[..., 3 * H:] * np.tanh(tape.c[1:])
            with blas_on_one_thread():   # the same bits whatever fastlstm.threads says
                dw_hr = dhp.reshape(T * B, P).T @ o_tc.reshape(T * B, H)
    if tape.peep.shape[0]:
        if extra is not None:
            dpeep = extra["peepholes"]
        else:
            c_prev, c_t = tape.c[:-1], tape.c[1:]
            dpeep = np.stack([np.einsum("tbh,tbh->h", dA[..., :H], c_prev),
                              np.einsum("tbh,tbh->h", dA[..., H:2 * H], c_prev),
                              np.einsum("tbh,tbh->h", dA[..., 3 * H:], c_t)])
    unbatched = tape.unbatched
    return Gradients(
        x=(_from_time_major(order.scatter(dx, copy_rows), tape.batch_first, unbatched)
           if input_grad else None),
        w_ih=dw_ih,
        w_hh=dw_hh,
        b_ih=db_ih if tape.has_b_ih else None,
        b_hh=db_hh if tape.has_b_hh else None,
        h0=order.rows_from_loop(dh).reshape(tape.state_shape),
        c0=order.rows_from_loop(dc).reshape(tape.cell_state_shape) if is_lstm else None,
        w_hr=dw_hr,
        peepholes=dpeep,
    )
