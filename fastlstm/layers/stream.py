"""Streams: step-by-step inference of a layer stack, the state carried between calls.

    s = m.stream(batch_size=B)     # a private copy of m's weights, packed once
    y_t = s.step(x_t)              # x_t (B, I) -> y_t (B, H_out); a chunk (T, B, I) -> (T, B, H_out)
                                   # ((B, T, I) -> (B, T, H_out) when m.batch_first)
    s.state                        # copies: (h, c) for the LSTM, h otherwise; h (L, B, H_out),
                                   # c (L, B, H)
    s.reset(rows=None)             # zero the state of every row, or of the given rows

A stream's outputs equal one call of the module (in eval mode) over the whole sequence: each
step continues from the state the previous one left. Bidirectional stacks cannot stream (the
backward direction needs the end of the sequence first).

With the cython backend the weights are packed once, when the stream is made: a single step
(x (B, I)) goes through one StepPlan per layer (src/kernels/recurrent_forward.pyx: one call,
no allocation but the output), a chunk through the forward driver on buffers allocated here
once per chunk length. When the forward's rule picks the column split for B rows, the
weights are packed for it, chunks run split, and a single step of a large enough layer
(STEP_SPLIT_MACS) shares the threads too (fastlstm.threads limits them at each step). The other backends call fastlstm's single-layer functions with the
carried state.
"""
import numbers

import numpy as np

from .. import _api
from .._backends import get_backend
from .._threads import current_threads
from .._validate import check_shape
from ._packing import cell_code
from ._stack import _layer_params

#: a single step shares the threads (the column split) from this many multiply-adds of its
#: recurrent product per row up: below it, waking the second thread and the barrier cost more
#: than half the product saves (bench/RESULTS.md, "column split", the stream rows)
STEP_SPLIT_MACS = 1 << 17


class _Layer:
    """One layer's private weights in the kernels' form: w_ih (G, I), w_hh (G, H_out),
    w_hr (P, H) or (0, H), peep (0, H), bias (2, G) folded as CONTRACT.md says, and the
    scratch that holds them packed (cython), or their panels (numba: LayerPanels)."""

    __slots__ = ("w_ih", "w_hh", "w_hr", "peep", "bias", "b_ih", "b_hh", "scratch", "packed")

    def __init__(self, cell, p, H, dtype):
        self.w_ih = np.ascontiguousarray(p["w_ih"], dtype=dtype).copy()
        self.w_hh = np.ascontiguousarray(p["w_hh"], dtype=dtype).copy()
        self.w_hr = (np.zeros((0, H), dtype) if p["w_hr"] is None
                     else np.ascontiguousarray(p["w_hr"], dtype=dtype).copy())
        self.peep = (np.zeros((0, H), dtype) if p["peepholes"] is None
                     else np.ascontiguousarray(p["peepholes"], dtype=dtype).copy())
        self.b_ih = None if p["b_ih"] is None else np.array(p["b_ih"], dtype=dtype)
        self.b_hh = None if p["b_hh"] is None else np.array(p["b_hh"], dtype=dtype)
        self.bias = _api._fold_biases(cell, self.b_ih, self.b_hh, self.w_ih.shape[0], dtype)
        self.scratch = None
        self.packed = False


def _check_streamable(module, batch_size):
    """ValueError unless `module` can stream `batch_size` rows."""
    if module.bidirectional:
        raise ValueError("stream: a bidirectional model cannot stream (its backward "
                         "direction reads the sequence from its end); got "
                         "bidirectional=True")
    if module.reverse:
        raise ValueError("stream: a reverse stack cannot stream (each row runs from its "
                         "last step back to its first); got reverse=True")
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")


