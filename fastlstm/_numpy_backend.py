"""The NumPy reference behind the kernel contract (src/kernels/CONTRACT.md).

It runs fastlstm.reference's sequence functions on the loop-order buffers the API hands every
backend, and fills the same outputs. It allocates freely: it is the yardstick, not a kernel.
"""
import numpy as np

from . import reference

#: kernel cell code -> (reference cell, options)
CELLS = {0: ("lstm", {}), 1: ("gru", {"linear_before_reset": True}),
         2: ("gru", {"linear_before_reset": False}), 3: ("rnn", {"nonlinearity": "tanh"}),
         4: ("rnn", {"nonlinearity": "relu"})}


def _params(cell, w_ih, w_hh, w_hr, bias, peep):
    """The reference's params from the contract's buffers (folded biases: bias[0] on the input
    side, bias[1] on the recurrent side, which is where the reference adds b_ih and b_hh)."""
    params = dict(w_ih=w_ih, w_hh=w_hh, b_ih=bias[0] if bias is not None else None,
                  b_hh=bias[1] if bias is not None else None)
    if w_hr.shape[0]:
        params["w_hr"] = w_hr
    if peep.shape[0]:
        params["peepholes"] = peep
    return params


class NumpyBackend:
    name = "numpy"

    @staticmethod
    def groups(n_threads, B, cell, H, Hout, dtype):
        return 1

    @staticmethod
    def forward(cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work, n_threads=1,
                packed=None):
        kind, options = CELLS[cell]
        state0 = (h[0], c[0]) if kind == "lstm" else (h[0],)
        _, _, tape = reference.sequence_forward(kind, _params(cell, w_ih, w_hh, w_hr, bias, peep),
                                                x, state0, lengths, **options)
        T = x.shape[0]
        keep = gates.shape[0] == T
        for s in range(T):
            active = lengths > s
            h[s + 1, active] = tape.states[s + 1][0][active]
            if kind == "lstm":
                slot = s + 1 if c.shape[0] == T + 1 else (s + 1) % 2
                c[slot, active] = tape.states[s + 1][1][active]
            if keep:
                gates[s, active] = tape.gates[s][active]

    @staticmethod
    def backward(cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA, dhp, dx,
                 dw_ih, dw_hh, db_ih, db_hh, work, n_groups=1, n_threads=1):
        """Fills dx (unless it is (0, B, I)), the weight and bias gradients, dh and dc (dA
        and dhp are left at zero);
        returns {"w_hr": ..., "peepholes": ...} (None where unused) for the API."""
        kind, options = CELLS[cell]
        T = x.shape[0]
        lstm = kind == "lstm"
        # the bias values do not enter the backward pass: the states and gates are the tape's
        params = _params(cell, w_ih, w_hh, w_hr, None, peep)
        states = [(h[s], c[s]) if lstm else (h[s],) for s in range(T + 1)]
        tape = reference.SequenceTape(kind, params, options, x, states, gates, lengths, False)
        grads = reference.sequence_backward(tape, dy if dy.shape[0] else None,
                                            (dh, dc) if lstm else (dh,))
        if dx.shape[0]:   # (0, B, I): no input gradient wanted
            dx[...] = grads["x"]
        dw_ih[...], dw_hh[...] = grads["w_ih"], grads["w_hh"]
        db_ih[...], db_hh[...] = grads["b_ih"], grads["b_hh"]
        dh[...] = grads["h0"]
        if lstm:
            dc[...] = grads["c0"]
        dA.fill(0)
        dhp.fill(0)
        return {"w_hr": grads["w_hr"], "peepholes": grads["peepholes"]}