class Stream:
    """Step-by-step inference of a unidirectional fastlstm.LSTM / GRU / RNN (made by
    module.stream(batch_size)). See the module docstring for the calls and shapes."""

    def __init__(self, module, batch_size=1):
        B, L, H = self._common_init(module, batch_size)
        self._cell = cell_code(module)
        self._options = ({} if module.kind == "lstm" else
                         {"linear_before_reset": module.linear_before_reset}
                         if module.kind == "gru" else {"nonlinearity": module.nonlinearity})
        self._function = {"lstm": _api.forward, "gru": _api.gru_forward,
                          "rnn": _api.rnn_forward}[module.kind]
        params = module.state_dict()   # copies: later changes to the module do not leak in
        self._layers = [_Layer(self._cell, _layer_params(params, l, ""), H, self.dtype)
                        for l in range(L)]
        self._fast = self._backend.name == "cython"
        self._numba = self._backend.name == "numba"
        if self._numba:   # the panels of each layer's weights, made once
            for layer in self._layers:
                layer.scratch = self._backend.layer_panels(self._cell, layer.w_ih, layer.w_hh,
                                                           layer.w_hr)
        if self._fast:
            forward_scratch_length = self._backend.info.forward_scratch_length
            StepPlan = self._backend.forward_module.StepPlan
            self._kernel = self._backend.forward_module.forward
            P = module.proj_size
            Gs = H if self.kind == "rnn" else 4 * H
            W = 3 * H if self.kind == "gru" else (H if P else 0)
            # the column split's packing when its rule picks it for B rows on this many
            # threads: a single step then shares the threads too (above STEP_SPLIT_MACS)
            self._columns = int(self._backend.info.column_threads(
                self._cell, B, self._H_out, H, self.dtype.itemsize, current_threads()) > 0)
            self._step_split = self._columns and (
                (Gs if self.kind != "gru" else 3 * H) * self._H_out >= STEP_SPLIT_MACS)
            self._plans, self._outs = [], []
            self._run_steps = self._backend.forward_module.run_steps
            for l, layer in enumerate(self._layers):
                I_l = self.input_size if l == 0 else self._H_out
                layer.scratch = np.empty(forward_scratch_length(
                    self._cell, I_l, self._H_out, H, P, self.dtype.itemsize), self.dtype)
                # packs the weights into layer.scratch, once
                self._plans.append(StepPlan(
                    self._cell, np.zeros((1, B, I_l), self.dtype), layer.w_ih, layer.w_hh,
                    layer.w_hr, layer.bias, layer.peep, self._hs[l], self._cs[l],
                    np.empty((1, B, Gs), self.dtype), np.empty((B, W), self.dtype),
                    layer.scratch, self._columns))
                layer.packed = True
                self._outs.append(np.empty((B, self._H_out), self.dtype))

    def _common_init(self, module, batch_size):
        """What every stream holds: the module's sizes, the backend, the carried state (slot 0
        of per-layer (2, B, n) arrays; slot 1 is the step plans') and the chunks' buffers.
        Returns (B, L, H)."""
        _check_streamable(module, batch_size)
        self.kind = module.kind
        self.batch_size = B = int(batch_size)
        self.batch_first = module.batch_first
        self.dtype = module.dtype
        self.input_size = module.input_size
        self.num_layers = L = module.num_layers
        self._H = H = module.hidden_size
        self._H_out = module.proj_size or H
        self._backend = get_backend(module.backend)
        self._hs = [np.zeros((2, B, self._H_out), self.dtype) for _ in range(L)]
        self._cs = [np.zeros((2 if self.kind == "lstm" else 0, B, H), self.dtype)
                    for _ in range(L)]
        self._buffers = {}   # T -> per-layer kernel buffers (cython, numba)
        self._numba = False  # Stream: whether the numba kernels run on those buffers
        return B, L, H

    # ------------------------------------------------------------------ state
    @property
    def state(self):
        """Copies of the carried state: (h, c) for the LSTM, h for the GRU and RNN;
        h (L, B, H_out), c (L, B, H)."""
        h = np.stack([hs[0] for hs in self._hs])
        if self.kind == "lstm":
            return h, np.stack([cs[0] for cs in self._cs])
        return h

    def reset(self, rows=None):
        """Zero the state of every row (rows=None) or of the given rows (integers in [0, B)),
        e.g. when a new sequence starts in one slot of a batch of streams."""
        if rows is None:
            sel = slice(None)
        else:
            sel = np.asarray(rows)
            if sel.size == 0 and sel.ndim == 1:   # [] : no row (asarray makes it float)
                sel = sel.astype(np.intp)
            if sel.ndim > 1 or (sel.size and sel.dtype.kind not in "iu"):
                raise TypeError(f"rows: expected None or integers in [0, {self.batch_size}), "
                                f"got {rows!r}")
            if sel.size and (sel.min() < 0 or sel.max() >= self.batch_size):
                raise ValueError(f"rows: expected integers in [0, {self.batch_size}), "
                                 f"got {rows!r}")
        for hs, cs in zip(self._hs, self._cs):
            hs[0, sel] = 0
            if cs.shape[0]:
                cs[0, sel] = 0

    # ------------------------------------------------------------------ steps
    def _check_input(self, x):
        if type(x) is not np.ndarray:
            if not hasattr(x, "__array__") and not isinstance(x, (list, tuple)):
                raise TypeError(f"x: expected a NumPy array of {self.dtype.name}, got "
                                f"{type(x).__name__}")
            x = np.asarray(x)
        if x.dtype != self.dtype:
            raise TypeError(f"x: expected dtype {self.dtype.name} (the module's), got "
                            f"{x.dtype}")
        B, I = self.batch_size, self.input_size
        if x.ndim == 2:
            check_shape("x", x, (B, I), "(B, I) for one step")
            return np.ascontiguousarray(x)[None], True
        if x.ndim == 3:
            if self.batch_first:
                check_shape("x", x, (B, x.shape[1], I), "(B, T, I) for a chunk (batch_first)")
                return np.ascontiguousarray(x.transpose(1, 0, 2)), False
            check_shape("x", x, (x.shape[0], B, I), "(T, B, I) for a chunk")
            return np.ascontiguousarray(x), False
        raise ValueError(f"x: expected (B, I) for one step or a chunk "
                         f"{'(B, T, I)' if self.batch_first else '(T, B, I)'}, got shape "
                         f"{x.shape}")

    def step(self, x):
        """Run one step, x (B, I) -> (B, H_out), or a chunk of steps, x (T, B, I) -> (T, B,
        H_out) ((B, T, I) -> (B, T, H_out) when batch_first), from the carried state, which
        then moves on. A new output array each call."""
        if self._fast:   # one step of a C-contiguous (B, I) array: the plans, in one call
            y = self._run_steps(self._plans, x, self._outs,
                                current_threads() if self._step_split else 1)
            if y is not None:
                return y
        x, one = self._check_input(x)
        T = x.shape[0]
        if T == 0:
            y = np.zeros((0, self.batch_size, self._H_out), self.dtype)
        elif self._fast or self._numba:
            y = self._run_kernels(x, T)
        else:
            y = self._run_functions(x)
        if one:
            return y[0]
        return y.transpose(1, 0, 2).copy() if self.batch_first else y

    def _run_functions(self, inp):
        """The other backends: the single-layer function per layer, from the carried state."""
        for l, layer in enumerate(self._layers):
            extra = dict(self._options)
            if self.kind == "lstm":
                extra.update(c0=self._cs[l][0], w_hr=None if layer.w_hr.shape[0] == 0
                             else layer.w_hr,
                             peepholes=None if layer.peep.shape[0] == 0 else layer.peep)
            y, state = self._function(inp, layer.w_ih, layer.w_hh, layer.b_ih, layer.b_hh,
                                      self._hs[l][0], backend=self._backend.name, **extra)
            if self.kind == "lstm":
                self._hs[l][0], self._cs[l][0] = state
            else:
                self._hs[l][0] = state
            inp = y
        return inp

    def _buffers_for(self, T):
        """Per-layer kernel buffers for chunks of T steps: h (T+1, B, H_out), c (2, B, H)
        or (0, B, H), gates (K, B, Gs), work (B, W), and lengths (B,) all T."""
        bufs = self._buffers.get(T)
        if bufs is None:
            B, H, H_out, dt = self.batch_size, self._H, self._H_out, self.dtype
            K = min(T, max(1, _api._INFERENCE_CHUNK_ROWS // B))
            Gs = H if self.kind == "rnn" else 4 * H
            W = 3 * H if self.kind == "gru" else (H if self._layers[0].w_hr.shape[0] else 0)
            lengths = np.full(B, T, np.int64)
            bufs = [(np.zeros((T + 1, B, H_out), dt),
                     np.zeros((2 if self.kind == "lstm" else 0, B, H), dt),
                     np.empty((K, B, Gs), dt), np.empty((B, W), dt), lengths)
                    for _ in self._layers]
            if len(self._buffers) >= 8:   # chunks of many lengths: keep the last few
                self._buffers.pop(next(iter(self._buffers)))
            self._buffers[T] = bufs
        return bufs

    def _run_kernels(self, inp, T):
        """cython, numba: the forward driver on this stream's buffers, the weights packed once
        (numba: their panels; no check of the weights or lookup of their packing at each call,
        as the functions do)."""
        B = self.batch_size
        for l, (layer, (h, c, gates, work, lengths)) in enumerate(
                zip(self._layers, self._buffers_for(T))):
            h[0] = self._hs[l][0]
            if self.kind == "lstm":
                c[0] = self._cs[l][0]
            threads = _api._kernel_threads(T, B, inp.shape[2], layer.w_ih.shape[0],
                                           self._H_out)
            if self._numba:
                self._backend.forward(self._cell, inp, layer.w_ih, layer.w_hh, layer.w_hr,
                                      layer.bias, layer.peep, lengths, h, c, gates, work,
                                      threads, panels=layer.scratch)
            else:
                self._kernel(self._cell, inp, layer.w_ih, layer.w_hh, layer.w_hr, layer.bias,
                             layer.peep, lengths, h, c, gates, work, layer.scratch, threads,
                             not layer.packed, self._columns)
                layer.packed = True
            self._hs[l][0] = h[T]
            if self.kind == "lstm":
                self._cs[l][0] = c[T % 2]
            inp = h[1:]
        return inp.copy()


class ReducedStream(Stream):
    """A stream of a reduced-precision module (fastlstm.layers.quantized.Quantized): the same
    calls, state and outputs as Stream. With the cython backend a single step goes through one
    recurrent_quantized.StepPlan per layer (one call, no allocation but the output) and a
    chunk straight to the reduced-precision driver on this stream's buffers (the weights were
    packed once, when the module was made); otherwise each layer goes through
    fastlstm._api.run_layer."""

    def __init__(self, module, batch_size=1):
        B, L, H = self._common_init(module, batch_size)
        # the module's ReducedLayers (never changed after they are made)
        self._layers = [module._layers[(l, "")] for l in range(L)]
        self._fast = self._backend.name == "cython"
        if self._fast:
            self._plans, self._outs = self._step_plans(B, H)
            self._run_steps = self._backend.reduced_module.run_steps
            Gs = H if self.kind == "rnn" else 4 * H
            self._step_split = (Gs if self.kind != "gru" else 3 * H) * self._H_out \
                >= STEP_SPLIT_MACS

    def _step_plans(self, B, H):
        """One recurrent_quantized.StepPlan per layer on the carried state (self._hs, _cs),
        with scratch for as many threads as the current limit allows."""
        from .. import _reduced

        module = self._backend.reduced_module
        threads = current_threads()
        Gs = H if self.kind == "rnn" else 4 * H
        W = 3 * H if self.kind == "gru" else (H if self._layers[0].w_hr.shape[0] else 0)
        plans, outs = [], []
        for l, layer in enumerate(self._layers):
            I_l = self.input_size if l == 0 else self._H_out
            code = _reduced.PRECISION_CODES[layer.precision]
            team = max(1, min(threads, -(-H // _reduced.PANEL_ROWS)))
            act = np.empty(module.activation_scratch_bytes(code, 1, B, I_l, self._H_out, H,
                                                           team), np.uint8)
            p = layer.panels
            plans.append(module.StepPlan(
                layer.cell, code, self._backend.dot_products()[layer.precision],
                np.zeros((1, B, I_l), np.float32), *p["ih"], *p["hh"], *p["hr"], layer.bias,
                layer.peep, self._hs[l], self._cs[l], np.empty((1, B, Gs), np.float32),
                np.empty((B, W), np.float32), act, H, layer.w_hr.shape[0], threads))
            outs.append(np.empty((B, self._H_out), np.float32))
        return plans, outs

    def _run_kernels(self, inp, T):
        """cython, a chunk of T steps: the reduced-precision driver per layer."""
        B, lstm = self.batch_size, self.kind == "lstm"
        for l, (layer, (h, c, gates, work, lengths)) in enumerate(
                zip(self._layers, self._buffers_for(T))):
            h[0] = self._hs[l][0]
            if lstm:
                c[0] = self._cs[l][0]
            threads = _api._kernel_threads(T, B, inp.shape[2], layer.w_ih.shape[0],
                                           self._H_out)
            self._backend._forward_reduced(layer.cell, inp, layer, lengths, h, c, gates, work,
                                           threads)
            self._hs[l][0] = h[T]
            if lstm:
                self._cs[l][0] = c[T % 2]
            inp = h[1:]
        return inp.copy()

    def _run_functions(self, inp):
        lstm = self.kind == "lstm"
        for l, layer in enumerate(self._layers):
            y, h_n, c_n, _ = _api.run_layer(layer, inp, self._hs[l][0],
                                            self._cs[l][0] if lstm else None, None, False,
                                            self._backend, False)
            self._hs[l][0] = h_n
            if lstm:
                self._cs[l][0] = c_n
            inp = y
        return inp
